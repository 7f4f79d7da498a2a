//! Running a job: one reader thread cuts the files into mini-batches
//! (`reader.rs`), a pool of workers sends them (at most
//! `MaxConcurrentTransforms` requests in flight, sagemaker-contract.md §3),
//! and the calling thread writes each file's responses in input order
//! (`collect.rs`); a whole file streamed in one request is a worker's alone
//! (`streamed.rs`).
//!
//! Files follow each other through the same pool, so many small files are
//! in flight together, and mini-batches never span files (§3, "Splitting
//! and batching"). Memory is bounded by a fixed number of tokens: a batch
//! takes one when it is read and gives it back when its response has been
//! written (or dropped), so a slow first batch holds back at most that many
//! later ones. A failed file is marked at once: its remaining batches are
//! skipped, its temporary output removed, and the other files go on.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::media::Format;

use super::assemble::{assemble_buffered, Originals, Rules, Whole};
use super::error::{Result, TransformError};
use super::inputs::InputFile;
use super::plan::{Plan, SplitType};
use super::pool::Pool;
use super::progress::Progress;
use super::split::{Batch, Blank, Records, SplitOptions};

/// What answers requests: a container over HTTP, or the pipeline.
pub trait Backend: Sync {
    /// A worker's own state (a connection).
    type Worker: Send;

    /// State for a new worker.
    fn worker(&self) -> Self::Worker;

    /// One request held in memory: the whole 2xx response, written into
    /// `out` (an empty buffer from the job's pool).
    fn invoke(&self, worker: &mut Self::Worker, batch: &Batch, out: Vec<u8>) -> Result<Response>;

    /// One request whose body is streamed; the response goes to `sink` in
    /// pieces. Returns the response's format, if known.
    fn invoke_streamed(
        &self,
        worker: &mut Self::Worker,
        body: &mut (dyn Read + Send),
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<Option<Format>>;

    /// How often a failed request is tried again.
    fn max_retries(&self) -> u32;

    /// Whether each batch is one request (so errors name "mini-batch N"),
    /// rather than a range of the file.
    fn batches_are_requests(&self) -> bool;
}

/// A 2xx response.
#[derive(Debug)]
pub struct Response {
    /// The body.
    pub body: Vec<u8>,
    /// Its format (its `Content-Type`, else the `Accept` type), if known.
    pub format: Option<Format>,
}

/// How files are cut.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Into batches by the splitter.
    Batches(SplitOptions),
    /// Each file whole, in one request held in memory (`SplitType=None`).
    Whole,
    /// Each file streamed in one chunked request (`MaxPayloadInMB=0`).
    Streamed,
}

/// A job, ready to run.
#[derive(Clone, Debug)]
pub struct Job<'a> {
    /// The resolved settings.
    pub plan: &'a Plan,
    /// How files are cut.
    pub mode: Mode,
    /// Which lines are blank.
    pub blank: Blank,
    /// Worker threads.
    pub workers: usize,
    /// The output folder.
    pub out_dir: &'a Path,
}

/// What became of one file.
#[derive(Debug)]
pub struct FileReport {
    /// Its path below the input.
    pub rel: PathBuf,
    /// Its counters, or why it failed.
    pub outcome: Result<FileStats>,
}

/// Counters of a file that succeeded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Records sent.
    pub records: u64,
    /// Output bytes.
    pub bytes_out: u64,
}

/// Pauses between attempts of a failed request: short, growing, capped.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((50u64 << attempt.min(5)).min(1000))
}

/// Run `f` until it succeeds, fails with an error not worth retrying, or
/// has failed `1 + retries` times.
pub fn with_retries<T>(retries: u32, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && attempt <= retries => {
                std::thread::sleep(backoff(attempt));
            }
            Err(e) if attempt > 1 => {
                return Err(TransformError::GaveUp {
                    attempts: attempt,
                    retries,
                    last: Box::new(e),
                })
            }
            Err(e) => return Err(e),
        }
    }
}

/// At most this many batches read and not yet written, per worker.
const TOKENS_PER_WORKER: usize = 2;

/// A counting semaphore (std has none).
pub(super) struct Tokens {
    free: Mutex<usize>,
    cv: Condvar,
}

impl Tokens {
    fn new(n: usize) -> Tokens {
        Tokens {
            free: Mutex::new(n),
            cv: Condvar::new(),
        }
    }

    pub(super) fn acquire(&self) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.cv.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
    }

    pub(super) fn release(&self) {
        *self.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.cv.notify_one();
    }
}

/// Work for a worker.
pub(super) enum Work {
    /// Batch `seq` of file `file`.
    Part { file: usize, seq: u64, batch: Batch },
    /// File `file`, streamed whole.
    Stream { file: usize },
}

/// What the collector hears.
pub(super) enum Event {
    /// The reader started file `file`.
    Start { file: usize },
    /// The reader cut file `file` into `parts` batches.
    Read { file: usize, parts: u64 },
    /// The reader failed on file `file`.
    ReadFailed { file: usize, error: TransformError },
    /// A batch's output (`None`: skipped, its file had failed), with its
    /// records and input bytes.
    Part {
        file: usize,
        seq: u64,
        result: Result<Option<(Vec<u8>, u64, u64)>>,
    },
    /// A streamed file is done.
    Streamed {
        file: usize,
        result: Result<FileStats>,
        bytes_in: u64,
    },
}

