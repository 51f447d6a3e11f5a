//! Terraform-style plans: the rows a person reads (+ create, ~ update, - delete) and the
//! exact actions `apply` makes. Pure: a comparison of `Desired` and `Observed`.

use super::state::{Desired, Launch, Observed, Policy};
use super::template::{self, Change, ObservedTemplate, TemplateData, WantedTemplate};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Op {
    #[serde(rename = "+")]
    Create,
    #[serde(rename = "~")]
    Update,
    #[serde(rename = "-")]
    Delete,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Create => "+",
            Op::Update => "~",
            Op::Delete => "-",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub op: Op,
    /// "group", "policy cpu-50", "tag service".
    pub resource: String,
    pub attribute: Option<String>,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl Row {
    /// What changes: "group.max", "policy cpu-50", "tag service".
    pub fn subject(&self) -> String {
        match &self.attribute {
            Some(a) => format!("{}.{a}", self.resource),
            None => self.resource.clone(),
        }
    }

    /// How: "10 -> 20", "20" (created), "10 (removed)".
    pub fn change(&self) -> String {
        match (&self.old, &self.new) {
            (Some(o), Some(n)) => format!("{o} -> {n}"),
            (None, Some(n)) => n.clone(),
            (Some(o), None) => format!("{o} (removed)"),
            (None, None) => String::new(),
        }
    }
}

/// The changes to the group's own attributes in one UpdateAutoScalingGroup call.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct GroupUpdate {
    pub min: Option<i32>,
    pub max: Option<i32>,
    pub desired: Option<i32>,
    pub launch: Option<Launch>,
    pub zones: Option<Vec<String>>,
    pub subnets: Option<Vec<String>>,
    pub health_check_type: Option<String>,
    pub health_check_grace_period: Option<i32>,
    pub default_instance_warmup: Option<i32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    CreateGroup {
        desired: Box<Desired>,
        capacity: i32,
    },
    UpdateGroup {
        update: GroupUpdate,
    },
    PutPolicy {
        name: String,
        policy: Policy,
    },
    DeletePolicy {
        name: String,
    },
    PutTags {
        tags: BTreeMap<String, String>,
    },
    DeleteTags {
        keys: Vec<String>,
    },
    DeleteGroup,
    /// A launch template paytool makes (`template.rs`), first version.
    CreateLaunchTemplate {
        name: String,
        data: TemplateData,
    },
    /// The template's next version, which the group (on "$Latest") launches from then on.
    CreateLaunchTemplateVersion {
        name: String,
        data: TemplateData,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub group: String,
    /// SHA-256 of what AWS reported when the plan was made: `apply --plan` refuses a plan
    /// whose group has changed since.
    pub observed_fingerprint: String,
    pub rows: Vec<Row>,
    pub actions: Vec<Action>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Add the launch template paytool makes: its rows and action go first (the group is
    /// created from it), and what EC2 reported of it joins the fingerprint, so a saved
    /// plan is refused once the template changed too.
    pub fn with_template(mut self, want: &WantedTemplate, have: &Option<ObservedTemplate>) -> Plan {
        let resource = format!("launch_template {}", want.name);
        let row = |op, attribute: &str, old: Option<String>, new: Option<String>| Row {
            op,
            resource: resource.clone(),
            attribute: Some(attribute.to_string()),
            old,
            new,
        };
        let (mut rows, mut actions) = match template::change(want, have) {
            Change::Nothing => (Vec::new(), Vec::new()),
            Change::Create => {
                let mut rows = vec![row(Op::Create, "version", None, Some("1".into()))];
                rows.extend(
                    template::fields(&want.data)
                        .into_iter()
                        .map(|(field, v)| row(Op::Create, field, None, Some(v))),
                );
                let create = Action::CreateLaunchTemplate {
                    name: want.name.clone(),
                    data: want.data.clone(),
                };
                (rows, vec![create])
            }
            Change::NewVersion { latest, changed } => {
                let next = (latest + 1).to_string();
                let mut rows = vec![row(
                    Op::Update,
                    "version",
                    Some(latest.to_string()),
                    Some(next),
                )];
                rows.extend(
                    changed
                        .into_iter()
                        .map(|(field, old, new)| row(Op::Update, field, Some(old), Some(new))),
                );
                let version = Action::CreateLaunchTemplateVersion {
                    name: want.name.clone(),
                    data: want.data.clone(),
                };
                (rows, vec![version])
            }
        };
        rows.append(&mut self.rows);
        actions.append(&mut self.actions);
        let json = serde_json::to_vec(have).expect("observed template serializes");
        let mut h = Sha256::new();
        h.update(self.observed_fingerprint.as_bytes());
        h.update(&json);
        Plan {
            group: self.group,
            observed_fingerprint: hex::encode(h.finalize()),
            rows,
            actions,
        }
    }

    /// Resources (the group, each policy, each tag) to create, update and delete.
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |op| {
            let mut resources: Vec<&str> = self
                .rows
                .iter()
                .filter(|r| r.op == op)
                .map(|r| r.resource.as_str())
                .collect();
            resources.dedup();
            resources.len()
        };
        (n(Op::Create), n(Op::Update), n(Op::Delete))
    }
}

pub fn fingerprint(observed: &Option<Observed>) -> String {
    let json = serde_json::to_vec(observed).expect("observed state serializes");
    hex::encode(Sha256::digest(&json))
}

fn row(
    op: Op,
    resource: &str,
    attribute: Option<&str>,
    old: Option<String>,
    new: Option<String>,
) -> Row {
    Row {
        op,
        resource: resource.to_string(),
        attribute: attribute.map(str::to_string),
        old,
        new,
    }
}

fn list(v: &[String]) -> String {
    format!("[{}]", v.join(", "))
}

fn policy_text(p: &Policy) -> String {
    let mut s = format!("{} target {}", p.metric, p.target);
    if let Some(l) = &p.resource_label {
        s.push_str(&format!(" label {l}"));
    }
    if p.disable_scale_in {
        s.push_str(" no scale-in");
    }
    if let Some(w) = p.instance_warmup {
        s.push_str(&format!(" warmup {w}s"));
    }
    s
}

/// Does the observed launch spec satisfy the wanted one? A template named in the profile
/// matches by name or id, whichever the profile gives.
fn launch_matches(want: &Launch, have: &Option<Launch>) -> bool {
    match (want, have) {
        (Launch::Configuration(a), Some(Launch::Configuration(b))) => a == b,
        (
            Launch::Template { name, id, version },
            Some(Launch::Template {
                name: hn,
                id: hi,
                version: hv,
            }),
        ) => {
            let same = match (name, id) {
                (Some(n), _) => Some(n) == hn.as_ref(),
                (None, Some(i)) => Some(i) == hi.as_ref(),
                (None, None) => false,
            };
            same && version.as_deref().unwrap_or("$Default") == hv.as_deref().unwrap_or("$Default")
        }
        _ => false,
    }
}

pub fn diff(want: &Desired, have: &Option<Observed>) -> Plan {
    let mut rows = Vec::new();
    let mut actions = Vec::new();
    let fp = fingerprint(have);
    let Some(have) = have else {
        let capacity = want.capacity_given(None);
        rows.push(row(
            Op::Create,
            "group",
            None,
            None,
            Some(want.name.clone()),
        ));
        let attrs: Vec<(&str, String)> = [
            Some(("min", want.min.to_string())),
            Some(("max", want.max.to_string())),
            Some(("desired", capacity.to_string())),
            Some(("launch", want.launch.to_string())),
            (!want.zones.is_empty()).then(|| ("availability_zones", list(&want.zones))),
            (!want.subnets.is_empty()).then(|| ("subnets", list(&want.subnets))),
            want.health_check_type
                .clone()
                .map(|h| ("health_check_type", h)),
            want.health_check_grace_period
                .map(|g| ("health_check_grace_period", g.to_string())),
            want.default_instance_warmup
                .map(|w| ("default_instance_warmup", w.to_string())),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (attr, value) in attrs {
            rows.push(row(Op::Create, "group", Some(attr), None, Some(value)));
        }
        actions.push(Action::CreateGroup {
            desired: Box::new(want.clone()),
            capacity,
        });
        for (k, v) in &want.tags {
            rows.push(row(
                Op::Create,
                &format!("tag {k}"),
                None,
                None,
                Some(v.clone()),
            ));
        }
        for (name, p) in &want.policies {
            rows.push(row(
                Op::Create,
                &format!("policy {name}"),
                None,
                None,
                Some(policy_text(p)),
            ));
            actions.push(Action::PutPolicy {
                name: name.clone(),
                policy: p.clone(),
            });
        }
        return Plan {
            group: want.name.clone(),
            observed_fingerprint: fp,
            rows,
            actions,
        };
    };

    let mut update = GroupUpdate::default();
    let changed = |attr: &str, old: String, new: String, rows: &mut Vec<Row>| {
        rows.push(row(Op::Update, "group", Some(attr), Some(old), Some(new)));
    };
    if want.min != have.min {
        changed("min", have.min.to_string(), want.min.to_string(), &mut rows);
        update.min = Some(want.min);
    }
    if want.max != have.max {
        changed("max", have.max.to_string(), want.max.to_string(), &mut rows);
        update.max = Some(want.max);
    }
    let capacity = want.capacity_given(Some(have.desired));
    if capacity != have.desired {
        changed(
            "desired",
            have.desired.to_string(),
            capacity.to_string(),
            &mut rows,
        );
        update.desired = Some(capacity);
    }
    if !launch_matches(&want.launch, &have.launch) {
        let old = have
            .launch
            .as_ref()
            .map(|l| l.to_string())
            .unwrap_or_else(|| "none".into());
        changed("launch", old, want.launch.to_string(), &mut rows);
        update.launch = Some(want.launch.clone());
    }
    if !want.zones.is_empty() && want.zones != have.zones {
        changed(
            "availability_zones",
            list(&have.zones),
            list(&want.zones),
            &mut rows,
        );
        update.zones = Some(want.zones.clone());
    }
    if !want.subnets.is_empty() && want.subnets != have.subnets {
        changed(
            "subnets",
            list(&have.subnets),
            list(&want.subnets),
            &mut rows,
        );
        update.subnets = Some(want.subnets.clone());
    }
    if let Some(h) = &want.health_check_type
        && Some(h) != have.health_check_type.as_ref()
    {
        changed(
            "health_check_type",
            have.health_check_type.clone().unwrap_or_default(),
            h.clone(),
            &mut rows,
        );
        update.health_check_type = Some(h.clone());
    }
    if let Some(g) = want.health_check_grace_period
        && Some(g) != have.health_check_grace_period
    {
        let old = have
            .health_check_grace_period
            .map(|v| v.to_string())
            .unwrap_or_default();
        changed("health_check_grace_period", old, g.to_string(), &mut rows);
        update.health_check_grace_period = Some(g);
    }
    if let Some(w) = want.default_instance_warmup
        && Some(w) != have.default_instance_warmup
    {
        let old = have
            .default_instance_warmup
            .map(|v| v.to_string())
            .unwrap_or_default();
        changed("default_instance_warmup", old, w.to_string(), &mut rows);
        update.default_instance_warmup = Some(w);
    }
    if update != GroupUpdate::default() {
        actions.push(Action::UpdateGroup { update });
    }

    let mut put_tags = BTreeMap::new();
    for (k, v) in &want.tags {
        match have.tags.get(k) {
            None => rows.push(row(
                Op::Create,
                &format!("tag {k}"),
                None,
                None,
                Some(v.clone()),
            )),
            Some(old) if old != v => rows.push(row(
                Op::Update,
                &format!("tag {k}"),
                None,
                Some(old.clone()),
                Some(v.clone()),
            )),
            Some(_) => continue,
        }
        put_tags.insert(k.clone(), v.clone());
    }
    let gone: Vec<String> = have
        .tags
        .keys()
        .filter(|k| !want.tags.contains_key(*k))
        .cloned()
        .collect();
    for k in &gone {
        rows.push(row(
            Op::Delete,
            &format!("tag {k}"),
            None,
            have.tags.get(k).cloned(),
            None,
        ));
    }
    if !put_tags.is_empty() {
        actions.push(Action::PutTags { tags: put_tags });
    }
    if !gone.is_empty() {
        actions.push(Action::DeleteTags { keys: gone });
    }

    for (name, p) in &want.policies {
        match have.policies.get(name) {
            None => rows.push(row(
                Op::Create,
                &format!("policy {name}"),
                None,
                None,
                Some(policy_text(p)),
            )),
            Some(old) if old != p => rows.push(row(
                Op::Update,
                &format!("policy {name}"),
                None,
                Some(policy_text(old)),
                Some(policy_text(p)),
            )),
            Some(_) => continue,
        }
        actions.push(Action::PutPolicy {
            name: name.clone(),
            policy: p.clone(),
        });
    }
    for (name, old) in &have.policies {
        if !want.policies.contains_key(name) {
            rows.push(row(
                Op::Delete,
                &format!("policy {name}"),
                None,
                Some(policy_text(old)),
                None,
            ));
            actions.push(Action::DeletePolicy { name: name.clone() });
        }
    }
    Plan {
        group: want.name.clone(),
        observed_fingerprint: fp,
        rows,
        actions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::state::fixtures::{observed, want};

    #[test]
    fn a_template_goes_first_and_its_state_joins_the_fingerprint() {
        let group = diff(&want(), &None);
        let t = WantedTemplate {
            name: "payment-api".into(),
            data: TemplateData {
                image_id: "ami-1".into(),
                instance_type: "t3.micro".into(),
                user_data: "#!/bin/bash\n".into(),
                iam_instance_profile: None,
                security_group_ids: Vec::new(),
            },
        };
        let p = group.clone().with_template(&t, &None);
        assert!(matches!(p.actions[0], Action::CreateLaunchTemplate { .. }));
        assert!(matches!(p.actions[1], Action::CreateGroup { .. }));
        assert_eq!(p.rows[0].subject(), "launch_template payment-api.version");
        assert_eq!(p.counts().0, group.counts().0 + 1, "one more resource");
        let mut seen = ObservedTemplate {
            name: t.name.clone(),
            latest_version: 1,
            data: t.data.clone(),
        };
        let same = group.clone().with_template(&t, &Some(seen.clone()));
        assert_eq!(same.actions, group.actions);
        seen.latest_version = 2;
        let later = group.with_template(&t, &Some(seen));
        assert_ne!(
            same.observed_fingerprint, later.observed_fingerprint,
            "a saved plan is refused once the template changed"
        );
    }

    #[test]
    fn a_missing_group_is_created() {
        let plan = diff(&want(), &None);
        assert!(plan.rows.iter().all(|r| r.op == Op::Create));
        assert!(matches!(
            plan.actions[0],
            Action::CreateGroup { capacity: 5, .. }
        ));
    }

    #[test]
    fn no_change_is_an_empty_plan() {
        let w = want();
        assert!(diff(&w, &Some(observed(&w))).is_empty());
    }

    #[test]
    fn one_attribute_is_one_row() {
        let w = want();
        let mut bigger = w.clone();
        bigger.max = 20;
        let plan = diff(&bigger, &Some(observed(&w)));
        assert_eq!(plan.rows.len(), 1);
        assert_eq!(plan.rows[0].op, Op::Update);
        assert_eq!(plan.rows[0].attribute.as_deref(), Some("max"));
        assert_eq!(plan.counts(), (0, 1, 0));
    }

    #[test]
    fn a_policy_owned_capacity_is_only_clamped() {
        let mut w = want();
        w.desired = None;
        let mut have = observed(&want());
        have.desired = 7;
        assert!(
            diff(&w, &Some(have.clone())).is_empty(),
            "7 is within [1, 10]: left alone"
        );
        w.max = 6;
        let plan = diff(&w, &Some(have));
        let desired = plan
            .rows
            .iter()
            .find(|r| r.attribute.as_deref() == Some("desired"))
            .unwrap();
        assert_eq!(
            (desired.old.as_deref(), desired.new.as_deref()),
            (Some("7"), Some("6"))
        );
    }

    #[test]
    fn policies_and_tags_are_added_changed_and_removed() {
        let mut w = want();
        let policy = Policy {
            metric: "ASGAverageCPUUtilization".into(),
            target: 50.0,
            resource_label: None,
            disable_scale_in: false,
            instance_warmup: None,
        };
        w.policies.insert("cpu".into(), policy.clone());
        w.tags.insert("team".into(), "payments".into());
        let mut have = observed(&w);
        have.policies.insert("old".into(), policy.clone());
        have.policies.insert(
            "cpu".into(),
            Policy {
                target: 70.0,
                ..policy
            },
        );
        have.tags.insert("stale".into(), "x".into());
        let plan = diff(&w, &Some(have));
        assert_eq!(plan.counts(), (1, 1, 2), "{:#?}", plan.rows);
    }
}
