//! The JSON files SageMaker writes under `/opt/ml/input/config` before it
//! starts `train`: hyperparameters, the channels' configuration, and the
//! cluster's layout.
//!
//! Each is parsed once, up front, into types, so a bad file fails the job
//! before any data is read, with the file's name and serde_json's line and
//! column in the message.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, ErrorKind};

/// Linear Learner's `predictor_type`: what the model predicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PredictorType {
    /// A number: least squares (the default).
    #[default]
    Regressor,
    /// One of two labels: logistic regression.
    BinaryClassifier,
    /// One of K labels: multinomial (softmax) logistic regression.
    MulticlassClassifier,
}

impl PredictorType {
    /// The hyperparameter's value for this type.
    pub fn name(self) -> &'static str {
        match self {
            PredictorType::Regressor => "regressor",
            PredictorType::BinaryClassifier => "binary_classifier",
            PredictorType::MulticlassClassifier => "multiclass_classifier",
        }
    }
}

/// The hyperparameters this algorithm takes, with their defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hyperparameters {
    /// L2 penalty on the weights (not the bias or intercepts). A regressor
    /// minimises `Σ (y − b − w·x)² + l2 · ‖w‖²`, scikit-learn's
    /// `Ridge(alpha=l2)`; a classifier `Σ logloss + l2 · ‖W‖²`,
    /// scikit-learn's `LogisticRegression(C = 1 / (2·l2))`.
    pub l2: f64,
    /// What the model predicts.
    pub predictor_type: PredictorType,
    /// The number of classes a classifier's training labels must have, if
    /// given (Linear Learner's `num_classes`); checked against the data.
    pub num_classes: Option<usize>,
}

impl Default for Hyperparameters {
    fn default() -> Hyperparameters {
        Hyperparameters {
            l2: 0.0,
            predictor_type: PredictorType::Regressor,
            num_classes: None,
        }
    }
}

/// The keys [`Hyperparameters`] understands, for "unknown key" messages.
pub const KNOWN_HYPERPARAMETERS: &[&str] = &["l2", "num_classes", "predictor_type"];

impl Hyperparameters {
    /// Read `hyperparameters.json`. A missing file means no hyperparameters
    /// (SageMaker always writes one, but a local run need not).
    pub fn read(path: &Path) -> Result<Hyperparameters, Error> {
        match read_json::<BTreeMap<String, Value>>(path)? {
            Some(map) => Hyperparameters::from_map(&map),
            None => Ok(Hyperparameters::default()),
        }
    }

    /// Validate a hyperparameter map.
    ///
    /// SageMaker's map is string → string, and the Python SDK JSON-encodes
    /// each value first (`"\"0.1\""`), so a value is decoded as JSON when it
    /// parses and taken as written when it does not, as the training toolkit
    /// does. Keys the SDK and the platform inject (`sagemaker_*`, and
    /// `_tuning_objective_metric` and other `_*`) are ignored.
    pub fn from_map(map: &BTreeMap<String, Value>) -> Result<Hyperparameters, Error> {
        let mut hp = Hyperparameters::default();
        for (key, raw) in map {
            if key.starts_with("sagemaker_") || key.starts_with('_') {
                continue;
            }
            let text = value_text(key, raw)?;
            match key.as_str() {
                "l2" => hp.l2 = parse_l2(&text)?,
                "predictor_type" => {
                    hp.predictor_type = match text.trim() {
                        "regressor" => PredictorType::Regressor,
                        "binary_classifier" => PredictorType::BinaryClassifier,
                        "multiclass_classifier" => PredictorType::MulticlassClassifier,
                        _ => {
                            return Err(Error::hyperparameter(format!(
                                "hyperparameter \"predictor_type\" has the value {text:?}: \
                                 expected regressor, binary_classifier or multiclass_classifier"
                            )))
                        }
                    }
                }
                "num_classes" => match text.trim().parse::<usize>() {
                    Ok(n) if n >= 2 => hp.num_classes = Some(n),
                    _ => {
                        return Err(Error::hyperparameter(format!(
                            "hyperparameter \"num_classes\" has the value {text:?}: \
                             expected a whole number >= 2"
                        )))
                    }
                },
                _ => {
                    return Err(Error::hyperparameter(format!(
                        "unknown hyperparameter {key:?}: known hyperparameters are {} \
                         (keys starting with sagemaker_ or _ are ignored)",
                        KNOWN_HYPERPARAMETERS.join(", ")
                    )))
                }
            }
        }
        if hp.num_classes.is_some() && hp.predictor_type == PredictorType::Regressor {
            return Err(Error::hyperparameter(
                "hyperparameter \"num_classes\" is for classifiers: set \"predictor_type\" \
                 to binary_classifier or multiclass_classifier",
            ));
        }
        if hp.predictor_type == PredictorType::BinaryClassifier
            && hp.num_classes.is_some_and(|n| n != 2)
        {
            return Err(Error::hyperparameter(format!(
                "hyperparameter \"num_classes\" is {} but a binary_classifier has 2 classes \
                 (use multiclass_classifier)",
                hp.num_classes.unwrap_or(0)
            )));
        }
        Ok(hp)
    }
}

