//! Secrets never shown: the admin token, merchant keys, a database password in a layout's
//! URL, a Redis password and AWS credentials, looked for in everything paytool writes or
//! answers: the API's answers and its debug log, every `--help`, the errors of commands
//! pointed at unreachable services, and a load test's output and report files.

use crate::support::{DataDir, PgShards, Server, loadtest, passed_summary, payment_body, temp_dir};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const ADMIN_TOKEN: &str = "adm_sweep_0123456789abcdef0123456789abcdef";
const DB_PASSWORD: &str = "pg-pw-sweep-7f3a9c";
const REDIS_PASSWORD: &str = "redis-pw-sweep-b81d2e";
const AWS_SECRET: &str = "awsSecretSweepKey+7Hq2pLmN0vR5tX8zB1cD4eF6gJ9";
const AWS_KEY_ID: &str = "AKIASWEEPTEST0000001";

/// Fails naming the secret and where it showed.
fn assert_clean(text: &str, secrets: &[&str], where_: &str) {
    for s in secrets {
        assert!(!text.contains(s), "{where_} shows a secret ({s}):\n{text}");
    }
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every environment variable a secret can come from, set.
fn secret_env() -> Vec<(String, String)> {
    [
        ("PAYTOOL_ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
        (
            "PAYTOOL_REDIS_URL",
            format!("redis://:{REDIS_PASSWORD}@127.0.0.1:1/"),
        ),
        (
            "PAYTOOL_SHARD_S0_URL",
            format!("postgres://postgres:{DB_PASSWORD}@127.0.0.1:1/paytool_s0"),
        ),
        ("AWS_SECRET_ACCESS_KEY", AWS_SECRET.to_string()),
        ("AWS_ACCESS_KEY_ID", AWS_KEY_ID.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn with_secret_env(args: &[&str]) -> std::process::Output {
    crate::support::run_bounded(
        Command::new(crate::support::BIN)
            .args(args)
            .envs(secret_env()),
        std::time::Duration::from_secs(60),
    )
}

#[test]
fn no_help_and_no_error_shows_a_secret_from_the_environment() {
    let secrets = [
        ADMIN_TOKEN,
        REDIS_PASSWORD,
        DB_PASSWORD,
        AWS_SECRET,
        AWS_KEY_ID,
    ];
    for cmd in [
        &["--help"][..],
        &["serve", "--help"],
        &["loadtest", "--help"],
        &["report", "--help"],
        &["scale", "--help"],
        &["scale", "plan", "--help"],
        &["shard", "--help"],
        &["shard", "status", "--help"],
        &["shard", "move", "--help"],
        &["cache", "--help"],
        &["cache", "seed", "--help"],
        &["cache", "stats", "--help"],
    ] {
        let out = with_secret_env(cmd);
        assert_eq!(out.status.code(), Some(0), "{cmd:?}: {}", output_text(&out));
        assert_clean(
            &output_text(&out),
            &secrets,
            &format!("`paytool {}`", cmd.join(" ")),
        );
    }
    // Commands pointed at services that are not there fail, and say so without them.
    let dir = temp_dir();
    let layout = dir.path().join("layout.toml");
    std::fs::write(
        &layout,
        "name = \"sweep\"\nversion = 1\nbuckets = 1024\n[shards.s0]\nurl = \"${PAYTOOL_SHARD_S0_URL}\"\n[[ranges]]\nbuckets = \"0-1023\"\nshard = \"s0\"\n",
    )
    .unwrap();
    let layout = layout.to_str().unwrap();
    for cmd in [
        &["shard", "status", "--layout", layout][..],
        &["shard", "plan", "--layout", layout],
        &["cache", "stats"],
        &["cache", "seed", "--layout", layout, "--dry-run"],
        &["serve", "--layout", layout, "--listen", "127.0.0.1:0"],
        &[
            "loadtest",
            "--target",
            "http://127.0.0.1:1",
            "-p",
            concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/smoke.toml"),
        ],
    ] {
        let out = with_secret_env(cmd);
        assert_ne!(out.status.code(), Some(0), "{cmd:?}: {}", output_text(&out));
        assert_clean(
            &output_text(&out),
            &secrets,
            &format!("`paytool {}`", cmd.join(" ")),
        );
    }
}

#[tokio::test]
async fn the_api_its_log_and_a_load_test_against_it_never_show_a_secret() {
    let dir = temp_dir();
    let pg = PgShards::start(&dir.path().join("pg"));
    // The layout's URLs come from the environment, each with a password (trust auth on
    // loopback accepts and ignores it): the password must show nowhere.
    let text = pg.layout_text(&[]);
    let mut env = Vec::new();
    let mut layout_text = String::new();
    for line in text.lines() {
        match line.strip_prefix("url = \"") {
            Some(url) => {
                let shard = env.len();
                let url = url
                    .trim_end_matches('"')
                    .replace("postgres@", &format!("postgres:{DB_PASSWORD}@"));
                env.push((format!("PAYTOOL_SHARD_S{shard}_URL"), url));
                layout_text.push_str(&format!("url = \"${{PAYTOOL_SHARD_S{shard}_URL}}\"\n"));
            }
            None => layout_text.push_str(&format!("{line}\n")),
        }
    }
    let layout = dir.path().join("layout.toml");
    std::fs::write(&layout, layout_text).unwrap();
    let log = dir.path().join("serve.log");
    let mut server = Server::spawn_logged(
        DataDir::temp(),
        &["--layout", layout.to_str().unwrap(), "--log", "debug"],
        Some(ADMIN_TOKEN),
        &env,
        Some(&log),
    );

    let m = server.create_merchant("sweep").await;
    let mut secrets = vec![
        ADMIN_TOKEN.to_string(),
        DB_PASSWORD.to_string(),
        m.key.clone(),
    ];
    let mut answers = String::new();
    let (status, body, _) = server
        .call(
            &m,
            Method::POST,
            "/v1/payments",
            Some("sweep-1"),
            Some(payment_body(500, "usd", true)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    answers.push_str(&body.to_string());
    // The key rolled: the old one is refused, and neither is echoed.
    let res = server
        .client
        .post(server.url(&format!("/v1/admin/merchants/{}/roll_key", m.id)))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let rolled: Value = res.json().await.unwrap();
    let new_key = rolled["secret_key"].as_str().unwrap().to_string();
    secrets.push(new_key.clone());
    let near_miss = format!("{}x", &new_key[..new_key.len() - 1]);
    let wrong_admin = format!("{ADMIN_TOKEN}0");
    for (path, key) in [
        ("/v1/balance", m.key.as_str()),
        ("/v1/balance", near_miss.as_str()),
        ("/v1/payments?limit=1", m.key.as_str()),
        ("/v1/admin/audit", wrong_admin.as_str()),
        ("/v1/admin/audit", new_key.as_str()),
    ] {
        let res = server
            .client
            .request(Method::GET, server.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
        let text = res.text().await.unwrap();
        assert_clean(
            &text,
            &[key, &m.key, &new_key, ADMIN_TOKEN],
            &format!("the 401 of {path}"),
        );
        answers.push_str(&text);
    }
    let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_clean(&answers, &secret_refs, "the API's answers");

    // A load test against it: its output and every report file, bar the run's own
    // merchant keys in merchants.json (mode 0600, the one place they are kept).
    let reports = dir.path().join("reports");
    let out = loadtest(
        &[
            "-p",
            concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/smoke.toml"),
            "--target",
            &server.base,
            "--users",
            "8",
            "--run-time",
            "2s",
            "--report-dir",
            reports.to_str().unwrap(),
            "--output",
            "json",
        ],
        Some(ADMIN_TOKEN),
    );
    let summary = passed_summary(&out);
    assert_clean(&output_text(&out), &secret_refs, "the load test's output");
    let run_dir = reports.join(summary["run_id"].as_str().unwrap());
    let merchants: Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("merchants.json")).unwrap()).unwrap();
    let run_keys: Vec<String> = merchants
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap().to_string())
        .collect();
    let mut all: Vec<&str> = secret_refs.clone();
    all.extend(run_keys.iter().map(String::as_str));
    for entry in std::fs::read_dir(&run_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() == "merchants.json" || !path.is_file() {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_string();
        assert_clean(&text, &all, &path.display().to_string());
    }

    server.terminate();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.lines().count() > 10, "a debug log: {logged}");
    assert_clean(&logged, &all, "the server's debug log");
    assert_no_file_shows(
        dir.path().join("reports").as_path(),
        &[ADMIN_TOKEN, DB_PASSWORD],
    );
}

/// No file under `dir` contains any of `secrets` (merchants.json included: it holds
/// merchant keys, never the admin token or a password).
fn assert_no_file_shows(dir: &Path, secrets: &[&str]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_no_file_shows(&path, secrets);
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_string();
            assert_clean(&text, secrets, &path.display().to_string());
        }
    }
}
