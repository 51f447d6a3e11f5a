//! Payments from PostgreSQL rows, checked against the ledger's invariants on the way
//! out, as the SQLite store does: a row that breaks them is an error, never an answer.

use crate::ledger::{Currency, Payment, PaymentStatus};
use crate::store::shown::{Render, Shown};
use crate::store::{Refund, StoreError, StoredResponse};
use tokio_postgres::Row;

/// The columns `payment_from_row` reads, in its order.
pub const PAYMENT_COLUMNS: &str = "id, merchant_id, amount, currency, status, amount_captured, \
     amount_refunded, card_brand, card_last4, card_fingerprint, failure_code, created_ms";

pub fn payment_from_row(row: &Row) -> Result<Payment, StoreError> {
    let bad = |e: tokio_postgres::Error| StoreError::Internal(format!("payment row: {e}"));
    let currency: String = row.try_get(3).map_err(bad)?;
    let status: String = row.try_get(4).map_err(bad)?;
    let (Ok(currency), Some(status)) = (Currency::parse(&currency), PaymentStatus::parse(&status))
    else {
        return Err(StoreError::Internal(format!(
            "payment row has currency {currency:?} and status {status:?}"
        )));
    };
    let amount = |i: usize| -> Result<u64, StoreError> {
        let v: i64 = row.try_get(i).map_err(bad)?;
        u64::try_from(v).map_err(|_| StoreError::Internal(format!("payment row has amount {v}")))
    };
    let payment = Payment {
        id: row.try_get(0).map_err(bad)?,
        merchant_id: row.try_get(1).map_err(bad)?,
        amount: amount(2)?,
        currency,
        status,
        amount_captured: amount(5)?,
        amount_refunded: amount(6)?,
        card_brand: row.try_get(7).map_err(bad)?,
        card_last4: row.try_get(8).map_err(bad)?,
        card_fingerprint: row.try_get(9).map_err(bad)?,
        failure_code: row.try_get(10).map_err(bad)?,
        created_ms: row.try_get(11).map_err(bad)?,
    };
    payment.check()?;
    Ok(payment)
}

/// The columns `KeptAnswer::from_row` reads, in its order, from `idempotency i` joined
/// to the payment `p` and refund `r` its answer showed (`sql::answer`,
/// `sql::idempotency_sql`).
pub fn kept_answer_columns() -> String {
    let payment: Vec<String> = PAYMENT_COLUMNS
        .split(", ")
        .map(|c| format!("p.{c}"))
        .collect();
    format!(
        "{}, i.merchant_id, i.key, i.request_fingerprint, i.status, i.body, i.payment_id, \
         i.payment_status, i.amount_captured, i.amount_refunded, i.refund_id, r.payment_id, \
         r.amount, r.currency, r.created_ms",
        payment.join(", ")
    )
}

/// One kept answer, as read back with the rows it showed.
pub struct KeptAnswer {
    merchant_id: String,
    pub fingerprint: Vec<u8>,
    pub status: u16,
    kept: Kept,
}

enum Kept {
    Shown {
        shown: Shown,
        /// None when the payment is not in the store (an error, named on rendering).
        payment: Option<Box<Payment>>,
        refund: Option<Refund>,
    },
    /// A key kept before answers were rendered: the body as sent.
    Body(Vec<u8>),
}

