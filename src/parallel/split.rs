//! Where a stream may be cut: [`Scanner`] finds record ends in a stream
//! given in pieces, [`Splitter`] cuts it into [`Range`]s of whole records
//! (bounded, whatever the records), and [`Handover`] finds where a stream
//! begun on one pipeline can go on in ranges. See the parent module's docs
//! for the rules they follow.

use std::io::{self, Read};

use memchr::{memchr, memchr2, memchr_iter, memrchr};

use super::{Spec, BOM, READ_BYTES};
use crate::codec::Quoting;
use crate::error::Position;
use crate::input::read_some;
use crate::media::Format;

/// Finds the ends of records in a stream given in pieces. See the module
/// docs.
#[derive(Debug)]
pub struct Scanner {
    csv: bool,
    /// Where the CSV record being scanned is in its quoting.
    quoting: Quoting,
    /// Still in the current record's first line.
    first_line: bool,
    /// Bytes of the current record's first line with its newline, once it
    /// has ended inside quotes.
    first_line_len: u64,
    /// Stream offset of the current record's first byte.
    record_start: u64,
    /// Stream offset of the next byte to scan.
    at: u64,
}

impl Scanner {
    /// A scanner for `format`.
    pub fn new(format: Format) -> Scanner {
        Scanner {
            csv: format == Format::Csv,
            quoting: Quoting::FieldStart,
            first_line: true,
            first_line_len: 0,
            record_start: 0,
            at: 0,
        }
    }

    /// Skip bytes that are not data (the BOM at the start).
    fn skip(&mut self, n: usize) {
        self.at += n as u64;
        self.record_start = self.at;
    }

    /// Count `n` bytes of the current JSON line as passed without scanning
    /// them: the [`Splitter`] drops them, and the line ends at its next
    /// newline.
    fn pass(&mut self, n: usize) {
        self.at += n as u64;
    }

    /// Bytes of the current record held so far, while they are all its
    /// first line (no newline yet).
    fn line_held(&self) -> Option<u64> {
        self.first_line.then(|| self.at - self.record_start)
    }

    /// The current record, once its first line has ended inside quotes:
    /// its bytes so far, and its first line's length.
    fn quoted_held(&self) -> Option<(u64, u64)> {
        let held = self.at - self.record_start;
        (!self.first_line).then_some((held, self.first_line_len))
    }

    /// Scan the next piece of the stream; returns the offset in `bytes`
    /// just past the last record end in it.
    pub fn scan(&mut self, bytes: &[u8]) -> Option<usize> {
        self.scan_to(bytes, false)
    }

    /// Scan up to the first record end in `bytes`; the offset just past
    /// it (the rest is not scanned), or `None` with all of `bytes` scanned.
    fn scan_first(&mut self, bytes: &[u8]) -> Option<usize> {
        self.scan_to(bytes, true)
    }

    fn scan_to(&mut self, bytes: &[u8], first: bool) -> Option<usize> {
        if !self.csv {
            let end = memrchr(b'\n', bytes).map(|i| i + 1);
            if let Some(e) = end {
                self.record_start = self.at + e as u64;
            }
            self.at += bytes.len() as u64;
            return end;
        }
        let base = self.at;
        let mut last = None;
        let mut i = 0;
        while i < bytes.len() {
            let outside = !matches!(self.quoting, Quoting::Quoted | Quoting::QuoteInQuoted);
            if outside && !first {
                // Up to the next `"`, every newline ends a record and only
                // the last one counts: one memchr and one memrchr over the
                // stretch, not a memchr2 stop per line, so the reading
                // thread takes less of the cores the scoring threads use.
                let quote = memchr(b'"', &bytes[i..]).map_or(bytes.len(), |q| i + q);
                if let Some(n) = memrchr(b'\n', &bytes[i..quote]) {
                    last = Some(self.record_end(base, i + n));
                    i += n + 1;
                }
            }
            if i == bytes.len() {
                break;
            }
            // Jump to the next byte that can change more than the field
            // (`"`, and a newline outside quotes or on the first line),
            // then step over it.
            let rest = &bytes[i..];
            let found = match self.quoting {
                Quoting::QuoteInQuoted => Some(0),
                Quoting::Quoted if !self.first_line => memchr(b'"', rest),
                _ => memchr2(b'"', b'\n', rest),
            };
            let Some(k) = found else {
                if self.quoting != Quoting::Quoted {
                    self.quoting = self.quoting.after_unquoted(rest);
                }
                break;
            };
            let j = i + k;
            if self.quoting != Quoting::Quoted {
                self.quoting = self.quoting.after_unquoted(&bytes[i..j]);
            }
            match (self.quoting, bytes[j]) {
                (Quoting::Quoted, b'\n') => {
                    // The first line ends inside quotes.
                    self.first_line = false;
                    self.first_line_len = base + j as u64 + 1 - self.record_start;
                }
                (_, b'\n') => last = Some(self.record_end(base, j)),
                (q, b) => self.quoting = q.step(b),
            }
            i = j + 1;
            if let Some(end) = last.filter(|_| first) {
                self.at = base + end as u64;
                return last;
            }
        }
        self.at = base + bytes.len() as u64;
        last
    }

