//! A throwaway HAProxy (Debian's `haproxy`) in front of API instances this process
//! started: a config written here, on a free loopback port, stopped when dropped. What a
//! deployment puts in front of many stateless API servers, with the settings that make
//! losing one of them cost nothing:
//!
//! - health checks on `/readyz` every `CHECK_INTERVAL`, one failure marks a server down
//!   (an instance draining on SIGTERM answers 503 there first, see `serve --drain-delay`);
//! - a request whose connection could not be made is sent to another server
//!   (`retry-on conn-failure` with `option redispatch`): it never reached the first, so a
//!   retry cannot make a second payment. Nothing else is retried by the balancer: a
//!   payment whose answer was lost is resent by its client with the same Idempotency-Key.
//!
//! Two modes (`Mode`). `Http` balances each request and keeps its own keep-alive
//! connections to the instances. `Tcp` balances connections: each client connection is
//! tied to one instance for its life and HAProxy copies its bytes without parsing them,
//! which costs a fraction of the CPU; the same health checks decide where new
//! connections go, and a connection that cannot be made is redispatched (`retries`
//! with `option redispatch`, the only retry TCP mode has, and one that is always safe).
//! An instance that drains closes its connections once their requests are answered.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How often HAProxy asks each instance `/readyz`.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How long a started HAProxy may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries at a free port: another process may take the one we picked before HAProxy binds it.
const START_TRIES_MAX: usize = 3;
/// Connections HAProxy holds at once (each a client and a server side), at most: less
/// where the file-descriptor limit cannot hold two each (HAProxy refuses to start then).
const MAXCONN: u64 = 20_000;
/// Descriptors HAProxy keeps for itself beyond two per connection.
const FDS_SPARE: u64 = 64;
/// Retries of a request whose connection failed, each to another server.
const RETRIES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum HaproxyError {
    #[error(
        "HAProxy is not installed (no haproxy on PATH): on Debian or Ubuntu run `apt-get install -y haproxy` (scripts/install-services.sh does)"
    )]
    NotInstalled,
    #[error("haproxy did not listen on port {port} within {waited:?}: {log}")]
    NotListening {
        port: u16,
        waited: Duration,
        log: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What HAProxy balances: requests (`mode http`) or connections (`mode tcp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Http,
    Tcp,
}

pub struct LocalHaproxy {
    port: u16,
    child: Option<Child>,
}

impl LocalHaproxy {
    /// Start HAProxy on a free 127.0.0.1 port in front of `backends` (`host:port` each),
    /// balancing as `mode` says, its config and log under `root`.
    pub fn start(
        root: &Path,
        backends: &[String],
        mode: Mode,
    ) -> Result<LocalHaproxy, HaproxyError> {
        let io = |source| HaproxyError::Io {
            path: root.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(root).map_err(io)?;
        let mut last = None;
        for _ in 0..START_TRIES_MAX {
            let port = super::free_port().map_err(io)?;
            match Self::start_on(root, port, backends, mode) {
                Ok(h) => return Ok(h),
                Err(e @ HaproxyError::NotInstalled) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one try"))
    }

    fn start_on(
        root: &Path,
        port: u16,
        backends: &[String],
        mode: Mode,
    ) -> Result<LocalHaproxy, HaproxyError> {
        let config = root.join("haproxy.cfg");
        std::fs::write(&config, config_text(port, backends, mode)).map_err(|source| {
            HaproxyError::Io {
                path: config.clone(),
                source,
            }
        })?;
        let log = root.join("haproxy.log");
        let out = std::fs::File::create(&log).map_err(|source| HaproxyError::Io {
            path: log.clone(),
            source,
        })?;
        let err = out.try_clone().map_err(|source| HaproxyError::Io {
            path: log.clone(),
            source,
        })?;
        let child = Command::new("haproxy")
            // Foreground, no daemon; the config is checked as it loads.
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => HaproxyError::NotInstalled,
                _ => HaproxyError::Io {
                    path: PathBuf::from("haproxy"),
                    source,
                },
            })?;
        let mut h = LocalHaproxy { port, child: None };
        let listening = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if super::await_started(h.child.insert(child), START_TIMEOUT, listening) {
            return Ok(h);
        }
        h.stop();
        Err(HaproxyError::NotListening {
            port,
            waited: START_TIMEOUT,
            log: std::fs::read_to_string(&log).unwrap_or_default(),
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for LocalHaproxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The config: one frontend on `port`, round-robin over `backends` (requests or
/// connections, as `mode` says) with the health checks and the one safe retry described
/// above.
pub fn config_text(port: u16, backends: &[String], mode: Mode) -> String {
    let inter = CHECK_INTERVAL.as_millis();
    let maxconn = maxconn();
    // Both modes retry a connection that could not be made; only HTTP mode has
    // keep-alive to the instances and `retry-on`, which it limits to that same case.
    let mode_lines = match mode {
        Mode::Http => {
            "  mode http\n  timeout http-keep-alive 10s\n  option http-keep-alive\n\
             \x20 retry-on conn-failure\n"
        }
        Mode::Tcp => "  mode tcp\n",
    };
    let mut text = format!(
        "# Written by paytool for one load test; see src/services/haproxy.rs.\n\
         global\n  maxconn {maxconn}\n\
         defaults\n{mode_lines}  retries {RETRIES}\n  option redispatch 1\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n\
         frontend api\n  bind 127.0.0.1:{port}\n  default_backend instances\n\
         backend instances\n  balance roundrobin\n\
         \x20 option httpchk GET /readyz\n  http-check expect status 200\n\
         \x20 default-server inter {inter}ms fastinter {inter}ms downinter {inter}ms fall 1 rise 2\n"
    );
    for (i, b) in backends.iter().enumerate() {
        text.push_str(&format!("  server api{i} {b} check\n"));
    }
    text
}

/// MAXCONN, or what this process's hard descriptor limit allows (HAProxy raises its soft
/// limit up to the hard one, which it inherits).
fn maxconn() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    let hard = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
        0 => limit.rlim_max,
        _ => 1024,
    };
    (hard.saturating_sub(FDS_SPARE) / 2).clamp(64, MAXCONN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_checks_readiness_and_retries_only_failed_connections() {
        let backends = ["127.0.0.1:1".into(), "127.0.0.1:2".into()];
        let tcp = config_text(8080, &backends, Mode::Tcp);
        assert!(tcp.contains("mode tcp\n"), "{tcp}");
        assert!(tcp.contains("option httpchk GET /readyz"), "{tcp}");
        assert!(tcp.contains("option redispatch 1\n"), "{tcp}");
        // retry-on is HTTP mode's: TCP mode retries only a connection that failed.
        assert!(!tcp.contains("retry-on"), "{tcp}");
        let c = config_text(8080, &backends, Mode::Http);
        assert!(c.contains("mode http\n"), "{c}");
        assert!(c.contains("bind 127.0.0.1:8080"));
        assert!(c.contains("option httpchk GET /readyz"));
        assert!(c.contains("retry-on conn-failure\n"), "{c}");
        assert!(c.contains("server api0 127.0.0.1:1 check\n  server api1 127.0.0.1:2 check"));
        assert!(
            !c.contains("retry-on all"),
            "a lost answer is the client's to resend"
        );
    }
}
