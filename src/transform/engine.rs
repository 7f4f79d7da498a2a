//! Running a job on tokio: a blocking reader cuts the files into
//! mini-batches, in file order, into a bounded channel; `buffered` yields
//! their outputs in input order, tokio's semaphore keeps at most
//! `MaxConcurrentTransforms` requests in flight; the job writes each file's
//! outputs as they come, and commits the file at its end. A file streamed
//! whole in one request (`MaxPayloadInMB=0`), or scored whole in-process by
//! `mmp score`'s engine ([`super::inprocess`]), writes its own output.
//!
//! Files follow each other through the same stream, so many small files
//! are in flight together, and mini-batches never span files (AWS DG,
//! "Batch Transform"). Memory is bounded by the channel and the in-flight
//! requests. A failed file is marked at once: its remaining batches are
//! skipped, its temporary output removed, and the other files go on.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::error::{Error, ErrorKind, Result};
use crate::input::read_some;

use super::assemble::{self, assemble_buffered, Assembler, FileRecords, Originals, Rules};
use super::endpoint::Endpoint;
use super::inprocess::InProcess;
use super::inputs::InputFile;
use super::output::{out_path, FileOutput};
use super::plan::{AssembleWith, CompressionType, Plan, SplitType};
use super::split::{self, MiniBatch, SplitOptions, Splitter};
use crate::progress::Progress;

/// What answers requests: a container over HTTP, or the pipeline.
pub enum Backend {
    /// A container.
    Http(Box<Endpoint>),
    /// Our model, in this process.
    Local(Arc<InProcess>),
}

impl Backend {
    async fn invoke(&self, batch: &MiniBatch) -> Result<Vec<u8>> {
        match self {
            Backend::Http(e) => e.invoke(batch.body.clone()).await,
            Backend::Local(p) => p.invoke(batch).await,
        }
    }

    /// How often a failed request is tried again (the pipeline is
    /// deterministic: another attempt fails the same way).
    fn retries(&self) -> u32 {
        match self {
            Backend::Http(e) => e.retries,
            Backend::Local(_) => 0,
        }
    }
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
    /// Each file scored whole by `mmp score`'s engine (in-process).
    Scored,
}

/// A job, ready to run.
#[derive(Debug)]
pub struct TransformJob {
    /// The resolved settings.
    pub plan: Plan,
    /// How files are cut.
    pub mode: Mode,
    /// The output folder.
    pub out_dir: PathBuf,
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

/// Whether another attempt of the same request may succeed: the
/// container's answer (a status, a wrong number of lines to join) or the
/// connection, not our own input or output, nor a 2xx answer that does not
/// parse for joining. (SageMaker retries "failing invocation requests",
/// whatever the status: API reference, `InvocationsMaxRetries`.)
pub fn retryable(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::Status { .. }
        | ErrorKind::Connection(_)
        | ErrorKind::InvocationTimeout { .. }
        | ErrorKind::RecordCount { .. } => true,
        ErrorKind::Context { source, .. } => retryable(source),
        _ => false,
    }
}

/// After failed attempt `attempt`: pause and go on (`Ok`), or the error to
/// give up with.
async fn again(attempt: u32, retries: u32, e: Error) -> Result<()> {
    if retryable(&e) && attempt <= retries {
        // A retry interval (short, growing, capped), not a synchronisation.
        let pause = Duration::from_millis((50u64 << attempt.min(5)).min(1000));
        tokio::time::sleep(pause).await;
        return Ok(());
    }
    if attempt == 1 {
        return Err(e);
    }
    Err(Error::new(ErrorKind::GaveUp {
        attempts: attempt,
        retries,
        last: e,
    }))
}

/// Run `f` until it succeeds, fails with an error not worth retrying, or
/// has failed `1 + retries` times.
pub async fn with_retries<T, F: std::future::Future<Output = Result<T>>>(
    retries: u32,
    mut f: impl FnMut() -> F,
) -> Result<T> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => again(attempt, retries, e).await?,
        }
    }
}

