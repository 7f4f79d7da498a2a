//! What real HTTP clients do beyond the corpus in `fixtures/bad/http`:
//! half-close after the request (RFC 9112 §9.6), HTTP/1.0, pipelining,
//! `Expect: 100-continue`, `Connection: close`, trailers, long chunk
//! extensions, a client that reads one byte at a time. Each well-behaved
//! client gets its whole answer; each broken one a clear 4xx, and the
//! server keeps serving.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};

use crate::util::*;

/// The fixtures' model (`fixtures/model/model.json`: bias 0.5, weights
/// 1, -2, 0.25), computed here from the artifact's numbers.
fn predict(x: [f64; 3]) -> f64 {
    0.5 + x[0] - 2.0 * x[1] + 0.25 * x[2]
}

/// `n` CSV rows and the predictions the model gives them, one a line.
fn rows(n: usize) -> (Vec<u8>, Vec<f64>) {
    let mut body = Vec::new();
    let mut want = Vec::new();
    for i in 0..n {
        let x = [i as f64, (i % 7) as f64 * 0.5, 1.0 + (i % 3) as f64];
        body.extend_from_slice(format!("{},{},{}\n", x[0], x[1], x[2]).as_bytes());
        want.push(predict(x));
    }
    (body, want)
}

/// The numbers of a CSV answer, one a line.
fn numbers(body: &[u8]) -> Vec<f64> {
    String::from_utf8_lossy(body)
        .lines()
        .map(|l| l.parse().unwrap_or_else(|_| panic!("not a number: {l:?}")))
        .collect()
}

/// Send `raw`, shut down the write side at once (the client's FIN), and
/// read the one response.
fn half_closed(s: &Server, raw: &[u8]) -> Response {
    let mut c = s.connect();
    c.write_all(raw).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    read_response(&mut BufReader::new(c)).expect("an answer after a half-close")
}

#[test]
fn a_half_closed_client_gets_every_answer() {
    let s = Server::start(&[]);
    let (small, small_want) = rows(2);
    // Over 64 KiB of output: committed and streamed in chunks.
    let (large, large_want) = rows(20_000);
    for i in 0..40 {
        let r = half_closed(&s, &post_request("text/csv", None, &small));
        assert_eq!(r.status, 200, "try {i}: {}", r.text());
        assert!(r.complete, "try {i}");
        assert_eq!(numbers(&r.body), small_want, "try {i}");

        let r = half_closed(&s, &post_request("text/csv", None, &large));
        assert_eq!(r.status, 200, "try {i}");
        assert!(r.complete, "try {i}: the streamed answer was cut");
        assert_eq!(numbers(&r.body), large_want, "try {i}");

        let r = half_closed(&s, &post_request("text/csv", None, b"1,2,3\n1,x,3\n"));
        assert_eq!(r.status, 400, "try {i}: {}", r.text());
        assert_eq!(r.json()["error"], "not_a_number", "try {i}");

        // Chunked, with its last chunk, then the FIN.
        let mut raw = chunked_head("text/csv", None);
        raw.extend(chunk(&small));
        raw.extend_from_slice(LAST_CHUNK);
        let r = half_closed(&s, &raw);
        assert_eq!(r.status, 200, "try {i}: {}", r.text());
        assert_eq!(numbers(&r.body), small_want, "try {i}");
    }
}

