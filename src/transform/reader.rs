//! The reader of a job: one thread that cuts each file into mini-batches
//! (or whole-file requests) and hands them to the workers, in file order,
//! taking a token per batch so memory stays bounded (see `engine.rs`).

use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use bytes::Bytes;

use crate::media::Format;

use super::engine::{Event, Job, Mode, Tokens, Work};
use super::error::{Result, TransformError};
use super::inputs::InputFile;
use super::plan::SplitType;
use super::split::{Batch, Records, Splitter};

/// The reader: cut each file and hand out the batches.
pub(super) fn read_files(
    job: &Job<'_>,
    files: &[InputFile],
    tokens: &Tokens,
    failed: &[AtomicBool],
    work: mpsc::SyncSender<Work>,
    events: mpsc::Sender<Event>,
) {
    for (id, file) in files.iter().enumerate() {
        if let Mode::Streamed = job.mode {
            tokens.acquire();
            if work.send(Work::Stream { file: id }).is_err() {
                return;
            }
            continue;
        }
        let _ = events.send(Event::Start { file: id });
        let mut seq = 0;
        let mut send = |batch: Batch| {
            tokens.acquire();
            let sent = work.send(Work::Part {
                file: id,
                seq,
                batch,
            });
            seq += 1;
            sent.is_ok()
        };
        let result = cut_file(job, file, &failed[id], &mut send);
        let event = match result {
            Ok(()) => Event::Read {
                file: id,
                parts: seq,
            },
            Err(error) => Event::ReadFailed { file: id, error },
        };
        if events.send(event).is_err() {
            return;
        }
    }
}

/// Cut one file into batches, passing each to `send` (false: stop).
fn cut_file(
    job: &Job<'_>,
    file: &InputFile,
    failed: &AtomicBool,
    send: &mut dyn FnMut(Batch) -> bool,
) -> Result<()> {
    let plan = job.plan;
    if plan.split == SplitType::None {
        if let Some(limit) = plan.payload_limit().filter(|l| file.size > *l) {
            return Err(TransformError::FileTooLarge {
                size: file.size,
                mb: plan.max_payload_mb,
                limit,
            });
        }
    }
    let f = File::open(&file.path)
        .map_err(|e| TransformError::io(format!("cannot open {}", file.path.display()), e))?;
    let dp = plan.data_processing.as_ref();
    match &job.mode {
        Mode::Batches(opts) => {
            let mut splitter = Splitter::new(f, opts.clone(), dp);
            while !failed.load(Ordering::Relaxed) {
                let Some(batch) = splitter.next_batch()? else {
                    break;
                };
                if !send(batch) {
                    break;
                }
            }
            Ok(())
        }
        Mode::Whole => {
            let batch = whole_file(job, f, file)?;
            send(batch);
            Ok(())
        }
        Mode::Streamed => Ok(()),
    }
}

/// The file as one request (`SplitType=None`): its bytes as they are, or,
/// with DataProcessing, its records filtered (an `application/json` file
/// is one record; JSON lines are one record per line).
fn whole_file(job: &Job<'_>, mut f: File, file: &InputFile) -> Result<Batch> {
    let mut data = Vec::with_capacity(file.size as usize);
    f.read_to_end(&mut data)
        .map_err(|e| TransformError::io(format!("reading {}", file.path.display()), e))?;
    let span = Bytes::from(data);
    let start = crate::error::Position {
        record: 1,
        line: 1,
        byte: 0,
    };
    let records = Records::new(&span, start, job.blank).count() as u64;
    let Some(dp) = job.plan.data_processing.as_ref() else {
        return Ok(Batch {
            body: span,
            originals: None,
            filtered: false,
            records,
            start,
        });
    };
    let mut body = Vec::new();
    let records = if dp.input == Format::Json {
        dp.filter_input(span.trim_ascii(), start, &mut body)?;
        1
    } else {
        for (record, pos) in Records::new(&span, start, job.blank) {
            dp.filter_input(record, pos, &mut body)?;
        }
        records
    };
    if let Some(limit) = job.plan.payload_limit().filter(|l| body.len() as u64 > *l) {
        return Err(TransformError::FileTooLarge {
            size: body.len() as u64,
            mb: job.plan.max_payload_mb,
            limit,
        });
    }
    Ok(Batch {
        body: Bytes::from(body),
        originals: Some(span),
        filtered: true,
        records,
        start,
    })
}
