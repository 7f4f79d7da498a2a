//! Writing predictions, following SageMaker's built-in Linear Learner where
//! it has a convention (its regressor's response formats):
//!
//! | format | one prediction | whole response | placeholder for a bad record |
//! |---|---|---|---|
//! | `text/csv` | `0.5\n` | one line per record | `"ERROR: <message>"` (one quoted field) |
//! | `application/jsonlines` | `{"score":0.5}\n` | one line per record | `{"error":"<kind>","message":"<message>"}` |
//! | `application/json` | `{"score":0.5}` | `{"predictions":[...]}\n` | the same error object in the array |
//!
//! Numbers are written with `ryu`: the shortest text that reads back as the
//! same `f64` (`0.1`, `1e21`, `-3.0`).

use bytes::{BufMut, BytesMut};
use serde::Serialize;

use crate::error::Error;
use crate::media::Format;

/// Writes predictions in one format.
#[derive(Debug)]
pub struct Encoder {
    format: Format,
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
    /// An encoder for `format`.
    pub fn new(format: Format) -> Encoder {
        Encoder {
            format,
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

    /// Write one prediction (finite: the pipeline checks).
    #[inline]
    pub fn prediction(&mut self, y: f64, out: &mut BytesMut) {
        self.item(out);
        // A ryu buffer is an uninitialised array: free to make per call.
        let mut float = ryu::Buffer::new();
        let text = float.format_finite(y).as_bytes();
        match self.format {
            Format::Csv => {
                out.put_slice(text);
                out.put_u8(b'\n');
            }
            Format::JsonLines => {
                out.put_slice(b"{\"score\":");
                out.put_slice(text);
                out.put_slice(b"}\n");
            }
            Format::Json => {
                out.put_slice(b"{\"score\":");
                out.put_slice(text);
                out.put_u8(b'}');
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, Position};

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
}
