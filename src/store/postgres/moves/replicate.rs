//! The copy-and-catch-up step of a move, on PostgreSQL's own logical replication: a
//! publication on the source with a row filter on the bucket range, a subscription on the
//! target that copies the rows and then streams every change made to them. The filter's
//! column is in every merchant table's replica identity (`bucket` leads each primary
//! key), so UPDATEs and DELETEs on the source keep working while the publication exists
//! (../shared/NOTES.md).
//!
//! The replication slot is made by hand on the source before the subscription (which is
//! told not to make one): made by CREATE SUBSCRIPTION, it would wait for every open
//! transaction on its cluster, its own included, and hang when source and target are
//! databases of one server (PostgreSQL's documentation says so).
//!
//! And the check that both sides agree: per table, a row count and a checksum of the
//! rows in key order.

use super::{MoveError, query};
use crate::store::postgres::layout_ops::{MERCHANT_TABLE_KEYS, MERCHANT_TABLES};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// How often the copy's progress is polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long dropping a slot waits for the walsender that used it to let go.
pub const SLOT_RELEASE_MAX: Duration = Duration::from_secs(10);
/// The table of marks a fence waits for, replicated with the merchant tables.
pub const MARKS: &str = "paytool_move_marks";

/// Tables a move replicates: the merchant tables and the marks.
pub fn replicated() -> impl Iterator<Item = &'static str> {
    MERCHANT_TABLES.into_iter().chain([MARKS])
}

/// The publication, its slot and the subscription of one range share this name.
pub fn stream_name(first: u16, last: u16) -> String {
    format!("paytool_move_{first}_{last}")
}

/// Whether the target already subscribes to the range (a move resumed mid-copy).
pub async fn subscribed(target: &Client, first: u16, last: u16) -> Result<bool, MoveError> {
    Ok(target
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)",
            &[&stream_name(first, last)],
        )
        .await
        .map_err(query("looking up the subscription"))?
        .get(0))
}

/// Start copying buckets `first..=last` from `source` (reachable by the target server at
/// `source_conninfo`) to `target`, and keep streaming their changes. Idempotent: an
/// existing publication, slot or subscription of the same name is kept. The caller
/// empties the range on the target before a first start.
pub async fn start(
    source: &Client,
    target: &Client,
    source_conninfo: &str,
    first: u16,
    last: u16,
) -> Result<(), MoveError> {
    let name = stream_name(first, last);
    let exists: bool = source
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
            &[&name],
        )
        .await
        .map_err(query("looking up the publication"))?
        .get(0);
    if !exists {
        let tables: Vec<String> = replicated()
            .map(|t| format!("{t} WHERE (bucket BETWEEN {first} AND {last})"))
            .collect();
        source
            .batch_execute(&format!(
                "CREATE PUBLICATION {name} FOR TABLE {}",
                tables.join(", ")
            ))
            .await
            .map_err(query("creating the publication"))?;
    }
    if subscribed(target, first, last).await? {
        return Ok(());
    }
    let slot: bool = source
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            &[&name],
        )
        .await
        .map_err(query("looking up the replication slot"))?
        .get(0);
    if !slot {
        source
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&name],
            )
            .await
            .map_err(query("creating the replication slot"))?;
    }
    // CREATE SUBSCRIPTION takes no parameters: the conninfo is quoted as a literal.
    let conninfo = source_conninfo.replace('\'', "''");
    target
        .batch_execute(&format!(
            "CREATE SUBSCRIPTION {name} CONNECTION '{conninfo}' PUBLICATION {name} \
             WITH (copy_data = true, create_slot = false, slot_name = '{name}')"
        ))
        .await
        .map_err(query("creating the subscription"))?;
    Ok(())
}

/// The initial copy's progress: tables done, and rows copied so far by the tables still
/// copying (PostgreSQL's COPY progress on the target).
pub struct CopyProgress {
    pub tables_done: Vec<String>,
    pub rows_in_flight: u64,
    /// Errors the subscription's workers hit so far (a copy or apply that keeps failing
    /// is retried by PostgreSQL for ever: the caller gives up on its own bound).
    pub errors: i64,
}

impl CopyProgress {
    pub fn done(&self) -> bool {
        self.tables_done.len() == MERCHANT_TABLES.len() + 1
    }
}

