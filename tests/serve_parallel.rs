//! `mmp serve` scoring a large body in ranges on every core
//! (src/serve/stage.rs): the answer is the sequential path's byte for byte
//! (that server's default threshold keeps these bodies inline), a bad record
//! deep in the body is reported with the same status, message and positions,
//! and a client that stops reading still stops the server reading; a
//! chunked body goes over to ranges past the threshold with the same
//! answers. Small `MMP_RANGE_BYTES` cut the ranges at many offsets.

use std::io::Write;
use std::time::Duration;

use crate::util::*;

/// A server that scores every body in ranges of at most `range` bytes.
fn in_ranges(range: &str, env: &[(&str, &str)]) -> Server {
    let mut all = vec![("MMP_PARALLEL_FROM", "1"), ("MMP_RANGE_BYTES", range)];
    all.extend_from_slice(env);
    Server::start(&all)
}

/// `csv`'s records as JSON lines: arrays, and objects with their features.
fn as_json_lines(csv: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(csv);
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.unwrap();
        let x: Vec<f64> = rec.iter().map(|f| f.trim().parse().unwrap()).collect();
        let line = if i % 3 == 0 {
            serde_json::json!({"features": x, "id": format!("r{i}\n")})
        } else {
            serde_json::json!(x)
        };
        writeln!(out, "{line}").unwrap();
    }
    out
}

#[test]
fn a_large_body_in_ranges_is_the_sequential_answer_byte_for_byte() {
    // Quoted fields holding newlines, CRLF and LF endings.
    let (csv, preds, _) = big_csv(3000, |_| false);
    let jsonl = as_json_lines(&csv);
    let inline = Server::start(&[]);
    let bodies = [("text/csv", &csv), ("application/jsonlines", &jsonl)];
    let accepts = ["text/csv", "application/jsonlines"];
    // And against an independent reference: the model's formula.
    let got: Vec<f64> = inline
        .post("text/csv", None, &csv)
        .text()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(got == preds.iter().map(|p| p.unwrap()).collect::<Vec<_>>());
    for range in ["1", "7", "4096"] {
        let par = in_ranges(range, &[]);
        for (ct, body) in bodies {
            for accept in accepts {
                let want = inline.post(ct, Some(accept), body);
                let got = par.post(ct, Some(accept), body);
                assert_eq!(want.status, 200, "{}", want.text());
                assert_eq!(
                    (got.status, got.complete),
                    (200, true),
                    "{ct} to {accept}, ranges of {range}"
                );
                assert!(
                    got.body == want.body,
                    "{ct} to {accept}, ranges of {range}: the answers differ"
                );
            }
        }
    }
}

