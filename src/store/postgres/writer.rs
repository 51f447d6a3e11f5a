//! The group-commit writer for one PostgreSQL shard: one task that owns the shard's
//! write connection, takes whatever writes are queued or about to be (up to `batch_max`,
//! `queue::take_ready`), and commits them in one transaction with `synchronous_commit`
//! on, then answers each.
//!
//! Unlike the SQLite writer (one savepoint and a few statements per write, cheap on an
//! in-process database), every statement here is a network round trip, so a batch costs
//! a fixed number of set-based statements however many writes it holds:
//! take the shard's commit turn (`COMMIT_TURN_LOCK`, then close the batch),
//! lock the batch's buckets, look up its idempotency keys, lock the payments it changes,
//! decide every write in memory with the pure ledger (in queue order, so a capture can
//! follow the create in the same batch), then write every table in one statement
//! (`WRITE_BATCH_SQL`: an `UNNEST` insert or update per table). A write the ledger
//! refuses changes nothing and gets its error; the others commit. ARCHITECTURE.md has
//! the measurements behind the choice.
//!
//! Several API instances may write to one shard at once, so what one process used to
//! guarantee in memory is enforced by the database inside this transaction:
//! - the shard owns each bucket it writes (`paytool_buckets`, locked FOR SHARE): a write
//!   routed by a stale layout is refused with `WrongShard`, never misplaced, and a write
//!   to a bucket a `shard move` has fenced is refused with `Fenced` (the fence's UPDATE
//!   waits for the batches holding the lock, so none is in flight behind it);
//! - an idempotency key is unique by primary key: the insert goes first, and if another
//!   instance committed the same key meanwhile, the whole batch is rolled back and run
//!   again, when the lookup finds the stored answer and replays it.

use super::replicas::Written;
use super::rows::{KeptAnswer, payment_from_row, store_error};
use super::sql::{OWNED_SQL, WRITE_BATCH_PARAMS, WRITE_BATCH_SQL, idempotency_sql, payments_sql};
use crate::ids::now_ms;
use crate::ledger::{Payment, Transfer};
use crate::secrets::DbUrl;
use crate::store::shown::Shown;
use crate::store::sqlite::WriterLimits;
use crate::store::{Mutation, Outcome, Refund, StoreError, StoredResponse, WriteRequest};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

pub type Reply = oneshot::Sender<Result<StoredResponse, StoreError>>;

pub struct Job {
    pub request: WriteRequest,
    pub reply: Reply,
    /// Where a write refused as `WrongShard` or `Fenced` is handed back, to be routed again.
    pub returned: Option<oneshot::Sender<WriteRequest>>,
}

/// Connecting to a shard that is down fails at once (refused); this bounds a host that
/// does not answer at all.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// One batch, from BEGIN to COMMIT. A shard that stops answering mid-batch costs its
/// callers this long at most, then the connection is dropped and they hear 503.
pub const BATCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Times a batch is run again after a conflict with another instance (the same key
/// committed meanwhile, a deadlock, a serialization failure) before its callers get 503.
pub const BATCH_RETRIES_MAX: usize = 3;

/// The writer's session: each statement is planned once per connection (a plan per batch
/// was a fifth of PostgreSQL's CPU a payment, BENCHMARKS.md), and with sequential scans
/// priced out, so the plan made while a new shard's tables are empty and unanalyzed is
/// an index plan all the same (with the planner's choice it kept sequential scans until
/// autovacuum's first ANALYZE, 3x slower). Every writer statement is a lookup or a
/// write by key, which an index always serves; `tests/it/pg_explain.rs` checks each
/// one's generic plan under this session.
pub const WRITER_SESSION: &str =
    "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off";

type PaymentKey = (String, String);

struct Statements {
    owned: Statement,
    idempotency: Statement,
    payments: Statement,
    write_batch: Statement,
    turn: Statement,
}

/// The advisory lock a shard's writers take turns on: every batch's transaction takes
/// it first (`pg_advisory_xact_lock`, so PostgreSQL releases it at COMMIT or ROLLBACK)
/// and closes its batch only once it holds it. With several API instances on one shard,
/// each instance's writer then gathers its writes while the others commit, instead of
/// all of them committing small batches side by side: PostgreSQL's cost is mostly per
/// batch, and behind HAProxy three writers a shard made three times the commits of the
/// same load reached directly (BENCHMARKS.md, "Writers that take turns"). Only batching
/// depends on it: correctness rests on the row locks and keys below, not on this lock.
/// An arbitrary constant, apart from `OWNERS_LOCK` and the migrations' lock.
pub const COMMIT_TURN_LOCK: i64 = 0x0070_6179_7475_726e;

impl Statements {
    async fn prepare(c: &Client) -> Result<Statements, tokio_postgres::Error> {
        Ok(Statements {
            owned: c.prepare(OWNED_SQL).await?,
            idempotency: c.prepare(&idempotency_sql()).await?,
            payments: c.prepare(&payments_sql()).await?,
            write_batch: c.prepare(WRITE_BATCH_SQL).await?,
            turn: c.prepare("SELECT pg_advisory_xact_lock($1)").await?,
        })
    }
}

struct Connection {
    client: Client,
    statements: Statements,
}

/// What this writer connection does on commit, for /metrics (store::durability).
async fn report_durability(client: &Client, shard: &str) -> Result<(), StoreError> {
    let show = |setting: &'static str| async move {
        client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .map(|r| r.get::<_, String>(0))
            .map_err(|e| store_error(shard, &e))
    };
    let (commit, fsync) = (show("synchronous_commit").await?, show("fsync").await?);
    crate::store::durability::report(
        "postgres",
        shard,
        crate::store::durability::postgres_is_durable(&commit, &fsync),
        &format!("synchronous_commit={commit} fsync={fsync}"),
    );
    Ok(())
}

