//! Fuzz one stream on every core (`mmp::parallel`): a CSV or JSON lines
//! body cut into ranges of a few bytes and read in small pieces answers
//! byte for byte as one pipeline does, with the same error, whatever the
//! records hold (quotes, records over the limit, BOMs, a header, bad
//! records under either policy). The ranges' positions, the splitter's
//! cuts and its dropping of records over the limit are all in play.
//!
//! The fuzz input's first bytes choose the formats, the header, the
//! policy, the record limit, the range and read sizes and whether the
//! input is a stream; the rest is the body.
#![no_main]

// For its model, `Sum`; the decoder targets' property is not used here.
#[allow(dead_code)]
#[path = "chunked.rs"]
mod chunked;

use std::io::Read;
use std::sync::Arc;

use bytes::BytesMut;
use mmp::codec::DecodeOptions;
use mmp::media::Format;
use mmp::model::SharedModel;
use mmp::parallel::{self, Engine, Spec};
use mmp::pipeline::{ErrorPolicy, Pipeline, PipelineOptions};
use mmp::record::Shape;

/// A reader handing out `piece` bytes per read.
struct Pieces {
    data: Vec<u8>,
    piece: usize,
    at: usize,
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = &self.data[self.at..];
        let n = rest.len().min(self.piece).min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        Ok(n)
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (knobs, body) = data.split_at(4);
    let format = if knobs[0] & 1 == 0 { Format::Csv } else { Format::JsonLines };
    let output = if knobs[0] & 2 == 0 { Format::Csv } else { Format::JsonLines };
    let width = match (knobs[0] >> 5) % 4 {
        0 => None,
        w => Some(w as usize),
    };
    let opts = PipelineOptions {
        decode: DecodeOptions {
            shape: width.map_or(Shape::Any, Shape::Features),
            csv_header: knobs[0] & 4 != 0,
            max_record_bytes: 1 + knobs[1] as usize,
            ..DecodeOptions::default()
        },
        policy: if knobs[0] & 8 != 0 { ErrorPolicy::Placeholder } else { ErrorPolicy::Fail },
        batch_records: 2,
    };
    let model: SharedModel = Arc::new(chunked::Sum(width));
    let spec = Spec {
        model: &model,
        opts: &opts,
        input: format,
        output,
    };

    let mut p = Pipeline::new(model.clone(), format, output, &opts);
    let mut want = BytesMut::new();
    let want_err = p
        .feed(body, &mut want)
        .and_then(|()| p.finish(&mut want))
        .err()
        .map(|e| e.to_string());

    let engine = Engine::with(2, 1 + knobs[2] as usize % 64);
    let reader = Pieces {
        data: body.to_vec(),
        piece: 1 + knobs[3] as usize % 32,
        at: 0,
    };
    let mut got = Vec::new();
    let got_err = parallel::run(&engine, &spec, reader, &mut got, knobs[0] & 0x10 != 0, None)
        .err()
        .map(|e| e.to_string());
    assert!(
        (&got, &got_err) == (&want.to_vec(), &want_err),
        "ranges answer unlike one pipeline:\nranges: {:?} {got_err:?}\none pipeline: {:?} {want_err:?}",
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want),
    );
});
