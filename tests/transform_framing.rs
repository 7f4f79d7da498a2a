//! `mmp transform` against a container that is not ours (tests/transform_fake,
//! answering each request with its own body): requests are framed as
//! SageMaker frames them for each SplitType × BatchStrategy, Gzip input is
//! decompressed before splitting, a manifest lists the inputs, and a corrupt
//! or truncated binary record fails its file with its byte offset.
//!
//! Binary files are built here from the formats' definitions (MXNet
//! RecordIO: magic, flag and length, payload, padding to 4 bytes;
//! TFRecord: length, masked CRC32C, payload, masked CRC32C, the CRC32C
//! computed bit by bit), not with the code under test.

use crate::transform_fake;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::transform_fake::{Fake, Reply};

struct Run {
    code: i32,
    stderr: String,
    out: PathBuf,
}

fn transform(url: &str, input: &[&str], args: &[&str]) -> Run {
    let out = tempfile::tempdir().unwrap().keep();
    let o = Command::new(env!("CARGO_BIN_EXE_mmp"))
        .args(["transform", "--endpoint", url, "--output"])
        .arg(&out)
        .args(input)
        .args(args)
        .output()
        .unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        out,
    }
}

/// A container that answers each request with its body.
fn mirror() -> Fake {
    Fake::start(None, |req, _| Reply::Ok(req.body.clone()))
}

#[allow(clippy::manual_rotate)]
fn masked_crc32c(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
        }
    }
    let c = !c;
    ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8)
}

fn tfrecord(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    [
        &len[..],
        &masked_crc32c(&len).to_le_bytes(),
        payload,
        &masked_crc32c(payload).to_le_bytes(),
    ]
    .concat()
}

fn recordio(payload: &[u8]) -> Vec<u8> {
    let pad = vec![0u8; payload.len().next_multiple_of(4) - payload.len()];
    let head = (payload.len() as u32).to_le_bytes();
    [&0xced7230au32.to_le_bytes()[..], &head, payload, &pad].concat()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    p.to_str().unwrap().to_string()
}

fn bodies(fake: &Fake) -> Vec<Vec<u8>> {
    fake.invocations().into_iter().map(|s| s.body).collect()
}

#[test]
fn requests_are_framed_as_sagemaker_frames_them() {
    let dir = tempfile::tempdir().unwrap();
    let payloads: Vec<Vec<u8>> = (0..40)
        .map(|i| format!("payload {i} {}", "z".repeat(i * 37 % 101)).into_bytes())
        .collect();
    let lines: String = payloads
        .iter()
        .map(|p| format!("{}\n", String::from_utf8_lossy(p)))
        .collect();
    for (split, frame) in [
        (
            "Line",
            (|p: &[u8]| [p, b"\n"].concat()) as fn(&[u8]) -> Vec<u8>,
        ),
        ("RecordIO", recordio),
        ("TFRecord", tfrecord),
    ] {
        let frames: Vec<Vec<u8>> = payloads.iter().map(|p| frame(p)).collect();
        let file = frames.concat();
        let input = write(dir.path(), &format!("{split}.bin"), &file);
        if split == "Line" {
            assert_eq!(file, lines.as_bytes());
        }

        // SingleRecord: one record per request; binary ones without their
        // framing ("padding is removed if ... SingleRecord").
        let fake = mirror();
        let args = ["--split-type", split, "--batch-strategy", "SingleRecord"];
        let run = transform(&fake.url(), &["--input", &input], &args);
        assert_eq!(run.code, 0, "{split}: {}", run.stderr);
        let want: Vec<Vec<u8>> = match split {
            "Line" => frames.clone(),
            _ => payloads.clone(),
        };
        assert_eq!(bodies(&fake), want, "{split} SingleRecord");
        let out = std::fs::read(run.out.join(format!("{split}.bin.out"))).unwrap();
        assert_eq!(out, want.concat());

        // MultiRecord: whole records as they are in the file, padding kept,
        // as many as fit in MaxPayloadInMB=1.
        let many: Vec<u8> = (0..40_000).flat_map(|i| frames[i % 40].clone()).collect();
        let input = write(dir.path(), &format!("many-{split}.bin"), &many);
        let fake = mirror();
        let args = ["--split-type", split, "--max-payload-mb", "1"];
        let run = transform(&fake.url(), &["--input", &input], &args);
        assert_eq!(run.code, 0, "{split}: {}", run.stderr);
        let sent = bodies(&fake);
        assert!(sent.len() >= 2, "{split}: {} requests", sent.len());
        assert_eq!(
            sent.concat(),
            many,
            "{split} MultiRecord: the file, in order"
        );
        let ends: std::collections::HashSet<usize> = (0..40_000)
            .scan(0, |at, i| {
                *at += frames[i % 40].len();
                Some(*at)
            })
            .collect();
        let mut at = 0;
        for body in &sent {
            assert!(body.len() <= 1 << 20);
            at += body.len();
            assert!(
                ends.contains(&at),
                "{split}: a body ends inside a record at {at}"
            );
        }

        // None: the whole file in one request.
        let fake = mirror();
        let run = transform(&fake.url(), &["--input", &input], &[]);
        assert_eq!(run.code, 0, "{split}: {}", run.stderr);
        assert_eq!(bodies(&fake), [many]);
    }
}

