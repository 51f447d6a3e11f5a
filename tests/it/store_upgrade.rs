//! A data dir written by an earlier release opens in this one and loses nothing: the
//! fixture `tests/fixtures/data-dir-v1` was made by paytool at af07e51, whose SQLite
//! shards kept postings and each idempotency key's body
//! (`tests/fixtures/make-data-dir-v1.sh`). Every key it answered replays byte for byte,
//! its ledger passes the audit beside transfers written now, and the upgrade runs once.

use crate::support::{DataDir, Merchant, Req, Server, json_stdout, paytool, post, temp_dir};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/data-dir-v1");

/// The fixture in `to`, its keys made young again: the retention (30 days at most)
/// would otherwise prune them, whatever date the test runs on.
fn fixture_copy(to: &Path) {
    for entry in std::fs::read_dir(FIXTURE).unwrap() {
        let from = entry.unwrap().path();
        std::fs::copy(&from, to.join(from.file_name().unwrap())).unwrap();
    }
    let conn = shard_file(to);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let kept = conn
        .execute("UPDATE idempotency SET created_ms = ?1", [now])
        .unwrap();
    assert_eq!(kept, 5, "the fixture's keys");
}

fn recorded() -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURE}.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn shard_file(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("shard-000.db")).unwrap()
}

fn page_size(dir: &Path) -> i64 {
    shard_file(dir)
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap()
}

fn payments_sql(dir: &Path) -> String {
    shard_file(dir)
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'payments'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

fn shard_tables(dir: &Path) -> Vec<String> {
    let conn = shard_file(dir);
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Replay every key the old release answered: its status and body, byte for byte.
async fn replay_all(server: &Server, m: &Merchant, answers: &[Value]) {
    for a in answers {
        let req = post(a["path"].as_str().unwrap())
            .body(a["request"].as_str().unwrap().to_string())
            .key(a["key"].as_str().unwrap());
        let (status, text, headers) = server.send(m, &req).await;
        assert_eq!(status.as_u16(), a["status"], "{}: {text}", a["key"]);
        assert_eq!(text, a["body"].as_str().unwrap(), "{}", a["key"]);
        assert_eq!(headers["idempotent-replayed"], "true", "{}", a["key"]);
    }
}

#[tokio::test]
async fn a_data_dir_from_the_release_before_opens_replays_and_audits() {
    let dir = temp_dir();
    fixture_copy(dir.path());
    let before = shard_tables(dir.path());
    assert_eq!(page_size(dir.path()), 4096, "the fixture's pages");
    assert!(before.contains(&"idempotency".to_string()), "{before:?}");
    assert!(before.contains(&"postings".to_string()), "{before:?}");
    let recorded = recorded();
    let answers = recorded["answers"].as_array().unwrap();
    let m = Merchant {
        id: recorded["merchant"].as_str().unwrap().to_string(),
        key: recorded["secret_key"].as_str().unwrap().to_string(),
    };

    // Read-only commands cannot upgrade it, and say what to do. The fixture's payments
    // were made on a fixed day, so the seed reads ten years back: its default (the last
    // 24 hours) left them out once the fixture was a day old.
    let path = dir.path().to_str().unwrap();
    let seed = [
        "cache",
        "seed",
        "--dry-run",
        "--since",
        "3650d",
        "--output",
        "json",
        "--data-dir",
        path,
    ];
    let refused = paytool(&seed);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("written by an earlier paytool") && stderr.contains("paytool serve"),
        "{stderr}"
    );

    let mut server = Server::start_with(DataDir::at(dir.path().to_path_buf()), &[]);
    replay_all(&server, &m, answers).await;
    // The old payment as it stands, and new writes beside the old ones.
    let id = recorded["payment"].as_str().unwrap();
    let old = server
        .ok(&m, &crate::support::get(format!("/v1/payments/{id}")))
        .await;
    assert_eq!(
        (&old["amount_captured"], &old["amount_refunded"]),
        (&Value::from(4000), &Value::from(1500))
    );
    let refund = post(format!("/v1/payments/{id}/refunds"))
        .body(r#"{"amount":500}"#)
        .key("after-upgrade-refund");
    let new_refund = server.ok(&m, &refund).await;
    assert_eq!(new_refund["amount"], 500);
    let new_payment: Req = crate::support::create(crate::support::payment_body(900, "usd", true))
        .key("after-upgrade-create");
    let created = server.ok(&m, &new_payment).await;
    let audit = server.audit().await;
    assert_eq!(audit["ok"], true, "{audit:#}");
    assert_eq!(audit["payments"], 4, "{audit:#}");

    // The keys moved into the new table, and the upgrade is not run twice.
    let after = shard_tables(dir.path());
    assert!(!after.contains(&"idempotency".to_string()), "{after:?}");
    assert!(after.contains(&"idempotency_keys".to_string()), "{after:?}");
    assert!(after.contains(&"transfers".to_string()), "{after:?}");
    assert_eq!(server.terminate().code(), Some(0));
    // A file keeps the page size it was made with (WAL mode cannot change it).
    assert_eq!(page_size(dir.path()), 4096);
    // Its status check is now comparisons, as in a new file (schema::upgrade_status_check).
    let sql = payments_sql(dir.path());
    assert!(
        sql.contains("CHECK (status = 'requires_capture' OR") && !sql.contains(" IN ("),
        "{sql}"
    );
    // Upgraded, it reads: the four payments, old and new.
    let dry = json_stdout(&paytool(&seed));
    assert_eq!(dry["payments"], 4, "{dry:#}");
    let server = Server::start_with(DataDir::at(dir.path().to_path_buf()), &[]);
    replay_all(&server, &m, answers).await;
    let (status, text, _) = server.send(&m, &refund).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), new_refund);
    let (_, text, _) = server.send(&m, &new_payment).await;
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), created);
    let audit = server.audit().await;
    assert_eq!(audit["ok"], true, "{audit:#}");
}

#[tokio::test]
async fn a_new_shard_file_is_made_with_2_kib_pages() {
    let server = Server::start();
    let m = server.create_merchant("pages").await;
    server
        .ok(
            &m,
            &crate::support::create(crate::support::payment_body(700, "eur", true)).key("p1"),
        )
        .await;
    assert_eq!(page_size(server.data_dir()), 2048);
    let audit = server.audit().await;
    assert_eq!(audit["ok"], true, "{audit:#}");
}
