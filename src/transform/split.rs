//! Cutting a file into records and mini-batches, as `SplitType=Line` and the
//! batch strategies do (sagemaker-contract.md §3, "Splitting and batching").
//!
//! A record is a line (the contract: "split on newline"; CSV with embedded
//! newlines is unsupported by the service, so a quoted newline ends a record
//! here too, except in [`SplitOptions::quote_aware`] mode, used only to cut a
//! `SplitType=None` file for parallel scoring). Blank lines are not records:
//! never sent alone and never counted, so a container that skips them (ours
//! does) answers one line per record; inside a mini-batch they travel with
//! their neighbours, so a mini-batch is always one contiguous span of the
//! file, from its first record's first byte to its last record's line end.
//!
//! `MultiRecord` packs as many *whole* records as fit in `MaxPayloadInMB`
//! by exact byte count of the body sent (SDK local mode compares Python's
//! `sys.getsizeof`, about 49 bytes off, and POSTs an empty body when the
//! first record alone is too large, peers.md §5; here a record too large for
//! any request fails its file with [`TransformError::RecordTooLarge`]).
//! With an `InputFilter` the limit applies to the filtered body, which is
//! what goes over HTTP.
//!
//! The reader holds at most one mini-batch plus one read chunk in memory.

use std::io::Read;

use std::sync::Arc;

use bytes::Bytes;

use crate::error::Position;

use super::dataprocessing::DataProcessing;
use super::error::{Result, TransformError};
use super::pool::{self, Pool};

/// Bytes read from the file per `read` call.
pub const READ_CHUNK: usize = 1 << 20;

/// Batches smaller than this are copied out of the read buffer; larger ones
/// take the buffer over (see [`pool`]).
const COPY_BELOW: usize = 64 * 1024;

/// Which lines are blank (not records): as our decoders skip them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blank {
    /// Empty, or a lone `\r` (the CSV decoder's rule; also used for types
    /// we do not know).
    Empty,
    /// Only ASCII whitespace (the JSON decoders' rule).
    Whitespace,
}

impl Blank {
    /// Whether `line` (without its `\n`) is blank.
    pub fn is_blank(self, line: &[u8]) -> bool {
        match self {
            Blank::Empty => line.is_empty() || line == b"\r",
            Blank::Whitespace => line.trim_ascii().is_empty(),
        }
    }
}

/// How to cut a file.
#[derive(Clone, Debug)]
pub struct SplitOptions {
    /// Aim for batches of at most this many body bytes; a batch grows past
    /// it only when one record alone is larger (and `max_record` allows).
    pub target: u64,
    /// One record per batch (`SingleRecord`).
    pub single: bool,
    /// A record whose body is larger fails the file (`MaxPayloadInMB`).
    pub max_record: Option<u64>,
    /// `MaxPayloadInMB`, for the error message.
    pub mb: u32,
    /// Which lines are blank.
    pub blank: Blank,
    /// A `\n` inside double quotes does not end a record (RFC 4180); only
    /// for cutting a `SplitType=None` CSV file into ranges.
    pub quote_aware: bool,
    /// Also return each batch's original span when the body is filtered
    /// (needed to join).
    pub keep_originals: bool,
}

/// One mini-batch (or in-process range).
#[derive(Clone, Debug)]
pub struct Batch {
    /// What is sent: the file span, or its records filtered, one per line.
    pub body: Bytes,
    /// The file span, when `body` was filtered and originals are kept.
    pub originals: Option<Bytes>,
    /// `body` is the records filtered, not the file's bytes (positions in
    /// it are not the file's).
    pub filtered: bool,
    /// Records in it.
    pub records: u64,
    /// Where its first record starts in the file (record numbers count
    /// records from 1, lines count `\n` from 1, bytes from 0).
    pub start: Position,
}

impl Batch {
    /// The original records: the file span (the body itself when it was not
    /// filtered).
    pub fn original_span(&self) -> &Bytes {
        self.originals.as_ref().unwrap_or(&self.body)
    }
}

