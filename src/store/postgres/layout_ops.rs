//! What `paytool shard plan`, `apply` and `status` do to a layout's shards: read each
//! shard's state, diff it against the layout, migrate and record. No data moves here:
//! a bucket that holds data changes owner only by `paytool shard move` (`moves`).

use super::schema::{self, Migration};
use super::writer::connect;
use crate::ids::{BUCKETS, now_ms};
use crate::secrets::random_hex;
use crate::store::StoreError;
use crate::store::layout::{Layout, Shard};
use serde::Serialize;
use std::time::Duration;
use tokio_postgres::Client;

/// Tables holding merchant data, each with `bucket` first in its key.
pub const MERCHANT_TABLES: [&str; 7] = [
    "merchants",
    "payments",
    "transfers",
    "postings",
    "refunds",
    "idempotency",
    "balances",
];

/// Each merchant table's primary key, in `MERCHANT_TABLES`' order: the order a checksum
/// walks its rows.
pub const MERCHANT_TABLE_KEYS: [&str; 7] = [
    "bucket, id",
    "bucket, merchant_id, id",
    "bucket, payment_id, seq",
    "bucket, merchant_id, payment_id, seq",
    "bucket, merchant_id, id",
    "bucket, merchant_id, key",
    "bucket, merchant_id, currency, account",
];
/// An arbitrary constant: the advisory lock a `shard move` or `shard apply` holds on every
/// shard while it changes bucket owners, so two never interleave.
pub(super) const OWNERS_LOCK: i64 = 0x0070_6179_6d6f_7665;

/// Take `OWNERS_LOCK` on every connected shard for this session, or name the shard where
/// another command holds it.
pub(super) async fn lock_owners(all: &Connected) -> Result<(), LayoutOpError> {
    for (i, c) in all.clients.iter().enumerate() {
        let shard = &all.shards[i].name;
        let locked: bool = c
            .query_one("SELECT pg_try_advisory_lock($1)", &[&OWNERS_LOCK])
            .await
            .map_err(|source| LayoutOpError::Query {
                shard: shard.clone(),
                source,
            })?
            .get(0);
        if !locked {
            return Err(LayoutOpError::Busy {
                shard: shard.clone(),
            });
        }
    }
    Ok(())
}

/// The window `status` measures writes over.
pub const WRITE_RATE_WINDOW: Duration = Duration::from_secs(1);
const FINGERPRINT_KEY: &str = "fingerprint_key";

#[derive(Debug, thiserror::Error)]
pub enum LayoutOpError {
    #[error("{} shard(s) unreachable, nothing changed: {}", .0.len(), .0.join("; "))]
    Unreachable(Vec<String>),
    #[error(
        "buckets {first}-{last} hold {rows} rows on shard {from} and the layout gives them to {to}: moving data is `paytool shard move --layout` with this layout; nothing changed"
    )]
    HoldsData {
        first: u16,
        last: u16,
        from: String,
        to: String,
        rows: u64,
    },
    #[error(
        "another `paytool shard move` or `shard apply` is changing bucket owners on shard {shard}: one at a time"
    )]
    Busy { shard: String },
    #[error(
        "shards disagree on the fingerprint key ({a} and {b}): they belong to different deployments"
    )]
    SecretsDisagree { a: String, b: String },
    #[error("shard {shard}: {}", super::rows::pg_message(source))]
    Query {
        shard: String,
        source: tokio_postgres::Error,
    },
}

/// What was recorded on a shard by the last `apply`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Recorded {
    pub name: String,
    pub shard: String,
    pub version: i64,
    pub digest: String,
}

/// One shard as it is now.
#[derive(Debug, Serialize)]
pub struct ShardState {
    pub name: String,
    /// The URL without its password.
    pub url: String,
    pub migrations_applied: Vec<i32>,
    pub layout: Option<Recorded>,
    /// The buckets it owns, as inclusive ranges.
    pub owns: Vec<(u16, u16)>,
}

