//! `mmp transform` end to end: against `mmp serve` on a free port, in-process,
//! the documented DataProcessing examples (fixtures/transform), the exact
//! difference from SDK local mode's output, and usage errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::transform_fake::{Fake, Reply};
use crate::util::{fixtures, mmp, model_dir, tree, Server};

/// A run of the binary.
struct Run {
    code: i32,
    stderr: String,
    out: PathBuf,
}

impl Run {
    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.out.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}\n{}", self.stderr))
    }
}

/// `mmp transform --input INPUT --output <tmp> ARGS`.
fn transform(input: &Path, args: &[&str]) -> Run {
    let out = tempfile::tempdir().unwrap().keep();
    let o = mmp()
        .args(["transform", "--input"])
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

/// `mmp score`'s output for a file (the reference).
fn score(path: &Path, args: &[&str]) -> Vec<u8> {
    let o = mmp()
        .args(["score", "--model-dir"])
        .arg(model_dir())
        .args(args)
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// Deterministic CSV rows of the fixtures' model (3 features).
fn rows(n: usize, seed: u64) -> String {
    let mut s = String::with_capacity(n * 24);
    let mut x = seed;
    for _ in 0..n {
        let mut f = [0f64; 3];
        for v in &mut f {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *v = ((x >> 33) % 20000) as f64 / 1000.0 - 10.0;
        }
        s.push_str(&format!("{},{},{}\n", f[0], f[1], f[2]));
    }
    s
}

fn model() -> String {
    model_dir().to_str().unwrap().to_string()
}

/// A folder of CSV files through `mmp serve`, mini-batched and concurrent:
/// each `.out` is `mmp score`'s output for its input, at its sub-path, and
/// in-process gives the same bytes.
#[test]
fn against_mmp_serve_as_score_and_in_process() {
    let big = rows(120_000, 1); // about 2.4 MB: three 1 MiB mini-batches
    let input = tree(&[("a.csv", "1,2,3\n\n4,5,6"), ("sub/dir/big.csv", &big)]);
    let server = Server::start(&[]);
    let url = format!("http://{}", server.addr);
    let args = [
        "--content-type",
        "text/csv",
        "--accept",
        "text/csv",
        "--split-type",
        "Line",
        "--max-payload-mb",
        "1",
        "--max-concurrent",
        "2",
        "--assemble-with",
        "Line",
    ];
    let mut with_url = vec!["--endpoint", url.as_str()];
    with_url.extend_from_slice(&args);
    let run = transform(input.path(), &with_url);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for rel in ["a.csv", "sub/dir/big.csv"] {
        let want = score(&input.path().join(rel), &[]);
        assert_eq!(run.read(&format!("{rel}.out")), want, "{rel}");
    }
    assert!(
        run.stderr
            .contains("2 files: 2 succeeded, 0 failed; 120002 records"),
        "{}",
        run.stderr
    );

    let m = model();
    let mut in_process = vec!["--model-dir", m.as_str()];
    in_process.extend_from_slice(&args);
    let local = transform(input.path(), &in_process);
    assert_eq!(local.code, 0, "{}", local.stderr);
    for rel in ["a.csv.out", "sub/dir/big.csv.out"] {
        assert_eq!(local.read(rel), run.read(rel), "{rel}");
    }
}

/// JSON lines in, application/json out, one record per request: each
/// response is a whole document; in-process (one pipeline per request,
/// not ranges) gives the same bytes as the server.
#[test]
fn json_documents_per_request_match_the_server() {
    let text = "[1,2,3]\n{\"features\":[4,5,6]}\n\n[-1.5,0,8]\n";
    let input = tree(&[("a.jsonl", text)]);
    let server = Server::start(&[]);
    let url = format!("http://{}", server.addr);
    let args = [
        "--content-type",
        "jsonl",
        "--accept",
        "json",
        "--split-type",
        "Line",
        "--batch-strategy",
        "SingleRecord",
        "--assemble-with",
        "Line",
    ];
    let mut with_url = vec!["--endpoint", url.as_str()];
    with_url.extend_from_slice(&args);
    let run = transform(input.path(), &with_url);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let want = "{\"predictions\":[{\"score\":-1.75}]}\n{\"predictions\":[{\"score\":-4.0}]}\n{\"predictions\":[{\"score\":1.0}]}\n";
    assert_eq!(String::from_utf8(run.read("a.jsonl.out")).unwrap(), want);
    let m = model();
    let mut in_process = vec!["--model-dir", m.as_str()];
    in_process.extend_from_slice(&args);
    let local = transform(input.path(), &in_process);
    assert_eq!(local.code, 0, "{}", local.stderr);
    assert_eq!(local.read("a.jsonl.out"), run.read("a.jsonl.out"));
}

/// MaxPayloadInMB=0 through `mmp serve`: one chunked request per file,
/// larger than the sockets' buffers, answered while it is sent.
#[test]
fn payload_zero_streams_through_mmp_serve() {
    let big = rows(1_000_000, 2); // about 20 MB in, 8 MB out
    let input = tree(&[("big.csv", &big)]);
    let server = Server::start(&[]);
    let url = format!("http://{}", server.addr);
    for split in ["Line", "None"] {
        let run = transform(
            input.path(),
            &[
                "--endpoint",
                &url,
                "--content-type",
                "csv",
                "--split-type",
                split,
                "--max-payload-mb",
                "0",
                "--timeout",
                "60",
            ],
        );
        assert_eq!(run.code, 0, "{split}: {}", run.stderr);
        assert_eq!(
            run.read("big.csv.out"),
            score(&input.path().join("big.csv"), &[]),
            "{split}"
        );
    }
}

/// In-process, a file of several ranges is scored on every core; the bytes
/// are `mmp score`'s for None (here with quoted newlines) and
/// MaxPayloadInMB=0, Line fails on a quoted newline as the service's split
/// would, and an error names the record's place in the whole file.
#[test]
fn in_process_ranges_give_the_score_bytes_and_file_positions() {
    let mut text = rows(500_000, 3); // about 10 MB: three ranges
                                     // Quoted fields with newlines, all through the file.
    text = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i % 1000 == 7 {
                let (a, rest) = l.split_once(',').unwrap();
                format!("\"{a}\n\",{rest}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let input = tree(&[("big.csv", &text)]);
    let want = score(&input.path().join("big.csv"), &[]);
    let m = model();
    for args in [
        &["--split-type", "None", "--max-payload-mb", "100"][..],
        &["--split-type", "None", "--max-payload-mb", "0"][..],
    ] {
        let mut a = vec!["--model-dir", m.as_str()];
        a.extend_from_slice(args);
        let run = transform(input.path(), &a);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert_eq!(run.read("big.csv.out"), want, "{args:?}");
    }
    // SplitType=Line splits on every newline, as the service does: a quoted
    // newline breaks its record.
    let mut a = vec!["--model-dir", m.as_str(), "--split-type", "Line"];
    let run = transform(input.path(), &a);
    assert_eq!(run.code, 65, "{}", run.stderr);

    let mut lines: Vec<String> = rows(400_000, 4).lines().map(str::to_string).collect();
    lines[350_000] = "1,x,3".into();
    let bad = lines.join("\n") + "\n";
    let input = tree(&[("bad.csv", &bad)]);
    let byte: usize = lines[..350_000].iter().map(|l| l.len() + 1).sum();
    a.extend_from_slice(&["--max-concurrent", "2"]);
    let run = transform(input.path(), &a);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "record 350001 (line 350001, byte {byte}): field 2 is not a number: \"x\""
        )),
        "{}",
        run.stderr
    );
    assert!(!run.out.join("bad.csv.out").exists());
}

/// The summary counts one record as "1 record", not "1 records".
#[test]
fn the_summary_says_one_record_in_the_singular() {
    let input = tree(&[("one.csv", "1,2,3\n")]);
    let run = transform(
        input.path(),
        &["--model-dir", &model(), "--split-type", "Line"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("1 file: 1 succeeded, 0 failed; 1 record, "),
        "{}",
        run.stderr
    );
}

/// In-process, the service's per-request limits still fail a file, under
/// both bad-record policies, and leave no output: a record over
/// `MaxPayloadInMB` with `SplitType=Line`, a file over it with `None`.
#[test]
fn in_process_limits_fail_the_file_as_the_service_would() {
    let long = format!("1,2,3\n{},2,3\n4,5,6\n", "1".repeat(2 << 20));
    let input = tree(&[("long.csv", &long)]);
    let m = model();
    let too_large = format!(
        "the file is {} bytes, over MaxPayloadInMB=1 (1048576 bytes)",
        long.len()
    );
    for (split, policy, want) in [
        ("Line", "fail", "record 2 (line 2, byte 6)"),
        ("Line", "placeholder", "record 2 (line 2, byte 6)"),
        ("None", "fail", too_large.as_str()),
    ] {
        let args = ["--split-type", split, "--max-payload-mb", "1"];
        let run = transform(
            input.path(),
            &[&["--model-dir", &m, "--on-error", policy][..], &args].concat(),
        );
        assert_eq!(run.code, 65, "{split} {policy}: {}", run.stderr);
        assert!(
            run.stderr.contains(want),
            "{split} {policy}: {}",
            run.stderr
        );
        assert!(!run.out.join("long.csv.out").exists(), "{split} {policy}");
    }
}

/// Each DataProcessing example of AWS's documentation (the contract's
/// appendix) gives the documented output: fixtures/transform/<case>/ holds
/// the input, the options (`case`), and `expected.out`, or `expected.err`
/// and the exit code.
#[test]
fn documented_data_processing_examples() {
    let root = fixtures().join("transform");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 12, "fixtures missing");
    for dir in cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let spec = std::fs::read_to_string(dir.join("case")).unwrap();
        let field = |k: &str| {
            spec.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}: ")))
                .map(str::to_string)
        };
        let input = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_stem().is_some_and(|s| s == "input"))
            .unwrap();
        let opts = field("args").unwrap();
        let mut args: Vec<String> = opts.split_whitespace().map(str::to_string).collect();
        let container = field("container").unwrap();
        let _fake;
        if container == "model" {
            args.extend(["--model-dir".into(), model()]);
        } else {
            let answer = container.strip_prefix("answer ").unwrap().to_string();
            let fake = Fake::start(None, move |req, _| {
                let n = req.records().len();
                Reply::Ok(format!("{answer}\n").repeat(n).into_bytes())
            });
            args.extend(["--endpoint".into(), fake.url()]);
            _fake = fake;
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = transform(&input, &args);
        let exit: i32 = field("exit").map_or(0, |e| e.parse().unwrap());
        assert_eq!(run.code, exit, "{name}: {}", run.stderr);
        if exit == 0 {
            let out = format!("{}.out", input.file_name().unwrap().to_string_lossy());
            let want = std::fs::read_to_string(dir.join("expected.out")).unwrap();
            assert_eq!(String::from_utf8(run.read(&out)).unwrap(), want, "{name}");
        } else {
            let want = std::fs::read_to_string(dir.join("expected.err")).unwrap();
            let want = want.trim_end_matches('\n');
            assert!(
                run.stderr.lines().any(|l| l == want),
                "{name}: no line\n{want}\nin\n{}",
                run.stderr
            );
        }
    }
}

