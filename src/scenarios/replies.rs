//! The parts of the API's answers a journey relies on, parsed strictly: a field the
//! acknowledgement log needs that is missing or mistyped makes the request a failure.
//! These are the client's view of the API (it may be a remote one), not `api::types`.

use serde::Deserialize;

/// A payment object as the API returned it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PaymentSeen {
    pub id: String,
    pub amount: u64,
    pub currency: String,
    pub status: String,
    pub amount_captured: u64,
    pub amount_refunded: u64,
}

/// A refund object.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RefundSeen {
    pub id: String,
    /// The refunded payment's id.
    pub payment: String,
    pub amount: u64,
}

/// A page of `GET /v1/payments`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Page {
    pub data: Vec<PaymentSeen>,
    pub has_more: bool,
}

/// A decline: the error shape with the failed payment inside.
#[derive(Deserialize)]
pub(super) struct DeclinedPayment {
    pub error: DeclineError,
}

#[derive(Deserialize)]
pub(super) struct DeclineError {
    pub payment: PaymentSeen,
}
