//! Admin routes, guarded by the admin token: merchant creation and the ledger audit.

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, ApiJson};
use super::payments::json;
use super::types::{CreateMerchantRequest, MerchantCreated, PaymentObject};
use axum::extract::State;
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
    if name.is_empty() || name.len() > MERCHANT_NAME_LEN_MAX {
        return Err(ApiError::invalid(
            "parameter_invalid",
            "name",
            format!("name must be 1 to {MERCHANT_NAME_LEN_MAX} characters"),
        ));
    }
    let (merchant, key) = state.store.create_merchant(name).await?;
    Ok(json(
        StatusCode::CREATED,
        &MerchantCreated::new(&merchant, key.expose().to_string()),
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
    let mut found = Vec::with_capacity(body.payments.len());
    let mut missing = Vec::new();
    for item in body.payments {
        let payment = match state.store.merchant(&item.merchant_id).await? {
            Some(m) if crate::ids::is_id(&item.id, "pay") => {
                state.store.payment(m, item.id.clone()).await?
            }
            _ => None,
        };
        match payment {
            Some(p) => found.push(PaymentObject::from(&p)),
            None => missing.push(item.id),
        }
    }
    Ok(json(StatusCode::OK, &LookupResponse { found, missing }))
}
