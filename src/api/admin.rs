//! Admin routes, guarded by the admin token: merchant creation and the ledger audit.

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, ApiJson, OptionalBody};
use super::payments::json;
use super::types::{
    CreateMerchantRequest, KeyRolled, MerchantCreated, PaymentObject, RollKeyRequest,
};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

pub const MERCHANT_NAME_LEN_MAX: usize = 200;

/// Create a merchant. The secret key is in this answer only; the server keeps its hash.
#[utoipa::path(post, path = "/v1/merchants", tag = "admin",
    request_body = CreateMerchantRequest,
    responses((status = 201, body = MerchantCreated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn create_merchant(
    State(state): State<Arc<AppState>>,
    _: Admin,
    ApiJson(body): ApiJson<CreateMerchantRequest>,
) -> Result<Response, ApiError> {
    let name = body.name.trim().to_string();
    // Characters, as the message and the OpenAPI document say (not bytes). No NUL:
    // PostgreSQL's text cannot hold one (an error, not a merchant).
    if name.is_empty() || name.chars().count() > MERCHANT_NAME_LEN_MAX || name.contains('\0') {
        return Err(ApiError::invalid(
            "parameter_invalid",
            "name",
            format!("name must be 1 to {MERCHANT_NAME_LEN_MAX} characters, none of them NUL"),
        ));
    }
    // A name is stored and shown: a card number typed into it would be kept in the clear.
    if crate::ledger::cards::contains_card_number(&name) {
        return Err(ApiError::invalid(
            "parameter_invalid",
            "name",
            "name must not contain a card number",
        ));
    }
    let (merchant, key) = state.store.create_merchant(name).await?;
    Ok(json(
        StatusCode::CREATED,
        &MerchantCreated::new(&merchant, key.expose().to_string()),
    ))
}

/// The longest an old key may keep working after a roll, as Stripe allows.
pub const ROLL_GRACE_MAX_S: i64 = 7 * 24 * 3600;

/// Roll a merchant's secret key, as Stripe rolls keys: the new key is in this answer
/// only; the old one is refused from now on, or after `expires_in` seconds. On a
/// PostgreSQL layout the instance that rolled refuses the old key at once and every
/// other instance within its merchant cache's lifetime (5 s).
#[utoipa::path(post, path = "/v1/admin/merchants/{id}/roll_key", tag = "admin",
    request_body(content = RollKeyRequest, description = "Optional"),
    params(("id" = String, Path, description = "The merchant's id")),
    responses((status = 200, body = KeyRolled), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn roll_key(
    State(state): State<Arc<AppState>>,
    _: Admin,
    Path(id): Path<String>,
    OptionalBody(body): OptionalBody<RollKeyRequest>,
) -> Result<Response, ApiError> {
    let grace = match body.expires_in {
        None | Some(0) => None,
        Some(s) if (1..=ROLL_GRACE_MAX_S).contains(&s) => {
            Some(std::time::Duration::from_secs(s as u64))
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "parameter_invalid",
                "expires_in",
                format!("expires_in must be 0 to {ROLL_GRACE_MAX_S} seconds"),
            ));
        }
    };
    // Only an id's shape reaches the store: other text (a NUL, which PostgreSQL refuses
    // with an error) is simply no merchant.
    if !crate::ids::is_id(&id, "mer") {
        return Err(ApiError::not_found("merchant", "id"));
    }
    let rolled = state
        .store
        .roll_key(&id, grace)
        .await?
        .ok_or_else(|| ApiError::not_found("merchant", "id"))?;
    Ok(json(
        StatusCode::OK,
        &KeyRolled {
            merchant: MerchantCreated::new(&rolled.merchant, rolled.key.expose().to_string()),
            previous_key_expires: rolled.previous_key_expires_ms.map(|ms| ms / 1000),
        },
    ))
}

/// Check the ledger on every shard: postings balance per currency, every payment's
/// invariants, postings and refunds match each payment, balances match postings, one
/// payment per idempotency key.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin",
    responses((status = 200, description = "The audit report; `ok` says whether every check passed", body = Object),
        (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn audit(State(state): State<Arc<AppState>>, _: Admin) -> Result<Response, ApiError> {
    let report = state.store.audit().await?;
    Ok(json(StatusCode::OK, &report))
}

pub const LOOKUP_BATCH_MAX: usize = 1000;

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// Up to 1000 (merchant id, payment id) pairs.
    pub payments: Vec<LookupItem>,
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupItem {
    pub merchant_id: String,
    pub id: String,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct LookupResponse {
    /// The payments found, each as its merchant sees it.
    pub found: Vec<PaymentObject>,
    /// The ids not found under the merchant named.
    pub missing: Vec<String>,
}

/// Look payments up across merchants: what the load test's money audit uses to check
/// every acknowledged payment.
#[utoipa::path(post, path = "/v1/admin/payments/lookup", tag = "admin",
    request_body = LookupRequest,
    responses((status = 200, body = LookupResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn lookup(
    State(state): State<Arc<AppState>>,
    _: Admin,
    ApiJson(body): ApiJson<LookupRequest>,
) -> Result<Response, ApiError> {
    if body.payments.len() > LOOKUP_BATCH_MAX {
        return Err(ApiError::invalid(
            "parameter_invalid",
            "payments",
            format!("at most {LOOKUP_BATCH_MAX} payments a request"),
        ));
    }
    // `missing` echoes ids: only well-formed ones, so it can never echo other text
    // (a card number typed in place of an id).
    if let Some(i) = body
        .payments
        .iter()
        .position(|p| !crate::ids::is_id(&p.id, "pay"))
    {
        return Err(ApiError::invalid(
            "parameter_invalid",
            &format!("payments[{i}].id"),
            format!("payments[{i}].id must be a payment id (pay_...)"),
        ));
    }
    let mut found = Vec::with_capacity(body.payments.len());
    let mut missing = Vec::new();
    for item in body.payments {
        // A malformed merchant id is no merchant: the store is not asked (see roll_key).
        let merchant = if crate::ids::is_id(&item.merchant_id, "mer") {
            state.store.merchant(&item.merchant_id).await?
        } else {
            None
        };
        let payment = match merchant {
            Some(m) => state.store.payment(m, item.id.clone()).await?,
            None => None,
        };
        match payment {
            Some(p) => found.push(PaymentObject::from(&p)),
            None => missing.push(item.id),
        }
    }
    Ok(json(StatusCode::OK, &LookupResponse { found, missing }))
}

/// The most payments one page of `GET /v1/admin/payments` carries.
pub const KEYED_PAGE_LIMIT_MAX: usize = 10_000;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyedQuery {
    pub merchant_id: String,
    pub key_prefix: String,
    pub starting_after: Option<String>,
    pub limit: Option<usize>,
}

/// A payment with the Idempotency-Key it was made under.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct KeyedPayment {
    pub idempotency_key: String,
    #[serde(flatten)]
    pub payment: PaymentObject,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct KeyedPage {
    pub data: Vec<KeyedPayment>,
    pub has_more: bool,
}

/// One merchant's payments made under Idempotency-Keys that start with `key_prefix`,
/// oldest first: how a load test's audit reads back its own run's payments in bulk (and
/// finds any nobody acknowledged).
#[utoipa::path(get, path = "/v1/admin/payments", tag = "admin",
    params(("merchant_id" = String, Query, description = "The merchant's id"),
        ("key_prefix" = String, Query, description = "1 to 255 visible ASCII characters"),
        ("starting_after" = Option<String>, Query, description = "A payment id: list the ones after it"),
        ("limit" = Option<usize>, Query, description = "1 to 10000, default 1000")),
    responses((status = 200, body = KeyedPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin_token" = [])))]
pub async fn payments_with_key_prefix(
    State(state): State<Arc<AppState>>,
    _: Admin,
    query: Result<Query<KeyedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::invalid("parameter_invalid", "query", e.body_text()))?;
    let limit = query.limit.unwrap_or(1000);
    if !(1..=KEYED_PAGE_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::invalid(
            "parameter_invalid",
            "limit",
            format!("limit must be 1 to {KEYED_PAGE_LIMIT_MAX}"),
        ));
    }
    let prefix = &query.key_prefix;
    if prefix.is_empty()
        || prefix.len() > super::extract::IDEMPOTENCY_KEY_LEN_MAX
        || !prefix.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::invalid(
            "parameter_invalid",
            "key_prefix",
            format!(
                "key_prefix must be 1 to {} visible ASCII characters",
                super::extract::IDEMPOTENCY_KEY_LEN_MAX
            ),
        ));
    }
    if let Some(cursor) = &query.starting_after
        && !crate::ids::is_id(cursor, "pay")
    {
        return Err(ApiError::invalid(
            "parameter_invalid",
            "starting_after",
            "starting_after must be a payment id",
        ));
    }
    // A malformed merchant id is no merchant: the store is not asked (see roll_key).
    let merchant = match crate::ids::is_id(&query.merchant_id, "mer") {
        true => state.store.merchant(&query.merchant_id).await?,
        false => None,
    }
    .ok_or_else(|| ApiError::not_found("merchant", "merchant_id"))?;
    let (page, has_more) = state
        .store
        .payments_with_key_prefix(merchant, query.key_prefix, query.starting_after, limit)
        .await?;
    let data = page
        .iter()
        .map(|(p, key)| KeyedPayment {
            idempotency_key: key.clone(),
            payment: PaymentObject::from(p),
        })
        .collect();
    Ok(json(StatusCode::OK, &KeyedPage { data, has_more }))
}
