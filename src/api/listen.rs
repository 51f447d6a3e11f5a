//! The accept loop. axum's `serve` gives hyper no timer, so a client that sends half a
//! request line holds its connection, and a file descriptor, for as long as it likes.
//! Here every connection gets hyper's header read timeout, which is also how long a
//! keep-alive connection may sit idle between requests, and the connections open at once
//! are bounded: past the bound, new ones wait in the kernel's backlog.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Longest a client may take to send a request's headers, and longest a keep-alive
/// connection may idle between requests (hyper's own default).
pub const HEADER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Connections served at once; each holds a file descriptor and a task.
pub const CONNECTIONS_MAX: usize = 10_000;
/// After an accept error (out of file descriptors, say), wait this long before the next.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// On shutdown, how long in-flight requests get to finish before their connections close.
pub const DRAIN_MAX: Duration = Duration::from_secs(30);

pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send,
) {
    let open = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = open.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout);
        let connection = graceful.watch(
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone())),
        );
        tokio::spawn(async move {
            // A connection ends in an error for reasons of the client's (reset, timeout).
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_MAX, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_MAX:?} of draining: closed");
    }
}
