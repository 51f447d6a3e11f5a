//! A plan saved by `scale plan --out` for `scale apply --plan`: apply makes only changes
//! someone reviewed, so a saved plan is refused once the group or the profile changed.

use super::plan::Plan;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("cannot read the saved plan {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a saved plan: {source}", path.display())]
    NotAPlan {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "the saved plan {} no longer matches: the group or the profile changed since it was made; run `paytool scale plan` again",
        path.display()
    )]
    Stale { path: PathBuf },
}

pub fn save(path: &Path, plan: &Plan) -> std::io::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(plan)?)
}

pub fn load(path: &Path) -> Result<Plan, SavedPlanError> {
    let path = path.to_path_buf();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(source) => return Err(SavedPlanError::Read { path, source }),
    };
    serde_json::from_str(&text).map_err(|source| SavedPlanError::NotAPlan { path, source })
}

/// Does a saved plan still describe what applying now would do? The group must read
/// as it did (its fingerprint), and the actions must be the same (the profile may have
/// changed while the group did not).
pub fn still_holds(saved: &Plan, current: &Plan) -> bool {
    saved.observed_fingerprint == current.observed_fingerprint && saved.actions == current.actions
}

/// The saved plan at `path`, if it still holds against `current`.
pub fn check(path: &Path, current: &Plan) -> Result<(), SavedPlanError> {
    if still_holds(&load(path)?, current) {
        Ok(())
    } else {
        Err(SavedPlanError::Stale {
            path: path.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::plan::{Action, GroupUpdate};

    fn plan(fingerprint: &str, max: Option<i32>) -> Plan {
        Plan {
            group: "payment-api-group".into(),
            observed_fingerprint: fingerprint.into(),
            rows: vec![],
            actions: max
                .map(|max| Action::UpdateGroup {
                    update: GroupUpdate {
                        max: Some(max),
                        ..Default::default()
                    },
                })
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn a_plan_holds_until_the_group_or_the_profile_changes() {
        let saved = plan("aaaa", Some(20));
        assert!(still_holds(&saved, &plan("aaaa", Some(20))));
        assert!(
            !still_holds(&saved, &plan("bbbb", Some(20))),
            "the group changed"
        );
        assert!(
            !still_holds(&saved, &plan("aaaa", Some(30))),
            "the profile changed"
        );
    }

    #[test]
    fn a_saved_plan_round_trips_and_other_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let current = plan("aaaa", Some(20));
        save(&path, &current).unwrap();
        check(&path, &current).unwrap();
        assert!(matches!(
            check(&path, &plan("bbbb", Some(20))),
            Err(SavedPlanError::Stale { .. })
        ));
        std::fs::write(&path, "{}").unwrap();
        let err = check(&path, &current).unwrap_err();
        assert!(matches!(err, SavedPlanError::NotAPlan { .. }), "{err}");
        assert!(err.to_string().contains("plan.json"), "{err}");
        let err = check(&dir.path().join("absent.json"), &current).unwrap_err();
        assert!(matches!(err, SavedPlanError::Read { .. }), "{err}");
    }
}
