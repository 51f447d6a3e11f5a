use super::{Failure, UsageError, present};
use indicatif::{ProgressBar, ProgressStyle};
use paytool::loadtest::find_max::SearchLimits;
use paytool::loadtest::{self, LoadtestError};
use paytool::profile::load::{self as profile, Overrides, RedisMode};
use paytool::profile::segment::Segment;
use paytool::store::sqlite::Faults;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const EXAMPLES: &str = "\
Examples:
  paytool loadtest                                    # profiles/smoke.toml, ~15 s
  paytool loadtest --profile profiles/ci-gate.toml --output json > summary.json
  paytool loadtest -p profiles/peak.toml --users 128 --run-time 2m
  paytool loadtest -p profiles/open-checkout.toml --rate 3000/s   # open model
  paytool loadtest -p profiles/open-checkout.toml --find-max --run-time 10s
  paytool loadtest -p profiles/smoke.toml --threshold p99_ms_max=50 \\
                   --threshold \"POST /v1/payments:error_rate_max=0\"
  PAYTOOL_ADMIN_TOKEN=... paytool loadtest -p profiles/smoke.toml --target http://127.0.0.1:8080
  paytool loadtest -p profiles/sharded-smoke.toml   # 2 API instances on 2 spawned PostgreSQL shards
  paytool loadtest -p profiles/sharded-smoke.toml --redis spawn   # ... with Redis in front
  paytool loadtest -p profiles/cluster.toml   # HAProxy, 3 instances, standbys, Redis, a failover

Without a target, the reference API is started in this process on a free loopback port
with a fresh data dir under the run's report dir (kept only if the run fails). A profile
whose [target] names a layout spawns `instances` API instances on its PostgreSQL shards
(postgres = \"spawn\" starts a throwaway server per shard under the run dir; it needs
PostgreSQL installed: apt-get install -y postgresql). target.redis (or --redis) puts Redis
in front of the spawned API's store: \"spawn\" starts a throwaway redis-server under the
run dir (apt-get install -y redis-server), \"existing\" reads PAYTOOL_REDIS_URL.
target.balancer = \"haproxy\" (with a layout) puts a real HAProxy in front of the
instances (apt-get install -y haproxy), balancing requests; \"haproxy-tcp\" balances
connections instead, for less CPU; the load and the audit go through it.
target.processes = true runs each spawned instance as its own `paytool serve` process
(as a balancer does) instead of a task in this process.
target.replicas = 1 (with postgres = \"spawn\") clones a synchronous standby of each
shard (pg_basebackup -R) and names both hosts in the shard's URL, so the API follows a
promotion; [[chaos]] fault = \"failover\" crashes a shard's primary and promotes it.
Targets may be https:// (trust a private CA with SSL_CERT_FILE). In the open model the
pool of connections grows up to load.connections_max while every one is busy; closed
model profiles may set load.co_mitigation = \"average\" (Goose's coordinated-omission
mitigation). Each run writes reports/<time>-<profile>/: Goose's HTML, JSON and Markdown
reports, profile.toml, summary.json, summary.md, junit.xml, report.html,
timeseries.jsonl/.csv, intervals.jsonl, acks.jsonl, audit.json, merchants.json; a
--find-max run adds find-max.json and search.html (its steps as a chart).

