//! Running a job: one reader thread cuts the files into mini-batches, a pool
//! of workers sends them (at most `MaxConcurrentTransforms` requests in
//! flight, sagemaker-contract.md §3), and the calling thread writes each
//! file's responses in input order.
//!
//! Files follow each other through the same pool, so many small files are
//! in flight together, and mini-batches never span files (§3, "Splitting
//! and batching"). Memory is bounded by a fixed number of tokens: a batch
//! takes one when it is read and gives it back when its response has been
//! written (or dropped), so a slow first batch holds back at most that many
//! later ones. A failed file is marked at once: its remaining batches are
//! skipped, its temporary output removed, and the other files go on.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::media::Format;

use super::assemble::{assemble_buffered, Assembler, FileRecords, Originals, Rules, Whole};
use super::error::{Result, TransformError};
use super::inputs::InputFile;
use super::output::{out_path, FileOutput};
use super::plan::{Plan, SplitType};
use super::progress::Progress;
use super::split::{Batch, Blank, Records, SplitOptions, Splitter};

/// What answers requests: a container over HTTP, or the pipeline.
pub trait Backend: Sync {
    /// A worker's own state (a connection).
    type Worker: Send;

    /// State for a new worker.
    fn worker(&self) -> Self::Worker;

    /// One request held in memory: the whole 2xx response.
    fn invoke(&self, worker: &mut Self::Worker, batch: &Batch) -> Result<Response>;

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
const TOKENS_PER_WORKER: usize = 3;

/// A counting semaphore (std has none).
struct Tokens {
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

    fn acquire(&self) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.cv.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
    }

    fn release(&self) {
        *self.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.cv.notify_one();
    }
}

/// Work for a worker.
enum Work {
    /// Batch `seq` of file `file`.
    Part { file: usize, seq: u64, batch: Batch },
    /// File `file`, streamed whole.
    Stream { file: usize },
}

/// What the collector hears.
enum Event {
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
    let rules = Rules {
        dp: job.plan.data_processing.as_ref(),
        line: job.plan.assemble == super::plan::AssembleWith::Line,
    };
    std::thread::scope(|s| {
        let events = event_tx.clone();
        let (tokens, failed) = (&tokens, &failed);
        s.spawn(move || read_files(job, files, tokens, failed, work_tx, events));
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
                                part(backend, &mut w, job, rules, seq, &batch).map(|out| {
                                    Some((out, batch.records, batch.original_span().len() as u64))
                                })
                            };
                            Event::Part { file, seq, result }
                        }
                        Work::Stream { file } => {
                            let result = stream(backend, &mut w, job, rules, &files[file]);
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
        collect(job, files, tokens, failed, event_rx, progress)
    })
}

/// The reader: cut each file and hand out the batches.
fn read_files(
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

/// Whether a response's lines must match the records sent: records are
/// lines and the answer is line-based (see `assemble.rs`).
fn check_counts(job: &Job<'_>, format: Option<Format>) -> bool {
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
) -> Result<Vec<u8>> {
    with_retries(backend.max_retries(), || {
        let response = backend.invoke(w, batch)?;
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

/// The body of a streamed request: the file's records (filtered, if an
/// `InputFilter` is set) through the splitter, counted as they go; or the
/// file's bytes as they are when nothing needs counting or filtering.
struct StreamBody<'d> {
    splitter: Option<Splitter<'d, File>>,
    raw: Option<File>,
    current: Bytes,
    records: u64,
    error: Option<TransformError>,
}

impl Read for StreamBody<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(raw) = self.raw.as_mut() {
            return raw.read(buf);
        }
        while self.current.is_empty() {
            let Some(s) = self.splitter.as_mut() else {
                return Ok(0);
            };
            match s.next_batch() {
                Ok(Some(b)) => {
                    self.records += b.records;
                    self.current = b.body;
                }
                Ok(None) => return Ok(0),
                Err(e) => {
                    // Kept to be reported as what it is (a bad record, not
                    // a broken connection).
                    let msg = e.to_string();
                    self.error = Some(e);
                    return Err(std::io::Error::other(msg));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Send a whole file in one streamed request, its output written as it
/// comes back; retried from the start on a retryable failure.
fn stream<B: Backend>(
    backend: &B,
    w: &mut B::Worker,
    job: &Job<'_>,
    rules: Rules<'_>,
    file: &InputFile,
) -> Result<FileStats> {
    let plan = job.plan;
    let open = |p: &Path| {
        File::open(p).map_err(|e| TransformError::io(format!("cannot open {}", p.display()), e))
    };
    let mut out = FileOutput::create(out_path(job.out_dir, &file.rel))?;
    let dp = plan.data_processing.as_ref();
    let split = plan.split == SplitType::Line || dp.is_some();
    let records = with_retries(backend.max_retries(), || {
        out.reset()?;
        let f = open(&file.path)?;
        let mut body = if split {
            let opts = SplitOptions {
                target: super::split::READ_CHUNK as u64,
                single: false,
                max_record: None,
                mb: 0,
                blank: job.blank,
                quote_aware: false,
                keep_originals: false,
            };
            StreamBody {
                splitter: Some(Splitter::new(f, opts, dp)),
                raw: None,
                current: Bytes::new(),
                records: 0,
                error: None,
            }
        } else {
            StreamBody {
                splitter: None,
                raw: Some(f),
                current: Bytes::new(),
                records: 0,
                error: None,
            }
        };
        let originals: Box<dyn Originals> = match dp {
            Some(d) if d.join => Box::new(FileRecords::new(
                BufReader::with_capacity(1 << 20, open(&file.path)?),
                job.blank,
            )),
            _ => Box::new(Records::new(b"", Default::default(), job.blank)),
        };
        let mut asm = Assembler::new(rules, originals);
        let format = backend.invoke_streamed(w, &mut body, &mut |piece| asm.feed(piece, &mut out));
        if let Some(e) = body.error.take() {
            return Err(e);
        }
        let format = format?;
        let count = check_counts(job, format);
        asm.finish(count, body.records, &mut out)?;
        Ok(body.records)
    })?;
    let bytes_out = out.commit()?;
    Ok(FileStats { records, bytes_out })
}

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
fn collect(
    job: &Job<'_>,
    files: &[InputFile],
    tokens: &Tokens,
    failed: &[AtomicBool],
    events: mpsc::Receiver<Event>,
    progress: &Progress,
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
                        if let Err(e) = drain(st, progress) {
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
fn drain(st: &mut Assembly, progress: &Progress) -> Result<()> {
    while let Some((bytes, records, bytes_in)) = st.waiting.remove(&st.next) {
        if let Some(out) = st.out.as_mut() {
            out.write(&bytes)?;
        }
        st.next += 1;
        st.records += records;
        progress.add(records, bytes_in);
    }
    Ok(())
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
