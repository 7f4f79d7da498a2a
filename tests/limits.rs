//! Resource limits that hold under attack, each with its test: connections,
//! invocations in flight (a fast 503 with Retry-After, not a hang), header
//! size, a slowloris client, a huge line without a newline and a quoted
//! field of many lines. (The no-progress timeout and the record and
//! document caps are in serve_http.rs and the bad-input corpus.)

use std::io::{BufReader, Read, Write};
use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn invocations_over_the_in_flight_limit_get_a_fast_503() {
    let s = Server::start(&[("MMP_MAX_IN_FLIGHT", "1")]);
    // One invocation in progress: its body is still open.
    let mut a = s.connect();
    let mut raw = chunked_head("text/csv", None);
    raw.extend(chunk(b"1,2,3\n"));
    a.write_all(&raw).unwrap();
    let mut a_reader = BufReader::new(a.try_clone().unwrap());
    let mut status = [0u8; 12];
    a_reader.read_exact(&mut status).unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    // A second is refused at once.
    let started = Instant::now();
    let r = s.post("text/csv", None, b"1,2,3\n");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["error"], "overloaded");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Pings still answer.
    assert_eq!(
        s.request(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").status,
        200
    );
    // Once the first ends, the next is served.
    a.write_all(LAST_CHUNK).unwrap();
    let mut rest = Vec::new();
    while !rest.ends_with(b"0\r\n\r\n") {
        let mut b = [0u8; 1];
        a_reader.read_exact(&mut b).unwrap();
        rest.push(b[0]);
    }
    assert_eq!(s.post("text/csv", None, b"1,2,3\n").status, 200);
}

#[test]
fn connections_over_the_limit_get_a_fast_503() {
    let s = Server::start(&[("MMP_MAX_CONNECTIONS", "2")]);
    // Two keep-alive connections, each known to be served. (The readiness
    // probe's connection may still hold a permit for a moment after it
    // closed: a 503 then just means "try again".)
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.len() < 2 {
        assert!(Instant::now() < deadline, "could not hold two connections");
        let mut c = s.connect();
        c.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut r = BufReader::new(c.try_clone().unwrap());
        if read_response(&mut r).unwrap().status == 200 {
            held.push(c);
        }
    }
    let started = Instant::now();
    let r = s.request(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["error"], "overloaded");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Freeing one lets a new client in (once the server has seen the close).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s.request(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed connection was never reused"
        );
    }
}

#[test]
fn oversized_headers_get_431() {
    let s = Server::start(&[("MMP_MAX_HEADER_BYTES", "4096")]);
    let mut raw = b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 8192));
    raw.extend_from_slice(b"\r\n\r\n");
    let r = s.request(&raw);
    assert_eq!(r.status, 431);
    // Many small headers are fine.
    let mut raw = b"GET /ping HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..50 {
        raw.extend(format!("X-H{i}: v\r\n").bytes());
    }
    raw.extend_from_slice(b"\r\n");
    assert_eq!(s.request(&raw).status, 200);
}

#[test]
fn a_slowloris_client_is_cut_off_and_starves_no_one() {
    let s = Server::start(&[("MMP_HEADER_READ_TIMEOUT_SECONDS", "1")]);
    let mut slow = s.connect();
    slow.write_all(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Meanwhile others are served at once.
    for _ in 0..20 {
        assert_eq!(s.post("text/csv", None, b"1,2,3\n").text(), "-1.75\n");
    }
    // The slow one is closed once its headers are overdue: a read ends.
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closed after about a second"
    );
}

