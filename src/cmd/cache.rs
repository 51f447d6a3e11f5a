use super::{Failure, Output, UsageError};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use paytool::cache::PREFIX_DEFAULT;
use paytool::cache::admin::{Admin, AdminError, Stats};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

const EXAMPLES: &str = "\
Examples:
  paytool cache stats --redis redis://127.0.0.1:6379/ --api http://127.0.0.1:8080
  paytool cache flush --redis redis://127.0.0.1:6379/ --yes

Only paytool's keys are touched: those under the prefix (`paytool:` unless --prefix or
PAYTOOL_REDIS_PREFIX says otherwise), found with SCAN a thousand at a time; never KEYS,
FLUSHALL or FLUSHDB. `paytool serve --redis` fills the cache (README: \"Redis in front of
the store\"). Not built yet: `cache seed` and `cache verify`.

Exit codes: 0 success, 1 failure (Redis unreachable), 2 bad input (a bad URL, flush
without --yes when stdin is not a terminal).";

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

#[derive(clap::Subcommand, Debug)]
pub enum Command {
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
