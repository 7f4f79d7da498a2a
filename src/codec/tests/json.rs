//! `application/json` document cases: whole documents, and documents
//! streamed row by row.

use super::*;

cases! {
    // ---- JSON documents --------------------------------------------------------

    decodes!(
        json_instances,
        Json,
        width(2),
        b"{\"instances\": [[1,2], {\"features\": [3,4]}], \"configuration\": {}}",
        ok(&[&[1., 2.], &[3., 4.]])
    );
    decodes!(
        json_long_numbers_are_correctly_rounded,
        Json,
        width(2),
        b"{\"instances\": [[373311.93139504205, 0], {\"features\": [26.87381356878416148, 0]}]}",
        ok(&[
            &["373311.93139504205".parse().unwrap(), 0.],
            &["26.87381356878416148".parse().unwrap(), 0.],
        ])
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
                "fatal: invalid JSON document (line 1, column 36, byte 35): EOF while parsing a string"
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
            err("fatal: invalid JSON document (line 1, column 26, byte 25): EOF while parsing record 2 (line 1, byte 22)"),
        ]
    );
    // Cut after a newline: the error is at the start of the next line, as
    // Python's json puts it ("Expecting value: line 2 column 1 (char 22)"
    // and "(char 4)"), streamed or read whole.
    decodes!(
        json_input_ends_after_a_newline,
        Json,
        width(2),
        b"{\"instances\": [[1,2],\n",
        vec![
            Ok(vec![1., 2.]),
            err("fatal: invalid JSON document (line 2, column 1, byte 22): EOF while parsing a value"),
        ]
    );
    decodes!(
        json_one_row_ends_after_a_newline,
        Json,
        width(2),
        b"[1,\n",
        vec![err(
            "fatal: invalid JSON document (line 2, column 1, byte 4): EOF while parsing a value"
        )]
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
}
