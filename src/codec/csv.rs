//! `text/csv` decoding, incrementally, on csv-core's push parser.
//!
//! Two paths give the same records:
//!
//! * **Fast path.** Most lines have no `"`. Such a line is a whole record
//!   (a newline can only be inside a record if a quote opened before it), so
//!   its numbers are parsed in place, each up to its comma, without a state
//!   machine (the bench's `fast-score` idea, in one scan instead of two).
//! * **Quoted path.** A line with a `"` anywhere is handed, from the start of
//!   its record, to `csv_core::Reader`, which handles RFC 4180 quoting,
//!   doubled quotes and newlines inside quotes, and keeps its state across
//!   chunk borders until the record ends; then the fast path resumes.
//!
//! Records end at `\n`; a `\r` before it is trimmed with the field's other
//! whitespace, so CRLF and LF files read the same. Blank lines are skipped, a
//! UTF-8 BOM at the start is dropped, and with `csv_header` the first record
//! is skipped. csv-core "never returns an error" (its docs), so field counts
//! and numbers are checked here, each failure with its record's position.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder, Terminator};
use memchr::{memchr, memchr_iter};

use super::field::parse_field;
use super::lines::{BomStripper, LineDecoder, LineFramer, Next, BOM};
use super::DecodeOptions;
use crate::error::{Error, ErrorKind, Position};
use crate::record::{Batch, Shape};

/// Initial size of the quoted path's field buffer; it doubles up to one
/// byte past the record limit.
const QUOTED_BUF: usize = 4 * 1024;

/// Most fields a quoted-path record may have; more is reported as a record
/// too large (no model takes 65,536 features from one CSV line).
const MAX_FIELDS: usize = 1 << 16;

/// Incremental CSV decoder. See the module docs.
#[derive(Debug)]
pub struct CsvDecoder {
    framer: LineFramer,
    bom: BomStripper,
    rows: RowParser,
}

/// Everything but the framer, so a line borrowed from the framer's carry can
/// be parsed while the rest of the decoder is mutated.
#[derive(Debug)]
struct RowParser {
    opts: DecodeOptions,
    /// csv-core's reader, made on the first quoted record: most inputs have
    /// none, and building its DFA costs more than a small request's parse.
    /// Boxed: the DFA tables are most of a decoder's size.
    core: Option<Box<Reader>>,
    /// Field bytes and field ends of the record on the quoted path.
    out: Vec<u8>,
    ends: Vec<usize>,
    /// The record on the quoted path, while it is incomplete.
    quoted: Option<Quoted>,
    /// Records seen (good or bad), for numbering.
    records: u64,
    /// The header row is still to be skipped.
    header_pending: bool,
}

/// A record being read on the quoted path.
#[derive(Debug)]
struct Quoted {
    pos: Position,
    nout: usize,
    nends: usize,
    /// Its quoting after the bytes read so far: [`Quoting::Quoted`] at
    /// the end of input is an unterminated quote.
    quoting: Quoting,
    /// The record's bytes read so far (quotes, delimiters and newlines
    /// inside quotes too): more than the limit, not counting its final
    /// newline, is too large, as a line is for the framer.
    raw: usize,
    /// Over the record limit: its bytes are being discarded.
    too_long: bool,
    /// Its first line was over the limit: its error is already in the
    /// batch (the header's never is), and nothing more is said of it.
    reported: bool,
}

impl Quoted {
    /// The record starting at `pos`, nothing of it read yet.
    fn at(pos: Position) -> Quoted {
        Quoted {
            pos,
            nout: 0,
            nends: 0,
            quoting: Quoting::FieldStart,
            raw: 0,
            too_long: false,
            reported: false,
        }
    }
}

impl CsvDecoder {
    /// A decoder with these options.
    pub fn new(opts: &DecodeOptions) -> CsvDecoder {
        CsvDecoder {
            framer: LineFramer::new(opts.max_record_bytes),
            bom: BomStripper::default(),
            rows: RowParser {
                core: None,
                out: Vec::new(),
                ends: Vec::new(),
                quoted: None,
                records: 0,
                header_pending: opts.csv_header,
                opts: opts.clone(),
            },
        }
    }

