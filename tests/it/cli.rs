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

#[test]
fn generated_secrets_are_private_and_the_token_can_come_from_env() {
    use std::os::unix::fs::PermissionsExt;
    let server = crate::support::Server::start();
    for file in ["admin_token", "secret.key"] {
        let mode = std::fs::metadata(server.data_dir().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} has mode {mode:o}");
    }
    drop(server);

    // PAYTOOL_ADMIN_TOKEN replaces the generated token: no file is written.
    let dir = temp_dir();
    let mut child = std::process::Command::new(crate::support::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("PAYTOOL_ADMIN_TOKEN", "adm_from_env")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(
        line.starts_with("paytool serve: listening on http://127.0.0.1:"),
        "{line}"
    );
    assert!(!dir.path().join("admin_token").exists());
    child.kill().unwrap();
    child.wait().unwrap();
}