/// Open an input, decompressing it as it is read if asked (SageMaker
/// decompresses before splitting: API reference,
/// `TransformInput.CompressionType`).
/// With `SplitType=None`, a plain file over `MaxPayloadInMB` fails before
/// it is read (a decompressed one, once read: [`split::whole`]).
pub fn open(file: &InputFile, plan: &Plan) -> Result<Box<dyn Read + Send>> {
    let plain = plan.compression == CompressionType::None;
    if let Some(limit) = plan
        .payload_limit()
        .filter(|l| plain && plan.split == SplitType::None && file.size > *l)
    {
        return Err(Error::new(ErrorKind::FileTooLarge {
            size: file.size,
            mb: plan.max_payload_mb,
            limit,
        }));
    }
    let f = File::open(&file.path)
        .map_err(|e| Error::io(format!("cannot open {}", file.path.display()), e))?;
    Ok(match plan.compression {
        CompressionType::None => Box::new(f),
        CompressionType::Gzip => Box::new(Gunzip {
            decoder: flate2::bufread::MultiGzDecoder::new(Counted {
                inner: BufReader::new(f),
                consumed: 0,
            }),
            path: file.path.display().to_string(),
        }),
    })
}

/// A gzip input decompressed as it is read; data that is not gzip, corrupt
/// or cut short is bad input ([`ErrorKind::BadGzip`], with the file and how
/// far into it), not an I/O error.
struct Gunzip {
    decoder: flate2::bufread::MultiGzDecoder<Counted<BufReader<File>>>,
    path: String,
}

impl Read for Gunzip {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.decoder.read(buf).map_err(|e| {
            // The file's own errors come from the OS; flate2's are the data's.
            if e.raw_os_error().is_some() {
                return e;
            }
            let reason = match e.kind() {
                std::io::ErrorKind::UnexpectedEof => "the stream is cut short".to_string(),
                _ => e.to_string(),
            };
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                Error::new(ErrorKind::BadGzip {
                    path: self.path.clone(),
                    offset: self.decoder.get_ref().consumed,
                    reason,
                }),
            )
        })
    }
}

/// A buffered reader counting the bytes taken from it.
struct Counted<R> {
    inner: R,
    consumed: u64,
}

impl<R: std::io::BufRead> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

impl<R: std::io::BufRead> std::io::BufRead for Counted<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.consumed += n as u64;
        self.inner.consume(n);
    }
}

/// What the reader sends, in file order.
enum Item {
    Start(usize),
    Part {
        file: usize,
        seq: u64,
        batch: MiniBatch,
    },
    /// The file is cut, or why it could not be.
    End(usize, Result<()>),
    Stream(usize),
}

/// An item once done: a part's output, records and input bytes (`None`:
/// skipped, its file had failed).
enum Done {
    Start(usize),
    Part(usize, Result<Option<(Vec<u8>, u64, u64)>>),
    End(usize, Result<()>),
    Streamed(usize, Result<FileStats>),
}

