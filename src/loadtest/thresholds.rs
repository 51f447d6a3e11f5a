//! Thresholds: the capacity gate. Each rule is checked against the summary.

use super::summary::RequestRow;
use crate::profile::load::{Limits, ThresholdsSection};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ThresholdResult {
    /// "All" or a request name.
    pub scope: String,
    pub rule: String,
    pub limit: f64,
    /// None when the request had no samples.
    pub actual: Option<f64>,
    pub passed: bool,
}

pub fn evaluate(
    t: &ThresholdsSection,
    rows: &[RequestRow],
    total: &RequestRow,
) -> Vec<ThresholdResult> {
    let mut out = Vec::new();
    check(&mut out, "All", &t.all, Some(total));
    for r in &t.request {
        check(
            &mut out,
            &r.name,
            &r.limits,
            rows.iter().find(|row| row.name == r.name),
        );
    }
    out
}

fn check(out: &mut Vec<ThresholdResult>, scope: &str, l: &Limits, row: Option<&RequestRow>) {
    let row = row.filter(|r| r.count > 0);
    let mut rule =
        |name: &str, limit: Option<f64>, actual: fn(&RequestRow) -> f64, at_most: bool| {
            let Some(limit) = limit else { return };
            let actual = row.map(actual);
            let passed = match actual {
                Some(a) if at_most => a <= limit,
                Some(a) => a >= limit,
                None => false,
            };
            out.push(ThresholdResult {
                scope: scope.to_string(),
                rule: name.to_string(),
                limit,
                actual,
                passed,
            });
        };
    rule("error_rate_max", l.error_rate_max, |r| r.error_rate, true);
    rule(
        "p95_ms_max",
        l.p95_ms_max.map(|v| v as f64),
        |r| r.p95_ms,
        true,
    );
    rule(
        "p99_ms_max",
        l.p99_ms_max.map(|v| v as f64),
        |r| r.p99_ms,
        true,
    );
    rule("rps_min", l.rps_min, |r| r.rps, false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::load::RequestLimits;

    fn row(name: &str, p99: f64) -> RequestRow {
        RequestRow {
            name: name.into(),
            count: 10,
            rps: 5.0,
            p50_ms: 1.0,
            p95_ms: 2.0,
            p99_ms: p99,
            max_ms: p99,
            errors: 0,
            error_rate: 0.0,

            ..Default::default()
        }
    }

    #[test]
    fn a_request_without_samples_fails() {
        let t = ThresholdsSection {
            all: Limits {
                p99_ms_max: Some(10),
                ..Default::default()
            },
            request: vec![RequestLimits {
                name: "GET /nothing".into(),
                limits: Limits {
                    p99_ms_max: Some(10),
                    ..Default::default()
                },
            }],
        };
        let r = evaluate(&t, &[row("POST /v1/payments", 3.0)], &row("All", 3.0));
        assert!(r[0].passed);
        assert!(!r[1].passed && r[1].actual.is_none());
    }
}
