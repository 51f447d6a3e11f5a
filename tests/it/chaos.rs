//! `[[chaos]]` steps in a load test: faults injected into the processes the run spawned,
//! each reported with what it cost, and the money audit clean after all of them.

use crate::support::{edited_profile, loadtest, named, passed_summary, temp_dir};
use serde_json::Value;
use std::path::Path;

/// A load on the SQLite API (one instance, its own process) whose instance is SIGKILLed
/// three times and started again on the same files.
const KILLED_THREE_TIMES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/chaos-sqlite.toml");

fn run(profile: &Path, reports: &Path) -> Value {
    let out = loadtest(
        &[
            "-p",
            profile.to_str().unwrap(),
            "--report-dir",
            reports.to_str().unwrap(),
            "--output",
            "json",
        ],
        None,
    );
    passed_summary(&out)
}

/// Every fault was injected and lifted; the audit, with the store's count of payments
/// against the client's, is clean.
fn assert_ridden_out(summary: &Value, faults: &[&str]) {
    let chaos = summary["chaos"].as_array().expect("chaos records");
    let names: Vec<&str> = chaos.iter().map(|f| f["fault"].as_str().unwrap()).collect();
    assert_eq!(names, faults, "{summary:#}");
    for f in chaos {
        assert_eq!(f["error"], Value::Null, "{f:#}");
        assert!(f["requests"].as_u64().unwrap() > 0, "{f:#}");
        assert!(
            f["lifted_at_s"].as_f64().unwrap() > f["injected_at_s"].as_f64().unwrap(),
            "{f:#}"
        );
    }
    let audit = &summary["audit"];
    assert_eq!(audit["ok"], true, "{audit:#}");
    assert!(
        audit["acknowledged_payments"].as_u64().unwrap() > 100,
        "{audit:#}"
    );
    for check in [
        "acknowledged_payments_exist",
        "one_payment_per_idempotency_key",
        "store_holds_exactly_the_acknowledged_payments",
    ] {
        assert_eq!(named(&audit["checks"], check)["ok"], true, "{audit:#}");
    }
}

#[test]
fn an_api_killed_three_times_under_load_loses_and_doubles_nothing() {
    let dir = temp_dir();
    let summary = run(Path::new(KILLED_THREE_TIMES), &dir.path().join("reports"));
    assert_ridden_out(&summary, &["kill-api", "kill-api", "kill-api"]);
    for f in summary["chaos"].as_array().unwrap() {
        // Requests failed while it was dead: the kill was real.
        assert!(f["failed"].as_u64().unwrap() > 0, "{f:#}");
        assert!(f["recovered_after_s"].as_f64().is_some(), "{f:#}");
    }
    // The same process image was started four times on the same port and files.
    let run_dir = dir
        .path()
        .join("reports")
        .join(summary["run_id"].as_str().unwrap());
    let log = std::fs::read_to_string(run_dir.join("api-0.log")).unwrap();
    assert_eq!(
        log.matches("paytool serve: listening on").count(),
        4,
        "{log}"
    );
}

#[test]
fn the_chaos_profile_rides_out_every_fault_on_shards_and_redis() {
    let dir = temp_dir();
    let profile = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/chaos.toml");
    let summary = run(Path::new(profile), dir.path());
    assert_ridden_out(
        &summary,
        &["kill-api", "stall-api", "stop-shard", "kill-redis"],
    );
    let chaos = summary["chaos"].as_array().unwrap();
    // A dead instance and a stopped shard fail requests; a stalled instance holds them
    // until it runs again (its `for` is 2 s); a dead Redis costs nothing but hits.
    assert!(chaos[0]["failed"].as_u64().unwrap() > 0, "{:#}", chaos[0]);
    assert!(
        chaos[1]["max_ms"].as_f64().unwrap() >= 1000.0,
        "{:#}",
        chaos[1]
    );
    assert!(chaos[2]["failed"].as_u64().unwrap() > 0, "{:#}", chaos[2]);
    assert_eq!(chaos[3]["failed"], 0, "{:#}", chaos[3]);
    assert_eq!(
        summary["audit"]["ledger_shards"], 2,
        "{:#}",
        summary["audit"]
    );
}

#[test]
fn a_chaos_step_naming_what_the_run_does_not_spawn_is_refused_naming_the_key() {
    let dir = temp_dir();
    for (step, says) in [
        (
            "at = \"2s\"\nfault = \"kill-api\"\ninstance = 1",
            "`chaos[0].instance` is 1: the run spawns instances 0 to 0",
        ),
        (
            "at = \"2s\"\nfault = \"stop-shard\"\nshard = \"s0\"",
            "`chaos[0].fault` stops a PostgreSQL server the run spawns",
        ),
        (
            "at = \"2s\"\nfault = \"kill-redis\"",
            "`chaos[0].fault` kills the Redis the run spawns",
        ),
        (
            "at = \"14s\"\nfault = \"kill-api\"",
            "`chaos[0].at` plus `for` ends at 16s",
        ),
        (
            "at = \"2s\"\nfault = \"reboot\"",
            "`chaos[0].fault` is \"reboot\"",
        ),
    ] {
        let text = std::fs::read_to_string(KILLED_THREE_TIMES)
            .unwrap()
            .split("[[chaos]]")
            .next()
            .unwrap()
            .to_string()
            + "[[chaos]]\n"
            + step
            + "\n";
        let profile = dir.path().join("bad.toml");
        std::fs::write(&profile, text).unwrap();
        let out = loadtest(
            &[
                "-p",
                profile.to_str().unwrap(),
                "--report-dir",
                dir.path().join("reports").to_str().unwrap(),
            ],
            None,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{step}: {err}");
        assert!(err.contains(says), "{step}: {err}");
        assert!(err.contains("bad.toml"), "{err}");
    }
    // A step that kills an instance needs it as a process: saying otherwise is refused,
    // not silently overridden.
    let profile = edited_profile(
        KILLED_THREE_TIMES,
        dir.path(),
        "tasks.toml",
        "[target]\nshards = 2\n",
        "[target]\nshards = 2\nprocesses = false\n",
    );
    let out = loadtest(&["-p", profile.to_str().unwrap()], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`target.processes` is false, but a [[chaos]] step that acts on the API"),
        "{err}"
    );
    assert!(err.contains("tasks.toml"), "{err}");
}
