use super::{Failure, Output, UsageError};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use paytool::profile::shards;
use paytool::store::layout::{Layout, Shard};
use paytool::store::postgres::layout_ops::{self, LayoutOpError, Plan};
use paytool::store::postgres::moves::{
    self, Entry, Event, MoveOptions, MovePlan, MoveReport, Phase, Progress,
};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;

const EXAMPLES: &str = "\
Examples:
  paytool shard plan   -l profiles/shards/two.toml    # what apply would do
  paytool shard apply  -l profiles/shards/two.toml    # migrate, set owners, record
  paytool shard status -l profiles/shards/two.toml --output json
  paytool shard move   -l profiles/shards/three.toml --dry-run  # what would move
  paytool shard move   -l profiles/shards/three.toml            # move it, online

A layout (profiles/shards/*.toml) names PostgreSQL shards (URLs may use ${ENV_VAR} and
${ENV_VAR:-default}; passwords are never printed) and the bucket ranges each owns, out
of 1,024 fixed buckets. A layout with a gap, an overlap, an unknown shard, another
bucket count, or a shard that cannot be reached is refused before anything changes.
`apply` never changes the owner of a bucket that holds data: `move` does, while the
API keeps taking payments. Per range: PostgreSQL logical replication copies it to its
new shard and streams the changes (the source needs wal_level = logical), a short write
fence (a 2 s lease; writes to the range wait, never fail, unless it lasts past 2 s) lets
both sides be compared (row counts, checksums, the ledger audit), a second one switches
the owner, and the old copy is deleted in batches. Killed or cut off at any point, run
it again: it resumes from the journal on the shards (`status` shows it) and finishes.
A shard's URL may name its primary and standbys (postgres://u@h1:5432,h2:5432/db?
target_session_attrs=read-write): every command, and `serve`, uses whichever host takes
writes, so a promoted standby is found without a change. `status` lists each shard's
standbys as its primary sees them: sync or async, state, and lag in bytes and ms.

Exit codes: `plan` follows Terraform's -detailed-exitcode: 0 no change, 1 any error (a
bad layout or an unreachable shard included), 2 changes pending. `apply`, `move` and
`status`: 0 success, 1 failure (an unreachable shard, a bucket that holds data, a move
that stopped: run it again to resume), 2 a bad layout.";

const MOVE_HELP: &str = "\
Examples:
  paytool shard move -l profiles/shards/three.toml --dry-run   # ranges, rows, expected fence
  paytool shard move -l profiles/shards/three.toml             # two shards -> three, online
  paytool shard move -l profiles/shards/three.toml --output json

Every bucket range whose owner differs between what the shards record and the layout
moves while the API keeps taking payments, one range after another (`queued` until its
turn):
  copying      PostgreSQL logical replication (a publication with a row filter on the
               range, on the source; a subscription on the target) copies the rows;
  catching_up  the changes made meanwhile stream across until a mark written on the
               source reaches the target within 200 ms;
  verifying    a short write fence; both sides' snapshots; the fence lifted; row counts
               and per-row checksums of every table compared, the ledger audit run over
               the range on the target;
  switching    a second short fence; the source gives the range away and the journal
               says `switched` in one transaction; the target takes it;
  switched     the stream stopped, the source's frozen copy compared again with the
               target as of the switch, the ledger audit again;
  cleaning     the source's copy deleted in batches of 5,000 rows.

The fence: writes to the moving range only wait (the API retries them for up to 3 s,
then answers 503 `shard_moving` with Retry-After); reads and every other bucket go on.
A fence is a 2 s lease on the source's clock: a move killed while holding one stops
fencing by itself. Each fence lasts a few round trips (tens of ms here).

Needs: wal_level = logical on the shards that give buckets away, a role that may
replicate, and the target server able to reach the source's URL as written in the
layout. API instances started on an older layout follow the move onto new shards by
reading the layout the shards record (their environment must resolve its URLs).

Resuming: killed, or cut off from a shard, at any point, run the same command again: it
takes each range up from its journal (on the source shard; `paytool shard status` shows
it) and finishes it. A second run after a finished move does nothing. An unfinished move
must be finished with its own layout before another starts.

Exit codes: 0 moved (or nothing to move), 1 a move stopped (what was left is said; run
it again to resume), 2 a bad layout.";

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
    /// Per shard: reachable, layout version, buckets, merchants, payments, size, writes/s, skew; and moves under way
    Status {
        #[command(flatten)]
        common: Common,
        /// Count rows on a replica the layout lists for the shard when it is at most this
        /// far behind its primary (or caught up); else on the primary. 0 counts on the
        /// primary always (e.g. "1s", "0")
        #[arg(long, env = "PAYTOOL_REPLICA_MAX_LAG", default_value = "1s",
              value_parser = humantime::parse_duration)]
        replica_max_lag: std::time::Duration,
    },
    /// Move the buckets whose owner the layout changes, online; resumable
    #[command(after_help = MOVE_HELP)]
    Move {
        #[command(flatten)]
        common: Common,
        /// Print the ranges, their rows and the expected fence; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Testing only: hold still in this phase (queued, copying, catching_up,
        /// verifying, switching, switched) so the move can be killed there
        #[arg(long, hide = true, value_parser = parse_phase)]
        test_pause_in: Option<Phase>,
    },
}

fn parse_phase(text: &str) -> Result<Phase, String> {
    Phase::parse(text).ok_or_else(|| format!("{text:?} is not a move phase"))
}

pub async fn run(args: Args) -> anyhow::Result<u8> {
    match args.command {
        Command::Plan { common } => {
            // Any error is 1 for plan (2 means changes pending).
            let layout = shards::load(&common.layout).map_err(|e| Failure {
                code: 1,
                message: e.to_string(),
            })?;
            let extra = dropped_shards(&layout).await.map_err(|e| Failure {
                code: 1,
                message: e.message,
            })?;
            let plan = layout_ops::plan(&layout, &extra)
                .await
                .map_err(|e| Failure {
                    code: 1,
                    message: e.to_string(),
                })?;
            show_plan(&plan, common.output, "would")?;
            Ok(if plan.is_empty() { 0 } else { 2 })
        }
        Command::Apply { common } => {
            let layout = load(&common.layout)?;
            let extra = dropped_shards(&layout).await?;
            let plan = layout_ops::apply(&layout, &extra).await.map_err(failure)?;
            show_plan(&plan, common.output, "applied")?;
            Ok(0)
        }
        Command::Status {
            common,
            replica_max_lag,
        } => {
            let layout = load(&common.layout)?;
            status(&layout, replica_max_lag, common.output).await
        }
        Command::Move {
            common,
            dry_run,
            test_pause_in,
        } => {
            let layout = load(&common.layout)?;
            let extra = dropped_shards(&layout).await?;
            if dry_run {
                let plan = moves::plan(&layout, &extra).await.map_err(|e| Failure {
                    code: 1,
                    message: e.to_string(),
                })?;
                show_move_plan(&plan, common.output)?;
                return Ok(0);
            }
            let bars = Bars::new(common.output == Output::Text && std::io::stderr().is_terminal());
            let options = MoveOptions {
                pause_in: test_pause_in,
            };
            let report = moves::run(&layout, &extra, &options, &bars).await;
            bars.finish();
            let report = report.map_err(|e| Failure {
                code: 1,
                message: format!(
                    "{e}\nNothing acknowledged is lost: run the same command again to resume \
                     (`paytool shard status` shows where each range stands)."
                ),
            })?;
            show_move_report(&report, common.output)?;
            Ok(0)
        }
    }
}

/// A progress bar per range on a terminal; otherwise a line per phase and fence.
struct Bars {
    multi: Option<indicatif::MultiProgress>,
    bars: Mutex<HashMap<String, indicatif::ProgressBar>>,
}

impl Bars {
    fn new(tty: bool) -> Bars {
        Bars {
            multi: tty.then(indicatif::MultiProgress::new),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn finish(&self) {
        for bar in self.bars.lock().unwrap_or_else(|p| p.into_inner()).values() {
            bar.finish();
        }
    }
}

fn range_name(e: &Entry) -> String {
    format!("{:>4}-{:<4} {} -> {}", e.first, e.last, e.source, e.target)
}

impl Progress for Bars {
    fn event(&self, e: &Entry, event: Event) {
        let Some(multi) = &self.multi else {
            // Lines, for logs: phases and fences, not every poll.
            match event {
                Event::Phase => eprintln!("{}: {}", range_name(e), e.phase.as_str()),
                Event::Fence { ms, switched } => eprintln!(
                    "{}: write fence held {ms} ms{}",
                    range_name(e),
                    if switched { " (switched)" } else { "" }
                ),
                _ => {}
            }
            return;
        };
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        let bar = bars.entry(e.id.clone()).or_insert_with(|| {
            let bar = multi.add(indicatif::ProgressBar::new(e.rows.max(0) as u64));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:24}] {pos}/{len} rows {per_sec:>10} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(range_name(e));
            bar
        });
        match event {
            Event::Phase => bar.set_message(e.phase.as_str().to_string()),
            Event::Copied {
                rows,
                total,
                errors,
            } => {
                bar.set_length(total);
                bar.set_position(rows);
                bar.set_message(if errors > 0 {
                    format!("copying ({errors} worker errors, retrying)")
                } else {
                    "copying".into()
                });
            }
            Event::Lag { mark_ms, wal_bytes } => bar.set_message(format!(
                "catching up: lag {mark_ms} ms, {wal_bytes} WAL bytes"
            )),
            Event::Fence { ms, switched } => bar.set_message(format!(
                "{} (fence {ms} ms)",
                if switched {
                    "switched"
                } else {
                    e.phase.as_str()
                }
            )),
            Event::Cleaned { rows } => bar.set_message(format!("cleaning: {rows} rows deleted")),
        }
    }
}

fn show_move_plan(plan: &MovePlan, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(plan)?);
        return Ok(());
    }
    if plan.is_empty() {
        println!(
            "Nothing to move: every bucket is where layout {} puts it.",
            plan.layout
        );
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(["buckets", "from", "to", "rows", "bytes", "state"]);
    for r in &plan.ranges {
        t.add_row([
            format!("{}-{}", r.first, r.last),
            r.source.clone(),
            r.target.clone(),
            r.rows.to_string(),
            r.bytes.to_string(),
            r.resumes
                .map_or("new".to_string(), |p| format!("resumes ({})", p.as_str())),
        ]);
    }
    for (first, last, to) in &plan.unowned {
        t.add_row([
            format!("{first}-{last}"),
            "(none)".into(),
            to.clone(),
            "0".into(),
            "0".into(),
            "given, no copy".into(),
        ]);
    }
    println!("{t}");
    println!(
        "Dry run for layout {} version {}: {} range(s) to move. Expected write fence per range: about {:.0} ms (two per range, from round trips measured now), never more than {} ms (the lease); merchants on other buckets are not fenced.",
        plan.layout,
        plan.version,
        plan.ranges.len(),
        plan.expected_fence_ms,
        plan.fence_bound_ms
    );
    Ok(())
}

fn show_move_report(report: &MoveReport, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    if report.ranges.is_empty() && report.unowned.is_empty() {
        println!(
            "Nothing to move: every bucket is where layout {} puts it.",
            report.layout
        );
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header([
        "buckets",
        "from",
        "to",
        "rows",
        "copy rows/s",
        "fences ms",
        "checked",
        "audited",
        "cleaned",
    ]);
    for r in &report.ranges {
        t.add_row([
            format!("{}-{}", r.first, r.last),
            r.source.clone(),
            r.target.clone(),
            r.rows.to_string(),
            r.copy_rows_per_s.map_or("-".into(), |v| format!("{v:.0}")),
            r.fences_ms
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            match (r.checked_before_switch.is_empty(), r.checked_after_switch) {
                (false, true) => "before+after".into(),
                (false, false) => "before".into(),
                (true, true) => "after".into(),
                (true, false) => "earlier run".into(),
            },
            format!("{} payments", r.audited_payments),
            r.cleaned_rows.to_string(),
        ]);
    }
    println!("{t}");
    println!(
        "Moved {} range(s) to layout {} version {} in {:.1} s; longest write fence {} ms.",
        report.ranges.len(),
        report.layout,
        report.version,
        report.seconds,
        report.fence_ms_max
    );
    Ok(())
}

/// Shards the layout the shards record names and `layout` does not: they may still own
/// buckets (a move from four shards back to two must move theirs), so every command
/// reads them too. Their URLs are read from this process's environment.
async fn dropped_shards(layout: &Layout) -> Result<Vec<Shard>, Failure> {
    let mut out: Vec<Shard> = Vec::new();
    for text in layout_ops::recorded_texts(layout).await {
        let recorded = shards::from_recorded(&text, &|var| std::env::var(var).ok())
            .map_err(|e| Failure {
                code: 1,
                message: format!(
                    "the shards record a layout naming shards this one may drop, and it cannot be read here: {e}"
                ),
            })?;
        for s in recorded.shards {
            if layout.shard_index(&s.name).is_none() && !out.iter().any(|o| o.name == s.name) {
                out.push(s);
            }
        }
    }
    Ok(out)
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

/// Whether the layout lists read replicas for shard `name`.
fn layout_replicas(layout: &Layout, name: &str) -> bool {
    layout
        .shards
        .iter()
        .any(|s| s.name == name && !s.replicas.is_empty())
}

/// "s0_standby sync streaming, 0 B / 0 ms" per standby, one a line; "none".
fn replicas_cell(replicas: &[layout_ops::ReplicaStatus]) -> String {
    if replicas.is_empty() {
        return "none".into();
    }
    replicas
        .iter()
        .map(|r| {
            format!(
                "{} {} {}, {} B / {:.0} ms",
                r.name, r.sync_state, r.state, r.lag_bytes, r.lag_ms
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn status(
    layout: &Layout,
    replica_max_lag: std::time::Duration,
    output: Output,
) -> anyhow::Result<u8> {
    let (rows, under_way) = layout_ops::status(layout, replica_max_lag).await;
    let down = rows.iter().filter(|r| !r.reachable).count();
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "shards": rows,
                "moves": under_way,
            }))?
        );
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
            "replicas (lag)",
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
                replicas_cell(&r.replicas),
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
        for r in rows.iter().filter(|r| r.reachable) {
            match r.counts_lag_ms {
                Some(lag) => println!(
                    "{}: counted on replica {} ({lag:.0} ms behind).",
                    r.name, r.counts_from
                ),
                None if !layout_replicas(layout, &r.name) => {}
                None => println!(
                    "{}: counted on the primary (no replica within {}).",
                    r.name,
                    humantime::format_duration(replica_max_lag)
                ),
            }
        }
        for m in &under_way {
            println!(
                "Move under way: buckets {}-{} {} -> {}, phase {} (for {} s){}",
                m.first,
                m.last,
                m.source,
                m.target,
                m.phase.as_str(),
                (paytool::ids::now_ms() - m.started_ms) / 1000,
                m.error
                    .as_deref()
                    .map_or(String::new(), |e| format!("; stopped: {e}"))
            );
        }
        for r in rows.iter().filter(|r| r.error.is_some()) {
            eprintln!("{}: {}", r.name, r.error.as_deref().unwrap_or_default());
        }
    }
    Ok(if down > 0 { 1 } else { 0 })
}
