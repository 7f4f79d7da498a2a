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

use std::time::Duration;

use crate::batch::{BatchStrategy, ExecutionParameters};
use crate::codec::records::{Blank, Framing};
use crate::error::{Error, Result};
use crate::media::{ContentType, Format};

use super::dataprocessing::{DataProcessing, Options};
use super::TransformOptions;

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
    /// Settle each setting: the command line, then the container's
    /// `/execution-parameters` (if it answered 200), then SageMaker's
    /// defaults (`concurrent`: the default `MaxConcurrentTransforms` and
    /// where it comes from); then DataProcessing.
    pub fn new(
        args: &TransformOptions,
        container: Option<&ExecutionParameters>,
        concurrent: (u32, &str),
    ) -> Result<Plan> {
        let c = container.copied().unwrap_or_default();
        let mut sources = Vec::new();
        // Each value, and where it came from ("MaxPayloadInMB=6 (default)").
        macro_rules! pick {
            ($name:literal, $cli:expr, $container:expr, $default:expr) => {
                pick!($name, $cli, $container, $default, "default")
            };
            ($name:literal, $cli:expr, $container:expr, $default:expr, $why:expr) => {{
                let (v, from) = match ($cli, $container) {
                    (Some(v), _) => (v, "command line"),
                    (None, Some(v)) => (v, "container"),
                    (None, None) => ($default, $why),
                };
                sources.push(format!("{}={v:?} ({from})", $name));
                v
            }};
        }
        let split = pick!("SplitType", args.split_type, None, SplitType::None);
        let strategy = pick!(
            "BatchStrategy",
            args.batch_strategy,
            c.strategy,
            BatchStrategy::MultiRecord
        );
        let mb = pick!(
            "MaxPayloadInMB",
            args.max_payload_mb,
            c.max_payload_mb,
            DEFAULT_MAX_PAYLOAD_MB
        );
        let (n, why) = concurrent;
        let n = pick!(
            "MaxConcurrentTransforms",
            args.max_concurrent,
            c.max_concurrent,
            n,
            why
        );
        // The service validates the product of the job's values, wherever
        // they come from (docs/contract.md §3, "Limits"); in-process, one
        // request per core is ours, not a SageMaker parameter.
        if (args.max_concurrent.is_some() || c.max_concurrent.is_some())
            && mb as u64 * n as u64 > MAX_PAYLOAD_MB as u64
        {
            let from = |cli: bool| if cli { "command line" } else { "container" };
            let mb_from = match (args.max_payload_mb, c.max_payload_mb) {
                (Some(_), _) => "command line",
                (None, Some(_)) => "container",
                (None, None) => "default",
            };
            return Err(Error::config(format!(
                "MaxConcurrentTransforms ({n}, {}) × MaxPayloadInMB ({mb}, {mb_from}) must not exceed 100 MB",
                from(args.max_concurrent.is_some())
            )));
        }
        let assemble = pick!("AssembleWith", args.assemble_with, None, AssembleWith::None);
        let content_type = args.content_type.as_deref().map(media_type_option);
        let accept = args.accept.as_deref().map(media_type_option);
        let data_processing = DataProcessing::new(&Options {
            input_filter: args.input_filter.as_deref(),
            join: args.join_source,
            output_filter: args.output_filter.as_deref(),
            content_type: content_type.as_ref().map(|(s, f)| (s.as_str(), *f)),
            accept: accept.as_ref().map(|(s, f)| (s.as_str(), *f)),
            split,
            assemble,
            strategy,
        })?;
        if data_processing.is_some() && matches!(split, SplitType::RecordIO | SplitType::TFRecord) {
            return Err(Error::config(format!(
                "DataProcessing (InputFilter, JoinSource, OutputFilter) works on CSV and JSON records: SplitType={split:?} records are binary"
            )));
        }
        let input_format = content_type.as_ref().and_then(|(_, f)| *f);
        Ok(Plan {
            output_format: accept.as_ref().and_then(|(_, f)| *f).or(input_format),
            input_format,
            content_type: content_type.map(|(s, _)| s),
            accept: accept.map(|(s, _)| s),
            split,
            strategy,
            max_payload_mb: mb,
            max_concurrent: n,
            assemble,
            compression: args.compression_type,
            data_processing,
            timeout: Duration::from_secs_f64(args.timeout),
            max_retries: args.max_retries,
            sources,
        })
    }

    /// The payload limit in bytes; `None` for `MaxPayloadInMB=0` (no limit:
    /// the file is streamed in one chunked request).
    pub fn payload_limit(&self) -> Option<u64> {
        (self.max_payload_mb > 0).then(|| self.max_payload_mb as u64 * MB)
    }

    /// Where the job's records end.
    pub fn framing(&self) -> Framing {
        match self.split {
            SplitType::None | SplitType::Line => Framing::Line,
            SplitType::RecordIO => Framing::RecordIO,
            SplitType::TFRecord => Framing::TFRecord,
        }
    }

    /// Which lines are blank for the input's format.
    pub fn blank(&self) -> Blank {
        match self.input_format {
            _ if self.framing().is_binary() => Blank::Never,
            Some(Format::Json | Format::JsonLines) => Blank::Whitespace,
            _ => Blank::Empty,
        }
    }

    /// Whether each file is one `application/json` document to filter.
    pub fn whole_document(&self) -> bool {
        let dp = self.data_processing.as_ref();
        self.split == SplitType::None && dp.is_some_and(|d| d.input == Format::Json)
    }

    /// Whether each output record is joined with its input record.
    pub fn joins(&self) -> bool {
        self.data_processing.as_ref().is_some_and(|d| d.join)
    }
}

