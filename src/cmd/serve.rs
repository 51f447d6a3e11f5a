use super::UsageError;
use paytool::api::listen::HEADER_TIMEOUT_DEFAULT;
use paytool::api::rate_limit::RateLimit;
use paytool::api::{
    BODY_LIMIT_BYTES_DEFAULT, BODY_LIMIT_BYTES_RANGE, ServeError, ServeOptions, Server,
    WRITE_TIMEOUT_MS_DEFAULT, WRITE_TIMEOUT_MS_RANGE,
};
use paytool::cache::CacheOptions;
use paytool::config::{ConfigFile, in_range};
use paytool::secrets::Secret;
use paytool::store::postgres::{LayoutParser, PgOpenError};
use paytool::store::retention::{RETENTION_DEFAULT, RETENTION_RANGE};
use paytool::store::sqlite::writer::{
    BATCH_MAX_DEFAULT, BATCH_MAX_RANGE, QUEUE_MAX_DEFAULT, QUEUE_MAX_LIMIT,
};
use paytool::store::sqlite::{Faults, WriterLimits};
use paytool::store::{OpenError, SHARDS_DEFAULT, SHARDS_MAX, StoreError};
use std::io::Write;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  paytool serve                                   # 127.0.0.1:8080, data in ./data
  paytool serve --listen 127.0.0.1:0 --data-dir /tmp/pt --shards 4
  PAYTOOL_LISTEN=0.0.0.0:8080 paytool serve
  paytool serve --config paytool.toml             # [serve] table, keys as the flags
  PAYTOOL_ADMIN_TOKEN=adm_... paytool serve --layout profiles/shards/two.toml   # PostgreSQL shards

  # then, with the admin token it prints the path of:
  curl -s -X POST localhost:8080/v1/merchants -H \"Authorization: Bearer $(cat data/admin_token)\" \\
       -d '{\"name\":\"Acme\"}'

Writes are durable before they are answered (SQLite WAL, synchronous=FULL; PostgreSQL
with synchronous_commit on), grouped into one commit per shard per batch. SIGTERM or
Ctrl-C finishes in-flight requests and exits 0.

With --layout the API holds no state of its own: run as many instances as you like on
the same layout, behind a load balancer, all with the same admin token. The layout's
shards must have been set up with `paytool shard apply --layout L` first.

