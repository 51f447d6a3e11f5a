//! How a run moved, interval by interval: `timeseries.jsonl` and `timeseries.csv`, a
//! row per interval and request name (and "All"), from the run's histograms; the "All"
//! rows also carry the server's figures scraped from /metrics in that interval and, in
//! the open model, the arrivals sent late or dropped.

use super::summary::ScrapePoint;
use crate::scenarios::record::{IntervalFigures, Recorded, SavedHistogram};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// What the once-a-second sampler saw, `at_s` seconds after the load began.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub at_s: f64,
    pub server: Option<ScrapePoint>,
    /// The open model's arrivals sent, and those late or dropped, so far.
    pub sent: u64,
    pub late: u64,
    pub dropped: u64,
}

/// One row of timeseries.jsonl.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// The interval's start, seconds after the load began.
    pub t_s: f64,
    pub name: String,
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    /// Failures by the status answered, or "none" for no answer.
    pub failures_by_status: BTreeMap<String, u64>,
    pub rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// "All" rows only, when the target has /metrics: the interval's mean group-commit
    /// batch, deepest write queue seen and cache hit ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_depth_max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_hit_ratio: Option<f64>,
    /// "All" rows only, in the open model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
}

pub const ALL: &str = "All";

/// The rows, in time order, each interval's request names in order and then "All".
pub fn rows(recorded: &Recorded, samples: &[Sample], open_model: bool) -> Vec<Row> {
    let width = recorded.interval.as_secs_f64();
    let mut by_interval: BTreeMap<usize, Vec<Row>> = BTreeMap::new();
    for (name, s) in &recorded.series {
        for f in &s.intervals {
            by_interval
                .entry(f.index)
                .or_default()
                .push(row(width, name, f));
        }
    }
    for f in &recorded.all_intervals {
        let mut total = row(width, ALL, f);
        let from = f.index as f64 * width;
        server_figures(&mut total, samples, from, from + width, open_model);
        by_interval.entry(f.index).or_default().push(total);
    }
    by_interval.into_values().flatten().collect()
}

fn row(width: f64, name: &str, f: &IntervalFigures) -> Row {
    Row {
        t_s: f.index as f64 * width,
        name: name.to_string(),
        requests: f.ok + f.failed,
        ok: f.ok,
        failed: f.failed,
        failures_by_status: f.failures_by_status.clone(),
        rps: (f.ok + f.failed) as f64 / width,
        p50_ms: f.p50_ms,
        p90_ms: f.p90_ms,
        p95_ms: f.p95_ms,
        p99_ms: f.p99_ms,
        p999_ms: f.p999_ms,
        max_ms: f.max_ms,
        ..Row::default()
    }
}

/// The samples taken in [from, to) against the last one before: counters as
/// differences, the queue's depth as the deepest seen.
fn server_figures(row: &mut Row, samples: &[Sample], from: f64, to: f64, open_model: bool) {
    let before = samples.iter().rev().find(|s| s.at_s < from);
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at_s >= from && s.at_s < to)
        .collect();
    let Some(last) = inside.last() else {
        return;
    };
    if open_model {
        let (late0, dropped0) = before.map_or((0, 0), |b| (b.late, b.dropped));
        row.late = Some(last.late.saturating_sub(late0));
        row.dropped = Some(last.dropped.saturating_sub(dropped0));
    }
    let Some(now) = last.server else {
        return;
    };
    let then = before.and_then(|b| b.server);
    row.queue_depth_max = inside
        .iter()
        .filter_map(|s| s.server.map(|p| p.queue_depth))
        .reduce(f64::max);
    if let (Some((s1, c1)), Some((s0, c0))) = (now.batches, then.and_then(|t| t.batches)) {
        let batches = c1 - c0;
        row.batch_size_mean = (batches > 0.0).then(|| ((s1 - s0) / batches * 10.0).round() / 10.0);
    }
    if let (Some((h1, m1)), Some((h0, m0))) = (now.cache, then.and_then(|t| t.cache)) {
        let (hits, misses) = (h1 - h0, m1 - m0);
        row.cache_hit_ratio =
            (hits + misses > 0.0).then(|| (hits / (hits + misses) * 1000.0).round() / 1000.0);
    }
}

/// One interval of one request name with its histograms, as `intervals.jsonl` keeps
/// it: what `report merge` adds up across segments.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedInterval {
    pub index: usize,
    pub name: String,
    pub failures_by_status: BTreeMap<String, u64>,
    pub ok: SavedHistogram,
    pub failed: SavedHistogram,
}

