//! Codecs: bytes ↔ records and predictions ↔ bytes, incrementally.
//!
//! Decoders take input in arbitrary slices (an HTTP chunk may end mid-record,
//! mid-quote, mid-`\r\n` or mid-UTF-8 character) and push each record into a
//! [`Batch`] as soon as it is complete; `finish` flushes a last record that
//! had no newline. They are synchronous and runtime-free, so the same code
//! serves HTTP bodies, files and stdin. Encoders write predictions (and, under
//! the `placeholder` policy, error markers) in the format the client asked for.

mod csv;
mod encode;
mod field;
mod json;
mod json_split;
mod lines;
pub mod records;

pub use self::csv::CsvDecoder;
pub(crate) use self::csv::Quoting;
pub use self::encode::Encoder;
pub(crate) use self::field::field_error;
pub use self::json::{JsonDecoder, JsonLinesDecoder};
pub use self::json_split::{JsonSplitter, Piece};

use crate::error::{Error, Result};
use crate::media::Format;
use crate::record::{Batch, Shape};

/// Default cap on one record: protects memory from input with no newline.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Default cap on an `application/json` document that is one row (`[1,2,3]`
/// or `{"features": [...]}`), the one shape kept whole: SageMaker's 6 MiB
/// realtime payload limit. Arrays of rows are streamed row by row, each row
/// under `max_record_bytes`.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 6 * 1024 * 1024;

/// How decoders read records.
#[derive(Clone, Debug)]
pub struct DecodeOptions {
    /// How many features each record must have.
    pub shape: Shape,
    /// Records carry a label first (CSV column 1, JSON `label`): training data.
    pub label: bool,
    /// A label (CSV column 1, JSON lines `"label"`) that is not a number is kept as text (a class name,
    /// [`crate::record::Label::Text`]) instead of being a bad field: for
    /// classifiers. Off, a regressor's label must be a number.
    pub text_labels: bool,
    /// Skip the first CSV record (a header row). Off by default: Batch
    /// Transform splits files, so only the first part would have a header.
    pub csv_header: bool,
    /// Largest record, in bytes; a longer one is a `record_too_large` error.
    pub max_record_bytes: usize,
    /// Largest `application/json` document that is one row, in bytes
    /// (an array of rows has no document cap, only `max_record_bytes`).
    pub max_document_bytes: usize,
    /// Return to the caller as soon as a bad record is pushed (the `fail`
    /// policy), instead of decoding on past it.
    pub stop_on_error: bool,
}

impl Default for DecodeOptions {
    fn default() -> DecodeOptions {
        DecodeOptions {
            shape: Shape::Any,
            label: false,
            text_labels: false,
            csv_header: false,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            stop_on_error: true,
        }
    }
}

/// A decoder for one of the [`Format`]s.
#[derive(Debug)]
pub enum Decoder {
    /// `text/csv`.
    Csv(CsvDecoder),
    /// `application/jsonlines`.
    JsonLines(JsonLinesDecoder),
    /// `application/json`.
    Json(JsonDecoder),
}

impl Decoder {
    /// A decoder for `format`.
    pub fn new(format: Format, opts: &DecodeOptions) -> Decoder {
        match format {
            Format::Csv => Decoder::Csv(CsvDecoder::new(opts)),
            Format::JsonLines => Decoder::JsonLines(JsonLinesDecoder::new(opts)),
            Format::Json => Decoder::Json(JsonDecoder::new(opts)),
        }
    }

    /// Decode records from `input` into `batch` until the input is used up,
    /// the batch holds `limit` records, or (with `stop_on_error`) a bad record
    /// was pushed. Returns the bytes consumed; the caller calls again with
    /// the rest. Bytes of an incomplete record are kept for the next call.
    /// An `Err` means the stream cannot go on (a malformed JSON document, or
    /// one kept whole over its cap).
    pub fn decode(&mut self, input: &[u8], batch: &mut Batch, limit: usize) -> Result<usize> {
        if input.is_empty() {
            return Ok(0);
        }
        match self {
            Decoder::Csv(d) => Ok(d.decode(input, batch, limit)),
            Decoder::JsonLines(d) => Ok(d.decode(input, batch, limit)),
            Decoder::Json(d) => d.decode(input, batch, limit),
        }
    }

    /// End of input: decode what is left, up to `limit` records in `batch`.
    /// Returns whether everything is out; if not, the caller empties the
    /// batch and calls again.
    pub fn finish(&mut self, batch: &mut Batch, limit: usize) -> Result<bool, Error> {
        match self {
            Decoder::Csv(d) => d.finish(batch),
            Decoder::JsonLines(d) => d.finish(batch),
            Decoder::Json(d) => return d.finish(batch, limit),
        }
        Ok(true)
    }
}

#[cfg(test)]
pub(crate) mod tests;
