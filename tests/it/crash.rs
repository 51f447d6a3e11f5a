//! Crash safety: SIGKILL the server while payments are in flight, start it again on the
//! same data dir, and check that nothing it acknowledged was lost or doubled.

use crate::support::{Merchant, Server, payment_body};
use paytool::ledger::Account;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server acknowledged (a 2xx) for one payment, last answer wins.
#[derive(Clone, Debug)]
struct Ack {
    merchant: usize,
    key: String,
    amount: i64,
    status: String,
    amount_captured: i64,
    /// A capture sent and not answered: it may or may not have committed.
    capture_in_flight: Option<i64>,
}

/// (merchant index, Idempotency-Key, amount, capture): every create sent, answered or not.
type SentKey = (usize, String, i64, bool);

const CLIENTS: usize = 24;
/// Bounds each client's loop; the kill normally ends it much sooner.
const REQUESTS_PER_CLIENT_MAX: usize = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_payment() {
    let server = Server::start_args(&["--shards", "2"]);
    let mut merchants = Vec::new();
    for i in 0..4 {
        merchants.push(server.create_merchant(&format!("crash-{i}")).await);
    }
    let merchants = Arc::new(merchants);
    let acks: Arc<Mutex<HashMap<String, Ack>>> = Arc::default();
    let sent_keys: Arc<Mutex<Vec<SentKey>>> = Arc::default();
    let server = Arc::new(server);

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (server, merchants, acks, sent_keys) = (
            server.clone(),
            merchants.clone(),
            acks.clone(),
            sent_keys.clone(),
        );
        clients.push(tokio::spawn(async move {
            for i in 0..REQUESTS_PER_CLIENT_MAX {
                let m = (c + i) % merchants.len();
                let key = format!("crash-{c}-{i}");
                let amount = 100 + (i as i64 % 900);
                let capture = i % 3 != 0;
                sent_keys
                    .lock()
                    .unwrap()
                    .push((m, key.clone(), amount, capture));
                let Some((status, body)) =
                    try_pay(&server, &merchants[m], &key, amount, capture).await
                else {
                    return;
                };
                if !status.is_success() {
                    continue;
                }
                let id = body["id"].as_str().unwrap().to_string();
                acks.lock()
                    .unwrap()
                    .insert(id.clone(), ack(m, &key, amount, &body));
                if !capture {
                    // Capture part of it later: a second acknowledged change to the same payment.
                    let path = format!("/v1/payments/{id}/capture");
                    let capture_body = serde_json::json!({ "amount": amount / 2 });
                    acks.lock().unwrap().get_mut(&id).unwrap().capture_in_flight = Some(amount / 2);
                    let Ok(res) = server
                        .client
                        .post(server.url(&path))
                        .bearer_auth(&merchants[m].key)
                        .json(&capture_body)
                        .send()
                        .await
                    else {
                        return;
                    };
                    if res.status().is_success() {
                        let Ok(body) = res.json::<Value>().await else {
                            return;
                        };
                        acks.lock().unwrap().insert(id, ack(m, &key, amount, &body));
                    }
                }
            }
        }));
    }

    // Let the load build, then pull the plug with requests in flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let acked_before_kill = acks.lock().unwrap().len();
    assert!(
        acked_before_kill > 50,
        "too little traffic before the kill: {acked_before_kill}"
    );
    let data = {
        // The clients still hold the server, so kill it by pid.
        let pid = server.pid().to_string();
        let killed = tokio::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .await
            .unwrap();
        assert!(killed.success());
        for c in clients {
            c.await.unwrap();
        }
        Arc::try_unwrap(server)
            .ok()
            .expect("clients are done")
            .into_data()
    };
    let acks = acks.lock().unwrap().clone();
    let sent_keys = sent_keys.lock().unwrap().clone();
    let merchants = Arc::try_unwrap(merchants).unwrap();

    let server = Server::start_with(data, &["--shards", "2"]);
    // Every acknowledged payment is there, with the amount and state it was acknowledged in.
    for (id, ack) in &acks {
        let (status, body, _) = server
            .call(
                &merchants[ack.merchant],
                Method::GET,
                &format!("/v1/payments/{id}"),
                None,
                None,
            )
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "acknowledged payment {id} is missing after the crash"
        );
        assert_eq!(body["amount"], ack.amount, "{id}");
        let as_acked =
            body["status"] == ack.status.as_str() && body["amount_captured"] == ack.amount_captured;
        let unanswered_capture_kept = ack
            .capture_in_flight
            .is_some_and(|c| body["status"] == "succeeded" && body["amount_captured"] == c);
        assert!(
            as_acked || unanswered_capture_kept,
            "{id}: acknowledged {ack:?}, found {body}"
        );
    }
    // Every key sent, answered or not, names exactly one payment: replaying it twice gives
    // the same payment, and for acknowledged keys the one that was acknowledged.
    let by_key: HashMap<&str, &str> = acks
        .iter()
        .map(|(id, a)| (a.key.as_str(), id.as_str()))
        .collect();
    for (m, key, amount, capture) in &sent_keys {
        let first = server.pay(&merchants[*m], key, *amount, *capture).await;
        let second = server.pay(&merchants[*m], key, *amount, *capture).await;
        let id_of = |b: &Value| b["id"].as_str().map(str::to_string);
        assert!(first.0.is_success(), "{key}: {:?}", first.1);
        assert_eq!(id_of(&first.1), id_of(&second.1), "{key} made two payments");
        if let Some(acked) = by_key.get(key.as_str()) {
            assert_eq!(
                id_of(&first.1).as_deref(),
                Some(*acked),
                "{key} replays another payment"
            );
        }
    }
    let audit = server.audit().await;
    assert_eq!(audit["ok"], true, "{audit:#}");
    // And, reading the files directly, the ledger holds together on every shard.
    assert_ledger_on_disk(&server);
    println!(
        "acknowledged {} payments before SIGKILL; {} keys replayed",
        acks.len(),
        sent_keys.len()
    );
}

