//! Start and stop a real `paytool serve`, and speak to it.

#![allow(dead_code)]

use reqwest::header::HeaderMap;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_paytool");
/// How long `paytool serve` may take to say where it listens; a debug build on a busy
/// 2-core machine, with other tests starting servers too, takes a few seconds at worst.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit after SIGTERM: it drains the write queue first.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a `paytool` command that does no load (help, a refused profile, `report`)
/// may run before the test gives up on it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one `paytool loadtest` a test runs may take: the longest here (find-max,
/// three 1 s steps, each with a server start and an audit) takes about 15 s alone, and the
/// suite runs several at once on two cores.
pub const LOADTEST_TIMEOUT: Duration = Duration::from_secs(180);
/// How often a bounded wait looks at its child again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A child process the test owns: killed and reaped on drop, so a failed assertion or a
/// timeout never leaves it running.
pub struct ChildGuard {
    child: Option<Child>,
    pid: u32,
    /// The child leads its own process group (see `run_bounded`) that may still hold
    /// processes: kill the whole group.
    group: bool,
}

impl ChildGuard {
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard {
            pid: child.id(),
            child: Some(child),
            group: false,
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the child is still running")
    }

    pub fn id(&self) -> u32 {
        self.pid
    }

    /// SIGKILL, and reap it: no chance to flush or drain.
    pub fn kill(&mut self) {
        if std::mem::take(&mut self.group) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.pid)])
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Wait at most `timeout` for the child to exit; `None` if it is still running.
    pub fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child().try_wait().expect("waiting for a child") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A pipe read to its end on a thread, its bytes readable at any moment.
struct Drain {
    bytes: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl Drain {
    fn start(mut pipe: impl Read + Send + 'static) -> Drain {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let sink = bytes.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            let _ = tx.send(());
        });
        Drain { bytes, done }
    }

    fn so_far(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }
}