Exit codes: 0 stopped cleanly; 1 failed while running, a data dir file is corrupt, or a
shard is unreachable; 2 bad flags, config or layout, a data dir made with another
--shards, or shards not yet applied.";

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Address to listen on (port 0 picks a free one) [default: 127.0.0.1:8080]
    #[arg(long, env = "PAYTOOL_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the SQLite files, the admin token and the fingerprint key [default: ./data]
    #[arg(long, env = "PAYTOOL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, env = "PAYTOOL_SHARDS", help = format!(
        "Number of shard files, 1 to {SHARDS_MAX}; fixed when the data dir is created [default: {SHARDS_DEFAULT}]"
    ))]
    pub shards: Option<usize>,
    /// PostgreSQL shard layout (profiles/shards/*.toml) instead of the SQLite files
    #[arg(long, env = "PAYTOOL_LAYOUT", conflicts_with = "shards")]
    pub layout: Option<PathBuf>,
    /// Admin token for POST /v1/merchants; generated into DATA_DIR/admin_token (0600) when absent (required with --layout)
    #[arg(long, env = "PAYTOOL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// TOML file with a [serve] table; flags and env vars override it
    #[arg(long, env = "PAYTOOL_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "PAYTOOL_BATCH_MAX", help = format!(
        "Most writes committed in one transaction per shard [default: {BATCH_MAX_DEFAULT}]"
    ))]
    pub batch_max: Option<usize>,
    #[arg(long, env = "PAYTOOL_QUEUE_MAX", help = format!(
        "Most writes queued per shard; past it a write gets 503 with Retry-After at once [default: {QUEUE_MAX_DEFAULT}]"
    ))]
    pub queue_max: Option<usize>,
    #[arg(long, env = "PAYTOOL_BODY_LIMIT_BYTES", help = format!(
        "Largest request body accepted, in bytes; larger gets 413 [default: {BODY_LIMIT_BYTES_DEFAULT}]"
    ))]
    pub body_limit_bytes: Option<usize>,
    #[arg(long, env = "PAYTOOL_WRITE_TIMEOUT_MS", help = format!(
        "How long a request waits for its commit before 503 [default: {WRITE_TIMEOUT_MS_DEFAULT}]"
    ))]
    pub write_timeout_ms: Option<u64>,
    /// How long idempotency keys are kept at least, then pruned (e.g. "24h", "90m") [default: 24h]
    #[arg(long, env = "PAYTOOL_IDEMPOTENCY_RETENTION")]
    pub idempotency_retention: Option<String>,
    /// How long a client may take to send a request's headers, and a keep-alive
    /// connection may idle between requests, before it is closed (e.g. "30s", 1s to 10m)
    /// [default: 30s]
    #[arg(long, env = "PAYTOOL_HEADER_TIMEOUT")]
    pub header_timeout: Option<String>,
    /// On SIGTERM, how long /readyz answers 503 while requests are still served, before
    /// the listener closes and in-flight requests finish (a load balancer's health check
    /// interval or more, e.g. "2s"; 0 to 60s) [default: 0s]
    #[arg(long, env = "PAYTOOL_DRAIN_DELAY")]
    pub drain_delay: Option<String>,
    /// With a layout whose shards list `replicas`: a replica further behind than this
    /// (and not caught up) takes no reads; a merchant's reads go to a replica only once
    /// it has replayed that merchant's last write (e.g. "1s"; 10ms to 1h) [default: 1s]
    #[arg(long, env = "PAYTOOL_REPLICA_MAX_LAG")]
    pub replica_max_lag: Option<String>,
    /// Per-merchant request limit, e.g. "100/s": past it, 429 with Retry-After before the
    /// store is touched [default: none]
    #[arg(long, env = "PAYTOOL_RATE_LIMIT")]
    pub rate_limit: Option<String>,
    /// Requests a merchant may send at once after an idle spell, with --rate-limit
    /// [default: one second's worth]
    #[arg(long, env = "PAYTOOL_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// Testing the audit only: acknowledge every Nth payment without keeping it (only in
    /// a build with the `test-faults` feature).
    #[cfg(feature = "test-faults")]
    #[arg(long, hide = true)]
    pub fault_drop_ack_every: Option<u64>,
    /// Redis in front of the store (redis://[:password@]host:port/db): API-key lookups,
    /// idempotent replays and payment reads; the store stays the source of truth
    #[arg(long, env = "PAYTOOL_REDIS_URL", hide_env_values = true)]
    pub redis: Option<String>,
    /// The prefix of every key paytool writes in Redis [default: paytool:]
    #[arg(long, env = "PAYTOOL_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// Testing moves only: each reload of bucket ownership waits this long first (an
    /// instance slow to hear of a switch).
    #[arg(long, hide = true)]
    pub test_reload_delay_ms: Option<u64>,
}

/// A duration setting such as "24h" (`default` when absent), within `range`.
fn duration(
    origin: &str,
    key: &str,
    text: Option<String>,
    default: Duration,
    range: std::ops::RangeInclusive<Duration>,
) -> Result<Duration, UsageError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| UsageError(format!("{origin}: `{key}` {text:?}: {e}")))?;
    if !range.contains(&d) {
        return Err(UsageError(format!(
            "{origin}: `{key}` is {text}: it must be {} to {}",
            humantime::format_duration(*range.start()),
            humantime::format_duration(*range.end())
        )));
    }
    Ok(d)
}

/// "100/s" (and a burst) as a limit; the burst defaults to one second's worth.
fn rate_limit(
    origin: &str,
    text: Option<String>,
    burst: Option<u32>,
) -> Result<Option<RateLimit>, UsageError> {
    let Some(text) = text else {
        if burst.is_some() {
            return Err(UsageError(format!(
                "{origin}: `rate_burst` needs `rate_limit`"
            )));
        }
        return Ok(None);
    };
    let per_second = text
        .trim()
        .strip_suffix("/s")
        .and_then(|n| n.trim().parse::<f64>().ok())
        .filter(|n| *n > 0.0 && *n <= 1e6)
        .ok_or_else(|| {
            UsageError(format!(
                "{origin}: `rate_limit` is {text:?}: write requests per second per merchant, e.g. \"100/s\" (above 0, at most 1000000)"
            ))
        })?;
    let burst = match burst {
        Some(0) => {
            return Err(UsageError(format!(
                "{origin}: `rate_burst` must be at least 1"
            )));
        }
        Some(b) => f64::from(b),
        None => per_second.ceil().max(1.0),
    };
    Ok(Some(RateLimit { per_second, burst }))
}

