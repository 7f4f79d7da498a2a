//! `application/json` streams row by row through the real server (issue 13):
//! a document over SageMaker's 6 MiB realtime payload (Batch Transform sends
//! up to 100 MB, async inference up to 1 GB) gets its predictions, and the
//! first predictions leave before the body has all arrived.

use std::io::{BufReader, Read, Write};

use crate::util::*;

/// Row `i` of the generated documents: small integers and halves, so the
/// fixtures' model (`0.5 + x1 - 2 x2 + 0.25 x3`) gives exact results in any
/// order of summation.
fn row(i: usize) -> [f64; 3] {
    [(i % 97) as f64, (i % 13) as f64 * 0.5, -((i % 7) as f64)]
}

/// The fixtures' model (`fixtures/model/model.json`), computed here.
fn expected(i: usize) -> f64 {
    let [a, b, c] = row(i);
    0.5 + a - 2.0 * b + 0.25 * c
}

/// `{"id": ..., "instances": [...], "note": ...}` with `n` rows, written as
/// a client would (keys around "instances", strings with brackets, objects
/// and arrays as rows).
fn document(n: usize) -> Vec<u8> {
    let mut doc = String::from("{\"id\": \"batch [1]\", \"instances\": [\n");
    for i in 0..n {
        let [a, b, c] = row(i);
        if i > 0 {
            doc.push_str(",\n");
        }
        if i % 2 == 0 {
            doc.push_str(&format!("  [{a}, {b}, {c}]"));
        } else {
            doc.push_str(&format!(
                "  {{\"features\": [{a}, {b}, {c}], \"tag\": \"r\\\"{i}]\"}}"
            ));
        }
    }
    doc.push_str("\n], \"note\": \"}]\"}");
    doc.into_bytes()
}

#[test]
fn a_document_over_6_mib_of_instances_gets_all_its_predictions() {
    let n = 240_000;
    let body = document(n);
    assert!(body.len() > 7 << 20, "{} bytes", body.len());
    let s = Server::start(&[]);
    let r = s.post("application/json", None, &body);
    assert_eq!(
        r.status,
        200,
        "{}",
        String::from_utf8_lossy(&r.body[..200.min(r.body.len())])
    );
    let v = r.json();
    let preds = v["predictions"].as_array().expect("predictions");
    assert_eq!(preds.len(), n);
    for (i, p) in preds.iter().enumerate() {
        assert_eq!(p["score"].as_f64(), Some(expected(i)), "prediction {i}");
    }
    // Memory stayed at about one row and one output buffer, not the body.
    let (peak, _) = s.memory_kib();
    assert!(peak < 48 * 1024, "server peak RSS {peak} KiB");
}

#[test]
fn json_predictions_leave_before_the_body_ends() {
    let s = Server::start(&[]);
    let mut conn = s.connect();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut raw = chunked_head("application/json", None);
    raw.extend(chunk(b"{\"instances\": [[1,2,3], [4,5"));
    conn.write_all(&raw).unwrap();
    // The document is not finished, yet the status and the first
    // prediction come.
    let mut head = Vec::new();
    while !head.ends_with(b"{\"predictions\":[{\"score\":-1.75}") {
        let mut b = [0u8; 1];
        reader
            .read_exact(&mut b)
            .expect("first prediction before the body ended");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The rest of the document, and the end of the answer.
    let mut rest = chunk(b",6]]}");
    rest.extend_from_slice(LAST_CHUNK);
    conn.write_all(&rest).unwrap();
    let mut tail = Vec::new();
    while !tail.ends_with(b"0\r\n\r\n") {
        let mut b = [0u8; 1];
        reader.read_exact(&mut b).unwrap();
        tail.push(b[0]);
    }
    let tail = String::from_utf8_lossy(&tail);
    // (In chunks: the prediction when its row completes, then the close.)
    assert!(tail.contains(",{\"score\":-4.0}"), "{tail}");
    assert!(tail.contains("]}\n"), "{tail}");
}

#[test]
fn a_malformed_document_after_good_rows_is_a_400_with_its_byte() {
    let s = Server::start(&[]);
    let r = s.post(
        "application/json",
        None,
        b"{\"instances\": [[1,2,3], [4,5,6}]}",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"], "invalid_document");
    assert_eq!(
        v["message"],
        "invalid JSON document (line 1, column 31, byte 30): expected `,` or `]`"
    );
    // The server keeps serving.
    let r = s.post("application/json", None, b"[[1,2,3]]");
    assert_eq!(r.text(), "{\"predictions\":[{\"score\":-1.75}]}\n");
}
