//! The group-commit writer: one thread per shard owns the shard's write connection. It
//! takes whatever requests are queued (up to `batch_max`), applies each inside its own
//! savepoint, commits them all with one fsync, and only then answers each. A request
//! that fails rolls back its savepoint alone; a commit that fails answers every request
//! in the batch with an error, so nothing unacknowledged is ever reported as done.
//! The balances table is written once a batch, just before the commit, from the
//! transfers of the requests whose savepoints were released (`rows::BalanceChanges`).

use super::answers;
use super::rows::{BalanceChanges, insert_payment, insert_transfers, load_payment, update_payment};
use crate::ids::now_ms;
use crate::ledger::Transfer;
use crate::store::{Mutation, Outcome, Refund, StoreError, StoredResponse, WriteRequest};
use rusqlite::{Connection, params};
use std::ops::RangeInclusive;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

pub type Reply = oneshot::Sender<Result<StoredResponse, StoreError>>;

pub struct Job {
    pub request: WriteRequest,
    pub reply: Reply,
}

/// Requests committed in one transaction by default: one fsync answers up to this many
/// writers, and a batch not much larger keeps each caller's wait for the others short.
pub const BATCH_MAX_DEFAULT: usize = 512;
/// The `batch_max` a deployment may choose: bounded so that a typo cannot make one
/// transaction, and every caller's wait for it, unbounded.
pub const BATCH_MAX_RANGE: RangeInclusive<usize> = 1..=10_000;
/// Requests waiting per shard by default: sixteen batches, so a burst waits in memory
/// for a few commits instead of being refused.
pub const QUEUE_MAX_DEFAULT: usize = 8_192;
/// The largest `queue_max` a deployment may choose (its least is its `batch_max`): each
/// queued request holds its body and a reply channel in memory.
pub const QUEUE_MAX_LIMIT: usize = 1_000_000;

#[derive(Clone, Copy, Debug)]
pub struct WriterLimits {
    /// Most requests committed in one transaction.
    pub batch_max: usize,
    /// Most requests waiting for the writer; past it, a write is refused at once (503).
    pub queue_max: usize,
}

impl Default for WriterLimits {
    fn default() -> Self {
        WriterLimits {
            batch_max: BATCH_MAX_DEFAULT,
            queue_max: QUEUE_MAX_DEFAULT,
        }
    }
}

/// Test-only fault injection: acknowledge every Nth payment creation without keeping it.
/// Exists so the load test's money audit can be shown to catch a lost write; compiled in
/// only with the `test-faults` feature (the test suite's build), so no binary a user runs
/// can drop an acknowledged payment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    #[cfg(feature = "test-faults")]
    pub drop_ack_every: Option<u64>,
}

impl Faults {
    pub fn drop_ack_every(&self) -> Option<u64> {
        #[cfg(feature = "test-faults")]
        return self.drop_ack_every;
        #[cfg(not(feature = "test-faults"))]
        None
    }
}

pub fn spawn(
    shard: usize,
    conn: Connection,
    limits: WriterLimits,
    faults: Faults,
) -> (mpsc::Sender<Job>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(limits.queue_max);
    let handle = std::thread::Builder::new()
        .name(format!("shard-{shard}-writer"))
        .spawn(move || run(shard, conn, rx, limits, faults))
        .expect("spawning a thread");
    (tx, handle)
}

