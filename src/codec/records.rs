//! Where a record ends, without decoding it: the framings of Batch
//! Transform's `SplitType` (AWS API reference, `TransformInput.SplitType`):
//! `Line` (split on `\n`), MXNet `RecordIO` and TensorFlow `TFRecord`. The
//! one implementation `mmp transform` cuts files with; the decoders keep
//! their own incremental [`LineFramer`](super::lines) because they also
//! carry partial records across HTTP chunks.
//!
//! - RecordIO (MXNet, dmlc-core `recordio.h`): a little-endian u32 magic
//!   `0xced7230a`, a u32 whose top 3 bits are a continuation flag (0 whole
//!   record; 1 first, 2 middle, 3 last part) over a 29-bit length, the
//!   payload, then zero padding to a multiple of 4 bytes.
//! - TFRecord (TensorFlow, `tensorflow/core/lib/io/record_writer.cc`): a
//!   u64 length, the u32 masked CRC32C of those 8 bytes, the payload, the
//!   u32 masked CRC32C of the payload; mask = `((crc >> 15) | (crc << 17))
//!   + 0xa282ead8`.

use std::ops::Range;

use memchr::memchr;

use crate::error::Position;

/// How records are delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// A record is a line, ended by `\n` (or the end of input).
    Line,
    /// MXNet RecordIO.
    RecordIO,
    /// TensorFlow TFRecord.
    TFRecord,
}

impl Framing {
    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Framing::Line => "Line",
            Framing::RecordIO => "RecordIO",
            Framing::TFRecord => "TFRecord",
        }
    }

    /// Whether records are binary frames (not lines).
    pub fn is_binary(self) -> bool {
        matches!(self, Framing::RecordIO | Framing::TFRecord)
    }
}

/// One record found at the start of the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Its length, framing included (a line's `\n`, RecordIO's padding).
    pub len: usize,
    /// The end of a line's content (before its `\n`); `len` for binary.
    pub content: usize,
}

/// RecordIO's magic number.
pub const RECORDIO_MAGIC: u32 = 0xced7_230a;
const LEN_MASK: u32 = (1 << 29) - 1;

fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

/// TFRecord's masked CRC32C.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

fn truncated(have: usize, need: usize, what: &str) -> String {
    format!("truncated: the input ends {have} bytes into {what} of {need} bytes")
}

/// The record at the start of `data`. `Ok(None)`: more input is needed
/// (or, at `eof`, there is none left). `Err`: the record is corrupt or cut
/// short, with why (the caller knows where it started).
pub fn next_frame(framing: Framing, data: &[u8], eof: bool) -> Result<Option<Frame>, String> {
    let end_of_input = |d: &[u8]| {
        (eof && !d.is_empty()).then_some(Frame {
            len: d.len(),
            content: d.len(),
        })
    };
    match framing {
        Framing::Line => Ok(match memchr(b'\n', data) {
            Some(i) => Some(Frame {
                len: i + 1,
                content: i,
            }),
            None => end_of_input(data),
        }),
        Framing::RecordIO => {
            let mut at = 0;
            loop {
                if data.len() < at + 8 {
                    return match (eof, data.is_empty()) {
                        (false, _) | (true, true) => Ok(None),
                        (true, false) => Err(truncated(data.len() - at, 8, "a RecordIO header")),
                    };
                }
                let magic = u32_at(data, at);
                if magic != RECORDIO_MAGIC {
                    return Err(format!(
                        "bad magic number 0x{magic:08x} at byte {at} of the record (RecordIO's is 0x{RECORDIO_MAGIC:08x})"
                    ));
                }
                let word = u32_at(data, at + 4);
                let (flag, len) = (word >> 29, (word & LEN_MASK) as usize);
                let end = at + 8 + len.div_ceil(4) * 4;
                if data.len() < end {
                    return match eof {
                        false => Ok(None),
                        true => Err(truncated(data.len() - at, end - at, "a RecordIO part")),
                    };
                }
                match (at == 0, flag) {
                    (true, 0) | (false, 3) => {
                        return Ok(Some(Frame {
                            len: end,
                            content: end,
                        }))
                    }
                    (true, 1) | (false, 2) => at = end,
                    _ => {
                        return Err(format!(
                            "continuation flag {flag} at byte {at} of the record is out of sequence"
                        ))
                    }
                }
            }
        }
        Framing::TFRecord => {
            if data.len() < 12 {
                return match (eof, data.is_empty()) {
                    (false, _) | (true, true) => Ok(None),
                    (true, false) => Err(truncated(data.len(), 12, "a TFRecord header")),
                };
            }
            let len = u64::from_le_bytes(data[..8].try_into().unwrap_or_default());
            let (stored, computed) = (u32_at(data, 8), masked_crc32c(&data[..8]));
            if stored != computed {
                return Err(format!(
                    "bad length CRC: stored 0x{stored:08x}, computed 0x{computed:08x}"
                ));
            }
            let total = usize::try_from(len)
                .ok()
                .and_then(|l| l.checked_add(16))
                .ok_or_else(|| format!("length {len} does not fit in memory"))?;
            if data.len() < total {
                return match eof {
                    false => Ok(None),
                    true => Err(truncated(data.len(), total, "a TFRecord")),
                };
            }
            let (stored, computed) = (u32_at(data, total - 4), masked_crc32c(&data[12..total - 4]));
            if stored != computed {
                return Err(format!(
                    "bad data CRC: stored 0x{stored:08x}, computed 0x{computed:08x}"
                ));
            }
            Ok(Some(Frame {
                len: total,
                content: total,
            }))
        }
    }
}

