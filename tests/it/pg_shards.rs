//! PostgreSQL shards: `paytool shard plan/apply/status` on real servers, and several API
//! instances on one layout behaving as one API.

use crate::support::{PgShards, Server, payment_body, paytool, temp_dir};
use reqwest::StatusCode;
use serde_json::Value;
use std::process::Output;

const TOKEN: &str = "adm_shared_by_every_instance";

fn shard(args: &[&str], layout: &std::path::Path) -> Output {
    let mut all = vec!["shard"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--layout", layout.to_str().unwrap()]);
    paytool(&all)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn plan_apply_status_round_trip_and_apply_is_idempotent() {
    let dir = temp_dir();
    let pg = PgShards::unapplied(dir.path(), 2, false);
    let plan = shard(&["plan", "--output", "json"], &pg.layout);
    assert_eq!(
        plan.status.code(),
        Some(2),
        "changes pending: {}",
        stderr(&plan)
    );
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(
        plan["owner_changes"].as_array().unwrap().len(),
        2,
        "{plan:#}"
    );
    assert_eq!(
        plan["shards"][0]["migrations"].as_array().unwrap().len(),
        paytool::store::postgres::schema::MIGRATIONS.len()
    );

    assert_eq!(shard(&["apply"], &pg.layout).status.code(), Some(0));
    let again = shard(&["plan"], &pg.layout);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("No changes"));
    let second = shard(&["apply", "--output", "json"], &pg.layout);
    assert_eq!(second.status.code(), Some(0));
    let second: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(second["owner_changes"], serde_json::json!([]), "{second:#}");

    let status = shard(&["status", "--output", "json"], &pg.layout);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["moves"], serde_json::json!([]), "{status:#}");
    for (row, buckets) in status["shards"].as_array().unwrap().iter().zip([512, 512]) {
        assert_eq!(row["reachable"], true);
        assert_eq!(row["buckets"], buckets, "{row:#}");
        assert_eq!(row["layout_version"], 1);
        assert_eq!(row["layout_matches"], true);
    }
    // Ownership is recorded by the shards themselves.
    assert_eq!(
        pg.on_shard(1, "SELECT min(bucket), max(bucket) FROM paytool_buckets")
            .trim(),
        "512|1023"
    );
}

#[test]
fn bad_layouts_are_refused_before_anything_changes() {
    let dir = temp_dir();
    let pg = PgShards::unapplied(dir.path(), 2, false);
    let good = pg.layout_text(&[]);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "gap",
            pg.layout_text(&[(0, 500, 0), (512, 1023, 1)]),
            "leave buckets 501-511 without a shard",
        ),
        (
            "overlap",
            pg.layout_text(&[(0, 600, 0), (512, 1023, 1)]),
            "overlap",
        ),
        (
            "bucket count",
            good.replace("buckets = 1024", "buckets = 4096"),
            "fixed at 1024",
        ),
        (
            "unknown shard",
            good.replace("shard = \"s1\"", "shard = \"s9\""),
            "not a shard",
        ),
        (
            "unreachable shard",
            // A port nothing listens on: connection refused at once.
            good.replacen(&format!(":{}/", pg.servers[0].port()), ":9/", 1),
            "unreachable",
        ),
    ];
    let file = dir.path().join("bad.toml");
    for (name, text, want) in cases {
        std::fs::write(&file, text).unwrap();
        for (command, code) in [
            ("plan", 1),
            ("apply", if name == "unreachable shard" { 1 } else { 2 }),
        ] {
            let out = shard(&[command], &file);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(code), "{name}: {command}: {err}");
            assert!(
                err.contains(want),
                "{name}: {command}: wanted {want:?} in {err}"
            );
            assert!(
                err.contains("bad.toml") || name == "unreachable shard",
                "{err}"
            );
        }
    }
    // Nothing changed on either shard: not even the migrations table exists.
    for text in pg.on_each_shard("SELECT to_regclass('paytool_migrations') IS NULL") {
        assert_eq!(text.trim(), "t");
    }
}

