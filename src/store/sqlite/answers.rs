//! What each Idempotency-Key answered, kept as what the answer showed
//! (`store::shown`), not as the body. Keys kept from a data dir made before this carry
//! their body as sent.

use super::rows::load_payment;
pub use crate::store::shown::Render;
use crate::store::shown::Shown;
use crate::store::{Idempotency, Outcome, Refund, StoreError, StoredResponse};
use rusqlite::{Connection, OptionalExtension, params};

/// One kept answer, as read back.
pub struct KeptAnswer {
    pub fingerprint: Vec<u8>,
    pub status: u16,
    kept: Kept,
}

enum Kept {
    Shown(Shown),
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
    let shown = Shown::of(outcome);
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
            shown.payment_id,
            shown.payment_status,
            shown.amount_captured,
            shown.amount_refunded,
            shown.refund_id,
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
        let kept = match r.get::<_, Option<String>>(2)? {
            Some(payment_id) => Kept::Shown(Shown {
                payment_id,
                payment_status: r.get(3)?,
                amount_captured: r.get(4)?,
                amount_refunded: r.get(5)?,
                refund_id: r.get(6)?,
            }),
            None => Kept::Body(r.get(7)?),
        };
        Ok(KeptAnswer {
            fingerprint: r.get(0)?,
            status: r.get(1)?,
            kept,
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
        let shown = match self.kept {
            Kept::Body(body) => return Ok(body),
            Kept::Shown(shown) => shown,
        };
        let payment = load_payment(conn, merchant_id, &shown.payment_id)?.ok_or_else(|| {
            StoreError::Internal(format!(
                "the answer kept for {merchant_id}'s payment {}: the payment is not in the store",
                shown.payment_id
            ))
        })?;
        let refund = match &shown.refund_id {
            Some(id) => load_refund(conn, merchant_id, id)?,
            None => None,
        };
        shown.render_again(payment, refund, self.status, render)
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
        Refund::from_row(id, payment_id, amount, &currency, created_ms)
    })
    .transpose()
}