    /// Decode records from `input` into `batch` until the input is used up,
    /// the batch holds `limit` records, or (with `stop_on_error`) a bad
    /// record was pushed. Returns the bytes consumed; an incomplete last
    /// record is kept for the next call.
    pub fn decode(&mut self, input: &[u8], batch: &mut Batch, limit: usize) -> usize {
        self.decode_lines(input, batch, limit)
    }
}

impl LineDecoder for CsvDecoder {
    fn parts(&mut self) -> (&mut BomStripper, &mut LineFramer) {
        (&mut self.bom, &mut self.framer)
    }

    fn stop_on_error(&self) -> bool {
        self.rows.opts.stop_on_error
    }

    fn step(&mut self, input: &[u8], at: &mut usize, batch: &mut Batch) -> bool {
        if self.rows.quoted.is_some() {
            if *at == input.len() {
                // An empty slice would tell csv-core the input ended.
                return false;
            }
            let n = self.rows.feed_quoted(&input[*at..], batch);
            self.framer.advance(&input[*at..*at + n]);
            *at += n;
            return self.rows.quoted.is_none();
        }
        match self.framer.next(input, at) {
            Next::NeedMore => return false,
            Next::TooLong(pos) => {
                // Reported at once (input with no newline gets its 413
                // early), then read to its end as csv-core ends it, so a
                // newline inside quotes does not start a record; its bytes
                // are discarded. The header is skipped whatever its length:
                // it is not a record, and the limit only bounds what is held
                // of it.
                let pos = self.rows.number(pos);
                if !self.rows.header_pending {
                    let limit = self.rows.opts.max_record_bytes;
                    batch.push_error(Error::new(ErrorKind::RecordTooLarge { pos, limit }));
                }
                // Said, or (the header) never to be: nothing more is said
                // of it, whatever its quotes.
                self.rows.discard_from(pos);
                let held = self.framer.resume();
                // (An empty feed would be the end of input.)
                if !held.is_empty() {
                    let n = self.rows.feed_quoted(held, batch);
                    debug_assert!(n == held.len(), "a record ends only at a newline");
                }
            }
            Next::Line(line, pos) => self.rows.line(line, pos, batch),
        }
        true
    }
}

impl CsvDecoder {
    /// End of input: decode a last record that had no newline (see
    /// [`RowParser::finish_quoted`] for one on the quoted path).
    pub fn finish(&mut self, batch: &mut Batch) {
        self.replay_partial_bom(batch);
        if self.rows.quoted.is_none() {
            let Some((line, pos)) = self.framer.finish() else {
                return;
            };
            self.rows.line(line, pos, batch);
        }
        self.rows.finish_quoted(batch);
    }
}

/// A record's quoting, byte by byte, as csv-core reads it with the
/// decoder's settings (RFC 4180: a `"` opens a quoted field only at a
/// field's start, `""` inside one is a `"`, and a `"` anywhere else is
/// data, as Python's csv reads `1,2"3`). csv-core ends a record at the end
/// of input whatever its state, so whether it ended inside quotes is
/// followed here: counting `"` bytes would take `1,2"3` for unterminated.
/// The one account of CSV quoting in the crate: the decoder steps through
/// it here, and [`crate::parallel::Scanner`] jumps through it with memchr
/// to find where a stream may be cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Quoting {
    /// At a field's start.
    FieldStart,
    /// In an unquoted field, or past a quoted field's closing quote.
    Field,
    /// Inside a quoted field.
    Quoted,
    /// Just after a `"` inside a quoted field: a second `"` is a literal
    /// one, anything else ends the quoting.
    QuoteInQuoted,
}

