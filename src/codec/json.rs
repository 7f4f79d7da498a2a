//! JSON decoding: `application/jsonlines` (one row per line, streamed) and
//! `application/json` (one bounded document).
//!
//! A row is an array of numbers (`[1, 2.5, -3]`) or an object with a
//! `features` array (`{"features": [1, 2.5, -3]}`, as SageMaker's built-in
//! algorithms take it; other keys are ignored). For training data the label
//! is the object's `label`, or an array's first element, as in CSV.
//!
//! Rows are deserialised straight into the [`Batch`] through a serde
//! `DeserializeSeed`, so a row allocates nothing. A document is read whole up
//! to its cap (the one codec that buffers, by the nature of JSON) and then
//! handed out row by row; `{"instances": [...]}`, a bare array of rows and a
//! single row are accepted.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::lines::{BomStripper, LineDecoder, LineFramer, Next, BOM};
use super::DecodeOptions;
use crate::error::{Error, ErrorKind, Position};
use crate::record::Batch;

/// Incremental `application/jsonlines` decoder.
#[derive(Debug)]
pub struct JsonLinesDecoder {
    framer: LineFramer,
    bom: BomStripper,
    opts: DecodeOptions,
    records: u64,
}

impl JsonLinesDecoder {
    /// A decoder with these options.
    pub fn new(opts: &DecodeOptions) -> JsonLinesDecoder {
        JsonLinesDecoder {
            framer: LineFramer::new(opts.max_record_bytes),
            bom: BomStripper::default(),
            opts: opts.clone(),
            records: 0,
        }
    }

    /// Decode rows from `input`; same contract as `CsvDecoder::decode`.
    pub fn decode(&mut self, input: &[u8], batch: &mut Batch, limit: usize) -> usize {
        self.decode_lines(input, batch, limit)
    }

    /// End of input: decode a last line that had no newline.
    pub fn finish(&mut self, batch: &mut Batch) {
        self.replay_partial_bom(batch);
        if let Some((line, pos)) = self.framer.finish() {
            number_and_push(&mut self.records, line, pos, &self.opts, batch);
        }
    }
}

/// Number a non-blank line as the next record and push its row.
fn number_and_push(
    records: &mut u64,
    line: &[u8],
    pos: Position,
    opts: &DecodeOptions,
    batch: &mut Batch,
) {
    let line = line.trim_ascii();
    if !line.is_empty() {
        *records += 1;
        let pos = Position {
            record: *records,
            ..pos
        };
        push_row(line, pos, opts, batch);
    }
}

impl LineDecoder for JsonLinesDecoder {
    fn parts(&mut self) -> (&mut BomStripper, &mut LineFramer) {
        (&mut self.bom, &mut self.framer)
    }

    fn run(&mut self, input: &[u8], batch: &mut Batch, limit: usize) -> usize {
        let errors = batch.errors().len();
        let mut at = 0;
        loop {
            if batch.len() >= limit || (self.opts.stop_on_error && batch.errors().len() > errors) {
                return at;
            }
            match self.framer.next(input, &mut at) {
                Next::NeedMore => return at,
                Next::TooLong(pos) => {
                    self.records += 1;
                    let pos = Position {
                        record: self.records,
                        ..pos
                    };
                    let limit = self.opts.max_record_bytes;
                    batch.push_error(Error::new(ErrorKind::RecordTooLarge { pos, limit }));
                }
                Next::Line(line, pos) => {
                    number_and_push(&mut self.records, line, pos, &self.opts, batch)
                }
            }
        }
    }
}

/// `application/json` decoder: buffers one document up to its cap.
#[derive(Debug)]
pub struct JsonDecoder {
    opts: DecodeOptions,
    doc: Vec<u8>,
    /// Byte ranges of the rows in `doc`, once parsed.
    rows: Option<Vec<(usize, usize)>>,
    /// Next row to hand out, and the line/byte it was counted to.
    next: usize,
    line: u64,
    line_byte: usize,
}

