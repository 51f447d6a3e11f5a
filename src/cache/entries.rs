//! What a cache entry holds, how long it lives, and how it is encoded: one format shared
//! by the API (`store.rs`), `cache seed` and `cache verify`, so a seeded entry is exactly
//! what the API would have cached.

use crate::ledger::{Currency, Payment, PaymentStatus};
use crate::store::Merchant;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How long a cached API key stays trusted at most: also how long past a grace period's
/// end an old key may still be accepted by an instance that cached it.
pub const KEY_TTL: Duration = Duration::from_secs(5);
/// Cached payments: a payment changed behind the cache's back (not through the API)
/// reads stale this long at most. Every change through the API replaces its entry with
/// `CHANGED` at once, so this bounds nothing the API does.
pub const PAYMENT_TTL: Duration = Duration::from_secs(600);
/// What a change through the API leaves in a payment's entry, for `CHANGED_TTL`: a fill
/// only writes where nothing is (SET NX), so a read that fetched the payment before the
/// change cannot put the old state back after it. Reads treat it as a miss.
pub const CHANGED: &[u8] = b"changed";
/// Longer than any gap between a fill's store read and its SET (each Redis call gives up
/// after `client::CALL_TIMEOUT`, 50 ms).
pub const CHANGED_TTL: Duration = Duration::from_secs(2);
/// Cached idempotent answers: well inside the store's retention (24 h by default).
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(3_600);
/// A merchant's key generation outlives every key entry tagged with it (`KEY_TTL`) by
/// far, so letting it expire (and restart from 0) can never revive an old entry.
pub const GENERATION_TTL: Duration = Duration::from_secs(3_600);
/// Each TTL is shortened by up to this fraction, at random.
pub const TTL_JITTER: f64 = 0.1;

/// An API key's entry: the merchant, tagged with the key generation it was cached under.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedMerchant {
    pub generation: u64,
    pub id: String,
    pub name: String,
    pub bucket: u16,
    pub shard: usize,
    pub created_ms: i64,
}

impl CachedMerchant {
    pub fn of(m: &Merchant, generation: u64) -> CachedMerchant {
        CachedMerchant {
            generation,
            id: m.id.clone(),
            name: m.name.clone(),
            bucket: m.bucket,
            shard: m.shard,
            created_ms: m.created_ms,
        }
    }

    pub fn merchant(self) -> Merchant {
        Merchant {
            id: self.id,
            name: self.name,
            bucket: self.bucket,
            shard: self.shard,
            created_ms: self.created_ms,
        }
    }
}

/// An idempotent answer the store committed, with the fingerprint of the request it
/// answered (hex): a replay is served only to the same request.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedAnswer {
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
}

/// A payment's entry: its fields as the store has them (no card number: the ledger never
/// holds one).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedPayment {
    pub id: String,
    pub merchant_id: String,
    pub amount: u64,
    pub currency: String,
    pub status: String,
    pub amount_captured: u64,
    pub amount_refunded: u64,
    pub card_brand: String,
    pub card_last4: String,
    pub card_fingerprint: String,
    pub failure_code: Option<String>,
    pub created_ms: i64,
}

impl CachedPayment {
    pub fn of(p: &Payment) -> CachedPayment {
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
    pub fn payment(self) -> Option<Payment> {
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
pub fn cached_merchant(looked: Option<&(u64, Option<Vec<u8>>)>, id: &str) -> Option<Arc<Merchant>> {
    let (generation, Some(bytes)) = looked? else {
        return None;
    };
    let m = serde_json::from_slice::<CachedMerchant>(bytes).ok()?;
    (m.generation == *generation && m.id == id).then(|| Arc::new(m.merchant()))
}

/// A TTL in ms, shortened by up to `TTL_JITTER` at random so entries filled together do
/// not expire together.
pub fn jittered(ttl: Duration) -> u64 {
    let cut = rand::random::<f64>() * TTL_JITTER;
    ((ttl.as_millis() as f64) * (1.0 - cut)).max(1.0) as u64
}