#[test]
fn a_huge_line_without_newline_is_refused_early() {
    let s = Server::start(&[("MMP_MAX_RECORD_BYTES", "65536")]);
    let mut conn = s.connect();
    conn.set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    conn.write_all(&chunked_head("text/csv", None)).unwrap();
    // Up to 2 GB of one line; the server answers 413 long before.
    let block = chunk(&vec![b'7'; 1 << 20]);
    let mut sent = 0usize;
    while sent < 2 << 30 {
        if conn.write_all(&block).is_err() {
            break;
        }
        sent += block.len();
        // Stop as soon as the answer is there.
        conn.set_nonblocking(true).unwrap();
        let mut peek = [0u8; 1];
        let answered = matches!(conn.peek(&mut peek), Ok(n) if n > 0);
        conn.set_nonblocking(false).unwrap();
        if answered {
            break;
        }
    }
    assert!(sent < 64 << 20, "the server kept reading: {sent} bytes");
    let r = read_response(&mut BufReader::new(conn)).unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"], "record_too_large");
    let (peak, _) = s.memory_kib();
    assert!(peak < 64 * 1024, "server peak RSS {peak} KiB");
}

#[test]
fn a_quoted_field_of_many_lines_is_refused_in_bounded_memory() {
    // 100 MB of short lines inside one quoted field: one record far over
    // the 64 KiB limit, whose newlines are not record ends. The server
    // reads it through (its end is at the end) holding no more than a
    // range and a record of it. (The answer is held whole, so the error
    // comes as a status, not as a stream cut after the first prediction.)
    let s = Server::start(&[
        ("MMP_MAX_RECORD_BYTES", "65536"),
        ("MMP_RESPONSE_FRAMING", "content-length"),
    ]);
    let mut body = b"1,2,3\n\"".to_vec();
    body.extend(b"a\n".iter().copied().cycle().take(100 << 20));
    body.extend_from_slice(b"\",2,3\n4,5,6\n");
    let r = s.post("text/csv", None, &body);
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"], "record_too_large");
    let message = r.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(
        message.starts_with("record 2 (line 2, byte 6): "),
        "{message}"
    );
    let (peak, _) = s.memory_kib();
    assert!(peak < 64 * 1024, "server peak RSS {peak} KiB");
}

/// A connection whose receive buffer is a few KiB, as a client that reads
/// nothing holds: the server's writes stall as soon as its own send buffer
/// is full.
fn connect_small_window(s: &Server) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let conn = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(s.addr).await.unwrap().into_std().unwrap()
    });
    conn.set_nonblocking(false).unwrap();
    conn
}

/// A client that sends a large request and never reads the answer holds
/// its `/invocations` slot only for `MODEL_SERVER_TIMEOUT` (README,
/// Security and limits: no progress on a request ends it), in either
/// framing; then the request is logged and counted as `client_not_reading`
/// and the next one is served. It used to hold the slot for as long as the
/// client kept the connection open: the timer lived in the response body,
/// which hyper polls only when the socket takes bytes.
#[test]
fn a_client_that_reads_none_of_its_answer_frees_its_slot_after_the_timeout() {
    // About 12 MB of answer: far more than the socket buffers hold (the
    // server's stalls at about 5 MB).
    let body = post_request("text/csv", None, &csv_rows(0, 2_000_000));
    for framing in ["chunked", "content-length"] {
        let s = Server::start(&[
            ("MODEL_SERVER_TIMEOUT", "1"),
            ("MMP_MAX_IN_FLIGHT", "1"),
            ("MMP_RESPONSE_FRAMING", framing),
        ]);
        let conn = connect_small_window(&s);
        let mut writer = conn.try_clone().unwrap();
        let body = body.clone();
        // Blocks once the server stops reading; fails once it hangs up.
        let sender = std::thread::spawn(move || {
            let _ = writer.write_all(&body);
        });
        eventually("the request holds the slot", || {
            s.metric("mmp_invocations_in_flight") == 1.0
        });
        let mut refused = 0;
        eventually("the slot is free again", || {
            let r = s.post("text/csv", None, b"1,2,3\n");
            refused += usize::from(r.status == 503);
            r.status == 200
        });
        assert!(refused > 0, "{framing}: the slot was never held");
        let line = s.wait_log("client_not_reading", Duration::from_secs(5));
        assert!(line.contains("read none of the response for 1 s"), "{line}");
        assert_eq!(
            s.metric("mmp_errors_total{kind=\"client_not_reading\"}"),
            1.0,
            "{framing}"
        );
        assert_eq!(s.metric("mmp_invocations_aborted_total"), 1.0);
        sender.join().unwrap();
        drop(conn);
    }
}
