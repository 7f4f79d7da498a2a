//! `mmp score` on every core (src/parallel/) as a real process: a large
//! input byte-identical to the inline path, exact positions of bad records
//! deep in it under both policies, and stdin as a stream. (A file of its own:
//! these hold large buffers, and a child spawned from a test process starts
//! in its memory, which would count in `score_cli`'s peak-RSS test.)

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use crate::util::*;

/// Score `input` given as a file, as stdin redirected from it and as stdin
/// from a pipe, with `args`: (status code, stdout, stderr) of each.
fn score_three_ways(input: &[u8], args: &[&str]) -> Vec<(Option<i32>, Vec<u8>, String)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    std::fs::write(&path, input).unwrap();
    let mut outs = Vec::new();
    let o = mmp_score(&[args, &[path.to_str().unwrap()]].concat());
    outs.push(o);
    let o = mmp()
        .arg("score")
        .arg("--model-dir")
        .arg(model_dir())
        .args(args)
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .unwrap();
    outs.push(o);
    let mut child = mmp()
        .arg("score")
        .arg("--model-dir")
        .arg(model_dir())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    // A writer that stops early is fine (the fail policy stops reading).
    let feeder = std::thread::spawn(move || {
        for piece in data.chunks(100_000) {
            if stdin.write_all(piece).is_err() {
                break;
            }
        }
    });
    let o = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    outs.push(o);
    outs.into_iter()
        .map(|o| {
            (
                o.status.code(),
                o.stdout,
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .collect()
}

#[test]
fn a_large_input_on_every_core_is_byte_identical_to_the_inline_path() {
    let (input, preds, _) = big_csv(1_000_000, |_| false);
    assert!(
        input.len() > 2 * (4 << 20),
        "larger than the inline threshold"
    );
    // The inline path: the same records in files under the threshold,
    // scored one by one and concatenated.
    let dir = tempfile::tempdir().unwrap();
    let mut inline = Vec::new();
    let mut at = 0;
    let mut k = 0;
    while at < input.len() {
        // Cut after a newline that ends a record: a record of form 0 holds
        // a quoted newline, so cut only before a record of another form.
        let mut end = (at + (1 << 20)).min(input.len());
        while end < input.len() && !(input[end - 1] == b'\n' && input[end] != b'"') {
            end += 1;
        }
        let path = dir.path().join(format!("part{k}.csv"));
        std::fs::write(&path, &input[at..end]).unwrap();
        let o = mmp_score(&[path.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        inline.extend_from_slice(&o.stdout);
        at = end;
        k += 1;
    }
    let text = String::from_utf8(inline.clone()).unwrap();
    let got: Vec<f64> = text.lines().map(|l| l.parse().unwrap()).collect();
    let want: Vec<f64> = preds.iter().map(|p| p.unwrap()).collect();
    assert_eq!(got, want, "the inline path answers the model's formula");
    for (i, (code, out, err)) in score_three_ways(&input, &[]).into_iter().enumerate() {
        assert_eq!(code, Some(0), "way {i}: {err}");
        assert!(
            out == inline,
            "way {i}: output differs from the inline path"
        );
    }
}

#[test]
fn a_bad_record_deep_in_a_large_input_has_its_exact_position() {
    // Bad records in three different ranges (2 MiB each, ~23 bytes a record).
    let bad = [150_001usize, 500_000, 999_998];
    let (input, preds, starts) = big_csv(1_000_000, |i| bad.contains(&i));
    let message = |i: usize| {
        let (line, byte) = starts[i];
        format!(
            "record {} (line {line}, byte {byte}): field 2 is not a number: \"x\"",
            i + 1
        )
    };
    // fail: the predictions before the first bad record, then its error.
    for (way, (code, out, err)) in score_three_ways(&input, &[]).into_iter().enumerate() {
        assert_eq!(code, Some(65), "way {way}: {err}");
        assert!(err.contains(&message(bad[0])), "way {way}: {err}");
        let lines: Vec<&str> = std::str::from_utf8(&out).unwrap().lines().collect();
        assert_eq!(lines.len(), bad[0], "way {way}");
        assert_eq!(
            lines[bad[0] - 1].parse::<f64>().unwrap(),
            preds[bad[0] - 1].unwrap()
        );
    }
    // placeholder: one line per record, each bad one naming its position.
    let args = ["--on-error", "placeholder"];
    for (way, (code, out, err)) in score_three_ways(&input, &args).into_iter().enumerate() {
        assert_eq!(code, Some(0), "way {way}: {err}");
        // Each bad record is warned of once, at its own position.
        let warned: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("replaced by a placeholder"))
            .collect();
        assert_eq!(warned.len(), bad.len(), "way {way}: {err}");
        for (line, i) in warned.iter().zip(bad) {
            assert!(line.contains(&message(i)), "way {way}: {line}");
        }
        let lines: Vec<&str> = std::str::from_utf8(&out).unwrap().lines().collect();
        assert_eq!(lines.len(), preds.len(), "way {way}");
        for (i, p) in preds.iter().enumerate() {
            match p {
                Some(p) => assert_eq!(lines[i].parse::<f64>().unwrap(), *p, "way {way}"),
                None => {
                    let want = format!("\"ERROR: {}\"", message(i).replace('"', "\"\""));
                    assert_eq!(lines[i], want, "way {way}, record {}", i + 1);
                }
            }
        }
    }
}

#[test]
fn stdin_from_a_pipe_is_answered_line_by_line() {
    let mut child = mmp()
        .arg("score")
        .arg("--model-dir")
        .arg(model_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 || tx.send(line).is_err() {
            break;
        }
    });
    // Each answer arrives while stdin is still open (the timeout only keeps
    // a broken build from hanging the suite).
    let wait = std::time::Duration::from_secs(60);
    for (row, x) in [("1,2,3\n", [1.0, 2.0, 3.0]), ("4,5,6\n", [4.0, 5.0, 6.0])] {
        stdin.write_all(row.as_bytes()).unwrap();
        stdin.flush().unwrap();
        let line = rx
            .recv_timeout(wait)
            .expect("an answer before the input ends");
        assert_eq!(line.trim_end().parse::<f64>().unwrap(), linear(x));
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
}

#[test]
fn a_bad_record_typed_into_an_open_stdin_ends_the_run_at_once() {
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
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // stderr reaches its end when the process exits.
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        let _ = tx.send(text);
    });
    stdin.write_all(b"1,2,3\n1,x,3\n").unwrap();
    stdin.flush().unwrap();
    // stdin stays open: the answer must not wait for more input (the
    // timeout only keeps a broken build from hanging the suite).
    let text = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("mmp exits while its stdin is still open");
    assert!(
        text.contains("record 2 (line 2, byte 6): field 2 is not a number: \"x\""),
        "{text}"
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(65));
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(
        out.trim_end().parse::<f64>().unwrap(),
        linear([1.0, 2.0, 3.0])
    );
    drop(stdin);
    errors.join().unwrap();
}
