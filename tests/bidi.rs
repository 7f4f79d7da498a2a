//! The bidirectional-streaming WebSocket endpoint with a real WebSocket
//! client over a socket: records split across frames at every offset,
//! fragmented messages, prompt answers, ping/pong, bad records under each
//! policy, limits, and SIGTERM closing sessions with a Close frame.

use std::time::Duration;

use crate::util::*;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(s: &Server, query: &str) -> Ws {
    let url = format!("ws://{}/invocations-bidirectional-stream{query}", s.addr);
    let (ws, response) = connect_async(url).await.expect("WebSocket upgrade");
    assert_eq!(response.status(), 101);
    ws
}

/// Everything the server sends until its Close: the data frames (text or
/// binary), and the close code and reason.
async fn drain(ws: &mut Ws) -> (Vec<Message>, Option<(u16, String)>) {
    let mut frames = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the server answers within 10 s");
        match next {
            Some(Ok(Message::Close(c))) => {
                return (frames, c.map(|c| (u16::from(c.code), c.reason.to_string())))
            }
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => frames.push(m),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return (frames, None),
        }
    }
}

fn text_of(frames: &[Message]) -> String {
    frames
        .iter()
        .map(|m| match m {
            Message::Text(t) => t.to_string(),
            Message::Binary(b) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        })
        .collect()
}

fn empty(binary: bool) -> Message {
    if binary {
        Message::binary(Vec::new())
    } else {
        Message::text("")
    }
}

fn close_normal() -> Message {
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

const BODY: &[u8] = b"1,2,3\n\"4\",5,6\r\n7,8,9";
const ANSWER: &str = "-1.75\n-4.0\n-6.25\n";

#[tokio::test]
async fn records_split_across_frames_at_every_offset() {
    let s = Server::start(&[]);
    for i in 0..=BODY.len() {
        for binary in [false, true] {
            let mut ws = open(&s, "").await;
            for part in [&BODY[..i], &BODY[i..]] {
                if part.is_empty() {
                    continue;
                }
                let m = if binary {
                    Message::binary(part.to_vec())
                } else {
                    Message::text(String::from_utf8(part.to_vec()).unwrap())
                };
                ws.send(m).await.unwrap();
            }
            // An empty frame ends the input: the last, unterminated record
            // is answered.
            ws.send(empty(binary)).await.unwrap();
            ws.send(close_normal()).await.unwrap();
            let (frames, close) = drain(&mut ws).await;
            assert_eq!(text_of(&frames), ANSWER, "split at {i}");
            assert!(
                frames.iter().all(|f| f.is_binary() == binary),
                "same framing type"
            );
            assert_eq!(close.map(|c| c.0), Some(1000));
        }
    }
}

#[tokio::test]
async fn fragmented_messages_are_reassembled() {
    let s = Server::start(&[]);
    let mut ws = open(&s, "?content_type=csv").await;
    let parts: Vec<&[u8]> = vec![b"1,2", b",3\n4,5,", b"6\n"];
    for (i, part) in parts.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(part.to_vec(), opcode, i == parts.len() - 1);
        ws.send(Message::Frame(frame)).await.unwrap();
    }
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.to_text().unwrap(), "-1.75\n-4.0\n");
    ws.send(close_normal()).await.unwrap();
    let (_, close) = drain(&mut ws).await;
    assert_eq!(close.map(|c| c.0), Some(1000));
}

#[tokio::test]
async fn each_record_is_answered_promptly_and_json_lines_work() {
    let s = Server::start(&[]);
    let mut ws = open(&s, "").await;
    // JSON lines, sniffed from the first frame; one record at a time.
    for (record, score) in [("[1,2,3]\n", -1.75), ("{\"features\":[4,5,6]}\n", -4.0)] {
        ws.send(Message::text(record)).await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        assert_eq!(v["score"], score);
    }
    // A half record gets nothing back until it is complete.
    ws.send(Message::text("[7,8")).await.unwrap();
    ws.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        m,
        Message::Pong(b"hi".to_vec().into()),
        "the ping is answered, and no prediction yet"
    );
    ws.send(Message::text(",9]")).await.unwrap();
    ws.send(Message::text("")).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        m.to_text().unwrap(),
        "{\"score\":-6.25}\n",
        "the last record, at the empty frame"
    );
    // The session goes on: a new stream, sniffed again (CSV this time).
    ws.send(Message::text("1,2,3\n")).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.to_text().unwrap(), "-1.75\n");
    ws.send(close_normal()).await.unwrap();
    let (_, close) = drain(&mut ws).await;
    assert_eq!(close.map(|c| c.0), Some(1000));
}

