//! Fuzz the `application/json` row splitter against an independent
//! reference: serde_json's parse of the whole document (what the decoder did
//! before it streamed). Fed in chunks of sizes chosen by the input, the
//! splitter must hand out exactly the rows serde_json finds, at their byte
//! offsets, for every document serde_json accepts; and for every document it
//! rejects, the splitter must fail too (a document error, or a row that
//! serde_json rejects on its own, which the decoder reports as that record's
//! error). No panic, and memory bounded by libFuzzer's limits.
#![no_main]

use mmp::codec::{JsonSplitter, Piece};
use serde::Deserialize;
use serde_json::value::RawValue;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What serde_json makes of the whole document.
#[derive(Debug, PartialEq)]
enum Reference {
    /// An array of rows: each row's (start, end) in the input.
    Rows(Vec<(usize, usize)>),
    /// One row: the whole document.
    One,
    /// Valid JSON, but no rows (`{"rows": 1}`, `"abc"`).
    NotRows,
    /// Not accepted.
    Invalid,
}

fn reference(input: &[u8]) -> Reference {
    let start = if input.starts_with(BOM) { BOM.len() } else { 0 };
    let text = &input[start..];
    if text.trim_ascii().is_empty() {
        return Reference::Rows(Vec::new());
    }
    if std::str::from_utf8(text).is_err() {
        return Reference::Invalid;
    }
    let range = |raw: &RawValue| {
        let s = raw.get();
        let at = s.as_ptr() as usize - input.as_ptr() as usize;
        (at, at + s.len())
    };
    match text.trim_ascii_start().first() {
        Some(b'{') => {
            #[derive(Deserialize)]
            struct Top<'a> {
                #[serde(borrow)]
                instances: Option<Vec<&'a RawValue>>,
                #[serde(borrow)]
                features: Option<&'a RawValue>,
            }
            match serde_json::from_slice::<Top<'_>>(text) {
                Err(_) => Reference::Invalid,
                Ok(Top { instances: Some(rows), .. }) => {
                    Reference::Rows(rows.into_iter().map(range).collect())
                }
                Ok(Top { features: Some(_), .. }) => Reference::One,
                Ok(_) => Reference::NotRows,
            }
        }
        Some(b'[') => match serde_json::from_slice::<Vec<&RawValue>>(text) {
            Err(_) => Reference::Invalid,
            Ok(rows) => {
                let one = rows
                    .first()
                    .is_some_and(|r| !matches!(r.get().as_bytes().first(), Some(b'[' | b'{')));
                if one {
                    Reference::One
                } else {
                    Reference::Rows(rows.into_iter().map(range).collect())
                }
            }
        },
        _ => match serde_json::from_slice::<serde::de::IgnoredAny>(text) {
            Err(_) => Reference::Invalid,
            Ok(_) => Reference::NotRows,
        },
    }
}

/// What the splitter made of it.
#[derive(Debug)]
struct Split {
    /// Rows: (start offset, bytes).
    rows: Vec<(u64, Vec<u8>)>,
    /// The document kept whole, if it is one row.
    one: Option<Vec<u8>>,
    /// The document error, if any.
    error: Option<String>,
}

fn split(input: &[u8], chunks: &[usize]) -> Split {
    // Caps larger than the input: none is hit, so the reference applies.
    let mut s = JsonSplitter::new(input.len() + 1, input.len() + 1);
    let mut out = Split { rows: Vec::new(), one: None, error: None };
    let mut at = 0;
    let mut sizes = chunks.iter().cycle();
    while at < input.len() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, input.len() - at);
        let chunk = &input[at..at + n];
        at += n;
        let mut used = 0;
        loop {
            match s.next(chunk, &mut used) {
                Ok(Piece::NeedMore) => break,
                Ok(Piece::Row(row, pos)) => {
                    assert_eq!(pos.record as usize, out.rows.len() + 1, "records count from 1");
                    out.rows.push((pos.byte, row.to_vec()));
                }
                Ok(Piece::TooLarge(pos)) => panic!("no row is over the cap: {pos}"),
                Err(e) => {
                    out.error = Some(e.to_string());
                    return out;
                }
            }
        }
        assert_eq!(used, chunk.len(), "NeedMore leaves nothing unread");
    }
    match s.finish() {
        Ok(one) => out.one = one.map(|(row, _)| row.to_vec()),
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

/// serde_json accepts this row as a JSON value on its own.
fn valid_value(row: &[u8]) -> bool {
    std::str::from_utf8(row).is_ok() && serde_json::from_slice::<serde::de::IgnoredAny>(row).is_ok()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let (knob, input) = data.split_at(1);
    let chunks: Vec<usize> = std::iter::once(knob[0] as usize % 16 + 1)
        .chain(input.iter().take(8).map(|b| (*b as usize % 16) + 1))
        .collect();
    let got = split(input, &chunks);
    // Whatever the feeding: the same as whole, and as byte by byte.
    let whole = split(input, &[input.len().max(1)]);
    assert_eq!(format!("{got:?}"), format!("{whole:?}"), "chunked feeding disagrees with whole");
    match reference(input) {
        Reference::Rows(ranges) => {
            assert_eq!(got.error, None, "serde_json accepts {ranges:?}");
            assert_eq!(got.one, None);
            let expected: Vec<(u64, Vec<u8>)> =
                ranges.iter().map(|&(a, b)| (a as u64, input[a..b].to_vec())).collect();
            assert_eq!(got.rows, expected, "the rows are serde_json's");
        }
        Reference::One => {
            assert_eq!(got.error, None);
            assert!(got.rows.is_empty());
            let text = input.strip_prefix(BOM).unwrap_or(input).trim_ascii();
            assert_eq!(got.one.as_deref(), Some(text), "the one row is the document");
        }
        Reference::NotRows => {
            assert!(got.rows.is_empty() && got.one.is_none(), "{got:?}");
            let e = got.error.as_deref().unwrap_or_default();
            assert!(e.contains("expected {\"instances\""), "{e}");
        }
        Reference::Invalid => {
            let bad_row = got.rows.iter().any(|(_, r)| !valid_value(r));
            assert!(got.error.is_some() || bad_row, "serde_json rejects the document: {got:?}");
        }
    }
    if let Some(e) = &got.error {
        assert!(e.starts_with("invalid JSON document (line "), "{e}");
    }
});
