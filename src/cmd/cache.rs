use super::{Failure, Output, UsageError};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use paytool::cache::PREFIX_DEFAULT;
use paytool::cache::admin::{Admin, AdminError, Stats};
use paytool::cache::seed::{SEED_REPLICA_LAG_MAX, SeedError, Sink, seed};
use paytool::cache::verify::{VerifyReport, verify};
use paytool::store::export::{Export, ExportError};
use paytool::store::postgres::export::PgExport;
use paytool::store::sqlite::export::SqliteExport;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  paytool cache seed --redis redis://127.0.0.1:6379/ --data-dir ./data --since 24h
  paytool cache seed --redis redis://127.0.0.1:6379/ --layout profiles/shards/two.toml
  paytool cache verify --redis redis://127.0.0.1:6379/ --data-dir ./data --sample 10000
  paytool cache stats --redis redis://127.0.0.1:6379/ --api http://127.0.0.1:8080
  paytool cache flush --redis redis://127.0.0.1:6379/ --yes

Only paytool's keys are touched: those under the prefix (`paytool:` unless --prefix or
PAYTOOL_REDIS_PREFIX says otherwise), found with SCAN a thousand at a time; never KEYS,
FLUSHALL or FLUSHDB. `paytool serve --redis` fills the cache as it serves (README: \"Redis
in front of the store\"); `seed` fills it before traffic arrives and `verify` proves it
matches the store. Both read the store read-only (a live API's data dir or layout):
nothing is locked or written there.

seed writes what the API caches, with the API's TTLs: an entry per accepted API key
(lives 5 s, the bound on a revoked key) and per payment created since --since (10 min:
a change through the API replaces its entry at once, so this bounds only a change made
behind the API's back), never over an entry already there. Idempotent answers are
cached by the API as it commits them.

verify reports mismatches (an entry the API would serve that differs from the store)
and stale entries (for something the store no longer has); each finding is read again
after 200 ms so a write in flight is not reported.

Exit codes: 0 success (verify: no mismatch, nothing stale), 1 mismatches or failure
(Redis or the store unreachable), 2 bad input (a bad URL or layout, flush without --yes
when stdin is not a terminal).";

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Debug)]
pub struct Common {
    /// The Redis URL (redis://[:password@]host:port/db)
    #[arg(long, env = "PAYTOOL_REDIS_URL", hide_env_values = true)]
    pub redis: String,
    /// The prefix of paytool's keys
    #[arg(long, env = "PAYTOOL_REDIS_PREFIX", default_value = PREFIX_DEFAULT)]
    pub prefix: String,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

/// The store to read: a data dir (the embedded API) or a layout (PostgreSQL shards).
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Source {
    /// The embedded API's data dir, read-only (a running API may use it)
    #[arg(long, env = "PAYTOOL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A shard layout (`paytool serve --layout`): every shard, read-only
    #[arg(long, env = "PAYTOOL_LAYOUT")]
    pub layout: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Warm Redis from the store: API keys and recent payments, pipelined
    Seed {
        /// The Redis URL (redis://[:password@]host:port/db); not needed with
        /// --dry-run or --protocol-out
        #[arg(long, env = "PAYTOOL_REDIS_URL", hide_env_values = true,
              required_unless_present_any = ["dry_run", "protocol_out"])]
        redis: Option<String>,
        /// The prefix of paytool's keys
        #[arg(long, env = "PAYTOOL_REDIS_PREFIX", default_value = PREFIX_DEFAULT)]
        prefix: String,
        #[command(flatten)]
        source: Source,
        /// Payments created this long ago or later (e.g. 30m, 24h, 7d)
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: Duration,
        /// Count what would be written; write nothing
        #[arg(long)]
        dry_run: bool,
        /// Write the commands in Redis's protocol to FILE instead of sending them (for
        /// `redis-cli --pipe`, e.g. through a bastion)
        #[arg(long, value_name = "FILE", conflicts_with = "dry_run")]
        protocol_out: Option<PathBuf>,
        /// With --layout: read each shard's payments from a replica the layout lists when
        /// it is at most this far behind its primary (capped at 1s), else from the
        /// primary; 0 reads primaries only. API keys always come from the primary
        #[arg(long, env = "PAYTOOL_REPLICA_MAX_LAG", default_value = "1s",
              value_parser = humantime::parse_duration)]
        replica_max_lag: Duration,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Compare every cached entry (or a sample) with the store; exit 1 on any difference
    Verify {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        source: Source,
        /// Check only the first N keys SCAN returns (spread over the keyspace)
        #[arg(long, value_name = "N")]
        sample: Option<u64>,
    },
    /// Remove paytool's keys (SCAN + UNLINK on the prefix); asks first unless --yes
    Flush {
        #[command(flatten)]
        common: Common,
        /// Do not ask
        #[arg(long)]
        yes: bool,
    },
    /// paytool's keys by kind, their memory and TTL spread, and a running API's hit ratio
    Stats {
        #[command(flatten)]
        common: Common,
        /// A running `paytool serve --redis` (its /metrics gives the hit ratio)
        #[arg(long)]
        api: Option<String>,
    },
}

