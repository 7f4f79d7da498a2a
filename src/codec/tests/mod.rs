//! Decoder cases, each fed whole, one byte at a time, split in two at every
//! offset, and in three at every pair of offsets for short inputs: all
//! feedings must give the same records and errors (csv-core's own tests run
//! each case several ways for the same reason). A batch limit of 2 records
//! exercises the "batch full, call again" path too.

use super::*;
use crate::record::Shape;

#[path = "../chunked.rs"]
mod chunked;

use chunked::Slot;

/// The batch limit of every feeding here: 2 records.
fn decode_chunks(format: Format, opts: &DecodeOptions, chunks: &[&[u8]]) -> Vec<Slot> {
    chunked::decode_chunks(format, opts, chunks, 2)
}

/// Decode `input` every way and check all ways agree; return the records.
fn decode_every_way(format: Format, opts: &DecodeOptions, input: &[u8]) -> Vec<Slot> {
    let whole = decode_chunks(format, opts, &[input]);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(decode_chunks(format, opts, &bytes), whole, "byte by byte");
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(decode_chunks(format, opts, &[a, b]), whole, "split at {i}");
    }
    if input.len() <= 40 {
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let parts = [&input[..i], &input[i..j], &input[j..]];
                assert_eq!(
                    decode_chunks(format, opts, &parts),
                    whole,
                    "split at {i}, {j}"
                );
            }
        }
    }
    whole
}

/// Options that go on past a bad record, as `placeholder` does (also used
/// by `src/parallel/tests.rs`).
pub(crate) fn opts() -> DecodeOptions {
    DecodeOptions {
        stop_on_error: false,
        ..DecodeOptions::default()
    }
}

/// [`opts`] with `n` features per record.
pub(crate) fn width(n: usize) -> DecodeOptions {
    DecodeOptions {
        shape: Shape::Features(n),
        ..opts()
    }
}

fn ok(rows: &[&[f64]]) -> Vec<Slot> {
    rows.iter().map(|r| Ok(r.to_vec())).collect()
}

/// A case: its name, input format, decoder options and input.
pub(crate) type Case = (&'static str, Format, DecodeOptions, &'static [u8]);

/// `cases! { decodes!(name, format, options, input, expected); ... }`: one
/// test per case, and `cases()`, the cases without their expected records,
/// for the other paths that must read every input alike
/// (`src/parallel/tests.rs` runs them through ranges). One list, so a case
/// added here is run there too.
macro_rules! cases {
    ($(decodes!($name:ident, $format:expr, $opts:expr, $input:expr, $expected:expr $(,)?);)*) => {
        $(
            #[test]
            fn $name() {
                let got = decode_every_way($format, &$opts, $input);
                let expected: Vec<Slot> = $expected;
                assert_eq!(got, expected);
            }
        )*

        /// This file's cases.
        pub(crate) fn cases() -> Vec<Case> {
            vec![$((stringify!($name), $format, $opts, {
                let input: &'static [u8] = $input;
                input
            })),*]
        }
    };
}

fn err(msg: &str) -> Slot {
    Err(msg.to_string())
}

use Format::{Csv, Json, JsonLines};

// The cases, by input format (each file uses the helpers and `cases!`
// above, so they are declared after them).
pub(crate) mod csv;
pub(crate) mod json;
pub(crate) mod json_lines;

/// Every case here and in the files by format.
pub(crate) fn all_cases() -> Vec<Case> {
    [cases(), csv::cases(), json_lines::cases(), json::cases()].concat()
}

// ---- a BOM prefix that turns out to be data ---------------------------------

// Found by CI's fuzz pass: the data starts with two bytes of a BOM
// (`ef bb`, then not `bf`). Fed byte by byte, the two held-back bytes are
// replayed once the third shows they are data; with `stop_on_error` and a
// 1-byte record limit the replay stopped after its first error and the two
// bytes were never counted, so every later record came out 2 bytes early.
// The records start at bytes 0, 6 and 12, whatever the feeding.
/// The fuzz case's options.
fn partial_bom_opts() -> DecodeOptions {
    DecodeOptions {
        label: true,
        csv_header: true,
        max_record_bytes: 1,
        stop_on_error: true,
        ..width(2)
    }
}

/// The fuzz case's input.
const PARTIAL_BOM: &[u8] = b"\xef\xbb\x00\xfb\x09\x0a\x28\x0c\x22\xfb\x89\x0a\x0c\x2c\xfb";

