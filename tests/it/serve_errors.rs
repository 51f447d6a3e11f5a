//! `paytool serve` when its data dir is not as it expects, met as a user meets it: a data
//! dir made with other `--shards` (exit 2, saying which), a shard file locked from outside
//! (503 `store_busy` with Retry-After, then success), a corrupt shard file (exit 1 naming it),
//! a full write queue (503 `overloaded` with Retry-After at once, nothing lost), and an
//! answer that waits for its commit.

use crate::support::{BIN, DataDir, Server, payment_body, run_bounded};
use reqwest::{Method, StatusCode};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Longest a `paytool serve` that must refuse to start may take to exit.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(20);
/// The write timeout the busy test gives the server: the busy answer must come first.
const WRITE_TIMEOUT_MS: u64 = 5_000;

/// Run `paytool serve` on `data_dir`, which must refuse to start; its exit and output. A
/// serve that starts instead runs until `REFUSAL_TIMEOUT`, is killed and fails the test.
fn serve_refused(data_dir: &Path, args: &[&str]) -> Output {
    run_bounded(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env_remove("PAYTOOL_ADMIN_TOKEN")
            .env_remove("PAYTOOL_SHARDS"),
        REFUSAL_TIMEOUT,
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_data_dir_made_with_other_shards_exits_2_naming_the_shards_to_use() {
    let server = Server::start_with(DataDir::temp(), &["--shards", "1"]);
    let data = server.into_data();
    let out = serve_refused(data.path(), &["--shards", "2"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&data.path().display().to_string()) && err.contains("--shards 1"),
        "{err}"
    );
}

#[test]
fn a_corrupt_shard_file_exits_1_naming_it() {
    let data = Server::start().into_data();
    let shard = data.path().join("shard-000.db");
    // Damage the header, and drop the write-ahead log, which would otherwise still hold
    // a good copy of the first page.
    let mut bytes = std::fs::read(&shard).unwrap();
    let header = bytes.len().min(100);
    bytes[..header].fill(b'x');
    if bytes.is_empty() {
        bytes = vec![b'x'; 100];
    }
    std::fs::write(&shard, bytes).unwrap();
    for log in ["shard-000.db-wal", "shard-000.db-shm"] {
        let _ = std::fs::remove_file(data.path().join(log));
    }
    let out = serve_refused(data.path(), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&shard.display().to_string()) && err.contains("corrupt"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_locked_from_outside_answers_503_store_busy_then_recovers() {
    let write_timeout = WRITE_TIMEOUT_MS.to_string();
    let server = Server::start_args(&["--write-timeout-ms", &write_timeout]);
    let merchant = server.create_merchant("busy").await;
    let pay = || {
        server.call(
            &merchant,
            Method::POST,
            "/v1/payments",
            Some("busy-1"),
            Some(payment_body(1_000, "usd", false)),
        )
    };

    // Another process (an operator's shell, a backup) holds the shard's write lock.
    let outside = rusqlite::Connection::open(server.data_dir().join("shard-000.db")).unwrap();
    outside.busy_timeout(Duration::from_secs(5)).unwrap();
    outside.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = Instant::now();
    let (status, body, headers) = pay().await;
    let waited = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "store_busy", "{body}");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "Retry-After: {retry_after}");
    assert!(
        waited < Duration::from_millis(WRITE_TIMEOUT_MS),
        "busy was answered after {waited:?}, not before the write timeout"
    );

    // Released: the same request now succeeds (the busy one never committed).
    outside.execute_batch("ROLLBACK").unwrap();
    drop(outside);
    let (status, body, _) = pay().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["amount"], 1_000, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_write_queue_refuses_at_once_with_retry_after_and_loses_nothing() {
    const QUEUE_MAX: usize = 4;
    const SENDS: usize = 40;
    let write_timeout = WRITE_TIMEOUT_MS.to_string();
    let queue_max = QUEUE_MAX.to_string();
    let server = Server::start_args(&[
        "--write-timeout-ms",
        &write_timeout,
        "--queue-max",
        &queue_max,
        "--batch-max",
        "1",
    ]);
    let merchant = server.create_merchant("full").await;

    // The writer is stuck behind an outside lock, so the queue fills and stays full.
    let outside = rusqlite::Connection::open(server.data_dir().join("shard-000.db")).unwrap();
    outside.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..SENDS {
        let (client, url, key) = (
            server.client.clone(),
            server.url("/v1/payments"),
            merchant.key.clone(),
        );
        sends.spawn(async move {
            let started = Instant::now();
            let res = client
                .post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", format!("full-{i}"))
                .json(&payment_body(100 + i as i64, "usd", true))
                .send()
                .await
                .unwrap();
            let status = res.status();
            let retry_after = res.headers().get("retry-after").cloned();
            let body: serde_json::Value = res.json().await.unwrap();
            (i, status, retry_after, body, started.elapsed())
        });
    }
    // Let the queue fill, then release the lock so the queued writes can commit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    outside.execute_batch("ROLLBACK").unwrap();
    drop(outside);

    let (mut overloaded, mut paid) = (0, Vec::new());
    while let Some(done) = sends.join_next().await {
        let (i, status, retry_after, body, took) = done.unwrap();
        match status {
            StatusCode::OK => paid.push(body["id"].as_str().unwrap().to_string()),
            StatusCode::SERVICE_UNAVAILABLE if body["error"]["code"] == "overloaded" => {
                overloaded += 1;
                assert!(retry_after.is_some(), "send {i}: no Retry-After: {body}");
                assert!(
                    took < Duration::from_millis(WRITE_TIMEOUT_MS),
                    "send {i} was refused after {took:?}, not at once"
                );
            }
            // Queued behind the lock and answered busy when the writer gave up on it.
            StatusCode::SERVICE_UNAVAILABLE if body["error"]["code"] == "store_busy" => {}
            other => panic!("send {i}: {other} {body}"),
        }
    }
    assert!(
        overloaded >= SENDS - QUEUE_MAX - 2,
        "only {overloaded} of {SENDS} refused with a queue of {QUEUE_MAX}"
    );
    // Every acknowledged payment is there, and nothing else.
    let audit = server.audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
    assert_eq!(audit["payments"], paid.len(), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_that_times_out_is_learned_by_resending_it_and_never_applied_twice() {
    let server = Server::start_args(&["--write-timeout-ms", "300"]);
    let merchant = server.create_merchant("timeout").await;
    let (status, paid) = server.pay(&merchant, "before", 2_000, true).await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    let id = paid["id"].as_str().unwrap().to_string();
    let refund = format!("/v1/payments/{id}/refunds");
    let send_refund = || {
        server.call(
            &merchant,
            Method::POST,
            &refund,
            Some("refund-1"),
            Some(serde_json::json!({"amount": 500})),
        )
    };

    // A change without a key is refused before anything is written: had it timed out,
    // its client could not have learned the outcome without risking a second refund.
    for path in [
        format!("/v1/payments/{id}/capture"),
        format!("/v1/payments/{id}/cancel"),
        refund.clone(),
    ] {
        let (status, body, _) = server
            .call(&merchant, Method::POST, &path, None, None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "idempotency_key_missing", "{body}");
    }

    // The writer is held up past the write timeout by an outside lock; the refund may
    // still commit once the lock goes (here it does: the writer waits up to 1 s).
    let outside = rusqlite::Connection::open(server.data_dir().join("shard-000.db")).unwrap();
    outside.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (status, body, headers) = send_refund().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "write_timeout", "{body}");
    assert!(headers.contains_key("retry-after"));
    outside.execute_batch("ROLLBACK").unwrap();
    drop(outside);

    // Resent as told, however often: one refund of 500, never two.
    for _ in 0..3 {
        let (status, body, _) = send_refund().await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["amount"], 500, "{body}");
    }
    let (_, read, _) = server
        .call(
            &merchant,
            Method::GET,
            &format!("/v1/payments/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(read["amount_refunded"], 500, "{read}");
    assert_eq!(server.audit().await["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_is_answered_only_after_its_commit_returned() {
    /// Long enough that an answer sent before the commit would surely have arrived.
    const HELD: Duration = Duration::from_millis(500);
    let write_timeout = WRITE_TIMEOUT_MS.to_string();
    let server = Server::start_args(&["--shards", "1", "--write-timeout-ms", &write_timeout]);
    let merchant = server.create_merchant("commit-first").await;
    let file = server.data_dir().join("shard-000.db");

    // While another connection holds the file's write lock, the writer's commit waits.
    let outside = rusqlite::Connection::open(&file).unwrap();
    outside.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let send = {
        let (client, url, key) = (
            server.client.clone(),
            server.url("/v1/payments"),
            merchant.key.clone(),
        );
        tokio::spawn(async move {
            let res = client
                .post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", "commit-first")
                .json(&payment_body(4_200, "usd", true))
                .send()
                .await
                .unwrap();
            (res.status(), res.json::<serde_json::Value>().await.unwrap())
        })
    };
    tokio::time::sleep(HELD).await;
    assert!(
        !send.is_finished(),
        "answered while its commit could not have happened"
    );
    outside.execute_batch("ROLLBACK").unwrap();
    drop(outside);
    let (status, body) = send.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    // The answer came after the commit: a connection of its own finds the row at once.
    let reader = rusqlite::Connection::open(&file).unwrap();
    let found: i64 = reader
        .query_row(
            "SELECT count(*) FROM payments WHERE id = ?1 AND amount = 4200",
            [body["id"].as_str().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(found, 1, "{body}");
}
