//! Extractors that turn a request into domain inputs or an `ApiError` in our shape.

use super::AppState;
use super::error::ApiError;
use crate::secrets::{hash_key, same_hash};
use crate::store::Merchant;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The merchant named by `Authorization: Bearer sk_...`.
pub struct AuthedMerchant(pub Arc<Merchant>);

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

impl FromRequestParts<Arc<AppState>> for AuthedMerchant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let key = bearer(parts).ok_or_else(|| {
            ApiError::unauthorized("No API key provided: send `Authorization: Bearer sk_test_...`")
        })?;
        let merchant = state
            .store
            .authenticate(key)
            .await?
            .ok_or_else(|| ApiError::unauthorized("Invalid API key"))?;
        if let Some(limiter) = &state.rate_limiter
            && let Err(limited) = limiter.take(&merchant.id, std::time::Instant::now())
        {
            metrics::counter!("paytool_rate_limited_total").increment(1);
            let limit = limiter.limit();
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                super::error::ErrorType::RateLimitError,
                "rate_limited",
                format!(
                    "This merchant may send {} requests a second (bursts of {}); retry after Retry-After",
                    limit.per_second, limit.burst
                ),
            )
            .retry_after(limited.retry_after.as_secs_f64().ceil().max(1.0) as u64)
            .rate_limit(limit.per_second.ceil() as u64));
        }
        Ok(AuthedMerchant(merchant))
    }
}

/// The admin token, for merchant creation and the audit.
pub struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        match bearer(parts) {
            Some(token) if same_hash(&hash_key(token), &state.admin_token_hash) => Ok(Admin),
            Some(_) => Err(ApiError::unauthorized("Invalid admin token")),
            None => Err(ApiError::unauthorized(
                "This route needs the admin token: send `Authorization: Bearer <admin token>`",
            )),
        }
    }
}

/// `Idempotency-Key`, when present: 1 to 255 visible ASCII characters.
pub struct IdempotencyKey(pub Option<String>);

pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let bad = || {
            ApiError::invalid(
                "idempotency_key_invalid",
                "Idempotency-Key",
                format!(
                    "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} visible ASCII characters"
                ),
            )
        };
        let key = value.to_str().map_err(|_| bad())?;
        if key.is_empty()
            || key.len() > IDEMPOTENCY_KEY_LEN_MAX
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(bad());
        }
        // Keys are stored and logged by clients' retries: never a card number in them.
        if crate::ledger::cards::contains_card_number(key) {
            return Err(ApiError::invalid(
                "idempotency_key_invalid",
                "Idempotency-Key",
                "Idempotency-Key must not contain a card number",
            ));
        }
        Ok(IdempotencyKey(Some(key.to_string())))
    }
}

impl IdempotencyKey {
    pub fn required(self) -> Result<String, ApiError> {
        self.0.ok_or_else(|| {
            ApiError::invalid(
                "idempotency_key_missing",
                "Idempotency-Key",
                "This request needs an Idempotency-Key header, so that a retry cannot pay twice",
            )
        })
    }
}

/// A JSON body parsed strictly (unknown fields refused), with the failing field named.
/// An empty body parses as `T::default()` when `T` allows it (see `OptionalBody`).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Like `ApiJson`, but an empty body means "no parameters".
pub struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(OptionalBody(T::default()));
        }
        parse_json(&bytes).map(OptionalBody)
    }
}

/// Longest a client may take to send a request's body once its headers are in (a slow
/// sender holds a connection and a task; the header timeout covers only the headers).
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    tokio::time::timeout(BODY_READ_TIMEOUT, Bytes::from_request(req, state))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                super::error::ErrorType::InvalidRequestError,
                "body_timeout",
                format!(
                    "The request body did not arrive within {}s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            )
        })?
        .map_err(|e: BytesRejection| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    super::error::ErrorType::InvalidRequestError,
                    "body_too_large",
                    "The request body is larger than the server accepts",
                )
            } else {
                ApiError::invalid("body_unreadable", "body", e.body_text())
            }
        })
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // A number too large for any type is well-formed JSON: its field is named below.
        if inner.is_syntax() && !message.starts_with("number out of range") || inner.is_eof() {
            return ApiError::invalid(
                "json_invalid",
                "body",
                format!("The body is not valid JSON: {message}"),
            );
        }
        let (code, param) = if let Some(field) = quoted_after(&message, "missing field `") {
            let param = if path == "." {
                field
            } else {
                format!("{path}.{field}")
            };
            ("parameter_missing", param)
        } else if message.starts_with("unknown field `") {
            // The path already ends at the unknown field.
            ("parameter_unknown", path)
        } else {
            ("parameter_invalid", path)
        };
        ApiError::invalid(code, &param, format!("Invalid `{param}`: {message}"))
    })?;
    // One JSON value and nothing after it.
    de.end().map_err(|e| {
        ApiError::invalid(
            "json_invalid",
            "body",
            format!("The body is not valid JSON: {e}"),
        )
    })?;
    Ok(value)
}

/// `missing field `amount`` -> `amount`.
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    Some(rest[..rest.find('`')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        number: String,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        amount: i64,
        card: Inner,
    }

    fn param_of(body: &str) -> (String, Option<String>) {
        let e = parse_json::<Outer>(body.as_bytes()).unwrap_err();
        (e.body.error.code, e.body.error.param)
    }

    #[test]
    fn names_the_field_at_fault() {
        assert_eq!(
            param_of(r#"{"card":{"number":"1"}}"#),
            ("parameter_missing".into(), Some("amount".into()))
        );
        assert_eq!(
            param_of(r#"{"amount":1,"card":{}}"#),
            ("parameter_missing".into(), Some("card.number".into()))
        );
        assert_eq!(
            param_of(r#"{"amount":-1.5,"card":{"number":"1"}}"#),
            ("parameter_invalid".into(), Some("amount".into()))
        );
        assert_eq!(
            param_of(r#"{"amount":1,"card":{"number":"1"},"x":1}"#),
            ("parameter_unknown".into(), Some("x".into()))
        );
        assert_eq!(param_of(r#"{"amount":1,"#).0, "json_invalid");
        assert_eq!(
            param_of(r#"{"amount":99999999999999999999,"card":{"number":"1"}}"#),
            ("parameter_invalid".into(), Some("amount".into()))
        );
    }
}