/// A bucket range whose owner the layout changes.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct OwnerChange {
    pub first: u16,
    pub last: u16,
    pub from: Option<String>,
    pub to: String,
    /// Rows and bytes of merchant data in the range on its current owner.
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct ShardPlan {
    pub name: String,
    pub url: String,
    pub migrations: Vec<String>,
    /// Whether the layout's version and digest would be (re)recorded.
    pub record_layout: bool,
}

#[derive(Debug, Serialize)]
pub struct Plan {
    pub layout: String,
    pub version: u64,
    pub digest: String,
    pub shards: Vec<ShardPlan>,
    pub owner_changes: Vec<OwnerChange>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.owner_changes.is_empty()
            && self
                .shards
                .iter()
                .all(|s| s.migrations.is_empty() && !s.record_layout)
    }
}

/// Connections to a layout's shards, then to `extra` shards: ones an earlier layout
/// named that this one drops (they may still own buckets, to be moved off them).
pub(super) struct Connected {
    pub clients: Vec<Client>,
    pub shards: Vec<Shard>,
}

impl Connected {
    pub fn index(&self, name: &str) -> Option<usize> {
        self.shards.iter().position(|s| s.name == name)
    }
}

/// Connect to every shard, or refuse naming each that cannot be reached.
pub(super) async fn connect_all(
    layout: &Layout,
    extra: &[Shard],
) -> Result<Connected, LayoutOpError> {
    let mut clients = Vec::new();
    let mut down = Vec::new();
    let shards: Vec<Shard> = layout
        .shards
        .iter()
        .chain(
            extra
                .iter()
                .filter(|e| layout.shard_index(&e.name).is_none()),
        )
        .cloned()
        .collect();
    for s in &shards {
        match connect(&s.url, &s.name).await {
            Ok(c) => clients.push(c),
            Err(StoreError::ShardDown { reason, .. }) => {
                down.push(format!("{} ({}): {reason}", s.name, s.url))
            }
            Err(e) => down.push(format!("{} ({}): {e}", s.name, s.url)),
        }
    }
    if down.is_empty() {
        Ok(Connected { clients, shards })
    } else {
        Err(LayoutOpError::Unreachable(down))
    }
}

fn ranges(buckets: &[u16]) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for &b in buckets {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == b => *last = b,
            _ => out.push((b, b)),
        }
    }
    out
}

async fn state(shard: &Shard, c: &Client) -> Result<ShardState, LayoutOpError> {
    let q = |source| LayoutOpError::Query {
        shard: shard.name.clone(),
        source,
    };
    let migrations_applied = schema::applied(c).await.map_err(q)?;
    let (layout_row, owns) = if migrations_applied.is_empty() {
        (None, Vec::new())
    } else {
        let row = c
            .query_opt(
                "SELECT name, shard, version, digest FROM paytool_layout",
                &[],
            )
            .await
            .map_err(q)?
            .map(|r| Recorded {
                name: r.get(0),
                shard: r.get(1),
                version: r.get(2),
                digest: r.get(3),
            });
        let buckets: Vec<u16> = c
            .query("SELECT bucket FROM paytool_buckets ORDER BY bucket", &[])
            .await
            .map_err(q)?
            .iter()
            .map(|r| r.get::<_, i16>(0) as u16)
            .collect();
        (row, ranges(&buckets))
    };
    Ok(ShardState {
        name: shard.name.clone(),
        url: shard.url.redacted(),
        migrations_applied,
        layout: layout_row,
        owns,
    })
}

/// Rows and bytes of merchant data in buckets `first..=last` on a shard.
pub(super) async fn data_in(
    c: &Client,
    first: u16,
    last: u16,
) -> Result<(u64, u64), tokio_postgres::Error> {
    let mut rows = 0u64;
    let mut bytes = 0u64;
    for table in MERCHANT_TABLES {
        let r = c
            .query_one(
                &super::sql::in_buckets(table),
                &[&(first as i16), &(last as i16)],
            )
            .await?;
        rows += r.get::<_, i64>(0) as u64;
        bytes += r.get::<_, i64>(1) as u64;
    }
    Ok((rows, bytes))
}

