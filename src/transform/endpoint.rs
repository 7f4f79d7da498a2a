//! A container over HTTP, as Batch Transform talks to it (AWS DG, "Use Your
//! Own Inference Code with Batch Transform"): wait for `GET /ping` to answer
//! 200, ask `GET /execution-parameters` once, then `POST /invocations` with
//! `Content-Type` = the job's ContentType and `Accept` = its Accept, each
//! request bounded by `InvocationsTimeoutInSeconds`.
//!
//! On hyper's HTTP/1 client with pooled keep-alive connections: it reads
//! the answer while a streamed (chunked) body is still being sent, so a
//! container that answers as it reads never deadlocks against us, and a
//! chunked answer cut before its last chunk is an error, not a short body.
//! A streamed request has a connection of its own, closed when its attempt
//! ends, so a container that stops reading the body cannot hold it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use tower_service::Service;

use crate::error::{Error, ErrorKind, Result};

use crate::batch::ExecutionParameters;

use super::plan::Plan;

/// SageMaker's timeout for one `/ping` (AWS DG, "GET /ping": 2 s).
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `/execution-parameters` may take.
const PARAMETERS_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between two `/ping`s while waiting.
const PING_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How much of an error answer's body goes into the message.
const ERROR_BODY_CHARS: usize = 300;

/// A request or streamed body.
type Body = UnsyncBoxBody<Bytes, std::io::Error>;

fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// `POST /invocations` (and the other routes) of one container.
#[derive(Debug)]
pub struct Endpoint {
    client: Client<HttpConnector, Body>,
    /// For a streamed request's own connection.
    connector: HttpConnector,
    /// `http://host:port/prefix` as given, without a trailing `/`.
    pub base: String,
    authority: String,
    content_type: Option<String>,
    accept: Option<String>,
    /// `InvocationsTimeoutInSeconds`.
    pub timeout: Duration,
    /// `InvocationsMaxRetries`.
    pub retries: u32,
}

impl Endpoint {
    /// The container at `url` (`http://host:port`, maybe with a path
    /// prefix); types, timeout and retries are set with [`Endpoint::job`].
    pub fn new(url: &str) -> Result<Endpoint> {
        let bad = |why: &str| Error::config(format!("--endpoint {url:?}: {why}"));
        let uri: Uri = url.parse().map_err(|e| bad(&format!("not a URL: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad(
                "must start with http:// (a container on this machine; no TLS)",
            ));
        }
        let authority = match uri.authority() {
            Some(a) if !a.host().is_empty() => a.to_string(),
            _ => return Err(bad("no host")),
        };
        let base = format!("http://{authority}{}", uri.path().trim_end_matches('/'));
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Ok(Endpoint {
            client: Client::builder(TokioExecutor::new()).build(connector.clone()),
            connector,
            base,
            authority,
            content_type: None,
            accept: None,
            timeout: Duration::from_secs(600),
            retries: 3,
        })
    }

    /// The job's `Content-Type`, `Accept`, timeout and
    /// retries.
    pub fn job(mut self, plan: &Plan) -> Endpoint {
        self.content_type.clone_from(&plan.content_type);
        self.accept.clone_from(&plan.accept);
        self.timeout = plan.timeout;
        self.retries = plan.max_retries;
        self
    }

    fn connection(&self, e: &hyper_util::client::legacy::Error) -> Error {
        use std::error::Error as _;
        let mut cause = e.source();
        let mut detail = String::new();
        while let Some(c) = cause {
            if let Some(h) = c.downcast_ref::<hyper::Error>() {
                if h.is_incomplete_message() {
                    return conn("the connection closed before the response was complete");
                }
            }
            detail = c.to_string();
            cause = c.source();
        }
        if e.is_connect() {
            return conn(&format!("connecting to {}: {detail}", self.authority));
        }
        conn(&format!("{e}: {detail}"))
    }

