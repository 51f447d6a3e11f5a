//! The open model's own client as users meet it: an https target behind a TLS-terminating
//! HAProxy (Debian's, started here on a free loopback port with a certificate from a CA
//! made here by openssl and trusted through `SSL_CERT_FILE`), and a pool of connections that grows
//! when a stalled target keeps every connection busy.

use crate::support::{
    ChildGuard, DataDir, Server, free_port, loadtest, passed_summary, passing_loadtest, temp_dir,
};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long HAProxy gets to start listening.
const HAPROXY_START_MAX: Duration = Duration::from_secs(10);

/// A private CA (`ca.pem`, what clients trust) and a server certificate for 127.0.0.1
/// it signed (`site.pem`: certificate and key, as HAProxy reads them). A self-signed
/// CA certificate cannot serve as the server's own: rustls refuses a CA as an end entity.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl is installed (scripts/install-services.sh)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=paytool test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "site.key",
        "-out",
        "site.csr",
    ]);
    std::fs::write(
        dir.join("site.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "site.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "site.ext",
        "-out",
        "site.crt",
    ]);
    let site = [
        std::fs::read_to_string(dir.join("site.crt")).unwrap(),
        std::fs::read_to_string(dir.join("site.key")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join("site.pem"), site).unwrap();
}

/// HAProxy terminating TLS on `port` in front of the API at `backend` (host:port).
fn haproxy(dir: &Path, port: u16, backend: &str) -> ChildGuard {
    let config = format!(
        "global\n  maxconn 2000\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
         frontend tls\n  bind 127.0.0.1:{port} ssl crt {}\n  default_backend api\n\
         backend api\n  server api {backend}\n",
        dir.join("site.pem").display()
    );
    std::fs::write(dir.join("haproxy.cfg"), config).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(dir.join("haproxy.cfg"))
        .stdout(Stdio::null())
        .spawn()
        .expect("haproxy is installed (scripts/install-services.sh)");
    let guard = ChildGuard::new(child);
    let until = Instant::now() + HAPROXY_START_MAX;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "haproxy did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    guard
}

#[test]
fn an_https_target_behind_haproxy_is_load_tested_and_audited() {
    let dir = temp_dir();
    certificates(dir.path());
    let token = "tls-admin-token";
    let server = Server::start_with_admin_token(DataDir::temp(), token);
    let port = free_port();
    let _proxy = haproxy(dir.path(), port, server.base.trim_start_matches("http://"));
    let target = format!("https://127.0.0.1:{port}");
    let reports = dir.path().join("reports");
    for shape in [
        // The open model's own connections (hyper over rustls)...
        "--rate 100/s --connections 4 --run-time 3s",
        // ...and Goose's (reqwest), the closed model.
        "--users 8 --ramp 1s --run-time 3s",
    ] {
        let mut args = vec![
            "-p",
            "profiles/smoke.toml",
            "--target",
            &target,
            "--output",
            "json",
        ];
        args.extend(shape.split(' '));
        args.extend(["--report-dir", reports.to_str().unwrap()]);
        let mut cmd = Command::new(crate::support::BIN);
        cmd.arg("loadtest")
            .args(&args)
            .env("PAYTOOL_ADMIN_TOKEN", token)
            .env("SSL_CERT_FILE", dir.path().join("ca.pem"));
        let out = crate::support::run_bounded(&mut cmd, crate::support::LOADTEST_TIMEOUT);
        let summary = passed_summary(&out);
        let total = &summary["total"];
        assert!(total["count"].as_u64().unwrap() > 50, "{shape}: {total:#}");
        assert_eq!(total["errors"], 0, "{shape}: {total:#}");
        assert_eq!(summary["audit"]["ok"], true, "{shape}");
    }

    // Without the certificate trusted, every request fails: TLS is verified, not skipped.
    let out = loadtest(
        &[
            "-p",
            "profiles/smoke.toml",
            "--target",
            &target,
            "--rate",
            "50/s",
            "--run-time",
            "1s",
            "--output",
            "json",
        ],
        Some(token),
    );
    assert_ne!(
        out.status.code(),
        Some(0),
        "an untrusted certificate passed"
    );
}

