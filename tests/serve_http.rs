//! `mmp serve` over a real socket: the SageMaker endpoints, streaming in both
//! directions, chunk borders at awkward places, keep-alive, backpressure,
//! every error status, the error policies mid-stream, parity with
//! `mmp score`, and SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn ping_and_execution_parameters() {
    let s = Server::start(&[
        ("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", "3"),
        ("MMP_MAX_PAYLOAD_IN_MB", "0"),
    ]);
    let r = s.request(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let r = s.request(b"GET /execution-parameters HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        serde_json::json!({"MaxConcurrentTransforms": 3, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 0})
    );
    let r = s.request(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
}

#[test]
fn parity_with_score_for_every_fixture_and_format() {
    let s = Server::start(&[]);
    for input in golden_inputs() {
        let body = std::fs::read(&input).unwrap();
        for out in ["csv", "jsonl", "json"] {
            let r = s.post(mime(short_of(&input)), Some(mime(out)), &body);
            assert_eq!(r.status, 200, "{input:?}: {}", r.text());
            assert!(r.complete);
            assert_eq!(r.header("content-type"), Some(mime(out)));
            let scored = mmp()
                .args([
                    "score",
                    "--model-dir",
                    model_dir().to_str().unwrap(),
                    "-a",
                    out,
                ])
                .arg(&input)
                .output()
                .unwrap();
            assert_eq!(
                r.text(),
                String::from_utf8_lossy(&scored.stdout),
                "{input:?} as {out}"
            );
            assert_eq!(r.body, golden_expected(&input, out), "{input:?} as {out}");
        }
    }
}

#[test]
fn chunk_borders_anywhere_give_the_same_answer() {
    let s = Server::start(&[]);
    // Quotes, a quoted newline, CRLF and a BOM, split at every offset.
    let mut body = b"\xEF\xBB\xBF\"1\",2,3\r\n\"4\n\",5,\"6\"\r\n7,8,9".to_vec();
    body.extend_from_slice(b"\n");
    let expected = s.post("text/csv", None, &body);
    assert_eq!(expected.status, 200);
    assert_eq!(expected.text(), "-1.75\n-4.0\n-6.25\n");
    let mut conn = s.connect();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    for i in 0..=body.len() {
        let mut raw = chunked_head("text/csv; charset=utf-8", Some("text/csv"));
        for part in [&body[..i], &body[i..]] {
            if !part.is_empty() {
                raw.extend(chunk(part));
            }
        }
        raw.extend_from_slice(LAST_CHUNK);
        conn.write_all(&raw).unwrap();
        let r = read_response(&mut reader).unwrap();
        assert_eq!(r.status, 200, "split at {i}");
        assert!(r.complete);
        assert_eq!(r.body, expected.body, "split at {i}");
    }
    // One byte per chunk, and chunk-size lines with extensions.
    let mut raw = chunked_head("text/csv", None);
    for b in &body {
        raw.extend_from_slice(b"1;ext=x\r\n");
        raw.push(*b);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(LAST_CHUNK);
    conn.write_all(&raw).unwrap();
    let r = read_response(&mut reader).unwrap();
    assert_eq!(r.body, expected.body);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let s = Server::start(&[]);
    let mut conn = s.connect();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut raw = post_request("text/csv", None, b"1,2,3\n");
    raw.extend(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    raw.extend(chunked_head(
        "application/jsonlines",
        Some("application/jsonlines"),
    ));
    raw.extend(chunk(b"[4,5,6]\n"));
    raw.extend_from_slice(LAST_CHUNK);
    raw.extend(post_request("application/json", None, b"[[1,2,3]]"));
    conn.write_all(&raw).unwrap();
    let answers: Vec<_> = (0..4)
        .map(|_| read_response(&mut reader).unwrap())
        .collect();
    assert_eq!(answers[0].text(), "-1.75\n");
    assert_eq!(answers[1].status, 200);
    assert_eq!(answers[2].text(), "{\"score\":-4.0}\n");
    assert_eq!(answers[3].text(), "{\"predictions\":[{\"score\":-1.75}]}\n");
}

#[test]
fn first_prediction_arrives_before_the_body_ends() {
    let s = Server::start(&[]);
    let mut conn = s.connect();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut raw = chunked_head("text/csv", None);
    raw.extend(chunk(b"1,2,3\n4,5"));
    conn.write_all(&raw).unwrap();
    // The body is not finished, yet the status and the first prediction come.
    let mut head = Vec::new();
    while !head.ends_with(b"-1.75\n") {
        let mut b = [0u8; 1];
        reader
            .read_exact(&mut b)
            .expect("first prediction before the body ended");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    // The rest of the record, and the end.
    let mut rest = chunk(b",6\n");
    rest.extend_from_slice(LAST_CHUNK);
    conn.write_all(&rest).unwrap();
    let mut tail = Vec::new();
    while !tail.ends_with(b"0\r\n\r\n") {
        let mut b = [0u8; 1];
        reader.read_exact(&mut b).unwrap();
        tail.push(b[0]);
    }
    assert!(String::from_utf8_lossy(&tail).contains("-4.0\n"));
}

#[test]
fn a_client_that_stops_reading_stops_the_server_reading() {
    let s = Server::start(&[]);
    let block = chunk(&csv_rows(0, 20_000));
    assert_stops_reading(&s, &chunked_head("text/csv", None), &block, 2 << 30);
    // The server is still fine.
    assert_eq!(s.post("text/csv", None, b"1,2,3\n").text(), "-1.75\n");
}

#[test]
fn the_bad_input_corpus_gets_its_statuses_and_messages() {
    let s = Server::start(&[]);
    let limited = Server::start(&[
        ("MMP_MAX_RECORD_BYTES", "64"),
        ("MMP_MAX_DOCUMENT_BYTES", "10"),
    ]);
    let cases = bad_cases();
    for case in &cases {
        let server = if case.max_record_bytes.is_some() || case.max_document_bytes.is_some() {
            &limited
        } else {
            &s
        };
        let body = std::fs::read(&case.input).unwrap();
        let r = server.post(mime(short_of(&case.input)), None, &body);
        assert_eq!(r.status, case.status, "{case:?}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"], case.error.as_str(), "{case:?}");
        assert_eq!(v["message"], case.message.as_str(), "{case:?}");
    }
    // Raw HTTP: broken framing, lying lengths, absurd headers and types.
    let raw_cases = http_cases();
    for case in &raw_cases {
        let mut conn = s.connect();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        conn.write_all(&case.request).unwrap();
        if case.half_close {
            conn.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let r = read_response(&mut reader).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(r.status, case.status, "{}: {}", case.name, r.text());
        if let Some(kind) = &case.error {
            assert_eq!(r.json()["error"], kind.as_str(), "{}", case.name);
        }
        if let Some(m) = &case.message {
            let got = r.json()["message"].as_str().unwrap_or_default().to_string();
            assert!(
                got.contains(m.as_str()),
                "{}: {got:?} lacks {m:?}",
                case.name
            );
        }
        if let Some(body) = &case.body {
            assert_eq!(r.text(), *body, "{}", case.name);
        }
    }
    assert!(cases.len() + raw_cases.len() >= 40);
    // And the server still serves.
    assert_eq!(
        s.request(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").status,
        200
    );
    assert_eq!(s.post("text/csv", None, b"1,2,3\n").text(), "-1.75\n");
}

#[test]
fn media_type_errors_come_before_the_body_is_read() {
    let s = Server::start(&[]);
    let r = s.post("text/plain", None, b"1,2,3\n");
    assert_eq!(r.status, 415);
    assert_eq!(r.json()["error"], "unsupported_media_type");
    let r = s.post("text/csv", Some("text/html"), b"1,2,3\n");
    assert_eq!(r.status, 406);
    assert_eq!(r.json()["error"], "not_acceptable");
    // Headers only, with a body announced that never comes: the answer does
    // not wait for it.
    let mut conn = s.connect();
    conn.write_all(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000000\r\n\r\n")
        .unwrap();
    let r = read_response(&mut BufReader::new(conn)).unwrap();
    assert_eq!(r.status, 415);
}

#[test]
fn body_cap_from_sagemaker_max_payload() {
    let s = Server::start(&[("SAGEMAKER_MAX_PAYLOAD_IN_MB", "1")]);
    // Announced too large: refused before the body is read.
    let mut conn = s.connect();
    conn.write_all(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 2000000\r\n\r\n")
        .unwrap();
    let r = read_response(&mut BufReader::new(conn)).unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"], "body_too_large");
    // Chunked past the cap (a JSON document that is one row, read whole, so
    // no output is committed first; an array of rows would stream).
    let mut doc = b"[".to_vec();
    while doc.len() < 1_100_000 {
        doc.extend_from_slice(b"1,2,3,");
    }
    doc.extend_from_slice(b"1]");
    let mut raw = chunked_head("application/json", None);
    for part in doc.chunks(64 * 1024) {
        raw.extend(chunk(part));
    }
    raw.extend_from_slice(LAST_CHUNK);
    let r = s.request(&raw);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"], "body_too_large");
    // Under the cap is fine.
    assert_eq!(s.post("text/csv", None, b"1,2,3\n").status, 200);
}

/// A body large enough that the response commits before its bad last record.
fn big_then_bad() -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..50_000 {
        writeln!(v, "{i},1,2").unwrap();
    }
    v.extend_from_slice(b"1,2\n4,5,6\n");
    v
}

#[test]
fn bad_record_mid_stream_under_fail_cuts_the_response() {
    let s = Server::start(&[]);
    let mut raw = chunked_head("text/csv", None);
    raw.extend(chunk(&big_then_bad()));
    raw.extend_from_slice(LAST_CHUNK);
    let r = s.request(&raw);
    assert_eq!(r.status, 200, "committed before the bad record");
    assert!(
        !r.complete,
        "no terminating chunk: the client can tell it was cut"
    );
    let lines = r.text().lines().count();
    assert!(lines <= 50_000, "nothing past the bad record: {lines}");
    s.wait_log("record 50001 (line 50001, byte", Duration::from_secs(10));
}

#[test]
fn bad_record_mid_stream_under_placeholder_keeps_going() {
    let s = Server::start(&[("MMP_ON_ERROR", "placeholder")]);
    let body = big_then_bad();
    let r = s.post("text/csv", None, &body);
    assert_eq!(r.status, 200);
    assert!(r.complete);
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 50_002, "one line per record");
    assert!(
        lines[50_000].starts_with("\"ERROR: record 50001 (line 50001, byte "),
        "{}",
        lines[50_000]
    );
    assert_eq!(lines[50_001], "-4.0");
    s.wait_log(
        "bad record replaced by a placeholder",
        Duration::from_secs(10),
    );
}

#[test]
fn custom_attributes_are_echoed() {
    let s = Server::start(&[]);
    let raw = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nX-Amzn-SageMaker-Custom-Attributes: trace=abc,v=2\r\nX-Unknown: ignored\r\nContent-Length: 6\r\n\r\n1,2,3\n";
    let r = s.request(raw);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-amzn-sagemaker-custom-attributes"),
        Some("trace=abc,v=2")
    );
    let r = s.post("text/plain", None, b"x");
    assert_eq!(r.status, 415);
}

#[test]
fn a_model_that_cannot_load_ends_the_process_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.json"), b"{\"bias\": 1}").unwrap();
    let started = Instant::now();
    let o = mmp()
        .args(["serve", "--bind", "127.0.0.1:0", "--model-dir"])
        .arg(dir.path())
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(66));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("model.json") && stderr.contains("missing field `weights`"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn bad_environment_exits_64_naming_the_variable() {
    // More threads than can be started used to panic (exit 101) instead.
    let cases = [
        ("MODEL_SERVER_TIMEOUT", "soon", "MODEL_SERVER_TIMEOUT=\"soon\" is not valid"),
        (
            "MMP_COMPUTE_THREADS",
            "100000",
            "MMP_COMPUTE_THREADS=\"100000\" is not valid: at most 1024 threads",
        ),
        (
            "SAGEMAKER_MODEL_SERVER_WORKERS",
            "18446744073709551615",
            "SAGEMAKER_MODEL_SERVER_WORKERS=\"18446744073709551615\" is not valid: at most 1024 threads",
        ),
    ];
    for (key, value, want) in cases {
        let o = mmp()
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env_clear()
            .env(key, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{key}: {stderr}");
        assert!(stderr.contains(want), "{stderr}");
    }
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    let mut s = Server::start(&[]);
    let mut conn = s.connect();
    let mut raw = chunked_head("text/csv", None);
    raw.extend(chunk(b"1,2,3\n"));
    conn.write_all(&raw).unwrap();
    // In flight once the server has read its head (a signal before that
    // finds a connection with no request, which shutdown closes).
    eventually("the request in flight", || {
        s.metric("mmp_invocations_in_flight") == 1.0
    });
    s.signal("TERM");
    s.wait_log("stopped accepting", Duration::from_secs(10));
    // The in-flight request goes on to its end.
    let mut rest = chunk(b"4,5,6\n");
    rest.extend_from_slice(LAST_CHUNK);
    conn.write_all(&rest).unwrap();
    let r = read_response(&mut BufReader::new(conn)).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert_eq!(r.text(), "-1.75\n-4.0\n");
    let status = s.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigterm_cuts_a_request_slower_than_the_grace_period() {
    let mut s = Server::start(&[("MMP_SHUTDOWN_GRACE_SECONDS", "1")]);
    let mut conn = s.connect();
    let mut raw = chunked_head("text/csv", None);
    raw.extend(chunk(b"1,2,3\n"));
    conn.write_all(&raw).unwrap();
    // The request is under way once its first prediction is back (a signal
    // before the server read the request would find no request to cut).
    let mut reader = BufReader::new(conn);
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first:?}");
    s.signal("TERM");
    let started = Instant::now();
    let status = s.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5), "exit is prompt");
    // The rest of the head, then a body that never ends properly.
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    let mut all = first.into_bytes();
    all.extend_from_slice(&rest);
    let r = read_response(&mut BufReader::new(&all[..])).unwrap();
    assert!(!r.complete, "the cut response is visibly incomplete");
    assert!(s.logs().iter().any(|l| l.contains("grace period over")));
}

#[test]
fn settings_of_never_still_answer() {
    // The largest value the variables take, as a "no limit": each
    // request's deadline (now + the timeout) used to overflow and panic,
    // and the limits' semaphores panicked at the first connection; the
    // client got no answer at all.
    let never = u64::MAX.to_string();
    let s = Server::start(&[
        ("MODEL_SERVER_TIMEOUT", never.as_str()),
        ("MMP_HEADER_READ_TIMEOUT_SECONDS", never.as_str()),
        ("MMP_MAX_CONNECTIONS", never.as_str()),
        ("MMP_MAX_IN_FLIGHT", never.as_str()),
    ]);
    assert_eq!(s.post("text/csv", None, b"1,2,3\n").text(), "-1.75\n");
    // A streamed body that stops midway: the server answers what it has
    // and waits for the rest (its idle timer set far off), which then ends.
    let mut conn = s.connect();
    let mut raw = chunked_head("text/csv", None);
    raw.extend(chunk(&csv_rows(0, 20_000)));
    conn.write_all(&raw).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    conn.write_all(LAST_CHUNK).unwrap();
    // Half-closed: the server ends the connection once it has answered.
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.ends_with(b"0\r\n\r\n"), "the answer ends cleanly");
    assert_eq!(s.post("text/csv", None, b"1,2,3\n").text(), "-1.75\n");
    assert!(!s.logs().iter().any(|l| l.contains("panicked")));
}

#[test]
fn a_request_that_makes_no_progress_is_ended_with_408() {
    let s = Server::start(&[("MODEL_SERVER_TIMEOUT", "1")]);
    let mut conn = s.connect();
    let mut raw = chunked_head("text/csv", None);
    raw.extend(chunk(b"1,2"));
    conn.write_all(&raw).unwrap();
    // Nothing more is sent: the server gives up after a second of silence.
    let started = Instant::now();
    let r = read_response(&mut BufReader::new(conn)).unwrap();
    assert_eq!(r.status, 408, "{}", r.text());
    assert_eq!(r.json()["error"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Others are unaffected.
    assert_eq!(s.post("text/csv", None, b"1,2,3\n").text(), "-1.75\n");
}

/// Send `raw` on `conn` and read one response from `reader`.
fn exchange(conn: &mut std::net::TcpStream, reader: &mut impl BufRead, raw: &[u8]) -> Response {
    conn.write_all(raw).unwrap();
    read_response(reader).unwrap()
}

/// A keep-alive client (python's http.client, urllib3) sends a small body
/// with its headers and reuses the connection unless told it closes. An
/// answer given before the body was read (415, 406, 503 overloaded) used to
/// close the connection without `Connection: close`, so the client's next
/// request on it was lost (RFC 9110 §10.1.1). Now a small body on its way
/// is read and the connection serves the next request; a body that does
/// not come gets `Connection: close`.
#[test]
fn answers_before_the_body_keep_the_connection_or_say_close() {
    let s = Server::start(&[("MMP_MAX_IN_FLIGHT", "1")]);
    let ping: &[u8] = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
    let refused = [
        (415, post_request("image/png", None, b"1,2,3\n")),
        (406, post_request("text/csv", Some("image/png"), b"1,2,3\n")),
    ];
    let mut conn = s.connect();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    for (status, raw) in &refused {
        let r = exchange(&mut conn, &mut reader, raw);
        assert_eq!(r.status, *status, "{}", r.text());
        assert_eq!(r.header("connection"), None, "{status}");
        assert_eq!(exchange(&mut conn, &mut reader, ping).status, 200);
    }
    // The only slot taken by an upload still open: 503, same connection.
    let mut hold = s.connect();
    let mut raw = chunked_head("text/csv", None);
    raw.extend(chunk(b"1,2,3\n"));
    hold.write_all(&raw).unwrap();
    let mut status = [0u8; 12];
    hold.read_exact(&mut status).unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    let r = exchange(
        &mut conn,
        &mut reader,
        &post_request("text/csv", None, b"1,2,3\n"),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("connection"), None);
    assert_eq!(exchange(&mut conn, &mut reader, ping).status, 200);
    // Headers alone, the body held back (the slot still taken): the
    // answer says it closes, and the server does close.
    let r = exchange(
        &mut conn,
        &mut reader,
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n",
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.header("connection"), Some("close"));
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    drop(hold);
}

/// RFC 9110 §15.5.9: a 408 SHOULD say the server closes.
#[test]
fn a_408_says_connection_close() {
    let s = Server::start(&[("MODEL_SERVER_TIMEOUT", "1")]);
    let r = s.request(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n1,2");
    assert_eq!(r.status, 408, "{}", r.text());
    assert_eq!(r.header("connection"), Some("close"));
}

/// A WebSocket handshake the server cannot take is the client's error
/// (RFC 6455 §4.2.1: 400; §4.2.2: a version it does not speak, 426 with
/// the one it does); it used to be a 500 `internal` and an ERROR line.
#[test]
fn bad_websocket_handshakes_are_400_or_426_not_500() {
    let s = Server::start(&[]);
    let path = "/invocations-bidirectional-stream";
    let head = |extra: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").into_bytes();
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n";
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases = [
        (head(""), 400, "connection"),
        (head("Connection: keep-alive\r\n"), 400, "upgrade"),
        (
            head(&format!("{upgrade}{key}Sec-WebSocket-Version: 8\r\n")),
            426,
            "Sec-WebSocket-Version 13",
        ),
        (
            head(&format!("{upgrade}Sec-WebSocket-Version: 13\r\n")),
            400,
            "sec-websocket-key",
        ),
    ];
    for (raw, status, needle) in cases {
        let r = s.request(&raw);
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.json()["error"], "bad_request");
        let message = r.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains(needle), "{message}");
        if status == 426 {
            assert_eq!(r.header("sec-websocket-version"), Some("13"));
        }
    }
    assert_eq!(
        s.metric("mmp_http_requests_total{route=\"other\",status=\"500\"}"),
        0.0
    );
    assert!(!s.logs().iter().any(|l| l.contains("unhandled rejection")));
}

/// RFC 9110: a 405 carries `Allow` (§15.5.6); a resource that answers GET
/// answers HEAD (§9.1); `Accept` sent as two lines is one list (§5.3).
#[test]
fn allow_head_and_accept_over_several_lines() {
    let s = Server::start(&[]);
    for (raw, allow) in [
        (&b"GET /invocations HTTP/1.1\r\nHost: x\r\n\r\n"[..], "POST"),
        (
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "GET, HEAD",
        ),
        (b"DELETE /ping HTTP/1.1\r\nHost: x\r\n\r\n", "GET, HEAD"),
    ] {
        let r = s.request(raw);
        assert_eq!(r.status, 405, "{}", r.text());
        assert_eq!(r.header("allow"), Some(allow));
    }
    for path in ["/metrics", "/execution-parameters", "/ping"] {
        let mut conn = s.connect();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        conn.write_all(format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{path}: {status}");
    }
    let r = s.request(
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nAccept: text/plain\r\n\
          Accept: application/json\r\nContent-Length: 6\r\n\r\n1,2,3\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
}
