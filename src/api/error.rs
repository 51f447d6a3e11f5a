//! One error shape for every failure: `{"error": {"type", "code", "message", "param"}}`.

use crate::ledger::LedgerError;
use crate::ledger::cards::redact_card_numbers;
use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    AuthenticationError,
    IdempotencyError,
    CardError,
    RateLimitError,
    ApiError,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: ErrorType,
    pub code: String,
    pub message: String,
    /// The request field at fault, as a dotted path (`card.number`), or a header name.
    pub param: Option<String>,
    /// For card errors: the issuer's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decline_code: Option<String>,
    /// For card errors: the failed payment that was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payment: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What a client is told to wait before retrying a busy store. The store has already
/// waited its busy timeout for the lock; a second more lets a short outside transaction
/// (a backup step, an operator's shell) finish without clients hammering the file.
pub const STORE_BUSY_RETRY_AFTER_S: u64 = 1;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed: errors travel in every handler's Result, and the common path is Ok.
    pub body: Box<ErrorBody>,
    /// Sent as `Retry-After` (seconds) when waiting is the fix.
    pub retry_after_s: Option<u64>,
    /// A 429's limit, sent as `RateLimit-Limit` (requests a second) with
    /// `RateLimit-Remaining: 0` and `RateLimit-Reset` (the Retry-After), as the IETF
    /// RateLimit header fields draft writes them.
    pub rate_limit_per_s: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: ErrorType,
        code: &str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            body: Box::new(ErrorBody {
                error: ErrorDetail {
                    kind,
                    code: code.to_string(),
                    message: redact_card_numbers(&message.into()).into_owned(),
                    param: None,
                    decline_code: None,
                    payment: None,
                },
            }),
            retry_after_s: None,
            rate_limit_per_s: None,
        }
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn rate_limit(mut self, per_second: u64) -> Self {
        self.rate_limit_per_s = Some(per_second);
        self
    }

    /// The field at fault; a client's field name can be anything, a card number too.
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.body.error.param = Some(redact_card_numbers(&param.into()).into_owned());
        self
    }

    pub fn invalid(code: &str, param: &str, message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorType::InvalidRequestError,
            code,
            message,
        )
        .param(param)
    }

    pub fn not_found(what: &str, param: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorType::InvalidRequestError,
            "resource_missing",
            format!("No such {what}"),
        )
        .param(param)
    }

    pub fn unauthorized(message: &str) -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::AuthenticationError,
            "invalid_api_key",
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::ApiError,
            "internal_error",
            message,
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::ApiError,
            "store_unavailable",
            message,
        )
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).expect("error bodies serialize")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.to_json()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(limit) = self.rate_limit_per_s {
            let headers = response.headers_mut();
            headers.insert("ratelimit-limit", HeaderValue::from(limit));
            headers.insert("ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert(
                "ratelimit-reset",
                HeaderValue::from(self.retry_after_s.unwrap_or(1)),
            );
        }
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("payment", "id"),
            StoreError::IdempotencyMismatch => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorType::IdempotencyError,
                "idempotency_key_reused",
                e.to_string(),
            )
            .param("Idempotency-Key"),
            StoreError::Ledger(l) => l.into(),
            StoreError::Unavailable(_)
            | StoreError::ShardDown { .. }
            | StoreError::WrongShard { .. } => {
                ApiError::unavailable(e.to_string()).retry_after(STORE_BUSY_RETRY_AFTER_S)
            }
            // Retryable at once elsewhere, or here in a moment; nothing was written.
            StoreError::Overloaded => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorType::ApiError,
                "overloaded",
                "too many writes are waiting for this merchant's shard; nothing was written: retry with the same Idempotency-Key after Retry-After",
            )
            .retry_after(STORE_BUSY_RETRY_AFTER_S),
            // Retryable: the merchant's bucket is switching shards (at most about a second).
            StoreError::Fenced { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorType::ApiError,
                "shard_moving",
                "this merchant's data is moving between shards; retry with the same Idempotency-Key after Retry-After",
            )
            .retry_after(STORE_BUSY_RETRY_AFTER_S),
            // Retryable: the file is locked from outside the API for now.
            StoreError::Busy(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorType::ApiError,
                "store_busy",
                "the store is busy; retry with the same Idempotency-Key after Retry-After",
            )
            .retry_after(STORE_BUSY_RETRY_AFTER_S),
            // Retryable once space or permission returns; the writer logs each failed commit.
            StoreError::Unwritable(_) => {
                tracing::warn!(error = %e, "store cannot write");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorType::ApiError,
                    "storage_unwritable",
                    "the store cannot write now (its disk is full or it is read-only; logged for the operator); nothing was written: retry with the same Idempotency-Key after Retry-After",
                )
                .retry_after(STORE_BUSY_RETRY_AFTER_S)
            }
            // Not retryable, and an operator must know: logged with the SQLite code.
            StoreError::Corrupt(_) => {
                tracing::error!(error = %e, "store file corrupt");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorType::ApiError,
                    "store_corrupt",
                    "the store's file is damaged (logged for the operator); retrying will not help",
                )
            }
            StoreError::Sqlite(_) | StoreError::Internal(_) | StoreError::Postgres(_) => {
                tracing::error!(error = %e, "store error");
                ApiError::internal(
                    "internal error; the request may be retried with the same Idempotency-Key",
                )
            }
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::NotCapturable { .. } | LedgerError::NotRefundable { .. } => ApiError::new(
                StatusCode::CONFLICT,
                ErrorType::InvalidRequestError,
                "payment_unexpected_state",
                e.to_string(),
            ),
            LedgerError::FullyRefunded => ApiError::new(
                StatusCode::CONFLICT,
                ErrorType::InvalidRequestError,
                "payment_already_refunded",
                e.to_string(),
            ),
            LedgerError::AmountTooLarge { .. } => {
                ApiError::invalid("amount_too_large", "amount", e.to_string())
            }
            LedgerError::AmountNotPositive => {
                ApiError::invalid("amount_too_small", "amount", e.to_string())
            }
            LedgerError::Invariant(_) => {
                tracing::error!(error = %e, "ledger invariant");
                ApiError::internal(e.to_string())
            }
        }
    }
}
