//! The acknowledgement log: every 2xx (and every recorded 402) the API gave for a
//! payment, the latest state it acknowledged, and any change still unanswered.

use serde::{Deserialize, Serialize};
use serde_json::Value;
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

fn u(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or(0)
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
    pub fn created(&self, merchant: usize, key: &str, payment: &Value) {
        let Some(id) = payment["id"].as_str() else {
            return;
        };
        let acked = Acked {
            id: id.to_string(),
            merchant,
            idempotency_key: key.to_string(),
            amount: u(payment, "amount"),
            currency: payment["currency"].as_str().unwrap_or_default().to_string(),
            status: payment["status"].as_str().unwrap_or_default().to_string(),
            amount_captured: u(payment, "amount_captured"),
            amount_refunded: u(payment, "amount_refunded"),
            pending: None,
        };
        self.shard(id).insert(id.to_string(), acked);
    }

    pub fn pending(&self, id: &str, change: Pending) {
        if let Some(a) = self.shard(id).get_mut(id) {
            a.pending = Some(change);
        }
    }

    /// A payment object returned by capture or cancel.
    pub fn updated(&self, payment: &Value) {
        let Some(id) = payment["id"].as_str() else {
            return;
        };
        if let Some(a) = self.shard(id).get_mut(id) {
            a.status = payment["status"].as_str().unwrap_or_default().to_string();
            a.amount_captured = u(payment, "amount_captured");
            a.amount_refunded = u(payment, "amount_refunded");
            a.pending = None;
        }
    }

    /// A refund object.
    pub fn refunded(&self, refund: &Value) {
        let Some(id) = refund["payment"].as_str() else {
            return;
        };
        if let Some(a) = self.shard(id).get_mut(id) {
            a.amount_refunded += u(refund, "amount");
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
