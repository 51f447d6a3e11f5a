//! The PostgreSQL store: merchants spread over the shards of a layout by bucket, one
//! group-commit writer per shard, reads through a small pool per shard. The process
//! keeps no state that another instance needs: merchants are found in the shards (a
//! bounded cache in front), idempotency keys are unique inside the shard's transaction,
//! and each shard decides which buckets it owns.

pub mod audit;
pub mod export;
pub mod layout_ops;
pub mod moves;
pub mod replicas;
mod rows;
pub mod schema;
pub mod sql;
pub mod writer;

use super::{
    AuditReport, BalanceLine, BoxFuture, Merchant, RolledKey, Store, StoreError, StoredResponse,
    WriteRequest, balance_lines, key_hash,
};
use crate::ids::{BUCKETS, bucket_of, new_id, now_ms};
use crate::ledger::Payment;
use crate::secrets::{DbUrl, Secret, hash_key, merchant_id_in_key, new_api_key, same_hash};
use crate::store::KeyedPage;
use crate::store::layout::Layout;
use crate::store::queue::WriterSlot;
use crate::store::sqlite::WriterLimits;
use rows::{payment_from_row, store_error};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Read connections per shard, per API instance: several instances share a shard's
/// `max_connections`.
pub const READ_POOL_MAX: usize = 8;
/// How long a request waits for a read connection before the shard counts as down.
pub const READ_POOL_WAIT: Duration = Duration::from_secs(2);
/// Merchants kept in memory per instance; a miss is one indexed read on the owning shard.
pub const MERCHANT_CACHE_MAX: usize = 100_000;
/// How long a cached key stays trusted. A rolled or revoked key is refused by every
/// instance at most this long after the roll (the instance that rolled it, at once).
pub const MERCHANT_CACHE_TTL: Duration = Duration::from_secs(5);
/// A read that finds nothing on a shard that no longer owns the bucket is routed again
/// after reloading ownership, at most this many times.
pub const ROUTE_RETRIES_MAX: usize = 2;
/// How long a write keeps being routed again while its bucket moves (fenced, or between
/// the move's two commits) before it is answered 503 `shard_moving` with Retry-After.
/// Longer than a move's fence lease (`moves::fence::FENCE_LEASE`, 2 s), so a write
/// waits out even the fence of a move that died holding it.
pub const MOVE_WAIT_MAX: Duration = Duration::from_secs(3);
/// The pause between two tries of a refused write.
pub const MOVE_RETRY_INTERVAL: Duration = Duration::from_millis(10);

/// Why the store could not open a layout.
#[derive(Debug, thiserror::Error)]
pub enum PgOpenError {
    #[error("shard {shard} ({url}) is unreachable: {reason}")]
    Unreachable {
        shard: String,
        url: DbUrl,
        reason: String,
    },
    #[error(
        "shard {shard} is at schema migration {at}, paytool needs {needs}: run `paytool shard apply --layout {layout}`"
    )]
    NotMigrated {
        shard: String,
        at: i32,
        needs: i32,
        layout: String,
    },
    #[error(
        "no shard owns buckets {first}-{last}: run `paytool shard apply --layout {layout}` (or finish the move that is under way)"
    )]
    Unowned {
        first: u16,
        last: u16,
        layout: String,
    },
    #[error(
        "bucket {bucket} is owned by both {a} and {b}: a move was interrupted; run `paytool shard status`"
    )]
    Owned2 { bucket: u16, a: String, b: String },
    #[error(
        "shard {shard} has no fingerprint key, or another shard's: run `paytool shard apply --layout {layout}`"
    )]
    NoSharedKey { shard: String, layout: String },
    #[error("shard {shard}: {}", rows::pg_message(source))]
    Query {
        shard: String,
        source: tokio_postgres::Error,
    },
}

struct Shard {
    name: String,
    url: DbUrl,
    reads: deadpool_postgres::Pool,
    writer: WriterSlot<writer::Job>,
    /// Read replicas (the layout's `replicas`), each polled by a task of its own.
    replicas: Vec<Arc<replicas::Replica>>,
    /// Each merchant's last write position here, when there are replicas to read from.
    written: Option<Arc<replicas::Written>>,
}

struct CachedMerchant {
    merchant: Arc<Merchant>,
    key_hash: [u8; 32],
    /// Trusted until then; after, the next request reads the merchant again.
    until: Instant,
}

