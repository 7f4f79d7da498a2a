//! The model this container serves: the file to edit to serve your own.
//!
//! It plays the part of `predictor.py` in AWS's `scikit_bring_your_own`
//! sample. Here it is a mock of Linear Learner's three predictor types:
//! a linear regressor read from `model.json`,
//! `{"bias": b, "weights": [w1, ..., wD]}`, whose prediction for a record
//! `x` is `b + w·x` (or, from a job sharded over several hosts, combined
//! from their per-host statistics: [`load`]), and a binary or multiclass
//! logistic classifier ([`LogisticArtifact`]) answering with its labels.
//! To drop in another algorithm, add your type beside these (the mock's
//! training, benches and tests use them), implement [`Model`] for it
//! (declaring its [`Output`]), and make [`load_model`] read your artifact
//! from the model directory.
//! Nothing else needs to change: decoding, batching, encoding, HTTP and the
//! CLIs only see the trait.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};
use crate::model::{Artifact, ClassLabel, Classes, Model, Output, SharedModel};
use crate::record::Rows;

/// File name of the artifact inside the model directory.
pub const MODEL_FILE: &str = "model.json";

/// `prediction = bias + weights · x`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearModel {
    /// The intercept.
    pub bias: f64,
    /// One weight per feature.
    pub weights: Vec<f64>,
}

impl Model for LinearModel {
    fn num_features(&self) -> Option<usize> {
        Some(self.weights.len())
    }

    fn predict(&self, rows: Rows<'_>, out: &mut Vec<f64>) -> Result<(), Error> {
        out.extend(rows.iter().map(|x| self.predict_one(x)));
        Ok(())
    }
}

impl LinearModel {
    /// Score one record (its width was checked by the decoder).
    #[inline]
    pub fn predict_one(&self, x: &[f64]) -> f64 {
        let dot: f64 = self.weights.iter().zip(x).map(|(w, v)| w * v).sum();
        self.bias + dot
    }

    /// Check the artifact makes sense: finite numbers, at least one weight.
    fn validate(&self) -> Result<(), String> {
        if self.weights.is_empty() {
            return Err("\"weights\" is empty".into());
        }
        if !self.bias.is_finite() || self.weights.iter().any(|w| !w.is_finite()) {
            return Err("bias and weights must be finite numbers".into());
        }
        Ok(())
    }

    /// Write `model.json` into `dir` atomically (a temporary file renamed
    /// into place), so a reader never sees half a model.
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        save_json(self, dir)
    }
}

/// Write `artifact` as `model.json` into `dir` atomically (a temporary file
/// renamed into place), so a reader never sees half a model.
fn save_json(artifact: &impl Serialize, dir: &Path) -> Result<(), Error> {
    let path = dir.join(MODEL_FILE);
    let mut text = serde_json::to_vec(artifact).map_err(|e| Error::config(e.to_string()))?;
    text.push(b'\n');
    // All or nothing for a regular file; a link or device is written
    // through (src/output.rs).
    crate::output::write(&path, &text)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

impl Artifact for LinearModel {
    fn save(&self, dir: &Path) -> Result<(), Error> {
        save_json(self, dir)
    }
}

impl Artifact for LogisticArtifact {
    fn save(&self, dir: &Path) -> Result<(), Error> {
        save_json(self, dir)
    }
}

/// Linear Learner's `predictor_type` of a classifier artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassifierType {
    /// Two classes: one weight vector; `score` is the second class's
    /// probability.
    BinaryClassifier,
    /// K classes: one weight vector per class, softmax.
    MulticlassClassifier,
}

