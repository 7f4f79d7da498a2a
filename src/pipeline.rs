//! The record pipeline: bytes in → records → model → predictions → bytes out.
//!
//! A [`Pipeline`] is made per request (or per file) and fed the input in
//! whatever slices it arrives in. Records are decoded into a reused batch of
//! at most `batch_records`; each full batch, and whatever is decoded when a
//! slice is used up, is scored and encoded at once, so a prediction leaves as
//! soon as its record is complete and memory stays at one record plus one
//! batch plus the output the caller has not yet taken. The server, `score`,
//! `transform` and `train` all run this same code, which is why their answers
//! are byte-identical.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::BytesMut;

use crate::codec::{DecodeOptions, Decoder, Encoder};
use crate::error::{Error, ErrorKind, Position};
use crate::media::Format;
use crate::model::{model_error, model_panicked, SharedModel};
use crate::record::{Batch, Shape};

/// What to do with a bad record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Stop at the first bad record with its error (HTTP 400 if nothing was
    /// sent yet, else the response is cut off; CLI exit code 65).
    #[default]
    Fail,
    /// Write an error marker in the bad record's place and go on, so outputs
    /// still line up one-to-one with inputs (what AWS suggests for Batch
    /// Transform). Errors that break the stream itself still stop it.
    Placeholder,
}

impl std::str::FromStr for ErrorPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<ErrorPolicy, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fail" => Ok(ErrorPolicy::Fail),
            "placeholder" => Ok(ErrorPolicy::Placeholder),
            _ => Err(Error::config(format!(
                "unknown error policy {s:?}: use fail or placeholder"
            ))),
        }
    }
}

/// Options of a pipeline, shared by every request.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Decoder limits and CSV header handling (`shape` comes from the model).
    pub decode: DecodeOptions,
    /// What to do with a bad record.
    pub policy: ErrorPolicy,
    /// Records scored per model call.
    pub batch_records: usize,
}

/// Default records per model call: large enough to amortise the call, small
/// enough that a batch of 16 features is 128 KiB.
pub const DEFAULT_BATCH_RECORDS: usize = 1024;

impl Default for PipelineOptions {
    fn default() -> PipelineOptions {
        PipelineOptions {
            decode: DecodeOptions::default(),
            policy: ErrorPolicy::Fail,
            batch_records: DEFAULT_BATCH_RECORDS,
        }
    }
}

/// Counters of one run, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records decoded, good or bad.
    pub records: u64,
    /// Predictions written.
    pub predictions: u64,
    /// Bad records replaced by a placeholder.
    pub placeholders: u64,
}

impl Stats {
    /// Add another run's counters (a WebSocket session runs several).
    pub fn add(&mut self, other: Stats) {
        self.records += other.records;
        self.predictions += other.predictions;
        self.placeholders += other.placeholders;
    }
}

/// One input stream's run through decoder, model and encoder.
pub struct Pipeline {
    decoder: Decoder,
    encoder: Encoder,
    model: SharedModel,
    policy: ErrorPolicy,
    on_placeholder: Option<fn(&Error)>,
    /// Placeholders go unreported: see [`Pipeline::speculative`].
    speculative: bool,
    batch: Batch,
    /// The model's numbers for the batch, `width` per record.
    preds: Vec<f64>,
    width: usize,
    limit: usize,
    stats: Stats,
    /// Where this stream starts in a larger input (a range of it, see
    /// [`crate::parallel`]): error positions are shifted by it.
    base: Option<Position>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("decoder", &self.decoder)
            .field("encoder", &self.encoder)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline reading `input` and writing `output` with `model`.
    pub fn new(
        model: SharedModel,
        input: Format,
        output: Format,
        opts: &PipelineOptions,
    ) -> Pipeline {
        let mut decode = opts.decode.clone();
        decode.shape = model.num_features().map_or(Shape::Any, Shape::Features);
        decode.stop_on_error = opts.policy == ErrorPolicy::Fail;
        let limit = opts.batch_records.max(1);
        let width = model.num_features().unwrap_or(16);
        // Room for a small request; a large one grows the batch to `limit`
        // once and reuses it. (Reserving `limit` rows up front would cost
        // every 1-row request a 128 KiB allocation.) Four rows of 16
        // features are 512 bytes, which glibc's per-thread cache serves;
        // 32 rows (4 KiB) went to its slower path, ~500 instructions per
        // 1-row request (callgrind).
        let initial = limit.min(4);
        let shape = model.output();
        let per_record = shape.width().max(1);
        Pipeline {
            decoder: Decoder::new(input, &decode),
            encoder: Encoder::with_output(output, shape),
            model,
            policy: opts.policy,
            on_placeholder: None,
            speculative: false,
            batch: Batch::with_capacity(initial, width),
            preds: Vec::with_capacity(initial * per_record),
            width: per_record,
            limit,
            stats: Stats::default(),
            base: None,
        }
    }

    /// Tell `sink` of each bad record replaced by a placeholder: the server
    /// counts them in its metrics; `mmp score` and in-process transform do
    /// not, so their work is not counted as server traffic.
    pub fn on_placeholder(mut self, sink: fn(&Error)) -> Pipeline {
        self.on_placeholder = Some(sink);
        self
    }