pub struct PgStore {
    /// One task per shard pruning expired idempotency keys; aborted on shutdown.
    pruners: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    options: PgOptions,
    /// The layout this instance last followed (its shards may have grown since start).
    layout: RwLock<Layout>,
    /// The key of request and card fingerprints, shared by every instance (from the shards).
    fingerprint_key: String,
    routing: RwLock<Arc<Routing>>,
    /// One reload of ownership at a time: a burst of refusals reloads once.
    reloading: tokio::sync::Mutex<()>,
    by_key: Mutex<HashMap<[u8; 32], CachedMerchant>>,
}

/// The shards this instance knows and who owns each bucket, replaced whole on a reload.
/// Shards are only ever added (a shard that gives all its buckets away owns none), so an
/// index stays valid.
struct Routing {
    shards: Vec<Arc<Shard>>,
    /// bucket -> index into `shards`, as the shards themselves record it.
    owners: Vec<usize>,
}

/// Reads a layout file's text (as the shards record it) into a checked layout, with this
/// instance's environment for its `${VAR}`s. Given by the caller, which knows the file
/// format (the profile layer); the store only follows.
#[derive(Clone)]
pub struct LayoutParser(pub Arc<ParseLayout>);

pub type ParseLayout = dyn Fn(&str) -> Result<Layout, String> + Send + Sync;

impl std::fmt::Debug for LayoutParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LayoutParser")
    }
}

/// How a `PgStore` runs.
#[derive(Clone)]
pub struct PgOptions {
    pub limits: WriterLimits,
    pub retention: Duration,
    /// How to read the layout the shards record, to follow a `shard move` onto shards
    /// this instance was not started with. `None`: stay on the starting layout's shards.
    pub follow: Option<LayoutParser>,
    /// A test hook: every reload of ownership first waits this long, standing in for an
    /// instance slow to hear of a move (`serve --test-reload-delay-ms`).
    pub reload_delay: Duration,
    /// A read replica further behind than this (and not caught up) takes no reads.
    pub replica_max_lag: Duration,
}

/// `serve --replica-max-lag` when not given.
pub const REPLICA_MAX_LAG_DEFAULT: Duration = Duration::from_secs(1);

impl PgOptions {
    pub fn new(limits: WriterLimits, retention: Duration) -> PgOptions {
        PgOptions {
            limits,
            retention,
            follow: None,
            reload_delay: Duration::ZERO,
            replica_max_lag: REPLICA_MAX_LAG_DEFAULT,
        }
    }
}

fn pool(url: &DbUrl) -> Result<deadpool_postgres::Pool, String> {
    let mut config: tokio_postgres::Config = url.expose().parse().map_err(|e| format!("{e}"))?;
    config
        .connect_timeout(writer::CONNECT_TIMEOUT)
        .application_name("paytool");
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(READ_POOL_MAX)
        .wait_timeout(Some(READ_POOL_WAIT))
        .create_timeout(Some(writer::CONNECT_TIMEOUT))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| e.to_string())
}

/// Connect to one shard, check it is migrated, and read its fingerprint key.
async fn open_shard(
    s: &crate::store::layout::Shard,
    layout: &Layout,
    options: &PgOptions,
) -> Result<(Arc<Shard>, Option<String>), PgOpenError> {
    let limits = options.limits;
    let unreachable = |reason: String| PgOpenError::Unreachable {
        shard: s.name.clone(),
        url: s.url.clone(),
        reason,
    };
    let query = |source| PgOpenError::Query {
        shard: s.name.clone(),
        source,
    };
    let client = writer::connect(&s.url, &s.name)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let applied = schema::applied(&client).await.map_err(query)?;
    let at = applied.last().copied().unwrap_or(0);
    if at < schema::latest() {
        return Err(PgOpenError::NotMigrated {
            shard: s.name.clone(),
            at,
            needs: schema::latest(),
            layout: layout.source.display().to_string(),
        });
    }
    let key = layout_ops::fingerprint_key(&client).await.map_err(query)?;
    let reads = pool(&s.url).map_err(unreachable)?;
    let mut replicas = Vec::with_capacity(s.replicas.len());
    for url in &s.replicas {
        // Connected lazily, like the primary's pool: a replica that is down takes no reads.
        let replica = Arc::new(replicas::Replica::new(
            url.clone(),
            pool(url).map_err(unreachable)?,
        ));
        tokio::spawn(replicas::poll(
            Arc::downgrade(&replica),
            reads.clone(),
            options.replica_max_lag,
        ));
        replicas.push(replica);
    }
    let written = (!replicas.is_empty()).then(|| Arc::new(replicas::Written::default()));
    let shard = Arc::new(Shard {
        name: s.name.clone(),
        url: s.url.clone(),
        reads,
        writer: WriterSlot::new(writer::spawn(
            s.name.clone(),
            s.url.clone(),
            limits,
            written.clone(),
        )),
        replicas,
        written,
    });
    Ok((shard, key))
}

