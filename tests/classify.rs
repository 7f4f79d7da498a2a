//! The classifiers against an independent reference: scikit-learn's
//! `LogisticRegression(C = 1 / (2·l2))` on the iris and breast-cancer sets
//! it ships (tests/reference/sklearn_reference.py, run by the venv that
//! `scripts/setup.sh` makes in `.venv-ref/`). `mmp train` on the same
//! records must give the same class probabilities to 1e-4 and the same
//! predicted labels; and the AWS sample's flow (iris with the species in
//! column 1 → train → score and serve answer species names) must hold.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// Absolute tolerance on each class probability.
const TOL: f64 = 1e-4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// scikit-learn's fit, and the data, written under `dir`.
struct Reference {
    classes: Vec<String>,
    proba: Vec<Vec<f64>>,
    predict: Vec<String>,
}

fn reference(dataset: &str, l2: f64, dir: &Path) -> Reference {
    let python = root().join(".venv-ref/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it installs scikit-learn, the reference)",
        python.display()
    );
    let o = Command::new(python)
        .arg(root().join("tests/reference/sklearn_reference.py"))
        .args([dataset, &l2.to_string()])
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    Reference {
        classes: strings(&v["classes"]),
        proba: v["proba"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_f64().unwrap())
                    .collect()
            })
            .collect(),
        predict: strings(&v["predict"]),
    }
}

