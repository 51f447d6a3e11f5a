//! A profile's `[[chaos]]` steps: faults injected on a schedule into the processes the
//! run itself spawned (API instances, PostgreSQL shards, Redis), never anything else.
//! Checked when the profile is read, so a step naming something the run does not start
//! exits 2 before any server does.

use super::ProfileError;
use super::{duration, invalid};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Most steps in one profile: a schedule, not a fuzzer.
pub const CHAOS_STEPS_MAX: usize = 32;
/// Longest one fault may last: longer is an outage, not a fault the run should ride out.
pub const FAULT_LASTS_MAX: Duration = Duration::from_secs(60);
/// A fault lasts this long when the step does not say.
pub const FAULT_LASTS_DEFAULT: Duration = Duration::from_secs(2);

/// One `[[chaos]]` table as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosStep {
    /// When, after the load starts: "5s".
    pub at: String,
    /// "kill-api", "stall-api", "restart-api", "stop-shard", "failover" or "kill-redis".
    pub fault: String,
    /// How long the fault lasts before the process is started again or continued.
    #[serde(rename = "for")]
    pub lasts: Option<String>,
    /// kill-api, stall-api, restart-api: which spawned instance, from 0.
    pub instance: Option<usize>,
    /// stop-shard, failover: the layout's shard name.
    pub shard: Option<String>,
}

/// What a step does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// SIGKILL an API instance; start it again on the same port and data after `lasts`.
    KillApi { instance: usize },
    /// SIGSTOP an API instance; SIGCONT it after `lasts`.
    StallApi { instance: usize },
    /// SIGTERM an API instance (it drains: `/readyz` answers 503, in-flight requests
    /// finish) and wait for it to exit; start it again after `lasts`. One step of a
    /// rolling restart.
    RestartApi { instance: usize },
    /// Stop one PostgreSQL shard's server (fast shutdown); start it again after `lasts`.
    StopShard { shard: usize, name: String },
    /// Crash one shard's primary (immediate stop); promote its synchronous standby after
    /// `lasts` (the time a failure detector takes), which the API must find by itself.
    /// Once a shard in a run: the promoted standby has no standby of its own.
    Failover { shard: usize, name: String },
    /// SIGKILL the spawned Redis; start it again after `lasts`.
    KillRedis,
}

impl Fault {
    pub const NAMES: [&str; 6] = [
        "kill-api",
        "stall-api",
        "restart-api",
        "stop-shard",
        "failover",
        "kill-redis",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Fault::KillApi { .. } => "kill-api",
            Fault::StallApi { .. } => "stall-api",
            Fault::RestartApi { .. } => "restart-api",
            Fault::StopShard { .. } => "stop-shard",
            Fault::Failover { .. } => "failover",
            Fault::KillRedis => "kill-redis",
        }
    }

    /// What it acts on, as reports name it.
    pub fn subject(&self) -> String {
        match self {
            Fault::KillApi { instance }
            | Fault::StallApi { instance }
            | Fault::RestartApi { instance } => format!("API instance {instance}"),
            Fault::StopShard { name, .. } | Fault::Failover { name, .. } => {
                format!("shard {name}")
            }
            Fault::KillRedis => "Redis".into(),
        }
    }

    /// Does it act on an API instance (which must then run as a process of its own)?
    pub fn on_api(&self) -> bool {
        matches!(
            self,
            Fault::KillApi { .. } | Fault::StallApi { .. } | Fault::RestartApi { .. }
        )
    }
}

/// A checked step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultStep {
    pub at: Duration,
    pub lasts: Duration,
    pub fault: Fault,
}

/// What the run spawns, which is all a step may act on.
pub struct Spawns<'a> {
    /// None: the target is a URL, nothing is spawned.
    pub instances: Option<usize>,
    /// The layout's shard names when its PostgreSQL servers are spawned.
    pub spawned_shards: Option<&'a [String]>,
    /// Standbys cloned for each spawned shard.
    pub replicas: usize,
    pub spawned_redis: bool,
    /// How long the load runs: every fault must be over before it ends.
    pub run: Duration,
}

