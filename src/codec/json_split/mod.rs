//! Splitting an `application/json` document into its rows as bytes arrive.
//!
//! [`JsonSplitter`] reads `{"instances": [row, ...]}` (other keys may come
//! before or after `"instances"`) or a bare array of rows `[row, ...]` and
//! hands out each row's bytes as soon as the row is complete, to be parsed
//! by serde_json like a JSON line. A row that lies wholly inside the caller's
//! chunk is borrowed from it; only an unfinished row is carried over to the
//! next chunk, and never more than `max_record_bytes` of it: a longer row is
//! reported once as [`Piece::TooLarge`] and skipped. So memory is one row,
//! whatever the size of the document.
//!
//! Inside a row only strings, escapes and brackets are tracked (enough to
//! find where it ends, and to reject bad nesting); the row's own syntax is
//! serde_json's to judge, so a malformed row is an error of that record.
//! Everything outside the rows (the other keys of the object, the commas and
//! brackets between rows) is checked byte by byte here, against RFC 8259,
//! with serde_json's wording for the errors, so the splitter accepts exactly
//! the documents serde_json accepts. A document that is not an array of rows
//! (one row `[1,2,3]` or `{"features": [...]}`, or no row at all) is kept
//! whole, up to `max_document_bytes`, and judged at its end as before.
//!
//! Hand-written, not a crate: the push parsers on crates.io (actson, for
//! one) copy every byte through a feeder buffer of their own and validate
//! each row a second time before serde_json parses it, and say neither where
//! a row starts and ends nor what is wrong at which byte.

use memchr::memchr2;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::error::{Error, ErrorKind, Position};

mod object;

/// The UTF-8 byte order mark, skipped at the start of the stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What the splitter found next.
#[derive(Debug)]
pub enum Piece<'a> {
    /// A complete row (one instance, or one element of an array of rows) and
    /// where it starts; `record` counts the rows from 1.
    Row(&'a [u8], Position),
    /// The row starting here is longer than `max_record_bytes`; the rest of
    /// it is skipped.
    TooLarge(Position),
    /// The chunk is used up.
    NeedMore,
}

/// Where a piece of the document starts (for a kept-whole document and a
/// captured `"instances"` value).
#[derive(Clone, Copy, Debug, Default)]
struct Mark {
    byte: u64,
    line: u64,
    /// 0-based column.
    col0: u64,
}

/// Where the splitter is in the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before the document's first byte (a BOM may be under way).
    Start,
    /// After a top-level `[`: its first element tells rows from one row.
    Open,
    /// Inside an array of rows.
    Rows(RowsAt),
    /// Checking a top-level object outside `"instances"`.
    Object,
    /// Keeping a document whole (one row, or not a row), judged at the end.
    Whole,
    /// The document ended: only whitespace may follow.
    Done,
}

/// Where the splitter is in an array of rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowsAt {
    /// After `[`.
    First,
    /// Inside a row.
    Row,
    /// After a row.
    After,
    /// After a `,`.
    Comma,
}

/// The checker's state outside the rows (a JSON_checker-style automaton).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lex {
    /// A value must come (after `:` or an array's `,`).
    Value,
    /// After `[`: a value or `]`.
    ValueOrClose,
    /// After `{`: a key or `}`.
    KeyOrClose,
    /// After an object's `,`: a key.
    Key,
    /// After a key.
    Colon,
    /// After a value: `,` or the container's end.
    CommaOrClose,
    /// Inside a string (a key, or a value).
    Str { key: bool },
    /// Inside a number.
    Num(Num),
    /// Inside `true`, `false` or `null`: the bytes still to come.
    Literal(&'static [u8]),
}

/// The states of RFC 8259's number grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

/// Which key of the top-level object was read last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TopKey {
    Instances,
    Features,
    Other,
}

/// Container kinds, one bit a level (1 = object), up to a depth limit.
#[derive(Debug, Default)]
struct Nesting {
    bits: Vec<u64>,
    depth: usize,
    max: usize,
}

