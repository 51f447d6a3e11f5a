//! What a run leaves in reports/<run-id>/: summary.json (read back by `paytool report`),
//! summary.md for a CI job summary, junit.xml, the acknowledgement log and the audit.

use super::audit::AuditOutcome;
use super::summary::{RequestRow, ServerFigures};
use super::thresholds::ThresholdResult;
use crate::scenarios::cadence::CoMitigation;
pub use crate::scenarios::instances::InstanceFigures;
use crate::scenarios::record::{Latencies, SavedHistogram};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The summary of a run in its directory; `report` and `scale size` read it back.
pub const SUMMARY_FILE: &str = "summary.json";

/// Why a run's JSON report file could not be read. Missing and corrupt are different
/// answers: `scale size` falls back to summary.json only when find-max.json is missing,
/// never when it is unreadable.
#[derive(Debug, thiserror::Error)]
pub enum ReportFileError {
    #[error("{} is missing", path.display())]
    Missing { path: PathBuf },
    /// serde_json's message carries the line and column.
    #[error("{} is corrupt: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Read one JSON report file, telling a missing file from a corrupt or unreadable one.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ReportFileError> {
    let path = path.to_path_buf();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ReportFileError::Missing { path });
        }
        Err(source) => return Err(ReportFileError::Io { path, source }),
    };
    serde_json::from_str(&text).map_err(|source| ReportFileError::Corrupt { path, source })
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    /// SUMMARY_SCHEMA when written; 0 for summaries written before it was kept.
    #[serde(default)]
    pub schema: u32,
    pub run_id: String,
    pub profile: String,
    /// SHA-256 of the profile as resolved (the run dir's profile.toml).
    #[serde(default)]
    pub profile_sha256: String,
    #[serde(default)]
    pub paytool_version: String,
    /// When the load began and ended, UTC (RFC 3339); the start also in ms since the
    /// epoch, which lines segments' intervals up when they are merged.
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub started_at_ms: i64,
    /// `--segment I/N`: which slice of the profile this run was ("2/3").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// The histograms the thresholds judged (after the warm-up), as `histograms`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub histograms_judged: BTreeMap<String, SavedLatencies>,
    #[serde(default)]
    pub ended_at: String,
    pub target: String,
    /// The PostgreSQL layout the spawned instances ran on, if any.
    #[serde(default)]
    pub layout: Option<LayoutFigures>,
    /// Each instance the journeys sent to, and how many requests it was sent.
    #[serde(default)]
    pub instances: Vec<InstanceFigures>,
    pub duration_s: f64,
    /// Seconds the money audit took after the load (resends, read-back, ledger audit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_s: Option<f64>,
    /// The closed model's coordinated-omission mitigation, and how many synthetic
    /// requests it backfilled (counted in the histograms, as Goose counts its own).
    #[serde(default, skip_serializing_if = "is_disabled")]
    pub co_mitigation: CoMitigation,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub co_backfilled: u64,
    pub users_max: usize,
    pub requests: Vec<RequestRow>,
    pub total: RequestRow,
    pub server: Option<ServerFigures>,
    /// Open model only: how well the schedule was kept.
    #[serde(default)]
    pub open_model: Option<OpenModelFigures>,
    pub thresholds: Vec<ThresholdResult>,
    pub audit: Option<AuditOutcome>,
    /// Each request name's latency histograms over the run, successes and failures
    /// apart, every recorded value with its count: any percentile can be computed again,
    /// and runs merged by adding them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub histograms: BTreeMap<String, SavedLatencies>,
    /// Why `[thresholds] abort_on_fail` stopped the run early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    /// The faults the profile's `[[chaos]]` steps injected, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chaos: Vec<super::chaos::FaultRecord>,
    pub passed: bool,
}

/// `paytool loadtest`'s exit codes beside 0 (passed), 2 (bad input) and 3 (the target
/// unreachable or the run could not start).
pub const EXIT_THRESHOLD_FAILED: u8 = 1;
pub const EXIT_AUDIT_FAILED: u8 = 4;
/// The run broke after it started: an error, or a chaos step that could not be done.
pub const EXIT_RUN_BROKE: u8 = 5;

/// What summary.json's fields mean; raised when one changes meaning.
pub const SUMMARY_SCHEMA: u32 = 1;

/// One request name's histograms, as summary.json keeps them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedLatencies {
    pub ok: SavedHistogram,
    pub failed: SavedHistogram,
}