    /// The newline at `bytes[j]` ends a record: the next one starts after it.
    fn record_end(&mut self, base: u64, j: usize) -> usize {
        self.quoting = Quoting::FieldStart;
        self.first_line = true;
        self.record_start = base + j as u64 + 1;
        j + 1
    }
}

/// A range of whole records cut from the stream: its bytes, and how many
/// bytes and newlines of the input between them the [`Splitter`] dropped,
/// and how many of its bytes it made up in their place (the middle of a
/// record over the limit, see [`Splitter`]). The bytes deref to a slice.
#[derive(Debug, Default)]
pub struct Range {
    pub(super) bytes: Vec<u8>,
    cut: Cut,
}

/// What of a record over the limit the [`Splitter`] is dropping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dropping {
    /// A JSON line over the limit, to its newline.
    Line,
    /// A CSV record whose first line is over the limit, to its end.
    Record,
    /// A CSV record whose first line ended inside quotes, to its end.
    Quoted,
}

/// What the [`Splitter`] took out of a range, and put in.
#[derive(Clone, Copy, Debug, Default)]
struct Cut {
    /// Input bytes dropped.
    dropped: u64,
    /// Newlines among them.
    lines: u64,
    /// Bytes of the range that are not input.
    made_up: u64,
}

impl Range {
    /// Bytes of the input the range stands for.
    pub fn input_len(&self) -> u64 {
        self.bytes.len() as u64 + self.cut.dropped - self.cut.made_up
    }

    /// Newlines of the input the range stands for (the bytes made up hold
    /// none).
    pub fn input_lines(&self) -> u64 {
        memchr_iter(b'\n', &self.bytes).count() as u64 + self.cut.lines
    }
}

