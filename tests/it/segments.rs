//! Distributed load: one profile run as 3 `--segment I/N` processes against one API,
//! sharing merchants made by `--prepare-only` and a `--start-at`, then `report merge`:
//! counts add up, the merged p99 is the p99 of every segment's samples together, the
//! slices together keep the whole arrival schedule as one process does, and the store
//! holds exactly the payments every segment was acknowledged.

use crate::support::{BIN, Server, loadtest, passed_summary, paytool, temp_dir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const SEGMENTS: u32 = 3;
/// 300 arrivals a second for 4 s: 1,200 in the whole schedule.
const PROFILE: &str = r#"
name = "segmented"
[load]
rate = "300/s"
run_time = "4s"
connections = 16
timeout = "10s"
[merchants]
count = 6
[scenarios]
checkout = 10
auth_capture = 3
browse = 3
[thresholds]
error_rate_max = 0.01
[report]
formats = ["json"]
"#;
const SCHEDULED: u64 = 1_200;

/// Every (value, count) of every request name's histograms in `summary`.
fn samples(summary: &Value) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for h in summary["histograms"].as_object().unwrap().values() {
        for side in ["ok", "failed"] {
            for pair in h[side]["counts"].as_array().unwrap() {
                out.push((pair[0].as_u64().unwrap(), pair[1].as_u64().unwrap()));
            }
        }
    }
    out
}

/// The p99, in ms, of every sample of `summaries` together.
fn p99_of(summaries: &[Value]) -> f64 {
    let mut all: Vec<(u64, u64)> = summaries.iter().flat_map(samples).collect();
    all.sort_unstable();
    let n: u64 = all.iter().map(|p| p.1).sum();
    let target = (0.99 * n as f64).ceil() as u64;
    let mut seen = 0;
    for (value, count) in all {
        seen += count;
        if seen >= target {
            return value as f64 / 1000.0;
        }
    }
    unreachable!("there are samples")
}

fn run_dir(reports: &Path, summary: &Value) -> PathBuf {
    reports.join(summary["run_id"].as_str().unwrap())
}

