//! Storage: one `Store` trait, backends behind it. SQLite (bundled) is the embedded
//! default; writes go through one group-commit writer per shard.

pub mod audit;
pub mod durability;
pub mod export;
pub mod layout;
pub mod postgres;
pub mod queue;
pub mod retention;
pub mod shown;
pub mod sqlite;

use crate::ledger::{Currency, LedgerError, Payment, Transfer};
use crate::secrets::Secret;
use serde::Serialize;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

/// Most shard files a data dir may have. Each shard is a writer thread, its read
/// connections and three files; past this a machine runs out of cores and file handles
/// long before more shards help. Must not exceed `ids::BUCKETS`, the unit merchants move in.
pub const SHARDS_MAX: usize = 64;
const _: () = assert!(SHARDS_MAX <= crate::ids::BUCKETS as usize);
/// Shards in a new data dir when none are asked for: in BENCHMARKS.md a second shard
/// added little throughput on the machines measured, and one file is simplest to operate.
pub const SHARDS_DEFAULT: usize = 1;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    pub bucket: u16,
    pub shard: usize,
    pub created_ms: i64,
}

/// A new secret key, shown once, and when the old one stops working.
#[derive(Debug)]
pub struct RolledKey {
    pub merchant: Merchant,
    pub key: Secret,
    /// None: the old key stopped working at once.
    pub previous_key_expires_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refund {
    pub id: String,
    pub payment_id: String,
    pub amount: u64,
    pub currency: Currency,
    pub created_ms: i64,
}

impl Refund {
    /// A refund as a store's row holds it, checked on the way out: a row with a negative
    /// amount or an unknown currency is an error, never an answer.
    pub fn from_row(
        id: &str,
        payment_id: String,
        amount: i64,
        currency: &str,
        created_ms: i64,
    ) -> Result<Refund, StoreError> {
        Ok(Refund {
            id: id.to_string(),
            payment_id,
            amount: u64::try_from(amount)
                .map_err(|_| StoreError::Internal(format!("refund {id} has amount {amount}")))?,
            currency: Currency::parse(currency).map_err(|_| {
                StoreError::Internal(format!("refund {id} has currency {currency:?}"))
            })?,
            created_ms,
        })
    }
}

/// What a write did, handed to the request's renderer.
#[derive(Debug)]
pub enum Outcome {
    Payment(Payment),
    Refund { refund: Refund, payment: Payment },
}

/// An HTTP answer kept for idempotent replay: the exact status and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Vec<u8>,
    /// True when this is a replay of an earlier request with the same key.
    pub replayed: bool,
}

/// The client's Idempotency-Key with a keyed hash of what the request asked for.
#[derive(Clone, Debug)]
pub struct Idempotency {
    pub key: String,
    pub request_fingerprint: [u8; 32],
}

#[derive(Debug)]
pub enum Mutation {
    /// A payment already decided by the ledger (authorization and capture are pure).
    Create {
        payment: Payment,
        transfers: Vec<Transfer>,
    },
    Capture {
        payment_id: String,
        amount: Option<u64>,
    },
    Cancel {
        payment_id: String,
    },
    Refund {
        payment_id: String,
        refund_id: String,
        amount: Option<u64>,
    },
}

/// One write, answered after its batch commits. `render` turns the outcome into the
/// response that is stored with the idempotency key in the same transaction, so a
/// replay returns exactly what the first request got.
pub struct WriteRequest {
    pub merchant: Arc<Merchant>,
    pub idempotency: Option<Idempotency>,
    pub mutation: Mutation,
    pub render: fn(&Outcome) -> StoredResponse,
}

