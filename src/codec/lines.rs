//! Line framing across chunk borders, with positions and a length limit.
//!
//! The framer hands out complete `\n`-terminated lines. A line that lies
//! wholly inside the caller's chunk is borrowed from it (no copy); only the
//! unfinished tail of a chunk is carried over, and the carry never holds more
//! than `max` bytes: a line found to be longer is reported once as
//! [`Next::TooLong`] and its bytes are discarded up to its newline, so input
//! with no newline cannot exhaust memory (vector's `max_length` does the same).

use memchr::memchr;

use crate::error::Position;
use crate::record::Batch;

/// What the framer found next.
#[derive(Debug)]
pub(crate) enum Next<'a> {
    /// A complete line, with its `\n` (absent only for the last line at end
    /// of input), and where it starts.
    Line(&'a [u8], Position),
    /// The line starting at this position is longer than the limit; its bytes
    /// up to its newline are skipped (unless the caller resumes).
    TooLong(Position),
    /// The chunk is used up.
    NeedMore,
}

/// Splits a stream into lines. See the module docs.
#[derive(Debug)]
pub(crate) struct LineFramer {
    carry: Vec<u8>,
    /// The carry was handed out as a line and must be cleared before reuse.
    carry_out: bool,
    max: usize,
    /// Discarding the rest of a too-long line.
    skipping: bool,
    /// Line number of the next line to start.
    line: u64,
    /// Stream offset of the next line to start (or of the carried line).
    byte: u64,
}

impl LineFramer {
    /// A framer for lines of at most `max` bytes (not counting `\n`).
    pub(crate) fn new(max: usize) -> LineFramer {
        LineFramer {
            carry: Vec::new(),
            carry_out: false,
            max,
            skipping: false,
            line: 1,
            byte: 0,
        }
    }

    /// Where the next line starts. Record numbers are the caller's (blank
    /// lines are not records), so `record` is left 0.
    fn position(&self) -> Position {
        Position {
            record: 0,
            line: self.line,
            byte: self.byte,
        }
    }

    /// Account for bytes consumed by someone else (the BOM, or csv-core
    /// reading a quoted record past its first line).
    pub(crate) fn advance(&mut self, bytes: &[u8]) {
        self.byte += bytes.len() as u64;
        self.line += memchr::memchr_iter(b'\n', bytes).count() as u64;
    }

    /// The next line in `input[*at..]`, advancing `*at` past what it used.
    pub(crate) fn next<'a>(&'a mut self, input: &'a [u8], at: &mut usize) -> Next<'a> {
        if self.carry_out {
            self.carry.clear();
            self.carry_out = false;
        }
        loop {
            let rest = &input[*at..];
            if rest.is_empty() {
                return Next::NeedMore;
            }
            let newline = memchr(b'\n', rest);
            if self.skipping {
                match newline {
                    Some(i) => {
                        *at += i + 1;
                        self.byte += i as u64 + 1;
                        self.line += 1;
                        self.skipping = false;
                        continue;
                    }
                    None => {
                        *at = input.len();
                        self.byte += rest.len() as u64;
                        return Next::NeedMore;
                    }
                }
            }
            let pos = self.position();
            let held = self.carry.len();
            let len = held + newline.unwrap_or(rest.len());
            if len > self.max {
                // Known to be too long: skip the rest. What is held (at most
                // `max` bytes, no newline) stays until the next call, for
                // [`LineFramer::resume`].
                self.byte += held as u64;
                self.carry_out = true;
                self.skipping = true;
                return Next::TooLong(pos);
            }
            let Some(i) = newline else {
                self.carry.extend_from_slice(rest);
                *at = input.len();
                return Next::NeedMore;
            };
            *at += i + 1;
            self.line += 1;
            self.byte += (held + i + 1) as u64;
            if held == 0 {
                return Next::Line(&rest[..=i], pos);
            }
            self.carry.extend_from_slice(&rest[..=i]);
            self.carry_out = true;
            return Next::Line(&self.carry, pos);
        }
    }

    /// Just after [`Next::TooLong`]: do not skip the line after all (its
    /// caller reads on from here); the bytes of it that were held.
    pub(crate) fn resume(&mut self) -> &[u8] {
        self.skipping = false;
        &self.carry
    }

    /// End of input: the last line if it had no newline.
    pub(crate) fn finish(&mut self) -> Option<(&[u8], Position)> {
        if self.carry_out {
            self.carry.clear();
            self.carry_out = false;
        }
        if self.skipping || self.carry.is_empty() {
            return None;
        }
        let pos = self.position();
        self.byte += self.carry.len() as u64;
        self.carry_out = true;
        Some((&self.carry, pos))
    }
}

/// A decoder built on a [`LineFramer`]: what the CSV and JSON-lines
/// decoders share around their own line loop, the BOM at the start.
pub(crate) trait LineDecoder {
    /// The decoder's BOM stripper and framer.
    fn parts(&mut self) -> (&mut BomStripper, &mut LineFramer);

    /// Decode the next record of `input` from `*at` into `batch` (a row or
    /// an error), moving `*at` past the bytes used; `false` when `input`
    /// holds no complete record more (its tail is kept for the next call).
    fn step(&mut self, input: &[u8], at: &mut usize, batch: &mut Batch) -> bool;

    /// Whether a call stops after its first bad record.
    fn stop_on_error(&self) -> bool;

