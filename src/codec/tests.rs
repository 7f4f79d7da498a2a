//! Decoder cases, each fed whole, one byte at a time, split in two at every
//! offset, and in three at every pair of offsets for short inputs: all
//! feedings must give the same records and errors (csv-core's own tests run
//! each case several ways for the same reason). A batch limit of 2 records
//! exercises the "batch full, call again" path too.

use super::*;
use crate::record::Shape;

#[path = "chunked.rs"]
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
/// by `src/parallel/tests.rs`, which runs these cases through ranges).
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

/// `decodes!(name, format, options, input, expected)`: one test per case.
macro_rules! decodes {
    ($name:ident, $format:expr, $opts:expr, $input:expr, $expected:expr) => {
        #[test]
        fn $name() {
            let got = decode_every_way($format, &$opts, $input);
            let expected: Vec<Slot> = $expected;
            assert_eq!(got, expected);
        }
    };
}

fn err(msg: &str) -> Slot {
    Err(msg.to_string())
}

use Format::{Csv, Json, JsonLines};

// ---- CSV: shapes of input -------------------------------------------------

decodes!(
    csv_lf,
    Csv,
    width(2),
    b"1,2\n3,4\n",
    ok(&[&[1., 2.], &[3., 4.]])
);
decodes!(
    csv_crlf,
    Csv,
    width(2),
    b"1,2\r\n3,4\r\n",
    ok(&[&[1., 2.], &[3., 4.]])
);
decodes!(
    csv_no_final_newline,
    Csv,
    width(2),
    b"1,2\n3,4",
    ok(&[&[1., 2.], &[3., 4.]])
);
decodes!(
    csv_no_final_newline_crlf,
    Csv,
    width(2),
    b"1,2\r\n3,4\r",
    ok(&[&[1., 2.], &[3., 4.]])
);
decodes!(
    csv_bom,
    Csv,
    width(2),
    b"\xEF\xBB\xBF1,2\n3,4\n",
    ok(&[&[1., 2.], &[3., 4.]])
);
decodes!(
    csv_bom_then_quote,
    Csv,
    width(2),
    b"\xEF\xBB\xBF\"1\",2\n",
    ok(&[&[1., 2.]])
);
decodes!(csv_only_bom, Csv, width(2), b"\xEF\xBB\xBF", ok(&[]));
decodes!(csv_empty, Csv, width(2), b"", ok(&[]));
decodes!(
    csv_blank_lines_skipped,
    Csv,
    width(2),
    b"\n\r\n1,2\n\n\r\n3,4\n\n",
    ok(&[&[1., 2.], &[3., 4.]])
);
decodes!(
    csv_spaces_around_numbers,
    Csv,
    width(2),
    b" 1 ,\t2 \n",
    ok(&[&[1., 2.]])
);
decodes!(
    csv_quoted_fields,
    Csv,
    width(2),
    b"\"1\",2\n3,\"4\"\n\"5\",\"6\"",
    ok(&[&[1., 2.], &[3., 4.], &[5., 6.]])
);
decodes!(
    csv_quoted_crlf,
    Csv,
    width(2),
    b"\"1\",\"2\"\r\n3,4\r\n",
    ok(&[&[1., 2.], &[3., 4.]])
);
decodes!(
    csv_quoted_newline_inside_field,
    Csv,
    width(2),
    b"\"1\n\",2\n3,\"\r\n4\"\n5,6\n",
    ok(&[&[1., 2.], &[3., 4.], &[5., 6.]])
);
decodes!(
    csv_numbers_of_every_form,
    Csv,
    width(6),
    b"1,-2.5,+3e2,.5,1E-3,0\n",
    ok(&[&[1., -2.5, 300., 0.5, 0.001, 0.]])
);
decodes!(
    csv_any_width,
    Csv,
    opts(),
    b"1\n1,2,3\n",
    ok(&[&[1.], &[1., 2., 3.]])
);

// ---- CSV: header ----------------------------------------------------------

