//! `paytool report merge`: the runs of `--segment I/N` generators added into one run.
//! Histograms are added (never percentiles averaged), intervals lined up by each run's
//! wall-clock start, the profile's thresholds judged again on the merge, and the money
//! audits combined; the same report files as a single run are written.

use super::audit::{AuditCheck, AuditOutcome};
use super::report::{self, RunSummary, SavedLatencies};
use super::summary;
use super::thresholds::{self, Judged, Schedule};
use super::timeseries::{self, INTERVALS_FILE, SavedInterval};
use crate::profile::gate::Gate;
use crate::scenarios::cadence::CoMitigation;
use crate::scenarios::record::{IntervalFigures, Latencies, Recorded, Series};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{}: {source}", dir.display())]
    Read {
        dir: PathBuf,
        source: report::ReportFileError,
    },
    #[error("{}: {what}", dir.display())]
    Unfit { dir: PathBuf, what: String },
    #[error("writing the merge: {0}")]
    Io(#[from] std::io::Error),
}

/// One segment's run, read back.
struct Part {
    dir: PathBuf,
    summary: RunSummary,
    intervals: Vec<SavedInterval>,
}

fn read(dir: &Path) -> Result<Part, MergeError> {
    let summary = RunSummary::read(dir).map_err(|source| MergeError::Read {
        dir: dir.to_path_buf(),
        source,
    })?;
    let unfit = |what: &str| MergeError::Unfit {
        dir: dir.to_path_buf(),
        what: what.to_string(),
    };
    if summary.schema < 1 || summary.histograms.is_empty() {
        return Err(unfit(
            "its summary.json has no histograms (written by a paytool before they were kept)",
        ));
    }
    let text = std::fs::read_to_string(dir.join(INTERVALS_FILE))
        .map_err(|e| unfit(&format!("{INTERVALS_FILE}: {e}")))?;
    let intervals = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| unfit(&format!("{INTERVALS_FILE} line {}: {e}", i + 1)))
        })
        .collect::<Result<_, _>>()?;
    Ok(Part {
        dir: dir.to_path_buf(),
        summary,
        intervals,
    })
}

/// One interval being added up: its latencies and failures by status.
type IntervalSum = (Latencies, BTreeMap<String, u64>);
/// One request name being added up: the whole run, the judged part, its intervals.
type Merging = (Latencies, Latencies, BTreeMap<usize, IntervalSum>);