fn run(
    shard: usize,
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    limits: WriterLimits,
    faults: Faults,
) {
    let shard_label = shard.to_string();
    // What this very connection does on commit, for /metrics (store::durability).
    let synchronous: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap_or(-1);
    let journal_mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap_or_default();
    crate::store::durability::report(
        "sqlite",
        &shard_label,
        crate::store::durability::sqlite_is_durable(synchronous, &journal_mode),
        &format!("synchronous={synchronous} journal_mode={journal_mode}"),
    );
    let batch_size =
        metrics::histogram!("paytool_group_commit_batch_size", "shard" => shard_label.clone());
    let commit_seconds =
        metrics::histogram!("paytool_group_commit_seconds", "shard" => shard_label.clone());
    let queue_depth = metrics::gauge!("paytool_write_queue_depth", "shard" => shard_label);
    let mut creates_seen = 0u64;
    let mut batch: Vec<Job> = Vec::with_capacity(limits.batch_max);
    let mut results: Vec<Result<StoredResponse, StoreError>> = Vec::with_capacity(limits.batch_max);
    // blocking_recv returns None once every sender is gone: the store is shutting down
    // and the queue is drained.
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        crate::store::queue::take_queued(&mut rx, &mut batch, limits.batch_max);
        queue_depth.set(rx.len() as f64);
        batch_size.record(batch.len() as f64);
        let started = Instant::now();
        let committed = commit_batch(&mut conn, &batch, &mut results, faults, &mut creates_seen);
        commit_seconds.record(started.elapsed().as_secs_f64());
        // A caller may have gone (client hung up); its write stands regardless, so a
        // failed send is ignored.
        match committed {
            Ok(()) => {
                // Replies pair with jobs by position: a missing or extra result would hand
                // a caller someone else's answer, so a mismatch stops the writer outright.
                assert_eq!(
                    results.len(),
                    batch.len(),
                    "shard {shard}: every job in a batch gets exactly one result"
                );
                for (job, result) in batch.drain(..).zip(results.drain(..)) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                // Nothing in the batch is on disk, and the batch may have stopped part way
                // through its results: every caller hears the commit's failure.
                results.clear();
                match StoreError::commit_failed(&e) {
                    StoreError::Busy(_) => tracing::warn!(shard, error = %e, "commit busy"),
                    _ => tracing::error!(shard, error = %e, "commit failed"),
                }
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(StoreError::commit_failed(&e)));
                }
            }
        }
    }
}

fn commit_batch(
    conn: &mut Connection,
    batch: &[Job],
    results: &mut Vec<Result<StoredResponse, StoreError>>,
    faults: Faults,
    creates_seen: &mut u64,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let now = now_ms();
    let mut balances = BalanceChanges::default();
    // The transfers of the request being applied; folded into `balances` only once its
    // savepoint is released, so a request rolled back moves no balance.
    let mut applied: Vec<Transfer> = Vec::new();
    for job in batch {
        applied.clear();
        // Cached statements: these run twice per request, and parsing them each time cost
        // about a tenth of the writer's CPU (BENCHMARKS.md).
        tx.prepare_cached("SAVEPOINT op")?.execute([])?;
        let result = apply(&tx, &job.request, now, &mut applied);
        if let (Some(every), Mutation::Create { .. }) =
            (faults.drop_ack_every(), &job.request.mutation)
        {
            *creates_seen += 1;
            if *creates_seen % every == 0 && result.is_ok() {
                // Fault injection: roll the write back but answer as if it were kept.
                rollback_op(&tx)?;
                results.push(result);
                continue;
            }
        }
        if result.is_ok() {
            tx.prepare_cached("RELEASE op")?.execute([])?;
            balances.add(job.request.merchant.id.as_str(), &applied);
        } else {
            rollback_op(&tx)?;
            if let Err(
                e @ (StoreError::Internal(_) | StoreError::Sqlite(_) | StoreError::Corrupt(_)),
            ) = &result
            {
                tracing::error!(error = %e, "write failed");
            }
        }
        results.push(result);
    }
    balances.write(&tx)?;
    tx.commit()
}

fn rollback_op(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached("ROLLBACK TO op")?.execute([])?;
    conn.prepare_cached("RELEASE op")?.execute([])?;
    Ok(())
}

/// Apply one request inside its savepoint; the transfers it made are pushed onto
/// `applied`. A new Idempotency-Key is the common case, so the change is applied first
/// and the key's unique index finds a key already used, as the answer is kept: no
/// lookup before every write. A used key (or a change that failed, which a retry of an
/// earlier success may) undoes whatever the change did and answers from the key.
fn apply(
    conn: &Connection,
    request: &WriteRequest,
    now: i64,
    applied: &mut Vec<Transfer>,
) -> Result<StoredResponse, StoreError> {
    let merchant_id = request.merchant.id.as_str();
    let outcome = match change(conn, request, now, applied) {
        Ok(outcome) => outcome,
        Err(e) => return answer_kept(conn, request, applied)?.ok_or(e),
    };
    let response = (request.render)(&outcome);
    if let Some(idem) = &request.idempotency
        && !answers::keep(conn, merchant_id, idem, response.status, &outcome, now)?
    {
        return answer_kept(conn, request, applied)?.ok_or_else(|| {
            StoreError::Internal(format!("the key {:?} was taken but kept nothing", idem.key))
        });
    }
    Ok(response)
}