decodes!(
    csv_header_skipped,
    Csv,
    DecodeOptions {
        csv_header: true,
        ..width(2)
    },
    b"\na,b\n1,2\n",
    ok(&[&[1., 2.]])
);
decodes!(
    csv_quoted_header_skipped,
    Csv,
    DecodeOptions {
        csv_header: true,
        ..width(2)
    },
    b"\"a\",\"b,c\"\n1,2\n",
    ok(&[&[1., 2.]])
);
// A header longer than the record limit is still the header: skipped, not
// reported, and the next record is the first (it was taken for the header,
// and dropped, when the header's too-long error did not count as it).
decodes!(
    csv_header_over_the_limit_is_skipped,
    Csv,
    DecodeOptions {
        csv_header: true,
        max_record_bytes: 8,
        ..width(2)
    },
    b"aaaaaaaaaa,b\n1,2\n333333333333,4\n5,6\n",
    vec![
        Ok(vec![1., 2.]),
        err("record 2 (line 3, byte 17): record is larger than the 8-byte limit (max record size)"),
        Ok(vec![5., 6.]),
    ]
);
decodes!(
    csv_quoted_header_over_the_limit_is_skipped,
    Csv,
    DecodeOptions {
        csv_header: true,
        max_record_bytes: 8,
        ..width(2)
    },
    b"\"a\naaaaaaaaa\",b\n1,2\n3,4\n",
    ok(&[&[1., 2.], &[3., 4.]])
);
decodes!(
    csv_header_not_skipped_by_default,
    Csv,
    width(2),
    b"a,b\n1,2\n",
    vec![
        err("record 1 (line 1, byte 0): field 1 is not a number: \"a\""),
        Ok(vec![1., 2.])
    ]
);

// ---- CSV: labels (training) -----------------------------------------------

decodes!(
    csv_label_first_column,
    Csv,
    DecodeOptions {
        label: true,
        ..width(2)
    },
    b"9,1,2\n8,3,4\n",
    ok(&[&[1., 2.], &[3., 4.]])
);

// ---- CSV: errors, each with its position -----------------------------------

decodes!(
    csv_field_count,
    Csv,
    width(2),
    b"1,2\n\n3\n4,5,6\n7,8\n",
    vec![
        Ok(vec![1., 2.]),
        err("record 2 (line 3, byte 5): expected 2 fields, found 1"),
        err("record 3 (line 4, byte 7): expected 2 fields, found 3"),
        Ok(vec![7., 8.]),
    ]
);
decodes!(
    csv_field_count_preferred_over_bad_field,
    Csv,
    width(3),
    b"a,b\n",
    vec![err("record 1 (line 1, byte 0): expected 3 fields, found 2")]
);
decodes!(
    csv_empty_field,
    Csv,
    width(3),
    b"1,,3\n",
    vec![err("record 1 (line 1, byte 0): field 2 is empty")]
);
decodes!(
    csv_not_a_number,
    Csv,
    width(2),
    b"1,2\n1,x7\n",
    vec![
        Ok(vec![1., 2.]),
        err("record 2 (line 2, byte 4): field 2 is not a number: \"x7\"")
    ]
);
// A number followed by anything but whitespace and a comma is not a
// number, whatever its prefix would parse as.
decodes!(
    csv_number_followed_by_text,
    Csv,
    width(2),
    b"1e,2\n1 2,3\n0x1,2\n1,2x\n",
    vec![
        err("record 1 (line 1, byte 0): field 1 is not a number: \"1e\""),
        err("record 2 (line 2, byte 5): field 1 is not a number: \"1 2\""),
        err("record 3 (line 3, byte 11): field 1 is not a number: \"0x1\""),
        err("record 4 (line 4, byte 17): field 2 is not a number: \"2x\""),
    ]
);
decodes!(
    csv_trailing_comma_is_an_empty_field,
    Csv,
    width(3),
    b"1,2,\n",
    vec![err("record 1 (line 1, byte 0): field 3 is empty")]
);
decodes!(
    csv_non_finite,
    Csv,
    width(3),
    b"nan,1,2\n1,inf,2\n1,2,1e400\n",
    vec![
        err("record 1 (line 1, byte 0): field 1 is not a finite number: \"nan\""),
        err("record 2 (line 2, byte 8): field 2 is not a finite number: \"inf\""),
        err("record 3 (line 3, byte 16): field 3 is not a finite number: \"1e400\""),
    ]
);
decodes!(
    csv_invalid_utf8,
    Csv,
    width(2),
    b"1,\xff\xfe\n1,\xc0\xaf\n",
    vec![
        err("record 1 (line 1, byte 0): field 2 is not valid UTF-8 (bad byte at offset 0 of the field)"),
        err("record 2 (line 2, byte 5): field 2 is not valid UTF-8 (bad byte at offset 0 of the field)"),
    ]
);
decodes!(
    csv_utf8_split_across_chunks_is_still_an_error_not_a_panic,
    Csv,
    width(1),
    "é\n".as_bytes(),
    vec![err(
        "record 1 (line 1, byte 0): field 1 is not a number: \"é\""
    )]
);
decodes!(
    csv_doubled_quote_is_a_literal_quote,
    Csv,
    width(2),
    b"\"1\"\"\",2\n",
    vec![err(
        "record 1 (line 1, byte 0): field 1 is not a number: \"1\\\"\""
    )]
);
decodes!(
    csv_unterminated_quote,
    Csv,
    width(2),
    b"1,2\n3,\"4\n5,6\n",
    vec![
        Ok(vec![1., 2.]),
        err("record 2 (line 2, byte 4): input ended inside a quoted field (unterminated quote)")
    ]
);
decodes!(
    csv_unterminated_quote_without_newline,
    Csv,
    width(2),
    b"3,\"4",
    vec![err(
        "record 1 (line 1, byte 0): input ended inside a quoted field (unterminated quote)"
    )]
);
// A `"` inside an unquoted field is data, at the end of input too (it
// used to be taken for an open quote there: its `"` bytes were odd in
// number). Python's csv reads `['1', '2"3']` and `['12"', '3']`.
decodes!(
    csv_quote_inside_a_field_is_data_at_the_end,
    Csv,
    width(3),
    b"1,2\"3\n4,5\"6",
    vec![
        err("record 1 (line 1, byte 0): expected 3 fields, found 2"),
        err("record 2 (line 2, byte 6): expected 3 fields, found 2"),
    ]
);
decodes!(
    csv_quote_after_a_closed_quote_is_data_at_the_end,
    Csv,
    width(2),
    b"\"1\"2\",3",
    vec![err(
        "record 1 (line 1, byte 0): field 1 is not a number: \"12\\\"\""
    )]
);
decodes!(
    csv_record_too_large_then_resync,
    Csv,
    DecodeOptions {
        max_record_bytes: 8,
        ..width(2)
    },
    b"1,2\n1111111111,2\n3,4\n55555555555555555",
    vec![
        Ok(vec![1., 2.]),
        err("record 2 (line 2, byte 4): record is larger than the 8-byte limit (max record size)"),
        Ok(vec![3., 4.]),
        err("record 4 (line 4, byte 21): record is larger than the 8-byte limit (max record size)"),
    ]
);
decodes!(
    csv_quoted_record_too_large_then_resync,
    Csv,
    DecodeOptions {
        max_record_bytes: 8,
        ..width(2)
    },
    b"\"1\n2\n3\n4\n5\n6\n7\",2\n3,4\n",
    vec![
        err("record 1 (line 1, byte 0): record is larger than the 8-byte limit (max record size)"),
        Ok(vec![3., 4.]),
    ]
);