/// A media type given as an option: short names (`csv`, `jsonl`, `json`)
/// become their media type; anything else is sent as given (a container may
/// take types we do not know, e.g. `image/jpeg`).
pub fn media_type_option(s: &str) -> (String, Option<Format>) {
    match ContentType::parse_option(s) {
        Ok(ct) if !s.contains('/') => (ct.format.mime().to_string(), Some(ct.format)),
        Ok(ct) => (s.trim().to_string(), Some(ct.format)),
        Err(_) => (s.trim().to_string(), None),
    }
}

/// Check the command-line values against `CreateTransformJob`'s limits
/// (docs/contract.md §3, "Limits").
pub fn check(args: &TransformOptions) -> Result<()> {
    if let Some(mb) = args.max_payload_mb.filter(|mb| *mb > MAX_PAYLOAD_MB) {
        return Err(validation(
            &mb.to_string(),
            "maxPayloadInMB",
            "Member must have value less than or equal to 100",
        ));
    }
    if args.max_concurrent == Some(0) {
        return Err(Error::config("--max-concurrent must be at least 1"));
    }
    if let (Some(mb), Some(n)) = (args.max_payload_mb, args.max_concurrent) {
        if mb as u64 * n as u64 > MAX_PAYLOAD_MB as u64 {
            return Err(Error::config(format!(
                "MaxConcurrentTransforms ({n}) × MaxPayloadInMB ({mb}) must not exceed 100 MB"
            )));
        }
    }
    let timeout = args.timeout;
    if !(timeout > 0.0 && timeout <= 3600.0) {
        return Err(Error::config(format!(
            "--timeout {timeout}: must be more than 0 and at most 3600 seconds (InvocationsTimeoutInSeconds)"
        )));
    }
    if args.max_retries > 3 {
        return Err(validation(
            &args.max_retries.to_string(),
            "modelClientConfig.invocationsMaxRetries",
            "Member must have value less than or equal to 3",
        ));
    }
    // At most a century: the wait's deadline (now + the timeout) must not
    // overflow, which panicked at 1e300.
    let most = crate::config::MAX_SECONDS;
    if !(args.ping_timeout >= 0.0 && args.ping_timeout <= most as f64) {
        return Err(Error::config(format!(
            "--ping-timeout must be a number of seconds, at most {most} (a century)"
        )));
    }
    Ok(())
}

/// AWS's request-validation wording, as `CreateTransformJob` answers it.
pub fn validation(value: &str, member: &str, constraint: &str) -> Error {
    Error::config(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    /// A job's options as `mmp transform --input i --output o --model-dir m`
    /// gives them (the command line's defaults: 600 s, 3 retries, 240 s).
    fn options() -> TransformOptions {
        TransformOptions {
            input: Some("i".into()),
            manifest: None,
            compression_type: CompressionType::None,
            output: "o".into(),
            endpoint: None,
            model_dir: Some("m".into()),
            content_type: None,
            accept: None,
            split_type: None,
            batch_strategy: None,
            max_payload_mb: None,
            max_concurrent: None,
            assemble_with: None,
            input_filter: None,
            join_source: JoinSource::None,
            output_filter: None,
            timeout: 600.0,
            max_retries: 3,
            ping_timeout: 240.0,
            on_error: crate::pipeline::ErrorPolicy::Fail,
            no_progress: false,
            quiet: false,
        }
    }

    #[test]
    fn limits_of_create_transform_job() {
        let o = options;
        let e = check(&TransformOptions {
            max_payload_mb: Some(101),
            ..o()
        })
        .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("1 validation error detected: Value '101' at 'maxPayloadInMB'"));
        let product = TransformOptions {
            max_payload_mb: Some(30),
            max_concurrent: Some(4),
            ..o()
        };
        assert!(check(&product).is_err());
        assert!(check(&TransformOptions {
            timeout: 0.0,
            ..o()
        })
        .is_err());
        assert!(check(&TransformOptions {
            timeout: 1.0,
            max_retries: 4,
            ..o()
        })
        .is_err());
        assert!(check(&TransformOptions {
            timeout: 0.5,
            max_retries: 0,
            ..o()
        })
        .is_ok());
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
