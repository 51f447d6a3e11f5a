//! `paytool loadtest` and `paytool report` run for real: short load tests against the
//! spawned reference API, checked by exit code, output and the files they leave.

use crate::support::{Server, edited_profile, json_stdout, loadtest, named, paytool, temp_dir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

const PROFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/smoke.toml");

/// A short smoke run: few users, a few seconds, JSON summary on stdout.
fn smoke(reports: &Path, extra: &[&str]) -> (Option<i32>, Value, String) {
    smoke_of(reports, PROFILE, extra)
}

/// `smoke` with another profile.
fn smoke_of(reports: &Path, profile: &str, extra: &[&str]) -> (Option<i32>, Value, String) {
    let mut args = vec![
        "--profile",
        profile,
        "--users",
        "8",
        "--ramp",
        "1s",
        "--run-time",
        "3s",
        "--merchants",
        "3",
    ];
    args.extend_from_slice(extra);
    run_json(reports, &args)
}

/// `paytool loadtest ARGS --report-dir REPORTS --output json`: exit code, summary, output.
fn run_json(reports: &Path, args: &[&str]) -> (Option<i32>, Value, String) {
    let mut all = args.to_vec();
    all.extend_from_slice(&[
        "--report-dir",
        reports.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let out = loadtest(&all, None);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let summary = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code(), summary, format!("{stdout}\n{stderr}"))
}

/// Run a load test that must be refused before anything starts: exit 2; its stderr.
fn refused(args: &[&str], reports: &Path) -> String {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--report-dir", reports.to_str().unwrap()]);
    exits(&loadtest(&all, None), 2)
}

/// The command exited with `code`; its stderr.
fn exits(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "{err}");
    err
}

/// `"a b c"` as `["a", "b", "c"]`: arguments written as on a command line.
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn run_dir(reports: &Path, summary: &Value) -> PathBuf {
    reports.join(summary["run_id"].as_str().expect("a run id"))
}

/// summary.json's histograms hold every request its rows count, and the time series'
/// intervals add up to the whole run, per request name and in all.
fn assert_histograms_and_time_series_agree(dir: &Path, summary: &Value) {
    assert_eq!(summary["schema"], 1);
    assert!(summary["started_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(summary["profile_sha256"].as_str().unwrap().len(), 64);
    let counted = |h: &Value| -> u64 {
        h["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c[1].as_u64().unwrap())
            .sum()
    };
    let rows: Vec<Value> = std::fs::read_to_string(dir.join("timeseries.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for row in summary["requests"].as_array().unwrap() {
        let name = row["name"].as_str().unwrap();
        let h = &summary["histograms"][name];
        assert_eq!(
            counted(&h["ok"]) + counted(&h["failed"]),
            row["count"],
            "{name}"
        );
        assert_eq!(counted(&h["failed"]), row["errors"], "{name}");
        let in_series: u64 = rows
            .iter()
            .filter(|r| r["name"] == name)
            .map(|r| r["requests"].as_u64().unwrap())
            .sum();
        assert_eq!(in_series, row["count"].as_u64().unwrap(), "{name}");
    }
    let all: u64 = rows
        .iter()
        .filter(|r| r["name"] == "All")
        .map(|r| r["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(all, summary["total"]["count"].as_u64().unwrap());
    let csv = std::fs::read_to_string(dir.join("timeseries.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        rows.len() + 1,
        "a header and a line per row"
    );
}

#[test]
fn smoke_profile_passes_with_a_clean_audit_and_writes_every_report() {
    let reports = temp_dir();
    let (code, summary, output) = smoke(reports.path(), &[]);
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(summary["passed"], true);
    let audit = &summary["audit"];
    assert_eq!(audit["ok"], true, "{audit:#}");
    assert!(
        audit["acknowledged_payments"].as_u64().unwrap() > 20,
        "{audit:#}"
    );
    // Every journey ran and has its stable request name.
    let names: Vec<&str> = summary["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for name in [
        "POST /v1/payments",
        "POST /v1/payments/{id}/capture",
        "POST /v1/payments/{id}/cancel",
        "POST /v1/payments/{id}/refunds",
        "GET /v1/balance",
        "POST /v1/payments (decline)",
        "POST /v1/payments (retry storm)",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(
        summary["server"]["commit_batches"].as_u64().unwrap() > 0,
        "{summary:#}"
    );
    let dir = run_dir(reports.path(), &summary);
    for file in [
        "goose.html",
        "goose.json",
        "goose.md",
        "profile.toml",
        "summary.json",
        "summary.md",
        "junit.xml",
        "acks.jsonl",
        "audit.json",
        "merchants.json",
        "timeseries.jsonl",
        "timeseries.csv",
    ] {
        assert!(
            dir.join(file).is_file(),
            "{file} missing in {}",
            dir.display()
        );
    }
    assert_histograms_and_time_series_agree(&dir, &summary);
    // A passed run keeps no server data; merchant keys are private to the owner.
    assert!(!dir.join("server-data").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("merchants.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "merchants.json is readable by others: {mode:o}"
    );
    let acks = std::fs::read_to_string(dir.join("acks.jsonl")).unwrap();
    assert_eq!(
        acks.lines().count() as u64,
        audit["acknowledged_payments"].as_u64().unwrap()
    );
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(
        junit.contains("failures=\"0\"") && junit.contains("paytool.audit"),
        "{junit}"
    );
    // `report show` prints the same table again.
    let out = paytool(&["report", "show", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("POST /v1/payments") && shown.contains("PASSED"),
        "{shown}"
    );
}

#[test]
fn processes_true_runs_the_spawned_api_as_a_serve_process_of_its_own() {
    let reports = temp_dir();
    let profile = edited_profile(
        PROFILE,
        reports.path(),
        "processes.toml",
        "[target]\n",
        "[target]\nprocesses = true\n",
    );
    let (code, summary, output) = smoke_of(reports.path(), profile.to_str().unwrap(), &[]);
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(summary["audit"]["ok"], true, "{summary:#}");
    // The API ran as `paytool serve`, which wrote its own log in the run dir; a task in
    // the generator's runtime writes none.
    let log = std::fs::read_to_string(run_dir(reports.path(), &summary).join("api-0.log"))
        .expect("the API process's log");
    assert!(log.contains("listening"), "{log}");
    let tasks = temp_dir();
    let (code, summary, output) = smoke(tasks.path(), &[]);
    assert_eq!(code, Some(0), "{output}");
    assert!(!run_dir(tasks.path(), &summary).join("api-0.log").exists());
    // It names spawned instances, so a URL target refuses it.
    let remote = edited_profile(
        PROFILE,
        reports.path(),
        "remote.toml",
        "[target]\nshards = 2\n",
        "[target]\nurl = \"http://127.0.0.1:1\"\nprocesses = true\n",
    );
    let err = refused(&["--profile", remote.to_str().unwrap()], reports.path());
    assert!(
        err.contains("`target.processes` applies to instances paytool spawns"),
        "{err}"
    );
    assert!(err.contains("remote.toml"), "{err}");
}

#[test]
fn an_impossible_threshold_exits_1_and_says_which() {
    let reports = temp_dir();
    let (code, summary, output) = smoke(
        reports.path(),
        &[
            "--no-audit",
            "--threshold",
            "POST /v1/payments:p99_ms_max=0",
            "--threshold",
            "rps_min=1000000",
        ],
    );
    assert_eq!(code, Some(1), "{output}");
    assert_eq!(summary["passed"], false);
    let failed: Vec<String> = summary["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["passed"] == false)
        .map(|t| {
            format!(
                "{} {}",
                t["scope"].as_str().unwrap(),
                t["rule"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(failed, ["All rps_min", "POST /v1/payments p99_ms_max"]);
    let junit =
        std::fs::read_to_string(run_dir(reports.path(), &summary).join("junit.xml")).unwrap();
    assert!(junit.contains("failures=\"2\""), "{junit}");
}

#[test]
fn a_corrupted_profile_exits_2_naming_file_and_key() {
    let dir = temp_dir();
    let profile = dir.path().join("broken.toml");
    let good = std::fs::read_to_string(PROFILE).unwrap();
    std::fs::write(&profile, good.replace("users = 8", "usres = 8")).unwrap();
    let err = refused(&["--profile", profile.to_str().unwrap()], dir.path());
    assert!(
        err.contains("broken.toml") && err.contains("usres") && err.contains("users"),
        "{err}"
    );

    std::fs::write(
        &profile,
        good.replace("run_time = \"12s\"", "run_time = \"soon\""),
    )
    .unwrap();
    let err = refused(&["--profile", profile.to_str().unwrap()], dir.path());
    assert!(
        err.contains("broken.toml") && err.contains("load.run_time") && err.contains("15s"),
        "{err}"
    );

    std::fs::write(&profile, good.replace("checkout = 10", "chekout = 10")).unwrap();
    let err = refused(&["--profile", profile.to_str().unwrap()], dir.path());
    assert!(
        err.contains("scenarios.chekout") && err.contains("checkout"),
        "{err}"
    );
    let err = refused(&["--profile", PROFILE, "--users", "3"], dir.path());
    assert!(
        err.contains("load.users") && err.contains("never run"),
        "{err}"
    );
    // Nothing ran: no run directory was made.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn an_unreachable_target_exits_3() {
    let reports = temp_dir();
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("http://127.0.0.1:{port}");
    let out = loadtest(
        &[
            "--profile",
            PROFILE,
            "--target",
            &target,
            "--report-dir",
            reports.path().to_str().unwrap(),
        ],
        Some("adm_whatever"),
    );
    let err = exits(&out, 3);
    assert!(err.contains(&target), "{err}");
}

#[test]
fn a_remote_target_without_its_admin_token_exits_2() {
    let reports = temp_dir();
    let out = loadtest(
        &[
            "--profile",
            PROFILE,
            "--target",
            "http://127.0.0.1:9",
            "--report-dir",
            reports.path().to_str().unwrap(),
        ],
        None,
    );
    let err = exits(&out, 2);
    assert!(err.contains("PAYTOOL_ADMIN_TOKEN"), "{err}");
}

#[cfg(feature = "test-faults")]
#[test]
fn the_audit_catches_a_dropped_acknowledged_payment() {
    let reports = temp_dir();
    let (code, summary, output) = smoke(reports.path(), &["--server-fault-drop-ack-every", "25"]);
    // 4: the money audit failed, told apart from a missed threshold (1).
    assert_eq!(code, Some(4), "{output}");
    let audit = &summary["audit"];
    assert_eq!(audit["ok"], false);
    let missing = named(&audit["checks"], "acknowledged_payments_exist");
    assert_eq!(missing["ok"], false, "{audit:#}");
    assert!(missing["violation_count"].as_u64().unwrap() >= 1);
    assert!(
        missing["violations"][0]
            .as_str()
            .unwrap()
            .contains("not in the store")
    );
    // The store holds fewer payments than were acknowledged, and the count says so
    // whether or not a retried key also made an unacknowledged payment.
    let count = named(
        &audit["checks"],
        "store_holds_exactly_the_acknowledged_payments",
    );
    assert_eq!(count["ok"], false, "{audit:#}");
    let shortfall = format!(
        "{} of them are not there",
        missing["violation_count"].as_u64().unwrap()
    );
    assert!(
        count["violations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str().unwrap().contains(&shortfall)),
        "{audit:#}"
    );
    // A failed run keeps the server's data for a post-mortem.
    assert!(
        run_dir(reports.path(), &summary)
            .join("server-data")
            .is_dir()
    );
}

#[tokio::test]
async fn a_running_target_is_load_tested_through_its_url() {
    let server = Server::start();
    let reports = temp_dir();
    let out = loadtest(
        &[
            "--profile",
            PROFILE,
            "--users",
            "7",
            "--run-time",
            "2s",
            "--ramp",
            "1s",
            "--output",
            "json",
            "--target",
            &server.base,
            "--report-dir",
            reports.path().to_str().unwrap(),
        ],
        Some(&server.admin_token),
    );
    let summary = json_stdout(&out);
    assert_eq!(summary["audit"]["ok"], true);
    // The payments are in the server we started, and its ledger agrees.
    let audit = server.audit().await;
    assert_eq!(audit["ok"], true);
    assert!(
        audit["payments"].as_u64().unwrap()
            >= summary["audit"]["acknowledged_payments"].as_u64().unwrap()
    );
}

#[test]
fn report_diff_gates_on_a_regression() {
    let reports = temp_dir();
    let (code, summary, output) = smoke(reports.path(), &["--no-audit"]);
    assert_eq!(code, Some(0), "{output}");
    let base = run_dir(reports.path(), &summary);
    // The same run against itself: no regression.
    let out = paytool(&[
        "report",
        "diff",
        base.to_str().unwrap(),
        base.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A copy whose payments got ten times slower: a regression, exit 1.
    let slower = reports.path().join("slower");
    std::fs::create_dir(&slower).unwrap();
    let mut s: Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("summary.json")).unwrap()).unwrap();
    for r in s["requests"].as_array_mut().unwrap() {
        if r["name"] == "POST /v1/payments" {
            r["p99_ms"] = Value::from(r["p99_ms"].as_f64().unwrap() * 10.0 + 1.0);
        }
    }
    std::fs::write(slower.join("summary.json"), s.to_string()).unwrap();
    let out = paytool(&[
        "report",
        "diff",
        base.to_str().unwrap(),
        slower.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let diff: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(diff["regressed"], true);
    let regressed: Vec<&str> = diff["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["regression"].is_null())
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(regressed, ["POST /v1/payments"]);
    let all = diff["requests"].as_array().unwrap().last().unwrap();
    assert_eq!(all["name"], "All", "{diff:#}");
    assert!(all["old_p50_ms"].as_f64().is_some() && all["new_ok_rps"].as_f64().is_some());
    // Another profile is not a baseline: exit 2, unless --force.
    let other = reports.path().join("other");
    std::fs::create_dir(&other).unwrap();
    s["profile"] = Value::from("peak");
    std::fs::write(other.join("summary.json"), s.to_string()).unwrap();
    let refused = paytool(&[
        "report",
        "diff",
        base.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    let forced = paytool(&[
        "report",
        "diff",
        base.to_str().unwrap(),
        other.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(
        forced.status.code(),
        Some(1),
        "the slower copy, compared anyway"
    );
    // Not a run directory: exit 2.
    assert_eq!(
        paytool(&["report", "show", reports.path().to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
}

const OPEN_PROFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/open-checkout.toml");

fn open_loadtest(reports: &Path, extra: &[&str]) -> (Option<i32>, Value, String) {
    let mut args = vec!["--profile", OPEN_PROFILE, "--merchants", "3"];
    args.extend_from_slice(extra);
    run_json(reports, &args)
}

#[test]
fn the_open_model_sends_every_scheduled_arrival_and_audits_them() {
    let reports = temp_dir();
    // The profile's p99 bound is lifted: this test is about arrivals and the audit, and
    // a timing must not decide a pass (a busy CI machine once saw 114 ms).
    let (code, summary, output) = open_loadtest(
        reports.path(),
        &[
            "--rate",
            "200/s",
            "--run-time",
            "2s",
            "--threshold",
            "p99_ms_max=60000",
        ],
    );
    assert_eq!(code, Some(0), "{output}");
    let open = &summary["open_model"];
    assert_eq!(open["scheduled"], 400, "{open:#}");
    assert_eq!(open["sent"], 400);
    // Every arrival became one journey whose first request was recorded: none lost
    // between schedule and Goose (checkout starts with a payment, browse with the balance).
    let count = |name: &str| named(&summary["requests"], name)["count"].as_u64().unwrap();
    assert_eq!(
        count("POST /v1/payments") + count("GET /v1/balance"),
        400,
        "{summary:#}"
    );
    assert_eq!(summary["audit"]["ok"], true);
    assert_eq!(
        summary["audit"]["acknowledged_payments"],
        count("POST /v1/payments")
    );
}

#[test]
fn an_arrival_rate_runs_every_journey_through_the_same_scenario_code() {
    let dir = temp_dir();
    let profile = dir.path().join("open.toml");
    let text = std::fs::read_to_string(OPEN_PROFILE).unwrap();
    let every = "checkout = 1\nauth_capture = 1\nrefund = 1\ncancel = 1\nbrowse = 1\ndeclines = 1\nretry_storm = 1\nhealthz = 1";
    // No Goose reports: paytool's own are written all the same, from every sample.
    let text = text.replace("formats = [\"html\", \"json\", \"md\"]", "formats = []");
    std::fs::write(&profile, text.replace("checkout = 9\nbrowse = 1", every)).unwrap();
    let path = profile.to_str().unwrap();
    let args = ["--profile", path, "--merchants", "3", "--rate", "100/s"];
    let (code, summary, output) =
        run_json(dir.path(), &[&args[..], &["--run-time", "3s"]].concat());
    assert_eq!(code, Some(0), "{output}");
    // Each journey's own requests ran as arrivals, not a stand-in for them.
    for name in [
        "POST /v1/payments",
        "POST /v1/payments/{id}/capture",
        "POST /v1/payments/{id}/refunds",
        "POST /v1/payments/{id}/cancel",
        "GET /v1/balance",
        "POST /v1/payments (decline)",
        "POST /v1/payments (retry storm)",
        "GET /healthz",
    ] {
        assert!(
            named(&summary["requests"], name)["count"].as_u64().unwrap() > 0,
            "{name}"
        );
    }
    assert_eq!(summary["audit"]["ok"], true, "{:#}", summary["audit"]);
    let dir = run_dir(dir.path(), &summary);
    for file in ["summary.json", "report.html", "timeseries.jsonl"] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    assert!(!dir.join("goose.json").exists() && !dir.join("goose.html").exists());
}

#[test]
fn an_arrival_rate_is_checked() {
    let dir = temp_dir();
    let profile = edited_profile(
        OPEN_PROFILE,
        dir.path(),
        "open.toml",
        "rate = \"1000/s\"",
        "rate = \"fast\"",
    );
    let err = refused(&["--profile", profile.to_str().unwrap()], dir.path());
    assert!(err.contains("load.rate") && err.contains("2000/s"), "{err}");
}

#[test]
fn find_max_reports_the_highest_rate_that_met_the_thresholds() {
    let reports = temp_dir();
    let (code, result, output) = open_loadtest(
        reports.path(),
        &words(
            "--rate 100/s --run-time 1s --find-max --find-max-bisect 1 --rate-max 400 --threshold p99_ms_max=5000",
        ),
    );
    assert_eq!(code, Some(0), "{output}");
    let steps = result["steps"].as_array().unwrap();
    let rates: Vec<f64> = steps
        .iter()
        .map(|s| s["rate_per_s"].as_f64().unwrap())
        .collect();
    // Grows by the factor while steps pass, and never beyond --rate-max (the bisection
    // after a failure is covered by find_max's unit tests, which need no timing).
    assert_eq!(rates, [100.0, 200.0, 400.0], "{result:#}");
    assert_eq!(result["best_rate_per_s"], 400.0);
    // The answer ran again, and passed again.
    assert_eq!(result["confirmation"]["rate_per_s"], 400.0, "{result:#}");
    assert_eq!(result["confirmation"]["passed"], true);
    assert!(result["warmup_s"].as_f64().unwrap() > 0.0);
    let run = reports.path().join(
        std::fs::read_dir(reports.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name(),
    );
    assert!(run.join("find-max.json").is_file());
    // The search's chart: a point per step and series (offered, successful, p99),
    // the confirmation included.
    let chart = std::fs::read_to_string(run.join("search.html")).unwrap();
    let steps = result["steps"].as_array().unwrap().len() + 1;
    assert_eq!(chart.matches("<circle").count(), 3 * steps, "{chart}");
    assert!(
        run.join(result["best_step_dir"].as_str().unwrap())
            .join("summary.json")
            .is_file()
    );
    // The run's summary is the best step's.
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["open_model"]["rate_start_per_s"], 400.0);

    // A first step that fails searches down (4 times at most); none passing is no
    // answer: exit 1.
    let reports3 = temp_dir();
    let (code, result, output) = open_loadtest(
        reports3.path(),
        &words("--rate 100/s --run-time 1s --find-max --threshold rps_min=1000000"),
    );
    assert_eq!(code, Some(1), "{output}");
    let rates: Vec<f64> = result["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rate_per_s"].as_f64().unwrap())
        .collect();
    assert_eq!(rates, [100.0, 50.0, 25.0, 12.0, 6.0], "{result:#}");
    assert!(result["best_rate_per_s"].is_null());
    assert!(result["confirmation"].is_null());
}

#[test]
fn a_hopeless_run_stops_early_and_still_writes_every_report() {
    let dir = temp_dir();
    let text = std::fs::read_to_string(PROFILE).unwrap().replace(
        "[thresholds]\n",
        "[thresholds]\nabort_on_fail = true\ndelay = \"1s\"\nrules = [\"p50 < 1us\"]\n",
    );
    let profile = dir.path().join("hopeless.toml");
    std::fs::write(&profile, text).unwrap();
    let reports = dir.path().join("reports");
    let (code, summary, output) = run_json(
        &reports,
        &["-p", profile.to_str().unwrap(), "--run-time", "60s"],
    );
    assert_eq!(code, Some(1), "{output}");
    let why = summary["aborted"].as_str().expect("stopped early");
    assert!(why.contains("All p50_ms_max"), "{why}");
    // Stopped long before its minute: the killswitch ended it, not the run time.
    assert!(
        summary["duration_s"].as_f64().unwrap() < 30.0,
        "{summary:#}"
    );
    let failed = summary["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["rule"] == "p50_ms_max")
        .unwrap();
    assert_eq!(failed["passed"], false);
    let dir = run_dir(&reports, &summary);
    for file in [
        "summary.json",
        "summary.md",
        "junit.xml",
        "timeseries.jsonl",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
}

#[test]
fn a_target_that_dies_before_the_audit_still_gets_every_report_and_a_reason() {
    let mut server = Server::start();
    let reports = temp_dir();
    let child = std::process::Command::new(crate::support::BIN)
        .args([
            "loadtest",
            "-p",
            PROFILE,
            "--target",
            &server.base,
            "--run-time",
            "4s",
        ])
        .args([
            "--output",
            "json",
            "--report-dir",
            reports.path().to_str().unwrap(),
        ])
        .env("PAYTOOL_ADMIN_TOKEN", &server.admin_token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    server.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // 4: the money audit failed, here because it could not run at all.
    assert_eq!(out.status.code(), Some(4), "{err}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ran = named(&summary["audit"]["checks"], "audit_ran");
    assert_eq!(ran["ok"], false);
    assert!(
        ran["violations"][0]
            .as_str()
            .unwrap()
            .contains("could not run"),
        "{ran:#}"
    );
    let dir = run_dir(reports.path(), &summary);
    for file in [
        "summary.json",
        "junit.xml",
        "report.html",
        "timeseries.jsonl",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
}

#[test]
fn poisson_arrivals_run_and_a_bad_kind_is_refused() {
    let dir = temp_dir();
    let text = std::fs::read_to_string(OPEN_PROFILE).unwrap();
    let write = |kind: &str| {
        let path = dir.path().join(format!("{kind}.toml"));
        std::fs::write(
            &path,
            text.replace("[load]\n", &format!("[load]\narrivals = \"{kind}\"\n")),
        )
        .unwrap();
        path
    };
    let poisson = write("poisson");
    let reports = dir.path().join("reports");
    let (code, summary, output) = run_json(
        &reports,
        &[
            "-p",
            poisson.to_str().unwrap(),
            "--rate",
            "200/s",
            "--run-time",
            "2s",
            "--merchants",
            "3",
        ],
    );
    assert_eq!(code, Some(0), "{output}");
    let sent = summary["open_model"]["sent"].as_u64().unwrap();
    // 400 expected: a Poisson count's spread is about 20.
    assert!((250..=550).contains(&sent), "{sent}");
    assert_eq!(summary["audit"]["ok"], true);
    let bad = write("bursty");
    let err = refused(&["-p", bad.to_str().unwrap()], &reports);
    assert!(err.contains("`load.arrivals` is \"bursty\""), "{err}");
}

#[test]
fn a_test_plan_run_keeps_stdout_for_the_json_summary_alone() {
    // Goose prints "N users launched." on stdout in a test plan: --output json must
    // still be one JSON document there (the line goes to stderr).
    let dir = crate::support::temp_dir();
    let profile = dir.path().join("plan.toml");
    std::fs::write(
        &profile,
        "name = \"plan\"\n[load]\ntest_plan = \"2,1s;2,2s;0,1s\"\n[merchants]\ncount = 2\n\
         [scenarios]\ncheckout = 1\nbrowse = 1\n",
    )
    .unwrap();
    let summary = crate::support::passing_loadtest(&profile, &dir.path().join("reports"));
    assert_eq!(summary["profile"], "plan");
}