// A record whose first line ends inside quotes is as large as all its
// bytes, quotes and newlines too (the first shows it: 8 field bytes, 12 in
// all); the range splitter keeps only the limit's worth of such a record.
decodes!(
    csv_quoted_record_over_the_limit_counts_its_bytes,
    Csv,
    DecodeOptions {
        max_record_bytes: 8,
        ..width(2)
    },
    b"1,2\n\"1\n\n\n\n\n\n\n\",3\n4,5\n",
    vec![
        Ok(vec![1., 2.]),
        err("record 2 (line 2, byte 4): record is larger than the 8-byte limit (max record size)"),
        Ok(vec![4., 5.]),
    ]
);
decodes!(
    csv_long_quoted_record_unterminated,
    Csv,
    DecodeOptions {
        max_record_bytes: 8,
        ..width(2)
    },
    b"1,2\n\"a\nbbbbbbbbbbbb",
    vec![
        Ok(vec![1., 2.]),
        err("record 2 (line 2, byte 4): input ended inside a quoted field (unterminated quote)"),
    ]
);
decodes!(
    csv_long_quoted_record_unterminated_after_doubled_quotes,
    Csv,
    DecodeOptions {
        max_record_bytes: 8,
        ..width(2)
    },
    b"1,2\n\"a\nbb\"\"bbbbbbbbb",
    vec![
        Ok(vec![1., 2.]),
        err("record 2 (line 2, byte 4): input ended inside a quoted field (unterminated quote)"),
    ]
);
decodes!(
    csv_long_quoted_record_closed_at_the_end,
    Csv,
    DecodeOptions {
        max_record_bytes: 8,
        ..width(2)
    },
    b"1,2\n\"a\nbbbbbbbbbb\"",
    vec![
        Ok(vec![1., 2.]),
        err("record 2 (line 2, byte 4): record is larger than the 8-byte limit (max record size)"),
    ]
);
decodes!(
    csv_long_quoted_record_with_doubled_quotes_then_records,
    Csv,
    DecodeOptions {
        max_record_bytes: 8,
        ..width(2)
    },
    b"\"x\n\"\"\"\"\"\"\"\"\"\"\n\",1\n2,x\n\"5\n\n\",4\n",
    vec![
        err("record 1 (line 1, byte 0): record is larger than the 8-byte limit (max record size)"),
        err("record 2 (line 4, byte 18): field 2 is not a number: \"x\""),
        Ok(vec![5., 4.]),
    ]
);

