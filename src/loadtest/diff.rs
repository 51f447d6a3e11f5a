//! A baseline gate: two runs compared per request name and over all requests. A request
//! regressed when its p99 grew by more than a relative tolerance or its error rate by
//! more than an absolute one (with enough samples in both runs to tell), and the run
//! regressed when its money audit failed where the baseline's passed; `report diff`
//! exits 1 on any regression, so a CI job can gate on a baseline.

use super::report::RunSummary;
use super::summary::RequestRow;
use serde::{Serialize, Serializer};

/// p99 growth below this is timer noise on a fast request (0.04 -> 0.07 ms is +75%),
/// never a regression, whatever the relative tolerance.
pub const P99_GROWTH_MIN_MS: f64 = 0.1;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    /// Allowed relative growth of p99: 0.10 is 10%.
    pub p99_growth_max: f64,
    /// Allowed absolute growth of the error rate: 0.005 is half a percentage point.
    pub error_rate_growth_max: f64,
    /// A request with fewer samples than this in either run is shown, never judged: its
    /// p99 is a handful of requests.
    pub samples_min: u64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            p99_growth_max: 0.10,
            error_rate_growth_max: 0.005,
            samples_min: 100,
        }
    }
}

/// Why a request regressed. p99 is checked first: a request that got slower and
/// failed more reports the latency.
#[derive(Clone, Debug, PartialEq)]
pub enum Regression {
    P99 { old_ms: f64, new_ms: f64 },
    ErrorRate { old: f64, new: f64 },
}

impl std::fmt::Display for Regression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Regression::P99 { old_ms, new_ms } => write!(f, "p99 {old_ms} -> {new_ms} ms"),
            Regression::ErrorRate { old, new } => {
                write!(f, "error rate {:.2}% -> {:.2}%", old * 100.0, new * 100.0)
            }
        }
    }
}