#[test]
fn a_bad_record_deep_in_a_large_body_is_reported_as_the_sequential_path_does() {
    // Enough output before the bad record that a streamed answer commits
    // its 200 first.
    let (csv, _, starts) = big_csv(20_000, |i| i == 15_000 || i == 17_003);
    let (line, byte) = starts[15_000];
    let at = format!("record 15001 (line {line}, byte {byte})");

    // `content-length` framing: the exact status and error.
    let framing = [("MMP_RESPONSE_FRAMING", "content-length")];
    let want = Server::start(&framing).post("text/csv", None, &csv);
    let got = in_ranges("4096", &framing).post("text/csv", None, &csv);
    assert_eq!(want.status, 400, "{}", want.text());
    assert!(want.text().contains(&at), "{at}: {}", want.text());
    assert_eq!((got.status, got.json()), (want.status, want.json()));

    // Streamed: predictions before the bad record, then a cut, and the same
    // error in the log line.
    let inline = Server::start(&[]);
    let par = in_ranges("4096", &[]);
    // The inline server gets the body in chunks of 4 KiB, so its output
    // reaches the commit before the bad record does (a body read in one
    // piece is decoded to its error before any commit: a 400).
    let want = inline.request(&chunked_request("text/csv", &csv, 4096));
    let got = par.post("text/csv", None, &csv);
    assert_eq!((want.status, want.complete), (200, false));
    assert_eq!((got.status, got.complete), (200, false));
    // Both send what they had flushed when they met the bad record (the
    // output held since is dropped with the connection, as it always is):
    // a prefix of the predictions before it, at a record's end.
    let (before, _, _) = big_csv(15_000, |_| false);
    let before = inline.post("text/csv", None, &before).body;
    for r in [&want, &got] {
        assert!(r.body.len() >= 64 << 10, "{} bytes sent", r.body.len());
        assert!(
            before.starts_with(&r.body) && r.body.ends_with(b"\n"),
            "not the predictions before the bad record"
        );
    }
    for s in [&inline, &par] {
        let log = s.wait_log("request failed", Duration::from_secs(10));
        assert!(log.contains(&at), "{at}: {log}");
    }

    // `placeholder`: every record answered, the bad ones with their own
    // positions.
    let policy = [("MMP_ON_ERROR", "placeholder")];
    let want = Server::start(&policy).post("text/csv", None, &csv);
    let par = in_ranges("4096", &policy);
    let got = par.post("text/csv", None, &csv);
    assert_eq!((want.status, want.complete), (200, true));
    assert!(want.text().contains(&at), "{at}");
    assert_eq!((got.status, got.complete), (200, true));
    assert!(got.body == want.body, "the placeholder answers differ");
    // Each bad record is warned of once, at its own position. Lines come in
    // the order they were written, so once the last one is in, so is any
    // other about them.
    let (line, byte) = starts[17_003];
    let last = format!("record 17004 (line {line}, byte {byte})");
    par.wait_log(&last, Duration::from_secs(10));
    let warned: Vec<String> = par
        .logs()
        .into_iter()
        .filter(|l| l.contains("replaced by a placeholder"))
        .collect();
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(
        warned[0].contains(&at) && warned[1].contains(&last),
        "{warned:?}"
    );
}

#[test]
fn a_client_that_stops_reading_stops_a_large_body_being_read() {
    // A Content-Length far over the default threshold, so the body runs in
    // ranges with the default range size and slots.
    let s = Server::start(&[]);
    let total = 4u64 << 30;
    let head = format!(
        "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: {total}\r\n\r\n"
    );
    // Its ranges stay out while the answer is not read.
    assert_stops_reading(&s, head.as_bytes(), &csv_rows(0, 20_000), total - 1);
    assert_eq!(s.post("text/csv", None, b"1,2,3\n").text(), "-1.75\n");
}

#[test]
fn a_record_far_over_the_limit_in_a_large_body_is_reported_as_the_sequential_path_does() {
    // A line of 300 KB under a 1 KiB limit (the splitter keeps only the
    // limit's worth of it), then a bad record whose position counts every
    // byte of that line.
    let mut body = csv_rows(0, 2000);
    body.extend(std::iter::repeat_n(b'1', 300_000));
    body.push(b'\n');
    body.extend_from_slice(&csv_rows(0, 2000));
    body.extend_from_slice(b"1,x,3\n");
    body.extend_from_slice(&csv_rows(0, 100));
    for policy in ["fail", "placeholder"] {
        let want = answered_alike_under_a_1_kib_limit(&body, policy);
        assert!(
            want.text().contains("record 2001"),
            "{policy}: {}",
            want.text()
        );
    }
}

/// `body`'s answer under a 1 KiB record limit and `policy`, held whole:
/// the same in ranges of 4 KiB as inline.
fn answered_alike_under_a_1_kib_limit(body: &[u8], policy: &str) -> Response {
    let env = [
        ("MMP_MAX_RECORD_BYTES", "1024"),
        ("MMP_ON_ERROR", policy),
        ("MMP_RESPONSE_FRAMING", "content-length"),
    ];
    let want = Server::start(&env).post("text/csv", None, body);
    let got = in_ranges("4096", &env).post("text/csv", None, body);
    assert_eq!(
        (got.status, got.complete),
        (want.status, want.complete),
        "{policy}"
    );
    assert!(got.body == want.body, "{policy}: the answers differ");
    want
}

