//! The ledger audit over one shard: the same invariants the writer asserts, checked
//! again from what is on disk.

use super::rows::{PAYMENT_COLUMNS, payment_from_row};
use super::schema::has_table;
use crate::ledger::Account;
use crate::store::StoreError;
use crate::store::audit::{Check, PaymentChecks, ShardAudit};
use rusqlite::Connection;
use std::collections::{BTreeMap, HashMap};

/// `keys_since_ms`: keys are unique among payments made since then (the idempotency
/// retention): an older key may have been pruned and used again, as it may.
pub fn audit_shard(conn: &Connection, keys_since_ms: i64) -> Result<ShardAudit, StoreError> {
    // One read transaction: every check sees the same snapshot.
    conn.execute_batch("BEGIN")?;
    let result = audit_snapshot(conn, keys_since_ms);
    conn.execute_batch("COMMIT")?;
    result
}

/// Every posting on the shard as (merchant_id, payment_id, currency, account code,
/// signed amount): each transfer's debit and credit, with the merchant of its payment
/// (NULL for a transfer whose payment is missing, which the per-payment check names),
/// and the postings that a data dir made before transfers keeps
/// (`schema::upgrade_shard`), their accounts turned into codes (-1 for a name the
/// ledger does not know).
fn postings_sql(legacy: bool) -> String {
    let mut sql = "SELECT p.merchant_id, t.payment_id, t.currency, t.account, t.amount FROM ( \
                     SELECT payment_id, currency, from_account AS account, -amount AS amount \
                     FROM transfers \
                     UNION ALL SELECT payment_id, currency, to_account, amount FROM transfers) t \
                   LEFT JOIN payments p ON p.id = t.payment_id"
        .to_string();
    if legacy {
        let codes: Vec<String> = Account::ALL
            .iter()
            .map(|a| format!("WHEN '{}' THEN {}", a.as_str(), a.code()))
            .collect();
        sql += &format!(
            " UNION ALL SELECT merchant_id, payment_id, currency, CASE account {} ELSE -1 END, amount \
             FROM postings",
            codes.join(" ")
        );
    }
    sql
}

fn account(code: i64) -> Result<Account, StoreError> {
    Account::from_code(code)
        .ok_or_else(|| StoreError::Internal(format!("unknown account code {code} in the ledger")))
}

fn audit_snapshot(conn: &Connection, keys_since_ms: i64) -> Result<ShardAudit, StoreError> {
    let postings_sql = postings_sql(has_table(conn, "postings")?);
    // Not named `postings`: SQLite's WITH may be recursive without the word, and a CTE
    // of that name would read itself instead of the legacy table.
    // One pass over the postings (each a join to payments), grouped finely enough for
    // every check below: per currency, per payment and account, per merchant's balance.
    let mut by_currency: BTreeMap<String, i64> = BTreeMap::new();
    let mut postings: u64 = 0;
    let mut sums: HashMap<(String, Account), i64> = HashMap::new();
    let mut merchant_sums: BTreeMap<(String, String, Account), i64> = BTreeMap::new();
    let mut stmt = conn.prepare(&format!(
        "WITH entries AS ({postings_sql}) \
         SELECT merchant_id, payment_id, currency, account, SUM(amount), COUNT(*) FROM entries \
         GROUP BY payment_id, account, merchant_id, currency"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (merchant, payment, currency): (Option<String>, String, String) =
            (r.get(0)?, r.get(1)?, r.get(2)?);
        let (account, sum, count) = (
            account(r.get(3)?)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
        );
        *by_currency.entry(currency.clone()).or_default() += sum;
        postings += count as u64;
        *sums.entry((payment, account)).or_default() += sum;
        if let Some(merchant) = merchant {
            *merchant_sums
                .entry((merchant, currency, account))
                .or_default() += sum;
        }
    }
    let mut balanced = Check::new("postings_balance_per_currency");
    for (currency, sum) in by_currency.into_iter().filter(|(_, s)| *s != 0) {
        balanced.fail(format!("postings in {currency} sum to {sum}"));
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

    // The merchant-side balances kept against what their postings add up to, both ways:
    // a balance with no postings behind it fails too.
    let mut balances = Check::new("balances_match_postings");
    let merchant_side = [Account::MerchantPending, Account::MerchantAvailable];
    let mut kept: HashMap<(String, String, &str), i64> = HashMap::new();
    let mut stmt = conn.prepare("SELECT merchant_id, currency, account, amount FROM balances")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let name: String = r.get(2)?;
        if let Some(a) = merchant_side.iter().find(|a| a.as_str() == name) {
            kept.insert((r.get(0)?, r.get(1)?, a.as_str()), r.get(3)?);
        }
    }
    let summed = merchant_sums
        .into_iter()
        .filter(|((_, _, a), _)| merchant_side.contains(a));
    for ((merchant, currency, account), sum) in summed {
        let name = account.as_str();
        let balance = kept
            .remove(&(merchant.clone(), currency.clone(), name))
            .unwrap_or(0);
        if sum != balance {
            balances.fail(format!(
                "{merchant} {currency} {name}: postings sum to {sum}, balance says {balance}"
            ));
        }
    }
    for ((merchant, currency, name), balance) in kept.into_iter().filter(|(_, b)| *b != 0) {
        balances.fail(format!(
            "{merchant} {currency} {name}: no postings, balance says {balance}"
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
