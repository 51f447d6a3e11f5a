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
    /// A launch template paytool makes for the group, whose user data runs the API.
    pub launch_template: Option<ManagedTemplateSection>,
}

/// A launch template paytool makes, and versions whenever what it says changes: an image
/// with paytool installed, and user data that starts `paytool serve --layout` at boot.
/// The group names it (`group.launch_template.name`) with version "$Latest".
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ManagedTemplateSection {
    pub name: String,
    /// "ami-...": an image with paytool at `serve.binary`.
    pub image_id: String,
    pub instance_type: String,
    /// Lets the instance read its settings from SSM Parameter Store.
    pub iam_instance_profile: Option<String>,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    pub serve: ServeSection,
}

/// What the instance runs: `paytool serve` on a layout, with its settings (shard URLs,
/// the admin token: secrets) read from SSM Parameter Store at boot, never carried in the
/// user data, which anyone allowed to describe the instance can read.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServeSection {
    /// The shard layout, relative to this profile; copied into the user data as written,
    /// its `${VAR}`s left for the instance's environment.
    pub layout: std::path::PathBuf,
    /// [default: 0.0.0.0:8080]
    pub listen: Option<String>,
    /// Every parameter under this path becomes a variable of the service, named after
    /// the parameter's last part (/paytool/prod/PAYTOOL_SHARD_S0_URL).
    pub ssm_path: String,
    /// `serve --drain-delay`: the load balancer's health-check interval or more
    /// [default: 10s].
    pub drain_delay: Option<String>,
    /// Where the image has paytool [default: /usr/local/bin/paytool].
    pub binary: Option<String>,
    /// The layout's text, read by `load` (not in the file).
    #[serde(skip)]
    pub layout_text: String,
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
    let mut p: ScaleProfile = read_toml(path)?;
    check(&p, path)?;
    if let Some(t) = &mut p.launch_template {
        t.serve.layout_text = read_layout(path, &t.serve.layout)?;
    }
    Ok(p)
}

/// The layout a managed template's user data carries: it must be a valid layout, and
/// its URLs must come from `${VAR}`s (SSM at boot), never be written out with a password.
fn read_layout(profile: &Path, layout: &Path) -> Result<String, ProfileError> {
    let file = profile.parent().unwrap_or(Path::new(".")).join(layout);
    let text = std::fs::read_to_string(&file).map_err(|e| {
        invalid(
            profile,
            "launch_template.serve.layout",
            format!("is {}: cannot read it: {e}", file.display()),
        )
    })?;
    // Every ${VAR} is left for the instance; here it stands for a URL.
    super::shards::from_text(&file, &text, &|_| {
        Some("postgresql://paytool@from-ssm/paytool".into())
    })?;
    // Read as text, so a password in a `${VAR:-default}` is caught as well.
    if let Some(line) = line_with_password(&text) {
        return Err(ProfileError::Invalid {
            path: file,
            key: format!("line {line}"),
            message: "has a URL with a password in it: the user data carrying the layout is \
                      readable by anyone allowed to describe the instance; write ${VAR} and \
                      put the URL under launch_template.serve.ssm_path"
                .into(),
        });
    }
    Ok(text)
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
    if let Some(t) = &p.launch_template {
        check_template(path, g, t)?;
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

/// The first line (from 1) with a URL that carries a password: `scheme://user:secret@`.
fn line_with_password(text: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            line.match_indices("://").any(|(at, _)| {
                let rest = &line[at + 3..];
                let end = rest
                    .find(|c: char| {
                        c == '/' || c == '"' || c == '}' || c == '?' || c.is_whitespace()
                    })
                    .unwrap_or(rest.len());
                rest[..end]
                    .rsplit_once('@')
                    .is_some_and(|(user, _)| user.contains(':'))
            })
        })
        .map(|i| i + 1)
}