#[tokio::test]
async fn a_bad_record_under_fail_closes_with_1007() {
    let s = Server::start(&[]);
    let mut ws = open(&s, "?accept=jsonl").await;
    ws.send(Message::text("1,2,3\n1,2\n4,5,6\n")).await.unwrap();
    let (frames, close) = drain(&mut ws).await;
    let text = text_of(&frames);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0]["score"], -1.75,
        "predictions before the bad record"
    );
    assert_eq!(
        lines.last().unwrap()["error"],
        "field_count",
        "then an error frame"
    );
    let (code, reason) = close.expect("a Close frame");
    assert_eq!(code, 1007);
    assert!(reason.contains("expected 3 fields, found 2"), "{reason}");
}

#[tokio::test]
async fn a_bad_record_under_placeholder_goes_on() {
    let s = Server::start(&[]);
    let mut ws = open(&s, "?on_error=placeholder").await;
    ws.send(Message::text("1,2,3\n1,2\n")).await.unwrap();
    ws.send(Message::text("4,5,6\n")).await.unwrap();
    ws.send(close_normal()).await.unwrap();
    let (frames, close) = drain(&mut ws).await;
    let text = text_of(&frames);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], "-1.75");
    assert!(lines[1].starts_with("\"ERROR: record 2"), "{}", lines[1]);
    assert_eq!(lines[2], "-4.0");
    assert_eq!(close.map(|c| c.0), Some(1000));
}

#[tokio::test]
async fn a_record_over_the_limit_closes_with_1009() {
    let s = Server::start(&[("MMP_MAX_RECORD_BYTES", "16")]);
    let mut ws = open(&s, "").await;
    ws.send(Message::text("1,2,3\n".to_string() + &"1".repeat(100)))
        .await
        .unwrap();
    let (_, close) = drain(&mut ws).await;
    assert_eq!(close.map(|c| c.0), Some(1009));
}

#[tokio::test]
async fn bad_parameters_and_limits_are_refused_before_the_upgrade() {
    let s = Server::start(&[("MMP_MAX_IN_FLIGHT", "1")]);
    let url = format!(
        "ws://{}/invocations-bidirectional-stream?content_type=json",
        s.addr
    );
    let err = connect_async(url).await.expect_err("refused");
    assert!(err.to_string().contains("415"), "{err}");
    let url = format!(
        "ws://{}/invocations-bidirectional-stream?on_error=maybe",
        s.addr
    );
    let err = connect_async(url).await.expect_err("refused");
    assert!(err.to_string().contains("400"), "{err}");
    // One session holds the only slot: a second is refused with 503.
    let _held = open(&s, "").await;
    let url = format!("ws://{}/invocations-bidirectional-stream", s.addr);
    let err = connect_async(url).await.expect_err("refused");
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test]
async fn sigterm_closes_sessions_with_1001_and_the_server_exits_0() {
    let mut s = Server::start(&[]);
    let mut ws = open(&s, "").await;
    ws.send(Message::text("1,2,3\n")).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.to_text().unwrap(), "-1.75\n");
    s.signal("TERM");
    let (_, close) = drain(&mut ws).await;
    let (code, reason) = close.expect("a Close frame");
    assert_eq!(code, 1001);
    assert_eq!(reason, "server shutting down");
    let status = tokio::task::spawn_blocking(move || s.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn sessions_are_counted_and_logged() {
    let s = Server::start(&[]);
    let mut ws = open(&s, "").await;
    ws.send(Message::text("1,2,3\n4,5,6\n")).await.unwrap();
    let (frames, _) = {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        (vec![m], ())
    };
    assert_eq!(text_of(&frames), "-1.75\n-4.0\n");
    ws.send(close_normal()).await.unwrap();
    drain(&mut ws).await;
    let line = s.wait_log("/invocations-bidirectional-stream", Duration::from_secs(10));
    assert!(
        line.contains("status=101") && line.contains("records=2"),
        "{line}"
    );
    let m = s
        .request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .text();
    assert!(
        m.contains(
            "mmp_http_requests_total{route=\"/invocations-bidirectional-stream\",status=\"101\"} 1"
        ),
        "{m}"
    );
}

#[tokio::test]
async fn pings_keep_a_quiet_session_alive_past_the_request_timeout() {
    // The request timeout is 1 s and the session idle limit 3 s. A session
    // that only pings, once a second, outlives both; once it goes quiet it
    // is closed at the idle limit, not at the request timeout.
    let s = Server::start(&[
        ("MODEL_SERVER_TIMEOUT", "1"),
        ("MMP_BIDI_IDLE_SECONDS", "3"),
    ]);
    let mut ws = open(&s, "").await;
    ws.send(Message::text("1,2,3\n")).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.to_text().unwrap(), "-1.75\n");
    let started = std::time::Instant::now();
    for _ in 0..5 {
        // Pacing, as SageMaker's pings are paced; each pong is awaited.
        tokio::time::sleep(Duration::from_secs(1)).await;
        ws.send(Message::Ping(b"hb".to_vec().into())).await.unwrap();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("a pong");
            match next {
                Some(Ok(Message::Pong(p))) => {
                    assert_eq!(&p[..], b"hb");
                    break;
                }
                Some(Ok(Message::Close(c))) => panic!("closed while pinging: {c:?}"),
                other => assert!(other.is_some(), "the session ended while pinging"),
            }
        }
    }
    assert!(started.elapsed() > Duration::from_secs(4));
    // Still a working session after 5 s of pings only.
    ws.send(Message::text("4,5,6\n")).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.to_text().unwrap(), "-4.0\n");
    // Now nothing at all: closed with 1001 at the idle limit.
    let quiet = std::time::Instant::now();
    let (_, close) = drain(&mut ws).await;
    let (code, reason) = close.expect("a Close frame");
    assert_eq!(code, 1001);
    assert_eq!(reason, "no frame for 3 s (MMP_BIDI_IDLE_SECONDS)");
    assert!(
        quiet.elapsed() >= Duration::from_secs(2),
        "{:?}",
        quiet.elapsed()
    );
}

