//! The Auto Scaling group as paytool sees it: what a profile wants and what AWS reports,
//! in one normalized shape so that a plan is a plain comparison.

use crate::profile::scale::ScaleProfile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Launch {
    Configuration(String),
    /// By name or id, with an optional version ("$Latest", "$Default", "3").
    Template {
        name: Option<String>,
        id: Option<String>,
        version: Option<String>,
    },
}

impl std::fmt::Display for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Launch::Configuration(n) => write!(f, "launch configuration {n}"),
            Launch::Template { name, id, version } => write!(
                f,
                "launch template {} version {}",
                name.as_deref().or(id.as_deref()).unwrap_or("?"),
                version.as_deref().unwrap_or("$Default")
            ),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Policy {
    pub metric: String,
    pub target: f64,
    pub resource_label: Option<String>,
    pub disable_scale_in: bool,
    pub instance_warmup: Option<i32>,
}

/// A group as AWS reports it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Observed {
    pub name: String,
    pub min: i32,
    pub max: i32,
    pub desired: i32,
    pub launch: Option<Launch>,
    pub zones: Vec<String>,
    pub subnets: Vec<String>,
    pub health_check_type: Option<String>,
    pub health_check_grace_period: Option<i32>,
    pub default_instance_warmup: Option<i32>,
    pub tags: BTreeMap<String, String>,
    pub policies: BTreeMap<String, Policy>,
}

/// A group as a profile wants it. `None` leaves an attribute as AWS has it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Desired {
    pub name: String,
    pub min: i32,
    pub max: i32,
    pub desired: Option<i32>,
    pub launch: Launch,
    pub zones: Vec<String>,
    pub subnets: Vec<String>,
    pub health_check_type: Option<String>,
    pub health_check_grace_period: Option<i32>,
    pub default_instance_warmup: Option<i32>,
    pub tags: BTreeMap<String, String>,
    pub policies: BTreeMap<String, Policy>,
}

impl Desired {
    /// From a checked profile.
    pub fn from_profile(p: &ScaleProfile) -> Desired {
        let g = &p.group;
        let launch = match (&g.launch_configuration, &g.launch_template) {
            (Some(lc), _) => Launch::Configuration(lc.clone()),
            (None, Some(t)) => Launch::Template {
                name: t.name.clone(),
                id: t.id.clone(),
                version: t.version.clone(),
            },
            (None, None) => {
                unreachable!("profile checking requires a launch configuration or template")
            }
        };
        let mut zones = g.availability_zones.clone();
        zones.sort();
        let mut subnets = g.subnets.clone();
        subnets.sort();
        Desired {
            name: g.name.clone(),
            min: g.min,
            max: g.max,
            desired: g.desired,
            launch,
            zones,
            subnets,
            health_check_type: g.health_check_type.clone(),
            health_check_grace_period: g.health_check_grace_period,
            default_instance_warmup: g.default_instance_warmup,
            tags: p.tags.clone(),
            policies: p
                .policies
                .iter()
                .map(|pol| {
                    (
                        pol.name.clone(),
                        Policy {
                            metric: pol.metric.clone(),
                            target: pol.target,
                            resource_label: pol.resource_label.clone(),
                            disable_scale_in: pol.disable_scale_in,
                            instance_warmup: pol.instance_warmup,
                        },
                    )
                })
                .collect(),
        }
    }

    /// The desired capacity to ask for: the profile's, or (when a policy owns it) the
    /// current one clamped into [min, max], or min for a new group.
    pub fn capacity_given(&self, current: Option<i32>) -> i32 {
        match (self.desired, current) {
            (Some(d), _) => d,
            (None, Some(c)) => c.clamp(self.min, self.max),
            (None, None) => self.min,
        }
    }
}

/// The seed profile's group, wanted and observed, for unit tests in `cloud`.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{Desired, Launch, Observed};
    use std::collections::BTreeMap;

    pub fn want() -> Desired {
        Desired {
            name: "payment-api-group".into(),
            min: 1,
            max: 10,
            desired: Some(5),
            launch: Launch::Configuration("payment-api-launch-config".into()),
            zones: vec!["us-west-2a".into(), "us-west-2b".into()],
            subnets: vec![],
            health_check_type: None,
            health_check_grace_period: None,
            default_instance_warmup: None,
            tags: BTreeMap::new(),
            policies: BTreeMap::new(),
        }
    }

    /// `w` as AWS reports it once made.
    pub fn observed(w: &Desired) -> Observed {
        Observed {
            name: w.name.clone(),
            min: w.min,
            max: w.max,
            desired: w.desired.unwrap_or(w.min),
            launch: Some(w.launch.clone()),
            zones: w.zones.clone(),
            subnets: vec![],
            health_check_type: Some("EC2".into()),
            health_check_grace_period: Some(300),
            default_instance_warmup: None,
            tags: BTreeMap::new(),
            policies: BTreeMap::new(),
        }
    }
}