/// The longest `--drain-delay`: a drain is for a health check to notice, not a pause.
const DRAIN_DELAY_MAX: Duration = Duration::from_secs(60);

/// The header timeouts a deployment may choose.
const HEADER_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(600);

impl Args {
    #[cfg(feature = "test-faults")]
    fn faults(&self, on_layout: bool) -> Result<Faults, UsageError> {
        if on_layout && self.fault_drop_ack_every.is_some() {
            return Err(UsageError(
                "--fault-drop-ack-every applies to the SQLite store only".into(),
            ));
        }
        if self.fault_drop_ack_every == Some(0) {
            return Err(UsageError(
                "--fault-drop-ack-every must be at least 1".into(),
            ));
        }
        Ok(Faults {
            drop_ack_every: self.fault_drop_ack_every,
        })
    }

    #[cfg(not(feature = "test-faults"))]
    fn faults(&self, _on_layout: bool) -> Result<Faults, UsageError> {
        Ok(Faults::default())
    }

    pub fn resolve(self) -> Result<ServeOptions, UsageError> {
        let file = match &self.config {
            Some(path) => ConfigFile::load(path).map_err(|e| UsageError(e.to_string()))?,
            None => ConfigFile::default(),
        };
        let origin = self
            .config
            .as_ref()
            .map(|p| format!("flags, env or {}", p.display()))
            .unwrap_or_else(|| "flags or env".to_string());
        let s = file.serve;
        let faults = self.faults(self.layout.is_some() || s.layout.is_some())?;
        let batch_max = check(
            &origin,
            "batch_max",
            self.batch_max.or(s.batch_max).unwrap_or(BATCH_MAX_DEFAULT),
            BATCH_MAX_RANGE,
        )?;
        let queue_max = check(
            &origin,
            "queue_max",
            self.queue_max.or(s.queue_max).unwrap_or(QUEUE_MAX_DEFAULT),
            batch_max..=QUEUE_MAX_LIMIT,
        )?;
        let write_timeout_ms = check(
            &origin,
            "write_timeout_ms",
            self.write_timeout_ms
                .or(s.write_timeout_ms)
                .unwrap_or(WRITE_TIMEOUT_MS_DEFAULT),
            WRITE_TIMEOUT_MS_RANGE,
        )?;
        let retention = duration(
            &origin,
            "idempotency_retention",
            self.idempotency_retention.or(s.idempotency_retention),
            RETENTION_DEFAULT,
            RETENTION_RANGE,
        )?;
        let header_timeout = duration(
            &origin,
            "header_timeout",
            self.header_timeout.or(s.header_timeout),
            HEADER_TIMEOUT_DEFAULT,
            HEADER_TIMEOUT_RANGE,
        )?;
        let drain_delay = duration(
            &origin,
            "drain_delay",
            self.drain_delay.or(s.drain_delay),
            Duration::ZERO,
            Duration::ZERO..=DRAIN_DELAY_MAX,
        )?;
        let replica_max_lag = duration(
            &origin,
            "replica_max_lag",
            self.replica_max_lag.or(s.replica_max_lag),
            paytool::store::postgres::REPLICA_MAX_LAG_DEFAULT,
            Duration::from_millis(10)..=Duration::from_secs(3600),
        )?;
        let rate_limit = rate_limit(
            &origin,
            self.rate_limit.or(s.rate_limit),
            self.rate_burst.or(s.rate_burst),
        )?;
        let layout = match self.layout.or(s.layout) {
            Some(path) => {
                Some(paytool::profile::shards::load(&path).map_err(|e| UsageError(e.to_string()))?)
            }
            None => None,
        };
        let admin_token = self.admin_token.or(s.admin_token).map(Secret::new);
        let prefix = self
            .redis_prefix
            .or(s.redis_prefix)
            .unwrap_or_else(|| paytool::cache::PREFIX_DEFAULT.to_string());
        let cache = match self.redis.or(s.redis) {
            Some(url) => {
                if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                    return Err(UsageError(format!(
                        "{origin}: `redis` is {:?}: a Redis URL starts with redis:// (or rediss://)",
                        paytool::cache::client::redact(&url)
                    )));
                }
                if prefix.is_empty() {
                    return Err(UsageError(format!(
                        "{origin}: `redis_prefix` is empty: paytool's keys need a prefix of their own"
                    )));
                }
                Some(CacheOptions {
                    url: Secret::new(url),
                    prefix,
                })
            }
            None => None,
        };
        if layout.is_some() && admin_token.is_none() {
            return Err(UsageError(
                "--layout needs the admin token from --admin-token or PAYTOOL_ADMIN_TOKEN: \
                 every instance of a layout must accept the same one"
                    .into(),
            ));
        }
        Ok(ServeOptions {
            listen: self
                .listen
                .or(s.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir: self
                .data_dir
                .or(s.data_dir)
                .unwrap_or_else(|| PathBuf::from("data")),
            shards: check(
                &origin,
                "shards",
                self.shards.or(s.shards).unwrap_or(SHARDS_DEFAULT),
                1..=SHARDS_MAX,
            )?,
            layout,
            admin_token,
            limits: WriterLimits {
                batch_max,
                queue_max,
            },
            faults,
            body_limit_bytes: check(
                &origin,
                "body_limit_bytes",
                self.body_limit_bytes
                    .or(s.body_limit_bytes)
                    .unwrap_or(BODY_LIMIT_BYTES_DEFAULT),
                BODY_LIMIT_BYTES_RANGE,
            )?,
            write_timeout: Duration::from_millis(write_timeout_ms),
            idempotency_retention: retention,
            header_timeout,
            drain_delay,
            replica_max_lag,
            rate_limit,
            // The layout the shards record is read with this process's environment, as
            // the starting layout was.
            follow_layout: Some(LayoutParser(Arc::new(|text| {
                paytool::profile::shards::from_recorded(text, &|var| std::env::var(var).ok())
            }))),
            reload_delay: Duration::from_millis(self.test_reload_delay_ms.unwrap_or(0)),
            cache,
        })
    }
}

