//! Capacity search: step the arrival rate up by a factor until a step fails its
//! thresholds or audit, then bisect between the last pass and the first failure (or, when
//! the first step fails, step down until one passes). Each step is judged after a
//! warm-up, starts once the target's write queue has drained, and counts successful
//! requests only; the answer must pass a confirmation run at the same rate. It is the
//! highest rate that met everything, with that step's report.

use super::report::{ReportFileError, RunSummary, read_json};
use super::{LoadtestError, Prepared};
use crate::profile::load::{ArrivalRate, RATE_MAX_PER_S, Shape};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug)]
pub struct SearchLimits {
    /// Each growing step multiplies the rate by this.
    pub factor: f64,
    /// Bisection steps after the first failure.
    pub bisect_steps: usize,
    /// Never schedule above this rate.
    pub rate_max_per_s: f64,
    /// Never run more steps than this in all.
    pub steps_max: usize,
    /// Steps down by the factor after a failing first step, at most.
    pub down_steps_max: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        SearchLimits {
            factor: 2.0,
            bisect_steps: 3,
            rate_max_per_s: RATE_MAX_PER_S,
            steps_max: 20,
            down_steps_max: 4,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Step {
    pub index: usize,
    pub rate_per_s: f64,
    pub passed: bool,
    /// The step's report directory, relative to the run directory.
    pub dir: String,
    /// Successful requests a second (a failed request is not capacity).
    pub achieved_rps: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
    /// What failed: threshold rules and "money audit".
    pub failed: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FindMax {
    pub profile: String,
    /// The highest arrival rate that met every threshold and the audit.
    pub best_rate_per_s: Option<f64>,
    /// Its measured request rate.
    pub best_achieved_rps: Option<f64>,
    pub best_step_dir: Option<String>,
    pub step_time_s: f64,
    /// Each step's warm-up, left out of its thresholds.
    #[serde(default)]
    pub warmup_s: f64,
    pub connections: usize,
    pub steps: Vec<Step>,
    /// The run at the best rate again, which must pass too; None without a best rate.
    #[serde(default)]
    pub confirmation: Option<Step>,
}

impl FindMax {
    /// A best rate, and its confirmation passed.
    pub fn confirmed(&self) -> bool {
        self.best_rate_per_s.is_some() && self.confirmation.as_ref().is_some_and(|c| c.passed)
    }
}

/// Each step's warm-up: a fifth of its time, at most this.
const WARMUP_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// The search's answer in its run directory, read back by `scale size`.
pub const FIND_MAX_FILE: &str = "find-max.json";

impl FindMax {
    /// The find-max.json of the run directory `dir`.
    pub fn read(dir: &std::path::Path) -> Result<FindMax, ReportFileError> {
        read_json(&dir.join(FIND_MAX_FILE))
    }
}

/// Run the search. `on_step` hears of each step as it finishes.
pub async fn find_max(
    mut prepared: Prepared,
    limits: SearchLimits,
    mut on_step: impl FnMut(&Step),
) -> Result<FindMax, LoadtestError> {
    let Shape::Arrival(first) = prepared.plan().shape else {
        return Err(LoadtestError::Config(
            "--find-max searches over an arrival rate: give the profile load.rate, or pass --rate"
                .into(),
        ));
    };
    if prepared
        .plan()
        .gate
        .scopes
        .iter()
        .all(|s| s.rules.is_empty())
    {
        return Err(LoadtestError::Config(
            "--find-max needs thresholds to fail: the profile has none".into(),
        ));
    }
    let run_dir = prepared.run_dir().to_path_buf();
    let warmup = (first.run_time / 5).min(WARMUP_MAX);
    prepared.judge_after_at_least(warmup);
    let mut steps: Vec<Step> = Vec::new();
    let mut best: Option<(f64, RunSummary, String)> = None;
    let mut search = Search::new(first.start_per_s, limits);
    let mut next = Some(first.start_per_s);
    while let Some(rate) = next {
        let arrival = ArrivalRate {
            start_per_s: rate,
            end_per_s: rate,
            ..first
        };
        let name = format!("step-{:02}-{:.0}-per-s", steps.len() + 1, rate);
        let (step, summary) = run_one(
            &mut prepared,
            &run_dir,
            name.clone(),
            steps.len() + 1,
            arrival,
        )
        .await?;
        on_step(&step);
        steps.push(step);
        next = search.record(summary.passed);
        if summary.passed && best.as_ref().is_none_or(|b| rate > b.0) {
            best = Some((rate, summary, name));
        }
    }
    let confirmation = match &best {
        Some((rate, _, _)) => {
            let arrival = ArrivalRate {
                start_per_s: *rate,
                end_per_s: *rate,
                ..first
            };
            let name = format!("confirm-{rate:.0}-per-s");
            let (step, _) =
                run_one(&mut prepared, &run_dir, name, steps.len() + 1, arrival).await?;
            on_step(&step);
            Some(step)
        }
        None => None,
    };
    let result = FindMax {
        profile: prepared.plan().name.clone(),
        best_rate_per_s: best.as_ref().map(|b| b.0),
        best_achieved_rps: best.as_ref().map(|b| b.1.total.ok_rps),
        best_step_dir: best.as_ref().map(|b| b.2.clone()),
        step_time_s: first.run_time.as_secs_f64(),
        warmup_s: warmup.as_secs_f64(),
        connections: first.connections,
        steps,
        confirmation,
    };
    std::fs::write(
        run_dir.join(FIND_MAX_FILE),
        serde_json::to_vec_pretty(&result).map_err(|e| LoadtestError::Run(e.to_string()))?,
    )?;
    // The run's own summary is the best step's, so `report show RUN` shows the answer.
    if let Some((_, summary, _)) = &best {
        super::report::write_all(&run_dir, summary)?;
    }
    // A search always ends on a failing step; keep the server's files only if none passed.
    prepared.finish(result.best_rate_per_s.is_some()).await?;
    Ok(result)
}

/// One step at `arrival`: wait for the target's write queue to drain, run, report.
async fn run_one(
    prepared: &mut Prepared,
    run_dir: &std::path::Path,
    name: String,
    index: usize,
    arrival: ArrivalRate,
) -> Result<(Step, RunSummary), LoadtestError> {
    let dir: PathBuf = run_dir.join(&name);
    std::fs::create_dir_all(&dir)?;
    prepared.drain().await;
    prepared.new_context(Some(arrival));
    let summary = prepared.run_step(&dir).await?;
    let step = Step {
        index,
        rate_per_s: arrival.start_per_s,
        passed: summary.passed,
        dir: name,
        achieved_rps: summary.total.ok_rps,
        p99_ms: summary.total.p99_ms,
        error_rate: summary.total.error_rate,
        failed: summary
            .failed_thresholds()
            .map(|t| format!("{} {}", t.scope, t.rule))
            .chain(
                summary
                    .audit
                    .iter()
                    .filter(|a| !a.ok)
                    .map(|_| "money audit".to_string()),
            )
            .collect(),
    };
    Ok((step, summary))
}

/// The rates a search visits: grow by `factor` while steps pass, then bisect between
/// the best pass and the lowest failure. Bounded by `steps_max` and `rate_max_per_s`.
#[derive(Clone, Debug)]
pub struct Search {
    limits: SearchLimits,
    rate: f64,
    best: Option<f64>,
    failed_at: Option<f64>,
    bisections: usize,
    steps: usize,
    downs: usize,
}

impl Search {
    pub fn new(start_per_s: f64, limits: SearchLimits) -> Self {
        Search {
            limits,
            rate: start_per_s,
            best: None,
            failed_at: None,
            bisections: 0,
            steps: 0,
            downs: 0,
        }
    }

    /// Record how the step at the current rate went; the next rate, or None when done.
    pub fn record(&mut self, passed: bool) -> Option<f64> {
        self.steps += 1;
        if passed {
            self.best = Some(self.best.map_or(self.rate, |b| b.max(self.rate)));
        } else {
            self.failed_at = Some(self.failed_at.map_or(self.rate, |f| f.min(self.rate)));
        }
        let next = match (self.best, self.failed_at) {
            (_, None) => self.rate * self.limits.factor,
            // Nothing passed yet: step down, a bounded number of times.
            (None, Some(lowest)) => {
                if self.downs >= self.limits.down_steps_max {
                    return None;
                }
                self.downs += 1;
                let next = (lowest / self.limits.factor).floor();
                if next < 1.0 {
                    return None;
                }
                next
            }
            (Some(lo), Some(hi)) => {
                if self.bisections >= self.limits.bisect_steps || hi - lo <= 1.0 {
                    return None;
                }
                self.bisections += 1;
                ((lo + hi) / 2.0).round()
            }
        };
        if self.steps >= self.limits.steps_max || next > self.limits.rate_max_per_s {
            return None;
        }
        self.rate = next.max(1.0);
        Some(self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visit(start: f64, limits: SearchLimits, capacity: f64) -> (Vec<f64>, Option<f64>) {
        let mut search = Search::new(start, limits);
        let mut rates = vec![start];
        let mut rate = start;
        while let Some(next) = search.record(rate <= capacity) {
            rates.push(next);
            rate = next;
        }
        (rates, search.best)
    }

    #[test]
    fn grows_then_bisects() {
        let (rates, best) = visit(100.0, SearchLimits::default(), 333.0);
        assert_eq!(rates, [100.0, 200.0, 400.0, 300.0, 350.0, 325.0]);
        assert_eq!(best, Some(325.0));
    }

    #[test]
    fn a_failing_first_step_searches_down_then_bisects() {
        let (rates, best) = visit(100.0, SearchLimits::default(), 30.0);
        assert_eq!(rates, [100.0, 50.0, 25.0, 38.0, 32.0, 29.0]);
        assert_eq!(best, Some(29.0));
        // Never passing: down a bounded number of times, then no answer.
        let (rates, best) = visit(100.0, SearchLimits::default(), 0.5);
        assert_eq!(rates, [100.0, 50.0, 25.0, 12.0, 6.0]);
        assert_eq!(best, None);
    }

    #[test]
    fn never_passes_its_bounds() {
        let limits = SearchLimits {
            rate_max_per_s: 1000.0,
            ..Default::default()
        };
        let (rates, best) = visit(100.0, limits, f64::INFINITY);
        assert_eq!(rates, [100.0, 200.0, 400.0, 800.0]);
        assert_eq!(best, Some(800.0));
        let limits = SearchLimits {
            steps_max: 3,
            ..Default::default()
        };
        assert_eq!(visit(100.0, limits, f64::INFINITY).0.len(), 3);
    }
}
