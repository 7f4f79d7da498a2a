//! JSON lines decoder cases, and its numbers against serde_json's.

use super::*;

cases! {
    // ---- JSON lines ----------------------------------------------------------

    decodes!(
        jsonl_arrays_and_objects,
        JsonLines,
        width(2),
        b"[1,2]\n{\"features\":[3,4],\"id\":\"x\"}\n{\"id\":[1,{}],\"features\":[5, 6.5]}",
        ok(&[&[1., 2.], &[3., 4.], &[5., 6.5]])
    );
    // Python's `repr` of a double has up to 17 digits: each is read as the
    // double it names (Rust's `str::parse`), in a plain row and an object.
    decodes!(
        jsonl_long_numbers_are_correctly_rounded,
        JsonLines,
        width(2),
        b"[373311.93139504205,26.87381356878416148]\n{\"features\":[0.30000000000000004,-1.7976931348623157e308]}\n",
        ok(&[
            &["373311.93139504205".parse().unwrap(), "26.87381356878416148".parse().unwrap()],
            &["0.30000000000000004".parse().unwrap(), f64::MIN],
        ])
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
            err("record 3 (line 3, byte 16): invalid JSON: EOF while parsing a list at column 5"),
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
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
    /// A JSON lines row of numbers is each number's correctly rounded value
    /// (Rust's `str::parse`), as serde_json reads it, or a bad record where
    /// serde_json refuses it: numbers of every
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
            Ok(want) => {
                // Correctly rounded: Rust's own reading of each number's text.
                let exact: Vec<f64> = numbers
                    .iter()
                    .map(|n| n.trim_matches([' ', '\t', '\x0c']).parse().unwrap())
                    .collect();
                proptest::prop_assert_eq!(bits(&want), bits(&exact), "{}", line);
                proptest::prop_assert_eq!(
                    got.first().and_then(|s| s.as_ref().ok()).map(|v| bits(v)),
                    Some(bits(&want)),
                    "{}", line
                )
            }
            Err(_) => proptest::prop_assert!(matches!(got.as_slice(), [Err(_)]), "{}: {:?}", line, got),
        }
    }
}
