//! `POST /invocations`: negotiate, then stream the body through the pipeline
//! and the predictions back.
//!
//! The response body is an [`Invocation`] stream that hyper pulls as the
//! socket drains; each pull reads the request body only as far as it needs.
//! There is no task or queue in between, so backpressure is end to end: a
//! client that stops reading stops the server reading its body, and memory
//! per request is one partial record, one batch and one output buffer.
//!
//! When to commit the status line: the handler pulls the first output chunk
//! before answering. That chunk is ready when the output buffer reaches
//! [`FIRST_FLUSH`], when the body ends, or when the first prediction has
//! waited [`FIRST_DEADLINE`]. So a small realtime request gets an exact status
//! (400 for a bad record, with the error as JSON), a whole small answer goes
//! out with a `Content-Length`, and a slow producer still sees its first
//! predictions promptly. After that, output is flushed whenever it reaches
//! [`FLUSH`] or the input is momentarily idle. An error after the status went
//! out ends the stream with `Err`, which makes hyper cut the connection with
//! no terminating chunk, so no client mistakes a truncated answer for a
//! complete one (hyper's `h1/dispatch.rs`; the style guide's "never write an
//! error inside a 200 that ends cleanly").
//!
//! With `MMP_RESPONSE_FRAMING=content-length` nothing is committed before the
//! body ends: the whole answer is gathered by [`Spill`] (memory, then an
//! unnamed temporary file) and sent with an exact `Content-Length`, because
//! SageMaker Asynchronous Inference refuses a response without one
//! (deepjavalibrary/djl-serving#2567). A bad record anywhere therefore gets
//! its exact status, as a small request does; a disk too full to hold the
//! answer gets 507 Insufficient Storage.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Sleep;
use warp::reply::Response;
use warp::Reply;

use super::listener::WriteWatch;
use super::reply::{error_response, CUSTOM_ATTRIBUTES};
use super::spill::{Answer, Spill};
use super::stage::{Scoring, Stage};
use super::State;
use crate::config::ResponseFraming;
use crate::error::{Error, ErrorKind};
use crate::media::{negotiate, ContentType, Format};
use crate::metrics::metrics;
use crate::model::SharedModel;
use crate::parallel;
use crate::pipeline::{Pipeline, Stats};

/// Output size that commits the status line before the body ends.
pub const FIRST_FLUSH: usize = 64 * 1024;
/// How long the first prediction may wait for more before it is sent.
pub const FIRST_DEADLINE: Duration = Duration::from_millis(20);
/// Output size worth a write once the response has started.
pub const FLUSH: usize = 64 * 1024;

/// A request body: a stream of chunks of bytes, as warp gives it or as
/// hyper does (`POST /invocations` bypasses warp, [`super::routes::Service`]).
/// One name for the bounds every handler of a body repeats.
pub trait Body: Stream<Item = Result<Self::Chunk, Self::Error>> + Send + Sync + 'static {
    /// One chunk.
    type Chunk: Buf;
    /// What reading it can fail with.
    type Error: std::error::Error + Send + Sync + 'static;
}

impl<S, B, E> Body for S
where
    S: Stream<Item = Result<B, E>> + Send + Sync + 'static,
    B: Buf,
    E: std::error::Error + Send + Sync + 'static,
{
    type Chunk = B;
    type Error = E;
}

/// Handle `POST /invocations`.
pub async fn invoke<S: Body>(
    state: Arc<State>,
    headers: HeaderMap,
    body: S,
    watch: Option<WriteWatch>,
) -> Result<Response, std::convert::Infallible> {
    let model = state.model.get().cloned();
    let log = RequestLog::new(&headers, "POST", "/invocations");
    invoke_model(state, model, log, headers, body, watch).await
}

