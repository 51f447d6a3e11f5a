//! The command line itself: help, version, completions, and bad configuration.

use crate::support::{paytool, temp_dir};

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
fn unknown_flag_exits_2() {
    assert_eq!(paytool(&["serve", "--no-such-flag"]).status.code(), Some(2));
}