/// Every shard's state; refuses if any is unreachable.
pub async fn inspect(layout: &Layout) -> Result<Vec<ShardState>, LayoutOpError> {
    let all = connect_all(layout, &[]).await?;
    let mut out = Vec::new();
    for (i, c) in all.clients.iter().enumerate() {
        out.push(state(&all.shards[i], c).await?);
    }
    Ok(out)
}

/// What `apply` would do. `extra`: shards an earlier layout named that this one drops.
pub async fn plan(layout: &Layout, extra: &[Shard]) -> Result<Plan, LayoutOpError> {
    let all = connect_all(layout, extra).await?;
    plan_connected(layout, &all).await
}

pub(super) async fn plan_connected(
    layout: &Layout,
    all: &Connected,
) -> Result<Plan, LayoutOpError> {
    let mut states = Vec::new();
    for (i, c) in all.clients.iter().enumerate() {
        states.push(state(&all.shards[i], c).await?);
    }
    // Who owns each bucket now, by the shards' own records.
    let mut now: Vec<Option<usize>> = vec![None; BUCKETS as usize];
    for (i, s) in states.iter().enumerate() {
        for &(a, b) in &s.owns {
            for bucket in a..=b {
                now[bucket as usize] = Some(i);
            }
        }
    }
    let mut owner_changes = Vec::new();
    let mut bucket = 0u16;
    while bucket < BUCKETS {
        let want = layout.owner(bucket);
        let have = now[bucket as usize];
        let mut last = bucket;
        while last + 1 < BUCKETS && layout.owner(last + 1) == want && now[last as usize + 1] == have
        {
            last += 1;
        }
        if have != Some(want) {
            let (rows, bytes) = match have {
                Some(from) => {
                    data_in(&all.clients[from], bucket, last)
                        .await
                        .map_err(|source| LayoutOpError::Query {
                            shard: all.shards[from].name.clone(),
                            source,
                        })?
                }
                None => (0, 0),
            };
            owner_changes.push(OwnerChange {
                first: bucket,
                last,
                from: have.map(|i| all.shards[i].name.clone()),
                to: layout.shards[want].name.clone(),
                rows,
                bytes,
            });
        }
        bucket = last + 1;
    }
    let shards = states
        .iter()
        .enumerate()
        .map(|(i, s)| ShardPlan {
            name: s.name.clone(),
            url: s.url.clone(),
            migrations: schema::pending(&s.migrations_applied)
                .iter()
                .map(|m: &&Migration| format!("{:03} {}", m.version, m.name))
                .collect(),
            record_layout: s.layout.as_ref().is_none_or(|r| {
                r.digest != layout.digest
                    || r.version != layout.version as i64
                    || r.shard != all.shards[i].name
                    || r.name != layout.name
            }),
        })
        .collect();
    Ok(Plan {
        layout: layout.name.clone(),
        version: layout.version,
        digest: layout.digest.clone(),
        shards,
        owner_changes,
    })
}

