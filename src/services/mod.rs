//! Throwaway local servers that paytool itself starts and stops (for a load test's
//! target, and for the integration tests): never a server started by hand.

pub mod haproxy;
pub mod postgres;
pub mod redis;

/// How often a starting server is asked whether it is up.
const START_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Wait until `up` says a server `child` started is ready, at most `timeout`; false when
/// the time runs out or the process exits first (its log says why).
pub(crate) fn await_started(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
    up: impl Fn() -> bool,
) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < timeout {
        if up() {
            return true;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        std::thread::sleep(START_POLL);
    }
    false
}

/// A loopback port free right now (another process may take it before the server binds
/// it: callers try again).
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
