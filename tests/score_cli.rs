//! `mmp score` as a real process: golden fixtures, stdin/stdout, several
//! files, bad input, a closed stdout, and memory on a large generated input.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;

use crate::util::*;

#[test]
fn golden_fixtures_in_every_output_format() {
    for input in golden_inputs() {
        for out in ["csv", "jsonl", "json"] {
            let o = mmp_score(&["--accept", out, input.to_str().unwrap()]);
            assert!(
                o.status.success(),
                "{input:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let expected = golden_expected(&input, out);
            assert_eq!(
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&expected),
                "{input:?} as {out}"
            );
        }
    }
}

#[test]
fn stdin_to_stdout_with_media_types() {
    let input = fixtures().join("golden/basic.jsonl");
    let mut child = mmp()
        .args([
            "score",
            "--content-type",
            "application/jsonlines; charset=utf-8",
            "-a",
            "text/csv",
        ])
        .arg("--model-dir")
        .arg(model_dir())
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(out, golden_expected(&input, "csv"));
}

#[test]
fn model_dir_defaults_to_sm_model_dir() {
    let input = fixtures().join("golden/basic.csv");
    let o = mmp()
        .args(["score", input.to_str().unwrap()])
        .env("SM_MODEL_DIR", model_dir())
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(o.stdout, golden_expected(&input, "csv"));
}

#[test]
fn csv_header_option_and_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("h.csv");
    std::fs::write(&f, "a,b,c\n1,2,3\n").unwrap();
    let o = mmp_score(&["--csv-header", f.to_str().unwrap()]);
    assert!(o.status.success());
    assert_eq!(o.stdout, b"-1.75\n");
    let o = mmp_score(&["-t", "text/csv; header=present", f.to_str().unwrap()]);
    assert_eq!(o.stdout, b"-1.75\n");
    let o = mmp_score(&[f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(65), "a header is data unless asked");
}

#[test]
fn a_header_over_the_record_limit_is_skipped_like_a_short_one() {
    let dir = tempfile::tempdir().unwrap();
    let (short, long) = (dir.path().join("short.csv"), dir.path().join("long.csv"));
    std::fs::write(&short, "a,b,c\n1,2,3\n4,5,6\n").unwrap();
    let header = format!("{},b,c\n", "a".repeat(40));
    std::fs::write(&long, format!("{header}1,2,3\n4,5,6\n")).unwrap();
    let args = ["--csv-header", "--max-record-bytes", "16"];
    let want = mmp_score(&[&args[..], &[short.to_str().unwrap()]].concat());
    assert!(want.status.success());
    assert_eq!(want.stdout.iter().filter(|&&b| b == b'\n').count(), 2);
    for policy in ["fail", "placeholder"] {
        let o = mmp_score(&[&args[..], &["--on-error", policy, long.to_str().unwrap()]].concat());
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{policy}: {stderr}");
        assert_eq!(
            o.stdout, want.stdout,
            "{policy}: no record is taken for the header"
        );
    }
}

#[test]
fn a_quoted_field_over_the_limit_is_one_record_however_many_lines_it_holds() {
    // Under placeholder every record gets one answer line, a record as
    // Python's csv module reads it: a quoted field whose first line alone
    // is over the limit still ends where its quotes close. Small (inline)
    // and over the inline threshold (in ranges on every core).
    let dir = tempfile::tempdir().unwrap();
    let quoted = format!("1,\"{}\nb\n\",3\n", "a".repeat(100));
    for pad in [0, 600_000] {
        let rows = csv_rows(0, pad);
        let input = dir.path().join(format!("in{pad}.csv"));
        let mut bytes = rows.clone();
        bytes.extend_from_slice(quoted.as_bytes());
        bytes.extend_from_slice(b"4,5,6\n");
        std::fs::write(&input, &bytes).unwrap();
        let args = ["--max-record-bytes", "64", "--on-error", "placeholder"];
        let o = mmp_score(&[&args[..], &[input.to_str().unwrap()]].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8(o.stdout).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), pad + 2, "one answer per record");
        let at = format!(
            "record {} (line {}, byte {}): record is larger than the 64-byte limit",
            pad + 1,
            pad + 1,
            rows.len()
        );
        assert!(lines[pad].contains(&at), "{}", lines[pad]);
        assert_eq!(lines[pad + 1].parse::<f64>().unwrap(), linear([4., 5., 6.]));
    }
}

