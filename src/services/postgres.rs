//! A throwaway PostgreSQL server: `initdb` into a directory paytool owns, started on a
//! free loopback port, stopped (immediately: it holds nothing worth a checkpoint) when
//! dropped. Load tests spawn these for a sharded profile, and the integration tests use
//! them; neither ever relies on a server started by hand.
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user
//! (Debian's package creates it) through `runuser`, and its directory is given to it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// How long `pg_ctl start` may wait for the server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries at a free port: another process may take the one we picked before we bind it.
const START_TRIES_MAX: usize = 3;
/// Connections the server accepts: API instances' pools, a move's workers and tests.
const CONNECTIONS_MAX: u32 = 300;

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error(
        "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH): on Debian or Ubuntu run `apt-get install -y postgresql` (scripts/install-services.sh does)"
    )]
    NotInstalled,
    #[error("running as root, but there is no `postgres` user to run PostgreSQL as: {0}")]
    NoPostgresUser(String),
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Server settings that matter for what we measure: durable commits as production has
/// them, logical WAL so a bucket range can be replicated to another shard (with room
/// for a move's table-copy workers, restarted after 200 ms rather than the default 5 s
/// between tables), and enough connections for several API instances.
#[derive(Clone, Debug)]
pub struct Settings {
    pub fsync: bool,
    pub shared_buffers_mb: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            fsync: true,
            shared_buffers_mb: 128,
        }
    }
}

/// A running server as its standbys see it (see `LocalPostgres::upstream`).
pub struct Upstream {
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Upstream {
    /// As `LocalPostgres::require_standby`.
    pub fn require_standby(&self, standbys: &[&str]) -> Result<(), PostgresError> {
        let names = standbys.join(", ");
        psql_at(
            self.port,
            "postgres",
            &format!("ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 ({names})'"),
        )?;
        psql_at(self.port, "postgres", "SELECT pg_reload_conf()").map(|_| ())
    }
}

/// A URL of `database` naming every one of `servers` (libpq's multi-host form), which
/// connects to whichever of them takes writes (`target_session_attrs=read-write`).
pub fn url_across(servers: &[&LocalPostgres], database: &str) -> String {
    let hosts: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    match hosts.len() {
        1 => servers[0].url(database),
        _ => format!(
            "postgres://postgres@{}/{database}?target_session_attrs=read-write",
            hosts.join(",")
        ),
    }
}

pub struct LocalPostgres {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
}

impl LocalPostgres {
    /// `initdb` into `root/data` and start on a free 127.0.0.1 port.
    pub fn start(root: &Path, settings: &Settings) -> Result<LocalPostgres, PostgresError> {
        let bin = bin_dir().ok_or(PostgresError::NotInstalled)?;
        let server = LocalPostgres::in_root(bin, root, running_as_root())?;
        server.run(
            "initdb",
            &[
                "-D",
                &server.data().to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = {}\nsynchronous_commit = on\nwal_level = logical\n\
             max_connections = {CONNECTIONS_MAX}\nshared_buffers = {}MB\n\
             max_replication_slots = 16\nmax_wal_senders = 16\n\
             max_worker_processes = 16\nmax_logical_replication_workers = 8\n\
             max_sync_workers_per_subscription = 4\nwal_retrieve_retry_interval = '200ms'\n",
            server.root.display(),
            if settings.fsync { "on" } else { "off" },
            settings.shared_buffers_mb,
        );
        let conf_path = server.data().join("postgresql.auto.conf");
        std::fs::write(&conf_path, conf).map_err(io_at(&conf_path))?;
        server.start_on_free_port()
    }

    /// A streaming standby of `primary`, cloned by PostgreSQL itself (`pg_basebackup -R`:
    /// a base backup that starts as a standby following `primary`), into `root/data`, on
    /// a free 127.0.0.1 port. `name` is its `application_name` on the primary, the name
    /// `synchronous_standby_names` lists.
    pub fn start_standby(
        primary: &Upstream,
        root: &Path,
        name: &str,
    ) -> Result<LocalPostgres, PostgresError> {
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "standby names are plain identifiers: {name:?}"
        );
        let server = LocalPostgres::in_root(primary.bin.clone(), root, primary.as_postgres)?;
        let port = primary.port.to_string();
        let data = server.data().to_string_lossy().to_string();
        let mut args = superuser_at(&port).to_vec();
        args.extend(["-D", &data, "-R", "-X", "stream", "-c", "fast"]);
        server.run("pg_basebackup", &args)?;
        // The copy holds the primary's settings; the last line of a setting wins.
        let conf_path = server.data().join("postgresql.auto.conf");
        let mut conf = std::fs::read_to_string(&conf_path).map_err(io_at(&conf_path))?;
        conf.push_str(&format!(
            "unix_socket_directories = '{}'\n\
             primary_conninfo = 'host=127.0.0.1 port={port} user=postgres application_name={name}'\n\
             hot_standby = on\nhot_standby_feedback = on\n",
            server.root.display(),
        ));
        std::fs::write(&conf_path, conf).map_err(io_at(&conf_path))?;
        server.start_on_free_port()
    }

