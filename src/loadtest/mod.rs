//! `paytool loadtest`: a profile becomes a Goose attack against the reference API (spawned
//! in-process) or a URL, then a summary, thresholds, a money audit and reports.
//! Data flows one way: profile -> plan -> execution -> report. Nothing here prints.

pub mod audit;
pub mod capacity;
pub mod chaos;
pub mod diff;
pub mod find_max;
pub mod html;
pub mod layout;
pub mod merge;
pub mod open_model;
pub mod process;
pub mod report;
pub mod search_html;
pub mod summary;
pub mod target;
pub mod thresholds;
pub mod timeseries;
pub mod wire;

use crate::cache::CacheOptions;
use crate::profile::load::{ArrivalRate, Balancer, LoadPlan, REDIS_URL_ENV, RedisMode, Shape};
use crate::scenarios::cadence::CoMitigation;
use crate::scenarios::context::{self, RunContext};
use crate::scenarios::instances::{Endpoint, Instances};
use crate::scenarios::live::LiveStats;
use crate::services::redis::LocalRedis;
use crate::store::sqlite::Faults;
use goose::config::GooseConfiguration;
use goose::metrics::GooseCoordinatedOmissionMitigation;
use goose::prelude::*;
use open_model::OpenModel;
use report::RunSummary;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use target::{Admin, SpawnPlan, Target};

#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    #[error("the target cannot be reached: {0}")]
    Unreachable(String),
    #[error("the run could not start: {0}")]
    Start(String),
    #[error("{0}")]
    Config(String),
    #[error("the run failed: {0}")]
    Run(String),
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
}

/// How long a capacity search waits for the target's write queue to drain between steps.
const DRAIN_WAIT_MAX: Duration = Duration::from_secs(30);

/// How often the target's /metrics (and the open model's counters) are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// A run whose target is up and whose merchants exist, ready to execute one or more
/// steps (one, or a `--find-max` search) against the same target.
pub struct Prepared {
    plan: LoadPlan,
    run_id: String,
    run_dir: PathBuf,
    target: Target,
    /// The first instance's base URL: where the admin calls and the scrapes go.
    base_url: String,
    /// Every instance's base URL; the journeys spread their requests over them.
    bases: Vec<String>,
    admin: Admin,
    merchants: Vec<context::MerchantCreds>,
    /// The current step's context; a new one each step.
    ctx: Arc<RunContext>,
    /// The current step's arrival schedule, in the open model.
    open: Option<Arc<OpenModel>>,
    /// The open model's TLS, when an instance is https.
    tls: Option<wire::Tls>,
    steps: usize,
    /// Payments acknowledged in the steps before this one (the store holds them too).
    /// The audit's and reports' progress after the load, for the progress line.
    progress: Arc<audit::Progress>,
    /// `--start-at`: ms since the epoch.
    start_at_ms: Option<i64>,
}

/// The Redis a spawned API uses: one started under the run dir, or the caller's.
async fn cache_target(
    mode: RedisMode,
    run_dir: &Path,
) -> Result<(CacheOptions, Option<LocalRedis>), LoadtestError> {
    let options = |url: String| CacheOptions {
        url: crate::secrets::Secret::new(url),
        prefix: crate::cache::PREFIX_DEFAULT.to_string(),
    };
    match mode {
        RedisMode::Existing => {
            let url = std::env::var(REDIS_URL_ENV).map_err(|_| {
                LoadtestError::Config(format!(
                    "target.redis = \"existing\" reads the Redis URL from {REDIS_URL_ENV}, which is not set"
                ))
            })?;
            Ok((options(url), None))
        }
        RedisMode::Spawn => {
            let root = run_dir.join("redis");
            let redis = tokio::task::spawn_blocking(move || LocalRedis::start(&root))
                .await
                .map_err(|e| LoadtestError::Start(format!("starting Redis: {e}")))?
                .map_err(|e| LoadtestError::Start(format!("starting Redis: {e}")))?;
            Ok((options(redis.url()), Some(redis)))
        }
    }
}