/// Run the job over `files`.
pub fn run<B: Backend>(
    backend: &B,
    job: &Job<'_>,
    files: &[InputFile],
    progress: &Progress,
) -> Vec<FileReport> {
    let workers = job.workers.max(1);
    let tokens = Tokens::new(workers * TOKENS_PER_WORKER);
    let failed: Vec<AtomicBool> = files.iter().map(|_| AtomicBool::new(false)).collect();
    let (work_tx, work_rx) = mpsc::sync_channel::<Work>(workers);
    let work_rx = Mutex::new(work_rx);
    let (event_tx, event_rx) = mpsc::channel::<Event>();
    // Response buffers, reused once written (see `pool.rs`: fresh ones cost
    // a page fault per page).
    let outputs = Pool::new(0);
    let rules = Rules {
        dp: job.plan.data_processing.as_ref(),
        line: job.plan.assemble == super::plan::AssembleWith::Line,
    };
    std::thread::scope(|s| {
        let events = event_tx.clone();
        let (tokens, failed, outputs) = (&tokens, &failed, &outputs);
        s.spawn(move || super::reader::read_files(job, files, tokens, failed, work_tx, events));
        for _ in 0..workers {
            let events = event_tx.clone();
            let work_rx = &work_rx;
            s.spawn(move || {
                let mut w = backend.worker();
                loop {
                    let next = work_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(work) = next else { break };
                    let event = match work {
                        Work::Part { file, seq, batch } => {
                            let result = if failed[file].load(Ordering::Relaxed) {
                                Ok(None)
                            } else {
                                part(backend, &mut w, job, rules, seq, &batch, outputs).map(|out| {
                                    Some((out, batch.records, batch.original_span().len() as u64))
                                })
                            };
                            Event::Part { file, seq, result }
                        }
                        Work::Stream { file } => {
                            let result =
                                super::streamed::stream(backend, &mut w, job, rules, &files[file]);
                            Event::Streamed {
                                file,
                                result,
                                bytes_in: files[file].size,
                            }
                        }
                    };
                    if events.send(event).is_err() {
                        break;
                    }
                }
            });
        }
        drop(event_tx);
        super::collect::collect(job, files, tokens, failed, event_rx, progress, outputs)
    })
}

/// Whether a response's lines must match the records sent: records are
/// lines and the answer is line-based (see `assemble.rs`).
pub(super) fn check_counts(job: &Job<'_>, format: Option<Format>) -> bool {
    let lines_out = matches!(format, Some(Format::Csv | Format::JsonLines));
    let dp_lines = job
        .plan
        .data_processing
        .as_ref()
        .is_some_and(|d| d.input != Format::Json);
    lines_out && (job.plan.split == SplitType::Line || dp_lines)
}

/// The original records of a batch, for joining.
fn originals<'b>(job: &Job<'_>, batch: &'b Batch) -> Box<dyn Originals + 'b> {
    let whole_doc = job.plan.split == SplitType::None
        && job
            .plan
            .data_processing
            .as_ref()
            .is_some_and(|d| d.input == Format::Json);
    if whole_doc {
        Box::new(Whole(Some(batch.original_span().clone())))
    } else {
        Box::new(Records::new(batch.original_span(), batch.start, job.blank))
    }
}

/// Score one batch into its output bytes, retrying as configured.
fn part<B: Backend>(
    backend: &B,
    w: &mut B::Worker,
    job: &Job<'_>,
    rules: Rules<'_>,
    seq: u64,
    batch: &Batch,
    outputs: &Pool,
) -> Result<Vec<u8>> {
    with_retries(backend.max_retries(), || {
        let mut out = outputs.take();
        out.clear();
        let response = backend.invoke(w, batch, out)?;
        let count = check_counts(job, response.format);
        assemble_buffered(
            rules,
            count,
            response.body,
            originals(job, batch),
            batch.records,
        )
    })
    .map_err(|e| {
        let first = batch.start.record;
        let last = first + batch.records.saturating_sub(1);
        let what = if backend.batches_are_requests() {
            format!(
                "mini-batch {} (records {first}-{last}, from line {})",
                seq + 1,
                batch.start.line
            )
        } else {
            format!("records {first}-{last}")
        };
        e.context(what)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_stop_at_the_limit_and_say_so() {
        let mut calls = 0;
        let r: Result<()> = with_retries(2, || {
            calls += 1;
            Err(TransformError::Connection("reset".into()))
        });
        assert_eq!(calls, 3);
        assert_eq!(
            r.unwrap_err().to_string(),
            "failed after 3 attempts (1 + --max-retries 2); last error: connection failed: reset"
        );
        let mut calls = 0;
        let r: Result<()> = with_retries(3, || {
            calls += 1;
            Err(TransformError::Usage("no".into()))
        });
        assert_eq!((calls, r.unwrap_err().to_string()), (1, "no".to_string()));
        let mut calls = 0;
        let r = with_retries(3, || {
            calls += 1;
            if calls < 2 {
                Err(TransformError::Timeout { secs: 1.0 })
            } else {
                Ok(7)
            }
        });
        assert_eq!(r.unwrap(), 7);
    }
}
