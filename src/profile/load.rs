//! Load profiles (profiles/*.toml): what to run, how hard, for how long, and what
//! counts as passing. `LoadProfile` is the file as written; `LoadPlan` is it checked.

use super::chaos::{ChaosStep, FaultStep, Spawns};
use super::gate::{Gate, Limits, RequestLimits, ThresholdsSection};
use super::layout_target::{INSTANCES_MAX, LayoutTarget, PostgresMode};
use super::segment::Segment;
use super::{ProfileError, duration, invalid};
use crate::scenarios::Scenario;
use crate::scenarios::cadence::CoMitigation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoadProfile {
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub target: TargetSection,
    pub load: LoadSection,
    #[serde(default)]
    pub merchants: MerchantsSection,
    /// Scenario name -> weight.
    pub scenarios: BTreeMap<String, usize>,
    #[serde(default)]
    pub thresholds: ThresholdsSection,
    #[serde(default)]
    pub report: ReportSection,
    #[serde(default)]
    pub audit: AuditSection,
    /// Faults injected on a schedule into what the run spawned (`[[chaos]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chaos: Vec<ChaosStep>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    /// Base URL of a running API. Absent: spawn the reference API on a free port.
    pub url: Option<String>,
    /// Env var holding the target's admin token (never put the token in a profile).
    pub admin_token_env: Option<String>,
    /// Shards of the spawned reference API (SQLite files).
    pub shards: Option<usize>,
    /// A PostgreSQL shard layout (profiles/shards/*.toml), read from this profile's
    /// directory: the spawned reference API runs on it instead of SQLite.
    pub layout: Option<PathBuf>,
    /// Reference API instances to spawn on the layout; the load is spread over them.
    pub instances: Option<usize>,
    /// With a layout: "existing" (its URLs from the environment, the default) or "spawn"
    /// (a throwaway PostgreSQL server per shard under the run dir).
    pub postgres: Option<PostgresMode>,
    /// Redis in front of the spawned API's store: "spawn" (a throwaway redis-server
    /// under the run dir) or "existing" (its URL from `PAYTOOL_REDIS_URL`).
    pub redis: Option<RedisMode>,
    /// A load balancer paytool starts in front of the spawned instances: "haproxy" (per
    /// request) or "haproxy-tcp" (per connection).
    pub balancer: Option<Balancer>,
    /// With `postgres = "spawn"`: streaming standbys cloned for each shard's primary
    /// (`pg_basebackup -R`), one of which must have each commit before it is
    /// acknowledged; the shard's URL names them all, so the API follows a promotion.
    pub replicas: Option<usize>,
    /// Run each spawned instance as its own `paytool serve` process, as a deployment
    /// would, instead of a task in the generator's runtime. Implied by a balancer and by
    /// chaos steps that act on the API.
    pub processes: Option<bool>,
}

/// The load balancer in front of spawned instances.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Balancer {
    /// Debian's `haproxy`, with a config paytool writes (see services::haproxy),
    /// balancing each HTTP request.
    Haproxy,
    /// The same HAProxy balancing connections (`mode tcp`): a client's connection stays
    /// on one instance, and HAProxy only copies bytes, at a fraction of the CPU.
    #[serde(rename = "haproxy-tcp")]
    HaproxyTcp,
}
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// The URL in `REDIS_URL_ENV`: a Redis the caller runs (and may stop and restart).
    Existing,
    /// A throwaway `redis-server` on a free loopback port, stopped when the run ends.
    Spawn,
}

