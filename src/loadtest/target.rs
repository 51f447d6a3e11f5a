//! The system under test: the reference API spawned in-process on free loopback ports
//! (one instance on SQLite files, or several on a PostgreSQL layout), or a URL. And the
//! admin client that prepares merchants and fetches what the audit needs.

use super::LoadtestError;
use super::layout::Shards;
use super::process::ApiProcess;
use crate::api::{ServeOptions, Server};
use crate::cache::CacheOptions;
use crate::scenarios::context::MerchantCreds;
use crate::secrets::{Secret, random_hex};
use crate::services::haproxy::LocalHaproxy;
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
    Spawned(Box<Spawned>),
    Remote,
}

/// What a run started: API instances, and the PostgreSQL servers under them, if any.
pub struct Spawned {
    pub parts: Parts,
    /// The load balancer in front of the instances, stopped before them.
    pub balancer: Option<LocalHaproxy>,
    pub data_dir: PathBuf,
    pub postgres_dir: Option<PathBuf>,
}

/// The processes and tasks a run started, which the chaos steps act on (they own them
/// while the load runs, and give them back).
pub struct Parts {
    pub instances: Vec<Instance>,
    /// Each shard's primary; stopped after the instances, which hold connections to them.
    pub postgres: Vec<LocalPostgres>,
    /// Each shard's standbys (`target.replicas`), the first promoted by a failover.
    pub standbys: Vec<Vec<LocalPostgres>>,
    /// Primaries a failover replaced (stopped), kept to stop with the rest.
    pub retired: Vec<LocalPostgres>,
    /// A Redis this run started (`target.redis = "spawn"`), stopped after the instances.
    pub redis: Option<LocalRedis>,
}

/// One API instance: a task in this process, or a process of its own when a chaos step
/// kills or stalls it.
pub enum Instance {
    Task {
        stop: Option<oneshot::Sender<()>>,
        task: Option<tokio::task::JoinHandle<Result<(), crate::api::ServeError>>>,
    },
    Process(Box<ApiProcess>),
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
    /// Run each instance as a `paytool serve` process (logs under `run_dir`), not a task.
    pub processes: Option<PathBuf>,
    /// Processes drain this long on SIGTERM (`serve --drain-delay`), for a balancer.
    pub drain_delay: Duration,
}

impl Target {
    /// Start the reference API; its base URLs (one per instance) and the admin token
    /// they share.
    pub async fn spawn(plan: SpawnPlan) -> Result<(Target, Vec<String>, String), LoadtestError> {
        let admin_token = format!("adm_{}", random_hex(24));
        let (layout, (postgres, standbys), postgres_dir) = match plan.layout {
            Some(s) => (
                Some(LayoutInstances {
                    layout: s.layout,
                    follow: s.follow,
                    file: s.file,
                    env: s.env,
                }),
                (s.servers, s.standbys),
                s.dir,
            ),
            None => (None, (Vec::new(), Vec::new()), None),
        };
        let (cache, redis) = plan.cache.unzip();
        let mut spawned = Spawned {
            parts: Parts {
                instances: Vec::with_capacity(plan.instances),
                postgres,
                standbys,
                retired: Vec::new(),
                redis: redis.flatten(),
            },
            data_dir: plan.data_dir,
            postgres_dir,
            balancer: None,
        };
        let mut bases = Vec::with_capacity(plan.instances);
        for i in 0..plan.instances {
            // On failure `spawned` drops: the instances bound so far stop, then PostgreSQL.
            let setup = InstanceSetup {
                data_dir: &spawned.data_dir,
                shards: plan.shards,
                layout: layout.as_ref(),
                faults: plan.faults,
                cache: cache.as_ref(),
                admin_token: &admin_token,
                drain_delay: plan.drain_delay,
            };
            let (instance, base) = match &plan.processes {
                Some(run_dir) => setup.process(&run_dir.join(format!("api-{i}.log"))).await?,
                None => setup.task().await?,
            };
            spawned.parts.instances.push(instance);
            bases.push(base);
        }
        Ok((Target::Spawned(Box::new(spawned)), bases, admin_token))
    }

