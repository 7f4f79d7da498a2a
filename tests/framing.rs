//! `MMP_RESPONSE_FRAMING=content-length` over a real socket: every answer,
//! small, spilled to disk or an error, carries an exact `Content-Length` and
//! never `Transfer-Encoding: chunked` (SageMaker Asynchronous Inference
//! refuses a response without a length: djl-serving#2567); the bytes are
//! those of `mmp score` and of the default chunked mode; a bad record at the
//! end of a large body still gets its 400 with its position; the spill file
//! is gone in every outcome; memory stays bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::*;

const CONTENT_LENGTH: (&str, &str) = ("MMP_RESPONSE_FRAMING", "content-length");

/// A content-length server whose temporary files go to its own directory.
fn server(tmp: &Path, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![CONTENT_LENGTH, ("TMPDIR", tmp.to_str().unwrap())];
    env.extend_from_slice(extra);
    Server::start(&env)
}

/// The server's open file descriptors that point into `dir`: a spill file
/// shows as `DIR/#inode (deleted)` while it is open, and nowhere else.
fn open_in(s: &Server, dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_dir(format!("/proc/{}/fd", s.child.id()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .map(|t| t.display().to_string())
        .collect()
}

/// Names in `dir` (a spill file must never have one).
fn names_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// Assert the framing the brief and Async Inference demand.
fn assert_length_framed(r: &Response, what: &str) {
    assert_eq!(r.header("transfer-encoding"), None, "{what}: chunked");
    let len: usize = r
        .header("content-length")
        .unwrap_or_else(|| panic!("{what}: no Content-Length"))
        .parse()
        .unwrap();
    assert!(r.complete, "{what}: cut short");
    assert_eq!(len, r.body.len(), "{what}");
}

fn score(input: &Path, out: &str) -> Vec<u8> {
    let o = mmp()
        .args([
            "score",
            "--model-dir",
            model_dir().to_str().unwrap(),
            "-a",
            out,
        ])
        .arg(input)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

#[test]
fn golden_fixtures_and_bad_inputs_are_answered_with_an_exact_length() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path(), &[]);
    for input in golden_inputs() {
        let body = std::fs::read(&input).unwrap();
        for out in ["csv", "jsonl", "json"] {
            let what = format!("{input:?} as {out}");
            let r = s.post(mime(short_of(&input)), Some(mime(out)), &body);
            assert_eq!(r.status, 200, "{what}: {}", r.text());
            assert_length_framed(&r, &what);
            assert_eq!(r.header("content-type"), Some(mime(out)), "{what}");
            // The independent oracle's answer, and `mmp score`'s.
            assert_eq!(r.body, golden_expected(&input, out), "{what}");
            assert_eq!(r.body, score(&input, out), "{what}");
        }
    }
    // An empty body has an empty answer, of length 0, logged as served.
    for ct in ["text/csv", "application/jsonlines"] {
        let r = s.post(ct, None, b"");
        assert_eq!(r.status, 200, "{ct}: {}", r.text());
        assert_length_framed(&r, ct);
        assert!(r.body.is_empty());
    }
    // Every bad input: the same status, kind and message as ever, framed
    // with a length too.
    let limited = server(
        tmp.path(),
        &[
            ("MMP_MAX_RECORD_BYTES", "64"),
            ("MMP_MAX_DOCUMENT_BYTES", "10"),
        ],
    );
    for case in bad_cases() {
        let server = if case.max_record_bytes.is_some() || case.max_document_bytes.is_some() {
            &limited
        } else {
            &s
        };
        let body = std::fs::read(&case.input).unwrap();
        let r = server.post(mime(short_of(&case.input)), None, &body);
        let what = format!("{:?}", case.input);
        assert_eq!(r.status, case.status, "{what}: {}", r.text());
        assert_length_framed(&r, &what);
        assert_eq!(r.json()["error"], case.error.as_str(), "{what}");
        assert_eq!(r.json()["message"], case.message.as_str(), "{what}");
    }
    assert!(
        !s.logs().iter().any(|l| l.contains("request aborted")),
        "{:?}",
        s.logs()
    );
    // Small answers never touch the disk.
    assert_eq!(s.metric("mmp_response_spills_total"), 0.0);
    assert!(names_in(tmp.path()).is_empty());
    // Framing is counted per response, by wire framing; none was chunked.
    let text = s
        .request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .text();
    assert!(
        text.contains("mmp_invocation_responses_total{framing=\"content_length\"}"),
        "{text}"
    );
    assert!(!text.contains("framing=\"chunked\""), "{text}");
}

#[test]
fn a_large_answer_is_spilled_and_sent_whole_with_the_bytes_of_chunked_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path(), &[]);
    let chunked = Server::start(&[]);
    // About 17 MB in, 14 MB out: well over the 4 MiB held in memory.
    let body = csv_rows(0, 1_500_000);
    let input = tmp.path().join("large.csv");
    std::fs::write(&input, &body).unwrap();
    let scored = score(&input, "csv");
    std::fs::remove_file(&input).unwrap();
    assert!(scored.len() > 8 << 20);

    // Content-Length and chunked request bodies alike.
    let r = s.post("text/csv", None, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_length_framed(&r, "large, Content-Length body");
    assert!(r.body == scored, "differs from mmp score");
    let mut raw = chunked_head("text/csv", None);
    for part in body.chunks(100_003) {
        raw.extend(chunk(part));
    }
    raw.extend_from_slice(LAST_CHUNK);
    let r = s.request(&raw);
    assert_length_framed(&r, "large, chunked body");
    assert!(r.body == scored, "differs from mmp score");

    // Default mode streams the same bytes, chunked (it answers while the
    // body comes in, so send from another thread).
    let c = exchange(&chunked, post_request("text/csv", None, &body));
    assert_eq!(c.header("transfer-encoding"), Some("chunked"));
    assert!(c.body == r.body, "differs from chunked mode");
    assert_eq!(
        chunked.metric("mmp_invocation_responses_total{framing=\"chunked\"}"),
        1.0
    );
    assert_eq!(
        s.metric("mmp_invocation_responses_total{framing=\"content_length\"}"),
        2.0
    );

    // It went through a file, which is gone now and never had a name.
    assert_eq!(s.metric("mmp_response_spills_total"), 2.0);
    let spilled = s.metric("mmp_response_spill_bytes_total");
    assert_eq!(spilled, 2.0 * (scored.len() - spill_bound()) as f64);
    let line = s.wait_log("spilled_bytes=", Duration::from_secs(5));
    assert!(line.contains("framing=\"content_length\""), "{line}");
    eventually("the spill file closed", || {
        open_in(&s, tmp.path()).is_empty()
    });
    assert!(names_in(tmp.path()).is_empty());
}

