//! No card number anywhere: every test card paid through a load test and by hand, then
//! card numbers sent in every field, in wrong types, in paths, queries and headers to
//! every route; not one answer echoes one. Then every file the store wrote (SQLite files
//! and their WAL, a PostgreSQL dump and its data dir), every Redis key and value, the
//! server's debug log and every report file is searched: zero hits.

use crate::support::{DataDir, Merchant, PgShards, Server, loadtest, passed_summary, temp_dir};
use paytool::ledger::cards::TEST_CARDS;
use paytool::services::redis::LocalRedis;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;

const TOKEN: &str = "adm_card_scan_test_token_000000000000";

/// Every test card's digits, and the spaced form people type.
fn numbers() -> Vec<String> {
    let mut all: Vec<String> = TEST_CARDS.iter().map(|(n, _)| n.to_string()).collect();
    all.push("4242 4242 4242 4242".into());
    all
}

fn assert_none_in(text: &str, where_: &str) {
    for n in numbers() {
        assert!(!text.contains(&n), "{where_} holds card number {n}");
    }
}

/// Search every file under `dir`, bytes as they are on disk.
fn assert_no_file_holds(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_no_file_holds(&path);
        } else if let Ok(bytes) = std::fs::read(&path) {
            assert_none_in(
                &String::from_utf8_lossy(&bytes),
                &path.display().to_string(),
            );
        }
    }
}

/// One request as a client may send it: anything in the path, the header and the body.
async fn send(
    server: &Server,
    method: Method,
    path: &str,
    auth: &str,
    key: Option<&str>,
    body: Option<String>,
) -> (u16, String) {
    let mut req = server
        .client
        .request(method, server.url(path))
        .bearer_auth(auth);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = format!("{:?}", res.headers());
    let text = res.text().await.unwrap();
    (status, format!("{headers}\n{text}"))
}

/// Pay with every test card; each answer shows the last four digits only.
async fn pay_with_every_card(server: &Server, m: &Merchant) {
    for (i, (number, _)) in TEST_CARDS.iter().enumerate() {
        let body = json!({"amount": 1000 + i, "currency": "usd",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}});
        let (status, text) = send(
            server,
            Method::POST,
            "/v1/payments",
            &m.key,
            Some(&format!("every-card-{i}")),
            Some(body.to_string()),
        )
        .await;
        assert!(status == 200 || status == 402, "{number}: {status} {text}");
        assert_none_in(&text, &format!("the answer to a payment with {number}"));
        assert!(text.contains(&number[number.len() - 4..]), "{text}");
    }
}

/// A request to send: method, path, bearer, Idempotency-Key, body.
type Send = (Method, String, String, Option<String>, Option<String>);

/// Card numbers where no card number belongs, on every route: answered, never echoed,
/// never a 5xx.
async fn send_card_numbers_everywhere(server: &Server, m: &Merchant) {
    let (_, paid) = send(
        server,
        Method::POST,
        "/v1/payments",
        &m.key,
        Some("hostile-base"),
        Some(
            json!({"amount": 500, "currency": "usd", "capture": false,
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034}})
            .to_string(),
        ),
    )
    .await;
    let id = paid
        .split("\"id\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a payment id")
        .to_string();
    let pan = "4242424242424242";
    let card = |number: Value| json!({"number": number, "exp_month": 12, "exp_year": 2034});
    let payment = |field: &str, value: Value| {
        let mut body = json!({"amount": 500, "currency": "usd", "card": card(json!(pan))});
        body[field] = value;
        body.to_string()
    };
    let pan_number: Value = serde_json::from_str(pan).unwrap();
    let mut sends: Vec<Send> = Vec::new();
    let merchant = |path: &str, key: Option<&str>, body: Option<String>| {
        (
            if body.is_some() {
                Method::POST
            } else {
                Method::GET
            },
            path.to_string(),
            m.key.clone(),
            key.map(str::to_string),
            body,
        )
    };
    for (i, body) in [
        payment("amount", pan_number.clone()),
        payment("amount", json!(pan)),
        payment("currency", json!(pan)),
        payment("capture", json!(pan)),
        payment("card", card(pan_number.clone())),
        payment(
            "card",
            json!({"number": pan, "exp_month": pan_number, "exp_year": 2034}),
        ),
        payment(
            "card",
            json!({"number": pan, "exp_month": 12, "exp_year": pan_number}),
        ),
        payment(
            "card",
            json!({"number": pan, "exp_month": 12, "exp_year": 2034, "cvc": pan}),
        ),
        payment(
            "card",
            json!({"number": "4242 4242 4242 4242", "exp_month": 13, "exp_year": 2034}),
        ),
        payment("card", json!(pan)),
        payment(pan, json!(1)),
        pan.to_string(),
        format!("\"{pan}\""),
        format!("[{pan}]"),
        format!("{{\"amount\": {pan}"),
    ]
    .into_iter()
    .enumerate()
    {
        sends.push(merchant(
            "/v1/payments",
            Some(&format!("hostile-{i}")),
            Some(body),
        ));
    }
    for key in [
        pan.to_string(),
        format!("retry-{pan}"),
        "4242-4242-4242-4242".into(),
    ] {
        sends.push(merchant(
            "/v1/payments",
            Some(&key),
            Some(payment("amount", json!(700))),
        ));
    }
    for path in [
        format!("/v1/payments/{pan}"),
        format!("/v1/payments?limit={pan}"),
        format!("/v1/payments?starting_after={pan}"),
        format!("/v1/payments?{pan}=1"),
        format!("/v1/balance?{pan}=1"),
        format!("/{pan}"),
    ] {
        sends.push(merchant(&path, None, None));
    }
    for (path, body) in [
        (
            format!("/v1/payments/{pan}/capture"),
            json!({"amount": 100}),
        ),
        (
            format!("/v1/payments/{id}/capture"),
            json!({"amount": pan_number}),
        ),
        (format!("/v1/payments/{id}/refunds"), json!({"amount": pan})),
        (format!("/v1/payments/{id}/cancel"), json!({pan: 1})),
    ] {
        sends.push(merchant(
            &path,
            Some("hostile-change"),
            Some(body.to_string()),
        ));
    }
    for auth in [pan.to_string(), format!("sk_test_{pan}")] {
        sends.push((Method::GET, "/v1/balance".into(), auth, None, None));
    }
    for (path, body) in [
        ("/v1/merchants".to_string(), json!({"name": pan})),
        (
            "/v1/merchants".to_string(),
            json!({"name": format!("Shop {pan}")}),
        ),
        (
            "/v1/merchants".to_string(),
            json!({"name": "Shop 4242 4242 4242 4242"}),
        ),
        ("/v1/merchants".to_string(), json!({"name": pan_number})),
        (format!("/v1/admin/merchants/{pan}/roll_key"), json!({})),
        (
            "/v1/admin/payments/lookup".to_string(),
            json!({"payments": [{"merchant_id": pan, "id": pan}]}),
        ),
    ] {
        sends.push((
            Method::POST,
            path,
            TOKEN.to_string(),
            None,
            Some(body.to_string()),
        ));
    }
    for (method, path, auth, key, body) in sends {
        let what = format!("{method} {path} key {key:?} body {body:?}");
        let (status, text) = send(server, method, &path, &auth, key.as_deref(), body).await;
        assert!(status < 500, "{what}: {status} {text}");
        assert_none_in(&text, &format!("the answer to {what}"));
    }
}