/// As its sentence: the JSON that `report diff --output json` has always printed.
impl Serialize for Regression {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One request name in either run (or "All"); `None` where a run has no such request.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DiffRow {
    pub name: String,
    pub old_count: Option<u64>,
    pub new_count: Option<u64>,
    pub old_p50_ms: Option<f64>,
    pub new_p50_ms: Option<f64>,
    pub old_p95_ms: Option<f64>,
    pub new_p95_ms: Option<f64>,
    pub old_p99_ms: Option<f64>,
    pub new_p99_ms: Option<f64>,
    pub old_error_rate: Option<f64>,
    pub new_error_rate: Option<f64>,
    pub old_rps: Option<f64>,
    pub new_rps: Option<f64>,
    /// Successful requests a second (0 in runs written before it was kept).
    pub old_ok_rps: Option<f64>,
    pub new_ok_rps: Option<f64>,
    /// "appeared", "disappeared", or "too few samples" (not judged).
    pub note: Option<String>,
    pub regression: Option<Regression>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RunDiff {
    pub regressed: bool,
    /// Sorted by request name, then "All".
    pub requests: Vec<DiffRow>,
    /// Whether each run's money audit passed (None: it ran none).
    pub old_audit_ok: Option<bool>,
    pub new_audit_ok: Option<bool>,
    /// The audit failed in the new run where it passed (or did not run) in the old.
    pub audit_regressed: bool,
}

/// How `new` compares with `old`. A request in only one run is shown, never a
/// regression: a renamed or new journey has no baseline to fall behind.
pub fn diff(old: &RunSummary, new: &RunSummary, tolerances: Tolerances) -> RunDiff {
    let mut names: Vec<&str> = old
        .requests
        .iter()
        .chain(&new.requests)
        .map(|r| r.name.as_str())
        .collect();
    names.sort();
    names.dedup();
    let find = |s: &'_ RunSummary, name: &str| s.requests.iter().find(|r| r.name == name).cloned();
    let mut requests: Vec<DiffRow> = names
        .into_iter()
        .map(|name| row(name, find(old, name), find(new, name), tolerances))
        .collect();
    requests.push(row(
        "All",
        Some(old.total.clone()),
        Some(new.total.clone()),
        tolerances,
    ));
    let (old_audit_ok, new_audit_ok) = (
        old.audit.as_ref().map(|a| a.ok),
        new.audit.as_ref().map(|a| a.ok),
    );
    let audit_regressed = new_audit_ok == Some(false) && old_audit_ok != Some(false);
    RunDiff {
        regressed: audit_regressed || requests.iter().any(|r| r.regression.is_some()),
        requests,
        old_audit_ok,
        new_audit_ok,
        audit_regressed,
    }
}

fn row(name: &str, o: Option<RequestRow>, n: Option<RequestRow>, t: Tolerances) -> DiffRow {
    let (regression, note) = match (&o, &n) {
        (Some(o), Some(n)) if o.count.min(n.count) < t.samples_min => {
            (None, Some("too few samples".to_string()))
        }
        (Some(o), Some(n)) => (regression(o, n, t), None),
        (Some(_), None) => (None, Some("disappeared".to_string())),
        (None, _) => (None, Some("appeared".to_string())),
    };
    let (o, n) = (o.as_ref(), n.as_ref());
    DiffRow {
        name: name.to_string(),
        old_count: o.map(|r| r.count),
        new_count: n.map(|r| r.count),
        old_p50_ms: o.map(|r| r.p50_ms),
        new_p50_ms: n.map(|r| r.p50_ms),
        old_p95_ms: o.map(|r| r.p95_ms),
        new_p95_ms: n.map(|r| r.p95_ms),
        old_p99_ms: o.map(|r| r.p99_ms),
        new_p99_ms: n.map(|r| r.p99_ms),
        old_error_rate: o.map(|r| r.error_rate),
        new_error_rate: n.map(|r| r.error_rate),
        old_rps: o.map(|r| r.rps),
        new_rps: n.map(|r| r.rps),
        old_ok_rps: o.map(|r| r.ok_rps),
        new_ok_rps: n.map(|r| r.ok_rps),
        note,
        regression,
    }
}

/// The regression rules for one request present in both runs.
pub fn regression(old: &RequestRow, new: &RequestRow, t: Tolerances) -> Option<Regression> {
    let p99_grew = new.p99_ms > old.p99_ms * (1.0 + t.p99_growth_max)
        && new.p99_ms - old.p99_ms > P99_GROWTH_MIN_MS;
    if p99_grew {
        return Some(Regression::P99 {
            old_ms: old.p99_ms,
            new_ms: new.p99_ms,
        });
    }
    if new.error_rate > old.error_rate + t.error_rate_growth_max {
        return Some(Regression::ErrorRate {
            old: old.error_rate,
            new: new.error_rate,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::report::fixtures::{request, summary};

    fn run(requests: Vec<RequestRow>) -> RunSummary {
        summary(requests, 100.0, true)
    }

    #[test]
    fn the_rules_at_and_beyond_their_tolerances() {
        let t = Tolerances::default();
        // (old p99, old errors, new p99, new errors, regression)
        let cases = [
            (10.0, 0.0, 10.0, 0.0, None),
            (10.0, 0.0, 11.0, 0.0, None),
            (
                10.0,
                0.0,
                11.5,
                0.0,
                Some(Regression::P99 {
                    old_ms: 10.0,
                    new_ms: 11.5,
                }),
            ),
            (0.04, 0.0, 0.07, 0.0, None),
            (10.0, 0.010, 10.0, 0.014, None),
            (
                10.0,
                0.010,
                10.0,
                0.020,
                Some(Regression::ErrorRate {
                    old: 0.010,
                    new: 0.020,
                }),
            ),
            (10.0, 0.0, 5.0, 0.0, None),
        ];
        for (old_p99, old_err, new_p99, new_err, want) in cases {
            let got = regression(
                &request("r", old_p99, old_err),
                &request("r", new_p99, new_err),
                t,
            );
            assert_eq!(
                got, want,
                "{old_p99} ms {old_err} -> {new_p99} ms {new_err}"
            );
        }
    }

    #[test]
    fn latency_is_reported_before_errors() {
        let r = regression(
            &request("r", 10.0, 0.0),
            &request("r", 20.0, 0.5),
            Tolerances::default(),
        );
        assert!(matches!(r, Some(Regression::P99 { .. })), "{r:?}");
    }

    #[test]
    fn rows_cover_both_runs_and_only_shared_requests_can_regress() {
        let old = run(vec![request("b", 10.0, 0.0), request("gone", 1.0, 0.0)]);
        let new = run(vec![request("new", 99.0, 0.9), request("b", 30.0, 0.0)]);
        let d = diff(&old, &new, Tolerances::default());
        let names: Vec<&str> = d.requests.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["b", "gone", "new", "All"]);
        assert!(d.regressed);
        assert!(d.requests[0].regression.is_some());
        assert_eq!(
            (d.requests[1].old_p99_ms, d.requests[1].new_p99_ms),
            (Some(1.0), None)
        );
        assert_eq!(d.requests[1].note.as_deref(), Some("disappeared"));
        assert_eq!(d.requests[2].note.as_deref(), Some("appeared"));
        assert!(d.requests[1..3].iter().all(|r| r.regression.is_none()));
        assert!(!diff(&old, &old, Tolerances::default()).regressed);
    }

    #[test]
    fn few_samples_are_not_judged_and_a_failed_audit_regresses() {
        let mut few = request("b", 10.0, 0.0);
        few.count = 20;
        let mut slow = few.clone();
        slow.p99_ms = 90.0;
        let d = diff(&run(vec![few]), &run(vec![slow]), Tolerances::default());
        assert_eq!(d.requests[0].note.as_deref(), Some("too few samples"));
        assert!(d.requests[0].regression.is_none());
        let old = run(vec![request("b", 10.0, 0.0)]);
        let mut new = old.clone();
        new.audit = Some(crate::loadtest::audit::AuditOutcome {
            ok: false,
            acknowledged_payments: 1,
            ledger_shards: None,
            checks: vec![],
        });
        let d = diff(&old, &new, Tolerances::default());
        assert!(d.audit_regressed && d.regressed);
    }

    #[test]
    fn a_regression_serializes_as_its_sentence() {
        let r = Regression::ErrorRate {
            old: 0.01,
            new: 0.025,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            "error rate 1.00% -> 2.50%"
        );
    }
}
