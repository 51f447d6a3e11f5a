//! Live figures for the progress bar, updated by every request: counts and a coarse
//! log-scale latency histogram of atomics (no locks on the request path).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Four buckets per power of two from 16 µs: ~19% resolution, up to ~4.6 hours.
const SUB_BUCKETS: u32 = 4;
const BUCKETS: usize = 4 * 40;
const FLOOR_US: u64 = 16;

pub struct LiveStats {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: Vec<AtomicU64>,
}

impl Default for LiveStats {
    fn default() -> Self {
        LiveStats {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn bucket(us: u64) -> usize {
    let us = us.max(FLOOR_US);
    let log2 = 63 - us.leading_zeros();
    let sub = ((us >> log2.saturating_sub(2)) & (SUB_BUCKETS as u64 - 1)) as u32;
    let i = (log2 - FLOOR_US.trailing_zeros()) * SUB_BUCKETS + sub;
    (i as usize).min(BUCKETS - 1)
}

fn bucket_upper_us(i: usize) -> u64 {
    let log2 = i as u32 / SUB_BUCKETS + FLOOR_US.trailing_zeros();
    let sub = (i as u32 % SUB_BUCKETS) as u64;
    let base = 1u64 << log2;
    base + (sub + 1) * (base / SUB_BUCKETS as u64)
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    pub requests: u64,
    pub errors: u64,
    pub p99: Duration,
}

impl LiveStats {
    pub fn record(&self, latency: Duration, ok: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[bucket(latency.as_micros() as u64)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let counts: Vec<u64> = self
            .latency
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let target = (total as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        let mut p99 = Duration::ZERO;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if total > 0 && seen >= target {
                p99 = Duration::from_micros(bucket_upper_us(i));
                break;
            }
        }
        Snapshot {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            p99,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_lands_in_the_right_bucket() {
        let live = LiveStats::default();
        for _ in 0..990 {
            live.record(Duration::from_micros(500), true);
        }
        for _ in 0..10 {
            live.record(Duration::from_millis(80), false);
        }
        let s = live.snapshot();
        assert_eq!((s.requests, s.errors), (1000, 10));
        assert!(
            s.p99 >= Duration::from_micros(500) && s.p99 < Duration::from_micros(700),
            "{:?}",
            s.p99
        );
        live.record(Duration::from_millis(80), true);
        assert!(live.snapshot().p99 >= Duration::from_millis(80));
        assert!(live.snapshot().p99 < Duration::from_millis(100));
    }
}
