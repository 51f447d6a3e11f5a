//! Merchant routes: payments, captures, cancels, refunds, reads and the balance.

use super::AppState;
use super::error::{ApiError, ErrorBody, ErrorType};
use super::extract::{ApiJson, AuthedMerchant, IdempotencyKey, OptionalBody};
use super::types::*;
use crate::ids::{is_id, new_id, now_ms};
use crate::ledger::cards::{CardError, CardNumber, CardOutcome, check_expiry};
use crate::ledger::{
    Authorization, CardSummary, Currency, Money, MoneyError, Payment, PaymentStatus,
};
use crate::store::{Idempotency, Mutation, Outcome, StoredResponse, WriteRequest};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;

pub const LIST_LIMIT_DEFAULT: usize = 10;
pub const LIST_LIMIT_MAX: usize = 100;

/// Create a payment: authorize the card and, unless `capture` is false, capture it.
#[utoipa::path(post, path = "/v1/payments", tag = "payments",
    request_body = CreatePaymentRequest,
    params(("Idempotency-Key" = String, Header, description = "Required. A retry with the same key and body replays the first answer.")),
    responses(
        (status = 200, description = "The payment", body = PaymentObject),
        (status = 400, description = "Bad input, or the key was used with another body", body = ErrorBody),
        (status = 402, description = "Declined or processor error: `error.payment` is the failed payment", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create_payment(
    State(state): State<Arc<AppState>>,
    AuthedMerchant(merchant): AuthedMerchant,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<CreatePaymentRequest>,
) -> Result<Response, ApiError> {
    let key = key.required()?;
    let currency = Currency::parse(&body.currency)
        .map_err(|e| ApiError::invalid("currency_invalid", "currency", e.to_string()))?;
    let money = Money::new(body.amount, currency).map_err(|e| match e {
        MoneyError::NotPositive => ApiError::invalid("amount_too_small", "amount", e.to_string()),
        _ => ApiError::invalid("amount_too_large", "amount", e.to_string()),
    })?;
    let card = CardNumber::parse(&body.card.number).map_err(|e| card_error(e, "card.number"))?;
    check_expiry(
        body.card.exp_month,
        body.card.exp_year,
        current_year_month(),
    )
    .map_err(|e| match e {
        CardError::BadMonth => card_error(e, "card.exp_month"),
        _ => card_error(e, "card.exp_year"),
    })?;
    let card_fingerprint = card.fingerprint(&state.secret_key);
    let fingerprint = fingerprint(
        &state.secret_key,
        &[
            b"create",
            &body.amount.to_le_bytes(),
            currency.code().as_bytes(),
            card.last4().as_bytes(),
            card_fingerprint.as_bytes(),
            &[body.card.exp_month],
            &body.card.exp_year.to_le_bytes(),
            &[body.capture as u8],
        ],
    );
    let auth = match card.outcome() {
        CardOutcome::Approved => Authorization::Approved,
        CardOutcome::Declined(code) => Authorization::Failed(code),
        CardOutcome::ProcessorError => Authorization::Failed("processing_error"),
    };
    let summary = CardSummary {
        brand: card.brand(),
        last4: card.last4().to_string(),
        fingerprint: card_fingerprint,
    };
    drop(card);
    let (payment, transfers) = Payment::create(
        new_id("pay"),
        merchant.id.clone(),
        money,
        summary,
        auth,
        body.capture,
        now_ms(),
    )?;
    let request = WriteRequest {
        merchant,
        idempotency: Some(Idempotency {
            key,
            request_fingerprint: fingerprint,
        }),
        mutation: Mutation::Create { payment, transfers },
        render: render_payment,
    };
    state.write(request).await
}

/// Capture an authorized payment, in full or in part; the rest is released.
#[utoipa::path(post, path = "/v1/payments/{id}/capture", tag = "payments",
    request_body(content = CaptureRequest, description = "Optional"),
    params(("id" = String, Path), ("Idempotency-Key" = String, Header, description = "Required: a change that timed out is learned by resending it with the same key, never applied twice.")),
    responses((status = 200, body = PaymentObject),
        (status = 400, description = "Bad input, or more than the payment still holds (`amount_too_large`)", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Not in a capturable state", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn capture_payment(
    State(state): State<Arc<AppState>>,
    AuthedMerchant(merchant): AuthedMerchant,
    Path(id): Path<String>,
    key: IdempotencyKey,
    OptionalBody(body): OptionalBody<CaptureRequest>,
) -> Result<Response, ApiError> {
    let payment_id = payment_id(id)?;
    let amount = optional_amount(body.amount)?;
    let fingerprint = fingerprint(
        &state.secret_key,
        &[
            b"capture",
            payment_id.as_bytes(),
            &amount.unwrap_or(0).to_le_bytes(),
        ],
    );
    let mutation = Mutation::Capture { payment_id, amount };
    state
        .write(request(
            merchant,
            key,
            fingerprint,
            mutation,
            render_payment,
        )?)
        .await
}

/// Cancel an authorized payment: the whole hold is released.
#[utoipa::path(post, path = "/v1/payments/{id}/cancel", tag = "payments",
    request_body(content = CancelRequest, description = "Optional: an empty body or `{}`"),
    params(("id" = String, Path), ("Idempotency-Key" = String, Header, description = "Required: a change that timed out is learned by resending it with the same key, never applied twice.")),
    responses((status = 200, body = PaymentObject), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not in a cancelable state", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn cancel_payment(
    State(state): State<Arc<AppState>>,
    AuthedMerchant(merchant): AuthedMerchant,
    Path(id): Path<String>,
    key: IdempotencyKey,
    OptionalBody(CancelRequest {}): OptionalBody<CancelRequest>,
) -> Result<Response, ApiError> {
    let payment_id = payment_id(id)?;
    let fingerprint = fingerprint(&state.secret_key, &[b"cancel", payment_id.as_bytes()]);
    let mutation = Mutation::Cancel { payment_id };
    state
        .write(request(
            merchant,
            key,
            fingerprint,
            mutation,
            render_payment,
        )?)
        .await
}

/// Refund a captured payment, in part or in full; several refunds never add up to more
/// than was captured.
#[utoipa::path(post, path = "/v1/payments/{id}/refunds", tag = "payments",
    request_body(content = RefundRequest, description = "Optional"),
    params(("id" = String, Path), ("Idempotency-Key" = String, Header, description = "Required: a change that timed out is learned by resending it with the same key, never applied twice.")),
    responses((status = 200, body = RefundObject),
        (status = 400, description = "Bad input, or more than is still refundable (`amount_too_large`)", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Not refundable", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn refund_payment(
    State(state): State<Arc<AppState>>,
    AuthedMerchant(merchant): AuthedMerchant,
    Path(id): Path<String>,
    key: IdempotencyKey,
    OptionalBody(body): OptionalBody<RefundRequest>,
) -> Result<Response, ApiError> {
    let payment_id = payment_id(id)?;
    let amount = optional_amount(body.amount)?;
    let fingerprint = fingerprint(
        &state.secret_key,
        &[
            b"refund",
            payment_id.as_bytes(),
            &amount.unwrap_or(0).to_le_bytes(),
        ],
    );
    let mutation = Mutation::Refund {
        payment_id,
        refund_id: new_id("re"),
        amount,
    };
    state
        .write(request(
            merchant,
            key,
            fingerprint,
            mutation,
            render_answer,
        )?)
        .await
}

#[utoipa::path(get, path = "/v1/payments/{id}", tag = "payments",
    params(("id" = String, Path)),
    responses((status = 200, body = PaymentObject), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_payment(
    State(state): State<Arc<AppState>>,
    AuthedMerchant(merchant): AuthedMerchant,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = payment_id(id)?;
    // Another merchant's payment is simply not found: 404, never 403.
    let payment = state
        .store
        .payment(merchant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("payment", "id"))?;
    Ok(json(StatusCode::OK, &PaymentObject::from(&payment)))
}

/// List payments, newest first.
#[utoipa::path(get, path = "/v1/payments", tag = "payments",
    params(("limit" = Option<usize>, Query, description = "1 to 100, default 10"),
        ("starting_after" = Option<String>, Query, description = "A payment id: list the ones older than it")),
    responses((status = 200, body = PaymentList), (status = 400, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_payments(
    State(state): State<Arc<AppState>>,
    AuthedMerchant(merchant): AuthedMerchant,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::invalid("parameter_invalid", "query", e.body_text()))?;
    let limit = query.limit.unwrap_or(LIST_LIMIT_DEFAULT);
    if !(1..=LIST_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::invalid(
            "parameter_invalid",
            "limit",
            format!("limit must be 1 to {LIST_LIMIT_MAX}"),
        ));
    }
    if let Some(cursor) = &query.starting_after
        && !is_id(cursor, "pay")
    {
        return Err(ApiError::invalid(
            "parameter_invalid",
            "starting_after",
            "starting_after must be a payment id",
        ));
    }
    let (page, has_more) = state
        .store
        .list_payments(merchant, query.starting_after, limit)
        .await?;
    Ok(json(
        StatusCode::OK,
        &PaymentList {
            object: "list",
            data: page.iter().map(PaymentObject::from).collect(),
            has_more,
            url: "/v1/payments",
        },
    ))
}

/// Pending and available amounts per currency.
#[utoipa::path(get, path = "/v1/balance", tag = "payments",
    responses((status = 200, body = BalanceObject)),
    security(("api_key" = [])))]
pub async fn get_balance(
    State(state): State<Arc<AppState>>,
    AuthedMerchant(merchant): AuthedMerchant,
) -> Result<Response, ApiError> {
    let lines = state.store.balance(merchant).await?;
    Ok(json(StatusCode::OK, &BalanceObject::from(lines)))
}

/// A change to a payment, with its Idempotency-Key, which every change must carry: a
/// capture, cancel or refund whose answer was lost (a timeout, a dropped connection) may
/// still have committed, and only resending it under the same key learns which without
/// applying it twice.
fn request(
    merchant: Arc<crate::store::Merchant>,
    key: IdempotencyKey,
    request_fingerprint: [u8; 32],
    mutation: Mutation,
    render: fn(&Outcome) -> StoredResponse,
) -> Result<WriteRequest, ApiError> {
    Ok(WriteRequest {
        merchant,
        idempotency: Some(Idempotency {
            key: key.required()?,
            request_fingerprint,
        }),
        mutation,
        render,
    })
}

fn payment_id(id: String) -> Result<String, ApiError> {
    if is_id(&id, "pay") {
        Ok(id)
    } else {
        Err(ApiError::not_found("payment", "id"))
    }
}

fn optional_amount(amount: Option<i64>) -> Result<Option<u64>, ApiError> {
    match amount {
        Some(a) if a <= 0 => Err(ApiError::invalid(
            "amount_too_small",
            "amount",
            "amount must be positive",
        )),
        Some(a) => Ok(Some(a as u64)),
        None => Ok(None),
    }
}

fn card_error(e: CardError, param: &str) -> ApiError {
    let code = match e {
        CardError::BadLength | CardError::BadChecksum => "invalid_number",
        CardError::BadMonth => "invalid_expiry_month",
        CardError::Expired => "expired_card",
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorType::CardError,
        code,
        e.to_string(),
    )
    .param(param)
}

/// A keyed hash of what a request asked for: a retry must ask for the same thing. Keyed,
/// because it covers the card's fingerprint and must not help anyone guess a number.
fn fingerprint(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(&(part.len() as u32).to_le_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

pub(super) fn current_year_month() -> (u16, u8) {
    let (year, month, ..) = crate::clock::utc_now();
    (year as u16, month as u8)
}

pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    respond(
        status,
        serde_json::to_vec(value).expect("response bodies serialize"),
        false,
    )
}

pub fn respond(status: StatusCode, body: Vec<u8>, replayed: bool) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// A payment, or for a failed one the 402 card error that carries it.
fn render_payment(outcome: &Outcome) -> StoredResponse {
    let payment = match outcome {
        Outcome::Payment(p) | Outcome::Refund { payment: p, .. } => p,
    };
    let object = PaymentObject::from(payment);
    if payment.status != PaymentStatus::Failed {
        return stored(StatusCode::OK, &object);
    }
    let code = payment.failure_code.as_deref().unwrap_or("card_declined");
    let (code, decline_code, message) = if code == "processing_error" {
        (
            "processing_error",
            None,
            "An error occurred while processing the card",
        )
    } else {
        (
            "card_declined",
            Some(code.to_string()),
            "The card was declined",
        )
    };
    let mut error = ApiError::new(
        StatusCode::PAYMENT_REQUIRED,
        ErrorType::CardError,
        code,
        message,
    );
    error.body.error.decline_code = decline_code;
    error.body.error.payment = Some(serde_json::to_value(&object).expect("payments serialize"));
    StoredResponse {
        status: error.status.as_u16(),
        body: error.to_json(),
        replayed: false,
    }
}

/// Any outcome as its endpoint answered it: a refund's as the refund, the others' as the
/// payment (the refund endpoint's renderer). The store renders kept answers again with
/// this (`SqliteExport::open`), so it must stay deterministic: the same rows, the same
/// bytes.
pub fn render_answer(outcome: &Outcome) -> StoredResponse {
    match outcome {
        Outcome::Refund { refund, .. } => stored(StatusCode::OK, &RefundObject::from(refund)),
        Outcome::Payment(_) => render_payment(outcome),
    }
}

fn stored<T: serde::Serialize>(status: StatusCode, value: &T) -> StoredResponse {
    StoredResponse {
        status: status.as_u16(),
        body: serde_json::to_vec(value).expect("response bodies serialize"),
        replayed: false,
    }
}