fn train(dir: &Path, hyperparameters: &str) -> String {
    let config = dir.join("input/config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("hyperparameters.json"), hyperparameters).unwrap();
    let o = mmp().args(["train", "--opt-ml"]).arg(dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

/// `mmp score` of the features file, as CSV records.
fn score(dir: &Path, accept: &str) -> Vec<u8> {
    let o = mmp()
        .args(["score", "--accept", accept, "--model-dir"])
        .arg(dir.join("model"))
        .arg(dir.join("features.csv"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// `mmp score`'s CSV answers for the features file: the label, then one
/// probability per class.
fn csv_answers(dir: &Path) -> Vec<(String, Vec<f64>)> {
    csv_records(&score(dir, "text/csv"))
        .into_iter()
        .map(|r| {
            let p = r[1..].iter().map(|p| p.parse().unwrap()).collect();
            (r[0].clone(), p)
        })
        .collect()
}

fn csv_records(text: &[u8]) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text)
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

/// Compare answers (label, probabilities of every class) with scikit-learn;
/// returns the largest probability difference.
fn agree(got: &[(String, Vec<f64>)], want: &Reference) -> f64 {
    assert_eq!(got.len(), want.proba.len());
    let mut worst = 0.0f64;
    for (i, ((label, p), (q, l))) in got
        .iter()
        .zip(want.proba.iter().zip(&want.predict))
        .enumerate()
    {
        assert_eq!(label, l, "record {}: predicted label", i + 1);
        assert_eq!(p.len(), q.len());
        for (a, b) in p.iter().zip(q) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(
        worst <= TOL,
        "largest probability difference {worst:e} > {TOL:e}"
    );
    worst
}

#[test]
fn multiclass_iris_matches_scikit_learn() {
    for l2 in [0.5, 0.01] {
        let dir = tempfile::tempdir().unwrap();
        let want = reference("iris", l2, dir.path());
        let log = train(
            dir.path(),
            &format!(
                r#"{{"predictor_type": "multiclass_classifier", "l2": "{l2}", "num_classes": "3"}}"#
            ),
        );
        let passes = log
            .lines()
            .find(|l| l.contains("Newton passes"))
            .unwrap_or("");
        // CSV: the species name, then one probability per class in the
        // order of scikit-learn's classes_.
        let got = csv_answers(dir.path());
        let worst = agree(&got, &want);
        eprintln!("iris, l2 = {l2}: largest |p - p_sklearn| = {worst:.2e}; {passes}");
        let model: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("model/model.json")).unwrap())
                .unwrap();
        assert_eq!(model["classes"], serde_json::json!(want.classes));
        for name in ["train:log_loss=", "train:accuracy="] {
            assert!(log.contains(name), "{log}");
        }
    }
}

/// Features far from zero (iris shifted by 1.7e9, a Unix timestamp's size)
/// fit as well as iris itself: the fit standardises them. Raw, the Hessian
/// spans 18 orders of magnitude and was taken for singular.
#[test]
fn features_far_from_zero_match_scikit_learn() {
    let l2 = 0.5;
    let dir = tempfile::tempdir().unwrap();
    let want = reference("iris_offset", l2, dir.path());
    train(
        dir.path(),
        &format!(r#"{{"predictor_type": "multiclass_classifier", "l2": "{l2}"}}"#),
    );
    let got = csv_answers(dir.path());
    agree(&got, &want);
}

/// scikit-learn's training CSV (label first) as JSON lines: objects
/// `{"label": "setosa", "features": [...]}` and label-first arrays
/// (`["setosa", 5.1, ...]`) alternately, the two row shapes the JSON lines
/// decoder documents. serde_json writes the shortest text that reads back
/// as the same f64, so the records are the CSV's numbers exactly.
fn csv_to_json_lines(csv: &[u8]) -> String {
    let mut out = String::new();
    for (i, r) in csv_records(csv).into_iter().enumerate() {
        let x: Vec<f64> = r[1..].iter().map(|v| v.parse().unwrap()).collect();
        let line = if i % 2 == 0 {
            serde_json::json!({"label": r[0], "features": x})
        } else {
            let mut row = vec![serde_json::json!(r[0])];
            row.extend(x.iter().map(|v| serde_json::json!(v)));
            serde_json::Value::Array(row)
        };
        out += &format!("{line}\n");
    }
    out
}

#[test]
fn json_lines_with_species_labels_match_scikit_learn() {
    let l2 = 0.5;
    let dir = tempfile::tempdir().unwrap();
    let want = reference("iris", l2, dir.path());
    let data = dir.path().join("input/data/training");
    let jsonl = csv_to_json_lines(&std::fs::read(data.join("train.csv")).unwrap());
    std::fs::remove_file(data.join("train.csv")).unwrap();
    std::fs::write(data.join("train.jsonl"), jsonl).unwrap();
    std::fs::create_dir_all(dir.path().join("input/config")).unwrap();
    std::fs::write(
        dir.path().join("input/config/inputdataconfig.json"),
        r#"{"training": {"ContentType": "application/jsonlines"}}"#,
    )
    .unwrap();
    train(
        dir.path(),
        r#"{"predictor_type": "multiclass_classifier", "l2": "0.5"}"#,
    );
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("model/model.json")).unwrap())
            .unwrap();
    // The sorted label set, as scikit-learn's classes_.
    assert_eq!(model["classes"], serde_json::json!(want.classes));
    let got = csv_answers(dir.path());
    let worst = agree(&got, &want);
    eprintln!("iris as JSON lines, l2 = {l2}: largest |p - p_sklearn| = {worst:.2e}");
}

#[test]
fn json_lines_labels_that_are_neither_numbers_nor_strings_fail_at_their_record() {
    let binary = r#"{"predictor_type": "binary_classifier", "l2": "1"}"#;
    let config = r#"{"training": {"ContentType": "application/jsonlines"}}"#;
    let first = "{\"label\": \"a\", \"features\": [0, 1]}\n";
    let cases: &[(&str, &str, &[&str])] = &[
        (
            binary,
            "{\"label\": true, \"features\": [1, 2]}\n",
            &[
                "training file",
                "t.jsonl: record 2 (line 2, byte 35)",
                "invalid type: boolean `true`, expected a label: a number or a string",
            ],
        ),
        (
            binary,
            "[null, 1, 2]\n",
            &["t.jsonl: record 2 (line 2, byte 35)", "invalid type: null"],
        ),
        (
            binary,
            "{\"label\": \"\", \"features\": [1, 2]}\n",
            &["t.jsonl: record 2 (line 2, byte 35): field 1 is empty"],
        ),
        // A number among names, refused as in CSV.
        (
            binary,
            "{\"label\": 1, \"features\": [1, 2]}\n",
            &[
                "mix numbers (1 at record 2, line 2)",
                "\"a\" at record 1, line 1",
            ],
        ),
        // The regressor wants numbers, and says what to use instead, as
        // for CSV.
        (
            "{}",
            "{\"label\": 1, \"features\": [1, 2]}\n",
            &[
                "t.jsonl: record 1 (line 1, byte 0): field 1 is not a number: \"a\"",
                "binary_classifier or multiclass_classifier",
            ],
        ),
    ];
    for (hp, second, want) in cases {
        let text = format!("{first}{second}");
        let dir = tree(&[
            ("input/config/hyperparameters.json", hp),
            ("input/config/inputdataconfig.json", config),
            ("input/data/training/t.jsonl", &text),
        ]);
        let (ok, log, failure) = run(dir.path());
        assert!(!ok, "{log}");
        for w in *want {
            assert!(failure.contains(w), "want {w:?} in: {failure}");
        }
        assert!(!dir.path().join("model/model.json").exists());
    }
}

#[test]
fn binary_breast_cancer_matches_scikit_learn() {
    let l2 = 0.5;
    let dir = tempfile::tempdir().unwrap();
    let want = reference("breast_cancer", l2, dir.path());
    assert_eq!(want.classes, ["0", "1"]);
    train(
        dir.path(),
        r#"{"predictor_type": "binary_classifier", "l2": "0.5"}"#,
    );
    // JSON lines per Linear Learner: score is the probability of the
    // second label (scikit-learn's classes_[1]); predicted_label a number.
    let text = String::from_utf8(score(dir.path(), "application/jsonlines")).unwrap();
    let got: Vec<(String, Vec<f64>)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let p = v["score"].as_f64().unwrap();
            assert!(v["predicted_label"].is_u64(), "{l}");
            (v["predicted_label"].to_string(), vec![1.0 - p, p])
        })
        .collect();
    let worst = agree(&got, &want);
    eprintln!("breast cancer, l2 = {l2}: largest |p - p_sklearn| = {worst:.2e}");
}

#[test]
fn separable_data_without_l2_fail_naming_l2() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("input/data/training");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("t.csv"), "no,0\nno,1\nyes,2\nyes,3\n").unwrap();
    std::fs::create_dir_all(dir.path().join("input/config")).unwrap();
    std::fs::write(
        dir.path().join("input/config/hyperparameters.json"),
        r#"{"predictor_type": "binary_classifier"}"#,
    )
    .unwrap();
    let o = mmp()
        .args(["train", "--opt-ml"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let failure = std::fs::read_to_string(dir.path().join("output/failure")).unwrap();
    assert!(failure.contains("separable"), "{failure}");
    assert!(failure.contains("l2 > 0"), "{failure}");
    assert!(!dir.path().join("model/model.json").exists());
}

#[test]
fn iris_species_train_then_serve_answers_species_names() {
    let dir = tempfile::tempdir().unwrap();
    let want = reference("iris", 0.5, dir.path());
    train(
        dir.path(),
        r#"{"predictor_type": "multiclass_classifier", "l2": "0.5"}"#,
    );
    let features = std::fs::read(dir.path().join("features.csv")).unwrap();
    let model = dir.path().join("model");
    let s = Server::start_with(&[], &["--model-dir", model.to_str().unwrap()]);

    // A headerless feature CSV in, one species name first on each line out.
    let r = s.post("text/csv", Some("text/csv"), &features);
    assert_eq!(r.status, 200, "{}", r.text());
    let names: Vec<String> = csv_records(r.text().as_bytes())
        .into_iter()
        .map(|rec| rec[0].clone())
        .collect();
    assert_eq!(names, want.predict);
    // `mmp score` answers byte for byte as the server.
    assert_eq!(score(dir.path(), "text/csv"), r.text().as_bytes());

    // JSON: {"predictions": [{"score": [...], "predicted_label": "setosa"}]}.
    let r = s.post("text/csv", Some("application/json"), &features);
    assert_eq!(r.status, 200);
    let v = r.json();
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), want.predict.len());
    for (p, (name, q)) in preds.iter().zip(want.predict.iter().zip(&want.proba)) {
        assert_eq!(p["predicted_label"], name.as_str());
        let score = p["score"].as_array().unwrap();
        assert_eq!(score.len(), 3);
        for (a, b) in score.iter().zip(q) {
            assert!((a.as_f64().unwrap() - b).abs() <= TOL);
        }
        assert_eq!(p.as_object().unwrap().len(), 2, "{p}");
    }
    // JSON lines: one such object per line.
    let r = s.post("text/csv", Some("application/jsonlines"), &features);
    assert_eq!(r.status, 200);
    let labels: Vec<String> = r
        .text()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["predicted_label"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(labels, want.predict);
}