/// Connect with the writer's bounds: a connect timeout, and keepalives so a dead peer
/// is noticed.
pub async fn connect(url: &DbUrl, shard: &str) -> Result<Client, StoreError> {
    let mut config: tokio_postgres::Config = url
        .expose()
        .parse()
        .map_err(|e| StoreError::Internal(format!("shard {shard}: bad URL {url}: {e}")))?;
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .application_name("paytool");
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| store_error(shard, &e))?;
    tokio::spawn(async move {
        // Ends when the client is dropped or the server goes away; the next use of the
        // client then fails and the writer reconnects.
        let _ = connection.await;
    });
    Ok(client)
}

/// `written`: where to record each merchant's write position after a commit, when the
/// shard has read replicas (see `replicas`).
pub fn spawn(
    shard: String,
    url: DbUrl,
    limits: WriterLimits,
    written: Option<Arc<Written>>,
) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(limits.queue_max);
    tokio::spawn(run(shard, url, rx, limits, written));
    tx
}

async fn run(
    shard: String,
    url: DbUrl,
    mut rx: mpsc::Receiver<Job>,
    limits: WriterLimits,
    written: Option<Arc<Written>>,
) {
    let batch_size =
        metrics::histogram!("paytool_group_commit_batch_size", "shard" => shard.clone());
    let commit_seconds =
        metrics::histogram!("paytool_group_commit_seconds", "shard" => shard.clone());
    let queue_depth = metrics::gauge!("paytool_write_queue_depth", "shard" => shard.clone());
    let mut connection: Option<Connection> = None;
    let mut batch: Vec<Job> = Vec::with_capacity(limits.batch_max);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        crate::store::queue::take_ready(&mut rx, &mut batch, limits.batch_max).await;
        queue_depth.set(rx.len() as f64);
        batch_size.record(batch.len() as f64);
        let started = Instant::now();
        let outcome = match tokio::time::timeout(
            BATCH_TIMEOUT,
            commit_with_retries(
                &mut connection,
                &url,
                &shard,
                &mut batch,
                &mut rx,
                limits.batch_max,
            ),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => Err(StoreError::ShardDown {
                shard: shard.clone(),
                reason: format!("no answer within {BATCH_TIMEOUT:?}"),
            }),
        };
        commit_seconds.record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(results) => {
                // Replies pair with jobs by position: a missing or extra result would hand
                // a caller someone else's answer.
                assert_eq!(
                    results.len(),
                    batch.len(),
                    "shard {shard}: every job in a batch gets exactly one result"
                );
                if let Some(written) = &written {
                    // Before anyone hears of the commit: a read after the answer must find
                    // the position (unknown: the primary serves the merchant until the
                    // next position is read).
                    let at = match &connection {
                        Some(c) => wal_position(&c.client).await,
                        None => None,
                    };
                    for (job, result) in batch.iter().zip(&results) {
                        if result.is_ok() {
                            let merchant = &job.request.merchant.id;
                            match at {
                                Some(at) => written.record(merchant, at),
                                None => written.record_unknown(merchant),
                            }
                        }
                    }
                }
                for (job, result) in batch.drain(..).zip(results) {
                    if let (
                        Err(StoreError::WrongShard { .. } | StoreError::Fenced { .. }),
                        Some(back),
                    ) = (&result, job.returned)
                    {
                        let _ = back.send(job.request);
                    }
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                // Nothing in the batch committed (or, after a lost connection, we cannot
                // know: the callers hear 503 and retry with their idempotency keys).
                if matches!(e, StoreError::ShardDown { .. }) {
                    connection = None;
                }
                tracing::warn!(shard, error = %e, "batch failed");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(same_error(&e)));
                }
            }
        }
    }
}