/// Why one store operation failed, kept typed so the caller can choose: retry (busy),
/// alarm (corrupt), or answer the client (not found, a ledger refusal).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such payment")]
    NotFound,
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyMismatch,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The shard's write queue is full (`WriterLimits::queue_max`): refused at once,
    /// nothing written.
    #[error("the shard's write queue is full")]
    Overloaded,
    /// The store is stopping or a shard's writer is gone.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Another connection held the file's lock past the busy timeout: retrying later can
    /// succeed. Keeps SQLite's code (busy or locked).
    #[error("the database is busy: another connection holds its lock ({0})")]
    Busy(rusqlite::ffi::Error),
    /// The file is damaged or is not a SQLite database: retrying cannot help. Keeps
    /// SQLite's code (corrupt or not a database).
    #[error("the database file is corrupt or not a SQLite database ({0})")]
    Corrupt(rusqlite::ffi::Error),
    /// The disk is full, or the database or its files are read-only: nothing was
    /// written, and writes succeed again once space or permission returns.
    #[error("the store cannot write: its disk is full or it is read-only ({0})")]
    Unwritable(String),
    /// Any other SQLite failure, kept whole.
    #[error("SQLite: {0}")]
    Sqlite(rusqlite::Error),
    /// A broken invariant inside the store (a bad row, a failed task).
    #[error("store error: {0}")]
    Internal(String),
    /// A PostgreSQL shard cannot be reached (down, restarting, refusing connections):
    /// its merchants get a retryable answer while the others carry on.
    #[error("shard {shard} is unavailable: {reason}")]
    ShardDown { shard: String, reason: String },
    /// The shard this instance chose does not own the merchant's bucket (its view of the
    /// layout is stale): the router reloads ownership and retries on the right shard.
    #[error("bucket {bucket} is not owned by shard {shard}")]
    WrongShard { bucket: u16, shard: String },
    /// A `paytool shard move` holds its short write fence on the merchant's bucket: the
    /// router waits and retries (bounded by `MOVE_WAIT_MAX`), then answers 503.
    #[error("bucket {bucket} is fenced on shard {shard} while a move switches its owner")]
    Fenced { bucket: u16, shard: String },
    /// Any other PostgreSQL failure, with its SQLSTATE when it has one.
    #[error("PostgreSQL: {0}")]
    Postgres(String),
}

impl StoreError {
    /// Busy, corrupt and unwritable files, told apart by SQLite's code; `None` for
    /// anything else.
    fn classify(e: &rusqlite::Error) -> Option<StoreError> {
        use rusqlite::ErrorCode::{
            DatabaseBusy, DatabaseCorrupt, DatabaseLocked, DiskFull, NotADatabase, ReadOnly,
        };
        let sqlite = *e.sqlite_error()?;
        match sqlite.code {
            DatabaseBusy | DatabaseLocked => Some(StoreError::Busy(sqlite)),
            DatabaseCorrupt | NotADatabase => Some(StoreError::Corrupt(sqlite)),
            DiskFull | ReadOnly => Some(StoreError::Unwritable(e.to_string())),
            _ => None,
        }
    }

    /// The answer for each caller in a batch whose commit failed: one SQLite error
    /// becomes as many answers as there are callers.
    pub fn commit_failed(e: &rusqlite::Error) -> StoreError {
        StoreError::classify(e)
            .unwrap_or_else(|| StoreError::Unavailable(format!("commit failed: {e}")))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::classify(&e).unwrap_or(StoreError::Sqlite(e))
    }
}

/// Why a data dir could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The shard count is fixed when a data dir is made: merchants are placed by it.
    #[error("data dir {} was made with {made_with} shard(s), not {asked}", data_dir.display())]
    ShardCountMismatch {
        data_dir: PathBuf,
        made_with: usize,
        asked: usize,
    },
    #[error("cannot create data dir {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// One of the data dir's SQLite files would not open or read; `source` says whether it
    /// is busy, corrupt or something else.
    #[error("{}: {source}", file.display())]
    File { file: PathBuf, source: StoreError },
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct BalanceLine {
    pub currency: String,
    pub pending: i64,
    pub available: i64,
}

/// A merchant key hash as read back from a store: exactly 32 bytes, or the row is bad.
pub fn key_hash(bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Internal("merchant key hash is not 32 bytes".into()))
}

/// (currency, account, amount) rows of the balances table, ordered by currency, as one
/// line per currency; accounts other than the merchant's two are left out.
pub fn balance_lines(rows: impl IntoIterator<Item = (String, String, i64)>) -> Vec<BalanceLine> {
    let mut lines: Vec<BalanceLine> = Vec::new();
    for (currency, account, amount) in rows {
        if lines.last().is_none_or(|l| l.currency != currency) {
            lines.push(BalanceLine {
                currency,
                ..Default::default()
            });
        }
        let line = lines.last_mut().expect("pushed above");
        match account.as_str() {
            "merchant_pending" => line.pending = amount,
            "merchant_available" => line.available = amount,
            _ => {}
        }
    }
    lines
}