#[tokio::test]
async fn no_card_number_is_kept_in_sqlite_redis_logs_or_reports() {
    let dir = temp_dir();
    let redis = LocalRedis::start(&dir.path().join("redis"))
        .unwrap_or_else(|e| panic!("this test needs Redis (scripts/install-services.sh): {e}"));
    let log = dir.path().join("serve.log");
    let data = dir.path().join("data");
    let mut server = Server::spawn_logged(
        DataDir::at(data.clone()),
        &["--shards", "2", "--redis", &redis.url(), "--log", "debug"],
        Some(TOKEN),
        &[],
        Some(&log),
    );
    let reports = dir.path().join("reports");
    let out = loadtest(
        &[
            "-p",
            concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/smoke.toml"),
            "--target",
            &server.base,
            "--run-time",
            "3s",
            "--report-dir",
            reports.to_str().unwrap(),
            "--output",
            "json",
        ],
        Some(TOKEN),
    );
    passed_summary(&out);
    assert_none_in(
        &format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        "the load test's output",
    );
    let m = server.create_merchant("every-card").await;
    pay_with_every_card(&server, &m).await;
    send_card_numbers_everywhere(&server, &m).await;

    // Every Redis key and value.
    let mut c = crate::support::redis_connection(&redis.url()).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(keys.len() > 100, "the cache was used: {} keys", keys.len());
    for chunk in keys.chunks(500) {
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(chunk)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_none_in(&chunk.join(" "), "Redis keys");
        for v in values.into_iter().flatten() {
            assert_none_in(&String::from_utf8_lossy(&v), "a Redis value");
        }
    }
    server.terminate();
    assert_no_file_holds(&data);
    assert_no_file_holds(&reports);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.lines().count() > 100, "a debug log");
    assert_none_in(&logged, "the server's debug log");
}

#[tokio::test]
async fn no_card_number_is_kept_in_postgresql() {
    let dir = temp_dir();
    let pg = PgShards::start(&dir.path().join("pg"));
    let log = dir.path().join("serve.log");
    let mut server = Server::spawn_logged(
        DataDir::temp(),
        &["--layout", pg.layout.to_str().unwrap(), "--log", "debug"],
        Some(TOKEN),
        &[],
        Some(&log),
    );
    for i in 0..4 {
        let m = server.create_merchant(&format!("pg-cards-{i}")).await;
        pay_with_every_card(&server, &m).await;
        if i == 0 {
            send_card_numbers_everywhere(&server, &m).await;
        }
    }
    server.terminate();
    for (server, db) in &pg.shards {
        let dump = pg.servers[*server].dump(db).unwrap();
        assert!(dump.contains("COPY"), "a dump with data");
        assert_none_in(&dump, &format!("the dump of {db}"));
    }
    for s in &pg.servers {
        assert_no_file_holds(&s.data_dir());
    }
    assert_none_in(
        &std::fs::read_to_string(&log).unwrap(),
        "the server's debug log",
    );
}
