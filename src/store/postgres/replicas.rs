//! Read replicas of a shard: hot standbys that a merchant's reads may go to, but only
//! once they have replayed that merchant's last write made through this instance
//! (read-your-writes), and only while their replay lag is within `replica_max_lag`.
//!
//! Why an LSN per merchant: the writer learns the primary's WAL position after each
//! commit (`pg_current_wal_lsn()`, one more statement a batch, only on shards with
//! replicas) and records it for the batch's merchants before it answers them; a replica
//! whose replay position is at or past it holds every write this instance acknowledged to
//! that merchant. A shard-wide position would send a merchant's reads to the primary
//! whenever anyone wrote, which under load is always. Another instance's writes are not
//! in the map: a read that finds nothing on a replica is read again on the primary (a
//! payment another instance just created is never answered 404), and anything else from
//! a replica is at most `replica_max_lag` old.

use crate::secrets::DbUrl;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How often each replica's replay position and lag are read.
pub const REPLICA_POLL: Duration = Duration::from_millis(100);
/// Merchants whose last write position is kept; past it the map is cleared and its
/// highest position becomes the floor every merchant must wait for (safe, and short).
pub const WRITTEN_MAX: usize = 100_000;

/// A WAL position (`pg_lsn`, "16/B374D848") as a number; None when it is not one.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Each merchant's last write position on one shard, as this instance committed it.
#[derive(Default)]
pub struct Written {
    inner: Mutex<WrittenInner>,
    floor: AtomicU64,
}

#[derive(Default)]
struct WrittenInner {
    map: HashMap<String, u64>,
    /// Merchants whose last commit's position could not be read: `UNKNOWN` in the map
    /// (no replica serves them) until the next position read, which is past it.
    pending: Vec<String>,
}

/// A position no replica reaches.
const UNKNOWN: u64 = u64::MAX;

impl Written {
    /// `merchant` committed a write at or before `lsn`.
    pub fn record(&self, merchant: &str, lsn: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let WrittenInner { map, pending } = &mut *inner;
        // A position read now is past every commit before it, the unknown ones too.
        for m in pending.drain(..) {
            if let Some(at) = map.get_mut(&m).filter(|at| **at == UNKNOWN) {
                *at = lsn;
            }
        }
        if map.len() >= WRITTEN_MAX && !map.contains_key(merchant) {
            let highest = map.values().copied().max().unwrap_or(0).max(lsn);
            self.floor.fetch_max(highest, Ordering::AcqRel);
            map.clear();
        }
        let at = map.entry(merchant.to_string()).or_insert(0);
        *at = (*at).max(lsn);
    }

    /// `merchant` committed a write whose position could not be read: its reads stay on
    /// the primary until the next position is read.
    pub fn record_unknown(&self, merchant: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.map.insert(merchant.to_string(), UNKNOWN);
        if inner.pending.len() < WRITTEN_MAX {
            inner.pending.push(merchant.to_string());
        }
    }

    /// The position a replica must have replayed before it may answer for `merchant`.
    pub fn needed(&self, merchant: &str) -> u64 {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let own = inner.map.get(merchant).copied().unwrap_or(0);
        own.max(self.floor.load(Ordering::Acquire))
    }
}

/// One read replica and what its last poll found.
pub struct Replica {
    pub url: DbUrl,
    pub pool: deadpool_postgres::Pool,
    /// Its replay position at the last poll: a lower bound of where it is now.
    replayed: AtomicU64,
    /// Its lag was within the bound at the last poll (and the poll answered).
    usable: AtomicBool,
}

impl Replica {
    pub fn new(url: DbUrl, pool: deadpool_postgres::Pool) -> Replica {
        Replica {
            url,
            pool,
            replayed: AtomicU64::new(0),
            usable: AtomicBool::new(false),
        }
    }

    /// May it answer a read that needs position `needed`?
    pub fn serves(&self, needed: u64) -> bool {
        self.usable.load(Ordering::Acquire) && self.replayed.load(Ordering::Acquire) >= needed
    }
}

/// Where a standby is: its replay position, and how long ago the primary made the last
/// commit it replayed (None before it has replayed one). None: not a standby.
async fn replay_state(
    c: &tokio_postgres::Client,
) -> Result<Option<(u64, Option<f64>)>, tokio_postgres::Error> {
    let row = c
        .query_one(
            "SELECT pg_last_wal_replay_lsn()::text, \
             EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp())::float8",
            &[],
        )
        .await?;
    Ok(row
        .get::<_, Option<&str>>(0)
        .and_then(parse_lsn)
        .map(|replayed| (replayed, row.get::<_, Option<f64>>(1))))
}