async fn try_pay(
    server: &Server,
    merchant: &Merchant,
    key: &str,
    amount: i64,
    capture: bool,
) -> Option<(StatusCode, Value)> {
    let res = server
        .client
        .post(server.url("/v1/payments"))
        .bearer_auth(&merchant.key)
        .header("Idempotency-Key", key)
        .json(&payment_body(amount, "usd", capture))
        .send()
        .await
        .ok()?;
    let status = res.status();
    Some((status, res.json().await.ok()?))
}

fn ack(merchant: usize, key: &str, amount: i64, body: &Value) -> Ack {
    Ack {
        merchant,
        key: key.to_string(),
        amount,
        status: body["status"].as_str().unwrap().to_string(),
        amount_captured: body["amount_captured"].as_i64().unwrap(),
        capture_in_flight: None,
    }
}

/// Read from the store's own files, past the server: every merchant's pending and
/// available balance equals what its transfers add up to, so no write was half kept
/// (each transfer balances by its shape); on PostgreSQL through `ledger_entries`, which
/// also sums to zero per currency.
pub fn assert_ledger_on_disk(server: &Server) {
    if let Some(pg) = server.pg() {
        let sums = pg.on_each_shard(
            "SELECT currency || ' ' || SUM(amount) FROM ledger_entries GROUP BY currency",
        );
        for (shard, text) in sums.iter().enumerate() {
            for line in text.lines() {
                assert!(line.ends_with(" 0"), "shard {shard}: entries {line}");
            }
        }
        assert!(
            sums.iter().any(|s| !s.trim().is_empty()),
            "no transfers on any shard"
        );
        let unequal = pg.on_each_shard(
            "SELECT count(*) FROM (SELECT merchant_id, currency, \
               CASE account WHEN 1 THEN 'merchant_pending' ELSE 'merchant_available' END AS name, \
               SUM(amount) AS sum FROM ledger_entries WHERE account IN (1, 2) \
               GROUP BY merchant_id, currency, account) e \
             FULL JOIN (SELECT * FROM balances \
               WHERE account IN ('merchant_pending', 'merchant_available')) b \
             ON b.merchant_id = e.merchant_id AND b.currency = e.currency AND b.account = e.name \
             WHERE COALESCE(e.sum, 0) <> COALESCE(b.amount, 0)",
        );
        assert!(
            unequal.iter().all(|n| n.trim() == "0"),
            "balances unlike their transfers: {unequal:?}"
        );
        return;
    }
    let data_dir = server.data_dir();
    let mut shards = 0;
    let mut transfers = 0;
    for entry in std::fs::read_dir(data_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !(name.starts_with("shard-") && name.ends_with(".db")) {
            continue;
        }
        shards += 1;
        let conn = rusqlite::Connection::open(&path).unwrap();
        transfers += conn
            .query_row("SELECT COUNT(*) FROM transfers", [], |r| r.get::<_, i64>(0))
            .unwrap();
        let orphans: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM transfers t \
                 WHERE NOT EXISTS (SELECT 1 FROM payments p WHERE p.id = t.payment_id)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0, "{name}: transfers of no payment");
        let mut sums: HashMap<(String, String, String), i64> = HashMap::new();
        let mut stmt = conn
            .prepare(
                "SELECT p.merchant_id, t.currency, t.account, SUM(t.amount) FROM ( \
                   SELECT payment_id, currency, from_account AS account, -amount AS amount FROM transfers \
                   UNION ALL SELECT payment_id, currency, to_account, amount FROM transfers) t \
                 JOIN payments p ON p.id = t.payment_id GROUP BY 1, 2, 3",
            )
            .unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let account = Account::from_code(r.get(2).unwrap()).expect("a known account code");
            if matches!(
                account,
                Account::MerchantPending | Account::MerchantAvailable
            ) {
                let key = (
                    r.get(0).unwrap(),
                    r.get(1).unwrap(),
                    account.as_str().to_string(),
                );
                sums.insert(key, r.get(3).unwrap());
            }
        }
        let mut stmt = conn
            .prepare(
                "SELECT merchant_id, currency, account, amount FROM balances \
                 WHERE account IN ('merchant_pending', 'merchant_available')",
            )
            .unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let key: (String, String, String) =
                (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap());
            let balance: i64 = r.get(3).unwrap();
            let sum = sums.remove(&key).unwrap_or(0);
            assert_eq!(sum, balance, "{name}: {key:?}: transfers add up to {sum}");
        }
        for (key, sum) in sums {
            assert_eq!(sum, 0, "{name}: {key:?}: transfers with no balance");
        }
    }
    assert!(transfers > 0, "no transfers on any shard");
    assert!(shards > 0, "no shard files in {}", data_dir.display());
}
