//! `paytool serve --redis`: Redis in front of the store, checked through HTTP, through
//! Redis itself and through /metrics, with a real `redis-server` each test starts.

use crate::support::{Merchant, PgShards, Server, temp_dir};
use paytool::services::redis::LocalRedis;
use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long a test waits for Redis to be used again after it came back.
const RECOVERY_WAIT: Duration = Duration::from_secs(10);

fn redis(dir: &std::path::Path) -> LocalRedis {
    LocalRedis::start(&dir.join("redis"))
        .unwrap_or_else(|e| panic!("the cache tests need Redis (scripts/install-services.sh): {e}"))
}

async fn keys(r: &LocalRedis, pattern: &str) -> Vec<String> {
    let mut c = crate::support::redis_connection(&r.url()).await;
    let mut keys: Vec<String> = c.keys(pattern).await.unwrap();
    keys.sort();
    keys
}

/// The value of one counter or gauge line on /metrics (0 when absent).
async fn metric(api: &Server, m: &Merchant, line_start: &str) -> f64 {
    let (_, text, _) = api.call(m, Method::GET, "/metrics", None, None).await;
    text.as_str()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Reads of one payment that the cache failed (a timeout on a loaded machine, its
/// breaker open) before one reaches Redis, at most.
const CACHE_READ_TRIES: usize = 5;

/// Reads one payment through the API until a read reaches Redis: whether that read was
/// a hit. A read the cache failed proves nothing, so it is made again once the breaker
/// lets a call through; a miss that reached Redis is the answer.
async fn first_answered_read_hits(api: &Server, m: &Merchant, id: &str) -> bool {
    let hit = "paytool_cache_requests_total{kind=\"payment\",result=\"hit\"}";
    let failed = async || {
        metric(api, m, "paytool_cache_errors_total").await
            + metric(api, m, "paytool_cache_skipped_total").await
    };
    for _ in 0..CACHE_READ_TRIES {
        let (hits, failures) = (metric(api, m, hit).await, failed().await);
        let (status, body) = get_payment(api, m, id).await;
        assert_eq!(status, StatusCode::OK, "{body:#}");
        if metric(api, m, hit).await > hits {
            return true;
        }
        if failed().await == failures {
            return false;
        }
        tokio::time::sleep(paytool::cache::breaker::COOLDOWN).await;
    }
    panic!("the cache failed all {CACHE_READ_TRIES} reads of {id}");
}

async fn get_payment(api: &Server, m: &Merchant, id: &str) -> (StatusCode, Value) {
    let (status, body, _) = api
        .call(m, Method::GET, &format!("/v1/payments/{id}"), None, None)
        .await;
    (status, body)
}

#[tokio::test]
async fn reads_and_replays_come_from_redis_and_always_match_the_store() {
    let dir = temp_dir();
    let r = redis(dir.path());
    let api = Server::start_args(&["--redis", &r.url()]);
    let m = api.create_merchant("m").await;
    let (status, first) = api.pay(&m, "k1", 1234, false).await;
    assert_eq!(status, StatusCode::OK, "{first:#}");
    let id = first["id"].as_str().unwrap().to_string();

    // Read through: the first read fills the cache, the second is a hit, both the same.
    let (_, a) = get_payment(&api, &m, &id).await;
    let (_, b) = get_payment(&api, &m, &id).await;
    assert_eq!(a, b);
    assert_eq!(a["status"], "requires_capture");
    let hit = "paytool_cache_requests_total{kind=\"payment\",result=\"hit\"}";
    assert!(metric(&api, &m, hit).await >= 1.0);
    // Under the prefix, one hash tag per merchant.
    let cached = keys(&r, &format!("paytool:{{{}}}:*", m.id)).await;
    for kind in [format!(":pay:{id}"), ":idem:k1".into(), ":key:".into()] {
        assert!(
            cached.iter().any(|k| k.contains(&kind)),
            "{kind} in {cached:?}"
        );
    }

    // A write changes what the next read sees at once.
    let (status, captured, _) = api
        .call(
            &m,
            Method::POST,
            &format!("/v1/payments/{id}/capture"),
            Some("cap1"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{captured:#}");
    let (_, after) = get_payment(&api, &m, &id).await;
    assert_eq!(after["status"], "succeeded");
    assert_eq!(after["amount_captured"], 1234);

    // A replay from the cache is byte for byte the stored answer; another body under the
    // same key is for the store to refuse.
    let send = |amount: i64| {
        api.client
            .post(api.url("/v1/payments"))
            .bearer_auth(&m.key)
            .header("Idempotency-Key", "k1")
            .json(&crate::support::payment_body(amount, "usd", false))
            .send()
    };
    let replay = send(1234).await.unwrap();
    assert_eq!(replay.status(), StatusCode::OK);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replayed: Value = replay.json().await.unwrap();
    assert_eq!(replayed, first);
    let idem_hit = "paytool_cache_requests_total{kind=\"idempotency\",result=\"hit\"}";
    assert!(metric(&api, &m, idem_hit).await >= 1.0);
    let reused = send(999).await.unwrap();
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    let reused: Value = reused.json().await.unwrap();
    assert_eq!(
        reused["error"]["code"], "idempotency_key_reused",
        "{reused:#}"
    );
}

#[tokio::test]
async fn with_redis_down_the_api_serves_from_the_store_and_uses_redis_again_when_it_returns() {
    let dir = temp_dir();
    let mut r = redis(dir.path());
    let api = Server::start_args(&["--redis", &r.url()]);
    let m = api.create_merchant("m").await;
    let (_, paid) = api.pay(&m, "before", 500, true).await;
    let id = paid["id"].as_str().unwrap().to_string();
    assert_eq!(get_payment(&api, &m, &id).await.0, StatusCode::OK);

    r.stop();
    for i in 0..20 {
        let (status, body) = api.pay(&m, &format!("down-{i}"), 100 + i, true).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "payment {i} with Redis down: {body:#}"
        );
        let (status, body) = get_payment(&api, &m, &id).await;
        assert_eq!(status, StatusCode::OK, "read {i} with Redis down: {body:#}");
    }
    assert_eq!(metric(&api, &m, "paytool_cache_breaker_open").await, 1.0);
    assert!(metric(&api, &m, "paytool_cache_skipped_total").await > 0.0);

    r.start_again().unwrap();
    let hit = "paytool_cache_requests_total{kind=\"payment\",result=\"hit\"}";
    let hits_before = metric(&api, &m, hit).await;
    let started = Instant::now();
    loop {
        let (status, _) = get_payment(&api, &m, &id).await;
        assert_eq!(status, StatusCode::OK);
        if metric(&api, &m, hit).await > hits_before {
            break;
        }
        assert!(
            started.elapsed() < RECOVERY_WAIT,
            "Redis not used again within {RECOVERY_WAIT:?} of its return"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&api, &m, "paytool_cache_breaker_open").await, 0.0);
}

#[tokio::test]
async fn a_rolled_key_is_refused_at_once_by_every_instance_sharing_redis() {
    let dir = temp_dir();
    let r = redis(dir.path());
    let pg = PgShards::start(dir.path());
    let token = "adm_cache";
    let args = ["--redis", &r.url()];
    let a = Server::start_on_layout_env(&pg.layout, token, &args, &[]);
    let b = Server::start_on_layout_env(&pg.layout, token, &args, &[]);
    let m = a.create_merchant("m").await;
    // Both instances have the key cached (in Redis, and in their own memory).
    for api in [&a, &b] {
        let (status, _, _) = api.call(&m, Method::GET, "/v1/balance", None, None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let res = a
        .client
        .post(a.url(&format!("/v1/admin/merchants/{}/roll_key", m.id)))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let rolled: Value = res.json().await.unwrap();
    // The roll bumped the merchant's key generation, which expires in its own time.
    let mut c = crate::support::redis_connection(&r.url()).await;
    let generation = format!("paytool:{{{}}}:gen", m.id);
    let (value, ttl): (i64, i64) = redis::pipe()
        .get(&generation)
        .pttl(&generation)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(value, 1);
    assert!(ttl > 0, "the generation key has no TTL ({ttl})");
    // The other instance refuses the old key on its very next request.
    let (status, _, _) = b.call(&m, Method::GET, "/v1/balance", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let new = Merchant {
        id: m.id.clone(),
        key: rolled["secret_key"].as_str().unwrap().to_string(),
    };
    let (status, _, _) = b.call(&new, Method::GET, "/v1/balance", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

/// `paytool cache ARGS --redis URL`, bounded, with stdin not a terminal.
fn cache_cmd(r: &LocalRedis, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(crate::support::BIN);
    cmd.arg("cache")
        .args(args)
        .args(["--redis", &r.url()])
        .stdin(std::process::Stdio::null())
        .env_remove("PAYTOOL_REDIS_URL")
        .env_remove("PAYTOOL_REDIS_PREFIX");
    crate::support::run_bounded(&mut cmd, crate::support::COMMAND_TIMEOUT)
}

#[tokio::test]
async fn stats_describes_paytools_keys_and_flush_removes_only_them() {
    let dir = temp_dir();
    let r = redis(dir.path());
    let api = Server::start_args(&["--redis", &r.url()]);
    let m = api.create_merchant("m").await;
    for i in 0..5 {
        let (_, paid) = api.pay(&m, &format!("k{i}"), 100 + i, true).await;
        let id = paid["id"].as_str().unwrap();
        for _ in 0..3 {
            assert_eq!(get_payment(&api, &m, id).await.0, StatusCode::OK);
        }
    }
    // Someone else's key in the same Redis.
    let mut c = crate::support::redis_connection(&r.url()).await;
    let _: () = c.set("other:key", "theirs").await.unwrap();

    let out = cache_cmd(&r, &["stats", "--output", "json", "--api", &api.url("")]);
    let stats = crate::support::json_stdout(&out);
    let by_kind = &stats["stats"]["by_kind"];
    assert_eq!(by_kind["pay"], 5, "{stats:#}");
    assert_eq!(by_kind["idem"], 5, "{stats:#}");
    assert!(by_kind["key"].as_u64().unwrap() >= 1, "{stats:#}");
    assert_eq!(stats["stats"]["without_ttl"], 0, "{stats:#}");
    assert!(
        stats["hit_ratio"]["payment"].as_f64().unwrap() > 0.5,
        "{stats:#}"
    );

    // Never without asking: with no terminal to ask on, --yes is required.
    let refused = cache_cmd(&r, &["flush"]);
    assert_eq!(refused.status.code(), Some(2));
    let flushed =
        crate::support::json_stdout(&cache_cmd(&r, &["flush", "--yes", "--output", "json"]));
    assert_eq!(
        flushed["removed"].as_u64().unwrap(),
        stats["stats"]["keys"].as_u64().unwrap(),
        "{flushed:#}"
    );
    assert!(keys(&r, "paytool:*").await.is_empty());
    let theirs: String = c.get("other:key").await.unwrap();
    assert_eq!(theirs, "theirs");
    // The API carries on, filling the cache again.
    let (status, _) = api.pay(&m, "after-flush", 700, true).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_retry_storm_over_two_instances_sharing_redis_makes_one_payment_a_key() {
    const KEYS: usize = 20;
    const SENDS_PER_KEY: usize = 60;
    let dir = temp_dir();
    let r = redis(dir.path());
    let pg = PgShards::start(dir.path());
    let token = "adm_cache_storm";
    let args = ["--redis", &r.url()];
    let a = Server::start_on_layout_env(&pg.layout, token, &args, &[]);
    let b = Server::start_on_layout_env(&pg.layout, token, &args, &[]);
    let m = a.create_merchant("storm").await;
    let client = reqwest::Client::new();
    for key in 0..KEYS {
        let body = crate::support::payment_body(100 + key as i64, "usd", key % 2 == 0);
        crate::support::one_key_at_once(
            &client,
            &[&a, &b],
            &m,
            &format!("storm-{key}"),
            &body,
            SENDS_PER_KEY,
        )
        .await;
    }
    let payments: usize = pg
        .on_each_shard("SELECT COUNT(*) FROM payments")
        .iter()
        .map(|n| n.trim().parse::<usize>().unwrap())
        .sum();
    assert_eq!(payments, KEYS);
    // Replays were served from Redis, by both instances.
    let hit = "paytool_cache_requests_total{kind=\"idempotency\",result=\"hit\"}";
    let hits = metric(&a, &m, hit).await + metric(&b, &m, hit).await;
    assert!(hits > 0.0, "no replay came from Redis");
    assert_eq!(a.audit().await["ok"], true);
}

/// Payments in the store the seed and verify test runs on.
const SEEDED_PAYMENTS: usize = 100_000;
/// Requests in flight while those payments are made.
const SEND_CONCURRENCY: usize = 64;

/// `n` captured payments spread over the merchants, sent `SEND_CONCURRENCY` at a time;
/// each must be 200. Their ids, in no order.
async fn pay_many(api: &Server, merchants: &[Merchant], n: usize) -> Vec<(String, String)> {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..SEND_CONCURRENCY {
        let (client, url) = (api.client.clone(), api.url("/v1/payments"));
        let merchants = merchants.to_vec();
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for i in (worker..n).step_by(SEND_CONCURRENCY) {
                let m = &merchants[i % merchants.len()];
                let res = client
                    .post(&url)
                    .bearer_auth(&m.key)
                    .header("Idempotency-Key", format!("seed-{i}"))
                    .json(&crate::support::payment_body(
                        100 + i as i64 % 900,
                        "usd",
                        true,
                    ))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), StatusCode::OK, "payment {i}");
                let body: Value = res.json().await.unwrap();
                ids.push((m.id.clone(), body["id"].as_str().unwrap().to_string()));
            }
            ids
        });
    }
    let mut ids = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        ids.extend(done.unwrap());
    }
    ids
}

/// `paytool cache verify` as JSON, and its exit code.
fn verify(r: &LocalRedis, source: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["verify", "--output", "json"];
    args.extend_from_slice(source);
    let out = cache_cmd(r, &args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

#[tokio::test]
async fn seed_then_verify_matches_the_store_and_a_row_changed_behind_its_back_is_named() {
    let dir = temp_dir();
    let r = redis(dir.path());
    let api = Server::start_args(&["--redis", &r.url()]);
    let data_dir = api.data_dir().to_str().unwrap().to_string();
    let source = ["--data-dir", data_dir.as_str()];
    let mut merchants = Vec::new();
    for i in 0..4 {
        merchants.push(api.create_merchant(&format!("m{i}")).await);
    }
    let paid = pay_many(&api, &merchants, SEEDED_PAYMENTS).await;

    // A dry run counts and writes nothing (the API cached only its idempotent answers
    // and keys: a new payment is never cached).
    let mut args = vec!["seed", "--dry-run", "--output", "json"];
    args.extend_from_slice(&source);
    let dry = crate::support::json_stdout(&cache_cmd(&r, &args));
    assert_eq!(dry["payments"], SEEDED_PAYMENTS, "{dry:#}");
    assert!(keys(&r, "paytool:*:pay:*").await.is_empty());

    // Seeded from the live API's data dir: an entry per key and per payment.
    let mut args = vec!["seed", "--output", "json"];
    args.extend_from_slice(&source);
    let seeded = crate::support::json_stdout(&cache_cmd(&r, &args));
    assert_eq!(seeded["merchants"], 4, "{seeded:#}");
    assert_eq!(seeded["payments"], SEEDED_PAYMENTS, "{seeded:#}");
    assert_eq!(seeded["keys"], SEEDED_PAYMENTS + 4, "{seeded:#}");

    // The API serves the seeded entries: seed wrote the payment's entry, and the first
    // read of it that reached Redis was a hit.
    let (m, id) = &paid[paid.len() / 2];
    let merchant = merchants.iter().find(|x| x.id == *m).unwrap();
    let mut c = crate::support::redis_connection(&r.url()).await;
    let seeded_entry: bool = c.exists(format!("paytool:{{{m}}}:pay:{id}")).await.unwrap();
    assert!(seeded_entry);
    assert!(first_answered_read_hits(&api, merchant, id).await);

    // The API caches each answer after its write, best effort: on a loaded machine a
    // few of those SETs outlive their timeout and are skipped, so verify is held to the
    // answers that are there.
    let stats = crate::support::json_stdout(&cache_cmd(&r, &["stats", "--output", "json"]));
    let idem_cached = stats["stats"]["by_kind"]["idem"].as_u64().unwrap_or(0);
    assert!(idem_cached > 0, "{stats:#}");
    let (code, report) = verify(&r, &source);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["checked"]["pay"], SEEDED_PAYMENTS, "{report:#}");
    assert_eq!(report["checked"]["idem"], idem_cached, "{report:#}");
    assert_eq!(report["mismatches"], 0, "{report:#}");
    assert_eq!(report["stale"], 0, "{report:#}");

    // One row changed behind the cache's back: verify names exactly its payment's key,
    // and the key of the answer that showed it, which the store renders from that row.
    let shard = rusqlite::Connection::open(api.data_dir().join("shard-000.db")).unwrap();
    let changed = shard
        .execute(
            "UPDATE payments SET card_brand = 'tampered' WHERE merchant_id = ?1 AND id = ?2",
            [m, id],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let (code, report) = verify(&r, &source);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["mismatches"], 2, "{report:#}");
    assert_eq!(report["stale"], 0, "{report:#}");
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{report:#}");
    let payment_key = format!("paytool:{{{m}}}:pay:{id}");
    let payment = findings.iter().find(|f| f["key"] == payment_key);
    let payment = payment.unwrap_or_else(|| panic!("{payment_key} not named: {report:#}"));
    let detail = payment["detail"].as_str().unwrap();
    assert!(detail.starts_with("card_brand: cache"), "{detail}");
    let answer = findings.iter().find(|f| f["key"] != payment_key).unwrap();
    let answer_key = answer["key"].as_str().unwrap();
    assert!(
        answer_key.starts_with(&format!("paytool:{{{m}}}:idem:")),
        "{report:#}"
    );
    assert_eq!(answer["detail"], "the body differs", "{report:#}");

    // A sample checks only as many entries as asked.
    let (_, sampled) = verify(&r, &["--data-dir", data_dir.as_str(), "--sample", "500"]);
    assert_eq!(
        sampled["checked"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        500,
        "{sampled:#}"
    );

    // Flush removes paytool's entries and leaves another application's key.
    let _: () = c.set("other:key", "theirs").await.unwrap();
    let flushed =
        crate::support::json_stdout(&cache_cmd(&r, &["flush", "--yes", "--output", "json"]));
    assert!(
        flushed["removed"].as_u64().unwrap() >= SEEDED_PAYMENTS as u64 + idem_cached,
        "{flushed:#}"
    );
    assert!(keys(&r, "paytool:*").await.is_empty());
    let theirs: String = c.get("other:key").await.unwrap();
    assert_eq!(theirs, "theirs");
}

#[tokio::test]
async fn seed_and_verify_read_every_shard_of_a_layout() {
    const PAYMENTS: usize = 400;
    let dir = temp_dir();
    let r = redis(dir.path());
    let pg = PgShards::start(dir.path());
    let layout = pg.layout.to_str().unwrap().to_string();
    let api = Server::start_on_layout_env(&pg.layout, "adm_seed", &["--redis", &r.url()], &[]);
    let mut merchants = Vec::new();
    for i in 0..6 {
        merchants.push(api.create_merchant(&format!("m{i}")).await);
    }
    let paid = pay_many(&api, &merchants, PAYMENTS).await;
    let seeded = crate::support::json_stdout(&cache_cmd(
        &r,
        &["seed", "--layout", &layout, "--output", "json"],
    ));
    assert_eq!(seeded["merchants"], 6, "{seeded:#}");
    assert_eq!(seeded["payments"], PAYMENTS, "{seeded:#}");
    let (code, report) = verify(&r, &["--layout", &layout]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["checked"]["pay"], PAYMENTS, "{report:#}");

    let (m, id) = &paid[7];
    let mut changed = 0;
    for shard in 0..pg.shards.len() {
        changed += pg
            .client(shard)
            .await
            .execute(
                "UPDATE payments SET card_last4 = '0000' WHERE merchant_id = $1 AND id = $2",
                &[m, id],
            )
            .await
            .unwrap();
    }
    assert_eq!(changed, 1);
    // The store renders the answer that showed the payment from that row too, so that
    // answer is named as well if the API cached it (best effort, so it may not have).
    let mut c = crate::support::redis_connection(&r.url()).await;
    let mut answers_showing_it = 0;
    for key in keys(&r, &format!("paytool:{{{m}}}:idem:*")).await {
        let value: String = c.get(&key).await.unwrap();
        answers_showing_it += usize::from(value.contains(id.as_str()));
    }
    assert!(answers_showing_it <= 1, "one key made {id}");
    let (code, report) = verify(&r, &["--layout", &layout]);
    assert_eq!(code, Some(1), "{report:#}");
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1 + answers_showing_it, "{report:#}");
    let payment_key = format!("paytool:{{{m}}}:pay:{id}");
    assert!(
        findings.iter().any(|f| f["key"] == payment_key),
        "{report:#}"
    );
    for answer in findings.iter().filter(|f| f["key"] != payment_key) {
        let key = answer["key"].as_str().unwrap();
        assert!(
            key.starts_with(&format!("paytool:{{{m}}}:idem:")),
            "{report:#}"
        );
        assert_eq!(answer["detail"], "the body differs", "{report:#}");
    }
}

/// How long the load test's API instances run with Redis stopped.
const OUTAGE: Duration = Duration::from_secs(4);
/// Waits for the load test to reach Redis (spawning PostgreSQL first), and for the API
/// to fill Redis again after it came back.
const LOAD_REACHES_REDIS_WAIT: Duration = Duration::from_secs(90);

/// Until Redis holds some of paytool's keys, at most `wait`; whether it did.
async fn until_filled(r: &LocalRedis, wait: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < wait {
        if let Ok(client) = redis::Client::open(r.url())
            && let Ok(mut c) = client.get_multiplexed_async_connection().await
            && let Ok(n) = redis::cmd("DBSIZE").query_async::<u64>(&mut c).await
            && n > 0
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_sharded_load_test_rides_through_redis_killed_midway_and_restarted() {
    let dir = temp_dir();
    let mut r = redis(dir.path());
    let reports = dir.path().join("reports");
    let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/sharded-smoke.toml");
    let mut cmd = std::process::Command::new(crate::support::BIN);
    cmd.args(["loadtest", "-p", profile, "--redis", "existing"])
        .args(["--run-time", "20s", "--output", "json", "--report-dir"])
        .arg(&reports)
        .env("PAYTOOL_REDIS_URL", r.url())
        .env_remove("PAYTOOL_ADMIN_TOKEN");
    let run = tokio::task::spawn_blocking(move || {
        crate::support::run_bounded(&mut cmd, crate::support::LOADTEST_TIMEOUT)
    });

    // Under load with the cache on, then Redis gone, then back (empty) and filled again.
    assert!(
        until_filled(&r, LOAD_REACHES_REDIS_WAIT).await,
        "the load test's API never used Redis"
    );
    r.stop();
    tokio::time::sleep(OUTAGE).await;
    r.start_again().unwrap();
    assert!(
        until_filled(&r, LOAD_REACHES_REDIS_WAIT).await,
        "the API did not use Redis again after it came back"
    );
    assert!(!run.is_finished(), "the load ended before Redis came back");

    let summary = crate::support::passed_summary(&run.await.unwrap());
    assert_eq!(summary["audit"]["ok"], true, "{summary:#}");
    // The run saw the cache serve, and the outage open the breaker.
    let cache = &summary["server"]["cache"];
    assert!(cache["hits"].as_u64().unwrap() > 0, "{cache:#}");
    assert_eq!(cache["breaker_opened"], true, "{cache:#}");
    // Not one request failed for the outage: payments, their changes and reads.
    let requests = summary["requests"].as_array().unwrap();
    for q in requests {
        assert_eq!(q["errors"], 0, "{q:#}");
    }
    let payments = requests
        .iter()
        .find(|q| q["name"] == "POST /v1/payments")
        .unwrap_or_else(|| panic!("no payments in {summary:#}"));
    assert!(payments["count"].as_u64().unwrap() > 100, "{payments:#}");
}

#[test]
fn seed_and_verify_refuse_bad_input_naming_it_and_fail_on_an_unreachable_redis() {
    let dir = temp_dir();
    let missing = dir.path().join("no-such-data-dir");
    let missing = missing.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(crate::support::BIN);
        cmd.arg("cache")
            .args(args)
            .stdin(std::process::Stdio::null())
            .env_remove("PAYTOOL_REDIS_URL")
            .env_remove("PAYTOOL_DATA_DIR")
            .env_remove("PAYTOOL_LAYOUT");
        let out = crate::support::run_bounded(&mut cmd, crate::support::COMMAND_TIMEOUT);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // Not a data dir: exit 2, naming the flag and the directory.
    let (code, err) = run(&["seed", "--dry-run", "--data-dir", missing]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--data-dir") && err.contains(missing), "{err}");
    // Neither source, or both: clap's usage error.
    let (code, err) = run(&["seed", "--dry-run"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["verify", "--redis", "redis://127.0.0.1:1/"]);
    assert_eq!(code, Some(2), "{err}");
    // A seed that would write needs a Redis URL.
    let data = crate::support::DataDir::temp();
    let data_dir = data.path().to_str().unwrap();
    let (code, err) = run(&["seed", "--data-dir", data_dir]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--redis"), "{err}");
    // A bad URL is bad input; an unreachable Redis is a failure.
    let api = Server::start_with(data, &[]);
    let data_dir = api.data_dir().to_str().unwrap();
    let (code, err) = run(&["verify", "--redis", "http://x", "--data-dir", data_dir]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&[
        "verify",
        "--redis",
        "redis://127.0.0.1:1/",
        "--data-dir",
        data_dir,
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
}