/// Cuts a reader into [`Batch`]es. See the module docs.
pub struct Splitter<'d, R> {
    reader: R,
    opts: SplitOptions,
    filter: Option<&'d DataProcessing>,
    /// Read bytes; the unconsumed ones are `buf[pos..filled]`, and
    /// `buf[pos]` starts a line. Offsets below are relative to `pos`.
    /// `buf[filled..]` is initialised room for the next read (kept, not
    /// zeroed again, when the buffer is reused).
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    pool: Arc<Pool>,
    eof: bool,
    /// File position of `buf[pos]`: line number, byte offset, and records
    /// before it.
    line: u64,
    byte: u64,
    record: u64,
    /// Resumable search for the end of the line at the cursor: bytes of it
    /// already scanned, and whether the scan is inside quotes.
    scanned: usize,
    in_quotes: bool,
}

/// A line found in the buffer.
struct Line {
    /// Offset of the byte after its `\n` (or of the end of input).
    end: usize,
    /// Offset of the end of its content (before `\n`).
    content_end: usize,
}

impl<'d, R: Read> Splitter<'d, R> {
    /// A splitter over `reader`; with `filter`, each record's body line is
    /// `filter.filter_input(record)`.
    pub fn new(reader: R, opts: SplitOptions, filter: Option<&'d DataProcessing>) -> Self {
        let filter = filter.filter(|d| d.input_filter.is_some());
        // Room for a whole batch and the read past its end.
        let batch = usize::try_from(opts.target).unwrap_or(usize::MAX);
        let pool = Pool::new(batch.clamp(READ_CHUNK, 64 << 20) + 2 * READ_CHUNK);
        Splitter {
            reader,
            opts,
            filter,
            buf: Vec::new(),
            pos: 0,
            filled: 0,
            pool,
            eof: false,
            line: 1,
            byte: 0,
            record: 0,
            scanned: 0,
            in_quotes: false,
        }
    }

    /// Read one more chunk; false at end of input.
    fn fill(&mut self) -> Result<bool> {
        self.fill_upto(READ_CHUNK)
    }