#[test]
fn several_inputs_give_one_output_each() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv");
    let b = dir.path().join("b.jsonl");
    std::fs::copy(fixtures().join("golden/basic.csv"), &a).unwrap();
    std::fs::copy(fixtures().join("golden/basic.jsonl"), &b).unwrap();
    // Beside the inputs...
    let o = mmp_score(&[a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty());
    let read = |p: std::path::PathBuf| std::fs::read(p).unwrap();
    assert_eq!(
        read(dir.path().join("a.csv.out")),
        golden_expected(&fixtures().join("golden/basic.csv"), "csv")
    );
    assert_eq!(
        read(dir.path().join("b.jsonl.out")),
        golden_expected(&fixtures().join("golden/basic.jsonl"), "jsonl")
    );
    // ...or in -o DIR, created if needed.
    let out = dir.path().join("out/nested");
    let o = mmp_score(&[
        "-a",
        "json",
        "-o",
        out.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert_eq!(
        read(out.join("a.csv.out")),
        golden_expected(&fixtures().join("golden/basic.csv"), "json")
    );
    assert_eq!(
        read(out.join("b.jsonl.out")),
        golden_expected(&fixtures().join("golden/basic.jsonl"), "json")
    );
}

#[test]
fn a_failing_input_leaves_no_output_and_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.csv");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&good, "1,2,3\n").unwrap();
    std::fs::write(&bad, "1,2,3\n1,2\n").unwrap();
    let out = dir.path().join("out");
    let o = mmp_score(&[
        "-o",
        out.to_str().unwrap(),
        bad.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&o.stderr);
    // Said once, then counted.
    let said = "bad.csv: record 2 (line 2, byte 6): expected 3 fields, found 2";
    assert_eq!(stderr.matches(said).count(), 1, "{stderr}");
    assert!(
        stderr.ends_with("mmp: 1 of 2 inputs failed (each error is above)\n"),
        "{stderr}"
    );
    assert!(!out.join("bad.csv.out").exists());
    assert_eq!(std::fs::read(out.join("good.csv.out")).unwrap(), b"-1.75\n");
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
}

#[test]
fn bad_fixtures_exit_65_with_the_position() {
    for case in bad_cases() {
        let mut args = vec![];
        if let Some(n) = &case.max_record_bytes {
            args.extend(["--max-record-bytes", n.as_str()]);
        }
        if let Some(n) = &case.max_document_bytes {
            args.extend(["--max-document-bytes", n.as_str()]);
        }
        args.push(case.input.to_str().unwrap());
        let o = mmp_score(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(65), "{case:?}: {stderr}");
        let expected = format!("mmp: {}: {}", case.input.display(), case.message);
        assert_eq!(stderr.trim_end(), expected, "{case:?}");
    }
}

#[test]
fn predictions_before_a_bad_record_are_written() {
    let o = mmp_score(&[fixtures().join("bad/field_count.csv").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(65));
    assert_eq!(o.stdout, b"-1.75\n");
}

#[test]
fn placeholder_policy_keeps_one_line_per_record() {
    let input = fixtures().join("bad/not_a_number.csv");
    let o = mmp_score(&["--on-error", "placeholder", input.to_str().unwrap()]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "-1.75\n\"ERROR: record 2 (line 3, byte 7): field 2 is not a number: \"\"abc\"\"\"\n"
    );
    let o = mmp_score(&[
        "--on-error",
        "placeholder",
        "-a",
        "jsonl",
        input.to_str().unwrap(),
    ]);
    let lines: Vec<serde_json::Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["score"], -1.75);
    assert_eq!(lines[1]["error"], "not_a_number");
}

#[test]
fn model_that_cannot_load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let o = mmp()
        .args(["score", "--model-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(66));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("model.json") && stderr.contains("No such file"),
        "{stderr}"
    );
}

#[test]
fn bad_option_values_are_usage_errors() {
    let o = mmp_score(&["--content-type", "text/html", "-"]);
    assert_eq!(o.status.code(), Some(64));
    let o = mmp_score(&["--max-record-bytes", "0"]);
    assert_eq!(o.status.code(), Some(2), "clap rejects it");
}

/// Rows of 3 features, about 20 bytes each.
fn rows(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n * 20);
    for i in 0..n {
        writeln!(v, "{}.25,-{}.5,{}", i % 1000, i % 7, i % 13).unwrap();
    }
    v
}

#[test]
fn closed_stdout_exits_zero_quietly() {
    let mut child = mmp()
        .arg("score")
        .arg("--model-dir")
        .arg(model_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let block = rows(50_000);
        // Until mmp stops reading (it exits once its stdout is closed).
        for _ in 0..1000 {
            if stdin.write_all(&block).is_err() {
                break;
            }
        }
    });
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // 0.5 + 0.25 - 2 * -0.5 + 0.25 * 0
    assert_eq!(first, "1.75\n");
    // The reader is dropped here, as `| head -1` would.
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn half_a_gigabyte_through_in_bounded_memory() {
    const TOTAL: usize = 500 * 1000 * 1000;
    let mut child = mmp()
        .arg("score")
        .arg("--model-dir")
        .arg(model_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let block = rows(100_000);
    let blocks = TOTAL / block.len() + 1;
    let feeder = std::thread::spawn(move || {
        for _ in 0..blocks {
            stdin.write_all(&block).unwrap();
        }
        stdin
    });
    let counter = std::thread::spawn(move || {
        let mut lines = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let mut r = stdout;
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break lines;
            }
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
        }
    });
    let stdin = feeder.join().unwrap();
    // All but the last pipe-full is through, and stdin is still open: the
    // high-water mark now is the run's. (Not the kernel's accounting at
    // exit: a child's ru_maxrss starts at this process's RSS when it forks,
    // and this process runs every other test too.)
    let (peak_kib, _) = memory_kib(child.id());
    drop(stdin);
    let lines = counter.join().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(lines, blocks * 100_000, "one prediction per record");
    assert!(
        peak_kib < 64 * 1024,
        "peak RSS {peak_kib} KiB for {TOTAL} bytes"
    );
}