/// A (multinomial) logistic regression, as `model.json`:
/// `{"predictor_type": "multiclass_classifier", "classes": ["setosa", ...],
/// "bias": [b1, ...], "weights": [[w11, ...], ...]}`, one bias and weight
/// row per class (one of each for a binary classifier, the log-odds of the
/// second class). `classes` are sorted (numbers numerically, names by code
/// point), as scikit-learn's `classes_`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogisticArtifact {
    /// Binary or multiclass.
    pub predictor_type: ClassifierType,
    /// The class labels, in output order.
    pub classes: Vec<ClassLabel>,
    /// One intercept per weight row.
    pub bias: Vec<f64>,
    /// One weight row per class (one row for a binary classifier).
    pub weights: Vec<Vec<f64>>,
}

impl LogisticArtifact {
    /// Check the artifact makes sense; `Err` says what is wrong.
    fn validate(&self) -> Result<(), String> {
        let k = self.classes.len();
        if k < 2 {
            return Err(format!(
                "\"classes\" has {k} labels: a classifier needs at least 2"
            ));
        }
        let rows = match self.predictor_type {
            ClassifierType::BinaryClassifier if k != 2 => {
                return Err(format!(
                    "a binary_classifier has 2 classes, \"classes\" has {k}"
                ))
            }
            ClassifierType::BinaryClassifier => 1,
            ClassifierType::MulticlassClassifier => k,
        };
        if self.bias.len() != rows || self.weights.len() != rows {
            return Err(format!(
                "\"bias\" and \"weights\" need {rows} rows for {k} classes, found {} and {}",
                self.bias.len(),
                self.weights.len()
            ));
        }
        let d = self.weights[0].len();
        if d == 0 || self.weights.iter().any(|w| w.len() != d) {
            return Err("\"weights\" rows must be non-empty and of one length".into());
        }
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        if !finite(&self.bias) || !self.weights.iter().all(|w| finite(w)) {
            return Err("bias and weights must be finite numbers".into());
        }
        Ok(())
    }

    /// Write `model.json` into `dir` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        save_json(self, dir)
    }

    /// The model that serves this artifact.
    pub fn into_model(self) -> LogisticModel {
        let d = self.weights[0].len();
        let flat = self.weights.iter().flatten().copied().collect();
        let classes = Arc::new(Classes::new(self.classes.clone()));
        let output = match self.predictor_type {
            ClassifierType::BinaryClassifier => Output::Binary(classes),
            ClassifierType::MulticlassClassifier => Output::Multiclass(classes),
        };
        LogisticModel {
            artifact: self,
            flat,
            features: d,
            output,
        }
    }
}

/// A loaded [`LogisticArtifact`]: its weights in one flat row-major buffer.
#[derive(Debug)]
pub struct LogisticModel {
    artifact: LogisticArtifact,
    flat: Vec<f64>,
    features: usize,
    output: Output,
}

impl LogisticModel {
    /// The artifact it was made from.
    pub fn artifact(&self) -> &LogisticArtifact {
        &self.artifact
    }
}

/// `1 / (1 + e^-z)` without overflow for large `|z|`.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Turn logits into probabilities in place (shifted by the largest, so
/// `exp` never overflows).
#[inline]
pub fn softmax(z: &mut [f64]) {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum;
    }
}

impl Model for LogisticModel {
    fn num_features(&self) -> Option<usize> {
        Some(self.features)
    }

    fn output(&self) -> Output {
        self.output.clone()
    }

    fn predict(&self, rows: Rows<'_>, out: &mut Vec<f64>) -> Result<(), Error> {
        let d = self.features;
        let bias = &self.artifact.bias;
        match self.artifact.predictor_type {
            ClassifierType::BinaryClassifier => {
                let w = &self.flat[..d];
                out.extend(
                    rows.iter().map(|x| {
                        sigmoid(bias[0] + w.iter().zip(x).map(|(w, v)| w * v).sum::<f64>())
                    }),
                );
            }
            ClassifierType::MulticlassClassifier => {
                for x in rows.iter() {
                    let start = out.len();
                    out.extend(
                        self.flat
                            .chunks_exact(d)
                            .zip(bias)
                            .map(|(w, b)| b + w.iter().zip(x).map(|(w, v)| w * v).sum::<f64>()),
                    );
                    softmax(&mut out[start..]);
                }
            }
        }
        Ok(())
    }
}