// A first line over the limit that ends inside quotes does not end its
// record: the record goes on to where csv-core (and Python's csv) end it,
// and the next record is counted after all of it.
decodes!(
    csv_first_line_over_the_limit_inside_quotes_goes_on_to_the_record_end,
    Csv,
    DecodeOptions {
        max_record_bytes: 8,
        ..width(2)
    },
    b"1,2\n\"aaaaaaaaaa\nb\n\",3\n4,x\n5,6\n",
    vec![
        Ok(vec![1., 2.]),
        err("record 2 (line 2, byte 4): record is larger than the 8-byte limit (max record size)"),
        err("record 3 (line 5, byte 22): field 2 is not a number: \"x\""),
        Ok(vec![5., 6.]),
    ]
);
// Said once: too large, not also unterminated.
decodes!(
    csv_first_line_over_the_limit_unterminated,
    Csv,
    DecodeOptions {
        max_record_bytes: 8,
        ..width(2)
    },
    b"1,2\n\"aaaaaaaaaa\nb",
    vec![
        Ok(vec![1., 2.]),
        err("record 2 (line 2, byte 4): record is larger than the 8-byte limit (max record size)"),
    ]
);
decodes!(
    csv_first_line_over_the_limit_with_quotes_closed_and_as_data,
    Csv,
    DecodeOptions {
        max_record_bytes: 8,
        ..width(2)
    },
    b"\"aaaaaaaaaa\",1\n2,3\naaaa\"aaaaaa\n4,5\n",
    vec![
        err("record 1 (line 1, byte 0): record is larger than the 8-byte limit (max record size)"),
        Ok(vec![2., 3.]),
        err("record 3 (line 3, byte 19): record is larger than the 8-byte limit (max record size)"),
        Ok(vec![4., 5.]),
    ]
);
decodes!(
    csv_header_over_the_limit_inside_quotes_is_skipped_to_its_end,
    Csv,
    DecodeOptions {
        csv_header: true,
        max_record_bytes: 8,
        ..width(2)
    },
    b"\"aaaaaaaaaa\nb\n\",c\n1,2\n",
    ok(&[&[1., 2.]])
);

// A first line exactly at the limit (its newline aside) that ends inside
// quotes is within it: the record goes on, unterminated or too large as a
// whole (the range splitter took it for over the limit; the `ranges` fuzz
// target found it).
decodes!(
    csv_first_line_at_the_limit_inside_quotes_unterminated,
    Csv,
    DecodeOptions {
        max_record_bytes: 1,
        ..opts()
    },
    b"\"\nab",
    vec![err(
        "record 1 (line 1, byte 0): input ended inside a quoted field (unterminated quote)"
    )]
);
decodes!(
    csv_first_line_at_the_limit_inside_quotes_then_records,
    Csv,
    DecodeOptions {
        max_record_bytes: 2,
        ..opts()
    },
    b"\"a\nb\",1\n2\n",
    vec![
        err("record 1 (line 1, byte 0): record is larger than the 2-byte limit (max record size)"),
        Ok(vec![2.]),
    ]
);
// A record on the quoted path whose field bytes just fill the limit is
// within it, however large the field buffer was before (a fresh decoder,
// as a range's, sized it to the limit and took it for too large; the
// `ranges` fuzz target found it).
decodes!(
    csv_quoted_path_record_at_the_limit,
    Csv,
    DecodeOptions {
        max_record_bytes: 2,
        ..opts()
    },
    b"1\"\n2\n",
    vec![
        err("record 1 (line 1, byte 0): field 1 is not a number: \"1\\\"\""),
        Ok(vec![2.]),
    ]
);
// A header over the limit is skipped whatever it holds, at the end of
// input too: a `"` inside a field (found by the `ranges` fuzz target,
// where ranges said nothing and one pipeline said "unterminated quote"),
// or a quote left open.
decodes!(
    csv_header_over_the_limit_at_the_end_is_skipped_whatever_its_quotes,
    Csv,
    DecodeOptions {
        csv_header: true,
        max_record_bytes: 2,
        ..width(1)
    },
    b"\xff\x00e\xbb\xbb].\"@",
    vec![]
);
decodes!(
    csv_header_over_the_limit_left_open_at_the_end_is_skipped,
    Csv,
    DecodeOptions {
        csv_header: true,
        max_record_bytes: 2,
        ..width(1)
    },
    b"\"abcdef",
    vec![]
);

// ---- JSON lines ----------------------------------------------------------