/// Run `cmd` to completion, at most `timeout`. On expiry the command (and any process it
/// started) is killed and the test fails, naming the command and showing its stderr so far.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let shown = format!(
        "{} {}",
        Path::new(cmd.get_program()).display(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = ChildGuard::new(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a kill on expiry reaches its children too.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning `{shown}`: {e}")),
    );
    child.group = true;
    let stdout = Drain::start(child.child().stdout.take().expect("piped stdout"));
    let stderr = Drain::start(child.child().stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = child.wait_for(timeout);
    // The pipes close when the last process holding them exits: wait for that too.
    let drained = status.is_some()
        && [&stdout, &stderr].iter().all(|d| {
            d.done
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_ok()
        });
    if !drained {
        child.kill();
        panic!(
            "`{shown}` did not finish within {timeout:?}; killed it. Its stderr so far:\n{}",
            String::from_utf8_lossy(&stderr.so_far())
        );
    }
    // Every process that held the pipes has exited: nothing is left to kill.
    child.group = false;
    Output {
        status: status.expect("the child exited"),
        stdout: stdout.so_far(),
        stderr: stderr.so_far(),
    }
}

pub struct Server {
    child: ChildGuard,
    pub base: String,
    pub admin_token: String,
    pub client: Client,
    data: DataDir,
}

/// A data dir the test owns: a fresh temporary one, or one handed over to reuse. On the
/// PostgreSQL backend it also owns the throwaway PostgreSQL server of its 2-shard layout,
/// started on first use and stopped (before the dir is removed) on drop.
pub struct DataDir {
    pg: Option<PgShards>,
    dir: Dir,
}

enum Dir {
    Temp(tempfile::TempDir),
    Path(PathBuf),
}

impl DataDir {
    pub fn temp() -> DataDir {
        DataDir {
            pg: None,
            dir: Dir::Temp(temp_dir()),
        }
    }

    pub fn at(path: PathBuf) -> DataDir {
        DataDir {
            pg: None,
            dir: Dir::Path(path),
        }
    }

    pub fn path(&self) -> &Path {
        match &self.dir {
            Dir::Temp(t) => t.path(),
            Dir::Path(p) => p,
        }
    }

    /// The PostgreSQL shards behind this data dir, started on first use.
    pub fn pg(&mut self) -> &PgShards {
        if self.pg.is_none() {
            self.pg = Some(PgShards::start(&self.path().join("pg")));
        }
        self.pg.as_ref().expect("started above")
    }
}

/// Which store the API suite runs on: `PAYTOOL_TEST_BACKEND=postgres` runs the same
/// tests against a 2-shard PostgreSQL layout (scripts/test.sh runs both).
pub fn on_postgres() -> bool {
    std::env::var("PAYTOOL_TEST_BACKEND").as_deref() == Ok("postgres")
}

/// A throwaway PostgreSQL server under `root`, small (16 MB of shared buffers), for
/// tests that set up replication themselves.
pub fn small_postgres(root: &Path) -> paytool::services::postgres::LocalPostgres {
    use paytool::services::postgres::{LocalPostgres, Settings};
    let settings = Settings {
        shared_buffers_mb: 16,
        ..Settings::default()
    };
    LocalPostgres::start(root, &settings)
        .unwrap_or_else(|e| panic!("this test needs PostgreSQL (scripts/install-services.sh): {e}"))
}

/// Throwaway PostgreSQL for a layout: one database per shard, all on one server (cheap,
/// for the API suite) or each shard on a server of its own (to stop one shard alone),
/// applied with `paytool shard apply`.
pub struct PgShards {
    pub servers: Vec<paytool::services::postgres::LocalPostgres>,
    /// Per shard: its server (an index into `servers`) and database.
    pub shards: Vec<(usize, String)>,
    pub layout: PathBuf,
}

impl PgShards {
    pub const SHARDS: usize = 2;

    pub fn start(root: &Path) -> PgShards {
        let pg = Self::unapplied(root, Self::SHARDS, false);
        pg.apply();
        pg
    }

    /// `shards` shards, each on its own server when `separate`; not yet applied.
    pub fn unapplied(root: &Path, shards: usize, separate: bool) -> PgShards {
        use paytool::services::postgres::{LocalPostgres, Settings};
        let settings = Settings {
            shared_buffers_mb: 16,
            ..Settings::default()
        };
        let start = |dir: PathBuf| {
            LocalPostgres::start(&dir, &settings).unwrap_or_else(|e| {
                panic!("the PostgreSQL tests need PostgreSQL (scripts/install-services.sh): {e}")
            })
        };
        let servers: Vec<_> = if separate {
            (0..shards)
                .map(|i| start(root.join(format!("pg{i}"))))
                .collect()
        } else {
            vec![start(root.join("pg"))]
        };
        let mut pg = PgShards {
            shards: Vec::new(),
            layout: root.join("layout.toml"),
            servers,
        };
        for i in 0..shards {
            let server = if separate { i } else { 0 };
            let db = format!("paytool_s{i}");
            pg.servers[server].create_database(&db).unwrap();
            pg.shards.push((server, db));
        }
        std::fs::write(&pg.layout, pg.layout_text(&[])).unwrap();
        pg
    }

    /// The layout file's text, with bucket ranges split evenly unless `ranges` are given
    /// as (first, last, shard) triples.
    pub fn layout_text(&self, ranges: &[(u32, u32, usize)]) -> String {
        let n = self.shards.len();
        let mut text = String::from("name = \"test\"\nversion = 1\nbuckets = 1024\n");
        for (i, (server, db)) in self.shards.iter().enumerate() {
            let url = self.servers[*server].url(db);
            text.push_str(&format!("[shards.s{i}]\nurl = \"{url}\"\n"));
        }
        let even: Vec<(u32, u32, usize)> = (0..n)
            .map(|i| ((i * 1024 / n) as u32, ((i + 1) * 1024 / n - 1) as u32, i))
            .collect();
        for (first, last, shard) in if ranges.is_empty() { &even[..] } else { ranges } {
            text.push_str(&format!(
                "[[ranges]]\nbuckets = \"{first}-{last}\"\nshard = \"s{shard}\"\n"
            ));
        }
        text
    }

    pub fn apply(&self) {
        let out = paytool(&["shard", "apply", "--layout", self.layout.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "shard apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One SQL statement on every shard's database; each shard's output.
    pub fn on_each_shard(&self, sql: &str) -> Vec<String> {
        (0..self.shards.len())
            .map(|i| self.on_shard(i, sql))
            .collect()
    }

    /// A shard database's URL.
    pub fn url(&self, shard: usize) -> String {
        let (server, db) = &self.shards[shard];
        self.servers[*server].url(db)
    }

    /// A client on a shard's database, for what the tests check beside the API.
    pub async fn client(&self, shard: usize) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(shard), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to shard {shard}: {e}"));
        tokio::spawn(connection);
        client
    }

    pub fn on_shard(&self, shard: usize, sql: &str) -> String {
        let (server, db) = &self.shards[shard];
        self.servers[*server]
            .psql_in(db, sql)
            .unwrap_or_else(|e| panic!("shard {shard}: {sql}: {e}"))
    }
}

/// Run a helper command (psql, python3), at most `COMMAND_TIMEOUT`; its stdout, or the
/// test fails with its stderr.
pub fn stdout_of(what: &str, cmd: &mut Command) -> String {
    let out = run_bounded(cmd, COMMAND_TIMEOUT);
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A copy of the profile `source` as `dir/name`, with `from` replaced by `to`; `from` must
/// be in it, so an edit that matches nothing cannot leave the profile as it was.
pub fn edited_profile(source: &str, dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(source).unwrap();
    assert!(text.contains(from), "{source} has no {from:?}");
    let path = dir.join(name);
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path
}

/// How long a test waits for one Redis answer. The crate's default (500 ms) is the
/// API's budget, not a test's: KEYS over 100,000 entries on a loaded CI machine outlives
/// it.
pub const TEST_REDIS_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection of the test's own to a Redis, patient enough for a loaded machine.
pub async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TEST_REDIS_TIMEOUT))
        .set_response_timeout(Some(TEST_REDIS_TIMEOUT));
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("paytool-it-")
        .tempdir()
        .expect("a temp dir")
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(DataDir::temp(), &[])
    }

    pub fn start_args(args: &[&str]) -> Server {
        Server::start_with(DataDir::temp(), args)
    }

    /// Start `paytool serve` on a free port and wait for it to say where it listens.
    pub fn start_with(data: DataDir, args: &[&str]) -> Server {
        Server::spawn(data, args, None)
    }

    /// One more API instance on the PostgreSQL layout at `layout`.
    pub fn start_on_layout(layout: &Path, admin_token: &str) -> Server {
        let layout = layout.to_str().expect("a UTF-8 path");
        Server::spawn(DataDir::temp(), &["--layout", layout], Some(admin_token))
    }

    /// One more API instance on a layout whose URLs come from `env`, with more flags.
    pub fn start_on_layout_env(
        layout: &Path,
        admin_token: &str,
        args: &[&str],
        env: &[(String, String)],
    ) -> Server {
        let layout = layout.to_str().expect("a UTF-8 path");
        let mut all = vec!["--layout", layout];
        all.extend_from_slice(args);
        Server::spawn_env(DataDir::temp(), &all, Some(admin_token), env)
    }

    /// Start with the admin token given in `PAYTOOL_ADMIN_TOKEN` instead of generated.
    pub fn start_with_admin_token(data: DataDir, admin_token: &str) -> Server {
        Server::spawn(data, &[], Some(admin_token))
    }

    fn spawn(data: DataDir, args: &[&str], admin_token: Option<&str>) -> Server {
        Server::spawn_env(data, args, admin_token, &[])
    }

    fn spawn_env(
        data: DataDir,
        args: &[&str],
        admin_token: Option<&str>,
        env: &[(String, String)],
    ) -> Server {
        Server::spawn_logged(data, args, admin_token, env, None)
    }

    /// Start with its stderr (the log) written to `log` instead of the test's own.
    pub fn spawn_logged(
        mut data: DataDir,
        args: &[&str],
        admin_token: Option<&str>,
        env: &[(String, String)],
        log: Option<&Path>,
    ) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path());
        // Instances of one layout share an admin token given to each (no token file).
        let shared_token;
        let mut admin_token = admin_token;
        if on_postgres() && !args.contains(&"--layout") {
            // The layout decides the shards; `--shards` is the SQLite store's.
            let mut rest = args.iter();
            while let Some(a) = rest.next() {
                if *a == "--shards" {
                    rest.next();
                } else {
                    cmd.arg(a);
                }
            }
            cmd.arg("--layout").arg(&data.pg().layout);
            shared_token =
                admin_token.map_or_else(|| "adm_postgres_suite".to_string(), str::to_string);
            admin_token = Some(&shared_token);
        } else {
            cmd.args(args);
        }
        cmd.stdout(Stdio::piped()).stderr(match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("a log file")),
            None => Stdio::inherit(),
        });
        match admin_token {
            Some(token) => cmd.env("PAYTOOL_ADMIN_TOKEN", token),
            None => cmd.env_remove("PAYTOOL_ADMIN_TOKEN"),
        };
        // Owned from here on: a failure to start kills it too.
        let mut child = ChildGuard::new(cmd.spawn().expect("spawning paytool serve"));
        let stdout = child.child().stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("paytool serve: listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(START_TIMEOUT)
            .unwrap_or_else(|_| panic!("paytool serve did not start within {START_TIMEOUT:?}"));
        let admin_token = match admin_token {
            Some(token) => token.to_string(),
            None => std::fs::read_to_string(data.path().join("admin_token"))
                .expect("the admin token file")
                .trim()
                .to_string(),
        };
        Server {
            child,
            base,
            admin_token,
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            data,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The PostgreSQL shards it runs on, on the PostgreSQL backend.
    pub fn pg(&self) -> Option<&PgShards> {
        self.data.pg.as_ref()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// SIGKILL: no chance to flush or drain.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// SIGTERM, then wait (at most `STOP_TIMEOUT`) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
        self.child.wait_for(STOP_TIMEOUT).unwrap_or_else(|| {
            self.kill();
            panic!("paytool serve did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed it")
        })
    }

    /// Stop the server and hand back its data dir, to start again on it.
    pub fn into_data(mut self) -> DataDir {
        self.kill();
        self.data
    }

    pub async fn create_merchant(&self, name: &str) -> Merchant {
        let res = self
            .client
            .post(self.url("/v1/merchants"))
            .bearer_auth(&self.admin_token)
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        Merchant {
            id: body["id"].as_str().unwrap().to_string(),
            key: body["secret_key"].as_str().unwrap().to_string(),
        }
    }

    pub async fn audit(&self) -> Value {
        let res = self
            .client
            .get(self.url("/v1/admin/audit"))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    /// A request as `merchant`, with an optional idempotency key and JSON body.
    pub async fn call(
        &self,
        merchant: &Merchant,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, HeaderMap) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(&merchant.key);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value, headers)
    }

    pub async fn pay(
        &self,
        merchant: &Merchant,
        key: &str,
        amount: i64,
        capture: bool,
    ) -> (StatusCode, Value) {
        let (status, body, _) = self
            .call(
                merchant,
                Method::POST,
                "/v1/payments",
                Some(key),
                Some(payment_body(amount, "usd", capture)),
            )
            .await;
        (status, body)
    }
}

