//! The command line itself: help, version, completions, and bad configuration.

use crate::support::{BIN, COMMAND_TIMEOUT, DataDir, Server, paytool, run_bounded, temp_dir};
use std::process::Command;
use std::time::Duration;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn help_teaches_with_examples_and_exit_codes() {
    let out = paytool(&["serve", "--help"]);
    assert!(out.status.success());
    let help = text(&out);
    for needle in [
        "--listen",
        "--data-dir",
        "--shards",
        "PAYTOOL_LISTEN",
        "Examples:",
        "Exit codes",
    ] {
        assert!(
            help.contains(needle),
            "serve --help lacks {needle}:\n{help}"
        );
    }
    let top = text(&paytool(&["--help"]));
    assert!(
        top.contains("serve") && top.contains("Not built yet"),
        "{top}"
    );
}

#[test]
fn version_and_completions() {
    let out = paytool(&["--version"]);
    assert!(out.status.success());
    assert!(text(&out).starts_with(concat!("paytool ", env!("CARGO_PKG_VERSION"))));
    let out = paytool(&["completions", "bash"]);
    assert!(out.status.success());
    assert!(text(&out).contains("_paytool"));
}

#[test]
fn bad_config_file_exits_2_naming_file_and_key() {
    let dir = temp_dir();
    let config = dir.path().join("paytool.toml");
    std::fs::write(&config, "[serve]\nshards = 2\nlisten_on = \"x\"\n").unwrap();
    let out = paytool(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("paytool.toml") && msg.contains("listen_on"),
        "{msg}"
    );
    assert!(!msg.contains("panicked"), "{msg}");
}

#[test]
fn out_of_range_flag_exits_2_naming_the_key() {
    let dir = temp_dir();
    let out = paytool(&[
        "serve",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--shards",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("`shards`"), "{}", text(&out));
}

#[test]
fn unknown_flag_exits_2_except_for_scale_plan_whose_2_means_changes() {
    for (args, code) in [
        (&["serve", "--no-such-flag"][..], 2),
        (&["scale", "status", "--no-such-flag"], 2),
        // Terraform's -detailed-exitcode: for `plan`, 2 is "changes pending".
        (&["scale", "plan", "--no-such-flag"], 1),
        (&["--log", "warn", "scale", "plan", "-p"], 1),
        (&["scale", "plan", "--help"], 0),
    ] {
        let out = paytool(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
    }
}

#[tokio::test]
async fn generated_secrets_are_private_and_the_token_can_come_from_env() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start();
    for file in ["admin_token", "secret.key"] {
        let mode = std::fs::metadata(server.data_dir().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} has mode {mode:o}");
    }
    drop(server);

    // PAYTOOL_ADMIN_TOKEN replaces the generated token: no file is written, and the
    // token from the environment is the one admin routes accept.
    let server = Server::start_with_admin_token(DataDir::temp(), "adm_from_env");
    assert!(
        server.base.starts_with("http://127.0.0.1:"),
        "{}",
        server.base
    );
    assert!(!server.data_dir().join("admin_token").exists());
    assert_eq!(server.audit().await["merchants"], 0);
}

#[test]
fn a_command_that_overruns_its_bound_is_killed_and_fails_the_test() {
    let dir = temp_dir();
    let data = dir.path().to_str().unwrap().to_string();
    // `serve` never finishes on its own: the bound must end it.
    let outcome = std::panic::catch_unwind(|| {
        run_bounded(
            Command::new(BIN).args(["serve", "--listen", "127.0.0.1:0", "--data-dir", &data]),
            Duration::from_secs(2),
        )
    });
    let panic = outcome.expect_err("an unbounded command was allowed to finish");
    let msg = panic.downcast_ref::<String>().expect("a formatted message");
    assert!(
        msg.contains("did not finish within 2s") && msg.contains(&data) && msg.contains("stderr"),
        "{msg}"
    );
    // And nothing of it is left running.
    let ps = processes();
    assert!(!ps.contains(&data), "still running:\n{ps}");
}

fn processes() -> String {
    let out = run_bounded(
        Command::new("ps").args(["-eo", "pid,args"]),
        COMMAND_TIMEOUT,
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}
