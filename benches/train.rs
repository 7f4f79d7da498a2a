//! Throughput of `mmp train`'s single pass on one thread, in memory: bytes →
//! decoder → batches → centered least-squares sums, for rows of a label and
//! 16 features like the shared bench's data (values in [-10, 10) with 6
//! decimals), plus the sums' rank-1 update alone. The target is 150 MB/s of
//! CSV on one core; reading from disk or a FIFO adds only the copy into the
//! 1 MiB buffer.
//!
//! Run: `cargo bench --bench train`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mmp::media::Format;
use mmp::progress::Progress;
use mmp::train::fit::Moments;
use mmp::train::ingest::{Accumulate, Ingest, Stream, Sums};

mod common;

use common::Rng;

const D: usize = 16;

/// About `bytes` of rows in `format`, and how many rows that is (label
/// first, for training).
fn data(format: Format, bytes: usize) -> (Vec<u8>, u64) {
    let (data, rows) = common::rows(format, bytes, D + 1);
    (data, rows as u64)
}

fn ingest(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_ingest");
    group.measurement_time(Duration::from_secs(10));
    for (name, format) in [("csv", Format::Csv), ("jsonl", Format::JsonLines)] {
        let (bytes, rows) = data(format, 16 << 20);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut reader = Ingest::new();
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let stream = Stream {
                    channel: "training",
                    file: "bench",
                    format,
                    csv_header: false,
                };
                let mut sums = Sums::default();
                // Never prints: the interval does not pass.
                let progress = Progress::lines("bench", Duration::MAX);
                reader
                    .read(&mut &bytes[..], &stream, &mut sums, &progress)
                    .expect("bench data is valid");
                assert_eq!(sums.count(), rows);
                sums
            })
        });
    }
    group.finish();
}

fn push(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_moments");
    let mut rng = Rng(7);
    let rows: Vec<[f64; D + 1]> = (0..10_000)
        .map(|_| std::array::from_fn(|_| rng.next()))
        .collect();
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function("push_d16", |b| {
        b.iter(|| {
            let mut m = Moments::new(D);
            for r in &rows {
                m.push(&r[1..], r[0]);
            }
            assert_eq!(m.count(), rows.len() as u64);
            m
        })
    });
    group.finish();
}

criterion_group!(benches, ingest, push);
criterion_main!(benches);
