//! The seam between the pipeline and an algorithm: the [`Model`] trait.
//!
//! The pipeline decodes records into batches, calls [`Model::predict`] once
//! per batch, and encodes the predictions; a model never sees bytes, formats
//! or HTTP. A model that is slow per batch says so ([`Model::offload`]) and
//! the server runs it on its compute pool. To serve your own algorithm,
//! implement this trait in `src/predictor.rs` (the file that plays
//! `predictor.py`'s part in AWS's sample) and make its `load` return your
//! model.

use std::panic::catch_unwind;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::record::Rows;

/// A class label as the training data spelt it: a number (`0`, `1`) or a
/// name (`setosa`). Serialised as the JSON number or string itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassLabel {
    /// A finite number; written as an integer when it is one (`1`, not
    /// `1.0`), as Linear Learner writes `"predicted_label": 1`.
    Number(f64),
    /// Any other text.
    Text(String),
}

impl ClassLabel {
    /// The label as text: a name as is, an integral number without `.0`
    /// (exact below 2⁵³), any other number in ryu's shortest form.
    pub fn text(&self) -> String {
        match self {
            ClassLabel::Text(t) => t.clone(),
            ClassLabel::Number(v) if v.fract() == 0.0 && v.abs() < 9.007_199_254_740_992e15 => {
                format!("{}", *v as i64)
            }
            ClassLabel::Number(v) => ryu::Buffer::new().format(*v).to_string(),
        }
    }
}

impl std::fmt::Display for ClassLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

/// The class labels of a classifier, in the order of its outputs (sorted,
/// as scikit-learn's `classes_`), with each label's encoding made once when
/// the model is loaded, so encoding a prediction copies bytes and allocates
/// nothing.
#[derive(Debug, PartialEq)]
pub struct Classes {
    labels: Vec<ClassLabel>,
    /// Each label as a JSON value: a number, or a string escaped by
    /// serde_json.
    json: Vec<String>,
    /// Each label as a CSV field, quoted by `csv_core::Writer` when it holds
    /// a comma, a quote or a line break.
    csv: Vec<Vec<u8>>,
}

impl Classes {
    /// The classes `labels`, in output order (at least two).
    pub fn new(labels: Vec<ClassLabel>) -> Classes {
        let json = labels
            .iter()
            .map(|l| match l {
                ClassLabel::Text(t) => serde_json::Value::from(t.as_str()).to_string(),
                ClassLabel::Number(_) => l.text(),
            })
            .collect();
        let csv = labels
            .iter()
            .map(|l| csv_field(l.text().as_bytes()))
            .collect();
        Classes { labels, json, csv }
    }

    /// The labels, in output order.
    pub fn labels(&self) -> &[ClassLabel] {
        &self.labels
    }

    /// How many classes.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Class `i` as a JSON value.
    #[inline]
    pub fn json(&self, i: usize) -> &[u8] {
        self.json[i].as_bytes()
    }

    /// Class `i` as a CSV field.
    #[inline]
    pub fn csv(&self, i: usize) -> &[u8] {
        &self.csv[i]
    }
}

/// `text` as one CSV field, through `csv_core::Writer` (RFC 4180 quoting,
/// only when needed).
fn csv_field(text: &[u8]) -> Vec<u8> {
    let mut w = csv_core::Writer::new();
    // Quoting at worst doubles every byte and adds two quotes.
    let mut out = vec![0; 2 * text.len() + 2];
    let (_, _, n) = w.field(text, &mut out);
    let (_, m) = w.finish(&mut out[n..]);
    out.truncate(n + m);
    out
}

/// What a model answers for each record: the shape of its predictions.
///
/// [`Model::predict`] writes [`Output::width`] numbers per record into one
/// flat buffer, whatever the shape, so scoring allocates nothing per record.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Output {
    /// One number, a regressor's score.
    #[default]
    Score,
    /// A binary classifier: one number per record, the probability of the
    /// second class (Linear Learner's label 1); the predicted label is the
    /// second class when it is above 0.5, else the first.
    Binary(Arc<Classes>),
    /// A multiclass classifier: one probability per class; the predicted
    /// label is the class of the largest (the first, on a tie).
    Multiclass(Arc<Classes>),
    /// A vector of this many numbers (an embedding).
    Vector(usize),
}

impl Output {
    /// Numbers per record.
    pub fn width(&self) -> usize {
        match self {
            Output::Score | Output::Binary(_) => 1,
            Output::Multiclass(c) => c.len(),
            Output::Vector(n) => *n,
        }
    }

