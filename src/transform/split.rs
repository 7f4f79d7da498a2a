//! Cutting a file into mini-batches, as `SplitType` and the batch strategies
//! do (AWS DG, "Batch Transform": "Splitting and batching"); where a record
//! ends is the codec layer's ([`crate::codec::records`]).
//!
//! A line record ends at `\n` (the service: "split on newline"; CSV with
//! embedded newlines is unsupported there, so a quoted newline ends a record
//! here too). Blank lines are not records:
//! never sent alone and never counted; inside a mini-batch they travel with
//! their neighbours, so a mini-batch is one contiguous span of the file,
//! except when joining: then, as with an `InputFilter`, a body holds its
//! records alone, so that the container's answer lines pair with them.
//!
//! `MultiRecord` packs as many *whole* records as fit in `MaxPayloadInMB` by
//! exact byte count of the body sent (after any `InputFilter`); a record too
//! large for any request fails its file. Binary records (RecordIO, TFRecord)
//! keep their framing and padding under `MultiRecord` and are sent as their
//! payload alone under `SingleRecord` (API reference,
//! `TransformInput.SplitType`).
//!
//! The splitter holds at most one mini-batch plus one read chunk; batches
//! are split off its buffer without a copy.

use std::io::Read;

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::records::{next_frame, payload, Blank, Frame, Framing, Payload, Records};
use crate::error::{Error, ErrorKind, Position, Result};
use crate::input::read_some;

use super::dataprocessing::DataProcessing;

/// Bytes read from the file per `read` call.
pub const READ_CHUNK: usize = 1 << 20;

/// How to cut a file.
#[derive(Clone, Debug)]
pub struct SplitOptions {
    /// Where records end.
    pub framing: Framing,
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
    /// Also return each batch's original span when the body is filtered
    /// (needed to join).
    pub keep_originals: bool,
    /// Leave blank lines out of a body (as an `InputFilter` does): when
    /// joining, each line the container answers pairs with a record.
    pub drop_blank: bool,
}

/// One mini-batch (or in-process range).
#[derive(Clone, Debug)]
pub struct MiniBatch {
    /// What is sent: the file span, its records filtered, or a payload.
    pub body: Bytes,
    /// The file span, when `body` was filtered and originals are kept.
    pub originals: Option<Bytes>,
    /// `body` is not the file's bytes (positions in it are not the file's).
    pub filtered: bool,
    /// Records in it.
    pub records: u64,
    /// Where its first record starts in the file (record numbers count
    /// records from 1, lines count `\n` from 1, bytes from 0).
    pub start: Position,
}

impl MiniBatch {
    /// The original records: the file span (the body itself when it was not
    /// filtered).
    pub fn original_span(&self) -> &Bytes {
        self.originals.as_ref().unwrap_or(&self.body)
    }
}

/// Cuts a reader into [`MiniBatch`]es. See the module docs.
pub struct Splitter<'d, R> {
    reader: R,
    opts: SplitOptions,
    filter: Option<&'d DataProcessing>,
    /// Read bytes not yet handed out; `buf[0]` starts a record or line.
    buf: BytesMut,
    eof: bool,
    /// Position of `buf[0]`, with the records before it in `record`.
    next: Position,
}

impl<'d, R: Read> Splitter<'d, R> {
    /// A splitter over `reader`; with `filter`, each record's body line is
    /// `filter.filter_input(record)`.
    pub fn new(reader: R, opts: SplitOptions, filter: Option<&'d DataProcessing>) -> Self {
        Splitter {
            reader,
            opts,
            filter: filter.filter(|d| d.input_filter.is_some()),
            buf: BytesMut::new(),
            eof: false,
            next: Position {
                record: 0,
                line: 1,
                byte: 0,
            },
        }
    }