pub async fn prepare(plan: LoadPlan, faults: Faults) -> Result<Prepared, LoadtestError> {
    let segment = plan
        .segment
        .map_or(String::new(), |s| format!("-seg{}of{}", s.index, s.of));
    let run_id = format!("{}-{}{segment}", crate::clock::utc_compact(), plan.name);
    let run_dir = unique_dir(&plan.report_dir, &run_id)?;
    let run_id = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or(run_id);
    std::fs::write(
        run_dir.join("profile.toml"),
        toml::to_string_pretty(&plan.profile).map_err(|e| LoadtestError::Run(e.to_string()))?,
    )?;
    let (target, bases, token) = match &plan.target_url {
        Some(url) => {
            let token = std::env::var(&plan.admin_token_env).map_err(|_| {
                LoadtestError::Config(format!(
                    "target {url} needs its admin token in the env var {} (profile key target.admin_token_env)",
                    plan.admin_token_env
                ))
            })?;
            (Target::Remote, vec![url.clone()], token)
        }
        None => {
            let layout = match &plan.layout {
                Some(l) => Some(layout::prepare(l, &run_dir.join("postgres")).await?),
                None => None,
            };
            let cache = match plan.redis {
                Some(mode) => Some(cache_target(mode, &run_dir).await?),
                None => None,
            };
            let balanced = plan.balancer.is_some();
            let (mut target, bases, token) = Target::spawn(SpawnPlan {
                data_dir: run_dir.join("server-data"),
                shards: plan.shards,
                faults,
                layout,
                instances: plan.instances,
                cache,
                // Decided with the profile (profile::load::check): asked for, or needed by
                // the balancer or a chaos step.
                processes: plan.processes.then(|| run_dir.clone()),
                // Long enough for two of the balancer's health checks to see it.
                drain_delay: match balanced {
                    true => 2 * crate::services::haproxy::CHECK_INTERVAL,
                    false => Duration::ZERO,
                },
            })
            .await?;
            match plan.balancer {
                Some(balancer) => {
                    let mode = match balancer {
                        Balancer::Haproxy => crate::services::haproxy::Mode::Http,
                        Balancer::HaproxyTcp => crate::services::haproxy::Mode::Tcp,
                    };
                    let backends: Vec<String> = bases
                        .iter()
                        .map(|b| b.trim_start_matches("http://").to_string())
                        .collect();
                    let root = run_dir.join("haproxy");
                    let haproxy = tokio::task::spawn_blocking(move || {
                        crate::services::haproxy::LocalHaproxy::start(&root, &backends, mode)
                    })
                    .await
                    .map_err(|e| LoadtestError::Start(format!("starting HAProxy: {e}")))?
                    .map_err(|e| LoadtestError::Start(e.to_string()))?;
                    let url = haproxy.url();
                    target.attach_balancer(haproxy);
                    (target, vec![url], token)
                }
                None => (target, bases, token),
            }
        }
    };
    let base_url = bases[0].clone();
    let tls = match bases.iter().any(|b| Endpoint::of(b).tls) {
        true => Some(wire::Tls::new().map_err(LoadtestError::Config)?),
        false => None,
    };
    let admin = Admin::new(base_url.clone(), token);
    for base in &bases {
        admin.check_reachable(base).await?;
    }
    let merchants = match &plan.merchants_from {
        Some(file) => read_merchants(file)?,
        None => admin.create_merchants(plan.merchants, &run_id).await?,
    };
    // Merchant keys are secrets: only in the run dir, readable by the owner.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(run_dir.join("merchants.json"))?;
    f.write_all(
        &serde_json::to_vec_pretty(&merchants).map_err(|e| LoadtestError::Run(e.to_string()))?,
    )?;
    let mut prepared = Prepared {
        ctx: Arc::new(RunContext::new(
            Instances::new(bases.clone()),
            merchants.clone(),
            0.0,
            &run_id,
        )),
        open: None,
        tls,
        plan,
        run_id,
        run_dir,
        target,
        base_url,
        bases,
        admin,
        merchants,
        steps: 0,
        progress: Arc::default(),
        start_at_ms: None,
    };
    prepared.new_context(None);
    Ok(prepared)
}