/// DataProcessing through `mmp serve` matches in-process.
#[test]
fn data_processing_against_mmp_serve() {
    let dir = fixtures().join("transform/id-and-inference-only");
    let server = Server::start(&[]);
    let url = format!("http://{}", server.addr);
    let run = transform(
        &dir.join("input.csv"),
        &[
            "--endpoint",
            &url,
            "--content-type",
            "text/csv",
            "--split-type",
            "Line",
            "--assemble-with",
            "Line",
            "--input-filter",
            "$[1:]",
            "--join-source",
            "Input",
            "--output-filter",
            "$[0,-1]",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.read("input.csv.out"),
        std::fs::read(dir.join("expected.out")).unwrap()
    );
}

/// What SageMaker SDK local mode writes for the same job, by its algorithm
/// (sagemaker/local/data.py and entities.py, docs/local-mode.md): MultiRecord
/// batches while `sys.getsizeof(buffer + line) < MaxPayloadInMB MiB` (49 +
/// len for an ASCII str in CPython 3.11), one POST per batch, each response
/// appended, plus `\n` after every response under AssembleWith=Line.
fn local_mode(server: &Server, text: &str, mb: usize, line: bool) -> (Vec<u8>, usize) {
    let limit = mb * 1024 * 1024;
    let mut batches = Vec::new();
    let mut buffer = String::new();
    for element in text.split_inclusive('\n') {
        if 49 + buffer.len() + element.len() < limit {
            buffer.push_str(element);
        } else {
            batches.push(std::mem::replace(&mut buffer, element.to_string()));
        }
    }
    batches.push(buffer);
    let mut out = Vec::new();
    for b in &batches {
        let r = server.post("text/csv", Some("text/csv"), b.as_bytes());
        assert_eq!(r.status, 200);
        out.extend_from_slice(&r.body);
        if line {
            out.push(b'\n');
        }
    }
    (out, batches.len())
}

/// The exact difference from local mode, for comparing with the SDK test's
/// `.out` files: with AssembleWith=None the bytes are identical; with
/// AssembleWith=Line local mode has one more `\n` after each of its
/// responses (a blank line per request), and is ours once those are taken
/// out.
#[test]
fn local_mode_output_differs_only_by_a_newline_per_response() {
    let text = rows(60_000, 5); // 1.3 MB: two local-mode requests at 1 MB
    let input = tree(&[("big.csv", &text)]);
    let server = Server::start(&[]);
    let url = format!("http://{}", server.addr);
    for line in [false, true] {
        let assemble = if line { "Line" } else { "None" };
        let run = transform(
            input.path(),
            &[
                "--endpoint",
                &url,
                "--content-type",
                "text/csv",
                "--accept",
                "text/csv",
                "--split-type",
                "Line",
                "--batch-strategy",
                "MultiRecord",
                "--max-payload-mb",
                "1",
                "--assemble-with",
                assemble,
            ],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        let ours = run.read("big.csv.out");
        let (theirs, requests) = local_mode(&server, &text, 1, line);
        assert!(requests >= 2);
        if !line {
            assert_eq!(ours, theirs);
            continue;
        }
        let theirs = String::from_utf8(theirs).unwrap();
        assert_eq!(theirs.matches("\n\n").count(), requests);
        assert!(theirs.ends_with("\n\n"));
        assert_eq!(theirs.replace("\n\n", "\n").into_bytes(), ours);
    }
}

#[test]
fn usage_errors_exit_64() {
    let input = tree(&[("a.csv", "1,2,3\n")]);
    let m = model();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--max-payload-mb", "101"],
            "mmp transform: 1 validation error detected: Value '101' at 'maxPayloadInMB' failed to satisfy constraint: Member must have value less than or equal to 100",
        ),
        (
            vec!["--max-retries", "4"],
            "mmp transform: 1 validation error detected: Value '4' at 'modelClientConfig.invocationsMaxRetries' failed to satisfy constraint: Member must have value less than or equal to 3",
        ),
        (
            vec!["--join-source", "Input", "--content-type", "image/png"],
            "mmp transform: DataProcessing (InputFilter, JoinSource, OutputFilter) supports only text/csv, application/json and application/jsonlines; ContentType is image/png",
        ),
        (
            vec!["--join-source", "Input", "--content-type", "csv", "--split-type", "Line"],
            "mmp transform: DataProcessing with ContentType text/csv needs SplitType=Line and AssembleWith=Line",
        ),
        (
            vec!["--ping-timeout", "1e300"],
            "mmp transform: --ping-timeout must be a number of seconds, at most 3153600000 (a century)",
        ),
        (
            vec!["--content-type", "image/png"],
            "mmp transform: --content-type image/png: in-process scoring reads and writes text/csv, application/jsonlines and application/json",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["--model-dir", m.as_str()];
        args.extend(extra);
        let run = transform(input.path(), &args);
        assert_eq!(run.code, 64, "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.trim_end(), want, "{args:?}");
    }
    let run = transform(&input.path().join("nope"), &["--model-dir", m.as_str()]);
    assert_eq!(run.code, 74, "{}", run.stderr);
    let empty = tempfile::tempdir().unwrap();
    let run = transform(empty.path(), &["--model-dir", m.as_str()]);
    assert_eq!(run.code, 66, "{}", run.stderr);
    let run = transform(input.path(), &["--model-dir", "/nonexistent"]);
    assert_eq!(run.code, 66, "{}", run.stderr);
    // The input folder as the output: said as such, not "holds no files".
    let o = mmp()
        .args(["transform", "--model-dir", m.as_str(), "--input"])
        .arg(input.path())
        .arg("--output")
        .arg(input.path().join("."))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(64), "{stderr}");
    let want = format!(
        "mmp transform: --output {} is the --input folder:",
        input.path().display()
    );
    assert!(stderr.starts_with(&want), "{want}\n{stderr}");
    let o = Command::new(env!("CARGO_BIN_EXE_mmp"))
        .args(["transform", "--input", "x", "--output", "y"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "neither --endpoint nor --model-dir"
    );
}
