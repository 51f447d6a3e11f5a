use super::{Failure, Output, UsageError};
use anyhow::Context as _;
use aws_sdk_autoscaling::Client;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};
use paytool::cloud::aws::{self, AwsOptions};
use paytool::cloud::converge::{self, Clients};
use paytool::cloud::plan::{self, Plan};
use paytool::cloud::saved::{self, SavedPlanError};
use paytool::cloud::size::{self, Peak, SizingInput};
use paytool::cloud::state::Desired;
use paytool::cloud::template::WantedTemplate;
use paytool::loadtest::capacity;
use paytool::profile::scale::{self as scale_profile, ScaleProfile};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  paytool scale plan    -p profiles/scale/payment-api-group.toml            # exit 0 no change, 2 changes, 1 error
  paytool scale plan    -p profiles/scale/payment-api-group.toml --out plan.json
  paytool scale apply   -p profiles/scale/payment-api-group.toml --plan plan.json --yes --wait
  paytool scale status  -p profiles/scale/payment-api-group.toml
  paytool scale size    --report reports/RUN --daily 1000000000 --peak-factor 3 -p profiles/scale/payment-api-group.toml
  paytool scale destroy -p profiles/scale/payment-api-group.toml --yes
  AWS_ENDPOINT_URL=http://127.0.0.1:5000 paytool scale plan -p ...          # an emulator such as moto

Credentials and region come from the standard AWS chain (env, ~/.aws, SSO, process);
they are never printed. A profile is checked before any AWS call: min <= desired <= max,
names, zones, policy metrics and labels; an invalid one is named with its key on stderr.

