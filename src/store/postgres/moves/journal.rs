//! The move journal (`paytool_moves`, on the shard that gives the buckets away): one row
//! per bucket range moved, its phase written before the phase's work starts, so a move
//! that is killed or loses a shard is resumed from it by running `shard move` again.

use super::{MoveError, query};
use crate::ids::now_ms;
use serde::Serialize;
use tokio_postgres::Client;
use tokio_postgres::GenericClient;

/// Where a range's move stands. Every phase before `Switched` can be run again from the
/// start of `Copying` (the source still owns the range; the copy is only a copy);
/// `Switched` is committed with the switch itself, after which only the source's copy
/// is left to delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the ranges before it (a move takes its ranges one at a time).
    Queued,
    /// The target copies the range's rows (PostgreSQL's table sync).
    Copying,
    /// Changes made since stream to the target; waiting for them to keep up.
    CatchingUp,
    /// A first short fence: both sides' snapshots at one instant, then compared.
    Verifying,
    /// The second short fence, up to the switch of ownership.
    Switching,
    /// The target owns the range; the stream is stopped and the copy re-checked.
    Switched,
    /// The source's copy is deleted in bounded batches.
    Cleaning,
    Done,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Copying => "copying",
            Phase::CatchingUp => "catching_up",
            Phase::Verifying => "verifying",
            Phase::Switching => "switching",
            Phase::Switched => "switched",
            Phase::Cleaning => "cleaning",
            Phase::Done => "done",
        }
    }

    pub fn parse(text: &str) -> Option<Phase> {
        [
            Phase::Queued,
            Phase::Copying,
            Phase::CatchingUp,
            Phase::Verifying,
            Phase::Switching,
            Phase::Switched,
            Phase::Cleaning,
            Phase::Done,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }

    /// Whether the target owns the range from this phase on.
    pub fn switched(self) -> bool {
        self >= Phase::Switched
    }
}

/// One journal row.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub id: String,
    pub first: u16,
    pub last: u16,
    pub source: String,
    pub target: String,
    pub layout_digest: String,
    pub phase: Phase,
    /// Rows in the range on the source when the move started.
    pub rows: i64,
    pub fence_ms_max: Option<i64>,
    pub error: Option<String>,
    pub started_ms: i64,
    pub updated_ms: i64,
}

const COLUMNS: &str = "id, first, last, source, target, layout_digest, phase, rows, \
     fence_ms_max, error, started_ms, updated_ms";

/// The moves on this shard that have not finished.
pub async fn unfinished(c: &Client) -> Result<Vec<Entry>, MoveError> {
    let rows = c
        .query(
            &format!("SELECT {COLUMNS} FROM paytool_moves WHERE phase <> 'done' ORDER BY first"),
            &[],
        )
        .await
        .map_err(query("reading the move journal"))?;
    rows.iter()
        .map(|r| {
            let phase: String = r.get(6);
            Ok(Entry {
                id: r.get(0),
                first: r.get::<_, i16>(1) as u16,
                last: r.get::<_, i16>(2) as u16,
                source: r.get(3),
                target: r.get(4),
                layout_digest: r.get(5),
                phase: Phase::parse(&phase).ok_or_else(|| {
                    MoveError::Journal(format!(
                        "move {}: unknown phase {phase:?}",
                        r.get::<_, String>(0)
                    ))
                })?,
                rows: r.get(7),
                fence_ms_max: r.get(8),
                error: r.get(9),
                started_ms: r.get(10),
                updated_ms: r.get(11),
            })
        })
        .collect()
}

pub async fn insert(c: &Client, e: &Entry) -> Result<(), MoveError> {
    c.execute(
        &format!(
            "INSERT INTO paytool_moves ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ),
        &[
            &e.id,
            &(e.first as i16),
            &(e.last as i16),
            &e.source,
            &e.target,
            &e.layout_digest,
            &e.phase.as_str(),
            &e.rows,
            &e.fence_ms_max,
            &e.error,
            &e.started_ms,
            &e.updated_ms,
        ],
    )
    .await
    .map_err(query("writing the move journal"))?;
    Ok(())
}

/// Record `e`'s phase, longest fence and last error (on `c`, which may be a transaction:
/// the switch commits its phase with the ownership change).
pub async fn update(c: &impl GenericClient, e: &mut Entry) -> Result<(), MoveError> {
    e.updated_ms = now_ms();
    c.execute(
        "UPDATE paytool_moves SET phase = $2, fence_ms_max = $3, error = $4, updated_ms = $5 \
         WHERE id = $1",
        &[
            &e.id,
            &e.phase.as_str(),
            &e.fence_ms_max,
            &e.error,
            &e.updated_ms,
        ],
    )
    .await
    .map_err(query("updating the move journal"))?;
    Ok(())
}
