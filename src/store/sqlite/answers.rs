//! What each Idempotency-Key answered, kept as the payment (and refund) the answer
//! showed and the payment's state then, not as the body: a replay loads those rows,
//! puts the payment back in that state and renders it again with the request's own
//! renderer, which is deterministic, so the replay is the first answer byte for byte.
//! Keys kept from a data dir made before this carry their body as sent.

use super::rows::load_payment;
use crate::ledger::{Currency, PaymentStatus};
use crate::store::{Idempotency, Outcome, Refund, StoreError, StoredResponse};
use rusqlite::{Connection, OptionalExtension, params};

/// Renders an outcome as the API answers it (`WriteRequest::render`).
pub type Render = fn(&Outcome) -> StoredResponse;

/// One kept answer, as read back.
pub struct KeptAnswer {
    pub fingerprint: Vec<u8>,
    pub status: u16,
    shown: Shown,
}

enum Shown {
    /// The payment shown, in the state it was in when answered, and the refund if any.
    Payment {
        payment_id: String,
        status: i64,
        amount_captured: i64,
        amount_refunded: i64,
        refund_id: Option<String>,
    },
    /// A key kept from before answers were rendered: the body as sent.
    Body(Vec<u8>),
}

/// Keep what `idem`'s request answered: `status`, showing `outcome`. False, keeping
/// nothing, when the merchant's key was already used (its unique index says so).
pub fn keep(
    conn: &Connection,
    merchant_id: &str,
    idem: &Idempotency,
    status: u16,
    outcome: &Outcome,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let (payment, refund_id) = match outcome {
        Outcome::Payment(p) => (p, None),
        Outcome::Refund { refund, payment } => (payment, Some(refund.id.as_str())),
    };
    let inserted = conn
        .prepare_cached(
            "INSERT INTO idempotency_keys (merchant_id, key, request_fingerprint, status, \
             payment_id, payment_status, amount_captured, amount_refunded, refund_id, \
             created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (merchant_id, key) DO NOTHING",
        )?
        .execute(params![
            merchant_id,
            idem.key,
            &idem.request_fingerprint[..],
            status,
            payment.id,
            payment.status.code(),
            payment.amount_captured as i64,
            payment.amount_refunded as i64,
            refund_id,
            now_ms
        ])?;
    Ok(inserted == 1)
}

/// The answer kept for `merchant_id`'s `key`, if any.
pub fn find(
    conn: &Connection,
    merchant_id: &str,
    key: &str,
) -> rusqlite::Result<Option<KeptAnswer>> {
    conn.prepare_cached(
        "SELECT request_fingerprint, status, payment_id, payment_status, amount_captured, \
         amount_refunded, refund_id, body FROM idempotency_keys WHERE merchant_id = ?1 AND key = ?2",
    )?
    .query_row(params![merchant_id, key], |r| {
        let shown = match r.get::<_, Option<String>>(2)? {
            Some(payment_id) => Shown::Payment {
                payment_id,
                status: r.get(3)?,
                amount_captured: r.get(4)?,
                amount_refunded: r.get(5)?,
                refund_id: r.get(6)?,
            },
            None => Shown::Body(r.get(7)?),
        };
        Ok(KeptAnswer {
            fingerprint: r.get(0)?,
            status: r.get(1)?,
            shown,
        })
    })
    .optional()
}

impl KeptAnswer {
    /// The body answered, rendered again from the rows it showed.
    pub fn body(
        self,
        conn: &Connection,
        merchant_id: &str,
        render: Render,
    ) -> Result<Vec<u8>, StoreError> {
        let (payment_id, status, amount_captured, amount_refunded, refund_id) = match self.shown {
            Shown::Body(body) => return Ok(body),
            Shown::Payment {
                payment_id,
                status,
                amount_captured,
                amount_refunded,
                refund_id,
            } => (
                payment_id,
                status,
                amount_captured,
                amount_refunded,
                refund_id,
            ),
        };
        let broken = |what: String| {
            StoreError::Internal(format!(
                "the answer kept for {merchant_id}'s payment {payment_id}: {what}"
            ))
        };
        let mut payment = load_payment(conn, merchant_id, &payment_id)?
            .ok_or_else(|| broken("the payment is not in the store".into()))?;
        payment.status = PaymentStatus::from_code(status)
            .ok_or_else(|| broken(format!("unknown status code {status}")))?;
        payment.amount_captured = u64::try_from(amount_captured)
            .map_err(|_| broken(format!("amount_captured {amount_captured}")))?;
        payment.amount_refunded = u64::try_from(amount_refunded)
            .map_err(|_| broken(format!("amount_refunded {amount_refunded}")))?;
        // The state kept must be one the payment could have been in.
        payment.check().map_err(|e| broken(e.to_string()))?;
        let outcome = match refund_id {
            None => Outcome::Payment(payment),
            Some(id) => Outcome::Refund {
                refund: load_refund(conn, merchant_id, &id)?
                    .ok_or_else(|| broken(format!("its refund {id} is not in the store")))?,
                payment,
            },
        };
        let again = render(&outcome);
        if again.status != self.status {
            return Err(broken(format!(
                "answered {} then, renders as {} now",
                self.status, again.status
            )));
        }
        Ok(again.body)
    }

    /// The replay of this answer, for a request whose fingerprint matches.
    pub fn replay(
        self,
        conn: &Connection,
        merchant_id: &str,
        render: Render,
    ) -> Result<StoredResponse, StoreError> {
        let status = self.status;
        Ok(StoredResponse {
            status,
            body: self.body(conn, merchant_id, render)?,
            replayed: true,
        })
    }
}

fn load_refund(
    conn: &Connection,
    merchant_id: &str,
    id: &str,
) -> Result<Option<Refund>, StoreError> {
    let row: Option<(String, i64, String, i64)> = conn
        .prepare_cached(
            "SELECT payment_id, amount, currency, created_ms FROM refunds \
             WHERE merchant_id = ?1 AND id = ?2",
        )?
        .query_row(params![merchant_id, id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    row.map(|(payment_id, amount, currency, created_ms)| {
        Ok(Refund {
            id: id.to_string(),
            payment_id,
            amount: u64::try_from(amount)
                .map_err(|_| StoreError::Internal(format!("refund {id} has amount {amount}")))?,
            currency: Currency::parse(&currency).map_err(|_| {
                StoreError::Internal(format!("refund {id} has currency {currency:?}"))
            })?,
            created_ms,
        })
    })
    .transpose()
}