/// Which shard owns each bucket, from the shards' own records.
async fn read_owners(shards: &[Arc<Shard>], layout: &Layout) -> Result<Vec<usize>, PgOpenError> {
    let mut owners: Vec<Option<usize>> = vec![None; BUCKETS as usize];
    for (i, shard) in shards.iter().enumerate() {
        let query = |source| PgOpenError::Query {
            shard: shard.name.clone(),
            source,
        };
        let client = shard
            .reads
            .get()
            .await
            .map_err(|e| PgOpenError::Unreachable {
                shard: shard.name.clone(),
                url: shard.url.clone(),
                reason: e.to_string(),
            })?;
        for r in client
            .query("SELECT bucket FROM paytool_buckets", &[])
            .await
            .map_err(query)?
        {
            let bucket = r.get::<_, i16>(0) as usize;
            if let Some(other) = owners[bucket] {
                return Err(PgOpenError::Owned2 {
                    bucket: bucket as u16,
                    a: shards[other].name.clone(),
                    b: shard.name.clone(),
                });
            }
            owners[bucket] = Some(i);
        }
    }
    if let Some(first) = owners.iter().position(Option::is_none) {
        let last = owners[first..]
            .iter()
            .position(Option::is_some)
            .map_or(BUCKETS as usize - 1, |n| first + n - 1);
        return Err(PgOpenError::Unowned {
            first: first as u16,
            last: last as u16,
            layout: layout.source.display().to_string(),
        });
    }
    Ok(owners
        .into_iter()
        .map(|o| o.expect("checked above"))
        .collect())
}

impl PgStore {
    /// Connect to every shard of `layout`, check each is migrated, and read which buckets
    /// each owns. Refuses a shard that is unreachable or not migrated, and buckets that
    /// no shard (or two) owns.
    pub async fn open(layout: &Layout, options: PgOptions) -> Result<PgStore, PgOpenError> {
        let mut shards = Vec::with_capacity(layout.shards.len());
        let mut fingerprint_key: Option<String> = None;
        for s in &layout.shards {
            let (shard, key) = open_shard(s, layout, &options).await?;
            match (&fingerprint_key, key) {
                (None, Some(k)) => fingerprint_key = Some(k),
                (Some(a), Some(b)) if *a == b => {}
                _ => {
                    return Err(PgOpenError::NoSharedKey {
                        shard: s.name.clone(),
                        layout: layout.source.display().to_string(),
                    });
                }
            }
            shards.push(shard);
        }
        let owners = read_owners(&shards, layout).await?;
        let pruners = shards
            .iter()
            .map(|s| tokio::spawn(prune(s.clone(), options.retention)))
            .collect();
        Ok(PgStore {
            pruners: Mutex::new(pruners),
            options,
            layout: RwLock::new(layout.clone()),
            fingerprint_key: fingerprint_key.expect("a layout has at least one shard"),
            routing: RwLock::new(Arc::new(Routing { shards, owners })),
            reloading: tokio::sync::Mutex::new(()),
            by_key: Mutex::new(HashMap::new()),
        })
    }

    fn routing(&self) -> Arc<Routing> {
        self.routing
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn owner(&self, bucket: u16) -> Arc<Shard> {
        let routing = self.routing();
        routing.shards[routing.owners[bucket as usize]].clone()
    }

    /// Reload ownership after a shard refused a bucket; a failure leaves the old view.
    /// When the shards this instance knows no longer own every bucket, a move has given
    /// some to a shard it does not know: it reads the layout the shards record, opens
    /// the new shards, and reads ownership again.
    async fn reload_owners(&self) {
        let before = self.routing();
        let _one = self.reloading.lock().await;
        if !Arc::ptr_eq(&before, &self.routing()) {
            return; // another caller reloaded while this one waited
        }
        if !self.options.reload_delay.is_zero() {
            tokio::time::sleep(self.options.reload_delay).await;
        }
        let layout = self
            .layout
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let result = match read_owners(&before.shards, &layout).await {
            Err(PgOpenError::Unowned { .. }) if self.options.follow.is_some() => {
                self.follow_layout(&before).await
            }
            other => other.map(|owners| Routing {
                shards: before.shards.clone(),
                owners,
            }),
        };
        match result {
            Ok(routing) => {
                *self.routing.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routing)
            }
            Err(e) => tracing::warn!(error = %e, "reloading bucket ownership"),
        }
    }