/// Run a request on `model` (`None`: not loaded yet, 503), logging it with
/// `log`: `/invocations` and a multi-model endpoint's
/// `/models/{model_name}/invoke` share everything from here on. `watch`:
/// the connection's, which ends a response the client does not read
/// (`None` off a real socket, as in `warp::test`).
pub(crate) async fn invoke_model<S: Body>(
    state: Arc<State>,
    model: Option<SharedModel>,
    log: RequestLog,
    headers: HeaderMap,
    body: S,
    watch: Option<WriteWatch>,
) -> Result<Response, std::convert::Infallible> {
    let wanted = Wanted::of(&headers);
    let request_id = HeaderValue::from_str(&log.request_id).ok();
    let attributes = wanted.custom_attributes.cloned();
    let mut log = Some(log);
    let mut body = Some(body);
    let mut response = match start(&state, model, &wanted, &mut body, &mut log, watch).await {
        Ok(r) => r,
        Err((e, stats, bytes_in)) => {
            // Not committed: the stream did not log it; log it with the
            // status it gets.
            if let Some(mut log) = log.take() {
                log.framing = Some(Framing::ContentLength);
                log.finish(e.status(), &stats, bytes_in, 0, Some(&e));
            }
            let mut res = error_response(&e);
            if let Some(body) = body {
                // Refused before a body byte was read (415, 406, 503).
                settle_unread(&headers, body, &mut res).await;
            }
            res
        }
    };
    if let Some(v) = attributes {
        response.headers_mut().insert(CUSTOM_ATTRIBUTES, v);
    }
    if let Some(id) = request_id {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    Ok(response)
}

/// The most of a refused request's body read to keep its connection.
const DRAIN_BYTES: usize = 64 * 1024;
/// How long a refused request's body may take to arrive for that.
const DRAIN_TIME: Duration = Duration::from_millis(100);

/// A request answered before its body was read (415, 406, 503, a
/// multi-model endpoint's 404): read and drop the rest of a small body
/// that is already on its way, so the connection stays open for the next
/// request; else say `Connection: close` on the answer, as the server
/// closes then. Without it, a keep-alive client reused a connection the
/// server closed after answering, and lost its next request (RFC 9110
/// §10.1.1: a server answering before it has read the whole content
/// SHOULD say whether it closes). A client waiting for `100 Continue` is
/// not invited to send a body that would be refused.
pub(crate) async fn settle_unread<S: Body>(headers: &HeaderMap, body: S, response: &mut Response) {
    let expects = headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let small = content_length(headers.get(http::header::CONTENT_LENGTH))
        .is_none_or(|n| n <= DRAIN_BYTES as u64);
    let drained = !expects && small && {
        let drain = async {
            let mut body = std::pin::pin!(body);
            let mut read = 0;
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(chunk) => read += chunk.remaining(),
                    Err(_) => return false,
                }
                if read > DRAIN_BYTES {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(DRAIN_TIME, drain)
            .await
            .unwrap_or(false)
    };
    if !drained {
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// The response header carrying the id of the request's log line.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request headers the handler and its log line read, found in one
/// pass over the map: each `HeaderMap::get` hashes the name (~200
/// instructions for a SageMaker header's 30 bytes), and there were seven
/// per request (callgrind); a request carries a handful of headers.
#[derive(Default)]
struct Wanted<'a> {
    content_type: Option<&'a HeaderValue>,
    accept: Option<&'a HeaderValue>,
    content_length: Option<&'a HeaderValue>,
    custom_attributes: Option<&'a HeaderValue>,
    inference_id: Option<&'a HeaderValue>,
    variant: Option<&'a HeaderValue>,
    target_model: Option<&'a HeaderValue>,
    /// More than one `Accept` line: they are one list (read from `all`).
    accept_lines: bool,
    all: Option<&'a HeaderMap>,
}

impl<'a> Wanted<'a> {
    fn of(headers: &'a HeaderMap) -> Wanted<'a> {
        use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
        let mut w = Wanted {
            all: Some(headers),
            ..Wanted::default()
        };
        for (name, value) in headers {
            let slot = match name {
                n if n == CONTENT_TYPE => &mut w.content_type,
                n if n == ACCEPT => &mut w.accept,
                n if n == CONTENT_LENGTH => &mut w.content_length,
                n if n == CUSTOM_ATTRIBUTES => &mut w.custom_attributes,
                n if n == INFERENCE_ID => &mut w.inference_id,
                n if n == TARGET_VARIANT => &mut w.variant,
                n if n == TARGET_MODEL => &mut w.target_model,
                _ => continue,
            };
            // The first of its values, as `HeaderMap::get` gives.
            if slot.is_some() && name == ACCEPT {
                w.accept_lines = true;
            }
            slot.get_or_insert(value);
        }
        w
    }
}

/// Why a request was answered with an error before its status went out,
/// with the stats and body bytes read so far.
type Refused = (Error, Stats, u64);

/// How a response body went out on the wire; a metrics label, so a fixed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// An exact `Content-Length` (a whole answer, or a JSON error).
    ContentLength,
}

impl Framing {
    fn label(self) -> &'static str {
        match self {
            Framing::Chunked => "chunked",
            Framing::ContentLength => "content_length",
        }
    }
}

/// Negotiate, pull the first output chunk, and build the response. The
/// request's log moves into the response stream; on an error before the
/// commit it is left in `log` for the caller, with the stats so far.
async fn start<S: Body>(
    state: &Arc<State>,
    model: Option<SharedModel>,
    headers: &Wanted<'_>,
    body: &mut Option<S>,
    log: &mut Option<RequestLog>,
    watch: Option<WriteWatch>,
) -> Result<Response, Refused> {
    let fail = |e: Error| (e, Stats::default(), 0);
    let started = log.as_ref().map_or_else(Instant::now, |l| l.started);
    let Some(model) = model else {
        return Err(fail(Error::new(ErrorKind::NotReady)));
    };
    let cfg = &state.cfg;
    // Over the limit: a fast 503 with Retry-After, before reading anything.
    let permit = state.in_flight.clone().try_acquire_owned().map_err(|_| {
        fail(Error::new(ErrorKind::Overloaded {
            limit: cfg.max_in_flight,
        }))
    })?;
    // Both media types are settled before any body byte is read.
    let content_type =
        match header_str(headers.content_type, http::header::CONTENT_TYPE).map_err(fail)? {
            Some(v) => ContentType::parse(v).map_err(fail)?,
            None => ContentType {
                format: Format::Csv,
                header: None,
            },
        };
    let default = cfg.default_accept.unwrap_or(content_type.format);
    let joined;
    let accept = match headers.all.filter(|_| headers.accept_lines) {
        // RFC 9110 §5.3: field lines of one name are one comma-separated
        // list; a client may send `Accept` as several.
        Some(all) => {
            let mut lines = Vec::new();
            for v in all.get_all(http::header::ACCEPT) {
                lines.extend(header_str(Some(v), http::header::ACCEPT).map_err(fail)?);
            }
            joined = lines.join(", ");
            Some(joined.as_str())
        }
        None => header_str(headers.accept, http::header::ACCEPT).map_err(fail)?,
    };
    let output = negotiate(accept, default).map_err(fail)?;
    if let (Some(limit), Some(len)) = (cfg.max_body_bytes, content_length(headers.content_length)) {
        if len > limit {
            return Err(fail(Error::new(ErrorKind::BodyTooLarge { limit })));
        }
    }
    let mut opts = cfg.pipeline.clone();
    if let Some(h) = content_type.header {
        opts.decode.csv_header = h;
    }
    // A large body in ranges on every core; else one pipeline, on the
    // compute pool for an expensive model (src/serve/stage.rs). The first
    // test is one compare for a small body: a `Content-Length` shorter
    // than the threshold's digits is below it.
    let large = headers
        .content_length
        .is_some_and(|v| v.len() as u32 > cfg.parallel_from.checked_ilog10().unwrap_or(0));
    let in_flight = 2 * state.compute.as_ref().map_or(1, |p| p.threads()) + 1;
    let stage = match large.then(|| ranges(state, content_type.format, output, headers)) {
        Some(Some((pool, range_bytes))) => Stage::ranges(
            model,
            content_type.format,
            output,
            opts,
            pool,
            range_bytes,
            in_flight,
        ),
        _ => {
            let offload = model.offload();
            let pipeline = |model| {
                Pipeline::new(model, content_type.format, output, &opts)
                    .on_placeholder(crate::metrics::count_placeholder)
            };
            match state.compute.as_ref() {
                // A body of unknown size (chunked): inline for its first
                // `parallel_from` bytes, then in ranges.
                Some(pool)
                    if headers.content_length.is_none()
                        && pool.threads() >= 2
                        && parallel::record_wise(content_type.format, output) =>
                {
                    let head = offload.then(|| pool.clone());
                    Stage::new(pipeline(model.clone()), head).watched(
                        Scoring::new(model, opts.clone(), content_type.format, output),
                        cfg.parallel_from,
                        pool.clone(),
                        cfg.range_bytes,
                        in_flight,
                    )
                }
                pool => Stage::new(pipeline(model), pool.filter(|_| offload).cloned()),
            }
        }
    };
    let mut inv = Invocation {
        // Taken only now: a refusal above leaves it to the caller, unread.
        body: body.take().map(Box::pin),
        pipeline: stage,
        out: BytesMut::new(),
        committed: false,
        finishing: false,
        ended: false,
        done: false,
        deadline: None,
        idle_at: tokio::time::Instant::now() + cfg.timeout,
        idle: None,
        timeout: cfg.timeout,
        max_body: cfg.max_body_bytes,
        bytes_in: 0,
        bytes_out: 0,
        log: log.take(),
        permit: Some(permit),
        watch,
    };
    if cfg.response_framing == ResponseFraming::ContentLength {
        return hold(inv, log, output, started, &cfg.spill_dir).await;
    }
    let first = match inv.next().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(e)) => {
            // Not committed, so not logged yet: hand the log back. The
            // predictions made before the error were never sent.
            *log = inv.log.take();
            let stats = Stats {
                predictions: 0,
                ..inv.pipeline.stats()
            };
            return Err((e, stats, inv.bytes_in));
        }
        None => Bytes::new(),
    };
    inv.committed = true;
    metrics()
        .first_byte
        .observe(started.elapsed().as_secs_f64());
    let content_type = HeaderValue::from_static(output.mime());
    let mut response = if inv.done || inv.ended && inv.out.is_empty() {
        // The whole answer is here: send it with a Content-Length.
        inv.bytes_out += first.len() as u64;
        inv.done = true;
        http::Response::new(first).into_response()
    } else {
        inv.bytes_out += first.len() as u64;
        // From here on the answer waits on the client reading it: one
        // that reads nothing for the timeout is cut (README, Security
        // and limits: no progress on a request for MODEL_SERVER_TIMEOUT).
        if let Some(w) = &inv.watch {
            w.arm();
        }
        let rest = futures::stream::iter(Some(Ok::<_, Error>(first))).chain(inv);
        warp::reply::stream(rest).into_response()
    };
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, content_type);
    Ok(response)
}

