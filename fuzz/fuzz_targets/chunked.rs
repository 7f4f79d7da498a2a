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

// The decoder tests' harness, the same file (it takes `Batch`,
// `DecodeOptions`, `Decoder` and `Format` from here).
#[path = "../../src/codec/chunked.rs"]
mod harness;

/// A model of any width that cannot fail: the sum of the features.
pub struct Sum(pub Option<usize>);

impl Model for Sum {
    fn num_features(&self) -> Option<usize> {
        self.0
    }
    fn predict(&self, rows: Rows<'_>, out: &mut Vec<f64>) -> Result<(), mmp::Error> {
        out.extend(rows.iter().map(|r| r.iter().sum::<f64>()));
        Ok(())
    }
}

/// A record by its features' bits (a NaN equals itself), or its error.
type Slot = Result<Vec<u64>, String>;

/// `body` in pieces of the `sizes`, cycled (each at least 1 byte).
fn pieces<'a>(body: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut sizes = sizes.iter().cycle();
    while at < body.len() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, body.len() - at);
        out.push(&body[at..at + n]);
        at += n;
    }
    out
}

/// Records and errors of `body` fed in `chunks`, with a batch limit of 3.
fn decode(format: Format, opts: &DecodeOptions, body: &[u8], chunks: &[usize]) -> Vec<Slot> {
    harness::decode_chunks(format, opts, &pieces(body, chunks), 3)
        .into_iter()
        .map(|slot| slot.map(|row| row.into_iter().map(f64::to_bits).collect()))
        .collect()
}

/// The pipeline's output for `body` fed in `chunks`.
fn pipeline(format: Format, opts: &PipelineOptions, width: Option<usize>, body: &[u8], chunks: &[usize]) -> (Vec<u8>, Option<String>) {
    let mut p = Pipeline::new(Arc::new(Sum(width)), format, format, opts);
    let mut out = BytesMut::new();
    for piece in pieces(body, chunks) {
        if let Err(e) = p.feed(piece, &mut out) {
            return (out.to_vec(), Some(e.to_string()));
        }
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
        // A classifier's training reads string labels (class names).
        text_labels: knobs[0] & 0x08 != 0,
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