pub const INTERVALS_FILE: &str = "intervals.jsonl";

pub fn write_intervals(dir: &Path, recorded: &Recorded) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join(INTERVALS_FILE))?);
    for (name, s) in &recorded.series {
        for f in &s.intervals {
            let line = SavedInterval {
                index: f.index,
                name: name.clone(),
                failures_by_status: f.failures_by_status.clone(),
                ok: f.ok_histogram.clone(),
                failed: f.failed_histogram.clone(),
            };
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()
}

const CSV_HEADER: &str = "t_s,name,requests,ok,failed,failures_by_status,rps,p50_ms,p90_ms,p95_ms,p99_ms,p999_ms,max_ms,batch_size_mean,queue_depth_max,cache_hit_ratio,late,dropped";

pub fn write(dir: &Path, rows: &[Row]) -> std::io::Result<()> {
    let mut jsonl = std::io::BufWriter::new(std::fs::File::create(dir.join("timeseries.jsonl"))?);
    let mut csv = std::io::BufWriter::new(std::fs::File::create(dir.join("timeseries.csv"))?);
    writeln!(csv, "{CSV_HEADER}")?;
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let opt_u = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in rows {
        serde_json::to_writer(&mut jsonl, r)?;
        jsonl.write_all(b"\n")?;
        // Request names hold no commas or quotes (they are ours); statuses as "503:4 none:2".
        let failures: Vec<String> = r
            .failures_by_status
            .iter()
            .map(|(s, n)| format!("{s}:{n}"))
            .collect();
        writeln!(
            csv,
            "{},{},{},{},{},{},{:.3},{},{},{},{},{},{},{},{},{},{},{}",
            r.t_s,
            r.name,
            r.requests,
            r.ok,
            r.failed,
            failures.join(" "),
            r.rps,
            r.p50_ms,
            r.p90_ms,
            r.p95_ms,
            r.p99_ms,
            r.p999_ms,
            r.max_ms,
            opt(r.batch_size_mean),
            opt(r.queue_depth_max),
            opt(r.cache_hit_ratio),
            opt_u(r.late),
            opt_u(r.dropped),
        )?;
    }
    jsonl.flush()?;
    csv.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::record::Recorder;
    use std::time::Duration;

    #[test]
    fn intervals_sum_to_the_whole_and_carry_the_servers_figures() {
        let r = Recorder::new(Duration::from_millis(50));
        r.begin(Duration::ZERO);
        for _ in 0..30 {
            r.record("GET /a", Duration::from_millis(1), true, Some(200));
        }
        std::thread::sleep(Duration::from_millis(60));
        r.record("GET /a", Duration::from_millis(9), false, Some(503));
        r.record("POST /b", Duration::from_millis(2), true, Some(200));
        let recorded = r.snapshot();
        let point = |sum: f64, count: f64, depth: f64| ScrapePoint {
            batches: Some((sum, count)),
            queue_depth: depth,
            ..ScrapePoint::default()
        };
        let samples = [
            Sample {
                at_s: 0.01,
                server: Some(point(10.0, 10.0, 3.0)),
                ..Sample::default()
            },
            Sample {
                at_s: 0.06,
                server: Some(point(40.0, 20.0, 1.0)),
                ..Sample::default()
            },
            Sample {
                at_s: 0.07,
                server: Some(point(46.0, 22.0, 7.0)),
                ..Sample::default()
            },
        ];
        let rows = rows(&recorded, &samples, false);
        let all: Vec<&Row> = rows.iter().filter(|r| r.name == ALL).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all.iter().map(|r| r.requests).sum::<u64>(),
            recorded.all().requests()
        );
        assert_eq!((all[1].ok, all[1].failed), (1, 1));
        assert_eq!(all[1].failures_by_status["503"], 1);
        // (46 - 10) / (22 - 10) = 3.0; the deepest queue in the interval is 7.
        assert_eq!(all[1].batch_size_mean, Some(3.0));
        assert_eq!(all[1].queue_depth_max, Some(7.0));
        assert_eq!(all[0].batch_size_mean, None, "no sample before the first");
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &rows).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("timeseries.csv")).unwrap();
        assert_eq!(csv.lines().count(), rows.len() + 1);
        let back: Vec<Row> = std::fs::read_to_string(dir.path().join("timeseries.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, rows);
    }
}
