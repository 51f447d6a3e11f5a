//! The per-request summary of a run, from Goose's metrics.

use goose::metrics::GooseMetrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RequestRow {
    /// "POST /v1/payments", as thresholds name it.
    pub name: String,
    pub count: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
    pub error_rate: f64,
}

/// Server-side figures scraped from the target's /metrics during the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ServerFigures {
    pub commit_batches: u64,
    pub commit_batch_size_mean: f64,
    pub write_queue_depth_max: f64,
    /// With Redis in front of the store (`target.redis`, `serve --redis`).
    #[serde(default)]
    pub cache: Option<CacheFigures>,
}

/// The API's Redis cache during the step, from `paytool_cache_*`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CacheFigures {
    pub hits: u64,
    pub misses: u64,
    pub hit_ratio: f64,
    /// Whether any scrape found the breaker open (Redis unreachable or slow).
    pub breaker_opened: bool,
}

/// Scrapes during one step. Prometheus counters run from the server's start, so the
/// step's figures are the difference between its first and last scrape.
#[derive(Default)]
pub struct Scrapes {
    first: Option<(f64, f64)>,
    last: Option<(f64, f64)>,
    queue_depth_max: f64,
    /// (hits, misses) of the cache, first and last scrape.
    cache_first: Option<(f64, f64)>,
    cache_last: Option<(f64, f64)>,
    breaker_opened: bool,
}

impl Scrapes {
    pub fn finish(&self) -> Option<ServerFigures> {
        let ((s0, c0), (s1, c1)) = (self.first?, self.last?);
        let batches = (c1 - c0).max(0.0);
        Some(ServerFigures {
            commit_batches: batches as u64,
            commit_batch_size_mean: if batches > 0.0 {
                ((s1 - s0) / batches * 10.0).round() / 10.0
            } else {
                0.0
            },
            write_queue_depth_max: self.queue_depth_max,
            cache: self.cache(),
        })
    }

    fn cache(&self) -> Option<CacheFigures> {
        let ((h0, m0), (h1, m1)) = (self.cache_first?, self.cache_last?);
        let (hits, misses) = ((h1 - h0).max(0.0), (m1 - m0).max(0.0));
        Some(CacheFigures {
            hits: hits as u64,
            misses: misses as u64,
            hit_ratio: if hits + misses > 0.0 {
                (hits / (hits + misses) * 1000.0).round() / 1000.0
            } else {
                0.0
            },
            breaker_opened: self.breaker_opened,
        })
    }
}

pub fn rows(metrics: &GooseMetrics, seconds: f64) -> (Vec<RequestRow>, RequestRow) {
    let seconds = seconds.max(0.001);
    let mut rows = Vec::new();
    let mut all_buckets: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut count, mut errors, mut max_us) = (0u64, 0u64, 0u64);
    for (name, r) in &metrics.requests {
        let data = &r.raw_data;
        let n = (r.success_count + r.fail_count) as u64;
        for (bucket, c) in data.times_us.iter() {
            *all_buckets.entry(*bucket).or_default() += *c as u64;
        }
        count += n;
        errors += r.fail_count as u64;
        max_us = max_us.max(data.maximum_time_us);
        rows.push(RequestRow {
            name: name.clone(),
            count: n,
            rps: n as f64 / seconds,
            p50_ms: ms(data.percentile_us(0.50)),
            p95_ms: ms(data.percentile_us(0.95)),
            p99_ms: ms(data.percentile_us(0.99)),
            max_ms: ms(data.maximum_time_us),
            errors: r.fail_count as u64,
            error_rate: rate(r.fail_count as u64, n),
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let pct = |p: f64| {
        let target = (p * count as f64).ceil() as u64;
        let mut seen = 0;
        for (bucket, c) in &all_buckets {
            seen += c;
            if seen >= target {
                return ms(*bucket);
            }
        }
        ms(max_us)
    };
    let total = RequestRow {
        name: "All".into(),
        count,
        rps: count as f64 / seconds,
        p50_ms: pct(0.50),
        p95_ms: pct(0.95),
        p99_ms: pct(0.99),
        max_ms: ms(max_us),
        errors,
        error_rate: rate(errors, count),
    };
    (rows, total)
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 100.0).round() / 100.0
}

fn rate(errors: u64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        errors as f64 / count as f64
    }
}

/// Fold one scrape of Prometheus text into the step's scrapes.
pub fn absorb_scrape(scrapes: &mut Scrapes, text: &str) {
    let (mut sum, mut count, mut seen) = (0.0, 0.0, false);
    let (mut hits, mut misses, mut cached) = (0.0, 0.0, false);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let metric = series.split('{').next().unwrap_or_default();
        match metric {
            "paytool_group_commit_batch_size_sum" => (sum, seen) = (sum + value, true),
            "paytool_group_commit_batch_size_count" => count += value,
            "paytool_write_queue_depth" => {
                scrapes.queue_depth_max = scrapes.queue_depth_max.max(value)
            }
            "paytool_cache_requests_total" if series.contains("result=\"hit\"") => {
                (hits, cached) = (hits + value, true)
            }
            "paytool_cache_requests_total" => (misses, cached) = (misses + value, true),
            "paytool_cache_breaker_open" => {
                cached = true;
                scrapes.breaker_opened |= value > 0.0;
            }
            _ => {}
        }
    }
    if seen {
        scrapes.first.get_or_insert((sum, count));
        scrapes.last = Some((sum, count));
    }
    if cached {
        scrapes.cache_first.get_or_insert((hits, misses));
        scrapes.cache_last = Some((hits, misses));
    }
}

#[cfg(test)]
mod tests {
    use super::{Scrapes, absorb_scrape};

    #[test]
    fn cache_figures_are_the_steps_difference_and_remember_an_open_breaker() {
        let scrape = |hits: u64, misses: u64, open: u8| {
            format!(
                "# TYPE paytool_cache_requests_total counter\n\
                 paytool_cache_requests_total{{kind=\"payment\",result=\"hit\"}} {hits}\n\
                 paytool_cache_requests_total{{kind=\"payment\",result=\"miss\"}} {misses}\n\
                 paytool_cache_breaker_open {open}\n\
                 paytool_group_commit_batch_size_sum 10\n\
                 paytool_group_commit_batch_size_count 5\n"
            )
        };
        let mut s = Scrapes::default();
        absorb_scrape(&mut s, &scrape(100, 50, 0));
        absorb_scrape(&mut s, &scrape(150, 60, 1));
        absorb_scrape(&mut s, &scrape(400, 60, 0));
        let cache = s.finish().unwrap().cache.unwrap();
        assert_eq!((cache.hits, cache.misses), (300, 10));
        assert_eq!(cache.hit_ratio, 0.968);
        assert!(cache.breaker_opened);
        let mut none = Scrapes::default();
        absorb_scrape(&mut none, "paytool_group_commit_batch_size_sum 1\n");
        assert_eq!(none.finish().unwrap().cache, None);
    }
}