/// Whether a body of `headers`' length in `input`, answered in `output`,
/// runs in ranges: the pool and the range size if so. Off the small-request
/// path (its caller has seen a long `Content-Length`).
#[cold]
fn ranges(
    state: &State,
    input: Format,
    output: Format,
    headers: &Wanted<'_>,
) -> Option<(Arc<crate::compute::Pool>, usize)> {
    let cfg = &state.cfg;
    let len = content_length(headers.content_length)?;
    let pool = state.compute.as_ref()?;
    if len < cfg.parallel_from || pool.threads() < 2 || !parallel::record_wise(input, output) {
        return None;
    }
    // Two ranges per thread at least, so a body just over the threshold
    // uses every core too; not under 64 KiB unless asked (a hop per range).
    let per_thread = (len / (2 * pool.threads() as u64)).max(64 << 10);
    let range_bytes =
        usize::try_from(per_thread).map_or(cfg.range_bytes, |n| n.min(cfg.range_bytes));
    Some((pool.clone(), range_bytes))
}

/// `content-length` framing: run the whole body through the pipeline into a
/// [`Spill`], then answer with its exact length. The log stays with the
/// handler until the answer is whole, then moves into the [`Delivery`].
async fn hold<S: Body>(
    mut inv: Invocation<S>,
    log: &mut Option<RequestLog>,
    output: Format,
    started: Instant,
    spill_dir: &Path,
) -> Result<Response, Refused> {
    *log = inv.log.take();
    // Nothing was sent, so on an error no prediction counts as made.
    let unsent = |inv: &Invocation<S>| Stats {
        predictions: 0,
        ..inv.pipeline.stats()
    };
    let mut spill = Spill::new(spill_dir);
    while let Some(item) = inv.next().await {
        match item {
            Ok(chunk) => {
                if let Err(e) = spill.push(&chunk).await {
                    return Err((e, unsent(&inv), inv.bytes_in));
                }
            }
            Err(e) => return Err((e, unsent(&inv), inv.bytes_in)),
        }
    }
    let answer = match spill.finish().await {
        Ok(a) => a,
        Err(e) => return Err((e, unsent(&inv), inv.bytes_in)),
    };
    metrics()
        .first_byte
        .observe(started.elapsed().as_secs_f64());
    if answer.spilled() > 0 {
        metrics().spills.inc();
        metrics().spill_bytes.inc_by(answer.spilled());
    }
    let len = answer.len();
    let mut log = log.take();
    if let Some(log) = log.as_mut() {
        log.framing = Some(Framing::ContentLength);
        log.spilled = answer.spilled();
    }
    let stats = inv.pipeline.stats();
    let mut response = if answer.is_empty() {
        // No body to pull, so hyper never polls one: log the end here.
        if let Some(log) = log {
            log.finish(200, &stats, inv.bytes_in, 0, None);
        }
        http::Response::new(Bytes::new()).into_response()
    } else {
        let watch = inv.watch.take();
        if let Some(w) = &watch {
            w.arm();
        }
        let delivery = Delivery {
            answer,
            len,
            sent: 0,
            stats,
            bytes_in: inv.bytes_in,
            log,
            _permit: inv.permit.take(),
            watch,
            timeout: inv.timeout,
        };
        warp::reply::stream(delivery).into_response()
    };
    // hyper frames a body of unknown size by this header when it is set
    // (`proto/h1/role.rs`), and cuts the connection if fewer bytes come.
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(output.mime()),
    );
    Ok(response)
}

