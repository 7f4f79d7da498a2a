//! JSON decoding: `application/jsonlines` (one row per line) and
//! `application/json` (rows of a document), both streamed.
//!
//! A row is an array of numbers (`[1, 2.5, -3]`) or an object with a
//! `features` array (`{"features": [1, 2.5, -3]}`, as SageMaker's built-in
//! algorithms take it; other keys are ignored). For training data the label
//! is the object's `label`, or an array's first element, as in CSV: a
//! number, or, when the fit takes class names (`text_labels`, a
//! classifier), a non-empty string (`{"label": "setosa", "features": [...]}`).
//! Any other label (`true`, `null`, an array) is a `not_a_row` error at its
//! record; a string where only numbers will do is `not_a_number` (field 1),
//! as the same label in CSV column 1 is.
//!
//! Rows are deserialised straight into the [`Batch`] through a serde
//! `DeserializeSeed`, so a row allocates nothing; a row that is a flat
//! array of plain numbers, the usual one, skips serde's machinery
//! ([`push_plain_array`]) and gets the same values. A document's rows, of
//! `{"instances": [...]}` or a bare array of rows, are cut out as they arrive
//! by the [`JsonSplitter`] and parsed one by one, so memory is one row; a
//! document that is a single row is kept whole up to its cap.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::json_split::{column, strip_location, JsonSplitter, Piece};
use super::lines::{BomStripper, LineDecoder, LineFramer, Next};
use super::DecodeOptions;
use crate::error::{snippet, Error, ErrorKind, Position, Result};
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

    fn stop_on_error(&self) -> bool {
        self.opts.stop_on_error
    }

    fn step(&mut self, input: &[u8], at: &mut usize, batch: &mut Batch) -> bool {
        match self.framer.next(input, at) {
            Next::NeedMore => return false,
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
        true
    }
}

/// `application/json` decoder: the rows of `{"instances": [...]}` or of a
/// bare array, each decoded as soon as its last byte arrives (see
/// [`JsonSplitter`]); a document that is one row is decoded at its end.
#[derive(Debug)]
pub struct JsonDecoder {
    opts: DecodeOptions,
    /// Boxed: it is several times the size of the other decoders.
    split: Box<JsonSplitter>,
    finished: bool,
    /// A document error found after rows that are still in the batch: it is
    /// returned by the next call, once the caller has taken those rows, so
    /// they come out whatever the chunking.
    failed: Option<Error>,
}

impl JsonDecoder {
    /// A decoder with these options.
    pub fn new(opts: &DecodeOptions) -> JsonDecoder {
        JsonDecoder {
            opts: opts.clone(),
            split: Box::new(JsonSplitter::new(
                opts.max_record_bytes,
                opts.max_document_bytes,
            )),
            finished: false,
            failed: None,
        }
    }

    /// Decode the rows `input` completes; same contract as
    /// `CsvDecoder::decode`, except that a malformed document is an `Err`.
    pub fn decode(&mut self, input: &[u8], batch: &mut Batch, limit: usize) -> Result<usize> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let errors = batch.errors().len();
        let mut at = 0;
        loop {
            if batch.len() >= limit || (self.opts.stop_on_error && batch.errors().len() > errors) {
                return Ok(at);
            }
            let piece = match self.split.next(input, &mut at) {
                Ok(piece) => piece,
                Err(e) if batch.is_empty() => return Err(e),
                Err(e) => {
                    // Nothing after a document error counts: take it all.
                    self.failed = Some(e);
                    return Ok(input.len());
                }
            };
            match piece {
                Piece::NeedMore => return Ok(at),
                Piece::Row(text, pos) => push_row(text, pos, &self.opts, batch),
                Piece::TooLarge(pos) => {
                    let limit = self.opts.max_record_bytes;
                    batch.push_error(Error::new(ErrorKind::RecordTooLarge { pos, limit }));
                }
            }
        }
    }

    /// End of input: check the document is complete and decode a document
    /// that is one row. Returns whether everything is out.
    pub fn finish(&mut self, batch: &mut Batch, limit: usize) -> Result<bool, Error> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if batch.len() >= limit {
            return Ok(false);
        }
        if !self.finished {
            self.finished = true;
            if let Some((text, pos)) = self.split.finish()? {
                push_row(text, pos, &self.opts, batch);
            }
        }
        Ok(true)
    }
}