impl std::ops::Deref for Range {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Cuts a stream into ranges of whole records. See the module docs.
///
/// A record whose first line grows past `max_record_bytes` is over the
/// limit whatever follows, and the decoders' line framer reports it at its
/// start (`src/codec/lines.rs`). So only the first `max_record_bytes + 1`
/// bytes of that line are kept, enough for the range's decoder to find it
/// too long at the same place; the rest is dropped as it arrives up to the
/// record's end (a JSON line's newline; for CSV, where csv-core ends it, as
/// the CSV decoder reads on: a newline inside quotes does not end it), and
/// the range is cut right after it so that no later record's position in
/// the range is off. The kept CSV bytes have their `"`s made `a`s, so the
/// decoder too ends the record at the newline that follows them. The range
/// counts the bytes and newlines dropped, so the writer's positions for
/// later ranges stay those of the whole input. Without this a body with no
/// newline would be held whole; with it the splitter holds at most about
/// `range_bytes + max_record_bytes` plus one read.
///
/// A CSV record whose first line ends inside quotes goes on to where
/// csv-core ends it, and one that grows past `max_record_bytes` so is over
/// the limit too (the decoder counts its bytes: `src/codec/csv.rs`). Of it
/// the splitter keeps the first line, made up to `max_record_bytes + 1`
/// bytes with `a`s (field bytes inside the quotes, which the decoder finds
/// too many), then drops the rest as it scans it for the record's end, and
/// there puts a `"` before the record's newline: that closes the quoted
/// field for the decoder, which then reports the record too large at its
/// start, as on one pipeline. If the input ends first, a `"` is added only
/// if the whole record ended outside quotes, so the decoder finds the
/// quote unterminated exactly when the whole record leaves it so.
#[derive(Debug)]
pub struct Splitter {
    scanner: Scanner,
    buf: Vec<u8>,
    /// The decoder's record limit.
    max: usize,
    /// Dropping the rest of a record over the limit.
    dropping: Option<Dropping>,
    /// What was taken out of the record over the limit (and put in) not
    /// yet cut off.
    pending: Cut,
    /// The range must end here: just past the newline of a record whose
    /// bytes were dropped.
    forced: Option<usize>,
    /// Bytes of `buf` scanned.
    scanned: usize,
    /// Offset in `buf` just past its last record end (0: none).
    cut: usize,
    range_bytes: usize,
    /// The BOM check at the start is done.
    started: bool,
    /// No range was taken yet.
    first: bool,
    /// The first range must hold a record (the CSV header is skipped).
    header: bool,
    /// Buffers of earlier ranges, for reuse.
    free: Vec<Vec<u8>>,
}

impl Splitter {
    /// A splitter for `spec`'s input in ranges of about `range_bytes`.
    pub fn new(spec: &Spec<'_>, range_bytes: usize) -> Splitter {
        Splitter {
            scanner: Scanner::new(spec.input),
            buf: Vec::new(),
            max: spec.opts.decode.max_record_bytes,
            dropping: None,
            pending: Cut::default(),
            forced: None,
            scanned: 0,
            cut: 0,
            range_bytes: range_bytes.max(1),
            started: false,
            first: true,
            header: spec.input == Format::Csv && spec.opts.decode.csv_header,
            free: Vec::new(),
        }
    }

    /// The splitter for the rest of a stream handed over ([`Handover`]):
    /// its start (BOM, CSV header) was read already.
    pub(crate) fn continuing(mut self) -> Splitter {
        self.started = true;
        self.first = false;
        self.header = false;
        self
    }