#[test]
fn three_segments_merge_into_the_run_one_process_makes() {
    let dir = temp_dir();
    let server = Server::start();
    let token = server.admin_token.clone();
    let profile = dir.path().join("segmented.toml");
    std::fs::write(&profile, PROFILE).unwrap();
    let profile = profile.to_str().unwrap().to_string();
    let merchants = dir.path().join("merchants.json");
    let reports = dir.path().join("reports");

    let prepared = loadtest(
        &[
            "-p",
            &profile,
            "--target",
            &server.base,
            "--prepare-only",
            "--merchants-file",
            merchants.to_str().unwrap(),
            "--report-dir",
            reports.to_str().unwrap(),
        ],
        Some(&token),
    );
    assert_eq!(
        prepared.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&prepared.stderr)
    );
    let made: Value = serde_json::from_slice(&std::fs::read(&merchants).unwrap()).unwrap();
    assert_eq!(made.as_array().unwrap().len(), 6);

    // Three generators, started together by --start-at.
    let start_at = paytool::clock::utc_rfc3339_at(paytool::ids::now_ms() + 4_000);
    let children: Vec<_> = (1..=SEGMENTS)
        .map(|i| {
            Command::new(BIN)
                .args(["loadtest", "-p", &profile, "--target", &server.base])
                .args(["--segment", &format!("{i}/{SEGMENTS}")])
                .args(["--merchants-file", merchants.to_str().unwrap()])
                .args(["--start-at", &start_at, "--output", "json"])
                .args(["--report-dir", reports.to_str().unwrap()])
                .env("PAYTOOL_ADMIN_TOKEN", &token)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let segments: Vec<Value> = children
        .into_iter()
        .map(|c| passed_summary(&c.wait_with_output().unwrap()))
        .collect();
    let sent: u64 = segments
        .iter()
        .map(|s| {
            s["open_model"]["sent"].as_u64().unwrap() + s["open_model"]["dropped"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(sent, SCHEDULED, "the slices together keep the schedule");
    for (i, s) in segments.iter().enumerate() {
        assert_eq!(s["segment"], format!("{}/{SEGMENTS}", i + 1));
        assert_eq!(s["open_model"]["scheduled"], SCHEDULED / SEGMENTS as u64);
    }

    let out = dir.path().join("merged");
    let mut args = vec!["report".to_string(), "merge".to_string()];
    args.extend(
        segments
            .iter()
            .map(|s| run_dir(&reports, s).to_string_lossy().to_string()),
    );
    args.extend([
        "--out".into(),
        out.to_string_lossy().to_string(),
        "--target".into(),
        server.base.clone(),
        "--output".into(),
        "json".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let merged = paytool(&args);
    assert_eq!(
        merged.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    let merged: Value = serde_json::from_slice(&merged.stdout).unwrap();
    assert_eq!(merged["passed"], true, "{merged:#}");
    let count = |s: &Value| s["total"]["count"].as_u64().unwrap();
    assert_eq!(count(&merged), segments.iter().map(count).sum::<u64>());
    for row in merged["requests"].as_array().unwrap() {
        let name = row["name"].as_str().unwrap();
        let parts: u64 = segments
            .iter()
            .flat_map(|s| s["requests"].as_array().unwrap().iter())
            .filter(|r| r["name"] == name)
            .map(|r| r["count"].as_u64().unwrap())
            .sum();
        assert_eq!(row["count"].as_u64().unwrap(), parts, "{name}");
    }
    let p99 = p99_of(&segments);
    let merged_p99 = merged["total"]["p99_ms"].as_f64().unwrap();
    assert!(
        (merged_p99 - p99).abs() <= p99 * 0.001 + 0.001,
        "{merged_p99} vs {p99}"
    );
    let audit = &merged["audit"];
    assert_eq!(audit["ok"], true, "{audit:#}");
    let acked: u64 = segments
        .iter()
        .map(|s| s["audit"]["acknowledged_payments"].as_u64().unwrap())
        .sum();
    assert_eq!(audit["acknowledged_payments"].as_u64().unwrap(), acked);
    let counted = audit["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "store_holds_exactly_the_acknowledged_payments")
        .expect("the store counted over every segment");
    assert_eq!(counted["ok"], true, "{counted:#}");
    for file in [
        "summary.json",
        "timeseries.jsonl",
        "report.html",
        "junit.xml",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }

    // One process, the same profile: the same schedule.
    let single = passed_summary(&loadtest(
        &[
            "-p",
            &profile,
            "--target",
            &server.base,
            "--output",
            "json",
            "--report-dir",
            reports.to_str().unwrap(),
        ],
        Some(&token),
    ));
    assert_eq!(single["open_model"]["scheduled"], SCHEDULED);
    assert_eq!(
        single["open_model"]["sent"].as_u64().unwrap()
            + single["open_model"]["dropped"].as_u64().unwrap(),
        sent
    );
}

#[test]
fn a_segment_without_a_shared_target_or_with_too_few_users_is_refused() {
    let dir = temp_dir();
    let smoke = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/smoke.toml");
    for (args, says) in [
        (
            vec!["-p", smoke, "--segment", "1/2"],
            "needs one target every segment shares",
        ),
        (vec!["-p", smoke, "--segment", "3/2"], "I must be 1 to N"),
        (
            vec![
                "-p",
                smoke,
                "--target",
                "http://127.0.0.1:9",
                "--segment",
                "1/2",
            ],
            "gives segment 1/2 4 of 8 users",
        ),
        (
            vec![
                "-p",
                smoke,
                "--target",
                "http://127.0.0.1:9",
                "--prepare-only",
            ],
            "--merchants-file",
        ),
        (
            vec!["-p", smoke, "--start-at", "tomorrow"],
            "--start-at \"tomorrow\"",
        ),
    ] {
        let mut all = args.clone();
        let reports = dir.path().join("r");
        all.extend(["--report-dir", reports.to_str().unwrap()]);
        let out = loadtest(&all, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