pub async fn run(args: Args) -> anyhow::Result<u8> {
    match args.command {
        Command::Seed {
            redis,
            prefix,
            source,
            since,
            dry_run,
            protocol_out,
            replica_max_lag,
            output,
        } => {
            let replica_max_lag = replica_max_lag.min(SEED_REPLICA_LAG_MAX);
            let export = open_store(&source, replica_max_lag).await?;
            let sink = match (&redis, protocol_out, dry_run) {
                (_, _, true) => Sink::DryRun,
                (_, Some(path), _) => Sink::File {
                    path: path.display().to_string(),
                    out: std::io::BufWriter::new(std::fs::File::create(&path).map_err(|e| {
                        UsageError(format!("--protocol-out {}: {e}", path.display()))
                    })?),
                },
                (Some(url), None, false) => Sink::Redis(
                    connect(&Common {
                        redis: url.clone(),
                        prefix: prefix.clone(),
                        output,
                    })
                    .await?,
                ),
                (None, None, false) => unreachable!("clap requires --redis here"),
            };
            let since_ms = paytool::ids::now_ms() - since.as_millis() as i64;
            let bar = progress_bar(output, "{spinner} {pos} keys {per_sec} {msg}");
            let summary = seed(export.as_ref(), sink, &prefix, since_ms, &|s| {
                if let Some(bar) = &bar {
                    bar.set_position(s.keys);
                    bar.set_message(format!(
                        "{} merchants, {} payments",
                        s.merchants, s.payments
                    ));
                }
            })
            .await
            .map_err(|e| match e {
                SeedError::File { .. } => anyhow::Error::new(UsageError(e.to_string())),
                e => anyhow::Error::new(Failure {
                    code: 1,
                    message: e.to_string(),
                }),
            })?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!(
                    "{} {} keys ({} merchants, {} payments since {}), {:.1} MiB, in {:.2} s: {:.0} keys/s.",
                    if summary.dry_run {
                        "Would write"
                    } else {
                        "Wrote"
                    },
                    summary.keys,
                    summary.merchants,
                    summary.payments,
                    humantime::format_duration(since),
                    summary.bytes as f64 / 1048576.0,
                    summary.elapsed_s,
                    summary.keys_per_s
                );
                for r in summary
                    .payments_read_from
                    .iter()
                    .filter(|r| r.replicas_listed > 0)
                {
                    match r.lag_ms {
                        Some(lag) => println!(
                            "{}: payments read on replica {} ({lag:.0} ms behind).",
                            r.shard, r.from
                        ),
                        None => println!(
                            "{}: payments read on the primary (no replica within {}).",
                            r.shard,
                            humantime::format_duration(replica_max_lag)
                        ),
                    }
                }
            }
            Ok(0)
        }
        Command::Verify {
            common,
            source,
            sample,
        } => {
            // The cache is judged against the store as it is now: primaries only.
            let export = open_store(&source, Duration::ZERO).await?;
            let mut admin = connect(&common).await?;
            let bar = progress_bar(common.output, "{spinner} {pos} entries checked {per_sec}");
            let report = verify(&mut admin, export.as_ref(), &common.prefix, sample, &|n| {
                if let Some(bar) = &bar {
                    bar.set_position(n);
                }
            })
            .await
            .map_err(|e| Failure {
                code: 1,
                message: e.to_string(),
            })?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            show_verify(&report, &common)?;
            Ok(if report.ok() { 0 } else { 1 })
        }
        Command::Flush { common, yes } => {
            let mut admin = connect(&common).await?;
            if !yes {
                if !std::io::stdin().is_terminal() {
                    return Err(UsageError(
                        "cache flush asks before removing keys, and stdin is not a terminal: pass --yes".into(),
                    )
                    .into());
                }
                let n = admin.count().await.map_err(failure)?;
                eprint!(
                    "Remove {n} keys under {:?} from {}? [y/N] ",
                    common.prefix,
                    paytool::cache::client::redact(&common.redis)
                );
                std::io::stderr().flush()?;
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    eprintln!("Nothing removed.");
                    return Ok(0);
                }
            }
            let removed = admin.flush(&|_| {}).await.map_err(failure)?;
            if common.output == Output::Json {
                println!(
                    "{}",
                    serde_json::json!({ "prefix": common.prefix, "removed": removed })
                );
            } else {
                println!("Removed {removed} keys under {:?}.", common.prefix);
            }
            Ok(0)
        }
        Command::Stats { common, api } => {
            let mut admin = connect(&common).await?;
            let stats = admin.stats().await.map_err(failure)?;
            let hits = match &api {
                Some(url) => Some(hit_ratio(url).await?),
                None => None,
            };
            show_stats(&stats, hits.as_ref(), &common)?;
            Ok(0)
        }
    }
}

