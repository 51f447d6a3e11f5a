//! An API instance as a process of its own (`paytool serve`, this same binary), for the
//! chaos steps that act on one: a SIGKILL is only real when it kills a process. Started
//! again on the same port and data, so the load's clients find it where they left it.

use super::LoadtestError;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// How long a started instance may take to answer /healthz (SQLite recovery after a
/// kill, or connecting to every shard).
const START_WAIT_MAX: Duration = Duration::from_secs(60);
const HEALTH_POLL: Duration = Duration::from_millis(50);
/// A SIGTERM drains in-flight requests (the server's own drain bound is 30 s); after
/// this the instance is killed.
const STOP_WAIT_MAX: Duration = Duration::from_secs(40);
/// The last lines of the instance's log quoted when it does not start.
const LOG_TAIL_BYTES: usize = 2_000;

pub struct ApiProcess {
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    pub base: String,
    child: Option<Child>,
}

impl ApiProcess {
    /// An instance that will listen on `port`; `serve_args` are `serve`'s flags after
    /// `--listen`, `env` what it reads from the environment (secrets among them).
    pub fn new(
        port: u16,
        serve_args: Vec<String>,
        env: Vec<(String, String)>,
        log: PathBuf,
    ) -> Self {
        let mut args = vec![
            "serve".to_string(),
            "--listen".to_string(),
            format!("127.0.0.1:{port}"),
        ];
        args.extend(serve_args);
        ApiProcess {
            args,
            env,
            log,
            base: format!("http://127.0.0.1:{port}"),
            child: None,
        }
    }

    /// Start it and wait until it answers /healthz.
    pub async fn start(&mut self) -> Result<(), LoadtestError> {
        let exe = std::env::current_exe()
            .map_err(|e| LoadtestError::Start(format!("finding paytool's own binary: {e}")))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(exe);
        // The instance takes its settings from its flags and from `env` only: a
        // PAYTOOL_* setting meant for this process (a Redis URL, a config file) must
        // not reach it. The layout's shard URLs are the exception: it is resolved with them.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("PAYTOOL_") && !key.starts_with("PAYTOOL_SHARD_") {
                command.env_remove(key.as_ref());
            }
        }
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        self.child = Some(
            command
                .spawn()
                .map_err(|e| LoadtestError::Start(format!("starting an API instance: {e}")))?,
        );
        self.await_healthy().await
    }

    async fn await_healthy(&mut self) -> Result<(), LoadtestError> {
        let client = reqwest::Client::new();
        let url = format!("{}/healthz", self.base);
        let started = Instant::now();
        while started.elapsed() < START_WAIT_MAX {
            let up = client
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Err(LoadtestError::Start(format!(
                    "the API instance at {} exited ({status}) before answering; its log ends:\n{}",
                    self.base,
                    self.log_tail()
                )));
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
        self.kill().await;
        Err(LoadtestError::Start(format!(
            "the API instance at {} did not answer /healthz within {START_WAIT_MAX:?}; its log ends:\n{}",
            self.base,
            self.log_tail()
        )))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut from = text.len().saturating_sub(LOG_TAIL_BYTES);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        text[from..].to_string()
    }

    /// SIGKILL, as a crash would: nothing in flight is finished or answered.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// SIGSTOP (stall) or SIGCONT (resume).
    pub fn stall(&self, stalled: bool) -> Result<(), LoadtestError> {
        let pid = self.child.as_ref().and_then(Child::id).ok_or_else(|| {
            LoadtestError::Run(format!("the API instance at {} is not running", self.base))
        })?;
        let signal = if stalled {
            libc::SIGSTOP
        } else {
            libc::SIGCONT
        };
        // SAFETY: kill(2) with a pid this process spawned and has not reaped.
        if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
            return Err(LoadtestError::Run(format!(
                "signalling the API instance at {}: {}",
                self.base,
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    /// SIGTERM: finish what is in flight and commit what is queued, then exit. Killed
    /// if it takes longer than the drain allows.
    pub async fn stop(&mut self) -> Result<(), LoadtestError> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = c.id() {
            // A stalled instance must run to drain.
            // SAFETY: as in `stall`.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGCONT);
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        match tokio::time::timeout(STOP_WAIT_MAX, c.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(LoadtestError::Run(format!(
                "the API instance at {} exited with {status}; its log ends:\n{}",
                self.base,
                self.log_tail()
            ))),
            Ok(Err(e)) => Err(LoadtestError::Run(format!(
                "waiting for the API instance: {e}"
            ))),
            Err(_) => {
                let _ = c.kill().await;
                Err(LoadtestError::Run(format!(
                    "the API instance at {} did not stop within {STOP_WAIT_MAX:?}",
                    self.base
                )))
            }
        }
    }
}