#[test]
fn a_quoted_record_of_many_lines_over_the_limit_is_reported_as_the_sequential_path_does() {
    // A quoted field of 200,000 lines (400 KB) under a 1 KiB limit: its
    // record is too large at its start, and the bad record after it is
    // counted past every one of its bytes and lines.
    let mut body = csv_rows(0, 2000);
    let quoted_at = body.len();
    body.extend_from_slice(b"1,\"");
    for _ in 0..200_000 {
        body.extend_from_slice(b"a\n");
    }
    body.extend_from_slice(b"\",2,3\n");
    body.extend_from_slice(&csv_rows(0, 2000));
    let bad_at = body.len();
    body.extend_from_slice(b"1,x,3\n");
    body.extend_from_slice(&csv_rows(0, 100));
    let quoted = format!("record 2001 (line 2001, byte {quoted_at})");
    let bad = format!("record 4002 (line 204002, byte {bad_at})");
    for policy in ["fail", "placeholder"] {
        let text = answered_alike_under_a_1_kib_limit(&body, policy).text();
        assert!(text.contains(&quoted), "{policy}: {text}");
        assert!(
            text.contains("larger than the 1024-byte limit"),
            "{policy}: {text}"
        );
        if policy == "placeholder" {
            assert!(text.contains(&bad), "{policy}: {text}");
            assert_eq!(text.lines().count(), 4102, "one answer per record");
        }
    }
}

#[test]
fn a_chunked_body_goes_over_to_ranges_past_the_threshold_with_the_sequential_answer() {
    // A bad record far past the handover, whose position counts every
    // byte and line before it, inline ones included.
    let (csv, _, starts) = big_csv(20_000, |i| i == 15_000);
    let (line, byte) = starts[15_000];
    let at = format!("record 15001 (line {line}, byte {byte})");
    let small = csv_rows(0, 100);
    let expensive = delayed_model(0);
    let in_ranges_total = "mmp_invocations_in_ranges_total";
    for policy in ["fail", "placeholder"] {
        let env = [
            ("MMP_ON_ERROR", policy),
            ("MMP_RESPONSE_FRAMING", "content-length"),
            ("MMP_COMPUTE_THREADS", "2"),
        ];
        // Its default threshold keeps these bodies inline.
        let inline = Server::start(&env);
        let mut handing = env.to_vec();
        handing.extend([("MMP_PARALLEL_FROM", "65536"), ("MMP_RANGE_BYTES", "4096")]);
        let par = Server::start(&handing);
        // An expensive model (no delay: it only says so) scores the head
        // on the pool, then hands over the same way.
        let pooled = Server::start_with(
            &handing,
            &["--model-dir", expensive.path().to_str().unwrap()],
        );
        for piece in [1000, 70_000] {
            let want = inline.request(&chunked_request("text/csv", &csv, piece));
            assert!(want.text().contains(&at), "{policy}: {}", want.text());
            for (head, server) in [("inline", &par), ("on the pool", &pooled)] {
                let got = server.request(&chunked_request("text/csv", &csv, piece));
                assert_eq!(
                    (got.status, got.complete),
                    (want.status, want.complete),
                    "{policy}, head {head}, chunks of {piece}"
                );
                assert!(
                    got.body == want.body,
                    "{policy}, head {head}, chunks of {piece}: the answers differ"
                );
            }
        }
        assert_eq!(pooled.metric(in_ranges_total), 2.0, "{policy}");
        assert_eq!(par.metric(in_ranges_total), 2.0, "{policy}");
        assert_eq!(inline.metric(in_ranges_total), 0.0, "{policy}");
        // A chunked body under the threshold stays inline.
        let want = inline.request(&chunked_request("text/csv", &small, 1000));
        let got = par.request(&chunked_request("text/csv", &small, 1000));
        assert_eq!((got.status, &got.body), (200, &want.body), "{policy}");
        assert_eq!(par.metric(in_ranges_total), 2.0, "{policy}");
    }
}