/// A spinner with counts on a terminal, in text output; nothing otherwise.
fn progress_bar(output: Output, template: &str) -> Option<indicatif::ProgressBar> {
    (output == Output::Text && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    })
}

/// The store, read-only: the data dir, or every shard of the layout.
async fn open_store(source: &Source, replica_max_lag: Duration) -> anyhow::Result<Box<dyn Export>> {
    let opened: Result<Box<dyn Export>, ExportError> = match (&source.data_dir, &source.layout) {
        (Some(dir), _) => SqliteExport::open(dir, paytool::api::payments::render_answer)
            .map(|e| Box::new(e) as Box<dyn Export>),
        (None, Some(path)) => {
            let layout =
                paytool::profile::shards::load(path).map_err(|e| UsageError(e.to_string()))?;
            PgExport::open(
                &layout,
                replica_max_lag,
                paytool::api::payments::render_answer,
            )
            .await
            .map(|e| Box::new(e) as Box<dyn Export>)
        }
        (None, None) => unreachable!("clap requires --data-dir or --layout"),
    };
    opened.map_err(|e| match e {
        ExportError::Open(m) if source.data_dir.is_some() => {
            anyhow::Error::new(UsageError(format!("--data-dir: {m}")))
        }
        e => anyhow::Error::new(Failure {
            code: 1,
            message: e.to_string(),
        }),
    })
}