/// The payload of one whole record, its framing removed: what
/// `BatchStrategy=SingleRecord` sends of a binary record ("padding is
/// removed if the value of BatchStrategy is set to SingleRecord", API
/// reference `TransformInput.SplitType`). A line is sent as it is.
#[derive(Debug, PartialEq, Eq)]
pub enum Payload {
    /// A range of the record.
    Range(Range<usize>),
    /// A multi-part RecordIO record's parts, joined with the magic number
    /// between them, as dmlc-core's `RecordIOReader` gives them back.
    Joined(Vec<u8>),
}

/// See [`Payload`]; `record` is one frame as [`next_frame`] found it.
pub fn payload(framing: Framing, record: &[u8]) -> Payload {
    match framing {
        Framing::Line => Payload::Range(0..record.len()),
        Framing::TFRecord => Payload::Range(12..record.len().saturating_sub(4).max(12)),
        Framing::RecordIO => {
            let part = |at: usize| {
                let word = u32_at(record, at + 4);
                let len = (word & LEN_MASK) as usize;
                (at + 8..at + 8 + len, at + 8 + len.div_ceil(4) * 4)
            };
            let (first, mut at) = part(0);
            if at >= record.len() {
                return Payload::Range(first);
            }
            let mut out = record[first].to_vec();
            while at < record.len() {
                let (p, next) = part(at);
                out.extend_from_slice(&RECORDIO_MAGIC.to_le_bytes());
                out.extend_from_slice(&record[p]);
                at = next;
            }
            Payload::Joined(out)
        }
    }
}

/// Which lines are blank (not records): as our decoders skip them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blank {
    /// Empty, or a lone `\r` (the CSV decoder's rule; also used for types
    /// we do not know).
    Empty,
    /// Only ASCII whitespace (the JSON decoders' rule).
    Whitespace,
    /// No record is blank (binary records).
    Never,
}

impl Blank {
    /// Whether `line` (without its `\n`) is blank.
    pub fn is_blank(self, line: &[u8]) -> bool {
        match self {
            Blank::Empty => line.is_empty() || line == b"\r",
            Blank::Whitespace => line.trim_ascii().is_empty(),
            Blank::Never => false,
        }
    }
}

