//! Named outputs of every command (`score -o`, `transform`'s `.out` files,
//! the `model.json` that `train` saves) that are not plain files: a regular file gets
//! the write-then-rename, anything else is written through and stays what
//! it was. Renaming over `/dev/null` as root (as in a container) would
//! replace the device with a regular file; over a FIFO, the reader would
//! never see the data.
//!
//! The character device is made with `mknod` (tests run as root, as the
//! container does); where that is not allowed the device cases say so on
//! stderr and check nothing.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;

use crate::util::*;

const INPUT: &[u8] = b"1,2,3\n4,5,6\n";
/// The fixtures' model on INPUT (the README's quick-start answer).
const ANSWER: &[u8] = b"-1.75\n-4.0\n";

fn input_file(dir: &Path) -> PathBuf {
    let p = dir.join("in.csv");
    fs::write(&p, INPUT).unwrap();
    p
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn score_to(input: &Path, out: &Path) -> Output {
    mmp()
        .arg("score")
        .arg("--model-dir")
        .arg(model_dir())
        .arg(input)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

/// A character device with `/dev/null`'s numbers (1, 3) at `path`, or
/// `None` (said on stderr) where mknod is not permitted.
fn null_device(path: &Path) -> Option<()> {
    let o = Command::new("mknod")
        .arg(path)
        .args(["c", "1", "3"])
        .output();
    match o {
        Ok(o) if o.status.success() => Some(()),
        Ok(o) => {
            eprintln!(
                "SKIPPED: mknod {} c 1 3 failed (needs root and a file system without nodev): {}",
                path.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
            None
        }
        Err(e) => {
            eprintln!("SKIPPED: cannot run mknod: {e}");
            None
        }
    }
}

fn assert_null_device(path: &Path) {
    let meta = fs::symlink_metadata(path).unwrap();
    assert!(
        meta.file_type().is_char_device(),
        "{} is no longer a character device: {:?}",
        path.display(),
        meta.file_type()
    );
    assert_eq!(meta.rdev(), libc::makedev(1, 3), "device numbers changed");
}

/// A FIFO at `path` and a thread reading it to EOF.
fn fifo_with_reader(path: &Path) -> thread::JoinHandle<Vec<u8>> {
    mkfifo(path);
    let p = path.to_path_buf();
    thread::spawn(move || {
        let mut got = Vec::new();
        fs::File::open(p).unwrap().read_to_end(&mut got).unwrap();
        got
    })
}

fn assert_fifo(path: &Path) {
    let kind = fs::symlink_metadata(path).unwrap().file_type();
    assert!(
        kind.is_fifo(),
        "{} is no longer a FIFO: {kind:?}",
        path.display()
    );
}

#[test]
fn score_writes_through_a_character_device() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_file(dir.path());
    let dev = dir.path().join("null");
    if null_device(&dev).is_none() {
        return;
    }
    ok(score_to(&input, &dev));
    assert_null_device(&dev);
    assert_eq!(names(dir.path()), ["in.csv", "null"]);
}

#[test]
fn score_writes_through_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_file(dir.path());
    let fifo = dir.path().join("pipe");
    let reader = fifo_with_reader(&fifo);
    ok(score_to(&input, &fifo));
    assert_eq!(reader.join().unwrap(), ANSWER);
    assert_fifo(&fifo);
    assert_eq!(names(dir.path()), ["in.csv", "pipe"]);
}

#[test]
fn score_follows_a_symlink_and_replaces_its_target_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_file(dir.path());
    let real = dir.path().join("sub/real.out");
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(&real, b"old contents\n").unwrap();
    let link = dir.path().join("link.out");
    std::os::unix::fs::symlink("sub/real.out", &link).unwrap();
    let inode_before = fs::metadata(&real).unwrap().ino();

    ok(score_to(&input, &link));
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("sub/real.out"));
    assert_eq!(fs::read(&real).unwrap(), ANSWER);
    // Renamed into place (a new inode), not rewritten in place.
    assert_ne!(fs::metadata(&real).unwrap().ino(), inode_before);
    assert_eq!(names(&dir.path().join("sub")), ["real.out"]);

    // A bad input leaves the target as it was.
    let bad = dir.path().join("bad.csv");
    fs::write(&bad, b"1,2,3\n1,2\n").unwrap();
    assert_eq!(score_to(&bad, &link).status.code(), Some(65));
    assert_eq!(fs::read(&real).unwrap(), ANSWER);
    assert_eq!(names(&dir.path().join("sub")), ["real.out"]);
}