/// Frames of a session that sends `messages`, an empty frame and a Close
/// (or as many as it can before the server closes), and its close code.
async fn session(s: &Server, query: &str, messages: &[&str]) -> (String, Option<u16>) {
    let mut ws = open(s, query).await;
    let sends = messages.iter().map(|m| Message::text(*m));
    for m in sends.chain([empty(false), close_normal()]) {
        if ws.send(m).await.is_err() {
            break;
        }
    }
    let (frames, close) = drain(&mut ws).await;
    (text_of(&frames), close.map(|c| c.0))
}

#[tokio::test]
async fn a_slow_model_on_the_compute_pool_answers_the_same_frames() {
    let cheap = Server::start(&[]);
    let dir = crate::serve_slow::slow_model();
    let slow = crate::serve_slow::serve(&dir, "2");
    // A record split across messages, a bad one replaced in its place, a
    // last one answered by the empty frame; then one that fails the session.
    let placeholder: &[&str] = &["1,2,3\n1,2\n4,5", ",6\n7,8,9"];
    let fail: &[&str] = &["1,2,3\n", "4,5,6\n1,2\n"];
    for (query, messages) in [("?on_error=placeholder", placeholder), ("", fail)] {
        let want = session(&cheap, query, messages).await;
        let got = session(&slow, query, messages).await;
        assert_eq!(got, want, "{query} {messages:?}");
    }
    let (text, close) = session(&slow, "", fail).await;
    assert_eq!(close, Some(1007), "{text}");
    assert!(text.starts_with("-1.75\n-4.0\n{\"error\""), "{text}");
}

