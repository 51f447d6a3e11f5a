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

/// An auto-resizing histogram: it holds only the buckets up to the slowest value
/// recorded, so one per request name costs tens of kB, not the MBs of a fixed hour.
pub fn histogram() -> Histogram<u64> {
    let mut h = Histogram::new(SIGNIFICANT_DIGITS).expect("constant precision");
    h.auto(true);
    h
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
        // `record` grows an auto-resizing histogram; `saturating_record` would clamp to
        // its current top. Values are clamped to an hour first, so growth is bounded.
        let us = us.clamp(1, HIGHEST_US);
        if h.record(us).is_err() {
            h.saturating_record(us);
        }
    }

    /// Successes and failures together.
    pub fn all(&self) -> Histogram<u64> {
        let mut all = self.ok.clone();
        all.add(&self.failed).expect("auto-resizing");
        all
    }

    pub fn add(&mut self, other: &Latencies) {
        self.ok.add(&other.ok).expect("auto-resizing");
        self.failed.add(&other.failed).expect("auto-resizing");
    }

    pub fn requests(&self) -> u64 {
        self.ok.len() + self.failed.len()
    }
}

/// One closed interval of one request name (or of all of them): its counts and
/// percentiles, kept instead of its histograms so a long run's memory stays flat.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IntervalFigures {
    /// Interval i covers [i, i + 1) intervals from the start.
    pub index: usize,
    pub ok: u64,
    pub failed: u64,
    /// Failures by the status answered ("503"), or `NO_ANSWER`.
    pub failures_by_status: BTreeMap<String, u64>,
    /// Over every request of the interval, in ms.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Its histograms, kept compact, so intervals of several runs can be added.
    pub ok_histogram: SavedHistogram,
    pub failed_histogram: SavedHistogram,
}

impl IntervalFigures {
    /// The figures of `latencies`, recorded in interval `index`.
    pub fn of(
        index: usize,
        latencies: &Latencies,
        failures_by_status: BTreeMap<String, u64>,
    ) -> Self {
        let h = latencies.all();
        IntervalFigures {
            index,
            ok: latencies.ok.len(),
            failed: latencies.failed.len(),
            failures_by_status,
            p50_ms: ms_at(&h, 0.50),
            p90_ms: ms_at(&h, 0.90),
            p95_ms: ms_at(&h, 0.95),
            p99_ms: ms_at(&h, 0.99),
            p999_ms: ms_at(&h, 0.999),
            max_ms: max_ms(&h),
            ok_histogram: SavedHistogram::from(&latencies.ok),
            failed_histogram: SavedHistogram::from(&latencies.failed),
        }
    }

    pub fn latencies(&self) -> Latencies {
        Latencies {
            ok: self.ok_histogram.histogram(),
            failed: self.failed_histogram.histogram(),
        }
    }
}

/// An interval still being recorded.
#[derive(Clone, Debug, Default)]
struct Open {
    index: usize,
    latencies: Latencies,
    failures_by_status: BTreeMap<String, u64>,
}

impl Open {
    fn close(&self) -> IntervalFigures {
        IntervalFigures::of(self.index, &self.latencies, self.failures_by_status.clone())
    }
}

/// The intervals of one request name (or of all), the last one still open.
#[derive(Clone, Debug, Default)]
struct Intervals {
    closed: Vec<IntervalFigures>,
    open: Option<Open>,
}

impl Intervals {
    fn record(&mut self, index: usize, us: u64, ok: bool, status: &Option<String>) {
        if self.open.as_ref().is_some_and(|o| o.index != index) {
            let done = self.open.take().expect("checked");
            self.closed.push(done.close());
        }
        let open = self.open.get_or_insert_with(|| Open {
            index,
            ..Open::default()
        });
        open.latencies.record(us, ok);
        if let Some(s) = status {
            *open.failures_by_status.entry(s.clone()).or_default() += 1;
        }
    }

    /// Every interval, the open one closed as it stands.
    fn all(&self) -> Vec<IntervalFigures> {
        let mut all = self.closed.clone();
        all.extend(self.open.as_ref().map(Open::close));
        all
    }
}

/// One request name over the run.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub whole: Latencies,
    /// From the end of the warm-up (`Recorder::begin`'s `judge_after`) on.
    pub judged: Latencies,
    pub intervals: Vec<IntervalFigures>,
}

/// What a run recorded, by request name ("POST /v1/payments").
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub interval: Duration,
    pub series: BTreeMap<String, Series>,
    /// Every request name's intervals together.
    pub all_intervals: Vec<IntervalFigures>,
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
}

#[derive(Default)]
struct Live {
    series: BTreeMap<String, (Latencies, Latencies, Intervals)>,
    all: Intervals,
}

pub struct Recorder {
    /// Interval 0 starts here: `begin`, or the first request.
    started: std::sync::OnceLock<Instant>,
    judge_after: std::sync::OnceLock<Duration>,
    interval: Duration,
    live: Mutex<Live>,
}

