//! Goose scenarios, one file a user journey, and the registry that weights them.
//! Request names are stable: thresholds and reports refer to them.

mod auth_capture;
mod browse;
mod cancel;
mod checkout;
mod declines;
mod healthz;
mod refund;
mod retry_storm;

use crate::loadtest::acks::Pending;
use crate::loadtest::context::{self, RunContext};
use auth_capture::run as auth_capture_run;
use browse::run as browse_run;
use cancel::run as cancel_run;
use checkout::run as checkout_run;
use declines::run as declines_run;
use goose::prelude::*;
use healthz::run as healthz_run;
use refund::run as refund_run;
use retry_storm::run as retry_storm_run;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

pub const SCENARIO_NAMES: &[&str] = &[
    "checkout",
    "auth_capture",
    "refund",
    "cancel",
    "browse",
    "declines",
    "retry_storm",
    "healthz",
];

/// Request names as they appear in reports and thresholds (Goose prefixes the method).
pub mod names {
    pub const PAYMENTS: &str = "/v1/payments";
    pub const PAYMENT: &str = "/v1/payments/{id}";
    pub const CAPTURE: &str = "/v1/payments/{id}/capture";
    pub const CANCEL: &str = "/v1/payments/{id}/cancel";
    pub const REFUNDS: &str = "/v1/payments/{id}/refunds";
    pub const BALANCE: &str = "/v1/balance";
    pub const DECLINE: &str = "/v1/payments (decline)";
    pub const RETRY: &str = "/v1/payments (retry storm)";
    pub const RETRY_IMPATIENT: &str = "/v1/payments (retry storm, impatient)";
}

pub fn scenario(name: &str, weight: usize) -> Result<Scenario, GooseError> {
    let s = scenario!(name).set_weight(weight)?;
    Ok(match name {
        "checkout" => s.register_transaction(transaction!(checkout_run).set_name("checkout")),
        "auth_capture" => {
            s.register_transaction(transaction!(auth_capture_run).set_name("auth_capture"))
        }
        "refund" => s.register_transaction(transaction!(refund_run).set_name("refund")),
        "cancel" => s.register_transaction(transaction!(cancel_run).set_name("cancel")),
        "browse" => s.register_transaction(transaction!(browse_run).set_name("browse")),
        "declines" => s.register_transaction(transaction!(declines_run).set_name("declines")),
        "retry_storm" => {
            s.register_transaction(transaction!(retry_storm_run).set_name("retry_storm"))
        }
        "healthz" => s.register_transaction(transaction!(healthz_run).set_name("healthz")),
        other => unreachable!("profile checking admits only known scenarios, not {other:?}"),
    })
}

/// One API call from a scenario.
pub(crate) struct Call {
    pub method: GooseMethod,
    pub path: String,
    pub name: &'static str,
    pub merchant: usize,
    pub key: Option<String>,
    pub body: Option<Value>,
    /// Which statuses count as success for this call.
    pub ok: fn(u16) -> bool,
}

pub(crate) fn is_2xx(s: u16) -> bool {
    (200..300).contains(&s)
}

pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
}

/// Send through Goose (so it lands in Goose's metrics and reports), mark success by the
/// call's own rule, and feed the live figures.
pub(crate) async fn send(
    user: &mut GooseUser,
    ctx: &RunContext,
    call: Call,
) -> Result<Reply, Box<TransactionError>> {
    let merchant = &ctx.merchants[call.merchant];
    let mut builder = user
        .get_request_builder(&call.method, &call.path)?
        .bearer_auth(&merchant.key);
    if let Some(k) = &call.key {
        builder = builder.header("Idempotency-Key", k);
    }
    if let Some(b) = &call.body {
        builder = builder.json(b);
    }
    let request = GooseRequest::builder()
        .method(call.method)
        .path(call.path.as_str())
        .name(call.name)
        .set_request_builder(builder)
        .build();
    let started = Instant::now();
    let mut goose = user.request(request).await?;
    let (status, body) = match goose.response {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    };
    let ok = status != 0 && (call.ok)(status);
    if ok && !goose.request.success {
        user.set_success(&mut goose.request)?;
    } else if !ok && goose.request.success {
        user.set_failure("unexpected status", &mut goose.request, None, None)?;
    }
    ctx.live.record(started.elapsed(), ok);
    Ok(Reply { status, body })
}