/// The upgrade request for a raw client, with `query`.
fn upgrade_request(query: &str) -> Vec<u8> {
    format!(
        "GET /invocations-bidirectional-stream{query} HTTP/1.1\r\nHost: x\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// A raw WebSocket client, for what a client library will not send: the
/// upgraded socket, and what the server sent after its 101 head.
fn raw_open(s: &Server, query: &str) -> (std::net::TcpStream, Vec<u8>) {
    use std::io::{Read, Write};
    let mut c = s.connect();
    c.write_all(&upgrade_request(query)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "EOF in the upgrade's answer");
        got.extend_from_slice(&buf[..n]);
    };
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    (c, got.split_off(end))
}

/// One frame as given: FIN set, `rsv1` as asked, masked unless `unmasked`;
/// `len` is the length the header claims (the payload's unless given).
fn raw_frame(opcode: u8, payload: &[u8], unmasked: bool, rsv1: bool, len: Option<u64>) -> Vec<u8> {
    let mut f = vec![0x80 | if rsv1 { 0x40 } else { 0 } | opcode];
    let mask_bit = if unmasked { 0 } else { 0x80 };
    let n = len.unwrap_or(payload.len() as u64);
    if n < 126 {
        f.push(mask_bit | n as u8);
    } else if n < 65536 {
        f.push(mask_bit | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(mask_bit | 127);
        f.extend_from_slice(&n.to_be_bytes());
    }
    if unmasked {
        f.extend_from_slice(payload);
    } else {
        let key = [0x11, 0x22, 0x33, 0x44];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    }
    f
}

/// The server's frames on a raw socket until its Close or the end of the
/// connection: the data frames' payloads, and the close code and reason.
fn raw_drain(
    c: &mut std::net::TcpStream,
    mut got: Vec<u8>,
) -> (Vec<String>, Option<(u16, String)>) {
    use std::io::Read;
    let mut frames = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        // One whole frame in `got`? (The server's frames are not masked.)
        let parsed = (|| {
            let (b0, b1) = (*got.first()?, *got.get(1)?);
            let (len, at) = match b1 & 0x7f {
                126 => (u16::from_be_bytes([*got.get(2)?, *got.get(3)?]) as usize, 4),
                127 => (
                    u64::from_be_bytes(got.get(2..10)?.try_into().ok()?) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            let payload = got.get(at..at + len)?.to_vec();
            Some((b0 & 0x0f, payload, at + len))
        })();
        match parsed {
            Some((8, p, _)) => {
                let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                let why = String::from_utf8_lossy(p.get(2..).unwrap_or(&[])).into_owned();
                return (frames, code.map(|c| (c, why)));
            }
            Some((_, p, used)) => {
                frames.push(String::from_utf8_lossy(&p).into_owned());
                got.drain(..used);
            }
            None => match c.read(&mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => return (frames, None),
            },
        }
    }
}

/// A fault at the WebSocket level (RFC 6455 §5, §8.1) is the client's:
/// an error frame naming it, a Close with its code (not a dropped
/// connection), a failed request in the log and `mmp_errors_total`.
#[test]
fn websocket_faults_close_with_their_code_and_are_the_clients_errors() {
    let s = Server::start(&[]);
    let rec = b"1,2,3\n";
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "a text message that is not UTF-8",
            raw_frame(1, b"1,2,3\n\xff\n", false, false, None),
            1007,
            "invalid_text",
        ),
        (
            // The header alone: the server refuses before the payload.
            "a message over 16 MiB",
            raw_frame(2, b"", false, false, Some((16 << 20) + 1)),
            1009,
            "message_too_large",
        ),
        (
            "an unmasked frame",
            raw_frame(1, rec, true, false, None),
            1002,
            "websocket_protocol",
        ),
        (
            "a reserved opcode",
            raw_frame(3, rec, false, false, None),
            1002,
            "websocket_protocol",
        ),
        (
            "RSV1 with no extension",
            raw_frame(1, rec, false, true, None),
            1002,
            "websocket_protocol",
        ),
        (
            "a continuation with no message started",
            raw_frame(0, rec, false, false, None),
            1002,
            "websocket_protocol",
        ),
        (
            "a ping over 125 bytes",
            raw_frame(9, &[b'x'; 126], false, false, None),
            1002,
            "websocket_protocol",
        ),
    ];
    for (what, bytes, code, kind) in &cases {
        use std::io::Write;
        let (mut c, rest) = raw_open(&s, "?content_type=csv");
        c.write_all(bytes).unwrap();
        let (frames, close) = raw_drain(&mut c, rest);
        let (got, why) = close.unwrap_or_else(|| panic!("{what}: no Close frame"));
        assert_eq!(got, *code, "{what}: {why}");
        assert!(why.len() <= 123, "{what}: {why}");
        let error: serde_json::Value = serde_json::from_str(&frames[0]).unwrap();
        assert_eq!(error["error"], *kind, "{what}");
    }
    for (kind, n) in [
        ("invalid_text", 1.0),
        ("message_too_large", 1.0),
        ("websocket_protocol", 5.0),
    ] {
        let name = format!("mmp_errors_total{{kind=\"{kind}\"}}");
        assert_eq!(s.metric(&name), n, "{name}");
    }
    let line = s.wait_log("kind=\"message_too_large\"", Duration::from_secs(10));
    assert!(
        line.contains("request failed") && line.contains("status=101"),
        "{line}"
    );
}

/// A client that sends records and reads none of the answers, then goes
/// quiet with its connection open: stuck sending to it, the server still
/// ends the session at the idle limit and frees its `MMP_MAX_IN_FLIGHT`
/// slot.
fn stalled_client(s: &Server) -> std::net::TcpStream {
    use std::io::Write;
    let (mut c, _) = raw_open(s, "?content_type=csv");
    let message = raw_frame(2, &b"1,2,3\n".repeat(20_000), false, false, None);
    c.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Until the server stops reading: it is stuck sending the answers.
    while c.write_all(&message).is_ok() {}
    c
}

#[test]
fn a_client_that_stops_reading_is_ended_and_frees_its_slot() {
    let s = Server::start(&[("MMP_MAX_IN_FLIGHT", "1"), ("MMP_BIDI_IDLE_SECONDS", "3")]);
    let _c = stalled_client(&s);
    // The slot is held while the session waits on its client...
    assert_eq!(s.post("text/csv", None, b"1,2,3\n").status, 503);
    // ...and freed once the send made no progress for the idle limit.
    let line = s.wait_log("kind=\"client_stalled\"", Duration::from_secs(20));
    assert!(line.contains("status=101"), "{line}");
    eventually("the slot is freed", || {
        s.post("text/csv", None, b"1,2,3\n").status == 200
    });
    assert_eq!(s.metric("mmp_errors_total{kind=\"client_stalled\"}"), 1.0);
}

/// SIGTERM ends a session stuck sending to a client that stopped reading
/// at once, not at the idle limit (330 s) nor at the end of the grace period.
#[test]
fn sigterm_ends_a_session_stuck_sending_well_within_the_grace_period() {
    let mut s = Server::start(&[("MMP_SHUTDOWN_GRACE_SECONDS", "25")]);
    let _c = stalled_client(&s);
    let t0 = std::time::Instant::now();
    s.signal("TERM");
    let status = s.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    let logs = s.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("/invocations-bidirectional-stream") && l.contains("status=101")),
        "the session is logged: {logs:?}"
    );
    assert!(
        !logs
            .iter()
            .any(|l| l.contains("still open after the grace period")
                || l.contains("grace period over")),
        "{logs:?}"
    );
}