/// A pseudo-terminal, 120 columns wide: (master, read by the test; slave,
/// given to the child as its stderr).
fn pty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // Both ends opened by std, which opens every file close-on-exec at once:
    // openpty(3) does not, and before an fcntl could set the flag a child of
    // another test (they share this process) could inherit the terminal,
    // which then would not close when ours exits.
    let open = |path: &std::path::Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let master = open(std::path::Path::new("/dev/ptmx"));
    let fd = master.as_raw_fd();
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: plain FFI calls on a descriptor `master` owns, with pointers
    // to locals that outlive them.
    let slave_path = unsafe {
        assert_eq!(libc::grantpt(fd), 0, "grantpt");
        assert_eq!(libc::unlockpt(fd), 0, "unlockpt");
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        std::ffi::CStr::from_ptr(name.as_ptr())
            .to_str()
            .unwrap()
            .to_string()
    };
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize, a local.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &size) };
    assert_eq!(r, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    (master, open(std::path::Path::new(&slave_path)))
}

/// Everything the terminal shows, as it arrives (ends when the child and
/// every other holder of the slave have closed it).
fn terminal_reader(mut master: std::fs::File) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // EIO once the slave side is closed: the end.
        while let Ok(n @ 1..) = master.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Gather the terminal's text until it contains `want` (or fail with what
/// it showed after 60 s).
fn wait_for(rx: &std::sync::mpsc::Receiver<Vec<u8>>, seen: &mut Vec<u8>, want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !String::from_utf8_lossy(seen).contains(want) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => panic!(
                "the terminal never showed {want:?}; it showed {:?}",
                String::from_utf8_lossy(seen)
            ),
        }
    }
}

#[test]
fn progress_bar_on_a_terminal_for_stdin_from_a_pipe() {
    let (master, slave) = pty();
    let rx = terminal_reader(master);
    let mut child = mmp()
        .args(["score", "--model-dir"])
        .arg(model_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(slave)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Less output than mmp buffers before writing, so it never blocks on
    // the stdout pipe this test reads only at the end.
    stdin.write_all(&rows(5_000)).unwrap();
    // While mmp waits for more input, its bar shows what it has read.
    let mut seen = Vec::new();
    wait_for(&rx, &mut seen, "records (");
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), 5_000);
    let shown = String::from_utf8_lossy(&seen);
    // Bytes read and their rate; no share or time left without a size.
    assert!(shown.contains("B/s"), "{shown:?}");
    assert!(!shown.contains("ETA"), "{shown:?}");
}

