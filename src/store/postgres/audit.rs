//! The ledger audit over one PostgreSQL shard: the SQLite audit's checks, in one
//! read-only REPEATABLE READ transaction so every check sees the same snapshot.

use super::rows::{PAYMENT_COLUMNS, payment_from_row};
use crate::ledger::Account;
use crate::store::StoreError;
use crate::store::audit::{Check, PaymentChecks, ShardAudit};
use std::collections::HashMap;
use tokio_postgres::Client;

/// Which rows an audit reads.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    /// The buckets the shard owns (a move's copy on its way in or out is not counted).
    Owned,
    /// One bucket range, owned or not: a move checks the copy it made.
    Buckets(u16, u16),
}

impl Scope {
    /// The predicate on `bucket` (of the table aliased `alias`).
    fn on(self, alias: &str) -> String {
        match self {
            Scope::Owned => {
                format!("{alias}bucket IN (SELECT bucket FROM paytool_buckets)")
            }
            Scope::Buckets(first, last) => format!("{alias}bucket BETWEEN {first} AND {last}"),
        }
    }
}

/// `keys_since_ms`: keys are unique among payments made since then (the idempotency
/// retention): an older key may have been pruned and used again, as it may.
pub async fn audit_shard(
    client: &mut Client,
    keys_since_ms: i64,
    scope: Scope,
) -> Result<ShardAudit, tokio_postgres::Error> {
    let all = scope.on("");
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut balanced = Check::new("postings_balance_per_currency");
    for r in tx
        .query(
            &format!(
                "SELECT currency, SUM(amount)::int8 FROM ledger_entries WHERE {all} GROUP BY currency"
            ),
            &[],
        )
        .await?
    {
        let (currency, sum): (String, i64) = (r.get(0), r.get(1));
        if sum != 0 {
            balanced.fail(format!("postings in {currency} sum to {sum}"));
        }
    }
    let postings: i64 = tx
        .query_one(
            &format!("SELECT COUNT(*) FROM ledger_entries WHERE {all}"),
            &[],
        )
        .await?
        .get(0);

    let mut sums: HashMap<(String, Account), i64> = HashMap::new();
    let mut unknown_accounts = Vec::new();
    for r in tx
        .query(
            &format!(
                "SELECT payment_id, account, SUM(amount)::int8 FROM ledger_entries WHERE {all} \
                 GROUP BY payment_id, account"
            ),
            &[],
        )
        .await?
    {
        let code: i16 = r.get(1);
        match Account::from_code(code.into()) {
            Some(a) => {
                sums.insert((r.get(0), a), r.get(2));
            }
            None => unknown_accounts.push(format!("code {code}")),
        }
    }
    let mut refunds: HashMap<String, i64> = HashMap::new();
    for r in tx
        .query(
            &format!(
                "SELECT payment_id, SUM(amount)::int8 FROM refunds WHERE {all} GROUP BY payment_id"
            ),
            &[],
        )
        .await?
    {
        refunds.insert(r.get(0), r.get(1));
    }

    let mut per_payment = PaymentChecks::new(sums, refunds);
    for account in &unknown_accounts {
        per_payment.unknown_account(account);
    }
    for r in tx
        .query(
            &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE {all}"),
            &[],
        )
        .await?
    {
        per_payment.payment(payment_from_row(&r));
    }
    let payments = per_payment.payments;
    let [invariants, matches_postings, matches_refunds] = per_payment.finish();

    // The merchant-side balances (kept by account name) against their entries' sums. A
    // transfer whose payment is missing has no merchant: the per-payment check names it.
    let mut balances = Check::new("balances_match_postings");
    let merchant_side: Vec<String> = [Account::MerchantPending, Account::MerchantAvailable]
        .iter()
        .map(|a| format!("({}::int2, '{}')", a.code(), a.as_str()))
        .collect();
    for r in tx
        .query(
            &format!(
                "SELECT p.merchant_id, p.currency, a.name, SUM(p.amount)::int8, COALESCE(b.amount, 0) \
                 FROM ledger_entries p JOIN (VALUES {}) AS a(code, name) ON a.code = p.account \
                 LEFT JOIN balances b ON b.bucket = p.bucket \
                   AND b.merchant_id = p.merchant_id AND b.currency = p.currency AND b.account = a.name \
                 WHERE p.merchant_id IS NOT NULL AND {} \
                 GROUP BY p.merchant_id, p.currency, a.name, b.amount \
                 HAVING SUM(p.amount) != COALESCE(b.amount, 0)",
                merchant_side.join(", "),
                scope.on("p.")
            ),
            &[],
        )
        .await?
    {
        let (merchant, currency, account, sum, kept): (String, String, String, i64, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        balances.fail(format!(
            "{merchant} {currency} {account}: postings sum to {sum}, balance says {kept}"
        ));
    }

    let mut one_payment_per_key = Check::new("one_payment_per_idempotency_key");
    for r in tx
        .query(
            &format!(
                "SELECT merchant_id, idempotency_key, COUNT(*) FROM payments \
                 WHERE idempotency_key IS NOT NULL AND created_ms >= $1 AND {all} \
                 GROUP BY merchant_id, idempotency_key HAVING COUNT(*) > 1"
            ),
            &[&keys_since_ms],
        )
        .await?
    {
        let (merchant, key, n): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
        one_payment_per_key.fail(format!("{merchant}: key {key:?} made {n} payments"));
    }
    tx.commit().await?;
    Ok(ShardAudit {
        payments,
        postings: postings as u64,
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

/// Why an audit could not run, for the report.
pub fn failed(shard: &str, e: &tokio_postgres::Error) -> StoreError {
    super::rows::store_error(shard, e)
}
