//! report.html as a user sees it: a load test's page opened in headless Chromium
//! (Debian's `chromium`), which must render every chart (the SVG paths are in the DOM it
//! builds) without a script error or a request for anything outside the page.

use crate::support::{loadtest, passed_summary, temp_dir};
use std::process::Command;
use std::time::Duration;

const PROFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/smoke.toml");

#[test]
fn the_html_report_renders_every_chart_in_chromium() {
    let dir = temp_dir();
    let reports = dir.path().join("reports");
    let out = loadtest(
        &[
            "-p",
            PROFILE,
            "--run-time",
            "3s",
            "--report-dir",
            reports.to_str().unwrap(),
            "--output",
            "json",
        ],
        None,
    );
    let summary = passed_summary(&out);
    let page = reports
        .join(summary["run_id"].as_str().unwrap())
        .join("report.html");
    assert!(page.is_file(), "no report.html");
    let names = summary["requests"].as_array().unwrap().len();

    let profile = dir.path().join("chromium");
    let shot = dir.path().join("report.png");
    // The flags the machine's notes give for Chromium on a closed network, as root.
    let chromium = |extra: &[&str]| {
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()));
        crate::support::run_bounded(&mut cmd, Duration::from_secs(120))
    };
    let dom = chromium(&["--dump-dom"]);
    let stderr = String::from_utf8_lossy(&dom.stderr);
    assert!(
        dom.status.success(),
        "chromium (scripts/install-services.sh installs it): {stderr}"
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    // A latency chart per request name and the All charts, each line a drawn path.
    let charts = dom.matches("<svg class=\"chart\"").count();
    assert!(charts > names, "{charts} charts for {names} request names");
    let drawn = dom
        .match_indices("class=\"series\"")
        .filter(|(i, _)| dom[*i..].split('>').next().unwrap().contains(" d=\"M"))
        .count();
    assert!(drawn >= 3 * names, "{drawn} lines drawn");
    assert!(
        dom.contains("Money audit"),
        "the audit's verdict is on the page"
    );
    for bad in ["Uncaught", "CONSOLE", "ERR_FILE_NOT_FOUND", "net::ERR"] {
        assert!(!stderr.contains(bad), "{bad} while rendering: {stderr}");
    }
    let shot_out = chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1280,2400",
    ]);
    assert!(shot_out.status.success());
    // A page of charts, not a blank one: a blank PNG of that size is a few kB.
    let png = std::fs::metadata(&shot).unwrap().len();
    assert!(png > 40_000, "a {png}-byte screenshot");
}
