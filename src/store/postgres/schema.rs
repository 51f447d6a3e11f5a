//! The PostgreSQL schema, as numbered migrations applied in order inside one
//! transaction each and recorded in `paytool_migrations`, so applying them again is a
//! no-op. Append a migration; never edit one that has shipped.
//!
//! Every table that holds merchant data leads with `bucket` (0..1024) in its primary
//! key: a bucket range is selected, copied, verified and deleted by index, and
//! PostgreSQL's row-filtered logical replication can filter on it (a row filter's
//! column must be in the replica identity, or every UPDATE on the source fails while a
//! move runs: ../shared/NOTES.md). Each index exists because a query needs it:
//! `tests/it/pg_store.rs` EXPLAINs every query and fails on a sequential scan.

use tokio_postgres::Client;

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "merchants, payments, ledger, idempotency",
        sql: "
CREATE TABLE merchants (
    bucket smallint NOT NULL CHECK (bucket >= 0 AND bucket < 1024),
    id text NOT NULL,
    name text NOT NULL,
    key_hash bytea NOT NULL,
    -- The key before the last roll, accepted until previous_key_expires_ms.
    previous_key_hash bytea,
    previous_key_expires_ms bigint,
    created_ms bigint NOT NULL,
    PRIMARY KEY (bucket, id)
);
CREATE TABLE payments (
    bucket smallint NOT NULL,
    merchant_id text NOT NULL,
    id text NOT NULL,
    idempotency_key text,
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL,
    status text NOT NULL CHECK (status IN ('requires_capture','succeeded','canceled','failed')),
    amount_captured bigint NOT NULL,
    amount_refunded bigint NOT NULL,
    card_brand text NOT NULL,
    card_last4 text NOT NULL,
    card_fingerprint text NOT NULL,
    failure_code text,
    created_ms bigint NOT NULL,
    updated_ms bigint NOT NULL,
    CHECK (amount_captured <= amount AND amount_refunded <= amount_captured),
    PRIMARY KEY (bucket, merchant_id, id)
);
CREATE TABLE postings (
    bucket smallint NOT NULL,
    merchant_id text NOT NULL,
    payment_id text NOT NULL,
    seq integer NOT NULL,
    currency text NOT NULL,
    account text NOT NULL,
    amount bigint NOT NULL,
    created_ms bigint NOT NULL,
    PRIMARY KEY (bucket, merchant_id, payment_id, seq)
);
CREATE TABLE refunds (
    bucket smallint NOT NULL,
    merchant_id text NOT NULL,
    id text NOT NULL,
    payment_id text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL,
    created_ms bigint NOT NULL,
    PRIMARY KEY (bucket, merchant_id, id)
);
CREATE TABLE idempotency (
    bucket smallint NOT NULL,
    merchant_id text NOT NULL,
    key text NOT NULL,
    request_fingerprint bytea NOT NULL,
    status smallint NOT NULL,
    body bytea NOT NULL,
    created_ms bigint NOT NULL,
    PRIMARY KEY (bucket, merchant_id, key)
);
-- Pruning expired keys walks this, oldest first, in bounded batches.
CREATE INDEX idempotency_created ON idempotency (created_ms);
CREATE TABLE balances (
    bucket smallint NOT NULL,
    merchant_id text NOT NULL,
    currency text NOT NULL,
    account text NOT NULL,
    amount bigint NOT NULL,
    PRIMARY KEY (bucket, merchant_id, currency, account)
);
-- The buckets this shard owns. A write locks its buckets' rows FOR SHARE inside its
-- transaction, so ownership is decided by the shard itself and a move that takes a
-- bucket away (FOR UPDATE) waits for the writes in flight.
CREATE TABLE paytool_buckets (
    bucket smallint PRIMARY KEY CHECK (bucket >= 0 AND bucket < 1024)
);
-- Secrets every API instance must share: the key of the request and card
-- fingerprints (an idempotent replay compares fingerprints, whichever instance made
-- them). Written by `paytool shard apply`, the same on every shard.
CREATE TABLE paytool_secrets (
    name text PRIMARY KEY,
    value text NOT NULL
);
-- The layout last applied to this shard, by `paytool shard apply`.
CREATE TABLE paytool_layout (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    name text NOT NULL,
    shard text NOT NULL,
    version bigint NOT NULL,
    digest text NOT NULL,
    applied_ms bigint NOT NULL
);
",
    },
    Migration {
        version: 2,
        name: "shard moves: write fences, the move journal, catch-up marks, the layout's text",
        sql: "
-- A write fence on a bucket, as a lease on the shard's clock (ms since the epoch): while
-- it is in the future, writes to the bucket are refused as fenced (the API waits and
-- retries); a `shard move` that dies holding it releases it by the lease running out.
ALTER TABLE paytool_buckets ADD COLUMN fenced_until_ms bigint;
-- The layout file's text as `shard apply` or `shard move` last recorded it: API
-- instances started on an older layout read it to find shards they did not know.
ALTER TABLE paytool_layout ADD COLUMN text text NOT NULL DEFAULT '';
-- The journal of `paytool shard move`, on the shard that gives the buckets away: one row
-- per bucket range moved, its phase updated as the move goes, so a move that is killed
-- or loses a shard resumes where it stopped. The switch of ownership and the phase
-- `switched` commit in one transaction.
CREATE TABLE paytool_moves (
    id text PRIMARY KEY,
    first smallint NOT NULL,
    last smallint NOT NULL,
    source text NOT NULL,
    target text NOT NULL,
    layout_digest text NOT NULL,
    phase text NOT NULL,
    rows bigint NOT NULL,
    fence_ms_max bigint,
    error text,
    started_ms bigint NOT NULL,
    updated_ms bigint NOT NULL
);
-- A row written on the source behind a write fence and replicated with the moving
-- buckets: once it is on the target, every change before the fence is too.
CREATE TABLE paytool_move_marks (
    bucket smallint NOT NULL,
    token text NOT NULL,
    PRIMARY KEY (bucket, token)
);
",
    },
    Migration {
        version: 3,
        name: "the ledger as transfers, answers kept as what they showed",
        sql: "
-- The ledger as transfers, as on SQLite: one row a movement between two accounts (its
-- debit and its credit), the accounts as ledger::Account codes, the merchant that of
-- the payment (payment ids are unique on their own). Half the rows postings took,
-- without the account's name or the merchant in each. Postings written before stay
-- where they are; the audit reads both through ledger_entries.
CREATE TABLE transfers (
    bucket smallint NOT NULL,
    payment_id text NOT NULL,
    seq integer NOT NULL,
    currency text NOT NULL,
    from_account smallint NOT NULL,
    to_account smallint NOT NULL CHECK (to_account <> from_account),
    amount bigint NOT NULL CHECK (amount > 0),
    created_ms bigint NOT NULL,
    PRIMARY KEY (bucket, payment_id, seq)
);
-- Every posting on the shard, old and new, with its account as a code (-1 for a name
-- the ledger does not know): each transfer's debit and credit, with the merchant of its
-- payment (NULL for a transfer whose payment is missing, which the audit names), and
-- the postings kept.
CREATE VIEW ledger_entries AS
    SELECT t.bucket, p.merchant_id, t.payment_id, t.currency, e.account, e.amount
        FROM transfers t
        LEFT JOIN payments p ON p.bucket = t.bucket AND p.id = t.payment_id
        CROSS JOIN LATERAL (VALUES (t.from_account, -t.amount), (t.to_account, t.amount))
            AS e(account, amount)
    UNION ALL SELECT bucket, merchant_id, payment_id, currency,
        (CASE account WHEN 'customer_funds' THEN 0 WHEN 'merchant_pending' THEN 1
            WHEN 'merchant_available' THEN 2 WHEN 'refunds' THEN 3 ELSE -1 END)::smallint,
        amount FROM postings;
-- What a key answered, as on SQLite (store::shown): the payment (and refund) shown and
-- the payment's state then, rendered again on a replay. `body` only on keys kept
-- before this.
ALTER TABLE idempotency ALTER COLUMN body DROP NOT NULL,
    ADD COLUMN payment_id text,
    ADD COLUMN payment_status smallint,
    ADD COLUMN amount_captured bigint,
    ADD COLUMN amount_refunded bigint,
    ADD COLUMN refund_id text,
    ADD CHECK ((body IS NULL) <> (payment_id IS NULL));
",
    },
];