/// Merge the runs in `dirs`; `gate` is the profile's, judged again on the merge.
/// Different profiles are refused unless `force`.
pub fn merge(
    dirs: &[PathBuf],
    gate: &Gate,
    force: bool,
) -> Result<(RunSummary, Vec<timeseries::Row>), MergeError> {
    let parts: Vec<Part> = dirs.iter().map(|d| read(d)).collect::<Result<_, _>>()?;
    let first = &parts[0];
    if let Some(other) = parts
        .iter()
        .find(|p| p.summary.profile_sha256 != first.summary.profile_sha256)
        .filter(|_| !force)
    {
        return Err(MergeError::Unfit {
            dir: other.dir.clone(),
            what: format!(
                "ran another profile than {} (profile SHA-256 {} vs {}): pass --force to merge anyway",
                first.dir.display(),
                &other.summary.profile_sha256,
                &first.summary.profile_sha256
            ),
        });
    }
    let interval = Duration::from_secs(1);
    let start_ms = parts
        .iter()
        .map(|p| p.summary.started_at_ms)
        .min()
        .unwrap_or(0);
    let mut series: BTreeMap<String, Merging> = BTreeMap::new();
    for p in &parts {
        let add = |into: &mut Latencies, saved: &SavedLatencies| {
            into.add(&Latencies {
                ok: saved.ok.histogram(),
                failed: saved.failed.histogram(),
            })
        };
        for (name, saved) in &p.summary.histograms {
            add(&mut series.entry(name.clone()).or_default().0, saved);
        }
        for (name, saved) in &p.summary.histograms_judged {
            add(&mut series.entry(name.clone()).or_default().1, saved);
        }
        let offset = ((p.summary.started_at_ms - start_ms) as f64 / interval.as_millis() as f64)
            .round() as usize;
        for i in &p.intervals {
            let entry = series
                .entry(i.name.clone())
                .or_default()
                .2
                .entry(i.index + offset)
                .or_default();
            entry.0.add(&Latencies {
                ok: i.ok.histogram(),
                failed: i.failed.histogram(),
            });
            for (status, n) in &i.failures_by_status {
                *entry.1.entry(status.clone()).or_default() += n;
            }
        }
    }
    let mut all_intervals: BTreeMap<usize, IntervalSum> = BTreeMap::new();
    let mut recorded = Recorded {
        interval,
        ..Recorded::default()
    };
    let mut judged = BTreeMap::new();
    for (name, (whole, judged_l, intervals)) in series {
        let mut figures = Vec::with_capacity(intervals.len());
        for (index, (l, failures)) in intervals {
            let all = all_intervals.entry(index).or_default();
            all.0.add(&l);
            for (s, n) in &failures {
                *all.1.entry(s.clone()).or_default() += n;
            }
            figures.push(IntervalFigures::of(index, &l, failures));
        }
        judged.insert(name.clone(), judged_l);
        recorded.series.insert(
            name,
            Series {
                whole,
                judged: Latencies::default(),
                intervals: figures,
            },
        );
    }
    recorded.all_intervals = all_intervals
        .into_iter()
        .map(|(index, (l, failures))| IntervalFigures::of(index, &l, failures))
        .collect();

    // The segments ran side by side: the merge lasts as long as the longest.
    let seconds = parts
        .iter()
        .map(|p| p.summary.duration_s)
        .fold(0.0, f64::max);
    let (requests, total) = summary::rows(&recorded, seconds);
    let schedule = parts
        .iter()
        .filter_map(|p| p.summary.open_model.as_ref())
        .fold(None::<Schedule>, |acc, o| {
            let s = acc.unwrap_or_default();
            Some(Schedule {
                sent: s.sent + o.sent,
                late: s.late + o.late,
                dropped: s.dropped + o.dropped,
            })
        });
    let judged_for = Judged::new(judged.clone(), seconds - gate.after.as_secs_f64(), schedule);
    let thresholds = thresholds::evaluate(gate, &judged_for);
    let audit = merge_audits(&parts);
    let chaos = parts
        .iter()
        .flat_map(|p| p.summary.chaos.clone())
        .collect::<Vec<_>>();
    let passed = thresholds.iter().all(|t| t.passed)
        && audit.as_ref().is_none_or(|a| a.ok)
        && chaos.iter().all(|f| f.ok())
        && parts.iter().all(|p| p.summary.aborted.is_none());
    let rows = timeseries::rows(&recorded, &[], schedule.is_some());
    let merged = RunSummary {
        schema: report::SUMMARY_SCHEMA,
        run_id: format!(
            "{}-merged",
            first.summary.run_id.split("-seg").next().unwrap_or("run")
        ),
        profile: first.summary.profile.clone(),
        profile_sha256: first.summary.profile_sha256.clone(),
        paytool_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: parts
            .iter()
            .min_by_key(|p| p.summary.started_at_ms)
            .map(|p| p.summary.started_at.clone())
            .unwrap_or_default(),
        started_at_ms: start_ms,
        ended_at: parts
            .iter()
            .map(|p| p.summary.ended_at.clone())
            .max()
            .unwrap_or_default(),
        segment: Some(format!("{} merged", parts.len())),
        target: first.summary.target.clone(),
        layout: first.summary.layout.clone(),
        instances: Vec::new(),
        duration_s: seconds,
        // Each segment audited its own keys, all at once: the slowest is the merge's.
        co_mitigation: parts
            .first()
            .map_or(CoMitigation::Disabled, |p| p.summary.co_mitigation),
        co_backfilled: parts.iter().map(|p| p.summary.co_backfilled).sum(),
        audit_s: parts
            .iter()
            .filter_map(|p| p.summary.audit_s)
            .reduce(f64::max),
        users_max: parts.iter().map(|p| p.summary.users_max).sum(),
        requests,
        total,
        server: None,
        open_model: None,
        thresholds,
        audit,
        histograms: recorded
            .series
            .iter()
            .map(|(n, s)| (n.clone(), SavedLatencies::from(&s.whole)))
            .collect(),
        histograms_judged: judged
            .iter()
            .map(|(n, l)| (n.clone(), SavedLatencies::from(l)))
            .collect(),
        chaos,
        aborted: parts.iter().find_map(|p| p.summary.aborted.clone()),
        passed,
    };
    Ok((merged, rows))
}