pub async fn copy_progress(
    target: &Client,
    first: u16,
    last: u16,
) -> Result<CopyProgress, MoveError> {
    let name = stream_name(first, last);
    let tables_done = target
        .query(
            "SELECT r.srrelid::regclass::text FROM pg_subscription_rel r \
             JOIN pg_subscription s ON s.oid = r.srsubid \
             WHERE s.subname = $1 AND r.srsubstate IN ('r', 's')",
            &[&name],
        )
        .await
        .map_err(query("reading the copy's progress"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let rows_in_flight: i64 = target
        .query_one(
            "SELECT COALESCE(SUM(tuples_processed), 0)::int8 FROM pg_stat_progress_copy \
             WHERE datname = current_database() AND command = 'COPY FROM'",
            &[],
        )
        .await
        .map_err(query("reading COPY progress"))?
        .get(0);
    let errors: i64 = target
        .query_one(
            "SELECT COALESCE(SUM(apply_error_count + sync_error_count), 0)::int8 \
             FROM pg_stat_subscription_stats WHERE subname = $1",
            &[&name],
        )
        .await
        .map_err(query("reading the subscription's errors"))?
        .get(0);
    Ok(CopyProgress {
        tables_done,
        rows_in_flight: rows_in_flight.max(0) as u64,
        errors,
    })
}

/// Bytes of WAL the source has written that the target has not yet confirmed.
pub async fn lag_bytes(source: &Client, first: u16, last: u16) -> Result<i64, MoveError> {
    Ok(source
        .query_opt(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8 \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&stream_name(first, last)],
        )
        .await
        .map_err(query("reading the replication lag"))?
        .and_then(|r| r.get::<_, Option<i64>>(0))
        .unwrap_or(0))
}

/// Stop streaming and remove every trace of it: the subscription on the target, then
/// its slot (and any slot a table copy left) and the publication on the source. Each
/// only if it exists.
pub async fn stop(
    source: &Client,
    target: &Client,
    first: u16,
    last: u16,
) -> Result<(), MoveError> {
    let name = stream_name(first, last);
    let oid: Option<u32> = target
        .query_opt(
            "SELECT oid FROM pg_subscription WHERE subname = $1",
            &[&name],
        )
        .await
        .map_err(query("looking up the subscription"))?
        .map(|r| r.get(0));
    if oid.is_some() {
        // Detached from its slot first, so dropping it never connects to the source (which
        // may be this very server).
        target
            .batch_execute(&format!(
                "ALTER SUBSCRIPTION {name} DISABLE; \
                 ALTER SUBSCRIPTION {name} SET (slot_name = NONE); \
                 DROP SUBSCRIPTION {name}"
            ))
            .await
            .map_err(query("dropping the subscription"))?;
    }
    let sync_slots = oid.map(|o| format!("pg_{o}_sync_%"));
    let started = Instant::now();
    loop {
        // A slot stays active until its walsender notices the subscription went away.
        let left: i64 = source
            .query_one(
                "SELECT COUNT(*) FROM pg_replication_slots \
                 WHERE (slot_name = $1 OR slot_name LIKE $2) AND active",
                &[&name, &sync_slots.as_deref().unwrap_or("")],
            )
            .await
            .map_err(query("looking up replication slots"))?
            .get(0);
        if left == 0 || started.elapsed() > SLOT_RELEASE_MAX {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    source
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE (slot_name = $1 OR slot_name LIKE $2) AND NOT active",
            &[&name, &sync_slots.as_deref().unwrap_or("")],
        )
        .await
        .map_err(query("dropping the replication slot"))?;
    source
        .batch_execute(&format!("DROP PUBLICATION IF EXISTS {name}"))
        .await
        .map_err(query("dropping the publication"))?;
    Ok(())
}

/// One merchant table's rows in a bucket range: how many, and an md5 over every row's
/// text in primary-key order, so two shards holding the same rows agree and any
/// difference in any column shows.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TableSum {
    pub table: &'static str,
    pub rows: i64,
    pub md5: String,
}

pub async fn checksums(client: &Client, first: u16, last: u16) -> Result<Vec<TableSum>, MoveError> {
    let mut out = Vec::with_capacity(MERCHANT_TABLES.len());
    for (table, key) in MERCHANT_TABLES.into_iter().zip(MERCHANT_TABLE_KEYS) {
        let row = client
            .query_one(
                &format!(
                    "SELECT COUNT(*), COALESCE(md5(string_agg(t::text, '|' ORDER BY {key})), '') \
                     FROM {table} t WHERE bucket BETWEEN $1 AND $2"
                ),
                &[&(first as i16), &(last as i16)],
            )
            .await
            .map_err(query(format!("checksumming {table}")))?;
        out.push(TableSum {
            table,
            rows: row.get(0),
            md5: row.get(1),
        });
    }
    Ok(out)
}
