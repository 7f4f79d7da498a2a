//! How SageMaker is told that a training run failed: the failure file and
//! the exit code, both of the crate's one [`Error`] (its training kinds,
//! and [`crate::error::Exits::Training`] in its exit-code table).
//!
//! SageMaker marks a job `Failed` on any non-zero exit and shows the first
//! 1024 characters of `/opt/ml/output/failure` as the job's
//! `FailureReason` (docs/contract.md §4). So every message puts the cause
//! first and the context after it, and is written as one paragraph (no
//! newlines inside), which also makes it one greppable line in CloudWatch.

use std::path::Path;

use crate::error::Error;

/// The failure file's text: the message as one paragraph.
pub fn paragraph(err: &Error) -> String {
    let text = err.to_string();
    let mut one: String = text
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    one.push('\n');
    one
}

/// Report a failure the way SageMaker reads it: write `output/failure`
/// (creating `output/`), and print the reason to stderr. A failure to write
/// the file is printed too; the exit code is non-zero either way.
pub fn report(output_dir: &Path, err: &Error) {
    let text = paragraph(err);
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
    use crate::error::{ErrorKind, Exits};

    fn exit_code(e: &Error) -> u8 {
        e.exit_code_for(Exits::Training)
    }

    #[test]
    fn paragraph_is_one_line_with_the_cause_first() {
        let e = Error::hyperparameter("bad\nvalue\r\n  for l2");
        assert_eq!(paragraph(&e), "bad value for l2\n");
        assert_eq!(exit_code(&e), 255);
        let term = Error::new(ErrorKind::Stopped("SIGTERM"));
        assert_eq!(exit_code(&term), 143);
        assert_eq!(exit_code(&Error::new(ErrorKind::Stopped("SIGINT"))), 130);
        assert!(term.to_string().starts_with("training stopped by SIGTERM"));
    }

    #[test]
    fn every_failure_of_a_run_exits_255_whatever_its_kind() {
        // The same kinds give sysexits values under `mmp score`.
        let io = Error::io("cannot read x", std::io::Error::other("boom"));
        assert_eq!((exit_code(&io), io.exit_code()), (255, 74));
        let config = Error::config("bad");
        assert_eq!((exit_code(&config), config.exit_code()), (255, 64));
    }

    #[test]
    fn report_writes_the_failure_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("output");
        report(&out, &Error::channel("training", "has no records"));
        let text = std::fs::read_to_string(out.join("failure")).unwrap();
        assert_eq!(text, "channel \"training\": has no records\n");
    }
}
