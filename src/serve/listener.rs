//! The accept loop: one task per connection, HTTP/1.1 keep-alive, and a
//! graceful drain bounded in time.
//!
//! warp's own `Server` would do most of this, but its graceful shutdown waits
//! without a limit and it exposes none of hyper's connection settings, so the
//! loop is ours (mini-redis's `Listener` shape) and warp provides the routes
//! as a tower service.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Connection settings.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Time a client has to send a request's headers (slowloris guard).
    pub header_read_timeout: Duration,
    /// Time in-flight requests get after the shutdown signal.
    pub grace: Duration,
}

/// Serve `service` on `listener` until `shutdown` resolves, then stop
/// accepting, let in-flight requests finish for up to `limits.grace`, and
/// return whether they all did.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> bool
where
    S: tower_service::Service<
            http::Request<hyper::body::Incoming>,
            Response = warp::reply::Response,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it
                    // was accepted: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        let conn = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(service.clone()),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        target: "mmp::shutdown",
        grace_s = limits.grace.as_secs_f64(),
        "stopped accepting; waiting for in-flight requests"
    );
    match tokio::time::timeout(limits.grace, graceful.shutdown()).await {
        Ok(()) => {
            tracing::info!(target: "mmp::shutdown", "all requests completed; exiting");
            true
        }
        Err(_) => {
            tracing::warn!(
                target: "mmp::shutdown",
                "grace period over: cutting the requests still running"
            );
            false
        }
    }
}