Exit codes: `plan` follows Terraform's -detailed-exitcode: 0 no change, 1 any error (an
invalid profile included), 2 changes pending. `apply` exits 1 when the group, read back
after the apply, still differs from the profile (the rows left are printed). The other
commands: 0 success, 1 failure, 2 an invalid profile, an unreadable run or a usage error.
A command line that does not parse exits 2, except for `plan`, where it is 1.";

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Scale profile (TOML): the desired Auto Scaling group
    #[arg(short, long, env = "PAYTOOL_SCALE_PROFILE")]
    pub profile: PathBuf,
    /// AWS region [default: from the AWS chain]
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// Named AWS profile (paytool's own -p/--profile is the scale profile)
    #[arg(long, env = "AWS_PROFILE")]
    pub aws_profile: Option<String>,
    /// Point at another endpoint, e.g. the moto emulator
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Diff the profile against the group: + create, ~ update, - delete. Exit 0 no change,
    /// 1 error, 2 changes pending
    Plan {
        #[command(flatten)]
        common: Common,
        /// Save the plan, for `apply --plan`
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Make exactly the planned changes (asks first unless --yes), then plan again: exit 1
    /// if anything is left
    Apply {
        #[command(flatten)]
        common: Common,
        /// A plan saved by `plan --out`: refused if the group changed since
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Do not ask
        #[arg(long)]
        yes: bool,
        /// Wait until InService instances reach the minimum
        #[arg(long)]
        wait: bool,
        /// How long --wait waits
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Instances (zone, lifecycle, health), recent scaling activities, policies
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// Instances needed for a peak, from a load test's measured capacity (exit 1 if the
    /// profile's max cannot cover it)
    Size(SizeArgs),
    /// Delete the group (asks first unless --yes)
    Destroy {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        yes: bool,
    },
    /// Start an instance refresh (replace instances after a launch change)
    Refresh {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
instances = ceil(peak / (capacity x utilization)) x Z/(Z-1), rounded up to a multiple of Z.
capacity: the highest rate that met every threshold, from a `loadtest --find-max` run
(find-max.json), else the measured rate of a passed run (summary.json).
peak: --peak-rps, or --daily / 86400 x --peak-factor. Z: --zones, else the profile's zone
count, else 2.")]
pub struct SizeArgs {
    /// A load test run directory (reports/<run-id>)
    #[arg(long)]
    pub report: PathBuf,
    /// Requests a day at the peak's day
    #[arg(long, conflicts_with = "peak_rps")]
    pub daily: Option<f64>,
    /// Peak requests per second (instead of --daily)
    #[arg(long)]
    pub peak_rps: Option<f64>,
    /// Peak over average, with --daily
    #[arg(long, default_value_t = 3.0)]
    pub peak_factor: f64,
    /// Fraction of measured capacity to plan for
    #[arg(long, default_value_t = 0.6)]
    pub utilization: f64,
    /// Zones the group spans
    #[arg(long)]
    pub zones: Option<u32>,
    /// Check the profile's min and max against the answer (exit 1 when max is too small)
    #[arg(short, long)]
    pub profile: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

fn load_profile(path: &Path) -> anyhow::Result<ScaleProfile> {
    scale_profile::load(path).map_err(|e| UsageError(e.to_string()).into())
}

/// Exit 1, with `e` as the message.
fn failed(e: impl std::fmt::Display) -> Failure {
    Failure {
        code: 1,
        message: e.to_string(),
    }
}

fn aws_options(c: &Common) -> AwsOptions {
    AwsOptions {
        region: c.region.clone(),
        profile: c.aws_profile.clone(),
        endpoint_url: c.endpoint_url.clone(),
    }
}

pub async fn run(args: Args) -> anyhow::Result<u8> {
    match args.command {
        Command::Plan { common, out } => plan_cmd(common, out).await,
        Command::Apply {
            common,
            plan,
            yes,
            wait,
            timeout,
        } => apply_cmd(common, plan, yes, wait, timeout).await,
        Command::Status { common } => status_cmd(common).await,
        Command::Size(a) => size_cmd(a),
        Command::Destroy { common, yes } => destroy_cmd(common, yes).await,
        Command::Refresh { common, yes } => refresh_cmd(common, yes).await,
    }
}

/// What the profile wants (the group, and the launch template paytool makes for it,
/// if any) and clients for the account it lives in.
struct Wanted {
    desired: Desired,
    template: Option<WantedTemplate>,
    clients: Clients,
}

async fn connect(common: &Common, profile: &ScaleProfile) -> anyhow::Result<Wanted> {
    let template = match &profile.launch_template {
        Some(t) => Some(WantedTemplate::from_section(t).map_err(|e| {
            UsageError(format!(
                "profile {}: `launch_template.serve.layout`: {e}",
                common.profile.display()
            ))
        })?),
        None => None,
    };
    Ok(Wanted {
        desired: Desired::from_profile(profile),
        template,
        clients: Clients::new(&aws_options(common)).await,
    })
}

async fn current_plan(w: &Wanted) -> anyhow::Result<Plan> {
    Ok(converge::plan(&w.clients, &w.desired, w.template.as_ref()).await?)
}

fn print_plan(p: &Plan) {
    if p.is_empty() {
        println!("No changes: group {} matches the profile.", p.group);
        return;
    }
    println!("Group {}:", p.group);
    let width = p.rows.iter().map(|r| r.subject().len()).max().unwrap_or(0);
    for r in &p.rows {
        println!(
            "  {} {:<width$}  {}",
            r.op.symbol(),
            r.subject(),
            r.change()
        );
    }
    let (c, u, d) = p.counts();
    println!("Plan: {c} to create, {u} to update, {d} to delete.");
}

/// Terraform's -detailed-exitcode: 0 no change, 1 any error, 2 changes pending. So an
/// invalid profile is exit 1 here, where every other command makes it a usage error (2).
async fn plan_cmd(common: Common, out: Option<PathBuf>) -> anyhow::Result<u8> {
    let profile = scale_profile::load(&common.profile).map_err(failed)?;
    let w = connect(&common, &profile)
        .await
        .map_err(|e| match e.downcast::<UsageError>() {
            // Terraform's -detailed-exitcode: a profile that cannot be planned is exit 1.
            Ok(u) => failed(u.0).into(),
            Err(e) => e,
        })?;
    let p = current_plan(&w).await?;
    if let Some(path) = &out {
        saved::save(path, &p).with_context(|| format!("saving the plan to {}", path.display()))?;
    }
    match common.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&p)?),
        Output::Text => {
            print_plan(&p);
            if let Some(path) = &out {
                println!("saved: {}", path.display());
            }
        }
    }
    Ok(if p.is_empty() { 0 } else { 2 })
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(format!(
            "{question}: stdin is not a terminal; pass --yes to proceed"
        ))
        .into());
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

async fn apply_cmd(
    common: Common,
    saved_plan: Option<PathBuf>,
    yes: bool,
    wait: bool,
    timeout: Duration,
) -> anyhow::Result<u8> {
    let w = connect(&common, &load_profile(&common.profile)?).await?;
    let p = current_plan(&w).await?;
    let client = &w.clients.autoscaling;
    if let Some(path) = &saved_plan {
        saved::check(path, &p).map_err(|e| -> anyhow::Error {
            match e {
                SavedPlanError::Stale { .. } => failed(e).into(),
                _ => UsageError(e.to_string()).into(),
            }
        })?;
    }
    let text = common.output == Output::Text;
    if text {
        print_plan(&p);
    }
    if p.is_empty() {
        if !text {
            println!(
                "{}",
                serde_json::json!({ "group": p.group, "applied": 0, "converged": true })
            );
        }
        return finish_wait(client, &common, &p.group, wait, timeout).await;
    }
    if !yes && !confirm(&format!("Apply {} change(s) to {}?", p.rows.len(), p.group))? {
        eprintln!("paytool scale apply: nothing changed");
        return Ok(1);
    }
    let applied = converge::apply(&w.clients, &w.desired, w.template.as_ref(), &p).await?;
    let verdict = applied.converged();
    if text {
        println!("Applied {} action(s) to {}.", applied.actions, p.group);
        if verdict.is_err() {
            println!("Still different after the apply:");
            print_plan(&applied.remaining);
        }
    } else {
        println!(
            "{}",
            serde_json::json!({
                "group": p.group,
                "applied": applied.actions,
                "rows": p.rows,
                "converged": verdict.is_ok(),
                "remaining": applied.remaining.rows,
            })
        );
    }
    verdict.map_err(failed)?;
    finish_wait(client, &common, &p.group, wait, timeout).await
}

/// --wait: until InService instances reach the group's minimum, bounded by `timeout`.
async fn finish_wait(
    client: &Client,
    common: &Common,
    group: &str,
    wait: bool,
    timeout: Duration,
) -> anyhow::Result<u8> {
    if !wait {
        return Ok(0);
    }
    let Some(observed) = aws::observe(client, group).await? else {
        return Err(anyhow::anyhow!("group {group} does not exist"));
    };
    let want = observed.min.max(0) as u64;
    let bar = if common.output == Output::Text && std::io::stderr().is_terminal() {
        ProgressBar::new(want)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} waiting for InService {pos}/{len} [{elapsed}]")
            .expect("a template"),
    );
    // The SDK's waiter decides; a display loop counts InService instances meanwhile.
    let display = async {
        loop {
            if let Ok(list) = aws::instances(client, group).await {
                bar.set_position(
                    (list.iter().filter(|i| i.lifecycle == "InService").count() as u64).min(want),
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    let waited = tokio::select! {
        r = aws::wait_in_service(client, group, timeout) => r,
        () = display => unreachable!("the display loop never ends"),
    };
    bar.finish_and_clear();
    waited.map_err(failed)?;
    if common.output == Output::Text {
        let in_service = aws::instances(client, group)
            .await?
            .iter()
            .filter(|i| i.lifecycle == "InService")
            .count();
        println!("{in_service} instance(s) InService (minimum {want}).");
    }
    Ok(0)
}

async fn status_cmd(common: Common) -> anyhow::Result<u8> {
    let profile = load_profile(&common.profile)?;
    let client = aws::client(&aws_options(&common)).await;
    let Some(s) = aws::status(&client, &profile.group.name).await? else {
        return Err(failed(format!(
            "group {} does not exist (paytool scale apply creates it)",
            profile.group.name
        ))
        .into());
    };
    if common.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(0);
    }
    let g = &s.group;
    println!(
        "group {}: min {} max {} desired {}; {}; zones [{}]",
        g.name,
        g.min,
        g.max,
        g.desired,
        g.launch
            .as_ref()
            .map(|l| l.to_string())
            .unwrap_or_else(|| "no launch spec".into()),
        g.zones.join(", ")
    );
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["instance", "zone", "lifecycle", "health"]);
    for i in &s.instances {
        t.add_row([&i.id, &i.zone, &i.lifecycle, &i.health]);
    }
    println!("{t}");
    if !g.policies.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(["policy", "metric", "target"]);
        for (name, p) in &g.policies {
            t.add_row([name.clone(), p.metric.clone(), p.target.to_string()]);
        }
        println!("{t}");
    }
    println!("recent activities:");
    for a in &s.activities {
        println!("  {} {} {}", a.time, a.status, a.description);
    }
    Ok(0)
}

fn size_cmd(a: SizeArgs) -> anyhow::Result<u8> {
    let capacity = capacity::measured(&a.report).map_err(|e| UsageError(e.to_string()))?;
    let profile = a.profile.as_deref().map(load_profile).transpose()?;
    let peak = match (a.peak_rps, a.daily) {
        (Some(rps), _) => Peak::Rps(rps),
        (None, Some(requests_per_day)) => Peak::Daily {
            requests_per_day,
            peak_factor: a.peak_factor,
        },
        (None, None) => return Err(UsageError("give --peak-rps or --daily".into()).into()),
    };
    let sizing = size::size(SizingInput {
        capacity_per_instance_rps: capacity.rate_per_s,
        peak_rps: peak.rps(),
        utilization: a.utilization,
        zones: size::zones(a.zones, profile.as_ref()),
    })
    .map_err(|e| UsageError(e.to_string()))?;
    let coverage = profile.as_ref().map(|p| size::coverage(p, &sizing));
    if a.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "capacity_source": capacity.describe(),
                "sizing": sizing,
                "profile": coverage,
            }))?
        );
    } else {
        println!(
            "capacity: {:.1} req/s per instance ({})",
            capacity.rate_per_s,
            capacity.describe()
        );
        if let Peak::Daily {
            requests_per_day,
            peak_factor,
        } = peak
        {
            println!(
                "peak: {requests_per_day:.0}/day / 86400 x {peak_factor} = {:.1} req/s",
                peak.rps()
            );
        }
        for w in &sizing.working {
            println!("  {w}");
        }
        println!("instances: {}", sizing.instances);
        if let Some(c) = &coverage {
            if c.covers {
                println!(
                    "the profile covers it: max {} >= {} (min {})",
                    c.max, sizing.instances, c.min
                );
            } else {
                println!(
                    "FAILED: the profile's max {} is below the {} instances needed",
                    c.max, sizing.instances
                );
            }
            if c.min_above_need {
                println!("note: min {} is above what the peak needs", c.min);
            }
        }
    }
    Ok(if coverage.is_some_and(|c| !c.covers) {
        1
    } else {
        0
    })
}

