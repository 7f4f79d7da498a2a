//! The job's settings: SageMaker's `CreateTransformJob` parameters, resolved
//! once from the command line, the container and the defaults, then checked.
//!
//! Precedence (docs/contract.md §3, "Lifecycle"): a value
//! given on the command line wins; otherwise the container's
//! `GET /execution-parameters` answer, used only when it is HTTP 200 (as
//! SageMaker and its local mode do); otherwise SageMaker's defaults:
//! `MaxPayloadInMB` 6, `MaxConcurrentTransforms` 1, `BatchStrategy`
//! `MultiRecord` (the last is what local mode uses; no primary source gives
//! it, §3 "Defaults").

use crate::batch::{BatchStrategy, ExecutionParameters};
use std::time::Duration;

use crate::media::{ContentType, Format};

use super::dataprocessing::DataProcessing;
use crate::error::{Error, Result};

/// `TransformInput.SplitType`: how a file is cut into records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SplitType {
    /// The whole file is one request (SageMaker's default).
    #[default]
    None,
    /// One record per line.
    Line,
    /// MXNet RecordIO records.
    RecordIO,
    /// TensorFlow TFRecord records.
    TFRecord,
}

impl SplitType {
    /// Whether the file is cut into records.
    pub fn splits(self) -> bool {
        self != SplitType::None
    }
}

/// `TransformInput.CompressionType`: SageMaker decompresses the input
/// before splitting it (API reference, `TransformInput`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CompressionType {
    /// The input as it is.
    #[default]
    None,
    /// Gzip, decompressed as it is read.
    Gzip,
}

/// `TransformOutput.AssembleWith`: how responses are put together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AssembleWith {
    /// Responses concatenated byte for byte (SageMaker's default).
    #[default]
    None,
    /// Every response ends with exactly one `\n` (see `output.rs`).
    Line,
}

/// `DataProcessing.JoinSource`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JoinSource {
    /// The output holds the inferences only.
    #[default]
    None,
    /// Each output record is joined with its original input record.
    Input,
}

/// SageMaker's default `MaxPayloadInMB`.
pub const DEFAULT_MAX_PAYLOAD_MB: u32 = 6;
/// SageMaker's default `MaxConcurrentTransforms` when the container does not
/// ask for another.
pub const DEFAULT_MAX_CONCURRENT: u32 = 1;
/// `MaxPayloadInMB` may not exceed 100, nor may `MaxConcurrentTransforms ×
/// MaxPayloadInMB` (docs/contract.md §3, "Limits").
pub const MAX_PAYLOAD_MB: u32 = 100;
/// One "MB" of `MaxPayloadInMB`: a mebibyte, as the API's 6 MiB payloads.
pub const MB: u64 = 1024 * 1024;

/// Values given on the command line (each `None` when not given).
#[derive(Clone, Debug, Default)]
pub struct Requested {
    /// `--split-type`.
    pub split: Option<SplitType>,
    /// `--batch-strategy`.
    pub strategy: Option<BatchStrategy>,
    /// `--max-payload-mb`.
    pub max_payload_mb: Option<u32>,
    /// `--max-concurrent`.
    pub max_concurrent: Option<u32>,
    /// `--assemble-with`.
    pub assemble: Option<AssembleWith>,
}

/// The resolved settings of a job.
#[derive(Clone, Debug)]
pub struct Plan {
    /// `Content-Type` sent with each request (none if not given, as
    /// SageMaker sends none without `TransformInput.ContentType`).
    pub content_type: Option<String>,
    /// `Accept` sent with each request.
    pub accept: Option<String>,
    /// The input's format, when the content type is one we know.
    pub input_format: Option<Format>,
    /// The output's format, when the accept type is one we know.
    pub output_format: Option<Format>,
    /// `SplitType`.
    pub split: SplitType,
    /// `BatchStrategy`.
    pub strategy: BatchStrategy,
    /// `MaxPayloadInMB` (0: each file streamed whole, chunked).
    pub max_payload_mb: u32,
    /// `MaxConcurrentTransforms`.
    pub max_concurrent: u32,
    /// `AssembleWith`.
    pub assemble: AssembleWith,
    /// `CompressionType`.
    pub compression: CompressionType,
    /// `DataProcessing`, when not the identity.
    pub data_processing: Option<DataProcessing>,
    /// `InvocationsTimeoutInSeconds`.
    pub timeout: Duration,
    /// `InvocationsMaxRetries`.
    pub max_retries: u32,
    /// Where each value came from, for the log ("MaxPayloadInMB=6 (default)").
    pub sources: Vec<String>,
}