    /// Read the layout the shards record, open its shards this instance does not know,
    /// and read ownership over all of them.
    async fn follow_layout(&self, known: &Routing) -> Result<Routing, PgOpenError> {
        let parse = self.options.follow.as_ref().expect("checked by the caller");
        let current = self
            .layout
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut recorded = None;
        for shard in &known.shards {
            let Ok(client) = shard.reads.get().await else {
                continue;
            };
            if let Ok(Some(r)) = client
                .query_opt("SELECT digest, text FROM paytool_layout", &[])
                .await
            {
                recorded = Some((r.get::<_, String>(0), r.get::<_, String>(1)));
                break;
            }
        }
        let stale = |why: String| PgOpenError::Unowned {
            first: 0,
            last: BUCKETS - 1,
            layout: format!("{} ({why})", current.source.display()),
        };
        let Some((digest, text)) = recorded else {
            return Err(stale("no shard records a layout".into()));
        };
        if digest == current.digest || text.is_empty() {
            return read_owners(&known.shards, &current)
                .await
                .map(|owners| Routing {
                    shards: known.shards.clone(),
                    owners,
                });
        }
        let layout = (parse.0)(&text).map_err(|e| stale(format!("the recorded layout: {e}")))?;
        let mut shards = known.shards.clone();
        for s in &layout.shards {
            if shards.iter().any(|k| k.name == s.name) {
                continue;
            }
            let (shard, key) = open_shard(s, &layout, &self.options).await?;
            if key.as_deref() != Some(self.fingerprint_key.as_str()) {
                return Err(PgOpenError::NoSharedKey {
                    shard: s.name.clone(),
                    layout: layout.source.display().to_string(),
                });
            }
            tracing::info!(
                shard = s.name,
                layout = layout.name,
                "following the layout onto a new shard"
            );
            self.pruners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(tokio::spawn(prune(shard.clone(), self.options.retention)));
            shards.push(shard);
        }
        // Kept from here on even if ownership cannot be read yet (a move between its two
        // commits): the next reload reads it over these shards, opening none again.
        // Shards are only appended, so the old owners' indices still hold.
        *self.routing.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Routing {
            shards: shards.clone(),
            owners: known.owners.clone(),
        });
        *self.layout.write().unwrap_or_else(|p| p.into_inner()) = layout.clone();
        let owners = read_owners(&shards, &layout).await?;
        Ok(Routing { shards, owners })
    }

    pub fn layout(&self) -> Layout {
        self.layout
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn fingerprint_key(&self) -> &str {
        &self.fingerprint_key
    }

    pub fn shard_count(&self) -> usize {
        self.routing().shards.len()
    }

    async fn read_client(shard: &Shard) -> Result<deadpool_postgres::Object, StoreError> {
        shard.reads.get().await.map_err(|e| StoreError::ShardDown {
            shard: shard.name.clone(),
            reason: e.to_string(),
        })
    }

    async fn find_merchant(
        &self,
        id: &str,
    ) -> Result<Option<(Merchant, [u8; 32], Option<([u8; 32], i64)>)>, StoreError> {
        if !crate::ids::is_id(id, "mer") {
            return Ok(None);
        }
        let bucket = bucket_of(id);
        let mut found = None;
        for _ in 0..=ROUTE_RETRIES_MAX {
            let shard = self.owner(bucket);
            let client = Self::read_client(&shard).await?;
            found = client
                .query_opt(sql::MERCHANT, &[&(bucket as i16), &id])
                .await
                .map_err(|e| store_error(&shard.name, &e))?;
            if found.is_some() || self.confirm_owner(&shard, &client, bucket).await? {
                break;
            }
        }
        let Some(r) = found else { return Ok(None) };
        let previous = match (r.get::<_, Option<Vec<u8>>>(2), r.get::<_, Option<i64>>(3)) {
            (Some(h), Some(until)) => Some((key_hash(h)?, until)),
            _ => None,
        };
        let merchant = Merchant {
            id: id.to_string(),
            name: r.get(0),
            bucket,
            shard: 0,
            created_ms: r.get(4),
        };
        Ok(Some((merchant, key_hash(r.get(1))?, previous)))
    }

    /// Rows of a read in `bucket` (its SQL checks ownership, see `sql::owned_here`) from
    /// the shard that owns it: an empty answer from a shard that turns out not to own
    /// the bucket any more (a move) is read again from the new owner, a bounded number of
    /// times.
    async fn read_owned(
        &self,
        bucket: u16,
        query: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        for _ in 0..ROUTE_RETRIES_MAX {
            let shard = self.owner(bucket);
            let client = Self::read_client(&shard).await?;
            let stmt = client
                .prepare_cached(query)
                .await
                .map_err(|e| store_error(&shard.name, &e))?;
            let rows = client
                .query(&stmt, params)
                .await
                .map_err(|e| store_error(&shard.name, &e))?;
            if !rows.is_empty() || self.confirm_owner(&shard, &client, bucket).await? {
                return Ok(rows);
            }
        }
        Err(stale(bucket))
    }

    /// Rows of one of `merchant`'s own reads (a payment, the list, the balance): from a
    /// replica that may answer it, else from the owner (see `read_owned`).
    async fn read_merchant(
        &self,
        merchant: &Merchant,
        query: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let bucket = merchant.bucket;
        match self
            .read_on_replica(bucket, &merchant.id, query, params)
            .await
        {
            Some(rows) => Ok(rows),
            None => self.read_owned(bucket, query, params).await,
        }
    }

    /// Rows of a merchant's read in `bucket` from a replica of its owner that has replayed
    /// the merchant's last write here and is within the lag bound (see `replicas`). None
    /// when there is no such replica, it fails, or it finds nothing: the primary is read
    /// then, which also settles ownership (the replica's view of it may lag).
    async fn read_on_replica(
        &self,
        bucket: u16,
        merchant: &str,
        query: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Option<Vec<tokio_postgres::Row>> {
        let shard = self.owner(bucket);
        let needed = shard.written.as_ref()?.needed(merchant);
        let replica = replicas::pick(&shard.replicas, needed)?;
        let rows = async {
            let client = replica.pool.get().await.ok()?;
            let stmt = client.prepare_cached(query).await.ok()?;
            client.query(&stmt, params).await.ok()
        }
        .await;
        let read = match &rows {
            Some(rows) if !rows.is_empty() => "replica",
            _ => "primary after a replica",
        };
        metrics::counter!("paytool_replica_reads_total", "shard" => shard.name.clone(), "answered_by" => read)
            .increment(1);
        rows.filter(|r| !r.is_empty())
    }

    /// After a read on `shard` found nothing in `bucket`: true when the shard still owns
    /// the bucket, so "nothing" is the answer; false when it does not (this instance's
    /// view is stale), after reloading ownership, so the caller reads again.
    async fn confirm_owner(
        &self,
        shard: &Shard,
        client: &tokio_postgres::Client,
        bucket: u16,
    ) -> Result<bool, StoreError> {
        let owned = client
            .query_opt(sql::OWNS, &[&(bucket as i16)])
            .await
            .map_err(|e| store_error(&shard.name, &e))?
            .is_some();
        if !owned {
            tracing::info!(bucket, shard = shard.name, "stale layout: rerouting a read");
            metrics::counter!("paytool_store_read_reroutes_total").increment(1);
            // Between a move's two commits no shard owns the bucket: wait for the new
            // owner (bounded) rather than answer 503 at once.
            let started = Instant::now();
            loop {
                self.reload_owners().await;
                if self.owner(bucket).name != shard.name || started.elapsed() >= MOVE_WAIT_MAX {
                    break;
                }
                tokio::time::sleep(MOVE_RETRY_INTERVAL).await;
            }
        }
        Ok(owned)
    }

    fn remember(&self, key_hash: [u8; 32], merchant: Arc<Merchant>, until: Instant) {
        let mut cache = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MERCHANT_CACHE_MAX {
            // Bounded: drop what has expired, and if that is not enough, everything
            // (a miss costs one indexed read).
            let now = Instant::now();
            cache.retain(|_, c| c.until > now);
            if cache.len() >= MERCHANT_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(
            key_hash,
            CachedMerchant {
                merchant,
                key_hash,
                until,
            },
        );
    }
}

impl Store for PgStore {
    fn create_merchant(
        &self,
        name: String,
    ) -> BoxFuture<'_, Result<(Merchant, Secret), StoreError>> {
        Box::pin(async move {
            let mut route = Route::new();
            loop {
                let id = new_id("mer");
                let key = new_api_key(&id);
                let hash = hash_key(key.expose());
                let bucket = bucket_of(&id);
                let merchant = Merchant {
                    id,
                    name: name.clone(),
                    bucket,
                    shard: 0,
                    created_ms: now_ms(),
                };
                let shard = self.owner(bucket);
                let mut client = Self::read_client(&shard).await?;
                let fail = |e: tokio_postgres::Error| store_error(&shard.name, &e);
                let tx = client.transaction().await.map_err(fail)?;
                // The shard decides: a bucket it no longer owns, or one a move fences, is
                // refused here.
                if let Some(refused) = owned_and_open(&tx, &shard, bucket).await? {
                    drop(tx);
                    route.refused(self, refused).await?;
                    continue;
                }
                tx.execute(
                    sql::INSERT_MERCHANT,
                    &[
                        &(bucket as i16),
                        &merchant.id,
                        &merchant.name,
                        &&hash[..],
                        &merchant.created_ms,
                    ],
                )
                .await
                .map_err(fail)?;
                tx.commit().await.map_err(fail)?;
                self.remember(
                    hash,
                    Arc::new(merchant.clone()),
                    Instant::now() + MERCHANT_CACHE_TTL,
                );
                return Ok((merchant, key));
            }
        })
    }

    fn authenticate(
        &self,
        api_key: &str,
    ) -> BoxFuture<'_, Result<Option<Arc<Merchant>>, StoreError>> {
        let hash = hash_key(api_key);
        let api_key = api_key.to_string();
        Box::pin(async move {
            if let Some(c) = self
                .by_key
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&hash)
                .filter(|c| c.until > Instant::now() && same_hash(&c.key_hash, &hash))
            {
                return Ok(Some(c.merchant.clone()));
            }
            self.authenticate_fresh(&api_key).await
        })
    }

    fn authenticate_fresh(
        &self,
        api_key: &str,
    ) -> BoxFuture<'_, Result<Option<Arc<Merchant>>, StoreError>> {
        let hash = hash_key(api_key);
        let id = merchant_id_in_key(api_key);
        Box::pin(async move {
            let now = Instant::now();
            // A key that names no merchant is refused without a query.
            let Some(id) = id else { return Ok(None) };
            let Some((merchant, current, previous)) = self.find_merchant(&id).await? else {
                return Ok(None);
            };
            let until = if same_hash(&current, &hash) {
                now + MERCHANT_CACHE_TTL
            } else {
                match previous {
                    Some((old, expires_ms)) if same_hash(&old, &hash) && expires_ms > now_ms() => {
                        let left = Duration::from_millis((expires_ms - now_ms()) as u64);
                        now + left.min(MERCHANT_CACHE_TTL)
                    }
                    _ => return Ok(None),
                }
            };
            let merchant = Arc::new(merchant);
            self.remember(hash, merchant.clone(), until);
            Ok(Some(merchant))
        })
    }

    fn merchant(&self, id: &str) -> BoxFuture<'_, Result<Option<Arc<Merchant>>, StoreError>> {
        let id = id.to_string();
        Box::pin(async move { Ok(self.find_merchant(&id).await?.map(|(m, _, _)| Arc::new(m))) })
    }

    fn roll_key(
        &self,
        merchant_id: &str,
        grace: Option<Duration>,
    ) -> BoxFuture<'_, Result<Option<RolledKey>, StoreError>> {
        let id = merchant_id.to_string();
        Box::pin(async move {
            if !crate::ids::is_id(&id, "mer") {
                return Ok(None);
            }
            let bucket = bucket_of(&id);
            let key = new_api_key(&id);
            let hash = hash_key(key.expose());
            let until = grace.map(|g| now_ms() + g.as_millis() as i64);
            let mut route = Route::new();
            let row = loop {
                let shard = self.owner(bucket);
                let mut client = Self::read_client(&shard).await?;
                let fail = |e: tokio_postgres::Error| store_error(&shard.name, &e);
                let tx = client.transaction().await.map_err(fail)?;
                if let Some(refused) = owned_and_open(&tx, &shard, bucket).await? {
                    drop(tx);
                    route.refused(self, refused).await?;
                    continue;
                }
                let row = tx
                    .query_opt(sql::ROLL_KEY, &[&(bucket as i16), &id, &until, &&hash[..]])
                    .await
                    .map_err(fail)?;
                tx.commit().await.map_err(fail)?;
                break row;
            };
            let Some(r) = row else { return Ok(None) };
            // This instance forgets the old key now; the others within MERCHANT_CACHE_TTL.
            self.by_key
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, c| c.merchant.id != id);
            let merchant = Merchant {
                id,
                name: r.get(0),
                bucket,
                shard: 0,
                created_ms: r.get(1),
            };
            Ok(Some(RolledKey {
                merchant,
                key,
                previous_key_expires_ms: until,
            }))
        })
    }

    fn write(&self, request: WriteRequest) -> BoxFuture<'_, Result<StoredResponse, StoreError>> {
        Box::pin(async move {
            let mut request = request;
            let mut route = Route::new();
            loop {
                let shard = self.owner(request.merchant.bucket);
                let (reply, answer) = oneshot::channel();
                // The request comes back on a refusal, to be routed again.
                let (back_tx, back_rx) = oneshot::channel();
                shard.writer.send(writer::Job {
                    request,
                    reply,
                    returned: Some(back_tx),
                })?;
                let result = answer
                    .await
                    .map_err(|_| StoreError::Unavailable("the shard writer has stopped".into()))?;
                match result {
                    Err(StoreError::WrongShard { bucket, .. }) => {
                        route
                            .refused(self, Refused::NotOwned(shard.name.clone(), bucket))
                            .await?;
                    }
                    Err(StoreError::Fenced { bucket, .. }) => {
                        route
                            .refused(self, Refused::Fenced(shard.name.clone(), bucket))
                            .await?;
                    }
                    other => return other,
                }
                request = back_rx.await.map_err(|_| {
                    StoreError::Internal("a refused write was not handed back".into())
                })?;
            }
        })
    }

    fn payment(
        &self,
        merchant: Arc<Merchant>,
        id: String,
    ) -> BoxFuture<'_, Result<Option<Payment>, StoreError>> {
        Box::pin(async move {
            let bucket = merchant.bucket;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                [&(bucket as i16), &merchant.id, &id];
            let rows = self
                .read_merchant(&merchant, &sql::payment(), &params)
                .await?;
            rows.first().map(payment_from_row).transpose()
        })
    }

    fn list_payments(
        &self,
        merchant: Arc<Merchant>,
        starting_after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<(Vec<Payment>, bool), StoreError>> {
        Box::pin(async move {
            let bucket = merchant.bucket;
            let cursor = starting_after.unwrap_or_else(|| "pay_g".to_string());
            let limit_plus = (limit + 1) as i64;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&(bucket as i16), &merchant.id, &cursor, &limit_plus];
            let rows = self
                .read_merchant(&merchant, &sql::list_payments(), &params)
                .await?;
            let mut page = rows
                .iter()
                .map(payment_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let has_more = page.len() > limit;
            page.truncate(limit);
            Ok((page, has_more))
        })
    }

    fn payments_with_key_prefix(
        &self,
        merchant: Arc<Merchant>,
        key_prefix: String,
        starting_after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<KeyedPage, StoreError>> {
        Box::pin(async move {
            let bucket = merchant.bucket;
            let cursor = starting_after.unwrap_or_default();
            let limit_plus = (limit + 1) as i64;
            let rows = self
                .read_owned(
                    bucket,
                    &sql::payments_with_key_prefix(),
                    &[
                        &(bucket as i16),
                        &merchant.id,
                        &cursor,
                        &key_prefix,
                        &limit_plus,
                    ],
                )
                .await?;
            let mut page = rows
                .iter()
                .map(|row| {
                    let key: String = row
                        .try_get(12)
                        .map_err(|e| StoreError::Internal(format!("payment row: {e}")))?;
                    Ok((payment_from_row(row)?, key))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let has_more = page.len() > limit;
            page.truncate(limit);
            Ok((page, has_more))
        })
    }

    fn balance(
        &self,
        merchant: Arc<Merchant>,
    ) -> BoxFuture<'_, Result<Vec<BalanceLine>, StoreError>> {
        Box::pin(async move {
            let bucket = merchant.bucket;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                [&(bucket as i16), &merchant.id];
            let rows = self.read_merchant(&merchant, sql::BALANCE, &params).await?;
            Ok(balance_lines(
                rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))),
            ))
        })
    }

    fn audit(&self) -> BoxFuture<'_, Result<AuditReport, StoreError>> {
        Box::pin(async move {
            let routing = self.routing();
            let mut parts = Vec::with_capacity(routing.shards.len());
            let mut merchants = 0u64;
            for shard in &routing.shards {
                let mut client = Self::read_client(shard).await?;
                let count: i64 = client
                    .query_one(
                        "SELECT COUNT(*) FROM merchants WHERE bucket IN (SELECT bucket FROM paytool_buckets)",
                        &[],
                    )
                    .await
                    .map_err(|e| store_error(&shard.name, &e))?
                    .get(0);
                merchants += count as u64;
                let client: &mut tokio_postgres::Client = &mut client;
                let since_ms =
                    super::retention::expired_before_ms(self.options.retention, now_ms());
                parts.push(
                    audit::audit_shard(client, since_ms, audit::Scope::Owned)
                        .await
                        .map_err(|e| audit::failed(&shard.name, &e))?,
                );
            }
            Ok(super::audit::combine(parts, merchants))
        })
    }

    fn ready(&self) -> bool {
        self.routing().shards.iter().all(|s| s.writer.is_open())
    }

    fn shutdown(&self) {
        for pruner in self
            .pruners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            pruner.abort();
        }
        for shard in &self.routing().shards {
            shard.writer.close();
        }
    }
}