    /// The request `method path` with the job's headers.
    fn request(&self, method: http::Method, path: &str, body: Body) -> Result<Request<Body>> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if path == "/invocations" {
            if let Some(ct) = &self.content_type {
                req = req.header(header::CONTENT_TYPE, ct);
            }
            if let Some(a) = &self.accept {
                req = req.header(header::ACCEPT, a);
            }
        }
        req.body(body)
            .map_err(|e| Error::config(format!("bad request header: {e}")))
    }

    /// Send one request within `limit`; a 2xx answer's body goes to `sink`
    /// piece by piece, any other is an [`ErrorKind::Status`].
    async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Body,
        limit: Duration,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let exchange = async {
            let req = self.request(method, path, body)?;
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| self.connection(&e))?;
            answer(resp, sink).await
        };
        within(limit, exchange).await
    }
    /// Wait until `GET /ping` answers 200, at most `within`.
    pub async fn wait_ready(&self, within: Duration) -> Result<()> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            let get = self.fetch(http::Method::GET, "/ping", Bytes::new(), PING_TIMEOUT);
            let reason = match get.await {
                Ok(_) => return Ok(()),
                Err(e) => match e.kind() {
                    ErrorKind::Status { status, .. } => format!("GET /ping answered {status}"),
                    ErrorKind::InvocationTimeout { .. } => "GET /ping took more than 2 s".into(),
                    _ => format!("GET /ping: {e}"),
                },
            };
            let waited = start.elapsed();
            if waited >= within {
                return Err(Error::new(ErrorKind::Unavailable {
                    url: self.base.clone(),
                    reason: format!(
                        "{reason} (waited {:.1} s, --ping-timeout)",
                        waited.as_secs_f64()
                    ),
                }));
            }
            // Polling with a growing pause, as SageMaker polls a starting
            // container: a retry interval, not a synchronisation.
            tokio::time::sleep(pause.min(within - waited)).await;
            pause = (pause * 2).min(PING_BACKOFF_MAX);
        }
    }

    /// Ask `GET /execution-parameters` once; the answer counts only if it is
    /// 200 (as SageMaker and its local mode: anything else means defaults).
    pub async fn execution_parameters(
        &self,
        notes: &mut Vec<String>,
    ) -> Option<ExecutionParameters> {
        let path = "/execution-parameters";
        let get = self.fetch(http::Method::GET, path, Bytes::new(), PARAMETERS_TIMEOUT);
        match get.await {
            Ok(body) => Some(ExecutionParameters::from_json(&body, notes)),
            Err(e) => {
                notes.push(match e.kind() {
                    ErrorKind::Status { status, .. } => format!(
                        "GET /execution-parameters answered {status}: SageMaker's defaults apply"
                    ),
                    _ => format!(
                        "GET /execution-parameters failed ({e}): SageMaker's defaults apply"
                    ),
                });
                None
            }
        }
    }

    /// Send one request and keep its whole 2xx answer.
    async fn fetch(
        &self,
        method: http::Method,
        path: &str,
        body: Bytes,
        limit: Duration,
    ) -> Result<Vec<u8>> {
        // Room for a typical answer (a score per record) without regrowing.
        let mut out = Vec::with_capacity(body.len() / 4);
        let mut keep = |b: &[u8]| {
            out.extend_from_slice(b);
            Ok(())
        };
        self.send(method, path, full(body), limit, &mut keep)
            .await?;
        Ok(out)
    }

    /// One mini-batch: the whole 2xx answer.
    pub async fn invoke(&self, body: Bytes) -> Result<Vec<u8>> {
        self.fetch(http::Method::POST, "/invocations", body, self.timeout)
            .await
    }

    /// One streamed request: its answer goes to `sink` as it arrives.
    ///
    /// It has a connection of its own, closed when the attempt ends: the
    /// connection's task holds the body, and while it lives a container
    /// that stopped reading (one that hangs, or answered an error without
    /// reading on) leaves the body's sender blocked for ever. Closing it
    /// drops the body's receiver, so the reader of the file stops too. A
    /// 2xx answer waits, within the same timeout, for the body to be sent.
    pub async fn invoke_streamed(
        &self,
        body: mpsc::Receiver<std::io::Result<Bytes>>,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let frames = futures::stream::unfold(body, |mut rx| async move {
            rx.recv().await.map(|r| (r.map(Frame::data), rx))
        });
        let body = StreamBody::new(frames).boxed_unsync();
        let mut req = self.request(http::Method::POST, "/invocations", body)?;
        // On a connection of our own the target is in origin form, with
        // `Host` (RFC 9112 §3.2), as the pooled client writes it.
        let uri = std::mem::replace(req.uri_mut(), Uri::from_static("/"));
        if let Some(target) = uri.path_and_query() {
            *req.uri_mut() = Uri::from(target.clone());
        }
        let host = http::HeaderValue::from_str(&self.authority)
            .map_err(|e| Error::config(format!("bad Host header: {e}")))?;
        req.headers_mut().insert(header::HOST, host);
        let exchange = async {
            let io = self
                .connector
                .clone()
                .call(uri)
                .await
                .map_err(|e| conn(&format!("connecting to {}: {e}", self.authority)))?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| hyper_error(&e))?;
            // Dropped, it ends the connection whatever became of the request.
            let mut task = AbortOnDrop(tokio::spawn(connection));
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| hyper_error(&e))?;
            answer(resp, sink).await?;
            // The body ends after the answer only if the container answered
            // before reading all of it.
            drop(sender);
            match (&mut task.0).await {
                Ok(Err(e)) => Err(hyper_error(&e)),
                _ => Ok(()),
            }
        };
        within(self.timeout, exchange).await
    }
}

