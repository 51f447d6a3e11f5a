//! Payments to and from rows. Every payment read back is checked against the ledger's
//! invariants: a row that breaks them is an error, never a silent answer.

use crate::ledger::{Account, Currency, Payment, PaymentStatus, Transfer};
use crate::store::StoreError;
use rusqlite::{Connection, Row, params};
use std::collections::BTreeMap;

pub const PAYMENT_COLUMNS: &str = "id, merchant_id, amount, currency, status, amount_captured, \
     amount_refunded, card_brand, card_last4, card_fingerprint, failure_code, created_ms";

pub fn payment_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Payment, StoreError>> {
    let currency: String = row.get(3)?;
    let status: String = row.get(4)?;
    let (Ok(currency), Some(status)) = (Currency::parse(&currency), PaymentStatus::parse(&status))
    else {
        return Ok(Err(StoreError::Internal(format!(
            "payment row has currency {currency:?} and status {status:?}"
        ))));
    };
    let payment = Payment {
        id: row.get(0)?,
        merchant_id: row.get(1)?,
        amount: row.get::<_, i64>(2)? as u64,
        currency,
        status,
        amount_captured: row.get::<_, i64>(5)? as u64,
        amount_refunded: row.get::<_, i64>(6)? as u64,
        card_brand: row.get(7)?,
        card_last4: row.get(8)?,
        card_fingerprint: row.get(9)?,
        failure_code: row.get(10)?,
        created_ms: row.get(11)?,
    };
    Ok(payment.check().map(|()| payment).map_err(StoreError::from))
}

pub fn load_payment(
    conn: &Connection,
    merchant_id: &str,
    id: &str,
) -> Result<Option<Payment>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE merchant_id = ?1 AND id = ?2"
    ))?;
    let mut rows = stmt.query(params![merchant_id, id])?;
    match rows.next()? {
        Some(row) => payment_from_row(row)?.map(Some),
        None => Ok(None),
    }
}

pub fn insert_payment(
    conn: &Connection,
    p: &Payment,
    idempotency_key: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO payments (id, merchant_id, idempotency_key, amount, currency, status, \
         amount_captured, amount_refunded, card_brand, card_last4, card_fingerprint, failure_code, \
         created_ms, updated_ms) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?13)",
    )?
    .execute(params![
        p.id,
        p.merchant_id,
        idempotency_key,
        p.amount as i64,
        p.currency.code(),
        p.status.as_str(),
        p.amount_captured as i64,
        p.amount_refunded as i64,
        p.card_brand,
        p.card_last4,
        p.card_fingerprint,
        p.failure_code,
        p.created_ms,
    ])?;
    Ok(())
}

pub fn update_payment(conn: &Connection, p: &Payment, now_ms: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE payments SET status = ?3, amount_captured = ?4, amount_refunded = ?5, updated_ms = ?6 \
         WHERE merchant_id = ?1 AND id = ?2",
    )?
    .execute(params![
        p.merchant_id,
        p.id,
        p.status.as_str(),
        p.amount_captured as i64,
        p.amount_refunded as i64,
        now_ms
    ])?;
    Ok(())
}

/// Append the transfers, in the caller's transaction. Their effect on the balances table
/// is folded per batch (`BalanceChanges`), not per transfer.
pub fn insert_transfers(
    conn: &Connection,
    payment_id: &str,
    transfers: &[Transfer],
    now_ms: i64,
) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO transfers (payment_id, currency, from_account, to_account, amount, \
         created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for t in transfers {
        insert.execute(params![
            payment_id,
            t.currency().code(),
            t.from().code(),
            t.to().code(),
            t.amount() as i64,
            now_ms
        ])?;
    }
    Ok(())
}

/// The net of a batch's transfers by merchant, currency and account, written to the
/// balances table once per batch: a batch of 32 checkouts from 8 merchants is about 16
/// upserts instead of 64, and the table is only read in committed states (the admin's
/// balance read, the audit), which see every batch whole.
/// Keys borrow the merchant ids of the batch's requests, which outlive it.
#[derive(Default)]
pub struct BalanceChanges<'a> {
    net: BTreeMap<(&'a str, Currency, Account), i64>,
}

impl<'a> BalanceChanges<'a> {
    /// Fold in the transfers of one applied request of `merchant_id`'s.
    pub fn add(&mut self, merchant_id: &'a str, transfers: &[Transfer]) {
        for p in transfers.iter().flat_map(Transfer::postings) {
            let key = (merchant_id, p.currency, p.account);
            *self.net.entry(key).or_insert(0) += p.amount;
        }
    }

    /// Upsert every non-zero net into the balances table, in the caller's transaction,
    /// and start again from nothing.
    pub fn write(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let mut upsert = conn.prepare_cached(
            "INSERT INTO balances (merchant_id, currency, account, amount) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (merchant_id, currency, account) DO UPDATE SET amount = amount + excluded.amount",
        )?;
        for ((merchant_id, currency, account), sum) in std::mem::take(&mut self.net) {
            if sum != 0 {
                upsert.execute(params![merchant_id, currency.code(), account.as_str(), sum])?;
            }
        }
        Ok(())
    }
}
