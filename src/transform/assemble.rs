//! From a container's response to the bytes of the output file: the record
//! count check, DataProcessing's join and output filter, and `AssembleWith`.
//!
//! **Record counts** are checked only where the service needs them: to join
//! (`JoinSource=Input`), each output line is paired with its input record,
//! so a response must have exactly one line per record sent; anything else
//! is [`ErrorKind::RecordCount`], retried like a failed request, then fatal
//! to the file. A last line without `\n` counts as a line. Otherwise the
//! container's answer is written as it came (the service does not count a
//! response's lines: AWS DG, "Batch Transform", output assembly).
//!
//! **`AssembleWith=Line`** (§3 "Output assembly": "a newline is added after
//! each transformed record"): every response ends with exactly one `\n`. A
//! response that already ends with `\n` (ours always does: one line per
//! record) is written as it is; one that does not gets a `\n`; an empty one
//! writes nothing. No blank line is ever made. SDK local mode instead writes
//! `\n` after *every* response unconditionally, so a response ending in `\n`
//! leaves a blank line behind it (docs/local-mode.md, step 6): its output equals
//! ours with one extra `\n` after each mini-batch's last line. We follow the
//! service's documented per-record behaviour, not that quirk.
//!
//! **`AssembleWith=None`**: responses are concatenated byte for byte. With
//! DataProcessing each output record is written as one `\n`-terminated line
//! either way (the joined record is SageMaker's, not the container's, text).

use std::io::{BufRead, Write};

use crate::error::Position;

use crate::codec::records::{Blank, Records};
use crate::error::{Error, ErrorKind, Result};

use super::dataprocessing::DataProcessing;

/// How responses become output, for a whole job.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'p> {
    /// DataProcessing, if any.
    pub dp: Option<&'p DataProcessing>,
    /// `AssembleWith=Line`.
    pub line: bool,
}

/// The original records a response's lines are paired with when joining:
/// each without its line ending, and where it starts.
pub type Originals<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Position)>> + 'a>;

/// The line records of a span.
pub fn span_records(span: &[u8], start: Position, blank: Blank) -> Originals<'_> {
    Box::new(Records::new(span, start, blank).map(|(r, p)| Ok((r.to_vec(), p))))
}

/// One record: a whole `application/json` document (`SplitType=None`).
pub fn whole(document: &[u8]) -> Originals<'_> {
    Box::new(std::iter::once(Ok((
        document.trim_ascii().to_vec(),
        Position::FIRST,
    ))))
}

/// The records of a file read line by line (a streamed request).
pub struct FileRecords<R> {
    reader: R,
    blank: Blank,
    next: Position,
    line: Vec<u8>,
}

impl<R: BufRead> FileRecords<R> {
    /// The records of `reader`, from the start of the file.
    pub fn new(reader: R, blank: Blank) -> FileRecords<R> {
        FileRecords {
            reader,
            blank,
            next: Position::FIRST,
            line: Vec::new(),
        }
    }
}

impl<R: BufRead> Iterator for FileRecords<R> {
    type Item = Result<(Vec<u8>, Position)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.line.clear();
            let n = match self.reader.read_until(b'\n', &mut self.line) {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) => return Some(Err(Error::io("reading the input again to join", e))),
            };
            // The line's record (none if it is blank), as a span's.
            let record = Records::new(&self.line, self.next, self.blank).next();
            let record = record.map(|(r, pos)| (r.to_vec(), pos));
            self.next.line += 1;
            self.next.byte += n as u64;
            if record.is_some() {
                self.next.record += 1;
                return record.map(Ok);
            }
        }
    }
}

/// Turns one response, fed in pieces, into output bytes.
pub struct Assembler<'p, 'o> {
    rules: Rules<'p>,
    originals: Originals<'o>,
    /// The unfinished last line (DataProcessing on lines).
    carry: Vec<u8>,
    /// The whole response (DataProcessing on an `application/json` answer).
    whole: Vec<u8>,
    lines: u64,
    last: Option<u8>,
    scratch: Vec<u8>,
}

impl<'p, 'o> Assembler<'p, 'o> {
    /// An assembler for one response.
    pub fn new(rules: Rules<'p>, originals: Originals<'o>) -> Self {
        Assembler {
            rules,
            originals,
            carry: Vec::new(),
            whole: Vec::new(),
            lines: 0,
            last: None,
            scratch: Vec::new(),
        }
    }

    fn io(e: std::io::Error) -> Error {
        Error::io("writing the output", e)
    }