/// The primary's WAL position now.
async fn primary_position(c: &tokio_postgres::Client) -> Option<u64> {
    let row = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .ok()?;
    parse_lsn(row.get(0))
}

/// A standby may answer when it has replayed everything the primary had a moment ago
/// (an idle primary makes no commits, so the age of the last one says nothing), or its
/// last replayed commit is at most `max_lag` old.
fn within(primary_at: Option<u64>, replayed: u64, lag_s: Option<f64>, max_lag: Duration) -> bool {
    primary_at.is_some_and(|p| replayed >= p) || lag_s.is_some_and(|s| s <= max_lag.as_secs_f64())
}

/// Poll `replica` every `REPLICA_POLL` until it is dropped: its replay position, and
/// whether it is `within` `max_lag` of `primary` (whose position is read first).
pub async fn poll(replica: Weak<Replica>, primary: deadpool_postgres::Pool, max_lag: Duration) {
    loop {
        let Some(r) = replica.upgrade() else { return };
        let primary_at = async { primary_position(&*primary.get().await.ok()?).await }.await;
        let seen = async { replay_state(&*r.pool.get().await.ok()?).await.ok()? }.await;
        match seen {
            Some((replayed, lag_s)) => {
                r.replayed.fetch_max(replayed, Ordering::AcqRel);
                r.usable.store(
                    within(primary_at, replayed, lag_s, max_lag),
                    Ordering::Release,
                );
            }
            None => r.usable.store(false, Ordering::Release),
        }
        drop(r);
        tokio::time::sleep(REPLICA_POLL).await;
    }
}

/// A replica a one-off whole-table read may use instead of its primary.
pub struct FreshReplica {
    pub client: tokio_postgres::Client,
    /// Its URL, password hidden.
    pub url: String,
    /// How far behind the primary it was when picked: 0 when caught up.
    pub lag_ms: f64,
}

/// For a one-off reader (`shard status`'s counts, `cache seed`): the first of `replicas`
/// that answers and is `within` `max_lag` of `primary`; None when none is, and the read
/// goes to the primary. Checked once, at the start: the read itself may then run past
/// the bound by its own length, as a read on the primary sees a snapshot as old.
pub async fn fresh_replica(
    shard: &str,
    replicas: &[DbUrl],
    primary: &tokio_postgres::Client,
    max_lag: Duration,
) -> Option<FreshReplica> {
    if max_lag.is_zero() {
        return None;
    }
    for url in replicas {
        let Ok(client) = super::writer::connect(url, shard).await else {
            continue;
        };
        let primary_at = primary_position(primary).await;
        let Ok(Some((replayed, lag_s))) = replay_state(&client).await else {
            continue;
        };
        if within(primary_at, replayed, lag_s, max_lag) {
            let caught_up = primary_at.is_some_and(|p| replayed >= p);
            return Some(FreshReplica {
                client,
                url: url.redacted(),
                lag_ms: if caught_up {
                    0.0
                } else {
                    lag_s.unwrap_or(0.0) * 1000.0
                },
            });
        }
    }
    None
}

/// The first of `replicas` that may answer a read needing `needed`.
pub fn pick(replicas: &[Arc<Replica>], needed: u64) -> Option<&Arc<Replica>> {
    replicas.iter().find(|r| r.serves(needed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_as_postgres_orders_them() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert!(parse_lsn("1/FFFFFFFF") < parse_lsn("2/0"));
        assert_eq!(parse_lsn("x/1"), None);
        assert_eq!(parse_lsn("12"), None);
    }

    #[test]
    fn a_merchant_needs_its_own_last_write_and_the_floor_after_a_clear() {
        let w = Written::default();
        w.record("mer_a", 10);
        w.record("mer_a", 7);
        assert_eq!(w.needed("mer_a"), 10, "positions only go forward");
        assert_eq!(w.needed("mer_b"), 0);
        // mer_a and these fill the map.
        for i in 1..WRITTEN_MAX {
            w.record(&format!("mer_{i}"), 20);
        }
        assert_eq!(w.needed("mer_a"), 10);
        // Full: one more merchant clears the map and raises the floor to its highest.
        w.record("mer_new", 30);
        assert_eq!(w.needed("mer_a"), 30);
        assert_eq!(w.needed("mer_unknown"), 30);
    }

    #[test]
    fn a_write_whose_position_was_not_read_waits_for_the_next_one() {
        let w = Written::default();
        w.record("mer_a", 10);
        w.record_unknown("mer_a");
        assert_eq!(
            w.needed("mer_a"),
            u64::MAX,
            "no replica serves it meanwhile"
        );
        w.record("mer_b", 40);
        assert_eq!(w.needed("mer_a"), 40, "settled by the next position read");
        assert_eq!(w.needed("mer_b"), 40);
    }
}