#[test]
fn a_client_gone_mid_body_is_still_an_abort() {
    let s = Server::start(&[]);
    let (body, _) = rows(100);
    let mut raw = format!(
        "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n",
        body.len() + 1000
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let mut c = s.connect();
    c.write_all(&raw).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    // The server sees an EOF inside the body: no 200 may come of it, and
    // the connection is closed rather than left waiting.
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    let head = String::from_utf8_lossy(&got);
    assert!(!head.starts_with("HTTP/1.1 200"), "{head}");
    let line = s.wait_log("request failed", std::time::Duration::from_secs(10));
    assert!(line.contains("status=400"), "{line}");
    assert!(line.contains("the client closed the connection"), "{line}");
    assert_eq!(s.metric("mmp_invocations_aborted_total"), 1.0);
    assert_eq!(s.post("text/csv", None, b"1,2,3\n").status, 200);
}

/// A CSV POST in HTTP/1.0, with `extra` header lines.
fn http_1_0(body: &[u8], extra: &str) -> Vec<u8> {
    let mut raw = format!(
        "POST /invocations HTTP/1.0\r\n{extra}Content-Type: text/csv\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// Send `raw` and read until the server closes: the one response.
fn until_close(s: &Server, raw: &[u8]) -> Response {
    let mut c = s.connect();
    c.write_all(raw).unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    read_response(&mut BufReader::new(&all[..])).unwrap()
}

#[test]
fn http_1_0_with_and_without_keep_alive() {
    let s = Server::start(&[]);
    let (body, want) = rows(3);
    // HTTP/1.0 without keep-alive: the answer, then the server closes.
    let r = until_close(&s, &http_1_0(&body, ""));
    assert_eq!(r.status, 200);
    assert_eq!(numbers(&r.body), want);
    assert!(r.header("transfer-encoding").is_none(), "no chunked to 1.0");

    // HTTP/1.0 with keep-alive: two requests on one connection.
    let raw = http_1_0(&body, "Connection: keep-alive\r\n");
    let mut c = BufReader::new(s.connect());
    for i in 0..2 {
        c.get_mut().write_all(&raw).unwrap();
        let r = read_response(&mut c).unwrap();
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(numbers(&r.body), want, "request {i}");
    }
}

#[test]
fn http_1_0_gets_a_large_streamed_answer_whole() {
    let s = Server::start(&[]);
    let (body, want) = rows(20_000);
    let r = until_close(&s, &http_1_0(&body, ""));
    assert_eq!(r.status, 200);
    assert_eq!(numbers(&r.body), want);
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let s = Server::start(&[]);
    let mut raw = Vec::new();
    let mut wants = Vec::new();
    for n in [1, 5, 2, 40] {
        let (body, want) = rows(n);
        raw.extend(post_request("text/csv", None, &body));
        wants.push(want);
    }
    raw.extend_from_slice(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut c = BufReader::new(s.connect());
    c.get_mut().write_all(&raw).unwrap();
    for (i, want) in wants.iter().enumerate() {
        let r = read_response(&mut c).unwrap();
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(&numbers(&r.body), want, "request {i}");
    }
    assert_eq!(read_response(&mut c).unwrap().status, 200, "the ping");
}

#[test]
fn expect_100_continue_accepted_and_refused() {
    let s = Server::start(&[]);
    let (body, want) = rows(4);
    // Accepted: the server says 100 Continue, then the client sends.
    let mut c = BufReader::new(s.connect());
    write!(
        c.get_mut(),
        "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut line = String::new();
    c.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line:?}");
    line.clear();
    c.read_line(&mut line).unwrap();
    assert_eq!(line, "\r\n");
    c.get_mut().write_all(&body).unwrap();
    let r = read_response(&mut c).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(numbers(&r.body), want);

    // Refused: an unsupported type gets 415 at once, with no 100 first,
    // and the client never sends its body.
    let mut c = BufReader::new(s.connect());
    write!(
        c.get_mut(),
        "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n"
    )
    .unwrap();
    let r = read_response(&mut c).unwrap();
    assert_eq!(r.status, 415, "{}", r.text());
    assert_eq!(r.json()["error"], "unsupported_media_type");
    assert_eq!(s.post("text/csv", None, &body).status, 200);
}

#[test]
fn connection_close_on_the_request_closes_after_the_answer() {
    let s = Server::start(&[]);
    let (body, want) = rows(3);
    let mut raw = format!(
        "POST /invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let mut c = s.connect();
    c.write_all(&raw).unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap(); // returns: the server closed
    let r = read_response(&mut BufReader::new(&all[..])).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(numbers(&r.body), want);
}

#[test]
fn trailers_after_a_chunked_body_are_accepted() {
    let s = Server::start(&[]);
    let (body, want) = rows(5);
    let mut raw = chunked_head("text/csv", None);
    raw.extend(chunk(&body[..7]));
    raw.extend(chunk(&body[7..]));
    raw.extend_from_slice(b"0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n");
    let mut c = BufReader::new(s.connect());
    c.get_mut().write_all(&raw).unwrap();
    let r = read_response(&mut c).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(numbers(&r.body), want);
    // The connection is still good for the next request.
    c.get_mut()
        .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c).unwrap().status, 200);
}

#[test]
fn chunk_extensions_short_are_ignored_and_very_long_refused() {
    let s = Server::start(&[]);
    let (body, want) = rows(2);
    let mut raw = chunked_head("text/csv", None);
    raw.extend_from_slice(format!("{:x};name=value;x\r\n", body.len()).as_bytes());
    raw.extend_from_slice(&body);
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(LAST_CHUNK);
    let r = s.request(&raw);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(numbers(&r.body), want);

    // A megabyte of extension on one chunk: a bounded 4xx, not a buffer
    // that grows with it.
    let mut raw = chunked_head("text/csv", None);
    raw.extend_from_slice(format!("{:x};", body.len()).as_bytes());
    raw.extend(std::iter::repeat_n(b'a', 1 << 20));
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(&body);
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(LAST_CHUNK);
    let mut c = s.connect();
    // The server may close before all of it is written.
    let _ = c.write_all(&raw);
    let _ = c.shutdown(Shutdown::Write);
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all);
    let r = read_response(&mut BufReader::new(&all[..])).unwrap();
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.text());
    assert_eq!(s.post("text/csv", None, &body).status, 200);
}

#[test]
fn a_client_reading_one_byte_at_a_time_gets_it_all() {
    let s = Server::start(&[]);
    let (body, want) = rows(3000);
    let mut c = s.connect();
    c.write_all(&post_request("text/csv", None, &body)).unwrap();
    let mut all = Vec::new();
    let mut byte = [0u8; 1];
    let mut slow = TcpStream::try_clone(&c).unwrap();
    // Read until the whole response is in: parse after each byte would be
    // quadratic, so read to the end of the head, then the framed body.
    loop {
        slow.read_exact(&mut byte).unwrap();
        all.push(byte[0]);
        if all.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&all).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let chunked = head.contains("transfer-encoding: chunked");
    let mut rest = Vec::new();
    loop {
        if c.read(&mut byte).unwrap() == 0 {
            break;
        }
        rest.push(byte[0]);
        if (chunked && rest.ends_with(b"\r\n0\r\n\r\n"))
            || (!chunked && rest.len() == content_length(&head))
        {
            break;
        }
    }
    all.extend_from_slice(&rest);
    let r = read_response(&mut BufReader::new(&all[..])).unwrap();
    assert!(r.complete);
    assert_eq!(numbers(&r.body), want);
}

/// The Content-Length of a response head (lowercased).
fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap())
}