/// Send `raw` from another thread while reading the response.
fn exchange(s: &Server, raw: Vec<u8>) -> Response {
    let conn = s.connect();
    let mut writer = conn.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&raw));
    let r = read_response(&mut BufReader::new(conn)).unwrap();
    sender.join().unwrap().unwrap();
    r
}

/// The README's promise: the first 4 MiB of an answer stay in memory, the
/// rest goes to the file.
fn spill_bound() -> usize {
    4 * 1024 * 1024
}

#[test]
fn a_bad_record_at_the_end_of_a_large_body_gets_400_with_its_position() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path(), &[]);
    let n = 1_000_000;
    let mut body = csv_rows(0, n);
    let byte = body.len();
    body.extend_from_slice(b"1,2\n");
    let r = s.post("text/csv", None, &body);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_length_framed(&r, "bad record");
    let v = r.json();
    assert_eq!(v["error"], "field_count");
    // Records and lines are 1-based, the byte offset 0-based (README).
    assert_eq!(
        v["message"],
        format!(
            "record {} (line {}, byte {byte}): expected 3 fields, found 2",
            n + 1,
            n + 1
        )
    );
    // The answer held so far was spilled and is gone with the error.
    assert_eq!(s.metric("mmp_response_spills_total"), 0.0);
    eventually("the spill file closed", || {
        open_in(&s, tmp.path()).is_empty()
    });
    assert!(names_in(tmp.path()).is_empty());
    // And the server still serves.
    let r = s.post("text/csv", None, b"1,2,3\n");
    assert_length_framed(&r, "after");
    assert_eq!(r.text(), "-1.75\n");
}

