//! Operating the server: `/metrics` after a known sequence of requests (exact
//! counter values, valid exposition format), JSON log lines with the request
//! fields, and the request id header.

use std::collections::HashMap;

use crate::util::*;

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

#[test]
fn metrics_count_a_known_sequence_exactly() {
    let s = Server::start(&[]);
    let before = scrape(&s);
    // A good request (1 record), a bad record (2 records, the second bad),
    // an unsupported type, a ping and a wrong path.
    assert_eq!(s.post("text/csv", None, b"1,2,3\n").status, 200);
    assert_eq!(s.post("text/csv", None, b"1,2,3\n1,2\n").status, 400);
    assert_eq!(s.post("text/plain", None, b"1,2,3\n").status, 415);
    assert_eq!(
        s.request(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").status,
        200
    );
    assert_eq!(
        s.request(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").status,
        404
    );
    let after = scrape(&s);
    let d = |k: &str| delta(&before, &after, k);
    assert_eq!(
        d(r#"mmp_http_requests_total{route="/invocations",status="200"}"#),
        1.0
    );
    assert_eq!(
        d(r#"mmp_http_requests_total{route="/invocations",status="400"}"#),
        1.0
    );
    assert_eq!(
        d(r#"mmp_http_requests_total{route="/invocations",status="415"}"#),
        1.0
    );
    assert_eq!(
        d(r#"mmp_http_requests_total{route="/ping",status="200"}"#),
        1.0
    );
    assert_eq!(
        d(r#"mmp_http_requests_total{route="other",status="404"}"#),
        1.0
    );
    // The first scrape counted itself; the second too.
    assert_eq!(
        d(r#"mmp_http_requests_total{route="/metrics",status="200"}"#),
        1.0
    );
    assert_eq!(d(r#"mmp_errors_total{kind="field_count"}"#), 1.0);
    assert_eq!(d(r#"mmp_errors_total{kind="unsupported_media_type"}"#), 1.0);
    assert_eq!(d("mmp_records_total{}"), 3.0);
    assert_eq!(
        d("mmp_predictions_total{}"),
        1.0,
        "only predictions that were sent"
    );
    assert_eq!(
        d("mmp_request_bytes_total{}"),
        16.0,
        "6 + 10 body bytes read"
    );
    assert_eq!(d("mmp_response_bytes_total{}"), 6.0, "\"-1.75\\n\"");
    assert_eq!(d("mmp_invocation_duration_seconds_count{}"), 3.0);
    assert_eq!(
        d("mmp_invocation_first_byte_seconds_count{}"),
        1.0,
        "only the committed one"
    );
    assert_eq!(after["mmp_invocations_in_flight{}"], 0.0);
    assert!(after["mmp_model_load_seconds{}"] > 0.0);
    let build: Vec<_> = after
        .keys()
        .filter(|k| k.starts_with("mmp_build_info{"))
        .collect();
    assert_eq!(build.len(), 1);
    assert!(
        build[0].contains(&format!("version={:?}", env!("CARGO_PKG_VERSION"))),
        "{build:?}"
    );
}

#[test]
fn placeholders_are_counted_by_kind() {
    let s = Server::start(&[("MMP_ON_ERROR", "placeholder")]);
    let before = scrape(&s);
    let r = s.post("text/csv", None, b"1,2,3\nx,2,3\n1,2\n1,,3\n");
    assert_eq!(r.status, 200);
    let after = scrape(&s);
    let d = |k: &str| delta(&before, &after, k);
    assert_eq!(d(r#"mmp_errors_total{kind="not_a_number"}"#), 1.0);
    assert_eq!(d(r#"mmp_errors_total{kind="field_count"}"#), 1.0);
    assert_eq!(d(r#"mmp_errors_total{kind="empty_field"}"#), 1.0);
    assert_eq!(d("mmp_records_total{}"), 4.0);
    assert_eq!(d("mmp_predictions_total{}"), 1.0);
}

#[test]
fn json_logs_carry_the_request_fields() {
    let s = Server::start(&[("MODEL_SERVER_LOG_FORMAT", "json")]);
    let raw = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nX-Amzn-SageMaker-Inference-Id: inf-42\r\nX-Amzn-SageMaker-Target-Variant: blue\r\nContent-Length: 12\r\n\r\n1,2,3\n4,5,6\n";
    let r = s.request(raw);
    assert_eq!(r.status, 200);
    let request_id = r.header("x-request-id").expect("a request id").to_string();
    let line = s.wait_log("inf-42", std::time::Duration::from_secs(10));
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["target"], "mmp::request");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/invocations");
    assert_eq!(v["status"], 200);
    assert_eq!(v["records"], 2);
    assert_eq!(v["predictions"], 2);
    assert_eq!(v["bytes_in"], 12);
    assert_eq!(v["bytes_out"], r.body.len());
    assert!(v["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(v["inference_id"], "inf-42");
    assert_eq!(v["target_variant"], "blue");
    assert_eq!(v["request_id"], request_id.as_str());
    assert!(v["timestamp"].is_string());
    // Every line is JSON, startup included.
    for l in s.logs() {
        serde_json::from_str::<serde_json::Value>(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

#[test]
fn request_ids_are_unique_and_on_error_responses_too() {
    let s = Server::start(&[]);
    let a = s.post("text/csv", None, b"1,2,3\n");
    let b = s.post("text/plain", None, b"1,2,3\n");
    let (a, b) = (
        a.header("x-request-id").unwrap(),
        b.header("x-request-id").unwrap(),
    );
    assert_ne!(a, b);
}

#[test]
fn a_bad_log_format_is_a_configuration_error() {
    let o = mmp()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env_clear()
        .env("MODEL_SERVER_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("MODEL_SERVER_LOG_FORMAT"));
}