impl Nesting {
    /// Open a container; false when that would pass the depth limit.
    fn push(&mut self, object: bool) -> bool {
        if self.depth >= self.max {
            return false;
        }
        let (word, bit) = (self.depth / 64, self.depth % 64);
        if word == self.bits.len() {
            self.bits.push(0);
        }
        if object {
            self.bits[word] |= 1 << bit;
        } else {
            self.bits[word] &= !(1 << bit);
        }
        self.depth += 1;
        true
    }

    /// The innermost container: `Some(true)` for an object.
    fn top(&self) -> Option<bool> {
        let d = self.depth.checked_sub(1)?;
        Some(self.bits[d / 64] & (1 << (d % 64)) != 0)
    }

    /// Close the innermost container if it is of kind `object`.
    fn pop(&mut self, object: bool) -> bool {
        if self.top() == Some(object) {
            self.depth -= 1;
            true
        } else {
            false
        }
    }
}

/// Bytes that matter inside a row outside its strings.
static IN_ROW: [bool; 256] = table(b"\"[]{}");
/// Bytes that end a bare scalar (a number or literal) in an array of rows.
static ENDS_SCALAR: [bool; 256] = table(b" \t\r\n,[]{}\"");

const fn table(bytes: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Longest key of the top-level object kept, at least: each letter of
/// `instances` written as a `\u` escape. Keys up to `max_record_bytes` are
/// kept, so that serde_json can check their escapes as it did when it read
/// the whole document.
const MAX_KEY: usize = 6 * 9;
/// Longest `"instances"` value kept to say what it is instead of an array.
const MAX_CAPTURE: usize = 1024;

/// Splits a JSON document into rows. See the module docs.
#[derive(Debug)]
pub struct JsonSplitter {
    max_record: usize,
    max_document: usize,
    phase: Phase,
    /// Bytes of the BOM matched so far.
    bom: usize,
    /// Stream offset of the next byte to read.
    offset: u64,
    /// Line of `synced` (1-based), and the stream offset its line starts at.
    line: u64,
    line_start: u64,
    /// Within one call: the chunk's stream offset and how far its newlines
    /// were counted.
    base: u64,
    synced: usize,
    nest: Nesting,
    // ---- the row being read
    records: u64,
    row_pos: Position,
    row_len: usize,
    /// Where the row's bytes start in this chunk.
    row_begin: usize,
    /// Depth of the array of rows (a row ends when `nest` is back to it).
    row_base: usize,
    row_scalar: bool,
    in_str: bool,
    escape: bool,
    too_large: bool,
    /// The unfinished row; `carry_out` once handed out.
    carry: Vec<u8>,
    carry_out: bool,
    /// The array of rows is `"instances"` (else it is the document).
    rows_in_object: bool,
    // ---- the checker outside the rows
    lex: Lex,
    str_esc: u8,
    utf8_need: u8,
    utf8_lo: u8,
    utf8_hi: u8,
    utf8_lead: u64,
    key: Vec<u8>,
    key_long: bool,
    key_kind: TopKey,
    instances_keys: u32,
    features_keys: u32,
    /// The next value is that of `"instances"` / `"features"`.
    pending: Option<TopKey>,
    instances_streamed: bool,
    features_seen: bool,
    /// A non-array `"instances"` value being kept for the error message.
    capture: Option<(Mark, Vec<u8>)>,
    capture_done: bool,
    /// Where the captured value's bytes start in this chunk.
    capture_from: usize,
    /// The document is an object.
    object_doc: bool,
    // ---- the document kept whole
    doc: Vec<u8>,
    doc_start: Mark,
    /// `doc` holds the document so far (an object until `"instances"`).
    keeping: bool,
    /// The document was too large to keep.
    overflowed: bool,
    /// Where a form feed came before the document.
    form_feed: Option<Mark>,
}

impl JsonSplitter {
    /// A splitter for rows of at most `max_record` bytes; a document that is
    /// one row may have `max_document` bytes.
    pub fn new(max_record: usize, max_document: usize) -> JsonSplitter {
        JsonSplitter {
            max_record,
            max_document,
            phase: Phase::Start,
            bom: 0,
            offset: 0,
            line: 1,
            line_start: 0,
            base: 0,
            synced: 0,
            // A document the cap accepts cannot be deeper than this (each
            // level takes two bytes); it bounds the stack for one that is
            // streamed.
            nest: Nesting {
                max: (max_document.max(max_record) / 2).max(1),
                ..Nesting::default()
            },
            records: 0,
            row_pos: Position::default(),
            row_len: 0,
            row_begin: 0,
            row_base: 0,
            row_scalar: false,
            in_str: false,
            escape: false,
            too_large: false,
            carry: Vec::new(),
            carry_out: false,
            rows_in_object: false,
            lex: Lex::KeyOrClose,
            str_esc: 0,
            utf8_need: 0,
            utf8_lo: 0,
            utf8_hi: 0,
            utf8_lead: 0,
            key: Vec::new(),
            key_long: false,
            key_kind: TopKey::Other,
            instances_keys: 0,
            features_keys: 0,
            pending: None,
            instances_streamed: false,
            features_seen: false,
            capture: None,
            capture_done: false,
            capture_from: 0,
            object_doc: false,
            doc: Vec::new(),
            doc_start: Mark::default(),
            keeping: false,
            overflowed: false,
            form_feed: None,
        }
    }

    /// Count the newlines of `input[self.synced..to]`.
    fn sync(&mut self, input: &[u8], to: usize) {
        if to > self.synced {
            for nl in memchr::memchr_iter(b'\n', &input[self.synced..to]) {
                self.line += 1;
                self.line_start = self.base + (self.synced + nl) as u64 + 1;
            }
            self.synced = to;
        }
    }

    /// Where `input[i]` is (after a sync up to it).
    fn mark(&mut self, input: &[u8], i: usize) -> Mark {
        self.sync(input, i);
        let byte = self.base + i as u64;
        Mark {
            byte,
            line: self.line,
            col0: byte - self.line_start,
        }
    }

    /// A document error at `input[i]` (serde_json's convention: the column
    /// of the offending byte).
    fn error_at(&mut self, input: &[u8], i: usize, reason: impl Into<String>) -> Error {
        let m = self.mark(input, i);
        doc_error(m.line, m.col0 + 1, m.byte, reason.into())
    }

    /// A document error at the end of the input: the column just past its
    /// last byte, where more was expected (as Python's `json` says it).
    fn error_at_end(&self, reason: impl Into<String>) -> Error {
        let col = self.offset - self.line_start + 1;
        doc_error(self.line, col, self.offset, reason.into())
    }

    /// The next piece of `input[*at..]`, advancing `*at` past what it used.
    /// An `Err` is a malformed document: the stream cannot go on.
    pub fn next<'a>(&'a mut self, input: &'a [u8], at: &mut usize) -> Result<Piece<'a>, Error> {
        if self.carry_out {
            self.carry.clear();
            self.carry_out = false;
        }
        self.base = self.offset - *at as u64;
        self.synced = *at;
        // A row carried over from the last chunk goes on at the start.
        self.row_begin = *at;
        let found = self.run(input, at);
        self.sync(input, *at);
        self.offset = self.base + *at as u64;
        match found? {
            Found::NeedMore => Ok(Piece::NeedMore),
            Found::TooLarge(pos) => Ok(Piece::TooLarge(pos)),
            Found::Borrowed(start, end, pos) => Ok(Piece::Row(&input[start..end], pos)),
            Found::Carried(pos) => {
                self.carry_out = true;
                Ok(Piece::Row(&self.carry, pos))
            }
        }
    }

    /// The phase loop of `next`.
    fn run(&mut self, input: &[u8], at: &mut usize) -> Result<Found, Error> {
        loop {
            if *at >= input.len() {
                return Ok(Found::NeedMore);
            }
            match self.phase {
                Phase::Start => self.start(input, at)?,
                Phase::Open => {
                    let b = input[*at];
                    if is_ws(b) {
                        self.doc.push(b);
                        *at += 1;
                        if self.doc.len() > self.max_document {
                            let limit = self.max_document;
                            return Err(Error::new(ErrorKind::DocumentTooLarge { limit }));
                        }
                    } else if b == b']' {
                        self.doc = Vec::new();
                        self.phase = Phase::Done;
                        *at += 1;
                    } else if b == b'[' || b == b'{' {
                        self.doc = Vec::new();
                        self.rows_in_object = false;
                        self.row_base = 0;
                        self.phase = Phase::Rows(RowsAt::First);
                    } else {
                        self.phase = Phase::Whole;
                    }
                }
                Phase::Rows(RowsAt::Row) => {
                    if let Some(found) = self.row(input, at)? {
                        return Ok(found);
                    }
                }
                Phase::Rows(state) => self.between_rows(state, input, at)?,
                Phase::Object => self.object(input, at)?,
                Phase::Whole => {
                    self.doc.extend_from_slice(&input[*at..]);
                    *at = input.len();
                    if self.doc.len() > self.max_document {
                        let limit = self.max_document;
                        return Err(Error::new(ErrorKind::DocumentTooLarge { limit }));
                    }
                }
                Phase::Done => {
                    let b = input[*at];
                    if !is_ws(b) {
                        return Err(self.error_at(input, *at, "trailing characters"));
                    }
                    *at += 1;
                }
            }
        }
    }

    /// The first bytes: a BOM, whitespace, then what the document is.
    fn start(&mut self, input: &[u8], at: &mut usize) -> Result<(), Error> {
        while self.bom < BOM.len() && *at < input.len() {
            if input[*at] == BOM[self.bom] {
                self.bom += 1;
                *at += 1;
                if self.bom == BOM.len() {
                    // Columns count from after the BOM (bytes do not).
                    self.line_start = self.base + *at as u64;
                    self.bom = usize::MAX;
                }
                continue;
            }
            if self.bom > 0 {
                // The bytes held as a BOM are data: not a document of rows.
                self.doc.extend_from_slice(&BOM[..self.bom]);
                self.phase = Phase::Whole;
                return Ok(());
            }
            self.bom = usize::MAX;
        }
        while *at < input.len() && self.phase == Phase::Start {
            let b = input[*at];
            if is_ws(b) {
                *at += 1;
                continue;
            }
            if b == 0x0C {
                // A form feed is no JSON whitespace, but a body of nothing
                // else was taken as empty (ASCII trimming): keep doing so.
                if self.form_feed.is_none() {
                    self.form_feed = Some(self.mark(input, *at));
                }
                *at += 1;
                continue;
            }
            if let Some(m) = self.form_feed {
                return Err(doc_error(
                    m.line,
                    m.col0 + 1,
                    m.byte,
                    "expected value".into(),
                ));
            }
            self.doc_start = self.mark(input, *at);
            match b {
                b'[' => {
                    self.doc.push(b);
                    self.phase = Phase::Open;
                    *at += 1;
                }
                b'{' => {
                    self.phase = Phase::Object;
                    self.object_doc = true;
                    self.keeping = true;
                    self.lex = Lex::KeyOrClose;
                    if !self.nest.push(true) {
                        return Err(self.error_at(input, *at, "nesting too deep"));
                    }
                    self.doc.push(b);
                    *at += 1;
                }
                _ => self.phase = Phase::Whole,
            }
        }
        Ok(())
    }

    // ---- arrays of rows ------------------------------------------------------

    /// Between rows: whitespace, then `,`, `]` or the next row.
    fn between_rows(&mut self, state: RowsAt, input: &[u8], at: &mut usize) -> Result<(), Error> {
        while *at < input.len() && is_ws(input[*at]) {
            *at += 1;
        }
        let Some(&b) = input.get(*at) else {
            return Ok(());
        };
        match (state, b) {
            (RowsAt::After, b',') => {
                self.phase = Phase::Rows(RowsAt::Comma);
                *at += 1;
            }
            (RowsAt::After | RowsAt::First, b']') => {
                *at += 1;
                if self.rows_in_object {
                    self.phase = Phase::Object;
                    self.lex = Lex::CommaOrClose;
                    self.instances_streamed = true;
                } else {
                    self.phase = Phase::Done;
                }
            }
            (RowsAt::After, _) => return Err(self.error_at(input, *at, "expected `,` or `]`")),
            (RowsAt::Comma, b']') => return Err(self.error_at(input, *at, "trailing comma")),
            (_, b',' | b'}') => return Err(self.error_at(input, *at, "expected value")),
            _ => self.begin_row(input, at)?,
        }
        Ok(())
    }

    /// A row starts at `input[*at]` (not whitespace, `,`, `]` or `}`).
    fn begin_row(&mut self, input: &[u8], at: &mut usize) -> Result<(), Error> {
        let m = self.mark(input, *at);
        self.records += 1;
        self.row_pos = Position {
            record: self.records,
            line: m.line,
            byte: m.byte,
        };
        self.row_begin = *at;
        self.row_len = 0;
        self.too_large = false;
        self.escape = false;
        self.in_str = false;
        // A container or a string ends with its closing byte; a number or
        // literal (never a row, but serde_json says why) at the next
        // delimiter.
        self.row_scalar = !matches!(input[*at], b'[' | b'{' | b'"');
        self.carry.clear();
        self.phase = Phase::Rows(RowsAt::Row);
        Ok(())
    }

    /// Scan the row from `input[*at..]`; the row when it ends in this chunk.
    fn row(&mut self, input: &[u8], at: &mut usize) -> Result<Option<Found>, Error> {
        let from = *at;
        let begin = self.row_begin;
        // Scan no further than the byte that makes the row too large, so that
        // it is reported there whatever the chunking (and before any error
        // later in the row).
        let room = (self.max_record + 1).saturating_sub(self.row_len);
        let stop = input.len().min(from.saturating_add(room));
        if !self.too_large && stop < input.len() {
            if let Some(end) = self.scan_row(&input[..stop], at)? {
                *at = end;
                // Not skipped, so never `NeedMore`.
                return Ok(Some(self.row_end(input, from, begin, end)));
            }
            self.row_len += stop - from;
            self.too_large = true;
            self.carry = Vec::new();
            return Ok(Some(Found::TooLarge(self.row_pos)));
        }
        let Some(end) = self.scan_row(input, at)? else {
            self.row_len += input.len() - from;
            if self.too_large {
                return Ok(None);
            }
            if self.row_len > self.max_record {
                self.too_large = true;
                self.carry = Vec::new();
                return Ok(Some(Found::TooLarge(self.row_pos)));
            }
            self.carry.extend_from_slice(&input[begin..]);
            return Ok(None);
        };
        *at = end;
        let found = self.row_end(input, from, begin, end);
        Ok(Some(found).filter(|f| !matches!(f, Found::NeedMore)))
    }

    /// The row ended at `input[end - 1]`: hand it out (`NeedMore` if it
    /// was too large and skipped).
    fn row_end(&mut self, input: &[u8], from: usize, begin: usize, end: usize) -> Found {
        self.row_len += end - from;
        self.phase = Phase::Rows(RowsAt::After);
        if self.too_large {
            return Found::NeedMore;
        }
        let pos = self.row_pos;
        if self.row_len > self.max_record {
            self.too_large = true;
            self.carry.clear();
            return Found::TooLarge(pos);
        }
        if self.carry.is_empty() {
            return Found::Borrowed(begin, end, pos);
        }
        self.carry.extend_from_slice(&input[begin..end]);
        Found::Carried(pos)
    }

    /// Find the end of the row in `input[*at..]`: `Some(end)` (exclusive),
    /// or `None` with `*at` at the end of the chunk.
    fn scan_row(&mut self, input: &[u8], at: &mut usize) -> Result<Option<usize>, Error> {
        let n = input.len();
        let mut i = *at;
        loop {
            if self.escape {
                if i >= n {
                    break;
                }
                self.escape = false;
                i += 1;
            }
            if self.in_str {
                match memchr2(b'"', b'\\', &input[i..]) {
                    None => break,
                    Some(k) => {
                        i += k + 1;
                        if input[i - 1] == b'\\' {
                            self.escape = true;
                        } else {
                            self.in_str = false;
                            if self.nest.depth == self.row_base {
                                return Ok(Some(i));
                            }
                        }
                    }
                }
                continue;
            }
            if self.row_scalar {
                while i < n && !ENDS_SCALAR[input[i] as usize] {
                    i += 1;
                }
                if i < n {
                    return Ok(Some(i));
                }
                break;
            }
            while i < n && !IN_ROW[input[i] as usize] {
                i += 1;
            }
            if i >= n {
                break;
            }
            match input[i] {
                b'"' => self.in_str = true,
                b @ (b'[' | b'{') => {
                    if !self.nest.push(b == b'{') {
                        return Err(self.error_at(input, i, "nesting too deep"));
                    }
                }
                b => {
                    let object = b == b'}';
                    if !self.nest.pop(object) {
                        let reason = if object {
                            "expected `,` or `]`"
                        } else {
                            "expected `,` or `}`"
                        };
                        return Err(self.error_at(input, i, reason));
                    }
                    if self.nest.depth == self.row_base {
                        return Ok(Some(i + 1));
                    }
                }
            }
            i += 1;
        }
        *at = n;
        Ok(None)
    }
}

impl JsonSplitter {
    // ---- the end --------------------------------------------------------------

    /// End of input: the document's one row, if it is one; an `Err` if it
    /// is cut short or not a document of rows.
    pub fn finish(&mut self) -> Result<Option<(&[u8], Position)>, Error> {
        if self.carry_out {
            self.carry.clear();
            self.carry_out = false;
        }
        let reason = match self.phase {
            Phase::Start if (1..BOM.len()).contains(&self.bom) => {
                // A BOM cut short is data.
                self.doc.extend_from_slice(&BOM[..self.bom]);
                return self.judge_whole();
            }
            Phase::Start => return Ok(None),
            Phase::Whole => return self.judge_whole(),
            Phase::Done => return self.judge_object(),
            Phase::Open | Phase::Rows(RowsAt::First | RowsAt::After) => {
                "EOF while parsing a list".to_string()
            }
            Phase::Rows(RowsAt::Comma) => "EOF while parsing a value".to_string(),
            Phase::Rows(RowsAt::Row) if self.in_str => {
                format!("EOF while parsing a string in {}", self.row_pos)
            }
            Phase::Rows(RowsAt::Row) => format!("EOF while parsing {}", self.row_pos),
            Phase::Object => match self.lex {
                Lex::Str { .. } => "EOF while parsing a string".to_string(),
                Lex::Value | Lex::Literal(_) => "EOF while parsing a value".to_string(),
                _ if self.nest.top() == Some(true) => "EOF while parsing an object".to_string(),
                _ => "EOF while parsing a list".to_string(),
            },
        };
        Err(self.error_at_end(reason))
    }

    /// A top-level object that ended without "instances": one row if it has
    /// "features", else not a document of rows.
    fn judge_object(&mut self) -> Result<Option<(&[u8], Position)>, Error> {
        if !self.object_doc || self.instances_streamed {
            return Ok(None);
        }
        if !self.features_seen {
            return Err(self.shape_error());
        }
        if self.overflowed {
            let limit = self.max_document;
            return Err(Error::new(ErrorKind::DocumentTooLarge { limit }));
        }
        Ok(Some((self.doc.trim_ascii_end(), self.one_row())))
    }

    /// A document kept whole: one row `[1, 2, 3]`, or not a document of rows;
    /// judged as a whole by serde_json.
    fn judge_whole(&mut self) -> Result<Option<(&[u8], Position)>, Error> {
        let text = &self.doc[..];
        if let Err(e) = std::str::from_utf8(text) {
            let (line, column) = line_column(text, e.valid_up_to() + 1);
            return Err(self.whole_error(line, column, "not valid UTF-8".into()));
        }
        if text.first() == Some(&b'[') {
            if let Err(e) = serde_json::from_slice::<Vec<&RawValue>>(text) {
                return Err(self.whole_error(e.line(), column(&e), strip_location(&e)));
            }
            return Ok(Some((self.doc.trim_ascii_end(), self.one_row())));
        }
        match serde_json::from_slice::<IgnoredAny>(text) {
            Err(e) => Err(self.whole_error(e.line(), column(&e), strip_location(&e))),
            Ok(_) => Err(self.shape_error()),
        }
    }

    /// The position of a document that is one row.
    fn one_row(&self) -> Position {
        Position {
            record: 1,
            line: self.doc_start.line,
            byte: self.doc_start.byte,
        }
    }

    fn shape_error(&self) -> Error {
        let m = self.doc_start;
        doc_error(
            m.line,
            m.col0 + 1,
            m.byte,
            "expected {\"instances\": [...]}, an array of rows, or one row".into(),
        )
    }

    /// serde_json's (line, column) in the kept document, made the stream's.
    fn whole_error(&self, line: usize, column: usize, reason: String) -> Error {
        let m = self.doc_start;
        let text = &self.doc[..];
        let line_at = if line <= 1 {
            0
        } else {
            memchr::memchr_iter(b'\n', text)
                .nth(line - 2)
                .map_or(text.len(), |i| i + 1)
        };
        let byte = m.byte + (line_at + column.saturating_sub(1)) as u64;
        let column = if line <= 1 {
            m.col0 + column as u64
        } else {
            column as u64
        };
        doc_error(m.line + line as u64 - 1, column, byte, reason)
    }
}

/// The error for an `"instances"` that is not an array: serde_json's words
/// for the value kept (up to `MAX_CAPTURE` bytes), at the stream's place.
#[cold]
fn not_an_array(mark: Mark, value: &[u8]) -> Error {
    let (column, reason) = match serde_json::from_slice::<Vec<IgnoredAny>>(value) {
        Err(e) => (column(&e) as u64, strip_location(&e)),
        Ok(_) => (1, "expected a sequence".into()),
    };
    let reason = if value.len() >= MAX_CAPTURE {
        "invalid type: a long value, expected a sequence".into()
    } else {
        reason
    };
    doc_error(
        mark.line,
        mark.col0 + column,
        mark.byte + column.saturating_sub(1),
        reason,
    )
}

/// 1-based (line, column) of the `at`-th byte (1-based) of `text`.
fn line_column(text: &[u8], at: usize) -> (usize, usize) {
    let before = &text[..at - 1];
    let line = memchr::memchr_iter(b'\n', before).count() + 1;
    let column = at
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
    (line, column)
}

/// serde_json's 1-based column of an error: that of the offending byte,
/// or, at the end of the input, the one just past the last byte (serde_json
/// gives the last byte's own there, 0 after a newline; Python's `json`, and
/// [`JsonSplitter`]'s own errors at the end, the one where more was expected).
pub(crate) fn column(e: &serde_json::Error) -> usize {
    e.column() + usize::from(e.is_eof())
}

/// serde_json's message without its " at line L column C" suffix.
pub(crate) fn strip_location(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

/// What `run` found (indices, so that `next` can borrow the row).
enum Found {
    NeedMore,
    TooLarge(Position),
    Borrowed(usize, usize, Position),
    Carried(Position),
}

fn doc_error(line: u64, column: u64, byte: u64, reason: String) -> Error {
    Error::new(ErrorKind::InvalidDocument {
        line: line as usize,
        column: column as usize,
        byte,
        reason,
    })
}