impl KeptAnswer {
    /// From a row of `kept_answer_columns()`.
    pub fn from_row(r: &Row) -> Result<KeptAnswer, StoreError> {
        let bad = |e: tokio_postgres::Error| StoreError::Internal(format!("kept answer row: {e}"));
        let merchant_id: String = r.try_get(12).map_err(bad)?;
        let key: String = r.try_get(13).map_err(bad)?;
        let status: i16 = r.try_get(15).map_err(bad)?;
        let body: Option<Vec<u8>> = r.try_get(16).map_err(bad)?;
        let kept = match (body, r.try_get::<_, Option<String>>(17).map_err(bad)?) {
            (Some(body), None) => Kept::Body(body),
            (None, Some(payment_id)) => {
                let shown = Shown {
                    payment_id,
                    payment_status: i64::from(r.try_get::<_, i16>(18).map_err(bad)?),
                    amount_captured: r.try_get(19).map_err(bad)?,
                    amount_refunded: r.try_get(20).map_err(bad)?,
                    refund_id: r.try_get(21).map_err(bad)?,
                };
                let payment = match r.try_get::<_, Option<String>>(0).map_err(bad)? {
                    Some(_) => Some(Box::new(payment_from_row(r)?)),
                    None => None,
                };
                let refund_of = r.try_get::<_, Option<String>>(22).map_err(bad)?;
                let refund = match (&shown.refund_id, refund_of) {
                    (Some(id), Some(payment_id)) => Some(refund_from_row(id, payment_id, r)?),
                    _ => None,
                };
                Kept::Shown {
                    shown,
                    payment,
                    refund,
                }
            }
            _ => {
                return Err(StoreError::Internal(format!(
                    "the answer kept for {merchant_id}'s key {key:?} has both a body and a \
                     payment, or neither"
                )));
            }
        };
        Ok(KeptAnswer {
            merchant_id,
            fingerprint: r.try_get(14).map_err(bad)?,
            status: status as u16,
            kept,
        })
    }

    /// The body answered, rendered again from the rows it showed by `render`.
    pub fn body(&self, render: Render) -> Result<Vec<u8>, StoreError> {
        match &self.kept {
            Kept::Body(body) => Ok(body.clone()),
            Kept::Shown {
                shown,
                payment,
                refund,
            } => {
                let payment = payment.as_deref().cloned().ok_or_else(|| {
                    StoreError::Internal(format!(
                        "the answer kept for {}'s payment {}: the payment is not in the store",
                        self.merchant_id, shown.payment_id
                    ))
                })?;
                shown.render_again(payment, refund.clone(), self.status, render)
            }
        }
    }

    /// The replay of this answer, for a request whose fingerprint matches.
    pub fn replay(&self, render: Render) -> Result<StoredResponse, StoreError> {
        Ok(StoredResponse {
            status: self.status,
            body: self.body(render)?,
            replayed: true,
        })
    }
}

/// The refund `id` of a kept answer's row (columns 22-25).
fn refund_from_row(id: &str, payment_id: String, r: &Row) -> Result<Refund, StoreError> {
    let bad = |e: tokio_postgres::Error| StoreError::Internal(format!("refund row: {e}"));
    let currency: String = r.try_get(24).map_err(bad)?;
    Refund::from_row(
        id,
        payment_id,
        r.try_get(23).map_err(bad)?,
        &currency,
        r.try_get(25).map_err(bad)?,
    )
}

/// A PostgreSQL error as the store's: the shard unreachable (retryable, 503) or a
/// failure with its SQLSTATE.
pub fn store_error(shard: &str, e: &tokio_postgres::Error) -> StoreError {
    use tokio_postgres::error::SqlState;
    let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
    let unreachable = e.is_closed()
        || io
        || e.code().is_some_and(|c| {
            c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::CRASH_SHUTDOWN
        });
    if unreachable {
        return StoreError::ShardDown {
            shard: shard.to_string(),
            reason: e.to_string(),
        };
    }
    // Class 53 is insufficient resources (disk full, out of memory, too many
    // connections); 25006 a read-only transaction (a server made read-only).
    let unwritable = e
        .code()
        .is_some_and(|c| c.code().starts_with("53") || *c == SqlState::READ_ONLY_SQL_TRANSACTION);
    if unwritable {
        return StoreError::Unwritable(format!("shard {shard}: {}", pg_message(e)));
    }
    StoreError::Postgres(pg_message(e))
}

/// A PostgreSQL error with the server's own message and SQLSTATE (the driver's Display
/// says only "db error").
pub fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}