pub(crate) fn card(number: &str) -> Value {
    json!({ "number": number, "exp_month": 12, "exp_year": 2034 })
}

/// A plausible basket: mostly usd, some eur and jpy (a zero-decimal currency).
pub(crate) fn payment_body(capture: bool, card_number: &str) -> Value {
    let pick = rand::random::<u32>() % 10;
    let (currency, amount) = match pick {
        0 => ("jpy", 100 + rand::random::<u64>() % 20_000),
        1 | 2 => ("eur", 100 + rand::random::<u64>() % 50_000),
        _ => ("usd", 100 + rand::random::<u64>() % 50_000),
    };
    json!({ "amount": amount, "currency": currency, "card": card(card_number), "capture": capture })
}

pub(crate) const FAILING_CARDS: &[&str] = &[
    "4000000000000002",
    "4000000000009995",
    "4000000000009987",
    "4000000000000119",
];

pub(crate) const APPROVED_CARD: &str = "4242424242424242";

/// Create a payment and log what was acknowledged. None when the API did not accept it.
pub(crate) async fn create_payment(
    user: &mut GooseUser,
    ctx: &RunContext,
    capture: bool,
) -> Result<Option<(usize, Value)>, Box<TransactionError>> {
    let merchant = ctx.pick_merchant();
    let key = ctx.new_key();
    let reply = send(
        user,
        ctx,
        Call {
            method: GooseMethod::Post,
            path: names::PAYMENTS.into(),
            name: names::PAYMENTS,
            merchant,
            key: Some(key.clone()),
            body: Some(payment_body(capture, APPROVED_CARD)),
            ok: is_2xx,
        },
    )
    .await?;
    if is_2xx(reply.status) {
        ctx.acks.created(merchant, &key, &reply.body);
        Ok(Some((merchant, reply.body)))
    } else {
        Ok(None)
    }
}

/// Capture, cancel or refund `payment`, logging the change as pending until answered.
pub(crate) async fn change_payment(
    user: &mut GooseUser,
    ctx: &RunContext,
    merchant: usize,
    id: &str,
    change: Pending,
) -> Result<Option<Value>, Box<TransactionError>> {
    let (name, path, body) = match &change {
        Pending::Capture { amount } => (
            names::CAPTURE,
            format!("/v1/payments/{id}/capture"),
            json!({ "amount": amount }),
        ),
        Pending::Cancel => (
            names::CANCEL,
            format!("/v1/payments/{id}/cancel"),
            json!({}),
        ),
        Pending::Refund { amount } => (
            names::REFUNDS,
            format!("/v1/payments/{id}/refunds"),
            json!({ "amount": amount }),
        ),
    };
    let refund = matches!(change, Pending::Refund { .. });
    ctx.acks.pending(id, change);
    let reply = send(
        user,
        ctx,
        Call {
            method: GooseMethod::Post,
            path,
            name,
            merchant,
            key: Some(ctx.new_key()),
            body: Some(body),
            ok: is_2xx,
        },
    )
    .await?;
    if is_2xx(reply.status) {
        if refund {
            ctx.acks.refunded(&reply.body);
        } else {
            ctx.acks.updated(&reply.body);
        }
        Ok(Some(reply.body))
    } else {
        if reply.status != 0 {
            ctx.acks.refused(id);
        }
        Ok(None)
    }
}

pub(crate) fn ctx() -> Arc<RunContext> {
    context::current()
}
