//! Admin routes, guarded by the admin token: merchant creation and the ledger audit.

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Admin, ApiJson};
use super::payments::json;
use super::types::{CreateMerchantRequest, MerchantCreated};
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