/// Two API instances on one 2-shard layout.
struct TwoInstances {
    // Dropped in this order: the instances before the database they use.
    a: Server,
    b: Server,
    pg: PgShards,
    _dir: tempfile::TempDir,
}

fn two_instances() -> TwoInstances {
    let dir = temp_dir();
    let pg = PgShards::unapplied(dir.path(), 2, false);
    pg.apply();
    let a = Server::start_on_layout(&pg.layout, TOKEN);
    let b = Server::start_on_layout(&pg.layout, TOKEN);
    TwoInstances {
        pg,
        a,
        b,
        _dir: dir,
    }
}

#[tokio::test]
async fn a_merchant_made_on_one_instance_pays_through_the_other_at_once() {
    let t = two_instances();
    for i in 0..10 {
        let m = t.a.create_merchant(&format!("m{i}")).await;
        let (status, paid) = t.b.pay(&m, "first", 1200, true).await;
        assert_eq!(status, StatusCode::OK, "{paid}");
        let (status, same) = t.a.pay(&m, "first", 1200, true).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            same["id"], paid["id"],
            "the other instance replays the same payment"
        );
    }
    let audit = t.b.audit().await;
    assert_eq!(audit["ok"], true, "{audit:#}");
    assert_eq!(audit["merchants"], 10);
    // Merchants landed on both shards by their buckets.
    let counts = t.pg.on_each_shard("SELECT COUNT(*) FROM merchants");
    assert!(counts.iter().all(|c| c.trim() != "0"), "{counts:?}");
}

