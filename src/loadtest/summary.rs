//! The per-request summary of a run, from its HDR histograms (`scenarios::record`).

use crate::scenarios::record::{Latencies, Recorded, max_ms, ms_at};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RequestRow {
    /// "POST /v1/payments", as thresholds name it.
    pub name: String,
    pub count: u64,
    pub rps: f64,
    pub p50_ms: f64,
    #[serde(default)]
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    #[serde(default)]
    pub p999_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
    pub error_rate: f64,
    /// Successful requests a second (what a throughput gate means).
    #[serde(default)]
    pub ok_rps: f64,
    /// p99 of the successful requests alone.
    #[serde(default)]
    pub ok_p99_ms: f64,
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

/// A row per request name and the "All" row, from the run's histograms: percentiles
/// over every request (successes and failures), All from the names' histograms added.
pub fn rows(recorded: &Recorded, seconds: f64) -> (Vec<RequestRow>, RequestRow) {
    let seconds = seconds.max(0.001);
    let rows = recorded
        .series
        .iter()
        .map(|(name, s)| row(name, &s.whole, seconds))
        .collect();
    (rows, row("All", &recorded.all(), seconds))
}

fn row(name: &str, l: &Latencies, seconds: f64) -> RequestRow {
    let all = l.all();
    let count = all.len();
    let errors = l.failed.len();
    RequestRow {
        name: name.to_string(),
        count,
        rps: count as f64 / seconds,
        p50_ms: ms_at(&all, 0.50),
        p90_ms: ms_at(&all, 0.90),
        p95_ms: ms_at(&all, 0.95),
        p99_ms: ms_at(&all, 0.99),
        p999_ms: ms_at(&all, 0.999),
        max_ms: max_ms(&all),
        errors,
        error_rate: rate(errors, count),
        ok_rps: l.ok.len() as f64 / seconds,
        ok_p99_ms: ms_at(&l.ok, 0.99),
    }
}

fn rate(errors: u64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        errors as f64 / count as f64
    }
}

/// The figures of one scrape of the target's /metrics (counters since its start).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ScrapePoint {
    /// Group-commit batch sizes: their sum and how many batches, if the target has them.
    pub batches: Option<(f64, f64)>,
    pub queue_depth: f64,
    /// Cache hits and misses, if the target has a cache.
    pub cache: Option<(f64, f64)>,
    pub breaker_open: bool,
}

pub fn parse_scrape(text: &str) -> ScrapePoint {
    let mut p = ScrapePoint::default();
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
            "paytool_write_queue_depth" => p.queue_depth = p.queue_depth.max(value),
            "paytool_cache_requests_total" if series.contains("result=\"hit\"") => {
                (hits, cached) = (hits + value, true)
            }
            "paytool_cache_requests_total" => (misses, cached) = (misses + value, true),
            "paytool_cache_breaker_open" => {
                cached = true;
                p.breaker_open |= value > 0.0;
            }
            _ => {}
        }
    }
    p.batches = seen.then_some((sum, count));
    p.cache = cached.then_some((hits, misses));
    p
}

/// Fold one scrape of Prometheus text into the step's scrapes.
pub fn absorb_scrape(scrapes: &mut Scrapes, text: &str) {
    absorb_point(scrapes, &parse_scrape(text));
}

pub fn absorb_point(scrapes: &mut Scrapes, p: &ScrapePoint) {
    scrapes.queue_depth_max = scrapes.queue_depth_max.max(p.queue_depth);
    scrapes.breaker_opened |= p.breaker_open;
    if let Some(b) = p.batches {
        scrapes.first.get_or_insert(b);
        scrapes.last = Some(b);
    }
    if let Some(c) = p.cache {
        scrapes.cache_first.get_or_insert(c);
        scrapes.cache_last = Some(c);
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