    /// Append the next bytes of the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Read once from `reader` into the buffer: bytes read, 0 at the end.
    pub(super) fn read_from(&mut self, reader: &mut dyn Read) -> io::Result<usize> {
        let len = self.buf.len();
        self.buf.resize(len + READ_BYTES, 0);
        let n = read_some(reader, &mut self.buf[len..]);
        self.buf.truncate(len + *n.as_ref().unwrap_or(&0));
        n
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Hand back a range's buffer for reuse.
    pub fn recycle(&mut self, range: Range) {
        self.recycle_bytes(range.bytes);
    }

    pub(super) fn recycle_bytes(&mut self, mut range: Vec<u8>) {
        if self.free.len() < 4 {
            range.clear();
            self.free.push(range);
        }
    }

    /// The next range, if one of at least `range_bytes` is complete (or,
    /// with `eager`, any complete one). `eof`: no more bytes will come.
    pub fn take(&mut self, eager: bool, eof: bool) -> Option<Range> {
        if !self.started {
            if self.buf.len() < BOM.len() && !eof && BOM.starts_with(&self.buf) {
                return None;
            }
            self.started = true;
            if self.buf.starts_with(BOM) {
                self.scanner.skip(BOM.len());
                self.scanned = BOM.len();
            }
        }
        self.scan();
        if let Some(end) = self.forced.take() {
            let cut = std::mem::take(&mut self.pending);
            return Some(self.cut_at(end, cut));
        }
        let c = self.cut;
        if c == 0 || (!eager && self.buf.len() < self.range_bytes) {
            return None;
        }
        if self.first && self.header {
            let data = self.buf[..c].strip_prefix(BOM).unwrap_or(&self.buf[..c]);
            if data.iter().all(|&b| b == b'\n' || b == b'\r') {
                return None;
            }
        }
        // A record being dropped is after the cut: its count stays.
        Some(self.cut_at(c, Cut::default()))
    }

    /// Scan the bytes pushed since the last call, dropping what is over the
    /// limit (see the type's docs).
    fn scan(&mut self) {
        while self.scanned < self.buf.len() && self.forced.is_none() {
            if self.dropping == Some(Dropping::Line) {
                let at = self.scanned;
                let Some(i) = memchr(b'\n', &self.buf[at..]) else {
                    self.pass(self.buf.len() - at);
                    self.buf.truncate(at);
                    return;
                };
                self.pass(i);
                self.buf.drain(at..at + i);
                self.dropping = None;
                // The newline ends the record whatever the scanner's state
                // (its first line is over the limit).
                let end = self.scanner.scan(&self.buf[at..=at]);
                debug_assert_eq!(end, Some(1), "an over-long first line ends at its newline");
                self.scanned = at + 1;
                self.cut = self.scanned;
                self.forced = Some(self.scanned);
                return;
            }
            if let Some(dropping) = self.dropping.take() {
                let at = self.scanned;
                let Some(r) = self.scanner.scan_first(&self.buf[at..]) else {
                    self.drop_quoted(at..self.buf.len(), &[]);
                    self.dropping = Some(dropping);
                    return;
                };
                // The record's newline is `buf[at + r - 1]`: for a quoted
                // record, a `"` before it.
                let close: &[u8] = match dropping {
                    Dropping::Quoted => b"\"",
                    _ => b"",
                };
                self.drop_quoted(at..at + r - 1, close);
                self.scanned = at + close.len() + 1;
                self.cut = self.scanned;
                self.forced = Some(self.scanned);
                return;
            }
            if let Some(r) = self.scanner.scan(&self.buf[self.scanned..]) {
                self.cut = self.scanned + r;
            }
            self.scanned = self.buf.len();
            match self.scanner.line_held() {
                Some(held) if held > self.max as u64 && self.scanner.csv => {
                    self.drop_record(self.buf.len() - held as usize);
                }
                Some(held) if held > self.max as u64 => {
                    // The line starts `held` bytes back (all in `buf`: the
                    // line is not cut and nothing of it was dropped yet).
                    let keep = self.buf.len() - held as usize + self.max + 1;
                    self.pending.dropped += (self.buf.len() - keep) as u64;
                    self.buf.truncate(keep);
                    self.scanned = keep;
                    self.dropping = Some(Dropping::Line);
                }
                _ => {}
            }
            match self.scanner.quoted_held() {
                // The record starts `held` bytes back, all in `buf`. Its
                // first line is over the limit as the framer counts it,
                // without its newline.
                Some((held, first)) if held > self.max as u64 && first > self.max as u64 + 1 => {
                    self.drop_record(self.buf.len() - held as usize);
                }
                Some((held, first)) if held > self.max as u64 => {
                    let start = self.buf.len() - held as usize;
                    let keep = start + first as usize;
                    self.drop_quoted(keep..self.buf.len(), &[]);
                    let made_up = start + self.max + 1 - keep;
                    self.buf.resize(start + self.max + 1, b'a');
                    self.pending.made_up += made_up as u64;
                    self.scanned = self.buf.len();
                    self.dropping = Some(Dropping::Quoted);
                }
                _ => {}
            }
        }
    }

    /// The CSV record at `buf[start..]`, whose first line is over the limit:
    /// keep `max + 1` bytes of it with its `"` bytes made `a`s, drop the
    /// rest and go on dropping to its end.
    fn drop_record(&mut self, start: usize) {
        let keep = start + self.max + 1;
        for b in &mut self.buf[start..keep] {
            if *b == b'"' {
                *b = b'a';
            }
        }
        self.drop_quoted(keep..self.buf.len(), &[]);
        self.scanned = keep;
        self.dropping = Some(Dropping::Record);
    }

    /// Drop `buf[range]` (input of the record over the limit) and
    /// put `with` (made up) in its place.
    fn drop_quoted(&mut self, range: std::ops::Range<usize>, with: &[u8]) {
        self.pending.dropped += range.len() as u64;
        self.pending.lines += memchr_iter(b'\n', &self.buf[range.clone()]).count() as u64;
        self.pending.made_up += with.len() as u64;
        self.buf.splice(range, with.iter().copied());
    }

    /// `n` bytes of the record over the limit dropped unscanned.
    fn pass(&mut self, n: usize) {
        self.scanner.pass(n);
        self.pending.dropped += n as u64;
    }

    /// The range `buf[..c]`, with `cut` taken out of it.
    fn cut_at(&mut self, c: usize, cut: Cut) -> Range {
        let mut next = self.free.pop().unwrap_or_default();
        next.extend_from_slice(&self.buf[c..]);
        let mut bytes = std::mem::replace(&mut self.buf, next);
        bytes.truncate(c);
        self.scanned -= c;
        self.cut = 0;
        self.first = false;
        Range { bytes, cut }
    }

    /// End of the stream: what is left, as the last range (may be empty).
    pub fn rest(&mut self) -> Range {
        if self.dropping.take() == Some(Dropping::Quoted) && self.scanner.quoting != Quoting::Quoted
        {
            // The whole record ended outside quotes: so does what is kept
            // of it (its first line inside quotes, then `a`s).
            self.buf.push(b'"');
            self.pending.made_up += 1;
        }
        Range {
            bytes: std::mem::take(&mut self.buf),
            cut: std::mem::take(&mut self.pending),
        }
    }
}

/// The start of a stream scored in one pipeline, watched for the first
/// record end at or past `from` bytes: there the stream can be handed
/// over, the rest cut into ranges that count on from where it ends
/// ([`Splitter::continuing`], [`Ordered::after`]). `mmp serve` scores a
/// chunked body so: its size is not known up front, and a small one must
/// not pay for the ranges (`src/serve/stage.rs`). What the start decides
/// for the whole stream is settled in it: a BOM is skipped, and a CSV
/// header is read before the handover (the splitter's first range has the
/// same rule).
#[derive(Debug)]
pub(crate) struct Handover {
    scanner: Scanner,
    from: u64,
    /// Bytes of the stream seen (all scored in the pipeline).
    seen: u64,
    /// Newlines in them.
    lines: u64,
    /// The first bytes, while they may be a BOM cut between pieces.
    head: Vec<u8>,
    /// The BOM check is done.
    started: bool,
    /// A CSV header is still to come.
    header: bool,
}

impl Handover {
    /// Watch `spec`'s input for a handover at `from` bytes or after.
    pub(crate) fn new(spec: &Spec<'_>, from: u64) -> Handover {
        Handover {
            scanner: Scanner::new(spec.input),
            from,
            seen: 0,
            lines: 0,
            head: Vec::new(),
            started: false,
            header: spec.input == Format::Csv && spec.opts.decode.csv_header,
        }
    }