/// Merchants a `--prepare-only` run (or another segment) wrote: their ids and keys.
fn read_merchants(file: &Path) -> Result<Vec<context::MerchantCreds>, LoadtestError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| LoadtestError::Config(format!("--merchants-file {}: {e}", file.display())))?;
    let merchants: Vec<context::MerchantCreds> = serde_json::from_str(&text).map_err(|e| {
        LoadtestError::Config(format!(
            "--merchants-file {}: not a merchants.json written by paytool loadtest: {e}",
            file.display()
        ))
    })?;
    if merchants.is_empty() {
        return Err(LoadtestError::Config(format!(
            "--merchants-file {}: holds no merchants",
            file.display()
        )));
    }
    Ok(merchants)
}

fn unique_dir(parent: &Path, name: &str) -> Result<PathBuf, LoadtestError> {
    let cannot = |e: std::io::Error| {
        LoadtestError::Config(format!(
            "cannot create a run dir in {}: {e}",
            parent.display()
        ))
    };
    std::fs::create_dir_all(parent).map_err(cannot)?;
    for i in 0..100 {
        let dir = if i == 0 {
            parent.join(name)
        } else {
            parent.join(format!("{name}-{i}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(cannot(e)),
        }
    }
    Err(LoadtestError::Config(format!(
        "too many runs named {name} in {}",
        parent.display()
    )))
}

impl Prepared {
    /// The live figures of the step about to run (or running).
    pub fn live(&self) -> Arc<LiveStats> {
        self.ctx.live.clone()
    }

    /// What the run is doing after its load: resending, checking, writing reports.
    pub fn after_load(&self) -> Arc<audit::Progress> {
        self.progress.clone()
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    pub fn plan(&self) -> &LoadPlan {
        &self.plan
    }

    /// Users-and-ramp or test-plan length: what the progress bar counts to.
    pub fn duration(&self) -> Duration {
        self.plan.shape.duration()
    }

    /// A fresh context for the next step: new acknowledgement log, live figures and
    /// schedule, and an idempotency-key prefix of its own (the merchants stay).
    fn new_context(&mut self, arrival: Option<ArrivalRate>) {
        let arrival = arrival.or(match self.plan.shape {
            Shape::Arrival(a) => Some(a),
            _ => None,
        });
        self.open = arrival.map(|a| {
            Arc::new(OpenModel::new(
                a,
                self.plan.segment,
                self.plan.scenarios.clone(),
                self.plan.timeout,
                self.tls.clone(),
                !self.plan.formats.is_empty(),
            ))
        });
        // Segments may share a run id (one profile started at the same second): each
        // keeps keys of its own.
        let segment = self
            .plan
            .segment
            .map_or(String::new(), |s| format!("-g{}of{}", s.index, s.of));
        let prefix = format!("{}{segment}-s{}", self.run_id, self.steps);
        let mut ctx = RunContext::new(
            Instances::new(self.bases.clone()),
            self.merchants.clone(),
            self.plan.zipf_exponent,
            &prefix,
        );
        ctx.co_mitigation = self.plan.co_mitigation;
        self.ctx = Arc::new(ctx);
    }

    /// Leave at least `warmup` of every step out of its thresholds (a capacity
    /// search's steps), as long as the step lasts longer.
    pub fn judge_after_at_least(&mut self, warmup: Duration) {
        if warmup < self.plan.shape.duration() {
            self.plan.gate.after = self.plan.gate.after.max(warmup);
        }
    }

    /// Wait (bounded) until the target's write queue is empty: what one step left queued
    /// must not be the next step's latency.
    pub async fn drain(&self) {
        let until = std::time::Instant::now() + DRAIN_WAIT_MAX;
        while std::time::Instant::now() < until {
            match self.admin.metrics().await {
                Some(text) if summary::parse_scrape(&text).queue_depth > 0.0 => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                _ => return,
            }
        }
    }

    /// Wait for this wall-clock time (ms since the epoch) before the load begins.
    pub fn start_at(&mut self, at_ms: Option<i64>) {
        self.start_at_ms = at_ms;
    }

    /// The run's merchants and keys, for other segments (`--merchants-file`).
    pub fn write_merchants(&self, to: &Path) -> Result<(), LoadtestError> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(to)
            .map_err(|e| {
                LoadtestError::Config(format!("--merchants-file {}: {e}", to.display()))
            })?;
        f.write_all(
            &serde_json::to_vec_pretty(&self.merchants)
                .map_err(|e| LoadtestError::Run(e.to_string()))?,
        )?;
        Ok(())
    }

    /// Stop what was spawned without running anything (`--prepare-only`).
    pub async fn finish_unrun(mut self) -> Result<(), LoadtestError> {
        self.target.stop().await
    }

    /// Run the plan once, report into the run dir, stop the target.
    pub async fn execute(mut self) -> Result<RunSummary, LoadtestError> {
        let dir = self.run_dir.clone();
        let summary = self.run_step(&dir).await?;
        self.finish(summary.passed).await?;
        Ok(summary)
    }

    /// Run one step with the current context and write its reports into `dir`.
    async fn run_step(&mut self, dir: &Path) -> Result<RunSummary, LoadtestError> {
        self.steps += 1;
        self.progress.set(audit::Phase::Load, 0);
        let mut plan = self.plan.clone();
        if let Some(o) = &self.open {
            plan.shape = Shape::Arrival(o.arrival);
        }
        // Spawned instances share this process's metrics recorder: one scrape covers all.
        let figures = Arc::new(Mutex::new(summary::Scrapes::default()));
        let samples: Arc<Mutex<Vec<timeseries::Sample>>> = Arc::default();
        if let Some(at) = self.start_at_ms.take() {
            let wait = (at - crate::ids::now_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        let began = std::time::Instant::now();
        let started_at_ms = crate::ids::now_ms();
        let started_at = crate::clock::utc_rfc3339();
        self.ctx.recorder.begin(plan.gate.after);
        let scraper = {
            let (admin, figures, samples) = (self.admin.clone(), figures.clone(), samples.clone());
            let open = self.open.clone();
            tokio::spawn(async move {
                loop {
                    let server = admin.metrics().await.map(|t| summary::parse_scrape(&t));
                    if let Some(p) = &server {
                        summary::absorb_point(
                            &mut figures.lock().unwrap_or_else(|p| p.into_inner()),
                            p,
                        );
                    }
                    let (sent, late, dropped) = open.as_ref().map_or((0, 0, 0), |o| {
                        let load = |a: &std::sync::atomic::AtomicU64| {
                            a.load(std::sync::atomic::Ordering::Relaxed)
                        };
                        (load(&o.sent), load(&o.late), load(&o.dropped))
                    });
                    samples
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(timeseries::Sample {
                            at_s: began.elapsed().as_secs_f64(),
                            server,
                            sent,
                            late,
                            dropped,
                        });
                    tokio::time::sleep(SAMPLE_EVERY).await;
                }
            })
        };
        let attack = build_attack(&plan, &self.base_url, dir, &self.ctx, self.open.as_ref());
        let (load_ended, ended) = tokio::sync::watch::channel(false);
        let chaos = match (plan.chaos.is_empty(), self.target.lend_parts()) {
            (false, Some(parts)) => Some(tokio::spawn(chaos::run(
                plan.chaos.clone(),
                parts,
                self.ctx.live.clone(),
                std::time::Instant::now(),
                ended,
            ))),
            (_, parts) => {
                if let Some(p) = parts {
                    self.target.return_parts(p);
                }
                None
            }
        };
        let aborted: Arc<Mutex<Option<String>>> = Arc::default();
        let abort_watch = plan.gate.abort_after.map(|delay| {
            tokio::spawn(abort_on_fail(
                plan.gate.clone(),
                delay,
                began,
                self.ctx.clone(),
                self.open.clone(),
                aborted.clone(),
            ))
        });
        let result = match attack {
            Ok(a) => a
                .execute()
                .await
                .map_err(|e| LoadtestError::Start(format!("Goose: {e}"))),
            Err(e) => Err(e),
        };
        if let Some(w) = abort_watch {
            w.abort();
        }
        let aborted = aborted.lock().unwrap_or_else(|p| p.into_inner()).take();
        let _ = load_ended.send(true);
        let ended_at = crate::clock::utc_rfc3339();
        let faults = match chaos {
            Some(task) => {
                let (parts, records) = task
                    .await
                    .map_err(|e| LoadtestError::Run(format!("the chaos steps: {e}")))?;
                self.target.return_parts(parts);
                records
            }
            None => Vec::new(),
        };
        scraper.abort();
        let metrics = result?;
        if let Some(text) = self.admin.metrics().await {
            summary::absorb_scrape(
                &mut figures.lock().unwrap_or_else(|p| p.into_inner()),
                &text,
            );
        }
        // The open model's rates are over the schedule, not Goose's padded run time.
        let seconds = match &self.open {
            Some(o) => o.elapsed_ms.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1000.0,
            None => metrics.duration as f64,
        };
        let recorded = self.ctx.recorder.snapshot();
        let (requests, total) = summary::rows(&recorded, seconds);
        let series = timeseries::rows(
            &recorded,
            &samples.lock().unwrap_or_else(|p| p.into_inner()),
            self.open.is_some(),
        );
        timeseries::write(dir, &series)?;
        timeseries::write_intervals(dir, &recorded)?;
        let schedule = self.open.as_ref().map(|o| {
            let load =
                |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            // The warm-up's share, from the last sample taken within it.
            let (sent0, late0, dropped0) = samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .rev()
                .find(|s| s.at_s <= plan.gate.after.as_secs_f64())
                .filter(|_| !plan.gate.after.is_zero())
                .map_or((0, 0, 0), |s| (s.sent, s.late, s.dropped));
            thresholds::Schedule {
                sent: load(&o.sent).saturating_sub(sent0),
                late: load(&o.late).saturating_sub(late0),
                dropped: load(&o.dropped).saturating_sub(dropped0),
            }
        });
        let judged = thresholds::Judged::new(
            self.ctx.recorder.judged(),
            seconds - plan.gate.after.as_secs_f64(),
            schedule,
        );
        let thresholds = thresholds::evaluate(&plan.gate, &judged);
        let audit_began = std::time::Instant::now();
        let audit = if plan.audit {
            // An audit that cannot run (the target died) fails the run with the reason;
            // every report is still written.
            let outcome = audit::run(&self.admin, &self.ctx, &self.progress)
                .await
                .unwrap_or_else(|e| audit::could_not_run(&self.ctx, &e.to_string()));
            Some(outcome)
        } else {
            None
        };
        let audit_s = audit.as_ref().map(|_| audit_began.elapsed().as_secs_f64());
        self.progress.set(audit::Phase::Reports, 0);
        // After the audit: what its resends learned is in the log too.
        self.write_acks(dir)?;
        let passed = thresholds.iter().all(|t| t.passed)
            && audit.as_ref().is_none_or(|a| a.ok)
            && faults.iter().all(chaos::FaultRecord::ok)
            && aborted.is_none();
        let open_model = self.open.as_ref().map(|o| report::OpenModelFigures {
            rate_start_per_s: o.arrival.start_per_s,
            rate_end_per_s: o.arrival.end_per_s,
            connections: o.arrival.connections,
            connections_max: o.arrival.connections_max,
            pool_grew: o.grew.load(std::sync::atomic::Ordering::Relaxed),
            connections_peak: o.pool.load(std::sync::atomic::Ordering::Relaxed),
            scheduled: o.scheduled(),
            sent: o.sent.load(std::sync::atomic::Ordering::Relaxed),
            late: o.late.load(std::sync::atomic::Ordering::Relaxed),
            late_after_ms: open_model::LATE_AFTER.as_millis() as u64,
            dropped: o.dropped.load(std::sync::atomic::Ordering::Relaxed),
            send_lag_p99_ms: o.lag.snapshot().p99.as_secs_f64() * 1000.0,
        });
        let server = figures.lock().unwrap_or_else(|p| p.into_inner()).finish();
        let profile_text = toml::to_string_pretty(&plan.profile).unwrap_or_default();
        let summary = RunSummary {
            schema: report::SUMMARY_SCHEMA,
            profile_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                profile_text.as_bytes(),
            )),
            paytool_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: started_at.clone(),
            started_at_ms,
            segment: plan.segment.map(|s| s.label()),
            histograms_judged: self
                .ctx
                .recorder
                .judged()
                .iter()
                .map(|(name, l)| (name.clone(), report::SavedLatencies::from(l)))
                .collect(),
            ended_at: ended_at.clone(),
            histograms: recorded
                .series
                .iter()
                .map(|(name, s)| (name.clone(), report::SavedLatencies::from(&s.whole)))
                .collect(),
            run_id: dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| self.run_id.clone()),
            profile: plan.name.clone(),
            target: self.target_description(),
            layout: plan.layout.as_ref().map(|l| report::LayoutFigures {
                name: l.name.clone(),
                shards: l.shards.clone(),
                postgres: l.postgres.as_str().to_string(),
            }),
            instances: self.ctx.instances.figures(),
            duration_s: seconds,
            audit_s,
            co_mitigation: plan.co_mitigation,
            co_backfilled: self.ctx.co_backfilled(),
            users_max: metrics.maximum_users,
            requests,
            total,
            server,
            open_model,
            thresholds,
            audit,
            chaos: faults,
            aborted,
            passed,
        };
        report::write_all(dir, &summary)?;
        std::fs::write(dir.join("report.html"), html::render(&summary, &series))?;
        Ok(summary)
    }

    /// What the run is against, as the summary says it.
    pub fn target_description(&self) -> String {
        if self.plan.target_url.is_some() {
            return self.base_url.clone();
        }
        let at = self.bases.join(", ");
        let cache = match self.plan.redis {
            Some(RedisMode::Spawn) => ", Redis in front (spawned)",
            Some(RedisMode::Existing) => ", Redis in front (PAYTOOL_REDIS_URL)",
            None => "",
        };
        let api = match &self.plan.layout {
            None => format!("the reference API (spawned at {at})"),
            Some(l) => {
                // Behind a balancer the one base is the balancer's.
                let instances = match self.plan.balancer {
                    Some(_) => format!(
                        "{} reference API instance(s) behind HAProxy at {at}",
                        self.plan.instances
                    ),
                    None => format!(
                        "{} reference API instance(s) (spawned at {at})",
                        self.bases.len()
                    ),
                };
                let standbys = match l.replicas {
                    0 => String::new(),
                    n => format!(", each with {n} synchronous standby(s)"),
                };
                format!(
                    "{instances} on layout {}: {} PostgreSQL shard(s){standbys}, postgres = {:?}",
                    l.name,
                    l.shards.len(),
                    l.postgres.as_str()
                )
            }
        };
        format!("{api}{cache}")
    }

    /// Stop a spawned target; keep its files only when something failed.
    async fn finish(mut self, passed: bool) -> Result<(), LoadtestError> {
        self.target.stop().await?;
        if passed && let Target::Spawned(spawned) = &self.target {
            let _ = std::fs::remove_dir_all(&spawned.data_dir);
            if let Some(dir) = &spawned.postgres_dir {
                let _ = std::fs::remove_dir_all(dir);
            }
            let _ = std::fs::remove_dir_all(self.run_dir.join("redis"));
        }
        Ok(())
    }

    fn write_acks(&self, dir: &Path) -> Result<(), LoadtestError> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("acks.jsonl"))?);
        let mut failed = None;
        self.ctx.acks.for_each(|a| {
            if failed.is_none()
                && let Err(e) = serde_json::to_writer(&mut out, &a)
                    .map_err(std::io::Error::other)
                    .and_then(|()| out.write_all(b"\n"))
            {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e.into());
        }
        out.flush()?;
        Ok(())
    }
}