#[test]
fn the_pool_grows_while_a_stalled_instance_keeps_every_connection_busy() {
    let dir = temp_dir();
    // One spawned instance, stopped (SIGSTOP) for a second: 2 connections cannot keep
    // 200 arrivals a second going, so the pool grows, up to its ceiling of 12.
    let profile = dir.path().join("grow.toml");
    std::fs::write(
        &profile,
        "name = \"grow\"\n\
         [load]\nrate = \"200/s\"\nrun_time = \"4s\"\nconnections = 2\nconnections_max = 12\ntimeout = \"5s\"\n\
         [merchants]\ncount = 2\n\
         [scenarios]\ncheckout = 1\n\
         [thresholds]\nerror_rate_max = 1.0\n\
         [[chaos]]\nat = \"1s\"\nfault = \"stall-api\"\nfor = \"1s\"\n",
    )
    .unwrap();
    let reports = dir.path().join("reports");
    let summary = passing_loadtest(&profile, &reports);
    let open = &summary["open_model"];
    let (grew, peak) = (
        open["pool_grew"].as_u64().unwrap(),
        open["connections_peak"].as_u64().unwrap(),
    );
    assert!(grew >= 1 && (3..=12).contains(&peak), "{open:#}");
    assert_eq!(grew, peak - 2, "each growth is one connection: {open:#}");
    assert_eq!(open["connections_max"], 12);
    // Every payment made while the pool grew is accounted for.
    assert_eq!(summary["audit"]["ok"], true, "{:#}", summary["audit"]);

    // Without a ceiling above `connections`, the pool stays as it is.
    let still = std::fs::read_to_string(&profile)
        .unwrap()
        .replace("connections_max = 12\n", "");
    std::fs::write(&profile, still).unwrap();
    let summary = passing_loadtest(&profile, &reports);
    assert_eq!(summary["open_model"]["pool_grew"], 0);
    assert_eq!(summary["open_model"]["connections_peak"], 2);
}

#[test]
fn co_mitigation_backfills_what_a_stall_held_back_in_the_closed_model() {
    let dir = temp_dir();
    // Goose users wait for each answer: while the instance is stopped for a second they
    // send nothing, which hides the stall from every percentile but the max. With
    // co_mitigation, each user's slow request stands for the ones it held back.
    let profile = dir.path().join("co.toml");
    let text = "name = \"co\"\n\
         [load]\nusers = 2\nramp = \"1s\"\nrun_time = \"4s\"\ntimeout = \"5s\"\nco_mitigation = \"average\"\n\
         [merchants]\ncount = 2\n\
         [scenarios]\ncheckout = 1\n\
         [thresholds]\nerror_rate_max = 1.0\n\
         [[chaos]]\nat = \"2s\"\nfault = \"stall-api\"\nfor = \"1s\"\n";
    std::fs::write(&profile, text).unwrap();
    let reports = dir.path().join("reports");
    let run = |profile: &Path| passing_loadtest(profile, &reports);
    let mitigated = run(&profile);
    let backfilled = mitigated["co_backfilled"].as_u64().unwrap_or(0);
    assert_eq!(mitigated["co_mitigation"], "average");
    // A 1 s stall at a cadence of a few ms stands for hundreds of requests.
    assert!(backfilled >= 50, "{backfilled} backfilled");
    assert!(mitigated["total"]["count"].as_u64().unwrap() > backfilled);
    assert_eq!(
        mitigated["audit"]["ok"], true,
        "synthetic requests are not payments"
    );

    std::fs::write(&profile, text.replace("co_mitigation = \"average\"\n", "")).unwrap();
    let plain = run(&profile);
    assert!(plain.get("co_backfilled").is_none(), "{plain:#}");
    // The stall is in both runs; only the mitigated one lets it reach its p99.
    let p99 = |s: &serde_json::Value| s["total"]["p99_ms"].as_f64().unwrap();
    assert!(
        p99(&mitigated) > p99(&plain),
        "{} vs {}",
        p99(&mitigated),
        p99(&plain)
    );

    // The open model has nothing to mitigate: refused, naming the key.
    let open = dir.path().join("open.toml");
    std::fs::write(&open, "name = \"open\"\n[load]\nrate = \"10/s\"\nrun_time = \"1s\"\nco_mitigation = \"average\"\n[scenarios]\ncheckout = 1\n").unwrap();
    let out = loadtest(&["-p", open.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("load.co_mitigation"));
}
