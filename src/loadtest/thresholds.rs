//! Thresholds: the capacity gate. Each rule of the profile's `Gate` is judged on the
//! run's histograms after its warm-up: latency of successful requests (unless a rule
//! counts all), the error rate, successful requests a second, and for the open model the
//! arrivals sent late or dropped.

use crate::profile::gate::{ALL, Gate, LatencyOf, Metric, Rule};
use crate::scenarios::record::Latencies;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ThresholdResult {
    /// "All" or a request name.
    pub scope: String,
    /// The rule's stable name ("p99_ms_max"); the limit is in `limit`.
    pub rule: String,
    pub limit: f64,
    /// None when the scope had no samples to judge.
    pub actual: Option<f64>,
    pub passed: bool,
}

/// The open model's schedule over the judged part of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Schedule {
    pub sent: u64,
    pub late: u64,
    pub dropped: u64,
}

/// What the rules are judged on: each request name's latencies from the end of the
/// warm-up on, and how long that was.
pub struct Judged {
    by_name: BTreeMap<String, Latencies>,
    all: Latencies,
    seconds: f64,
    schedule: Option<Schedule>,
}

impl Judged {
    /// Each request name's latencies after the warm-up (`Recorder::judged`), over
    /// `seconds` (the load's length less the warm-up).
    pub fn new(
        by_name: BTreeMap<String, Latencies>,
        seconds: f64,
        schedule: Option<Schedule>,
    ) -> Self {
        let mut all = Latencies::default();
        for l in by_name.values() {
            all.add(l);
        }
        Judged {
            by_name,
            all,
            seconds: seconds.max(0.001),
            schedule,
        }
    }
}

pub fn evaluate(gate: &Gate, judged: &Judged) -> Vec<ThresholdResult> {
    let mut out = Vec::new();
    for scoped in &gate.scopes {
        let latencies = match scoped.scope.as_str() {
            ALL => Some(&judged.all),
            name => judged.by_name.get(name),
        }
        .filter(|l| l.requests() > 0);
        for rule in &scoped.rules {
            let actual = actual(rule, latencies, judged);
            out.push(ThresholdResult {
                scope: scoped.scope.clone(),
                rule: rule.key.to_string(),
                limit: rule.limit,
                passed: actual.is_some_and(|a| rule.kept(a)),
                actual,
            });
        }
    }
    out
}

fn actual(rule: &Rule, l: Option<&Latencies>, judged: &Judged) -> Option<f64> {
    match rule.metric {
        Metric::LateRate => judged
            .schedule
            .filter(|s| s.sent > 0)
            .map(|s| s.late as f64 / s.sent as f64),
        Metric::Dropped => judged.schedule.map(|s| s.dropped as f64),
        Metric::ErrorRate => l.map(|l| l.failed.len() as f64 / l.requests() as f64),
        Metric::Rps => l.map(|l| l.ok.len() as f64 / judged.seconds),
        Metric::Latency(q) => {
            let h = match rule.latency_of {
                LatencyOf::Successes => l?.ok.clone(),
                LatencyOf::All => l?.all(),
            };
            if h.is_empty() {
                return None;
            }
            let us = if q >= 1.0 {
                h.max()
            } else {
                h.value_at_quantile(q)
            };
            Some(us as f64 / 1000.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::gate::Scoped;
    use crate::scenarios::record::Recorder;

    fn rule(text: &str) -> Rule {
        crate::profile::gate::parse_rule(text, LatencyOf::Successes).unwrap()
    }

    #[test]
    fn rules_are_judged_on_successes_after_the_warm_up() {
        use std::time::Duration;
        let r = Recorder::new(Duration::from_millis(20));
        r.begin(Duration::from_millis(20));
        // The warm-up: slow and failing.
        for _ in 0..50 {
            r.record("POST /p", Duration::from_millis(900), false, Some(503));
        }
        std::thread::sleep(Duration::from_millis(25));
        for _ in 0..99 {
            r.record("POST /p", Duration::from_millis(2), true, Some(200));
        }
        r.record("POST /p", Duration::from_millis(700), false, None);
        let gate = Gate {
            scopes: vec![
                Scoped {
                    scope: ALL.into(),
                    rules: vec![
                        rule("p99 < 3ms"),
                        rule("error_rate < 2%"),
                        rule("max < 10ms"),
                    ],
                },
                Scoped {
                    scope: "GET /nothing".into(),
                    rules: vec![rule("p99 < 3ms")],
                },
            ],
            ..Gate::default()
        };
        let results = evaluate(&gate, &Judged::new(r.judged(), 1.0, None));
        // The failure's 700 ms is not a success's latency; the warm-up is not judged.
        assert!(results[0].passed, "{results:?}");
        assert!(results[1].passed, "1 failure in 100: {results:?}");
        assert!(results[2].passed, "{results:?}");
        assert!(!results[3].passed && results[3].actual.is_none());
        // With the warm-up judged, its failures break the error rate (its 900 ms are
        // failures', so the latency rules still hold).
        let whole: BTreeMap<String, Latencies> = r
            .snapshot()
            .series
            .into_iter()
            .map(|(n, s)| (n, s.whole))
            .collect();
        let whole = evaluate(&gate, &Judged::new(whole, 1.0, None));
        assert!(!whole[1].passed && whole[2].passed, "{whole:?}");
    }

    #[test]
    fn the_schedule_rules_read_the_open_models_figures() {
        let gate = Gate {
            scopes: vec![Scoped {
                scope: ALL.into(),
                rules: vec![rule("late_rate < 5%"), rule("dropped <= 0")],
            }],
            ..Gate::default()
        };
        let schedule = Schedule {
            sent: 1000,
            late: 40,
            dropped: 1,
        };
        let judged = Judged::new(BTreeMap::new(), 1.0, Some(schedule));
        let results = evaluate(&gate, &judged);
        assert_eq!(results[0].actual, Some(0.04));
        assert!(results[0].passed && !results[1].passed);
    }
}
