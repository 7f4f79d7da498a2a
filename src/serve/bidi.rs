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
//! the session goes on. Pings are answered (SageMaker pings every 60 s and
//! gives up after 5 misses), and any frame, a ping included, counts as life;
//! a session with no frame at all for `MMP_BIDI_IDLE_SECONDS` (330 s, past
//! SageMaker's own 5 minutes) is closed with 1001; SIGTERM closes every session
//! with 1001 "server shutting down". Sessions count against
//! `MMP_MAX_IN_FLIGHT` and share `/invocations`' metrics and log line.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use http::HeaderMap;
use tokio::sync::OwnedSemaphorePermit;
use warp::filters::ws::{Message, WebSocket, Ws};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::invocations::RequestLog;
use super::reply::error_response;
use super::stage::Stage;
use super::State;
use crate::error::{Error, ErrorKind};
use crate::media::{ContentType, Format};
use crate::pipeline::{Pipeline, PipelineOptions};

/// The default path SageMaker's sidecar connects to.
pub const PATH: &str = "invocations-bidirectional-stream";

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
    let bad = |e: Error| match e.kind() {
        ErrorKind::UnsupportedMediaType { .. } => e,
        _ => Error::new(ErrorKind::BadRequest(e.to_string())),
    };
    let mut opts = state.cfg.pipeline.clone();
    let mut input = None;
    if let Some(ct) = query.get("content_type") {
        let ct = ContentType::parse_option(ct).map_err(bad)?;
        if let Some(h) = ct.header {
            opts.decode.csv_header = h;
        }
        input = Some(ct.format);
    }
    let output = query
        .get("accept")
        .map(|a| Format::parse(a))
        .transpose()
        .map_err(bad)?;
    if input == Some(Format::Json) || output == Some(Format::Json) {
        return Err(Error::new(ErrorKind::UnsupportedMediaType {
            given: "application/json (one document) cannot stream: use csv or jsonl".into(),
        }));
    }
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
        let log = RequestLog::new(&headers, "GET", "/invocations-bidirectional-stream");
        log.finish(e.status(), &Default::default(), 0, 0, Some(&e));
        error_response(&e)
    };
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
    let log = RequestLog::new(&headers, "GET", "/invocations-bidirectional-stream");
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
}

/// WebSocket close codes (RFC 6455 §7.4.1).
const GOING_AWAY: u16 = 1001;
const BAD_DATA: u16 = 1007;
const TOO_BIG: u16 = 1009;
const INTERNAL: u16 = 1011;

/// The close code for a pipeline error.
fn close_code(e: &Error) -> u16 {
    match e.status() {
        413 => TOO_BIG,
        500 | 503 => INTERNAL,
        _ => BAD_DATA,
    }
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
            msg = socket.next() => msg,
            () = async { let _ = shutdown.wait_for(|down| *down).await; } => {
                break End::Close(GOING_AWAY, "server shutting down".into());
            }
            () = &mut idle => {
                break End::Close(GOING_AWAY, format!("no frame for {} s (MMP_BIDI_IDLE_SECONDS)", timeout.as_secs()));
            }
        };
        idle.as_mut().reset(tokio::time::Instant::now() + timeout);
        let msg = match msg {
            None | Some(Err(_)) => break End::Broken,
            Some(Ok(m)) => m,
        };
        if msg.is_close() {
            break End::ClientClosed;
        }
        if msg.is_ping() {
            // tungstenite queued the pong; flushing sends it now.
            if socket.flush().await.is_err() {
                break End::Broken;
            }
            continue;
        }
        if !(msg.is_text() || msg.is_binary()) {
            continue;
        }
        // Replies use the type of the frame that completed their records.
        let binary = msg.is_binary();
        let data = msg.as_bytes();
        bytes_in += data.len() as u64;
        if data.is_empty() {
            // End of input so far: answer a last unterminated record.
            let Some(mut p) = pipeline.take() else {
                continue;
            };
            let finished = p.finish_now(&mut out).await;
            totals.add(p.stats());
            if !out.is_empty() {
                bytes_out += out.len() as u64;
                if socket.send(frame(binary, out.split())).await.is_err() {
                    break End::Broken;
                }
            }
            if let Err(e) = finished {
                let _ = socket.send(error_frame(&e)).await;
                let end = End::Close(close_code(&e), reason(&e.to_string()));
                failure = Some(e);
                break end;
            }
            continue;
        }
        let p = pipeline.get_or_insert_with(|| {
            let input = params.input.unwrap_or(sniff(data));
            let output = params.output.unwrap_or(input);
            let p = Pipeline::new(model.clone(), input, output, &params.opts)
                .on_placeholder(crate::metrics::count_placeholder);
            Stage::new(p, pool.clone())
        });
        let fed = p.feed_now(data, &mut out).await;
        if !out.is_empty() {
            bytes_out += out.len() as u64;
            let reply = frame(binary, out.split());
            if socket.send(reply).await.is_err() {
                break End::Broken;
            }
        }
        if let Err(e) = fed {
            let _ = socket.send(error_frame(&e)).await;
            let end = End::Close(close_code(&e), reason(&e.to_string()));
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
    match end {
        End::Close(code, why) => {
            let _ = socket.send(Message::close_with(code, why)).await;
            let _ = socket.close().await;
        }
        // Flush the Close reply the WebSocket layer queued.
        End::ClientClosed => {
            let _ = socket.close().await;
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
