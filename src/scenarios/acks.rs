//! The acknowledgement log: every 2xx (and every recorded 402) the API gave for a
//! payment, the latest state it acknowledged, and any change still unanswered. A long
//! run at full rate logs millions of payments, so each is a compact record (about 90
//! bytes with its map slot): the id as 16 bytes, the key as its number under the run's
//! prefix, codes and statuses as bytes.

use super::replies::{CurrencyCode, PaymentId, PaymentSeen, RefundSeen, Status};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

const SHARDS: usize = 32;

/// An Idempotency-Key this run made: the run's prefix, `-`, and a number. The log keeps
/// only the number.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RunKey {
    number: u64,
    text: String,
}

impl RunKey {
    pub fn new(prefix: &str, number: u64) -> RunKey {
        RunKey {
            number,
            text: key_text(prefix, number),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn key_text(prefix: &str, number: u64) -> String {
    format!("{prefix}-{number}")
}

/// The prefix every key of a run starts with (`key_text`'s, up to the number): what the
/// audit asks the store for.
pub fn keys_prefix(prefix: &str) -> String {
    format!("{prefix}-")
}

/// A change sent and not yet answered: at the end of a run it may or may not have
/// committed, and the audit accepts either.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Pending {
    Capture { amount: u64 },
    Cancel,
    Refund { amount: u64 },
}

/// One acknowledged payment, as reports and the audit read it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Acked {
    pub id: PaymentId,
    pub merchant: usize,
    pub idempotency_key: String,
    pub amount: u64,
    pub currency: CurrencyCode,
    pub status: Status,
    pub amount_captured: u64,
    pub amount_refunded: u64,
    pub pending: Option<Pending>,
}

impl Acked {
    /// The state the pending change would lead to, had it committed.
    pub fn if_pending_committed(&self) -> Option<Acked> {
        let mut next = self.clone();
        next.pending = None;
        match self.pending? {
            Pending::Capture { amount } => {
                next.status = Status::Succeeded;
                next.amount_captured = amount;
            }
            Pending::Cancel => next.status = Status::Canceled,
            Pending::Refund { amount } => next.amount_refunded += amount,
        }
        Some(next)
    }
}

/// What the log keeps per payment (the id is the map's key).
#[derive(Clone, Debug)]
struct Record {
    merchant: u32,
    key: u64,
    amount: u64,
    amount_captured: u64,
    amount_refunded: u64,
    pending: Option<Pending>,
    currency: CurrencyCode,
    status: Status,
}

pub struct AckLog {
    /// The run's key prefix, to give each payment's key back whole.
    prefix: String,
    shards: Vec<Mutex<HashMap<PaymentId, Record>>>,
    /// Answers carrying a payment that journeys logged (a retry storm's several answers
    /// for one key each count), to hold against the 2xx answers the run counted.
    answers_logged: AtomicU64,
}

impl AckLog {
    pub fn new(prefix: &str) -> Self {
        AckLog {
            prefix: prefix.to_string(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            answers_logged: AtomicU64::new(0),
        }
    }

    fn shard(&self, id: &PaymentId) -> std::sync::MutexGuard<'_, HashMap<PaymentId, Record>> {
        // UUIDv7's low bits are random: a fair spread.
        let h = id.low_bits() as usize;
        self.shards[h % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A payment object the API returned on creation (or to the audit's resend).
    pub fn created(&self, merchant: usize, key: &RunKey, payment: &PaymentSeen) {
        let record = Record {
            merchant: merchant as u32,
            key: key.number,
            amount: payment.amount,
            amount_captured: payment.amount_captured,
            amount_refunded: payment.amount_refunded,
            pending: None,
            currency: payment.currency,
            status: payment.status,
        };
        self.shard(&payment.id).insert(payment.id, record);
    }

    /// `n` answers to creates carried a payment and were logged (see `answers_logged`).
    pub fn answers_logged(&self, n: u64) {
        self.answers_logged.fetch_add(n, Ordering::Relaxed);
    }

    pub fn answers_logged_count(&self) -> u64 {
        self.answers_logged.load(Ordering::Relaxed)
    }

    pub fn pending(&self, id: &PaymentId, change: Pending) {
        if let Some(a) = self.shard(id).get_mut(id) {
            a.pending = Some(change);
        }
    }

    /// A payment object returned by capture or cancel.
    pub fn updated(&self, payment: &PaymentSeen) {
        if let Some(a) = self.shard(&payment.id).get_mut(&payment.id) {
            a.status = payment.status;
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
    pub fn refused(&self, id: &PaymentId) {
        if let Some(a) = self.shard(id).get_mut(id) {
            a.pending = None;
        }
    }

    fn view(&self, id: PaymentId, r: &Record) -> Acked {
        Acked {
            id,
            merchant: r.merchant as usize,
            idempotency_key: key_text(&self.prefix, r.key),
            amount: r.amount,
            currency: r.currency,
            status: r.status,
            amount_captured: r.amount_captured,
            amount_refunded: r.amount_refunded,
            pending: r.pending,
        }
    }

    pub fn get(&self, id: &PaymentId) -> Option<Acked> {
        let shard = self.shard(id);
        shard.get(id).map(|r| self.view(*id, r))
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every payment, a shard at a time (no copy of the whole log is made).
    pub fn for_each(&self, mut f: impl FnMut(Acked)) {
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (id, r) in shard.iter() {
                f(self.view(*id, r));
            }
        }
    }

    /// Each merchant's acknowledged payment ids, in id order: what the audit walks beside
    /// the store's rows, which come in the same order.
    pub fn ids_by_merchant(&self, merchants: usize) -> Vec<Vec<PaymentId>> {
        let mut by = vec![Vec::new(); merchants];
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (id, r) in shard.iter() {
                if let Some(ids) = by.get_mut(r.merchant as usize) {
                    ids.push(*id);
                }
            }
        }
        for ids in &mut by {
            ids.sort_unstable();
        }
        by
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    fn seen(n: u128) -> PaymentSeen {
        serde_json::from_value(serde_json::json!({
            "id": format!("pay_{n:032x}"), "amount": 500, "currency": "eur",
            "status": "requires_capture", "amount_captured": 0, "amount_refunded": 0
        }))
        .unwrap()
    }

    #[test]
    fn the_log_gives_back_what_it_was_told_and_keeps_a_compact_record() {
        assert!(
            std::mem::size_of::<Record>() <= 64,
            "{}",
            std::mem::size_of::<Record>()
        );
        let log = AckLog::new("run1-s0");
        let (a, b) = (seen(7), seen(3));
        log.created(2, &RunKey::new("run1-s0", 41), &a);
        log.created(0, &RunKey::new("run1-s0", 42), &b);
        log.pending(&a.id, Pending::Capture { amount: 300 });
        let got = log.get(&a.id).unwrap();
        assert_eq!(got.idempotency_key, "run1-s0-41");
        assert_eq!((got.merchant, got.currency.as_str()), (2, "eur"));
        let later = got.if_pending_committed().unwrap();
        assert_eq!(
            (later.status, later.amount_captured),
            (Status::Succeeded, 300)
        );
        let by = log.ids_by_merchant(3);
        assert_eq!(by, vec![vec![b.id], vec![], vec![a.id]]);
        let mut n = 0;
        log.for_each(|_| n += 1);
        assert_eq!((n, log.len()), (2, 2));
    }
}

/// Most creates kept waiting for an answer; beyond it they are only counted.
const UNANSWERED_MAX: usize = 100_000;

/// One create sent and not (yet) answered with a payment: what a client resends, with
/// the same Idempotency-Key, to learn its outcome.
#[derive(Clone, Debug)]
pub struct SentCreate {
    pub merchant: usize,
    pub key: RunKey,
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
        sent.insert(create.key.as_str().to_string(), create);
    }

    /// The create under `key` has its outcome (a payment, or certainly none). Each key
    /// is answered at most once, so one not in the set was one not kept: it no longer
    /// counts as unresolved.
    pub fn answered(&self, key: &RunKey) {
        let kept = self
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key.as_str())
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
        all.sort_by_key(|c| c.key.number);
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
                key: RunKey::new("k", i as u64),
                body: serde_json::Value::Null,
            });
        }
        // Two of the three not kept get their outcome; one kept one does too.
        u.answered(&RunKey::new("k", UNANSWERED_MAX as u64));
        u.answered(&RunKey::new("k", UNANSWERED_MAX as u64 + 1));
        u.answered(&RunKey::new("k", 0));
        let (kept, overflow) = u.take();
        assert_eq!((kept.len(), overflow), (UNANSWERED_MAX - 1, 1));
    }
}