#[derive(Clone, Debug, Serialize)]
pub struct AuditCheck {
    pub name: &'static str,
    pub ok: bool,
    pub violation_count: u64,
    /// The first violations, bounded so a broken store cannot make the report huge.
    pub violations: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AuditReport {
    pub ok: bool,
    pub shards: usize,
    pub merchants: u64,
    pub payments: u64,
    pub postings: u64,
    pub checks: Vec<AuditCheck>,
}

pub const AUDIT_VIOLATIONS_SHOWN_MAX: usize = 50;

/// A page of a merchant's payments, each with the Idempotency-Key it was made under,
/// and whether more follow.
pub type KeyedPage = (Vec<(Payment, String)>, bool);

pub trait Store: Send + Sync + 'static {
    /// Create a merchant and its secret key; only the key's hash is stored.
    fn create_merchant(
        &self,
        name: String,
    ) -> BoxFuture<'_, Result<(Merchant, Secret), StoreError>>;
    /// The merchant whose secret key this is; None for a key that is not one.
    fn authenticate(
        &self,
        api_key: &str,
    ) -> BoxFuture<'_, Result<Option<Arc<Merchant>>, StoreError>>;
    /// As `authenticate`, but past any in-process cache of the store's own: what the
    /// store holds now (a shared cache in front fills itself from this).
    fn authenticate_fresh(
        &self,
        api_key: &str,
    ) -> BoxFuture<'_, Result<Option<Arc<Merchant>>, StoreError>> {
        self.authenticate(api_key)
    }
    fn merchant(&self, id: &str) -> BoxFuture<'_, Result<Option<Arc<Merchant>>, StoreError>>;
    /// Give a merchant a new secret key. The old one stops working at once, or after
    /// `grace`; None for an unknown merchant.
    fn roll_key(
        &self,
        merchant_id: &str,
        grace: Option<std::time::Duration>,
    ) -> BoxFuture<'_, Result<Option<RolledKey>, StoreError>>;
    fn write(&self, request: WriteRequest) -> BoxFuture<'_, Result<StoredResponse, StoreError>>;
    fn payment(
        &self,
        merchant: Arc<Merchant>,
        id: String,
    ) -> BoxFuture<'_, Result<Option<Payment>, StoreError>>;
    /// Newest first; the bool says whether more follow.
    fn list_payments(
        &self,
        merchant: Arc<Merchant>,
        starting_after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<(Vec<Payment>, bool), StoreError>>;
    /// The merchant's payments whose Idempotency-Key starts with `key_prefix`, each with
    /// its key, oldest first after `starting_after`; the bool says whether more follow.
    /// A load test's audit reads its own run's payments this way, in bulk.
    fn payments_with_key_prefix(
        &self,
        merchant: Arc<Merchant>,
        key_prefix: String,
        starting_after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<KeyedPage, StoreError>>;
    fn balance(
        &self,
        merchant: Arc<Merchant>,
    ) -> BoxFuture<'_, Result<Vec<BalanceLine>, StoreError>>;
    /// Walk every shard and check the ledger's invariants.
    fn audit(&self) -> BoxFuture<'_, Result<AuditReport, StoreError>>;
    fn ready(&self) -> bool;
    /// Stop accepting writes, commit what is queued, and close.
    fn shutdown(&self);
}

#[cfg(test)]
mod tests {
    use super::StoreError;
    use rusqlite::ffi;

    fn sqlite_failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)
    }

    #[test]
    fn sqlite_errors_keep_busy_apart_from_corrupt() {
        let cases = [
            (ffi::SQLITE_BUSY, "Busy"),
            (ffi::SQLITE_LOCKED, "Busy"),
            (ffi::SQLITE_CORRUPT, "Corrupt"),
            (ffi::SQLITE_NOTADB, "Corrupt"),
            (ffi::SQLITE_CONSTRAINT, "Sqlite"),
            (ffi::SQLITE_FULL, "Unwritable"),
            (ffi::SQLITE_READONLY, "Unwritable"),
        ];
        for (code, want) in cases {
            let got = match StoreError::from(sqlite_failure(code)) {
                StoreError::Busy(_) => "Busy",
                StoreError::Corrupt(_) => "Corrupt",
                StoreError::Unwritable(_) => "Unwritable",
                StoreError::Sqlite(_) => "Sqlite",
                other => panic!("code {code}: {other:?}"),
            };
            assert_eq!(got, want, "SQLite code {code}");
        }
        assert!(matches!(
            StoreError::commit_failed(&sqlite_failure(ffi::SQLITE_FULL)),
            StoreError::Unwritable(_)
        ));
        // A commit that failed for any other reason is retryable: 503.
        assert!(matches!(
            StoreError::commit_failed(&sqlite_failure(ffi::SQLITE_IOERR)),
            StoreError::Unavailable(_)
        ));
    }
}
