//! Streaming records into the fit: bytes → decoder → batch → [`Moments`].
//!
//! Input is read 1 MiB at a time into one reused buffer and decoded into one
//! reused batch of [`BATCH_RECORDS`] records, so memory is the same for a
//! kilobyte or a terabyte: the buffer, the batch, a decoder's partial
//! record, and the O(D²) sums. The first record of the training channel
//! fixes the number of features D; every later record (in any file, and in
//! validation) must have the same, and one that does not fails the job with
//! its file, record, line and byte.

use std::io::Read;

use super::fit::Moments;
use crate::codec::{DecodeOptions, Decoder};
use crate::error::{Error, ErrorKind, Position};
use crate::input::read_some;
use crate::media::Format;
use crate::progress::Progress;
use crate::record::{Batch, Label, Shape};

/// Bytes per `read` call: large enough that syscalls and decoder calls cost
/// nothing next to parsing.
pub const READ_BUF: usize = 1 << 20;

/// Records decoded before they are added to the sums: amortises the decoder
/// call; 1024 records of 16 features is a 128 KiB batch.
pub const BATCH_RECORDS: usize = 1024;

/// What a pass over a channel feeds its records to: the regressor's
/// [`Sums`], or a classifier's pass ([`super::logistic`]). The reading,
/// the first record's fixing of D and the width checks are shared.
pub trait Accumulate {
    /// The number of features, once the first record (of training) fixed it.
    fn features(&self) -> Option<usize>;
    /// Where D came from: "the first training record (FILE, line L) has D
    /// features", quoted when a later record has another width.
    fn origin(&self) -> &str;
    /// Fix D from the first record; an error if a fit of D features cannot
    /// be held in memory.
    fn fix(&mut self, features: usize, origin: String) -> Result<(), Error>;
    /// Add the good records of `batch`, all of D features.
    fn add(&mut self, batch: &Batch, stream: &Stream<'_>) -> Result<(), Error>;
    /// Records added so far.
    fn count(&self) -> u64;
    /// Whether labels may be text (class names); a regressor's may not.
    fn text_labels(&self) -> bool {
        false
    }
}

/// Sums of one channel, and where its number of features came from.
#[derive(Debug, Default)]
pub struct Sums {
    /// `None` until the first record (of training) fixes D.
    pub moments: Option<Moments>,
    /// "the first training record (FILE, line L)": quoted when a later
    /// record has another width.
    pub origin: String,
}

impl Sums {
    /// Sums whose D is already fixed (validation, by training).
    pub fn fixed(features: usize, origin: &str) -> Sums {
        Sums {
            moments: Some(Moments::new(features)),
            origin: origin.to_string(),
        }
    }
}

impl Accumulate for Sums {
    fn features(&self) -> Option<usize> {
        self.moments.as_ref().map(Moments::features)
    }

    fn origin(&self) -> &str {
        &self.origin
    }

    fn fix(&mut self, features: usize, origin: String) -> Result<(), Error> {
        // The co-moments' triangle, then the solve's D × D factor.
        let k = features as u128 + 1;
        let numbers = k * (k + 1) / 2 + (k - 1) * (k - 1);
        super::check_room(numbers, || format!("{origin}: least squares over them"))?;
        self.origin = origin;
        self.moments = Some(Moments::new(features));
        Ok(())
    }

    fn add(&mut self, batch: &Batch, stream: &Stream<'_>) -> Result<(), Error> {
        let Some(moments) = &mut self.moments else {
            return Ok(());
        };
        for (i, ((x, &y), pos)) in batch
            .rows()
            .iter()
            .zip(batch.labels())
            .zip(batch.positions())
            .enumerate()
        {
            if y.is_nan() {
                return Err(text_label_error(stream, batch, i, *pos));
            }
            moments.push(x, y);
        }
        Ok(())
    }

    fn count(&self) -> u64 {
        self.moments.as_ref().map_or(0, Moments::count)
    }
}

/// One input stream: which channel, which file, which format.
#[derive(Clone, Copy, Debug)]
pub struct Stream<'a> {
    /// The channel's name.
    pub channel: &'a str,
    /// The file or FIFO, as shown in messages.
    pub file: &'a str,
    /// How its records are written.
    pub format: Format,
    /// CSV with a header row to skip.
    pub csv_header: bool,
}

/// Reads streams into sums, reusing its buffer and batch across them.
#[derive(Debug)]
pub struct Ingest {
    buf: Vec<u8>,
    batch: Batch,
}

impl Default for Ingest {
    fn default() -> Ingest {
        Ingest::new()
    }
}

impl Ingest {
    /// A reader with its buffers allocated.
    pub fn new() -> Ingest {
        Ingest {
            buf: vec![0; READ_BUF],
            batch: Batch::with_capacity(BATCH_RECORDS, 16),
        }
    }

