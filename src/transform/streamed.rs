//! A whole file in one streamed request (`MaxPayloadInMB=0`: "body streamed
//! to the container with HTTP chunked encoding", sagemaker-contract.md §3):
//! the body is read from the file as it is sent, and the answer is
//! assembled into the output file as it comes back, so neither is ever
//! whole in memory. A retry starts again from the beginning of both.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use bytes::Bytes;

use super::assemble::{Assembler, FileRecords, Originals, Rules};
use super::engine::{check_counts, with_retries, Backend, FileStats, Job};
use super::error::{Result, TransformError};
use super::inputs::InputFile;
use super::output::{out_path, FileOutput};
use super::plan::SplitType;
use super::split::{Records, SplitOptions, Splitter};

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
pub(super) fn stream<B: Backend>(
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