decodes!(
    jsonl_arrays_and_objects,
    JsonLines,
    width(2),
    b"[1,2]\n{\"features\":[3,4],\"id\":\"x\"}\n{\"id\":[1,{}],\"features\":[5, 6.5]}",
    ok(&[&[1., 2.], &[3., 4.], &[5., 6.5]])
);
decodes!(
    jsonl_crlf_blank_lines_bom_and_spaces,
    JsonLines,
    width(2),
    b"\xEF\xBB\xBF [1,2] \r\n\r\n\n\t[3,4]\r\n",
    ok(&[&[1., 2.], &[3., 4.]])
);
decodes!(
    jsonl_label,
    JsonLines,
    DecodeOptions {
        label: true,
        ..width(2)
    },
    b"{\"label\":1,\"features\":[1,2]}\n[0,3,4]\n{\"features\":[1,2]}\n",
    vec![
        Ok(vec![1., 2.]),
        Ok(vec![3., 4.]),
        err("record 3 (line 3, byte 37): not a row: a training record needs a \"label\"")
    ]
);
decodes!(
    jsonl_errors,
    JsonLines,
    width(2),
    b"[1,\"a\"]\n{\"x\":1}\n[1,2\n[1]\n7\n[1,1e400]\n[1,2]\n",
    vec![
        err("record 1 (line 1, byte 0): not a row: invalid type: string \"a\", expected f64 at column 6"),
        err("record 2 (line 2, byte 8): not a row: missing field `features` at column 7"),
        err("record 3 (line 3, byte 16): invalid JSON: EOF while parsing a list at column 4"),
        err("record 4 (line 4, byte 21): expected 2 fields, found 1"),
        err("record 5 (line 5, byte 25): not a row: invalid type: integer `7`, expected an array of numbers or an object with a \"features\" array at column 1"),
        err("record 6 (line 6, byte 27): field 2 is not a finite number: \"number out of range at column 8\""),
        Ok(vec![1., 2.]),
    ]
);
decodes!(
    jsonl_invalid_utf8_even_in_an_ignored_field,
    JsonLines,
    width(2),
    b"{\"id\":\"\xe9\",\"features\":[1,2]}\n[3,4]\n",
    vec![
        err("record 1 (line 1, byte 0): invalid JSON: not valid UTF-8 (bad byte at column 8)"),
        Ok(vec![3., 4.]),
    ]
);
decodes!(
    json_invalid_utf8,
    Json,
    width(2),
    b"{\"instances\": [[1,2]],\n \"note\": \"\xff\"}",
    vec![
        Ok(vec![1., 2.]),
        err("fatal: invalid JSON document (line 2, column 11, byte 33): not valid UTF-8")
    ]
);
decodes!(
    jsonl_trailing_garbage_is_invalid,
    JsonLines,
    width(2),
    b"[1,2] [3,4]\n",
    vec![err(
        "record 1 (line 1, byte 0): invalid JSON: trailing characters at column 7"
    )]
);
decodes!(
    jsonl_line_too_large,
    JsonLines,
    DecodeOptions {
        max_record_bytes: 6,
        ..width(2)
    },
    b"[1,2]\n[1.0000,2]\n[3,4]",
    vec![
        Ok(vec![1., 2.]),
        err("record 2 (line 2, byte 6): record is larger than the 6-byte limit (max record size)"),
        Ok(vec![3., 4.]),
    ]
);

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
    /// A JSON lines row of numbers is what serde_json reads it as, to the
    /// bit, or a bad record where serde_json refuses it: numbers of every
    /// length and exponent, JSON's spellings and others it refuses (a
    /// leading zero, a bare `.` or `e`, a form feed between tokens).
    #[test]
    fn jsonl_rows_of_numbers_are_serde_jsons_values(
        numbers in proptest::collection::vec(
            "[ \t]?-?(0|[1-9][0-9]{0,17}|0[0-9])(\\.[0-9]{0,18})?([eE][+-]?[0-9]{0,4})?[ \t\x0c]?",
            1..5,
        ),
        trailing_comma in proptest::bool::weighted(0.05),
    ) {
        let line = format!("[{}{}]", numbers.join(","), if trailing_comma { "," } else { "" });
        let got = decode_chunks(JsonLines, &opts(), &[line.as_bytes()]);
        let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        match serde_json::from_str::<Vec<f64>>(&line) {
            Ok(want) => proptest::prop_assert_eq!(
                got.first().and_then(|s| s.as_ref().ok()).map(|v| bits(v)),
                Some(bits(&want)),
                "{}", line
            ),
            Err(_) => proptest::prop_assert!(matches!(got.as_slice(), [Err(_)]), "{}: {:?}", line, got),
        }
    }
}

// ---- JSON documents --------------------------------------------------------

