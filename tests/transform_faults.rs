//! `mmp transform` against a deliberately faulty container
//! (tests/transform_fake): retries, timeouts, record counts, no partial
//! `.out`, exit codes, the execution-parameters precedence, concurrency and
//! mini-batch sizes as the container sees them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::transform_fake::{echo, Fake, Reply, Seen};
use crate::util::tree;

/// A run of the binary: exit code, stderr, and the output folder.
struct Run {
    code: i32,
    stderr: String,
    out: PathBuf,
}

impl Run {
    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.out.join(rel)).ok()
    }

    /// Every file left in the output folder, recursively, by relative path.
    fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut v = Vec::new();
        walk(&self.out, &self.out, &mut v);
        v.sort();
        v
    }
}

/// `mmp transform --endpoint URL --input INPUT --output <tmp> ARGS`.
fn transform(url: &str, input: &Path, args: &[&str]) -> Run {
    let out = tempfile::tempdir().unwrap().keep();
    let o = Command::new(env!("CARGO_BIN_EXE_mmp"))
        .args(["transform", "--endpoint", url, "--input"])
        .arg(input)
        .arg("--output")
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        out,
    }
}

const GOOD: &str = "1,2\n3,4\n";
const BAD: &str = "bad,1\nbad,2\n";

fn is_bad(req: &Seen) -> bool {
    String::from_utf8_lossy(&req.body).contains("bad")
}

