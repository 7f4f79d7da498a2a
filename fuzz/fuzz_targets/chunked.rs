//! The property every decoder target checks: feeding an input in random
//! chunks gives exactly the records and errors that feeding it whole gives,
//! and the pipeline's encoded output is the same bytes too.
//!
//! The fuzz input's first bytes choose the options (record and document
//! caps small enough to be hit, the header flag, the width the model wants,
//! the error policy) and the chunk sizes; the rest is the body.

use std::sync::Arc;

use bytes::BytesMut;
use mmp::codec::{DecodeOptions, Decoder};
use mmp::media::Format;
use mmp::model::Model;
use mmp::pipeline::{ErrorPolicy, Pipeline, PipelineOptions};
use mmp::record::{Batch, Rows, Shape};

/// A model of any width that cannot fail: the sum of the features.
struct Sum(Option<usize>);

impl Model for Sum {
    fn num_features(&self) -> Option<usize> {
        self.0
    }
    fn predict(&self, rows: Rows<'_>, out: &mut Vec<f64>) -> Result<(), mmp::Error> {
        out.extend(rows.iter().map(|r| r.iter().sum::<f64>()));
        Ok(())
    }
}

type Slot = Result<Vec<u64>, String>;

/// Records and errors of `body` fed in `chunks`, with a batch limit of 3.
fn decode(format: Format, opts: &DecodeOptions, body: &[u8], chunks: &[usize]) -> Vec<Slot> {
    let mut d = Decoder::new(format, opts);
    let mut batch = Batch::default();
    let mut out = Vec::new();
    let drain = |batch: &mut Batch, out: &mut Vec<Slot>| {
        let rows: Vec<Vec<u64>> = batch.rows().iter().map(|r| r.iter().map(|v| v.to_bits()).collect()).collect();
        let mut rows = rows.into_iter();
        let mut errors = batch.take_errors().into_iter().peekable();
        for slot in 0..batch.len() {
            if errors.peek().is_some_and(|(s, _)| *s == slot) {
                out.push(Err(errors.next().map(|(_, e)| e.to_string()).unwrap_or_default()));
            } else {
                out.push(Ok(rows.next().unwrap_or_default()));
            }
        }
        batch.clear();
    };
    let mut at = 0;
    let mut sizes = chunks.iter().cycle();
    while at < body.len() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, body.len() - at);
        let part = &body[at..at + n];
        at += n;
        let mut used = 0;
        while used < part.len() {
            match d.decode(&part[used..], &mut batch, 3) {
                Ok(k) => used += k,
                Err(e) => {
                    drain(&mut batch, &mut out);
                    out.push(Err(format!("fatal: {e}")));
                    return out;
                }
            }
            drain(&mut batch, &mut out);
        }
    }
    loop {
        match d.finish(&mut batch, 3) {
            Ok(done) => {
                drain(&mut batch, &mut out);
                if done {
                    return out;
                }
            }
            Err(e) => {
                drain(&mut batch, &mut out);
                out.push(Err(format!("fatal: {e}")));
                return out;
            }
        }
    }
}

/// The pipeline's output for `body` fed in `chunks`.
fn pipeline(format: Format, opts: &PipelineOptions, width: Option<usize>, body: &[u8], chunks: &[usize]) -> (Vec<u8>, Option<String>) {
    let mut p = Pipeline::new(Arc::new(Sum(width)), format, format, opts);
    let mut out = BytesMut::new();
    let mut at = 0;
    let mut sizes = chunks.iter().cycle();
    while at < body.len() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, body.len() - at);
        if let Err(e) = p.feed(&body[at..at + n], &mut out) {
            return (out.to_vec(), Some(e.to_string()));
        }
        at += n;
    }
    let err = p.finish(&mut out).err().map(|e| e.to_string());
    (out.to_vec(), err)
}

/// Run the property for `format` on one fuzz input.
pub fn check(format: Format, data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let (knobs, body) = data.split_at(4);
    let width = match knobs[0] % 4 {
        0 => None,
        w => Some(w as usize),
    };
    let opts = DecodeOptions {
        shape: width.map_or(Shape::Any, Shape::Features),
        label: knobs[0] & 0x10 != 0,
        text_labels: false,
        csv_header: knobs[0] & 0x20 != 0,
        max_record_bytes: 1 + (knobs[1] as usize) * 4,
        max_document_bytes: 1 + (knobs[2] as usize) * 16,
        stop_on_error: knobs[0] & 0x40 != 0,
    };
    // Chunk sizes from the knob and the body itself, 1 to 16 bytes.
    let chunks: Vec<usize> = std::iter::once(knobs[3] as usize % 16 + 1)
        .chain(body.iter().take(8).map(|b| (*b as usize % 16) + 1))
        .collect();
    let whole = decode(format, &opts, body, &[body.len().max(1)]);
    let pieces = decode(format, &opts, body, &chunks);
    assert_eq!(whole, pieces, "chunked feeding disagrees with whole feeding");
    let bytes = decode(format, &opts, body, &[1]);
    assert_eq!(whole, bytes, "byte-by-byte feeding disagrees with whole feeding");

    let popts = PipelineOptions {
        decode: DecodeOptions { label: false, ..opts },
        policy: if knobs[0] & 0x80 != 0 { ErrorPolicy::Placeholder } else { ErrorPolicy::Fail },
        batch_records: 3,
    };
    let a = pipeline(format, &popts, width, body, &[body.len().max(1)]);
    let b = pipeline(format, &popts, width, body, &chunks);
    assert_eq!(a, b, "the pipeline's output depends on the chunking");
}
