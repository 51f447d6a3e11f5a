//! The embedded store: a catalog file for merchants and one SQLite file per shard under
//! the data dir. Merchants hash to buckets; contiguous bucket ranges map to shards.

mod answers;
mod audit;
pub mod export;
mod gather_vfs;
mod pruner;
mod rows;
mod schema;
pub mod writer;

use super::{
    AuditReport, BalanceLine, BoxFuture, Merchant, OpenError, RolledKey, SHARDS_MAX, Store,
    StoreError, StoredResponse, WriteRequest, balance_lines,
};
use crate::ids::{BUCKETS, bucket_of, new_id, now_ms, shard_of_bucket};
use crate::ledger::Payment;
use crate::secrets::{Secret, hash_key, new_api_key, same_hash};
use crate::store::KeyedPage;
use crate::store::queue::WriterSlot;
use rows::{PAYMENT_COLUMNS, load_payment, payment_from_row};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::oneshot;
pub use writer::{Faults, WriterLimits};

/// Read connections per shard. WAL lets readers run beside the writer.
const READERS_PER_SHARD: usize = 4;

struct Shard {
    writer: WriterSlot<writer::Job>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pruner: Mutex<Option<(pruner::Stop, std::thread::JoinHandle<()>)>>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl Shard {
    /// Run `f` on a read connection, off the async runtime.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shard = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let i = shard.next_reader.fetch_add(1, Ordering::Relaxed) % shard.readers.len();
            let conn = shard.readers[i].lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
    }
}

struct Merchants {
    by_key_hash: HashMap<[u8; 32], Arc<Merchant>>,
    by_id: HashMap<String, Arc<Merchant>>,
    keys: HashMap<String, Keys>,
}

/// A merchant's key hashes: the current one, and the one before the last roll with the
/// time it stops working.
#[derive(Clone, Copy)]
struct Keys {
    current: [u8; 32],
    previous: Option<([u8; 32], i64)>,
}

impl Keys {
    fn accepts(&self, hash: &[u8; 32], now_ms: i64) -> bool {
        same_hash(&self.current, hash)
            || self
                .previous
                .is_some_and(|(h, until)| same_hash(&h, hash) && until > now_ms)
    }
}

pub struct SqliteStore {
    catalog: Mutex<Connection>,
    merchants: RwLock<Merchants>,
    shards: Vec<Arc<Shard>>,
    data_dir: PathBuf,
    retention: std::time::Duration,
}

