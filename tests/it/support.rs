//! Start and stop a real `paytool serve`, and speak to it.

#![allow(dead_code)]

use reqwest::header::HeaderMap;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_paytool");
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub admin_token: String,
    pub client: Client,
    data: DataDir,
}

/// A data dir the test owns: a fresh temporary one, or one handed over to reuse.
pub enum DataDir {
    Temp(tempfile::TempDir),
    Path(PathBuf),
}

impl DataDir {
    pub fn path(&self) -> &Path {
        match self {
            DataDir::Temp(t) => t.path(),
            DataDir::Path(p) => p,
        }
    }
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("paytool-it-")
        .tempdir()
        .expect("a temp dir")
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(DataDir::Temp(temp_dir()), &[])
    }

    pub fn start_args(args: &[&str]) -> Server {
        Server::start_with(DataDir::Temp(temp_dir()), args)
    }

    /// Start `paytool serve` on a free port and wait for it to say where it listens.
    pub fn start_with(data: DataDir, args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(args)
            .env_remove("PAYTOOL_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning paytool serve");
        let stdout = child.stdout.take().expect("piped stdout");
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
        let admin_token = std::fs::read_to_string(data.path().join("admin_token"))
            .expect("the admin token file")
            .trim()
            .to_string();
        Server {
            child: Some(child),
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
        self.child.as_ref().expect("server is running").id()
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// SIGKILL: no chance to flush or drain.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server is running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("waiting for paytool") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "paytool did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop the server and hand back its data dir, to start again on it.
    pub fn into_data(mut self) -> DataDir {
        self.kill();
        std::mem::replace(&mut self.data, DataDir::Path(PathBuf::new()))
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

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Clone, Debug)]
pub struct Merchant {
    pub id: String,
    pub key: String,
}

pub fn payment_body(amount: i64, currency: &str, capture: bool) -> Value {
    json!({
        "amount": amount,
        "currency": currency,
        "card": { "number": "4242424242424242", "exp_month": 12, "exp_year": 2034 },
        "capture": capture,
    })
}

/// Run the paytool binary to completion with a bounded wait.
pub fn paytool(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running paytool")
}