/// Check every step against what the run spawns; sorted by `at`.
pub fn check(
    steps: &[ChaosStep],
    spawns: &Spawns,
    path: &Path,
) -> Result<Vec<FaultStep>, ProfileError> {
    if steps.len() > CHAOS_STEPS_MAX {
        return Err(invalid(
            path,
            "chaos",
            format!("has {} steps: at most {CHAOS_STEPS_MAX}", steps.len()),
        ));
    }
    let mut out = Vec::with_capacity(steps.len());
    for (i, s) in steps.iter().enumerate() {
        let key = |field: &str| format!("chaos[{i}].{field}");
        let at = duration(path, &key("at"), &s.at)?;
        let lasts = match &s.lasts {
            Some(v) => duration(path, &key("for"), v)?,
            None => FAULT_LASTS_DEFAULT,
        };
        if lasts.is_zero() || lasts > FAULT_LASTS_MAX {
            return Err(invalid(
                path,
                &key("for"),
                format!("is {lasts:?}: it must be above 0 and at most {FAULT_LASTS_MAX:?}"),
            ));
        }
        if at + lasts >= spawns.run {
            return Err(invalid(
                path,
                &key("at"),
                format!(
                    "plus `for` ends at {:?}, not before the load does ({:?}): the run must see the recovery",
                    at + lasts,
                    spawns.run
                ),
            ));
        }
        let fault = fault(s, spawns, path, &key)?;
        if let Fault::Failover { shard, name } = &fault
            && out.iter().any(
                |o: &FaultStep| matches!(&o.fault, Fault::Failover { shard: t, .. } if t == shard),
            )
        {
            return Err(invalid(
                path,
                &key("shard"),
                format!(
                    "fails {name} over a second time: its promoted standby has no standby of its own"
                ),
            ));
        }
        out.push(FaultStep { at, lasts, fault });
    }
    out.sort_by_key(|s| s.at);
    Ok(out)
}

