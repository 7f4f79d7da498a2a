//! Bidirectional streaming: SageMaker's `InvokeEndpointWithBidirectionalStream`
//! contract (`docs/contract.md` §2).
//!
//! SageMaker's sidecar opens a WebSocket to
//! `ws://localhost:8080/invocations-bidirectional-stream` and maps each client
//! payload part to one frame and back. A session is one pipeline run: every
//! text or binary message is fed to it as more bytes of one CSV or JSON-lines
//! stream (records may be split across frames, and fragmented messages are
//! reassembled by the WebSocket layer), and the predictions completed by a
//! message go back at once, in order, in a frame of the same type. An empty
//! data frame ends the input so far: a last record without a newline is
//! scored and answered, and the next frame starts a new stream. The
//! client's Close is answered at once by the WebSocket layer, after which
//! nothing can be sent, so a record still unterminated then is logged as
//! unanswered (terminate records with `\n`, or send an empty frame first).
//!
//! Format: the `content_type` query parameter (`csv`, `jsonl`, or a media
//! type), else sniffed from the first data byte (`[` or `{`: JSON lines,
//! else CSV); output: the `accept` query parameter, else the input's format.
//! `on_error` and `csv_header` query parameters override the server's
//! settings for the session.
//!
//! Errors: a bad record is answered with an error frame (JSON text
//! `{"error","message"}`); under `fail` the server then closes with a status
//! code and the reason (1007 bad data, 1009 too large, 1011 model failure),
//! under `placeholder` the marker takes the record's place in the output and
//! the session goes on. A fault at the WebSocket level is the client's error
//! too, answered the same way: an error frame, then 1002 (a protocol
//! violation: an unmasked frame, a reserved opcode or bit, a stray
//! continuation, a control frame over 125 bytes), 1007 (a text message that
//! is not UTF-8) or 1009 (a message over [`MAX_MESSAGE_BYTES`]) (RFC 6455
//! §7.1.7, §7.4.1). Pings are answered (SageMaker pings every 60 s and gives
//! up after 5 misses), and any frame, a ping included, counts as life; a
//! session with no frame at all for `MMP_BIDI_IDLE_SECONDS` (330 s, past
//! SageMaker's own 5 minutes) is closed with 1001, and one whose client takes
//! none of an answer for as long (it stopped reading) is ended, since a Close
//! could not reach it either. SIGTERM closes every session with 1001 "server
//! shutting down", a send blocked on a client that does not read included.
//! Sessions count against `MMP_MAX_IN_FLIGHT` and share `/invocations`'
//! metrics and log line.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode};
use tokio::sync::{watch, OwnedSemaphorePermit};
use warp::filters::ws::{Message, WebSocket, Ws};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::invocations::RequestLog;
use super::reply::{error_response, json_error};
use super::stage::Stage;
use super::State;
use crate::error::{Error, ErrorKind};
use crate::media::{ContentType, Format};
use crate::pipeline::{Pipeline, PipelineOptions};

/// The default path SageMaker's sidecar connects to.
pub const PATH: &str = "invocations-bidirectional-stream";

/// The route in the log line and the metrics.
const PATH_LABEL: &str = "/invocations-bidirectional-stream";

/// Largest message accepted. A message is buffered whole by the WebSocket
/// layer; SageMaker sends one frame per client payload part.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// `GET /invocations-bidirectional-stream` (a WebSocket upgrade).
pub fn route(
    state: Arc<State>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path(PATH)
        .and(warp::path::end())
        .and(warp::ws())
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::header::headers_cloned())
        .and(warp::any().map(move || state.clone()))
        .map(upgrade)
}

/// The session's settings, from the query string.
struct Params {
    input: Option<Format>,
    output: Option<Format>,
    opts: PipelineOptions,
}

fn params(state: &State, query: &HashMap<String, String>) -> Result<Params, Error> {
    // A bad value here is the client's mistake, whatever kind it parses to.
    let bad = |e: Error| Error::new(ErrorKind::BadRequest(e.to_string()));
    // A type a session cannot stream: 415 for the input, 406 for the
    // output, as `/invocations` answers its headers (application/json is
    // one document: it cannot stream).
    let not_streamable = |param: &'static str, given: &str| {
        Error::new(ErrorKind::NotStreamable {
            param,
            given: given.chars().take(200).collect(),
        })
    };
    let mut opts = state.cfg.pipeline.clone();
    let mut input = None;
    if let Some(given) = query.get("content_type") {
        let ct = ContentType::parse_option(given)
            .ok()
            .filter(|ct| ct.format != Format::Json)
            .ok_or_else(|| not_streamable("content_type", given))?;
        if let Some(h) = ct.header {
            opts.decode.csv_header = h;
        }
        input = Some(ct.format);
    }
    let output = match query.get("accept") {
        Some(given) => Some(
            Format::parse(given)
                .ok()
                .filter(|f| *f != Format::Json)
                .ok_or_else(|| not_streamable("accept", given))?,
        ),
        None => None,
    };
    if let Some(p) = query.get("on_error") {
        opts.policy = p.parse().map_err(bad)?;
    }
    if let Some(h) = query.get("csv_header") {
        opts.decode.csv_header = matches!(h.as_str(), "true" | "1" | "present");
    }
    Ok(Params {
        input,
        output,
        opts,
    })
}

