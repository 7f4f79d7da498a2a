//! The accept loop: one task per connection, HTTP/1.1 keep-alive, and a
//! graceful drain bounded in time.
//!
//! warp's own `Server` would do most of this, but its graceful shutdown waits
//! without a limit and it exposes none of hyper's connection settings, so the
//! loop is ours (mini-redis's `Listener` shape) and warp provides the routes
//! as a tower service.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
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
    /// Time a watched response may wait on a client that reads none of it
    /// (`MODEL_SERVER_TIMEOUT`, [`WriteWatch`]).
    pub write_timeout: Duration,
}

/// A connection's watch on its response writes, handed to each request in
/// its extensions. A response body that waits on the client arms it while
/// it is being sent (`/invocations`); then a write the socket does not
/// take for the timeout ends the connection, and with it the request and
/// its slot. hyper polls a response body only when it can write, so a
/// timer inside the body never fires while the client reads nothing: the
/// watch has to sit under hyper, on the socket.
#[derive(Clone, Debug, Default)]
pub struct WriteWatch(Arc<WatchState>);

#[derive(Debug, Default)]
struct WatchState {
    armed: AtomicBool,
    tripped: AtomicBool,
}

impl WriteWatch {
    /// Watch the writes from now on (a response body is being sent).
    pub fn arm(&self) {
        self.0.armed.store(true, Ordering::Relaxed);
    }

    /// Stop watching (the body has ended or was dropped).
    pub fn disarm(&self) {
        self.0.armed.store(false, Ordering::Relaxed);
    }

    /// Whether the connection was ended because the client read nothing
    /// for the timeout.
    pub fn tripped(&self) -> bool {
        self.0.tripped.load(Ordering::Relaxed)
    }

    fn armed(&self) -> bool {
        self.0.armed.load(Ordering::Relaxed)
    }
}

/// The socket, with writes bounded in time while its [`WriteWatch`] is
/// armed: the timer starts when a write finds the socket full and is reset
/// by any write it takes, so a slow reader is fine and only one that reads
/// nothing at all is cut. Reads and the unarmed path are the socket's own.
struct Watched<T> {
    io: T,
    watch: WriteWatch,
    timeout: Duration,
    /// Armed at the first write the socket did not take.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> Watched<T> {
    /// A write is pending: start or poll the timer; `Err` once it fired.
    fn pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if !self.watch.armed() {
            self.stalled = None;
            return Poll::Pending;
        }
        let timeout = self.timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.watch.0.tripped.store(true, Ordering::Relaxed);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the client read none of the response for {} s (MODEL_SERVER_TIMEOUT)",
                timeout.as_secs()
            ),
        )))
    }

    fn wrote(
        &mut self,
        r: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Pending => self.pending(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// `S` with the connection's [`WriteWatch`] put in each request's
/// extensions.
#[derive(Clone)]
struct WithWatch<S> {
    inner: S,
    watch: WriteWatch,
}

impl<S, B> tower_service::Service<http::Request<B>> for WithWatch<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> S::Future {
        req.extensions_mut().insert(self.watch.clone());
        self.inner.call(req)
    }
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
        let watch = WriteWatch::default();
        let io = Watched {
            io: stream,
            watch: watch.clone(),
            timeout: limits.write_timeout,
            stalled: None,
        };
        let service = WithWatch {
            inner: service.clone(),
            watch,
        };
        // With upgrades, for the WebSocket endpoint.
        let conn = http
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
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