cases! {
    decodes!(
        csv_partial_bom_keeps_positions,
        Csv,
        partial_bom_opts(),
        PARTIAL_BOM,
        // Line 1 is the header, skipped however long (see
        // `csv_header_over_the_limit_is_skipped`).
        vec![
            err("record 1 (line 2, byte 6): record is larger than the 1-byte limit (max record size)"),
            err("record 2 (line 3, byte 12): record is larger than the 1-byte limit (max record size)"),
        ]
    );
    decodes!(
        jsonl_partial_bom_keeps_positions,
        JsonLines,
        DecodeOptions {
            max_record_bytes: 1,
            stop_on_error: true,
            ..width(2)
        },
        b"\xef\xbb[1,2]\n[3,4]\n",
        vec![
            err("record 1 (line 1, byte 0): record is larger than the 1-byte limit (max record size)"),
            err("record 2 (line 2, byte 8): record is larger than the 1-byte limit (max record size)"),
        ]
    );
}

// ---- the fail policy stops at the first bad record --------------------------

#[test]
fn stop_on_error_returns_right_after_the_bad_record() {
    let opts = DecodeOptions {
        stop_on_error: true,
        ..width(2)
    };
    for format in [Csv, JsonLines] {
        let input: &[u8] = if format == Csv {
            b"1,2\nx,2\n3,4\n"
        } else {
            b"[1,2]\n[\"x\",2]\n[3,4]\n"
        };
        let mut d = Decoder::new(format, &opts);
        let mut batch = Batch::default();
        let n = d.decode(input, &mut batch, 100).unwrap();
        assert_eq!(batch.len(), 2, "{format}");
        assert_eq!(batch.errors().len(), 1, "{format}");
        assert!(n < input.len(), "{format}: stopped before the rest");
    }
}

#[test]
fn a_huge_line_without_newline_is_rejected_without_buffering_it() {
    let opts = DecodeOptions {
        max_record_bytes: 1024,
        ..width(2)
    };
    let mut d = Decoder::new(Csv, &opts);
    let mut batch = Batch::default();
    let chunk = vec![b'1'; 64 * 1024];
    // 64 MiB of one line, in 64 KiB chunks: one error, nothing held.
    for _ in 0..1024 {
        let mut at = 0;
        while at < chunk.len() {
            at += d.decode(&chunk[at..], &mut batch, 100).unwrap();
        }
    }
    d.finish(&mut batch, 100).unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch.errors()[0].1.code(), "record_too_large");
    if let Decoder::Csv(c) = &d {
        assert!(format!("{c:?}").len() < 64 * 1024, "the carry stays small");
    }
}

#[test]
fn a_reader_reused_after_a_request_dropped_mid_quote_starts_clean() {
    // Drop a decoder inside a quoted field (a client gone mid-request): its
    // csv-core reader goes back to the pool, and the next decoder on this
    // thread reuses it.
    for _ in 0..3 {
        let mut d = Decoder::new(Csv, &width(2));
        let mut batch = Batch::default();
        d.decode(b"\"1,\"\"x\n2", &mut batch, 10).unwrap();
        drop(d);
    }
    assert_eq!(
        decode_chunks(Csv, &width(2), &[b"\"1\",\"2\"\n3,4\n"]),
        ok(&[&[1., 2.], &[3., 4.]])
    );
}

#[test]
fn a_large_document_of_many_instances_streams_with_a_carry_of_one_row() {
    use std::io::Write as _;
    let n = 100_000;
    let mut doc = b"{\"id\": \"x]\\\"\", \"instances\": [\n".to_vec();
    let mut expected = Vec::new();
    for i in 0..n {
        if i > 0 {
            doc.extend_from_slice(b",\n ");
        }
        if i % 3 == 0 {
            write!(doc, "{{\"features\": [{i}, {}.5], \"s\": \"]}}\"}}", i % 10).unwrap();
        } else {
            write!(doc, "[{i}, {}.5]", i % 10).unwrap();
        }
        expected.push(Ok(vec![i as f64, (i % 10) as f64 + 0.5]));
    }
    doc.extend_from_slice(b"\n], \"note\": \"[\"}\n");
    assert!(doc.len() > 2 << 20);
    for size in [1, 7, 4096, 65536, doc.len()] {
        let chunks: Vec<&[u8]> = doc.chunks(size).collect();
        assert_eq!(
            decode_chunks(Json, &width(2), &chunks),
            expected,
            "chunks of {size}"
        );
    }
    // What the decoder holds between chunks is at most one row.
    let mut d = Decoder::new(Json, &width(2));
    let mut batch = Batch::default();
    for chunk in doc.chunks(64 * 1024) {
        let mut at = 0;
        while at < chunk.len() {
            at += d.decode(&chunk[at..], &mut batch, 1 << 20).unwrap();
        }
        assert!(format!("{d:?}").len() < 4096, "the carry stays small");
        batch.clear();
    }
    d.finish(&mut batch, 1 << 20).unwrap();
}