    /// The predicted class of one record's numbers, if a classifier.
    #[inline]
    pub fn label(&self, values: &[f64]) -> Option<usize> {
        match self {
            Output::Binary(_) => Some(usize::from(values[0] > 0.5)),
            Output::Multiclass(_) => {
                let mut best = 0;
                for (k, &p) in values.iter().enumerate() {
                    if p > values[best] {
                        best = k;
                    }
                }
                Some(best)
            }
            Output::Score | Output::Vector(_) => None,
        }
    }

    /// The classes, if a classifier.
    pub fn classes(&self) -> Option<&Classes> {
        match self {
            Output::Binary(c) | Output::Multiclass(c) => Some(c),
            Output::Score | Output::Vector(_) => None,
        }
    }
}

/// An algorithm that scores batches of records.
///
/// `Send + Sync`: one loaded model serves every request at once.
pub trait Model: Send + Sync + 'static {
    /// How many features each record must have, if fixed. Decoders check it,
    /// so a record of the wrong width is reported with its position and never
    /// reaches `predict`.
    fn num_features(&self) -> Option<usize>;

    /// The shape of each record's prediction; a regressor's score unless the
    /// model says otherwise. Asked once per stream, so it may clone an
    /// `Arc`, not build the classes anew.
    fn output(&self) -> Output {
        Output::Score
    }

    /// Append exactly [`Output::width`] numbers per row of `rows` to `out`,
    /// row after row, in order: a score, the second class's probability,
    /// the class probabilities, or the vector.
    ///
    /// An `Err` fails the whole request (HTTP 500); problems with single
    /// records belong in the decoders.
    fn predict(&self, rows: Rows<'_>, out: &mut Vec<f64>) -> Result<(), Error>;

    /// Whether `predict` is expensive: slow enough (a millisecond a batch
    /// or more, or blocking on anything) that the server should not run it
    /// on the async runtime's worker threads, which also answer `/ping` and
    /// every other connection. `true` makes `mmp serve` run each chunk of a
    /// request through decoder, model and encoder on its compute pool
    /// ([`crate::compute`], `MMP_COMPUTE_THREADS`), one hop per body chunk
    /// or WebSocket message; `false` (the default) keeps a cheap model
    /// inline, where a hop would cost more than the prediction. Outputs,
    /// errors and ordering are the same either way.
    fn offload(&self) -> bool {
        false
    }
}

/// A trained model as `mmp train` writes it into the model directory:
/// the training side of the seam.
pub trait Artifact: std::fmt::Debug + Send {
    /// Write the model into `dir` (atomically: a reader never sees half).
    fn save(&self, dir: &Path) -> Result<(), Error>;
}

/// A loaded model, shared by all requests.
pub type SharedModel = Arc<dyn Model>;

/// Load the model from a model directory (`/opt/ml/model` in SageMaker).
pub fn load(dir: &Path) -> Result<SharedModel, Error> {
    load_with(dir, crate::predictor::load_model)
}

/// [`load`] with `loader`: one that panics (a bug in the user's
/// `load_model`) fails as one returning an error would, its message being in
/// the log. So `mmp score` and `transform` exit 66 with a message instead of
/// ending at 101 mid-panic, `serve` exits 66 too, and a multi-model endpoint
/// answers that load request and goes on.
fn load_with(
    dir: &Path,
    loader: fn(&Path) -> Result<SharedModel, Error>,
) -> Result<SharedModel, Error> {
    catch_unwind(|| loader(dir)).unwrap_or_else(|_| {
        Err(Error::new(crate::error::ErrorKind::ModelLoad {
            path: dir.display().to_string(),
            reason: "load_model panicked (see the log)".into(),
        }))
    })
}

/// A model error, for implementations of [`Model::predict`].
pub fn model_error(msg: impl Into<String>) -> Error {
    Error::new(crate::error::ErrorKind::Model(msg.into()))
}

/// The error of a [`Model::predict`] that panicked: a model error like any
/// other, the panic's message being in the log
/// ([`crate::logging::report_panics`]).
pub fn model_panicked() -> Error {
    model_error("predict panicked (see the log)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_model_that_panics_is_a_model_load_error() {
        let Err(e) = load_with(Path::new("/opt/ml/model"), |_| panic!("no weights")) else {
            panic!("a panicking loader loaded");
        };
        assert_eq!(
            e.to_string(),
            "cannot load model from /opt/ml/model: load_model panicked (see the log)"
        );
        assert_eq!(e.exit_code(), 66);
        assert_eq!(e.status(), 500);
    }
}