impl From<&Latencies> for SavedLatencies {
    fn from(l: &Latencies) -> Self {
        SavedLatencies {
            ok: SavedHistogram::from(&l.ok),
            failed: SavedHistogram::from(&l.failed),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LayoutFigures {
    pub name: String,
    pub shards: Vec<String>,
    /// "spawn" (throwaway servers) or "existing".
    pub postgres: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OpenModelFigures {
    pub rate_start_per_s: f64,
    pub rate_end_per_s: f64,
    pub connections: usize,
    /// The most the pool could grow to (`load.connections_max`).
    #[serde(default)]
    pub connections_max: usize,
    /// How many times an arrival found every connection busy and the pool grew by one.
    #[serde(default)]
    pub pool_grew: u64,
    /// Connections open at the end (at most `connections_max`).
    #[serde(default)]
    pub connections_peak: usize,
    pub scheduled: u64,
    pub sent: u64,
    /// Arrivals sent more than `late_after_ms` after their due time.
    pub late: u64,
    pub late_after_ms: u64,
    /// Arrivals never sent: due longer ago than the request timeout (counted as errors).
    #[serde(default)]
    pub dropped: u64,
    pub send_lag_p99_ms: f64,
}

impl OpenModelFigures {
    /// One line for people: how well the schedule was kept.
    pub fn describe(&self) -> String {
        let pool = match self.pool_grew {
            0 => format!("{} connections", self.connections),
            n => format!(
                "{} connections, grown {n} times to {} of at most {}",
                self.connections, self.connections_peak, self.connections_max
            ),
        };
        format!(
            "{} of {} scheduled arrivals sent ({}..{}/s, {pool}); {} more than {} ms late, {} dropped; send lag p99 {:.1} ms",
            self.sent,
            self.scheduled,
            self.rate_start_per_s,
            self.rate_end_per_s,
            self.late,
            self.late_after_ms,
            self.dropped,
            self.send_lag_p99_ms
        )
    }
}

fn is_disabled(c: &CoMitigation) -> bool {
    *c == CoMitigation::Disabled
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl RunSummary {
    /// The summary.json of the run directory `dir`.
    pub fn read(dir: &Path) -> Result<RunSummary, ReportFileError> {
        read_json(&dir.join(SUMMARY_FILE))
    }

    /// With several instances, how the requests were spread over them.
    pub fn instances_line(&self) -> Option<String> {
        (self.instances.len() > 1).then(|| {
            let each: Vec<String> = self
                .instances
                .iter()
                .map(|i| format!("{} {}", i.base_url, i.requests))
                .collect();
            format!("requests per instance: {}", each.join(", "))
        })
    }

    /// The exit code a pipeline reads: 0 passed; 4 the money audit failed (whatever
    /// else did); 5 a chaos step could not be injected or lifted; 1 a threshold failed
    /// or the run was stopped early by one.
    pub fn exit_code(&self) -> u8 {
        if self.passed {
            0
        } else if self.audit.as_ref().is_some_and(|a| !a.ok) {
            EXIT_AUDIT_FAILED
        } else if self.chaos.iter().any(|f| !f.ok()) {
            EXIT_RUN_BROKE
        } else {
            EXIT_THRESHOLD_FAILED
        }
    }

    pub fn failed_thresholds(&self) -> impl Iterator<Item = &ThresholdResult> {
        self.thresholds.iter().filter(|t| !t.passed)
    }
}

pub fn write_all(dir: &Path, s: &RunSummary) -> std::io::Result<()> {
    std::fs::write(dir.join(SUMMARY_FILE), serde_json::to_vec_pretty(s)?)?;
    std::fs::write(dir.join("summary.md"), markdown(s))?;
    std::fs::write(dir.join("junit.xml"), junit(s))?;
    if let Some(a) = &s.audit {
        std::fs::write(dir.join("audit.json"), serde_json::to_vec_pretty(a)?)?;
    }
    Ok(())
}

pub fn markdown(s: &RunSummary) -> String {
    let mut md = String::new();
    let verdict = if s.passed { "PASSED" } else { "FAILED" };
    let _ = writeln!(md, "## paytool loadtest `{}`: {verdict}\n", s.profile);
    let _ = writeln!(
        md,
        "Run `{}` against {}, {:.0} s, up to {} users.\n",
        s.run_id, s.target, s.duration_s, s.users_max
    );
    if let Some(line) = s.instances_line() {
        let _ = writeln!(md, "{line}.\n");
    }
    let _ = writeln!(
        md,
        "| request | count | rps | p50 ms | p95 ms | p99 ms | max ms | errors |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in s.requests.iter().chain(std::iter::once(&s.total)) {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} ({:.2}%) |",
            r.name,
            r.count,
            r.rps,
            r.p50_ms,
            r.p95_ms,
            r.p99_ms,
            r.max_ms,
            r.errors,
            r.error_rate * 100.0
        );
    }
    if !s.thresholds.is_empty() {
        let _ = writeln!(
            md,
            "\n| threshold | limit | actual | |\n|---|---:|---:|---|"
        );
        for t in &s.thresholds {
            let actual = t
                .actual
                .map(|a| format!("{a}"))
                .unwrap_or_else(|| "no samples".into());
            let mark = if t.passed { "pass" } else { "**FAIL**" };
            let _ = writeln!(
                md,
                "| {} {} | {} | {actual} | {mark} |",
                t.scope, t.rule, t.limit
            );
        }
    }
    if let Some(a) = &s.audit {
        let _ = writeln!(
            md,
            "\nMoney audit over {} acknowledged payments: {}\n",
            a.acknowledged_payments,
            if a.ok { "passed" } else { "**FAILED**" }
        );
        for c in &a.checks {
            let _ = writeln!(
                md,
                "- {} {}",
                if c.ok { "pass" } else { "**FAIL**" },
                c.name
            );
            for v in c.violations.iter().take(10) {
                let _ = writeln!(md, "  - {v}");
            }
        }
    }
    if !s.chaos.is_empty() {
        let _ = writeln!(
            md,
            "\n| fault | on | at s | lifted s | requests | failed | p99 ms | max ms | recovered after |\n|---|---|--:|--:|--:|--:|--:|--:|---|"
        );
        for f in &s.chaos {
            let recovered = match (&f.error, f.recovered_after_s) {
                (Some(e), _) => format!("**FAILED**: {e}"),
                (None, Some(r)) => format!("{r:.1} s"),
                (None, None) => "not within the run".into(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} | {:.1} | {} | {} | {:.0} | {:.0} | {recovered} |",
                f.fault,
                f.subject,
                f.injected_at_s,
                f.lifted_at_s,
                f.requests,
                f.failed,
                f.p99_ms,
                f.max_ms
            );
        }
    }
    if let Some(o) = &s.open_model {
        let _ = writeln!(md, "\nOpen model: {}.", o.describe());
    }
    if let Some(f) = &s.server {
        let _ = writeln!(
            md,
            "\nServer: {} group commits, mean batch {} writes, write queue depth up to {}.",
            f.commit_batches, f.commit_batch_size_mean, f.write_queue_depth_max
        );
    }
    md
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// One test case per threshold and per audit check.
pub fn junit(s: &RunSummary) -> String {
    let mut cases = String::new();
    let mut failures = 0;
    for t in &s.thresholds {
        // Stable across limit changes (CI tools track a test by its name): the limit is
        // in the message.
        let name = format!("threshold {} {}", t.scope, t.rule);
        let _ = write!(
            cases,
            "    <testcase classname=\"paytool.thresholds\" name=\"{}\">",
            xml(&name)
        );
        if !t.passed {
            failures += 1;
            let actual = t
                .actual
                .map(|a| a.to_string())
                .unwrap_or_else(|| "no samples".into());
            let _ = write!(
                cases,
                "<failure message=\"{}\"/>",
                xml(&format!("actual {actual}, limit {}", t.limit))
            );
        }
        cases.push_str("</testcase>\n");
    }
    for c in s.audit.iter().flat_map(|a| &a.checks) {
        let _ = write!(
            cases,
            "    <testcase classname=\"paytool.audit\" name=\"{}\">",
            xml(&c.name)
        );
        if !c.ok {
            failures += 1;
            let _ = write!(
                cases,
                "<failure message=\"{} violation(s)\">{}</failure>",
                c.violation_count,
                xml(&c.violations.join("\n"))
            );
        }
        cases.push_str("</testcase>\n");
    }
    let tests = s.thresholds.len() + s.audit.as_ref().map_or(0, |a| a.checks.len());
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"paytool loadtest {}\" tests=\"{tests}\" failures=\"{failures}\" time=\"{:.1}\">\n{cases}  </testsuite>\n</testsuites>\n",
        xml(&s.profile),
        s.duration_s
    )
}

/// Runs for unit tests elsewhere in the library: the figures a rule reads, the rest plain.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{CoMitigation, RequestRow, RunSummary};

    pub fn request(name: &str, p99_ms: f64, error_rate: f64) -> RequestRow {
        RequestRow {
            name: name.into(),
            count: 1000,
            rps: 100.0,
            p50_ms: p99_ms / 4.0,
            p95_ms: p99_ms / 2.0,
            p99_ms,
            max_ms: p99_ms * 2.0,
            errors: (error_rate * 1000.0) as u64,
            error_rate,

            ..Default::default()
        }
    }

    /// A run of `requests` whose total measured `total_rps`.
    pub fn summary(requests: Vec<RequestRow>, total_rps: f64, passed: bool) -> RunSummary {
        RunSummary {
            run_id: "run".into(),
            profile: "smoke".into(),
            target: "embedded".into(),
            layout: None,
            instances: vec![],
            duration_s: 10.0,
            audit_s: None,
            co_mitigation: CoMitigation::Disabled,
            co_backfilled: 0,
            users_max: 1,
            requests,
            total: RequestRow {
                rps: total_rps,
                ..request("total", 1.0, 0.0)
            },
            server: None,
            open_model: None,
            thresholds: vec![],
            audit: None,
            chaos: vec![],
            aborted: None,
            passed,
            schema: super::SUMMARY_SCHEMA,
            profile_sha256: String::new(),
            paytool_version: String::new(),
            started_at: String::new(),
            started_at_ms: 0,
            segment: None,
            histograms_judged: Default::default(),
            ended_at: String::new(),
            histograms: Default::default(),
        }
    }
}
