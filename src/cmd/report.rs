use super::{Output, present};
use paytool::loadtest::report::RunSummary;
use serde::Serialize;
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
        #[arg(long, default_value_t = 0.10)]
        p99_tolerance: f64,
        /// Allowed absolute growth of the error rate (0.005 = half a percentage point)
        #[arg(long, default_value_t = 0.005)]
        error_rate_tolerance: f64,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

#[derive(Serialize)]
struct DiffRow {
    name: String,
    old_p99_ms: Option<f64>,
    new_p99_ms: Option<f64>,
    old_error_rate: Option<f64>,
    new_error_rate: Option<f64>,
    old_rps: Option<f64>,
    new_rps: Option<f64>,
    regression: Option<String>,
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
            let (a, b) = (read(&old)?, read(&new)?);
            let mut names: Vec<&str> = a
                .requests
                .iter()
                .chain(&b.requests)
                .map(|r| r.name.as_str())
                .collect();
            names.sort();
            names.dedup();
            let rows: Vec<DiffRow> = names
                .into_iter()
                .map(|name| {
                    let o = a.requests.iter().find(|r| r.name == name);
                    let n = b.requests.iter().find(|r| r.name == name);
                    let regression = match (o, n) {
                        (Some(o), Some(n))
                            if n.p99_ms > o.p99_ms * (1.0 + p99_tolerance)
                                && n.p99_ms - o.p99_ms > 0.1 =>
                        {
                            Some(format!("p99 {} -> {} ms", o.p99_ms, n.p99_ms))
                        }
                        (Some(o), Some(n))
                            if n.error_rate > o.error_rate + error_rate_tolerance =>
                        {
                            Some(format!(
                                "error rate {:.2}% -> {:.2}%",
                                o.error_rate * 100.0,
                                n.error_rate * 100.0
                            ))
                        }
                        _ => None,
                    };
                    DiffRow {
                        name: name.to_string(),
                        old_p99_ms: o.map(|r| r.p99_ms),
                        new_p99_ms: n.map(|r| r.p99_ms),
                        old_error_rate: o.map(|r| r.error_rate),
                        new_error_rate: n.map(|r| r.error_rate),
                        old_rps: o.map(|r| r.rps),
                        new_rps: n.map(|r| r.rps),
                        regression,
                    }
                })
                .collect();
            let regressed = rows.iter().any(|r| r.regression.is_some());
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "regressed": regressed, "requests": rows })
                    )?
                ),
                Output::Text => {
                    let mut t = comfy_table::Table::new();
                    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
                    t.set_header([
                        "request",
                        "rps old -> new",
                        "p99 ms old -> new",
                        "errors old -> new",
                        "regression",
                    ]);
                    let f =
                        |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
                    let pct = |v: Option<f64>| {
                        v.map(|x| format!("{:.2}%", x * 100.0))
                            .unwrap_or_else(|| "-".into())
                    };
                    for r in &rows {
                        t.add_row([
                            r.name.clone(),
                            format!("{} -> {}", f(r.old_rps), f(r.new_rps)),
                            format!("{} -> {}", f(r.old_p99_ms), f(r.new_p99_ms)),
                            format!("{} -> {}", pct(r.old_error_rate), pct(r.new_error_rate)),
                            r.regression.clone().unwrap_or_default(),
                        ]);
                    }
                    println!("{t}");
                    println!(
                        "{}",
                        if regressed {
                            "REGRESSED"
                        } else {
                            "no regression beyond the tolerance"
                        }
                    );
                }
            }
            Ok(if regressed { 1 } else { 0 })
        }
    }
}