/// The body of a `content-length` answer: the held bytes, then the log line.
struct Delivery {
    answer: Answer,
    len: u64,
    sent: u64,
    stats: Stats,
    bytes_in: u64,
    /// Written when the last byte is handed over, or on drop before that.
    log: Option<RequestLog>,
    /// The request's place among `max_in_flight`, held until the answer is
    /// sent: it also bounds the temporary files open at once.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The connection's watch, armed while the answer is sent.
    watch: Option<WriteWatch>,
    timeout: Duration,
}

impl Stream for Delivery {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.sent == this.len {
            return Poll::Ready(None);
        }
        let e = match ready!(this.answer.poll_next_unpin(cx)) {
            Some(Ok(chunk)) => {
                this.sent += chunk.len() as u64;
                // hyper stops polling once the length is written, so the
                // end is logged with the last chunk.
                if this.sent == this.len {
                    if let Some(log) = this.log.take() {
                        log.finish(200, &this.stats, this.bytes_in, this.sent, None);
                    }
                }
                return Poll::Ready(Some(Ok(chunk)));
            }
            Some(Err(e)) => Error::io("reading back the spilled response", e),
            None => Error::io(
                "reading back the spilled response",
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the file ended after {} of {} bytes", this.sent, this.len),
                ),
            ),
        };
        // Cut the connection: the client sees fewer bytes than announced.
        if let Some(log) = this.log.take() {
            log.finish(200, &this.stats, this.bytes_in, this.sent, Some(&e));
        }
        this.sent = this.len;
        Poll::Ready(Some(Err(e)))
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        let stalled = stalled(self.watch.as_ref(), self.timeout);
        // Dropped before its end: the client went away, read nothing for
        // the timeout, or shutdown cut it.
        if let Some(log) = self.log.take() {
            match stalled {
                Some(e) => log.finish(200, &self.stats, self.bytes_in, self.sent, Some(&e)),
                None => log.aborted(true, &self.stats, self.bytes_in, self.sent),
            }
        }
    }
}