    /// Stop what was spawned: the instances finish in-flight requests and commit what is
    /// queued, then the PostgreSQL servers stop.
    pub async fn stop(&mut self) -> Result<(), LoadtestError> {
        let Target::Spawned(spawned) = self else {
            return Ok(());
        };
        // The balancer first: nothing is sent to instances that are stopping.
        if let Some(mut b) = spawned.balancer.take() {
            tokio::task::spawn_blocking(move || b.stop())
                .await
                .map_err(|e| LoadtestError::Run(format!("stopping HAProxy: {e}")))?;
        }
        let parts = &mut spawned.parts;
        for i in &mut parts.instances {
            if let Instance::Task { stop, .. } = i
                && let Some(s) = stop.take()
            {
                let _ = s.send(());
            }
        }
        for i in &mut parts.instances {
            match i {
                Instance::Task { task, .. } => {
                    if let Some(t) = task.take() {
                        t.await
                            .map_err(|e| LoadtestError::Run(format!("reference API task: {e}")))?
                            .map_err(|e| LoadtestError::Run(format!("reference API: {e:#}")))?;
                    }
                }
                Instance::Process(p) => p.stop().await?,
            }
        }
        if let Some(mut redis) = parts.redis.take() {
            tokio::task::spawn_blocking(move || redis.stop())
                .await
                .map_err(|e| LoadtestError::Run(format!("stopping Redis: {e}")))?;
        }
        let mut servers = std::mem::take(&mut parts.postgres);
        servers.extend(std::mem::take(&mut parts.standbys).into_iter().flatten());
        servers.append(&mut parts.retired);
        tokio::task::spawn_blocking(move || servers.iter_mut().try_for_each(|s| s.stop()))
            .await
            .map_err(|e| LoadtestError::Run(format!("stopping PostgreSQL: {e}")))?
            .map_err(|e| LoadtestError::Run(format!("stopping PostgreSQL: {e}")))
    }

    /// Put a balancer in front of the spawned instances; stopped with them.
    pub fn attach_balancer(&mut self, balancer: LocalHaproxy) {
        if let Target::Spawned(spawned) = self {
            spawned.balancer = Some(balancer);
        }
    }

    /// Lend the spawned parts to the chaos steps while the load runs.
    pub fn lend_parts(&mut self) -> Option<Parts> {
        let Target::Spawned(spawned) = self else {
            return None;
        };
        Some(std::mem::replace(
            &mut spawned.parts,
            Parts {
                instances: Vec::new(),
                postgres: Vec::new(),
                standbys: Vec::new(),
                retired: Vec::new(),
                redis: None,
            },
        ))
    }

    pub fn return_parts(&mut self, parts: Parts) {
        if let Target::Spawned(spawned) = self {
            spawned.parts = parts;
        }
    }
}

/// A layout as the instances open it: resolved for tasks, as a file and its shards'
/// URL variables for processes.
struct LayoutInstances {
    layout: Layout,
    follow: LayoutParser,
    file: PathBuf,
    env: Vec<(String, String)>,
}

struct InstanceSetup<'a> {
    data_dir: &'a std::path::Path,
    shards: usize,
    layout: Option<&'a LayoutInstances>,
    faults: Faults,
    cache: Option<&'a CacheOptions>,
    admin_token: &'a str,
    drain_delay: Duration,
}