#[test]
fn score_writes_through_dev_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_file(dir.path());
    // Onto a pipe.
    let o = ok(score_to(&input, Path::new("/dev/stdout")));
    assert_eq!(o.stdout, ANSWER);
    assert!(fs::symlink_metadata("/dev/stdout")
        .unwrap()
        .file_type()
        .is_symlink());
    // Onto a file the shell opened for appending (`>> log`): appended to,
    // neither truncated nor replaced.
    let log = dir.path().join("log");
    fs::write(&log, b"before\n").unwrap();
    let inode = fs::metadata(&log).unwrap().ino();
    let append = fs::OpenOptions::new().append(true).open(&log).unwrap();
    let o = mmp()
        .args(["score", "--model-dir"])
        .arg(model_dir())
        .arg(&input)
        .args(["-o", "/dev/stdout"])
        .stdout(Stdio::from(append))
        .output()
        .unwrap();
    ok(o);
    assert_eq!(fs::read(&log).unwrap(), [&b"before\n"[..], ANSWER].concat());
    assert_eq!(fs::metadata(&log).unwrap().ino(), inode);
    // Between two writers of a file the shell opened with `>`: in order,
    // as if mmp had written to its stdout (one shared offset; a second
    // opening of the file would have its own, and `after` would land on
    // top of the predictions).
    let both = dir.path().join("both");
    let o = Command::new("sh")
        .arg("-c")
        .arg(r#"{ echo before; "$0" score --model-dir "$1" "$2" -o /dev/stdout; echo after; } > "$3""#)
        .arg(env!("CARGO_BIN_EXE_mmp"))
        .arg(model_dir())
        .arg(&input)
        .arg(&both)
        .output()
        .unwrap();
    ok(o);
    let want = [&b"before\n"[..], ANSWER, b"after\n"].concat();
    assert_eq!(
        String::from_utf8_lossy(&fs::read(&both).unwrap()),
        String::from_utf8_lossy(&want)
    );
}

#[test]
fn score_from_stdin_writes_through_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let reader = fifo_with_reader(&fifo);
    let mut child = mmp()
        .args(["score", "--model-dir"])
        .arg(model_dir())
        .arg("-o")
        .arg(&fifo)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(INPUT).unwrap();
    ok(child.wait_with_output().unwrap());
    assert_eq!(reader.join().unwrap(), ANSWER);
    assert_fifo(&fifo);
}

fn transform_into(input: &Path, out_dir: &Path) -> Output {
    mmp()
        .args(["transform", "-q", "--no-progress", "--model-dir"])
        .arg(model_dir())
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(out_dir)
        .args(["--content-type", "text/csv", "--split-type", "Line"])
        .output()
        .unwrap()
}