/// Prune a shard's expired idempotency keys forever, a bounded round each interval.
async fn prune(shard: Arc<Shard>, retention: Duration) {
    use super::retention::{PRUNE_BATCH_MAX, PRUNE_BATCHES_PER_ROUND_MAX, expired_before_ms};
    let pruned =
        metrics::counter!("paytool_idempotency_pruned_total", "shard" => shard.name.clone());
    loop {
        tokio::time::sleep(super::retention::prune_interval(retention)).await;
        let before = expired_before_ms(retention, now_ms());
        let round = async {
            let client = PgStore::read_client(&shard).await?;
            for _ in 0..PRUNE_BATCHES_PER_ROUND_MAX {
                let n = client
                    .execute(sql::PRUNE_IDEMPOTENCY, &[&before, &PRUNE_BATCH_MAX])
                    .await
                    .map_err(|e| store_error(&shard.name, &e))?;
                pruned.increment(n);
                if (n as i64) < PRUNE_BATCH_MAX {
                    break;
                }
            }
            Ok::<(), StoreError>(())
        };
        // A shard that is down is pruned in a later round; keys are only kept longer.
        if let Err(e) = round.await {
            tracing::warn!(shard = shard.name, error = %e, "pruning idempotency keys");
        }
    }
}

/// Why a shard refused a write: the bucket is not its (this instance's view is stale), or
/// a move fences it.
enum Refused {
    NotOwned(String, u16),
    Fenced(String, u16),
}