/// `[thresholds] abort_on_fail`: once `delay` has passed, judge the rules each second
/// on what the load has seen so far (rules with nothing to judge yet wait); the first
/// that fails stops the run through Goose's killswitch, which ends it as its run time
/// would, so every report is still written.
async fn abort_on_fail(
    gate: crate::profile::gate::Gate,
    delay: Duration,
    began: std::time::Instant,
    ctx: Arc<RunContext>,
    open: Option<Arc<OpenModel>>,
    aborted: Arc<Mutex<Option<String>>>,
) {
    tokio::time::sleep_until((began + delay).into()).await;
    loop {
        let elapsed = began.elapsed().as_secs_f64() - gate.after.as_secs_f64();
        let schedule = open.as_ref().map(|o| {
            let load =
                |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            thresholds::Schedule {
                sent: load(&o.sent),
                late: load(&o.late),
                dropped: load(&o.dropped),
            }
        });
        let judged = thresholds::Judged::new(ctx.recorder.judged(), elapsed, schedule);
        let failed = thresholds::evaluate(&gate, &judged)
            .into_iter()
            .find(|t| t.actual.is_some() && !t.passed);
        if let Some(t) = failed {
            let reason = format!(
                "stopped after {:.0} s: {} {} was {} (limit {})",
                began.elapsed().as_secs_f64(),
                t.scope,
                t.rule,
                t.actual.map_or("-".into(), |a| format!("{a:.3}")),
                t.limit
            );
            goose::trigger_killswitch(&reason);
            *aborted.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
            return;
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// Goose installs a logger that prints every failed request's warning on stdout, which
/// `--output json` keeps for the summary alone; and failures are counted in the summary
/// anyway. A logger set first keeps Goose's out (the facade takes only one).
fn silence_goose_log() {
    struct Nothing;
    impl log::Log for Nothing {
        fn enabled(&self, _: &log::Metadata) -> bool {
            false
        }
        fn log(&self, _: &log::Record) {}
        fn flush(&self) {}
    }
    static NOTHING: Nothing = Nothing;
    // Err when one is set already (a second run in this process): nothing to do.
    let _ = log::set_logger(&NOTHING);
}

fn build_attack(
    plan: &LoadPlan,
    base: &str,
    run_dir: &Path,
    ctx: &Arc<RunContext>,
    open: Option<&Arc<OpenModel>>,
) -> Result<GooseAttack, LoadtestError> {
    let goose_err = |e: GooseError| LoadtestError::Start(format!("Goose: {e}"));
    let mut config = GooseConfiguration::default();
    config.host = Some(base.to_string());
    // No controllers: a second run in the same process could not bind their ports.
    config.no_telnet = true;
    config.quiet = 1;
    config.no_print_metrics = true;
    config.no_error_summary = true;
    config.timeout = Some(format!("{:.3}", plan.timeout.as_secs_f64()));
    // Goose's own reports mitigate as paytool's histograms do (see scenarios::cadence).
    config.co_mitigation = Some(match plan.co_mitigation {
        CoMitigation::Disabled => GooseCoordinatedOmissionMitigation::Disabled,
        CoMitigation::Average => GooseCoordinatedOmissionMitigation::Average,
        CoMitigation::Minimum => GooseCoordinatedOmissionMitigation::Minimum,
        CoMitigation::Maximum => GooseCoordinatedOmissionMitigation::Maximum,
    });
    config.report_file = plan
        .formats
        .iter()
        .map(|f| {
            run_dir
                .join(format!("goose.{f}"))
                .to_string_lossy()
                .to_string()
        })
        .collect();
    if let Shape::Users {
        users,
        ramp,
        run_time,
    } = &plan.shape
    {
        config.users = Some(*users);
        let rate = if ramp.is_zero() {
            *users as f64
        } else {
            *users as f64 / ramp.as_secs_f64()
        };
        config.increase_rate = Some(format!("{rate:.3}"));
        config.run_time = Some(format!("{}", run_time.as_secs().max(1)));
    }
    if let Shape::Arrival(arrival) = &plan.shape {
        // One Goose user runs the whole schedule once (see open_model.rs).
        config.users = Some(1);
        config.increase_rate = Some("1".into());
        let run_time = open_model::goose_run_time(arrival);
        config.run_time = Some(format!("{}", run_time.as_secs_f64().ceil() as u64));
    }
    silence_goose_log();
    let mut attack = GooseAttack::initialize_with_config(config).map_err(goose_err)?;
    if let Shape::TestPlan {
        plan: test_plan, ..
    } = &plan.shape
    {
        attack = *attack
            .set_default(GooseDefault::TestPlan, test_plan.as_str())
            .map_err(goose_err)?;
    }
    if let Some(open) = open {
        let schedule =
            scenario!("arrivals").register_transaction(open.clone().transaction(ctx.clone()));
        return Ok(attack.register_scenario(schedule));
    }
    for (scenario, weight) in &plan.scenarios {
        attack = attack.register_scenario(scenario.goose(*weight, ctx.clone()).map_err(goose_err)?);
    }
    Ok(attack)
}
