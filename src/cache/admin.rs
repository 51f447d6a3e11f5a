//! What `paytool cache flush` and `stats` do to a Redis: walk paytool's keys (SCAN with
//! a MATCH on the prefix, never KEYS, never FLUSHALL or FLUSHDB) a bounded batch at a
//! time, and remove them (UNLINK) or describe them.

use redis::aio::MultiplexedConnection;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Keys asked for per SCAN step (a hint to Redis) and removed per UNLINK.
pub const SCAN_BATCH: usize = 1_000;
/// Keys whose size and TTL `stats` samples at most (MEMORY USAGE costs per key).
pub const STATS_SAMPLE_MAX: usize = 10_000;
/// Connecting and each command, at most.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("Redis URL {url}: {message}")]
    BadUrl { url: String, message: String },
    #[error("Redis at {url}: {message}")]
    Redis { url: String, message: String },
}

pub struct Admin {
    conn: MultiplexedConnection,
    url: String,
    /// The prefix as a SCAN pattern, glob characters escaped.
    pattern: String,
}

fn escape_glob(prefix: &str) -> String {
    prefix
        .chars()
        .flat_map(|c| match c {
            '*' | '?' | '[' | ']' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

impl Admin {
    pub async fn connect(url: &str, prefix: &str) -> Result<Admin, AdminError> {
        let shown = super::client::redact(url);
        let client = redis::Client::open(url).map_err(|e| AdminError::BadUrl {
            url: shown.clone(),
            message: e.to_string(),
        })?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(ADMIN_TIMEOUT))
            .set_response_timeout(Some(ADMIN_TIMEOUT));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| AdminError::Redis {
                url: shown.clone(),
                message: e.to_string(),
            })?;
        Ok(Admin {
            conn,
            url: shown,
            pattern: format!("{}*", escape_glob(prefix)),
        })
    }

    pub(super) fn failed(&self, e: redis::RedisError) -> AdminError {
        AdminError::Redis {
            url: self.url.clone(),
            message: e.to_string(),
        }
    }

    /// One SCAN step: the next cursor (0 when done) and a batch of paytool's keys.
    pub(super) async fn scan_step(
        &mut self,
        cursor: u64,
    ) -> Result<(u64, Vec<String>), AdminError> {
        redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&self.pattern)
            .arg("COUNT")
            .arg(SCAN_BATCH)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.failed(e))
    }

    /// The server's URL, password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Another handle on the connection (commands from both are pipelined on one socket).
    pub(super) fn connection(&self) -> MultiplexedConnection {
        self.conn.clone()
    }

    /// How many of paytool's keys there are now.
    pub async fn count(&mut self) -> Result<u64, AdminError> {
        let (mut cursor, mut n) = (0u64, 0u64);
        loop {
            let (next, keys) = self.scan_step(cursor).await?;
            n += keys.len() as u64;
            if next == 0 {
                return Ok(n);
            }
            cursor = next;
        }
    }

    /// Remove paytool's keys, batch by batch; `on_batch` hears the running total.
    pub async fn flush(&mut self, on_batch: &dyn Fn(u64)) -> Result<u64, AdminError> {
        let (mut cursor, mut removed) = (0u64, 0u64);
        loop {
            let (next, keys) = self.scan_step(cursor).await?;
            if !keys.is_empty() {
                let n: u64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut self.conn)
                    .await
                    .map_err(|e| self.failed(e))?;
                removed += n;
                on_batch(removed);
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    /// Keys by kind, the sampled keys' memory and TTLs, and the server's memory.
    pub async fn stats(&mut self) -> Result<Stats, AdminError> {
        let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
        let mut sample: Vec<String> = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, keys) = self.scan_step(cursor).await?;
            for k in keys {
                *by_kind.entry(kind_of(&k).to_string()).or_default() += 1;
                if sample.len() < STATS_SAMPLE_MAX {
                    sample.push(k);
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut ttls_ms: Vec<i64> = Vec::with_capacity(sample.len());
        let mut sampled_bytes = 0u64;
        for chunk in sample.chunks(SCAN_BATCH) {
            let mut pipe = redis::pipe();
            for k in chunk {
                pipe.cmd("PTTL").arg(k).cmd("MEMORY").arg("USAGE").arg(k);
            }
            let answers: Vec<Option<i64>> = pipe
                .query_async(&mut self.conn)
                .await
                .map_err(|e| self.failed(e))?;
            for pair in answers.chunks(2) {
                ttls_ms.push(pair[0].unwrap_or(-2));
                sampled_bytes += pair.get(1).copied().flatten().unwrap_or(0).max(0) as u64;
            }
        }
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.conn)
            .await
            .map_err(|e| self.failed(e))?;
        let used_memory = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let keys: u64 = by_kind.values().sum();
        let mut live: Vec<i64> = ttls_ms.iter().copied().filter(|t| *t >= 0).collect();
        live.sort_unstable();
        let at = |q: f64| -> Option<f64> {
            (!live.is_empty())
                .then(|| live[((live.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0)
        };
        Ok(Stats {
            keys,
            by_kind,
            sampled: ttls_ms.len() as u64,
            sampled_bytes,
            bytes_estimate: if ttls_ms.is_empty() {
                0
            } else {
                sampled_bytes * keys / ttls_ms.len() as u64
            },
            used_memory,
            without_ttl: ttls_ms.iter().filter(|t| **t == -1).count() as u64,
            ttl_s: TtlSpread {
                min: at(0.0),
                p50: at(0.5),
                p90: at(0.9),
                max: at(1.0),
            },
        })
    }
}

/// A key's kind: what follows its merchant's hash tag (`key`, `gen`, `idem`, `pay`).
pub fn kind_of(key: &str) -> &str {
    key.split_once("}:")
        .map(|(_, rest)| rest.split(':').next().unwrap_or(rest))
        .unwrap_or("other")
}

#[derive(Debug, Serialize)]
pub struct TtlSpread {
    pub min: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub keys: u64,
    pub by_kind: BTreeMap<String, u64>,
    /// Keys whose TTL and size were read (up to `STATS_SAMPLE_MAX`).
    pub sampled: u64,
    pub sampled_bytes: u64,
    /// paytool's keys' memory, extrapolated from the sample.
    pub bytes_estimate: u64,
    /// The whole server's `used_memory`.
    pub used_memory: u64,
    pub without_ttl: u64,
    pub ttl_s: TtlSpread,
}

#[cfg(test)]
mod tests {
    #[test]
    fn kinds_come_after_the_hash_tag_and_globs_are_escaped() {
        assert_eq!(super::kind_of("paytool:{mer_1}:pay:pay_2"), "pay");
        assert_eq!(super::kind_of("paytool:{mer_1}:gen"), "gen");
        assert_eq!(super::kind_of("paytool:odd"), "other");
        assert_eq!(super::escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