impl Plan {
    /// The payload limit in bytes; `None` for `MaxPayloadInMB=0` (no limit:
    /// the file is streamed in one chunked request).
    pub fn payload_limit(&self) -> Option<u64> {
        (self.max_payload_mb > 0).then(|| self.max_payload_mb as u64 * MB)
    }
}

/// A media type given as an option: short names (`csv`, `jsonl`, `json`)
/// become their media type; anything else is sent as given (a container may
/// take types we do not know, e.g. `image/jpeg`).
pub fn media_type_option(s: &str) -> (String, Option<Format>) {
    match ContentType::parse_option(s) {
        Ok(ct) => {
            let is_short = !s.contains('/');
            let value = if is_short {
                ct.format.mime().to_string()
            } else {
                s.trim().to_string()
            };
            (value, Some(ct.format))
        }
        Err(_) => (s.trim().to_string(), None),
    }
}

/// Check the command-line values against `CreateTransformJob`'s limits
/// (docs/contract.md §3, "Limits").
pub fn check_requested(req: &Requested, timeout_secs: f64, retries: u32) -> Result<()> {
    if let Some(mb) = req.max_payload_mb {
        if mb > MAX_PAYLOAD_MB {
            return Err(validation(
                &mb.to_string(),
                "maxPayloadInMB",
                "Member must have value less than or equal to 100",
            ));
        }
    }
    if req.max_concurrent == Some(0) {
        return Err(Error::config("--max-concurrent must be at least 1"));
    }
    if let (Some(mb), Some(n)) = (req.max_payload_mb, req.max_concurrent) {
        if mb as u64 * n as u64 > MAX_PAYLOAD_MB as u64 {
            return Err(Error::config(format!(
                "MaxConcurrentTransforms ({n}) × MaxPayloadInMB ({mb}) must not exceed 100 MB"
            )));
        }
    }
    if !(timeout_secs > 0.0 && timeout_secs <= 3600.0) {
        return Err(Error::config(format!(
            "--timeout {timeout_secs}: must be more than 0 and at most 3600 seconds (InvocationsTimeoutInSeconds)"
        )));
    }
    if retries > 3 {
        return Err(validation(
            &retries.to_string(),
            "modelClientConfig.invocationsMaxRetries",
            "Member must have value less than or equal to 3",
        ));
    }
    Ok(())
}

/// AWS's request-validation wording, as `CreateTransformJob` answers it.
pub fn validation(value: &str, member: &str, constraint: &str) -> Error {
    Error::config(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
    ))
}