/// The writers of a shard take turns (`writer::COMMIT_TURN_LOCK`): while another session
/// holds the turn, a payment waits for it in PostgreSQL, and is answered once it is free.
#[tokio::test]
async fn a_writer_waits_for_its_turn_on_the_shard_then_commits() {
    use paytool::store::postgres::writer::COMMIT_TURN_LOCK;
    use std::sync::atomic::{AtomicBool, Ordering};
    let t = two_instances();
    let m = t.a.create_merchant("turns").await;
    let holders = [t.pg.client(0).await, t.pg.client(1).await];
    for h in &holders {
        h.execute("BEGIN", &[]).await.unwrap();
        h.execute("SELECT pg_advisory_xact_lock($1)", &[&COMMIT_TURN_LOCK])
            .await
            .unwrap();
    }
    let released = AtomicBool::new(false);
    let pay = async {
        let answer = t.b.pay(&m, "after-the-turn", 1500, true).await;
        (answer, released.load(Ordering::SeqCst))
    };
    let hold = async {
        // Bounded: 200 polls of 50 ms. The writer's session shows up waiting on the lock.
        let mut waiting = false;
        for _ in 0..200 {
            let counts = t.pg.on_each_shard(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE application_name = 'paytool' AND wait_event = 'advisory'",
            );
            if counts.iter().any(|c| c.trim() != "0") {
                waiting = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(waiting, "no writer waited for the turn the tests hold");
        released.store(true, Ordering::SeqCst);
        for h in &holders {
            h.execute("COMMIT", &[]).await.unwrap();
        }
    };
    let (((status, paid), after_release), ()) = tokio::join!(pay, hold);
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert!(
        after_release,
        "the payment was answered while another session held the turn"
    );
    let audit = t.a.audit().await;
    assert_eq!(audit["ok"], true, "{audit:#}");
}

#[tokio::test]
async fn one_key_sent_200_times_at_once_over_two_instances_makes_one_payment() {
    const KEYS: usize = 50;
    const SENDS_PER_KEY: usize = 200;
    let t = two_instances();
    let merchants = [
        t.a.create_merchant("x").await,
        t.a.create_merchant("y").await,
    ];
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    for key in 0..KEYS {
        let merchant = &merchants[key % 2];
        let body = payment_body(100 + key as i64, "usd", key % 3 != 0);
        crate::support::one_key_at_once(
            &client,
            &[&t.a, &t.b],
            merchant,
            &format!("storm-{key}"),
            &body,
            SENDS_PER_KEY,
        )
        .await;
    }
    let per_key = t.pg.on_each_shard(
        "SELECT COUNT(*) FROM (SELECT 1 FROM payments GROUP BY merchant_id, idempotency_key HAVING COUNT(*) > 1) d",
    );
    assert!(per_key.iter().all(|n| n.trim() == "0"), "{per_key:?}");
    let payments: usize =
        t.pg.on_each_shard("SELECT COUNT(*) FROM payments")
            .iter()
            .map(|n| n.trim().parse::<usize>().unwrap())
            .sum();
    assert_eq!(payments, KEYS);
    assert_eq!(t.a.audit().await["ok"], true);
}

/// How long the shard is down, as the issue asks.
const OUTAGE: std::time::Duration = std::time::Duration::from_secs(10);
/// Each request's own bound: an answer must come well before it, never a hang.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

#[tokio::test]
async fn a_stopped_shard_costs_only_its_own_merchants_and_they_recover_without_a_restart() {
    use std::time::{Duration, Instant};
    let dir = temp_dir();
    let mut pg = PgShards::unapplied(dir.path(), 2, true);
    pg.apply();
    let api = Server::start_on_layout(&pg.layout, TOKEN);
    // Merchants on each shard, known from the shards themselves.
    let mut merchants = Vec::new();
    for i in 0..12 {
        merchants.push(api.create_merchant(&format!("m{i}")).await);
    }
    let on_s1 = pg.on_shard(1, "SELECT id FROM merchants");
    let (down, up): (Vec<_>, Vec<_>) = merchants.into_iter().partition(|m| on_s1.contains(&m.id));
    assert!(
        !down.is_empty() && !up.is_empty(),
        "merchants on both shards"
    );

    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap();
    let started = Instant::now();
    let stop_at = Duration::from_secs(2);
    let back_at = stop_at + OUTAGE;
    let end_at = back_at + Duration::from_secs(4);
    // (elapsed, on the stopped shard, status, Retry-After present) for every request.
    let mut seen: Vec<(Duration, bool, u16, bool)> = Vec::new();
    let mut stopped = false;
    let mut restarted = false;
    let mut n = 0u64;
    while started.elapsed() < end_at {
        if !stopped && started.elapsed() >= stop_at {
            pg.servers[1].stop().unwrap();
            stopped = true;
        }
        if !restarted && started.elapsed() >= back_at {
            pg.servers[1].start_again().unwrap();
            restarted = true;
        }
        let mut round = Vec::new();
        for (group, on_stopped) in [(&up, false), (&down, true)] {
            for m in group.iter() {
                n += 1;
                let send = client
                    .post(api.url("/v1/payments"))
                    .bearer_auth(&m.key)
                    .header("Idempotency-Key", format!("k{n}"))
                    .json(&payment_body(500, "usd", true))
                    .send();
                round.push(tokio::spawn(async move {
                    let res = send
                        .await
                        .expect("an answer within the request timeout, never a hang");
                    let retry_after = res.headers().contains_key("retry-after");
                    (on_stopped, res.status().as_u16(), retry_after)
                }));
            }
        }
        for r in round {
            let (on_stopped, status, retry_after) = r.await.unwrap();
            seen.push((started.elapsed(), on_stopped, status, retry_after));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    type Seen = (Duration, bool, u16, bool);
    // Every request in a window must pass `ok`; at least one must fall in it.
    let all_in = |what: &str, window: &dyn Fn(&Seen) -> bool, ok: &dyn Fn(&Seen) -> bool| {
        let picked: Vec<&Seen> = seen.iter().filter(|s| window(s)).collect();
        let bad: Vec<&&Seen> = picked.iter().filter(|s| !ok(s)).take(5).collect();
        assert!(!picked.is_empty() && bad.is_empty(), "{what}: {bad:?}");
    };
    let outage = stop_at + Duration::from_secs(1)..back_at;
    all_in(
        "merchants on the running shard kept getting 2xx",
        &|s| !s.1,
        &|s| s.2 == 200,
    );
    all_in(
        "the stopped shard's merchants get a retryable 503 with Retry-After, never a 500",
        &|s| s.1 && outage.contains(&s.0),
        &|s| s.2 == 503 && s.3,
    );
    all_in(
        "recovered without restarting the API",
        &|s| s.1 && s.0 > back_at + Duration::from_secs(2),
        &|s| s.2 == 200,
    );
    assert_eq!(api.audit().await["ok"], true);
}

#[tokio::test]
async fn an_instance_with_a_stale_layout_is_refused_by_the_shard_and_retries_on_the_owner() {
    use paytool::ids::bucket_of;
    let dir = temp_dir();
    let pg = PgShards::unapplied(dir.path(), 2, false);
    pg.apply();
    // Reads who owns what now: s0 0-511, s1 512-1023.
    let stale = Server::start_on_layout(&pg.layout, TOKEN);
    // Buckets 512-767 hold nothing yet, so `apply` may give them to s0.
    let moved = dir.path().join("moved.toml");
    let text = pg.layout_text(&[(0, 767, 0), (768, 1023, 1)]);
    std::fs::write(&moved, text.replace("version = 1", "version = 2")).unwrap();
    let applied = shard(&["apply"], &moved);
    assert_eq!(applied.status.code(), Some(0), "{}", stderr(&applied));
    let fresh = Server::start_on_layout(&moved, TOKEN);

    // A merchant in the moved range, made through an instance that knows.
    let mut m = fresh.create_merchant("moved").await;
    for i in 0..200 {
        if (512..=767).contains(&bucket_of(&m.id)) {
            break;
        }
        assert!(i < 199, "no merchant landed in buckets 512-767");
        m = fresh.create_merchant("moved").await;
    }
    // The stale instance authenticates it, writes and reads: s1 refuses the bucket inside
    // the transaction, the instance reloads ownership and goes to s0.
    let (status, paid) = stale.pay(&m, "through-stale", 900, true).await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    let id = paid["id"].as_str().unwrap();
    let got = stale
        .call(
            &m,
            reqwest::Method::GET,
            &format!("/v1/payments/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(got.0, StatusCode::OK, "{:?}", got.1);
    // Merchants it creates land by the shards' word too.
    for i in 0..20 {
        stale.create_merchant(&format!("s{i}")).await;
    }
    let misplaced = pg.on_shard(1, "SELECT COUNT(*) FROM merchants WHERE bucket < 768");
    assert_eq!(
        misplaced.trim(),
        "0",
        "a merchant written to a shard that does not own it"
    );
    let on_s0 = pg.on_shard(
        0,
        &format!("SELECT COUNT(*) FROM payments WHERE id = '{id}'"),
    );
    assert_eq!(on_s0.trim(), "1");
    assert_eq!(stale.audit().await["ok"], true);
}

#[tokio::test]
async fn a_write_routed_by_a_stale_view_is_refused_inside_the_transaction_and_rerouted() {
    use paytool::ledger::{Authorization, CardSummary, Currency, Money, Payment};
    use paytool::store::postgres::PgStore;
    use paytool::store::{
        Merchant as StoreMerchant, Mutation, Store, StoredResponse, WriteRequest,
    };
    use std::sync::Arc;
    let dir = temp_dir();
    let pg = PgShards::unapplied(dir.path(), 2, false);
    pg.apply();
    let layout = paytool::profile::shards::load(&pg.layout).unwrap();
    // This store reads ownership once, now: s1 owns 512-1023.
    let store = PgStore::open(
        &layout,
        paytool::store::postgres::PgOptions::new(
            Default::default(),
            std::time::Duration::from_secs(60),
        ),
    )
    .await
    .unwrap();
    let moved = dir.path().join("moved.toml");
    std::fs::write(&moved, pg.layout_text(&[(0, 767, 0), (768, 1023, 1)])).unwrap();
    assert_eq!(shard(&["apply"], &moved).status.code(), Some(0));

    let merchant = Arc::new(StoreMerchant {
        id: "mer_00000000000000000000000000000600".into(),
        name: "stale".into(),
        bucket: 600,
        shard: 0,
        created_ms: 0,
    });
    let card = CardSummary {
        brand: "visa",
        last4: "4242".into(),
        fingerprint: "f".into(),
    };
    let money = Money::new(900, Currency::parse("usd").unwrap()).unwrap();
    let (payment, transfers) = Payment::create(
        "pay_00000000000000000000000000000001".into(),
        merchant.id.clone(),
        money,
        card,
        Authorization::Approved,
        true,
        0,
    )
    .unwrap();
    let answer = store
        .write(WriteRequest {
            merchant,
            idempotency: None,
            mutation: Mutation::Create { payment, transfers },
            render: |_| StoredResponse {
                status: 200,
                body: b"kept".to_vec(),
                replayed: false,
            },
        })
        .await
        .expect("refused by s1, rerouted to s0");
    assert_eq!(answer.body, b"kept");
    let counts = pg.on_each_shard("SELECT COUNT(*) FROM payments WHERE bucket = 600");
    assert_eq!((counts[0].trim(), counts[1].trim()), ("1", "0"));
    store.shutdown();
}

#[test]
fn serve_on_a_layout_refuses_what_it_cannot_serve_naming_the_fix() {
    let dir = temp_dir();
    let pg = PgShards::unapplied(dir.path(), 2, false);
    let layout = pg.layout.to_str().unwrap();
    let data = dir.path().join("data");
    let serve = |token: Option<&str>| {
        let mut cmd = std::process::Command::new(crate::support::BIN);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--layout",
            layout,
            "--data-dir",
        ])
        .arg(&data)
        .env_remove("PAYTOOL_ADMIN_TOKEN");
        if let Some(t) = token {
            cmd.env("PAYTOOL_ADMIN_TOKEN", t);
        }
        crate::support::run_bounded(&mut cmd, crate::support::COMMAND_TIMEOUT)
    };
    let no_token = serve(None);
    assert_eq!(no_token.status.code(), Some(2));
    assert!(
        stderr(&no_token).contains("PAYTOOL_ADMIN_TOKEN"),
        "{}",
        stderr(&no_token)
    );
    let not_applied = serve(Some(TOKEN));
    assert_eq!(not_applied.status.code(), Some(2));
    assert!(
        stderr(&not_applied).contains("paytool shard apply --layout"),
        "{}",
        stderr(&not_applied)
    );
}

/// A shard written before migration 3 kept four postings a checkout and each key's body:
/// rows of that shape (made here from new ones, by SQL) still replay their body as it
/// was kept, byte for byte, audit clean beside new transfers, and take new writes.
#[tokio::test]
async fn rows_kept_before_transfers_replay_and_audit_beside_new_ones() {
    use paytool::ledger::Account;
    let t = two_instances();
    let m = t.a.create_merchant("kept-before").await;
    let http = reqwest::Client::new();
    let send = |server: &Server, path: &str, key: &str, body: Option<Value>| {
        let mut req = http
            .post(server.url(path))
            .bearer_auth(&m.key)
            .header("Idempotency-Key", key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move {
            let res = req.send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        }
    };
    let (status, first) = send(
        &t.a,
        "/v1/payments",
        "old",
        Some(payment_body(1200, "usd", false)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let paid: Value = serde_json::from_str(&first).unwrap();
    let id = paid["id"].as_str().unwrap().to_string();

    // The rows as the earlier release wrote them: each transfer as its two postings, by
    // account name, and the key's answer as a body (another layout of the same JSON, so
    // a replay of it cannot be a rendering).
    let kept = serde_json::to_string_pretty(&paid).unwrap();
    let name = |column: &str| {
        let whens: Vec<String> = Account::ALL
            .iter()
            .map(|a| format!("WHEN {} THEN '{}'", a.code(), a.as_str()))
            .collect();
        format!("CASE {column} {} END", whens.join(" "))
    };
    let to_old_shape = format!(
        "BEGIN;
         INSERT INTO postings (bucket, merchant_id, payment_id, seq, currency, account, amount, created_ms)
           SELECT t.bucket, p.merchant_id, t.payment_id, 2 * t.seq, t.currency, {}, -t.amount,
             t.created_ms FROM transfers t JOIN payments p ON p.id = t.payment_id
           UNION ALL SELECT t.bucket, p.merchant_id, t.payment_id, 2 * t.seq + 1, t.currency, {},
             t.amount, t.created_ms FROM transfers t JOIN payments p ON p.id = t.payment_id;
         DELETE FROM transfers;
         UPDATE idempotency SET body = convert_to('{}', 'UTF8'), payment_id = NULL,
           payment_status = NULL, amount_captured = NULL, amount_refunded = NULL, refund_id = NULL;
         COMMIT;",
        name("from_account"),
        name("to_account"),
        kept.replace('\'', "''")
    );
    for i in 0..2 {
        t.pg.client(i)
            .await
            .batch_execute(&to_old_shape)
            .await
            .unwrap();
    }
    let moved = t.pg.on_each_shard(
        "SELECT (SELECT count(*) FROM postings) || ':' || (SELECT count(*) FROM transfers)",
    );
    assert!(moved.iter().any(|c| c.trim() == "2:0"), "{moved:?}");

    let old_key_again = || {
        send(
            &t.b,
            "/v1/payments",
            "old",
            Some(payment_body(1200, "usd", false)),
        )
    };
    let (status, again) = old_key_again().await;
    assert_eq!(
        (status, again.as_str()),
        (StatusCode::OK, kept.as_str()),
        "the body as kept"
    );
    let audit = t.a.audit().await;
    assert_eq!(audit["ok"], true, "old postings audit: {audit:#}");

    // A new write on the old payment: its transfers beside the old postings.
    let capture = format!("/v1/payments/{id}/capture");
    let (status, captured) = send(&t.a, &capture, "cap", None).await;
    assert_eq!(status, StatusCode::OK, "{captured}");
    let (status, replayed) = send(&t.b, &capture, "cap", None).await;
    assert_eq!(
        (status, &replayed),
        (StatusCode::OK, &captured),
        "rendered again, byte for byte"
    );
    let (_, old_again) = old_key_again().await;
    assert_eq!(
        old_again, kept,
        "the old key still answers what it answered"
    );
    let audit = t.b.audit().await;
    assert_eq!(
        audit["ok"], true,
        "old postings and new transfers: {audit:#}"
    );
    let (status, balance, _) =
        t.a.call(&m, reqwest::Method::GET, "/v1/balance", None, None)
            .await;
    assert_eq!(status, StatusCode::OK, "{balance}");
    assert_eq!(
        balance["available"][0]["amount"], 1200,
        "the capture moved what the old postings held: {balance:#}"
    );
}

/// A transfer whose payment is gone (a row deleted behind the API's back) fails the audit
/// naming the payment, and the audit answers rather than breaking on the merchant the
/// transfer no longer has.
#[tokio::test]
async fn the_audit_names_transfers_whose_payment_is_missing() {
    let t = two_instances();
    let m = t.a.create_merchant("gone").await;
    let (status, paid) = t.a.pay(&m, "gone-1", 1500, true).await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    let id = paid["id"].as_str().unwrap();
    let deleted = t.pg.on_each_shard(&format!(
        "WITH d AS (DELETE FROM payments WHERE id = '{id}' RETURNING 1) SELECT count(*) FROM d"
    ));
    assert!(deleted.iter().any(|n| n.trim() == "1"), "{deleted:?}");
    let audit = t.b.audit().await;
    assert_eq!(audit["ok"], false, "{audit:#}");
    let check = crate::support::named(&audit["checks"], "payment_matches_postings");
    assert_eq!(check["ok"], false, "{audit:#}");
    let named_it = check["violations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v.as_str().unwrap().starts_with(&format!("{id}: ")));
    assert!(named_it, "{audit:#}");
}