async fn destroy_cmd(common: Common, yes: bool) -> anyhow::Result<u8> {
    let profile = load_profile(&common.profile)?;
    let client = aws::client(&aws_options(&common)).await;
    let name = &profile.group.name;
    let json = common.output == Output::Json;
    if aws::observe(&client, name).await?.is_none() {
        if json {
            println!(
                "{}",
                serde_json::json!({ "group": name, "deleted": false, "existed": false })
            );
        } else {
            println!("group {name} does not exist: nothing to destroy");
        }
        return Ok(0);
    }
    if !yes && !confirm(&format!("Delete group {name} and its instances?"))? {
        eprintln!("paytool scale destroy: nothing changed");
        return Ok(1);
    }
    aws::apply(&client, name, &plan::Action::DeleteGroup).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "group": name, "deleted": true, "existed": true })
        );
    } else {
        println!("deleted group {name}");
    }
    Ok(0)
}

async fn refresh_cmd(common: Common, yes: bool) -> anyhow::Result<u8> {
    let profile = load_profile(&common.profile)?;
    let client = aws::client(&aws_options(&common)).await;
    let name = &profile.group.name;
    if !yes && !confirm(&format!("Replace every instance of {name}?"))? {
        return Ok(1);
    }
    let id = aws::start_refresh(&client, name).await?;
    if common.output == Output::Json {
        println!(
            "{}",
            serde_json::json!({ "group": name, "instance_refresh_id": id })
        );
    } else {
        println!("instance refresh {id} started for {name}");
    }
    Ok(0)
}