/// Load whichever model `dir` holds, for `serve`, `score` and `transform`:
/// a classifier's `model.json` (it names its `predictor_type`), else the
/// linear regressor ([`load`]: `model.json` with `bias` and `weights`, or
/// per-host statistics).
///
/// A `model.json` of any type may also hold the test knob
/// `"predict_delay_ms": N`: the model then sleeps N ms before each batch and
/// says it is expensive ([`Model::offload`]), a stand-in for a slow
/// algorithm (tests/serve_slow.rs). Its predictions are unchanged.
pub fn load_model(dir: &Path) -> Result<SharedModel, Error> {
    #[derive(Deserialize)]
    struct Tag {
        predictor_type: Option<serde_json::Value>,
    }
    let path = dir.join(MODEL_FILE);
    let fail = |reason: String| {
        Error::new(ErrorKind::ModelLoad {
            path: path.display().to_string(),
            reason,
        })
    };
    let mut delay = None;
    let mut model: Option<SharedModel> = None;
    if let Ok(raw) = std::fs::read(&path) {
        let text;
        (text, delay) = strip_delay(raw).map_err(fail)?;
        if let Ok(Tag {
            predictor_type: Some(t),
        }) = serde_json::from_slice::<Tag>(&text)
        {
            if t == "regressor" {
                return Err(fail(
                    "a regressor's model.json has only \"bias\" and \"weights\"".into(),
                ));
            }
            let a: LogisticArtifact =
                serde_json::from_slice(&text).map_err(|e| fail(e.to_string()))?;
            a.validate().map_err(fail)?;
            model = Some(Arc::new(a.into_model()));
        }
    }
    let model = match model {
        Some(m) => m,
        None => Arc::new(load(dir)?),
    };
    Ok(match delay {
        None => model,
        Some(delay) => Arc::new(Delayed { model, delay }),
    })
}

/// The name of the test knob in `model.json` ([`load_model`]).
const DELAY_KEY: &str = "predict_delay_ms";

/// `text` without the test knob [`DELAY_KEY`], and the knob's delay; the
/// artifacts themselves deny unknown fields. A text that is not a JSON
/// object is returned as it is, for the artifact's parser to explain.
fn strip_delay(text: Vec<u8>) -> Result<(Vec<u8>, Option<Duration>), String> {
    #[derive(Deserialize)]
    struct Knob {
        predict_delay_ms: Option<serde_json::Value>,
    }
    let Ok(Knob {
        predict_delay_ms: Some(ms),
    }) = serde_json::from_slice::<Knob>(&text)
    else {
        return Ok((text, None));
    };
    let ms = ms.as_u64().ok_or_else(|| {
        format!("\"{DELAY_KEY}\" must be a whole number of milliseconds, found {ms}")
    })?;
    let mut doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    doc.remove(DELAY_KEY);
    let text = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
    Ok((text, Some(Duration::from_millis(ms))))
}

/// A model that sleeps before each batch and says it is expensive: what
/// `predict_delay_ms` makes of a `model.json` ([`load_model`]).
struct Delayed {
    model: SharedModel,
    delay: Duration,
}

impl Model for Delayed {
    fn num_features(&self) -> Option<usize> {
        self.model.num_features()
    }

    fn output(&self) -> Output {
        self.model.output()
    }

    fn predict(&self, rows: Rows<'_>, out: &mut Vec<f64>) -> Result<(), Error> {
        std::thread::sleep(self.delay);
        self.model.predict(rows, out)
    }

    fn offload(&self) -> bool {
        true
    }
}