/// The primary's WAL position now: at or past every commit this connection made.
async fn wal_position(client: &Client) -> Option<u64> {
    let row = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .ok()?;
    super::replicas::parse_lsn(row.get(0))
}

/// One error for each caller of a failed batch.
fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::ShardDown { shard, reason } => StoreError::ShardDown {
            shard: shard.clone(),
            reason: reason.clone(),
        },
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Unwritable(m) => StoreError::Unwritable(m.clone()),
        other => StoreError::Postgres(other.to_string()),
    }
}

async fn commit_with_retries(
    connection: &mut Option<Connection>,
    url: &DbUrl,
    shard: &str,
    batch: &mut Vec<Job>,
    rx: &mut mpsc::Receiver<Job>,
    batch_max: usize,
) -> Result<Vec<Result<StoredResponse, StoreError>>, StoreError> {
    let mut last = None;
    for _ in 0..=BATCH_RETRIES_MAX {
        if connection.is_none() {
            let client = connect(url, shard).await?;
            client
                .batch_execute(WRITER_SESSION)
                .await
                .map_err(|e| store_error(shard, &e))?;
            let statements = Statements::prepare(&client)
                .await
                .map_err(|e| store_error(shard, &e))?;
            report_durability(&client, shard).await?;
            *connection = Some(Connection { client, statements });
        }
        let c = connection.as_mut().expect("connected above");
        let outcome = commit_batch(c, batch, rx, batch_max).await;
        if !matches!(outcome, Ok(Committed::Done(_))) {
            // Whatever the batch left open ends here, before the next BEGIN; a
            // connection that cannot even roll back is replaced.
            if let Err(e) = c.client.batch_execute("ROLLBACK").await {
                *connection = None;
                if outcome.is_ok() {
                    return Err(store_error(shard, &e));
                }
            }
        }
        match outcome {
            Ok(Committed::Done(results)) => return Ok(results),
            Ok(Committed::KeyTakenMeanwhile) => {
                last = Some(
                    "an idempotency key was committed by another instance meanwhile".to_string(),
                )
            }
            Err(e) => {
                let retryable = e.code().is_some_and(|c| {
                    *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                        || *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                });
                if !retryable {
                    return Err(store_error(shard, &e));
                }
                last = Some(e.to_string());
            }
        }
    }
    Err(StoreError::Unavailable(format!(
        "shard {shard}: the batch conflicted with other writers {} times: {}",
        BATCH_RETRIES_MAX + 1,
        last.unwrap_or_default()
    )))
}

enum Committed {
    Done(Vec<Result<StoredResponse, StoreError>>),
    /// Another instance committed one of the batch's keys after our lookup: rolled back.
    KeyTakenMeanwhile,
}

/// What a batch writes, gathered while its writes are decided in memory.
#[derive(Default)]
struct Effects {
    /// Payments as they stand after the batch, and which are new.
    payments: HashMap<PaymentKey, (u16, Payment)>,
    created: Vec<(PaymentKey, Option<String>)>,
    changed: HashSet<PaymentKey>,
    transfers: Vec<(u16, String, String, Transfer)>,
    refunds: Vec<(u16, String, Refund)>,
    /// Each new key's row: what its answer showed, and the status answered.
    idempotency: Vec<(u16, String, String, [u8; 32], u16, Shown)>,
    /// The next transfer number of each payment loaded (new payments start at 0).
    next_seq: HashMap<PaymentKey, i32>,
}

