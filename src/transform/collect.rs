//! The collector of a job: the calling thread, which writes each file's
//! outputs in input order as workers finish them (whatever order that is),
//! commits a file once all its batches are written, and fails it at the
//! first error, removing its temporary output and telling the reader and
//! workers to skip the rest of it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use super::engine::{Event, FileReport, FileStats, Job, Tokens};
use super::error::{Result, TransformError};
use super::inputs::InputFile;
use super::output::{out_path, FileOutput};
use super::pool::Pool;
use super::progress::Progress;

/// One file being assembled by the collector.
#[derive(Default)]
struct Assembly {
    out: Option<FileOutput>,
    next: u64,
    waiting: BTreeMap<u64, (Vec<u8>, u64, u64)>,
    total: Option<u64>,
    records: u64,
    done: bool,
}

/// The collector: write each file's outputs in order, commit or fail it.
pub(super) fn collect(
    job: &Job<'_>,
    files: &[InputFile],
    tokens: &Tokens,
    failed: &[AtomicBool],
    events: mpsc::Receiver<Event>,
    progress: &Progress,
    outputs: &Pool,
) -> Vec<FileReport> {
    let mut state: Vec<Assembly> = files.iter().map(|_| Assembly::default()).collect();
    let mut outcomes: Vec<Option<Result<FileStats>>> = files.iter().map(|_| None).collect();
    let mut finish = |id: usize, st: &mut Assembly, r: Result<FileStats>| {
        if st.done {
            return;
        }
        st.done = true;
        if r.is_err() {
            failed[id].store(true, Ordering::Relaxed);
            st.out = None; // removes the temporary file
            st.waiting.clear();
        }
        progress.file_done(r.is_ok());
        outcomes[id] = Some(r);
    };
    for event in events {
        let touched = match &event {
            Event::Start { file }
            | Event::Read { file, .. }
            | Event::ReadFailed { file, .. }
            | Event::Part { file, .. }
            | Event::Streamed { file, .. } => *file,
        };
        match event {
            Event::Start { file } => {
                let st = &mut state[file];
                match FileOutput::create(out_path(job.out_dir, &files[file].rel)) {
                    Ok(out) => st.out = Some(out),
                    Err(e) => finish(file, st, Err(e)),
                }
            }
            Event::Part { file, seq, result } => {
                tokens.release();
                let st = &mut state[file];
                if st.done {
                    continue;
                }
                match result {
                    Ok(Some(part)) => {
                        st.waiting.insert(seq, part);
                        if let Err(e) = drain(st, progress, outputs) {
                            finish(file, st, Err(e));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => finish(file, st, Err(e)),
                }
            }
            Event::Read { file, parts } => state[file].total = Some(parts),
            Event::ReadFailed { file, error } => finish(file, &mut state[file], Err(error)),
            Event::Streamed {
                file,
                result,
                bytes_in,
            } => {
                tokens.release();
                if let Ok(s) = &result {
                    progress.add(s.records, bytes_in);
                }
                finish(file, &mut state[file], result);
            }
        }
        // Commit the file once all its batches are written.
        let (id, st) = (touched, &mut state[touched]);
        {
            if !st.done && st.total == Some(st.next) {
                let r = match st.out.take() {
                    Some(out) => out.commit().map(|bytes_out| FileStats {
                        records: st.records,
                        bytes_out,
                    }),
                    None => Err(TransformError::Io {
                        context: "the output file".into(),
                        source: std::io::Error::other("was not created"),
                    }),
                };
                finish(id, st, r);
            }
        }
    }
    files
        .iter()
        .zip(outcomes)
        .map(|(f, o)| FileReport {
            rel: f.rel.clone(),
            outcome: o.unwrap_or_else(|| {
                Err(TransformError::Io {
                    context: "the job".into(),
                    source: std::io::Error::other("stopped before this file was done"),
                })
            }),
        })
        .collect()
}

/// Write the waiting outputs that are next in order.
fn drain(st: &mut Assembly, progress: &Progress, outputs: &Pool) -> Result<()> {
    while let Some((bytes, records, bytes_in)) = st.waiting.remove(&st.next) {
        if let Some(out) = st.out.as_mut() {
            out.write(&bytes)?;
        }
        outputs.give_back(bytes);
        st.next += 1;
        st.records += records;
        progress.add(records, bytes_in);
    }
    Ok(())
}
