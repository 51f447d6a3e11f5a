//! The copy-and-catch-up step of moving buckets between shards (`paytool shard move`, not
//! built yet), on PostgreSQL's own logical replication: a publication on the source with
//! a row filter on the bucket range, a subscription on the target that copies the rows
//! and then streams every change made to them. The filter's column is in every merchant
//! table's replica identity (`bucket` leads each primary key), so UPDATEs and DELETEs on
//! the source keep working while the publication exists (../shared/NOTES.md).
//!
//! And the check that both sides agree: per table, a row count and a checksum of the
//! rows in key order.

use super::layout_ops::{MERCHANT_TABLE_KEYS, MERCHANT_TABLES};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// How often the copy's progress is polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    #[error("{what}: {}", super::rows::pg_message(source))]
    Query {
        what: String,
        source: tokio_postgres::Error,
    },
    #[error("the initial copy of {name} did not finish within {waited:?}")]
    CopyTimeout { name: String, waited: Duration },
}

fn query(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> ReplicateError {
    let what = what.into();
    move |source| ReplicateError::Query { what, source }
}

/// The publication and subscription of one range share this name.
pub fn stream_name(first: u16, last: u16) -> String {
    format!("paytool_move_{first}_{last}")
}

/// Start copying buckets `first..=last` from `source` (reachable by the target server at
/// `source_conninfo`) to `target`, and keep streaming their changes. Idempotent: an
/// existing publication or subscription of the same name is kept.
pub async fn start(
    source: &Client,
    target: &Client,
    source_conninfo: &str,
    first: u16,
    last: u16,
) -> Result<(), ReplicateError> {
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
        let tables: Vec<String> = MERCHANT_TABLES
            .iter()
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
    let subscribed: bool = target
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)",
            &[&name],
        )
        .await
        .map_err(query("looking up the subscription"))?
        .get(0);
    if !subscribed {
        // CREATE SUBSCRIPTION takes no parameters: the conninfo is quoted as a literal.
        let conninfo = source_conninfo.replace('\'', "''");
        target
            .batch_execute(&format!(
                "CREATE SUBSCRIPTION {name} CONNECTION '{conninfo}' PUBLICATION {name} \
                 WITH (copy_data = true)"
            ))
            .await
            .map_err(query("creating the subscription"))?;
    }
    Ok(())
}

/// Wait until the initial copy of every table has finished (each table's sync state is
/// `r`, ready: from then on changes stream), at most `timeout`.
pub async fn wait_copied(
    target: &Client,
    first: u16,
    last: u16,
    timeout: Duration,
) -> Result<(), ReplicateError> {
    let name = stream_name(first, last);
    let started = Instant::now();
    loop {
        let row = target
            .query_one(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE r.srsubstate <> 'r') \
                 FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid \
                 WHERE s.subname = $1",
                &[&name],
            )
            .await
            .map_err(query("reading the copy's progress"))?;
        let (tables, not_ready): (i64, i64) = (row.get(0), row.get(1));
        if tables == MERCHANT_TABLES.len() as i64 && not_ready == 0 {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(ReplicateError::CopyTimeout {
                name,
                waited: timeout,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Stop streaming: drop the subscription on the target and the publication on the
/// source (each only if it exists).
pub async fn stop(
    source: &Client,
    target: &Client,
    first: u16,
    last: u16,
) -> Result<(), ReplicateError> {
    let name = stream_name(first, last);
    target
        .batch_execute(&format!("DROP SUBSCRIPTION IF EXISTS {name}"))
        .await
        .map_err(query("dropping the subscription"))?;
    source
        .batch_execute(&format!("DROP PUBLICATION IF EXISTS {name}"))
        .await
        .map_err(query("dropping the publication"))?;
    Ok(())
}

/// Per merchant table: (table, rows, checksum) of buckets `first..=last`, the checksum
/// an md5 over every row's text in primary-key order, so two shards holding the same
/// rows agree and any difference in any column shows.
pub async fn checksums(
    client: &Client,
    first: u16,
    last: u16,
) -> Result<Vec<(&'static str, i64, String)>, ReplicateError> {
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
        out.push((table, row.get(0), row.get(1)));
    }
    Ok(out)
}
