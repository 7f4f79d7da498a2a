//! The parallel engine against the sequential path: every decoder case
//! through ranges, the splitter's bounds, the golden
//! fixtures.

use std::io;

use memchr::memchr_iter;

use super::*;
use crate::codec::tests::{all_cases, opts, width, Case};
use crate::codec::DecodeOptions;
use crate::pipeline::ErrorPolicy;
use crate::record::{Rows, Shape};
use Format::{Csv, JsonLines};

/// The sum of a record's features, for any width or a fixed one (so
/// the decoders' shape checks run as in their own tests).
struct Sum(Option<usize>);

impl crate::model::Model for Sum {
    fn num_features(&self) -> Option<usize> {
        self.0
    }

    fn predict(&self, rows: Rows<'_>, out: &mut Vec<f64>) -> Result<(), Error> {
        out.extend(rows.iter().map(|r| r.iter().sum::<f64>()));
        Ok(())
    }
}

/// A reader handing out `piece` bytes per read.
struct Pieces(Vec<u8>, usize, usize);

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.0[self.2..];
        let n = rest.len().min(self.1).min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.2 += n;
        Ok(n)
    }
}

fn model_for(opts: &DecodeOptions) -> SharedModel {
    std::sync::Arc::new(Sum(match opts.shape {
        Shape::Any => None,
        Shape::Features(n) => Some(n),
    }))
}

/// Output and error text of the sequential path: one pipeline.
fn sequential(spec: &Spec<'_>, input: &[u8]) -> (Vec<u8>, Option<String>) {
    let mut p = Pipeline::new(spec.model.clone(), spec.input, spec.output, spec.opts);
    let mut out = BytesMut::new();
    let r = p.feed(input, &mut out).and_then(|()| p.finish(&mut out));
    (out.to_vec(), r.err().map(|e| e.to_string()))
}

fn parallel(
    spec: &Spec<'_>,
    engine: &Engine,
    input: &[u8],
    piece: usize,
    stream: bool,
) -> (Vec<u8>, Option<String>) {
    let mut out = Vec::new();
    let reader = Pieces(input.to_vec(), piece, 0);
    let r = run(engine, spec, reader, &mut out, stream, None);
    (out, r.err().map(|e| e.to_string()))
}

/// `input` through the engine with ranges of every size from 1 byte to
/// the whole (so a range starts at every record end), read in pieces of
/// 1, 3 and all bytes, as a file and as a stream, under both policies
/// and both record-wise outputs: the same bytes and error as the
/// sequential path.
fn same_as_sequential(name: &str, format: Format, decode: &DecodeOptions, input: &[u8]) {
    each_spec(format, decode, input, |spec, want, label| {
        for range in 1..=input.len() + 1 {
            let engine = Engine::with(2, range);
            for piece in [1, 3, input.len().max(1)] {
                for stream in [false, true] {
                    let got = parallel(spec, &engine, input, piece, stream);
                    assert_eq!(
                        &got, want,
                        "{name}: {label}, ranges of {range}, pieces of {piece}, stream {stream}"
                    );
                }
            }
        }
    });
}

