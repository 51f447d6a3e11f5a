//! `CachedStore`: the store with Redis in front, for the reads that dominate a payment
//! API's traffic. The store stays the source of truth for money: the cache only ever
//! answers a read or replays an answer the store committed, and every write goes to the
//! store.
//! - API keys: `{merchant}:key:<hash>` -> the merchant, tagged with the merchant's key
//!   generation `{merchant}:gen`, which a key roll increments: every instance's entry for
//!   the old key is dead at once (when Redis is down at the roll, entries live out their
//!   5 s TTL). A miss asks the store past its own in-process cache, once per entry.
//! - Idempotency replays: `{merchant}:idem:<key>` -> the stored answer, written after the
//!   store committed it. A replay is served only when the request's fingerprint matches;
//!   anything else (a miss, another body) goes to the store, which decides.
//! - Payment reads: `{merchant}:pay:<id>` -> the payment, read through (one store read
//!   per key however many requests miss together) and deleted after any change to it, so
//!   the next read fills it from what committed.
//!
//! Keys carry the merchant in a hash tag (`paytool:{mer_...}:...`): one merchant's keys
//! share a Redis Cluster slot. TTLs have jitter so entries filled together do not expire
//! together. A stale entry is stale for at most its TTL.

use super::client::RedisClient;
use super::keys::Keys;
use crate::ledger::{Currency, Payment, PaymentStatus};
use crate::secrets::{Secret, hash_key, merchant_id_in_key};
use crate::store::{
    AuditReport, BalanceLine, BoxFuture, Merchant, Mutation, RolledKey, Store, StoreError,
    StoredResponse, WriteRequest,
};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a cached API key stays trusted at most: also how long past a grace period's
/// end an old key may still be accepted by an instance that cached it.
pub const KEY_TTL: Duration = Duration::from_secs(5);
/// Cached payments: a payment changed behind the cache's back reads stale this long at
/// most (every change through the API deletes its entry at once).
pub const PAYMENT_TTL: Duration = Duration::from_secs(60);
/// Cached idempotent answers: well inside the store's retention (24 h by default).
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(3_600);
/// A merchant's key generation outlives every key entry tagged with it (`KEY_TTL`) by
/// far, so letting it expire (and restart from 0) can never revive an old entry.
pub const GENERATION_TTL: Duration = Duration::from_secs(3_600);
/// Each TTL is shortened by up to this fraction, at random.
pub const TTL_JITTER: f64 = 0.1;

pub struct CachedStore {
    inner: Arc<dyn Store>,
    redis: RedisClient,
    keys: Keys,
    /// Entries (payments, API keys) being filled from the store right now: one store
    /// read per entry however many requests missed it together.
    filling: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Serialize, Deserialize)]
struct CachedMerchant {
    generation: u64,
    id: String,
    name: String,
    bucket: u16,
    shard: usize,
    created_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct CachedAnswer {
    fingerprint: String,
    status: u16,
    body: String,
}

#[derive(Serialize, Deserialize)]
struct CachedPayment {
    id: String,
    merchant_id: String,
    amount: u64,
    currency: String,
    status: String,
    amount_captured: u64,
    amount_refunded: u64,
    card_brand: String,
    card_last4: String,
    card_fingerprint: String,
    failure_code: Option<String>,
    created_ms: i64,
}

impl CachedPayment {
    fn of(p: &Payment) -> CachedPayment {
        CachedPayment {
            id: p.id.clone(),
            merchant_id: p.merchant_id.clone(),
            amount: p.amount,
            currency: p.currency.code().to_string(),
            status: p.status.as_str().to_string(),
            amount_captured: p.amount_captured,
            amount_refunded: p.amount_refunded,
            card_brand: p.card_brand.clone(),
            card_last4: p.card_last4.clone(),
            card_fingerprint: p.card_fingerprint.clone(),
            failure_code: p.failure_code.clone(),
            created_ms: p.created_ms,
        }
    }

