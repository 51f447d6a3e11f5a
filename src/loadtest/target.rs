//! The system under test: the reference API spawned in-process on free loopback ports
//! (one instance on SQLite files, or several on a PostgreSQL layout), or a URL. And the
//! admin client that prepares merchants and fetches what the audit needs.

use super::LoadtestError;
use super::layout::Shards;
use crate::api::{ServeOptions, Server};
use crate::cache::CacheOptions;
use crate::scenarios::context::MerchantCreds;
use crate::secrets::{Secret, random_hex};
use crate::services::postgres::LocalPostgres;
use crate::services::redis::LocalRedis;
use crate::store::layout::Layout;
use crate::store::postgres::LayoutParser;
use crate::store::sqlite::{Faults, WriterLimits};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::oneshot;

/// Merchants created at once before a run.
const MERCHANT_CREATES_IN_FLIGHT_MAX: usize = 16;
pub const LOOKUP_BATCH: usize = 500;

pub enum Target {
    Spawned(Spawned),
    Remote,
}

/// What a run started: API instances, and the PostgreSQL servers under them, if any.
pub struct Spawned {
    instances: Vec<Instance>,
    pub data_dir: PathBuf,
    /// Stopped after the instances, which hold connections to them.
    postgres: Vec<LocalPostgres>,
    pub postgres_dir: Option<PathBuf>,
    /// A Redis this run started (`target.redis = "spawn"`), stopped after the instances.
    redis: Option<LocalRedis>,
}

struct Instance {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), crate::api::ServeError>>>,
}

/// What to spawn: `instances` API instances, on SQLite files (`shards` of them) under
/// `data_dir`, or on `layout`'s PostgreSQL shards.
pub struct SpawnPlan {
    pub data_dir: PathBuf,
    pub shards: usize,
    pub faults: Faults,
    pub layout: Option<Shards>,
    pub instances: usize,
    /// Redis in front of every instance's store, and the server if this run started it.
    pub cache: Option<(CacheOptions, Option<LocalRedis>)>,
}

impl Target {
    /// Start the reference API in this process; its base URLs (one per instance) and
    /// the admin token they share.
    pub async fn spawn(plan: SpawnPlan) -> Result<(Target, Vec<String>, String), LoadtestError> {
        let admin_token = format!("adm_{}", random_hex(24));
        let (layout, postgres, postgres_dir) = match plan.layout {
            Some(s) => (Some((s.layout, s.follow)), s.servers, s.dir),
            None => (None, Vec::new(), None),
        };
        let (cache, redis) = plan.cache.unzip();
        let mut spawned = Spawned {
            instances: Vec::with_capacity(plan.instances),
            data_dir: plan.data_dir,
            postgres,
            postgres_dir,
            redis: redis.flatten(),
        };
        let mut bases = Vec::with_capacity(plan.instances);
        for _ in 0..plan.instances {
            // On failure `spawned` drops: the instances bound so far stop, then PostgreSQL.
            let (instance, base) = Instance::start(
                &spawned.data_dir,
                plan.shards,
                layout.clone(),
                plan.faults,
                cache.clone(),
                &admin_token,
            )
            .await?;
            spawned.instances.push(instance);
            bases.push(base);
        }
        Ok((Target::Spawned(spawned), bases, admin_token))
    }

    /// Stop what was spawned: the instances finish in-flight requests and commit what is
    /// queued, then the PostgreSQL servers stop.
    pub async fn stop(&mut self) -> Result<(), LoadtestError> {
        let Target::Spawned(spawned) = self else {
            return Ok(());
        };
        for i in &mut spawned.instances {
            if let Some(s) = i.stop.take() {
                let _ = s.send(());
            }
        }
        for i in &mut spawned.instances {
            if let Some(t) = i.task.take() {
                t.await
                    .map_err(|e| LoadtestError::Run(format!("reference API task: {e}")))?
                    .map_err(|e| LoadtestError::Run(format!("reference API: {e:#}")))?;
            }
        }
        if let Some(mut redis) = spawned.redis.take() {
            tokio::task::spawn_blocking(move || redis.stop())
                .await
                .map_err(|e| LoadtestError::Run(format!("stopping Redis: {e}")))?;
        }
        let mut servers = std::mem::take(&mut spawned.postgres);
        tokio::task::spawn_blocking(move || servers.iter_mut().try_for_each(|s| s.stop()))
            .await
            .map_err(|e| LoadtestError::Run(format!("stopping PostgreSQL: {e}")))?
            .map_err(|e| LoadtestError::Run(format!("stopping PostgreSQL: {e}")))
    }
}