/// The env var `target.redis = "existing"` reads the URL from (the one `serve` reads).
pub const REDIS_URL_ENV: &str = "PAYTOOL_REDIS_URL";

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSection {
    pub users: Option<usize>,
    /// Time to start all users, e.g. "2s".
    pub ramp: Option<String>,
    pub run_time: Option<String>,
    /// Goose test plan instead of users/ramp/run_time: "users,time;users,time".
    pub test_plan: Option<String>,
    /// Per-request timeout, e.g. "10s".
    pub timeout: Option<String>,
    /// Open model: arrivals per second, e.g. "2000/s", instead of users.
    pub rate: Option<String>,
    /// Ramp the arrival rate linearly from `rate` to this over `run_time`.
    pub rate_end: Option<String>,
    /// Open model: connections opened at the start.
    pub connections: Option<usize>,
    /// Open model: the pool may grow to this many connections when every one is busy
    /// and an arrival is due (k6's maxVUs); `connections` when absent (no growth).
    pub connections_max: Option<usize>,
    /// Open model: "uniform" (evenly spaced, the default) or "poisson" (random gaps at
    /// the same mean rate, as independent clients arrive).
    pub arrivals: Option<String>,
    /// Closed model: Goose's coordinated-omission mitigation, "average", "minimum",
    /// "maximum" or "disabled" (the default).
    pub co_mitigation: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Skew {
    #[default]
    Uniform,
    Zipf,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantsSection {
    #[serde(default = "default_merchants")]
    pub count: usize,
    #[serde(default)]
    pub skew: Skew,
    /// Zipf exponent s: merchant k gets traffic in proportion to 1/k^s.
    pub zipf_exponent: Option<f64>,
}

fn default_merchants() -> usize {
    8
}

impl Default for MerchantsSection {
    fn default() -> Self {
        MerchantsSection {
            count: default_merchants(),
            skew: Skew::Uniform,
            zipf_exponent: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSection {
    #[serde(default = "default_report_dir")]
    pub dir: PathBuf,
    /// Goose's reports to write: any of "html", "json", "md". None (`[]`) also spares the
    /// open model feeding Goose's metrics; paytool's own reports are always written.
    #[serde(default = "default_formats")]
    pub formats: Vec<String>,
}

fn default_report_dir() -> PathBuf {
    PathBuf::from("reports")
}

fn default_formats() -> Vec<String> {
    vec!["html".into(), "json".into(), "md".into()]
}

impl Default for ReportSection {
    fn default() -> Self {
        ReportSection {
            dir: default_report_dir(),
            formats: default_formats(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection { enabled: true }
    }
}

pub const USERS_MAX: usize = 10_000;
pub const MERCHANTS_MAX: usize = 10_000;
pub const RUN_TIME_MAX: Duration = Duration::from_secs(24 * 3600);

/// How users are started and stopped.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    /// `users` started over `ramp`, then held until `run_time` has passed.
    Users {
        users: usize,
        ramp: Duration,
        run_time: Duration,
    },
    /// Goose's test plan syntax, checked.
    TestPlan {
        plan: String,
        total: Duration,
        users_max: usize,
    },
    /// Open model: requests arrive at their scheduled times whatever the answers do.
    Arrival(ArrivalRate),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArrivalRate {
    pub start_per_s: f64,
    pub end_per_s: f64,
    pub run_time: Duration,
    pub connections: usize,
    /// The most connections the pool grows to (at least `connections`).
    pub connections_max: usize,
    /// Random (exponential) gaps instead of even ones, at the same rate.
    pub poisson: bool,
}

impl ArrivalRate {
    /// When arrival `i` (from 0) is due, from the start: a linear ramp of the rate
    /// integrates to N(t) = r0 t + (r1 - r0) t^2 / 2T; solve N(t) = i for t.
    pub fn due(&self, i: u64) -> Duration {
        self.due_at(i as f64)
    }

    /// When the schedule's integrated rate reaches `i` arrivals (fractions allowed: a
    /// Poisson schedule's arrivals fall between the even ones).
    pub fn due_at(&self, i: f64) -> Duration {
        let (r0, r1, t) = (
            self.start_per_s,
            self.end_per_s,
            self.run_time.as_secs_f64(),
        );
        let secs = if (r1 - r0).abs() < 1e-9 {
            i / r0
        } else {
            let a = (r1 - r0) / (2.0 * t);
            (-r0 + (r0 * r0 + 4.0 * a * i).sqrt()) / (2.0 * a)
        };
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// How many arrivals the schedule holds.
    pub fn total(&self) -> u64 {
        let t = self.run_time.as_secs_f64();
        ((self.start_per_s + self.end_per_s) / 2.0 * t).floor() as u64
    }
}

pub const CONNECTIONS_MAX: usize = 4096;
pub const RATE_MAX_PER_S: f64 = 1_000_000.0;

impl Shape {
    pub fn duration(&self) -> Duration {
        match self {
            Shape::Users { ramp, run_time, .. } => *ramp + *run_time,
            Shape::TestPlan { total, .. } => *total,
            Shape::Arrival(a) => a.run_time,
        }
    }
}

/// A profile, checked and resolved: every value typed and in range.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    pub name: String,
    pub source: PathBuf,
    pub profile: LoadProfile,
    pub target_url: Option<String>,
    pub admin_token_env: String,
    pub shards: usize,
    /// The spawned API's PostgreSQL layout, instead of SQLite files.
    pub layout: Option<LayoutTarget>,
    /// Spawned API instances (more than one only on a layout).
    pub instances: usize,
    /// Redis in front of the spawned instances' store.
    pub redis: Option<RedisMode>,
    pub shape: Shape,
    pub timeout: Duration,
    pub merchants: usize,
    pub skew: Skew,
    pub zipf_exponent: f64,
    pub scenarios: Vec<(Scenario, usize)>,
    /// The thresholds, checked.
    pub gate: Gate,
    pub report_dir: PathBuf,
    pub formats: Vec<String>,
    pub audit: bool,
    /// Faults to inject, sorted by when.
    pub chaos: Vec<FaultStep>,
    /// `--segment I/N`: this process's slice of the profile.
    pub segment: Option<Segment>,
    /// `--merchants-file`: merchants made before (by `--prepare-only` or another
    /// segment), used instead of creating the run's own.
    pub merchants_from: Option<PathBuf>,
    /// The closed model's backfill of requests a stall held back.
    pub co_mitigation: CoMitigation,
    /// A balancer in front of the spawned instances; the load goes through it.
    pub balancer: Option<Balancer>,
    /// Spawned instances run as `paytool serve` processes: `target.processes`, or needed
    /// by a balancer or a chaos step on the API.
    pub processes: bool,
}

/// What flags may override; each is the profile key of the same name.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub users: Option<usize>,
    pub ramp: Option<String>,
    pub run_time: Option<String>,
    pub target: Option<String>,
    pub instances: Option<usize>,
    pub redis: Option<RedisMode>,
    pub merchants: Option<usize>,
    pub report_dir: Option<PathBuf>,
    pub no_audit: bool,
    pub rate: Option<String>,
    pub connections: Option<usize>,
    /// `KEY=VALUE` or `REQUEST NAME:KEY=VALUE`, e.g. `p99_ms_max=250`.
    pub thresholds: Vec<String>,
    /// `--segment I/N`: run only this slice of the profile.
    pub segment: Option<Segment>,
}

pub fn load(path: &Path, overrides: &Overrides) -> Result<LoadPlan, ProfileError> {
    let mut profile: LoadProfile = super::read_toml(path)?;
    apply(&mut profile, overrides, path)?;
    let plan = check(profile, path)?;
    match overrides.segment {
        Some(s) => slice(plan, s, path),
        None => Ok(plan),
    }
}

/// The plan's slice: its users dealt out (an arrival rate is dealt out as it runs). It
/// needs a target of its own: N processes each spawning an API would test N APIs.
fn slice(mut plan: LoadPlan, segment: Segment, path: &Path) -> Result<LoadPlan, ProfileError> {
    if plan.target_url.is_none() {
        return Err(invalid(
            path,
            "--segment",
            "needs one target every segment shares: give --target URL (or target.url)",
        ));
    }
    match &mut plan.shape {
        Shape::Users { users, .. } => {
            let share = segment.share(*users as u64) as usize;
            let weighted = plan.scenarios.len();
            if share < weighted.max(1) {
                return Err(invalid(
                    path,
                    "--segment",
                    format!(
                        "gives segment {} {share} of {users} users, fewer than the {weighted} weighted scenarios (Goose gives each user one): use more users or fewer segments",
                        segment.label()
                    ),
                ));
            }
            *users = share;
        }
        Shape::TestPlan { .. } => {
            return Err(invalid(
                path,
                "--segment",
                "splits users or an arrival rate, not a Goose test plan",
            ));
        }
        Shape::Arrival(_) => {}
    }
    plan.segment = Some(segment);
    Ok(plan)
}

fn apply(p: &mut LoadProfile, o: &Overrides, path: &Path) -> Result<(), ProfileError> {
    if let Some(u) = o.users {
        p.load.users = Some(u);
        p.load.test_plan = None;
        p.load.rate = None;
        p.load.rate_end = None;
        p.load.connections = None;
        p.load.connections_max = None;
    }
    if let Some(r) = &o.rate {
        p.load.rate = Some(r.clone());
        p.load.co_mitigation = None;
        p.load.rate_end = None;
        p.load.users = None;
        p.load.ramp = None;
        p.load.test_plan = None;
    }
    if let Some(c) = o.connections {
        p.load.connections = Some(c);
        // More connections than the profile's ceiling lift the ceiling with them.
        p.load.connections_max = p.load.connections_max.map(|m| m.max(c));
    }
    if let Some(r) = &o.ramp {
        p.load.ramp = Some(r.clone());
    }
    if let Some(r) = &o.run_time {
        p.load.run_time = Some(r.clone());
        p.load.test_plan = None;
    }
    if let Some(t) = &o.target {
        p.target.balancer = None;
        p.target.processes = None;
        // A URL replaces whatever the profile would have spawned.
        p.target.url = Some(t.clone());
        p.target.layout = None;
        p.target.instances = None;
        p.target.postgres = None;
        p.target.redis = None;
    }
    if let Some(mode) = o.redis {
        p.target.redis = Some(mode);
    }
    if let Some(n) = o.instances {
        p.target.instances = Some(n);
    }
    if let Some(m) = o.merchants {
        p.merchants.count = m;
    }
    if let Some(d) = &o.report_dir {
        p.report.dir = d.clone();
    }
    if o.no_audit {
        p.audit.enabled = false;
    }
    for t in &o.thresholds {
        let (scope, rule) = match t.rsplit_once(':') {
            Some((name, rule)) => (Some(name.trim().to_string()), rule),
            None => (None, t.as_str()),
        };
        let limits = match scope {
            None => &mut p.thresholds.all,
            Some(name) => {
                let idx = match p.thresholds.request.iter().position(|r| r.name == name) {
                    Some(i) => i,
                    None => {
                        p.thresholds.request.push(RequestLimits {
                            name,
                            limits: Limits::default(),
                        });
                        p.thresholds.request.len() - 1
                    }
                };
                &mut p.thresholds.request[idx].limits
            }
        };
        super::gate::apply_override(limits, rule)
            .map_err(|m| invalid(path, "--threshold", format!("{t:?}: {m}")))?;
    }
    Ok(())
}

fn check(mut p: LoadProfile, path: &Path) -> Result<LoadPlan, ProfileError> {
    let name = p.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "profile".into())
    });
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid(
            path,
            "name",
            format!("is {name:?}: use letters, digits, - and _"),
        ));
    }
    let target_url = match &p.target.url {
        Some(url) => {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| invalid(path, "target.url", format!("is {url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(invalid(
                    path,
                    "target.url",
                    format!("is {url:?}: expected http://HOST[:PORT] or https://HOST[:PORT]"),
                ));
            }
            Some(url.trim_end_matches('/').to_string())
        }
        None => None,
    };
    let (layout, instances) = check_layout_target(&p.target, path)?;
    if p.target.redis.is_some() && p.target.url.is_some() {
        return Err(invalid(
            path,
            "target.redis",
            "only applies to a spawned API: a URL names one already running, with its own cache",
        ));
    }
    // The run dir's profile.toml is read from elsewhere: it names the layout absolutely.
    if let Some(l) = &layout {
        p.target.layout = Some(l.path.clone());
    }
    let shards = p.target.shards.unwrap_or(crate::store::SHARDS_DEFAULT);
    if !(1..=crate::store::SHARDS_MAX).contains(&shards) {
        return Err(invalid(
            path,
            "target.shards",
            format!("is {shards}: it must be 1 to {}", crate::store::SHARDS_MAX),
        ));
    }
    let l = &p.load;
    let shape = if let Some(rate) = &l.rate {
        if l.users.is_some() || l.ramp.is_some() || l.test_plan.is_some() {
            return Err(invalid(
                path,
                "load.rate",
                "cannot be combined with users, ramp or test_plan: an arrival rate replaces them",
            ));
        }
        let start_per_s = parse_rate(path, "load.rate", rate)?;
        let end_per_s = match &l.rate_end {
            Some(r) => parse_rate(path, "load.rate_end", r)?,
            None => start_per_s,
        };
        let run_time = duration(
            path,
            "load.run_time",
            l.run_time
                .as_deref()
                .ok_or_else(|| invalid(path, "load.run_time", "is missing, e.g. \"15s\""))?,
        )?;
        if run_time < Duration::from_secs(1) || run_time > RUN_TIME_MAX {
            return Err(invalid(path, "load.run_time", "must be 1s to 24h"));
        }
        let connections = l.connections.unwrap_or(64);
        if !(1..=CONNECTIONS_MAX).contains(&connections) {
            return Err(invalid(
                path,
                "load.connections",
                format!("is {connections}: it must be 1 to {CONNECTIONS_MAX}"),
            ));
        }
        let connections_max = l.connections_max.unwrap_or(connections);
        if !(connections..=CONNECTIONS_MAX).contains(&connections_max) {
            return Err(invalid(
                path,
                "load.connections_max",
                format!(
                    "is {connections_max}: it must be load.connections ({connections}) to {CONNECTIONS_MAX}"
                ),
            ));
        }
        let poisson = match l.arrivals.as_deref() {
            None | Some("uniform") => false,
            Some("poisson") => true,
            Some(other) => {
                return Err(invalid(
                    path,
                    "load.arrivals",
                    format!("is {other:?}: \"uniform\" or \"poisson\""),
                ));
            }
        };
        Shape::Arrival(ArrivalRate {
            start_per_s,
            end_per_s,
            run_time,
            connections,
            connections_max,
            poisson,
        })
    } else if l.rate_end.is_some()
        || l.connections.is_some()
        || l.connections_max.is_some()
        || l.arrivals.is_some()
    {
        return Err(invalid(
            path,
            "load.rate_end",
            "load.connections, load.connections_max and load.arrivals only apply with load.rate",
        ));
    } else {
        match &l.test_plan {
            Some(plan) => {
                if l.users.is_some() || l.run_time.is_some() || l.ramp.is_some() {
                    return Err(invalid(
                        path,
                        "load.test_plan",
                        "cannot be combined with users, ramp or run_time",
                    ));
                }
                let (total, users_max) =
                    check_test_plan(plan).map_err(|m| invalid(path, "load.test_plan", m))?;
                Shape::TestPlan {
                    plan: plan.clone(),
                    total,
                    users_max,
                }
            }
            None => {
                let users = l.users.ok_or_else(|| {
                    invalid(path, "load.users", "is missing: how many users to run")
                })?;
                if !(1..=USERS_MAX).contains(&users) {
                    return Err(invalid(
                        path,
                        "load.users",
                        format!("is {users}: it must be 1 to {USERS_MAX}"),
                    ));
                }
                let run_time = duration(
                    path,
                    "load.run_time",
                    l.run_time.as_deref().ok_or_else(|| {
                        invalid(path, "load.run_time", "is missing, e.g. \"15s\"")
                    })?,
                )?;
                if run_time < Duration::from_secs(1) || run_time > RUN_TIME_MAX {
                    return Err(invalid(path, "load.run_time", "must be 1s to 24h"));
                }
                let ramp = match &l.ramp {
                    Some(r) => duration(path, "load.ramp", r)?,
                    None => Duration::ZERO,
                };
                if ramp > run_time {
                    return Err(invalid(
                        path,
                        "load.ramp",
                        "must not be longer than load.run_time",
                    ));
                }
                Shape::Users {
                    users,
                    ramp,
                    run_time,
                }
            }
        }
    };
    let timeout = match &l.timeout {
        Some(t) => duration(path, "load.timeout", t)?,
        None => Duration::from_secs(10),
    };
    if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(300) {
        return Err(invalid(path, "load.timeout", "must be 10ms to 300s"));
    }
    let merchants = p.merchants.count;
    if !(1..=MERCHANTS_MAX).contains(&merchants) {
        return Err(invalid(
            path,
            "merchants.count",
            format!("is {merchants}: it must be 1 to {MERCHANTS_MAX}"),
        ));
    }
    let zipf_exponent = match (p.merchants.skew, p.merchants.zipf_exponent) {
        (Skew::Zipf, Some(s)) if s > 0.0 && s <= 5.0 => s,
        (Skew::Zipf, Some(s)) => {
            return Err(invalid(
                path,
                "merchants.zipf_exponent",
                format!("is {s}: it must be above 0 and at most 5"),
            ));
        }
        (Skew::Zipf, None) => 1.0,
        (Skew::Uniform, Some(_)) => {
            return Err(invalid(
                path,
                "merchants.zipf_exponent",
                "only applies with skew = \"zipf\"",
            ));
        }
        (Skew::Uniform, None) => 0.0,
    };
    if p.scenarios.is_empty() {
        return Err(invalid(
            path,
            "scenarios",
            format!("is empty: give weights to some of {}", Scenario::names()),
        ));
    }
    let mut scenarios = Vec::new();
    for (name, weight) in &p.scenarios {
        let known = Scenario::from_name(name).ok_or_else(|| {
            invalid(
                path,
                &format!("scenarios.{name}"),
                format!("is not a scenario; known: {}", Scenario::names()),
            )
        })?;
        if *weight > 1000 {
            return Err(invalid(
                path,
                &format!("scenarios.{name}"),
                "weight must be 0 to 1000",
            ));
        }
        if *weight > 0 {
            scenarios.push((known, *weight));
        }
    }
    if scenarios.is_empty() {
        return Err(invalid(
            path,
            "scenarios",
            "every weight is 0: nothing would run",
        ));
    }
    let users_max = match &shape {
        Shape::Users { users, .. } => *users,
        Shape::TestPlan { users_max, .. } => *users_max,
        Shape::Arrival(_) => usize::MAX,
    };
    if users_max < scenarios.len() {
        return Err(invalid(
            path,
            "load.users",
            format!(
                "is {users_max}, fewer than the {} scenarios with a weight: Goose gives each user one scenario, so some would never run",
                scenarios.len()
            ),
        ));
    }
    let gate = super::gate::check(
        &p.thresholds,
        matches!(shape, Shape::Arrival(_)),
        shape.duration(),
        path,
    )?;
    for f in &p.report.formats {
        if !["html", "json", "md"].contains(&f.as_str()) {
            return Err(invalid(
                path,
                "report.formats",
                format!("has {f:?}: allowed are \"html\", \"json\", \"md\""),
            ));
        }
    }
    let spawned_shards = layout
        .as_ref()
        .filter(|l| l.postgres == PostgresMode::Spawn)
        .map(|l| l.shards.as_slice());
    let chaos = super::chaos::check(
        &p.chaos,
        &Spawns {
            instances: target_url.is_none().then_some(instances),
            spawned_shards,
            replicas: layout.as_ref().map_or(0, |l| l.replicas),
            spawned_redis: p.target.redis == Some(RedisMode::Spawn),
            run: shape.duration(),
        },
        path,
    )?;
    let co_mitigation = match p.load.co_mitigation.as_deref() {
        None => CoMitigation::Disabled,
        Some(text) => CoMitigation::parse(text).ok_or_else(|| {
            invalid(
                path,
                "load.co_mitigation",
                format!("is {text:?}: \"average\", \"minimum\", \"maximum\" or \"disabled\""),
            )
        })?,
    };
    if co_mitigation != CoMitigation::Disabled && matches!(shape, Shape::Arrival(_)) {
        return Err(invalid(
            path,
            "load.co_mitigation",
            "applies to the closed model (users): the open model times requests from their schedule and has nothing to mitigate",
        ));
    }
    if p.target.balancer.is_some() && p.target.layout.is_none() {
        return Err(invalid(
            path,
            "target.balancer",
            "needs target.layout: only instances on PostgreSQL shards share their data, and a balancer spreads the load over spawned instances",
        ));
    }
    if p.target.processes.is_some() && p.target.url.is_some() {
        return Err(invalid(
            path,
            "target.processes",
            "applies to instances paytool spawns, and target.url names one already running",
        ));
    }
    // A SIGKILL, SIGSTOP or SIGTERM acts on a process: instances behind a balancer (which
    // drain on SIGTERM) and instances a chaos step acts on must run as processes.
    let needs_processes = match (
        p.target.balancer.is_some(),
        chaos.iter().any(|s| s.fault.on_api()),
    ) {
        (true, _) => Some("target.balancer (each instance drains on SIGTERM)"),
        (false, true) => Some("a [[chaos]] step that acts on the API"),
        (false, false) => None,
    };
    let processes = match (p.target.processes, needs_processes) {
        // Said outright, it would be overridden silently: refuse it instead.
        (Some(false), Some(needs)) => {
            return Err(invalid(
                path,
                "target.processes",
                format!("is false, but {needs} needs the instances as processes"),
            ));
        }
        (asked, needs) => asked.unwrap_or(false) || needs.is_some(),
    };
    Ok(LoadPlan {
        balancer: p.target.balancer,
        processes,
        co_mitigation,
        chaos,
        segment: None,
        merchants_from: None,
        name,
        source: path.to_path_buf(),
        target_url,
        admin_token_env: p
            .target
            .admin_token_env
            .clone()
            .unwrap_or_else(|| "PAYTOOL_ADMIN_TOKEN".into()),
        shards,
        layout,
        instances,
        redis: p.target.redis,
        shape,
        timeout,
        merchants,
        skew: p.merchants.skew,
        zipf_exponent,
        scenarios,
        gate,
        report_dir: p.report.dir.clone(),
        formats: p.report.formats.clone(),
        audit: p.audit.enabled,
        profile: p,
    })
}

