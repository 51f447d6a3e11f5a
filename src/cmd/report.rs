use super::{Output, present};
use paytool::loadtest::diff::{self, RunDiff, Tolerances};
use paytool::loadtest::report::RunSummary;
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  paytool report show reports/20261125-013000-smoke
  paytool report diff reports/BASELINE reports/NEW --p99-tolerance 0.10
  paytool report diff OLD NEW --output json

`diff` exits 1 when any request's p99 grew by more than the tolerance (a fraction: 0.10
is 10%) or its error rate grew by more than --error-rate-tolerance (absolute), so a CI
job can gate on the last baseline. Exit codes: 0 fine, 1 regression, 2 unreadable run.";

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
            output,
        } => {
            let tolerances = Tolerances {
                p99_growth_max: p99_tolerance,
                error_rate_growth_max: error_rate_tolerance,
            };
            let d = diff::diff(&read(&old)?, &read(&new)?, tolerances);
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&d)?),
                Output::Text => print_diff(&d),
            }
            Ok(if d.regressed { 1 } else { 0 })
        }
    }
}

fn print_diff(d: &RunDiff) {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header([
        "request",
        "rps old -> new",
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
            format!("{} -> {}", f(r.old_rps), f(r.new_rps)),
            format!("{} -> {}", f(r.old_p99_ms), f(r.new_p99_ms)),
            format!("{} -> {}", pct(r.old_error_rate), pct(r.new_error_rate)),
            r.regression
                .as_ref()
                .map(|g| g.to_string())
                .unwrap_or_default(),
        ]);
    }
    println!("{t}");
    println!(
        "{}",
        if d.regressed {
            "REGRESSED"
        } else {
            "no regression beyond the tolerance"
        }
    );
}
