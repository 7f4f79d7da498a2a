//! Our own model, scored in-process with the pipeline: the same splitting,
//! DataProcessing and assembly as against a container, without HTTP, on
//! every core.
//!
//! Each batch runs through a fresh [`Pipeline`], exactly what `mmp serve`
//! does for one request, so the bytes are the ones the server would answer.
//! When both formats are record-wise (CSV or JSON lines in and out), the
//! output of a request is the concatenation of its records' outputs, so the
//! request boundaries do not change a byte: the file is then cut into
//! ranges of [`RANGE_BYTES`] at record boundaries and the ranges are scored
//! in parallel, whatever the batch strategy (and for `SplitType=None` or
//! `MaxPayloadInMB=0`, where the whole file is one request, too; a CSV file
//! is then cut only at newlines outside quotes). The per-request limits
//! still hold: with `SplitType=Line` a record larger than `MaxPayloadInMB`
//! fails its file, and with `SplitType=None` so does a file larger than it.
//!
//! Positions in errors are the file's (a range's positions are shifted by
//! where it starts), unless an `InputFilter` rewrote the records.

use std::io::Read;

use bytes::BytesMut;

use crate::error::{Error, Position};
use crate::media::Format;
use crate::model::SharedModel;
use crate::pipeline::{Pipeline, PipelineOptions};

use super::engine::{Backend, Response};
use super::error::{Result, TransformError};
use super::split::Batch;

/// Size of the ranges a record-wise file is scored in: large enough that a
/// pipeline per range costs nothing, small enough to spread a file over the
/// cores and keep memory at a few ranges per worker.
pub const RANGE_BYTES: u64 = 2 << 20;

/// Bytes fed to the pipeline at a time when streaming.
const FEED: usize = 1 << 20;

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

    /// Whether a request's output is its records' outputs concatenated, so
    /// that a file may be scored in ranges (see the module docs).
    pub fn record_wise(input: Format, output: Format) -> bool {
        input != Format::Json && output != Format::Json
    }

    fn pipeline(&self) -> Pipeline {
        Pipeline::new(self.model.clone(), self.input, self.output, &self.opts)
    }
}

impl Backend for InProcess {
    type Worker = ();

    fn worker(&self) {}

    fn invoke(&self, _: &mut (), batch: &Batch, _: Vec<u8>) -> Result<Response> {
        let mut p = self.pipeline();
        // The pipeline writes into a `BytesMut`, which cannot take a pooled
        // `Vec` over without a copy; its own buffer is handed on instead.
        let mut out = BytesMut::with_capacity(batch.body.len() / 2 + 64);
        let result = p
            .feed(&batch.body, &mut out)
            .and_then(|()| p.finish(&mut out));
        if let Err(e) = result {
            return Err(TransformError::Pipeline(if batch.filtered {
                e
            } else {
                rebase(e, batch.start)
            }));
        }
        Ok(Response {
            // Takes the buffer over without a copy.
            body: Vec::from(out),
            format: Some(self.output),
        })
    }

    fn invoke_streamed(
        &self,
        _: &mut (),
        body: &mut (dyn Read + Send),
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<Option<Format>> {
        let mut p = self.pipeline();
        let mut buf = vec![0u8; FEED];
        let mut out = BytesMut::new();
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(TransformError::io("reading the input", e)),
            };
            p.feed(&buf[..n], &mut out)?;
            sink(&out)?;
            out.clear();
        }
        p.finish(&mut out)?;
        sink(&out)?;
        Ok(Some(self.output))
    }

    fn max_retries(&self) -> u32 {
        // The pipeline is deterministic: another attempt fails the same way.
        0
    }

    fn batches_are_requests(&self) -> bool {
        false
    }
}

/// Shift the position of an input error from a range's own to the file's.
pub fn rebase(e: Error, start: Position) -> Error {
    e.map_position(|pos| Position {
        record: start.record.saturating_sub(1) + pos.record,
        line: start.line.saturating_sub(1) + pos.line,
        byte: start.byte + pos.byte,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn positions_move_to_the_file() {
        let e = Error::new(ErrorKind::FieldCount {
            pos: Position {
                record: 2,
                line: 3,
                byte: 10,
            },
            expected: 3,
            found: 1,
        })
        .context("x");
        let start = Position {
            record: 101,
            line: 120,
            byte: 5000,
        };
        let e = rebase(e, start);
        assert_eq!(
            e.to_string(),
            "x: record 102 (line 122, byte 5010): expected 3 fields, found 1"
        );
        assert_eq!(e.exit_code(), 65);
    }
}