#[test]
fn a_corrupt_or_truncated_record_fails_its_file_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<Vec<u8>> = (0..5)
        .map(|i| tfrecord(format!("r{i}").as_bytes()))
        .collect();
    let good = frames.concat();
    let mut bad = good.clone();
    let third = frames[0].len() + frames[1].len();
    bad[third + 13] ^= 1; // a payload byte of record 3
    let mut cut = good.clone();
    cut.truncate(good.len() - 3);
    write(dir.path(), "in/a-bad.tfrecord", &bad);
    write(dir.path(), "in/b-cut.tfrecord", &cut);
    write(dir.path(), "in/c-good.tfrecord", &good);
    let fake = mirror();
    let input = dir.path().join("in");
    let args = [
        "--split-type",
        "TFRecord",
        "--batch-strategy",
        "SingleRecord",
    ];
    let run = transform(&fake.url(), &["--input", input.to_str().unwrap()], &args);
    assert_eq!(run.code, 65, "{}", run.stderr);
    let last = good.len() - frames[4].len();
    for want in [
        format!("failed a-bad.tfrecord: TFRecord record 3 at byte {third}: bad data CRC"),
        format!("failed b-cut.tfrecord: TFRecord record 5 at byte {last}: truncated: the input ends 15 bytes into a TFRecord of 18 bytes"),
    ] {
        assert!(run.stderr.contains(&want), "{want}\n{}", run.stderr);
    }
    let outs: Vec<_> = std::fs::read_dir(&run.out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outs, ["c-good.tfrecord.out"]);
}

#[test]
fn gzip_is_decompressed_before_splitting_and_manifests_name_the_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..300).map(|i| format!("{i},{}\n", i * 7)).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    write(dir.path(), "bucket/jobs/in/a.csv.gz", &gz);
    write(dir.path(), "bucket/jobs/in/sub/b.csv.gz", &gz);
    let manifest = write(
        dir.path(),
        "job.manifest",
        br#"[{"prefix": "s3://bucket/jobs/in/"}, "sub/b.csv.gz", "a.csv.gz"]"#,
    );
    let fake = Fake::start(None, |req, _| transform_fake::echo(req));
    let args = [
        "--compression-type",
        "Gzip",
        "--split-type",
        "Line",
        "--batch-strategy",
        "SingleRecord",
        "--max-concurrent",
        "4",
    ];
    let run = transform(&fake.url(), &["--manifest", &manifest], &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sent = bodies(&fake);
    assert_eq!(sent.len(), 600, "one record per request, decompressed");
    assert!(sent.iter().all(|b| b.ends_with(b"\n") && b.len() < 16));
    for key in ["a.csv.gz", "sub/b.csv.gz"] {
        let out = std::fs::read_to_string(run.out.join(format!("{key}.out"))).unwrap();
        assert_eq!(out, text, "{key}");
    }
    // SplitType=None: the decompressed file in one request; a file that is
    // not gzip fails on its own.
    write(dir.path(), "bucket/jobs/in/plain.csv", text.as_bytes());
    std::fs::write(
        &manifest,
        br#"[{"prefix": "s3://bucket/jobs/in/"}, "a.csv.gz", "plain.csv"]"#,
    )
    .unwrap();
    let fake = mirror();
    let run = transform(&fake.url(), &["--manifest", &manifest], &args[..2]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert_eq!(bodies(&fake), [text.as_bytes().to_vec()]);
    assert!(
        run.stderr.contains("failed plain.csv: ")
            && run
                .stderr
                .contains("plain.csv: bad gzip data, 10 bytes into the compressed file"),
        "{}",
        run.stderr
    );
}

/// A gzip input cut short or failing its checksum is bad input data (65),
/// named with how far into the compressed file the fault was found; the
/// other files go on.
#[test]
fn a_corrupt_gzip_input_fails_its_file_as_bad_data_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..3000).map(|i| format!("{i},{}\n", i * 7)).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let cut = &gz[..gz.len() / 2];
    let mut crc = gz.clone();
    let at = gz.len() - 8; // the trailer's CRC32 (RFC 1952 §2.3)
    crc[at] ^= 0xff;
    write(dir.path(), "in/a-cut.csv.gz", cut);
    write(dir.path(), "in/b-crc.csv.gz", &crc);
    write(dir.path(), "in/c-good.csv.gz", &gz);
    let fake = mirror();
    let input = dir.path().join("in");
    let args = ["--compression-type", "Gzip", "--split-type", "Line"];
    let run = transform(&fake.url(), &["--input", input.to_str().unwrap()], &args);
    assert_eq!(run.code, 65, "{}", run.stderr);
    for want in [
        format!(
            "a-cut.csv.gz: bad gzip data, {} bytes into the compressed file: the stream is cut short",
            cut.len()
        ),
        format!(
            "b-crc.csv.gz: bad gzip data, {} bytes into the compressed file: ",
            gz.len()
        ),
    ] {
        assert!(run.stderr.contains(&want), "{want}\n{}", run.stderr);
    }
    let outs: Vec<_> = std::fs::read_dir(&run.out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outs, ["c-good.csv.gz.out"]);
}