/// Check everything that can be refused with a status, then upgrade.
fn upgrade(
    ws: Ws,
    query: HashMap<String, String>,
    headers: HeaderMap,
    state: Arc<State>,
) -> Response {
    let refuse = |e: Error| {
        let log = RequestLog::new(&headers, "GET", PATH_LABEL);
        log.finish(e.status(), &Default::default(), 0, 0, Some(&e));
        error_response(&e)
    };
    if state.mme.is_some() {
        // As `/invocations` on a multi-model endpoint: there is no default
        // model, and there will be none (not 503 "still loading").
        crate::metrics::metrics().request(PATH_LABEL, 404);
        return json_error(
            StatusCode::NOT_FOUND,
            "multi_model",
            "this is a multi-model endpoint: it has no default model to stream to; invoke a \
             loaded model with POST /models/{model_name}/invoke"
                .into(),
        );
    }
    if state.model.get().is_none() {
        return refuse(Error::new(ErrorKind::NotReady));
    }
    let params = match params(&state, &query) {
        Ok(p) => p,
        Err(e) => return refuse(e),
    };
    let Ok(permit) = state.in_flight.clone().try_acquire_owned() else {
        return refuse(Error::new(ErrorKind::Overloaded {
            limit: state.cfg.max_in_flight,
        }));
    };
    let log = RequestLog::new(&headers, "GET", PATH_LABEL);
    let tracker = state.sessions.clone();
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| tracker.track_future(session(socket, state, params, log, permit)))
        .into_response()
}

/// How a session ends.
enum End {
    /// The client closed (the WebSocket layer has answered its Close).
    ClientClosed,
    /// The connection broke: nothing can be sent.
    Broken,
    /// Close with this code and reason.
    Close(u16, String),
    /// The client took none of an answer for the idle limit: it stopped
    /// reading, so a Close could not reach it either.
    Stalled,
}

/// WebSocket close codes (RFC 6455 §7.4.1).
const GOING_AWAY: u16 = 1001;
const PROTOCOL: u16 = 1002;
const BAD_DATA: u16 = 1007;
const TOO_BIG: u16 = 1009;
const INTERNAL: u16 = 1011;

/// The reason of the Close sent at shutdown.
const SHUTTING_DOWN: &str = "server shutting down";

/// The longest a Close may wait for a client that takes nothing: it goes
/// after what the session sent before, a client that reads at all gets
/// it, and at shutdown a client that does not must not hold the drain.
const CLOSE_STALL: Duration = Duration::from_secs(5);

/// The close code for a pipeline error.
fn close_code(e: &Error) -> u16 {
    match e.status() {
        413 => TOO_BIG,
        500 | 503 => INTERNAL,
        _ => BAD_DATA,
    }
}

/// What a read error of the WebSocket layer (tungstenite, under warp::ws)
/// means for the session: a fault of the client's closes the session with
/// its code (RFC 6455 §7.4.1) and is logged as its error; `None` for a
/// connection that broke (an I/O error, a reset), where nothing can be
/// sent.
fn read_failure(e: &warp::Error) -> Option<(u16, Error)> {
    use std::error::Error as _;
    use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
    let (close, code, message) = match e.source()?.downcast_ref::<WsError>()? {
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => return None,
        WsError::Protocol(p) => (
            PROTOCOL,
            "websocket_protocol",
            format!("WebSocket protocol error: {p}"),
        ),
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => (
            TOO_BIG,
            "message_too_large",
            format!("message too large: {size} bytes or more, over the {max_size}-byte limit"),
        ),
        WsError::Utf8(_) => (
            BAD_DATA,
            "invalid_text",
            "a text message is not valid UTF-8 (send other bytes in binary messages)".into(),
        ),
        _ => return None,
    };
    Some((close, Error::new(ErrorKind::WebSocket { code, message })))
}