/// Run the job over `files`.
pub async fn run(
    backend: &Backend,
    job: Arc<TransformJob>,
    files: Arc<Vec<InputFile>>,
    progress: &Arc<Progress>,
) -> Vec<FileReport> {
    let workers = job.plan.max_concurrent.max(1) as usize;
    let failed: Arc<Vec<AtomicBool>> =
        Arc::new(files.iter().map(|_| AtomicBool::new(false)).collect());
    let (tx, rx) = mpsc::channel(2 * workers);
    let reader = {
        let (job, files, failed) = (job.clone(), files.clone(), failed.clone());
        tokio::task::spawn_blocking(move || read_files(&job, &files, &failed, tx))
    };
    let items =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
    let rules = Rules {
        dp: job.plan.data_processing.as_ref(),
        line: job.plan.assemble == AssembleWith::Line,
    };
    let (job_arc, job_ref, files_ref, failed_ref) = (&job, &*job, &*files, &*failed);
    // At most `MaxConcurrentTransforms` requests in flight; twice as many
    // batches may wait, done, for the one before them to be written, so a
    // slow request does not leave the others idle.
    let permits = &tokio::sync::Semaphore::new(workers);
    let done = items
        .map(|item| async move {
            match item {
                Item::Part { file, seq, batch } => {
                    if failed_ref[file].load(Ordering::Relaxed) {
                        return Done::Part(file, Ok(None));
                    }
                    let out = part(backend, permits, job_ref, rules, seq, &batch).await;
                    let span = batch.original_span().len() as u64;
                    Done::Part(file, out.map(|o| Some((o, batch.records, span))))
                }
                Item::Stream(f) => {
                    let file = &files_ref[f];
                    let r = match backend {
                        Backend::Local(p) => {
                            let _permit = permits.acquire().await;
                            p.score_file(&job_ref.plan, file, &job_ref.out_dir, progress)
                                .await
                        }
                        Backend::Http(e) => stream(e, permits, job_arc, rules, file)
                            .await
                            .inspect(|s| progress.add(s.records, file.size)),
                    };
                    Done::Streamed(f, r)
                }
                Item::Start(f) => Done::Start(f),
                Item::End(f, r) => Done::End(f, r),
            }
        })
        .buffered(2 * workers);
    let mut done = std::pin::pin!(done);

    let mut outcomes: Vec<Option<Result<FileStats>>> = files.iter().map(|_| None).collect();
    // The file being written: its output and records so far.
    let mut current: Option<(FileOutput, u64)> = None;
    let mut finish = |f: usize, r: Result<FileStats>, current: &mut Option<(FileOutput, u64)>| {
        if outcomes[f].is_some() {
            return;
        }
        if r.is_err() {
            failed[f].store(true, Ordering::Relaxed);
            *current = None; // removes the temporary file
        }
        progress.file_done(r.is_ok());
        outcomes[f] = Some(r);
    };
    while let Some(d) = done.next().await {
        match d {
            Done::Start(f) => match FileOutput::create(out_path(&job.out_dir, &files[f].rel)) {
                Ok(out) => current = Some((out, 0)),
                Err(e) => finish(f, Err(e), &mut current),
            },
            Done::Part(f, Ok(Some((bytes, records, bytes_in)))) => {
                if let Some((out, n)) = current
                    .as_mut()
                    .filter(|_| !failed[f].load(Ordering::Relaxed))
                {
                    match out.write(&bytes) {
                        Ok(()) => {
                            *n += records;
                            progress.add(records, bytes_in);
                        }
                        Err(e) => finish(f, Err(e), &mut current),
                    }
                }
            }
            Done::Part(_, Ok(None)) => {}
            Done::Part(f, Err(e)) | Done::End(f, Err(e)) => finish(f, Err(e), &mut current),
            Done::End(f, Ok(())) => {
                if let Some((out, records)) = current.take() {
                    let r = out
                        .commit()
                        .map(|bytes_out| FileStats { records, bytes_out });
                    finish(f, r, &mut current);
                }
            }
            Done::Streamed(f, r) => finish(f, r, &mut current),
        }
    }
    let _ = reader.await;
    files
        .iter()
        .zip(outcomes)
        .map(|(f, o)| FileReport {
            rel: f.rel.clone(),
            outcome: o.unwrap_or_else(|| {
                Err(Error::io(
                    "the job",
                    std::io::Error::other("stopped before this file was done"),
                ))
            }),
        })
        .collect()
}

/// The reader: cut each file and hand out the batches, in order.
fn read_files(
    job: &TransformJob,
    files: &[InputFile],
    failed: &[AtomicBool],
    tx: mpsc::Sender<Item>,
) {
    let send = |item| tx.blocking_send(item).is_ok();
    for (id, file) in files.iter().enumerate() {
        if let Mode::Streamed | Mode::Scored = job.mode {
            if !send(Item::Stream(id)) {
                return;
            }
            continue;
        }
        if !send(Item::Start(id)) {
            return;
        }
        let mut seq = 0;
        let result = cut_file(job, file, &failed[id], &mut |batch| {
            seq += 1;
            send(Item::Part {
                file: id,
                seq: seq - 1,
                batch,
            })
        });
        if !send(Item::End(id, result)) {
            return;
        }
    }
}

/// Cut one file into batches, passing each to `send` (false: stop).
fn cut_file(
    job: &TransformJob,
    file: &InputFile,
    failed: &AtomicBool,
    send: &mut dyn FnMut(MiniBatch) -> bool,
) -> Result<()> {
    let plan = &job.plan;
    let reader = open(file, plan)?;
    let dp = plan.data_processing.as_ref();
    match &job.mode {
        Mode::Batches(opts) => {
            let mut splitter = Splitter::new(reader, opts.clone(), dp);
            while !failed.load(Ordering::Relaxed) {
                let Some(batch) = splitter.next_batch()? else {
                    break;
                };
                if !send(batch) {
                    break;
                }
            }
        }
        Mode::Whole => {
            let limit = plan.payload_limit().map(|l| (l, plan.max_payload_mb));
            send(split::whole(reader, dp, plan.blank(), limit)?);
        }
        Mode::Streamed | Mode::Scored => {}
    }
    Ok(())
}

