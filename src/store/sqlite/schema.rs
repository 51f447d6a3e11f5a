//! SQLite schema and connection settings.

use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

/// How long a connection waits for another's lock before SQLite answers busy. Within
/// this process only a shard's writer writes its file, and WAL readers never block it, so
/// a lock held longer belongs to something outside (a sqlite3 shell, a backup). The
/// writer stalls its shard's whole queue while it waits, so it gives up well inside the
/// API's write timeout (`api::WRITE_TIMEOUT_MS_DEFAULT`) and callers hear a retryable
/// "busy" rather than a timeout.
pub const BUSY_TIMEOUT_MS: u64 = 1_000;

/// The page size of a file this process creates (an existing file keeps its own: WAL
/// mode cannot change it). A commit writes every page it dirtied to the WAL in full, and
/// a payment dirties pages in several B-trees (its merchant's end of `payments`, a random
/// leaf of the idempotency index, and the pages each split redistributes), so half-size
/// pages halve the bytes every commit writes and checksums: 18% more payments a second
/// than 4 KiB, for 573 bytes a payment on disk instead of 564; 1 KiB was no faster
/// (BENCHMARKS.md, "Smaller pages").
pub const PAGE_SIZE: u32 = 2_048;

pub const CATALOG: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS merchants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash BLOB NOT NULL UNIQUE,
    bucket INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);";

/// Columns added to `merchants` after the first release, for data dirs made before them:
/// the key before the last roll and when it stops working.
pub const CATALOG_ADDED_COLUMNS: [(&str, &str); 2] = [
    ("previous_key_hash", "BLOB"),
    ("previous_key_expires_ms", "INTEGER"),
];

/// Add what `CATALOG_ADDED_COLUMNS` lists to a catalog that lacks it.
pub fn upgrade_catalog(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('merchants')")?;
    let have: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for (column, kind) in CATALOG_ADDED_COLUMNS {
        if !have.iter().any(|c| c == column) {
            conn.execute_batch(&format!("ALTER TABLE merchants ADD COLUMN {column} {kind}"))?;
        }
    }
    Ok(())
}

pub const SHARD: &str = "
CREATE TABLE IF NOT EXISTS payments (
    merchant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    idempotency_key TEXT,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status = 'requires_capture' OR status = 'succeeded' OR status = 'canceled' OR status = 'failed'),
    amount_captured INTEGER NOT NULL,
    amount_refunded INTEGER NOT NULL,
    card_brand TEXT NOT NULL,
    card_last4 TEXT NOT NULL,
    card_fingerprint TEXT NOT NULL,
    failure_code TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    CHECK (amount_captured <= amount AND amount_refunded <= amount_captured),
    PRIMARY KEY (merchant_id, id)
) WITHOUT ROWID;
-- The ledger: one row per transfer (its debit and its credit), accounts as
-- ledger::Account codes, the merchant that of the payment (not repeated: 37 bytes a
-- row). Postings, one row per side, were twice the rows; a data dir made before keeps
-- them in `postings`, which the audit still reads (upgrade_shard).
CREATE TABLE IF NOT EXISTS transfers (
    seq INTEGER PRIMARY KEY,
    payment_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    from_account INTEGER NOT NULL,
    to_account INTEGER NOT NULL CHECK (to_account != from_account),
    amount INTEGER NOT NULL CHECK (amount > 0),
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS refunds (
    merchant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    payment_id TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (merchant_id, id)
) WITHOUT ROWID;
-- What each Idempotency-Key answered. Not the body: the payment (and refund) it showed
-- and the payment's state then, from which the answer is rendered again, byte for byte
-- (a third of the bytes a stored body took). `body` is set only on keys kept from a
-- data dir made before (upgrade_shard). Rows are in creation order by `seq`, which the
-- pruner walks oldest first, so no index on created_ms is needed.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    seq INTEGER PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    key TEXT NOT NULL,
    request_fingerprint BLOB NOT NULL,
    status INTEGER NOT NULL,
    payment_id TEXT,
    payment_status INTEGER, -- ledger::PaymentStatus::code
    amount_captured INTEGER,
    amount_refunded INTEGER,
    refund_id TEXT,
    body BLOB,
    created_ms INTEGER NOT NULL,
    CHECK ((payment_id IS NULL) != (body IS NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS idempotency_keys_key ON idempotency_keys (merchant_id, key);
CREATE TABLE IF NOT EXISTS balances (
    merchant_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    account TEXT NOT NULL,
    amount INTEGER NOT NULL,
    PRIMARY KEY (merchant_id, currency, account)
) WITHOUT ROWID;";

/// The payments' status check as first released: an `IN` list of four constants, which
/// SQLite checks by building a temporary B-tree on every insert and update of a payment
/// (a quarter of an insert's cost in the writer's profile, BENCHMARKS.md).
const STATUS_CHECK_IN: &str =
    "CHECK (status IN ('requires_capture','succeeded','canceled','failed'))";
/// The same rule as comparisons, which SQLite checks in place (`SHARD` has it).
const STATUS_CHECK: &str = "CHECK (status = 'requires_capture' OR status = 'succeeded' OR status = 'canceled' OR status = 'failed')";

/// The text of the `payments` table's definition.
const PAYMENTS_SQL: &str =
    "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'payments'";

/// Give a shard file made before `STATUS_CHECK` that check instead of `STATUS_CHECK_IN`,
/// by SQLite's documented way of changing a constraint that every stored row already
/// meets (ALTER TABLE, "making other kinds of table schema changes"): the table's text
/// in `sqlite_schema` is rewritten and the schema version bumped, in one transaction; no
/// row is touched. Returns whether it rewrote anything.
pub fn upgrade_status_check(conn: &mut Connection) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let sql: String = tx.query_row(PAYMENTS_SQL, [], |r| r.get(0))?;
    if !sql.contains(STATUS_CHECK_IN) {
        return Ok(false);
    }
    let version: i64 = tx.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    tx.execute_batch("PRAGMA writable_schema = ON;")?;
    tx.execute(
        "UPDATE sqlite_schema SET sql = ?1 WHERE type = 'table' AND name = 'payments'",
        [sql.replace(STATUS_CHECK_IN, STATUS_CHECK)],
    )?;
    tx.execute_batch(&format!(
        "PRAGMA schema_version = {}; PRAGMA writable_schema = OFF;",
        version + 1
    ))?;
    tx.commit()?;
    Ok(true)
}

/// Bring a shard file made by an earlier release up to `SHARD`, in one transaction:
/// its idempotency keys move to `idempotency_keys` with their bodies as sent (they are
/// replayed from those until the pruner ages them out), and its `postings` stay where
/// they are, read by the audit beside the transfers. Returns the keys moved.
pub fn upgrade_shard(conn: &mut Connection) -> rusqlite::Result<usize> {
    if !has_table(conn, "idempotency")? {
        return Ok(0);
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let moved = tx.execute(
        "INSERT INTO idempotency_keys (merchant_id, key, request_fingerprint, status, body, created_ms) \
         SELECT merchant_id, key, request_fingerprint, status, body, created_ms FROM idempotency \
         ORDER BY created_ms",
        [],
    )?;
    tx.execute_batch("DROP TABLE idempotency;")?;
    tx.commit()?;
    Ok(moved)
}

pub fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)",
        [name],
        |r| r.get(0),
    )
}

