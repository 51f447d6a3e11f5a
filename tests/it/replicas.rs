//! Reads from a shard's read replica (a hot standby that PostgreSQL streams to), with a
//! replica that lags on purpose (`recovery_min_apply_delay`): a merchant's reads go to it
//! only once it has replayed that merchant's writes, and a payment that exists is never
//! answered 404 because a replica has not seen it yet.

use crate::support::{Server, payment_body, paytool, small_postgres, temp_dir};
use paytool::services::postgres::LocalPostgres;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

const TOKEN: &str = "adm_replicas";
/// How far behind the replica applies what it receives.
const APPLY_DELAY: Duration = Duration::from_secs(3);

/// `paytool_replica_reads_total` of one instance, by who answered.
async fn replica_reads(client: &reqwest::Client, api: &Server, answered_by: &str) -> u64 {
    let text = client
        .get(api.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("paytool_replica_reads_total{")
                && l.contains(&format!("answered_by=\"{answered_by}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A primary with database paytool_s0, a standby of it that applies what it receives
/// `delay` late, and an applied one-shard layout listing the standby as a read replica.
fn lagging_replica(
    dir: &std::path::Path,
    delay: Duration,
) -> (LocalPostgres, LocalPostgres, std::path::PathBuf) {
    let primary = small_postgres(&dir.join("primary"));
    primary.create_database("paytool_s0").unwrap();
    let replica =
        LocalPostgres::start_standby(&primary.upstream(), &dir.join("replica"), "s0_reads")
            .unwrap();
    replica
        .psql(&format!(
            "ALTER SYSTEM SET recovery_min_apply_delay = '{}ms'",
            delay.as_millis()
        ))
        .unwrap();
    replica.psql("SELECT pg_reload_conf()").unwrap();
    let layout = dir.join("layout.toml");
    std::fs::write(
        &layout,
        format!(
            "name = \"replicas\"\nversion = 1\nbuckets = 1024\n[shards.s0]\nurl = \"{}\"\n\
             replicas = [\"{}\"]\n[[ranges]]\nbuckets = \"0-1023\"\nshard = \"s0\"\n",
            primary.url("paytool_s0"),
            replica.url("paytool_s0"),
        ),
    )
    .unwrap();
    let out = paytool(&["shard", "apply", "--layout", layout.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (primary, replica, layout)
}

#[tokio::test]
async fn reads_go_to_a_lagging_replica_only_once_it_has_the_merchants_writes() {
    let dir = temp_dir();
    let (_primary, _replica, layout) = lagging_replica(dir.path(), APPLY_DELAY);

    // Two instances; the replica's lag bound is above its delay, so only the replayed
    // position keeps a merchant's reads off it.
    let a = Server::start_on_layout_env(&layout, TOKEN, &["--replica-max-lag", "30s"], &[]);
    let b = Server::start_on_layout_env(&layout, TOKEN, &["--replica-max-lag", "30s"], &[]);
    let merchant = a.create_merchant("reader").await;
    // Until the replica has applied a commit it reports no lag at all: take no reads.
    tokio::time::sleep(APPLY_DELAY + Duration::from_secs(1)).await;
    let client = reqwest::Client::new();
    let create = |key: &str| {
        client
            .post(a.url("/v1/payments"))
            .bearer_auth(&merchant.key)
            .header("Idempotency-Key", key)
            .json(&payment_body(1200, "usd", false))
            .send()
    };
    let get = |api: &Server, id: &str| {
        client
            .get(api.url(&format!("/v1/payments/{id}")))
            .bearer_auth(&merchant.key)
            .send()
    };

    // Right after the 2xx, on the instance that wrote it and on another: never a 404.
    for i in 0..5 {
        let res = create(&format!("k{i}")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let id = res.json::<serde_json::Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let started = Instant::now();
        for api in [&a, &b] {
            let res = get(api, &id).await.unwrap();
            assert_eq!(
                res.status(),
                StatusCode::OK,
                "payment {id} right after its 2xx"
            );
        }
        assert!(
            started.elapsed() < APPLY_DELAY,
            "read while the replica lags"
        );
    }
    // The writer's instance never asked the replica (it had not replayed the writes);
    // the other asked it, found nothing, and read the primary.
    assert_eq!(replica_reads(&client, &a, "replica").await, 0);
    assert!(replica_reads(&client, &b, "primary after a replica").await >= 5);

    // Once the replica has applied them, the writer's instance reads from it.
    let res = create("last").await.unwrap();
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(APPLY_DELAY + Duration::from_secs(1)).await;
    let res = get(&a, &id).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["id"],
        id.as_str()
    );
    assert!(replica_reads(&client, &a, "replica").await >= 1);

    // A change the replica has not applied yet sends the writer's reads back to the
    // primary: the capture is seen at once.
    let res = client
        .post(a.url(&format!("/v1/payments/{id}/capture")))
        .bearer_auth(&merchant.key)
        .header("Idempotency-Key", "capture-last")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen: serde_json::Value = get(&a, &id).await.unwrap().json().await.unwrap();
    assert_eq!(seen["status"], "succeeded", "{seen:#}");
}

/// `shard status`'s counts and `cache seed`'s payments come from a replica the layout
/// lists while it is caught up or within the lag bound, and from the primary otherwise:
/// the stale count a lagging replica gives shows which one answered.
#[tokio::test]
async fn shard_status_and_cache_seed_read_a_fresh_replica_and_the_primary_otherwise() {
    // Long enough for the reads below to run while the replica holds back a commit.
    const DELAY: Duration = Duration::from_secs(8);
    let dir = temp_dir();
    let (_primary, replica, layout) = lagging_replica(dir.path(), DELAY);
    let layout = layout.to_str().unwrap();
    let api = Server::start_on_layout_env(layout.as_ref(), TOKEN, &[], &[]);
    let merchant = api.create_merchant("counted").await;
    let client = reqwest::Client::new();
    let create = |key: String| {
        client
            .post(api.url("/v1/payments"))
            .bearer_auth(&merchant.key)
            .header("Idempotency-Key", key)
            .json(&payment_body(700, "eur", false))
            .send()
    };
    for i in 0..3 {
        assert_eq!(
            create(format!("k{i}")).await.unwrap().status(),
            StatusCode::OK
        );
    }
    let json = |args: &[&str]| -> serde_json::Value {
        let out = paytool(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let status = |lag: &str| {
        json(&[
            "shard",
            "status",
            "--layout",
            layout,
            "--output",
            "json",
            "--replica-max-lag",
            lag,
        ])["shards"][0]
            .clone()
    };
    let seed = |lag: &str| {
        json(&[
            "cache",
            "seed",
            "--layout",
            layout,
            "--dry-run",
            "--output",
            "json",
            "--replica-max-lag",
            lag,
        ])
    };
    let on_replica = |from: &serde_json::Value| {
        from.as_str()
            .is_some_and(|f| f.contains(&format!(":{}/", replica.port())))
    };

    // Caught up (the primary idle, the replica has applied everything): it answers,
    // though its last commit is older than the bound.
    tokio::time::sleep(DELAY + Duration::from_secs(1)).await;
    let s = status("1s");
    assert!(on_replica(&s["counts_from"]), "{s:#}");
    assert_eq!(s["payments"], 3, "{s:#}");
    let sd = seed("1s");
    assert!(on_replica(&sd["payments_read_from"][0]["from"]), "{sd:#}");
    assert_eq!(sd["payments"], 3, "{sd:#}");

    // One more payment, which the replica holds back for DELAY.
    let held_back = Instant::now();
    assert_eq!(create("k3".into()).await.unwrap().status(), StatusCode::OK);
    // Behind and its last commit older than 1 s: the primary counts, and sees it.
    let s = status("1s");
    assert_eq!(s["counts_from"], "primary", "{s:#}");
    assert_eq!(s["payments"], 4, "{s:#}");
    // A bound wider than its lag: the replica counts, without the held-back payment.
    let s = status("1m");
    assert!(on_replica(&s["counts_from"]), "{s:#}");
    assert_eq!(s["payments"], 3, "{s:#}");
    // The seed caps the bound (a payment's CHANGED mark must outlive the lag): primary.
    let sd = seed("1m");
    assert_eq!(sd["payments_read_from"][0]["from"], "primary", "{sd:#}");
    assert_eq!(sd["payments"], 4, "{sd:#}");
    assert!(
        held_back.elapsed() < DELAY,
        "the reads ran while the replica held the payment back"
    );
}
