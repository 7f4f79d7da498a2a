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

use crate::error::{Error, ErrorKind};

/// What SageMaker keeps of the failure file as `FailureReason`.
pub const FAILURE_REASON_CHARS: usize = 1024;

/// Characters of a long file name kept at its start and end in the failure
/// file: the end names the object, the start its channel's folder.
const NAME_HEAD: usize = 48;
const NAME_TAIL: usize = 160;

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

/// The failure file's text: the paragraph, with a bad record's file name
/// cut in the middle when the whole would be longer than SageMaker keeps,
/// so the record's position and the reason, which follow the name, stay in
/// `FailureReason` (an S3 key may be 1024 bytes long).
pub fn reason(err: &Error) -> String {
    let text = paragraph(err);
    let (ErrorKind::TrainingRecord { file, .. }, true) =
        (err.kind(), text.chars().count() > FAILURE_REASON_CHARS)
    else {
        return text;
    };
    let chars: Vec<char> = file.chars().collect();
    if chars.len() <= NAME_HEAD + NAME_TAIL {
        return text;
    }
    let head: String = chars[..NAME_HEAD].iter().collect();
    let tail: String = chars[chars.len() - NAME_TAIL..].iter().collect();
    text.replacen(file.as_str(), &format!("{head}…{tail}"), 1)
}

/// Report a failure the way SageMaker reads it: write `output/failure`
/// (creating `output/`), and print the reason to stderr (in full). A failure to write
/// the file is printed too; the exit code is non-zero either way.
pub fn report(output_dir: &Path, err: &Error) {
    let text = paragraph(err);
    {
        use std::io::Write as _;
        // As `say!`: a closed stderr must not turn the exit code into 101.
        let _ = write!(std::io::stderr(), "mmp train: error: {text}");
    }
    let path = output_dir.join("failure");
    let written =
        std::fs::create_dir_all(output_dir).and_then(|()| std::fs::write(&path, reason(err)));
    if let Err(e) = written {
        crate::say!("mmp train: could not write {}: {e}", path.display());
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
    fn a_long_file_name_leaves_the_position_and_reason_in_failure_reason() {
        let file = format!("/opt/ml/input/data/training/{}/part.csv", "k".repeat(1000));
        let e = Error::new(ErrorKind::TrainingRecord {
            channel: "training".into(),
            file: file.clone(),
            source: Error::new(ErrorKind::EmptyField {
                pos: crate::error::Position {
                    record: 2,
                    line: 2,
                    byte: 4,
                },
                field: 2,
            }),
            hint: String::new(),
        });
        assert!(paragraph(&e).contains(&file));
        let kept: String = reason(&e).chars().take(FAILURE_REASON_CHARS).collect();
        assert!(kept.starts_with("bad record in training file /opt/ml/input/data/training/"));
        assert!(
            kept.contains("/part.csv: record 2 (line 2, byte 4): "),
            "{kept}"
        );
        assert!(kept.ends_with('\n'), "{kept}");
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