decodes!(
    json_instances,
    Json,
    width(2),
    b"{\"instances\": [[1,2], {\"features\": [3,4]}], \"configuration\": {}}",
    ok(&[&[1., 2.], &[3., 4.]])
);
decodes!(
    json_array_of_rows,
    Json,
    width(2),
    b"[[1,2],[3,4]]",
    ok(&[&[1., 2.], &[3., 4.]])
);
decodes!(json_one_row, Json, width(2), b" [1,2]\n", ok(&[&[1., 2.]]));
decodes!(
    json_one_object_row,
    Json,
    width(2),
    b"{\"features\":[1,2]}",
    ok(&[&[1., 2.]])
);
decodes!(json_empty_array, Json, width(2), b"[]", ok(&[]));
decodes!(json_empty_body, Json, width(2), b"  \n", ok(&[]));
decodes!(
    json_bom,
    Json,
    width(2),
    b"\xEF\xBB\xBF[[1,2]]",
    ok(&[&[1., 2.]])
);
decodes!(
    json_bad_instance_has_its_position,
    Json,
    width(2),
    b"{\"instances\": [\n  [1,2],\n  [1],\n  [3,4]\n]}",
    vec![
        Ok(vec![1., 2.]),
        err("record 2 (line 3, byte 27): expected 2 fields, found 1"),
        Ok(vec![3., 4.]),
    ]
);
decodes!(
    json_syntax_error_is_fatal,
    Json,
    width(2),
    b"{\"instances\": [[1,2],\n [3,4}",
    vec![
        Ok(vec![1., 2.]),
        err("fatal: invalid JSON document (line 2, column 6, byte 27): expected `,` or `]`")
    ]
);
decodes!(
    json_wrong_shape,
    Json,
    width(2),
    b"{\"rows\": [[1,2]]}",
    vec![err("fatal: invalid JSON document (line 1, column 1, byte 0): expected {\"instances\": [...]}, an array of rows, or one row")]
);
decodes!(
    json_scalar,
    Json,
    width(2),
    b"\"1,2\"",
    vec![err("fatal: invalid JSON document (line 1, column 1, byte 0): expected {\"instances\": [...]}, an array of rows, or one row")]
);
decodes!(
    json_one_row_too_large,
    Json,
    DecodeOptions {
        max_document_bytes: 10,
        ..width(2)
    },
    b"[1,2,3,4,5]",
    vec![err("fatal: JSON document of one row is larger than the 10-byte limit (max document size); send rows as {\"instances\": [...]}, an array of rows, JSON lines or CSV to stream larger inputs")]
);
decodes!(
    json_object_row_too_large,
    Json,
    DecodeOptions {
        max_document_bytes: 10,
        ..width(2)
    },
    b"{\"features\": [1,2]}",
    vec![err("fatal: JSON document of one row is larger than the 10-byte limit (max document size); send rows as {\"instances\": [...]}, an array of rows, JSON lines or CSV to stream larger inputs")]
);

// ---- JSON documents streamed row by row (issue 13) ------------------------

