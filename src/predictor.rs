//! The model this container serves: the file to edit to serve your own.
//!
//! It plays the part of `predictor.py` in AWS's `scikit_bring_your_own`
//! sample. Here it is a mock: a linear model read from `model.json`,
//! `{"bias": b, "weights": [w1, ..., wD]}`, whose prediction for a record
//! `x` is `b + w·x` (or, from a job sharded over several hosts, combined
//! from their per-host statistics: [`load`]). To drop in another
//! algorithm, replace [`LinearModel`] with your type, implement [`Model`]
//! for it, and make [`load`] read your artifact from the model directory.
//! Nothing else needs to change: decoding, batching, encoding, HTTP and the
//! CLIs only see the trait.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};
use crate::model::Model;
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
        let path = dir.join(MODEL_FILE);
        let mut text = serde_json::to_vec(self).map_err(|e| Error::config(e.to_string()))?;
        text.push(b'\n');
        crate::output::write(&path, &text)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
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
    crate::train::stats::combine(dir, &stats)
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
}