/// Parse one row (a JSON line, or one instance of a document) into `batch`.
fn push_row(text: &[u8], pos: Position, opts: &DecodeOptions, batch: &mut Batch) {
    batch.begin_row();
    if !opts.label && text.first() == Some(&b'[') {
        if push_plain_array(text, batch) {
            batch.end_row(pos, opts.shape, None);
            return;
        }
        // Not plainly numbers: serde_json reads it and names what is wrong.
        batch.discard_row();
    }
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
        text_labels: opts.text_labels,
    };
    let parsed = seed.deserialize(&mut de).and_then(|label| {
        de.end()?;
        Ok(label)
    });
    match parsed {
        Ok(None) if opts.label => batch.abandon_row(Error::new(ErrorKind::NotARow {
            pos,
            reason: "a training record needs a \"label\"".into(),
        })),
        Ok(Some(LabelValue::Refused(text))) => {
            // As CSV's column 1: empty, or not a number.
            let trimmed = text.trim_ascii();
            let kind = if trimmed.is_empty() {
                ErrorKind::EmptyField { pos, field: 1 }
            } else {
                ErrorKind::NotANumber {
                    pos,
                    field: 1,
                    text: snippet(trimmed.as_bytes()),
                }
            };
            batch.abandon_row(Error::new(kind))
        }
        Ok(label) => batch.end_row(pos, opts.shape, label.map(LabelValue::number)),
        Err(e) => {
            // The failing value is the one after those already pushed.
            let field = batch.row_width() + 1 + usize::from(opts.label);
            batch.abandon_row(row_error(e, pos, field))
        }
    }
}

/// Push the numbers of a row that is a flat array of plain numbers
/// (`[1.5, -2, 3e4]`, JSON whitespace between them) straight into `batch`,
/// without serde_json's machinery. `false` (some values pushed) for
/// anything else, which [`push_row`] then gives to serde_json.
fn push_plain_array(text: &[u8], batch: &mut Batch) -> bool {
    let Some(mut rest) = text.strip_prefix(b"[").and_then(|t| t.strip_suffix(b"]")) else {
        return false;
    };
    loop {
        rest = skip_json_space(rest);
        let Some((v, n)) = exact_number(rest) else {
            return false;
        };
        batch.push_value(v);
        match skip_json_space(&rest[n..]).split_first() {
            None => return true,
            Some((b',', tail)) => rest = tail,
            Some(_) => return false,
        }
    }
}

/// `s` past JSON's whitespace (space, tab, CR, LF: not a form feed).
fn skip_json_space(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    &s[n..]
}

/// Powers of ten that an f64 holds exactly.
const EXACT_POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The JSON number at the start of `s`, correctly rounded, and its length;
/// `None` (not JSON's grammar, or out of an f64's range) leaves it to
/// serde_json, for its error.
///
/// The number must follow JSON's grammar (RFC 8259 §6:
/// `-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`). With at most 15 digits (a
/// significand below 2^53) and a power of ten of at most 22 either way
/// (exact in an f64), `significand × 10^exp` is one correctly rounded
/// multiplication or division; any other is `fast_float2`'s. The tests
/// check the values against Rust's own `str::parse` and serde_json (built
/// with `float_roundtrip`: its default reading can be one step off).
///
/// Why by hand and not `fast_float2::parse` after checking the grammar:
/// reading the digits once, for the grammar and the value together, took
/// `mmp score` of the bench's 100 MB JSON lines on one core to 0.15–0.16 s,
/// against 0.21–0.24 s with the grammar checked and then
/// `fast_float2::parse`, and 0.24–0.29 s through serde_json (`taskset -c 0`,
/// two sets of 3 interleaved runs). On CSV, where
/// `fast_float2::parse_partial` needs no grammar check, the same loop
/// measured no faster (0.19 s either way), so CSV keeps `fast_float2`.
fn exact_number(s: &[u8]) -> Option<(f64, usize)> {
    let negative = s.first() == Some(&b'-');
    let mut i = usize::from(negative);
    let (mut significand, mut digits) = (0u64, 0usize);
    let mut read_digits = |i: &mut usize| {
        let from = *i;
        while let Some(d) = s.get(*i).filter(|b| b.is_ascii_digit()) {
            significand = significand
                .wrapping_mul(10)
                .wrapping_add(u64::from(d - b'0'));
            *i += 1;
        }
        digits += *i - from;
        *i - from
    };
    match s.get(i) {
        // A leading 0 is the whole integer part: a digit after it is not JSON.
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => _ = read_digits(&mut i),
        _ => return None,
    }
    let mut exp = 0i32;
    if s.get(i) == Some(&b'.') {
        i += 1;
        match read_digits(&mut i) {
            0 => return None,
            n => exp -= i32::try_from(n).ok()?,
        }
    }
    if let Some(b'e' | b'E') = s.get(i) {
        let sign = s.get(i + 1).copied();
        i += 1 + usize::from(matches!(sign, Some(b'+' | b'-')));
        let from = i;
        let mut e = 0i32;
        while let Some(d) = s.get(i).filter(|b| b.is_ascii_digit()) {
            e = e.saturating_mul(10).saturating_add(i32::from(d - b'0'));
            i += 1;
        }
        if i == from {
            return None;
        }
        exp = exp.saturating_add(if sign == Some(b'-') { -e } else { e });
    }
    let Some(&pow) = EXACT_POW10
        .get(exp.unsigned_abs() as usize)
        .filter(|_| digits <= 15)
    else {
        // Past the one-operation case (Python's `repr` of a double often
        // has 17 digits): the grammar is checked, so fast_float2 reads the
        // text, correctly rounded. Out of an f64's range is serde_json's
        // error to give.
        let v = fast_float2::parse::<f64, _>(&s[..i]).ok()?;
        return v.is_finite().then_some((v, i));
    };
    let magnitude = match exp >= 0 {
        true => significand as f64 * pow,
        false => significand as f64 / pow,
    };
    Some((if negative { -magnitude } else { magnitude }, i))
}