fn fault(
    s: &ChaosStep,
    spawns: &Spawns,
    path: &Path,
    key: &dyn Fn(&str) -> String,
) -> Result<Fault, ProfileError> {
    let unused = |field: &str, present: bool| match present {
        true => Err(invalid(
            path,
            &key(field),
            format!("does not apply to fault {:?}", s.fault),
        )),
        false => Ok(()),
    };
    match s.fault.as_str() {
        "kill-api" | "stall-api" | "restart-api" => {
            unused("shard", s.shard.is_some())?;
            let Some(instances) = spawns.instances else {
                return Err(invalid(
                    path,
                    &key("fault"),
                    "acts on an API instance the run spawns; with target.url nothing is spawned",
                ));
            };
            let instance = s.instance.unwrap_or(0);
            if instance >= instances {
                return Err(invalid(
                    path,
                    &key("instance"),
                    format!(
                        "is {instance}: the run spawns instances 0 to {}",
                        instances - 1
                    ),
                ));
            }
            Ok(match s.fault.as_str() {
                "kill-api" => Fault::KillApi { instance },
                "restart-api" => Fault::RestartApi { instance },
                _ => Fault::StallApi { instance },
            })
        }
        "stop-shard" | "failover" => {
            unused("instance", s.instance.is_some())?;
            let Some(shards) = spawns.spawned_shards else {
                return Err(invalid(
                    path,
                    &key("fault"),
                    "stops a PostgreSQL server the run spawns: it needs target.layout with target.postgres = \"spawn\"",
                ));
            };
            if s.fault == "failover" && spawns.replicas == 0 {
                return Err(invalid(
                    path,
                    &key("fault"),
                    "promotes a shard's standby: it needs target.replicas = 1 (or more)",
                ));
            }
            let Some(name) = &s.shard else {
                return Err(invalid(
                    path,
                    &key("shard"),
                    format!(
                        "is missing: name one of the layout's shards ({})",
                        shards.join(", ")
                    ),
                ));
            };
            match shards.iter().position(|n| n == name) {
                Some(shard) if s.fault == "failover" => Ok(Fault::Failover {
                    shard,
                    name: name.clone(),
                }),
                Some(shard) => Ok(Fault::StopShard {
                    shard,
                    name: name.clone(),
                }),
                None => Err(invalid(
                    path,
                    &key("shard"),
                    format!("is {name:?}: the layout's shards are {}", shards.join(", ")),
                )),
            }
        }
        "kill-redis" => {
            unused("instance", s.instance.is_some())?;
            unused("shard", s.shard.is_some())?;
            if !spawns.spawned_redis {
                return Err(invalid(
                    path,
                    &key("fault"),
                    "kills the Redis the run spawns: it needs target.redis = \"spawn\"",
                ));
            }
            Ok(Fault::KillRedis)
        }
        other => Err(invalid(
            path,
            &key("fault"),
            format!("is {other:?}: allowed are {}", Fault::NAMES.join(", ")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(at: &str, fault: &str) -> ChaosStep {
        ChaosStep {
            at: at.into(),
            fault: fault.into(),
            lasts: None,
            instance: None,
            shard: None,
        }
    }

    fn spawns(shards: &[String]) -> Spawns<'_> {
        Spawns {
            instances: Some(2),
            spawned_shards: Some(shards),
            replicas: 0,
            spawned_redis: false,
            run: Duration::from_secs(20),
        }
    }

    fn error(steps: &[ChaosStep], spawns: &Spawns) -> String {
        check(steps, spawns, Path::new("p.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_failover_needs_standbys_and_happens_once_a_shard() {
        let shards = vec!["s0".to_string(), "s1".to_string()];
        let mut over = step("2s", "failover");
        over.shard = Some("s0".into());
        let e = error(std::slice::from_ref(&over), &spawns(&shards));
        assert!(
            e.contains("chaos[0].fault") && e.contains("target.replicas"),
            "{e}"
        );
        let with_standbys = Spawns {
            replicas: 1,
            ..spawns(&shards)
        };
        let plan = check(
            std::slice::from_ref(&over),
            &with_standbys,
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(
            plan[0].fault,
            Fault::Failover {
                shard: 0,
                name: "s0".into()
            }
        );
        let mut again = over.clone();
        again.at = "8s".into();
        let e = error(&[over, again], &with_standbys);
        assert!(
            e.contains("chaos[1].shard") && e.contains("second time"),
            "{e}"
        );
    }

    #[test]
    fn steps_are_checked_and_sorted() {
        let shards = vec!["s0".to_string(), "s1".to_string()];
        let mut stop = step("9s", "stop-shard");
        stop.shard = Some("s1".into());
        stop.lasts = Some("3s".into());
        let mut kill = step("2s", "kill-api");
        kill.instance = Some(1);
        let plan = check(&[stop, kill], &spawns(&shards), Path::new("p.toml")).unwrap();
        assert_eq!(
            plan,
            vec![
                FaultStep {
                    at: Duration::from_secs(2),
                    lasts: FAULT_LASTS_DEFAULT,
                    fault: Fault::KillApi { instance: 1 }
                },
                FaultStep {
                    at: Duration::from_secs(9),
                    lasts: Duration::from_secs(3),
                    fault: Fault::StopShard {
                        shard: 1,
                        name: "s1".into()
                    }
                },
            ]
        );
    }

    #[test]
    fn a_step_naming_what_the_run_does_not_spawn_names_the_key() {
        let shards = vec!["s0".to_string()];
        let s = spawns(&shards);
        let mut far = step("1s", "kill-api");
        far.instance = Some(2);
        assert!(
            error(&[far], &s).contains("`chaos[0].instance` is 2: the run spawns instances 0 to 1")
        );
        let mut missing = step("1s", "stop-shard");
        missing.shard = Some("s9".into());
        assert!(
            error(&[step("1s", "kill-api"), missing], &s).contains("`chaos[1].shard` is \"s9\"")
        );
        assert!(
            error(&[step("1s", "kill-redis")], &s).contains("`chaos[0].fault` kills the Redis")
        );
        assert!(
            error(&[step("1s", "reboot")], &s)
                .contains("`chaos[0].fault` is \"reboot\": allowed are kill-api")
        );
        assert!(
            error(&[step("19s", "kill-api")], &s).contains("`chaos[0].at` plus `for` ends at 21s")
        );
        assert!(error(&[step("soon", "kill-api")], &s).contains("`chaos[0].at` is \"soon\""));
        let mut long = step("1s", "stall-api");
        long.lasts = Some("2m".into());
        assert!(error(&[long], &s).contains("`chaos[0].for` is 120s"));
        let url = Spawns {
            instances: None,
            spawned_shards: None,
            replicas: 0,
            spawned_redis: false,
            run: Duration::from_secs(20),
        };
        assert!(
            error(&[step("1s", "stall-api")], &url).contains("with target.url nothing is spawned")
        );
        assert!(error(&[step("1s", "stop-shard")], &url).contains("target.postgres = \"spawn\""));
    }
}