#[test]
fn the_spill_file_is_gone_when_the_client_leaves_mid_download() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path(), &[]);
    // About 30 MB of answer: more than loopback's socket buffers hold.
    let body = csv_rows(0, 3_000_000);
    let mut conn = s.connect();
    let mut writer = conn.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&post_request("text/csv", None, &body));
    });
    let mut first = [0u8; 4096];
    conn.read_exact(&mut first).unwrap();
    let head = String::from_utf8_lossy(&first).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: "), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    // The client stops reading: the answer waits in its file, which is
    // open but has no name.
    assert_eq!(open_in(&s, tmp.path()).len(), 1);
    assert!(names_in(tmp.path()).is_empty());
    conn.shutdown(std::net::Shutdown::Both).unwrap();
    drop(conn);
    let _ = sender.join();
    eventually("the server let go of it", || {
        open_in(&s, tmp.path()).is_empty()
            && s.metric("mmp_invocations_in_flight") == 0.0
            && s.metric("mmp_invocations_aborted_total") == 1.0
    });
    let line = s.wait_log("request aborted", Duration::from_secs(5));
    assert!(line.contains("framing=\"content_length\""), "{line}");
    assert_length_framed(&s.post("text/csv", None, b"1,2,3\n"), "after");
}

/// Send the head of a chunked upload and `csv_rows(0, n)`, leaving it open.
fn start_upload(s: &Server, n: usize) -> std::net::TcpStream {
    let mut conn = s.connect();
    let mut raw = chunked_head("text/csv", None);
    let body = csv_rows(0, n);
    for part in body.chunks(1 << 20) {
        raw.extend(chunk(part));
    }
    conn.write_all(&raw).unwrap();
    conn
}

#[test]
fn the_spill_file_is_gone_when_the_client_leaves_mid_upload_or_at_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = server(tmp.path(), &[("MMP_SHUTDOWN_GRACE_SECONDS", "1")]);
    // Enough rows for more than 4 MiB of answer, and no end to the body.
    let conn = start_upload(&s, 800_000);
    eventually("the answer spilled", || open_in(&s, tmp.path()).len() == 1);
    assert!(names_in(tmp.path()).is_empty());
    drop(conn);
    eventually("the server let go of it", || {
        open_in(&s, tmp.path()).is_empty() && s.metric("mmp_invocations_in_flight") == 0.0
    });
    let line = s.wait_log("request failed", Duration::from_secs(5));
    assert!(line.contains("reading the request body"), "{line}");

    // SIGTERM with an upload stalled past the grace period: the process
    // exits 0 and leaves nothing behind.
    let conn = start_upload(&s, 800_000);
    eventually("the answer spilled", || open_in(&s, tmp.path()).len() == 1);
    s.signal("TERM");
    assert_eq!(s.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert!(names_in(tmp.path()).is_empty());
    drop(conn);
}

/// A TMPDIR that does not exist yet (the `FROM scratch` image has no
/// `/tmp`) is made at startup, like `/tmp`, and large answers spill there.
#[test]
fn a_missing_spill_directory_is_made_at_startup() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("not").join("yet");
    let s = server(&missing, &[]);
    let line = s.wait_log("made TMPDIR", Duration::from_secs(5));
    assert!(line.contains(missing.to_str().unwrap()), "{line}");
    let mode = std::fs::metadata(&missing).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o7777,
        0o1777
    );
    let r = exchange(&s, post_request("text/csv", None, &csv_rows(0, 600_000)));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_length_framed(&r, "spilled answer");
    assert_eq!(r.text().lines().count(), 600_000);
}

