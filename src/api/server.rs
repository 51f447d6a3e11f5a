//! A bound server and what it needs: the options `paytool serve` resolves, their
//! defaults and ranges, and the typed reasons it may fail to start or to run.

use super::rate_limit::{RateLimit, RateLimiter};
use super::{AppState, router, telemetry};
use crate::cache::{CacheOptions, CachedStore, RedisClient};
use crate::secrets::{Secret, hash_key, load_or_create, random_hex};
use crate::store::layout::Layout;
use crate::store::postgres::{LayoutParser, PgOpenError, PgOptions, PgStore};
use crate::store::sqlite::{Faults, SqliteStore, WriterLimits};
use crate::store::{OpenError, Store};
use std::future::Future;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted by default: a payment request is well under 1 KiB, so
/// this only refuses abuse; larger bodies get 413 before they are read.
pub const BODY_LIMIT_BYTES_DEFAULT: usize = 64 * 1024;
/// The body limits a deployment may choose.
pub const BODY_LIMIT_BYTES_RANGE: RangeInclusive<usize> = 1024..=16 * 1024 * 1024;
/// How long a request waits for its commit by default before it is answered 503: far
/// above a healthy commit (p99 ~13 ms in BENCHMARKS.md), so only a stuck shard trips it.
pub const WRITE_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// The write timeouts a deployment may choose.
pub const WRITE_TIMEOUT_MS_RANGE: RangeInclusive<u64> = 100..=600_000;

/// Why the server could not start, or stopped with an error. The caller picks the exit
/// code: a data dir that does not fit the options is a usage problem, the rest are failures.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data dir would not open: its shard count, the directory, or one of its files.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A PostgreSQL layout's shards could not be opened: unreachable, not migrated, or
    /// with buckets no shard owns.
    #[error(transparent)]
    Layout(#[from] PgOpenError),
    #[error("cannot read or create {}: {source}", path.display())]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("closing the store: {0}")]
    Shutdown(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Cache(#[from] crate::cache::client::BadUrl),
}

/// Pin an I/O error to the data dir's admin token or fingerprint key file.
fn secret_file(path: &Path) -> impl FnOnce(std::io::Error) -> ServeError + '_ {
    move |source| ServeError::SecretFile {
        path: path.to_path_buf(),
        source,
    }
}

/// Everything `paytool serve` needs, already resolved from flags, env and file.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub shards: usize,
    /// PostgreSQL shards instead of the embedded SQLite files under `data_dir`.
    pub layout: Option<Layout>,
    pub admin_token: Option<Secret>,
    pub limits: WriterLimits,
    pub faults: Faults,
    pub body_limit_bytes: usize,
    pub write_timeout: Duration,
    /// Idempotency keys are kept at least this long (store::retention).
    pub idempotency_retention: Duration,
    /// On a layout: how to read the layout the shards record, to follow a `shard move`
    /// onto shards this instance was not started with.
    pub follow_layout: Option<LayoutParser>,
    /// A test hook: each reload of bucket ownership waits this long first.
    pub reload_delay: Duration,
    /// Redis in front of the store, when given.
    pub cache: Option<CacheOptions>,
    /// A request's headers must arrive within this, and a keep-alive connection may idle
    /// between requests no longer (`listen::HEADER_TIMEOUT_DEFAULT`).
    pub header_timeout: Duration,
    /// Per-merchant request rate limit; None: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// On shutdown, how long `/readyz` answers 503 while requests are still served, so a
    /// load balancer's health check takes the instance out before it stops listening.
    pub drain_delay: Duration,
    /// A read replica further behind than this takes no reads.
    pub replica_max_lag: Duration,
}

impl ServeOptions {
    fn pg_options(&self) -> PgOptions {
        PgOptions {
            limits: self.limits,
            retention: self.idempotency_retention,
            follow: self.follow_layout.clone(),
            reload_delay: self.reload_delay,
            replica_max_lag: self.replica_max_lag,
        }
    }
}