impl JsonDecoder {
    /// A decoder with these options.
    pub fn new(opts: &DecodeOptions) -> JsonDecoder {
        JsonDecoder {
            opts: opts.clone(),
            doc: Vec::new(),
            rows: None,
            next: 0,
            line: 1,
            line_byte: 0,
        }
    }

    /// Buffer `input`; fails as soon as the document is over its cap.
    pub fn decode(&mut self, input: &[u8]) -> Result<usize, Error> {
        let limit = self.opts.max_document_bytes;
        if self.doc.len() + input.len() > limit {
            return Err(Error::new(ErrorKind::DocumentTooLarge { limit }));
        }
        self.doc.extend_from_slice(input);
        Ok(input.len())
    }

    /// End of input: parse the document and hand out up to `limit` rows.
    /// Returns whether every row has been handed out.
    pub fn finish(&mut self, batch: &mut Batch, limit: usize) -> Result<bool, Error> {
        if self.rows.is_none() {
            let start = if self.doc.starts_with(BOM) {
                BOM.len()
            } else {
                0
            };
            self.rows = Some(row_ranges(&self.doc, start)?);
        }
        let rows = self.rows.as_deref().unwrap_or_default();
        let errors = batch.errors().len();
        while self.next < rows.len() && batch.len() < limit {
            if self.opts.stop_on_error && batch.errors().len() > errors {
                break;
            }
            let (start, end) = rows[self.next];
            self.line +=
                memchr::memchr_iter(b'\n', &self.doc[self.line_byte..start]).count() as u64;
            self.line_byte = start;
            self.next += 1;
            let pos = Position {
                record: self.next as u64,
                line: self.line,
                byte: start as u64,
            };
            push_row(&self.doc[start..end], pos, &self.opts, batch);
        }
        Ok(self.next == rows.len())
    }
}

/// The byte ranges of the rows of a document (see the module docs).
fn row_ranges(doc: &[u8], start: usize) -> Result<Vec<(usize, usize)>, Error> {
    let text = &doc[start..];
    if text.trim_ascii().is_empty() {
        return Ok(Vec::new());
    }
    if let Err(e) = std::str::from_utf8(text) {
        let at = e.valid_up_to();
        let line = memchr::memchr_iter(b'\n', &text[..at]).count() + 1;
        let column = at
            - text[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        return Err(Error::new(ErrorKind::InvalidDocument {
            line,
            column,
            reason: "not valid UTF-8".into(),
        }));
    }
    let range = |raw: &RawValue| {
        let s = raw.get();
        let at = s.as_ptr() as usize - doc.as_ptr() as usize;
        (at, at + s.len())
    };
    let whole = || {
        let t = text.trim_ascii_start();
        let at = doc.len() - t.len();
        vec![(at, at + t.trim_ascii_end().len())]
    };
    match text.trim_ascii_start().first() {
        Some(b'{') => {
            #[derive(Deserialize)]
            struct Top<'a> {
                #[serde(borrow)]
                instances: Option<Vec<&'a RawValue>>,
                #[serde(borrow)]
                features: Option<&'a RawValue>,
            }
            let top: Top<'_> = serde_json::from_slice(text).map_err(doc_error)?;
            match (top.instances, top.features) {
                (Some(rows), _) => Ok(rows.into_iter().map(range).collect()),
                (None, Some(_)) => Ok(whole()),
                (None, None) => Err(shape_error()),
            }
        }
        Some(b'[') => {
            let rows: Vec<&RawValue> = serde_json::from_slice(text).map_err(doc_error)?;
            let one_row = rows
                .first()
                .is_some_and(|r| !matches!(r.get().as_bytes().first(), Some(b'[' | b'{')));
            if one_row {
                Ok(whole())
            } else {
                Ok(rows.into_iter().map(range).collect())
            }
        }
        _ => match serde_json::from_slice::<IgnoredAny>(text) {
            Err(e) => Err(doc_error(e)),
            Ok(_) => Err(shape_error()),
        },
    }
}