/// A close reason fits in 123 bytes (RFC 6455 §5.5: control frame payload
/// of 125 bytes, 2 of them the code); cut on a char boundary.
fn reason(text: &str) -> String {
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The error frame sent for a bad record or a failed stream.
fn error_frame(e: &Error) -> Message {
    Message::text(serde_json::json!({"error": e.code(), "message": e.to_string()}).to_string())
}

/// Resolves once shutdown has started.
async fn shutting_down(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|down| *down).await.is_err() {
        // The state (and its sender) outlives every session; never.
        std::future::pending::<()>().await;
    }
}

/// `fut`, or `None` once it has not been woken for `limit`. A send is woken
/// when the socket takes more bytes, so this gives up on a send whose
/// client stopped reading, and on none whose client reads, however slowly.
async fn unless_stalled<F: Future>(fut: F, limit: Duration) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut stall = std::pin::pin!(tokio::time::sleep(limit));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if stall.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        // Woken, and not by the timer: the send moved (or this is the
        // first poll).
        stall.as_mut().reset(tokio::time::Instant::now() + limit);
        let _ = stall.as_mut().poll(cx);
        Poll::Pending
    })
    .await
}

/// Send `msg` (`None`: flush what the WebSocket layer queued, a pong), or
/// say how the session ends instead: the connection broke, the client took
/// nothing for `stall`, or shutdown started while the send waited.
async fn put(
    socket: &mut WebSocket,
    msg: Option<Message>,
    stall: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), End> {
    let send = async {
        match msg {
            Some(m) => socket.send(m).await,
            None => socket.flush().await,
        }
    };
    tokio::select! {
        biased;
        sent = unless_stalled(send, stall) => match sent {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) => Err(End::Broken),
            None => Err(End::Stalled),
        },
        // What the send left in the WebSocket layer's buffer goes out
        // before the Close.
        () = shutting_down(shutdown) => Err(End::Close(GOING_AWAY, SHUTTING_DOWN.into())),
    }
}

