//! Why a training run failed, and how SageMaker is told: the failure file
//! and the exit code.
//!
//! SageMaker marks a job `Failed` on any non-zero exit and shows the first
//! 1024 characters of `/opt/ml/output/failure` as the job's
//! `FailureReason`. So every message here puts the cause first and the
//! context after it, and is written as one paragraph (no newlines inside),
//! which also makes it one greppable line in CloudWatch.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Exit code of a failed run: what AWS's `scikit_bring_your_own` sample's
/// `train` script exits with on an exception.
pub const EXIT_FAILURE: u8 = 255;

/// How many characters of the failure file SageMaker keeps.
pub const FAILURE_REASON_CHARS: usize = 1024;

/// Everything that can stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration file under `input/config` is unreadable or not the
    /// JSON it should be.
    #[error("bad configuration file {file}: {reason}")]
    ConfigFile {
        /// The file.
        file: PathBuf,
        /// What is wrong, with serde_json's line and column.
        reason: String,
    },
    /// A hyperparameter is unknown or has a bad value; the message names the
    /// key, the value and what was expected.
    #[error("{0}")]
    Hyperparameter(String),
    /// A channel is missing, empty or configured in a way we cannot read.
    #[error("channel {channel:?}: {reason}")]
    Channel {
        /// The channel name (`training`, `validation`).
        channel: String,
        /// What is wrong.
        reason: String,
    },
    /// A record that cannot be trained on: its file, then the decoder's
    /// message, which carries record, line and byte.
    #[error("bad record in {channel} file {file}: {source}{hint}")]
    Record {
        /// The channel.
        channel: String,
        /// The file (or FIFO) the record is in.
        file: String,
        /// The decoder's error, with the record's position.
        source: Error,
        /// Extra context, starting with "; " (or empty).
        hint: String,
    },
    /// Reading input or writing output failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The cause.
        source: io::Error,
    },
    /// Writing `model.json` failed.
    #[error("cannot write the model: {0}")]
    Save(Error),
    /// The least-squares system has no unique solution.
    #[error("{0}")]
    Singular(String),
    /// SageMaker (or a user) asked the job to stop before it finished.
    #[error("training stopped by {0} before it finished (StopTrainingJob, or MaxRuntimeInSeconds reached); no model was written")]
    Stopped(&'static str),
    /// A bug: the training thread panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

impl TrainError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> TrainError {
        TrainError::Io {
            context: context.into(),
            source,
        }
    }

    /// A channel error.
    pub fn channel(channel: &str, reason: impl Into<String>) -> TrainError {
        TrainError::Channel {
            channel: channel.to_string(),
            reason: reason.into(),
        }
    }

    /// The process exit code for this failure: 128 + the signal number when
    /// stopped by a signal (the shell's convention), else 255.
    pub fn exit_code(&self) -> u8 {
        match self {
            TrainError::Stopped("SIGINT") => 128 + 2,
            TrainError::Stopped(_) => 128 + 15,
            _ => EXIT_FAILURE,
        }
    }

    /// The failure file's text: the message as one paragraph.
    pub fn paragraph(&self) -> String {
        let text = self.to_string();
        let mut one: String = text
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        one.push('\n');
        one
    }
}

/// Report a failure the way SageMaker reads it: write `output/failure`
/// (creating `output/`), and print the reason to stderr. A failure to write
/// the file is printed too; the exit code is non-zero either way.
pub fn report(output_dir: &Path, err: &TrainError) {
    let text = err.paragraph();
    eprint!("mmp train: error: {text}");
    let path = output_dir.join("failure");
    let written = std::fs::create_dir_all(output_dir).and_then(|()| std::fs::write(&path, &text));
    if let Err(e) = written {
        eprintln!("mmp train: could not write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraph_is_one_line_with_the_cause_first() {
        let e = TrainError::Hyperparameter("bad\nvalue\r\n  for l2".into());
        assert_eq!(e.paragraph(), "bad value for l2\n");
        assert_eq!(e.exit_code(), 255);
        assert_eq!(TrainError::Stopped("SIGTERM").exit_code(), 143);
        assert_eq!(TrainError::Stopped("SIGINT").exit_code(), 130);
        assert!(TrainError::Stopped("SIGTERM")
            .to_string()
            .starts_with("training stopped by SIGTERM"));
    }

    #[test]
    fn report_writes_the_failure_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("output");
        report(&out, &TrainError::channel("training", "has no records"));
        let text = std::fs::read_to_string(out.join("failure")).unwrap();
        assert_eq!(text, "channel \"training\": has no records\n");
    }
}