impl Recorder {
    pub fn new(interval: Duration) -> Self {
        Recorder {
            started: std::sync::OnceLock::new(),
            judge_after: std::sync::OnceLock::new(),
            interval: interval.max(Duration::from_millis(1)),
            live: Mutex::default(),
        }
    }

    /// The load starts now: interval 0 begins here, and requests that end
    /// `judge_after` later or more are the ones thresholds judge.
    pub fn begin(&self, judge_after: Duration) {
        let _ = self.started.set(Instant::now());
        let _ = self.judge_after.set(judge_after);
    }

    /// A request that ended now, `latency` after it began (or was due).
    pub fn record(&self, name: &str, latency: Duration, ok: bool, status: Option<u16>) {
        let us = latency.as_micros().min(HIGHEST_US as u128) as u64;
        let since = self.started.get_or_init(Instant::now).elapsed();
        let index = ((since.as_nanos() / self.interval.as_nanos()) as usize).min(INTERVALS_MAX - 1);
        let judged = since >= *self.judge_after.get_or_init(|| Duration::ZERO);
        let failure =
            (!ok).then(|| status.map_or_else(|| NO_ANSWER.to_string(), |s| s.to_string()));
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let (whole, judge, intervals) = match live.series.get_mut(name) {
            Some(s) => s,
            None => live.series.entry(name.to_string()).or_default(),
        };
        whole.record(us, ok);
        if judged {
            judge.record(us, ok);
        }
        intervals.record(index, us, ok, &failure);
        live.all.record(index, us, ok, &failure);
    }

    /// The whole run so far.
    pub fn snapshot(&self) -> Recorded {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        Recorded {
            interval: self.interval,
            series: live
                .series
                .iter()
                .map(|(name, (whole, judged, intervals))| {
                    let series = Series {
                        whole: whole.clone(),
                        judged: judged.clone(),
                        intervals: intervals.all(),
                    };
                    (name.clone(), series)
                })
                .collect(),
            all_intervals: live.all.all(),
        }
    }

    /// Requests of the names `pick` chooses, over the whole run so far.
    pub fn requests_of(&self, pick: impl Fn(&str) -> bool) -> u64 {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.series
            .iter()
            .filter(|(name, _)| pick(name))
            .map(|(_, (whole, _, _))| whole.requests())
            .sum()
    }

    /// What thresholds judge so far, without the intervals: cheap enough to call each
    /// second while the load runs.
    pub fn judged(&self) -> BTreeMap<String, Latencies> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.series
            .iter()
            .map(|(name, (_, judged, _))| (name.clone(), judged.clone()))
            .collect()
    }
}

/// A histogram as summary.json keeps it: every recorded value (the lowest equivalent of
/// its bucket, in µs) with its count, so a later tool can rebuild it exactly and compute
/// any percentile, or add it to another run's.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
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
            let v = (*value).clamp(1, HIGHEST_US);
            if h.record_n(v, *count).is_err() {
                h.saturating_record_n(v, *count);
            }
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
        assert!(
            (ms_at(&a.whole.ok, 0.5) - 5.0).abs() < 0.01,
            "{}",
            ms_at(&a.whole.ok, 0.5)
        );
        assert_eq!(max_ms(&a.whole.all()), 500.223);
        assert_eq!(rec.all().requests(), 1011);
        assert_eq!(
            rec.series["GET /b"].intervals[0].failures_by_status[NO_ANSWER],
            1
        );
        assert_eq!(a.intervals[0].failures_by_status["503"], 10);
        assert_eq!(rec.all_intervals[0].failed, 11);
        // Saved and read back, the same histogram.
        let saved = SavedHistogram::from(&a.whole.ok);
        let back = saved.histogram();
        assert_eq!(back.len(), 1000);
        assert_eq!(
            back.value_at_quantile(0.99),
            a.whole.ok.value_at_quantile(0.99)
        );
    }

    #[test]
    fn intervals_close_as_time_moves_and_the_warm_up_is_not_judged() {
        let r = Recorder::new(Duration::from_millis(20));
        r.begin(Duration::from_millis(20));
        r.record("GET /a", Duration::from_millis(900), false, Some(503));
        std::thread::sleep(Duration::from_millis(25));
        r.record("GET /a", Duration::from_millis(1), true, Some(200));
        r.record("GET /a", Duration::from_millis(3), true, Some(200));
        let rec = r.snapshot();
        let a = &rec.series["GET /a"];
        assert_eq!(a.whole.requests(), 3);
        assert_eq!((a.judged.ok.len(), a.judged.failed.len()), (2, 0));
        let idx: Vec<usize> = a.intervals.iter().map(|i| i.index).collect();
        assert_eq!(idx, vec![0, 1]);
        assert_eq!((a.intervals[1].ok, a.intervals[1].failed), (2, 0));
        assert_eq!(r.judged()["GET /a"].requests(), 2);
    }
}