    /// What a standby needs of this server: where it is, and how it is run. It does
    /// not own the server (dropping it stops nothing), so it can go to another thread.
    pub fn upstream(&self) -> Upstream {
        Upstream {
            bin: self.bin.clone(),
            port: self.port,
            as_postgres: self.as_postgres,
        }
    }

    /// Acknowledge a commit only once one of `standbys` has flushed it too
    /// (`synchronous_standby_names = 'FIRST 1 (...)'`, with `synchronous_commit = on`).
    /// Set after the standbys are cloned, so a promoted one does not wait for a standby
    /// of its own that does not exist.
    pub fn require_standby(&self, standbys: &[&str]) -> Result<(), PostgresError> {
        self.upstream().require_standby(standbys)
    }

    /// Promote a standby to a primary (`pg_ctl promote`, waiting until it takes writes).
    pub fn promote(&self) -> Result<(), PostgresError> {
        let timeout = START_TIMEOUT.as_secs().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-t",
                &timeout,
                "-w",
                "promote",
            ],
        )
    }

    /// A server not yet started, its files to go under `root` (made, and given to the
    /// postgres user when running as root).
    fn in_root(
        bin: PathBuf,
        root: &Path,
        as_postgres: bool,
    ) -> Result<LocalPostgres, PostgresError> {
        std::fs::create_dir_all(root).map_err(io_at(root))?;
        if as_postgres {
            give_to_postgres(root)?;
        }
        Ok(LocalPostgres {
            bin,
            root: root.to_path_buf(),
            port: 0,
            as_postgres,
            running: false,
        })
    }

    /// Start on a free 127.0.0.1 port, trying another if one is taken meanwhile.
    fn start_on_free_port(mut self) -> Result<LocalPostgres, PostgresError> {
        let mut last = None;
        for _ in 0..START_TRIES_MAX {
            self.port = super::free_port().map_err(io_at(&self.root))?;
            match self.start_again() {
                Ok(()) => return Ok(self),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one try"))
    }

    /// Start a stopped server again on the same port (a shard back after an outage).
    pub fn start_again(&mut self) -> Result<(), PostgresError> {
        let timeout = START_TIMEOUT.as_secs().to_string();
        let options = format!("-p {}", self.port);
        let log = self.root.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-o",
                &options,
                "-l",
                &log.to_string_lossy(),
                "-t",
                &timeout,
                "-w",
                "start",
            ],
        )
        .map_err(|e| match e {
            PostgresError::Command { what, detail } => PostgresError::Command {
                what,
                detail: format!("{detail}\nserver log:\n{}", tail(&log)),
            },
            e => e,
        })?;
        self.running = true;
        Ok(())
    }

    /// Stop at once, as a crash would: no checkpoint, clients cut off.
    pub fn stop(&mut self) -> Result<(), PostgresError> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this server, as the superuser (trust auth, loopback).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Create a database (idempotent).
    pub fn create_database(&self, name: &str) -> Result<(), PostgresError> {
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "database names are plain identifiers: {name:?}"
        );
        let exists = self.psql(&format!(
            "SELECT 1 FROM pg_database WHERE datname = '{name}'"
        ))?;
        if exists.trim() != "1" {
            self.psql(&format!("CREATE DATABASE {name}"))?;
        }
        Ok(())
    }

    /// Run one SQL statement as the superuser; the unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> Result<String, PostgresError> {
        self.psql_in("postgres", sql)
    }

    /// Run one SQL statement in `database` as the superuser.
    pub fn psql_in(&self, database: &str, sql: &str) -> Result<String, PostgresError> {
        psql_at(self.port, database, sql)
    }

    /// `pg_dump` of `database` as plain SQL, data included: what a backup would hold.
    pub fn dump(&self, database: &str) -> Result<String, PostgresError> {
        let program = self.bin.join("pg_dump");
        let out = Command::new(&program)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", database, "--no-owner"])
            .output()
            .map_err(|source| PostgresError::Io {
                path: program,
                source,
            })?;
        checked("pg_dump", out).map(|o| String::from_utf8_lossy(&o.stdout).to_string())
    }

    /// Where the server keeps its files (tables, WAL).
    pub fn data_dir(&self) -> PathBuf {
        self.data()
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), PostgresError> {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = command
            .args(args)
            .current_dir(&self.root)
            .output()
            .map_err(|source| PostgresError::Io { path, source })?;
        checked(program, out).map(|_| ())
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// An I/O error at `path`, as this module reports it.
fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> PostgresError {
    let path = path.to_path_buf();
    move |source| PostgresError::Io { path, source }
}

/// libpq's flags for the superuser of the loopback server on `port`.
fn superuser_at(port: &str) -> [&str; 6] {
    ["-h", "127.0.0.1", "-p", port, "-U", "postgres"]
}

/// Run one SQL statement in `database` of the server on `port`, as the superuser; the
/// unaligned, tuples-only output.
fn psql_at(port: u16, database: &str, sql: &str) -> Result<String, PostgresError> {
    let port = port.to_string();
    let out = Command::new("psql")
        .args(superuser_at(&port))
        .args(["-d", database])
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|source| PostgresError::Io {
            path: "psql".into(),
            source,
        })?;
    checked("psql", out).map(|o| String::from_utf8_lossy(&o.stdout).to_string())
}

fn checked(what: &str, out: Output) -> Result<Output, PostgresError> {
    if out.status.success() {
        return Ok(out);
    }
    Err(PostgresError::Command {
        what: what.to_string(),
        detail: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ),
    })
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The newest installed major version's binaries (Debian keeps them off PATH).
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
    })
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Give `root` to the postgres user, and let it reach `root` through its ancestors
/// (a temp dir is 0700): adds only the traverse bit, never read or write.
fn give_to_postgres(root: &Path) -> Result<(), PostgresError> {
    // `id -u postgres`, `id -g postgres`: the user's uid and primary gid.
    let id = |flag: &str| -> Result<u32, PostgresError> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| PostgresError::NoPostgresUser(e.to_string()))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| {
                PostgresError::NoPostgresUser(
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                )
            })
    };
    let (uid, gid) = (id("-u")?, id("-g")?);
    std::os::unix::fs::chown(root, Some(uid), Some(gid)).map_err(|source| PostgresError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    for dir in root.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 {
            let mut p = meta.permissions();
            p.set_mode(mode | 0o001);
            std::fs::set_permissions(dir, p).map_err(|source| PostgresError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
    }
    Ok(())
}
