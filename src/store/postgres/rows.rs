//! Payments from PostgreSQL rows, checked against the ledger's invariants on the way
//! out, as the SQLite store does: a row that breaks them is an error, never an answer.

use crate::ledger::{Currency, Payment, PaymentStatus};
use crate::store::StoreError;
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
