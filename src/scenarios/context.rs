//! What the journeys share during one run (or one step of a capacity search): merchants
//! and their keys, the merchant sampler, the acknowledgement log, the live figures and
//! the idempotency keys. The load test makes one and hands it to every journey.

use super::acks::{AckLog, RunKey, Unanswered};
use super::cadence::CoMitigation;
use super::instances::Instances;
use super::live::LiveStats;
use super::record::{INTERVAL_DEFAULT, Recorder};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MerchantCreds {
    pub id: String,
    pub key: String,
}

/// Picks a merchant: uniformly, or Zipf (merchant k in proportion to 1/k^s), by a
/// precomputed cumulative distribution.
pub struct MerchantSampler {
    cdf: Vec<f64>,
}

impl MerchantSampler {
    pub fn new(count: usize, zipf_exponent: f64) -> Self {
        assert!(count > 0, "at least one merchant");
        let weights: Vec<f64> = (1..=count)
            .map(|k| 1.0 / (k as f64).powf(zipf_exponent))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        MerchantSampler { cdf }
    }

    /// `u` uniform in [0, 1).
    pub fn pick(&self, u: f64) -> usize {
        self.cdf
            .partition_point(|c| *c <= u)
            .min(self.cdf.len() - 1)
    }
}

pub struct RunContext {
    /// Where requests go: one base URL, or several instances behind no balancer.
    pub instances: Instances,
    pub merchants: Vec<MerchantCreds>,
    pub sampler: MerchantSampler,
    pub acks: AckLog,
    /// Creates without a payment yet (see `Unanswered`).
    pub unanswered: Unanswered,
    pub live: Arc<LiveStats>,
    /// Every request's latency, for the summary, the thresholds and the time series.
    pub recorder: Recorder,
    /// Retry-storm keys whose answers named different payments.
    pub storm_violations: Mutex<Vec<String>>,
    key_prefix: String,
    next_key: AtomicU64,
    payment_answers: AtomicU64,
    /// The closed model's coordinated-omission mitigation (see `cadence`).
    pub co_mitigation: CoMitigation,
    co_backfilled: AtomicU64,
}

/// A create's answer that carries the payment it made: a 2xx, or a decline's 402.
fn carries_a_new_payment(method: &str, name: &str, status: Option<u16>) -> bool {
    use super::names;
    method == "POST"
        && match name {
            names::PAYMENTS | names::RETRY | names::RETRY_IMPATIENT => {
                status.is_some_and(|s| (200..300).contains(&s))
            }
            names::DECLINE => status == Some(402),
            _ => false,
        }
}

impl RunContext {
    /// `key_prefix` makes the keys unique across runs against the same target.
    pub fn new(
        instances: Instances,
        merchants: Vec<MerchantCreds>,
        zipf_exponent: f64,
        key_prefix: &str,
    ) -> Self {
        RunContext {
            instances,
            sampler: MerchantSampler::new(merchants.len(), zipf_exponent),
            merchants,
            acks: AckLog::new(key_prefix),
            unanswered: Unanswered::default(),
            live: Arc::default(),
            recorder: Recorder::new(INTERVAL_DEFAULT),
            storm_violations: Mutex::default(),
            key_prefix: key_prefix.to_string(),
            next_key: AtomicU64::new(0),
            payment_answers: AtomicU64::new(0),
            co_mitigation: CoMitigation::Disabled,
            co_backfilled: AtomicU64::new(0),
        }
    }

    /// A fresh Idempotency-Key, unique across runs against the same target.
    pub fn new_key(&self) -> RunKey {
        RunKey::new(
            &self.key_prefix,
            self.next_key.fetch_add(1, Ordering::Relaxed),
        )
    }

    /// The run's key prefix (every key starts with `acks::keys_prefix` of it).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// One request ended: into the live figures and the histograms. `method` and
    /// `name` make the request name reports use ("POST /v1/payments").
    pub fn record(
        &self,
        method: &str,
        name: &str,
        latency: std::time::Duration,
        ok: bool,
        status: Option<u16>,
    ) {
        self.live.record(latency, ok);
        self.recorder
            .record(&format!("{method} {name}"), latency, ok, status);
        if carries_a_new_payment(method, name, status) {
            self.payment_answers.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request the user would have sent during a slow one (see `cadence`): into the
    /// histograms only (the live figures and the audit's counts see real requests).
    pub fn record_backfill(
        &self,
        method: &str,
        name: &str,
        latency: std::time::Duration,
        ok: bool,
        status: Option<u16>,
    ) {
        self.recorder
            .record(&format!("{method} {name}"), latency, ok, status);
        self.co_backfilled.fetch_add(1, Ordering::Relaxed);
    }

    /// Synthetic requests backfilled so far.
    pub fn co_backfilled(&self) -> u64 {
        self.co_backfilled.load(Ordering::Relaxed)
    }

    /// Answers to creates that carried a payment, counted as they arrived, apart from
    /// whatever the journeys made of them: the audit holds this against the log.
    pub fn payment_answers(&self) -> u64 {
        self.payment_answers.load(Ordering::Relaxed)
    }

    pub fn pick_merchant(&self) -> usize {
        self.sampler.pick(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_makes_hot_merchants() {
        let s = MerchantSampler::new(100, 1.2);
        let mut hits = vec![0u32; 100];
        for i in 0..100_000 {
            hits[s.pick(i as f64 / 100_000.0)] += 1;
        }
        assert!(
            hits[0] > 20 * hits[50].max(1),
            "{} vs {}",
            hits[0],
            hits[50]
        );
        let u = MerchantSampler::new(4, 0.0);
        assert_eq!(
            (u.pick(0.0), u.pick(0.3), u.pick(0.6), u.pick(0.99)),
            (0, 1, 2, 3)
        );
    }
}
