//! Our own model, scored in-process with the pipeline: the same splitting,
//! DataProcessing and assembly as against a container, without HTTP, on
//! every core.
//!
//! Each batch runs through a fresh [`Pipeline`], exactly what `mmp serve`
//! does for one request and `mmp score` for one file, so the bytes are the
//! ones the server would answer; a streamed body runs through `mmp score`'s
//! own read loop ([`score::Job::run`]).
//! When both formats are record-wise (CSV or JSON lines in and out), the
//! output of a request is the concatenation of its records' outputs, so the
//! request boundaries do not change a byte: the file is then cut into
//! ranges of [`crate::parallel::RANGE_BYTES`] at record boundaries and the ranges are scored
//! in parallel, whatever the batch strategy (and for `SplitType=None` or
//! `MaxPayloadInMB=0`, where the whole file is one request, too; a CSV file
//! is then cut only at newlines outside quotes). The per-request limits
//! still hold: with `SplitType=Line` a record larger than `MaxPayloadInMB`
//! fails its file, and with `SplitType=None` so does a file larger than it.
//!
//! Positions in errors are the file's (a range's positions are shifted by
//! where it starts), unless an `InputFilter` rewrote the records.

use std::io::{self, Write};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::error::{Error, Position, Result};
use crate::media::Format;
use crate::model::SharedModel;
use crate::pipeline::{Pipeline, PipelineOptions};
use crate::score;

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

    /// `mmp score`'s job for one request: the same code path.
    fn job(&self) -> score::Job<'_> {
        score::Job {
            model: &self.model,
            opts: &self.opts,
            input: self.input,
            output: self.output,
            progress: None,
        }
    }

    /// Score one batch on a blocking thread (tokio's pool).
    pub async fn invoke(self: &Arc<Self>, batch: &MiniBatch) -> Result<Vec<u8>> {
        let (me, body, filtered, start) = (
            self.clone(),
            batch.body.clone(),
            batch.filtered,
            batch.start,
        );
        let scored = tokio::task::spawn_blocking(move || {
            // The pipeline `mmp score` runs, fed the batch as it is (its
            // read loop would copy it into a buffer first).
            let mut p = Pipeline::new(me.model.clone(), me.input, me.output, &me.opts);
            let mut out = BytesMut::with_capacity(body.len() / 2 + 64);
            match p.feed(&body, &mut out).and_then(|()| p.finish(&mut out)) {
                // Takes the buffer over without a copy.
                Ok(()) => Ok(Vec::from(out)),
                Err(e) if filtered => Err(e),
                Err(e) => Err(rebase(e, start)),
            }
        });
        scored.await.map_err(joined)?
    }

    /// Score a streamed body; the output goes to `sink` as it is made.
    pub async fn invoke_streamed(
        self: &Arc<Self>,
        body: mpsc::Receiver<io::Result<Bytes>>,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let (tx, mut rx) = mpsc::channel(4);
        let me = self.clone();
        // The body as a blocking reader: tokio-util's bridge over the channel.
        let pieces = futures::stream::unfold(body, |mut rx| async move {
            rx.recv().await.map(|piece| (piece, rx))
        });
        let reader = SyncIoBridge::new(StreamReader::new(Box::pin(pieces)));
        let task = tokio::task::spawn_blocking(move || {
            me.job().run(reader, &mut ToChannel(tx), None).map(drop)
        });
        let mut sunk = Ok(());
        while let Some(piece) = rx.recv().await {
            sunk = sink(&piece);
            if sunk.is_err() {
                break; // dropping `rx` stops the pipeline
            }
        }
        drop(rx);
        let scored = task.await.map_err(joined)?;
        sunk?;
        scored
    }
}

fn joined(e: tokio::task::JoinError) -> Error {
    Error::new(crate::error::ErrorKind::Model(format!(
        "the scoring thread failed: {e}"
    )))
}

/// The pipeline's output, sent back to the job as it is written.
struct ToChannel(mpsc::Sender<Bytes>);

impl Write for ToChannel {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| io::Error::other("the output was closed"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