    /// Decode what `input` completes, up to `limit` records in `batch` (or,
    /// with `stop_on_error`, up to the first bad record); returns the bytes
    /// consumed.
    fn run(&mut self, input: &[u8], batch: &mut Batch, limit: usize) -> usize {
        let errors = batch.errors().len();
        let mut at = 0;
        while batch.len() < limit
            && !(self.stop_on_error() && batch.errors().len() > errors)
            && self.step(input, &mut at, batch)
        {}
        at
    }

    /// Strip a BOM from the start of the stream, then run.
    fn decode_lines(&mut self, input: &[u8], batch: &mut Batch, limit: usize) -> usize {
        let (bom, framer) = self.parts();
        let (replay, dropped, resume) = bom.strip(input);
        if dropped > 0 {
            framer.advance(BOM);
        }
        self.run_whole(replay, batch);
        resume + self.run(&input[resume..], batch, limit)
    }

    /// Run over all of `bytes` (a BOM prefix that turned out to be data: at
    /// most two bytes with no newline). `run` may stop early (`stop_on_error`
    /// after a record too long for a tiny limit), and bytes it did not take
    /// would be missing from every later position, so call it until they are
    /// all consumed; no batch limit, since they complete no record.
    fn run_whole(&mut self, mut bytes: &[u8], batch: &mut Batch) {
        while !bytes.is_empty() {
            let n = self.run(bytes, batch, usize::MAX);
            bytes = &bytes[n..];
        }
    }

    /// End of input: a BOM prefix that never completed is data after all.
    fn replay_partial_bom(&mut self, batch: &mut Batch) {
        let (replay, _, _) = self.parts().0.strip(&[]);
        self.run_whole(replay, batch);
    }
}

/// The UTF-8 byte order mark.
pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Strips a UTF-8 BOM from the start of a stream, even when it arrives split
/// across chunks.
#[derive(Debug, Default)]
pub(crate) struct BomStripper {
    /// BOM bytes matched so far, while undecided.
    matched: usize,
    done: bool,
}

impl BomStripper {
    /// Look at the next chunk. Returns the bytes to process before the rest
    /// of `input` (a BOM prefix that turned out not to be a BOM), how many
    /// BOM bytes were dropped, and where in `input` processing resumes.
    /// `input` empty means end of input.
    pub(crate) fn strip(&mut self, input: &[u8]) -> (&'static [u8], usize, usize) {
        if self.done {
            return (&[], 0, 0);
        }
        let mut i = 0;
        while self.matched + i < BOM.len() && i < input.len() && input[i] == BOM[self.matched + i] {
            i += 1;
        }
        if self.matched + i == BOM.len() {
            self.done = true;
            return (&[], BOM.len(), i);
        }
        if i == input.len() && !input.is_empty() {
            // Still a prefix of the BOM: keep waiting.
            self.matched += i;
            return (&[], 0, i);
        }
        // Not a BOM: replay what was held back.
        self.done = true;
        (&BOM[..self.matched], 0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All lines of `input` fed in pieces of `size` bytes.
    fn lines(input: &[u8], size: usize, max: usize) -> Vec<(String, u64, u64)> {
        let mut f = LineFramer::new(max);
        let mut out = Vec::new();
        for chunk in input.chunks(size.max(1)) {
            let mut at = 0;
            loop {
                match f.next(chunk, &mut at) {
                    Next::Line(l, p) => {
                        out.push((String::from_utf8_lossy(l).into_owned(), p.line, p.byte))
                    }
                    Next::TooLong(p) => out.push(("<too long>".into(), p.line, p.byte)),
                    Next::NeedMore => break,
                }
            }
        }
        if let Some((l, p)) = f.finish() {
            out.push((String::from_utf8_lossy(l).into_owned(), p.line, p.byte));
        }
        out
    }

    #[test]
    fn same_lines_whatever_the_chunking() {
        let input = b"a,b\r\n\nlong line here\nc\nd";
        let whole = lines(input, input.len(), 8);
        assert_eq!(
            whole,
            vec![
                ("a,b\r\n".into(), 1, 0),
                ("\n".into(), 2, 5),
                ("<too long>".into(), 3, 6),
                ("c\n".into(), 4, 21),
                ("d".into(), 5, 23),
            ]
        );
        for size in 1..input.len() {
            assert_eq!(lines(input, size, 8), whole, "chunk size {size}");
        }
    }

    #[test]
    fn too_long_last_line_is_reported_once() {
        let input = b"ok\n0123456789";
        for size in 1..=input.len() {
            let got = lines(input, size, 4);
            assert_eq!(
                got,
                vec![("ok\n".into(), 1, 0), ("<too long>".into(), 2, 3)]
            );
        }
    }

    #[test]
    fn bom_split_across_chunks() {
        let mut s = BomStripper::default();
        assert_eq!(s.strip(b"\xEF"), (&b""[..], 0, 1));
        assert_eq!(s.strip(b"\xBB"), (&b""[..], 0, 1));
        assert_eq!(s.strip(b"\xBF1,2"), (&b""[..], 3, 1));
        assert_eq!(s.strip(b"\xEF\xBB\xBF"), (&b""[..], 0, 0));

        let mut s = BomStripper::default();
        assert_eq!(s.strip(b"\xEF\xBB"), (&b""[..], 0, 2));
        assert_eq!(s.strip(b"x"), (&b"\xEF\xBB"[..], 0, 0));

        let mut s = BomStripper::default();
        assert_eq!(s.strip(b"1,2"), (&b""[..], 0, 0));

        let mut s = BomStripper::default();
        assert_eq!(s.strip(b"\xEF"), (&b""[..], 0, 1));
        assert_eq!(s.strip(b""), (&b"\xEF"[..], 0, 0));
    }
}