    /// Read `src` to its end, adding every record to `sums`.
    pub fn read(
        &mut self,
        src: &mut dyn Read,
        stream: &Stream<'_>,
        sums: &mut dyn Accumulate,
        progress: &Progress,
    ) -> Result<(), Error> {
        let opts = DecodeOptions {
            shape: sums.features().map_or(Shape::Any, Shape::Features),
            label: true,
            text_labels: sums.text_labels(),
            csv_header: stream.csv_header,
            stop_on_error: true,
            ..DecodeOptions::default()
        };
        let mut decoder = Decoder::new(stream.format, &opts);
        self.batch.clear();
        loop {
            let n = match read_some(src, &mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return Err(Error::io(format!("error reading {}", stream.file), e)),
            };
            progress.add(0, n as u64);
            let mut at = 0;
            while at < n {
                let used = decoder
                    .decode(&self.buf[at..n], &mut self.batch, BATCH_RECORDS)
                    .map_err(|e| record_error(stream, e, String::new()))?;
                if used == 0 && self.batch.is_empty() {
                    return Err(Error::new(ErrorKind::Internal(format!(
                        "the decoder made no progress in {}",
                        stream.file
                    ))));
                }
                at += used;
                progress.add(add_batch(&mut self.batch, stream, sums)?, 0);
                self.batch.clear();
            }
            progress.tick(stream.channel);
        }
        loop {
            let done = decoder
                .finish(&mut self.batch, BATCH_RECORDS)
                .map_err(|e| record_error(stream, e, String::new()))?;
            progress.add(add_batch(&mut self.batch, stream, sums)?, 0);
            self.batch.clear();
            if done {
                return Ok(());
            }
        }
    }
}

/// Add a batch's records to `sums`; fail on its first bad record. Returns
/// the records added.
#[inline]
fn add_batch(
    batch: &mut Batch,
    stream: &Stream<'_>,
    sums: &mut dyn Accumulate,
) -> Result<u64, Error> {
    // With `stop_on_error` a bad record is the batch's last: the good ones
    // before it do not matter, the job fails.
    if batch.has_errors() {
        if let Some((_, e)) = batch.take_errors().into_iter().next() {
            let hint = hint(&e, sums);
            return Err(record_error(stream, e, hint));
        }
    }
    let rows = batch.rows();
    if rows.is_empty() {
        return Ok(0);
    }
    let d = match sums.features() {
        Some(d) => d,
        None => {
            let first = rows.row(0);
            let pos = batch.positions()[0];
            if first.is_empty() {
                let e = Error::new(ErrorKind::NotARow {
                    pos,
                    reason: "a training record needs at least one feature after its label".into(),
                });
                return Err(record_error(stream, e, String::new()));
            }
            let origin = format!(
                "the first {} record ({}, line {}) has {} features",
                stream.channel,
                stream.file,
                pos.line,
                first.len()
            );
            sums.fix(first.len(), origin)?;
            first.len()
        }
    };
    // Only the batch that fixed D can hold other widths: later ones were
    // decoded with D as their shape.
    for (x, pos) in rows.iter().zip(batch.positions()) {
        if x.len() != d {
            return Err(width_error(stream, *pos, d, x.len(), sums.origin()));
        }
    }
    sums.add(batch, stream)?;
    Ok(rows.len() as u64)
}

/// A regressor's record whose label is text. Cold: bad input.
#[cold]
fn text_label_error(stream: &Stream<'_>, batch: &Batch, i: usize, pos: Position) -> Error {
    let text = match batch.label(i) {
        Label::Text(t) => t,
        Label::Number(_) => "",
    };
    let e = crate::codec::field_error(text.as_bytes(), pos, 1);
    record_error(stream, e, REGRESSOR_LABELS.into())
}

/// The hint on a regressor's label that is not a number.
const REGRESSOR_LABELS: &str = "; predictor_type regressor needs numeric labels (class names need \
     binary_classifier or multiclass_classifier)";

/// A record whose width differs from the first record's. Cold: bad input.
#[cold]
fn width_error(stream: &Stream<'_>, pos: Position, d: usize, found: usize, origin: &str) -> Error {
    let e = Error::new(ErrorKind::FieldCount {
        pos,
        expected: d + 1,
        found: found + 1,
    });
    record_error(stream, e, format!("; {origin}"))
}

/// The context for a decoder's field-count error: where D came from.
fn hint(e: &Error, sums: &dyn Accumulate) -> String {
    match e.kind() {
        ErrorKind::NotANumber { field: 1, .. } if !sums.text_labels() => REGRESSOR_LABELS.into(),
        ErrorKind::FieldCount { .. } if !sums.origin().is_empty() => format!("; {}", sums.origin()),
        _ => String::new(),
    }
}

pub(crate) fn record_error(stream: &Stream<'_>, source: Error, hint: String) -> Error {
    Error::new(ErrorKind::TrainingRecord {
        channel: stream.channel.to_string(),
        file: stream.file.to_string(),
        source,
        hint,
    })
}