impl Quoting {
    /// The quoting after one more byte (a newline outside quotes ends the
    /// record, and the next starts at a field's start).
    #[inline]
    pub(crate) fn step(self, b: u8) -> Quoting {
        match (self, b) {
            (Quoting::Quoted, b'"') => Quoting::QuoteInQuoted,
            (Quoting::Quoted, _) => Quoting::Quoted,
            (Quoting::FieldStart | Quoting::QuoteInQuoted, b'"') => Quoting::Quoted,
            (_, b',' | b'\n') => Quoting::FieldStart,
            _ => Quoting::Field,
        }
    }

    /// The quoting after `bytes`.
    pub(crate) fn after(self, bytes: &[u8]) -> Quoting {
        bytes.iter().fold(self, |q, &b| q.step(b))
    }

    /// The quoting after `bytes` that hold no `"`, from outside a quoted
    /// field's text ([`Quoting::Quoted`] excepted): only their last byte
    /// tells, so a scanner can jump over them.
    #[inline]
    pub(crate) fn after_unquoted(self, bytes: &[u8]) -> Quoting {
        debug_assert!(self != Quoting::Quoted && memchr(b'"', bytes).is_none());
        bytes.last().map_or(self, |&b| Quoting::Field.step(b))
    }
}

/// A csv-core reader in its start state: records end at `\n` only (a `\r`
/// before it is trimmed as whitespace), RFC 4180 quoting.
///
/// Building its DFA costs more than parsing a small request, so readers are
/// kept in a small per-thread pool and `reset()` between uses. (Cloning a
/// built reader would be cheaper still, but csv-core 0.1.13's `Clone` for its
/// DFA copies only the transition table and yields a broken parser.)
fn take_reader() -> Box<Reader> {
    POOL.with(|p| p.borrow_mut().pop()).unwrap_or_else(|| {
        Box::new(
            ReaderBuilder::new()
                .terminator(Terminator::Any(b'\n'))
                .build(),
        )
    })
}

/// Readers kept per thread; a few are enough, since each decoder holds one
/// only while it lives.
const POOL_SIZE: usize = 8;

thread_local! {
    // Boxed so a reader moves in and out of the pool (and the decoder)
    // without copying its DFA tables.
    #[allow(clippy::vec_box)]
    static POOL: std::cell::RefCell<Vec<Box<Reader>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Drop for RowParser {
    fn drop(&mut self) {
        if let Some(mut reader) = self.core.take() {
            reader.reset();
            // During thread teardown the pool may be gone: then just free it.
            let _ = POOL.try_with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < POOL_SIZE {
                    p.push(reader);
                }
            });
        }
    }
}

impl RowParser {
    /// Give a framer position its record number.
    fn number(&mut self, pos: Position) -> Position {
        self.records += 1;
        Position {
            record: self.records,
            ..pos
        }
    }

