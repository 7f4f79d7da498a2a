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
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Connection settings.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Time a client has to send a request's headers (slowloris guard); hyper
    /// also applies it while a keep-alive connection waits for its next
    /// request, so it is the idle timeout too.
    pub header_read_timeout: Duration,
    /// Largest request head; a larger one gets 431.
    pub max_header_bytes: usize,
    /// Connections served at once; more are answered 503 and closed, so an
    /// excess of clients gets a fast answer instead of a hang.
    pub max_connections: usize,
    /// Time in-flight requests get after the shutdown signal.
    pub grace: Duration,
}

/// The body a connection over the limit gets before it is closed.
const OVER_LIMIT: &str =
    r#"{"error":"overloaded","message":"the server is at its connection limit; retry shortly"}"#;

/// Answer a connection over the limit with a 503 and close it, reading
/// (and dropping) what the client sent meanwhile so the close does not
/// reset the connection before the answer is read.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{OVER_LIMIT}",
        OVER_LIMIT.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
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
    // Connections in progress, and the signal that tells them to finish
    // their current request and close (hyper's `graceful_shutdown`).
    let tasks = tokio_util::task::TaskTracker::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
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
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = limits.max_connections, "connection limit reached: answering 503");
            crate::metrics::metrics().request("other", 503);
            tokio::spawn(refuse(stream));
            continue;
        };
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(limits.max_header_bytes)
            .keep_alive(true)
            // A client may send its whole request and then shut down its
            // write side (`nc -N`, proxies, HTTP/1.0-style clients): RFC
            // 9112 §9.6 lets it, and the request still gets its answer. By
            // default hyper takes that EOF for a vanished client and drops
            // the answer; an EOF inside a body is still an error.
            .half_close(true);
        // With upgrades, for the WebSocket endpoint.
        let conn = http
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(service.clone()),
            )
            .with_upgrades();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = async { let _ = stop.wait_for(|stop| *stop).await; } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(
        target: "mmp::shutdown",
        grace_s = limits.grace.as_secs_f64(),
        "stopped accepting; waiting for in-flight requests"
    );
    stop_tx.send_replace(true);
    tasks.close();
    match tokio::time::timeout(limits.grace, tasks.wait()).await {
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