Thresholds ([thresholds], or --threshold KEY=VALUE / --threshold \"RULE\"), over all
requests or one request name as the summary table shows it: error_rate_max (0.0-1.0);
p50_ms_max, p90_ms_max, p95_ms_max, p99_ms_max, p999_ms_max, max_ms_max (ms, of
successful requests unless latency_of = \"all\"); rps_min (successful requests a second);
late_rate_max and dropped_max (open model); or rules as text: \"p99 < 2.5ms\",
\"error_rate < 1%\", \"rps > 500\". after = \"5s\" leaves a warm-up out;
abort_on_fail = true (with delay = \"10s\") stops a run as soon as a rule fails.

Exit codes: 0 passed; 1 a threshold failed (or stopped the run); 2 usage or profile
error; 3 the target could not be reached or the run could not start; 4 the money audit
failed (whatever else did); 5 the run broke after it started (an error, or a chaos step
that could not be done).";

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Load profile (TOML)
    #[arg(
        short,
        long,
        env = "PAYTOOL_PROFILE",
        default_value = "profiles/smoke.toml"
    )]
    pub profile: PathBuf,
    /// Override load.users
    #[arg(long)]
    pub users: Option<usize>,
    /// Override load.ramp, e.g. 5s
    #[arg(long)]
    pub ramp: Option<String>,
    /// Override load.run_time, e.g. 30s
    #[arg(long)]
    pub run_time: Option<String>,
    /// Override target.url: load test a running API instead of spawning one
    #[arg(long, env = "PAYTOOL_TARGET")]
    pub target: Option<String>,
    /// Override target.instances: reference API instances to spawn on the profile's
    /// PostgreSQL layout (the load is spread over them)
    #[arg(long)]
    pub instances: Option<usize>,
    /// Override target.redis: Redis in front of the spawned API's store, "spawn" (a
    /// throwaway redis-server under the run dir) or "existing" (URL from PAYTOOL_REDIS_URL)
    #[arg(long, value_name = "MODE", value_parser = ["spawn", "existing"])]
    pub redis: Option<String>,
    /// Open model: override load.rate with an arrival rate, e.g. 2000/s (replaces users)
    #[arg(long)]
    pub rate: Option<String>,
    /// Open model: override load.connections (most requests in flight)
    #[arg(long)]
    pub connections: Option<usize>,
    /// Capacity search: raise the arrival rate step by step, then bisect, until a
    /// threshold or the audit fails; report the highest rate that met everything
    #[arg(long)]
    pub find_max: bool,
    /// --find-max: multiply the rate by this each growing step
    #[arg(long, default_value_t = 2.0, requires = "find_max")]
    pub find_max_factor: f64,
    /// --find-max: bisection steps after the first failure
    #[arg(long, default_value_t = 3, requires = "find_max")]
    pub find_max_bisect: usize,
    /// --find-max: never schedule above this many arrivals per second
    #[arg(long, default_value_t = 1_000_000.0, requires = "find_max")]
    pub rate_max: f64,
    /// Override merchants.count
    #[arg(long)]
    pub merchants: Option<usize>,
    /// Add or override a threshold: KEY=VALUE or "REQUEST NAME:KEY=VALUE" (repeatable)
    #[arg(long = "threshold", value_name = "RULE")]
    pub thresholds: Vec<String>,
    /// Override report.dir
    #[arg(long, env = "PAYTOOL_REPORT_DIR")]
    pub report_dir: Option<PathBuf>,
    /// Skip the money audit
    #[arg(long)]
    pub no_audit: bool,
    /// Distributed load: run the I-th of N equal slices of the profile (its users dealt
    /// out, or arrival i to segment i mod N, keeping the schedule) against a --target
    /// every segment shares; `paytool report merge` adds the segments' reports up
    #[arg(long, value_name = "I/N", value_parser = parse_segment)]
    pub segment: Option<Segment>,
    /// Use the merchants in this merchants.json (written by --prepare-only) instead of
    /// creating the run's own, so that every segment pays to the same merchants
    #[arg(long, value_name = "FILE")]
    pub merchants_file: Option<PathBuf>,
    /// Create the run's merchants on the --target, write their keys to --merchants-file
    /// (mode 0600), and stop
    #[arg(long, requires = "merchants_file")]
    pub prepare_only: bool,
    /// Start the load at this UTC time (RFC 3339, e.g. 2026-11-28T03:30:00Z; at most an
    /// hour ahead), so that segments on several machines start together
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
    /// text: live progress, tables and a verdict; json: the summary as JSON on stdout
    #[arg(long, value_enum, default_value = "text")]
    pub output: super::Output,
    /// Testing the audit only: the spawned API drops every Nth acknowledged payment (only
    /// in a build with the `test-faults` feature).
    #[cfg(feature = "test-faults")]
    #[arg(long, hide = true)]
    pub server_fault_drop_ack_every: Option<u64>,
}

fn parse_segment(text: &str) -> Result<Segment, String> {
    Segment::parse(text)
}

/// The longest --start-at may make a run wait.
const START_AT_AHEAD_MAX_MS: i64 = 3_600_000;

impl Args {
    #[cfg(feature = "test-faults")]
    fn faults(&self) -> Result<Faults, UsageError> {
        if self.server_fault_drop_ack_every == Some(0) {
            return Err(UsageError(
                "--server-fault-drop-ack-every must be at least 1".into(),
            ));
        }
        Ok(Faults {
            drop_ack_every: self.server_fault_drop_ack_every,
        })
    }

    #[cfg(not(feature = "test-faults"))]
    fn faults(&self) -> Result<Faults, UsageError> {
        Ok(Faults::default())
    }
}