    /// Read at most `want` (≥ 1) more bytes; false at end of input.
    fn fill_upto(&mut self, want: usize) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.buf.len() - self.filled < READ_CHUNK {
            // Move what is unread to the front of a pooled buffer; a line
            // longer than a buffer grows it.
            if self.pos > 0 || self.buf.is_empty() {
                let next = self.fresh(self.pos, self.filled);
                self.pool.give_back(std::mem::replace(&mut self.buf, next));
                self.filled -= self.pos;
                self.pos = 0;
            }
            if self.buf.len() - self.filled < READ_CHUNK {
                self.buf.resize(self.filled + READ_CHUNK, 0);
            }
        }
        let at = self.filled;
        let to = at + want.clamp(1, READ_CHUNK);
        loop {
            match self.reader.read(&mut self.buf[at..to]) {
                Ok(n) => {
                    self.filled += n;
                    self.eof = n == 0;
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TransformError::io("reading the input", e)),
            }
        }
    }

    /// The line starting at `from`, reading more input as needed; `None` at
    /// end of input. `limit`: give up (with `Err(len so far)`) once the line
    /// is known to be longer, so a file without newlines is not read whole.
    fn line_at(
        &mut self,
        from: usize,
        limit: Option<u64>,
    ) -> Result<Option<std::result::Result<Line, usize>>> {
        loop {
            let hay = &self.buf[self.pos + from + self.scanned..self.filled];
            let found = if self.opts.quote_aware {
                let mut hit = None;
                for i in memchr::memchr2_iter(b'"', b'\n', hay) {
                    if hay[i] == b'"' {
                        self.in_quotes = !self.in_quotes;
                    } else if !self.in_quotes {
                        hit = Some(i);
                        break;
                    }
                }
                hit
            } else {
                memchr::memchr(b'\n', hay)
            };
            if let Some(i) = found {
                let nl = from + self.scanned + i;
                self.scanned = 0;
                self.in_quotes = false;
                return Ok(Some(Ok(Line {
                    end: nl + 1,
                    content_end: nl,
                })));
            }
            // No line end yet: remember how far the scan got (quote state is
            // already updated for those bytes).
            self.scanned = self.unread() - from;
            if let Some(limit) = limit {
                if self.scanned as u64 > limit {
                    let len = self.scanned;
                    self.scanned = 0;
                    self.in_quotes = false;
                    return Ok(Some(Err(len)));
                }
            }
            if !self.fill()? {
                self.scanned = 0;
                self.in_quotes = false;
                let end = self.unread();
                if from == end {
                    return Ok(None);
                }
                return Ok(Some(Ok(Line {
                    end,
                    content_end: end,
                })));
            }
        }
    }

    /// How many read bytes are not consumed yet.
    fn unread(&self) -> usize {
        self.filled - self.pos
    }

    /// The bytes not consumed yet.
    fn data(&self) -> &[u8] {
        &self.buf[self.pos..self.filled]
    }

    /// A pooled buffer holding `buf[from..to]` at its start, with room for
    /// a read after it (memory it had initialised is not zeroed again).
    fn fresh(&self, from: usize, to: usize) -> Vec<u8> {
        let mut next = self.pool.take();
        let need = (to - from) + READ_CHUNK;
        if next.len() < need {
            // Only what is needed: fresh pages are faulted in when touched.
            next.resize(need, 0);
        }
        next[..to - from].copy_from_slice(&self.buf[from..to]);
        next
    }

    /// Drop `n` bytes of blank lines from the front of the buffer.
    fn skip(&mut self, n: usize, lines: u64) {
        self.pos += n;
        self.byte += n as u64;
        self.line += lines;
    }

    /// The first `n` unread bytes, consumed: copied if small, else sharing
    /// the buffer, whose unread rest moves to a pooled one.
    fn take(&mut self, n: usize) -> Bytes {
        let (from, to) = (self.pos, self.pos + n);
        if n < COPY_BELOW {
            self.pos = to;
            return Bytes::copy_from_slice(&self.buf[from..to]);
        }
        let next = self.fresh(to, self.filled);
        let full = std::mem::replace(&mut self.buf, next);
        self.filled -= to;
        self.pos = 0;
        pool::share(full, from, to, &self.pool)
    }

    /// The next batch, `None` at end of input.
    pub fn next_batch(&mut self) -> Result<Option<Batch>> {
        if let Some(batch) = self.fast_batch()? {
            return Ok(Some(batch));
        }
        self.slow_batch()
    }

    /// The common case without a look at each line: no filter, several
    /// records per batch, no quotes to track, and any line short enough to
    /// fit (`max_record >= target`). The batch is then the longest run of
    /// whole lines within `target` bytes, cut at the last `\n` before it
    /// (the greedy packing of the slow path), its records counted by a
    /// vectorised newline count. `None` (use the slow path) when the span
    /// holds a blank line or no newline at all.
    fn fast_batch(&mut self) -> Result<Option<Batch>> {
        let o = &self.opts;
        let applies = self.filter.is_none()
            && !o.single
            && !o.quote_aware
            && o.blank == Blank::Empty
            && o.max_record.is_none_or(|m| m >= o.target);
        if !applies {
            return Ok(None);
        }
        let target = usize::try_from(o.target).unwrap_or(usize::MAX);
        // Read up to one byte past the target (what lies beyond the cut is
        // carried to the next batch's buffer, so keep it short), scanning
        // each piece as it arrives, while it is still in the cache: count
        // its newlines, and look for a blank line inside (a `\n` followed
        // by `\n` or `\r`: two vectorised searches; any line starting with
        // `\r` takes the careful path).
        let mut scanned = 0usize;
        let mut newlines = 0u64;
        loop {
            let data = self.data();
            let piece = &data[scanned.saturating_sub(1)..];
            if memchr::memmem::find(piece, b"\n\n").is_some()
                || memchr::memmem::find(piece, b"\n\r").is_some()
            {
                return Ok(None);
            }
            newlines += memchr::memchr_iter(b'\n', &data[scanned..]).count() as u64;
            scanned = data.len();
            if scanned > target {
                break;
            }
            if !self.fill_upto(target.saturating_add(1) - scanned)? {
                break;
            }
        }
        let end = if self.unread() <= target {
            self.unread()
        } else {
            match memchr::memrchr(b'\n', &self.data()[..target]) {
                Some(i) => i + 1,
                None => return Ok(None),
            }
        };
        let span = &self.data()[..end];
        // Newlines past the cut belong to the next batch.
        newlines -= memchr::memchr_iter(b'\n', &self.data()[end..]).count() as u64;
        let first = memchr::memchr(b'\n', span).map_or(span, |i| &span[..i]);
        let last = match memchr::memrchr(b'\n', span) {
            Some(i) => &span[i + 1..],
            None => span,
        };
        let ends_open = !span.ends_with(b"\n");
        if span.is_empty()
            || Blank::Empty.is_blank(first)
            || (ends_open && Blank::Empty.is_blank(last))
        {
            return Ok(None);
        }
        let records = newlines + ends_open as u64;
        let start = Position {
            record: self.record + 1,
            line: self.line,
            byte: self.byte,
        };
        let body = self.take(end);
        self.byte += end as u64;
        self.line += newlines;
        self.record += records;
        Ok(Some(Batch {
            body,
            originals: None,
            filtered: false,
            records,
            start,
        }))
    }

    /// Line by line: blank lines, filters, single records, quotes, limits.
    fn slow_batch(&mut self) -> Result<Option<Batch>> {
        let mut cursor = 0;
        let mut lines = 0u64; // lines between buf[0] and the cursor
        let mut end = 0; // end of the batch's last record
        let mut end_lines = 0u64; // lines up to `end`
        let mut records = 0u64;
        let mut body: Vec<u8> = Vec::new();
        loop {
            // Give up on a line known to be too large, so a file without
            // newlines is not read whole (a filtered record's size is only
            // known once it is whole).
            let limit = self.opts.max_record.filter(|_| self.filter.is_none());
            let Some(line) = self.line_at(cursor, limit)? else {
                break;
            };
            let pos = Position {
                record: self.record + records + 1,
                line: self.line + lines,
                byte: self.byte + cursor as u64,
            };
            let line = match line {
                Ok(l) => l,
                Err(_) => return Err(self.too_large(pos)),
            };
            let content = &self.data()[cursor..line.content_end];
            if self.opts.blank.is_blank(content) {
                if records == 0 {
                    self.skip(line.end, 1);
                } else {
                    cursor = line.end;
                    lines += 1;
                }
                continue;
            }
            // Size of the body with this record in it.
            let mut filtered = Vec::new();
            if let Some(f) = self.filter {
                f.filter_input(content, pos, &mut filtered)?;
            }
            let record_size = match self.filter {
                Some(_) => filtered.len(),
                None => line.end - cursor,
            } as u64;
            if self.opts.max_record.is_some_and(|max| record_size > max) {
                return Err(self.too_large(pos));
            }
            let size_with = match self.filter {
                Some(_) => (body.len() + filtered.len()) as u64,
                None => line.end as u64,
            };
            if records > 0 && size_with > self.opts.target {
                break;
            }
            body.extend_from_slice(&filtered);
            records += 1;
            end = line.end;
            lines += if self.opts.quote_aware {
                // A quoted record may span lines.
                memchr::memchr_iter(b'\n', &self.data()[cursor..line.end]).count() as u64
            } else {
                1
            };
            cursor = line.end;
            end_lines = lines;
            if self.opts.single {
                break;
            }
        }
        if records == 0 {
            return Ok(None);
        }
        let start = Position {
            record: self.record + 1,
            line: self.line,
            byte: self.byte,
        };
        let span = self.take(end);
        self.byte += end as u64;
        self.line += end_lines;
        self.record += records;
        // The scan state belonged to a line at `cursor`, which is now
        // `cursor - end`; a stopped batch left no partial scan, though.
        self.scanned = 0;
        self.in_quotes = false;
        let (body, originals) = match self.filter {
            Some(_) => (Bytes::from(body), self.opts.keep_originals.then_some(span)),
            None => (span, None),
        };
        Ok(Some(Batch {
            body,
            originals,
            filtered: self.filter.is_some(),
            records,
            start,
        }))
    }

    fn too_large(&self, pos: Position) -> TransformError {
        let limit = self.opts.max_record.unwrap_or(0);
        TransformError::RecordTooLarge {
            pos,
            mb: self.opts.mb,
            limit,
        }
    }
}

