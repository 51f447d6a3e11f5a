//! Throwaway local servers that paytool itself starts and stops (for a load test's
//! target, and for the integration tests): never a server started by hand.

pub mod haproxy;
pub mod postgres;
pub mod redis;

/// A loopback port free right now (another process may take it before the server binds
/// it: callers try again).
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
