use super::{Failure, Output, UsageError};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use paytool::profile::shards;
use paytool::store::layout::Layout;
use paytool::store::postgres::layout_ops::{self, LayoutOpError, Plan};
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  paytool shard plan   -l profiles/shards/two.toml    # what apply would do
  paytool shard apply  -l profiles/shards/two.toml    # migrate, set owners, record
  paytool shard status -l profiles/shards/two.toml --output json

A layout (profiles/shards/*.toml) names PostgreSQL shards (URLs may use ${ENV_VAR} and
${ENV_VAR:-default}; passwords are never printed) and the bucket ranges each owns, out
of 1,024 fixed buckets. A layout with a gap, an overlap, an unknown shard, another
bucket count, or a shard that cannot be reached is refused before anything changes.
`apply` never changes the owner of a bucket that holds data: that is `paytool shard
move` (not built yet).

Exit codes: `plan` follows Terraform's -detailed-exitcode: 0 no change, 1 any error (a
bad layout or an unreachable shard included), 2 changes pending. `apply` and `status`:
0 success, 1 failure (an unreachable shard, a bucket that holds data), 2 a bad layout.";

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Debug)]
pub struct Common {
    /// The layout file (profiles/shards/*.toml)
    #[arg(long, short = 'l', env = "PAYTOOL_LAYOUT")]
    pub layout: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Show the migrations and bucket owner changes `apply` would make; exit 2 if any
    Plan {
        #[command(flatten)]
        common: Common,
    },
    /// Migrate every shard, give empty buckets to their owner, record the layout
    Apply {
        #[command(flatten)]
        common: Common,
    },
    /// Per shard: reachable, layout version, buckets, merchants, payments, size, writes/s, skew
    Status {
        #[command(flatten)]
        common: Common,
    },
}

pub async fn run(args: Args) -> anyhow::Result<u8> {
    match args.command {
        Command::Plan { common } => {
            // Any error is 1 for plan (2 means changes pending).
            let layout = shards::load(&common.layout).map_err(|e| Failure {
                code: 1,
                message: e.to_string(),
            })?;
            let plan = layout_ops::plan(&layout).await.map_err(|e| Failure {
                code: 1,
                message: e.to_string(),
            })?;
            show_plan(&plan, common.output, "would")?;
            Ok(if plan.is_empty() { 0 } else { 2 })
        }
        Command::Apply { common } => {
            let layout = load(&common.layout)?;
            let plan = layout_ops::apply(&layout).await.map_err(failure)?;
            show_plan(&plan, common.output, "applied")?;
            Ok(0)
        }
        Command::Status { common } => {
            let layout = load(&common.layout)?;
            status(&layout, common.output).await
        }
    }
}

fn load(path: &std::path::Path) -> Result<Layout, UsageError> {
    shards::load(path).map_err(|e| UsageError(e.to_string()))
}

fn failure(e: LayoutOpError) -> Failure {
    Failure {
        code: 1,
        message: e.to_string(),
    }
}

fn show_plan(plan: &Plan, output: Output, verb: &str) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(plan)?);
        return Ok(());
    }
    if plan.is_empty() {
        println!(
            "No changes: every shard is migrated and records layout {} version {}.",
            plan.layout, plan.version
        );
        return Ok(());
    }
    println!(
        "Layout {} version {} ({}):",
        plan.layout,
        plan.version,
        &plan.digest[..12]
    );
    for s in &plan.shards {
        for m in &s.migrations {
            println!("  + {:<6} migration {m}", s.name);
        }
        if s.record_layout {
            println!("  ~ {:<6} record layout version {}", s.name, plan.version);
        }
    }
    for c in &plan.owner_changes {
        let from = c.from.as_deref().unwrap_or("(none)");
        println!(
            "  ~ buckets {:>4}-{:<4} {from} -> {}   {} rows, {} bytes{}",
            c.first,
            c.last,
            c.to,
            c.rows,
            c.bytes,
            if c.rows > 0 {
                "  (needs `paytool shard move`)"
            } else {
                ""
            }
        );
    }
    let migrations: usize = plan.shards.iter().map(|s| s.migrations.len()).sum();
    println!(
        "Plan {verb}: {migrations} migration(s), {} bucket range(s) changing owner.",
        plan.owner_changes.len()
    );
    Ok(())
}

async fn status(layout: &Layout, output: Output) -> anyhow::Result<u8> {
    let rows = layout_ops::status(layout).await;
    let down = rows.iter().filter(|r| !r.reachable).count();
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED).set_header([
            "shard",
            "reachable",
            "layout",
            "buckets",
            "merchants",
            "payments",
            "size",
            "writes/s",
            "share",
        ]);
        for r in &rows {
            t.add_row([
                r.name.clone(),
                if r.reachable {
                    "yes".into()
                } else {
                    "NO".into()
                },
                match (r.layout_version, r.layout_matches) {
                    (Some(v), true) => format!("v{v}"),
                    (Some(v), false) => format!("v{v} (differs)"),
                    (None, _) => "none".into(),
                },
                r.buckets.to_string(),
                r.merchants.to_string(),
                r.payments.to_string(),
                format!("{:.1} MiB", r.size_bytes as f64 / (1024.0 * 1024.0)),
                format!("{:.0}", r.writes_per_s),
                format!("{:.0}%", r.payments_share * 100.0),
            ]);
        }
        println!("{t}");
        if let Some(hot) = rows
            .iter()
            .filter(|r| r.payments > 0)
            .max_by(|a, b| a.payments_share.total_cmp(&b.payments_share))
        {
            println!(
                "Skew: the hottest shard, {}, holds {:.0}% of payments (even would be {:.0}%).",
                hot.name,
                hot.payments_share * 100.0,
                100.0 / rows.len() as f64
            );
        }
        for r in rows.iter().filter(|r| r.error.is_some()) {
            eprintln!("{}: {}", r.name, r.error.as_deref().unwrap_or_default());
        }
    }
    Ok(if down > 0 { 1 } else { 0 })
}
