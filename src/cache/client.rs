//! The Redis connection the cache uses, behind a short timeout and the breaker: every
//! call either answers within `CALL_TIMEOUT` or counts as a failure, and while the
//! breaker is open no call is made at all. A failure is never an error to the caller,
//! only a miss: the store answers alone.

use super::breaker::{Breaker, State, Transition};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::time::{Duration, Instant};

/// The longest the API waits for Redis on one call before serving from the store.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(50);
/// Connecting (and reconnecting) to Redis, at most.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
#[error("Redis URL {url}: {message}")]
pub struct BadUrl {
    pub url: String,
    pub message: String,
}

pub struct RedisClient {
    conn: ConnectionManager,
    breaker: Breaker,
}

impl RedisClient {
    /// Connects lazily: a Redis that is down at start costs nothing but misses.
    pub fn new(url: &str) -> Result<RedisClient, BadUrl> {
        let bad = |e: redis::RedisError| BadUrl {
            url: redact(url),
            message: e.to_string(),
        };
        let client = redis::Client::open(url).map_err(bad)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(bad)?;
        metrics::gauge!("paytool_cache_breaker_open").set(0.0);
        Ok(RedisClient {
            conn,
            breaker: Breaker::default(),
        })
    }

    pub fn breaker_state(&self) -> State {
        self.breaker.state()
    }

    /// Run one command (or pipeline) through the breaker; `None` when skipped or failed.
    pub async fn call<T, F, Fut>(&self, what: &'static str, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let (allowed, transition) = self.breaker.allow(Instant::now());
        report(transition, None);
        if !allowed {
            metrics::counter!("paytool_cache_skipped_total").increment(1);
            return None;
        }
        let result = tokio::time::timeout(CALL_TIMEOUT, f(self.conn.clone())).await;
        match result {
            Ok(Ok(v)) => {
                report(self.breaker.success(), None);
                Some(v)
            }
            Ok(Err(e)) => {
                metrics::counter!("paytool_cache_errors_total", "op" => what).increment(1);
                report(self.breaker.failure(Instant::now()), Some(e.to_string()));
                None
            }
            Err(_) => {
                metrics::counter!("paytool_cache_errors_total", "op" => what).increment(1);
                report(
                    self.breaker.failure(Instant::now()),
                    Some(format!("no answer within {CALL_TIMEOUT:?}")),
                );
                None
            }
        }
    }
}

/// The gauge on every change of the breaker's state; a log line when the cache goes off
/// or comes back (a failed probe during an outage, once a second, is only debug).
fn report(transition: Option<Transition>, why: Option<String>) {
    let Some((from, to)) = transition else { return };
    metrics::gauge!("paytool_cache_breaker_open").set(match to {
        State::Closed => 0.0,
        State::HalfOpen => 0.5,
        State::Open => 1.0,
    });
    match (from, to) {
        (State::Closed, State::Open) => tracing::warn!(
            reason = why.unwrap_or_default(),
            "cache: Redis failing, serving from the store alone"
        ),
        (_, State::Closed) => tracing::warn!("cache: Redis answering again, cache back on"),
        _ => tracing::debug!(from = from.as_str(), to = to.as_str(), "cache: breaker"),
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &userinfo[..c], &url[at..]),
                None => format!("{}***{}", &url[..s + 3], &url[at..]),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_show() {
        assert_eq!(
            super::redact("redis://:s3cret@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(super::redact("redis://u:s3cret@h/"), "redis://u:***@h/");
        assert_eq!(super::redact("redis://h:6379/"), "redis://h:6379/");
    }
}