/// `[target]`'s layout, instances and postgres, and how they combine with the rest.
/// Most standbys paytool clones for one spawned shard.
pub const REPLICAS_MAX: usize = 2;

fn check_layout_target(
    t: &TargetSection,
    path: &Path,
) -> Result<(Option<LayoutTarget>, usize), ProfileError> {
    let instances = t.instances.unwrap_or(1);
    if !(1..=INSTANCES_MAX).contains(&instances) {
        return Err(invalid(
            path,
            "target.instances",
            format!("is {instances}: it must be 1 to {INSTANCES_MAX}"),
        ));
    }
    let Some(layout) = &t.layout else {
        if instances > 1 {
            return Err(invalid(
                path,
                "target.instances",
                "above 1 needs target.layout: only instances on PostgreSQL shards share their data",
            ));
        }
        if t.postgres.is_some() {
            return Err(invalid(
                path,
                "target.postgres",
                "only applies with target.layout",
            ));
        }
        return Ok((None, instances));
    };
    let conflict = |key: &str, what: &str| {
        invalid(
            path,
            key,
            format!("cannot be combined with target.layout: {what}"),
        )
    };
    if t.url.is_some() {
        return Err(conflict(
            "target.url",
            "a layout spawns the API, a URL names one already running",
        ));
    }
    if t.shards.is_some() {
        return Err(conflict(
            "target.shards",
            "the layout names the shards (target.shards counts SQLite files)",
        ));
    }
    let mode = t.postgres.unwrap_or_default();
    let replicas = t.replicas.unwrap_or(0);
    if replicas > 0 && mode != PostgresMode::Spawn {
        return Err(invalid(
            path,
            "target.replicas",
            "needs target.postgres = \"spawn\": paytool clones standbys only of servers it starts (give existing shards' standbys in their URLs)",
        ));
    }
    if replicas > REPLICAS_MAX {
        return Err(invalid(
            path,
            "target.replicas",
            format!("is {replicas}: at most {REPLICAS_MAX} standbys a shard"),
        ));
    }
    let mut target = LayoutTarget::load(path, "target.layout", layout, mode)?;
    target.replicas = replicas;
    Ok((Some(target), instances))
}