/// The records of a span, with their positions: what a response's lines
/// are paired with when joining. `start` is the span's first record.
pub struct Records<'a> {
    span: &'a [u8],
    at: usize,
    blank: Blank,
    next: Position,
}

impl<'a> Records<'a> {
    /// The records of `span`, the first at `start`.
    pub fn new(span: &'a [u8], start: Position, blank: Blank) -> Records<'a> {
        Records {
            span,
            at: 0,
            blank,
            next: start,
        }
    }
}

impl<'a> Iterator for Records<'a> {
    /// A record without its line ending, and where it starts.
    type Item = (&'a [u8], Position);

    fn next(&mut self) -> Option<Self::Item> {
        while self.at < self.span.len() {
            let rest = &self.span[self.at..];
            let (content, len) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], i + 1),
                None => (rest, rest.len()),
            };
            let pos = self.next;
            self.at += len;
            self.next.line += 1;
            self.next.byte += len as u64;
            if !self.blank.is_blank(content) {
                self.next.record += 1;
                let content = content.strip_suffix(b"\r").unwrap_or(content);
                return Some((content, pos));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opts(target: u64, single: bool, max: Option<u64>) -> SplitOptions {
        SplitOptions {
            target,
            single,
            max_record: max,
            mb: 0,
            blank: Blank::Empty,
            quote_aware: false,
            keep_originals: false,
        }
    }

    fn split(input: &[u8], o: SplitOptions) -> Result<Vec<Batch>> {
        let mut s = Splitter::new(input, o, None);
        let mut v = Vec::new();
        while let Some(b) = s.next_batch()? {
            v.push(b);
        }
        Ok(v)
    }

    fn bodies(v: &[Batch]) -> Vec<&[u8]> {
        v.iter().map(|b| &b.body[..]).collect()
    }

    #[test]
    fn multi_record_packs_whole_records_by_exact_size() {
        let input = b"aaa\nbb\ncccc\nd";
        let v = split(input, opts(7, false, Some(7))).unwrap();
        assert_eq!(bodies(&v), [&b"aaa\nbb\n"[..], b"cccc\nd"]);
        assert_eq!(
            v[1].start,
            Position {
                record: 3,
                line: 3,
                byte: 7
            }
        );
        let v = split(input, opts(6, false, Some(6))).unwrap();
        assert_eq!(bodies(&v), [&b"aaa\n"[..], b"bb\n", b"cccc\nd"]);
    }

    #[test]
    fn single_record_and_blank_lines() {
        let input = b"\n\r\na\n\nb\r\n\n";
        let v = split(input, opts(u64::MAX, true, None)).unwrap();
        assert_eq!(bodies(&v), [&b"a\n"[..], b"b\r\n"]);
        assert_eq!(
            v[0].start,
            Position {
                record: 1,
                line: 3,
                byte: 3
            }
        );
        assert_eq!(
            v[1].start,
            Position {
                record: 2,
                line: 5,
                byte: 6
            }
        );
        // Inside a batch, blank lines travel with their neighbours.
        let v = split(input, opts(u64::MAX, false, None)).unwrap();
        assert_eq!(bodies(&v), [&b"a\n\nb\r\n"[..]]);
        assert_eq!(v[0].records, 2);
        assert!(split(b"\n\n", opts(9, false, None)).unwrap().is_empty());
    }

    #[test]
    fn a_record_over_the_limit_fails_the_file() {
        let e = split(b"ab\nabcdefgh\nc\n", opts(4, false, Some(4))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "record 2 (line 2, byte 3) is larger than MaxPayloadInMB=0 (4 bytes): no mini-batch can carry it"
        );
        // Also when the line never ends: it is not read whole.
        let big = vec![b'x'; 3 * READ_CHUNK];
        let e = split(&big, opts(10, false, Some(10))).unwrap_err();
        assert!(matches!(e, TransformError::RecordTooLarge { .. }));
    }

    #[test]
    fn quote_aware_ranges_do_not_cut_inside_quotes() {
        let mut o = opts(4, false, None);
        o.quote_aware = true;
        let v = split(b"1,\"a\nb\"\n2,3\n", o).unwrap();
        assert_eq!(bodies(&v), [&b"1,\"a\nb\"\n"[..], b"2,3\n"]);
        assert_eq!(v[1].start.line, 3);
    }

    #[test]
    fn records_of_a_span() {
        let start = Position {
            record: 5,
            line: 9,
            byte: 100,
        };
        let r: Vec<_> = Records::new(b"a\r\n\nb", start, Blank::Empty).collect();
        assert_eq!(r[0], (&b"a"[..], start));
        assert_eq!(
            r[1],
            (
                &b"b"[..],
                Position {
                    record: 6,
                    line: 11,
                    byte: 104
                }
            )
        );
    }

    /// Large inputs: batches share pooled buffers, reads refill them, and
    /// every batch is still the exact span of the file, with blank lines
    /// (the line-by-line path) and without (the fast path).
    #[test]
    fn large_inputs_through_pooled_buffers() {
        for blank_every in [0usize, 997] {
            let mut input = Vec::new();
            let mut i = 0usize;
            while input.len() < 5 * READ_CHUNK + 123 {
                i += 1;
                input.extend_from_slice(format!("{i},{}\n", "y".repeat(i % 300)).as_bytes());
                if blank_every > 0 && i % blank_every == 0 {
                    input.extend_from_slice(b"\r\n");
                }
            }
            for (target, single) in [
                (READ_CHUNK as u64, false),
                (3 << 20, false),
                (1 << 16, true),
            ] {
                let v = split(&input, opts(target, single, Some(target))).unwrap();
                let mut records = 0;
                for b in &v {
                    let at = b.start.byte as usize;
                    assert_eq!(&input[at..at + b.body.len()], &b.body[..]);
                    assert!(b.body.len() as u64 <= target);
                    assert_eq!(b.start.record, records + 1);
                    records += b.records;
                }
                assert_eq!(records, i as u64, "{blank_every} {target} {single}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        /// MultiRecord: no body over the limit, every record once, in order.
        #[test]
        fn mini_batches_fit_and_keep_every_record_in_order(
            lines in proptest::collection::vec("[a-z,\"]{0,12}(\r)?", 0..60),
            trailing in any::<bool>(),
            limit in 1u64..40,
        ) {
            let mut input = lines.join("\n");
            if trailing { input.push('\n'); }
            let want: Vec<&[u8]> = Records::new(input.as_bytes(), Position::default(), Blank::Empty)
                .map(|(r, _)| r)
                .collect();
            let too_big = input
                .split_inclusive('\n')
                .any(|l| !Blank::Empty.is_blank(l.trim_end_matches('\n').as_bytes()) && l.len() as u64 > limit);
            match split(input.as_bytes(), opts(limit, false, Some(limit))) {
                Err(e) => prop_assert!(too_big, "{e}"),
                Ok(batches) => {
                    prop_assert!(!too_big);
                    let mut got = Vec::new();
                    for b in &batches {
                        prop_assert!(b.body.len() as u64 <= limit, "{} > {limit}", b.body.len());
                        let recs: Vec<_> = Records::new(&b.body, b.start, Blank::Empty).collect();
                        prop_assert_eq!(recs.len() as u64, b.records);
                        prop_assert!(b.records > 0);
                        for (r, pos) in recs {
                            // Positions point at the record in the file.
                            let at = pos.byte as usize;
                            prop_assert_eq!(&input.as_bytes()[at..at + r.len()], r);
                            got.push(r);
                        }
                    }
                    prop_assert_eq!(got, want);
                    // The fast path (Blank::Empty) cuts exactly where the
                    // line-by-line path (forced by Blank::Whitespace, the
                    // same rule on these inputs) does.
                    let mut slow = opts(limit, false, Some(limit));
                    slow.blank = Blank::Whitespace;
                    let slow = split(input.as_bytes(), slow).unwrap();
                    let spans = |v: &[Batch]| v.iter().map(|b| (b.body.clone(), b.records, b.start)).collect::<Vec<_>>();
                    prop_assert_eq!(spans(&batches), spans(&slow));
                }
            }
        }
    }
}