#[test]
fn a_spill_directory_that_cannot_be_written_is_a_500_and_the_server_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    // Under a regular file: no folder can be made there, even by root.
    std::fs::write(tmp.path().join("file"), "").unwrap();
    let missing = tmp.path().join("file").join("gone");
    let s = server(&missing, &[]);
    let line = s.wait_log("listening", Duration::from_secs(5));
    assert!(
        line.contains("response_framing=\"content-length\""),
        "{line}"
    );
    let line = s.wait_log("cannot make TMPDIR", Duration::from_secs(5));
    assert!(line.contains("500 spill_failed"), "{line}");
    let r = exchange(&s, post_request("text/csv", None, &csv_rows(0, 600_000)));
    assert_eq!(r.status, 500, "{}", r.text());
    assert_length_framed(&r, "spill failure");
    let v = r.json();
    assert_eq!(v["error"], "spill_failed");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("creating a temporary file"), "{msg}");
    assert!(msg.contains(missing.to_str().unwrap()), "{msg}");
    // Answers that fit in memory need no file.
    let r = s.post("text/csv", None, b"1,2,3\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "-1.75\n");
}

#[test]
fn timeouts_and_the_body_cap_still_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(
        tmp.path(),
        &[
            ("MODEL_SERVER_TIMEOUT", "1"),
            ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "1"),
        ],
    );
    // A body that stalls: 408 after a second of no progress.
    let mut conn = s.connect();
    let mut raw = chunked_head("text/csv", None);
    raw.extend(chunk(b"1,2,3\n4,5"));
    conn.write_all(&raw).unwrap();
    let started = Instant::now();
    let r = read_response(&mut BufReader::new(conn)).unwrap();
    assert_eq!(r.status, 408, "{}", r.text());
    assert_length_framed(&r, "timeout");
    assert_eq!(r.json()["error"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(10));
    // A chunked body over the 1 MiB cap: 413 while it is still coming (read
    // concurrently, as the server stops reading at the cap).
    let conn = s.connect();
    let mut writer = conn.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&chunked_head("text/csv", None));
        for part in csv_rows(0, 400_000).chunks(64 * 1024) {
            if writer.write_all(&chunk(part)).is_err() {
                return;
            }
        }
        let _ = writer.write_all(LAST_CHUNK);
    });
    let r = read_response(&mut BufReader::new(conn)).unwrap();
    let _ = sender.join();
    assert_eq!(r.status, 413, "{}", r.text());
    assert_length_framed(&r, "body cap");
    assert_eq!(r.json()["error"], "body_too_large");
}

#[test]
fn memory_stays_bounded_for_a_200_mb_body() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path(), &[]);
    // One block of rows, sent 170 times: about 200 MB, streamed.
    let block = csv_rows(1_000_000, 100_000);
    let times = 170;
    let total = block.len() * times;
    let conn = s.connect();
    let mut writer = conn.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let head = format!(
            "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: {total}\r\n\r\n"
        );
        writer.write_all(head.as_bytes()).unwrap();
        for _ in 0..times {
            writer.write_all(&block).unwrap();
        }
    });
    let mut reader = BufReader::with_capacity(1 << 20, conn);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut len = None;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        assert!(!l.starts_with("transfer-encoding"), "{l}");
        if let Some(v) = l.strip_prefix("content-length: ") {
            len = Some(v.parse::<u64>().unwrap());
        }
    }
    let len = len.expect("a Content-Length");
    // Read exactly that many bytes, counting predictions.
    let (mut got, mut lines) = (0u64, 0usize);
    while got < len {
        let buf = reader.fill_buf().unwrap();
        assert!(!buf.is_empty(), "cut after {got} of {len} bytes");
        let take = buf.len().min((len - got) as usize);
        lines += buf[..take].iter().filter(|&&b| b == b'\n').count();
        got += take as u64;
        reader.consume(take);
    }
    sender.join().unwrap();
    assert_eq!(lines, 100_000 * times, "one prediction per record");
    let (peak, _) = s.memory_kib();
    eprintln!("server peak RSS {peak} KiB for a {total}-byte body, {len}-byte answer");
    assert!(peak <= 32 * 1024, "server peak RSS {peak} KiB");
    eventually("the spill file closed", || {
        open_in(&s, tmp.path()).is_empty()
    });
}