fn doc_error(e: serde_json::Error) -> Error {
    Error::new(ErrorKind::InvalidDocument {
        line: e.line(),
        column: e.column(),
        reason: strip_location(&e),
    })
}

fn shape_error() -> Error {
    Error::new(ErrorKind::InvalidDocument {
        line: 1,
        column: 1,
        reason: "expected {\"instances\": [...]}, an array of rows, or one row".into(),
    })
}

/// serde_json's message without its " at line L column C" suffix.
fn strip_location(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

/// Parse one row (a JSON line, or one instance of a document) into `batch`.
fn push_row(text: &[u8], pos: Position, opts: &DecodeOptions, batch: &mut Batch) {
    batch.begin_row();
    // JSON text is UTF-8 (RFC 8259); serde_json does not check the strings it
    // skips (an ignored "id"), so check the whole row here.
    if let Err(e) = std::str::from_utf8(text) {
        let reason = format!(
            "not valid UTF-8 (bad byte at column {})",
            e.valid_up_to() + 1
        );
        batch.abandon_row(Error::new(ErrorKind::InvalidJson { pos, reason }));
        return;
    }
    let mut de = serde_json::Deserializer::from_slice(text);
    let seed = RowSeed {
        batch: &mut *batch,
        label: opts.label,
    };
    let parsed = seed.deserialize(&mut de).and_then(|label| {
        de.end()?;
        Ok(label)
    });
    match parsed {
        Ok(label) if opts.label && label.is_none() => {
            batch.abandon_row(Error::new(ErrorKind::NotARow {
                pos,
                reason: "a training record needs a \"label\"".into(),
            }))
        }
        Ok(label) => batch.end_row(pos, opts.shape, label),
        Err(e) => {
            // The failing value is the one after those already pushed.
            let field = batch.row_width() + 1 + usize::from(opts.label);
            batch.abandon_row(row_error(e, pos, field))
        }
    }
}

/// Turn serde_json's error for a row into ours: JSON that does not parse is
/// `invalid_json`; JSON of the wrong shape is `not_a_row`; a number too large
/// for an f64 is `non_finite`.
#[cold]
fn row_error(e: serde_json::Error, pos: Position, field: usize) -> Error {
    let col = e.column();
    let reason = format!("{} at column {col}", strip_location(&e));
    if reason.starts_with("number out of range") {
        return Error::new(ErrorKind::NonFinite {
            pos,
            field,
            text: format!("number out of range at column {col}"),
        });
    }
    match e.classify() {
        serde_json::error::Category::Data => Error::new(ErrorKind::NotARow { pos, reason }),
        _ => Error::new(ErrorKind::InvalidJson { pos, reason }),
    }
}

/// Deserialises one row into the batch; yields its label, if any.
struct RowSeed<'b> {
    batch: &'b mut Batch,
    label: bool,
}

const ROW_SHAPE: &str = "an array of numbers or an object with a \"features\" array";

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Option<f64>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Option<f64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ROW_SHAPE)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<f64>, A::Error> {
        let mut label = None;
        if self.label {
            label = seq.next_element::<f64>()?;
        }
        while let Some(v) = seq.next_element::<f64>()? {
            self.batch.push_value(v);
        }
        Ok(label)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<f64>, A::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Key {
            Features,
            Label,
            #[serde(other)]
            Other,
        }
        let mut label = None;
        let mut seen = false;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Features if seen => return Err(de::Error::duplicate_field("features")),
                Key::Features => {
                    seen = true;
                    map.next_value_seed(Features(&mut *self.batch))?;
                }
                Key::Label if self.label => label = Some(map.next_value::<f64>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !seen {
            return Err(de::Error::missing_field("features"));
        }
        Ok(label)
    }
}

/// The `features` array of an object row.
struct Features<'b>(&'b mut Batch);

impl<'de> DeserializeSeed<'de> for Features<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Features<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<f64>()? {
            self.0.push_value(v);
        }
        Ok(())
    }
}