/// Disarm the connection's watch, as a response body ends; the error to
/// log if it had cut the connection because the client read nothing.
fn stalled(watch: Option<&WriteWatch>, timeout: Duration) -> Option<Error> {
    let watch = watch?;
    watch.disarm();
    watch.tripped().then(|| {
        Error::new(ErrorKind::ClientNotReading {
            secs: timeout.as_secs(),
        })
    })
}

/// A header as text; a non-ASCII value is a client error.
fn header_str(value: Option<&HeaderValue>, name: HeaderName) -> Result<Option<&str>, Error> {
    match value {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            let given = String::from_utf8_lossy(v.as_bytes()).into_owned();
            if name == http::header::ACCEPT {
                Error::new(ErrorKind::NotAcceptable { given })
            } else {
                Error::new(ErrorKind::UnsupportedMediaType { given })
            }
        }),
    }
}

fn content_length(value: Option<&HeaderValue>) -> Option<u64> {
    value?.to_str().ok()?.trim().parse().ok()
}

/// Whether a body error is the connection ending (EOF inside the body, a
/// reset) rather than a malformed body: hyper reports both as a body error,
/// with the I/O error as its source.
fn client_gone(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
            );
        }
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message())
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// The response body: the request body run through the pipeline.
struct Invocation<S> {
    /// The request body; `None` once it has ended.
    body: Option<Pin<Box<S>>>,
    pipeline: Stage,
    /// Encoded predictions not yet handed to hyper.
    out: BytesMut,
    /// The status line has gone out.
    committed: bool,
    /// The pipeline was asked to finish (the body ended).
    finishing: bool,
    /// The pipeline has finished (all output is in `out`).
    ended: bool,
    /// Nothing more will be produced.
    done: bool,
    /// Armed when the first output waits before the commit.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Fires when the request makes no progress for `timeout`; made the
    /// first time the body waits.
    idle: Option<Pin<Box<Sleep>>>,
    /// When `idle` is to fire. Progress moves only this; `idle` is reset to
    /// it when it is polled, so a body that never waits never puts a timer
    /// in tokio's wheel (a reset and a removal on every 1-row request,
    /// ~330 instructions, callgrind), nor makes one (its allocation and
    /// registration with the runtime, ~120 more).
    idle_at: tokio::time::Instant,
    timeout: Duration,
    max_body: Option<u64>,
    bytes_in: u64,
    bytes_out: u64,
    /// Written once, when the stream ends or is dropped.
    log: Option<RequestLog>,
    /// This request's place among `max_in_flight`, released when it ends
    /// (or handed to the [`Delivery`] of a `content-length` answer).
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The connection's watch on its writes, armed once the status went
    /// out (or handed to the [`Delivery`]).
    watch: Option<WriteWatch>,
}

