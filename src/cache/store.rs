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
//!   per key however many requests miss together). After any change to it commits, the
//!   entry is replaced by a short `CHANGED` mark, and fills only write where nothing is
//!   (SET NX): a read that fetched the payment before the change cannot put the old state
//!   back after it, and the next read fills from what committed.
//!
//! Keys carry the merchant in a hash tag (`paytool:{mer_...}:...`): one merchant's keys
//! share a Redis Cluster slot. TTLs have jitter so entries filled together do not expire
//! together. A stale entry is stale for at most its TTL.

use super::client::RedisClient;
use super::entries::{
    CHANGED, CHANGED_TTL, CachedAnswer, CachedMerchant, CachedPayment, GENERATION_TTL,
    IDEMPOTENCY_TTL, KEY_TTL, PAYMENT_TTL, cached_merchant, jittered,
};
use super::keys::Keys;
use crate::ledger::Payment;
use crate::secrets::{Secret, hash_key, merchant_id_in_key};
use crate::store::KeyedPage;
use crate::store::{
    AuditReport, BalanceLine, BoxFuture, Merchant, Mutation, RolledKey, Store, StoreError,
    StoredResponse, WriteRequest,
};
use redis::AsyncCommands;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct CachedStore {
    inner: Arc<dyn Store>,
    redis: RedisClient,
    keys: Keys,
    /// Entries (payments, API keys) being filled from the store right now: one store
    /// read per entry however many requests missed it together.
    filling: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
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

    /// Set only where nothing is: a fill never overwrites a newer entry or a `CHANGED`
    /// mark.
    async fn set_if_absent(&self, key: String, value: Vec<u8>, ttl: Duration) {
        let ms = jittered(ttl);
        self.redis
            .call("set_nx", |mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(ms)
                    .arg("NX")
                    .query_async::<()>(&mut c)
                    .await
            })
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

    /// The cached payment, only if it is the one asked for: a wrong entry (another
    /// merchant's, another id) is a miss, never shown.
    async fn cached_payment(&self, key: &str, merchant: &str, id: &str) -> Option<Payment> {
        let bytes = self.get(key).await?;
        serde_json::from_slice::<CachedPayment>(&bytes)
            .ok()
            .and_then(CachedPayment::payment)
            .filter(|p| p.merchant_id == merchant && p.id == id)
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
                if let Ok(bytes) = serde_json::to_vec(&CachedMerchant::of(m, generation)) {
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
                self.set(
                    self.keys.payment(&merchant, id),
                    CHANGED.to_vec(),
                    CHANGED_TTL,
                )
                .await;
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
            if let Some(p) = self.cached_payment(&key, &merchant.id, &id).await {
                counted("payment", true);
                return Ok(Some(p));
            }
            counted("payment", false);
            // One request reads the store; the others that missed with it wait, then
            // find what it cached.
            let lock = self.filler(&key);
            let _one = lock.lock().await;
            if let Some(p) = self.cached_payment(&key, &merchant.id, &id).await {
                return Ok(Some(p));
            }
            let found = self.inner.payment(merchant, id).await;
            if let Ok(Some(p)) = &found
                && let Ok(bytes) = serde_json::to_vec(&CachedPayment::of(p))
            {
                self.set_if_absent(key.clone(), bytes, PAYMENT_TTL).await;
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

    fn payments_with_key_prefix(
        &self,
        merchant: Arc<Merchant>,
        key_prefix: String,
        starting_after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<KeyedPage, StoreError>> {
        self.inner
            .payments_with_key_prefix(merchant, key_prefix, starting_after, limit)
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