    /// The payment, if the entry is one the ledger accepts (a damaged entry is a miss).
    fn payment(self) -> Option<Payment> {
        let p = Payment {
            id: self.id,
            merchant_id: self.merchant_id,
            amount: self.amount,
            currency: Currency::parse(&self.currency).ok()?,
            status: PaymentStatus::parse(&self.status)?,
            amount_captured: self.amount_captured,
            amount_refunded: self.amount_refunded,
            card_brand: self.card_brand,
            card_last4: self.card_last4,
            card_fingerprint: self.card_fingerprint,
            failure_code: self.failure_code,
            created_ms: self.created_ms,
        };
        p.check().ok()?;
        Some(p)
    }
}

/// The merchant a key entry names, if it is there and of the merchant's current key
/// generation (an entry from before a roll is dead).
fn cached_merchant(looked: Option<&(u64, Option<Vec<u8>>)>, id: &str) -> Option<Arc<Merchant>> {
    let (generation, Some(bytes)) = looked? else {
        return None;
    };
    let m = serde_json::from_slice::<CachedMerchant>(bytes).ok()?;
    (m.generation == *generation && m.id == id).then(|| {
        Arc::new(Merchant {
            id: m.id,
            name: m.name,
            bucket: m.bucket,
            shard: m.shard,
            created_ms: m.created_ms,
        })
    })
}

fn jittered(ttl: Duration) -> u64 {
    let cut = rand::random::<f64>() * TTL_JITTER;
    ((ttl.as_millis() as f64) * (1.0 - cut)).max(1.0) as u64
}

fn counted(kind: &'static str, hit: bool) {
    let result = if hit { "hit" } else { "miss" };
    metrics::counter!("paytool_cache_requests_total", "kind" => kind, "result" => result)
        .increment(1);
}

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>, redis: RedisClient, prefix: &str) -> CachedStore {
        CachedStore {
            inner,
            redis,
            keys: Keys::new(prefix),
            filling: Mutex::new(HashMap::new()),
        }
    }

    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let key = key.to_string();
        self.redis
            .call("get", |mut c| async move {
                c.get::<_, Option<Vec<u8>>>(key).await
            })
            .await
            .flatten()
    }

    async fn set(&self, key: String, value: Vec<u8>, ttl: Duration) {
        let ms = jittered(ttl);
        self.redis
            .call("set", |mut c| async move {
                c.pset_ex::<_, _, ()>(key, value, ms).await
            })
            .await;
    }

    async fn del(&self, key: String) {
        self.redis
            .call("del", |mut c| async move { c.del::<_, ()>(key).await })
            .await;
    }

    /// The merchant's key generation (0 before any roll) and the cached entry for this
    /// key, in one round trip.
    async fn key_entry(&self, merchant: &str, hash: &[u8; 32]) -> Option<(u64, Option<Vec<u8>>)> {
        let (entry, generation) = (
            self.keys.api_key(merchant, hash),
            self.keys.generation(merchant),
        );
        self.redis
            .call("mget", |mut c| async move {
                c.mget::<_, (Option<Vec<u8>>, Option<u64>)>(&[entry, generation])
                    .await
            })
            .await
            .map(|(e, g)| (g.unwrap_or(0), e))
    }

    /// The lock one filler of `key` holds while it reads the store.
    fn filler(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.filling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    fn filled(&self, key: &str) {
        self.filling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    async fn cached_payment(&self, key: &str) -> Option<Payment> {
        let bytes = self.get(key).await?;
        serde_json::from_slice::<CachedPayment>(&bytes)
            .ok()
            .and_then(CachedPayment::payment)
    }
}

impl Store for CachedStore {
    fn create_merchant(
        &self,
        name: String,
    ) -> BoxFuture<'_, Result<(Merchant, Secret), StoreError>> {
        self.inner.create_merchant(name)
    }

    fn authenticate(
        &self,
        api_key: &str,
    ) -> BoxFuture<'_, Result<Option<Arc<Merchant>>, StoreError>> {
        let hash = hash_key(api_key);
        let id = merchant_id_in_key(api_key);
        let api_key = api_key.to_string();
        Box::pin(async move {
            let Some(id) = id else {
                return self.inner.authenticate(&api_key).await;
            };
            let looked = self.key_entry(&id, &hash).await;
            if let Some(m) = cached_merchant(looked.as_ref(), &id) {
                counted("api_key", true);
                return Ok(Some(m));
            }
            counted("api_key", false);
            // Redis down: the store's own lookup, its in-process cache included.
            if looked.is_none() {
                return self.inner.authenticate(&api_key).await;
            }
            // One request reads the store; the others that missed with it wait, then
            // find what it cached.
            let entry_key = self.keys.api_key(&id, &hash);
            let lock = self.filler(&entry_key);
            let _one = lock.lock().await;
            let looked = self.key_entry(&id, &hash).await;
            if let Some(m) = cached_merchant(looked.as_ref(), &id) {
                return Ok(Some(m));
            }
            let found = self.inner.authenticate_fresh(&api_key).await;
            if let (Ok(Some(m)), Some((generation, _))) = (&found, looked) {
                let entry = CachedMerchant {
                    generation,
                    id: m.id.clone(),
                    name: m.name.clone(),
                    bucket: m.bucket,
                    shard: m.shard,
                    created_ms: m.created_ms,
                };
                if let Ok(bytes) = serde_json::to_vec(&entry) {
                    self.set(entry_key.clone(), bytes, KEY_TTL).await;
                }
            }
            self.filled(&entry_key);
            found
        })
    }

    fn merchant(&self, id: &str) -> BoxFuture<'_, Result<Option<Arc<Merchant>>, StoreError>> {
        self.inner.merchant(id)
    }

    fn roll_key(
        &self,
        merchant_id: &str,
        grace: Option<Duration>,
    ) -> BoxFuture<'_, Result<Option<RolledKey>, StoreError>> {
        let id = merchant_id.to_string();
        Box::pin(async move {
            let rolled = self.inner.roll_key(&id, grace).await?;
            if rolled.is_some() {
                // Every instance's cached entry for the merchant's keys is dead from here.
                let generation = self.keys.generation(&id);
                let ttl = GENERATION_TTL.as_millis() as i64;
                self.redis
                    .call("incr", |mut c| async move {
                        redis::pipe()
                            .incr(&generation, 1)
                            .ignore()
                            .pexpire(&generation, ttl)
                            .ignore()
                            .query_async::<()>(&mut c)
                            .await
                    })
                    .await;
            }
            Ok(rolled)
        })
    }

    fn write(&self, request: WriteRequest) -> BoxFuture<'_, Result<StoredResponse, StoreError>> {
        Box::pin(async move {
            let merchant = request.merchant.id.clone();
            let idem = request.idempotency.clone();
            // The payment a write changes; a new one has no entry to delete (its id is
            // fresh), so a create costs no extra Redis call.
            let changed = match &request.mutation {
                Mutation::Create { .. } => None,
                Mutation::Capture { payment_id, .. }
                | Mutation::Cancel { payment_id }
                | Mutation::Refund { payment_id, .. } => Some(payment_id.clone()),
            };
            if let Some(idem) = &idem {
                let key = self.keys.idempotency(&merchant, &idem.key);
                let cached = self
                    .get(&key)
                    .await
                    .and_then(|b| serde_json::from_slice::<CachedAnswer>(&b).ok());
                match cached {
                    Some(a) if a.fingerprint == hex::encode(idem.request_fingerprint) => {
                        counted("idempotency", true);
                        return Ok(StoredResponse {
                            status: a.status,
                            body: a.body.into_bytes(),
                            replayed: true,
                        });
                    }
                    // A miss, or another request under the key: the store decides.
                    _ => counted("idempotency", false),
                }
            }
            let response = self.inner.write(request).await?;
            if let (false, Some(id)) = (response.replayed, &changed) {
                self.del(self.keys.payment(&merchant, id)).await;
            }
            if let (Some(idem), Ok(body)) = (&idem, String::from_utf8(response.body.clone())) {
                let answer = CachedAnswer {
                    fingerprint: hex::encode(idem.request_fingerprint),
                    status: response.status,
                    body,
                };
                if let Ok(bytes) = serde_json::to_vec(&answer) {
                    self.set(
                        self.keys.idempotency(&merchant, &idem.key),
                        bytes,
                        IDEMPOTENCY_TTL,
                    )
                    .await;
                }
            }
            Ok(response)
        })
    }

    fn payment(
        &self,
        merchant: Arc<Merchant>,
        id: String,
    ) -> BoxFuture<'_, Result<Option<Payment>, StoreError>> {
        Box::pin(async move {
            let key = self.keys.payment(&merchant.id, &id);
            if let Some(p) = self.cached_payment(&key).await {
                counted("payment", true);
                return Ok(Some(p));
            }
            counted("payment", false);
            // One request reads the store; the others that missed with it wait, then
            // find what it cached.
            let lock = self.filler(&key);
            let _one = lock.lock().await;
            if let Some(p) = self.cached_payment(&key).await {
                return Ok(Some(p));
            }
            let found = self.inner.payment(merchant, id).await;
            if let Ok(Some(p)) = &found
                && let Ok(bytes) = serde_json::to_vec(&CachedPayment::of(p))
            {
                self.set(key.clone(), bytes, PAYMENT_TTL).await;
            }
            self.filled(&key);
            found
        })
    }

    fn list_payments(
        &self,
        merchant: Arc<Merchant>,
        starting_after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<(Vec<Payment>, bool), StoreError>> {
        self.inner.list_payments(merchant, starting_after, limit)
    }

    fn balance(
        &self,
        merchant: Arc<Merchant>,
    ) -> BoxFuture<'_, Result<Vec<BalanceLine>, StoreError>> {
        self.inner.balance(merchant)
    }

    fn audit(&self) -> BoxFuture<'_, Result<AuditReport, StoreError>> {
        self.inner.audit()
    }

    fn ready(&self) -> bool {
        self.inner.ready()
    }

    fn shutdown(&self) {
        self.inner.shutdown()
    }
}
