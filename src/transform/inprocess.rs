//! Our own model, scored in-process: the same splitting, DataProcessing and
//! assembly as against a container, without HTTP, on every core.
//!
//! A job whose requests do not change the output's bytes is scored file by
//! file with `mmp score`'s own engine ([`score::Job::run`], which runs
//! [`crate::parallel`] on every core): no DataProcessing, Line or None
//! records, and either both formats record-wise (CSV or JSON lines in and
//! out: a request's output is then its records' outputs concatenated,
//! wherever the requests are cut) or each file one request
//! (`SplitType=None`, `MaxPayloadInMB=0`). The per-request limits still
//! hold: with `SplitType=Line` a record larger than `MaxPayloadInMB` fails
//! its file (the decoder's record limit, so this path is taken then only
//! under `--on-error fail`), and with `SplitType=None` so does a file
//! larger than it (unless it is compressed: its size is known only once
//! read, so it is sent as one request). With `SplitType=Line` the service cuts at every
//! newline, so a CSV file whose quoted fields hold newlines (fewer records
//! than lines) fails, as its halves would at the container.
//!
//! Any other job sends its mini-batches, each through a fresh [`Pipeline`]:
//! what `mmp serve` does for one request, so the bytes are the ones the
//! server would answer; positions in errors are the file's (the pipeline
//! starts at the batch's place), unless an `InputFilter` rewrote the
//! records.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;

use crate::error::{Error, ErrorKind, Result};
use crate::media::Format;
use crate::model::SharedModel;
use crate::parallel;
use crate::pipeline::{ErrorPolicy, Pipeline, PipelineOptions};
use crate::progress::Progress;
use crate::score;

use super::engine::{open, FileStats};
use super::inputs::InputFile;
use super::output::{out_path, FileOutput};
use super::plan::{CompressionType, Plan, SplitType};
use super::split::MiniBatch;

/// The pipeline, in this process.
pub struct InProcess {
    model: SharedModel,
    input: Format,
    output: Format,
    opts: PipelineOptions,
}

impl InProcess {
    /// Score `input` into `output` with `model`.
    pub fn new(model: SharedModel, input: Format, output: Format, opts: PipelineOptions) -> Self {
        InProcess {
            model,
            input,
            output,
            opts,
        }
    }

    /// Whether `plan`'s files are scored whole by `mmp score`'s engine
    /// (see the module docs).
    pub fn scores_files(&self, plan: &Plan) -> bool {
        let one_request = plan.split == SplitType::None || plan.payload_limit().is_none();
        // A decompressed file's size is known only once it is read whole.
        let sized = plan.compression == CompressionType::None
            || plan.split != SplitType::None
            || plan.payload_limit().is_none();
        // A record over the limit must fail its file, as the service
        // cannot send it: the decoder's record limit does so only under
        // `fail` (under `placeholder` it marks the record).
        let limited = plan.split == SplitType::Line && plan.payload_limit().is_some();
        let fails = self.opts.policy == ErrorPolicy::Fail || !limited;
        sized
            && fails
            && plan.data_processing.is_none()
            && !plan.framing().is_binary()
            && (one_request || parallel::record_wise(self.input, self.output))
    }

    /// Score one batch on a blocking thread (tokio's pool).
    pub async fn invoke(self: &Arc<Self>, batch: &MiniBatch) -> Result<Vec<u8>> {
        let (me, body) = (self.clone(), batch.body.clone());
        let base = (!batch.filtered).then_some(batch.start);
        let scored = tokio::task::spawn_blocking(move || {
            let mut p = Pipeline::new(me.model.clone(), me.input, me.output, &me.opts);
            if let Some(base) = base {
                p = p.with_base(base);
            }
            let mut out = BytesMut::with_capacity(body.len() / 2 + 64);
            p.feed(&body, &mut out)?;
            p.finish(&mut out)?;
            // Takes the buffer over without a copy.
            Ok(Vec::from(out))
        });
        scored.await.map_err(joined)?
    }