impl InstanceSetup<'_> {
    async fn task(&self) -> Result<(Instance, String), LoadtestError> {
        let server = Server::bind(ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            // On a layout nothing is written here: the token is given, the key is the shards'.
            data_dir: self.data_dir.to_path_buf(),
            shards: self.shards,
            admin_token: Some(Secret::new(self.admin_token.to_string())),
            layout: self.layout.map(|l| l.layout.clone()),
            limits: WriterLimits::default(),
            faults: self.faults,
            body_limit_bytes: crate::api::BODY_LIMIT_BYTES_DEFAULT,
            write_timeout: Duration::from_millis(crate::api::WRITE_TIMEOUT_MS_DEFAULT),
            idempotency_retention: crate::store::retention::RETENTION_DEFAULT,
            follow_layout: self.layout.map(|l| l.follow.clone()),
            reload_delay: Duration::ZERO,
            cache: self.cache.cloned(),
            header_timeout: crate::api::listen::HEADER_TIMEOUT_DEFAULT,
            rate_limit: None,
            drain_delay: Duration::ZERO,
            replica_max_lag: crate::store::postgres::REPLICA_MAX_LAG_DEFAULT,
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
        let instance = Instance::Task {
            stop: Some(stop),
            task: Some(task),
        };
        Ok((instance, format!("http://{addr}")))
    }

    /// The same instance as `paytool serve`, with the same settings (the defaults
    /// `task` gives are `serve`'s own).
    async fn process(&self, log: &std::path::Path) -> Result<(Instance, String), LoadtestError> {
        let port = crate::services::free_port()
            .map_err(|e| LoadtestError::Start(format!("finding a free port: {e}")))?;
        let mut args = Vec::new();
        let mut env = vec![(
            "PAYTOOL_ADMIN_TOKEN".to_string(),
            self.admin_token.to_string(),
        )];
        match self.layout {
            Some(l) => {
                args.extend(["--layout".to_string(), l.file.to_string_lossy().to_string()]);
                env.extend(l.env.iter().cloned());
            }
            None => args.extend([
                "--data-dir".to_string(),
                self.data_dir.to_string_lossy().to_string(),
                "--shards".to_string(),
                self.shards.to_string(),
            ]),
        }
        if let Some(c) = self.cache {
            env.push(("PAYTOOL_REDIS_URL".into(), c.url.expose().to_string()));
            env.push(("PAYTOOL_REDIS_PREFIX".into(), c.prefix.clone()));
        }
        if !self.drain_delay.is_zero() {
            args.extend([
                "--drain-delay".to_string(),
                format!("{}ms", self.drain_delay.as_millis()),
            ]);
        }
        if let Some(n) = self.faults.drop_ack_every() {
            args.extend(["--fault-drop-ack-every".to_string(), n.to_string()]);
        }
        let mut process = ApiProcess::new(port, args, env, log.to_path_buf());
        process.start().await?;
        let base = process.base.clone();
        Ok((Instance::Process(Box::new(process)), base))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Instance::Task { stop, .. } = self
            && let Some(s) = stop.take()
        {
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

    /// One page of the merchant's payments made under keys starting with `key_prefix`,
    /// oldest first after `after`: the payments (each with its `idempotency_key`) and
    /// whether more follow.
    pub async fn payments_with_key_prefix(
        &self,
        merchant_id: &str,
        key_prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Value>, bool), LoadtestError> {
        let mut query = vec![
            ("merchant_id", merchant_id.to_string()),
            ("key_prefix", key_prefix.to_string()),
            ("limit", limit.to_string()),
        ];
        if let Some(a) = after {
            query.push(("starting_after", a.to_string()));
        }
        let url =
            reqwest::Url::parse_with_params(&format!("{}/v1/admin/payments", self.base), &query)
                .map_err(|e| LoadtestError::Run(format!("the target's URL: {e}")))?;
        let res = self
            .client
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| LoadtestError::Run(format!("reading the run's payments back: {e}")))?;
        if !res.status().is_success() {
            let status = res.status();
            let body = res.text().await.unwrap_or_default();
            return Err(LoadtestError::Run(format!(
                "reading the run's payments back answered {status}: {body}"
            )));
        }
        let mut page: Value = res
            .json()
            .await
            .map_err(|e| LoadtestError::Run(format!("reading the run's payments back: {e}")))?;
        let data = match page["data"].take() {
            Value::Array(a) => a,
            _ => Vec::new(),
        };
        Ok((data, page["has_more"] == true))
    }

    /// Send a create again with its Idempotency-Key, as a client that lost the answer
    /// does: the status (None: no answer) and the body.
    pub async fn resend_create(
        &self,
        merchant_key: &str,
        idempotency_key: &str,
        body: &Value,
    ) -> (Option<u16>, Value) {
        let sent = self
            .client
            .post(format!("{}/v1/payments", self.base))
            .bearer_auth(merchant_key)
            .header("Idempotency-Key", idempotency_key)
            .json(body)
            .send()
            .await;
        match sent {
            Ok(res) => {
                let status = res.status().as_u16();
                (Some(status), res.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (None, Value::Null),
        }
    }

    /// How many payments the merchant has, counted through the API's own list, page by page.
    pub async fn count_payments(&self, merchant_key: &str) -> Result<u64, LoadtestError> {
        let mut count = 0u64;
        let mut after: Option<String> = None;
        loop {
            // Payment ids are letters, digits and `_`: nothing to escape.
            let mut url = format!(
                "{}/v1/payments?limit={}",
                self.base,
                crate::api::payments::LIST_LIMIT_MAX
            );
            if let Some(a) = &after {
                url.push_str(&format!("&starting_after={a}"));
            }
            let res = self
                .client
                .get(url)
                .bearer_auth(merchant_key)
                .send()
                .await
                .map_err(|e| LoadtestError::Run(format!("listing payments: {e}")))?;
            if !res.status().is_success() {
                return Err(LoadtestError::Run(format!(
                    "listing payments answered {}",
                    res.status()
                )));
            }
            let page: Value = res
                .json()
                .await
                .map_err(|e| LoadtestError::Run(format!("listing payments: {e}")))?;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            count += data.len() as u64;
            after = data
                .last()
                .and_then(|p| p["id"].as_str())
                .map(str::to_string);
            if page["has_more"] != true || after.is_none() {
                return Ok(count);
            }
        }
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