/// A task aborted when this is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run `exchange` within `limit` (`InvocationsTimeoutInSeconds`).
async fn within(
    limit: Duration,
    exchange: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    tokio::time::timeout(limit, exchange).await.map_err(|_| {
        Error::new(ErrorKind::InvocationTimeout {
            secs: limit.as_secs_f64(),
        })
    })?
}

/// Read an answer: a 2xx answer's body goes to `sink` piece by piece, any
/// other is an [`ErrorKind::Status`] with the start of its body.
async fn answer(
    resp: http::Response<hyper::body::Incoming>,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let ok = resp.status().is_success();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut error_body = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            conn("the connection closed before the response was complete (cut response)")
        })?;
        let Some(piece) = frame.data_ref() else {
            continue;
        };
        if ok {
            sink(piece)?;
        } else if error_body.len() < 4 * ERROR_BODY_CHARS {
            error_body.extend_from_slice(piece);
        }
    }
    if !ok {
        let text = String::from_utf8_lossy(&error_body);
        let body = text.trim().chars().take(ERROR_BODY_CHARS).collect();
        return Err(Error::new(ErrorKind::Status { status, body }));
    }
    Ok(())
}

/// A failed exchange on a connection of our own.
fn hyper_error(e: &hyper::Error) -> Error {
    use std::error::Error as _;
    if e.is_incomplete_message() {
        return conn("the connection closed before the response was complete");
    }
    match e.source() {
        Some(cause) => conn(&format!("{e}: {cause}")),
        None => conn(&e.to_string()),
    }
}

fn conn(what: &str) -> Error {
    Error::new(ErrorKind::Connection(what.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A server that answers one connection with `answer`, then closes.
    fn serve(answer: &'static [u8]) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(answer);
        });
        url
    }

    fn get(url: &str) -> Result<(u16, Vec<u8>)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = Endpoint::new(url)?;
        let r = rt.block_on(e.fetch(http::Method::GET, "/x", Bytes::new(), PING_TIMEOUT));
        match r {
            Ok(body) => Ok((200, body)),
            Err(e) => match e.kind() {
                ErrorKind::Status { status, body } => Ok((*status, body.as_bytes().to_vec())),
                _ => Err(e),
            },
        }
    }

    #[test]
    fn answers_and_statuses() {
        let url = serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
        assert_eq!(get(&url).unwrap(), (200, b"abcde".to_vec()));
        let url = serve(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno");
        assert_eq!(get(&url).unwrap(), (404, b"no".to_vec()));
        let url = serve(b"HTTP/1.0 200 OK\r\n\r\nto close");
        assert_eq!(get(&url).unwrap(), (200, b"to close".to_vec()));
    }

    #[test]
    fn urls() {
        assert_eq!(
            Endpoint::new("http://127.0.0.1:8080/").unwrap().base,
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            Endpoint::new("http://localhost:9/prefix/").unwrap().base,
            "http://localhost:9/prefix"
        );
        for bad in ["https://x", "http://", "127.0.0.1:8080"] {
            let e = Endpoint::new(bad).unwrap_err();
            assert_eq!(e.exit_code(), 64, "{bad}: {e}");
        }
    }
}