impl SqliteStore {
    /// Open (creating if needed) the data dir with `shards` shard files. The shard count
    /// is recorded on first start; a different count later is refused.
    pub fn open(
        data_dir: &Path,
        shards: usize,
        limits: WriterLimits,
        faults: Faults,
        retention: std::time::Duration,
    ) -> Result<Self, OpenError> {
        assert!(
            (1..=SHARDS_MAX).contains(&shards),
            "shard count {shards} should have been refused by the config"
        );
        std::fs::create_dir_all(data_dir).map_err(|source| OpenError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let catalog_path = data_dir.join("catalog.db");
        let catalog =
            schema::open_writer(&catalog_path, schema::CATALOG).map_err(in_file(&catalog_path))?;
        schema::upgrade_catalog(&catalog).map_err(in_file(&catalog_path))?;
        let made_with = recorded_shard_count(&catalog, shards).map_err(in_file(&catalog_path))?;
        if made_with != shards {
            return Err(OpenError::ShardCountMismatch {
                data_dir: data_dir.to_path_buf(),
                made_with,
                asked: shards,
            });
        }
        let merchants = load_merchants(&catalog, shards).map_err(in_file(&catalog_path))?;
        let mut shard_list = Vec::with_capacity(shards);
        for i in 0..shards {
            let path = data_dir.join(format!("shard-{i:03}.db"));
            let mut conn = schema::open_writer(&path, schema::SHARD).map_err(in_file(&path))?;
            let moved = schema::upgrade_shard(&mut conn).map_err(in_file(&path))?;
            if schema::upgrade_status_check(&mut conn).map_err(in_file(&path))? {
                tracing::info!(shard = i, "payments status check rewritten as comparisons");
            }
            if moved > 0 {
                tracing::info!(
                    shard = i,
                    keys = moved,
                    "idempotency keys moved to idempotency_keys"
                );
            }
            let readers = (0..READERS_PER_SHARD)
                .map(|_| schema::open_reader(&path).map(Mutex::new))
                .collect::<Result<Vec<_>, _>>()
                .map_err(in_file(&path))?;
            let (tx, handle) = writer::spawn(i, conn, limits, faults);
            let prune_conn = schema::open_writer(&path, "").map_err(in_file(&path))?;
            shard_list.push(Arc::new(Shard {
                writer: WriterSlot::new(tx),
                writer_thread: Mutex::new(Some(handle)),
                pruner: Mutex::new(Some(pruner::spawn(i, prune_conn, retention))),
                readers,
                next_reader: AtomicUsize::new(0),
            }));
        }
        Ok(SqliteStore {
            catalog: Mutex::new(catalog),
            merchants: RwLock::new(merchants),
            shards: shard_list,
            data_dir: data_dir.to_path_buf(),
            retention,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn shard(&self, merchant: &Merchant) -> &Arc<Shard> {
        &self.shards[merchant.shard]
    }
}

/// Pin an error to the data dir file it came from.
fn in_file<E: Into<StoreError>>(file: &Path) -> impl FnOnce(E) -> OpenError + '_ {
    move |e| OpenError::File {
        file: file.to_path_buf(),
        source: e.into(),
    }
}

/// The shard count the catalog was made with, recording `asked` in a new catalog.
fn recorded_shard_count(catalog: &Connection, asked: usize) -> Result<usize, StoreError> {
    let recorded: Option<String> = catalog
        .query_row("SELECT value FROM meta WHERE key = 'shards'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match recorded {
        Some(v) => v.parse().map_err(|_| {
            StoreError::Internal(format!("the catalog records {v:?} shards, not a number"))
        }),
        None => {
            catalog.execute(
                "INSERT INTO meta (key, value) VALUES ('shards', ?1), ('buckets', ?2)",
                params![asked.to_string(), BUCKETS.to_string()],
            )?;
            Ok(asked)
        }
    }
}

/// Every merchant, for authentication from memory.
fn load_merchants(catalog: &Connection, shards: usize) -> Result<Merchants, StoreError> {
    let mut by_key_hash = HashMap::new();
    let mut by_id = HashMap::new();
    let mut keys = HashMap::new();
    let mut stmt = catalog.prepare(&format!(
        "SELECT {} FROM merchants",
        export::MERCHANT_COLUMNS
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (merchant, hash, previous) = export::merchant_row(r, shards)?;
        let previous = previous.filter(|(_, until)| *until > now_ms());
        let merchant = Arc::new(merchant);
        if let Some((old, _)) = previous {
            by_key_hash.insert(old, merchant.clone());
        }
        keys.insert(
            merchant.id.clone(),
            Keys {
                current: hash,
                previous,
            },
        );
        by_id.insert(merchant.id.clone(), merchant.clone());
        by_key_hash.insert(hash, merchant);
    }
    Ok(Merchants {
        by_key_hash,
        by_id,
        keys,
    })
}

impl Store for SqliteStore {
    fn create_merchant(
        &self,
        name: String,
    ) -> BoxFuture<'_, Result<(Merchant, Secret), StoreError>> {
        Box::pin(async move {
            let id = new_id("mer");
            let key = new_api_key(&id);
            let hash = hash_key(key.expose());
            let bucket = bucket_of(&id);
            let merchant = Merchant {
                shard: shard_of_bucket(bucket, self.shards.len()),
                id,
                name,
                bucket,
                created_ms: now_ms(),
            };
            let row = merchant.clone();
            // Merchant creation is rare: a durable commit of its own, off the runtime.
            tokio::task::block_in_place(|| {
                let conn = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
                conn.execute(
                    "INSERT INTO merchants (id, name, key_hash, bucket, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![row.id, row.name, &hash[..], row.bucket, row.created_ms],
                )
            })?;
            let shared = Arc::new(merchant.clone());
            let mut merchants = self.merchants.write().unwrap_or_else(|p| p.into_inner());
            merchants.by_id.insert(shared.id.clone(), shared.clone());
            merchants.keys.insert(
                shared.id.clone(),
                Keys {
                    current: hash,
                    previous: None,
                },
            );
            merchants.by_key_hash.insert(hash, shared);
            Ok((merchant, key))
        })
    }

    fn authenticate(
        &self,
        api_key: &str,
    ) -> BoxFuture<'_, Result<Option<Arc<Merchant>>, StoreError>> {
        // Every merchant is in memory: one SHA-256 and a hash-map lookup.
        let hash = hash_key(api_key);
        let merchants = self.merchants.read().unwrap_or_else(|p| p.into_inner());
        let found = merchants
            .by_key_hash
            .get(&hash)
            .filter(|m| {
                merchants
                    .keys
                    .get(&m.id)
                    .is_some_and(|k| k.accepts(&hash, now_ms()))
            })
            .cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn merchant(&self, id: &str) -> BoxFuture<'_, Result<Option<Arc<Merchant>>, StoreError>> {
        let found = self
            .merchants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .get(id)
            .cloned();
        Box::pin(std::future::ready(Ok(found)))
    }

    fn roll_key(
        &self,
        merchant_id: &str,
        grace: Option<std::time::Duration>,
    ) -> BoxFuture<'_, Result<Option<RolledKey>, StoreError>> {
        let id = merchant_id.to_string();
        Box::pin(async move {
            let Some(merchant) = self.merchant(&id).await? else {
                return Ok(None);
            };
            let key = new_api_key(&id);
            let hash = hash_key(key.expose());
            let until = grace.map(|g| now_ms() + g.as_millis() as i64);
            let mut merchants = self.merchants.write().unwrap_or_else(|p| p.into_inner());
            let old = merchants.keys[&id];
            // On disk first, then in memory: a crash in between leaves the disk right.
            tokio::task::block_in_place(|| {
                let conn = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
                conn.execute(
                    "UPDATE merchants SET previous_key_hash = ?2, previous_key_expires_ms = ?3, \
                     key_hash = ?4 WHERE id = ?1",
                    params![id, until.map(|_| old.current.to_vec()), until, &hash[..]],
                )
            })?;
            if let Some((before, _)) = old.previous {
                merchants.by_key_hash.remove(&before);
            }
            if until.is_none() {
                merchants.by_key_hash.remove(&old.current);
            }
            merchants.by_key_hash.insert(hash, merchant.clone());
            merchants.keys.insert(
                id,
                Keys {
                    current: hash,
                    previous: until.map(|u| (old.current, u)),
                },
            );
            Ok(Some(RolledKey {
                merchant: (*merchant).clone(),
                key,
                previous_key_expires_ms: until,
            }))
        })
    }

    fn write(&self, request: WriteRequest) -> BoxFuture<'_, Result<StoredResponse, StoreError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.shard(&request.merchant)
                .writer
                .send(writer::Job { request, reply })?;
            answer
                .await
                .map_err(|_| StoreError::Unavailable("the shard writer has stopped".into()))?
        })
    }

    fn payment(
        &self,
        merchant: Arc<Merchant>,
        id: String,
    ) -> BoxFuture<'_, Result<Option<Payment>, StoreError>> {
        let shard = Arc::clone(self.shard(&merchant));
        Box::pin(async move {
            shard
                .read(move |c| load_payment(c, &merchant.id, &id))
                .await
        })
    }

    fn list_payments(
        &self,
        merchant: Arc<Merchant>,
        starting_after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<(Vec<Payment>, bool), StoreError>> {
        let shard = Arc::clone(self.shard(&merchant));
        Box::pin(async move {
            shard
                .read(move |c| {
                    // Ids are time-ordered, so "older than the cursor" is "id < cursor".
                    let cursor = starting_after.unwrap_or_else(|| "pay_g".to_string());
                    let mut stmt = c.prepare_cached(&format!(
                        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE merchant_id = ?1 AND id < ?2 \
                         ORDER BY id DESC LIMIT ?3"
                    ))?;
                    let mut rows = stmt.query(params![merchant.id, cursor, (limit + 1) as i64])?;
                    let mut page = Vec::with_capacity(limit + 1);
                    while let Some(row) = rows.next()? {
                        page.push(payment_from_row(row)??);
                    }
                    let has_more = page.len() > limit;
                    page.truncate(limit);
                    Ok((page, has_more))
                })
                .await
        })
    }

    fn payments_with_key_prefix(
        &self,
        merchant: Arc<Merchant>,
        key_prefix: String,
        starting_after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<KeyedPage, StoreError>> {
        let shard = Arc::clone(self.shard(&merchant));
        Box::pin(async move {
            shard
                .read(move |c| {
                    // The primary key's range for the merchant, the prefix as a filter:
                    // no index on keys is kept for this (it would cost every write).
                    let mut stmt = c.prepare_cached(&format!(
                        "SELECT {PAYMENT_COLUMNS}, idempotency_key FROM payments \
                         WHERE merchant_id = ?1 AND id > ?2 \
                         AND substr(idempotency_key, 1, ?3) = ?4 ORDER BY id LIMIT ?5"
                    ))?;
                    let mut rows = stmt.query(params![
                        merchant.id,
                        starting_after.unwrap_or_default(),
                        key_prefix.chars().count() as i64,
                        key_prefix,
                        (limit + 1) as i64
                    ])?;
                    let mut page = Vec::with_capacity(limit + 1);
                    while let Some(row) = rows.next()? {
                        let key: String = row.get(12)?;
                        page.push((payment_from_row(row)??, key));
                    }
                    let has_more = page.len() > limit;
                    page.truncate(limit);
                    Ok((page, has_more))
                })
                .await
        })
    }

    fn balance(
        &self,
        merchant: Arc<Merchant>,
    ) -> BoxFuture<'_, Result<Vec<BalanceLine>, StoreError>> {
        let shard = Arc::clone(self.shard(&merchant));
        Box::pin(async move {
            shard
                .read(move |c| {
                    let mut stmt = c.prepare_cached(
                        "SELECT currency, account, amount FROM balances WHERE merchant_id = ?1 ORDER BY currency",
                    )?;
                    let rows = stmt
                        .query_map(params![merchant.id], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(balance_lines(rows))
                })
                .await
        })
    }

    fn audit(&self) -> BoxFuture<'_, Result<AuditReport, StoreError>> {
        Box::pin(async move {
            let merchants = self
                .merchants
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .by_id
                .len() as u64;
            let mut parts = Vec::with_capacity(self.shards.len());
            let since_ms = crate::store::retention::expired_before_ms(self.retention, now_ms());
            for shard in &self.shards {
                parts.push(shard.read(move |c| audit::audit_shard(c, since_ms)).await?);
            }
            Ok(crate::store::audit::combine(parts, merchants))
        })
    }

    fn ready(&self) -> bool {
        self.shards.iter().all(|s| s.writer.is_open())
    }

    fn shutdown(&self) {
        for shard in &self.shards {
            let pruner = shard
                .pruner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some((stop, handle)) = pruner {
                drop(stop);
                let _ = handle.join();
            }
        }
        for shard in &self.shards {
            shard.writer.close();
        }
        for shard in &self.shards {
            if let Some(handle) = shard
                .writer_thread
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                let _ = handle.join();
            }
        }
    }
}
