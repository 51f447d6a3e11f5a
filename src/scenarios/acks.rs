//! The acknowledgement log: every 2xx (and every recorded 402) the API gave for a
//! payment, the latest state it acknowledged, and any change still unanswered.

use super::replies::{PaymentSeen, RefundSeen};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

const SHARDS: usize = 32;

/// A change sent and not yet answered: at the end of a run it may or may not have
/// committed, and the audit accepts either.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Pending {
    Capture { amount: u64 },
    Cancel,
    Refund { amount: u64 },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Acked {
    pub id: String,
    pub merchant: usize,
    pub idempotency_key: String,
    pub amount: u64,
    pub currency: String,
    pub status: String,
    pub amount_captured: u64,
    pub amount_refunded: u64,
    pub pending: Option<Pending>,
}

impl Acked {
    /// The state the pending change would lead to, had it committed.
    pub fn if_pending_committed(&self) -> Option<Acked> {
        let mut next = self.clone();
        next.pending = None;
        match self.pending.as_ref()? {
            Pending::Capture { amount } => {
                next.status = "succeeded".into();
                next.amount_captured = *amount;
            }
            Pending::Cancel => next.status = "canceled".into(),
            Pending::Refund { amount } => next.amount_refunded += amount,
        }
        Some(next)
    }
}

#[derive(Default)]
pub struct AckLog {
    shards: Vec<Mutex<HashMap<String, Acked>>>,
}

impl AckLog {
    pub fn new() -> Self {
        AckLog {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, id: &str) -> std::sync::MutexGuard<'_, HashMap<String, Acked>> {
        let h = id
            .bytes()
            .rev()
            .take(8)
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        self.shards[h % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A payment object the API returned on creation.
    pub fn created(&self, merchant: usize, key: &str, payment: &PaymentSeen) {
        let acked = Acked {
            id: payment.id.clone(),
            merchant,
            idempotency_key: key.to_string(),
            amount: payment.amount,
            currency: payment.currency.clone(),
            status: payment.status.clone(),
            amount_captured: payment.amount_captured,
            amount_refunded: payment.amount_refunded,
            pending: None,
        };
        self.shard(&payment.id).insert(payment.id.clone(), acked);
    }

    pub fn pending(&self, id: &str, change: Pending) {
        if let Some(a) = self.shard(id).get_mut(id) {
            a.pending = Some(change);
        }
    }

    /// A payment object returned by capture or cancel.
    pub fn updated(&self, payment: &PaymentSeen) {
        if let Some(a) = self.shard(&payment.id).get_mut(&payment.id) {
            a.status = payment.status.clone();
            a.amount_captured = payment.amount_captured;
            a.amount_refunded = payment.amount_refunded;
            a.pending = None;
        }
    }

    /// A refund object.
    pub fn refunded(&self, refund: &RefundSeen) {
        if let Some(a) = self.shard(&refund.payment).get_mut(&refund.payment) {
            a.amount_refunded += refund.amount;
            a.pending = None;
        }
    }

    /// The change was answered with an error: it did not happen.
    pub fn refused(&self, id: &str) {
        if let Some(a) = self.shard(id).get_mut(id) {
            a.pending = None;
        }
    }

    pub fn get(&self, id: &str) -> Option<Acked> {
        self.shard(id).get(id).cloned()
    }

    pub fn all(&self) -> Vec<Acked> {
        let mut all: Vec<Acked> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

/// Most creates kept waiting for an answer; beyond it they are only counted.
const UNANSWERED_MAX: usize = 100_000;

/// One create sent and not (yet) answered with a payment: what a client resends, with
/// the same Idempotency-Key, to learn its outcome.
#[derive(Clone, Debug)]
pub struct SentCreate {
    pub merchant: usize,
    pub key: String,
    pub body: serde_json::Value,
}

/// Creates in flight, and those left without a payment when their journey ended (no
/// answer, a 5xx, a refusal): at the end of a run each is resent once more with its key,
/// so the client knows every payment the store made for it.
#[derive(Default)]
pub struct Unanswered {
    /// Creates without an outcome yet, by key.
    sent: Mutex<HashMap<String, SentCreate>>,
    /// Creates without an outcome that did not fit in `sent`.
    overflow: std::sync::atomic::AtomicU64,
}

impl Unanswered {
    pub fn sent(&self, create: SentCreate) {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        if sent.len() >= UNANSWERED_MAX {
            self.overflow
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        sent.insert(create.key.clone(), create);
    }

    /// The create under `key` has its outcome (a payment, or certainly none). Each key
    /// is answered at most once, so one not in the set was one not kept: it no longer
    /// counts as unresolved.
    pub fn answered(&self, key: &str) {
        let kept = self
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)
            .is_some();
        if !kept {
            let _ = self.overflow.fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |n| n.checked_sub(1),
            );
        }
    }

    /// Every create still without a payment, and how many more were not kept.
    pub fn take(&self) -> (Vec<SentCreate>, u64) {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<SentCreate> = sent.drain().map(|(_, c)| c).collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        (
            all,
            self.overflow.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod unanswered_tests {
    use super::*;

    #[test]
    fn a_create_not_kept_stops_counting_once_answered() {
        let u = Unanswered::default();
        for i in 0..UNANSWERED_MAX + 3 {
            u.sent(SentCreate {
                merchant: 0,
                key: format!("k{i}"),
                body: serde_json::Value::Null,
            });
        }
        // Two of the three not kept get their outcome; one kept one does too.
        u.answered(&format!("k{}", UNANSWERED_MAX));
        u.answered(&format!("k{}", UNANSWERED_MAX + 1));
        u.answered("k0");
        let (kept, overflow) = u.take();
        assert_eq!((kept.len(), overflow), (UNANSWERED_MAX - 1, 1));
    }
}
