//! Deleting a bucket range's rows from a shard that does not own it, in bounded
//! batches: the source's copy after a switch, or a half-made copy on a target before a
//! copy starts again. A shard that owns any bucket of the range is refused: this never
//! deletes data a shard serves.

use super::replicate::MARKS;
use super::{MoveError, query};
use crate::store::postgres::layout_ops::MERCHANT_TABLES;
use tokio_postgres::Client;

/// Rows deleted per statement: each is its own short transaction, so the shard's other
/// work never waits long behind it, and WAL grows in small steps.
pub const CLEAN_BATCH_ROWS: i64 = 5_000;

/// Delete every replicated table's rows in `first..=last`; `on_batch` hears the running
/// total. Returns the merchant rows deleted (the move's own marks go too, uncounted).
pub async fn delete_range(
    c: &Client,
    shard: &str,
    first: u16,
    last: u16,
    on_batch: &(dyn Fn(u64) + Sync),
) -> Result<u64, MoveError> {
    let (a, b) = (first as i16, last as i16);
    let owned: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM paytool_buckets WHERE bucket BETWEEN $1 AND $2",
            &[&a, &b],
        )
        .await
        .map_err(query(format!(
            "shard {shard}: checking ownership before deleting"
        )))?
        .get(0);
    if owned > 0 {
        return Err(MoveError::OwnershipChanged {
            first,
            last,
            detail: format!(
                "shard {shard} owns {owned} of the buckets whose copy was to be deleted; nothing deleted"
            ),
        });
    }
    let mut total = 0u64;
    for table in MERCHANT_TABLES.into_iter().chain([MARKS]) {
        let sql = format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} \
             WHERE bucket BETWEEN $1 AND $2 LIMIT $3))"
        );
        loop {
            let n = c
                .execute(&sql, &[&a, &b, &CLEAN_BATCH_ROWS])
                .await
                .map_err(query(format!(
                    "shard {shard}: deleting {table} rows of buckets {first}-{last}"
                )))?;
            if table != MARKS {
                total += n;
                on_batch(total);
            }
            if (n as i64) < CLEAN_BATCH_ROWS {
                break;
            }
        }
    }
    Ok(total)
}
