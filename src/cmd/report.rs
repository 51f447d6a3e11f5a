use super::{Output, present};
use paytool::loadtest::diff::{self, RunDiff, Tolerances};
use paytool::loadtest::merge;
use paytool::loadtest::report::RunSummary;
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  paytool report show reports/20261125-013000-smoke
  paytool report diff reports/BASELINE reports/NEW --p99-tolerance 0.10
  paytool report diff OLD NEW --output json
  paytool report merge reports/*-seg1of3 reports/*-seg2of3 reports/*-seg3of3 --out reports/merged \
    --target http://127.0.0.1:8080

`merge` adds up the runs of `paytool loadtest --segment I/N` generators: their histograms
(never averaging percentiles), their per-second intervals lined up by each run's start,
the profile's thresholds judged again on the sum, and their money audits (with --target,
also the store's count of the shared merchants' payments against every segment's
acknowledgements). It writes the same files as a run and exits as `loadtest` would:
0 passed, 1 a threshold failed, 4 the audit failed.

`diff` compares every request name and All (ok rps, p50, p95, p99, error rate) and the
money audit; it exits 1 when any request's p99 grew by more than the tolerance (a
fraction: 0.10 is 10%) or its error rate by more than --error-rate-tolerance (absolute),
or the audit failed where the baseline's passed, so a CI job can gate on the last
baseline. A request with fewer than --min-samples in either run is shown, not judged;
one that appeared or disappeared is marked. Runs of different profiles are refused
unless --force. Exit codes: 0 fine, 1 regression, 2 unreadable runs or other profiles.";

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Print a run's summary table again
    Show {
        /// A run directory (reports/<run-id>)
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Compare two runs per request name; exit 1 on a regression beyond the tolerance
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// Allowed relative growth of p99 (0.10 = 10%)
        #[arg(long, default_value_t = Tolerances::default().p99_growth_max)]
        p99_tolerance: f64,
        /// Allowed absolute growth of the error rate (0.005 = half a percentage point)
        #[arg(long, default_value_t = Tolerances::default().error_rate_growth_max)]
        error_rate_tolerance: f64,
        /// A request with fewer samples than this in either run is shown, not judged
        #[arg(long, default_value_t = Tolerances::default().samples_min)]
        min_samples: u64,
        /// Compare runs of different profiles
        #[arg(long)]
        force: bool,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Add up the runs of `loadtest --segment I/N` generators into one run, judged again
    Merge {
        /// The segments' run directories
        #[arg(required = true, num_args = 1..)]
        dirs: Vec<PathBuf>,
        /// Where to write the merged run
        #[arg(long)]
        out: PathBuf,
        /// The target the segments loaded: count the shared merchants' payments there
        /// against every segment's acknowledgements (merchants from the first run's
        /// merchants.json)
        #[arg(long)]
        target: Option<String>,
        /// Merge runs of different profiles
        #[arg(long)]
        force: bool,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

fn read(dir: &std::path::Path) -> anyhow::Result<RunSummary> {
    RunSummary::read(dir).map_err(|e| super::UsageError(format!("not a paytool run: {e}")).into())
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    match args.command {
        Command::Show { dir, output } => {
            let s = read(&dir)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&s)?),
                Output::Text => {
                    println!(
                        "run {} ({}), {:.0} s against {}",
                        s.run_id, s.profile, s.duration_s, s.target
                    );
                    present::print_summary(&s);
                    println!("{}", present::verdict(&s));
                }
            }
            Ok(0)
        }
        Command::Diff {
            old,
            new,
            p99_tolerance,
            error_rate_tolerance,
            min_samples,
            force,
            output,
        } => {
            let tolerances = Tolerances {
                p99_growth_max: p99_tolerance,
                error_rate_growth_max: error_rate_tolerance,
                samples_min: min_samples,
            };
            let (o, n) = (read(&old)?, read(&new)?);
            // A profile is known by its digest (0 in runs older than it): another
            // profile is another experiment, not a baseline.
            let known = !o.profile_sha256.is_empty() && !n.profile_sha256.is_empty();
            let other = o.profile != n.profile || (known && o.profile_sha256 != n.profile_sha256);
            if other && !force {
                return Err(super::UsageError(format!(
                    "{} ran profile {} and {} ran {}{}: not a baseline for each other (--force compares them anyway)",
                    old.display(),
                    o.profile,
                    new.display(),
                    n.profile,
                    if o.profile == n.profile { " with other settings" } else { "" }
                ))
                .into());
            }
            let d = diff::diff(&o, &n, tolerances);
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&d)?),
                Output::Text => print_diff(&d),
            }
            Ok(if d.regressed { 1 } else { 0 })
        }
        Command::Merge {
            dirs,
            out,
            target,
            force,
            output,
        } => merge(&dirs, &out, target.as_deref(), force, output),
    }
}

fn merge(
    dirs: &[PathBuf],
    out: &std::path::Path,
    target: Option<&str>,
    force: bool,
    output: Output,
) -> anyhow::Result<u8> {
    let usage = |m: String| anyhow::Error::from(super::UsageError(m));
    if out.join("summary.json").exists() {
        return Err(usage(format!(
            "--out {}: already holds a run",
            out.display()
        )));
    }
    let profile = dirs[0].join("profile.toml");
    let plan = paytool::profile::load::load(&profile, &Default::default())
        .map_err(|e| usage(format!("the runs' profile: {e}")))?;
    let (mut merged, rows) =
        merge::merge(dirs, &plan.gate, force).map_err(|e| usage(e.to_string()))?;
    if let Some(target) = target {
        let file = dirs[0].join("merchants.json");
        let merchants: Vec<paytool::scenarios::context::MerchantCreds> = serde_json::from_str(
            &std::fs::read_to_string(&file)
                .map_err(|e| usage(format!("{}: {e}", file.display())))?,
        )
        .map_err(|e| usage(format!("{}: {e}", file.display())))?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(merge::count_on(target, &merchants, &mut merged))?;
    }
    merge::write(out, &merged, &rows)?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&merged)?),
        Output::Text => {
            present::print_summary(&merged);
            println!("{}", present::verdict(&merged));
            println!("report: {}", out.display());
        }
    }
    Ok(merged.exit_code())
}

fn print_diff(d: &RunDiff) {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header([
        "request",
        "ok rps old -> new",
        "p50 ms old -> new",
        "p95 ms old -> new",
        "p99 ms old -> new",
        "errors old -> new",
        "regression",
    ]);
    let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
    let pct = |v: Option<f64>| {
        v.map(|x| format!("{:.2}%", x * 100.0))
            .unwrap_or_else(|| "-".into())
    };
    for r in &d.requests {
        t.add_row([
            r.name.clone(),
            format!("{} -> {}", f(r.old_ok_rps), f(r.new_ok_rps)),
            format!("{} -> {}", f(r.old_p50_ms), f(r.new_p50_ms)),
            format!("{} -> {}", f(r.old_p95_ms), f(r.new_p95_ms)),
            format!("{} -> {}", f(r.old_p99_ms), f(r.new_p99_ms)),
            format!("{} -> {}", pct(r.old_error_rate), pct(r.new_error_rate)),
            match (&r.regression, &r.note) {
                (Some(g), _) => g.to_string(),
                (None, Some(note)) => note.clone(),
                (None, None) => String::new(),
            },
        ]);
    }
    println!("{t}");
    let audit = |ok: Option<bool>| match ok {
        Some(true) => "clean",
        Some(false) => "FAILED",
        None => "not run",
    };
    println!(
        "money audit: {} -> {}{}",
        audit(d.old_audit_ok),
        audit(d.new_audit_ok),
        if d.audit_regressed {
            " (a regression)"
        } else {
            ""
        }
    );
    println!(
        "{}",
        if d.regressed {
            "REGRESSED"
        } else {
            "no regression beyond the tolerance"
        }
    );
}
