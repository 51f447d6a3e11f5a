//! A throwaway Redis server: `redis-server` on a free loopback port, nothing persisted
//! (a cache holds nothing worth keeping), killed when dropped. The integration tests and
//! load tests start these; they never rely on a server started by hand.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a started server may take to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries at a free port: another process may take the one we picked before we bind it.
const START_TRIES_MAX: usize = 3;
/// One PING's connect and read bound.
const PING_TIMEOUT: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error(
        "Redis is not installed (no redis-server on PATH): on Debian or Ubuntu run `apt-get install -y redis-server` (scripts/install-services.sh does)"
    )]
    NotInstalled,
    #[error("redis-server on port {port} did not answer PING within {waited:?}: {log}")]
    NotAnswering {
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

pub struct LocalRedis {
    root: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl LocalRedis {
    /// Start `redis-server` on a free 127.0.0.1 port, its log and any file under `root`.
    pub fn start(root: &Path) -> Result<LocalRedis, RedisError> {
        std::fs::create_dir_all(root).map_err(|source| RedisError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let mut last = None;
        for _ in 0..START_TRIES_MAX {
            let port = super::free_port().map_err(|source| RedisError::Io {
                path: root.to_path_buf(),
                source,
            })?;
            let mut server = LocalRedis {
                root: root.to_path_buf(),
                port,
                child: None,
            };
            match server.start_again() {
                Ok(()) => return Ok(server),
                Err(e @ RedisError::NotInstalled) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one try"))
    }

    /// Start a stopped server again on the same port (Redis back after an outage), empty.
    pub fn start_again(&mut self) -> Result<(), RedisError> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = self.root.join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--protected-mode", "yes"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.root)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => RedisError::NotInstalled,
                _ => RedisError::Io {
                    path: PathBuf::from("redis-server"),
                    source,
                },
            })?;
        let port = self.port;
        if super::await_started(self.child.insert(child), START_TIMEOUT, || ping(port)) {
            return Ok(());
        }
        self.stop();
        Err(RedisError::NotAnswering {
            port: self.port,
            waited: START_TIMEOUT,
            log: std::fs::read_to_string(&log).unwrap_or_default(),
        })
    }

    /// Kill it, as a crash or a network cut would: clients see their connections drop.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a Redis server answers PING on the port.
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), PING_TIMEOUT) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(PING_TIMEOUT));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}
