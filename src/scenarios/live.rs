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
        let m = self.mark();
        Snapshot {
            requests: m.requests,
            errors: m.errors,
            p99: p99(&m.latency),
        }
    }

    pub fn mark(&self) -> Mark {
        Mark {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            latency: self
                .latency
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// The figures at one moment, to be subtracted from a later one: what a window of the
/// run (a fault, say) saw on its own.
#[derive(Clone, Debug)]
pub struct Mark {
    requests: u64,
    errors: u64,
    latency: Vec<u64>,
}

/// Requests, failures and p99 between two marks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Window {
    pub requests: u64,
    pub errors: u64,
    pub p99: Duration,
    /// The slowest request's bucket (its upper bound).
    pub max: Duration,
}

impl Mark {
    pub fn errors(&self) -> u64 {
        self.errors
    }

    pub fn requests(&self) -> u64 {
        self.requests
    }

    pub fn since(&self, earlier: &Mark) -> Window {
        let counts: Vec<u64> = self
            .latency
            .iter()
            .zip(&earlier.latency)
            .map(|(now, then)| now.saturating_sub(*then))
            .collect();
        Window {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            p99: p99(&counts),
            max: counts
                .iter()
                .rposition(|c| *c > 0)
                .map_or(Duration::ZERO, |i| {
                    Duration::from_micros(bucket_upper_us(i))
                }),
        }
    }
}

fn p99(counts: &[u64]) -> Duration {
    let total: u64 = counts.iter().sum();
    let target = (total as f64 * 0.99).ceil() as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if total > 0 && seen >= target {
            return Duration::from_micros(bucket_upper_us(i));
        }
    }
    Duration::ZERO
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

    #[test]
    fn a_window_sees_only_its_own_requests() {
        let live = LiveStats::default();
        for _ in 0..1000 {
            live.record(Duration::from_millis(900), false);
        }
        let before = live.mark();
        for _ in 0..100 {
            live.record(Duration::from_micros(300), true);
        }
        live.record(Duration::from_millis(5), false);
        let w = live.mark().since(&before);
        assert_eq!((w.requests, w.errors), (101, 1));
        assert!(w.p99 < Duration::from_micros(400), "{:?}", w.p99);
        assert!(w.max >= Duration::from_millis(5) && w.max < Duration::from_millis(7));
    }
}