/// The bound on one write's rerouting while buckets move: refusals are retried until
/// `MOVE_WAIT_MAX` has passed, then answered 503 (retryable, with Retry-After).
struct Route {
    started: Instant,
}

impl Route {
    fn new() -> Route {
        Route {
            started: Instant::now(),
        }
    }

    /// After a refusal: reload ownership (not owned) or wait a little (fenced), or give
    /// up with the refusal as the answer once the bound has passed.
    async fn refused(&mut self, store: &PgStore, why: Refused) -> Result<(), StoreError> {
        if self.started.elapsed() >= MOVE_WAIT_MAX {
            return Err(match why {
                Refused::NotOwned(shard, bucket) => StoreError::WrongShard { bucket, shard },
                Refused::Fenced(shard, bucket) => StoreError::Fenced { bucket, shard },
            });
        }
        let reason = match why {
            Refused::NotOwned(..) => "not_owned",
            Refused::Fenced(..) => "fenced",
        };
        metrics::counter!("paytool_store_write_retries_total", "reason" => reason).increment(1);
        match why {
            Refused::NotOwned(shard, bucket) => {
                tracing::info!(bucket, shard, "stale layout: rerouting");
                let before = store.owner(bucket).name.clone();
                store.reload_owners().await;
                // Between a move's two commits nobody owns the bucket: wait, not spin.
                if store.owner(bucket).name == before {
                    tokio::time::sleep(MOVE_RETRY_INTERVAL).await;
                }
            }
            Refused::Fenced(..) => tokio::time::sleep(MOVE_RETRY_INTERVAL).await,
        }
        Ok(())
    }
}

/// Inside a writing transaction: lock the bucket's ownership row, and say why not when
/// the shard does not own it or a move fences it.
async fn owned_and_open(
    tx: &tokio_postgres::Transaction<'_>,
    shard: &Shard,
    bucket: u16,
) -> Result<Option<Refused>, StoreError> {
    let row = tx
        .query_opt(sql::OWNS_BUCKET, &[&(bucket as i16)])
        .await
        .map_err(|e| store_error(&shard.name, &e))?;
    Ok(match row {
        None => Some(Refused::NotOwned(shard.name.clone(), bucket)),
        Some(r) if r.get::<_, bool>(1) => Some(Refused::Fenced(shard.name.clone(), bucket)),
        Some(_) => None,
    })
}

/// Ownership kept moving under a read: answered 503, retryable.
fn stale(bucket: u16) -> StoreError {
    StoreError::Unavailable(format!(
        "bucket {bucket} changed shards {ROUTE_RETRIES_MAX} times during one read"
    ))
}