/// Call `f` under both policies and to both record-wise outputs of a
/// case, with the spec, the sequential path's answer to `input` and a
/// label for messages.
pub(crate) fn each_spec(
    format: Format,
    decode: &DecodeOptions,
    input: &[u8],
    mut f: impl FnMut(&Spec<'_>, &(Vec<u8>, Option<String>), &str),
) {
    let model = model_for(decode);
    for policy in [ErrorPolicy::Fail, ErrorPolicy::Placeholder] {
        let opts = PipelineOptions {
            decode: decode.clone(),
            policy,
            batch_records: 2,
        };
        for output in [Csv, JsonLines] {
            let spec = Spec {
                model: &model,
                opts: &opts,
                input: format,
                output,
            };
            let want = sequential(&spec, input);
            f(&spec, &want, &format!("{policy:?} to {output:?}"));
        }
    }
}

/// Every CSV and JSON-lines case of the decoders' own tests
/// (`src/codec/tests/`), and a few more on quotes, BOMs and headers
/// at range starts.
#[test]
fn every_decoder_case_is_the_same_through_ranges() {
    for (name, format, decode, input) in &decoder_cases() {
        same_as_sequential(name, *format, decode, input);
    }
}

/// Every CSV and JSON-lines case of the decoders' own tests
/// (`src/codec/tests/`), and a few more on quotes, BOMs and headers at range
/// starts; `src/serve/stage.rs`'s tests run them too.
pub(crate) fn decoder_cases() -> Vec<Case> {
    let mut cases = all_cases();
    cases.retain(|(_, format, ..)| record_wise(*format, *format));
    cases.extend(range_cases());
    cases
}

/// The cases on range starts.
fn range_cases() -> Vec<Case> {
    vec![
        // Quotes opening only at a field's start; a quote after a
        // closing one; a quoted newline right at a cut.
        (
            "quote_mid_field",
            Csv,
            width(2),
            &b"1\"2,3\n4,5\"\n6,7\n"[..],
        ),
        (
            "quote_after_close",
            Csv,
            width(2),
            &b"\"1\"2\",3\n\"4\n\",5\n"[..],
        ),
        (
            "quoted_newlines",
            Csv,
            width(2),
            &b"\"1\n\n\",2\n\"\"\"\n\",3\n4,5\n"[..],
        ),
        // A BOM (whole or in part) at the start of a later line is data.
        (
            "bom_mid_stream",
            Csv,
            width(2),
            &b"1,2\n\xEF\xBB\xBF3,4\n\xEF\xBB5,6\n\xEF7,8\n"[..],
        ),
        // ... so a quote after it is data too, not a quoted field's.
        (
            "bom_mid_stream_then_quote",
            Csv,
            width(2),
            &b"1,2\n\xEF\xBB\xBF\"3\n\",4\n5,6\n"[..],
        ),
        (
            "bom_mid_stream_jsonl",
            JsonLines,
            width(2),
            &b"[1,2]\n\xEF\xBB\xBF[3,4]\n[5,6]\n"[..],
        ),
        // The header after blank lines, and quoted over two lines.
        (
            "header_after_blank_lines",
            Csv,
            DecodeOptions {
                csv_header: true,
                ..width(2)
            },
            &b"\xEF\xBB\xBF\r\n\n\"a\nb\",c\n1,2\n3,4\n"[..],
        ),
        // A first line over the limit inside an open quote.
        (
            "too_long_quoted_first_line",
            Csv,
            DecodeOptions {
                max_record_bytes: 4,
                ..width(2)
            },
            &b"1,2\n\"0123456789\n1,2\n\"3\",4\n"[..],
        ),
        // Lines far over the limit (one with a quote that never closes,
        // one at the end without a newline) with bad records after
        // them, whose positions count the bytes the splitter dropped.
        (
            "csv_far_over_the_limit",
            Csv,
            over_limit(Csv),
            OVER_LIMIT_CSV,
        ),
        (
            "jsonl_far_over_the_limit",
            JsonLines,
            over_limit(JsonLines),
            OVER_LIMIT_JSONL,
        ),
        // A prediction that is not finite, between good ones.
        (
            "non_finite_prediction",
            Csv,
            width(2),
            &b"1,2\n1e308,1e308\n3,4\n"[..],
        ),
    ]
}

/// CSV with records far over [`over_limit`]'s limit.
const OVER_LIMIT_CSV: &[u8] = b"1,2\n\"1111111111111111111111111111111111,2\n3,4\n\
    1,x\n22222222222222222222222222222222222222\n\n5,6\n1,y\n3333333333333333333333333";

/// JSON lines with records far over [`over_limit`]'s limit.
const OVER_LIMIT_JSONL: &[u8] = b"[1,2]\n[1,111111111111111111111111111111111,2]\n[3,4]\n\
    [1,\"x\"]\n[2222222222222222222222222222222222222]\n\n[5,6]\n[7]\n[333333333333333333";

/// A small record limit for [`OVER_LIMIT_CSV`] and [`OVER_LIMIT_JSONL`].
fn over_limit(format: Format) -> DecodeOptions {
    DecodeOptions {
        max_record_bytes: if format == Csv { 8 } else { 6 },
        ..width(2)
    }
}

/// Records far over the limit, read in pieces of every size up to the
/// whole, in ranges of a few sizes: the same bytes and error (message
/// and position) as the sequential path.
#[test]
fn records_far_over_the_limit_read_in_pieces_of_every_size() {
    for (format, input) in [(Csv, OVER_LIMIT_CSV), (JsonLines, OVER_LIMIT_JSONL)] {
        each_spec(format, &over_limit(format), input, |spec, want, label| {
            for range in [1, 5, 16, 64, input.len()] {
                let engine = Engine::with(2, range);
                for piece in 1..=input.len() {
                    for stream in [false, true] {
                        let got = parallel(spec, &engine, input, piece, stream);
                        assert_eq!(
                            &got, want,
                            "{format:?}: {label}, ranges of {range}, pieces of {piece}"
                        );
                    }
                }
            }
        });
    }
}

/// A stream with no newline for many times the limit, then records:
/// the splitter never holds more than a range and the limit's worth,
/// and the ranges stand for every byte of the input.
#[test]
fn splitter_holds_at_most_a_range_and_a_record() {
    let max = 16;
    let mut input = b"[1,2]\n[3,".to_vec();
    input.extend(std::iter::repeat_n(b'4', 50 * max));
    input.extend_from_slice(b"]\n[5,6]\n[7,");
    input.extend(std::iter::repeat_n(b'8', 50 * max));
    with_limit(JsonLines, max, |spec| {
        for range in [1, 8, 64] {
            for piece in [1, 7, max, 3 * max, input.len()] {
                let mut s = Splitter::new(spec, range);
                let mut total = 0;
                for p in input.chunks(piece) {
                    s.push(p);
                    while let Some(r) = s.take(false, false) {
                        total += r.input_len();
                    }
                    assert!(
                        s.len() <= range + max + 1,
                        "holds {} (ranges of {range}, pieces of {piece})",
                        s.len()
                    );
                }
                while let Some(r) = s.take(false, true) {
                    total += r.input_len();
                }
                total += s.rest().input_len();
                assert_eq!(
                    total,
                    input.len() as u64,
                    "ranges of {range}, pieces of {piece}"
                );
            }
        }
    });
}

/// The same for CSV records whose first line ends inside quotes: one
/// closed far past the limit, then one never closed.
#[test]
fn splitter_holds_at_most_a_range_and_a_record_of_quoted_lines() {
    let max = 16;
    let mut input = b"1,2\n\"3\n".to_vec();
    for _ in 0..50 * max {
        input.extend_from_slice(b"4\n\"\"");
    }
    input.extend_from_slice(b"\",5\n6,7\n\"8\n");
    input.extend(std::iter::repeat_n(b'9', 50 * max));
    with_limit(Csv, max, |spec| {
        for range in [1, 8, 64] {
            for piece in [1, 7, max, 3 * max] {
                let mut s = Splitter::new(spec, range);
                let (mut total, mut lines) = (0, 0);
                for p in input.chunks(piece) {
                    s.push(p);
                    while let Some(r) = s.take(false, false) {
                        (total, lines) = (total + r.input_len(), lines + r.input_lines());
                    }
                    assert!(
                        s.len() <= range + max + 1,
                        "holds {} (ranges of {range}, pieces of {piece})",
                        s.len()
                    );
                }
                while let Some(r) = s.take(false, true) {
                    (total, lines) = (total + r.input_len(), lines + r.input_lines());
                }
                let r = s.rest();
                (total, lines) = (total + r.input_len(), lines + r.input_lines());
                let what = format!("ranges of {range}, pieces of {piece}");
                assert_eq!(total, input.len() as u64, "{what}");
                assert_eq!(lines, memchr_iter(b'\n', &input).count() as u64, "{what}");
            }
        }
    });
}

/// Every record-wise golden fixture, in both record-wise outputs, with
/// ranges of every size: the expected files byte for byte.
#[test]
fn golden_fixtures_through_ranges_of_every_size() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let model = crate::model::load(&root.join("model")).unwrap();
    let opts = PipelineOptions::default();
    let mut seen = 0;
    for entry in std::fs::read_dir(root.join("golden")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let input = match path.extension().and_then(|e| e.to_str()) {
            Some("csv") if !name.contains(".expected.") => Csv,
            Some("jsonl") if !name.contains(".expected.") => JsonLines,
            _ => continue,
        };
        let data = std::fs::read(&path).unwrap();
        for (output, ext) in [(Csv, "csv"), (JsonLines, "jsonl")] {
            let want =
                std::fs::read(root.join("golden").join(format!("{name}.expected.{ext}"))).unwrap();
            let spec = Spec {
                model: &model,
                opts: &opts,
                input,
                output,
            };
            for range in 1..=data.len() + 1 {
                for stream in [false, true] {
                    let got = parallel(&spec, &Engine::with(2, range), &data, 5, stream);
                    assert_eq!(
                        got,
                        (want.clone(), None),
                        "{name} as {ext}, ranges of {range}"
                    );
                }
            }
            seen += 1;
        }
    }
    assert!(seen >= 16, "the golden fixtures were found ({seen})");
}

