//! Every request's latency in HDR histograms (the `hdrhistogram` crate: microseconds, 3
//! significant digits), per request name, successes and failures apart, for the whole
//! run and per interval. Every percentile paytool prints, gates on or writes comes from
//! these, computed one way; the "All" row and merged runs add histograms, never average
//! percentiles.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SIGNIFICANT_DIGITS: u8 = 3;
/// The slowest latency kept as it is: an hour (anything slower is recorded as an hour).
pub const HIGHEST_US: u64 = 3_600_000_000;
pub const INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// Intervals kept per request name (a day of 1-s intervals); later requests of a longer
/// run are counted in the last one.
const INTERVALS_MAX: usize = 86_400;
/// The status a failure without an answer (refused, reset, timed out) is counted under.
pub const NO_ANSWER: &str = "none";

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, SIGNIFICANT_DIGITS).expect("constant bounds")
}

/// One request name's latencies (or one interval's), successes and failures apart.
#[derive(Clone, Debug)]
pub struct Latencies {
    pub ok: Histogram<u64>,
    pub failed: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            ok: histogram(),
            failed: histogram(),
        }
    }
}

impl Latencies {
    fn record(&mut self, us: u64, ok: bool) {
        let h = if ok { &mut self.ok } else { &mut self.failed };
        h.saturating_record(us.clamp(1, HIGHEST_US));
    }

    /// Successes and failures together.
    pub fn all(&self) -> Histogram<u64> {
        let mut all = self.ok.clone();
        all.add(&self.failed).expect("same bounds");
        all
    }

    pub fn add(&mut self, other: &Latencies) {
        self.ok.add(&other.ok).expect("same bounds");
        self.failed.add(&other.failed).expect("same bounds");
    }

    pub fn requests(&self) -> u64 {
        self.ok.len() + self.failed.len()
    }
}

/// One interval of one request name.
#[derive(Clone, Debug, Default)]
pub struct Interval {
    pub latencies: Latencies,
    /// Failures by the status answered ("503"), or `NO_ANSWER`.
    pub failures_by_status: BTreeMap<String, u64>,
}

/// One request name over the run.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub whole: Latencies,
    /// Interval i covers [i, i + 1) intervals from the run's start.
    pub intervals: Vec<Interval>,
}

/// What a run recorded, by request name ("POST /v1/payments").
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub interval: Duration,
    pub series: BTreeMap<String, Series>,
}

impl Recorded {
    /// Every request name's whole-run latencies added together.
    pub fn all(&self) -> Latencies {
        let mut all = Latencies::default();
        for s in self.series.values() {
            all.add(&s.whole);
        }
        all
    }

    /// How many intervals the longest series has.
    pub fn intervals(&self) -> usize {
        self.series
            .values()
            .map(|s| s.intervals.len())
            .max()
            .unwrap_or(0)
    }
}

pub struct Recorder {
    /// Interval 0 starts here: `begin`, or the first request.
    started: std::sync::OnceLock<Instant>,
    interval: Duration,
    series: Mutex<BTreeMap<String, Series>>,
}

impl Recorder {
    pub fn new(interval: Duration) -> Self {
        Recorder {
            started: std::sync::OnceLock::new(),
            interval: interval.max(Duration::from_millis(1)),
            series: Mutex::default(),
        }
    }

    /// The load starts now: interval 0 begins here.
    pub fn begin(&self) {
        let _ = self.started.set(Instant::now());
    }

    /// A request that ended now, `latency` after it began (or was due).
    pub fn record(&self, name: &str, latency: Duration, ok: bool, status: Option<u16>) {
        let us = latency.as_micros().min(u64::MAX as u128) as u64;
        let since = self.started.get_or_init(Instant::now).elapsed();
        let i = ((since.as_nanos() / self.interval.as_nanos()) as usize).min(INTERVALS_MAX - 1);
        let mut all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let series = match all.get_mut(name) {
            Some(s) => s,
            None => all.entry(name.to_string()).or_default(),
        };
        series.whole.record(us, ok);
        if series.intervals.len() <= i {
            series.intervals.resize_with(i + 1, Interval::default);
        }
        let interval = &mut series.intervals[i];
        interval.latencies.record(us, ok);
        if !ok {
            let status = status.map_or_else(|| NO_ANSWER.to_string(), |s| s.to_string());
            *interval.failures_by_status.entry(status).or_default() += 1;
        }
    }

    pub fn snapshot(&self) -> Recorded {
        Recorded {
            interval: self.interval,
            series: self
                .series
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// A histogram as summary.json keeps it: every recorded value (the lowest equivalent of
/// its bucket, in µs) with its count, so a later tool can rebuild it exactly and compute
/// any percentile, or add it to another run's.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedHistogram {
    pub unit: String,
    pub significant_digits: u8,
    pub highest: u64,
    pub counts: Vec<(u64, u64)>,
}

impl From<&Histogram<u64>> for SavedHistogram {
    fn from(h: &Histogram<u64>) -> Self {
        SavedHistogram {
            unit: "us".into(),
            significant_digits: SIGNIFICANT_DIGITS,
            highest: HIGHEST_US,
            counts: h
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        }
    }
}

impl SavedHistogram {
    pub fn histogram(&self) -> Histogram<u64> {
        let mut h = histogram();
        for (value, count) in &self.counts {
            h.saturating_record_n((*value).clamp(1, HIGHEST_US), *count);
        }
        h
    }
}

/// Percentiles in milliseconds, as reports show them (0 for no samples).
pub fn ms_at(h: &Histogram<u64>, quantile: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    round_ms(h.value_at_quantile(quantile))
}

pub fn max_ms(h: &Histogram<u64>) -> f64 {
    if h.is_empty() { 0.0 } else { round_ms(h.max()) }
}

/// µs to ms, to the µs.
fn round_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_every_sample_and_merge_by_adding() {
        let r = Recorder::new(INTERVAL_DEFAULT);
        for i in 1..=1000u64 {
            r.record("GET /a", Duration::from_micros(i * 10), true, Some(200));
        }
        for _ in 0..10 {
            r.record("GET /a", Duration::from_millis(500), false, Some(503));
        }
        r.record("GET /b", Duration::from_millis(2), false, None);
        let rec = r.snapshot();
        let a = &rec.series["GET /a"];
        assert_eq!((a.whole.ok.len(), a.whole.failed.len()), (1000, 10));
        // p50 of the successes alone is ~5 ms; of everything, a little more.
        assert!((ms_at(&a.whole.ok, 0.5) - 5.0).abs() < 0.01);
        assert_eq!(max_ms(&a.whole.all()), 500.223);
        let all = rec.all();
        assert_eq!(all.requests(), 1011);
        assert_eq!(
            rec.series["GET /b"].intervals[0].failures_by_status[NO_ANSWER],
            1
        );
        assert_eq!(a.intervals[0].failures_by_status["503"], 10);
        // Saved and read back, the same histogram.
        let saved = SavedHistogram::from(&a.whole.ok);
        let back = saved.histogram();
        assert_eq!(back.len(), 1000);
        assert_eq!(
            back.value_at_quantile(0.99),
            a.whole.ok.value_at_quantile(0.99)
        );
    }
}