    /// Take the next piece of the response.
    pub fn feed(&mut self, chunk: &[u8], out: &mut dyn Write) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.last = chunk.last().copied();
        let Some(dp) = self.rules.dp else {
            self.lines += memchr::memchr_iter(b'\n', chunk).count() as u64;
            return out.write_all(chunk).map_err(Self::io);
        };
        if dp.whole_response() {
            self.whole.extend_from_slice(chunk);
            return Ok(());
        }
        let mut rest = chunk;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            if self.carry.is_empty() {
                self.line(dp, &rest[..i], out)?;
            } else {
                let mut line = std::mem::take(&mut self.carry);
                line.extend_from_slice(&rest[..i]);
                self.line(dp, &line, out)?;
                line.clear();
                self.carry = line;
            }
            rest = &rest[i + 1..];
        }
        self.carry.extend_from_slice(rest);
        Ok(())
    }

    /// One output line (DataProcessing): join it with its record, filter,
    /// write. To join, lines past the last record are only counted.
    fn line(&mut self, dp: &DataProcessing, output: &[u8], out: &mut dyn Write) -> Result<()> {
        self.lines += 1;
        let (orig, pos) = match self.originals.next().transpose()? {
            Some(r) => r,
            None if dp.join => return Ok(()),
            None => (Vec::new(), Position::default()),
        };
        self.scratch.clear();
        dp.process_output(&orig, pos, output, &mut self.scratch)?;
        out.write_all(&self.scratch).map_err(Self::io)
    }

    /// The response ended; `records` were sent (to join, the response must
    /// have one line per record: see the module docs). Returns the output
    /// records.
    pub fn finish(mut self, records: u64, out: &mut dyn Write) -> Result<u64> {
        match self.rules.dp {
            None => {
                if self.last.is_some_and(|b| b != b'\n') {
                    self.lines += 1;
                    if self.rules.line {
                        out.write_all(b"\n").map_err(Self::io)?;
                    }
                }
            }
            Some(dp) if dp.whole_response() => {
                let whole = std::mem::take(&mut self.whole);
                if dp.join && records != 1 {
                    return Err(Error::new(ErrorKind::RecordCount {
                        sent: records,
                        got: 1,
                    }));
                }
                self.line(dp, whole.trim_ascii(), out)?;
                return Ok(1);
            }
            Some(dp) => {
                if !self.carry.is_empty() {
                    let line = std::mem::take(&mut self.carry);
                    self.line(dp, &line, out)?;
                }
            }
        }
        let checked = self.rules.dp.is_some_and(|d| d.join);
        if checked && self.lines != records {
            return Err(Error::new(ErrorKind::RecordCount {
                sent: records,
                got: self.lines,
            }));
        }
        Ok(if checked { self.lines } else { records })
    }
}

/// A whole response in memory to output bytes (the common case: returns
/// the response itself, plus a `\n` if `AssembleWith=Line` needs one).
pub fn assemble_buffered(
    rules: Rules<'_>,
    mut response: Vec<u8>,
    originals: Originals<'_>,
    records: u64,
) -> Result<Vec<u8>> {
    if rules.dp.is_none() {
        if rules.line && response.last().is_some_and(|b| *b != b'\n') {
            response.push(b'\n');
        }
        return Ok(response);
    }
    let mut out = Vec::with_capacity(response.len() * 2);
    let mut a = Assembler::new(rules, originals);
    a.feed(&response, &mut out)?;
    a.finish(records, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Originals<'static> {
        span_records(b"", Position::default(), Blank::Empty)
    }

    #[test]
    fn line_assembly_adds_a_newline_only_when_missing() {
        let line = Rules {
            dp: None,
            line: true,
        };
        let none_rule = Rules {
            dp: None,
            line: false,
        };
        assert_eq!(
            assemble_buffered(line, b"0.5".to_vec(), none(), 1).unwrap(),
            b"0.5\n"
        );
        assert_eq!(
            assemble_buffered(line, b"1\n2\n".to_vec(), none(), 2).unwrap(),
            b"1\n2\n"
        );
        assert_eq!(assemble_buffered(line, Vec::new(), none(), 0).unwrap(), b"");
        assert_eq!(
            assemble_buffered(none_rule, b"0.5".to_vec(), none(), 1).unwrap(),
            b"0.5"
        );
    }

    #[test]
    fn streamed_pieces_give_the_same_bytes() {
        let r = Rules {
            dp: None,
            line: true,
        };
        for cut in 0..=5 {
            let resp = b"1\n2\n3";
            let mut out = Vec::new();
            let mut a = Assembler::new(r, none());
            a.feed(&resp[..cut], &mut out).unwrap();
            a.feed(&resp[cut..], &mut out).unwrap();
            assert_eq!(a.finish(3, &mut out).unwrap(), 3);
            assert_eq!(out, b"1\n2\n3\n");
        }
    }

    #[test]
    fn file_records_skip_blank_lines() {
        let mut f = FileRecords::new(&b"a\n\n b\r\nc"[..], Blank::Whitespace);
        let (r, p) = f.next().unwrap().unwrap();
        assert_eq!((r.as_slice(), p.record, p.line), (&b"a"[..], 1, 1));
        let (r, p) = f.next().unwrap().unwrap();
        assert_eq!(
            (r.as_slice(), p.record, p.line, p.byte),
            (&b" b"[..], 2, 3, 3)
        );
        assert_eq!(f.next().unwrap().unwrap().0, b"c");
        assert!(f.next().is_none());
    }
}