#[test]
fn transform_writes_through_a_fifo_a_device_and_follows_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    fs::create_dir(&inputs).unwrap();
    for name in ["a.csv", "b.csv", "c.csv"] {
        fs::write(inputs.join(name), INPUT).unwrap();
    }
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let reader = fifo_with_reader(&out.join("a.csv.out"));
    let real = dir.path().join("real.out");
    fs::write(&real, b"old\n").unwrap();
    std::os::unix::fs::symlink(&real, out.join("b.csv.out")).unwrap();
    let device = null_device(&out.join("c.csv.out"));
    if device.is_none() {
        fs::write(out.join("c.csv.out"), b"").unwrap();
    }

    ok(transform_into(&inputs, &out));
    assert_eq!(reader.join().unwrap(), ANSWER);
    assert_fifo(&out.join("a.csv.out"));
    assert!(fs::symlink_metadata(out.join("b.csv.out"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(&real).unwrap(), ANSWER);
    match device {
        Some(()) => assert_null_device(&out.join("c.csv.out")),
        None => assert_eq!(fs::read(out.join("c.csv.out")).unwrap(), ANSWER),
    }
    assert_eq!(names(&out), ["a.csv.out", "b.csv.out", "c.csv.out"]);
}

/// A training tree whose data the model fits exactly: y = 1 + 2a - b.
fn train_tree(root: &Path) {
    fs::create_dir_all(root.join("input/config")).unwrap();
    fs::create_dir_all(root.join("input/data/training")).unwrap();
    fs::create_dir_all(root.join("model")).unwrap();
    fs::write(root.join("input/config/hyperparameters.json"), "{}").unwrap();
    let mut csv = String::new();
    for (a, b) in [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (2.0, 3.0), (5.0, -1.0)] {
        csv.push_str(&format!("{},{a},{b}\n", 1.0 + 2.0 * a - b));
    }
    fs::write(root.join("input/data/training/data.csv"), csv).unwrap();
}

fn train(root: &Path) -> Output {
    ok(mmp()
        .args(["train", "--opt-ml", root.to_str().unwrap()])
        .output()
        .unwrap())
}

/// `mmp train` through the binary: a symlink at `model.json` stays a link
/// and its target gets the model; a device stays a device.
#[test]
fn train_follows_a_symlink_and_writes_through_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ml");
    train_tree(&root);
    let model_json = root.join("model/model.json");
    let real = dir.path().join("kept-model.json");
    fs::write(&real, "an earlier model").unwrap();
    std::os::unix::fs::symlink(&real, &model_json).unwrap();
    train(&root);
    assert!(fs::symlink_metadata(&model_json)
        .unwrap()
        .file_type()
        .is_symlink());
    let back: serde_json::Value = serde_json::from_slice(&fs::read(&real).unwrap()).unwrap();
    let w = back["weights"].as_array().unwrap();
    assert!(
        (back["bias"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "{back}"
    );
    assert!((w[0].as_f64().unwrap() - 2.0).abs() < 1e-9, "{back}");
    assert!((w[1].as_f64().unwrap() + 1.0).abs() < 1e-9, "{back}");

    fs::remove_file(&model_json).unwrap();
    if null_device(&model_json).is_some() {
        train(&root);
        assert_null_device(&model_json);
    }
}

/// `mmp train` writes `model.json` with `LinearModel::save`; the save
/// itself, without the binary.
#[test]
fn model_save_follows_a_symlink_and_writes_through_a_device() {
    let model = mmp::predictor::LinearModel {
        bias: 1.0,
        weights: vec![2.0, -1.0, 0.5],
    };
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    fs::create_dir(&model_dir).unwrap();
    let real = dir.path().join("kept-model.json");
    std::os::unix::fs::symlink(&real, model_dir.join("model.json")).unwrap();
    model.save(&model_dir).unwrap();
    assert!(fs::symlink_metadata(model_dir.join("model.json"))
        .unwrap()
        .file_type()
        .is_symlink());
    let back: serde_json::Value = serde_json::from_slice(&fs::read(&real).unwrap()).unwrap();
    assert_eq!(
        back,
        serde_json::json!({"bias": 1.0, "weights": [2.0, -1.0, 0.5]})
    );
    assert_eq!(mmp::predictor::load(&model_dir).unwrap(), model);
    assert_eq!(names(&model_dir), ["model.json"]);

    fs::remove_file(model_dir.join("model.json")).unwrap();
    if null_device(&model_dir.join("model.json")).is_some() {
        model.save(&model_dir).unwrap();
        assert_null_device(&model_dir.join("model.json"));
        assert_eq!(names(&model_dir), ["model.json"]);
    }
}
