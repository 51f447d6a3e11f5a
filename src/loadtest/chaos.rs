//! The chaos steps of a run: each fault injected at its time into a process the run
//! spawned, lifted after its `for`, and what the load saw from injection to recovery.
//! Steps run one after another: a step due while another lasts starts when it ends.

use super::LoadtestError;
use super::target::{Instance, Parts};
use crate::profile::chaos::{Fault, FaultStep};
use crate::scenarios::live::{LiveStats, Mark};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Recovered: this long with requests answered and none failed.
const RECOVERY_QUIET: Duration = Duration::from_secs(1);
/// How long after a fault is lifted the run waits to see it recover.
const RECOVERY_WAIT_MAX: Duration = Duration::from_secs(30);
const RECOVERY_POLL: Duration = Duration::from_millis(100);

/// One injected fault, as the report shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FaultRecord {
    /// One of `Fault::NAMES`: "kill-api", "stall-api", "restart-api", "stop-shard",
    /// "failover", "kill-redis".
    pub fault: String,
    /// What it acted on: "API instance 0", "shard s1", "Redis".
    pub subject: String,
    /// Seconds from the load's start.
    pub injected_at_s: f64,
    /// When the fault ended (the restart or SIGCONT was begun).
    pub lifted_at_s: f64,
    /// Seconds from the lift (the restart included) until the last failure before an
    /// error-free second; None
    /// when the load ended (or RECOVERY_WAIT_MAX passed) first.
    pub recovered_after_s: Option<f64>,
    /// Requests answered or failed from the injection to the recovery (or the end).
    pub requests: u64,
    pub failed: u64,
    pub p99_ms: f64,
    /// The slowest of them (to the live histogram's ~19% resolution).
    #[serde(default)]
    pub max_ms: f64,
    /// Why the fault could not be injected or lifted (the run then fails).
    pub error: Option<String>,
}

impl FaultRecord {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Run `steps` against `parts` from `started`; stop waiting for recoveries once `done`
/// says the load ended. Gives the parts back with the records.
pub async fn run(
    steps: Vec<FaultStep>,
    mut parts: Parts,
    live: Arc<LiveStats>,
    started: Instant,
    mut done: watch::Receiver<bool>,
) -> (Parts, Vec<FaultRecord>) {
    let mut records = Vec::with_capacity(steps.len());
    for step in steps {
        let due = started + step.at;
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = done.wait_for(|d| *d) => {}
        }
        let secs = |t: Instant| t.duration_since(started).as_secs_f64();
        let mut record = FaultRecord {
            fault: step.fault.name().into(),
            subject: step.fault.subject(),
            injected_at_s: secs(Instant::now()),
            lifted_at_s: 0.0,
            recovered_after_s: None,
            requests: 0,
            failed: 0,
            p99_ms: 0.0,
            max_ms: 0.0,
            error: None,
        };
        if *done.borrow() {
            record.error = Some("not injected: the load ended first".into());
            records.push(record);
            continue;
        }
        let before = live.mark();
        if let Err(e) = inject(&mut parts, &step.fault).await {
            record.error = Some(format!("injecting: {e}"));
            records.push(record);
            continue;
        }
        tokio::time::sleep(step.lasts).await;
        // Recovery counts from here: a restart's own time is part of it.
        let lifted_at = (Instant::now(), live.mark());
        record.lifted_at_s = secs(lifted_at.0);
        if let Err(e) = lift(&mut parts, &step.fault).await {
            record.error = Some(format!("lifting: {e}"));
        }
        let (recovered, end) = recovery(&live, lifted_at, &mut done).await;
        record.recovered_after_s = recovered.map(|r| r.as_secs_f64());
        let window = end.since(&before);
        record.requests = window.requests;
        record.failed = window.errors;
        record.p99_ms = window.p99.as_secs_f64() * 1000.0;
        record.max_ms = window.max.as_secs_f64() * 1000.0;
        records.push(record);
    }
    (parts, records)
}

async fn inject(parts: &mut Parts, fault: &Fault) -> Result<(), LoadtestError> {
    match fault {
        Fault::KillApi { instance } => process(parts, *instance)?.kill().await,
        Fault::StallApi { instance } => process(parts, *instance)?.stall(true)?,
        Fault::RestartApi { instance } => process(parts, *instance)?.stop().await?,
        Fault::StopShard { shard, .. } | Fault::Failover { shard, .. } => {
            on_postgres(parts, *shard, |pg| pg.stop()).await?;
        }
        Fault::KillRedis => redis(parts)?.stop(),
    }
    Ok(())
}