impl<S: Body> Invocation<S> {
    /// Take the output buffer as a chunk.
    fn take(&mut self) -> Bytes {
        let chunk = self.out.split().freeze();
        if self.committed {
            self.bytes_out += chunk.len() as u64;
        }
        chunk
    }

    /// Run one body chunk through the pipeline (`Pending`: on the pool).
    fn feed(&mut self, buf: S::Chunk) -> Poll<Result<(), Error>> {
        self.bytes_in += buf.remaining() as u64;
        if let Some(limit) = self.max_body {
            if self.bytes_in > limit {
                return Poll::Ready(Err(Error::new(ErrorKind::BodyTooLarge { limit })));
            }
        }
        self.pipeline.feed(buf, &mut self.out)
    }

    /// The request made progress: restart its idle timeout.
    fn progressed(&mut self) {
        self.idle_at = tokio::time::Instant::now() + self.timeout;
    }

    /// The error that ends the stream. Once the status went out, log it
    /// here; before, the handler turns it into the response and logs that.
    fn fail(&mut self, e: Error) -> Poll<Option<Result<Bytes, Error>>> {
        self.done = true;
        if self.committed {
            if let Some(mut log) = self.log.take() {
                log.framing = Some(Framing::Chunked);
                let stats = self.pipeline.stats();
                log.finish(200, &stats, self.bytes_in, self.bytes_out, Some(&e));
            }
        }
        Poll::Ready(Some(Err(e)))
    }

    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        loop {
            // A step on the compute pool comes back before anything else.
            if let Some(back) = ready!(self.pipeline.poll_back(cx, &mut self.out)) {
                if let Err(e) = back {
                    return self.fail(e);
                }
                self.progressed();
            }
            let threshold = if self.committed { FLUSH } else { FIRST_FLUSH };
            if self.out.len() >= threshold {
                return Poll::Ready(Some(Ok(self.take())));
            }
            if self.ended {
                self.done = true;
                if let Some(mut log) = self.log.take() {
                    // Ended before the commit: the handler sends it whole.
                    log.framing = Some(if self.committed {
                        Framing::Chunked
                    } else {
                        Framing::ContentLength
                    });
                    let out = self.bytes_out + self.out.len() as u64;
                    log.finish(200, &self.pipeline.stats(), self.bytes_in, out, None);
                }
                if self.out.is_empty() {
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(Ok(self.take())));
            }
            let Some(body) = self.body.as_mut() else {
                // Ended once the output is all in `out`: the stage is asked
                // to finish, then the top of the loop waits while it is
                // away (a step on the pool, or ranges, which also come back
                // with output worth a write before they are all done).
                if !self.finishing {
                    self.finishing = true;
                    if let Poll::Ready(Err(e)) = self.pipeline.finish(&mut self.out) {
                        return self.fail(e);
                    }
                } else {
                    self.ended = true;
                }
                continue;
            };
            match body.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(buf))) => match self.feed(buf) {
                    Poll::Ready(Err(e)) => return self.fail(e),
                    Poll::Ready(Ok(())) => self.progressed(),
                    Poll::Pending => {}
                },
                Poll::Ready(Some(Err(e))) if client_gone(&e) => {
                    let source = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e);
                    return self.fail(Error::new(ErrorKind::ClientClosed { source }));
                }
                Poll::Ready(Some(Err(e))) => {
                    let e = Error::io(
                        "reading the request body",
                        std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                    );
                    return self.fail(e);
                }
                Poll::Ready(None) => self.body = None,
                // Records held for a full range go to be scored first.
                Poll::Pending if self.pipeline.idle() => {}
                Poll::Pending => return self.poll_idle(cx),
            }
        }
    }

    /// The body has nothing for now: flush, wait for the first-output
    /// deadline, or time out.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        if !self.out.is_empty() {
            if self.committed {
                return Poll::Ready(Some(Ok(self.take())));
            }
            let deadline = self
                .deadline
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(FIRST_DEADLINE)));
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Ok(self.take())));
            }
        }
        let at = self.idle_at;
        let idle = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if idle.deadline() != at {
            idle.as_mut().reset(at);
        }
        if idle.as_mut().poll(cx).is_ready() {
            let secs = self.timeout.as_secs();
            return self.fail(Error::new(ErrorKind::Timeout { secs }));
        }
        Poll::Pending
    }
}

