//! `mmp train` as SageMaker runs it: the real binary on a temporary
//! `/opt/ml` tree (`--opt-ml`), with datasets generated here from known
//! weights. Nothing sleeps to synchronise: the FIFO tests wait on the
//! binary's own actions (opening the FIFO, printing a line), each with a
//! time limit so a regression fails instead of hanging.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{self, mkfifo};

use flate2::write::GzEncoder;
use flate2::Compression;
use mmp::predictor::{self, LinearModel};

const MMP: &str = env!("CARGO_BIN_EXE_mmp");
/// Generous: a debug build on a busy 2-core machine.
const LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- data

/// splitmix64: a fixed-seed generator, so every dataset is reproducible.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform(f64::MIN_POSITIVE, 1.0);
        let u2 = self.uniform(0.0, 1.0);
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Rows `(label, features)` of `y = bias + w·x + noise·N(0,1)`.
#[derive(Clone)]
struct Data {
    rows: Vec<(f64, Vec<f64>)>,
}

/// The weights every dataset here is generated from (D = 16).
fn true_model() -> LinearModel {
    LinearModel {
        bias: 2.5,
        weights: (0..16).map(|i| (i as f64 - 7.5) / 3.0).collect(),
    }
}

fn generate(model: &LinearModel, n: usize, noise: f64, seed: u64) -> Data {
    let mut rng = Rng(seed);
    let rows = (0..n)
        .map(|_| {
            let x: Vec<f64> = model
                .weights
                .iter()
                .map(|_| rng.uniform(-10.0, 10.0))
                .collect();
            let y = model.predict_one(&x) + noise * rng.normal();
            (y, x)
        })
        .collect();
    Data { rows }
}

impl Data {
    fn slice(&self, from: usize, to: usize) -> Data {
        Data {
            rows: self.rows[from..to].to_vec(),
        }
    }

    /// CSV, label first. `{}` prints the shortest text that reads back as
    /// the same f64, so the binary sees exactly these numbers.
    fn csv(&self) -> Vec<u8> {
        let mut out = String::new();
        for (y, x) in &self.rows {
            out.push_str(&y.to_string());
            for v in x {
                out.push(',');
                out.push_str(&v.to_string());
            }
            out.push('\n');
        }
        out.into_bytes()
    }

    /// JSON lines: objects, or arrays with the label first, alternately.
    fn jsonl(&self) -> Vec<u8> {
        let mut out = String::new();
        for (i, (y, x)) in self.rows.iter().enumerate() {
            let line = if i % 2 == 0 {
                serde_json::json!({"label": y, "features": x, "id": i})
            } else {
                let mut arr = vec![*y];
                arr.extend(x);
                serde_json::json!(arr)
            };
            out.push_str(&line.to_string());
            out.push('\n');
        }
        out.into_bytes()
    }

    /// RMSE of `model` on these rows, computed directly.
    fn rmse(&self, model: &LinearModel) -> f64 {
        let sse: f64 = self
            .rows
            .iter()
            .map(|(y, x)| (y - model.predict_one(x)).powi(2))
            .sum();
        (sse / self.rows.len() as f64).sqrt()
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

// ---------------------------------------------------------------- tree

/// A temporary `/opt/ml`.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    /// A tree with these hyperparameters and channel configuration
    /// (`inputdataconfig.json`), and a resourceconfig.json.
    fn new(hyperparameters: &str, channels: &str) -> Tree {
        let tree = Tree {
            dir: tempfile::tempdir().unwrap(),
        };
        tree.write(
            "input/config/hyperparameters.json",
            hyperparameters.as_bytes(),
        );
        tree.write("input/config/inputdataconfig.json", channels.as_bytes());
        tree.write(
            "input/config/resourceconfig.json",
            br#"{"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}"#,
        );
        tree
    }

    /// File-mode `training` (and `validation` if `validation`).
    fn file_mode(hyperparameters: &str, validation: bool) -> Tree {
        let channels = if validation {
            r#"{"training": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"},
                "validation": {"TrainingInputMode": "File"}}"#
        } else {
            r#"{"training": {"TrainingInputMode": "File"}}"#
        };
        Tree::new(hyperparameters, channels)
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn write(&self, rel: &str, bytes: &[u8]) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(MMP);
        cmd.arg("train").arg("--opt-ml").arg(self.root());
        cmd
    }

    fn train(&self) -> Run {
        Run::from(self.command().output().unwrap())
    }

    fn model(&self) -> LinearModel {
        predictor::load(&self.path("model")).unwrap()
    }

    /// The failure file's first line.
    fn failure(&self) -> String {
        let text = fs::read_to_string(self.path("output/failure")).expect("no output/failure");
        text.lines().next().unwrap_or("").to_string()
    }

