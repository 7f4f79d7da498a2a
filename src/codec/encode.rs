//! Writing predictions, following SageMaker's built-in Linear Learner
//! (AWS DG, "Linear learner response formats") for its three predictor
//! types, and Object2Vec's `embeddings` for a vector:
//!
//! | output | `text/csv` | `application/jsonlines` (`application/json`: in `{"predictions":[...]}`) |
//! |---|---|---|
//! | score (regressor) | `0.5` | `{"score":0.5}` |
//! | binary classifier | `cat,0.7` | `{"score":0.7,"predicted_label":"cat"}` |
//! | multiclass | `setosa,0.9,0.07,0.03` | `{"score":[0.9,0.07,0.03],"predicted_label":"setosa"}` |
//! | vector | `0.1,0.2` | `{"embeddings":[0.1,0.2]}` |
//!
//! CSV is one line per record, the predicted label first (so a client of
//! the seed's iris classifier reads a species name per line), then the
//! score or the probabilities. A bad record's placeholder is
//! `"ERROR: <message>"` (one quoted field) in CSV and
//! `{"error":"<kind>","message":"<message>"}` in JSON, in its place.
//!
//! Numbers are written with `ryu`: the shortest text that reads back as the
//! same `f64` (`0.1`, `1e21`, `-3.0`). Labels were encoded once when the
//! model was loaded ([`Classes`]): JSON strings by serde_json, CSV fields by
//! `csv_core::Writer`; numbers never need CSV quoting.

use bytes::{BufMut, BytesMut};
use serde::Serialize;

use crate::error::Error;
use crate::media::Format;
use crate::model::{Classes, Output};

/// Writes predictions in one format.
#[derive(Debug)]
pub struct Encoder {
    format: Format,
    output: Output,
    /// The JSON document's opening was written.
    started: bool,
    /// Items written (for JSON's separating commas).
    items: u64,
}

#[derive(Serialize)]
struct ErrorItem<'a> {
    error: &'a str,
    message: String,
}

impl Encoder {
    /// An encoder of scores (a regressor's) in `format`.
    pub fn new(format: Format) -> Encoder {
        Encoder::with_output(format, Output::Score)
    }

    /// An encoder of predictions of shape `output` in `format`.
    pub fn with_output(format: Format, output: Output) -> Encoder {
        Encoder {
            format,
            output,
            started: false,
            items: 0,
        }
    }

    /// The format written.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Write what precedes the first item (JSON's opening), once.
    #[inline]
    fn begin(&mut self, out: &mut BytesMut) {
        if !self.started {
            self.started = true;
            if self.format == Format::Json {
                out.put_slice(b"{\"predictions\":[");
            }
        }
    }

    /// Write what precedes an item.
    #[inline]
    fn item(&mut self, out: &mut BytesMut) {
        self.begin(out);
        if self.format == Format::Json && self.items > 0 {
            out.put_u8(b',');
        }
        self.items += 1;
    }

    /// Write one score (finite: the pipeline checks).
    #[inline]
    pub fn prediction(&mut self, y: f64, out: &mut BytesMut) {
        self.record(std::slice::from_ref(&y), out);
    }

    /// Write one record's prediction: its [`Output::width`] numbers, all
    /// finite (the pipeline checks).
    #[inline]
    pub fn record(&mut self, values: &[f64], out: &mut BytesMut) {
        self.item(out);
        let label = self.output.label(values);
        let classes = self.output.classes();
        match (self.format, &self.output) {
            (Format::Csv, Output::Score) => {
                put_number(values[0], out);
            }
            (Format::Csv, _) => {
                if let (Some(k), Some(c)) = (label, classes) {
                    out.put_slice(c.csv(k));
                    out.put_u8(b',');
                }
                put_list(values, out);
            }
            (Format::JsonLines | Format::Json, Output::Score | Output::Binary(_)) => {
                out.put_slice(b"{\"score\":");
                put_number(values[0], out);
                put_label(label, classes, out);
            }
            (Format::JsonLines | Format::Json, Output::Multiclass(_)) => {
                out.put_slice(b"{\"score\":[");
                put_list(values, out);
                out.put_u8(b']');
                put_label(label, classes, out);
            }
            (Format::JsonLines | Format::Json, Output::Vector(_)) => {
                out.put_slice(b"{\"embeddings\":[");
                put_list(values, out);
                out.put_slice(b"]}");
            }
        }
        if self.format != Format::Json {
            out.put_u8(b'\n');
        }
    }

    /// Write the placeholder marker for a bad record.
    pub fn error(&mut self, err: &Error, out: &mut BytesMut) {
        self.item(out);
        match self.format {
            Format::Csv => {
                let msg = format!("ERROR: {err}");
                out.put_u8(b'"');
                out.put_slice(msg.replace('"', "\"\"").as_bytes());
                out.put_slice(b"\"\n");
            }
            Format::JsonLines | Format::Json => {
                let item = ErrorItem {
                    error: err.code(),
                    message: err.to_string(),
                };
                // Serialising a struct of two strings into memory cannot fail.
                let _ = serde_json::to_writer((&mut *out).writer(), &item);
                if self.format == Format::JsonLines {
                    out.put_u8(b'\n');
                }
            }
        }
    }

    /// End the response (JSON's closing); call once, after the last item.
    pub fn end(&mut self, out: &mut BytesMut) {
        self.begin(out);
        if self.format == Format::Json {
            out.put_slice(b"]}\n");
        }
    }
}

/// A finite number, shortest round-trip form.
#[inline]
fn put_number(y: f64, out: &mut BytesMut) {
    // A ryu buffer is an uninitialised array: free to make per call.
    let mut float = ryu::Buffer::new();
    out.put_slice(float.format_finite(y).as_bytes());
}