// The document cap is for a document kept whole: rows of an array stream.
decodes!(
    json_rows_are_not_under_the_document_cap,
    Json,
    DecodeOptions {
        max_document_bytes: 10,
        ..width(2)
    },
    b"{\"pad\": \"xxxxxxxxxxxxxxxxxxxx\", \"instances\": [[1,2],[3,4]]}",
    ok(&[&[1., 2.], &[3., 4.]])
);
decodes!(
    json_strings_with_brackets_and_escaped_quotes,
    Json,
    width(2),
    b"{\"instances\": [[1,2]], \"note\": \"a]\\\"}\"}",
    ok(&[&[1., 2.]])
);
decodes!(
    json_strings_inside_instances,
    Json,
    width(2),
    b"{\"instances\": [{\"id\": \"x]\\\"[{\", \"features\": [1,2]}, {\"features\": [3,4], \"id\": \"\\\\\"}]}",
    ok(&[&[1., 2.], &[3., 4.]])
);
decodes!(
    json_whitespace_everywhere,
    Json,
    width(2),
    b" \n\t{ \r\n\"instances\" \n:\t[ \n[ 1 , 2 ] \n, \n{ \"features\" : [3,4] } \n] \n, \"x\" : [ ] } \n",
    ok(&[&[1., 2.], &[3., 4.]])
);
decodes!(
    json_other_keys_before_and_after_instances,
    Json,
    width(2),
    b"{\"configuration\": {\"k\": [1, {\"a\": \"]\"}], \"n\": null, \"t\": true}, \"instances\": [[1,2]], \"z\": -1.5e3, \"f\": false}",
    ok(&[&[1., 2.]])
);
decodes!(
    json_nested_depth_inside_instances,
    Json,
    width(2),
    b"[[1,2],{\"features\":[3,4],\"meta\":{\"a\":[[[[{}]]]],\"b\":{\"c\":{}}}}]",
    ok(&[&[1., 2.], &[3., 4.]])
);
decodes!(
    json_empty_instances,
    Json,
    width(2),
    b"{\"instances\": [ ], \"x\": 1}",
    ok(&[])
);
decodes!(
    json_escaped_key,
    Json,
    width(2),
    b"{\"inst\\u0061nces\": [[1,2]]}",
    ok(&[&[1., 2.]])
);
decodes!(
    json_features_then_instances_takes_the_instances,
    Json,
    width(2),
    b"{\"features\": [9,9], \"instances\": [[1,2]]}",
    ok(&[&[1., 2.]])
);
decodes!(
    json_null_instances_then_features_is_one_row,
    Json,
    width(2),
    b"{\"instances\": null, \"features\": [1,2]}",
    ok(&[&[1., 2.]])
);
decodes!(
    json_label_in_instances,
    Json,
    DecodeOptions {
        label: true,
        ..width(2)
    },
    b"{\"instances\": [{\"label\": 1, \"features\": [1,2]}, [0, 3, 4]]}",
    ok(&[&[1., 2.], &[3., 4.]])
);
decodes!(
    json_errors_at_instance_n_with_positions,
    Json,
    width(2),
    b"{\"instances\": [[1,2],\n[3],\n[4,\"x\"],\n[5,6]]}",
    vec![
        Ok(vec![1., 2.]),
        err("record 2 (line 2, byte 22): expected 2 fields, found 1"),
        err("record 3 (line 3, byte 27): not a row: invalid type: string \"x\", expected f64 at column 6"),
        Ok(vec![5., 6.]),
    ]
);
decodes!(
    json_bom_counts_in_positions,
    Json,
    width(2),
    b"\xEF\xBB\xBF{\"instances\": [[1],[1,2]]}",
    vec![
        err("record 1 (line 1, byte 18): expected 2 fields, found 1"),
        Ok(vec![1., 2.]),
    ]
);
decodes!(
    json_scalar_instances_are_bad_records,
    Json,
    width(2),
    b"{\"instances\": [\"1,2\", 7, [1,2]]}",
    vec![
        err("record 1 (line 1, byte 15): not a row: invalid type: string \"1,2\", expected an array of numbers or an object with a \"features\" array at column 5"),
        err("record 2 (line 1, byte 22): not a row: invalid type: integer `7`, expected an array of numbers or an object with a \"features\" array at column 1"),
        Ok(vec![1., 2.]),
    ]
);
decodes!(
    json_syntax_error_inside_an_instance_is_that_records,
    Json,
    width(2),
    b"{\"instances\": [[1,2,], [3,4]]}",
    vec![
        err("record 1 (line 1, byte 15): invalid JSON: trailing comma at column 6"),
        Ok(vec![3., 4.]),
    ]
);
decodes!(
    json_invalid_utf8_inside_an_instance_is_that_records,
    Json,
    width(2),
    b"[[1,2],{\"id\":\"\xff\",\"features\":[3,4]}]",
    vec![
        Ok(vec![1., 2.]),
        err("record 2 (line 1, byte 7): invalid JSON: not valid UTF-8 (bad byte at column 8)"),
    ]
);
decodes!(
    json_instance_too_large_then_resync,
    Json,
    DecodeOptions {
        max_record_bytes: 8,
        ..width(2)
    },
    b"[[1,2],[1.0000000,\"]\"],[3,4],{\"features\":[5,6]}]",
    vec![
        Ok(vec![1., 2.]),
        err("record 2 (line 1, byte 7): record is larger than the 8-byte limit (max record size)"),
        Ok(vec![3., 4.]),
        err("record 4 (line 1, byte 29): record is larger than the 8-byte limit (max record size)"),
    ]
);
decodes!(
    json_instances_not_an_array,
    Json,
    width(2),
    b"{\"instances\": \"abc\"}",
    vec![err("fatal: invalid JSON document (line 1, column 19, byte 18): invalid type: string \"abc\", expected a sequence")]
);
decodes!(
    json_duplicate_instances,
    Json,
    width(2),
    b"{\"instances\": [[1,2]], \"instances\": []}",
    vec![
        Ok(vec![1., 2.]),
        err("fatal: invalid JSON document (line 1, column 34, byte 33): duplicate field `instances`"),
    ]
);
decodes!(
    json_unterminated_string_after_the_rows,
    Json,
    width(2),
    b"{\"instances\": [[1,2]], \"note\": \"abc",
    vec![
        Ok(vec![1., 2.]),
        err(
            "fatal: invalid JSON document (line 1, column 35, byte 35): EOF while parsing a string"
        ),
    ]
);
decodes!(
    json_input_ends_inside_a_row,
    Json,
    width(2),
    b"{\"instances\": [[1,2], [3,",
    vec![
        Ok(vec![1., 2.]),
        err("fatal: invalid JSON document (line 1, column 25, byte 25): EOF while parsing record 2 (line 1, byte 22)"),
    ]
);
decodes!(
    json_bad_nesting,
    Json,
    width(2),
    b"[[1,2},[3,4]]",
    vec![err(
        "fatal: invalid JSON document (line 1, column 6, byte 5): expected `,` or `]`"
    )]
);
decodes!(
    json_trailing_garbage_after_the_document,
    Json,
    width(2),
    b"{\"instances\": [[1,2]]} x",
    vec![
        Ok(vec![1., 2.]),
        err("fatal: invalid JSON document (line 1, column 24, byte 23): trailing characters"),
    ]
);
decodes!(
    json_trailing_comma_between_rows,
    Json,
    width(2),
    b"[[1,2],]",
    vec![
        Ok(vec![1., 2.]),
        err("fatal: invalid JSON document (line 1, column 8, byte 7): trailing comma"),
    ]
);
decodes!(
    json_missing_comma_between_rows,
    Json,
    width(2),
    b"[[1,2] [3,4]]",
    vec![
        Ok(vec![1., 2.]),
        err("fatal: invalid JSON document (line 1, column 8, byte 7): expected `,` or `]`"),
    ]
);
decodes!(
    json_bad_value_outside_the_rows,
    Json,
    width(2),
    b"{\"instances\": [[1,2]],\n \"n\": tru}",
    vec![
        Ok(vec![1., 2.]),
        err("fatal: invalid JSON document (line 2, column 10, byte 32): expected ident"),
    ]
);
decodes!(
    json_bad_number_outside_the_rows,
    Json,
    width(2),
    b"{\"n\": 01, \"instances\": [[1,2]]}",
    vec![err(
        "fatal: invalid JSON document (line 1, column 8, byte 7): invalid number"
    )]
);

