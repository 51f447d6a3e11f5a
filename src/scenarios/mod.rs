//! The payment journeys a load test runs, one file a journey, and the registry that
//! names and weights them. Request names are stable: thresholds and reports refer to them.
//!
//! This layer knows nothing of the load test that drives it: a journey gets its run's
//! [`RunContext`] and a [`Client`] handed in, so the same code runs as a Goose user's
//! transaction (closed model) and as one arrival of the open model.

pub mod acks;
mod auth_capture;
mod browse;
pub mod cadence;
mod cancel;
mod checkout;
pub mod client;
pub mod context;
mod declines;
mod healthz;
pub mod instances;
pub mod live;
pub mod record;
mod refund;
pub mod replies;
mod retry_storm;

use acks::{Pending, RunKey, SentCreate};
use client::{Call, Client, Expect, JourneyResult, Method, Reply, Shape};
use context::RunContext;
use goose::goose::{Transaction, TransactionFunction};
use goose::prelude::{GooseError, GooseUser};
use replies::{PaymentId, PaymentSeen};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// Every journey. The profile names them in snake_case; a new journey is a new variant,
/// and the compiler finds every place that must learn it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// One request authorizes and captures.
    Checkout,
    /// Authorize, then capture in full or in part.
    AuthCapture,
    /// Pay, refund half, refund the rest.
    Refund,
    /// Authorize, then release the hold.
    Cancel,
    /// Balance, a page of payments, the next page, one payment.
    Browse,
    /// Test cards that decline or fail at the processor: a 402 is the expected answer.
    Declines,
    /// One Idempotency-Key sent concurrently and again after a timeout.
    RetryStorm,
    /// GET /healthz: for measuring the generator, not the payment path.
    Healthz,
}

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::Checkout,
        Scenario::AuthCapture,
        Scenario::Refund,
        Scenario::Cancel,
        Scenario::Browse,
        Scenario::Declines,
        Scenario::RetryStorm,
        Scenario::Healthz,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Checkout => "checkout",
            Scenario::AuthCapture => "auth_capture",
            Scenario::Refund => "refund",
            Scenario::Cancel => "cancel",
            Scenario::Browse => "browse",
            Scenario::Declines => "declines",
            Scenario::RetryStorm => "retry_storm",
            Scenario::Healthz => "healthz",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The known names, for error messages.
    pub fn names() -> String {
        Scenario::ALL.map(Scenario::name).join(", ")
    }

    /// The journey's first request (method, name): what an arrival that could not even
    /// be sent is recorded as.
    pub fn first_request(self) -> (Method, &'static str) {
        match self {
            Scenario::Checkout | Scenario::AuthCapture | Scenario::Refund | Scenario::Cancel => {
                (Method::Post, names::PAYMENTS)
            }
            Scenario::Declines => (Method::Post, names::DECLINE),
            Scenario::RetryStorm => (Method::Post, names::RETRY),
            Scenario::Browse => (Method::Get, names::BALANCE),
            Scenario::Healthz => (Method::Get, names::HEALTHZ),
        }
    }

    /// Run the journey once.
    pub async fn run<C: Client>(self, client: &mut C, ctx: &RunContext) -> JourneyResult {
        match self {
            Scenario::Checkout => checkout::run(client, ctx).await,
            Scenario::AuthCapture => auth_capture::run(client, ctx).await,
            Scenario::Refund => refund::run(client, ctx).await,
            Scenario::Cancel => cancel::run(client, ctx).await,
            Scenario::Browse => browse::run(client, ctx).await,
            Scenario::Declines => declines::run(client, ctx).await,
            Scenario::RetryStorm => retry_storm::run(client, ctx).await,
            Scenario::Healthz => healthz::run(client, ctx).await,
        }
    }

    /// The journey as a weighted Goose scenario whose users run it with `ctx`.
    pub fn goose(
        self,
        weight: usize,
        ctx: Arc<RunContext>,
    ) -> Result<goose::goose::Scenario, GooseError> {
        let journey: TransactionFunction = Arc::new(move |user: &mut GooseUser| {
            let ctx = ctx.clone();
            Box::pin(async move {
                let mut client = client::GooseClient::new(user, &ctx);
                self.run(&mut client, &ctx).await
            })
        });
        Ok(goose::goose::Scenario::new(self.name())
            .set_weight(weight)?
            .register_transaction(Transaction::new(journey).set_name(self.name())))
    }
}