/// The line records of a span, with their positions: what a response's
/// lines are paired with when joining. `start` is the span's first record.
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
            let (content, len) = match memchr(b'\n', rest) {
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

    /// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) bit by bit,
    /// from its definition: independent of the `crc32c` crate under test.
    fn crc32c_ref(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// The mask as the spec writes it.
    #[allow(clippy::manual_rotate)]
    fn mask(crc: u32) -> u32 {
        ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8)
    }

    /// A TFRecord as TensorFlow's writer lays it out.
    fn tfrecord(payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u64).to_le_bytes();
        let mut v = len.to_vec();
        v.extend_from_slice(&mask(crc32c_ref(&len)).to_le_bytes());
        v.extend_from_slice(payload);
        v.extend_from_slice(&mask(crc32c_ref(payload)).to_le_bytes());
        v
    }

    /// A RecordIO part as MXNet's writer lays it out.
    fn recordio(flag: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = 0xced7230au32.to_le_bytes().to_vec();
        v.extend_from_slice(&((flag << 29) | payload.len() as u32).to_le_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    /// Frame `data` as a reader would: at every cut, what is there so far
    /// (never an error, never a record past the cut), then all of it.
    fn frames(framing: Framing, data: &[u8]) -> Result<Vec<Vec<u8>>, (usize, String)> {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            for cut in at..data.len() {
                match next_frame(framing, &data[at..cut], false) {
                    Ok(Some(f)) => assert!(at + f.len <= cut),
                    Ok(None) => {}
                    // Corruption inside what is already there is seen early.
                    Err(e) => return Err((at, e)),
                }
            }
            match next_frame(framing, &data[at..], true) {
                Ok(Some(f)) => {
                    out.push(data[at..at + f.len].to_vec());
                    at += f.len;
                }
                Ok(None) => return Ok(out),
                Err(e) => return Err((at, e)),
            }
        }
    }

    #[test]
    fn crc_matches_the_reference_and_a_known_value() {
        // RFC 3720 B.4: 32 bytes of zeros give 0x8a9136aa.
        assert_eq!(crc32c_ref(&[0; 32]), 0x8a91_36aa);
        for s in [&b""[..], b"a", b"123456789", &[0xffu8; 100]] {
            assert_eq!(masked_crc32c(s), mask(crc32c_ref(s)));
        }
    }

    #[test]
    fn tfrecords_at_every_cut_and_their_corruption() {
        let records: Vec<Vec<u8>> = [&b""[..], b"x", b"hello world", &[7u8; 300]]
            .iter()
            .map(|p| tfrecord(p))
            .collect();
        let file = records.concat();
        assert_eq!(frames(Framing::TFRecord, &file).unwrap(), records);
        assert_eq!(
            payload(Framing::TFRecord, &records[2]),
            Payload::Range(12..23)
        );
        // Cut anywhere inside the last record: truncated, at its start.
        let last = file.len() - records[3].len();
        for cut in last + 1..file.len() {
            let (at, e) = frames(Framing::TFRecord, &file[..cut]).unwrap_err();
            assert_eq!(at, last);
            assert!(e.starts_with("truncated: the input ends"), "{cut}: {e}");
        }
        // A flipped byte in a payload or a length fails its CRC.
        let mut bad = file.clone();
        bad[records[0].len() + 12] ^= 1;
        let (at, e) = frames(Framing::TFRecord, &bad).unwrap_err();
        assert_eq!((at, &e[..12]), (records[0].len(), "bad data CRC"));
        let mut bad = file.clone();
        bad[0] ^= 4;
        let e = frames(Framing::TFRecord, &bad).unwrap_err().1;
        assert!(e.starts_with("bad length CRC"), "{e}");
    }

    #[test]
    fn recordio_at_every_cut_with_padding_and_parts() {
        let whole = recordio(0, b"abcde"); // 5 bytes + 3 of padding
        assert_eq!(whole.len(), 16);
        let parted = [recordio(1, b"ab"), recordio(2, b""), recordio(3, b"xyz")].concat();
        let records = vec![
            whole.clone(),
            recordio(0, b""),
            parted.clone(),
            whole.clone(),
        ];
        let file = records.concat();
        assert_eq!(frames(Framing::RecordIO, &file).unwrap(), records);
        assert_eq!(payload(Framing::RecordIO, &whole), Payload::Range(8..13));
        let mut joined = b"ab".to_vec();
        joined.extend_from_slice(&0xced7230au32.to_le_bytes());
        joined.extend_from_slice(&0xced7230au32.to_le_bytes());
        joined.extend_from_slice(b"xyz");
        assert_eq!(payload(Framing::RecordIO, &parted), Payload::Joined(joined));
        let last = file.len() - whole.len();
        for cut in last + 1..file.len() {
            let (at, e) = frames(Framing::RecordIO, &file[..cut]).unwrap_err();
            assert_eq!(at, last, "{cut}");
            assert!(e.starts_with("truncated"), "{e}");
        }
        let mut bad = file.clone();
        bad[whole.len()] = 0;
        let (at, e) = frames(Framing::RecordIO, &bad).unwrap_err();
        assert_eq!(at, 16);
        assert!(e.starts_with("bad magic number 0xced72300"), "{e}");
        let e = frames(Framing::RecordIO, &recordio(3, b"a")).unwrap_err().1;
        assert!(e.contains("out of sequence"), "{e}");
    }

    #[test]
    fn lines() {
        let data = b"a,\"x\ny\"\n\nb";
        let lines = frames(Framing::Line, data).unwrap();
        assert_eq!(lines, [&b"a,\"x\n"[..], b"y\"\n", b"\n", b"b"]);
        assert_eq!(
            next_frame(Framing::Line, b"ab\r\n", false),
            Ok(Some(Frame { len: 4, content: 3 }))
        );
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
}
