//! Clients that open connections and never finish a request (slowloris, a stuck proxy):
//! they must not stop anyone else being served, and the server closes them after its
//! header timeout instead of holding a file descriptor each for ever.

use crate::support::Server;
use reqwest::StatusCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections that send half a request line, or nothing at all, and then wait.
const STALLED: usize = 3_000;
/// The server's header timeout in this test.
const HEADER_TIMEOUT: &str = "1s";
/// How long after the timeout every stalled connection must have been closed.
const CLOSE_WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_do_not_block_others_and_are_closed_after_the_header_timeout() {
    let server = Server::start_args(&["--header-timeout", HEADER_TIMEOUT]);
    let m = server.create_merchant("patient").await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut stalled = Vec::with_capacity(STALLED);
    for i in 0..STALLED {
        let mut s = TcpStream::connect(&addr)
            .await
            .unwrap_or_else(|e| panic!("connection {i}: {e} (is `ulimit -n` below 8192?)"));
        // Half of them send the start of a request line; the rest send nothing.
        if i % 2 == 0 {
            s.write_all(b"POST /v1/paym").await.unwrap();
        }
        stalled.push(s);
    }

    // Everyone else is served as usual meanwhile.
    for i in 0..5 {
        let (status, body) = server.pay(&m, &format!("during-{i}"), 500 + i, true).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    // Each stalled connection is closed by the server: reading it ends (EOF or reset).
    let started = Instant::now();
    for (i, s) in stalled.iter_mut().enumerate() {
        let left = CLOSE_WAIT.saturating_sub(started.elapsed());
        let mut buf = [0u8; 512];
        let closed = tokio::time::timeout(left, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    // A 408 or 400 before closing is fine; keep reading to the end.
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "stalled connection {i} still open {CLOSE_WAIT:?} after the test began waiting"
        );
    }
    // And the server still serves.
    let (status, body) = server.pay(&m, "after", 700, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A burst of new connections waits in the kernel for the accept loop instead of being
/// dropped (a dropped SYN is retried a second later): the listening socket's backlog, its
/// Send-Q as `ss` shows it, is serve's `LISTEN_BACKLOG` as far as the kernel's
/// `net.core.somaxconn` allows, not tokio's 1,024.
#[tokio::test]
async fn the_listener_holds_a_burst_of_connections_for_the_accept_loop() {
    let api = Server::start();
    let port = api.base.rsplit(':').next().unwrap().trim_end_matches('/');
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2): scripts/install-services.sh installs it");
    let text = String::from_utf8_lossy(&out.stdout);
    let backlog: u32 = text
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no listening socket on {port}: {text:?}"));
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        backlog,
        paytool::api::LISTEN_BACKLOG.min(somaxconn),
        "{text}"
    );
}
