//! Scale profiles (profiles/scale/*.toml): the desired Auto Scaling group. Checked before
//! any AWS call, because emulators (and AWS for some fields) accept what AWS would refuse.

use super::{ProfileError, read_toml};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const GROUP_SIZE_MAX: i32 = 10_000;
pub const NAME_LEN_MAX: usize = 255;
pub const GRACE_PERIOD_MAX_S: i32 = 7_200;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScaleProfile {
    pub group: GroupSection,
    #[serde(default)]
    pub policies: Vec<PolicySection>,
    /// Tags on the group, propagated to instances at launch.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupSection {
    pub name: String,
    pub min: i32,
    pub max: i32,
    /// Absent: a target-tracking policy owns the desired capacity; paytool only clamps it
    /// into [min, max] and otherwise leaves it alone.
    pub desired: Option<i32>,
    pub launch_configuration: Option<String>,
    pub launch_template: Option<LaunchTemplateSection>,
    #[serde(default)]
    pub availability_zones: Vec<String>,
    #[serde(default)]
    pub subnets: Vec<String>,
    pub health_check_type: Option<String>,
    pub health_check_grace_period: Option<i32>,
    pub default_instance_warmup: Option<i32>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LaunchTemplateSection {
    pub name: Option<String>,
    pub id: Option<String>,
    /// "$Latest", "$Default" or a number.
    pub version: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    pub name: String,
    /// ASGAverageCPUUtilization, ASGAverageNetworkIn, ASGAverageNetworkOut or
    /// ALBRequestCountPerTarget.
    pub metric: String,
    pub target: f64,
    /// Required for ALBRequestCountPerTarget: app/<lb>/<id>/targetgroup/<tg>/<id>.
    pub resource_label: Option<String>,
    #[serde(default)]
    pub disable_scale_in: bool,
    pub instance_warmup: Option<i32>,
}

pub const METRICS: &[&str] = &[
    "ASGAverageCPUUtilization",
    "ASGAverageNetworkIn",
    "ASGAverageNetworkOut",
    "ALBRequestCountPerTarget",
];

fn invalid(path: &Path, key: &str, message: impl Into<String>) -> ProfileError {
    ProfileError::Invalid {
        path: path.to_path_buf(),
        key: key.to_string(),
        message: message.into(),
    }
}

fn check_name(path: &Path, key: &str, name: &str) -> Result<(), ProfileError> {
    if name.is_empty() || name.len() > NAME_LEN_MAX || name.chars().any(|c| c.is_control()) {
        return Err(invalid(
            path,
            key,
            format!("is {name:?}: 1 to {NAME_LEN_MAX} printable characters"),
        ));
    }
    Ok(())
}

/// us-west-2a: two letters, a region word, a digit, a zone letter.
fn is_zone(z: &str) -> bool {
    let parts: Vec<&str> = z.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && {
            let last = parts[parts.len() - 1].as_bytes();
            last.len() >= 2
                && last[..last.len() - 1].iter().all(|b| b.is_ascii_digit())
                && last[last.len() - 1].is_ascii_lowercase()
        }
}

pub fn load(path: &Path) -> Result<ScaleProfile, ProfileError> {
    let p: ScaleProfile = read_toml(path)?;
    check(&p, path)?;
    Ok(p)
}

pub fn check(p: &ScaleProfile, path: &Path) -> Result<(), ProfileError> {
    let g = &p.group;
    check_name(path, "group.name", &g.name)?;
    for (key, v) in [("group.min", g.min), ("group.max", g.max)] {
        if !(0..=GROUP_SIZE_MAX).contains(&v) {
            return Err(invalid(
                path,
                key,
                format!("is {v}: it must be 0 to {GROUP_SIZE_MAX}"),
            ));
        }
    }
    if g.min > g.max {
        return Err(invalid(
            path,
            "group.min",
            format!("is {}, above group.max {}", g.min, g.max),
        ));
    }
    if let Some(d) = g.desired
        && !(g.min..=g.max).contains(&d)
    {
        return Err(invalid(
            path,
            "group.desired",
            format!(
                "is {d}: it must be within [group.min {}, group.max {}]",
                g.min, g.max
            ),
        ));
    }
    match (&g.launch_configuration, &g.launch_template) {
        (Some(lc), None) => check_name(path, "group.launch_configuration", lc)?,
        (None, Some(lt)) => match (&lt.name, &lt.id) {
            (Some(n), None) => check_name(path, "group.launch_template.name", n)?,
            (None, Some(id)) if id.starts_with("lt-") => {}
            (None, Some(id)) => {
                return Err(invalid(
                    path,
                    "group.launch_template.id",
                    format!("is {id:?}: launch template ids start with lt-"),
                ));
            }
            _ => {
                return Err(invalid(
                    path,
                    "group.launch_template",
                    "needs exactly one of name or id",
                ));
            }
        },
        (Some(_), Some(_)) => {
            return Err(invalid(
                path,
                "group.launch_template",
                "and group.launch_configuration are exclusive: give one",
            ));
        }
        (None, None) => {
            return Err(invalid(
                path,
                "group.launch_configuration",
                "is missing: give a launch_configuration or a launch_template",
            ));
        }
    }
    if let Some(v) = g.launch_template.as_ref().and_then(|t| t.version.as_ref())
        && !(v == "$Latest" || v == "$Default" || v.parse::<u64>().is_ok_and(|n| n > 0))
    {
        return Err(invalid(
            path,
            "group.launch_template.version",
            format!("is {v:?}: \"$Latest\", \"$Default\" or a version number"),
        ));
    }
    if g.availability_zones.is_empty() && g.subnets.is_empty() {
        return Err(invalid(
            path,
            "group.availability_zones",
            "and group.subnets are both empty: give zones or subnets",
        ));
    }
    for (i, z) in g.availability_zones.iter().enumerate() {
        if !is_zone(z) {
            return Err(invalid(
                path,
                &format!("group.availability_zones[{i}]"),
                format!("is {z:?}: expected a zone such as \"us-west-2a\""),
            ));
        }
    }
    if let Some(first) = g.availability_zones.first() {
        let region = &first[..first.len() - 1];
        if let Some(z) = g.availability_zones.iter().find(|z| !z.starts_with(region)) {
            return Err(invalid(
                path,
                "group.availability_zones",
                format!("mixes regions: {first} and {z}"),
            ));
        }
    }
    for (i, s) in g.subnets.iter().enumerate() {
        if !s.starts_with("subnet-") {
            return Err(invalid(
                path,
                &format!("group.subnets[{i}]"),
                format!("is {s:?}: subnet ids start with subnet-"),
            ));
        }
    }
    if let Some(h) = &g.health_check_type
        && h != "EC2"
        && h != "ELB"
    {
        return Err(invalid(
            path,
            "group.health_check_type",
            format!("is {h:?}: \"EC2\" or \"ELB\""),
        ));
    }
    if let Some(s) = g.health_check_grace_period
        && !(0..=GRACE_PERIOD_MAX_S).contains(&s)
    {
        return Err(invalid(
            path,
            "group.health_check_grace_period",
            format!("is {s}: 0 to {GRACE_PERIOD_MAX_S} seconds"),
        ));
    }
    if let Some(s) = g.default_instance_warmup
        && !(0..=GRACE_PERIOD_MAX_S).contains(&s)
    {
        return Err(invalid(
            path,
            "group.default_instance_warmup",
            format!("is {s}: 0 to {GRACE_PERIOD_MAX_S} seconds"),
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (i, pol) in p.policies.iter().enumerate() {
        let key = |k: &str| format!("policies[{i}].{k}");
        check_name(path, &key("name"), &pol.name)?;
        if !names.insert(pol.name.as_str()) {
            return Err(invalid(
                path,
                &key("name"),
                format!("{:?} is used twice", pol.name),
            ));
        }
        if !METRICS.contains(&pol.metric.as_str()) {
            return Err(invalid(
                path,
                &key("metric"),
                format!("is {:?}: one of {}", pol.metric, METRICS.join(", ")),
            ));
        }
        if !(pol.target > 0.0 && pol.target.is_finite()) {
            return Err(invalid(
                path,
                &key("target"),
                format!("is {}: it must be above 0", pol.target),
            ));
        }
        if pol.metric == "ASGAverageCPUUtilization" && pol.target > 100.0 {
            return Err(invalid(
                path,
                &key("target"),
                format!("is {}: a CPU percentage is at most 100", pol.target),
            ));
        }
        match (pol.metric.as_str(), &pol.resource_label) {
            ("ALBRequestCountPerTarget", None) => {
                return Err(invalid(
                    path,
                    &key("resource_label"),
                    "is missing: ALBRequestCountPerTarget needs app/<lb>/<id>/targetgroup/<tg>/<id>",
                ));
            }
            ("ALBRequestCountPerTarget", Some(l))
                if !(l.starts_with("app/") && l.contains("/targetgroup/")) =>
            {
                return Err(invalid(
                    path,
                    &key("resource_label"),
                    format!("is {l:?}: expected app/<lb>/<id>/targetgroup/<tg>/<id>"),
                ));
            }
            ("ALBRequestCountPerTarget", Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(invalid(
                    path,
                    &key("resource_label"),
                    "only applies to ALBRequestCountPerTarget",
                ));
            }
        }
        if let Some(w) = pol.instance_warmup
            && !(0..=GRACE_PERIOD_MAX_S).contains(&w)
        {
            return Err(invalid(
                path,
                &key("instance_warmup"),
                format!("is {w}: 0 to {GRACE_PERIOD_MAX_S} seconds"),
            ));
        }
    }
    for (k, v) in &p.tags {
        if k.is_empty() || k.len() > 128 || v.len() > 256 || k.starts_with("aws:") {
            return Err(invalid(
                path,
                &format!("tags.{k}"),
                "keys are 1 to 128 characters, not starting with aws:, values at most 256",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones() {
        assert!(is_zone("us-west-2a"));
        assert!(is_zone("ap-southeast-1b"));
        assert!(is_zone("us-gov-west-1a"));
        assert!(!is_zone("us-west-2"));
        assert!(!is_zone("uswest2a"));
        assert!(!is_zone("US-west-2a"));
    }
}