/// Numbers separated by commas (CSV fields, or a JSON array's items).
#[inline]
fn put_list(values: &[f64], out: &mut BytesMut) {
    for (i, &v) in values.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        put_number(v, out);
    }
}

/// `,"predicted_label":<label>}` for a classifier, else `}`.
#[inline]
fn put_label(label: Option<usize>, classes: Option<&Classes>, out: &mut BytesMut) {
    if let (Some(k), Some(c)) = (label, classes) {
        out.put_slice(b",\"predicted_label\":");
        out.put_slice(c.json(k));
    }
    out.put_u8(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, Position};
    use crate::model::ClassLabel;
    use std::sync::Arc;

    fn run(format: Format) -> String {
        let mut e = Encoder::new(format);
        let mut out = BytesMut::new();
        e.prediction(0.5, &mut out);
        let err = Error::new(ErrorKind::EmptyField {
            pos: Position {
                record: 2,
                line: 2,
                byte: 4,
            },
            field: 1,
        });
        e.error(&err, &mut out);
        e.prediction(-3.0, &mut out);
        e.end(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn csv() {
        assert_eq!(
            run(Format::Csv),
            "0.5\n\"ERROR: record 2 (line 2, byte 4): field 1 is empty\"\n-3.0\n"
        );
    }

    #[test]
    fn json_lines() {
        assert_eq!(
            run(Format::JsonLines),
            "{\"score\":0.5}\n{\"error\":\"empty_field\",\"message\":\"record 2 (line 2, byte 4): field 1 is empty\"}\n{\"score\":-3.0}\n"
        );
    }

    #[test]
    fn json() {
        let text = run(Format::Json);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["predictions"][0]["score"], 0.5);
        assert_eq!(v["predictions"][1]["error"], "empty_field");
        assert_eq!(v["predictions"][2]["score"], -3.0);
        let mut e = Encoder::new(Format::Json);
        let mut out = BytesMut::new();
        e.end(&mut out);
        assert_eq!(&out[..], b"{\"predictions\":[]}\n");
    }

    fn classes(labels: &[&str]) -> Arc<Classes> {
        Arc::new(Classes::new(
            labels
                .iter()
                .map(|l| ClassLabel::Text(l.to_string()))
                .collect(),
        ))
    }

    fn write(format: Format, output: Output, records: &[&[f64]]) -> String {
        let mut e = Encoder::with_output(format, output);
        let mut out = BytesMut::new();
        for r in records {
            e.record(r, &mut out);
        }
        e.end(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn binary_classifier_follows_linear_learner() {
        let out = Output::Binary(classes(&["no", "yes"]));
        let recs: &[&[f64]] = &[&[0.25], &[0.75], &[0.5]];
        // At exactly 0.5 the first class wins, as scikit-learn's predict
        // (positive class only when the decision function is > 0).
        assert_eq!(
            write(Format::Csv, out.clone(), recs),
            "no,0.25\nyes,0.75\nno,0.5\n"
        );
        assert_eq!(
            write(Format::JsonLines, out.clone(), recs),
            "{\"score\":0.25,\"predicted_label\":\"no\"}\n{\"score\":0.75,\"predicted_label\":\"yes\"}\n{\"score\":0.5,\"predicted_label\":\"no\"}\n"
        );
        let numeric = Output::Binary(Arc::new(Classes::new(vec![
            ClassLabel::Number(0.0),
            ClassLabel::Number(1.0),
        ])));
        // Linear Learner's documented example: {"score": 0.4, "predicted_label": 0}.
        let v: serde_json::Value =
            serde_json::from_str(&write(Format::Json, numeric, &[&[0.4]])).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"predictions": [{"score": 0.4, "predicted_label": 0}]})
        );
    }

    #[test]
    fn multiclass_follows_linear_learner() {
        let out = Output::Multiclass(classes(&["setosa", "versicolor", "virginica"]));
        let recs: &[&[f64]] = &[&[0.1, 0.2, 0.7], &[0.4, 0.4, 0.2]];
        assert_eq!(
            write(Format::Csv, out.clone(), recs),
            "virginica,0.1,0.2,0.7\nsetosa,0.4,0.4,0.2\n"
        );
        let v: serde_json::Value = serde_json::from_str(&write(Format::Json, out, recs)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"predictions": [
                {"score": [0.1, 0.2, 0.7], "predicted_label": "virginica"},
                {"score": [0.4, 0.4, 0.2], "predicted_label": "setosa"}
            ]})
        );
    }

    #[test]
    fn labels_are_quoted_and_escaped() {
        let out = Output::Binary(classes(&["a,b", "say \"hi\"\n"]));
        let csv = write(Format::Csv, out.clone(), &[&[0.1], &[0.9]]);
        assert_eq!(csv, "\"a,b\",0.1\n\"say \"\"hi\"\"\n\",0.9\n");
        // An independent reader gets the labels back.
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(csv.as_bytes());
        let labels: Vec<String> = r.records().map(|r| r.unwrap()[0].to_string()).collect();
        assert_eq!(labels, ["a,b", "say \"hi\"\n"]);
        let lines = write(Format::JsonLines, out, &[&[0.9]]);
        let v: serde_json::Value = serde_json::from_str(&lines).unwrap();
        assert_eq!(v["predicted_label"], "say \"hi\"\n");
    }

    #[test]
    fn vectors() {
        let recs: &[&[f64]] = &[&[0.5, -1.0]];
        assert_eq!(write(Format::Csv, Output::Vector(2), recs), "0.5,-1.0\n");
        assert_eq!(
            write(Format::JsonLines, Output::Vector(2), recs),
            "{\"embeddings\":[0.5,-1.0]}\n"
        );
    }
}