/// "2000/s" -> 2000.0
fn parse_rate(path: &Path, key: &str, value: &str) -> Result<f64, ProfileError> {
    let number = value.trim().strip_suffix("/s").unwrap_or(value.trim());
    match number.trim().parse::<f64>() {
        Ok(r) if r > 0.0 && r <= RATE_MAX_PER_S => Ok(r),
        _ => Err(invalid(
            path,
            key,
            format!(
                "is {value:?}: write arrivals per second such as \"2000/s\" (above 0, at most {RATE_MAX_PER_S})"
            ),
        )),
    }
}

/// Check "users,time;users,time" and return its total time and peak users.
fn check_test_plan(plan: &str) -> Result<(Duration, usize), String> {
    let mut total = Duration::ZERO;
    let mut users_max = 0;
    for step in plan.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (users, time) = step
            .split_once(',')
            .ok_or_else(|| format!("step {step:?}: expected USERS,TIME such as \"10,30s\""))?;
        let users: usize = users
            .trim()
            .parse()
            .map_err(|_| format!("step {step:?}: users is not a whole number"))?;
        if users > USERS_MAX {
            return Err(format!("step {step:?}: at most {USERS_MAX} users"));
        }
        let time =
            humantime::parse_duration(time.trim()).map_err(|e| format!("step {step:?}: {e}"))?;
        // Checked: a few steps of huge times overflow a Duration.
        total = total
            .checked_add(time)
            .ok_or_else(|| "must total at most 24h".to_string())?;
        users_max = users_max.max(users);
    }
    if total.is_zero() || users_max == 0 {
        return Err(format!(
            "is {plan:?}: it must start some users for some time"
        ));
    }
    if total > RUN_TIME_MAX {
        return Err("must total at most 24h".into());
    }
    Ok((total, users_max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_follow_the_ramp() {
        let flat = ArrivalRate {
            start_per_s: 100.0,
            end_per_s: 100.0,
            run_time: Duration::from_secs(10),
            connections: 1,
            connections_max: 1,
            poisson: false,
        };
        assert_eq!(flat.total(), 1000);
        assert_eq!(flat.due(500), Duration::from_secs(5));
        let ramp = ArrivalRate {
            end_per_s: 300.0,
            ..flat
        };
        // 100/s rising to 300/s over 10 s: 2000 arrivals, the last due at the end.
        assert_eq!(ramp.total(), 2000);
        assert!((ramp.due(2000).as_secs_f64() - 10.0).abs() < 1e-6);
        // The first half of the time holds fewer than half of the arrivals.
        assert!(ramp.due(1000) > Duration::from_secs(5));
    }
}