/// Score one batch into its output bytes, retrying as configured.
async fn part(
    backend: &Backend,
    permits: &tokio::sync::Semaphore,
    job: &TransformJob,
    rules: Rules<'_>,
    seq: u64,
    batch: &MiniBatch,
) -> Result<Vec<u8>> {
    let attempt = || async {
        let permit = permits.acquire().await;
        let response = backend.invoke(batch).await?;
        drop(permit);
        let span = batch.original_span();
        let originals = if job.plan.whole_document() {
            assemble::whole(span)
        } else {
            assemble::span_records(span, batch.start, job.plan.blank())
        };
        assemble_buffered(rules, response, originals, batch.records)
    };
    with_retries(backend.retries(), attempt).await.map_err(|e| {
        let first = batch.start.record;
        let last = first + batch.records.saturating_sub(1);
        let what = match backend {
            Backend::Http(_) => format!(
                "mini-batch {} (records {first}-{last}, from line {})",
                seq + 1,
                batch.start.line
            ),
            Backend::Local(_) => format!("records {first}-{last}"),
        };
        e.context(what)
    })
}

/// Pieces of a streamed body: with two of them queued and one being sent,
/// a 1 GB file streams in a few MiB.
const STREAM_CHUNK: usize = 256 << 10;

/// The body of a streamed request, read from the file on a blocking
/// thread: the file's records (filtered, if an `InputFilter` is set)
/// through the splitter, counted as they go, or its bytes as they are when
/// nothing needs counting or filtering. Returns the records sent.
fn produce(
    job: &TransformJob,
    file: &InputFile,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
) -> Result<u64> {
    let plan = &job.plan;
    let mut reader = open(file, plan)?;
    let dp = plan.data_processing.as_ref();
    if !plan.split.splits() && dp.is_none() {
        loop {
            let mut chunk = vec![0; STREAM_CHUNK];
            let n = match read_some(&mut reader, &mut chunk) {
                Ok(0) => return Ok(0),
                Ok(n) => n,
                Err(e) => return Err(Error::io("reading the input", e)),
            };
            chunk.truncate(n);
            if tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                return Ok(0);
            }
        }
    }
    let opts = SplitOptions {
        framing: plan.framing(),
        target: STREAM_CHUNK as u64,
        single: false,
        max_record: None,
        mb: 0,
        blank: job.plan.blank(),
        keep_originals: false,
        drop_blank: job.plan.joins(),
    };
    let mut splitter = Splitter::new(reader, opts, dp);
    let mut records = 0;
    loop {
        match splitter.next_batch() {
            Ok(Some(b)) => {
                records += b.records;
                if tx.blocking_send(Ok(b.body)).is_err() {
                    return Ok(records);
                }
            }
            Ok(None) => return Ok(records),
            Err(e) => {
                // The request fails; the error is reported as what it is (a
                // bad record, not a broken connection).
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                return Err(e);
            }
        }
    }
}

/// Send a whole file in one streamed request (AWS API reference,
/// `MaxPayloadInMB`: 0 streams the body with chunked encoding), its output
/// written as it comes back; retried from the start of both.
async fn stream(
    endpoint: &Endpoint,
    permits: &tokio::sync::Semaphore,
    job: &Arc<TransformJob>,
    rules: Rules<'_>,
    file: &InputFile,
) -> Result<FileStats> {
    let mut out = FileOutput::create(out_path(&job.out_dir, &file.rel))?;
    let mut attempt = 0;
    let records = loop {
        attempt += 1;
        out.reset()?;
        let permit = permits.acquire().await;
        let (tx, rx) = mpsc::channel(2);
        let producer = {
            let (job, file) = (job.clone(), file.clone());
            tokio::task::spawn_blocking(move || produce(&job, &file, tx))
        };
        let originals: Originals = match job.plan.joins() {
            true => Box::new(FileRecords::new(
                BufReader::with_capacity(1 << 20, open(file, &job.plan)?),
                job.plan.blank(),
            )),
            false => Box::new(std::iter::empty()),
        };
        let mut asm = Assembler::new(rules, originals);
        let answered = endpoint
            .invoke_streamed(rx, &mut |piece| asm.feed(piece, &mut out))
            .await;
        drop(permit);
        let produced = producer
            .await
            .map_err(|e| Error::io("reading the input", std::io::Error::other(e)))?;
        let result = match (produced, answered) {
            (Err(e), _) => return Err(e),
            (Ok(_), Err(e)) => Err(e),
            (Ok(sent), Ok(_)) => asm.finish(sent, &mut out).map(|_| sent),
        };
        match result {
            Ok(records) => break records,
            Err(e) => again(attempt, endpoint.retries, e).await?,
        }
    };
    let bytes_out = out.commit()?;
    Ok(FileStats { records, bytes_out })
}