    /// Whatever is in model/ (nothing, after a failure).
    fn model_dir_entries(&self) -> Vec<String> {
        match fs::read_dir(self.path("model")) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Run, expect failure: exit 255, the failure file's first line and
    /// stderr containing every piece of `expected`, and no model written.
    fn expect_failure(&self, expected: &[&str]) -> String {
        let run = self.train();
        assert_eq!(
            run.status.code(),
            Some(255),
            "stdout:\n{}\nstderr:\n{}",
            run.stdout,
            run.stderr
        );
        let first = self.failure();
        for piece in expected {
            assert!(
                first.contains(piece),
                "failure file lacks {piece:?}:\n{first}"
            );
        }
        assert!(
            run.stderr.contains(&first),
            "stderr lacks the reason:\n{}",
            run.stderr
        );
        assert_eq!(
            self.model_dir_entries(),
            Vec::<String>::new(),
            "model/ is not empty"
        );
        first
    }
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    fn ok(self) -> Run {
        assert!(
            self.status.success(),
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// The value of a `NAME=VALUE;` metric line.
    fn metric(&self, name: &str) -> f64 {
        let prefix = format!("{name}=");
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {name} line in:\n{}", self.stdout));
        let value = line[prefix.len()..]
            .strip_suffix(';')
            .expect("metric ends with ;");
        value.parse().unwrap()
    }
}

fn assert_close(got: &LinearModel, want: &LinearModel, tol: f64) {
    assert_eq!(got.weights.len(), want.weights.len());
    assert!(
        (got.bias - want.bias).abs() < tol,
        "bias {} vs {}",
        got.bias,
        want.bias
    );
    for (i, (g, w)) in got.weights.iter().zip(&want.weights).enumerate() {
        assert!((g - w).abs() < tol, "weight {i}: {g} vs {w}");
    }
}

// ---------------------------------------------------------------- fitting

#[test]
fn noiseless_data_in_nested_and_gzipped_files_recovers_the_weights() {
    let want = true_model();
    let data = generate(&want, 3000, 0.0, 1);
    // SDK-style JSON-encoded values, and keys the SDK and tuner inject.
    let tree = Tree::file_mode(
        r#"{"l2": "\"0\"", "sagemaker_program": "\"train.py\"", "sagemaker_submit_directory": "\"s3://b/k\"",
            "_tuning_objective_metric": "validation:rmse"}"#,
        false,
    );
    tree.write("input/data/training/part-0.csv", &data.slice(0, 1000).csv());
    tree.write(
        "input/data/training/sub/part-1.csv.gz",
        &gzip(&data.slice(1000, 2000).csv()),
    );
    tree.write(
        "input/data/training/sub/deeper/part-2.csv",
        &data.slice(2000, 2800).csv(),
    );
    // No extension and no ContentType: CSV.
    tree.write("input/data/training/part-3", &data.slice(2800, 3000).csv());
    // Hidden files and directories are not data; reading them would fail.
    tree.write("input/data/training/.DS_Store", b"\x00\x01binary junk");
    tree.write(
        "input/data/training/.ipynb_checkpoints/part-0.csv",
        b"label,a,b\n",
    );
    let run = tree.train().ok();
    assert_close(&tree.model(), &want, 1e-6);
    // RMSE comes from the sums, not the residuals, so an exact fit shows the
    // sums' rounding: about 1e-8 of the labels' spread, not 0.
    let n = data.rows.len() as f64;
    let mean_y = data.rows.iter().map(|r| r.0).sum::<f64>() / n;
    let std_y = (data
        .rows
        .iter()
        .map(|r| (r.0 - mean_y).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let rmse = run.metric("train:rmse");
    assert!(rmse < 1e-7 * std_y, "rmse {rmse}, label std {std_y}");
    assert!(
        !run.stdout.contains("validation:rmse"),
        "no validation channel"
    );
    let done = run.stdout.lines().last().unwrap();
    assert!(
        done.starts_with("mmp train: done: 3000 records (training 3000)")
            && done.contains(" s, ")
            && done.ends_with(&format!(
                "model written to {}",
                tree.path("model/model.json").display()
            )),
        "{done}"
    );
    assert!(done.contains("MB/s"), "{done}");
    assert!(run.stdout.contains("host algo-1 of 1"), "{}", run.stdout);
    assert!(!tree.path("output/failure").exists());
    assert_eq!(tree.model_dir_entries(), ["model.json"]);
}

#[test]
fn noisy_rmse_is_the_rmse_of_the_fitted_model_on_each_channel() {
    let want = true_model();
    let sigma = 0.5;
    let train = generate(&want, 4000, sigma, 2);
    let valid = generate(&want, 1000, sigma, 3);
    let tree = Tree::file_mode("{}", true);
    tree.write("input/data/training/a.csv", &train.slice(0, 2500).csv());
    tree.write(
        "input/data/training/b.csv.gz",
        &gzip(&train.slice(2500, 4000).csv()),
    );
    tree.write("input/data/validation/v.csv", &valid.csv());
    let run = tree.train().ok();
    let model = tree.model();
    // The printed figures come from the sums; these from the rows.
    let (train_rmse, valid_rmse) = (run.metric("train:rmse"), run.metric("validation:rmse"));
    let (direct_train, direct_valid) = (train.rmse(&model), valid.rmse(&model));
    assert!(
        (train_rmse - direct_train).abs() < 1e-9 * direct_train,
        "{train_rmse} vs {direct_train}"
    );
    assert!(
        (valid_rmse - direct_valid).abs() < 1e-9 * direct_valid,
        "{valid_rmse} vs {direct_valid}"
    );
    // And both are the noise level: least squares fits a little of the
    // training noise (about D/n of its variance), none of validation's.
    assert!((train_rmse / sigma - 1.0).abs() < 0.05, "{train_rmse}");
    assert!((valid_rmse / sigma - 1.0).abs() < 0.08, "{valid_rmse}");
    assert!(train_rmse < direct_valid + 0.05);
    assert_close(&model, &want, 0.05);
    assert!(
        run.stdout
            .contains("done: 5000 records (training 4000, validation 1000)"),
        "{}",
        run.stdout
    );
}

#[test]
fn json_lines_channels_by_content_type_and_by_extension() {
    let want = true_model();
    let data = generate(&want, 600, 0.0, 4);
    // ContentType with parameters; the files' names say nothing.
    let tree = Tree::new(
        "{}",
        r#"{"training": {"ContentType": "application/jsonlines; charset=utf-8", "TrainingInputMode": "File"}}"#,
    );
    tree.write("input/data/training/a.data", &data.slice(0, 300).jsonl());
    tree.write(
        "input/data/training/b.data",
        &gzip(&data.slice(300, 600).jsonl()),
    );
    tree.train().ok();
    assert_close(&tree.model(), &want, 1e-6);

    // No ContentType: each file's extension decides, CSV and JSON lines mixed.
    let tree = Tree::file_mode("{}", false);
    tree.write(
        "input/data/training/a.jsonl.gz",
        &gzip(&data.slice(0, 300).jsonl()),
    );
    tree.write("input/data/training/b.csv", &data.slice(300, 600).csv());
    tree.train().ok();
    assert_close(&tree.model(), &want, 1e-6);
}

/// Ridge regression with an unpenalised intercept, solved directly from
/// the rows (two passes, Gaussian elimination): an independent check.
fn ridge(data: &Data, l2: f64) -> LinearModel {
    let n = data.rows.len() as f64;
    let d = data.rows[0].1.len();
    let mean_x: Vec<f64> = (0..d)
        .map(|j| data.rows.iter().map(|r| r.1[j]).sum::<f64>() / n)
        .collect();
    let mean_y = data.rows.iter().map(|r| r.0).sum::<f64>() / n;
    let mut a = vec![vec![0.0; d + 1]; d];
    for (y, x) in &data.rows {
        for i in 0..d {
            for j in 0..d {
                a[i][j] += (x[i] - mean_x[i]) * (x[j] - mean_x[j]);
            }
            a[i][d] += (x[i] - mean_x[i]) * (y - mean_y);
        }
    }
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += l2;
    }
    for c in 0..d {
        let p = (c..d)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        for r in 0..d {
            if r != c {
                let f = a[r][c] / a[c][c];
                let pivot_row = a[c].clone();
                for (v, pv) in a[r].iter_mut().zip(&pivot_row) {
                    *v -= f * pv;
                }
            }
        }
    }
    let weights: Vec<f64> = (0..d).map(|i| a[i][d] / a[i][i]).collect();
    let bias = mean_y - weights.iter().zip(&mean_x).map(|(w, m)| w * m).sum::<f64>();
    LinearModel { bias, weights }
}

#[test]
fn l2_shrinks_the_weights_and_spares_the_intercept() {
    let mut want = true_model();
    want.bias = 40.0;
    let data = generate(&want, 500, 1.0, 5);
    let norm = |m: &LinearModel| m.weights.iter().map(|w| w * w).sum::<f64>();
    let mut fits = Vec::new();
    for l2 in ["\"0\"", "\"20000\"", "1e12"] {
        let tree = Tree::file_mode(&format!(r#"{{"l2": {}}}"#, serde_json::json!(l2)), false);
        tree.write("input/data/training/a.csv", &data.csv());
        let run = tree.train().ok();
        assert!(
            run.stdout.contains("hyperparameters: l2="),
            "{}",
            run.stdout
        );
        fits.push(tree.model());
    }
    assert!(
        norm(&fits[1]) < 0.9 * norm(&fits[0]),
        "{} vs {}",
        norm(&fits[1]),
        norm(&fits[0])
    );
    assert_close(&fits[0], &ridge(&data, 0.0), 1e-8);
    assert_close(&fits[1], &ridge(&data, 20000.0), 1e-8);
    // Weights crushed to ~0, but the intercept is the label's mean, not 0.
    assert!(norm(&fits[2]) < 1e-6, "{:?}", fits[2].weights);
    let mean_y = data.rows.iter().map(|r| r.0).sum::<f64>() / data.rows.len() as f64;
    assert!(
        (fits[2].bias - mean_y).abs() < 1e-3,
        "{} vs {mean_y}",
        fits[2].bias
    );
}

#[test]
fn score_with_the_trained_model_predicts_bias_plus_w_dot_x() {
    let want = true_model();
    let tree = Tree::file_mode("{}", false);
    tree.write(
        "input/data/training/a.csv",
        &generate(&want, 400, 0.3, 6).csv(),
    );
    tree.train().ok();
    let model = tree.model();
    // Features only: what an endpoint or `score` receives.
    let fresh = generate(&want, 50, 0.0, 7);
    let input: String = fresh
        .rows
        .iter()
        .map(|(_, x)| x.iter().map(f64::to_string).collect::<Vec<_>>().join(",") + "\n")
        .collect();
    tree.write("score.csv", input.as_bytes());
    let out = Command::new(MMP)
        .arg("score")
        .arg("--model-dir")
        .arg(tree.path("model"))
        .arg(tree.path("score.csv"))
        .output()
        .unwrap();
    let run = Run::from(out).ok();
    let preds: Vec<f64> = run.stdout.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(preds.len(), 50);
    for (p, (_, x)) in preds.iter().zip(&fresh.rows) {
        let dot: f64 = model.weights.iter().zip(x).map(|(w, v)| w * v).sum();
        let expected = model.bias + dot;
        assert!(
            (p - expected).abs() <= 1e-12 * expected.abs().max(1.0),
            "{p} vs {expected}"
        );
    }
}

// ---------------------------------------------------------------- failures

#[test]
fn bad_hyperparameters_fail_naming_key_and_value() {
    let tree = Tree::file_mode(r#"{"l2": "\"abc\""}"#, false);
    tree.write("input/data/training/a.csv", b"1,2\n");
    tree.expect_failure(&[
        "hyperparameter \"l2\" has the value \"abc\"",
        "expected a finite number >= 0",
    ]);

    let tree = Tree::file_mode(r#"{"l2": "-1"}"#, false);
    tree.write("input/data/training/a.csv", b"1,2\n");
    tree.expect_failure(&["hyperparameter \"l2\" has the value \"-1\""]);

    let tree = Tree::file_mode(
        r#"{"alpha": "1", "sagemaker_region": "\"eu-west-1\""}"#,
        false,
    );
    tree.write("input/data/training/a.csv", b"1,2\n");
    let msg =
        tree.expect_failure(&["unknown hyperparameter \"alpha\": known hyperparameters are l2"]);
    assert!(
        msg.starts_with("unknown hyperparameter"),
        "cause first: {msg}"
    );
}

#[test]
fn bad_json_configuration_fails_naming_the_file_and_position() {
    let tree = Tree::new("{}", r#"{"training": {"TrainingInputMode": "File"}"#);
    tree.write("input/data/training/a.csv", b"1,2\n");
    tree.expect_failure(&[
        "bad configuration file",
        "input/config/inputdataconfig.json",
        "EOF while parsing an object at line 1 column",
    ]);

    let tree = Tree::file_mode(r#"["l2", "1"]"#, false);
    tree.write("input/data/training/a.csv", b"1,2\n");
    tree.expect_failure(&[
        "input/config/hyperparameters.json",
        "invalid type: sequence, expected a map",
    ]);

    let tree = Tree::new("{}", r#"{"training": {"TrainingInputMode": "Tape"}}"#);
    tree.write("input/data/training/a.csv", b"1,2\n");
    tree.expect_failure(&["inputdataconfig.json", "unknown variant `Tape`"]);
}

#[test]
fn missing_or_empty_channels_fail() {
    let tree = Tree::new("{}", r#"{"validation": {"TrainingInputMode": "File"}}"#);
    tree.write("input/data/validation/a.csv", b"1,2\n");
    tree.expect_failure(&["channel \"training\": required, but inputdataconfig.json does not list it (it lists: validation)"]);

    let tree = Tree::file_mode("{}", false);
    tree.expect_failure(&[
        "channel \"training\": its directory",
        "input/data/training does not exist",
    ]);

    let tree = Tree::file_mode("{}", false);
    tree.write("input/data/training/a.csv", b"\n\n");
    tree.expect_failure(&["channel \"training\": has no records (1 source read)"]);

    let tree = Tree::file_mode("{}", true);
    tree.write(
        "input/data/training/a.csv",
        &generate(&true_model(), 40, 0.0, 8).csv(),
    );
    tree.write("input/data/validation/.hidden", b"1,2\n");
    tree.expect_failure(&["channel \"validation\": no data files in"]);

    let tree = Tree::new(
        "{}",
        r#"{"training": {"ContentType": "application/x-recordio-protobuf", "TrainingInputMode": "File"}}"#,
    );
    tree.write("input/data/training/a.csv", b"1,2\n");
    tree.expect_failure(&[
        "channel \"training\": unsupported content type \"application/x-recordio-protobuf\"",
    ]);
}

#[test]
fn a_bad_record_fails_with_its_file_line_and_byte() {
    let tree = Tree::file_mode("{}", false);
    let good = "1.5,2,3\n2.5,3,4\n";
    tree.write("input/data/training/a.csv", good.as_bytes());
    let lines = ["4,5,6", "", "7,8,9", "10,abc,12"];
    let text = lines.join("\n") + "\n";
    tree.write("input/data/training/sub/b.csv", text.as_bytes());
    // Line 4 is record 3 (blank lines are not records); it starts after
    // "4,5,6\n\n7,8,9\n", 13 bytes.
    let msg = tree.expect_failure(&[
        "bad record in training file",
        "training/sub/b.csv: record 3 (line 4, byte 13): field 2 is not a number: \"abc\"",
    ]);
    assert!(msg.starts_with("bad record in training file"), "{msg}");

    // Inside a gzip file the position is in the decompressed text.
    let tree = Tree::file_mode("{}", false);
    tree.write("input/data/training/a.csv.gz", &gzip(b"1,2,3\n1,2,NaN\n"));
    tree.expect_failure(&[
        "training/a.csv.gz: record 2 (line 2, byte 6): field 3 is not a finite number: \"NaN\"",
    ]);

    let tree = Tree::new(
        "{}",
        r#"{"training": {"ContentType": "application/jsonlines"}}"#,
    );
    tree.write(
        "input/data/training/a",
        b"{\"label\": 1, \"features\": [1, 2]}\n{\"features\": [1, 2]}\n",
    );
    tree.expect_failure(&[
        "training/a: record 2 (line 2, byte 33): not a row: a training record needs a \"label\"",
    ]);
}

#[test]
fn records_of_another_width_fail_naming_where_the_width_was_set() {
    let tree = Tree::file_mode("{}", true);
    let data = generate(&true_model(), 100, 0.0, 9);
    tree.write("input/data/training/a.csv", &data.csv());
    // 15 features instead of 16, in the second file.
    tree.write(
        "input/data/training/b.csv",
        b"1,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n",
    );
    let a = tree.path("input/data/training/a.csv");
    tree.expect_failure(&[
        "training/b.csv: record 1 (line 1, byte 0): expected 17 fields, found 16",
        &format!(
            "the first training record ({}, line 1) has 16 features",
            a.display()
        ),
    ]);

    // Validation must match training's width too.
    let tree = Tree::file_mode("{}", true);
    tree.write("input/data/training/a.csv", &data.csv());
    tree.write("input/data/validation/v.csv", &data.slice(0, 3).csv());
    tree.write("input/data/validation/w.csv", b"1,2,3\n");
    tree.expect_failure(&[
        "bad record in validation file",
        "validation/w.csv: record 1 (line 1, byte 0): expected 17 fields, found 3",
    ]);

    // Within the file that fixed D (the first record set it, so the decoder
    // was not told D yet): line 3 has one feature too many.
    let tree = Tree::file_mode("{}", false);
    tree.write("input/data/training/a.csv", b"1,2,3\n4,5,6\n7,8,9,10\n");
    let a = tree.path("input/data/training/a.csv");
    tree.expect_failure(&[
        "training/a.csv: record 3 (line 3, byte 12): expected 3 fields, found 4",
        &format!(
            "the first training record ({}, line 1) has 2 features",
            a.display()
        ),
    ]);

    // A row with a label but no feature cannot fix D.
    let tree = Tree::file_mode("{}", false);
    tree.write("input/data/training/a.csv", b"1\n2\n");
    tree.expect_failure(&[
        "record 1 (line 1, byte 0): not a row: a training record needs at least one feature",
    ]);
}

#[test]
fn singular_systems_fail_naming_the_likely_cause() {
    let data = generate(&true_model(), 200, 0.1, 10);
    let with = |f: &dyn Fn(&mut Vec<f64>)| {
        let mut d = data.clone();
        d.rows.iter_mut().for_each(|(_, x)| f(x));
        d
    };
    let cases: Vec<(Data, &str)> = vec![
        (
            with(&|x| x[4] = 3.0),
            "feature 5 (CSV column 6) is constant",
        ),
        (
            with(&|x| x[9] = 2.0 * x[2] + 1.0),
            "feature 10 (CSV column 11) duplicates feature 3 (CSV column 4)",
        ),
        (
            data.slice(0, 10),
            "fewer records than features + 1 (need at least 17)",
        ),
    ];
    for (d, cause) in cases {
        let tree = Tree::file_mode("{}", false);
        tree.write("input/data/training/a.csv", &d.csv());
        let msg =
            tree.expect_failure(&["singular system: cannot fit 16 weights and a bias", cause]);
        assert!(msg.starts_with("singular system"), "{msg}");
    }
}

#[test]
fn an_unreadable_gzip_file_fails_as_an_io_error_naming_it() {
    let tree = Tree::file_mode("{}", false);
    // Cut short, as an interrupted copy leaves it: the stream ends inside
    // a deflate block.
    let bytes = gzip(&generate(&true_model(), 50, 0.0, 11).csv());
    let bytes = &bytes[..bytes.len() / 2];
    tree.write("input/data/training/broken.csv.gz", bytes);
    tree.expect_failure(&["error reading", "training/broken.csv.gz: "]);
}

#[test]
fn a_failed_run_leaves_no_model_from_an_earlier_run() {
    let tree = Tree::file_mode(r#"{"l2": "x"}"#, false);
    tree.write("input/data/training/a.csv", b"1,2\n");
    tree.write("model/model.json", br#"{"bias": 1, "weights": [1]}"#);
    tree.expect_failure(&["hyperparameter \"l2\""]);
}

// ---------------------------------------------------------------- Pipe mode

/// Open `fifo` for writing on a thread. The open returns when the reader
/// (`mmp`) opens the other end, so the receiver learns exactly that.
fn open_writer(fifo: &Path) -> mpsc::Receiver<File> {
    let (tx, rx) = mpsc::channel();
    let fifo = fifo.to_path_buf();
    thread::spawn(move || {
        let file = OpenOptions::new().write(true).open(&fifo).unwrap();
        let _ = tx.send(file);
    });
    rx
}

/// Spawn `mmp train` with stdout piped into a channel of lines.
fn spawn(cmd: &mut Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Wait for a stdout line containing `needle`.
fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => continue,
            Err(e) => panic!("no line with {needle:?}: {e}"),
        }
    }
}

/// Wait for the child to exit, up to `limit` (then kill it and fail).
fn wait_exit(mut child: Child, limit: Duration) -> ExitStatus {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(limit) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("mmp train did not exit within {limit:?}");
        }
    }
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn pipe_tree() -> Tree {
    Tree::new(
        "{}",
        r#"{"training": {"TrainingInputMode": "Pipe", "ContentType": "text/csv"},
            "validation": {"TrainingInputMode": "Pipe"}}"#,
    )
}

#[test]
fn pipe_mode_reads_the_fifos_to_their_end() {
    let want = true_model();
    let data = generate(&want, 20_000, 0.0, 12);
    let valid = generate(&want, 500, 0.2, 13);
    let tree = pipe_tree();
    let (train_fifo, valid_fifo) = (
        tree.path("input/data/training_0"),
        tree.path("input/data/validation_0"),
    );
    mkfifo(&train_fifo);
    mkfifo(&valid_fifo);
    let train_w = open_writer(&train_fifo);
    let valid_w = open_writer(&valid_fifo);
    let (child, lines) = spawn(&mut tree.command());
    // Several MB in small writes, so reads see partial records; validation
    // arrives gzipped (CompressionType: Gzip) and is detected by its magic.
    let feeder = thread::spawn(move || {
        let mut w = train_w
            .recv_timeout(LIMIT)
            .expect("mmp never opened training_0");
        for chunk in data.csv().chunks(4093) {
            w.write_all(chunk).unwrap();
        }
        drop(w);
        let mut w = valid_w
            .recv_timeout(LIMIT)
            .expect("mmp never opened validation_0");
        w.write_all(&gzip(&valid.csv())).unwrap();
        valid
    });
    let status = wait_exit(child, LIMIT);
    let stdout: Vec<String> = lines.iter().collect();
    assert!(status.success(), "{status:?}\n{}", stdout.join("\n"));
    let valid = feeder.join().unwrap();
    assert!(
        stdout
            .iter()
            .any(|l| l.contains("channel training: Pipe mode, reading the FIFO")),
        "{stdout:?}"
    );
    assert_close(&tree.model(), &want, 1e-6);
    let line = stdout
        .iter()
        .find(|l| l.starts_with("validation:rmse="))
        .expect("validation metric");
    let printed: f64 = line["validation:rmse=".len()..]
        .trim_end_matches(';')
        .parse()
        .unwrap();
    let direct = valid.rmse(&tree.model());
    assert!(
        (printed - direct).abs() < 1e-9 * direct,
        "{printed} vs {direct}"
    );
}

#[test]
fn pipe_mode_without_its_fifo_fails() {
    let tree = pipe_tree();
    let run = Run::from(
        tree.command()
            .env("MMP_FIFO_WAIT_SECONDS", "0")
            .output()
            .unwrap(),
    );
    assert_eq!(run.status.code(), Some(255), "{}", run.stderr);
    let failure = tree.failure();
    for piece in [
        "channel \"training\": Pipe mode, but there is no FIFO",
        "input/data/training_0: none appeared in 0 s",
    ] {
        assert!(failure.contains(piece), "{failure}");
    }
}

/// `MMP_FIFO_WAIT_SECONDS` comes from the job's Environment: a bad value
/// fails the job as any bad setting does, with a failure file that names
/// it (SageMaker shows it as the FailureReason), not a usage error.
#[test]
fn a_bad_fifo_wait_in_the_environment_fails_the_job_with_a_reason() {
    let tree = pipe_tree();
    let run = Run::from(
        tree.command()
            .env("MMP_FIFO_WAIT_SECONDS", "soon")
            .output()
            .unwrap(),
    );
    assert_eq!(run.status.code(), Some(255), "{}", run.stderr);
    let failure = tree.failure();
    assert!(
        failure.contains("MMP_FIFO_WAIT_SECONDS=\"soon\" is not valid"),
        "{failure}"
    );
}

/// SageMaker makes an epoch's FIFO when the algorithm gets to it, so it
/// may appear after the run starts ("may need retry until it appears",
/// docs/contract.md §4): the run waits for it.
#[test]
fn pipe_mode_waits_for_a_fifo_that_appears_late() {
    let want = true_model();
    let data = generate(&want, 2_000, 0.0, 14);
    let tree = Tree::new(
        "{}",
        r#"{"training": {"TrainingInputMode": "Pipe", "ContentType": "text/csv"}}"#,
    );
    fs::create_dir_all(tree.path("input/data")).unwrap();
    let (child, lines) = spawn(&mut tree.command());
    let fifo = tree.path("input/data/training_0");
    wait_for_line(
        &lines,
        &format!("waiting up to 120 s for the FIFO {}", fifo.display()),
    );
    mkfifo(&fifo);
    let writer = open_writer(&fifo);
    let mut w = writer
        .recv_timeout(LIMIT)
        .expect("mmp never opened training_0");
    w.write_all(&data.csv()).unwrap();
    drop(w);
    let status = wait_exit(child, LIMIT);
    assert!(status.success(), "{status:?}");
    assert_close(&tree.model(), &want, 1e-6);
}

/// SIGTERM, then: the stop exit code promptly, the failure file, no model.
fn expect_stopped(tree: &Tree, child: Child) {
    let sent = Instant::now();
    sigterm(&child);
    let status = wait_exit(child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "took {:?}",
        sent.elapsed()
    );
    let first = tree.failure();
    assert!(first.starts_with("training stopped by SIGTERM"), "{first}");
    assert!(tree.model_dir_entries().is_empty());
}

#[test]
fn sigterm_while_blocked_reading_an_empty_fifo_stops_at_once() {
    let tree = pipe_tree();
    let fifo = tree.path("input/data/training_0");
    mkfifo(&fifo);
    let writer = open_writer(&fifo);
    let (child, _lines) = spawn(&mut tree.command());
    // Held open with nothing written: mmp is blocked in read, not at EOF.
    let held = writer
        .recv_timeout(LIMIT)
        .expect("mmp never opened the FIFO");
    expect_stopped(&tree, child);
    drop(held);
}

#[test]
fn sigterm_while_blocked_opening_a_fifo_with_no_writer_stops_at_once() {
    let tree = pipe_tree();
    mkfifo(&tree.path("input/data/training_0"));
    let (child, lines) = spawn(&mut tree.command());
    // Printed just before the open, which blocks: no writer ever comes.
    wait_for_line(&lines, "channel training: Pipe mode");
    expect_stopped(&tree, child);
}

#[test]
fn progress_lines_while_streaming_then_sigterm_mid_stream() {
    let tree = pipe_tree();
    let fifo = tree.path("input/data/training_0");
    mkfifo(&fifo);
    let writer = open_writer(&fifo);
    let (child, lines) = spawn(tree.command().arg("--progress-interval").arg("0"));
    let mut w = writer
        .recv_timeout(LIMIT)
        .expect("mmp never opened the FIFO");
    // About 3 MB, and the FIFO stays open: mmp has data, then waits.
    w.write_all(&generate(&true_model(), 10_000, 0.0, 14).csv())
        .unwrap();
    let line = wait_for_line(&lines, "mmp train: progress: training: ");
    assert!(
        line.contains(" records, ") && line.ends_with(" MB/s"),
        "{line}"
    );
    expect_stopped(&tree, child);
    drop(w);
}

// ---------------------------------------------------------------- several hosts

/// `algo-1` … `algo-n`, sorted as SageMaker lists them (n < 10).
fn host_names(n: usize) -> Vec<String> {
    (1..=n).map(|k| format!("algo-{k}")).collect()
}

/// Host `k` (1-based) of `n`: its own `/opt/ml`, as each instance has, with
/// the resourceconfig.json SageMaker writes for it.
fn host_tree(hyperparameters: &str, channels: &str, k: usize, n: usize) -> Tree {
    let tree = Tree::new(hyperparameters, channels);
    let rc = serde_json::json!({
        "current_host": format!("algo-{k}"),
        "hosts": host_names(n),
        "network_interface_name": "eth0",
    });
    tree.write(
        "input/config/resourceconfig.json",
        rc.to_string().as_bytes(),
    );
    tree
}

/// What SageMaker does with the hosts' `model/` directories at the end of a
/// job (one model.tar.gz of all of them; local mode copies them into one
/// folder): every file of every host in one directory. Two hosts writing
/// the same name would lose one file, so a clash fails the test.
fn merge_model_dirs(trees: &[Tree]) -> tempfile::TempDir {
    let merged = tempfile::tempdir().unwrap();
    for tree in trees {
        for name in tree.model_dir_entries() {
            let to = merged.path().join(&name);
            assert!(!to.exists(), "two hosts wrote model/{name}");
            fs::copy(tree.path("model").join(&name), to).unwrap();
        }
    }
    merged
}

fn sorted_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `data` with every feature moved by `by` (labels moved to match), so
/// shards can come from different places.
fn shifted(data: Data, by: f64) -> Data {
    let w = true_model().weights;
    let rows = data
        .rows
        .into_iter()
        .map(|(y, x)| {
            let x: Vec<f64> = x.iter().map(|v| v + by).collect();
            (y + by * w.iter().sum::<f64>(), x)
        })
        .collect();
    Data { rows }
}

/// Features-only CSV (what `score` reads) of `data`, in `dir/name`.
fn features_csv(dir: &Path, name: &str, data: &Data) -> PathBuf {
    let text: String = data
        .rows
        .iter()
        .map(|(_, x)| x.iter().map(f64::to_string).collect::<Vec<_>>().join(",") + "\n")
        .collect();
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn score_command(model_dir: &Path, input: &Path) -> Run {
    let out = Command::new(MMP)
        .arg("score")
        .arg("--model-dir")
        .arg(model_dir)
        .arg(input)
        .output()
        .unwrap();
    Run::from(out)
}

/// `mmp score --model-dir model_dir input`'s predictions.
fn score(model_dir: &Path, input: &Path) -> Vec<f64> {
    let run = score_command(model_dir, input).ok();
    run.stdout.lines().map(|l| l.parse().unwrap()).collect()
}

fn assert_same_predictions(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        // 1e-9 relative (absolute below 1).
        assert!(
            (g - w).abs() <= 1e-9 * w.abs().max(1.0),
            "{what}: prediction {i}: {g} vs {w}"
        );
    }
}

const REPLICATED: &str = r#"{"training": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"},
    "validation": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}}"#;
const SHARDED: &str = r#"{"training": {"TrainingInputMode": "File", "S3DistributionType": "ShardedByS3Key"},
    "validation": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}}"#;

#[test]
fn issue_13_fully_replicated_hosts_leave_one_model_written_by_the_first() {
    let data = generate(&true_model(), 800, 0.5, 30);
    let valid = generate(&true_model(), 100, 0.5, 31);
    // Two hosts with the distribution spelled out; three with it absent,
    // which SageMaker treats as FullyReplicated.
    let absent = r#"{"training": {"TrainingInputMode": "File"}, "validation": {}}"#;
    for (n, channels) in [(2, REPLICATED), (3, absent)] {
        let trees: Vec<Tree> = (1..=n)
            .map(|k| {
                let tree = host_tree(r#"{"l2": "3"}"#, channels, k, n);
                tree.write("input/data/training/a.csv", &data.csv());
                tree.write("input/data/validation/v.csv", &valid.csv());
                tree
            })
            .collect();
        let runs: Vec<Run> = trees.iter().map(|t| t.train().ok()).collect();
        assert_eq!(trees[0].model_dir_entries(), ["model.json"]);
        assert!(
            runs[0].stdout.contains(&format!(
                "training is FullyReplicated over {n} hosts: each fits the same data, and this host (algo-1, the first) writes model.json"
            )),
            "{}",
            runs[0].stdout
        );
        for (tree, run) in trees.iter().zip(&runs).skip(1) {
            assert_eq!(tree.model_dir_entries(), Vec::<String>::new());
            assert!(
                run.stdout.contains(
                    "only the first host (algo-1) writes model.json; this host writes nothing"
                ),
                "{}",
                run.stdout
            );
            let done = run.stdout.lines().last().unwrap();
            assert!(
                done.ends_with("no model written: for a FullyReplicated job only the first host (algo-1) writes model.json"),
                "{done}"
            );
            // The same fit, so the same figures.
            for metric in ["train:rmse", "validation:rmse"] {
                assert_eq!(run.metric(metric), runs[0].metric(metric), "{metric}");
            }
            assert!(!run.stdout.contains("warning"), "{}", run.stdout);
        }
        let merged = merge_model_dirs(&trees);
        assert_eq!(sorted_entries(merged.path()), ["model.json"]);
        assert_close(
            &predictor::load(merged.path()).unwrap(),
            &ridge(&data, 3.0),
            1e-8,
        );
    }
}

#[test]
fn issue_13_sharded_hosts_write_statistics_that_score_as_the_fit_on_all_the_data() {
    let want = true_model();
    // Shards of different sizes from different places, so combining them
    // needs the between-shard term. The 5-record shard cannot be fitted
    // alone (16 features) without l2.
    let parts = [
        generate(&want, 700, 0.5, 40),
        shifted(generate(&want, 5, 0.5, 41), 25.0),
        shifted(generate(&want, 1500, 0.5, 42), -300.0),
    ];
    let valid = generate(&want, 200, 0.5, 43);
    let fresh = shifted(generate(&want, 300, 0.0, 44), 7.0);
    for (n, l2) in [(2, 0.0), (3, 150.0)] {
        let hp = format!(r#"{{"l2": "{l2}"}}"#);
        let shards = &parts[..n];
        let all = Data {
            rows: shards.iter().flat_map(|s| s.rows.clone()).collect(),
        };
        // The reference: one host, all the data.
        let single = Tree::new(&hp, SHARDED);
        for (k, shard) in shards.iter().enumerate() {
            single.write(&format!("input/data/training/part-{k}.csv"), &shard.csv());
        }
        single.write("input/data/validation/v.csv", &valid.csv());
        let single_run = single.train().ok();
        assert_eq!(single.model_dir_entries(), ["model.json"]);

        let trees: Vec<Tree> = (1..=n)
            .map(|k| {
                let tree = host_tree(&hp, SHARDED, k, n);
                let shard = &shards[k - 1];
                let half = shard.rows.len() / 2;
                tree.write("input/data/training/a.csv", &shard.slice(0, half).csv());
                tree.write(
                    "input/data/training/b.csv.gz",
                    &gzip(&shard.slice(half, shard.rows.len()).csv()),
                );
                tree.write("input/data/validation/v.csv", &valid.csv());
                tree
            })
            .collect();
        for (k, tree) in trees.iter().enumerate() {
            let host = format!("algo-{}", k + 1);
            let run = tree.train().ok();
            assert_eq!(tree.model_dir_entries(), [format!("stats-{host}.json")]);
            assert!(
                run.stdout.contains(&format!(
                    "training is ShardedByS3Key over {n} hosts: this host fits only its shard"
                )),
                "{}",
                run.stdout
            );
            // No job metric from a partial fit; the shard's own figure under
            // another name, when the shard alone can be fitted.
            assert!(
                !run.stdout
                    .lines()
                    .any(|l| l.starts_with("train:rmse=") || l.starts_with("validation:rmse=")),
                "{}",
                run.stdout
            );
            let shard = &shards[k];
            let fitted = shard.rows.len() > 17 || l2 > 0.0;
            if fitted {
                let own = ridge(shard, l2);
                let printed = run.metric("train_shard:rmse");
                let direct = shard.rmse(&own);
                assert!(
                    (printed - direct).abs() < 1e-6 * direct,
                    "{printed} vs {direct}"
                );
                let printed = run.metric("validation_shard:rmse");
                let direct = valid.rmse(&own);
                assert!(
                    (printed - direct).abs() < 1e-6 * direct,
                    "{printed} vs {direct}"
                );
            } else {
                assert!(
                    run.stdout.contains(
                        "this host's shard alone does not determine the model (singular system"
                    ),
                    "{}",
                    run.stdout
                );
            }
            assert!(
                run.stdout.lines().last().unwrap().contains(&if fitted {
                    format!("(training {}, validation 200), ", shard.rows.len())
                } else {
                    // Without a model of its own, validation is not read.
                    format!("(training {}), ", shard.rows.len())
                }),
                "{}",
                run.stdout
            );
        }
        let merged = merge_model_dirs(&trees);
        let names: Vec<String> = host_names(n)
            .iter()
            .map(|h| format!("stats-{h}.json"))
            .collect();
        assert_eq!(sorted_entries(merged.path()), names);

        // score on the merged directory = score on the single-host model.
        // Measured: 2e-14 relative for two hosts, 1.2e-10 for three (the
        // shards at -300 and +25 make the system ill-conditioned, and the
        // two-pass ridge solve differs from both by as much).
        let input = features_csv(
            merged.path().parent().unwrap(),
            &format!("fresh-{n}.csv"),
            &fresh,
        );
        let got = score(merged.path(), &input);
        let reference = score(&single.path("model"), &input);
        assert_same_predictions(&got, &reference, "score, merged vs single host");
        assert_eq!(got.len(), fresh.rows.len());
        // And the combined weights are least squares on all the rows,
        // solved independently.
        let combined = predictor::load(merged.path()).unwrap();
        assert_close(&combined, &ridge(&all, l2), 1e-8);
        assert_close(&combined, &single.model(), 1e-9);
        // The single host's RMSE is over all the data; so is that of the
        // combined model.
        let rmse = single_run.metric("train:rmse");
        assert!((rmse - all.rmse(&combined)).abs() < 1e-9 * rmse);

        // So does `serve`.
        let server =
            util::Server::start_with(&[], &["--model-dir", merged.path().to_str().unwrap()]);
        let r = server.post("text/csv", None, &fs::read(&input).unwrap());
        assert_eq!(r.status, 200, "{}", r.text());
        let served: Vec<f64> = r.text().lines().map(|l| l.parse().unwrap()).collect();
        assert_same_predictions(&served, &reference, "serve, merged vs single host");
        drop(server);

        // transform --model-dir loads the same way.
        let out = tempfile::tempdir().unwrap();
        let run = Run::from(
            Command::new(MMP)
                .arg("transform")
                .arg("--model-dir")
                .arg(merged.path())
                .arg("--input")
                .arg(&input)
                .arg("--output")
                .arg(out.path())
                .args(["--content-type", "text/csv", "--accept", "text/csv"])
                .args([
                    "--split-type",
                    "Line",
                    "--assemble-with",
                    "Line",
                    "-q",
                    "--no-progress",
                ])
                .output()
                .unwrap(),
        )
        .ok();
        let text = fs::read_to_string(out.path().join(format!("fresh-{n}.csv.out")))
            .unwrap_or_else(|e| panic!("{e}: {}", run.stderr));
        let transformed: Vec<f64> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.parse().unwrap())
            .collect();
        assert_same_predictions(&transformed, &reference, "transform, merged vs single host");
    }
}

/// Train host `k` of `n` (ShardedByS3Key) on `data` with `hp`; return its
/// tree.
fn sharded_host(hp: &str, k: usize, n: usize, data: &Data) -> Tree {
    let tree = host_tree(hp, SHARDED, k, n);
    tree.write("input/data/training/a.csv", &data.csv());
    tree.write("input/data/validation/v.csv", &data.csv());
    tree.train().ok();
    tree
}

/// `mmp score` on `dir` fails as a model load error (exit 66) whose message
/// holds every piece of `expected`.
fn expect_load_error(dir: &Path, expected: &[&str]) {
    let input = dir.parent().unwrap().join("one-row.csv");
    fs::write(&input, b"1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16\n").unwrap();
    let run = score_command(dir, &input);
    assert_eq!(run.status.code(), Some(66), "{}", run.stderr);
    for piece in expected {
        assert!(
            run.stderr.contains(piece),
            "stderr lacks {piece:?}:\n{}",
            run.stderr
        );
    }
    let e = predictor::load(dir).unwrap_err().to_string();
    assert!(e.starts_with("cannot load model from"), "{e}");
}

#[test]
fn issue_13_statistics_from_mismatched_runs_are_a_load_error_naming_the_files() {
    let data = generate(&true_model(), 100, 0.5, 50);
    let narrow = Data {
        rows: data
            .rows
            .iter()
            .map(|(y, x)| (*y, x[..15].to_vec()))
            .collect(),
    };
    let h1 = sharded_host(r#"{"l2": "0"}"#, 1, 2, &data);

    // Another l2 on host 2.
    let h2 = sharded_host(r#"{"l2": "1"}"#, 2, 2, &data);
    let merged = merge_model_dirs(&[h1, h2]);
    expect_load_error(
        merged.path(),
        &["the statistics files are not from one job: stats-algo-1.json has l2 = 0, but stats-algo-2.json has l2 = 1"],
    );

    // Another number of features on host 2.
    let h1 = sharded_host("{}", 1, 2, &data);
    let h2 = sharded_host("{}", 2, 2, &narrow);
    let merged = merge_model_dirs(&[h1, h2]);
    expect_load_error(
        merged.path(),
        &["stats-algo-1.json has 16 features, but stats-algo-2.json has 15 features"],
    );

    // Host 2 of a three-host job next to host 1 of a two-host job.
    let h1 = sharded_host("{}", 1, 2, &data);
    let h2 = sharded_host("{}", 2, 3, &data);
    let merged = merge_model_dirs(&[h1, h2]);
    expect_load_error(
        merged.path(),
        &["stats-algo-1.json has hosts [algo-1, algo-2], but stats-algo-2.json has hosts [algo-1, algo-2, algo-3]"],
    );

    // A host's file is missing: half the data would be lost silently.
    let h1 = sharded_host("{}", 1, 2, &data);
    let merged = merge_model_dirs(&[h1]);
    expect_load_error(
        merged.path(),
        &[
            "missing stats-algo-2.json: the job had hosts algo-1, algo-2",
            "(found stats-algo-1.json)",
        ],
    );
    // A copy under the missing name would count host 1's shard twice.
    fs::copy(
        merged.path().join("stats-algo-1.json"),
        merged.path().join("stats-algo-2.json"),
    )
    .unwrap();
    expect_load_error(
        merged.path(),
        &["stats-algo-2.json: the file is named for another host than the one that wrote it (\"algo-1\")"],
    );

    // A damaged file: cut short, as an interrupted copy leaves it.
    let h1 = sharded_host("{}", 1, 2, &data);
    let h2 = sharded_host("{}", 2, 2, &data);
    let merged = merge_model_dirs(&[h1, h2]);
    let path = merged.path().join("stats-algo-2.json");
    let text = fs::read(&path).unwrap();
    fs::write(&path, &text[..text.len() / 2]).unwrap();
    expect_load_error(
        merged.path(),
        &[&format!(
            "cannot load model from {}: EOF while parsing",
            path.display()
        )],
    );

    // Statistics next to a model.json: two runs in one directory.
    let h1 = sharded_host("{}", 1, 2, &data);
    let h2 = sharded_host("{}", 2, 2, &data);
    let merged = merge_model_dirs(&[h1, h2]);
    fs::write(
        merged.path().join("model.json"),
        serde_json::to_vec(&true_model()).unwrap(),
    )
    .unwrap();
    expect_load_error(
        merged.path(),
        &["holds both model.json and per-host statistics (stats-algo-1.json, stats-algo-2.json)"],
    );
    // Without it, the pair loads.
    fs::remove_file(merged.path().join("model.json")).unwrap();
    assert_close(
        &predictor::load(merged.path()).unwrap(),
        &ridge(
            &Data {
                rows: [data.rows.clone(), data.rows.clone()].concat(),
            },
            0.0,
        ),
        1e-8,
    );
}

/// A sharded validation channel with fewer objects than hosts leaves some
/// host none, as the training channel may: that host has no validation
/// metric, and succeeds.
#[test]
fn an_empty_validation_shard_is_no_failure() {
    let data = generate(&true_model(), 300, 0.5, 62);
    let channels = r#"{"training": {"S3DistributionType": "ShardedByS3Key"},
        "validation": {"S3DistributionType": "ShardedByS3Key"}}"#;
    let tree = host_tree("{}", channels, 2, 2);
    tree.write("input/data/training/a.csv", &data.csv());
    tree.write("input/data/validation/.keep", b"");
    let run = tree.train().ok();
    assert!(
        run.stdout
            .contains("channel validation: this host's shard is empty"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("train_shard:rmse="), "{}", run.stdout);
    assert!(
        !run.stdout.contains("validation_shard:rmse="),
        "{}",
        run.stdout
    );
}

/// The validation channel is read after the fit; its configuration is
/// checked before any data is read, so a bad one costs no pass.
#[test]
fn a_bad_validation_channel_fails_before_training_is_read() {
    let tree = Tree::new(
        "{}",
        r#"{"training": {"TrainingInputMode": "Pipe"},
            "validation": {"ContentType": "image/png"}}"#,
    );
    // No FIFO for training: reading it would wait; the check comes first.
    fs::create_dir_all(tree.path("input/data")).unwrap();
    tree.expect_failure(&["channel \"validation\"", "image/png"]);
}

/// A fit whose sums cannot fit in memory fails with the failure file, not
/// an abort: one record of 300,000 features needs over 1 TB of sums.
#[test]
fn too_many_features_for_memory_fail_with_the_failure_file() {
    let tree = Tree::new("{}", r#"{"training": {}}"#);
    let mut row = b"1".to_vec();
    for _ in 0..300_000 {
        row.extend_from_slice(b",1");
    }
    row.push(b'\n');
    tree.write("input/data/training/wide.csv", &row);
    tree.expect_failure(&[
        "channel \"training\": the first training record",
        "has 300000 features: least squares over them needs 1080.0 GB of memory, more than this machine allows",
    ]);
}

#[test]
fn issue_13_an_empty_shard_still_completes_the_set() {
    // More instances than objects: SageMaker gives some host none ("some
    // nodes won't get any data", API S3DataSource). Host 2's directory has
    // no data file, host 3's file has no record.
    let data = generate(&true_model(), 300, 0.5, 60);
    let valid = generate(&true_model(), 50, 0.5, 61);
    let trees: Vec<Tree> = (1..=3)
        .map(|k| {
            let tree = host_tree("{}", SHARDED, k, 3);
            match k {
                1 => tree.write("input/data/training/a.csv", &data.csv()),
                2 => tree.write("input/data/training/.keep", b""),
                _ => tree.write("input/data/training/empty.csv", b"\n"),
            }
            tree.write("input/data/validation/v.csv", &valid.csv());
            tree
        })
        .collect();
    for (k, tree) in trees.iter().enumerate().skip(1) {
        let run = tree.train().ok();
        assert!(
            run.stdout.contains(
                "this host's shard alone does not determine the model (the shard has no records"
            ),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("records (training 0), "),
            "{}",
            run.stdout
        );
        assert_eq!(
            tree.model_dir_entries(),
            [format!("stats-algo-{}.json", k + 1)]
        );
    }
    trees[0].train().ok();
    let merged = merge_model_dirs(&trees);
    assert_close(
        &predictor::load(merged.path()).unwrap(),
        &ridge(&data, 0.0),
        1e-8,
    );

    // Every shard empty: the job's hosts succeed, but there is no model,
    // and loading says why.
    let trees: Vec<Tree> = (1..=2)
        .map(|k| {
            let tree = host_tree("{}", SHARDED, k, 2);
            tree.write("input/data/training/.keep", b"");
            tree.train().ok();
            tree
        })
        .collect();
    let merged = merge_model_dirs(&trees);
    expect_load_error(
        merged.path(),
        &["every host's shard was empty (stats-algo-1.json, stats-algo-2.json): there are no records to fit"],
    );

    // A missing channel directory is still a configuration error.
    let tree = host_tree("{}", SHARDED, 2, 2);
    tree.expect_failure(&[
        "channel \"training\": its directory",
        "input/data/training does not exist",
    ]);
}

#[test]
fn issue_13_a_current_host_missing_from_hosts_fails_the_job() {
    let tree = Tree::file_mode("{}", false);
    tree.write("input/data/training/a.csv", b"1,2\n");
    tree.write(
        "input/config/resourceconfig.json",
        br#"{"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]}"#,
    );
    tree.expect_failure(&[
        "resourceconfig.json",
        "\"current_host\" \"algo-3\" is not one of \"hosts\" (algo-1, algo-2)",
    ]);
}
