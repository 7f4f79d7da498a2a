//! Throughput of the record pipeline on one thread, in memory: decode →
//! predict → encode, for 16-feature rows like the shared bench's data (values
//! in [-10, 10) with 6 decimals). Compare with `../shared/bench`'s
//! `parse-score` (csv ByteRecord + fast-float, 306 MB/s in its reference run)
//! and `fast-score` (memchr lines, no CSV state machine).
//!
//! Run: `cargo bench --bench pipeline` (`-- hop` for the compute pool's
//! hop alone).

use std::sync::Arc;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mmp::codec::{DecodeOptions, Decoder};
use mmp::media::Format;
use mmp::pipeline::{Pipeline, PipelineOptions};
use mmp::predictor::LinearModel;
use mmp::record::{Batch, Shape};

mod common;

use common::Rng;

const D: usize = 16;

/// About `bytes` of rows in `format`, and how many rows that is (label
/// first, for training).
fn data(format: Format, bytes: usize) -> (Vec<u8>, usize) {
    let (data, rows) = common::rows(format, bytes, D);
    (data, rows)
}

fn model() -> LinearModel {
    let mut rng = Rng(7);
    LinearModel {
        bias: rng.next() / 10.0,
        weights: (0..D).map(|_| rng.next() / 10.0).collect(),
    }
}

/// Feed `input` in chunks of `chunk` bytes, as a socket or file would.
fn run_pipeline(m: &mmp::model::SharedModel, format: Format, input: &[u8], chunk: usize) -> usize {
    let mut p = Pipeline::new(m.clone(), format, format, &PipelineOptions::default());
    let mut out = BytesMut::with_capacity(1 << 18);
    let mut lines = 0;
    for part in input.chunks(chunk) {
        p.feed(part, &mut out).unwrap();
        if out.len() >= 1 << 18 {
            lines += out.iter().filter(|&&b| b == b'\n').count();
            out.clear();
        }
    }
    p.finish(&mut out).unwrap();
    lines + out.iter().filter(|&&b| b == b'\n').count()
}

fn pipeline(c: &mut Criterion) {
    let m: mmp::model::SharedModel = Arc::new(model());
    let mut g = c.benchmark_group("pipeline");
    for format in [Format::Csv, Format::JsonLines] {
        let (input, rows) = data(format, 8 << 20);
        g.throughput(Throughput::Bytes(input.len() as u64));
        for chunk in [64 << 10, 1 << 20] {
            let id = BenchmarkId::new(format.mime(), format!("chunk {} KiB", chunk >> 10));
            g.bench_with_input(id, &input, |b, input| {
                b.iter(|| assert_eq!(run_pipeline(&m, format, input, chunk), rows));
            });
        }
    }
    g.finish();
}

/// A three-class classifier with string labels over the same rows: the
/// softmax and the label written first (`label,p1,p2,p3` or
/// `{"score":[...],"predicted_label":"..."}`).
fn classifier() -> mmp::model::SharedModel {
    use mmp::model::ClassLabel;
    use mmp::predictor::{ClassifierType, LogisticArtifact};
    let mut rng = Rng(11);
    Arc::new(
        LogisticArtifact {
            predictor_type: ClassifierType::MulticlassClassifier,
            classes: ["setosa", "versicolor", "virginica"]
                .map(|c| ClassLabel::Text(c.into()))
                .to_vec(),
            bias: (0..3).map(|_| rng.next() / 10.0).collect(),
            weights: (0..3)
                .map(|_| (0..D).map(|_| rng.next() / 10.0).collect())
                .collect(),
        }
        .into_model(),
    )
}

fn classify(c: &mut Criterion) {
    let m = classifier();
    let mut g = c.benchmark_group("classifier");
    for format in [Format::Csv, Format::JsonLines] {
        let (input, rows) = data(format, 8 << 20);
        g.throughput(Throughput::Bytes(input.len() as u64));
        let id = BenchmarkId::new(format.mime(), "chunk 1024 KiB");
        g.bench_with_input(id, &input, |b, input| {
            b.iter(|| assert_eq!(run_pipeline(&m, format, input, 1 << 20), rows));
        });
    }
    g.finish();
}

fn decode_only(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    let opts = DecodeOptions {
        shape: Shape::Features(D),
        ..DecodeOptions::default()
    };
    for format in [Format::Csv, Format::JsonLines] {
        let (input, rows) = data(format, 8 << 20);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_with_input(
            BenchmarkId::new(format.mime(), "1 MiB chunks"),
            &input,
            |b, input| {
                b.iter(|| {
                    let mut d = Decoder::new(format, &opts);
                    let mut batch = Batch::with_capacity(1024, D);
                    let mut n = 0;
                    for part in input.chunks(1 << 20) {
                        let mut at = 0;
                        while at < part.len() {
                            at += d.decode(&part[at..], &mut batch, 1024).unwrap();
                            n += batch.rows().len();
                            batch.clear();
                        }
                    }
                    d.finish(&mut batch, 1024).unwrap();
                    n += batch.rows().len();
                    assert_eq!(n, rows);
                });
            },
        );
    }
    g.finish();
}

/// The compute pool's hop (`src/compute.rs`), what an expensive model's
/// request pays per body chunk (`src/serve/stage.rs`): a job sent to a pool
/// thread and its result awaited, empty, and carrying the pipeline and a
/// 64 KiB chunk, against the same chunk fed inline.
fn hop(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pool = mmp::compute::Pool::new(1).unwrap();
    let m: mmp::model::SharedModel = Arc::new(model());
    let (input, _) = data(Format::Csv, 64 << 10);
    let input = bytes::Bytes::from(input);
    let new = || {
        Pipeline::new(
            m.clone(),
            Format::Csv,
            Format::Csv,
            &PipelineOptions::default(),
        )
    };
    let mut g = c.benchmark_group("hop");
    g.bench_function("empty job", |b| {
        b.iter(|| rt.block_on(pool.run(|| 1)).unwrap());
    });
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("64 KiB chunk inline", |b| {
        let (mut p, mut out) = (new(), BytesMut::new());
        b.iter(|| {
            p.feed(&input, &mut out).unwrap();
            out.clear();
        });
    });
    g.bench_function("64 KiB chunk on the pool", |b| {
        let mut here = Some((new(), BytesMut::new()));
        b.iter(|| {
            let (mut p, mut out) = here.take().unwrap();
            let chunk = input.clone();
            let job = pool.run(move || {
                p.feed(&chunk, &mut out).unwrap();
                out.clear();
                (p, out)
            });
            here = Some(rt.block_on(job).unwrap());
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = pipeline, classify, decode_only, hop
}
criterion_main!(benches);