    /// The next piece of the stream: `Some(end)` if the stream is handed
    /// over after `bytes[..end]` (the pipeline gets that much and is
    /// finished, ranges get the rest), `None` if all of it is for the
    /// pipeline.
    pub(crate) fn see(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut data = 0;
        if !self.started {
            let take = (BOM.len() - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            if self.head.len() < BOM.len() && BOM.starts_with(&self.head) {
                self.seen += bytes.len() as u64;
                return None;
            }
            self.started = true;
            if self.head == BOM {
                self.scanner.skip(BOM.len());
                data = take;
            } else {
                // The bytes of earlier pieces are data after all (two at
                // most, and no newline among them).
                let earlier = self.head.len() - take;
                self.scanner.scan(&self.head[..earlier]);
                self.header &= earlier == 0;
            }
        }
        let end = self.scanner.scan(&bytes[data..]).map(|e| e + data);
        // A header is read once a record starts: its end is a later one.
        let mut ready = true;
        if self.header {
            match bytes[data..].iter().position(|&b| b != b'\n' && b != b'\r') {
                Some(i) => {
                    self.header = false;
                    ready = end.is_some_and(|e| e > data + i);
                }
                None => ready = false,
            }
        }
        match end {
            Some(e) if ready && self.seen + bytes.len() as u64 >= self.from => {
                self.seen += e as u64;
                self.lines += memchr_iter(b'\n', &bytes[..e]).count() as u64;
                Some(e)
            }
            _ => {
                self.seen += bytes.len() as u64;
                self.lines += memchr_iter(b'\n', bytes).count() as u64;
                None
            }
        }
    }

    /// Where the rest starts, after a handover whose pipeline decoded
    /// `records` records: the base of the ranges ([`Ordered::after`]).
    pub(crate) fn base(&self, records: u64) -> Position {
        Position {
            record: 1 + records,
            line: 1 + self.lines,
            byte: self.seen,
        }
    }
}