/// Three pipelined queries of one transaction: once one fails, the others fail with
/// 25P02 (transaction aborted), which would hide the cause (a read-only server, say).
/// The cause's error wins.
fn cause_first<A, B, C>(
    a: Result<A, tokio_postgres::Error>,
    b: Result<B, tokio_postgres::Error>,
    c: Result<C, tokio_postgres::Error>,
) -> Result<(A, B, C), tokio_postgres::Error> {
    match (a, b, c) {
        (Ok(a), Ok(b), Ok(c)) => Ok((a, b, c)),
        (a, b, c) => {
            let errors = [a.err(), b.err(), c.err()];
            let aborted = |e: &tokio_postgres::Error| {
                e.code() == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
            };
            let mut errors = errors.into_iter().flatten();
            let first = errors.next().expect("one of them failed");
            Err(match aborted(&first) {
                true => errors.find(|e| !aborted(e)).unwrap_or(first),
                false => first,
            })
        }
    }
}

async fn commit_batch(
    c: &mut Connection,
    batch: &mut Vec<Job>,
    rx: &mut mpsc::Receiver<Job>,
    batch_max: usize,
) -> Result<Committed, tokio_postgres::Error> {
    let st = &c.statements;
    let db = &c.client;
    // BEGIN and the turn go out together (one round trip); the batch closes once the
    // turn is ours, with what queued while the other instances' writers had it.
    let (begun, turn) = tokio::join!(
        db.batch_execute("BEGIN"),
        db.execute(&st.turn, &[&COMMIT_TURN_LOCK])
    );
    begun?;
    turn?;
    crate::store::queue::take_queued(rx, batch, batch_max);
    let batch: &[Job] = batch;
    let now = now_ms();

    // The three lookups go out together (tokio-postgres pipelines concurrent queries on
    // one connection): one round trip instead of three.
    let mut buckets: Vec<i16> = batch
        .iter()
        .map(|j| j.request.merchant.bucket as i16)
        .collect();
    buckets.sort_unstable();
    buckets.dedup();
    let (mut kb, mut km, mut kk) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pb, mut pm, mut pi) = (Vec::new(), Vec::new(), Vec::new());
    for j in batch {
        let m = &j.request.merchant;
        if let Some(idem) = &j.request.idempotency {
            kb.push(m.bucket as i16);
            km.push(m.id.as_str());
            kk.push(idem.key.as_str());
        }
        if let Some(id) = target(&j.request.mutation) {
            pb.push(m.bucket as i16);
            pm.push(m.id.as_str());
            pi.push(id);
        }
    }
    let owned_params: [&(dyn ToSql + Sync); 1] = [&buckets];
    let key_params: [&(dyn ToSql + Sync); 3] = [&kb, &km, &kk];
    let payment_params: [&(dyn ToSql + Sync); 3] = [&pb, &pm, &pi];
    let (owned, keys, payments) = tokio::join!(
        db.query(&st.owned, &owned_params),
        db.query(&st.idempotency, &key_params),
        db.query(&st.payments, &payment_params),
    );
    let (owned, keys, payments) = cause_first(owned, keys, payments)?;
    // bucket -> whether a move fences it.
    let owned: HashMap<i16, bool> = owned.iter().map(|r| (r.get(0), r.get(1))).collect();
    // Each kept answer, or why it cannot be read (answered to its replays, not the batch).
    let mut stored: HashMap<(String, String), Result<KeptAnswer, StoreError>> = HashMap::new();
    for r in keys {
        let id: (String, String) = (r.get(12), r.get(13));
        stored.insert(id, KeptAnswer::from_row(&r));
    }
    let mut effects = Effects::default();
    for r in payments {
        match payment_from_row(&r) {
            Ok(p) => {
                let bucket: i16 = r.get(12);
                let key = (p.merchant_id.clone(), p.id.clone());
                effects.next_seq.insert(key.clone(), r.get(13));
                effects.payments.insert(key, (bucket as u16, p));
            }
            // A row that breaks the ledger's invariants is answered as an error
            // below (not found in the map), and logged here.
            Err(e) => tracing::error!(error = %e, "unreadable payment row"),
        }
    }

    let mut results = Vec::with_capacity(batch.len());
    let mut in_batch: HashMap<(String, String), ([u8; 32], StoredResponse)> = HashMap::new();
    for j in batch {
        let m = &j.request.merchant;
        match owned.get(&(m.bucket as i16)) {
            None => {
                results.push(Err(StoreError::WrongShard {
                    bucket: m.bucket,
                    shard: String::new(),
                }));
                continue;
            }
            Some(true) => {
                results.push(Err(StoreError::Fenced {
                    bucket: m.bucket,
                    shard: String::new(),
                }));
                continue;
            }
            Some(false) => {}
        }
        if let Some(idem) = &j.request.idempotency {
            let id = (m.id.clone(), idem.key.clone());
            if let Some((fingerprint, response)) = in_batch.get(&id) {
                results.push(if *fingerprint == idem.request_fingerprint {
                    Ok(StoredResponse {
                        replayed: true,
                        ..response.clone()
                    })
                } else {
                    Err(StoreError::IdempotencyMismatch)
                });
                continue;
            }
            if let Some(kept) = stored.get(&id) {
                results.push(match kept {
                    Ok(kept) if kept.fingerprint == idem.request_fingerprint => {
                        kept.replay(j.request.render)
                    }
                    Ok(_) => Err(StoreError::IdempotencyMismatch),
                    Err(e) => Err(StoreError::Internal(e.to_string())),
                });
                continue;
            }
        }
        let result = decide(&j.request, &mut effects, now);
        if let (Ok((response, shown)), Some(idem)) = (&result, &j.request.idempotency) {
            in_batch.insert(
                (m.id.clone(), idem.key.clone()),
                (idem.request_fingerprint, response.clone()),
            );
            effects.idempotency.push((
                m.bucket,
                m.id.clone(),
                idem.key.clone(),
                idem.request_fingerprint,
                response.status,
                shown.clone(),
            ));
        }
        results.push(result.map(|(response, _)| response));
    }

    // Every write is one statement; its count of keys inserted says whether another
    // instance committed one of them meanwhile, and then the whole batch is rolled back.
    let mut rows: Vec<_> = effects.idempotency.iter().collect();
    // One order for every writer, so two instances never wait on each other's keys in
    // opposite orders.
    rows.sort_by(|a, b| (a.0, &a.1, &a.2).cmp(&(b.0, &b.1, &b.2)));
    let mut cols: Columns = Vec::with_capacity(WRITE_BATCH_PARAMS);
    cols.push(column(&rows, |r| r.0 as i16));
    cols.push(column(&rows, |r| r.1.as_str()));
    cols.push(column(&rows, |r| r.2.as_str()));
    cols.push(column(&rows, |r| &r.3[..]));
    cols.push(column(&rows, |r| r.4 as i16));
    cols.push(column(&rows, |r| r.5.payment_id.as_str()));
    cols.push(column(&rows, |r| r.5.payment_status as i16));
    cols.push(column(&rows, |r| r.5.amount_captured));
    cols.push(column(&rows, |r| r.5.amount_refunded));
    cols.push(column(&rows, |r| r.5.refund_id.as_deref()));
    cols.push(Box::new(vec![now; rows.len()]));
    let changed = payment_columns(&effects, now, &mut cols);
    ledger_columns(&effects, now, &mut cols);
    assert_eq!(cols.len(), WRITE_BATCH_PARAMS, "one value per parameter");
    let params: Vec<&(dyn ToSql + Sync)> = cols.iter().map(|c| &**c as _).collect();
    let written = db.query_one(&st.write_batch, &params).await?;
    let (inserted, updated): (i64, i64) = (written.get(0), written.get(1));
    if inserted as usize != rows.len() {
        return Ok(Committed::KeyTakenMeanwhile);
    }
    assert_eq!(
        updated as usize, changed,
        "every changed payment was locked and exists"
    );
    db.batch_execute("COMMIT").await?;
    Ok(Committed::Done(results))
}

