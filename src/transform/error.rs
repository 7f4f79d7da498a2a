//! What can go wrong in a transform job, and which exit code each failure
//! gives.
//!
//! A job fails per file, as Batch Transform does: the error of a file says
//! what went wrong and where (a record's [`Position`] in the *file*, or the
//! mini-batch and its record range), and the other files go on. Errors that
//! stop the job before any file is read (a bad option, an invalid JSONPath,
//! an endpoint that never answers `/ping`) are reported once.

use std::fmt;
use std::io;

use crate::error::{Error, Position};

/// Everything `mmp transform` can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransformError {
    /// A bad option or combination of options (exit 64). The message is the
    /// one SageMaker's `CreateTransformJob` validation gives where it is
    /// known.
    #[error("{0}")]
    Usage(String),
    /// The input path has no file to transform (exit 66).
    #[error("no input files: {0}")]
    NoInput(String),
    /// The endpoint never became ready (exit 69).
    #[error("endpoint {url} is not available: {reason}")]
    Unavailable {
        /// The endpoint's base URL.
        url: String,
        /// The last thing that went wrong.
        reason: String,
    },
    /// The container answered a request with a status other than 2xx.
    #[error("HTTP {status} from the container: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The connection broke: refused, reset, closed before the response was
    /// complete, or an unreadable response.
    #[error("connection failed: {0}")]
    Connection(String),
    /// No complete response within `--timeout` seconds.
    #[error("no complete response within {secs} s (--timeout, InvocationsTimeoutInSeconds)")]
    Timeout {
        /// The timeout.
        secs: f64,
    },
    /// A response has a different number of lines than the records sent.
    #[error(
        "the response has {got} lines for {sent} records: each record must give exactly one line"
    )]
    RecordCount {
        /// Records in the request.
        sent: u64,
        /// Lines in the response.
        got: u64,
    },
    /// One record is larger than the payload limit, so no mini-batch can
    /// carry it.
    #[error(
        "{pos} is larger than MaxPayloadInMB={mb} ({limit} bytes): no mini-batch can carry it"
    )]
    RecordTooLarge {
        /// Where the record starts in the file.
        pos: Position,
        /// MaxPayloadInMB.
        mb: u32,
        /// The limit in bytes.
        limit: u64,
    },
    /// With `SplitType=None` the whole file is one request, and it is over
    /// the payload limit.
    #[error("the file is {size} bytes, over MaxPayloadInMB={mb} ({limit} bytes); with SplitType=None the whole file is one request: use --split-type Line, or --max-payload-mb 0 to stream it")]
    FileTooLarge {
        /// The file's size.
        size: u64,
        /// MaxPayloadInMB.
        mb: u32,
        /// The limit in bytes.
        limit: u64,
    },
    /// A record could not be filtered or joined (DataProcessing).
    #[error("{pos}: {what}: {reason}")]
    Record {
        /// Where the input record starts in the file.
        pos: Position,
        /// `InputFilter`, `OutputFilter` or `JoinSource`.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// An output line of the container could not be parsed for joining or
    /// filtering (SageMaker: "Failed to parse output from the algorithm as
    /// CSV", sagemaker-contract.md §3, DataProcessing).
    #[error("{pos}: Failed to parse output from the algorithm as {format}: {reason}")]
    OutputParse {
        /// Where the input record that gave the output starts.
        pos: Position,
        /// `CSV` or `JSON`.
        format: &'static str,
        /// Why.
        reason: String,
    },
    /// The in-process pipeline failed (bad record, model failure...).
    #[error(transparent)]
    Pipeline(#[from] Error),
    /// Reading an input or writing an output failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: io::Error,
    },
    /// A request failed on every attempt.
    #[error("failed after {attempts} attempts (1 + --max-retries {retries}); last error: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// `--max-retries`.
        retries: u32,
        /// The last attempt's error.
        last: Box<TransformError>,
    },
    /// Another error, with what was being worked on (a mini-batch).
    #[error("{context}: {source}")]
    Context {
        /// Where it happened.
        context: String,
        /// The error.
        source: Box<TransformError>,
    },
}

/// Result alias of this module.
pub type Result<T, E = TransformError> = std::result::Result<T, E>;

impl TransformError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> TransformError {
        TransformError::Io {
            context: context.into(),
            source,
        }
    }

    /// Say what was being worked on; the exit code stays the error's own.
    pub fn context(self, context: impl fmt::Display) -> TransformError {
        TransformError::Context {
            context: context.to_string(),
            source: Box::new(self),
        }
    }

    /// Whether another attempt of the same request may succeed: the
    /// container's answer (a status, a wrong number of lines) or the
    /// connection, not our own input or output, nor a 2xx answer that does
    /// not parse for joining (the invocation itself succeeded).
    /// (SageMaker retries "failing invocation requests", whatever the status,
    /// `InvocationsMaxRetries`, sagemaker-contract.md §3.)
    pub fn is_retryable(&self) -> bool {
        match self {
            TransformError::Status { .. }
            | TransformError::Connection(_)
            | TransformError::Timeout { .. }
            | TransformError::RecordCount { .. } => true,
            TransformError::Context { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    /// The process exit code (BSD `sysexits`, as the other commands): 64
    /// usage, 65 bad data (a bad record, a 4xx answer, a wrong record count),
    /// 66 no input / model not loadable, 69 the container is unavailable (no
    /// answer, 5xx, timeouts), 70 model failure, 74 I/O.
    pub fn exit_code(&self) -> u8 {
        match self {
            TransformError::Usage(_) => 64,
            TransformError::NoInput(_) => 66,
            TransformError::Unavailable { .. }
            | TransformError::Connection(_)
            | TransformError::Timeout { .. } => 69,
            TransformError::Status { status, .. } if *status >= 500 => 69,
            TransformError::Status { .. } => 65,
            TransformError::RecordCount { .. }
            | TransformError::RecordTooLarge { .. }
            | TransformError::FileTooLarge { .. }
            | TransformError::Record { .. }
            | TransformError::OutputParse { .. } => 65,
            TransformError::Pipeline(e) => e.exit_code(),
            TransformError::Io { .. } => 74,
            TransformError::GaveUp { last, .. } => last.exit_code(),
            TransformError::Context { source, .. } => source.exit_code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_and_retries_keep_the_exit_code() {
        let e = TransformError::Status {
            status: 503,
            body: "busy".into(),
        };
        assert!(e.is_retryable());
        let e = TransformError::GaveUp {
            attempts: 4,
            retries: 3,
            last: Box::new(e.context("mini-batch 2")),
        };
        assert_eq!(e.exit_code(), 69);
        assert_eq!(
            e.to_string(),
            "failed after 4 attempts (1 + --max-retries 3); last error: mini-batch 2: HTTP 503 from the container: busy"
        );
        let bad = TransformError::Status {
            status: 400,
            body: String::new(),
        };
        assert_eq!(bad.exit_code(), 65);
        assert!(!TransformError::Usage("x".into()).is_retryable());
    }
}
