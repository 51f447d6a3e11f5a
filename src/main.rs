//! `paytool`: parse the command line, run the subcommand, map errors to exit codes.

mod cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// glibc's malloc took a fifth of the API's CPU, and its arena locks put the shard writer
/// to sleep when it freed what a runtime thread allocated; mimalloc frees across threads
/// without a lock (ARCHITECTURE.md, "The allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ABOUT: &str = "Ops and load-testing toolkit for payment APIs";

const LONG_ABOUT: &str = "\
Ops and load-testing toolkit for payment APIs.

paytool ships a reference payment API (`paytool serve`): merchants with API keys,
payments with idempotency keys, authorize / capture / refund / cancel, and a
double-entry ledger whose invariants are checked on every write and by an audit.
`paytool loadtest` drives Goose scenarios described by TOML profiles against it (or
any URL), gates on thresholds, and audits the money afterwards. `paytool scale`
plans and applies the AWS Auto Scaling group that runs the API, sized from a run.";

const AFTER_HELP: &str = "\
Examples:
  paytool loadtest                                   # smoke test against the embedded API
  paytool loadtest -p profiles/ci-gate.toml          # the CI capacity gate
  paytool report diff reports/OLD reports/NEW        # a baseline gate
  paytool serve --listen 127.0.0.1:8080 --data-dir ./data
  paytool completions bash > ~/.local/share/bash-completion/completions/paytool

  paytool scale plan -p profiles/scale/payment-api-group.toml   # Terraform-style
  paytool shard apply --layout profiles/shards/two.toml          # PostgreSQL shards

Not built yet: shard move, cache (see the README).

Exit codes: 0 success; 1 failure (a threshold, the audit, a regression, an apply the
group did not keep, a run-time error); 2 usage or configuration error (a bad flag, profile
or run directory, named); 3 (loadtest) target unreachable or run not started.
`scale plan` follows Terraform's -detailed-exitcode instead: 0 no change, 1 any error
(an invalid profile included), 2 changes pending.";

#[derive(Parser, Debug)]
#[command(name = "paytool", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
struct Cli {
    /// Log filter for stderr (tracing's EnvFilter syntax), e.g. "debug" or "paytool=trace"
    #[arg(long, global = true, env = "PAYTOOL_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a load test from a profile: live progress, reports, thresholds, money audit
    Loadtest(cmd::loadtest::Args),
    /// Show a run's summary again, or diff two runs (a baseline gate)
    Report(cmd::report::Args),
    /// Plan, apply, inspect, size and destroy the API's AWS Auto Scaling group
    Scale(cmd::scale::Args),
    /// Run the reference payment API on the embedded SQLite store or PostgreSQL shards
    Serve(cmd::serve::Args),
    /// Plan, apply, move and inspect a PostgreSQL shard layout
    Shard(cmd::shard::Args),
    /// Inspect and flush paytool's keys in the Redis cache (`serve --redis` fills it)
    Cache(cmd::cache::Args),
    /// Print shell completions
    Completions(cmd::completions::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(parse_failure_code(&e));
        }
    };
    // The AWS credential chain logs each provider it tries; its outcome is our error message.
    let filter = format!("aws_config=error,{}", cli.log);
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Completions(args) => cmd::completions::run::<Cli>(args).map(|()| 0),
        Command::Serve(args) => runtime()
            .and_then(|rt| rt.block_on(cmd::serve::run(args)))
            .map(|()| 0),
        Command::Loadtest(args) => runtime().and_then(|rt| rt.block_on(cmd::loadtest::run(args))),
        Command::Report(args) => cmd::report::run(args),
        Command::Scale(args) => runtime().and_then(|rt| rt.block_on(cmd::scale::run(args))),
        Command::Shard(args) => runtime().and_then(|rt| rt.block_on(cmd::shard::run(args))),
        Command::Cache(args) => runtime().and_then(|rt| rt.block_on(cmd::cache::run(args))),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("paytool: error: {e:#}");
            if e.downcast_ref::<cmd::UsageError>().is_some() {
                ExitCode::from(2)
            } else if let Some(f) = e.downcast_ref::<cmd::Failure>() {
                ExitCode::from(f.code)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// clap's own code (0 for help and version, 2 for a bad command line), except for
/// `scale plan` and `shard plan`, whose 2 means "changes pending" (Terraform's -detailed-exitcode): a
/// plan that cannot even parse its command line is an error, 1.
fn parse_failure_code(e: &clap::Error) -> u8 {
    let code = e.exit_code().clamp(0, 255) as u8;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let plan = args
        .windows(2)
        .any(|w| (w[0] == "scale" || w[0] == "shard") && w[1] == "plan");
    if code == 2 && plan { 1 } else { code }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