/// Migrate every shard, share the fingerprint key, give empty buckets to their layout
/// owner, record the layout. Refuses (changing nothing) when a shard is unreachable or a
/// bucket that holds data would change owner. Idempotent: a second apply plans nothing.
pub async fn apply(layout: &Layout, extra: &[Shard]) -> Result<Plan, LayoutOpError> {
    let mut all = connect_all(layout, extra).await?;
    lock_owners(&all).await?;
    let names: Vec<String> = all.shards.iter().map(|s| s.name.clone()).collect();
    for (i, c) in all.clients.iter_mut().enumerate() {
        schema::migrate(c)
            .await
            .map_err(|source| LayoutOpError::Query {
                shard: names[i].clone(),
                source,
            })?;
    }
    let plan = plan_connected(layout, &all).await?;
    if let Some(c) = plan.owner_changes.iter().find(|c| c.rows > 0) {
        return Err(LayoutOpError::HoldsData {
            first: c.first,
            last: c.last,
            from: c.from.clone().unwrap_or_default(),
            to: c.to.clone(),
            rows: c.rows,
        });
    }
    share_fingerprint_key(&all).await?;
    // Empty buckets: taken from their old owner first, then given to the new one. A
    // write for one of them in between is refused by both and retried by the API.
    for change in &plan.owner_changes {
        let (a, b) = (change.first as i16, change.last as i16);
        if let Some(from) = &change.from {
            let i = all.index(from).expect("a connected shard");
            all.clients[i]
                .execute(
                    "DELETE FROM paytool_buckets WHERE bucket BETWEEN $1 AND $2",
                    &[&a, &b],
                )
                .await
                .map_err(|source| LayoutOpError::Query {
                    shard: from.clone(),
                    source,
                })?;
        }
        let i = all.index(&change.to).expect("a connected shard");
        all.clients[i]
            .execute(
                "INSERT INTO paytool_buckets SELECT generate_series($1::int4, $2::int4)::int2 ON CONFLICT DO NOTHING",
                &[&(a as i32), &(b as i32)],
            )
            .await
            .map_err(|source| LayoutOpError::Query {
                shard: change.to.clone(),
                source,
            })?;
    }
    record_layout(layout, &all).await?;
    Ok(plan)
}

/// Record `layout` (version, digest and text) on every shard.
pub(super) async fn record_layout(layout: &Layout, all: &Connected) -> Result<(), LayoutOpError> {
    for (i, c) in all.clients.iter().enumerate() {
        let shard = &all.shards[i].name;
        c.execute(
            "INSERT INTO paytool_layout (one, name, shard, version, digest, applied_ms, text) \
             VALUES (true, $1, $2, $3, $4, $5, $6) ON CONFLICT (one) DO UPDATE SET name = $1, \
             shard = $2, version = $3, digest = $4, applied_ms = $5, text = $6",
            &[
                &layout.name,
                shard,
                &(layout.version as i64),
                &layout.digest,
                &now_ms(),
                &layout.text,
            ],
        )
        .await
        .map_err(|source| LayoutOpError::Query {
            shard: shard.clone(),
            source,
        })?;
    }
    Ok(())
}

pub(super) async fn share_fingerprint_key(all: &Connected) -> Result<(), LayoutOpError> {
    let mut found: Option<(String, String)> = None;
    for (i, c) in all.clients.iter().enumerate() {
        let shard = &all.shards[i].name;
        let row = c
            .query_opt(
                "SELECT value FROM paytool_secrets WHERE name = $1",
                &[&FINGERPRINT_KEY],
            )
            .await
            .map_err(|source| LayoutOpError::Query {
                shard: shard.clone(),
                source,
            })?;
        if let Some(r) = row {
            let value: String = r.get(0);
            match &found {
                Some((other, v)) if *v != value => {
                    return Err(LayoutOpError::SecretsDisagree {
                        a: other.clone(),
                        b: shard.clone(),
                    });
                }
                Some(_) => {}
                None => found = Some((shard.clone(), value)),
            }
        }
    }
    let value = found.map_or_else(|| random_hex(32), |(_, v)| v);
    for (i, c) in all.clients.iter().enumerate() {
        c.execute(
            "INSERT INTO paytool_secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&FINGERPRINT_KEY, &value],
        )
        .await
        .map_err(|source| LayoutOpError::Query {
            shard: all.shards[i].name.clone(),
            source,
        })?;
    }
    Ok(())
}