/// The refusals before the upgrade have `/invocations`' statuses and
/// error kinds: a type that cannot be read 415, one that cannot be written
/// 406 (application/json, one document, cannot stream either way).
#[test]
fn format_refusals_are_415_and_406_as_on_invocations() {
    let s = Server::start(&[]);
    for (query, status, kind) in [
        ("?content_type=text/foo", 415, "unsupported_media_type"),
        (
            "?content_type=application/json",
            415,
            "unsupported_media_type",
        ),
        ("?content_type=json", 415, "unsupported_media_type"),
        ("?accept=text/foo", 406, "not_acceptable"),
        ("?accept=application/json", 406, "not_acceptable"),
        ("?on_error=maybe", 400, "bad_request"),
    ] {
        let r = s.request(&upgrade_request(query));
        assert_eq!(r.status, status, "{query}: {}", r.text());
        let body = r.json();
        assert_eq!(body["error"], kind, "{query}");
        let message = body["message"].as_str().unwrap();
        assert!(
            !message.contains("supported are text/csv, application/jsonlines, application/json"),
            "{query}: {message}"
        );
    }
}

/// A multi-model endpoint has no default model: the route refuses for
/// good (404, as `/invocations` there), not 503 "still loading".
#[test]
fn a_multi_model_endpoint_refuses_the_stream_with_404() {
    let root = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &[("MMP_MME_MODEL_ROOT", root.path().to_str().unwrap())],
        &["--multi-model"],
    );
    let r = s.request(&upgrade_request(""));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"], "multi_model");
    assert!(r.header("retry-after").is_none());
}

/// Messages of `MMP_PARALLEL_FROM` bytes or more are scored on the compute
/// pool (not on a runtime worker, which answers `/ping`): the same frames
/// as inline, a record split across messages, a placeholder and a failure
/// included.
#[tokio::test]
async fn large_messages_on_the_compute_pool_answer_the_same_frames() {
    let inline = Server::start(&[]);
    let pooled = Server::start(&[("MMP_PARALLEL_FROM", "4")]);
    let placeholder: &[&str] = &["1,2,3\n1,2\n4,5", ",6\n7,8,9", "1"];
    let fail: &[&str] = &["1,2,3\n", "4,5,6\n1,2\n"];
    for (query, messages) in [("?on_error=placeholder", placeholder), ("", fail)] {
        let want = session(&inline, query, messages).await;
        let got = session(&pooled, query, messages).await;
        assert_eq!(got, want, "{query} {messages:?}");
    }
}