#[test]
fn progress_bar_on_a_terminal_for_a_file_and_nothing_on_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.csv");
    std::fs::write(&input, rows(1_000_000)).unwrap();
    let out = dir.path().join("big.out");

    let (master, slave) = pty();
    let rx = terminal_reader(master);
    let mut cmd = mmp();
    cmd.args(["score", "--model-dir"])
        .arg(model_dir())
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .stderr(slave);
    let status = cmd.status().unwrap();
    drop(cmd); // closes the test's copy of the slave: the reader ends
    assert!(status.success(), "{status:?}");
    let shown: Vec<u8> = rx.iter().flatten().collect();
    let shown = String::from_utf8_lossy(&shown);
    // The share done and the time left, for a file of known size.
    assert!(shown.contains('%') && shown.contains("ETA"), "{shown:?}");
    assert!(shown.contains("records ("), "{shown:?}");

    // Not a terminal: not a byte on stderr.
    let o = mmp_score(&[input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Ctrl-C (SIGINT) or SIGTERM while `mmp score -o FILE` is still reading:
/// exit 128 + the signal's number, and FILE is as it was, with no hidden
/// temporary file left beside it.
#[test]
fn a_signal_mid_run_leaves_the_output_as_it_was() {
    for (signal, code, name) in [
        (libc::SIGINT, 130, "SIGINT"),
        (libc::SIGTERM, 143, "SIGTERM"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        std::fs::write(&target, "an earlier run\n").unwrap();
        let mut child = mmp()
            .args(["score", "--model-dir"])
            .arg(model_dir())
            .arg("-o")
            .arg(&target)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Rows in, stdin left open: mmp is mid-run, waiting for more.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&csv_rows(0, 1000)).unwrap();
        let listing = || names(dir.path());
        eventually("the temporary output beside out.csv", || {
            let names = listing();
            names.len() == 2 && names[0].starts_with(".out.csv.") && names[0].ends_with(".tmp")
        });
        let o = end_within(child, Some(signal), std::time::Duration::from_secs(10));
        drop(stdin);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{stderr}");
        let want = format!("mmp: stopped by {name} before the end");
        assert!(stderr.contains(&want), "{want}\n{stderr}");
        assert_eq!(listing(), ["out.csv"]);
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "an earlier run\n"
        );
    }
}

/// `mmp score`, its stderr as given, killed (a failure) if it has not
/// ended within 20 s: the exit code.
fn score_with_stderr(args: &[&str], stderr: Stdio) -> Option<i32> {
    let child = mmp()
        .args(["score", "--model-dir"])
        .arg(model_dir())
        .args(args)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    end_within(child, None, std::time::Duration::from_secs(20))
        .status
        .code()
}

/// Where stderr takes nothing (closed by its reader, or a full disk), the
/// exit code is still the one the message was for, and the run ends: no
/// panic (101), and no hang on the log while writing warnings.
#[test]
fn an_unwritable_stderr_changes_neither_the_exit_code_nor_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "1,2\n".repeat(1000)).unwrap();
    let bad = bad.to_str().unwrap();
    // A socket whose reader is gone: writes fail with EPIPE.
    let (reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(reader);
    let writer = std::os::fd::OwnedFd::from(writer);
    assert_eq!(score_with_stderr(&[bad], Stdio::from(writer)), Some(65));
    // A full disk: 1000 placeholder warnings, each write failing.
    let full = || Stdio::from(std::fs::File::create("/dev/full").unwrap());
    let out = dir.path().join("out.csv");
    let args = [
        "--on-error",
        "placeholder",
        bad,
        "-o",
        out.to_str().unwrap(),
    ];
    assert_eq!(score_with_stderr(&args, full()), Some(0));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 1000);
}

/// Several inputs are written as NAME.out each: two inputs of one name
/// into one folder, or stdin among files, would lose or misplace output,
/// so they are refused before anything is written.
#[test]
fn several_inputs_that_cannot_each_have_their_own_output_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["x1", "x2"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        std::fs::write(dir.path().join(sub).join("same.csv"), "1,2,3\n").unwrap();
    }
    let (a, b) = (
        dir.path().join("x1/same.csv"),
        dir.path().join("x2/same.csv"),
    );
    let out = dir.path().join("out");
    let o = mmp_score(&[
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("would both be written to"), "{stderr}");
    assert!(!out.exists());
    let o = mmp_score(&[a.to_str().unwrap(), "-"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("- (stdin) must be the only input"),
        "{stderr}"
    );
}