/// WAL with synchronous=FULL: a commit is on disk before the writer answers, so an
/// acknowledged payment survives a crash (and, as far as the disk keeps its word, power loss).
/// Opened through `gather_vfs`, which writes a commit's WAL frames in a few calls instead
/// of two a page.
/// A modest page cache: SQLite walks it at the end of every transaction, and a 64 MiB one
/// made that walk 14% of the writer's CPU (BENCHMARKS.md); readers have their own.
pub fn open_writer(path: &Path, schema: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags_and_vfs(
        path,
        rusqlite::OpenFlags::default(),
        super::gather_vfs::register()?,
    )?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
    // Before journal_mode: a new file takes its page size when its first page is written.
    conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE};"))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA cache_size = -8192;",
    )?;
    conn.execute_batch(schema)?;
    Ok(conn)
}

pub fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
    conn.execute_batch("PRAGMA cache_size = -16384;")?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payments_sql(conn: &Connection) -> String {
        conn.query_row(PAYMENTS_SQL, [], |r| r.get(0)).unwrap()
    }

    fn insert_status(conn: &Connection, id: &str, status: &str) -> rusqlite::Result<usize> {
        conn.execute(
            "INSERT INTO payments (merchant_id, id, amount, currency, status, amount_captured, \
             amount_refunded, card_brand, card_last4, card_fingerprint, created_ms, updated_ms) \
             VALUES ('mer_1', ?1, 100, 'usd', ?2, 0, 0, 'visa', '4242', 'f', 1, 1)",
            [id, status],
        )
    }

    #[test]
    fn a_new_shard_checks_the_status_with_comparisons() {
        assert!(SHARD.contains(STATUS_CHECK), "{SHARD}");
        assert!(!SHARD.contains(" IN ("), "{SHARD}");
    }

    #[test]
    fn an_old_status_check_is_rewritten_once_and_still_refuses_what_it_refused() {
        let old = SHARD.replace(STATUS_CHECK, STATUS_CHECK_IN);
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&old).unwrap();
        insert_status(&conn, "pay_before", "succeeded").unwrap();
        assert!(payments_sql(&conn).contains(STATUS_CHECK_IN));

        assert!(upgrade_status_check(&mut conn).unwrap());
        let sql = payments_sql(&conn);
        assert!(
            sql.contains(STATUS_CHECK) && !sql.contains(STATUS_CHECK_IN),
            "{sql}"
        );
        assert!(
            !upgrade_status_check(&mut conn).unwrap(),
            "a second run changes nothing"
        );

        for good in ["requires_capture", "succeeded", "canceled", "failed"] {
            insert_status(&conn, &format!("pay_{good}"), good).unwrap();
        }
        let refused = insert_status(&conn, "pay_bad", "refunded").unwrap_err();
        assert!(
            refused.to_string().contains("CHECK constraint failed"),
            "{refused}"
        );
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM payments", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 5);
    }
}