/// A model that panics on a record whose first feature is negative, noting
/// for each such panic whether it would be reported.
struct PanicsOnNegative(Mutex<Vec<bool>>);

impl crate::model::Model for PanicsOnNegative {
    fn num_features(&self) -> Option<usize> {
        None
    }

    fn predict(&self, rows: Rows<'_>, out: &mut Vec<f64>) -> Result<(), Error> {
        for row in rows.iter() {
            if row[0] < 0.0 {
                self.0
                    .lock()
                    .unwrap()
                    .push(crate::logging::reports_panics());
                panic!("negative");
            }
            out.push(row[0]);
        }
        Ok(())
    }
}

/// A range is first scored unplaced, then again, placed, if it failed: a
/// model that panics in it panics twice, and the panic is reported once
/// (it was logged twice, the first time from a run whose answer is
/// dropped). The answer is an error after predictions of records before it.
#[test]
fn a_model_panic_in_a_range_is_reported_once() {
    let input: String = (0..2000)
        .map(|i| {
            if i == 1500 {
                "-1\n".to_string()
            } else {
                format!("{i}\n")
            }
        })
        .collect();
    let model = std::sync::Arc::new(PanicsOnNegative(Mutex::new(Vec::new())));
    let shared: SharedModel = model.clone();
    for policy in [ErrorPolicy::Fail, ErrorPolicy::Placeholder] {
        let opts = PipelineOptions {
            decode: opts(),
            policy,
            batch_records: 64,
        };
        let spec = Spec {
            model: &shared,
            opts: &opts,
            input: Csv,
            output: Csv,
        };
        model.0.lock().unwrap().clear();
        let (out, error) = parallel(&spec, &Engine::with(2, 512), input.as_bytes(), 4096, false);
        let panicked = crate::model::model_panicked().to_string();
        assert_eq!(error, Some(panicked), "{policy:?}");
        let before = &input[..input.find('-').unwrap()];
        let (want, none) = sequential(&spec, before.as_bytes());
        assert!(none.is_none() && !out.is_empty() && want.starts_with(&out));
        assert_eq!(*model.0.lock().unwrap(), [false, true], "{policy:?}");
    }
}