    /// Read at most `want` (1 to [`READ_CHUNK`]) more bytes; false at end
    /// of input.
    fn fill(&mut self, want: usize) -> Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let len = self.buf.len();
        // Room for a whole batch: one allocation per batch, not per read.
        let room = usize::try_from(self.opts.target).unwrap_or(usize::MAX);
        if self.buf.capacity() - len < want.min(READ_CHUNK) {
            let room = room.clamp(64 << 10, 64 << 20);
            self.buf.reserve(room + room.min(READ_CHUNK));
        }
        self.buf.resize(len + want.clamp(1, READ_CHUNK), 0);
        match read_some(&mut self.reader, &mut self.buf[len..]) {
            Ok(n) => {
                self.buf.truncate(len + n);
                self.eof = n == 0;
                Ok(n > 0)
            }
            Err(e) => {
                self.buf.truncate(len);
                Err(Error::io("reading the input", e))
            }
        }
    }

    /// The record at `cursor`, reading more input as needed; `None` at end
    /// of input. Gives up once a record is known to be over `limit`, so a
    /// file without newlines is not read whole.
    fn frame_at(
        &mut self,
        cursor: usize,
        pos: Position,
        limit: Option<u64>,
    ) -> Result<Option<Frame>> {
        loop {
            match next_frame(self.opts.framing, &self.buf[cursor..], self.eof) {
                Ok(Some(f)) => return Ok(Some(f)),
                Ok(None) if self.eof => return Ok(None),
                Ok(None) => {
                    if limit.is_some_and(|l| (self.buf.len() - cursor) as u64 > l) {
                        return Err(self.too_large(pos));
                    }
                    self.fill(READ_CHUNK)?;
                }
                Err(reason) => return Err(self.bad_frame(pos, reason)),
            }
        }
    }

    fn bad_frame(&self, pos: Position, reason: String) -> Error {
        Error::new(ErrorKind::BadFrame {
            format: self.opts.framing.name(),
            record: pos.record,
            offset: pos.byte,
            reason,
        })
    }

    fn too_large(&self, pos: Position) -> Error {
        let (mb, limit) = (self.opts.mb, self.opts.max_record.unwrap_or(0));
        if self.opts.framing.is_binary() {
            let why = format!(
                "larger than MaxPayloadInMB={mb} ({limit} bytes): no mini-batch can carry it"
            );
            return self.bad_frame(pos, why);
        }
        Error::new(ErrorKind::PayloadTooLarge { pos, mb, limit })
    }

    /// The next batch, `None` at end of input: record by record (blank
    /// lines, filters, single records, limits).
    pub fn next_batch(&mut self) -> Result<Option<MiniBatch>> {
        let mut cursor = 0; // offset of the next record or line
        let mut lines = 0u64; // lines before `cursor`
        let (mut end, mut end_lines, mut records) = (0, 0u64, 0u64);
        let mut body = self.filter.map(|_| Vec::new());
        let limit = self.opts.max_record.filter(|_| self.filter.is_none());
        // Blank lines inside the batch left out of its body, and their bytes.
        let drop_blank = self.opts.drop_blank && self.filter.is_none();
        let (mut blanks, mut dropped) = (Vec::new(), 0);
        loop {
            let pos = Position {
                record: self.next.record + records + 1,
                line: self.next.line + lines,
                byte: self.next.byte + cursor as u64,
            };
            let Some(frame) = self.frame_at(cursor, pos, limit)? else {
                break;
            };
            let content = &self.buf[cursor..cursor + frame.content];
            let frame_lines = u64::from(self.opts.framing == Framing::Line);
            if self.opts.blank.is_blank(content) {
                if records == 0 {
                    self.buf.advance(frame.len);
                    self.next.byte += frame.len as u64;
                    self.next.line += frame_lines;
                } else {
                    if drop_blank {
                        blanks.push(cursor..cursor + frame.len);
                        dropped += frame.len;
                    }
                    cursor += frame.len;
                    lines += frame_lines;
                }
                continue;
            }
            // The body's size with this record in it.
            let (size, size_with) = match (&mut body, self.filter) {
                (Some(b), Some(f)) => {
                    let before = b.len();
                    let content = content.strip_suffix(b"\r").unwrap_or(content);
                    f.filter_input(content, pos, b)?;
                    ((b.len() - before) as u64, b.len() as u64)
                }
                _ => (frame.len as u64, (cursor + frame.len - dropped) as u64),
            };
            if self.opts.max_record.is_some_and(|max| size > max) {
                return Err(self.too_large(pos));
            }
            if records > 0 && size_with > self.opts.target {
                if let Some(b) = &mut body {
                    b.truncate(b.len() - size as usize);
                }
                break;
            }
            records += 1;
            cursor += frame.len;
            lines += frame_lines;
            (end, end_lines) = (cursor, lines);
            if self.opts.single {
                break;
            }
        }
        if records == 0 {
            return Ok(None);
        }
        let single_binary = self.opts.single && self.opts.framing.is_binary();
        let payload = single_binary.then(|| payload(self.opts.framing, &self.buf[..end]));
        blanks.retain(|b| b.end <= end);
        if !blanks.is_empty() {
            let mut kept = Vec::with_capacity(end);
            let mut from = 0;
            for b in blanks.iter().chain([&(end..end)]) {
                kept.extend_from_slice(&self.buf[from..b.start]);
                from = b.end;
            }
            body = Some(kept);
        }
        let mut batch = self.take(end, records, end_lines, body.map(Bytes::from));
        match payload {
            Some(Payload::Range(r)) => batch.body = batch.body.slice(r),
            Some(Payload::Joined(v)) => batch.body = Bytes::from(v),
            None => {}
        }
        Ok(Some(batch))
    }

    /// Split off `end` bytes as a batch of `records`, spanning `lines`.
    fn take(&mut self, end: usize, records: u64, lines: u64, body: Option<Bytes>) -> MiniBatch {
        let start = Position {
            record: self.next.record + 1,
            ..self.next
        };
        let span = self.buf.split_to(end).freeze();
        self.next.byte += end as u64;
        self.next.line += lines;
        self.next.record += records;
        let filtered = body.is_some();
        let (body, originals) = match body {
            Some(b) => (b, self.opts.keep_originals.then_some(span)),
            None => (span, None),
        };
        MiniBatch {
            body,
            originals,
            filtered,
            records,
            start,
        }
    }
}