// ------------------------------------------------- passes and bad labels

/// Two overlapping classes ("a", "b") or three, 2 features: not separable.
fn synthetic(classes: usize) -> String {
    let mut s = String::new();
    for i in 0..90u32 {
        let (x1, x2) = (f64::from(i % 10), f64::from((i * 7) % 11));
        let k = ((i % 10) / 4 + (i % 3)) as usize % classes;
        s += &format!("{},{x1},{x2}\n", ["a", "b", "c"][k]);
    }
    s
}

/// Run `mmp train` on `dir`; (success, stdout, failure file).
fn run(dir: &Path) -> (bool, String, String) {
    let o = mmp().args(["train", "--opt-ml"]).arg(dir).output().unwrap();
    let failure = std::fs::read_to_string(dir.join("output/failure")).unwrap_or_default();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        failure,
    )
}

#[test]
fn pipe_mode_opens_one_fifo_per_pass_and_fits_as_file_mode() {
    let data = synthetic(3);
    let hp = r#"{"predictor_type": "multiclass_classifier", "l2": "0.1"}"#;
    let file = tree(&[
        ("input/data/training/t.csv", &data),
        ("input/config/hyperparameters.json", hp),
    ]);
    let (ok, log, failure) = run(file.path());
    assert!(ok, "{log}{failure}");
    let file_model = std::fs::read(file.path().join("model/model.json")).unwrap();

    let pipe = tree(&[
        ("input/config/hyperparameters.json", hp),
        (
            "input/config/inputdataconfig.json",
            r#"{"training": {"TrainingInputMode": "Pipe", "ContentType": "text/csv"}}"#,
        ),
    ]);
    // One FIFO per epoch, each written by its own thread once mmp opens it.
    let epochs = 30;
    let fifos: Vec<PathBuf> = (0..epochs)
        .map(|e| pipe.path().join(format!("input/data/training_{e}")))
        .collect();
    std::fs::create_dir_all(pipe.path().join("input/data")).unwrap();
    for f in &fifos {
        mkfifo(f);
        let (f, data) = (f.clone(), data.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            if let Ok(mut w) = std::fs::OpenOptions::new().write(true).open(&f) {
                let _ = w.write_all(data.as_bytes());
            }
        });
    }
    let (ok, log, failure) = run(pipe.path());
    // Unblock the writers of the epochs the fit did not need.
    let used = log.lines().find_map(|l| {
        l.split(" reads with the label scan")
            .next()?
            .rsplit('(')
            .next()?
            .parse::<usize>()
            .ok()
    });
    let used = used.unwrap_or_else(|| panic!("{log}{failure}"));
    for f in &fifos[used..] {
        let _ = std::fs::read(f);
    }
    assert!(ok, "{log}{failure}");
    assert!(used > 2, "{log}");
    // The same passes over the same records: the same model, bit for bit.
    assert_eq!(
        std::fs::read(pipe.path().join("model/model.json")).unwrap(),
        file_model
    );

    // Regular files in the FIFOs' places, one per pass, with these records.
    let epochs = |passes: &[&str]| {
        let names: Vec<String> = (0..passes.len())
            .map(|e| format!("input/data/training_{e}"))
            .collect();
        let mut files = vec![
            ("input/config/hyperparameters.json", hp),
            (
                "input/config/inputdataconfig.json",
                r#"{"training": {"TrainingInputMode": "Pipe"}}"#,
            ),
        ];
        files.extend(names.iter().map(String::as_str).zip(passes.iter().copied()));
        tree(&files)
    };

    // A pass whose FIFO never appears says which.
    let short = epochs(&[&data, &data]);
    let o = mmp()
        .args(["train", "--opt-ml"])
        .arg(short.path())
        .env("MMP_FIFO_WAIT_SECONDS", "0")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let failure = std::fs::read_to_string(short.path().join("output/failure")).unwrap();
    assert!(
        failure.contains("no FIFO")
            && failure.contains("training_2 for pass 3 of the classifier's fit"),
        "{failure}"
    );

    // A pass that reads fewer records than the first (an epoch cut short)
    // fails saying so, instead of comparing losses over other records.
    let half: String = data
        .lines()
        .take(data.lines().count() / 2)
        .map(|l| format!("{l}\n"))
        .collect();
    let cut = epochs(&[&data, &data, &half]);
    let (ok, _, failure) = run(cut.path());
    assert!(!ok);
    assert!(
        failure.contains("pass 3 over it read") && failure.contains("but the first read"),
        "{failure}"
    );
}