/// The layout texts the shards record (each distinct one once; an unreachable or
/// unmigrated shard is skipped): an earlier layout may name shards this one drops.
pub async fn recorded_texts(layout: &Layout) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in &layout.shards {
        let Ok(c) = connect(&s.url, &s.name).await else {
            continue;
        };
        if let Ok(Some(r)) = c.query_opt("SELECT text FROM paytool_layout", &[]).await {
            let text: String = r.get(0);
            if !text.is_empty() && !out.contains(&text) {
                out.push(text);
            }
        }
    }
    out
}

/// The fingerprint key every instance shares, as `apply` recorded it.
pub async fn fingerprint_key(c: &Client) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(c.query_opt(
        "SELECT value FROM paytool_secrets WHERE name = $1",
        &[&FINGERPRINT_KEY],
    )
    .await?
    .map(|r| r.get(0)))
}

/// Rows written to the shard's database so far, by PostgreSQL's statistics.
async fn written(c: &Client) -> Result<i64, tokio_postgres::Error> {
    c.query_one(
        "SELECT (tup_inserted + tup_updated + tup_deleted)::int8 FROM pg_stat_database \
         WHERE datname = current_database()",
        &[],
    )
    .await
    .map(|r| r.get::<_, i64>(0))
}

/// One shard's figures for `paytool shard status`.
#[derive(Debug, Serialize)]
pub struct ShardStatus {
    pub name: String,
    pub url: String,
    pub reachable: bool,
    /// Why not, when it is not.
    pub error: Option<String>,
    pub layout_version: Option<i64>,
    pub layout_matches: bool,
    pub buckets: u64,
    pub merchants: u64,
    pub payments: u64,
    pub size_bytes: u64,
    pub writes_per_s: f64,
    /// This shard's share of all payments.
    pub payments_share: f64,
    /// The standbys streaming from this shard's primary (PostgreSQL's physical
    /// replication; a move's logical subscriptions are not listed).
    pub replicas: Vec<ReplicaStatus>,
    /// A commit here waits for a standby (`synchronous_standby_names` names a connected
    /// one).
    pub synchronous: bool,
    /// Who answered the counts (buckets, merchants, payments): "primary", or the URL of
    /// one of the layout's replicas for the shard, picked only within the lag bound.
    pub counts_from: String,
    /// That replica's lag when it was picked (0: caught up).
    pub counts_lag_ms: Option<f64>,
}

/// One standby, as the primary sees it in `pg_stat_replication`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplicaStatus {
    /// Its `application_name` (what `synchronous_standby_names` lists).
    pub name: String,
    /// "streaming", "catchup", ...
    pub state: String,
    /// "sync", "potential", "quorum" or "async".
    pub sync_state: String,
    /// WAL written on the primary and not yet replayed on the standby.
    pub lag_bytes: u64,
    /// How long ago the last replayed commit was made on the primary (0 when idle).
    pub lag_ms: f64,
}

/// Physical standbys of the server `c` is connected to.
async fn replicas(c: &tokio_postgres::Client) -> Result<Vec<ReplicaStatus>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT COALESCE(application_name, ''), COALESCE(state, ''), COALESCE(sync_state, ''), \
                    COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::int8, \
                    COALESCE(EXTRACT(epoch FROM replay_lag) * 1000, 0)::float8 \
             FROM pg_stat_replication \
             WHERE pid NOT IN (SELECT active_pid FROM pg_replication_slots \
                               WHERE slot_type = 'logical' AND active_pid IS NOT NULL) \
             ORDER BY application_name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ReplicaStatus {
            name: r.get(0),
            state: r.get(1),
            sync_state: r.get(2),
            lag_bytes: r.get::<_, i64>(3).max(0) as u64,
            lag_ms: r.get(4),
        })
        .collect())
}

