//! A launch template paytool makes for the group (`[launch_template]` in a scale
//! profile): what it should say, what its latest version says, and what it takes to go
//! from one to the other. Templates are versioned, never edited: any difference is a new
//! version, which the group (on "$Latest") launches from then on. Pure.

use super::user_data::{self, UserDataError};
use crate::profile::scale::ManagedTemplateSection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What one version of the template says (the fields paytool sets).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TemplateData {
    pub image_id: String,
    pub instance_type: String,
    /// The boot script, as text (base64 only on the wire).
    pub user_data: String,
    pub iam_instance_profile: Option<String>,
    /// Sorted.
    pub security_group_ids: Vec<String>,
}

/// The template paytool wants.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WantedTemplate {
    pub name: String,
    pub data: TemplateData,
}

/// The template as EC2 reports it: its latest version.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObservedTemplate {
    pub name: String,
    pub latest_version: i64,
    pub data: TemplateData,
}

impl WantedTemplate {
    pub fn from_section(t: &ManagedTemplateSection) -> Result<WantedTemplate, UserDataError> {
        let mut security_group_ids = t.security_group_ids.clone();
        security_group_ids.sort();
        Ok(WantedTemplate {
            name: t.name.clone(),
            data: TemplateData {
                image_id: t.image_id.clone(),
                instance_type: t.instance_type.clone(),
                user_data: user_data::render(&t.serve)?,
                iam_instance_profile: t.iam_instance_profile.clone(),
                security_group_ids,
            },
        })
    }
}

/// "4,211 bytes, sha256 1f2e3d4c": user data in a plan row.
fn user_data_text(script: &str) -> String {
    let digest = hex::encode(Sha256::digest(script.as_bytes()));
    format!("{} bytes, sha256 {}", script.len(), &digest[..12])
}

/// Each field as a plan row shows it.
pub fn fields(d: &TemplateData) -> Vec<(&'static str, String)> {
    vec![
        ("image_id", d.image_id.clone()),
        ("instance_type", d.instance_type.clone()),
        ("user_data", user_data_text(&d.user_data)),
        (
            "iam_instance_profile",
            d.iam_instance_profile
                .clone()
                .unwrap_or_else(|| "none".into()),
        ),
        (
            "security_group_ids",
            format!("[{}]", d.security_group_ids.join(", ")),
        ),
    ]
}

/// What bringing the template to what is wanted takes.
#[derive(Debug, PartialEq)]
pub enum Change {
    Nothing,
    /// No template by that name: create it.
    Create,
    /// A new version after `latest`, for these (field, old, new).
    NewVersion {
        latest: i64,
        changed: Vec<(&'static str, String, String)>,
    },
}

pub fn change(want: &WantedTemplate, have: &Option<ObservedTemplate>) -> Change {
    match have {
        None => Change::Create,
        Some(h) if h.data == want.data => Change::Nothing,
        Some(h) => Change::NewVersion {
            latest: h.latest_version,
            changed: fields(&h.data)
                .into_iter()
                .zip(fields(&want.data))
                .filter(|((_, old), (_, new))| old != new)
                .map(|((field, old), (_, new))| (field, old, new))
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want() -> WantedTemplate {
        WantedTemplate {
            name: "payment-api".into(),
            data: TemplateData {
                image_id: "ami-1".into(),
                instance_type: "c7g.large".into(),
                user_data: "#!/bin/bash\necho one\n".into(),
                iam_instance_profile: Some("payment-api".into()),
                security_group_ids: vec!["sg-1".into()],
            },
        }
    }

    #[test]
    fn missing_is_created_equal_is_left_and_any_difference_is_a_version_naming_it() {
        let w = want();
        assert_eq!(change(&w, &None), Change::Create);
        let mut have = ObservedTemplate {
            name: w.name.clone(),
            latest_version: 3,
            data: w.data.clone(),
        };
        assert_eq!(change(&w, &Some(have.clone())), Change::Nothing);
        have.data.user_data = "#!/bin/bash\necho zero\n".into();
        match change(&w, &Some(have)) {
            Change::NewVersion { latest, changed } => {
                assert_eq!(latest, 3);
                let names: Vec<&str> = changed.iter().map(|c| c.0).collect();
                assert_eq!(names, ["user_data"]);
                assert!(changed[0].1.contains("sha256"), "{changed:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}