fn check_template(
    path: &Path,
    g: &GroupSection,
    t: &ManagedTemplateSection,
) -> Result<(), ProfileError> {
    check_name(path, "launch_template.name", &t.name)?;
    match &g.launch_template {
        Some(LaunchTemplateSection {
            name: Some(n),
            version: Some(v),
            ..
        }) if *n == t.name && v == "$Latest" => {}
        _ => {
            return Err(invalid(
                path,
                "group.launch_template",
                format!(
                    "must be {{ name = {:?}, version = \"$Latest\" }}: paytool makes a new \
                     version of launch_template {:?} on each change, and the group launches the latest",
                    t.name, t.name
                ),
            ));
        }
    }
    if !t.image_id.starts_with("ami-") {
        return Err(invalid(
            path,
            "launch_template.image_id",
            format!("is {:?}: image ids start with ami-", t.image_id),
        ));
    }
    if !t
        .instance_type
        .split_once('.')
        .is_some_and(|(family, size)| !family.is_empty() && !size.is_empty())
    {
        return Err(invalid(
            path,
            "launch_template.instance_type",
            format!(
                "is {:?}: expected a type such as \"c7g.large\"",
                t.instance_type
            ),
        ));
    }
    for (i, sg) in t.security_group_ids.iter().enumerate() {
        if !sg.starts_with("sg-") {
            return Err(invalid(
                path,
                &format!("launch_template.security_group_ids[{i}]"),
                format!("is {sg:?}: security group ids start with sg-"),
            ));
        }
    }
    let s = &t.serve;
    if let Some(l) = &s.listen
        && l.parse::<std::net::SocketAddr>().is_err()
    {
        return Err(invalid(
            path,
            "launch_template.serve.listen",
            format!("is {l:?}: expected an address and port such as \"0.0.0.0:8080\""),
        ));
    }
    let ssm_part = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    };
    if !(s.ssm_path.len() > 1
        && s.ssm_path.starts_with('/')
        && s.ssm_path.ends_with('/')
        && s.ssm_path[1..s.ssm_path.len() - 1].split('/').all(ssm_part))
    {
        return Err(invalid(
            path,
            "launch_template.serve.ssm_path",
            format!(
                "is {:?}: expected a parameter path such as \"/paytool/prod/\" (letters, digits, _ . -)",
                s.ssm_path
            ),
        ));
    }
    if let Some(d) = &s.drain_delay {
        // One word: it goes into the unit's command line as it is written.
        if d.trim() != d || d.contains(char::is_whitespace) {
            return Err(invalid(
                path,
                "launch_template.serve.drain_delay",
                format!("is {d:?}: one duration without spaces, such as \"10s\""),
            ));
        }
        super::duration(path, "launch_template.serve.drain_delay", d)?;
    }
    if let Some(b) = &s.binary
        && !(b.starts_with('/') && b.bytes().all(|c| c.is_ascii_graphic()) && !b.contains('\''))
    {
        return Err(invalid(
            path,
            "launch_template.serve.binary",
            format!("is {b:?}: an absolute path without spaces or quotes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_in_a_layout_url_is_found_even_in_a_default() {
        use super::line_with_password as find;
        assert_eq!(find("url = \"${PAYTOOL_SHARD_S0_URL}\"\n"), None);
        assert_eq!(find("url = \"postgres://paytool@db:5432/s0\"\n"), None);
        assert_eq!(find("# a\nurl = \"postgres://u:pw@db/s0\"\n"), Some(2));
        assert_eq!(
            find("url = \"${X:-postgresql://u:pw@127.0.0.1/s0}\"\n"),
            Some(1)
        );
        // A colon after the host is a port, not a password.
        assert_eq!(find("url = \"postgres://db:5432/s0\"\n"), None);
    }

    use super::*;

    const EXAMPLE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/profiles/scale/payment-api-template.toml"
    );

    #[test]
    fn the_template_example_loads_with_its_layout_and_bad_fields_are_named() {
        let p = load(Path::new(EXAMPLE)).unwrap();
        let t = p.launch_template.as_ref().unwrap();
        assert!(t.serve.layout_text.contains("${PAYTOOL_SHARD_S0_URL"));
        let key_of = |edit: &dyn Fn(&mut ScaleProfile)| {
            let mut bad = p.clone();
            edit(&mut bad);
            match check(&bad, Path::new(EXAMPLE)) {
                Err(ProfileError::Invalid { key, .. }) => key,
                other => panic!("{other:?}"),
            }
        };
        let pinned = key_of(&|b| {
            b.group.launch_template.as_mut().unwrap().version = Some("3".into());
        });
        assert_eq!(pinned, "group.launch_template", "new versions need $Latest");
        assert_eq!(
            key_of(&|b| b.launch_template.as_mut().unwrap().serve.ssm_path = "paytool".into()),
            "launch_template.serve.ssm_path"
        );
        assert_eq!(
            key_of(&|b| b.launch_template.as_mut().unwrap().image_id = "12c6146b".into()),
            "launch_template.image_id"
        );
        assert_eq!(
            key_of(&|b| b.launch_template.as_mut().unwrap().serve.binary = Some("paytool".into())),
            "launch_template.serve.binary"
        );
        assert_eq!(
            key_of(&|b| {
                b.launch_template.as_mut().unwrap().serve.drain_delay = Some("1m 30s".into())
            }),
            "launch_template.serve.drain_delay",
            "it goes into a command line"
        );
    }

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
