//! The write fence on a moving bucket range, and the mark that says the target has
//! caught up behind it.
//!
//! The fence is a lease on the source's own clock in `paytool_buckets.fenced_until_ms`:
//! every writing transaction locks its buckets' rows FOR SHARE and refuses a write to a
//! fenced one, so the fence's UPDATE waits for the batches in flight, and from its commit
//! on nothing changes in the range. Other buckets' rows are not touched: their merchants
//! never wait. A move that dies holding a fence releases it when the lease runs out.

use super::{MoveError, query};
use crate::store::postgres::sql::db_now_ms;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// How long a fence holds unless renewed or lifted: the longest any merchant in a moving
/// range can be refused if the move dies holding it.
pub const FENCE_LEASE: Duration = Duration::from_secs(2);
/// How often the target is asked whether a mark has arrived.
pub const MARK_POLL: Duration = Duration::from_millis(2);

/// Fence buckets `first..=last` on the source (which must own them all), returning when
/// every write in flight to them has committed.
pub async fn fence(source: &Client, first: u16, last: u16) -> Result<(), MoveError> {
    let lease = FENCE_LEASE.as_millis() as i64;
    // Rows locked in bucket order, as the writers lock theirs: no deadlock between them.
    let fenced = source
        .execute(
            concat!(
                "UPDATE paytool_buckets SET fenced_until_ms = ",
                db_now_ms!(),
                " + $3 WHERE bucket IN (SELECT bucket FROM paytool_buckets \
                 WHERE bucket BETWEEN $1 AND $2 ORDER BY bucket FOR UPDATE)"
            ),
            &[&(first as i16), &(last as i16), &lease],
        )
        .await
        .map_err(query("fencing the range"))?;
    let want = u64::from(last - first) + 1;
    if fenced != want {
        return Err(MoveError::OwnershipChanged {
            first,
            last,
            detail: format!("the source owns {fenced} of its {want} buckets"),
        });
    }
    Ok(())
}

/// Lift the fence (a move that goes back to catching up).
pub async fn unfence(source: &Client, first: u16, last: u16) -> Result<(), MoveError> {
    source
        .execute(
            "UPDATE paytool_buckets SET fenced_until_ms = NULL WHERE bucket BETWEEN $1 AND $2",
            &[&(first as i16), &(last as i16)],
        )
        .await
        .map_err(query("lifting the fence"))?;
    Ok(())
}

/// Write a mark in the range on the source and wait (at most `within`) until the target
/// has it: replication applies in commit order, so every change committed on the source
/// before the mark is then on the target too. How long it took, or `None` past `within`.
pub async fn mark_and_wait(
    source: &Client,
    target: &Client,
    first: u16,
    within: Duration,
) -> Result<Option<Duration>, MoveError> {
    let token = crate::secrets::random_hex(8);
    let started = Instant::now();
    source
        .execute(
            "INSERT INTO paytool_move_marks (bucket, token) VALUES ($1, $2)",
            &[&(first as i16), &token],
        )
        .await
        .map_err(query("writing a catch-up mark"))?;
    loop {
        let arrived = target
            .query_opt(
                "SELECT 1 FROM paytool_move_marks WHERE bucket = $1 AND token = $2",
                &[&(first as i16), &token],
            )
            .await
            .map_err(query("waiting for a catch-up mark"))?
            .is_some();
        if arrived {
            return Ok(Some(started.elapsed()));
        }
        if started.elapsed() > within {
            return Ok(None);
        }
        tokio::time::sleep(MARK_POLL).await;
    }
}