/// Request names as they appear in reports and thresholds (Goose prefixes the method).
pub mod names {
    pub const PAYMENTS: &str = "/v1/payments";
    pub const PAYMENT: &str = "/v1/payments/{id}";
    pub const CAPTURE: &str = "/v1/payments/{id}/capture";
    pub const CANCEL: &str = "/v1/payments/{id}/cancel";
    pub const REFUNDS: &str = "/v1/payments/{id}/refunds";
    pub const BALANCE: &str = "/v1/balance";
    pub const HEALTHZ: &str = "/healthz";
    pub const DECLINE: &str = "/v1/payments (decline)";
    pub const RETRY: &str = "/v1/payments (retry storm)";
    pub const RETRY_IMPATIENT: &str = "/v1/payments (retry storm, impatient)";
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
async fn create_payment<C: Client>(
    client: &mut C,
    ctx: &RunContext,
    capture: bool,
) -> JourneyResult<Option<(usize, PaymentSeen)>> {
    let (merchant, key, call) =
        new_create(ctx, names::PAYMENTS, payment_body(capture, APPROVED_CARD));
    let reply = client
        .send(call.expect(Expect::Success(Shape::Payment)))
        .await?;
    Ok(logged_create(ctx, merchant, &key, &reply).map(|p| (merchant, p.clone())))
}

/// A create for a picked merchant under a fresh key, noted as sent before it is (see
/// `acks::Unanswered`): the merchant, the key and the call, whose expectation the
/// journey sets.
fn new_create(ctx: &RunContext, name: &'static str, body: Value) -> (usize, RunKey, Call) {
    let merchant = ctx.pick_merchant();
    let key = ctx.new_key();
    ctx.unanswered.sent(SentCreate {
        merchant,
        key: key.clone(),
        body: body.clone(),
    });
    let call = Call::post(
        names::PAYMENTS,
        name,
        merchant,
        key.as_str().to_string(),
        body,
    );
    (merchant, key, call)
}

/// A create's one answer: the payment it carried, acknowledged and logged, or, when it
/// certainly made nothing, the create struck off as answered.
fn logged_create<'r>(
    ctx: &RunContext,
    merchant: usize,
    key: &RunKey,
    reply: &'r Reply,
) -> Option<&'r PaymentSeen> {
    if reply.made_nothing() {
        ctx.unanswered.answered(key);
    }
    let p = reply.payment()?;
    ctx.acks.created(merchant, key, p);
    ctx.acks.answers_logged(1);
    ctx.unanswered.answered(key);
    Some(p)
}

/// Capture, cancel or refund `payment`, logging the change as pending until answered.
/// True when the API acknowledged it.
async fn change_payment<C: Client>(
    client: &mut C,
    ctx: &RunContext,
    merchant: usize,
    id: &PaymentId,
    change: Pending,
) -> JourneyResult<bool> {
    let (name, path, body, shape) = match &change {
        Pending::Capture { amount } => (
            names::CAPTURE,
            format!("/v1/payments/{id}/capture"),
            json!({ "amount": amount }),
            Shape::Payment,
        ),
        Pending::Cancel => (
            names::CANCEL,
            format!("/v1/payments/{id}/cancel"),
            json!({}),
            Shape::Payment,
        ),
        Pending::Refund { amount } => (
            names::REFUNDS,
            format!("/v1/payments/{id}/refunds"),
            json!({ "amount": amount }),
            Shape::Refund,
        ),
    };
    ctx.acks.pending(id, change);
    let key = ctx.new_key().as_str().to_string();
    let call = Call::post(path, name, merchant, key, body).expect(Expect::Success(shape));
    let reply = client.send(call).await?;
    if let Some(p) = reply.payment() {
        ctx.acks.updated(p);
    } else if let Some(r) = reply.refund() {
        ctx.acks.refunded(r);
    } else if reply.made_nothing() {
        // Refused whole (or never sent): the change did not happen. A 5xx (a write that
        // timed out may still commit), a 409, a 2xx that could not be read, or no answer
        // stays pending: it may have committed, and the audit accepts either.
        ctx.acks.refused(id);
    }
    Ok(reply.ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::from_name(s.name()), Some(s));
            let toml_name = serde_json::to_value(s).unwrap();
            assert_eq!(toml_name, s.name(), "serde and name() agree");
        }
        let names: std::collections::HashSet<_> = Scenario::ALL.map(Scenario::name).into();
        assert_eq!(names.len(), Scenario::ALL.len());
        assert_eq!(Scenario::from_name("checkout "), None);
    }
}