impl Instance {
    async fn start(
        data_dir: &std::path::Path,
        shards: usize,
        layout: Option<(Layout, LayoutParser)>,
        faults: Faults,
        cache: Option<CacheOptions>,
        admin_token: &str,
    ) -> Result<(Instance, String), LoadtestError> {
        let (layout, follow_layout) = layout.unzip();
        let server = Server::bind(ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            // On a layout nothing is written here: the token is given, the key is the shards'.
            data_dir: data_dir.to_path_buf(),
            shards,
            admin_token: Some(Secret::new(admin_token.to_string())),
            layout,
            limits: WriterLimits::default(),
            faults,
            body_limit_bytes: crate::api::BODY_LIMIT_BYTES_DEFAULT,
            write_timeout: Duration::from_millis(crate::api::WRITE_TIMEOUT_MS_DEFAULT),
            idempotency_retention: crate::store::retention::RETENTION_DEFAULT,
            follow_layout,
            reload_delay: Duration::ZERO,
            cache,
            header_timeout: crate::api::listen::HEADER_TIMEOUT_DEFAULT,
            rate_limit: None,
        })
        .await
        .map_err(|e| LoadtestError::Start(format!("starting the reference API: {e:#}")))?;
        let addr = server
            .local_addr()
            .map_err(|e| LoadtestError::Start(e.to_string()))?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        let instance = Instance {
            stop: Some(stop),
            task: Some(task),
        };
        Ok((instance, format!("http://{addr}")))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

#[derive(Clone)]
pub struct Admin {
    pub base: String,
    token: String,
    client: reqwest::Client,
}

impl Admin {
    pub fn new(base: String, token: String) -> Self {
        Admin {
            base,
            token,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
        }
    }

    /// Is anything answering at `base` (this target, or another instance of it)? Exit
    /// code 3 when not.
    pub async fn check_reachable(&self, base: &str) -> Result<(), LoadtestError> {
        let url = format!("{base}/healthz");
        let res = self
            .client
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| LoadtestError::Unreachable(format!("{url}: {e}")))?;
        if !res.status().is_success() {
            return Err(LoadtestError::Unreachable(format!(
                "{url} answered {}",
                res.status()
            )));
        }
        Ok(())
    }

    pub async fn create_merchants(
        &self,
        count: usize,
        run_id: &str,
    ) -> Result<Vec<MerchantCreds>, LoadtestError> {
        let mut out = Vec::with_capacity(count);
        let mut pending = tokio::task::JoinSet::new();
        let mut next = 0;
        while out.len() < count {
            while next < count && pending.len() < MERCHANT_CREATES_IN_FLIGHT_MAX {
                let this = self.clone();
                let name = format!("{run_id}-m{next}");
                pending.spawn(async move { (next, this.create_merchant(&name).await) });
                next += 1;
            }
            let (i, created) = pending
                .join_next()
                .await
                .expect("tasks are pending")
                .map_err(|e| LoadtestError::Start(e.to_string()))?;
            out.push((i, created?));
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out.into_iter().map(|(_, m)| m).collect())
    }

    async fn create_merchant(&self, name: &str) -> Result<MerchantCreds, LoadtestError> {
        let res = self
            .client
            .post(format!("{}/v1/merchants", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "name": name }))
            .send()
            .await
            .map_err(|e| LoadtestError::Unreachable(format!("creating merchants: {e}")))?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        match (
            status.is_success(),
            body["id"].as_str(),
            body["secret_key"].as_str(),
        ) {
            (true, Some(id), Some(key)) => Ok(MerchantCreds {
                id: id.to_string(),
                key: key.to_string(),
            }),
            _ => Err(LoadtestError::Start(format!(
                "creating a merchant: the target answered {status}: {body}; is the admin token right?"
            ))),
        }
    }

    pub async fn ledger_audit(&self) -> Result<Value, LoadtestError> {
        let res = self
            .client
            .get(format!("{}/v1/admin/audit", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(300))
            .send()
            .await
            .map_err(|e| LoadtestError::Run(format!("fetching the ledger audit: {e}")))?;
        if !res.status().is_success() {
            return Err(LoadtestError::Run(format!(
                "the ledger audit answered {}",
                res.status()
            )));
        }
        res.json()
            .await
            .map_err(|e| LoadtestError::Run(e.to_string()))
    }

    /// Look up (merchant id, payment id) pairs; returns the found payment objects.
    pub async fn lookup(&self, pairs: &[(String, String)]) -> Result<Vec<Value>, LoadtestError> {
        let mut found = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(LOOKUP_BATCH) {
            let payments: Vec<Value> = chunk
                .iter()
                .map(|(m, id)| json!({ "merchant_id": m, "id": id }))
                .collect();
            let res = self
                .client
                .post(format!("{}/v1/admin/payments/lookup", self.base))
                .bearer_auth(&self.token)
                .json(&json!({ "payments": payments }))
                .send()
                .await
                .map_err(|e| LoadtestError::Run(format!("looking payments up: {e}")))?;
            if !res.status().is_success() {
                return Err(LoadtestError::Run(format!(
                    "payment lookup answered {}",
                    res.status()
                )));
            }
            let body: Value = res
                .json()
                .await
                .map_err(|e| LoadtestError::Run(e.to_string()))?;
            found.extend(body["found"].as_array().cloned().unwrap_or_default());
        }
        Ok(found)
    }

    /// The target's Prometheus text, when it has /metrics.
    pub async fn metrics(&self) -> Option<String> {
        let res = self
            .client
            .get(format!("{}/metrics", self.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        if !res.status().is_success() {
            return None;
        }
        res.text().await.ok()
    }
}