pub async fn run(args: Args) -> anyhow::Result<u8> {
    let overrides = Overrides {
        users: args.users,
        ramp: args.ramp.clone(),
        run_time: args.run_time.clone(),
        target: args.target.clone(),
        instances: args.instances,
        redis: args.redis.as_deref().map(|m| match m {
            "spawn" => RedisMode::Spawn,
            _ => RedisMode::Existing,
        }),
        merchants: args.merchants,
        report_dir: args.report_dir.clone(),
        no_audit: args.no_audit,
        rate: args.rate.clone(),
        connections: args.connections,
        thresholds: args.thresholds.clone(),
        segment: args.segment,
    };
    let mut plan =
        profile::load(&args.profile, &overrides).map_err(|e| UsageError(e.to_string()))?;
    if args.prepare_only && plan.target_url.is_none() {
        return Err(UsageError(
            "--prepare-only makes merchants on a running API: give --target URL".into(),
        )
        .into());
    }
    if !args.prepare_only {
        plan.merchants_from = args.merchants_file.clone();
    }
    let start_at = match &args.start_at {
        Some(t) => {
            let at = paytool::clock::parse_rfc3339_utc(t).ok_or_else(|| {
                UsageError(format!(
                    "--start-at {t:?}: write a UTC time such as 2026-11-28T03:30:00Z"
                ))
            })?;
            if at - paytool::ids::now_ms() > START_AT_AHEAD_MAX_MS {
                return Err(
                    UsageError(format!("--start-at {t:?} is more than an hour ahead")).into(),
                );
            }
            Some(at)
        }
        None => None,
    };
    let faults = args.faults()?;
    let text = args.output == super::Output::Text;
    if args.find_max && !(args.find_max_factor > 1.0 && args.find_max_factor <= 10.0) {
        return Err(UsageError("--find-max-factor must be above 1 and at most 10".into()).into());
    }
    if args.find_max && args.find_max_bisect > 10 {
        return Err(UsageError("--find-max-bisect must be at most 10".into()).into());
    }
    let mut prepared = loadtest::prepare(plan, faults).await.map_err(classify)?;
    if args.prepare_only {
        let to = args.merchants_file.as_deref().expect("clap requires it");
        prepared.write_merchants(to).map_err(classify)?;
        prepared.finish_unrun().await.map_err(classify)?;
        if text {
            println!("merchants written to {} (mode 0600)", to.display());
        }
        return Ok(0);
    }
    prepared.start_at(start_at);
    if args.find_max {
        return find_max(prepared, &args, text).await;
    }
    if text {
        eprintln!(
            "paytool loadtest: {} against {}; reports in {}",
            args.profile.display(),
            prepared.target_description(),
            prepared.run_dir().display()
        );
    }
    let progress = text.then(|| spawn_progress(&prepared));
    let aside = super::stdout_aside::StdoutAside::new(!text);
    let result = prepared.execute().await;
    drop(aside);
    if let Some((task, bar)) = progress {
        task.abort();
        bar.finish_and_clear();
    }
    let summary = result.map_err(classify)?;
    if text {
        present::print_summary(&summary);
        println!("{}", present::verdict(&summary));
        println!("report: {}", summary_dir(&args, &summary.run_id).display());
    } else {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(summary.exit_code())
}

fn summary_dir(args: &Args, run_id: &str) -> PathBuf {
    let base = args
        .report_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports"));
    base.join(run_id)
}

fn classify(e: LoadtestError) -> anyhow::Error {
    match e {
        LoadtestError::Config(m) => UsageError(m).into(),
        LoadtestError::Unreachable(_) | LoadtestError::Start(_) => Failure {
            code: 3,
            message: e.to_string(),
        }
        .into(),
        other => Failure {
            code: loadtest::report::EXIT_RUN_BROKE,
            message: other.to_string(),
        }
        .into(),
    }
}

/// A bar on a terminal; a line every 5 s otherwise (CI logs).
fn spawn_progress(prepared: &loadtest::Prepared) -> (tokio::task::JoinHandle<()>, ProgressBar) {
    let total = prepared.duration();
    let live = prepared.live();
    let after = prepared.after_load();
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        ProgressBar::new(total.as_secs().max(1))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len}s  {msg}")
            .expect("a valid template"),
    );
    let handle_bar = bar.clone();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let (mut last_requests, mut last_at) = (0u64, Instant::now());
        let mut last_line = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if let Some(msg) = after_load_message(&after) {
                if tty {
                    handle_bar.set_message(msg);
                } else if last_line.elapsed() >= Duration::from_secs(5) {
                    eprintln!("  {msg}");
                    last_line = Instant::now();
                }
                continue;
            }
            let s = live.snapshot();
            let now = Instant::now();
            let rps = (s.requests - last_requests) as f64
                / now.duration_since(last_at).as_secs_f64().max(0.001);
            (last_requests, last_at) = (s.requests, now);
            let msg = format!(
                "{rps:>7.0} req/s  {} requests  {} errors  p99 {:.1} ms",
                s.requests,
                s.errors,
                s.p99.as_secs_f64() * 1000.0
            );
            let elapsed = started.elapsed().as_secs().min(total.as_secs());
            if tty {
                handle_bar.set_position(elapsed);
                handle_bar.set_message(msg);
            } else if last_line.elapsed() >= Duration::from_secs(5) {
                eprintln!("  [{elapsed:>4}/{}s] {msg}", total.as_secs());
                last_line = Instant::now();
            }
        }
    });
    (task, bar)
}

