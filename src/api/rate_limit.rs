//! Per-merchant rate limiting: a token bucket per merchant, so one merchant's burst
//! cannot take the shard writer's and the server's time from all the others. Off unless
//! `serve --rate-limit` sets it. A request over the limit is refused with 429 before it
//! touches the store, with `Retry-After` and the limit in headers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Locks the buckets are spread over (by merchant id), so requests of different
/// merchants rarely wait on one another.
const SHARDS: usize = 16;
/// Buckets kept per lock at most; past it, the buckets full again (idle a while) go.
const BUCKETS_PER_SHARD_MAX: usize = 8_192;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Requests a second, sustained.
    pub per_second: f64,
    /// Requests at once after an idle spell.
    pub burst: f64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct RateLimiter {
    limit: RateLimit,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
}

/// A request over the limit: how long until one more would be let through.
#[derive(Debug, PartialEq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        assert!(
            limit.per_second > 0.0 && limit.burst >= 1.0,
            "checked by serve"
        );
        RateLimiter {
            limit,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Take one token from the merchant's bucket, or say how long until there is one.
    pub fn take(&self, merchant: &str, now: Instant) -> Result<(), Limited> {
        let shard = merchant
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
            % SHARDS;
        let mut buckets = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= BUCKETS_PER_SHARD_MAX && !buckets.contains_key(merchant) {
            let full_after = Duration::from_secs_f64(self.limit.burst / self.limit.per_second);
            buckets.retain(|_, b| now.duration_since(b.at) < full_after);
        }
        let limit = self.limit;
        let bucket = buckets.entry(merchant.to_string()).or_insert(Bucket {
            tokens: limit.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * limit.per_second;
        bucket.tokens = (bucket.tokens + refill).min(limit.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Limited {
                retry_after: Duration::from_secs_f64((1.0 - bucket.tokens) / limit.per_second),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate_and_merchants_apart() {
        let l = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 3.0,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take("a", t0), Ok(()));
        }
        let refused = l.take("a", t0).unwrap_err();
        assert!((refused.retry_after.as_secs_f64() - 0.1).abs() < 1e-9);
        // Another merchant has its own bucket.
        assert_eq!(l.take("b", t0), Ok(()));
        // 100 ms later, one more token; never more than the burst after a long idle.
        assert_eq!(l.take("a", t0 + Duration::from_millis(100)), Ok(()));
        assert!(l.take("a", t0 + Duration::from_millis(100)).is_err());
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(l.take("a", later), Ok(()));
        }
        assert!(l.take("a", later).is_err());
    }
}