/// Connections the kernel holds for the accept loop. tokio's `bind` asks for 1,024; a
/// burst of new connections (clients reconnecting together, a balancer or a load
/// generator opening its pool while the accept loop shares busy cores) overflowed it,
/// and a dropped SYN is retried after a second: a one-second stall for those clients
/// (BENCHMARKS.md). The kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As `bind` does: a restarted server may reuse a port with connections in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A bound server, not yet serving: the caller can report where it listens first.
pub struct Server {
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    shards: usize,
    state: Arc<AppState>,
    body_limit_bytes: usize,
    header_timeout: Duration,
    drain_delay: Duration,
    pub admin_token_source: String,
}

impl Server {
    pub async fn bind(opts: ServeOptions) -> Result<Server, ServeError> {
        // The recorder first: the shard writers take their metric handles when they start.
        telemetry::handle();
        std::fs::create_dir_all(&opts.data_dir).map_err(|source| OpenError::DataDir {
            path: opts.data_dir.clone(),
            source,
        })?;
        let key_path = opts.data_dir.join("secret.key");
        let (store, shards, secret_key): (Arc<dyn Store>, usize, Secret) = match &opts.layout {
            // Every instance on a layout shares the fingerprint key the shards hold, so
            // an idempotent replay matches whichever instance answered first.
            Some(layout) => {
                let store = PgStore::open(layout, opts.pg_options()).await?;
                let key = Secret::new(store.fingerprint_key().to_string());
                let shards = store.shard_count();
                (Arc::new(store), shards, key)
            }
            None => {
                let store = SqliteStore::open(
                    &opts.data_dir,
                    opts.shards,
                    opts.limits,
                    opts.faults,
                    opts.idempotency_retention,
                )?;
                let key =
                    load_or_create(&key_path, || random_hex(32)).map_err(secret_file(&key_path))?;
                let shards = store.shard_count();
                (Arc::new(store), shards, key)
            }
        };
        // Redis in front, when asked for: connected lazily, so a Redis that is down at
        // start only means misses until it is up.
        let store: Arc<dyn Store> = match &opts.cache {
            Some(c) => Arc::new(CachedStore::new(
                store,
                RedisClient::new(c.url.expose())?,
                &c.prefix,
            )),
            None => store,
        };
        let token_path = opts.data_dir.join("admin_token");
        let (admin_token, admin_token_source) = match opts.admin_token {
            Some(t) => (t, "given by flag or PAYTOOL_ADMIN_TOKEN".to_string()),
            None => (
                load_or_create(&token_path, || format!("adm_{}", random_hex(24)))
                    .map_err(secret_file(&token_path))?,
                format!("in {}", token_path.display()),
            ),
        };
        let listener = listen(opts.listen).map_err(|source| ServeError::Bind {
            addr: opts.listen,
            source,
        })?;
        let state = Arc::new(AppState {
            store: store.clone(),
            admin_token_hash: hash_key(admin_token.expose()),
            secret_key: secret_key.expose().as_bytes().to_vec(),
            write_timeout: opts.write_timeout,
            rate_limiter: opts.rate_limit.map(RateLimiter::new),
            draining: std::sync::atomic::AtomicBool::new(false),
        });
        Ok(Server {
            listener,
            store,
            shards,
            state,
            drain_delay: opts.drain_delay,
            body_limit_bytes: opts.body_limit_bytes,
            header_timeout: opts.header_timeout,
            admin_token_source,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Serve until `shutdown` resolves, then finish in-flight requests, commit what is
    /// queued, and close the store.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let upkeep = tokio::spawn(async {
            let handle = telemetry::handle();
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                handle.run_upkeep();
            }
        });
        let (state, drain_delay) = (self.state.clone(), self.drain_delay);
        let shutdown = async move {
            shutdown.await;
            if !drain_delay.is_zero() {
                state
                    .draining
                    .store(true, std::sync::atomic::Ordering::Release);
                tracing::info!(
                    ?drain_delay,
                    "draining: /readyz answers 503, requests are still served"
                );
                tokio::time::sleep(drain_delay).await;
            }
        };
        let app = router(self.state, self.body_limit_bytes);
        super::listen::serve(self.listener, app, self.header_timeout, shutdown).await;
        upkeep.abort();
        let store = self.store;
        tokio::task::spawn_blocking(move || store.shutdown())
            .await
            .map_err(ServeError::Shutdown)
    }
}