/// Resolve each setting: command line, then the container (if it answered
/// 200), then SageMaker's defaults.
pub fn resolve(
    req: &Requested,
    container: Option<&ExecutionParameters>,
    default_concurrent: u32,
) -> (
    SplitType,
    BatchStrategy,
    u32,
    u32,
    AssembleWith,
    Vec<String>,
) {
    let mut sources = Vec::new();
    let c = container.copied().unwrap_or_default();
    fn pick<T: Copy + std::fmt::Debug>(
        name: &str,
        cli: Option<T>,
        container: Option<T>,
        default: T,
        sources: &mut Vec<String>,
    ) -> T {
        let (v, from) = match (cli, container) {
            (Some(v), _) => (v, "command line"),
            (None, Some(v)) => (v, "container"),
            (None, None) => (default, "default"),
        };
        sources.push(format!("{name}={v:?} ({from})"));
        v
    }
    let split = pick("SplitType", req.split, None, SplitType::None, &mut sources);
    let strategy = pick(
        "BatchStrategy",
        req.strategy,
        c.strategy,
        BatchStrategy::MultiRecord,
        &mut sources,
    );
    let mb = pick(
        "MaxPayloadInMB",
        req.max_payload_mb,
        c.max_payload_mb,
        DEFAULT_MAX_PAYLOAD_MB,
        &mut sources,
    );
    let n = pick(
        "MaxConcurrentTransforms",
        req.max_concurrent,
        c.max_concurrent,
        default_concurrent,
        &mut sources,
    );
    let assemble = pick(
        "AssembleWith",
        req.assemble,
        None,
        AssembleWith::None,
        &mut sources,
    );
    (split, strategy, mb, n, assemble, sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_the_strategy() {
        for s in ["MULTI_RECORD", "MultiRecord", "multirecord"] {
            assert_eq!(BatchStrategy::parse(s), Some(BatchStrategy::MultiRecord));
        }
        for s in ["SINGLE_RECORD", "SingleRecord"] {
            assert_eq!(BatchStrategy::parse(s), Some(BatchStrategy::SingleRecord));
        }
        assert_eq!(BatchStrategy::parse("MULTI"), None);
    }

    #[test]
    fn execution_parameters_from_the_documented_body() {
        let mut notes = Vec::new();
        let p = ExecutionParameters::from_json(
            br#"{"MaxConcurrentTransforms": 8, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}"#,
            &mut notes,
        );
        assert_eq!(
            p,
            ExecutionParameters {
                max_concurrent: Some(8),
                strategy: Some(BatchStrategy::MultiRecord),
                max_payload_mb: Some(6)
            }
        );
        assert!(notes.is_empty());
        let p = ExecutionParameters::from_json(
            br#"{"MaxConcurrentTransforms": 0, "BatchStrategy": "X", "MaxPayloadInMB": 500}"#,
            &mut notes,
        );
        assert_eq!(p, ExecutionParameters::default());
        assert_eq!(notes.len(), 2, "{notes:?}");
    }

    #[test]
    fn command_line_then_container_then_defaults() {
        let container = ExecutionParameters {
            max_concurrent: Some(4),
            strategy: Some(BatchStrategy::SingleRecord),
            max_payload_mb: Some(2),
        };
        let req = Requested {
            max_payload_mb: Some(1),
            ..Requested::default()
        };
        let (split, strategy, mb, n, assemble, _) = resolve(&req, Some(&container), 1);
        assert_eq!(split, SplitType::None);
        assert_eq!(strategy, BatchStrategy::SingleRecord);
        assert_eq!((mb, n), (1, 4));
        assert_eq!(assemble, AssembleWith::None);
        let (_, strategy, mb, n, _, sources) = resolve(&Requested::default(), None, 1);
        assert_eq!((strategy, mb, n), (BatchStrategy::MultiRecord, 6, 1));
        assert!(sources.contains(&"MaxPayloadInMB=6 (default)".to_string()));
    }

    #[test]
    fn limits_of_create_transform_job() {
        let req = Requested {
            max_payload_mb: Some(101),
            ..Requested::default()
        };
        let e = check_requested(&req, 600.0, 3).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("1 validation error detected: Value '101' at 'maxPayloadInMB'"));
        let req = Requested {
            max_payload_mb: Some(30),
            max_concurrent: Some(4),
            ..Requested::default()
        };
        assert!(check_requested(&req, 600.0, 3).is_err());
        assert!(check_requested(&Requested::default(), 0.0, 3).is_err());
        assert!(check_requested(&Requested::default(), 1.0, 4).is_err());
        assert!(check_requested(&Requested::default(), 0.5, 0).is_ok());
    }

    #[test]
    fn media_type_options() {
        assert_eq!(
            media_type_option("csv"),
            ("text/csv".to_string(), Some(Format::Csv))
        );
        assert_eq!(
            media_type_option("application/jsonlines"),
            ("application/jsonlines".to_string(), Some(Format::JsonLines))
        );
        assert_eq!(
            media_type_option("image/jpeg"),
            ("image/jpeg".to_string(), None)
        );
    }
}