/// One session, from upgrade to close.
async fn session(
    mut socket: WebSocket,
    state: Arc<State>,
    params: Params,
    log: RequestLog,
    _permit: OwnedSemaphorePermit,
) {
    let Some(model) = state.model.get().cloned() else {
        return;
    };
    let mut shutdown = state.shutdown.subscribe();
    let timeout = state.cfg.bidi_idle;
    // An expensive model runs on the compute pool (src/serve/stage.rs).
    let pool = model.offload().then(|| state.compute.clone()).flatten();
    let mut pipeline: Option<Stage> = None;
    let mut out = BytesMut::new();
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    let mut failure: Option<Error> = None;
    // Counters over all the streams of the session.
    let mut totals = crate::pipeline::Stats::default();
    let idle = tokio::time::sleep(timeout);
    tokio::pin!(idle);
    let end = loop {
        let msg = tokio::select! {
            biased;
            () = shutting_down(&mut shutdown) => {
                break End::Close(GOING_AWAY, SHUTTING_DOWN.into());
            }
            msg = socket.next() => msg,
            () = &mut idle => {
                break End::Close(GOING_AWAY, format!("no frame for {} s (MMP_BIDI_IDLE_SECONDS)", timeout.as_secs()));
            }
        };
        idle.as_mut().reset(tokio::time::Instant::now() + timeout);
        let msg = match msg {
            None => break End::Broken,
            Some(Ok(m)) => m,
            Some(Err(e)) => match read_failure(&e) {
                // The WebSocket layer read nothing more; the write side
                // still works.
                Some((code, e)) => {
                    let end = match put(&mut socket, Some(error_frame(&e)), timeout, &mut shutdown)
                        .await
                    {
                        Ok(()) | Err(End::Close(..)) => End::Close(code, reason(&e.to_string())),
                        Err(end) => end,
                    };
                    failure = Some(e);
                    break end;
                }
                None => break End::Broken,
            },
        };
        if msg.is_close() {
            break End::ClientClosed;
        }
        if msg.is_ping() {
            // tungstenite queued the pong; flushing sends it now.
            if let Err(end) = put(&mut socket, None, timeout, &mut shutdown).await {
                break end;
            }
            continue;
        }
        if !(msg.is_text() || msg.is_binary()) {
            continue;
        }
        // Replies use the type of the frame that completed their records.
        let binary = msg.is_binary();
        let data = msg.into_bytes();
        bytes_in += data.len() as u64;
        if data.is_empty() {
            // End of input so far: answer a last unterminated record.
            let Some(mut p) = pipeline.take() else {
                continue;
            };
            p.run_on(pool.clone());
            let finished = p.finish_now(&mut out).await;
            totals.add(p.stats());
            if !out.is_empty() {
                bytes_out += out.len() as u64;
                let reply = frame(binary, out.split());
                if let Err(end) = put(&mut socket, Some(reply), timeout, &mut shutdown).await {
                    // Its error, if any, is the session's failure still.
                    failure = finished.err();
                    break end;
                }
            }
            if let Err(e) = finished {
                let end =
                    match put(&mut socket, Some(error_frame(&e)), timeout, &mut shutdown).await {
                        Ok(()) | Err(End::Close(..)) => {
                            End::Close(close_code(&e), reason(&e.to_string()))
                        }
                        Err(end) => end,
                    };
                failure = Some(e);
                break end;
            }
            continue;
        }
        let p = pipeline.get_or_insert_with(|| {
            let input = params.input.unwrap_or(sniff(&data));
            let output = params.output.unwrap_or(input);
            let p = Pipeline::new(model.clone(), input, output, &params.opts)
                .on_placeholder(crate::metrics::count_placeholder);
            Stage::new(p, pool.clone())
        });
        // A large message is scored on the compute pool whatever the
        // model, as a large body's ranges are: inline, its seconds of work
        // would hold a runtime worker, and `/ping` with it.
        let large = data.len() as u64 >= state.cfg.parallel_from;
        p.run_on(if large {
            state.compute.clone()
        } else {
            pool.clone()
        });
        let fed = p.feed_now(data, &mut out).await;
        if !out.is_empty() {
            bytes_out += out.len() as u64;
            let reply = frame(binary, out.split());
            if let Err(end) = put(&mut socket, Some(reply), timeout, &mut shutdown).await {
                failure = fed.err();
                break end;
            }
        }
        if let Err(e) = fed {
            let end = match put(&mut socket, Some(error_frame(&e)), timeout, &mut shutdown).await {
                Ok(()) | Err(End::Close(..)) => End::Close(close_code(&e), reason(&e.to_string())),
                Err(end) => end,
            };
            failure = Some(e);
            break end;
        }
    };
    if let Some(mut p) = pipeline.take() {
        if matches!(end, End::ClientClosed)
            && p.finish_now(&mut out).await.is_ok()
            && !out.is_empty()
        {
            tracing::warn!(
                target: "mmp::request",
                request_id = log.request_id.as_str(),
                "the client closed with an unterminated last record, which was not answered \
                 (end records with a newline, or send an empty frame before closing)"
            );
        }
        totals.add(p.stats());
    }
    // The Close goes after what is still buffered; a client that takes none
    // of it for a while is not waited for.
    let stall = timeout.min(CLOSE_STALL);
    match end {
        End::Close(code, why) => {
            let close = async {
                socket.send(Message::close_with(code, why)).await?;
                SinkExt::close(&mut socket).await
            };
            let _ = unless_stalled(close, stall).await;
        }
        // Flush the Close reply the WebSocket layer queued.
        End::ClientClosed => {
            let _ = unless_stalled(SinkExt::close(&mut socket), stall).await;
        }
        End::Stalled => {
            if failure.is_none() {
                failure = Some(Error::new(ErrorKind::WebSocket {
                    code: "client_stalled",
                    message: format!(
                        "the client took no answer for {} s (MMP_BIDI_IDLE_SECONDS): it stopped \
                         reading; session ended",
                        timeout.as_secs()
                    ),
                }));
            }
        }
        End::Broken => {}
    }
    log.finish(101, &totals, bytes_in, bytes_out, failure.as_ref());
}

/// The format of a session that named none: JSON lines if its first
/// non-blank byte opens a JSON array or object, else CSV.
fn sniff(data: &[u8]) -> Format {
    let first = data
        .iter()
        .find(|b| !b.is_ascii_whitespace() && **b != 0xEF && **b != 0xBB && **b != 0xBF);
    match first {
        Some(b'[' | b'{') => Format::JsonLines,
        _ => Format::Csv,
    }
}

/// A binary or text frame carrying `data`.
fn frame(binary: bool, data: BytesMut) -> Message {
    if binary {
        Message::binary(data.freeze())
    } else {
        // Our output is ASCII (numbers, JSON, and error messages that are
        // valid UTF-8 by construction).
        Message::text(String::from_utf8_lossy(&data).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_json_lines_or_csv() {
        assert_eq!(sniff(b"  [1,2]"), Format::JsonLines);
        assert_eq!(sniff(b"{\"features\":[]}"), Format::JsonLines);
        assert_eq!(sniff(b"\xEF\xBB\xBF[1]"), Format::JsonLines);
        assert_eq!(sniff(b"1,2,3"), Format::Csv);
        assert_eq!(sniff(b"\"1\",2"), Format::Csv);
    }

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let long = "é".repeat(100);
        let r = reason(&long);
        assert!(r.len() <= 123);
        assert!(long.starts_with(&r));
    }
}