#[test]
fn bad_labels_and_settings_fail_saying_what_and_where() {
    let binary = r#"{"predictor_type": "binary_classifier", "l2": "1"}"#;
    let multi = r#"{"predictor_type": "multiclass_classifier", "l2": "1", "num_classes": "4"}"#;
    let cases: &[(&str, &str, Option<&str>, &[&str])] = &[
        // Numbers and names mixed, as scikit-learn also refuses.
        (
            binary,
            "1,0\na,1\n",
            None,
            &[
                "mix numbers (1 at record 1, line 1)",
                "\"a\" at record 2, line 2",
            ],
        ),
        // Three labels for a binary classifier.
        (
            binary,
            "a,0\nb,1\nc,2\n",
            None,
            &["has 3 distinct labels (a, b, c), expected 2"],
        ),
        // num_classes checked against the data.
        (
            multi,
            &synthetic(3),
            None,
            &["has 3 distinct labels", "num_classes 4"],
        ),
        // A validation label the training data never had.
        (
            binary,
            &synthetic(2),
            Some("a,1,1\nzebra,2,2\n"),
            &[
                "validation file",
                "record 2 (line 2, byte 6)",
                "its label \"zebra\" is not one of the training channel's labels (a, b)",
            ],
        ),
        // The regressor still wants numbers, and says what to use instead.
        (
            "{}",
            "setosa,1\n",
            None,
            &[
                "record 1 (line 1, byte 0): field 1 is not a number: \"setosa\"",
                "binary_classifier or multiclass_classifier",
            ],
        ),
    ];
    for (hp, train, valid, want) in cases {
        let mut files = vec![
            ("input/config/hyperparameters.json", *hp),
            ("input/data/training/t.csv", *train),
        ];
        if let Some(v) = valid {
            files.push(("input/data/validation/v.csv", v));
        }
        let dir = tree(&files);
        let (ok, log, failure) = run(dir.path());
        assert!(!ok, "{log}");
        for w in *want {
            assert!(failure.contains(w), "want {w:?} in: {failure}");
        }
        assert!(!dir.path().join("model/model.json").exists());
    }
}