    /// Score one file into its output with `mmp score`'s engine, on a
    /// blocking thread.
    pub async fn score_file(
        self: &Arc<Self>,
        plan: &Plan,
        file: &InputFile,
        out_dir: &std::path::Path,
        progress: &Arc<Progress>,
    ) -> Result<FileStats> {
        let (me, plan, file, progress) =
            (self.clone(), plan.clone(), file.clone(), progress.clone());
        let path = out_path(out_dir, &file.rel);
        let scored = tokio::task::spawn_blocking(move || {
            let mut opts = me.opts.clone();
            let line = plan.split == SplitType::Line;
            if let Some(limit) = plan.payload_limit().filter(|_| line) {
                let limit = usize::try_from(limit).unwrap_or(usize::MAX);
                opts.decode.max_record_bytes = opts.decode.max_record_bytes.min(limit);
            }
            let job = score::Job {
                model: &me.model,
                opts: &opts,
                input: me.input,
                output: me.output,
                progress: Some(&progress),
            };
            let mut out = FileOutput::create(path)?;
            let reader = open(&file, &plan)?;
            let size = Some(file.size);
            let stats = match line && me.input == Format::Csv {
                false => job.run(reader, &mut out, size)?,
                true => {
                    let (lines, reader) = LineCount::new(reader);
                    let stats = job.run(reader, &mut out, size)?;
                    let lines = lines.load(Ordering::Relaxed);
                    if lines != stats.records {
                        let e = ErrorKind::RecordCount {
                            sent: lines,
                            got: stats.records,
                        };
                        return Err(Error::new(e).context(
                            "SplitType=Line cuts at every newline, as SageMaker does, and a quoted field holds one",
                        ));
                    }
                    stats
                }
            };
            let bytes_out = out.commit()?;
            Ok(FileStats {
                records: stats.records,
                bytes_out,
            })
        });
        scored.await.map_err(joined)?
    }
}

fn joined(e: tokio::task::JoinError) -> Error {
    Error::new(ErrorKind::Model(format!("the scoring thread failed: {e}")))
}

/// Counts the lines that hold a CSV record as they are read: every line but
/// an empty one or a lone `\r` (the CSV decoder's blank lines).
struct LineCount<R> {
    reader: R,
    count: Arc<AtomicU64>,
    /// The current line so far: empty, a lone `\r`, or more.
    line: Line,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Line {
    Empty,
    Cr,
    Text,
}

impl Line {
    /// The line with `more` bytes of it added.
    fn and(self, more: &[u8]) -> Line {
        match (self, more) {
            (l, []) => l,
            (Line::Empty, b"\r") => Line::Cr,
            _ => Line::Text,
        }
    }
}

impl<R: Read> LineCount<R> {
    fn new(reader: R) -> (Arc<AtomicU64>, Self) {
        let count = Arc::default();
        let line = Line::Empty;
        (
            Arc::clone(&count),
            LineCount {
                reader,
                count,
                line,
            },
        )
    }
}

impl<R: Read> Read for LineCount<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.reader.read(buf)?;
        let (data, mut lines, mut from) = (&buf[..n], 0, 0);
        for i in memchr::memchr_iter(b'\n', data) {
            lines += u64::from(self.line.and(&data[from..i]) == Line::Text);
            (self.line, from) = (Line::Empty, i + 1);
        }
        self.line = self.line.and(&data[from..]);
        if n == 0 && self.line == Line::Text {
            lines += 1; // a last line without `\n`
            self.line = Line::Empty;
        }
        self.count.fetch_add(lines, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::records::{Blank, Records};
    use crate::error::Position;

    /// Read one byte at a time, so every line is cut across reads.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn line_counts_match_the_codecs_records_across_reads() {
        for data in [
            &b"a\n\r\n\nb\r\nc"[..],
            b"\r",
            b"\r\r\n",
            b"\n\na\r",
            b"x\n",
            b"",
        ] {
            let (count, mut r) = LineCount::new(Trickle(data));
            std::io::copy(&mut r, &mut std::io::sink()).unwrap();
            let want = Records::new(data, Position::FIRST, Blank::Empty).count() as u64;
            assert_eq!(count.load(Ordering::Relaxed), want, "{data:?}");
        }
    }
}