/// The newest migration's version: what a shard must be at for `serve` to use it.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const LEDGER: &str = "CREATE TABLE IF NOT EXISTS paytool_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_ms bigint NOT NULL
)";

/// The migrations applied to this shard, in order.
pub async fn applied(client: &Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('paytool_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT version FROM paytool_migrations ORDER BY version",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The migrations `apply` would run on a shard that has `done` applied.
pub fn pending(done: &[i32]) -> Vec<&'static Migration> {
    MIGRATIONS
        .iter()
        .filter(|m| !done.contains(&m.version))
        .collect()
}

/// Apply what is pending, all in one transaction (PostgreSQL's DDL is transactional, so
/// a shard is at one version or the next, never between). Two `apply`s at once
/// serialise on an advisory lock; the second finds nothing to do.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    /// An arbitrary constant: the advisory lock's key for paytool's migrations.
    const MIGRATION_LOCK: i64 = 0x0070_6179_746f_6f6c;
    client.batch_execute(LEDGER).await?;
    let mut ran = Vec::new();
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM paytool_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for m in pending(&done) {
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO paytool_migrations (version, name, applied_ms) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &crate::ids::now_ms()],
        )
        .await?;
        ran.push(m.version);
    }
    tx.commit().await?;
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;
    use crate::ledger::Account;

    /// `ledger_entries` turns the account names postings kept into the ledger's codes.
    #[test]
    fn ledger_entries_names_every_account_by_its_code() {
        let sql = MIGRATIONS[2].sql;
        for a in Account::ALL {
            let when = format!("WHEN '{}' THEN {}", a.as_str(), a.code());
            assert!(sql.contains(&when), "migration 3 lacks {when}");
        }
        assert_eq!(sql.matches("WHEN '").count(), Account::ALL.len());
    }
}