async fn lift(parts: &mut Parts, fault: &Fault) -> Result<(), LoadtestError> {
    match fault {
        Fault::KillApi { instance } => process(parts, *instance)?.start().await,
        Fault::StallApi { instance } => process(parts, *instance)?.stall(false),
        Fault::RestartApi { instance } => process(parts, *instance)?.start().await,
        Fault::StopShard { shard, .. } => on_postgres(parts, *shard, |pg| pg.start_again()).await,
        Fault::Failover { shard, .. } => promote(parts, *shard).await,
        Fault::KillRedis => redis(parts)?
            .start_again()
            .map_err(|e| LoadtestError::Run(format!("starting Redis again: {e}"))),
    }
}

fn process(parts: &mut Parts, i: usize) -> Result<&mut super::process::ApiProcess, LoadtestError> {
    match parts.instances.get_mut(i) {
        Some(Instance::Process(p)) => Ok(p),
        _ => Err(LoadtestError::Run(format!(
            "API instance {i} is not a process this run started"
        ))),
    }
}

fn redis(parts: &mut Parts) -> Result<&mut crate::services::redis::LocalRedis, LoadtestError> {
    parts
        .redis
        .as_mut()
        .ok_or_else(|| LoadtestError::Run("this run started no Redis".into()))
}

/// pg_ctl blocks: run it off the runtime, the server moved there and back.
async fn on_postgres(
    parts: &mut Parts,
    shard: usize,
    act: fn(
        &mut crate::services::postgres::LocalPostgres,
    ) -> Result<(), crate::services::postgres::PostgresError>,
) -> Result<(), LoadtestError> {
    if shard >= parts.postgres.len() {
        return Err(LoadtestError::Run(format!(
            "shard {shard} has no PostgreSQL server this run started"
        )));
    }
    let mut pg = parts.postgres.remove(shard);
    let (pg, result) = tokio::task::spawn_blocking(move || {
        let r = act(&mut pg);
        (pg, r)
    })
    .await
    .map_err(|e| LoadtestError::Run(format!("PostgreSQL control task: {e}")))?;
    parts.postgres.insert(shard, pg);
    result.map_err(|e| LoadtestError::Run(format!("PostgreSQL: {e}")))
}

/// Promote the shard's first standby: it becomes the shard's primary, the stopped one is
/// retired. The API is told nothing; it must find the new primary through the URL.
async fn promote(parts: &mut Parts, shard: usize) -> Result<(), LoadtestError> {
    let standbys = parts.standbys.get_mut(shard).filter(|s| !s.is_empty());
    let Some(standbys) = standbys else {
        return Err(LoadtestError::Run(format!(
            "shard {shard} has no standby to promote"
        )));
    };
    let standby = standbys.remove(0);
    let (standby, result) = tokio::task::spawn_blocking(move || {
        let r = standby.promote();
        (standby, r)
    })
    .await
    .map_err(|e| LoadtestError::Run(format!("PostgreSQL control task: {e}")))?;
    let old = std::mem::replace(&mut parts.postgres[shard], standby);
    parts.retired.push(old);
    result.map_err(|e| LoadtestError::Run(format!("promoting the standby: {e}")))
}

/// Watch the load after a lift: recovered once RECOVERY_QUIET passes with requests
/// answered and none failed. The time from the lift to the last failure before that
/// quiet, and the figures at the end of the watch.
async fn recovery(
    live: &LiveStats,
    (lifted, at_lift): (Instant, Mark),
    done: &mut watch::Receiver<bool>,
) -> (Option<Duration>, Mark) {
    let mut last_failure = (lifted, at_lift);
    loop {
        let now = Instant::now();
        let mark = live.mark();
        if mark.errors() > last_failure.1.errors() {
            last_failure = (now, mark);
            continue;
        }
        if now.duration_since(last_failure.0) >= RECOVERY_QUIET
            && mark.requests() > last_failure.1.requests()
        {
            return (Some(last_failure.0.duration_since(lifted)), mark);
        }
        if now.duration_since(lifted) > RECOVERY_WAIT_MAX || *done.borrow() {
            return (None, mark);
        }
        tokio::select! {
            _ = tokio::time::sleep(RECOVERY_POLL) => {}
            _ = done.changed() => {}
        }
    }
}