/// The line for the work after the load, None while the load runs.
fn after_load_message(progress: &loadtest::audit::Progress) -> Option<String> {
    use loadtest::audit::Phase;
    let (phase, done, total) = progress.get();
    Some(match phase {
        Phase::Load => return None,
        Phase::Resending => format!("audit: resending creates without an outcome {done}/{total}"),
        Phase::Checking => format!("audit: reading the run's payments back {done}/{total}"),
        Phase::Ledger => "audit: the target's ledger audit".to_string(),
        Phase::Reports => "writing reports".to_string(),
    })
}

async fn find_max(prepared: loadtest::Prepared, args: &Args, text: bool) -> anyhow::Result<u8> {
    let limits = SearchLimits {
        factor: args.find_max_factor,
        bisect_steps: args.find_max_bisect,
        rate_max_per_s: args.rate_max,
        ..Default::default()
    };
    if text {
        eprintln!(
            "paytool loadtest --find-max: {} against {}; reports in {}",
            args.profile.display(),
            prepared.target_description(),
            prepared.run_dir().display()
        );
    }
    let run_dir = prepared.run_dir().to_path_buf();
    let aside = super::stdout_aside::StdoutAside::new(!text);
    let result = loadtest::find_max::find_max(prepared, limits, |step| {
        if text {
            eprintln!(
                "  step {:>2}: {:>9.0}/s scheduled -> {:>9.1} req/s, p99 {:>8.2} ms, errors {:.2}%  {}",
                step.index,
                step.rate_per_s,
                step.achieved_rps,
                step.p99_ms,
                step.error_rate * 100.0,
                if step.passed { "pass".to_string() } else { format!("FAIL ({})", step.failed.join(", ")) }
            );
        }
    })
    .await
    .map_err(classify);
    drop(aside);
    let result = result?;
    let chart = run_dir.join(loadtest::search_html::SEARCH_HTML_FILE);
    std::fs::write(&chart, loadtest::search_html::render(&result))?;
    if text {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        t.set_header([
            "step",
            "scheduled/s",
            "achieved req/s",
            "p99 ms",
            "errors",
            "result",
        ]);
        for s in &result.steps {
            t.add_row([
                s.index.to_string(),
                format!("{:.0}", s.rate_per_s),
                format!("{:.1}", s.achieved_rps),
                s.p99_ms.to_string(),
                format!("{:.2}%", s.error_rate * 100.0),
                if s.passed {
                    "pass".into()
                } else {
                    format!("FAIL: {}", s.failed.join(", "))
                },
            ]);
        }
        println!("{t}");
        match (result.best_rate_per_s, &result.best_step_dir) {
            (Some(rate), Some(dir)) if result.confirmed() => println!(
                "highest rate meeting every threshold and the audit, confirmed by a second run: {rate:.0}/s ({:.1} successful req/s); report: {}",
                result.best_achieved_rps.unwrap_or_default(),
                run_dir.join(dir).display()
            ),
            (Some(rate), _) => println!(
                "FAILED: {rate:.0}/s passed once but not its confirmation run: the target is not steady at that rate"
            ),
            _ => println!(
                "FAILED: no step passed, down to {:.0}/s",
                result.steps.last().map_or(0.0, |s| s.rate_per_s)
            ),
        }
        println!(
            "search: {} (chart: {})",
            run_dir.join("find-max.json").display(),
            chart.display()
        );
    } else {
        println!("{}", serde_json::to_string_pretty(&result)?);
    }
    Ok(if result.confirmed() { 0 } else { 1 })
}