fn show_verify(report: &VerifyReport, common: &Common) -> anyhow::Result<()> {
    if common.output == Output::Json {
        let mut v = serde_json::to_value(report)?;
        v["ok"] = report.ok().into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if !report.findings.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_header(["key", "problem", "detail"]);
        for f in &report.findings {
            t.add_row([
                f.key.clone(),
                format!("{:?}", f.problem).to_lowercase(),
                f.detail.clone(),
            ]);
        }
        println!("{t}");
    }
    let kinds: Vec<String> = report
        .checked
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    println!(
        "Checked {} entries ({}) against the store: {} mismatched, {} stale{}; {} dead key entries (older key generation, never served).",
        report.total_checked(),
        if kinds.is_empty() {
            "none".into()
        } else {
            kinds.join(", ")
        },
        report.mismatches,
        report.stale,
        if report.findings.len() < (report.mismatches + report.stale) as usize {
            format!(" (the first {} listed)", report.findings.len())
        } else {
            String::new()
        },
        report.dead
    );
    println!(
        "{}",
        if report.ok() {
            "OK: the cache matches the store."
        } else {
            "FAILED: the cache differs from the store."
        }
    );
    Ok(())
}

async fn connect(common: &Common) -> anyhow::Result<Admin> {
    if common.prefix.is_empty() {
        return Err(UsageError(
            "--prefix is empty: paytool's keys need a prefix of their own".into(),
        )
        .into());
    }
    Admin::connect(&common.redis, &common.prefix)
        .await
        .map_err(|e| match e {
            AdminError::BadUrl { .. } => anyhow::Error::new(UsageError(e.to_string())),
            e => anyhow::Error::new(failure(e)),
        })
}

fn failure(e: AdminError) -> Failure {
    Failure {
        code: 1,
        message: e.to_string(),
    }
}

/// Per kind: (hits, misses), from the API's /metrics.
type Hits = BTreeMap<String, (f64, f64)>;

async fn hit_ratio(api: &str) -> anyhow::Result<Hits> {
    let url = format!("{}/metrics", api.trim_end_matches('/'));
    let text = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| Failure {
            code: 1,
            message: format!("reading {url}: {e}"),
        })?
        .text()
        .await?;
    let mut out: Hits = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("paytool_cache_requests_total{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").unwrap_or((rest, "0"));
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        let (Some(kind), Some(result)) = (label("kind"), label("result")) else {
            continue;
        };
        let v: f64 = value.trim().parse().unwrap_or(0.0);
        let e = out.entry(kind).or_default();
        if result == "hit" {
            e.0 += v;
        } else {
            e.1 += v;
        }
    }
    Ok(out)
}

fn show_stats(stats: &Stats, hits: Option<&Hits>, common: &Common) -> anyhow::Result<()> {
    let ratios: Option<BTreeMap<&String, f64>> = hits.map(|h| {
        h.iter()
            .map(|(k, (hit, miss))| {
                (
                    k,
                    if hit + miss > 0.0 {
                        hit / (hit + miss)
                    } else {
                        0.0
                    },
                )
            })
            .collect()
    });
    if common.output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "prefix": common.prefix,
                "stats": stats,
                "hit_ratio": ratios,
            }))?
        );
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(["kind", "keys", "hit ratio (API)"]);
    for (kind, n) in &stats.by_kind {
        let ratio = ratios
            .as_ref()
            .and_then(|r| r.get(kind))
            .map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
        t.add_row([kind.clone(), n.to_string(), ratio]);
    }
    println!("{t}");
    let secs = |v: Option<f64>| v.map_or("-".into(), |s| format!("{s:.0} s"));
    println!(
        "{} keys under {:?}, about {:.1} MiB (from {} sampled); the server uses {:.1} MiB in all.",
        stats.keys,
        common.prefix,
        stats.bytes_estimate as f64 / 1048576.0,
        stats.sampled,
        stats.used_memory as f64 / 1048576.0
    );
    println!(
        "TTL left: min {}, median {}, p90 {}, max {}; {} keys without a TTL.",
        secs(stats.ttl_s.min),
        secs(stats.ttl_s.p50),
        secs(stats.ttl_s.p90),
        secs(stats.ttl_s.max),
        stats.without_ttl
    );
    Ok(())
}
