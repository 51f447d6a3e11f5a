//! Many API instances behind a real HAProxy that paytool starts and configures, on
//! PostgreSQL shards: losing an instance costs only what was in flight on it, a rolling
//! restart costs nothing, and the money audit passes through the balancer. Needs
//! PostgreSQL, Redis and HAProxy installed (scripts/install-services.sh).

use crate::support::{passing_loadtest, temp_dir};
use serde_json::Value;
use std::path::Path;

const PROFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/balanced.toml");
const LAYOUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/shards/two.toml");

/// The shipped profile with its layout made absolute, `balancer`, a shorter run, an
/// error budget and `chaos` steps, written into `dir`; the run's summary, after checking
/// that it passed.
fn run(dir: &Path, balancer: &str, run_time: &str, error_rate_max: &str, chaos: &str) -> Value {
    let text = std::fs::read_to_string(PROFILE)
        .unwrap()
        .replace(
            "balancer = \"haproxy\"",
            &format!("balancer = {balancer:?}"),
        )
        .replace(
            "layout = \"shards/two.toml\"",
            &format!("layout = {LAYOUT:?}"),
        )
        .replace("run_time = \"15s\"", &format!("run_time = {run_time:?}"))
        // Both budgets, all requests' and plain creates'.
        .replace(
            "error_rate_max = 0.0\n",
            &format!("error_rate_max = {error_rate_max}\n"),
        )
        .replace(
            "error_rate_max = 0.01",
            &format!("error_rate_max = {error_rate_max}"),
        )
        // Plain journeys only: the storm's bursts and retries would blur which requests a
        // fault cost.
        .replace("retry_storm = 1", "retry_storm = 0");
    assert!(text.contains(LAYOUT) && text.contains(run_time) && text.contains("retry_storm = 0"));
    assert!(text.contains(&format!("balancer = {balancer:?}\n")));
    assert_eq!(
        text.matches(&format!("error_rate_max = {error_rate_max}\n"))
            .count(),
        2
    );
    let profile = dir.join("balanced.toml");
    std::fs::write(&profile, format!("{text}\n{chaos}")).unwrap();
    let summary = passing_loadtest(&profile, &dir.join("reports"));
    assert_eq!(summary["audit"]["ok"], true, "{:#}", summary["audit"]);
    assert_eq!(summary["audit"]["ledger_shards"], 2);
    assert!(summary["target"].as_str().unwrap().contains("127.0.0.1"));
    summary
}

#[test]
fn a_killed_instance_behind_haproxy_fails_only_what_was_in_flight_on_it() {
    a_killed_instance_fails_only_what_was_in_flight_on_it("haproxy");
}

#[test]
fn a_killed_instance_behind_haproxy_in_tcp_mode_fails_only_what_was_in_flight_on_it() {
    a_killed_instance_fails_only_what_was_in_flight_on_it("haproxy-tcp");
}

#[test]
fn a_rolling_restart_behind_haproxy_fails_no_request() {
    a_rolling_restart_fails_no_request("haproxy");
}

#[test]
fn a_rolling_restart_behind_haproxy_in_tcp_mode_fails_no_request() {
    a_rolling_restart_fails_no_request("haproxy-tcp");
}

fn a_killed_instance_fails_only_what_was_in_flight_on_it(balancer: &str) {
    let dir = temp_dir();
    // Only the kill's window may have errors: the budget is for it, the test counts them.
    let summary = run(
        dir.path(),
        balancer,
        "10s",
        "1.0",
        "[[chaos]]\nat = \"3s\"\nfault = \"kill-api\"\ninstance = 1\nfor = \"3s\"\n",
    );
    let fault = &summary["chaos"][0];
    assert!(fault["error"].is_null(), "{fault:#}");
    let errors = summary["total"]["errors"].as_u64().unwrap();
    // Every failed request failed inside the fault's window (from the kill until the
    // instance was back and an error-free second had passed), and there were few:
    // HAProxy takes a dead instance out within one health check.
    assert_eq!(errors, fault["failed"].as_u64().unwrap(), "{summary:#}");
    assert!(
        errors * 100 <= summary["total"]["count"].as_u64().unwrap(),
        "{errors} errors: more than 1% {summary:#}"
    );
}

fn a_rolling_restart_fails_no_request(balancer: &str) {
    let dir = temp_dir();
    let mut chaos = String::new();
    for (i, at) in ["2s", "5s", "8s"].iter().enumerate() {
        chaos.push_str(&format!(
            "[[chaos]]\nat = \"{at}\"\nfault = \"restart-api\"\ninstance = {i}\nfor = \"1s\"\n"
        ));
    }
    // No error at all.
    let summary = run(dir.path(), balancer, "12s", "0.0", &chaos);
    assert_eq!(summary["total"]["errors"], 0, "{summary:#}");
    let faults = summary["chaos"].as_array().unwrap();
    assert_eq!(faults.len(), 3);
    assert!(
        faults
            .iter()
            .all(|f| f["error"].is_null() && f["failed"] == 0),
        "{faults:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_server_fails_readiness_but_still_serves_then_exits_cleanly() {
    let mut server = crate::support::Server::start_args(&["--drain-delay", "3s"]);
    let m = server.create_merchant("draining").await;
    let ready = |s: &crate::support::Server| {
        let (client, url) = (s.client.clone(), s.url("/readyz"));
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    };
    assert_eq!(ready(&server).await.unwrap(), 200);
    let before = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert!(before.headers().get("connection").is_none(), "{before:?}");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Within the drain: not ready, and a payment is still taken and committed.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while ready(&server).await.unwrap() != 503 {
        assert!(
            std::time::Instant::now() < until,
            "/readyz never turned 503"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let res = server
        .client
        .post(server.url("/v1/payments"))
        .bearer_auth(&m.key)
        .header("Idempotency-Key", "during-the-drain")
        .json(&serde_json::json!({
            "amount": 1200, "currency": "usd", "capture": true,
            "card": { "number": "4242424242424242", "exp_month": 12, "exp_year": 2034 }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Answered with `Connection: close`: the client's next request opens a connection
    // afresh, which a balancer sends to an instance still ready.
    assert_eq!(res.headers()["connection"], "close");
    // Then it stops listening and exits 0.
    assert!(server.terminate().success());
}