/// The segments' audits as one: every check's violations added, the acknowledged
/// payments summed; None when no segment audited.
fn merge_audits(parts: &[Part]) -> Option<AuditOutcome> {
    let audits: Vec<&AuditOutcome> = parts
        .iter()
        .filter_map(|p| p.summary.audit.as_ref())
        .collect();
    if audits.is_empty() {
        return None;
    }
    let mut checks: Vec<AuditCheck> = Vec::new();
    for a in &audits {
        for c in &a.checks {
            match checks.iter_mut().find(|m| m.name == c.name) {
                Some(m) => {
                    m.ok &= c.ok;
                    m.violation_count += c.violation_count;
                    m.violations.extend(c.violations.iter().cloned());
                }
                None => checks.push(c.clone()),
            }
        }
    }
    let missing = audits.len() < parts.len();
    if missing {
        checks.push(AuditCheck {
            name: "every_segment_audited".into(),
            ok: false,
            violation_count: (parts.len() - audits.len()) as u64,
            violations: vec!["a segment ran without its audit".into()],
        });
    }
    Some(AuditOutcome {
        ok: checks.iter().all(|c| c.ok),
        acknowledged_payments: audits.iter().map(|a| a.acknowledged_payments).sum(),
        ledger_shards: audits.iter().filter_map(|a| a.ledger_shards).max(),
        checks,
    })
}

/// The store-count check over every segment: the payments the shared merchants hold on
/// `target`, counted through its API, against every segment's acknowledgements.
pub async fn count_on(
    target: &str,
    merchants: &[crate::scenarios::context::MerchantCreds],
    merged: &mut RunSummary,
) -> Result<(), super::LoadtestError> {
    let Some(audit) = merged.audit.as_mut() else {
        return Ok(());
    };
    // Listing needs no admin token: each merchant's own key lists its payments.
    let admin = super::target::Admin::new(target.to_string(), String::new());
    let mut held = 0;
    for m in merchants {
        held += admin.count_payments(&m.key).await?;
    }
    let acknowledged = audit.acknowledged_payments;
    let mut check = AuditCheck {
        name: "store_holds_exactly_the_acknowledged_payments".into(),
        ok: held == acknowledged,
        violation_count: 0,
        violations: Vec::new(),
    };
    if !check.ok {
        check.violation_count = 1;
        check.violations.push(format!(
            "the store holds {held} payments for the run's merchants; the segments were acknowledged {acknowledged}"
        ));
    }
    audit.checks.retain(|c| c.name != check.name);
    audit.checks.push(check);
    audit.ok = audit.checks.iter().all(|c| c.ok);
    merged.passed &= audit.ok;
    Ok(())
}

/// Write the merge as a run: summary.json, summary.md, junit.xml, audit.json, the time
/// series and report.html.
pub fn write(dir: &Path, merged: &RunSummary, rows: &[timeseries::Row]) -> Result<(), MergeError> {
    std::fs::create_dir_all(dir)?;
    report::write_all(dir, merged)?;
    timeseries::write(dir, rows)?;
    std::fs::write(dir.join("report.html"), super::html::render(merged, rows))?;
    Ok(())
}
