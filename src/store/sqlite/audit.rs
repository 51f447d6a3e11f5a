//! The ledger audit over one shard: the same invariants the writer asserts, checked
//! again from what is on disk.

use super::rows::{PAYMENT_COLUMNS, payment_from_row};
use crate::ledger::Account;
use crate::store::StoreError;
use crate::store::audit::{Check, PaymentChecks, ShardAudit};
use rusqlite::Connection;
use std::collections::HashMap;

/// `keys_since_ms`: keys are unique among payments made since then (the idempotency
/// retention): an older key may have been pruned and used again, as it may.
pub fn audit_shard(conn: &Connection, keys_since_ms: i64) -> Result<ShardAudit, StoreError> {
    // One read transaction: every check sees the same snapshot.
    conn.execute_batch("BEGIN")?;
    let result = audit_snapshot(conn, keys_since_ms);
    conn.execute_batch("COMMIT")?;
    result
}

fn audit_snapshot(conn: &Connection, keys_since_ms: i64) -> Result<ShardAudit, StoreError> {
    let mut balanced = Check::new("postings_balance_per_currency");
    let mut stmt = conn.prepare("SELECT currency, SUM(amount) FROM postings GROUP BY currency")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (currency, sum): (String, i64) = (r.get(0)?, r.get(1)?);
        if sum != 0 {
            balanced.fail(format!("postings in {currency} sum to {sum}"));
        }
    }
    let postings: u64 =
        conn.query_row("SELECT COUNT(*) FROM postings", [], |r| r.get::<_, i64>(0))? as u64;

    // Per payment and account, what the postings add up to.
    let mut sums: HashMap<(String, Account), i64> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT payment_id, account, SUM(amount) FROM postings GROUP BY payment_id, account",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let account: String = r.get(1)?;
        let account = Account::parse(&account).ok_or_else(|| {
            StoreError::Internal(format!("unknown account {account:?} in postings"))
        })?;
        sums.insert((r.get(0)?, account), r.get(2)?);
    }
    let mut refunds: HashMap<String, i64> = HashMap::new();
    let mut stmt =
        conn.prepare("SELECT payment_id, SUM(amount) FROM refunds GROUP BY payment_id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        refunds.insert(r.get(0)?, r.get(1)?);
    }

    let mut per_payment = PaymentChecks::new(sums, refunds);
    let mut stmt = conn.prepare(&format!("SELECT {PAYMENT_COLUMNS} FROM payments"))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        per_payment.payment(payment_from_row(r)?);
    }
    let payments = per_payment.payments;
    let [invariants, matches_postings, matches_refunds] = per_payment.finish();

    let mut balances = Check::new("balances_match_postings");
    let mut stmt = conn.prepare(
        "SELECT p.merchant_id, p.currency, p.account, SUM(p.amount), COALESCE(b.amount, 0) \
         FROM postings p LEFT JOIN balances b \
           ON b.merchant_id = p.merchant_id AND b.currency = p.currency AND b.account = p.account \
         WHERE p.account IN ('merchant_pending', 'merchant_available') \
         GROUP BY p.merchant_id, p.currency, p.account \
         HAVING SUM(p.amount) != COALESCE(b.amount, 0)",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (merchant, currency, account, sum, kept): (String, String, String, i64, i64) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
        balances.fail(format!(
            "{merchant} {currency} {account}: postings sum to {sum}, balance says {kept}"
        ));
    }

    let mut one_payment_per_key = Check::new("one_payment_per_idempotency_key");
    let mut stmt = conn.prepare(
        "SELECT merchant_id, idempotency_key, COUNT(*) FROM payments WHERE idempotency_key IS NOT NULL \
         AND created_ms >= ?1 GROUP BY merchant_id, idempotency_key HAVING COUNT(*) > 1",
    )?;
    let mut rows = stmt.query([keys_since_ms])?;
    while let Some(r) = rows.next()? {
        let (merchant, key, n): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        one_payment_per_key.fail(format!("{merchant}: key {key:?} made {n} payments"));
    }

    Ok(ShardAudit {
        payments,
        postings,
        checks: vec![
            balanced.done(),
            invariants,
            matches_postings,
            matches_refunds,
            balances.done(),
            one_payment_per_key.done(),
        ],
    })
}