#[test]
fn sharded_classifiers_are_refused() {
    let dir = tree(&[
        (
            "input/config/hyperparameters.json",
            r#"{"predictor_type": "binary_classifier"}"#,
        ),
        (
            "input/config/inputdataconfig.json",
            r#"{"training": {"S3DistributionType": "ShardedByS3Key"}}"#,
        ),
        (
            "input/config/resourceconfig.json",
            r#"{"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]}"#,
        ),
        ("input/data/training/t.csv", &synthetic(2)),
    ]);
    let (ok, _, failure) = run(dir.path());
    assert!(!ok);
    assert!(
        failure.contains("ShardedByS3Key is not supported for classifiers")
            && failure.contains("use FullyReplicated"),
        "{failure}"
    );
}

#[test]
fn fully_replicated_classifiers_write_from_the_first_host_only() {
    let hp = r#"{"predictor_type": "multiclass_classifier", "l2": "0.1"}"#;
    for (host, writes) in [("algo-1", true), ("algo-2", false)] {
        let rc = format!(r#"{{"current_host": "{host}", "hosts": ["algo-1", "algo-2"]}}"#);
        let dir = tree(&[
            ("input/config/hyperparameters.json", hp),
            ("input/config/resourceconfig.json", &rc),
            ("input/data/training/t.csv", &synthetic(3)),
        ]);
        let (ok, log, failure) = run(dir.path());
        assert!(ok, "{log}{failure}");
        assert_eq!(
            dir.path().join("model/model.json").exists(),
            writes,
            "{host}: {log}"
        );
        // Every host prints the job's metrics: they fit the same model.
        assert!(log.contains("train:accuracy="), "{log}");
    }
}