    /// Handle one line from the framer (with its `\n`, if it had one).
    #[inline]
    fn line(&mut self, raw: &[u8], pos: Position, batch: &mut Batch) {
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return;
        }
        if memchr(b'"', line).is_some() {
            // Quoted path, from the record's first byte.
            let pos = self.number(pos);
            self.quoted = Some(Quoted::at(pos));
            let n = self.feed_quoted(raw, batch);
            debug_assert!(n == raw.len(), "a record ends only at the line's newline");
            return;
        }
        if self.header_pending {
            self.header_pending = false;
            return;
        }
        let pos = self.number(pos);
        if !self.opts.label {
            batch.begin_row();
            if push_numbers(line, batch) {
                batch.end_row(pos, self.opts.shape, None);
                return;
            }
            // Not plainly numbers: the field-wise path says which field and why.
            batch.discard_row();
        }
        let fields = line.split(|&b| b == b',');
        let count = || memchr_iter(b',', line).count() + 1;
        push_record(fields, count, pos, &self.opts, batch);
    }

    /// Read the record at `pos`, over the limit, to its end on the quoted
    /// path, discarding it.
    fn discard_from(&mut self, pos: Position) {
        self.quoted = Some(Quoted {
            too_long: true,
            reported: true,
            ..Quoted::at(pos)
        });
        // Room for csv-core to write into (and discard): with none it could
        // not read on.
        if self.out.is_empty() {
            self.out.resize(QUOTED_BUF, 0);
        }
        if self.ends.is_empty() {
            self.ends.resize(64, 0);
        }
    }

    /// Feed csv-core the next bytes of the quoted record; returns the bytes
    /// consumed (all of `input` unless the record ended in it). Empty `input`
    /// means end of input.
    fn feed_quoted(&mut self, input: &[u8], batch: &mut Batch) -> usize {
        let max = self.opts.max_record_bytes;
        let mut consumed = 0;
        loop {
            let Some(q) = self.quoted.as_mut() else {
                return consumed;
            };
            if self.out.len() == q.nout {
                // Room for one byte more than the limit: a record whose
                // field bytes just fill `max` is within it (filling the
                // buffer is how the limit is found), and one byte more is
                // over it, whatever the buffer was sized by before.
                let grown = (self.out.len() * 2)
                    .max(QUOTED_BUF)
                    .min(max.saturating_add(1));
                if grown > self.out.len() && !q.too_long {
                    self.out.resize(grown, 0);
                } else {
                    // Over the limit: keep reading the record, discarding it.
                    q.too_long = true;
                    q.nout = 0;
                    q.nends = 0;
                }
            }
            if self.ends.len() == q.nends {
                let grown = (self.ends.len() * 2).clamp(64, MAX_FIELDS + 1);
                if grown > self.ends.len() && !q.too_long {
                    self.ends.resize(grown, 0);
                } else {
                    q.too_long = true;
                    q.nout = 0;
                    q.nends = 0;
                }
            }
            let rest = &input[consumed..];
            let fresh = self.core.is_none();
            let core = self.core.get_or_insert_with(take_reader);
            // A new reader drops a BOM at the start of what it first reads
            // (csv-core's `strip_utf8_bom`). Here that is a later record's
            // start, where a BOM is data (the stream's own is stripped
            // before), so a quote after it is too: one byte first, and
            // csv-core has read.
            let inp = if fresh && rest.starts_with(BOM) {
                &rest[..1]
            } else {
                rest
            };
            let (res, nin, nout, nends) =
                core.read_record(inp, &mut self.out[q.nout..], &mut self.ends[q.nends..]);
            if !matches!(res, ReadRecordResult::Record | ReadRecordResult::End) {
                // The record goes on past these bytes: its quoting counts
                // if the input ends in it (a record that ended needs none,
                // which keeps the usual whole quoted line free of it).
                q.quoting = q.quoting.after(&inp[..nin]);
            }
            q.raw += nin;
            consumed += nin;
            q.nout += nout;
            q.nends += nends;
            match res {
                ReadRecordResult::InputEmpty if inp.len() < rest.len() => continue,
                ReadRecordResult::InputEmpty if !inp.is_empty() => return consumed,
                ReadRecordResult::InputEmpty => {
                    // End of input inside a record: csv-core wants another
                    // empty read to close it.
                    continue;
                }
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => continue,
                ReadRecordResult::Record => {
                    let newline = usize::from(inp[..nin].last() == Some(&b'\n'));
                    q.too_long |= q.raw - newline > max;
                    self.end_quoted(batch);
                    return consumed;
                }
                ReadRecordResult::End => {
                    self.quoted = None;
                    return consumed;
                }
            }
        }
    }

    /// End of input inside the record on the quoted path: one whose first
    /// line was over the limit was said (or, the header, is skipped); one
    /// that ended inside quotes is unterminated; one over the limit is too
    /// large (or, the header, skipped); csv-core closes any other.
    fn finish_quoted(&mut self, batch: &mut Batch) {
        let max = self.opts.max_record_bytes;
        let Some(q) = self.quoted.as_mut() else {
            return;
        };
        if q.reported {
            self.quoted = None;
        } else if q.quoting == Quoting::Quoted {
            let pos = q.pos;
            self.quoted = None;
            batch.push_error(Error::new(ErrorKind::UnterminatedQuote { pos }));
        } else if q.too_long || q.raw > max {
            q.too_long = true;
            self.end_quoted(batch);
        } else {
            self.feed_quoted(&[], batch);
        }
    }

    /// A quoted-path record is complete: check and push it.
    fn end_quoted(&mut self, batch: &mut Batch) {
        let Some(q) = self.quoted.take() else { return };
        if self.header_pending {
            // Over the limit or not (see `CsvDecoder::step`).
            self.header_pending = false;
            self.records -= 1;
            return;
        }
        if q.too_long {
            if !q.reported {
                let limit = self.opts.max_record_bytes;
                batch.push_error(Error::new(ErrorKind::RecordTooLarge { pos: q.pos, limit }));
            }
            return;
        }
        let out = &self.out[..q.nout];
        let ends = &self.ends[..q.nends];
        let mut start = 0;
        let fields = ends.iter().map(|&end| {
            let f = &out[start..end];
            start = end;
            f
        });
        push_record(fields, || ends.len(), q.pos, &self.opts, batch);
    }
}