#[test]
fn a_failed_request_is_retried_and_then_succeeds() {
    let fake = Fake::start(None, |req, n| match n {
        0 => Reply::Status(500, b"{\"error\":\"model_error\"}".to_vec()),
        1 => Reply::Drop,
        _ => echo(req),
    });
    let input = tree(&[("a.csv", GOOD)]);
    let run = transform(&fake.url(), input.path(), &["--split-type", "Line"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.read("a.csv.out").unwrap(), GOOD);
    assert_eq!(fake.invocations().len(), 3);
}

/// Each fault, on every attempt, for the file holding "bad": the file fails
/// after 1 + --max-retries attempts, leaves nothing behind, and the other
/// file is written.
#[test]
fn each_fault_fails_only_its_file_after_the_retries() {
    let faults: Vec<(&str, Reply, i32, &str)> =
        vec![
        (
            "status",
            Reply::Status(503, b"{\"error\":\"busy\"}".to_vec()),
            69,
            "HTTP 503 from the container: {\"error\":\"busy\"}",
        ),
        (
            "dropped connection",
            Reply::Drop,
            69,
            "connection failed: the connection closed before the response was complete",
        ),
        (
            "cut chunked response",
            Reply::Cut(b"bad,1\n".to_vec()),
            69,
            "(cut response)",
        ),
        (
            "client error",
            Reply::Status(400, b"{\"error\":\"not_a_number\",\"message\":\"record 1\"}".to_vec()),
            65,
            "HTTP 400 from the container: {\"error\":\"not_a_number\",\"message\":\"record 1\"}",
        ),
    ];
    let input = tree(&[("good.csv", GOOD), ("sub/bad.csv", BAD)]);
    for (name, fault, code, message) in faults {
        let fake = Fake::start(None, move |req, _| {
            if is_bad(req) {
                fault.clone()
            } else {
                echo(req)
            }
        });
        let run = transform(
            &fake.url(),
            input.path(),
            &["--split-type", "Line", "--max-retries", "2"],
        );
        assert_eq!(run.code, code, "{name}: {}", run.stderr);
        let attempts = fake.invocations().iter().filter(|r| is_bad(r)).count();
        assert_eq!(attempts, 3, "{name}: 1 + --max-retries 2 attempts");
        assert_eq!(run.files(), ["good.csv.out"], "{name}: no partial output");
        assert_eq!(run.read("good.csv.out").unwrap(), GOOD);
        assert!(
            run.stderr
                .contains("mmp transform: 2 files: 1 succeeded, 1 failed; 2 records"),
            "{name}: {}",
            run.stderr
        );
        let line = run
            .stderr
            .lines()
            .find(|l| l.starts_with("  failed sub/bad.csv: mini-batch 1 (records 1-2, from line 1): failed after 3 attempts (1 + --max-retries 2); last error: "))
            .unwrap_or_else(|| panic!("{name}: {}", run.stderr));
        assert!(line.contains(message), "{name}: {line}");
    }
}

/// Record counts are the service's business only to join: a response with
/// fewer lines than records is written as it came, but to join it is a
/// failed attempt, retried, then fatal to its file.
#[test]
fn a_wrong_record_count_fails_only_a_join() {
    let input = tree(&[("good.csv", GOOD), ("sub/bad.csv", BAD)]);
    let short = |req: &Seen| {
        if is_bad(req) {
            Reply::Ok(b"bad,1\n".to_vec())
        } else {
            echo(req)
        }
    };
    let fake = Fake::start(None, move |req, _| short(req));
    let run = transform(&fake.url(), input.path(), &["--split-type", "Line"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.read("sub/bad.csv.out").unwrap(), "bad,1\n");
    assert_eq!(fake.invocations().len(), 2);

    let fake = Fake::start(None, move |req, _| short(req));
    let join = [
        "--split-type",
        "Line",
        "--max-retries",
        "2",
        "--content-type",
        "csv",
        "--join-source",
        "Input",
        "--assemble-with",
        "Line",
    ];
    let run = transform(&fake.url(), input.path(), &join);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert_eq!(fake.invocations().iter().filter(|r| is_bad(r)).count(), 3);
    assert_eq!(run.files(), ["good.csv.out"]);
    assert_eq!(run.read("good.csv.out").unwrap(), "1,2,1,2\n3,4,3,4\n");
    assert!(
        run.stderr.contains("failed sub/bad.csv: mini-batch 1 (records 1-2, from line 1): failed after 3 attempts (1 + --max-retries 2); last error: the response has 1 lines for 2 records"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_slow_answer_times_out_and_is_retried() {
    let fake = Fake::start(
        None,
        |req, _| if is_bad(req) { Reply::Hang } else { echo(req) },
    );
    let input = tree(&[("bad.csv", BAD), ("good.csv", GOOD)]);
    let t0 = Instant::now();
    let run = transform(
        &fake.url(),
        input.path(),
        &[
            "--split-type",
            "Line",
            "--timeout",
            "0.3",
            "--max-retries",
            "1",
            "--max-concurrent",
            "2",
        ],
    );
    let took = t0.elapsed();
    assert_eq!(run.code, 69, "{}", run.stderr);
    assert!(
        run.stderr.contains("failed bad.csv: mini-batch 1 (records 1-2, from line 1): failed after 2 attempts (1 + --max-retries 1); last error: no complete response within 0.3 s (--timeout, InvocationsTimeoutInSeconds)"),
        "{}",
        run.stderr
    );
    assert_eq!(fake.invocations().iter().filter(|r| is_bad(r)).count(), 2);
    assert_eq!(run.files(), ["good.csv.out"]);
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// A file whose third mini-batch fails: the first two were already written
/// to the temporary file, which goes; no `.out` appears.
#[test]
fn a_failure_late_in_a_file_leaves_no_partial_output() {
    let row = "1.000000,2.000000,3.000000,4.000000\n"; // 36 bytes
    let text = row.repeat(100_000); // 3.6 MB: four 1 MiB mini-batches
    let fake = Fake::start(None, |req, n| {
        if n == 2 {
            Reply::Status(400, b"{\"error\":\"x\"}".to_vec())
        } else {
            echo(req)
        }
    });
    let input = tree(&[("big.csv", &text)]);
    let run = transform(
        &fake.url(),
        input.path(),
        &[
            "--split-type",
            "Line",
            "--max-payload-mb",
            "1",
            "--max-retries",
            "0",
        ],
    );
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.files().is_empty(), "{:?}", run.files());
    let per_batch = (1 << 20) / 36;
    assert!(
        run.stderr.contains(&format!(
            "failed big.csv: mini-batch 3 (records {}-{}, from line {}): HTTP 400",
            2 * per_batch + 1,
            3 * per_batch,
            2 * per_batch + 1
        )),
        "{}",
        run.stderr
    );
}

/// Exact packing: every body within MaxPayloadInMB, the next record would
/// not have fit, and the records arrive once each, in order.
#[test]
fn mini_batches_are_packed_exactly_within_the_payload_limit() {
    let mut text = String::new();
    let mut i = 0u64;
    while text.len() < 2_600_000 {
        // Lines of 1 to 400 bytes, deterministic.
        i += 1;
        let len = (i * 7919 % 400) as usize;
        text.push_str(&format!("{i},{}\n", "x".repeat(len)));
    }
    let fake = Fake::start(None, |req, _| echo(req));
    let input = tree(&[("a.csv", &text)]);
    let run = transform(
        &fake.url(),
        input.path(),
        &[
            "--split-type",
            "Line",
            "--max-payload-mb",
            "1",
            "--assemble-with",
            "Line",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let limit = 1 << 20;
    let bodies: Vec<Vec<u8>> = fake.invocations().into_iter().map(|s| s.body).collect();
    assert!(bodies.len() >= 3);
    let mut rest = text.as_bytes();
    for (k, body) in bodies.iter().enumerate() {
        assert!(body.len() <= limit, "body {k}: {} bytes", body.len());
        assert!(
            rest.starts_with(body),
            "body {k} is not the next span of the file"
        );
        rest = &rest[body.len()..];
        if !rest.is_empty() {
            let next = rest.iter().position(|b| *b == b'\n').unwrap() + 1;
            assert!(
                body.len() + next > limit,
                "body {k} left room for the next record"
            );
        }
    }
    assert!(rest.is_empty());
    assert_eq!(run.read("a.csv.out").unwrap(), text);
}

#[test]
fn a_record_over_the_limit_fails_its_file_and_is_never_sent() {
    let huge = format!("1,{}\n", "9".repeat(1 << 20));
    let fake = Fake::start(None, |req, _| echo(req));
    let input = tree(&[("a.csv", &format!("1,2\n{huge}3,4\n")), ("b.csv", GOOD)]);
    let run = transform(
        &fake.url(),
        input.path(),
        &["--split-type", "Line", "--max-payload-mb", "1"],
    );
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr.contains("failed a.csv: record 2 (line 2, byte 4) is larger than MaxPayloadInMB=1 (1048576 bytes): no mini-batch can carry it"),
        "{}",
        run.stderr
    );
    assert_eq!(run.files(), ["b.csv.out"]);
    for s in fake.invocations() {
        assert!(!s.body.is_empty(), "an empty body was sent");
        assert!(s.body.len() < 1 << 20);
    }
}

#[test]
fn payload_zero_streams_each_file_in_one_chunked_request() {
    let fake = Fake::start(None, |req, _| {
        Reply::Chunked(match echo(req) {
            Reply::Ok(b) => b,
            _ => unreachable!(),
        })
    });
    let big = "5,6\n".repeat(300_000);
    let input = tree(&[("a.csv", GOOD), ("b/c.csv", &big)]);
    let run = transform(
        &fake.url(),
        input.path(),
        &[
            "--split-type",
            "Line",
            "--max-payload-mb",
            "0",
            "--max-concurrent",
            "1",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let inv = fake.invocations();
    assert_eq!(inv.len(), 2);
    assert!(inv
        .iter()
        .all(|s| s.chunked && s.header("content-length").is_none()));
    assert_eq!(inv[0].body, GOOD.as_bytes());
    assert_eq!(inv[1].body.len(), big.len());
    assert_eq!(run.read("b/c.csv.out").unwrap(), big);
}

/// Command line, then the container's /execution-parameters (both
/// spellings of the strategy), then SageMaker's defaults.
#[test]
fn execution_parameters_precedence() {
    let input = tree(&[("a.csv", "1\n2\n3\n4\n")]);
    let params =
        r#"{"MaxConcurrentTransforms": 3, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 1}"#;
    let fake = Fake::start(Some(params), |req, _| echo(req));
    let run = transform(&fake.url(), input.path(), &["--split-type", "Line"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("BatchStrategy=SingleRecord (container), MaxPayloadInMB=1 (container), MaxConcurrentTransforms=3 (container)"), "{}", run.stderr);
    assert_eq!(fake.invocations().len(), 4, "one record per request");
    let gets = fake
        .seen()
        .iter()
        .filter(|s| s.path == "/execution-parameters")
        .count();
    assert_eq!(gets, 1);

    let fake = Fake::start(Some(params), |req, _| echo(req));
    let run = transform(
        &fake.url(),
        input.path(),
        &[
            "--split-type",
            "Line",
            "--batch-strategy",
            "MultiRecord",
            "--max-concurrent",
            "1",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("BatchStrategy=MultiRecord (command line), MaxPayloadInMB=1 (container), MaxConcurrentTransforms=1 (command line)"), "{}", run.stderr);
    assert_eq!(fake.invocations().len(), 1);

    let fake = Fake::start(Some(r#"{"BatchStrategy": "SingleRecord"}"#), |req, _| {
        echo(req)
    });
    let run = transform(&fake.url(), input.path(), &["--split-type", "Line"]);
    assert!(run.stderr.contains("BatchStrategy=SingleRecord (container), MaxPayloadInMB=6 (default), MaxConcurrentTransforms=1 (default)"), "{}", run.stderr);

    let fake = Fake::start(None, |req, _| echo(req));
    let run = transform(&fake.url(), input.path(), &["--split-type", "Line"]);
    assert!(
        run.stderr
            .contains("GET /execution-parameters answered 404: SageMaker's defaults apply"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("BatchStrategy=MultiRecord (default), MaxPayloadInMB=6 (default), MaxConcurrentTransforms=1 (default)"), "{}", run.stderr);
    assert_eq!(fake.invocations().len(), 1);
}

/// MaxConcurrentTransforms requests in flight, never more, and the output
/// still in input order. The first three requests are each held until all
/// three have arrived, which only three requests in flight allow (bounded,
/// so a regression fails instead of hanging).
#[test]
fn requests_run_concurrently_up_to_the_limit_in_order() {
    let gate = Arc::new((Mutex::new(0usize), Condvar::new()));
    let g = gate.clone();
    let fake = Fake::start(None, move |req, n| {
        let (count, cv) = &*g;
        *count.lock().unwrap() += 1;
        cv.notify_all();
        if n < 3 {
            let guard = count.lock().unwrap();
            let _ = cv
                .wait_timeout_while(guard, Duration::from_secs(10), |c| *c < 3)
                .unwrap();
        }
        echo(req)
    });
    let text: String = (0..30).map(|i| format!("{i}\n")).collect();
    let input = tree(&[("a.csv", &text)]);
    let run = transform(
        &fake.url(),
        input.path(),
        &[
            "--split-type",
            "Line",
            "--batch-strategy",
            "SingleRecord",
            "--max-concurrent",
            "3",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(fake.max_in_flight(), 3);
    assert_eq!(run.read("a.csv.out").unwrap(), text);
}

#[test]
fn waits_for_ping_and_fails_when_nothing_answers() {
    let fake = Fake::start_with(3, None, |req, _| echo(req));
    let input = tree(&[("a.csv", GOOD)]);
    let run = transform(&fake.url(), input.path(), &["--split-type", "Line"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let pings = fake.seen().iter().filter(|s| s.path == "/ping").count();
    assert_eq!(pings, 4);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = transform(
        &format!("http://127.0.0.1:{port}"),
        input.path(),
        &["--ping-timeout", "0.2"],
    );
    assert_eq!(run.code, 69, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!("mmp transform: endpoint http://127.0.0.1:{port} is not available: GET /ping: connection failed: connecting to 127.0.0.1:{port}")),
        "{}",
        run.stderr
    );
}

/// A streamed request (MaxPayloadInMB=0) cut after part of its answer is
/// sent again whole; the output holds the second answer once, joined with
/// the original records as it streams back.
#[test]
fn a_streamed_request_is_retried_from_the_start_and_joined() {
    let fake = Fake::start(None, |req, n| {
        if n == 0 {
            let Reply::Ok(body) = echo(req) else {
                unreachable!()
            };
            Reply::Cut(body[..body.len() / 2].to_vec())
        } else {
            echo(req)
        }
    });
    let text: String = (0..5000)
        .map(|i| format!("{{\"id\":{i},\"f\":[{i},1]}}\n"))
        .collect();
    let input = tree(&[("a.jsonl", &text)]);
    let run = transform(
        &fake.url(),
        input.path(),
        &[
            "--content-type",
            "application/jsonlines",
            "--split-type",
            "Line",
            "--max-payload-mb",
            "0",
            "--input-filter",
            "$.f",
            "--join-source",
            "Input",
            "--assemble-with",
            "Line",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let inv = fake.invocations();
    assert_eq!(inv.len(), 2);
    assert!(inv[1].chunked);
    assert_eq!(inv[1].records()[3], "[3,1]");
    let want: String = (0..5000)
        .map(|i| format!("{{\"id\":{i},\"f\":[{i},1],\"SageMakerOutput\":[{i},1]}}\n"))
        .collect();
    assert_eq!(run.read("a.jsonl.out").unwrap(), want);
}

/// `transform`, killed if it has not ended within `limit` (a hang is a
/// failure, not a test that never ends).
fn transform_within(url: &str, input: &Path, args: &[&str], limit: Duration) -> Run {
    let out = tempfile::tempdir().unwrap().keep();
    let child = Command::new(env!("CARGO_BIN_EXE_mmp"))
        .args(["transform", "--endpoint", url, "--input"])
        .arg(input)
        .arg("--output")
        .arg(&out)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let o = match rx.recv_timeout(limit) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on our own child, which has not been reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("mmp transform {args:?} still running after {limit:?}");
        }
    };
    Run {
        code: o.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        out,
    }
}

/// A streamed request (MaxPayloadInMB=0) to a container that stops
/// reading its body fails like any other request, and is retried: when no
/// answer comes within `--timeout`, or when an error answer came at once
/// (a 413 from a proxy's body limit, the connection left open). The file is
/// far larger than the socket buffers, so the body's sender is left waiting
/// on a container that never reads.
#[test]
fn a_streamed_body_the_container_stops_reading_still_fails_in_time() {
    let row = "1.000000,2.000000,3.000000,4.000000\n";
    let input = tree(&[("big.csv", &row.repeat(24 << 20 >> 5))]);
    let cases = [
        (
            Reply::Hang,
            69,
            "no complete response within 0.5 s (--timeout, InvocationsTimeoutInSeconds)",
        ),
        (
            Reply::Status(413, b"too large".to_vec()),
            65,
            "HTTP 413 from the container: too large",
        ),
    ];
    for (reply, code, last) in cases {
        let fake = Fake::not_reading(move |_, _| reply.clone());
        let args = [
            "--split-type",
            "Line",
            "--max-payload-mb",
            "0",
            "--timeout",
            "0.5",
            "--max-retries",
            "1",
        ];
        let run = transform_within(&fake.url(), input.path(), &args, Duration::from_secs(30));
        assert_eq!(run.code, code, "{}", run.stderr);
        let want = format!(
            "failed big.csv: failed after 2 attempts (1 + --max-retries 1); last error: {last}"
        );
        assert!(run.stderr.contains(&want), "{want}\n{}", run.stderr);
        assert_eq!(fake.invocations().len(), 2);
        assert!(run.files().is_empty(), "{:?}", run.files());
    }
}

/// A blank line inside a mini-batch is not a record: when joining it is
/// not sent, so a container answering one line per line it gets pairs
/// each answer with its record.
#[test]
fn a_blank_line_inside_a_batch_does_not_shift_a_join() {
    // In mini-batches, and streamed whole.
    for mb in ["6", "0"] {
        let fake = Fake::start(None, |req, _| Reply::Ok(req.body.clone()));
        let input = tree(&[("blank.csv", "1,2\n\n3,4\n")]);
        let run = transform(
            &fake.url(),
            input.path(),
            &[
                "--content-type",
                "text/csv",
                "--split-type",
                "Line",
                "--assemble-with",
                "Line",
                "--join-source",
                "Input",
                "--max-retries",
                "0",
                "--max-payload-mb",
                mb,
            ],
        );
        assert_eq!(run.code, 0, "{mb}: {}", run.stderr);
        assert_eq!(fake.invocations()[0].body, b"1,2\n3,4\n", "{mb}");
        assert_eq!(run.read("blank.csv.out").unwrap(), "1,2,1,2\n3,4,3,4\n");
    }
}

/// `MaxConcurrentTransforms × MaxPayloadInMB ≤ 100` holds for the settled
/// values, the container's included: such a job is refused as a bad
/// setting before any request.
#[test]
fn the_concurrency_payload_product_is_checked_wherever_the_values_come_from() {
    let input = tree(&[("a.csv", "1\n2\n")]);
    let params = r#"{"MaxConcurrentTransforms": 8, "MaxPayloadInMB": 20}"#;
    for (args, want) in [
        (
            &[][..],
            "MaxConcurrentTransforms (8, container) × MaxPayloadInMB (20, container) must not exceed 100 MB",
        ),
        (
            &["--max-payload-mb", "50"][..],
            "MaxConcurrentTransforms (8, container) × MaxPayloadInMB (50, command line) must not exceed 100 MB",
        ),
    ] {
        let fake = Fake::start(Some(params), |req, _| echo(req));
        let mut all = vec!["--split-type", "Line"];
        all.extend_from_slice(args);
        let run = transform(&fake.url(), input.path(), &all);
        assert_eq!(run.code, 64, "{}", run.stderr);
        assert!(run.stderr.contains(want), "{want}\n{}", run.stderr);
        assert!(fake.invocations().is_empty());
    }
}

/// Ctrl-C (SIGINT) or SIGTERM in the middle of a job: the files already
/// done stay, the one in progress leaves nothing behind (no `.out`, no
/// hidden temporary file), and the exit code is 128 + the signal's number,
/// promptly, though a request is still waiting on the container.
#[test]
fn a_signal_mid_job_keeps_the_finished_files_and_removes_the_rest() {
    let input = tree(&[("a.csv", GOOD), ("b.csv", GOOD)]);
    for (signal, code, name) in [
        (libc::SIGINT, 130, "SIGINT"),
        (libc::SIGTERM, 143, "SIGTERM"),
    ] {
        // b.csv's request never gets an answer.
        let fake = Fake::start(None, |req, n| if n == 0 { echo(req) } else { Reply::Hang });
        let out = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mmp"))
            .args(["transform", "--endpoint", &fake.url(), "--input"])
            .arg(input.path())
            .arg("--output")
            .arg(out.path())
            .args(["--split-type", "Line", "--max-concurrent", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let listing = || crate::util::names(out.path());
        crate::util::eventually("b.csv's request reaches the container", || {
            fake.invocations().len() == 2
        });
        // a.csv committed, b.csv's output under its temporary name.
        crate::util::eventually("a.csv.out and b.csv.out's temporary file", || {
            let names = listing();
            names.len() == 2
                && names[0].starts_with(".b.csv.out.")
                && names[0].ends_with(".tmp")
                && names[1] == "a.csv.out"
        });
        let sent = Instant::now();
        let o = crate::util::end_within(child, Some(signal), Duration::from_secs(10));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{:?}",
            sent.elapsed()
        );
        assert_eq!(o.status.code(), Some(code), "{stderr}");
        let want = format!("mmp transform: stopped by {name} before the end");
        assert!(stderr.contains(&want), "{want}\n{stderr}");
        assert_eq!(listing(), ["a.csv.out"]);
        assert_eq!(
            std::fs::read_to_string(out.path().join("a.csv.out")).unwrap(),
            GOOD
        );
    }
}