/// Every shard's figures (an unreachable shard is a row that says so, not an error), and
/// the moves under way. The counts, whole-table reads, go to a replica the layout lists
/// when one is within `replica_max_lag` (zero: always the primary); everything else
/// (replication, write rate, size, layout) is the primary's to say.
pub async fn status(
    layout: &Layout,
    replica_max_lag: Duration,
) -> (Vec<ShardStatus>, Vec<super::moves::Entry>) {
    let mut out = Vec::new();
    let mut clients = Vec::new();
    for s in &layout.shards {
        let row = ShardStatus {
            name: s.name.clone(),
            url: s.url.redacted(),
            reachable: false,
            error: None,
            layout_version: None,
            layout_matches: false,
            buckets: 0,
            merchants: 0,
            payments: 0,
            size_bytes: 0,
            writes_per_s: 0.0,
            payments_share: 0.0,
            replicas: Vec::new(),
            synchronous: false,
            counts_from: "primary".into(),
            counts_lag_ms: None,
        };
        match connect(&s.url, &s.name).await {
            Ok(c) => {
                clients.push(Some(c));
                out.push(ShardStatus {
                    reachable: true,
                    ..row
                });
            }
            Err(e) => {
                clients.push(None);
                out.push(ShardStatus {
                    error: Some(e.to_string()),
                    ..row
                });
            }
        }
    }
    let mut before = Vec::new();
    for c in &clients {
        before.push(match c {
            Some(c) => written(c).await.ok(),
            None => None,
        });
    }
    let started = std::time::Instant::now();
    tokio::time::sleep(WRITE_RATE_WINDOW).await;
    let elapsed = started.elapsed().as_secs_f64();
    for (i, c) in clients.iter().enumerate() {
        let Some(c) = c else { continue };
        let row = &mut out[i];
        let figures = async {
            let after = written(c).await?;
            // pg_stat counters are sent by backends in the background, so this is a rate
            // over about the window, not an exact count.
            row.writes_per_s = before[i].map_or(0.0, |b| (after - b).max(0) as f64 / elapsed);
            let migrated = !schema::applied(c).await?.is_empty();
            row.replicas = replicas(c).await?;
            row.synchronous = row.replicas.iter().any(|r| r.sync_state == "sync");
            row.size_bytes = c
                .query_one("SELECT pg_database_size(current_database())::int8", &[])
                .await?
                .get::<_, i64>(0) as u64;
            if migrated {
                if let Some(r) = c
                    .query_opt("SELECT version, digest FROM paytool_layout", &[])
                    .await?
                {
                    row.layout_version = Some(r.get(0));
                    row.layout_matches = r.get::<_, String>(1) == layout.digest;
                }
                let replica = super::replicas::fresh_replica(
                    &row.name,
                    &layout.shards[i].replicas,
                    c,
                    replica_max_lag,
                )
                .await;
                if let Some(r) = &replica {
                    row.counts_from = r.url.clone();
                    row.counts_lag_ms = Some(r.lag_ms);
                }
                let counter = replica.as_ref().map_or(c, |r| &r.client);
                let count = |sql: &'static str| async move {
                    counter
                        .query_one(sql, &[])
                        .await
                        .map(|r| r.get::<_, i64>(0) as u64)
                };
                row.buckets = count("SELECT COUNT(*) FROM paytool_buckets").await?;
                // Owned buckets only: a move's copy on its way in or out is not counted.
                row.merchants = count(
                    "SELECT COUNT(*) FROM merchants WHERE bucket IN (SELECT bucket FROM paytool_buckets)",
                )
                .await?;
                row.payments = count(
                    "SELECT COUNT(*) FROM payments WHERE bucket IN (SELECT bucket FROM paytool_buckets)",
                )
                .await?;
            }
            Ok::<(), tokio_postgres::Error>(())
        };
        if let Err(e) = figures.await {
            row.error = Some(e.to_string());
        }
    }
    let total: u64 = out.iter().map(|s| s.payments).sum();
    for s in &mut out {
        s.payments_share = if total == 0 {
            0.0
        } else {
            s.payments as f64 / total as f64
        };
    }
    let moves = super::moves::in_progress(&clients).await;
    (out, moves)
}