/// The file as one request (`SplitType=None`): its bytes as they are, or,
/// with DataProcessing, its records filtered (an `application/json` file
/// is one record; JSON lines are one record per line).
pub fn whole(
    mut reader: impl Read,
    dp: Option<&DataProcessing>,
    blank: Blank,
    limit: Option<(u64, u32)>,
) -> Result<MiniBatch> {
    let mut data = Vec::new();
    reader
        .read_to_end(&mut data)
        .map_err(|e| Error::io("reading the input", e))?;
    let too_large = |size: usize| {
        limit.filter(|(l, _)| size as u64 > *l).map(|(limit, mb)| {
            Error::new(ErrorKind::FileTooLarge {
                size: size as u64,
                mb,
                limit,
            })
        })
    };
    if let Some(e) = too_large(data.len()) {
        return Err(e);
    }
    let span = Bytes::from(data);
    let start = Position::FIRST;
    let records = Records::new(&span, start, blank).count() as u64;
    let Some(dp) = dp else {
        return Ok(MiniBatch {
            body: span,
            originals: None,
            filtered: false,
            records,
            start,
        });
    };
    let mut body = Vec::new();
    let records = if dp.input == crate::media::Format::Json {
        dp.filter_input(span.trim_ascii(), start, &mut body)?;
        1
    } else {
        for (record, pos) in Records::new(&span, start, blank) {
            dp.filter_input(record, pos, &mut body)?;
        }
        records
    };
    if let Some(e) = too_large(body.len()) {
        return Err(e);
    }
    Ok(MiniBatch {
        body: Bytes::from(body),
        originals: Some(span),
        filtered: true,
        records,
        start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opts(target: u64, single: bool, max: Option<u64>) -> SplitOptions {
        SplitOptions {
            framing: Framing::Line,
            target,
            single,
            max_record: max,
            mb: 0,
            blank: Blank::Empty,
            keep_originals: false,
            drop_blank: false,
        }
    }

    fn split(input: &[u8], o: SplitOptions) -> Result<Vec<MiniBatch>> {
        let mut s = Splitter::new(input, o, None);
        let mut v = Vec::new();
        while let Some(b) = s.next_batch()? {
            v.push(b);
        }
        Ok(v)
    }

    fn bodies(v: &[MiniBatch]) -> Vec<&[u8]> {
        v.iter().map(|b| &b.body[..]).collect()
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

    /// When joining, a body holds its records alone, counted as sent, and
    /// the original span is kept to join with.
    #[test]
    fn joining_leaves_blank_lines_out_of_the_body() {
        let input = b"\n1,2\n\n\r\n3,4\n\n5,6\n";
        let o = SplitOptions {
            drop_blank: true,
            keep_originals: true,
            ..opts(8, false, Some(8))
        };
        let v = split(input, o).unwrap();
        assert_eq!(bodies(&v), [&b"1,2\n3,4\n"[..], b"5,6\n"]);
        assert_eq!(v[0].records, 2);
        assert_eq!(&v[0].original_span()[..], b"1,2\n\n\r\n3,4\n");
        assert_eq!(v[1].start.line, 7);
    }

    #[test]
    fn a_line_that_never_ends_is_not_read_whole() {
        let big = vec![b'x'; 3 * READ_CHUNK];
        let e = split(&big, opts(10, false, Some(10))).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::PayloadTooLarge { .. }));
    }

    /// Large inputs: batches are split off the buffer, reads refill it, and
    /// every batch is still the exact span of the file, with blank lines
    /// and without.
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
                }
            }
        }
    }
}
