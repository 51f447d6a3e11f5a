//! `paytool`: parse the command line, run the subcommand, map errors to exit codes.

mod cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

const ABOUT: &str = "Ops and load-testing toolkit for payment APIs";

const LONG_ABOUT: &str = "\
Ops and load-testing toolkit for payment APIs.

paytool ships a reference payment API (`paytool serve`): merchants with API keys,
payments with idempotency keys, authorize / capture / refund / cancel, and a
double-entry ledger whose invariants are checked on every write and by an audit.";

const AFTER_HELP: &str = "\
Examples:
  paytool serve --listen 127.0.0.1:8080 --data-dir ./data
  paytool completions bash > ~/.local/share/bash-completion/completions/paytool

Not built yet: loadtest, shard, cache, scale (see the README).

Exit codes: 0 success, 1 failure at run time, 2 usage or configuration error.";

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
    /// Run the reference payment API on the embedded SQLite store
    Serve(cmd::serve::Args),
    /// Print shell completions
    Completions(cmd::completions::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Completions(args) => cmd::completions::run::<Cli>(args),
        Command::Serve(args) => runtime().and_then(|rt| rt.block_on(cmd::serve::run(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paytool: error: {e:#}");
            if e.downcast_ref::<cmd::UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
