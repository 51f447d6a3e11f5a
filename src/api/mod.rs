//! The reference payment API: axum router, handlers, auth, error bodies, OpenAPI.

pub mod admin;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod payments;
pub mod telemetry;
pub mod types;

use crate::secrets::{Secret, hash_key, load_or_create, random_hex};
use crate::store::sqlite::{Faults, SqliteStore, WriterLimits};
use crate::store::{Store, WriteRequest};
use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use error::{ApiError, ErrorType};
use std::future::Future;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
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

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub admin_token_hash: [u8; 32],
    /// Keys card fingerprints and request fingerprints.
    pub secret_key: Vec<u8>,
    pub write_timeout: Duration,
}

impl AppState {
    /// Send a write to its shard and answer with what was committed (or replayed).
    async fn write(&self, request: WriteRequest) -> Result<Response, ApiError> {
        let stored = tokio::time::timeout(self.write_timeout, self.store.write(request))
            .await
            .map_err(|_| {
                ApiError::unavailable(
                    "The write did not commit in time; retry with the same Idempotency-Key to learn its outcome",
                )
            })??;
        let status = StatusCode::from_u16(stored.status)
            .map_err(|_| ApiError::internal("stored status is invalid"))?;
        Ok(payments::respond(status, stored.body, stored.replayed))
    }
}

pub fn router(state: Arc<AppState>, body_limit_bytes: usize) -> Router {
    Router::new()
        .route(
            "/v1/payments",
            post(payments::create_payment).get(payments::list_payments),
        )
        .route("/v1/payments/{id}", get(payments::get_payment))
        .route("/v1/payments/{id}/capture", post(payments::capture_payment))
        .route("/v1/payments/{id}/cancel", post(payments::cancel_payment))
        .route("/v1/payments/{id}/refunds", post(payments::refund_payment))
        .route("/v1/balance", get(payments::get_balance))
        .route("/v1/merchants", post(admin::create_merchant))
        .route("/v1/admin/audit", get(admin::audit))
        .route("/v1/admin/payments/lookup", post(admin::lookup))
        .route("/openapi.json", get(openapi_json))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("route", "path") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorType::InvalidRequestError,
                "method_not_allowed",
                "This route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit_bytes))
        .layer(axum::middleware::from_fn(telemetry::track))
        .with_state(state)
}

async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(openapi::document).clone();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc,
    )
        .into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.store.ready() {
        "ready\n".into_response()
    } else {
        ApiError::unavailable("the store is not accepting writes").into_response()
    }
}

async fn metrics() -> String {
    telemetry::handle().render()
}

/// Everything `paytool serve` needs, already resolved from flags, env and file.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub shards: usize,
    pub admin_token: Option<Secret>,
    pub limits: WriterLimits,
    pub faults: Faults,
    pub body_limit_bytes: usize,
    pub write_timeout: Duration,
}

/// A bound server, not yet serving: the caller can report where it listens first.
pub struct Server {
    listener: tokio::net::TcpListener,
    store: Arc<SqliteStore>,
    state: Arc<AppState>,
    body_limit_bytes: usize,
    pub admin_token_source: String,
}

impl Server {
    pub async fn bind(opts: ServeOptions) -> anyhow::Result<Server> {
        // The recorder first: the shard writers take their metric handles when they start.
        telemetry::handle();
        let store = SqliteStore::open(&opts.data_dir, opts.shards, opts.limits, opts.faults)
            .with_context(|| format!("opening the store in {}", opts.data_dir.display()))?;
        let token_path = opts.data_dir.join("admin_token");
        let (admin_token, admin_token_source) = match opts.admin_token {
            Some(t) => (t, "given by flag or PAYTOOL_ADMIN_TOKEN".to_string()),
            None => (
                load_or_create(&token_path, || format!("adm_{}", random_hex(24)))
                    .with_context(|| format!("reading {}", token_path.display()))?,
                format!("in {}", token_path.display()),
            ),
        };
        let key_path = opts.data_dir.join("secret.key");
        let secret_key = load_or_create(&key_path, || random_hex(32))
            .with_context(|| format!("reading {}", key_path.display()))?;
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("listening on {}", opts.listen))?;
        let store = Arc::new(store);
        let state = Arc::new(AppState {
            store: store.clone(),
            admin_token_hash: hash_key(admin_token.expose()),
            secret_key: secret_key.expose().as_bytes().to_vec(),
            write_timeout: opts.write_timeout,
        });
        Ok(Server {
            listener,
            store,
            state,
            body_limit_bytes: opts.body_limit_bytes,
            admin_token_source,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn shards(&self) -> usize {
        self.store.shard_count()
    }

    /// Serve until `shutdown` resolves, then finish in-flight requests, commit what is
    /// queued, and close the store.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let upkeep = tokio::spawn(async {
            let handle = telemetry::handle();
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                handle.run_upkeep();
            }
        });
        let app = router(self.state, self.body_limit_bytes);
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        upkeep.abort();
        let store = self.store;
        tokio::task::spawn_blocking(move || store.shutdown()).await?;
        served.context("serving HTTP")
    }
}