    /// A run whose placeholders, if it writes any, are not reported (no
    /// warning, no `sink`): a range scored before its place in the stream is
    /// known, which is scored again with its exact positions when it holds a
    /// bad record ([`crate::parallel`]). Reported there, each bad record
    /// would be logged twice, first at a position that is not the input's.
    pub fn speculative(mut self) -> Pipeline {
        self.speculative = true;
        self
    }

    /// This stream is a part of a larger input starting at `base` (its
    /// first record is `base.record`, on line `base.line`, at byte
    /// `base.byte`): the positions of its errors, returned or written as
    /// placeholders, are the larger input's.
    pub fn with_base(mut self, base: Position) -> Pipeline {
        self.base = Some(base);
        self
    }

    /// An error's position moved from this stream's to the larger input's.
    fn rebase(&self, e: Error) -> Error {
        match self.base {
            None => e,
            Some(start) => e.map_position(|pos| Position {
                record: start.record.saturating_sub(1) + pos.record,
                line: start.line.saturating_sub(1) + pos.line,
                byte: start.byte + pos.byte,
            }),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The output format.
    pub fn output_format(&self) -> Format {
        self.encoder.format()
    }

    /// Decode `input`, score every record completed by it, and append the
    /// encoded predictions to `out`. An `Err` ends the run: a bad record
    /// under the `fail` policy, or an error that breaks the stream.
    pub fn feed(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), Error> {
        self.feed_inner(input, out).map_err(|e| self.rebase(e))
    }

    fn feed_inner(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(), Error> {
        let mut at = 0;
        while at < input.len() {
            at += self
                .decoder
                .decode(&input[at..], &mut self.batch, self.limit)?;
            if self.batch.len() >= self.limit || self.batch.has_errors() {
                self.flush(out)?;
            }
        }
        self.flush(out)
    }

    /// End of input: score what is left and close the output.
    pub fn finish(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        self.finish_inner(out).map_err(|e| self.rebase(e))
    }

    fn finish_inner(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        while !self.decoder.finish(&mut self.batch, self.limit)? {
            self.flush(out)?;
        }
        self.flush(out)?;
        self.encoder.end(out);
        Ok(())
    }

    /// Score and encode the batch, then empty it.
    fn flush(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.stats.records += self.batch.len() as u64;
        let rows = self.batch.rows();
        self.preds.clear();
        // A model that panics fails its run as an `Err` would, wherever the
        // pipeline runs (inline on the server's runtime, on the compute
        // pool, in a range, in `mmp score`): the request gets its 500, the
        // connection and the server go on. Free when nothing panics.
        let preds = &mut self.preds;
        catch_unwind(AssertUnwindSafe(|| self.model.predict(rows, preds)))
            .unwrap_or_else(|_| Err(model_panicked()))?;
        if self.preds.len() != rows.len() * self.width {
            let msg = if self.width == 1 {
                format!(
                    "the model returned {} predictions for {} records",
                    self.preds.len(),
                    rows.len()
                )
            } else {
                format!(
                    "the model returned {} numbers for {} records of {} numbers each",
                    self.preds.len(),
                    rows.len(),
                    self.width
                )
            };
            self.batch.clear();
            return Err(model_error(msg));
        }
        let result = if self.batch.has_errors() || self.preds.iter().any(|y| !y.is_finite()) {
            self.encode_with_errors(out)
        } else {
            for values in self.preds.chunks_exact(self.width) {
                self.encoder.record(values, out);
            }
            self.stats.predictions += rows.len() as u64;
            Ok(())
        };
        self.batch.clear();
        result
    }

    /// The slow path of `flush`: interleave predictions with bad records.
    #[cold]
    fn encode_with_errors(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        let mut errors = self.batch.take_errors().into_iter().peekable();
        let positions = self.batch.positions();
        let mut next = 0;
        for slot in 0..self.batch.len() {
            let err = if errors.peek().is_some_and(|(s, _)| *s == slot) {
                errors.next().map(|(_, e)| e)
            } else {
                let values = &self.preds[next * self.width..(next + 1) * self.width];
                let pos = positions[next];
                next += 1;
                match values.iter().find(|y| !y.is_finite()) {
                    None => {
                        self.encoder.record(values, out);
                        self.stats.predictions += 1;
                        None
                    }
                    Some(&value) => Some(Error::new(ErrorKind::NonFinitePrediction { pos, value })),
                }
            };
            if let Some(err) = err {
                if self.policy == ErrorPolicy::Fail || !err.can_continue() {
                    // Rebased by `feed` or `finish`.
                    return Err(err);
                }
                let err = self.rebase(err);
                if !self.speculative {
                    tracing::warn!(error = %err, kind = err.code(), "bad record replaced by a placeholder");
                    if let Some(sink) = self.on_placeholder {
                        sink(&err);
                    }
                }
                self.encoder.error(&err, out);
                self.stats.placeholders += 1;
            }
        }
        Ok(())
    }
}