/// The payment a capture, cancel or refund changes.
fn target(m: &Mutation) -> Option<&str> {
    match m {
        Mutation::Create { .. } => None,
        Mutation::Capture { payment_id, .. }
        | Mutation::Cancel { payment_id }
        | Mutation::Refund { payment_id, .. } => Some(payment_id),
    }
}

/// Decide one write against the batch's view of its payments; on success record its
/// effects, and return its answer and what the answer shows. A refusal changes nothing.
fn decide(
    request: &WriteRequest,
    fx: &mut Effects,
    now: i64,
) -> Result<(StoredResponse, Shown), StoreError> {
    let m = &request.merchant;
    let current = |fx: &Effects, id: &str| -> Result<Payment, StoreError> {
        fx.payments
            .get(&(m.id.clone(), id.to_string()))
            .map(|(_, p)| p.clone())
            .ok_or(StoreError::NotFound)
    };
    let (payment, transfers, refund) = match &request.mutation {
        Mutation::Create { payment, transfers } => {
            if payment.merchant_id != m.id {
                return Err(StoreError::Internal(format!(
                    "payment {} belongs to {}, not {}",
                    payment.id, payment.merchant_id, m.id
                )));
            }
            payment.check()?;
            let key = (m.id.clone(), payment.id.clone());
            if fx.payments.contains_key(&key) {
                return Err(StoreError::Internal(format!(
                    "payment {} exists",
                    payment.id
                )));
            }
            let idem = request.idempotency.as_ref().map(|i| i.key.clone());
            fx.created.push((key, idem));
            (payment.clone(), transfers.clone(), None)
        }
        Mutation::Capture { payment_id, amount } => {
            let mut p = current(fx, payment_id)?;
            let transfers = p.capture(*amount)?;
            (p, transfers, None)
        }
        Mutation::Cancel { payment_id } => {
            let mut p = current(fx, payment_id)?;
            let transfers = p.cancel()?;
            (p, transfers, None)
        }
        Mutation::Refund {
            payment_id,
            refund_id,
            amount,
        } => {
            let mut p = current(fx, payment_id)?;
            let (refunded, transfers) = p.refund(*amount)?;
            let refund = Refund {
                id: refund_id.clone(),
                payment_id: payment_id.clone(),
                amount: refunded,
                currency: p.currency,
                created_ms: now,
            };
            (p, transfers, Some(refund))
        }
    };
    let key = (m.id.clone(), payment.id.clone());
    if !matches!(request.mutation, Mutation::Create { .. }) {
        fx.changed.insert(key.clone());
    }
    for t in transfers {
        fx.transfers
            .push((m.bucket, m.id.clone(), payment.id.clone(), t));
    }
    let outcome = match refund {
        Some(refund) => {
            fx.refunds.push((m.bucket, m.id.clone(), refund.clone()));
            Outcome::Refund {
                refund,
                payment: payment.clone(),
            }
        }
        None => Outcome::Payment(payment.clone()),
    };
    fx.payments.insert(key, (m.bucket, payment));
    Ok(((request.render)(&outcome), Shown::of(&outcome)))
}