#[derive(Clone, Debug)]
pub struct Merchant {
    pub id: String,
    pub key: String,
}

/// `sends` copies of one payment request under one Idempotency-Key, all sent at once,
/// alternating over `servers`; then every answer must be 200 and all the same body (else
/// the test fails, naming the key).
pub async fn one_key_at_once(
    client: &Client,
    servers: &[&Server],
    merchant: &Merchant,
    key: &str,
    body: &Value,
    sends: usize,
) {
    let sends: Vec<_> = (0..sends)
        .map(|i| {
            let send = client
                .post(servers[i % servers.len()].url("/v1/payments"))
                .bearer_auth(&merchant.key)
                .header("Idempotency-Key", key)
                .json(body)
                .send();
            tokio::spawn(async move {
                let res = send.await.expect("every send is answered");
                (res.status(), res.text().await.unwrap())
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for send in sends {
        let (status, body) = send.await.unwrap();
        assert_eq!(status, StatusCode::OK, "key {key}: {body}");
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "key {key}: the answers differ"
    );
}

pub fn payment_body(amount: i64, currency: &str, capture: bool) -> Value {
    json!({
        "amount": amount,
        "currency": currency,
        "card": { "number": "4242424242424242", "exp_month": 12, "exp_year": 2034 },
        "capture": capture,
    })
}

/// The payment body every case starts from.
pub fn pay() -> Value {
    payment_body(100, "usd", true)
}

/// `pay()` with the field at `path` (dotted: `card.pin`) set to `value`.
pub fn pay_with(path: &str, value: Value) -> Value {
    let mut body = pay();
    let (parent, field) = split(&mut body, path);
    parent[field] = value;
    body
}

/// `pay()` without the field at `path`.
pub fn pay_without(path: &str) -> Value {
    let mut body = pay();
    let (parent, field) = split(&mut body, path);
    parent.as_object_mut().unwrap().remove(field);
    body
}

fn split<'a, 'p>(body: &'a mut Value, path: &'p str) -> (&'a mut Value, &'p str) {
    match path.rsplit_once('.') {
        Some((parent, field)) => (&mut body[parent], field),
        None => (body, path),
    }
}

/// The entry of the array `list` whose `"name"` is `name`.
pub fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list:#}"))
        .iter()
        .find(|entry| entry["name"] == name)
        .unwrap_or_else(|| panic!("no {name:?} in {list:#}"))
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Run the paytool binary to completion, at most `COMMAND_TIMEOUT`.
pub fn paytool(args: &[&str]) -> Output {
    run_bounded(Command::new(BIN).args(args), COMMAND_TIMEOUT)
}

/// The command exited 0 (else the test fails, showing its stderr); its stdout as JSON.
pub fn json_stdout(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `paytool loadtest ARGS`, at most `LOADTEST_TIMEOUT`, with `PAYTOOL_ADMIN_TOKEN` set to
/// `admin_token` or, if `None`, unset.
pub fn loadtest(args: &[&str], admin_token: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("loadtest").args(args);
    match admin_token {
        Some(token) => cmd.env("PAYTOOL_ADMIN_TOKEN", token),
        None => cmd.env_remove("PAYTOOL_ADMIN_TOKEN"),
    };
    run_bounded(&mut cmd, LOADTEST_TIMEOUT)
}

/// A `loadtest --output json` that exited 0 and passed (else the test fails, showing
/// its output): its summary.
pub fn passed_summary(out: &Output) -> Value {
    let output = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{output}");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("a JSON summary");
    assert_eq!(summary["passed"], true, "{summary:#}");
    summary
}

/// `paytool loadtest -p PROFILE --output json --report-dir REPORTS` (the profile spawns
/// its own target) that passed: its summary.
pub fn passing_loadtest(profile: &Path, reports: &Path) -> Value {
    let out = loadtest(
        &[
            "-p",
            profile.to_str().unwrap(),
            "--output",
            "json",
            "--report-dir",
            reports.to_str().unwrap(),
        ],
        None,
    );
    passed_summary(&out)
}

/// Who a request is sent as.
#[derive(Clone, Debug)]
pub enum Auth {
    /// `Bearer` and the merchant's secret key.
    Merchant,
    /// `Bearer` and this token.
    Bearer(String),
    /// This `Authorization` header, as it is.
    Header(String),
    /// No `Authorization` header.
    Anonymous,
}

/// The `Idempotency-Key` a request carries.
#[derive(Clone, Debug)]
pub enum Key {
    None,
    /// A key of its own: the name of the case it is sent in, spaces and all else
    /// outside `[A-Za-z0-9_-]` as `-`; outside a case, a fresh one for each send.
    PerCase,
    Is(String),
}

/// One request, as a table row spells it.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub auth: Auth,
    pub key: Key,
    /// Sent as it is, as `application/json`.
    pub body: Option<String>,
}

/// A body as JSON text: a `Value`, or text that may not parse.
pub trait IntoBody {
    fn into_body(self) -> String;
}

impl IntoBody for Value {
    fn into_body(self) -> String {
        self.to_string()
    }
}

impl IntoBody for &str {
    fn into_body(self) -> String {
        self.to_string()
    }
}

impl IntoBody for String {
    fn into_body(self) -> String {
        self
    }
}

impl Req {
    /// As the merchant, with no key and no body.
    pub fn new(method: Method, path: impl Into<String>) -> Req {
        Req {
            method,
            path: path.into(),
            auth: Auth::Merchant,
            key: Key::None,
            body: None,
        }
    }

    pub fn body(mut self, body: impl IntoBody) -> Req {
        self.body = Some(body.into_body());
        self
    }

    pub fn key(mut self, key: impl Into<String>) -> Req {
        self.key = Key::Is(key.into());
        self
    }

    pub fn no_key(mut self) -> Req {
        self.key = Key::None;
        self
    }

    pub fn auth(mut self, auth: Auth) -> Req {
        self.auth = auth;
        self
    }
}

pub fn get(path: impl Into<String>) -> Req {
    Req::new(Method::GET, path)
}

/// A POST with a key of its own: the API refuses any change to money without one.
pub fn post(path: impl Into<String>) -> Req {
    Req {
        key: Key::PerCase,
        ..Req::new(Method::POST, path)
    }
}

/// `POST /v1/payments/{id}/{action}`.
pub fn on(id: &str, action: &str) -> Req {
    post(format!("/v1/payments/{id}/{action}"))
}

/// `POST /v1/payments` with `body` and a key of its own.
pub fn create(body: impl IntoBody) -> Req {
    post("/v1/payments").body(body)
}

pub const INVALID: &str = "invalid_request_error";

/// How a request must be refused: `{"error": {"type", "code", "message", "param"}}`.
#[derive(Clone, Copy, Debug)]
pub struct Want {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: &'static str,
    pub param: Option<&'static str>,
    /// Whether `code` and `param` are pinned, or only the status, the type and the shape.
    pub exact: bool,
}

/// 400, a request that names `param` wrongly.
pub fn invalid(code: &'static str, param: &'static str) -> Want {
    Want {
        status: StatusCode::BAD_REQUEST,
        kind: INVALID,
        code,
        param: Some(param),
        exact: true,
    }
}

/// 400 `invalid_request_error`, with whatever code and param.
pub fn invalid_any() -> Want {
    Want {
        exact: false,
        ..invalid("", "")
    }
}

/// 400, a card the API refuses before it reaches the processor.
pub fn card_error(code: &'static str, param: &'static str) -> Want {
    Want {
        kind: "card_error",
        ..invalid(code, param)
    }
}

/// 402: the card was declined (or failed) at the processor; the error carries the payment.
pub fn declined(code: &'static str) -> Want {
    Want {
        status: StatusCode::PAYMENT_REQUIRED,
        param: None,
        ..card_error(code, "")
    }
}

pub fn unauthorized() -> Want {
    Want {
        status: StatusCode::UNAUTHORIZED,
        kind: "authentication_error",
        code: "invalid_api_key",
        param: None,
        exact: true,
    }
}

pub fn not_found(param: &'static str) -> Want {
    Want {
        status: StatusCode::NOT_FOUND,
        ..invalid("resource_missing", param)
    }
}

/// 409: the payment's state does not allow it.
pub fn conflict(code: &'static str) -> Want {
    Want {
        status: StatusCode::CONFLICT,
        param: None,
        ..invalid(code, "")
    }
}

/// 400: the key was used before for another request.
pub fn reused() -> Want {
    Want {
        kind: "idempotency_error",
        ..invalid("idempotency_key_reused", "Idempotency-Key")
    }
}

/// A request and how it must be refused; `name` is what a failure reports.
pub struct Case {
    pub name: String,
    pub req: Req,
    pub want: Want,
}

pub fn case(name: impl Into<String>, req: Req, want: Want) -> Case {
    Case {
        name: name.into(),
        req,
        want,
    }
}

impl Server {
    /// Send `req` as `merchant`: status, the body's text, headers.
    pub async fn send(&self, merchant: &Merchant, req: &Req) -> (StatusCode, String, HeaderMap) {
        self.send_keyed(merchant, req, None).await
    }

    async fn send_keyed(
        &self,
        merchant: &Merchant,
        req: &Req,
        case_name: Option<&str>,
    ) -> (StatusCode, String, HeaderMap) {
        let mut http = self.client.request(req.method.clone(), self.url(&req.path));
        http = match &req.auth {
            Auth::Merchant => http.bearer_auth(&merchant.key),
            Auth::Bearer(token) => http.bearer_auth(token),
            Auth::Header(value) => http.header("Authorization", value),
            Auth::Anonymous => http,
        };
        let key = match &req.key {
            Key::None => None,
            // Outside a table, a key of its own for each send.
            Key::PerCase => Some(match case_name {
                // Readable, but a case about card numbers must not send one as its key
                // (the API refuses such keys): digits become letters.
                Some(name) => name
                    .chars()
                    .map(|c| match c {
                        '0'..='9' => (b'a' + (c as u8 - b'0')) as char,
                        c if c.is_ascii_alphanumeric() || c == '_' => c,
                        _ => '-',
                    })
                    .collect(),
                None => {
                    static SENT: std::sync::atomic::AtomicU64 =
                        std::sync::atomic::AtomicU64::new(0);
                    let n = SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    format!("auto-{n}")
                }
            }),
            Key::Is(key) => Some(key.clone()),
        };
        if let Some(key) = key {
            http = http.header("Idempotency-Key", key);
        }
        if let Some(body) = &req.body {
            http = http
                .header("content-type", "application/json")
                .body(body.clone());
        }
        let res = http.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        (status, res.text().await.unwrap(), headers)
    }

    /// A payment held (authorized, not captured) for `amount`; its id.
    pub async fn held(&self, merchant: &Merchant, key: &str, amount: i64) -> String {
        let (status, held) = self.pay(merchant, key, amount, false).await;
        assert_eq!(status, StatusCode::OK, "{held:#}");
        held["id"].as_str().expect("a payment id").to_string()
    }

    /// Send `req`, which must succeed with 200; its JSON answer.
    pub async fn ok(&self, merchant: &Merchant, req: &Req) -> Value {
        let (status, text, _) = self.send(merchant, req).await;
        assert_eq!(status, StatusCode::OK, "{req:?}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{req:?}: not JSON: {text}"))
    }

    /// Send the case as `merchant` and assert it is refused as it wants; the error body.
    pub async fn refused(&self, merchant: &Merchant, case: &Case) -> Value {
        let (status, text, headers) = self.send_keyed(merchant, &case.req, Some(&case.name)).await;
        let what = format!("{} ({:?})", case.name, case.req);
        assert_eq!(
            headers.get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/json"[..]),
            "{what}: {text}"
        );
        assert!(
            headers.get("idempotent-replayed").is_none(),
            "{what}: a refusal is never a replay"
        );
        let body =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
        assert_error(&what, status, &body, &case.want);
        body
    }

    /// Every case in order, each refused as it wants.
    pub async fn check(&self, merchant: &Merchant, cases: impl IntoIterator<Item = Case>) {
        for case in cases {
            self.refused(merchant, &case).await;
        }
    }
}

/// The one error shape: `{"error": {"type", "code", "message", "param"}}`, plus
/// `decline_code` and `payment` for card declines, and nothing else. `what` names the
/// request in a failure.
pub fn assert_error(what: &str, status: StatusCode, body: &Value, want: &Want) {
    assert_eq!(status, want.status, "{what}: {body:#}");
    let top = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {body}"));
    assert_eq!(top.len(), 1, "{what}: only `error` at the top: {body:#}");
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: no error object: {body:#}"));
    for field in ["type", "code", "message", "param"] {
        assert!(
            error.contains_key(field),
            "{what}: error.{field} missing: {body:#}"
        );
    }
    for field in error.keys() {
        assert!(
            [
                "type",
                "code",
                "message",
                "param",
                "decline_code",
                "payment"
            ]
            .contains(&field.as_str()),
            "{what}: unexpected error.{field}: {body:#}"
        );
    }
    assert_eq!(error["type"], want.kind, "{what}: {body:#}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body:#}"
    );
    if !want.exact {
        return;
    }
    assert_eq!(error["code"], want.code, "{what}: {body:#}");
    match want.param {
        Some(p) => assert_eq!(error["param"], p, "{what}: {body:#}"),
        None => assert!(error["param"].is_null(), "{what}: {body:#}"),
    }
}
