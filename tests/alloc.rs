//! Per-record work allocates nothing: running ten times more records through
//! the pipeline costs no more allocations (a counting global allocator, in
//! its own test binary so nothing else runs beside it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use mmp::media::Format;
use mmp::model::{ClassLabel, SharedModel};
use mmp::pipeline::{Pipeline, PipelineOptions};
use mmp::predictor::{ClassifierType, LinearModel, LogisticArtifact};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn input(format: Format, records: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..records {
        match format {
            Format::Csv if i % 10 == 0 => writeln!(v, "\"{i}.5\",-1,\"2\"").unwrap(),
            Format::Csv => writeln!(v, "{i}.5,-1,2").unwrap(),
            _ if i % 2 == 0 => writeln!(v, "[{i}.5,-1,2]").unwrap(),
            _ => writeln!(v, "{{\"features\":[{i}.5,-1,2],\"id\":\"r{i}\"}}").unwrap(),
        }
    }
    v
}

/// Allocations made while scoring `data` in 64 KiB chunks.
fn allocations(format: Format, data: &[u8]) -> usize {
    let model = Arc::new(LinearModel {
        bias: 0.5,
        weights: vec![1.0, -2.0, 0.25],
    });
    allocations_with(model, format, data)
}

/// A three-class classifier with string labels (written as
/// `label,p1,p2,p3` or `{"score":[...],"predicted_label":"..."}`).
fn classifier() -> SharedModel {
    Arc::new(
        LogisticArtifact {
            predictor_type: ClassifierType::MulticlassClassifier,
            classes: ["a,b", "c", "d"]
                .map(|c| ClassLabel::Text(c.into()))
                .to_vec(),
            bias: vec![0.0, 0.1, -0.1],
            weights: vec![
                vec![1.0, 0.0, 0.0],
                vec![0.0, 1.0, 0.0],
                vec![0.0, 0.0, 1.0],
            ],
        }
        .into_model(),
    )
}

fn allocations_with(model: SharedModel, format: Format, data: &[u8]) -> usize {
    let before = ALLOCS.load(Ordering::Relaxed);
    let mut p = Pipeline::new(model, format, format, &PipelineOptions::default());
    let mut out = BytesMut::with_capacity(1 << 20);
    for part in data.chunks(64 * 1024) {
        p.feed(part, &mut out).unwrap();
        out.clear();
    }
    p.finish(&mut out).unwrap();
    assert_eq!(
        p.stats().predictions as usize,
        data.iter().filter(|&&b| b == b'\n').count()
    );
    ALLOCS.load(Ordering::Relaxed) - before
}

// One test, not two: the counter is global, so tests running in parallel
// would count each other's allocations.
#[test]
fn allocations_do_not_grow_with_the_number_of_records() {
    for (what, classify) in [("regressor", false), ("classifier", true)] {
        for format in [Format::Csv, Format::JsonLines] {
            let small = input(format, 20_000);
            let large = input(format, 200_000);
            let run = |data: &[u8]| {
                if classify {
                    allocations_with(classifier(), format, data)
                } else {
                    allocations(format, data)
                }
            };
            let a = run(&small);
            let b = run(&large);
            eprintln!("{format} {what}: {a} allocations for 20,000 records, {b} for 200,000");
            assert!(
                b <= a + 8,
                "{format} {what}: {a} allocations for 20,000 records, {b} for 200,000"
            );
        }
    }
}