/// A hyperparameter's value as text, with one layer of JSON encoding
/// removed.
fn value_text(key: &str, raw: &Value) -> Result<String, Error> {
    match raw {
        Value::String(s) => Ok(match serde_json::from_str::<Value>(s) {
            Ok(Value::String(inner)) => inner,
            Ok(Value::Number(n)) => n.to_string(),
            _ => s.clone(),
        }),
        // Not SageMaker's format, but unambiguous (a hand-written file).
        Value::Number(n) => Ok(n.to_string()),
        other => Err(Error::hyperparameter(format!(
            "hyperparameter {key:?} has the value {other}, which is not a string \
             (SageMaker passes hyperparameters as strings)"
        ))),
    }
}

fn parse_l2(text: &str) -> Result<f64, Error> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(Error::hyperparameter(format!(
            "hyperparameter \"l2\" has the value {text:?}: expected a finite number >= 0 \
             (the L2 penalty on the weights; 0, the default, means none)"
        ))),
    }
}

/// How a channel's data reaches the container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum InputMode {
    /// Files under `input/data/<channel>/`, downloaded before `train` starts.
    #[default]
    File,
    /// The same files, lazily mounted (read-only); read like `File`.
    FastFile,
    /// A FIFO per epoch, `input/data/<channel>_<epoch>`, streamed from S3.
    Pipe,
}

/// How S3 data is spread over the hosts of a job: the channel's
/// `S3DistributionType` in `inputdataconfig.json` (`S3DataDistributionType`
/// in the CreateTrainingJob request).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum Distribution {
    /// Every host gets all of the channel's data (also SageMaker's default).
    #[default]
    FullyReplicated,
    /// Each host gets a disjoint part of the channel's objects, split by S3
    /// key.
    ShardedByS3Key,
}

/// One channel's entry in `inputdataconfig.json`. Only the keys we act on
/// are read; SageMaker writes others (`CompressionType`, ...).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelConfig {
    /// The channel's media type, if the job set one.
    #[serde(default)]
    pub content_type: Option<String>,
    /// File, FastFile or Pipe.
    #[serde(default)]
    pub training_input_mode: InputMode,
    /// `None` or `RecordIO`; we read only unwrapped records.
    #[serde(default)]
    pub record_wrapper_type: Option<String>,
    /// `FullyReplicated` (the default when absent) or `ShardedByS3Key`.
    #[serde(default, rename = "S3DistributionType")]
    pub s3_distribution_type: Distribution,
}

/// `inputdataconfig.json`: channel name → its configuration. `None` when the
/// file is missing (a local run); the caller then looks for channel
/// directories in File mode.
pub fn read_input_data_config(
    path: &Path,
) -> Result<Option<BTreeMap<String, ChannelConfig>>, Error> {
    read_json(path)
}

/// `resourceconfig.json`: where this container sits in the cluster.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ResourceConfig {
    /// This host's name (`algo-1`).
    #[serde(default)]
    pub current_host: String,
    /// All hosts of the job, sorted.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// Read `resourceconfig.json` when present.
