//! The rate one instance carried in a run, for `scale size`: a find-max search's highest
//! passing rate, else the measured rate of a run that passed its thresholds and audit.

use super::find_max::FindMax;
use super::report::{ReportFileError, RunSummary};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CapacitySource {
    /// find-max.json: the highest arrival rate that met every threshold and the audit.
    FindMax,
    /// summary.json of a passed run: the rate it measured, a lower bound of capacity.
    PassingRun,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Capacity {
    pub rate_per_s: f64,
    pub source: CapacitySource,
    pub run_dir: PathBuf,
}

impl Capacity {
    /// Where the figure came from, for people.
    pub fn describe(&self) -> String {
        match self.source {
            CapacitySource::FindMax => {
                format!(
                    "find-max: highest passing rate in {}",
                    self.run_dir.display()
                )
            }
            CapacitySource::PassingRun => format!(
                "measured rate of the passing run {}",
                self.run_dir.display()
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    #[error(transparent)]
    File(#[from] ReportFileError),
    #[error("{}: the find-max search found no passing rate; nothing to size from", run_dir.display())]
    NoPassingRate { run_dir: PathBuf },
    #[error("{}: that run failed its thresholds or audit; size from a passing run", run_dir.display())]
    FailedRun { run_dir: PathBuf },
}

/// The capacity one instance showed in the run directory `run_dir`.
pub fn measured(run_dir: &Path) -> Result<Capacity, CapacityError> {
    let run_dir = run_dir.to_path_buf();
    match FindMax::read(&run_dir) {
        Ok(search) => match search.best_rate_per_s {
            Some(rate_per_s) => Ok(Capacity {
                rate_per_s,
                source: CapacitySource::FindMax,
                run_dir,
            }),
            None => Err(CapacityError::NoPassingRate { run_dir }),
        },
        // Only a run without a search falls back: a corrupt find-max.json read as "no
        // search" would size from the wrong figure without a word.
        Err(ReportFileError::Missing { .. }) => {
            let summary = RunSummary::read(&run_dir)?;
            if !summary.passed {
                return Err(CapacityError::FailedRun { run_dir });
            }
            Ok(Capacity {
                rate_per_s: summary.total.rps,
                source: CapacitySource::PassingRun,
                run_dir,
            })
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::find_max::FIND_MAX_FILE;
    use crate::loadtest::report::SUMMARY_FILE;
    use crate::loadtest::report::fixtures;

    fn summary(rps: f64, passed: bool) -> RunSummary {
        fixtures::summary(vec![], rps, passed)
    }

    fn find_max(best_rate_per_s: Option<f64>) -> FindMax {
        FindMax {
            profile: "open".into(),
            best_rate_per_s,
            best_achieved_rps: best_rate_per_s,
            best_step_dir: None,
            step_time_s: 1.0,
            warmup_s: 0.0,
            connections: 1,
            steps: vec![],
            confirmation: None,
        }
    }

    /// A run directory holding the given files (None: absent).
    fn run(summary: Option<RunSummary>, find_max: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        if let Some(s) = summary {
            std::fs::write(
                dir.path().join(SUMMARY_FILE),
                serde_json::to_vec(&s).unwrap(),
            )
            .unwrap();
        }
        if let Some(text) = find_max {
            std::fs::write(dir.path().join(FIND_MAX_FILE), text).unwrap();
        }
        dir
    }

    #[test]
    fn a_search_answer_comes_first() {
        let json = serde_json::to_string(&find_max(Some(200.0))).unwrap();
        let dir = run(Some(summary(50.0, true)), Some(&json));
        let c = measured(dir.path()).unwrap();
        assert_eq!((c.rate_per_s, c.source), (200.0, CapacitySource::FindMax));
    }

    #[test]
    fn without_a_search_a_passing_run_is_used() {
        let dir = run(Some(summary(50.0, true)), None);
        let c = measured(dir.path()).unwrap();
        assert_eq!((c.rate_per_s, c.source), (50.0, CapacitySource::PassingRun));
    }

    #[test]
    fn a_corrupt_search_is_an_error_naming_the_file_not_a_fallback() {
        let json = serde_json::to_string_pretty(&find_max(Some(200.0))).unwrap();
        let truncated = &json[..json.len() / 2];
        let dir = run(Some(summary(50.0, true)), Some(truncated));
        let err = measured(dir.path()).unwrap_err();
        let CapacityError::File(ReportFileError::Corrupt { path, .. }) = &err else {
            panic!("{err:?}");
        };
        assert!(path.ends_with(FIND_MAX_FILE));
        let text = err.to_string();
        assert!(
            text.contains(FIND_MAX_FILE) && text.contains("line"),
            "{text}"
        );
    }

    #[test]
    fn what_cannot_be_sized_from_is_refused() {
        let json = serde_json::to_string(&find_max(None)).unwrap();
        let dir = run(Some(summary(50.0, true)), Some(&json));
        assert!(matches!(
            measured(dir.path()),
            Err(CapacityError::NoPassingRate { .. })
        ));
        let dir = run(Some(summary(50.0, false)), None);
        assert!(matches!(
            measured(dir.path()),
            Err(CapacityError::FailedRun { .. })
        ));
        let dir = run(None, None);
        match measured(dir.path()) {
            Err(CapacityError::File(ReportFileError::Missing { path })) => {
                assert!(path.ends_with(SUMMARY_FILE))
            }
            other => panic!("{other:?}"),
        }
    }
}