/// A statement's parameters, each borrowing from the batch's effects.
type Columns<'a> = Vec<Box<dyn ToSql + Send + Sync + 'a>>;

/// One array parameter: `f` of every row, in order.
fn column<'a, R, T>(
    rows: impl IntoIterator<Item = R>,
    f: impl FnMut(R) -> T,
) -> Box<dyn ToSql + Send + Sync + 'a>
where
    Vec<T>: ToSql + Send + Sync + 'a,
{
    Box::new(rows.into_iter().map(f).collect::<Vec<T>>())
}

/// The created payments' 15 columns and the changed payments' 6 and `now`, for
/// `WRITE_BATCH_SQL`; returns how many existing payments change.
fn payment_columns<'a>(fx: &'a Effects, now: i64, cols: &mut Columns<'a>) -> usize {
    let rows: Vec<(&u16, &Payment, &Option<String>)> = fx
        .created
        .iter()
        .map(|(k, idem)| {
            let (b, p) = &fx.payments[k];
            (b, p, idem)
        })
        .collect();
    cols.push(column(&rows, |r| *r.0 as i16));
    cols.push(column(&rows, |r| r.1.merchant_id.as_str()));
    cols.push(column(&rows, |r| r.1.id.as_str()));
    cols.push(column(&rows, |r| r.2.as_deref()));
    cols.push(column(&rows, |r| r.1.amount as i64));
    cols.push(column(&rows, |r| r.1.currency.code()));
    cols.push(column(&rows, |r| r.1.status.as_str()));
    cols.push(column(&rows, |r| r.1.amount_captured as i64));
    cols.push(column(&rows, |r| r.1.amount_refunded as i64));
    cols.push(column(&rows, |r| r.1.card_brand.as_str()));
    cols.push(column(&rows, |r| r.1.card_last4.as_str()));
    cols.push(column(&rows, |r| r.1.card_fingerprint.as_str()));
    cols.push(column(&rows, |r| r.1.failure_code.as_deref()));
    cols.push(column(&rows, |r| r.1.created_ms));
    cols.push(Box::new(vec![now; rows.len()]));
    // Payments created in this batch were inserted in their final state above.
    let created: HashSet<&PaymentKey> = fx.created.iter().map(|(k, _)| k).collect();
    let mut changed: Vec<&(u16, Payment)> = fx
        .changed
        .iter()
        .filter(|k| !created.contains(k))
        .map(|k| &fx.payments[k])
        .collect();
    changed.sort_by(|a, b| (a.0, &a.1.merchant_id, &a.1.id).cmp(&(b.0, &b.1.merchant_id, &b.1.id)));
    cols.push(column(&changed, |r| r.0 as i16));
    cols.push(column(&changed, |r| r.1.merchant_id.as_str()));
    cols.push(column(&changed, |r| r.1.id.as_str()));
    cols.push(column(&changed, |r| r.1.status.as_str()));
    cols.push(column(&changed, |r| r.1.amount_captured as i64));
    cols.push(column(&changed, |r| r.1.amount_refunded as i64));
    cols.push(Box::new(now));
    changed.len()
}