impl<S: Body> Stream for Invocation<S> {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let item = ready!(this.poll_step(cx));
        Poll::Ready(item)
    }
}

impl<S> Drop for Invocation<S> {
    fn drop(&mut self) {
        let stalled = stalled(self.watch.as_ref(), self.timeout);
        // Dropped before its end: the client went away, read nothing for
        // the timeout, or shutdown cut it.
        if let Some(mut log) = self.log.take() {
            if self.committed {
                log.framing = Some(Framing::Chunked);
            }
            let stats = self.pipeline.stats();
            match stalled {
                Some(e) => log.finish(200, &stats, self.bytes_in, self.bytes_out, Some(&e)),
                None => log.aborted(self.committed, &stats, self.bytes_in, self.bytes_out),
            }
        }
    }
}

/// One request's log line and metrics: created when the request arrives
/// (counting it in flight), finished exactly once when its outcome is known.
pub(crate) struct RequestLog {
    method: &'static str,
    path: &'static str,
    started: Instant,
    pub(crate) request_id: String,
    inference_id: Option<String>,
    variant: Option<String>,
    /// How the response body went out, once known (`None`: no HTTP body of
    /// ours, e.g. a WebSocket session or a client gone before the status).
    pub(crate) framing: Option<Framing>,
    /// Bytes of the answer held in a temporary file (`content-length`).
    pub(crate) spilled: u64,
    /// A multi-model endpoint's model name (`None`: not logged).
    model: Option<Arc<str>>,
    /// `X-Amzn-SageMaker-Target-Model`, which SageMaker sends for logging.
    target_model: Option<String>,
}

/// A process-unique request id: the start time of the process and a
/// sequence number, in hex (`{start:x}-{seq:x}`).
fn next_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<String> = OnceLock::new();
    static SEQ: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("{epoch:x}-")
    });
    // The sequence number in hex without `core::fmt` (a few hundred
    // instructions per request less, callgrind): one allocation in all.
    let mut seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[(seq & 0xf) as usize];
        seq >>= 4;
        if seq == 0 {
            break;
        }
    }
    let mut id = String::with_capacity(prefix.len() + digits.len() - at);
    id.push_str(prefix);
    id.extend(digits[at..].iter().map(|&d| char::from(d)));
    id
}

/// SageMaker's request headers the log line carries, parsed once.
const INFERENCE_ID: HeaderName = HeaderName::from_static("x-amzn-sagemaker-inference-id");
const TARGET_VARIANT: HeaderName = HeaderName::from_static("x-amzn-sagemaker-target-variant");
const TARGET_MODEL: HeaderName = HeaderName::from_static("x-amzn-sagemaker-target-model");

