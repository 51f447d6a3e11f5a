//! A store that cannot write: a full disk (a small tmpfs under the SQLite files) and a
//! read-only PostgreSQL server. The API answers 503 with Retry-After, acknowledges
//! nothing it did not commit, and writes again once space or permission returns.
//! Mounting a tmpfs needs root, as CI runs; without it the test fails, saying so.

use crate::support::{DataDir, Merchant, PgShards, Server, payment_body, temp_dir};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs this small fills within a few hundred payments (each commit appends its pages
/// to the WAL, which is checkpointed only every ~4 MB).
const SMALL: &str = "3m";
const ROOMY: &str = "64m";
/// Bounds the fill loop; the disk fills long before.
const FILL_PAYMENTS_MAX: usize = 20_000;
/// How long a configuration reload may take to reach the server's sessions.
const RELOAD_WAIT_MAX: Duration = Duration::from_secs(15);

/// A tmpfs mounted on a temp dir, unmounted (lazily: the server may still hold files)
/// when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = temp_dir();
        let mount = |args: &[&str]| {
            Command::new("mount")
                .args(args)
                .arg(dir.path())
                .output()
                .expect("running mount")
        };
        let out = mount(&["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]);
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

async fn pay(server: &Server, m: &Merchant, key: &str, amount: i64) -> (StatusCode, Value, bool) {
    let (status, body, headers) = server
        .call(
            m,
            Method::POST,
            "/v1/payments",
            Some(key),
            Some(payment_body(amount, "usd", true)),
        )
        .await;
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert_eq!(body["error"]["code"], "storage_unwritable", "{body}");
        assert!(headers.contains_key("retry-after"), "{headers:?}");
    }
    (status, body, headers.contains_key("idempotent-replayed"))
}

/// Every acknowledged payment reads back as acknowledged, and the merchant has no other.
async fn assert_exactly(server: &Server, m: &Merchant, acked: &[(String, Value)]) {
    for (key, payment) in acked {
        let path = format!("/v1/payments/{}", payment["id"].as_str().unwrap());
        let (status, read, _) = server.call(m, Method::GET, &path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{key}: {read}");
        assert_eq!(read["amount"], payment["amount"], "{key}");
    }
    let mut listed = 0;
    let mut after = String::new();
    loop {
        let path = format!("/v1/payments?limit=100{after}");
        let (status, page, _) = server.call(m, Method::GET, &path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let data = page["data"].as_array().unwrap();
        listed += data.len();
        match data.last() {
            Some(last) if page["has_more"] == true => {
                after = format!("&starting_after={}", last["id"].as_str().unwrap())
            }
            _ => break,
        }
    }
    assert_eq!(
        listed,
        acked.len(),
        "the store holds exactly what was acknowledged"
    );
    let audit = server.audit().await;
    assert_eq!(audit["ok"], true, "{audit:#}");
}

#[tokio::test]
async fn a_full_disk_answers_503_acknowledges_nothing_it_did_not_commit_and_recovers() {
    let disk = Tmpfs::mount(SMALL);
    let server = Server::start_with(DataDir::at(disk.path().join("data")), &["--shards", "1"]);
    let m = server.create_merchant("full-disk").await;
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..FILL_PAYMENTS_MAX {
        let key = format!("fill-{i}");
        match pay(&server, &m, &key, 100 + i as i64).await {
            (StatusCode::OK, p, _) => acked.push((key, p)),
            (StatusCode::SERVICE_UNAVAILABLE, _, _) => {
                refused = Some((key, 100 + i as i64));
                break;
            }
            (other, body, _) => panic!("{key}: {other} {body}"),
        }
    }
    let (refused_key, amount) = refused.expect("the disk filled");
    assert!(acked.len() >= 10, "only {} payments fit", acked.len());
    // Reads go on while writes cannot.
    let first = format!("/v1/payments/{}", acked[0].1["id"].as_str().unwrap());
    assert_eq!(
        server.call(&m, Method::GET, &first, None, None).await.0,
        StatusCode::OK
    );

    disk.resize(ROOMY);
    // The refused key made nothing: resent, it is made now, not replayed.
    let (status, payment, replayed) = pay(&server, &m, &refused_key, amount).await;
    assert_eq!(status, StatusCode::OK, "{payment}");
    assert!(!replayed, "{payment}");
    acked.push((refused_key, payment));
    // An acknowledged key replays its payment.
    let (key, first) = &acked[0];
    let (status, again, replayed) = pay(&server, &m, key, first["amount"].as_i64().unwrap()).await;
    assert_eq!((status, replayed), (StatusCode::OK, true));
    assert_eq!(again["id"], first["id"]);
    assert_exactly(&server, &m, &acked).await;
}

#[tokio::test]
async fn a_read_only_postgresql_answers_503_and_writes_again_when_writable() {
    let dir = temp_dir();
    let pg = PgShards::start(dir.path());
    let server = Server::start_on_layout(&pg.layout, "adm_read_only_test");
    let m = server.create_merchant("read-only").await;
    let (status, before, _) = pay(&server, &m, "before", 700).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    let mut acked = vec![("before".to_string(), before)];

    let set = |sql: &str| {
        for statement in [sql, "SELECT pg_reload_conf()"] {
            pg.servers[0].psql(statement).unwrap();
        }
    };
    set("ALTER SYSTEM SET default_transaction_read_only = on");
    let started = Instant::now();
    let mut refused = 0;
    loop {
        let (status, body, _) = pay(&server, &m, &format!("ro-{refused}"), 800).await;
        match status {
            StatusCode::SERVICE_UNAVAILABLE => break,
            // Not yet reloaded in that session: a real payment, acknowledged.
            StatusCode::OK => acked.push((format!("ro-{refused}"), body)),
            other => panic!("{other} {body}"),
        }
        refused += 1;
        assert!(started.elapsed() < RELOAD_WAIT_MAX, "never read-only");
    }
    let refused_key = format!("ro-{refused}");
    // Reads go on.
    let path = format!("/v1/payments/{}", acked[0].1["id"].as_str().unwrap());
    assert_eq!(
        server.call(&m, Method::GET, &path, None, None).await.0,
        StatusCode::OK
    );

    set("ALTER SYSTEM RESET default_transaction_read_only");
    let started = Instant::now();
    loop {
        let (status, body, replayed) = pay(&server, &m, &refused_key, 800).await;
        if status == StatusCode::OK {
            assert!(!replayed, "{body}");
            acked.push((refused_key, body));
            break;
        }
        assert!(started.elapsed() < RELOAD_WAIT_MAX, "never writable again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_exactly(&server, &m, &acked).await;
}