/// For a request whose key may have been used before: undo what this request changed
/// (back to its savepoint, its transfers forgotten) and answer what the key kept, or
/// refuse a different request under it; `None` when the key is new.
fn answer_kept(
    conn: &Connection,
    request: &WriteRequest,
    applied: &mut Vec<Transfer>,
) -> Result<Option<StoredResponse>, StoreError> {
    let Some(idem) = &request.idempotency else {
        return Ok(None);
    };
    conn.prepare_cached("ROLLBACK TO op")?.execute([])?;
    applied.clear();
    let merchant_id = request.merchant.id.as_str();
    let Some(kept) = answers::find(conn, merchant_id, &idem.key)? else {
        return Ok(None);
    };
    if kept.fingerprint != idem.request_fingerprint {
        return Err(StoreError::IdempotencyMismatch);
    }
    // The same fingerprint is the same operation, so this request's renderer is the one
    // that answered the first time.
    kept.replay(conn, merchant_id, request.render).map(Some)
}

/// The change itself, on the committed state as this batch has left it.
fn change(
    conn: &Connection,
    request: &WriteRequest,
    now: i64,
    applied: &mut Vec<Transfer>,
) -> Result<Outcome, StoreError> {
    let merchant_id = request.merchant.id.as_str();
    let outcome = match &request.mutation {
        Mutation::Create { payment, transfers } => {
            if payment.merchant_id != merchant_id {
                return Err(StoreError::Internal(format!(
                    "payment {} belongs to {}, not {merchant_id}",
                    payment.id, payment.merchant_id
                )));
            }
            payment.check()?;
            insert_payment(
                conn,
                payment,
                request.idempotency.as_ref().map(|i| i.key.as_str()),
            )?;
            insert_transfers(conn, &payment.id, transfers, now)?;
            applied.extend_from_slice(transfers);
            Outcome::Payment(payment.clone())
        }
        Mutation::Capture { payment_id, amount } => {
            let mut payment =
                load_payment(conn, merchant_id, payment_id)?.ok_or(StoreError::NotFound)?;
            let transfers = payment.capture(*amount)?;
            update_payment(conn, &payment, now)?;
            insert_transfers(conn, payment_id, &transfers, now)?;
            applied.extend_from_slice(&transfers);
            Outcome::Payment(payment)
        }
        Mutation::Cancel { payment_id } => {
            let mut payment =
                load_payment(conn, merchant_id, payment_id)?.ok_or(StoreError::NotFound)?;
            let transfers = payment.cancel()?;
            update_payment(conn, &payment, now)?;
            insert_transfers(conn, payment_id, &transfers, now)?;
            applied.extend_from_slice(&transfers);
            Outcome::Payment(payment)
        }
        Mutation::Refund {
            payment_id,
            refund_id,
            amount,
        } => {
            let mut payment =
                load_payment(conn, merchant_id, payment_id)?.ok_or(StoreError::NotFound)?;
            let (refunded, transfers) = payment.refund(*amount)?;
            update_payment(conn, &payment, now)?;
            insert_transfers(conn, payment_id, &transfers, now)?;
            applied.extend_from_slice(&transfers);
            conn.prepare_cached(
                "INSERT INTO refunds (merchant_id, id, payment_id, amount, currency, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                merchant_id,
                refund_id,
                payment_id,
                refunded as i64,
                payment.currency.code(),
                now
            ])?;
            let refund = Refund {
                id: refund_id.clone(),
                payment_id: payment_id.clone(),
                amount: refunded,
                currency: payment.currency,
                created_ms: now,
            };
            Outcome::Refund { refund, payment }
        }
    };
    Ok(outcome)
}
