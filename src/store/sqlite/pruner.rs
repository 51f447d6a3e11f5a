//! Prunes a shard's expired idempotency keys on a connection of its own, off the
//! request path, in bounded batches (`store::retention`).

use crate::ids::now_ms;
use crate::store::retention::{PRUNE_BATCH_MAX, expired_before_ms, prune_interval, prune_round};
use rusqlite::{Connection, params};
use std::sync::mpsc;
use std::time::Duration;

/// Stops the pruner when dropped (or sent to).
pub type Stop = mpsc::Sender<()>;

pub fn spawn(
    shard: usize,
    conn: Connection,
    retention: Duration,
) -> (Stop, std::thread::JoinHandle<()>) {
    let (stop, stopped) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(format!("shard-{shard}-pruner"))
        .spawn(move || run(shard, conn, retention, stopped))
        .expect("spawning a thread");
    (stop, handle)
}

fn run(shard: usize, conn: Connection, retention: Duration, stopped: mpsc::Receiver<()>) {
    let pruned =
        metrics::counter!("paytool_idempotency_pruned_total", "shard" => shard.to_string());
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(prune_interval(retention))
    {
        let before = expired_before_ms(retention, now_ms());
        match prune_round(before, |before| delete_batch(&conn, before)) {
            Ok(n) => pruned.increment(n as u64),
            // Busy (the writer holds the lock past the busy timeout) or worse: the next
            // round tries again; keys are only kept longer, never lost early.
            Err(e) => tracing::warn!(shard, error = %e, "pruning idempotency keys"),
        }
    }
}

/// Of the oldest `PRUNE_BATCH_MAX` keys by `seq` (creation order), delete those made
/// before `before_ms`. Bounded work whatever the table holds: a walk by `created_ms`
/// would need an index on it, and one that filtered before its LIMIT would read the
/// whole table when nothing has expired. A key written while the clock stood behind
/// an older one's waits for the keys before it: it is kept longer, never pruned early.
fn delete_batch(conn: &Connection, before_ms: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "DELETE FROM idempotency_keys WHERE created_ms < ?1 AND seq IN \
         (SELECT seq FROM idempotency_keys ORDER BY seq LIMIT ?2)",
    )?
    .execute(params![before_ms, PRUNE_BATCH_MAX])
}