/// Push every field of an unquoted `line` as a number in one pass: each
/// number is parsed where it starts and must be followed, past whitespace,
/// by a comma or the line's end. `false` at the first field that is not
/// (some values pushed): [`push_record`] then splits the line and names the
/// field. The same values as splitting first, since `fast_float2::parse` is
/// `parse_partial` consuming the whole (trimmed) field, and no number holds
/// a comma; one scan of the bytes instead of two (split, then parse).
#[inline]
fn push_numbers(line: &[u8], batch: &mut Batch) -> bool {
    let mut rest = line;
    loop {
        let field = rest.trim_ascii_start();
        let Ok((v, n)) = fast_float2::parse_partial::<f64, _>(field) else {
            return false;
        };
        if !v.is_finite() {
            return false;
        }
        batch.push_value(v);
        match field[n..].trim_ascii_start().split_first() {
            None => return true,
            Some((b',', tail)) => rest = tail,
            Some(_) => return false,
        }
    }
}

/// Parse a record's fields into `batch`: column 0 is the label when the
/// options ask for one, the rest are features. A wrong field count is
/// reported in preference to a bad field, since it is the likelier cause
/// (a header, a label column, the wrong file).
#[inline]
fn push_record<'f>(
    fields: impl Iterator<Item = &'f [u8]>,
    count: impl Fn() -> usize,
    pos: Position,
    opts: &DecodeOptions,
    batch: &mut Batch,
) {
    batch.begin_row();
    let mut label = None;
    for (i, field) in fields.enumerate() {
        if opts.label && i == 0 {
            match parse_field(field, pos, 1) {
                Ok(v) => label = Some(v),
                // A label that is not a number is a class name (iris's
                // species in column 1), if the fit takes them.
                Err(e) => match std::str::from_utf8(field) {
                    Ok(text) if opts.text_labels && !text.trim_ascii().is_empty() => {
                        batch.push_label_text(text);
                        label = Some(f64::NAN);
                    }
                    _ => {
                        let err = field_count_error(count(), pos, opts).unwrap_or(e);
                        batch.abandon_row(err);
                        return;
                    }
                },
            }
            continue;
        }
        match parse_field(field, pos, i + 1) {
            Ok(v) => batch.push_value(v),
            Err(e) => {
                let err = field_count_error(count(), pos, opts).unwrap_or(e);
                batch.abandon_row(err);
                return;
            }
        }
    }
    if opts.label && label.is_none() {
        batch.abandon_row(Error::new(ErrorKind::NotARow {
            pos,
            reason: "a training record needs a label in column 1".into(),
        }));
        return;
    }
    batch.end_row(pos, opts.shape, label);
}

/// The field-count error for a record of `found` fields, if that is wrong.
fn field_count_error(found: usize, pos: Position, opts: &DecodeOptions) -> Option<Error> {
    let Shape::Features(n) = opts.shape else {
        return None;
    };
    let expected = n + usize::from(opts.label);
    (found != expected).then(|| {
        Error::new(ErrorKind::FieldCount {
            pos,
            expected,
            found,
        })
    })
}
