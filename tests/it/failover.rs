//! Failover with PostgreSQL's own replication: a shard's primary with a synchronous
//! standby (cloned by `pg_basebackup -R`), the shard's URL naming both hosts with
//! `target_session_attrs=read-write`. The primary dies under load, the standby is
//! promoted, and the API finds the new primary by itself.

use crate::support::{Server, passing_loadtest, payment_body, paytool, small_postgres, temp_dir};
use paytool::services::postgres::LocalPostgres;
use std::time::{Duration, Instant};

const TOKEN: &str = "adm_failover";
const CLUSTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/cluster.toml");
const LAYOUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/shards/two.toml");
/// Each request's own bound: an answer must come well before it, never a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);
/// How long after the promotion writes must be flowing again.
const RECOVERY_MAX: Duration = Duration::from_secs(20);

/// A create's answer: when, its status, and (merchant, payment id) when acknowledged.
type Create = (Duration, u16, Option<(usize, String)>);

/// One shard on `url`, owning every bucket.
fn one_shard_layout(path: &std::path::Path, url: &str) {
    let text = format!(
        "name = \"failover\"\nversion = 1\nbuckets = 1024\n[shards.s0]\nurl = \"{url}\"\n\
         [[ranges]]\nbuckets = \"0-1023\"\nshard = \"s0\"\n"
    );
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn the_api_follows_a_promoted_synchronous_standby_and_loses_no_acknowledged_payment() {
    let dir = temp_dir();
    let mut primary = small_postgres(&dir.path().join("primary"));
    primary.create_database("paytool_s0").unwrap();
    let standby = LocalPostgres::start_standby(
        &primary.upstream(),
        &dir.path().join("standby"),
        "s0_standby",
    )
    .unwrap();
    primary.require_standby(&["s0_standby"]).unwrap();
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/paytool_s0?target_session_attrs=read-write",
        primary.port(),
        standby.port()
    );
    let layout = dir.path().join("layout.toml");
    one_shard_layout(&layout, &url);
    let out = paytool(&["shard", "apply", "--layout", layout.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Commits wait for the standby, and `shard status` says so.
    let out = paytool(&[
        "shard",
        "status",
        "--layout",
        layout.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shard = &status["shards"][0];
    assert_eq!(shard["synchronous"], true, "{shard:#}");
    assert_eq!(shard["replicas"][0]["name"], "s0_standby");
    assert_eq!(shard["replicas"][0]["sync_state"], "sync");
    assert_eq!(shard["replicas"][0]["state"], "streaming");

    let api = Server::start_on_layout(&layout, TOKEN);
    let mut merchants = Vec::new();
    for i in 0..3 {
        merchants.push(api.create_merchant(&format!("m{i}")).await);
    }
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap();
    let started = Instant::now();
    let fail_at = Duration::from_secs(2);
    let mut promoted_at = None;
    let mut seen: Vec<Create> = Vec::new();
    let mut n = 0u64;
    loop {
        let now = started.elapsed();
        if promoted_at.is_none() && now >= fail_at {
            // The primary dies as in a crash (no checkpoint, clients cut off); the
            // standby takes over as an operator or Patroni would.
            primary.stop().unwrap();
            standby.promote().unwrap();
            promoted_at = Some(started.elapsed());
        }
        if let Some(at) = promoted_at {
            let recovered = seen
                .iter()
                .rev()
                .take_while(|s| s.0 > at)
                .filter(|s| s.1 == 200)
                .count()
                >= 30;
            if recovered || now > at + RECOVERY_MAX {
                break;
            }
        }
        let mut round = Vec::new();
        for (i, m) in merchants.iter().enumerate() {
            n += 1;
            let send = client
                .post(api.url("/v1/payments"))
                .bearer_auth(&m.key)
                .header("Idempotency-Key", format!("k{n}"))
                .json(&payment_body(700, "eur", true))
                .send();
            round.push(tokio::spawn(async move {
                let res = send
                    .await
                    .expect("an answer within the request timeout, never a hang");
                let status = res.status().as_u16();
                let body: serde_json::Value = res.json().await.unwrap_or_default();
                let id = (status == 200).then(|| (i, body["id"].as_str().unwrap().to_string()));
                (status, id)
            }));
        }
        for r in round {
            let (status, id) = r.await.unwrap();
            seen.push((started.elapsed(), status, id));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let promoted_at = promoted_at.unwrap();
    let before: Vec<_> = seen.iter().filter(|s| s.0 < fail_at).collect();
    assert!(
        !before.is_empty() && before.iter().all(|s| s.1 == 200),
        "payments flowed before the failure"
    );
    let wrong: Vec<_> = seen.iter().filter(|s| s.1 != 200 && s.1 != 503).collect();
    assert!(
        wrong.is_empty(),
        "while the shard had no primary, answers were 503 (retryable), never a 500: {wrong:?}"
    );
    let after = seen
        .iter()
        .filter(|s| s.0 > promoted_at && s.1 == 200)
        .count();
    assert!(
        after >= 30,
        "writes flow again on the promoted standby without restarting the API ({after} acknowledged after the promotion)"
    );
    // Every acknowledged payment is on the new primary: read back through the API.
    for (_, _, acked) in seen.iter().filter(|s| s.1 == 200) {
        let (merchant, id) = acked.as_ref().unwrap();
        let res = client
            .get(api.url(&format!("/v1/payments/{id}")))
            .bearer_auth(&merchants[*merchant].key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            200,
            "acknowledged payment {id} is on the promoted standby"
        );
    }
    assert_eq!(
        standby
            .psql_in("paytool_s0", "SELECT pg_is_in_recovery()")
            .unwrap()
            .trim(),
        "f",
        "the standby is the primary now"
    );
    assert_eq!(api.audit().await["ok"], true);
}

/// The shipped cluster profile (3 instances behind HAProxy, 2 shards each with a
/// synchronous standby, Redis) with its failover of shard s0 under load: the run passes,
/// the audit is clean on the promoted primary, and only s0's writes paused.
#[test]
fn the_cluster_profile_rides_out_a_failover_with_a_clean_audit() {
    let dir = temp_dir();
    let text = std::fs::read_to_string(CLUSTER)
        .unwrap()
        .replace(
            "layout = \"shards/two.toml\"",
            &format!("layout = {LAYOUT:?}"),
        )
        .replace("run_time = \"20s\"", "run_time = \"14s\"")
        .replace("at = \"8s\"", "at = \"4s\"")
        // Plain journeys only: the storm's bursts would blur which requests the fault cost.
        .replace("retry_storm = 1", "retry_storm = 0");
    assert!(text.contains(LAYOUT) && text.contains("\"14s\"") && text.contains("\"4s\""));
    assert!(text.contains("retry_storm = 0"));
    let profile = dir.path().join("cluster.toml");
    std::fs::write(&profile, text).unwrap();
    let summary = passing_loadtest(&profile, &dir.path().join("reports"));
    assert_eq!(summary["audit"]["ok"], true, "{:#}", summary["audit"]);
    assert_eq!(summary["audit"]["ledger_shards"], 2);
    let fault = &summary["chaos"][0];
    assert_eq!(fault["fault"], "failover");
    assert!(fault["error"].is_null(), "{fault:#}");
    // The writes came back after the promotion, within the run, without a restart.
    assert!(fault["recovered_after_s"].as_f64().is_some(), "{fault:#}");
    // The failed shard's merchants got errors while it had no primary (503s, retried
    // under their keys); the other shard's kept being answered.
    let (failed, requests) = (
        fault["failed"].as_u64().unwrap(),
        fault["requests"].as_u64().unwrap(),
    );
    assert!(failed > 0 && failed < requests, "{fault:#}");
    assert_eq!(
        summary["total"]["errors"].as_u64().unwrap(),
        failed,
        "errors only in the failover's window"
    );
}