/// Load the model from `dir` (the model directory): `model.json`, or, from
/// a training job sharded over several hosts (`ShardedByS3Key`), the
/// `stats-<host>.json` files of all its hosts, combined into the fit over
/// all the data (see [`crate::train::stats`]). Every command that reads a
/// model directory (`serve`, `score`, `transform --model-dir`) comes here.
pub fn load(dir: &Path) -> Result<LinearModel, Error> {
    let stats = crate::train::stats::files_in(dir);
    if stats.is_empty() {
        return load_model_file(dir);
    }
    if dir.join(MODEL_FILE).exists() {
        let names: Vec<String> = stats
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        return Err(Error::new(ErrorKind::ModelLoad {
            path: dir.display().to_string(),
            reason: format!(
                "it holds both {MODEL_FILE} and per-host statistics ({}); one training job \
                 writes one or the other, so some are stale (remove them)",
                names.join(", ")
            ),
        }));
    }
    crate::train::stats::combine(dir, &stats, |sums, l2| sums.solve(l2))
}

/// Load `model.json` from `dir`.
fn load_model_file(dir: &Path) -> Result<LinearModel, Error> {
    let path = dir.join(MODEL_FILE);
    let fail = |reason: String| {
        Error::new(ErrorKind::ModelLoad {
            path: path.display().to_string(),
            reason,
        })
    };
    let text = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
    // The test knob is [`load_model`]'s; a `LinearModel` has no delay.
    let (text, _) = strip_delay(text).map_err(fail)?;
    let model: LinearModel = serde_json::from_slice(&text).map_err(|e| fail(e.to_string()))?;
    model.validate().map_err(fail)?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicts_bias_plus_dot() {
        let m = LinearModel {
            bias: 1.0,
            weights: vec![2.0, -1.0],
        };
        let values = [1.0, 1.0, 0.5, 3.0];
        let ends = [2, 4];
        let mut out = Vec::new();
        m.predict(Rows::new(&values, &ends), &mut out).unwrap();
        assert_eq!(out, vec![2.0, -1.0]);
    }

    #[test]
    fn load_names_the_file_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("model.json"), "{e}");
        assert!(e.contains("No such file"), "{e}");
        std::fs::write(
            dir.path().join(MODEL_FILE),
            br#"{"bias": 1, "weights": []}"#,
        )
        .unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("\"weights\" is empty"), "{e}");
        std::fs::write(
            dir.path().join(MODEL_FILE),
            br#"{"bias": 1, "weight": [1]}"#,
        )
        .unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("unknown field `weight`"), "{e}");
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let m = LinearModel {
            bias: 0.25,
            weights: vec![1.0, 0.1, -7.5],
        };
        m.save(dir.path()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), m);
    }

    fn iris_like() -> LogisticModel {
        LogisticArtifact {
            predictor_type: ClassifierType::MulticlassClassifier,
            classes: ["setosa", "versicolor", "virginica"]
                .map(|c| ClassLabel::Text(c.into()))
                .to_vec(),
            bias: vec![0.0, 1.0, -1.0],
            weights: vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.5, 0.5]],
        }
        .into_model()
    }

    #[test]
    fn multiclass_probabilities_are_a_softmax_of_the_logits() {
        let m = iris_like();
        let mut out = Vec::new();
        m.predict(Rows::new(&[2.0, 0.0], &[2]), &mut out).unwrap();
        // Logits 2, 1, 0: softmax computed by hand.
        let e: Vec<f64> = [2.0f64, 1.0, 0.0].iter().map(|z| z.exp()).collect();
        let sum: f64 = e.iter().sum();
        for (got, want) in out.iter().zip(&e) {
            assert!((got - want / sum).abs() < 1e-15);
        }
    }

    #[test]
    fn classifier_answers_with_labels_and_placeholders_in_place() {
        use crate::media::Format;
        use crate::pipeline::{ErrorPolicy, Pipeline, PipelineOptions};
        let opts = PipelineOptions {
            policy: ErrorPolicy::Placeholder,
            ..PipelineOptions::default()
        };
        let model: SharedModel = Arc::new(iris_like());
        let mut p = Pipeline::new(model, Format::Csv, Format::Csv, &opts);
        let mut out = bytes::BytesMut::new();
        p.feed(b"5,0\n1,x\n0,9\n", &mut out).unwrap();
        p.finish(&mut out).unwrap();
        let text = String::from_utf8(out.to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("setosa,"), "{text}");
        assert!(
            lines[1].starts_with("\"ERROR: record 2 (line 2, byte 4): field 2"),
            "{text}"
        );
        assert!(lines[2].starts_with("versicolor,"), "{text}");
        assert_eq!(p.stats().placeholders, 1);
        assert_eq!(p.stats().predictions, 2);
    }

    #[test]
    fn the_delay_knob_makes_any_model_expensive_and_changes_no_prediction() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(MODEL_FILE);
        let rows = Rows::new(&[2.0, 0.0], &[2]);
        for (plain, slow) in [
            (
                r#"{"bias": 1, "weights": [2, -1]}"#,
                r#"{"bias": 1, "predict_delay_ms": 3, "weights": [2, -1]}"#,
            ),
            (
                r#"{"predictor_type": "binary_classifier", "classes": [0, 1], "bias": [0], "weights": [[1, 1]]}"#,
                r#"{"predictor_type": "binary_classifier", "classes": [0, 1], "bias": [0], "weights": [[1, 1]], "predict_delay_ms": 3}"#,
            ),
        ] {
            std::fs::write(&file, plain).unwrap();
            let cheap = load_model(dir.path()).unwrap();
            std::fs::write(&file, slow).unwrap();
            let expensive = load_model(dir.path()).unwrap();
            assert!(!cheap.offload() && expensive.offload(), "{slow}");
            assert_eq!(expensive.output(), cheap.output());
            assert_eq!(expensive.num_features(), cheap.num_features());
            let (mut want, mut got) = (Vec::new(), Vec::new());
            cheap.predict(rows, &mut want).unwrap();
            let started = std::time::Instant::now();
            expensive.predict(rows, &mut got).unwrap();
            assert!(started.elapsed() >= Duration::from_millis(3));
            assert_eq!(got, want);
        }
        // `load`, the regressor's own loader, reads past the knob.
        std::fs::write(
            &file,
            r#"{"bias": 1, "weights": [2, -1], "predict_delay_ms": 3}"#,
        )
        .unwrap();
        assert_eq!(load(dir.path()).unwrap().weights, [2.0, -1.0]);
        for bad in ["-1", "1.5", "\"10\""] {
            std::fs::write(
                &file,
                format!(r#"{{"bias": 1, "weights": [2], "predict_delay_ms": {bad}}}"#),
            )
            .unwrap();
            let e = load_model(dir.path()).err().unwrap().to_string();
            assert!(e.contains("model.json"), "{e}");
            assert!(
                e.contains("\"predict_delay_ms\" must be a whole number of milliseconds"),
                "{e}"
            );
        }
    }

    #[test]
    fn classifier_artifacts_load_and_bad_ones_say_why() {
        let dir = tempfile::tempdir().unwrap();
        iris_like().artifact().save(dir.path()).unwrap();
        let m = load_model(dir.path()).unwrap();
        assert_eq!(m.num_features(), Some(2));
        assert_eq!(m.output().width(), 3);
        std::fs::write(
            dir.path().join(MODEL_FILE),
            br#"{"predictor_type": "binary_classifier", "classes": [0, 1, 2], "bias": [0], "weights": [[1]]}"#,
        )
        .unwrap();
        let e = load_model(dir.path()).err().unwrap().to_string();
        assert!(e.contains("a binary_classifier has 2 classes"), "{e}");
        // The regressor's artifact still loads as one.
        LinearModel {
            bias: 1.0,
            weights: vec![2.0],
        }
        .save(dir.path())
        .unwrap();
        let m = load_model(dir.path()).unwrap();
        assert_eq!(m.output(), Output::Score);
    }
}