/// A value from flags, env or the config file, refused (exit 2) outside its range.
fn check<T: PartialOrd + std::fmt::Display + Copy>(
    origin: &str,
    key: &'static str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<T, UsageError> {
    in_range(origin, key, value, range).map_err(|e| UsageError(e.to_string()))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let opts = args.resolve()?;
    let data = match &opts.layout {
        Some(l) => format!(
            "PostgreSQL layout {} (version {})",
            l.source.display(),
            l.version
        ),
        None => opts.data_dir.display().to_string(),
    };
    let faulty = opts.faults.drop_ack_every().is_some();
    let server = Server::bind(opts).await.map_err(explain)?;
    let addr = server.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "paytool serve: listening on http://{addr}")?;
    writeln!(out, "  data:        {data} ({} shard(s))", server.shards())?;
    writeln!(out, "  admin token: {}", server.admin_token_source)?;
    writeln!(out, "  API spec:    http://{addr}/openapi.json")?;
    if faulty {
        writeln!(
            out,
            "  WARNING: fault injection is on: some acknowledged payments are dropped"
        )?;
    }
    out.flush()?;
    drop(out);
    server.run(shutdown_signal()).await.map_err(explain)?;
    eprintln!("paytool serve: stopped cleanly");
    Ok(())
}

/// Exit 2 when the data dir does not fit the flags (the fix is a flag), 1 for the rest;
/// each message says what to do where there is something to do.
fn explain(e: ServeError) -> anyhow::Error {
    match e {
        ServeError::Open(OpenError::ShardCountMismatch {
            data_dir,
            made_with,
            asked,
        }) => UsageError(format!(
            "data dir {} was made with --shards {made_with}, not --shards {asked}; \
             run with --shards {made_with} (or a new --data-dir)",
            data_dir.display()
        ))
        .into(),
        ServeError::Open(e @ OpenError::DataDir { .. }) => {
            UsageError(format!("{e}; choose another --data-dir")).into()
        }
        ServeError::Open(
            e @ OpenError::File {
                source: StoreError::Corrupt(_),
                ..
            },
        ) => anyhow::anyhow!("{e}; restore it from a backup, or start on a new --data-dir"),
        ServeError::Open(
            e @ OpenError::File {
                source: StoreError::Busy(_),
                ..
            },
        ) => anyhow::anyhow!(
            "{e}; another process holds it (another `paytool serve` on this --data-dir?)"
        ),
        ServeError::Layout(
            e @ (PgOpenError::NotMigrated { .. }
            | PgOpenError::Unowned { .. }
            | PgOpenError::NoSharedKey { .. }),
        ) => UsageError(e.to_string()).into(),
        other => other.into(),
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