/// Run `f` on a spec for `format` in and out with a record limit of
/// `max` bytes.
fn with_limit<R>(format: Format, max: usize, f: impl FnOnce(&Spec<'_>) -> R) -> R {
    let mut opts = PipelineOptions::default();
    opts.decode.max_record_bytes = max;
    let model = model_for(&opts.decode);
    f(&Spec {
        model: &model,
        opts: &opts,
        input: format,
        output: format,
    })
}

/// The ranges `input` is cut into, fed in pieces of `piece` bytes.
fn ranges(format: Format, input: &[u8], range: usize, piece: usize, max: usize) -> Vec<Vec<u8>> {
    with_limit(format, max, |spec| {
        let mut s = Splitter::new(spec, range);
        let mut out = Vec::new();
        for p in input.chunks(piece.max(1)) {
            s.push(p);
            while let Some(r) = s.take(false, false) {
                out.push(r.to_vec());
            }
        }
        while let Some(r) = s.take(false, true) {
            out.push(r.to_vec());
        }
        out.push(s.rest().to_vec());
        out
    })
}

#[test]
fn csv_cuts_only_at_record_ends() {
    // Records: `a,"x\ny"`, `b""c,"d""\n"`, `"e"f`, `g`.
    let input = b"a,\"x\ny\"\nb\"\"c,\"d\"\"\n\"\n\"e\"f\ng\n";
    let ends = [8usize, 20, 25, 27];
    for piece in 1..=input.len() {
        let got = ranges(Format::Csv, input, 1, piece, 1 << 20);
        let mut at = 0;
        for r in &got[..got.len() - 1] {
            at += r.len();
            assert!(ends.contains(&at), "cut at {at} (piece {piece}): {got:?}");
        }
        assert_eq!(got.concat(), input.to_vec());
    }
}

#[test]
fn csv_too_long_first_line_ends_where_its_record_does() {
    // A first line over the limit inside an open quote goes on to the
    // record's end, as csv-core (and the decoder) read it. Of the line
    // only the limit's worth and a byte is kept, its quotes made data,
    // then the record's newline.
    let input = b"\"0123456789\n1,2\n\",3\n4,5\n";
    let got = ranges(Format::Csv, input, 1, 1, 4);
    assert_eq!(got[0], b"a0123\n".to_vec());
    assert_eq!(got[1], b"4,5\n".to_vec());
}

/// csv-core's records of `input` (as the CSV decoder configures it: `\n`
/// ends a record, RFC 4180 quoting), each as its fields.
fn csv_core_records(mut input: &[u8]) -> Vec<Vec<Vec<u8>>> {
    use csv_core::{ReadRecordResult, ReaderBuilder, Terminator};
    let mut reader = ReaderBuilder::new()
        .terminator(Terminator::Any(b'\n'))
        .build();
    let (mut out, mut ends) = (vec![0; 4096], vec![0; 1024]);
    let mut records = Vec::new();
    loop {
        let (result, nin, _, nends) = reader.read_record(input, &mut out, &mut ends);
        input = &input[nin..];
        match result {
            ReadRecordResult::InputEmpty => {}
            ReadRecordResult::Record => {
                let mut start = 0;
                let fields = ends[..nends].iter().map(|&e| {
                    let field = out[start..e].to_vec();
                    start = e;
                    field
                });
                records.push(fields.collect());
            }
            ReadRecordResult::End => return records,
            full => panic!("buffers too small for a test input: {full:?}"),
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
    /// Wherever the pieces of a CSV stream fall, the scanner ends each at
    /// the last record end in it that byte-at-a-time scanning finds, and
    /// every such end is one csv-core agrees with: the input cut there
    /// reads as the same records as the whole.
    #[test]
    fn csv_scanner_ends_pieces_where_csv_core_ends_records(
        input in "[a,\"\n\r]{0,48}",
        sizes in proptest::collection::vec(1usize..20, 1..8),
    ) {
        let input = input.as_bytes();
        let mut bytewise = Scanner::new(Csv);
        let ends: Vec<usize> = (0..input.len())
            .filter(|&i| bytewise.scan(&input[i..=i]).is_some())
            .map(|i| i + 1)
            .collect();
        let whole = csv_core_records(input);
        for &e in &ends {
            let mut parts = csv_core_records(&input[..e]);
            parts.extend(csv_core_records(&input[e..]));
            proptest::prop_assert_eq!(&parts, &whole, "cut at {}", e);
        }
        let mut scanner = Scanner::new(Csv);
        let (mut at, mut sizes) = (0, sizes.iter().cycle());
        while at < input.len() {
            let n = (*sizes.next().unwrap()).min(input.len() - at);
            let got = scanner.scan(&input[at..at + n]).map(|r| at + r);
            let want = ends.iter().copied().rfind(|&e| e > at && e <= at + n);
            proptest::prop_assert_eq!(got, want, "piece {}..{}", at, at + n);
            at += n;
        }
    }
}
