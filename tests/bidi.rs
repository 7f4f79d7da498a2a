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