// Found by fuzzing (json_split): a form feed is no JSON whitespace, but the
// decoder has always taken a body of only ASCII whitespace as empty.
decodes!(
    json_only_form_feed_is_empty,
    Json,
    width(2),
    b"\x0c \n",
    ok(&[])
);
decodes!(
    json_form_feed_before_a_document_is_invalid,
    Json,
    width(2),
    b"\n\x0c[[1,2]]",
    vec![err(
        "fatal: invalid JSON document (line 2, column 1, byte 1): expected value"
    )]
);

// Found by fuzzing (json_split): the line of a bad UTF-8 sequence outside
// the rows was the one last counted, not its own.
decodes!(
    json_invalid_utf8_on_a_later_line_of_a_key,
    Json,
    width(2),
    b"{\"a\":\n[0],\"b\xe4\x00\": 1}",
    vec![err(
        "fatal: invalid JSON document (line 2, column 7, byte 12): not valid UTF-8"
    )]
);

// Found by fuzzing (json): a row over the cap is reported at the byte that
// makes it too large, so a nesting error at or before that byte comes first
// and one after it second, whatever the chunking (the depth limit follows
// the caps, tiny here).
decodes!(
    json_too_large_before_too_deep,
    Json,
    DecodeOptions {
        max_record_bytes: 1,
        max_document_bytes: 1,
        ..width(2)
    },
    b"[[[[1]]]]",
    vec![err(
        "fatal: invalid JSON document (line 1, column 3, byte 2): nesting too deep"
    )]
);
decodes!(
    json_too_large_then_too_deep,
    Json,
    DecodeOptions {
        max_record_bytes: 2,
        max_document_bytes: 8,
        ..width(2)
    },
    b"[[1.0,[[[[[1]]]]]]]",
    vec![
        err("record 1 (line 1, byte 1): record is larger than the 2-byte limit (max record size)"),
        err("fatal: invalid JSON document (line 1, column 10, byte 9): nesting too deep"),
    ]
);

// ---- a BOM prefix that turns out to be data ---------------------------------

// Found by CI's fuzz pass: the data starts with two bytes of a BOM
// (`ef bb`, then not `bf`). Fed byte by byte, the two held-back bytes are
// replayed once the third shows they are data; with `stop_on_error` and a
// 1-byte record limit the replay stopped after its first error and the two
// bytes were never counted, so every later record came out 2 bytes early.
// The records start at bytes 0, 6 and 12, whatever the feeding.
/// The fuzz case's options (`src/parallel/tests.rs` runs it through ranges too).
pub(crate) fn partial_bom_opts() -> DecodeOptions {
    DecodeOptions {
        label: true,
        csv_header: true,
        max_record_bytes: 1,
        stop_on_error: true,
        ..width(2)
    }
}

/// The fuzz case's input.
pub(crate) const PARTIAL_BOM: &[u8] =
    b"\xef\xbb\x00\xfb\x09\x0a\x28\x0c\x22\xfb\x89\x0a\x0c\x2c\xfb";

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