/// The transfers' 8 columns, the refunds' 7 and the balance deltas' 5, for
/// `WRITE_BATCH_SQL`.
fn ledger_columns<'a>(fx: &'a Effects, now: i64, cols: &mut Columns<'a>) {
    // A payment's transfers are numbered after those already on it; a new payment's
    // start at 0. The primary key refuses a duplicate number, so two writers can never
    // both append the same transfer.
    let mut next_seq = fx.next_seq.clone();
    let mut seq = Vec::with_capacity(fx.transfers.len());
    for t in &fx.transfers {
        let n = next_seq.entry((t.1.clone(), t.2.clone())).or_insert(0);
        seq.push(*n);
        *n += 1;
    }
    let transfers = &fx.transfers;
    cols.push(column(transfers, |t| t.0 as i16));
    cols.push(column(transfers, |t| t.2.as_str()));
    cols.push(Box::new(seq));
    cols.push(column(transfers, |t| t.3.currency().code()));
    cols.push(column(transfers, |t| i16::from(t.3.from().code())));
    cols.push(column(transfers, |t| i16::from(t.3.to().code())));
    cols.push(column(transfers, |t| t.3.amount() as i64));
    cols.push(Box::new(vec![now; transfers.len()]));
    let refunds = &fx.refunds;
    cols.push(column(refunds, |r| r.0 as i16));
    cols.push(column(refunds, |r| r.1.as_str()));
    cols.push(column(refunds, |r| r.2.id.as_str()));
    cols.push(column(refunds, |r| r.2.payment_id.as_str()));
    cols.push(column(refunds, |r| r.2.amount as i64));
    cols.push(column(refunds, |r| r.2.currency.code()));
    cols.push(column(refunds, |r| r.2.created_ms));
    // Balances: one delta per row, in one order for every writer (no deadlocks between
    // instances), zero deltas skipped.
    let mut deltas: BTreeMap<(u16, &str, &str, &str), i64> = BTreeMap::new();
    for (bucket, merchant, _, t) in transfers {
        for p in t.postings() {
            *deltas
                .entry((
                    *bucket,
                    merchant.as_str(),
                    p.currency.code(),
                    p.account.as_str(),
                ))
                .or_default() += p.amount;
        }
    }
    deltas.retain(|_, d| *d != 0);
    cols.push(column(deltas.keys(), |k| k.0 as i16));
    cols.push(column(deltas.keys(), |k| k.1));
    cols.push(column(deltas.keys(), |k| k.2));
    cols.push(column(deltas.keys(), |k| k.3));
    cols.push(column(deltas.values(), |d| *d));
}