/// The request's log line at `$level`: the one field list of every outcome
/// (`$line` is status, stats, bytes in, bytes out, milliseconds), then the
/// outcome's own fields and message. A macro because tracing's fields and
/// level are fixed where the event is written.
macro_rules! request_line {
    ($level:ident, $log:expr, $line:expr, $($outcome:tt)+) => {{
        let (status, stats, bytes_in, bytes_out, duration_ms): (u16, &Stats, u64, u64, f64) = $line;
        tracing::$level!(
            target: "mmp::request",
            method = $log.method, path = $log.path, status,
            records = stats.records, predictions = stats.predictions,
            placeholders = stats.placeholders, bytes_in, bytes_out, duration_ms,
            request_id = $log.request_id.as_str(),
            inference_id = $log.inference_id.as_deref().unwrap_or(""),
            target_variant = $log.variant.as_deref().unwrap_or(""),
            framing = $log.framing.map_or("", Framing::label), spilled_bytes = $log.spilled,
            model = $log.model.as_deref(), target_model = $log.target_model.as_deref(),
            $($outcome)+
        )
    }};
}

impl RequestLog {
    pub(crate) fn new(headers: &HeaderMap, method: &'static str, path: &'static str) -> RequestLog {
        let wanted = Wanted::of(headers);
        let get = |v: Option<&HeaderValue>| v.and_then(|v| v.to_str().ok()).map(str::to_owned);
        metrics().in_flight.inc();
        RequestLog {
            method,
            path,
            started: Instant::now(),
            request_id: next_request_id(),
            inference_id: get(wanted.inference_id),
            variant: get(wanted.variant),
            framing: None,
            spilled: 0,
            model: None,
            target_model: get(wanted.target_model),
        }
    }

    /// Log the request with a multi-model endpoint's model name.
    pub(crate) fn with_model(mut self, name: Arc<str>) -> RequestLog {
        self.model = Some(name);
        self
    }

    /// Count the request's totals.
    fn account(&self, stats: &Stats, bytes_in: u64, bytes_out: u64) -> f64 {
        let m = metrics();
        if let Some(f) = self.framing {
            m.framed(f.label());
        }
        m.records.inc_by(stats.records);
        m.predictions.inc_by(stats.predictions);
        m.request_bytes.inc_by(bytes_in);
        m.response_bytes.inc_by(bytes_out);
        let took = self.started.elapsed();
        m.duration.observe(took.as_secs_f64());
        crate::logging::millis(took)
    }

    /// The request ended with `status` (200 once committed, even if an error
    /// cut the response later: that is `err`).
    pub(crate) fn finish(
        self,
        status: u16,
        stats: &Stats,
        bytes_in: u64,
        bytes_out: u64,
        err: Option<&Error>,
    ) {
        let ms = self.account(stats, bytes_in, bytes_out);
        metrics().request(self.path, status);
        let line = (status, stats, bytes_in, bytes_out, ms);
        match err {
            None => request_line!(info, self, line, "request"),
            Some(e) => {
                let kind = e.code();
                metrics().error(kind);
                // A client gone inside its body is an abort too.
                if status == 200 || e.is_client_closed() {
                    metrics().aborted.inc();
                }
                request_line!(warn, self, line, error = %e, kind, "request failed")
            }
        }
    }

    /// The request was dropped before its end: the client went away, or
    /// shutdown cut it. Counted as 200 if the status was sent, else as 499
    /// (nginx's "client closed request").
    pub(crate) fn aborted(self, committed: bool, stats: &Stats, bytes_in: u64, bytes_out: u64) {
        let ms = self.account(stats, bytes_in, bytes_out);
        let status = if committed { 200 } else { 499 };
        metrics().request(self.path, status);
        metrics().aborted.inc();
        let line = (status, stats, bytes_in, bytes_out, ms);
        request_line!(
            warn,
            self,
            line,
            "request aborted before its end (client gone or shutdown)"
        );
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        metrics().in_flight.dec();
    }
}

#[cfg(test)]
mod request_log_tests {
    use super::next_request_id;

    #[test]
    fn request_ids_are_start_and_sequence_in_lowercase_hex() {
        let ids: Vec<String> = (0..300).map(|_| next_request_id()).collect();
        let mut seqs = Vec::new();
        for id in &ids {
            let (start, seq) = id.split_once('-').expect("start-seq");
            let start_n = u64::from_str_radix(start, 16).unwrap();
            let seq_n = u64::from_str_radix(seq, 16).unwrap();
            // What `format!("{:x}")` writes: no padding, lower case.
            assert_eq!(start, format!("{start_n:x}"));
            assert_eq!(seq, format!("{seq_n:x}"));
            seqs.push(seq_n);
        }
        // Unique and rising, whatever else runs beside this test.
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert!(
            seqs.iter().any(|&s| s >= 0x10),
            "a two-digit sequence number"
        );
    }
}