pub fn read_resource_config(path: &Path) -> Result<Option<ResourceConfig>, Error> {
    read_json(path)
}

/// Read and parse a JSON file; `None` if it does not exist.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, Error> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::new(ErrorKind::ConfigFile {
            file: path.to_path_buf(),
            reason: e.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(json: &str) -> Result<Hyperparameters, String> {
        let map: BTreeMap<String, Value> = serde_json::from_str(json).unwrap();
        Hyperparameters::from_map(&map).map_err(|e| e.to_string())
    }

    #[test]
    fn values_may_be_json_encoded_or_plain() {
        assert_eq!(hp(r#"{}"#).unwrap().l2, 0.0);
        assert_eq!(hp(r#"{"l2": "0.5"}"#).unwrap().l2, 0.5);
        assert_eq!(hp(r#"{"l2": "\"0.5\""}"#).unwrap().l2, 0.5);
        assert_eq!(hp(r#"{"l2": " 2 "}"#).unwrap().l2, 2.0);
        assert_eq!(hp(r#"{"l2": 3}"#).unwrap().l2, 3.0);
    }

    #[test]
    fn injected_keys_are_ignored() {
        let h = hp(
            r#"{"sagemaker_program": "\"train.py\"", "_tuning_objective_metric": "validation:rmse",
                       "sagemaker_region": "\"eu-west-1\"", "l2": "1"}"#,
        );
        assert_eq!(h.unwrap().l2, 1.0);
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        let e = hp(r#"{"l3": "1"}"#).unwrap_err();
        assert!(
            e.starts_with("unknown hyperparameter \"l3\": known hyperparameters are l2"),
            "{e}"
        );
        for bad in [r#""abc""#, r#""-1""#, r#""NaN""#, r#""inf""#, r#""\"\"""#] {
            let e = hp(&format!(r#"{{"l2": {bad}}}"#)).unwrap_err();
            assert!(e.starts_with("hyperparameter \"l2\" has the value"), "{e}");
        }
        let e = hp(r#"{"l2": true}"#).unwrap_err();
        assert!(e.contains("not a string"), "{e}");
    }

    #[test]
    fn channel_config_reads_sagemaker_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inputdataconfig.json");
        std::fs::write(
            &path,
            r#"{"training": {"ContentType": "text/csv", "TrainingInputMode": "Pipe",
                "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"},
                "validation": {"TrainingInputMode": "FastFile"}}"#,
        )
        .unwrap();
        let c = read_input_data_config(&path).unwrap().unwrap();
        assert_eq!(c["training"].training_input_mode, InputMode::Pipe);
        assert_eq!(c["training"].content_type.as_deref(), Some("text/csv"));
        assert_eq!(c["validation"].training_input_mode, InputMode::FastFile);
        assert_eq!(
            c["training"].s3_distribution_type,
            Distribution::FullyReplicated
        );
        assert_eq!(
            c["validation"].s3_distribution_type,
            Distribution::FullyReplicated,
            "absent means FullyReplicated"
        );
        std::fs::write(
            &path,
            r#"{"training": {"S3DistributionType": "ShardedByS3Key"}}"#,
        )
        .unwrap();
        let c = read_input_data_config(&path).unwrap().unwrap();
        assert_eq!(
            c["training"].s3_distribution_type,
            Distribution::ShardedByS3Key
        );
        std::fs::write(&path, r#"{"training": {"S3DistributionType": "Sharded"}}"#).unwrap();
        let e = read_input_data_config(&path).unwrap_err().to_string();
        assert!(e.contains("unknown variant `Sharded`"), "{e}");
        assert!(read_input_data_config(&dir.path().join("none"))
            .unwrap()
            .is_none());
        std::fs::write(&path, r#"{"training": {"TrainingInputMode": "Tape"}}"#).unwrap();
        let e = read_input_data_config(&path).unwrap_err().to_string();
        assert!(
            e.contains("inputdataconfig.json") && e.contains("Tape"),
            "{e}"
        );
    }
}