/// Turn serde_json's error for a row into ours: JSON that does not parse is
/// `invalid_json`; JSON of the wrong shape is `not_a_row`; a number too large
/// for an f64 is `non_finite`.
#[cold]
fn row_error(e: serde_json::Error, pos: Position, field: usize) -> Error {
    let col = column(&e);
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
    /// A string label is a class name (kept as the batch's label text).
    text_labels: bool,
}

/// A row's label, as [`LabelSeed`] read it.
#[derive(Debug)]
enum LabelValue {
    /// A number.
    Number(f64),
    /// A class name, already given to the batch (`push_label_text`).
    Text,
    /// A string the fit cannot take: empty, or any string when labels must
    /// be numbers. The caller reports it as CSV reports column 1.
    Refused(String),
}

impl LabelValue {
    /// The label for `Batch::end_row`: NaN marks text.
    fn number(self) -> f64 {
        match self {
            LabelValue::Number(y) => y,
            LabelValue::Text | LabelValue::Refused(_) => f64::NAN,
        }
    }
}

/// Reads a label: a number, or a string (a class name, when `text`).
struct LabelSeed<'b> {
    batch: &'b mut Batch,
    text: bool,
}

impl<'de> DeserializeSeed<'de> for LabelSeed<'_> {
    type Value = LabelValue;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<LabelValue, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LabelSeed<'_> {
    type Value = LabelValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text {
            f.write_str("a label: a number or a string (a class name)")
        } else {
            f.write_str("a label: a number")
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<LabelValue, E> {
        Ok(LabelValue::Number(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<LabelValue, E> {
        Ok(LabelValue::Number(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<LabelValue, E> {
        Ok(LabelValue::Number(v as f64))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<LabelValue, E> {
        if !self.text || v.trim_ascii().is_empty() {
            return Ok(LabelValue::Refused(v.to_string()));
        }
        self.batch.push_label_text(v);
        Ok(LabelValue::Text)
    }
}

const ROW_SHAPE: &str = "an array of numbers or an object with a \"features\" array";

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Option<LabelValue>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<LabelValue>, D::Error> {
        d.deserialize_any(self)
    }
}

impl RowSeed<'_> {
    fn label_seed(&mut self) -> LabelSeed<'_> {
        LabelSeed {
            batch: &mut *self.batch,
            text: self.text_labels,
        }
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Option<LabelValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ROW_SHAPE)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Option<LabelValue>, A::Error> {
        let mut label = None;
        if self.label {
            label = seq.next_element_seed(self.label_seed())?;
        }
        while let Some(v) = seq.next_element::<f64>()? {
            self.batch.push_value(v);
        }
        Ok(label)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Option<LabelValue>, A::Error> {
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
                Key::Label if self.label && label.is_some() => {
                    return Err(de::Error::duplicate_field("label"))
                }
                Key::Label if self.label => label = Some(map.next_value_seed(self.label_seed())?),
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
