//! The reference payment API: axum router, handlers, auth, error bodies, OpenAPI.

pub mod admin;
pub mod error;
pub mod extract;
#[cfg(test)]
mod fuzz_tests;
pub mod listen;
pub mod openapi;
pub mod payments;
pub mod rate_limit;
mod server;
pub mod telemetry;
pub mod types;

pub use server::{
    BODY_LIMIT_BYTES_DEFAULT, BODY_LIMIT_BYTES_RANGE, LISTEN_BACKLOG, ServeError, ServeOptions,
    Server, WRITE_TIMEOUT_MS_DEFAULT, WRITE_TIMEOUT_MS_RANGE,
};

use crate::store::{Store, WriteRequest};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use error::{ApiError, ErrorType};
use std::sync::Arc;
use std::time::Duration;

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub admin_token_hash: [u8; 32],
    /// Keys card fingerprints and request fingerprints.
    pub secret_key: Vec<u8>,
    pub write_timeout: Duration,
    /// Per-merchant rate limiting, when `serve --rate-limit` asks for it.
    pub rate_limiter: Option<rate_limit::RateLimiter>,
    /// Shutting down: `/readyz` answers 503 so a load balancer stops sending here.
    pub draining: std::sync::atomic::AtomicBool,
}

impl AppState {
    /// Send a write to its shard and answer with what was committed (or replayed).
    async fn write(&self, request: WriteRequest) -> Result<Response, ApiError> {
        // Every write carries an Idempotency-Key (payments.rs), so resending is always
        // the safe way to learn what a write that timed out did.
        let stored = tokio::time::timeout(self.write_timeout, self.store.write(request))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorType::ApiError,
                    "write_timeout",
                    "The write did not commit in time and may still commit: resend it with the same Idempotency-Key to learn its outcome",
                )
                .retry_after(error::STORE_BUSY_RETRY_AFTER_S)
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
        .route("/v1/admin/merchants/{id}/roll_key", post(admin::roll_key))
        .route("/v1/admin/audit", get(admin::audit))
        .route("/v1/admin/payments/lookup", post(admin::lookup))
        .route("/v1/admin/payments", get(admin::payments_with_key_prefix))
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
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            close_while_draining,
        ))
        .layer(axum::middleware::from_fn(telemetry::track))
        .with_state(state)
}

/// While draining, every answer says `Connection: close`, and hyper closes the
/// connection once it is sent: the client makes its next connection afresh, which a
/// balancer sends to an instance still ready, instead of keeping one that the shutdown
/// would close under a request it is about to send. With a balancer that passes
/// connections through (`haproxy-tcp`) that is what keeps a rolling restart free of
/// failed requests.
async fn close_while_draining(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    if state.draining.load(std::sync::atomic::Ordering::Acquire) {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
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
    if state.draining.load(std::sync::atomic::Ordering::Acquire) {
        ApiError::unavailable("draining: this instance is shutting down").into_response()
    } else if state.store.ready() {
        "ready\n".into_response()
    } else {
        ApiError::unavailable("the store is not accepting writes").into_response()
    }
}

async fn metrics() -> String {
    telemetry::handle().render()
}
