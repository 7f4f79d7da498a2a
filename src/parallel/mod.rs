//! One stream on every core: a record-wise input (CSV or JSON lines in and
//! out) cut into ranges of whole records, the ranges scored on a pool of
//! threads, the outputs written strictly in order.
//!
//! When both formats are record-wise, a stream's output is its records'
//! outputs concatenated, so scoring it in ranges changes no byte. A range
//! ends after a newline that ends a record: for JSON lines every newline
//! (a JSON string cannot hold a raw one); for CSV a newline outside quotes,
//! found by [`Scanner`], which follows csv-core's RFC 4180 states as the CSV
//! decoder is configured (a quote opens a quoted field only at a field's
//! start; `""` inside one is a quote) and, like the decoder's line framer,
//! ends a record whose first line is over `max_record_bytes` at that line's
//! newline whatever its quotes.
//!
//! Each range runs through its own [`Pipeline`]. Its outputs depend on where
//! it starts only through error positions (a placeholder's message names
//! its record), and the record number a range starts at is known only once
//! every earlier range is decoded. So a range is first scored knowing
//! nothing of its place; the ranges that met no bad record (nearly all) are
//! written as they are, and one that did is scored again on the writing
//! thread, once the records before it are counted, with its exact start
//! ([`Pipeline::with_base`]): record, line and byte of the whole input.
//! Under `fail` the run stops there, as the sequential path does, after the
//! predictions before the bad record. (An input with bad records in most
//! ranges under `placeholder` therefore runs near one core's speed.)
//!
//! The other things the sequential decoder does at the start of a stream
//! hold too: only the first range skips a CSV header (and it is not cut
//! before it holds a record, so a header after blank lines is still the
//! header), only the first strips a UTF-8 BOM (a later range starting with
//! `EF` gets a blank line in front, which neither decoder counts, so its
//! bytes are data as they are mid-stream).
//!
//! Memory is bounded: at most `in_flight` ranges (of about `range_bytes`
//! each, plus their outputs) are between the reader and the writer; the
//! reader waits for a slot, so a slow writer stops the reading.
//!
//! Why threads of our own and not rayon: the pool here is a pipeline stage
//! with a reader, a bounded number of ranges in flight and an in-order
//! writer, which needs the writer's tokens for backpressure; rayon's
//! work-stealing adds nothing to that and its global pool would be shared
//! with other work (`mmp transform`'s). `std::thread::scope` lets the
//! threads borrow the model, options, reader and progress bar.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use bytes::BytesMut;

use crate::error::{Error, ErrorKind, Position};
use crate::media::Format;
use crate::model::{model_error, SharedModel};
use crate::pipeline::{Pipeline, PipelineOptions, Stats};
use crate::progress::Progress;

mod split;

pub(crate) use split::Handover;
pub use split::{Range, Scanner, Splitter};

/// Size of a range: large enough that a pipeline and a hop between threads
/// per range cost nothing (see the README's measurements), small enough to
/// keep a few per core in memory.
pub const RANGE_BYTES: usize = 2 << 20;

/// Bytes asked of the reader per `read` call.
const READ_BYTES: usize = 1 << 20;

/// The UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The CPUs this process may use (`available_parallelism` follows the
/// affinity mask and cgroup quotas, so `taskset` and a container's CPU limit
/// count).
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether a stream in `input` answered in `output` may be cut into ranges
/// (see the module docs): an `application/json` document is one whole.
pub fn record_wise(input: Format, output: Format) -> bool {
    input != Format::Json && output != Format::Json
}

/// How the engine runs.
#[derive(Clone, Copy, Debug)]
pub struct Engine {
    /// Scoring threads.
    pub threads: usize,
    /// Bytes of a range (a range ends at the first record end past this).
    pub range_bytes: usize,
    /// Ranges between reader and writer at most.
    pub in_flight: usize,
}

impl Engine {
    /// Every CPU the process may use, ranges of [`RANGE_BYTES`], two ranges
    /// in flight per thread (one being scored, one waiting or being
    /// written).
    pub fn new() -> Engine {
        Engine::with(available_threads(), RANGE_BYTES)
    }

    /// `threads` threads and ranges of `range_bytes` (tests use tiny ones).
    pub fn with(threads: usize, range_bytes: usize) -> Engine {
        let threads = threads.max(1);
        Engine {
            threads,
            range_bytes: range_bytes.max(1),
            in_flight: 2 * threads + 1,
        }
    }
}

impl Default for Engine {
    fn default() -> Engine {
        Engine::new()
    }
}

/// What one stream is scored with.
#[derive(Clone, Copy)]
pub struct Spec<'a> {
    /// The model.
    pub model: &'a SharedModel,
    /// Pipeline options (the CSV header applies to the first range only).
    pub opts: &'a PipelineOptions,
    /// Input format (record-wise).
    pub input: Format,
    /// Output format (record-wise).
    pub output: Format,
}

/// A range scored: its output, counters and outcome.
#[derive(Debug)]
pub(crate) struct Scored {
    /// The range's output.
    pub(crate) out: BytesMut,
    /// Its counters.
    pub(crate) stats: Stats,
    /// Its outcome: an error ends the stream after `out`.
    pub(crate) result: Result<(), Error>,
}

/// Score one range. `first`: it starts the stream. `base`: where it starts
/// in the stream, when known (the second, exact run of a range with a bad
/// record; a run without it is [`Pipeline::speculative`]). `on_placeholder`:
/// told of each placeholder written.
pub(crate) fn score_range(
    spec: &Spec<'_>,
    range: &[u8],
    first: bool,
    base: Option<Position>,
    mut out: BytesMut,
    on_placeholder: Option<fn(&Error)>,
) -> Scored {
    out.clear();
    let run = AssertUnwindSafe(|| {
        let mut opts_rest;
        let opts = if first || !spec.opts.decode.csv_header {
            spec.opts
        } else {
            opts_rest = spec.opts.clone();
            opts_rest.decode.csv_header = false;
            &opts_rest
        };
        let mut p = Pipeline::new(spec.model.clone(), spec.input, spec.output, opts);
        if let Some(sink) = on_placeholder {
            p = p.on_placeholder(sink);
        }
        if base.is_none() {
            // Not yet placed: a range with a bad record is scored again
            // ([`Ordered::turn`]), and that run reports it.
            p = p.speculative();
        }
        // A later range starting with what may be a BOM: a blank line first,
        // so the decoder takes it as data (see the module docs).
        let prefixed = !first && range.first() == Some(&BOM[0]);
        if let Some(b) = base {
            p = p.with_base(if prefixed {
                Position {
                    line: b.line - 1,
                    byte: b.byte - 1,
                    ..b
                }
            } else {
                b
            });
        }
        let result = (|| {
            if prefixed {
                p.feed(b"\n", &mut out)?;
            }
            p.feed(range, &mut out)?;
            p.finish(&mut out)
        })();
        (p.stats(), result)
    });
    // A panic in a run that is not yet placed is reported by the exact run.
    let caught = match base {
        None => crate::logging::unreported(|| catch_unwind(run)),
        Some(_) => catch_unwind(run),
    };
    match caught {
        Ok((stats, result)) => Scored { out, stats, result },
        Err(_) => Scored {
            out: BytesMut::new(),
            stats: Stats::default(),
            // Not the model's: the pipeline answers its panics itself.
            result: Err(Error::new(ErrorKind::Internal(
                "scoring a range panicked (see the log)".into(),
            ))),
        },
    }
}

/// A range to score: its number, its bytes, a buffer for its output.
type Job = (u64, Range, BytesMut);

/// A slot for a range in flight, with buffers to reuse.
type Token = (Vec<u8>, BytesMut);

/// What the reader and the workers tell the writer.
enum Event {
    /// Range `seq` is scored.
    Done(u64, Range, Scored),
    /// The reader is done: this many ranges in all, and a read error.
    End(u64, Option<Error>),
}

/// Score `reader` into `writer` on the engine's threads, strictly in order.
/// `stream`: the input may arrive slowly (a pipe or terminal), so a range
/// is cut as soon as a read comes back short and no range is being worked
/// on, not only once it is full. Like the sequential path, on a bad record
/// the predictions before it are written, then the error is returned.
pub fn run(
    engine: &Engine,
    spec: &Spec<'_>,
    mut reader: impl Read + Send + 'static,
    writer: &mut dyn Write,
    stream: bool,
    progress: Option<&Progress>,
) -> Result<Stats, Error> {
    // `None` tells a worker to end.
    let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Option<Job>>(engine.in_flight);
    let jobs_rx = Mutex::new(jobs_rx);
    let (events_tx, events) = mpsc::channel::<Event>();
    // Tokens for ranges in flight: the reader takes one per range, the
    // writer gives it back once the range is written. A token carries the
    // buffers of a written range (its input and output) for reuse, so the
    // run allocates no more once it is going.
    let (tokens_tx, tokens_rx) = mpsc::sync_channel::<Token>(engine.in_flight);
    for _ in 0..engine.in_flight {
        let _ = tokens_tx.send((Vec::new(), BytesMut::new()));
    }
    let busy = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    // The reader is a thread of its own, not joined: after a bad record
    // under `fail` (or a closed output) the answer must not wait for a read
    // that may never return (a terminal, `tail -f`); the thread ends at its
    // next read, or with the process.
    let mut split = Splitter::new(spec, engine.range_bytes);
    let reader_jobs = jobs_tx.clone();
    let reader_events = events_tx.clone();
    let (reader_busy, reader_stop) = (Arc::clone(&busy), Arc::clone(&stop));
    let read = move || {
        let (busy, stop) = (&*reader_busy, &*reader_stop);
        let mut seq = 0u64;
        let dispatch = |split: &mut Splitter, range: Range, seq: &mut u64| -> bool {
            let Ok((spare, out)) = tokens_rx.recv() else {
                return false;
            };
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            split.recycle_bytes(spare);
            busy.fetch_add(1, Ordering::Relaxed);
            let sent = reader_jobs.send(Some((*seq, range, out))).is_ok();
            *seq += 1;
            sent
        };
        let error = loop {
            let n = match split.read_from(&mut reader) {
                Ok(n) => n,
                Err(e) => break Some(Error::io("reading input", e)),
            };
            if n == 0 {
                break None;
            }
            let eager = stream && n < READ_BYTES && busy.load(Ordering::Relaxed) == 0;
            let mut go = true;
            while let Some(range) = split.take(eager, false) {
                go = dispatch(&mut split, range, &mut seq);
                if !go {
                    break;
                }
            }
            if !go {
                break None;
            }
        };
        if error.is_none() && !stop.load(Ordering::Relaxed) {
            let mut ok = true;
            while let Some(range) = split.take(false, true) {
                ok = dispatch(&mut split, range, &mut seq);
                if !ok {
                    break;
                }
            }
            let rest = split.rest();
            if ok && (!rest.is_empty() || seq == 0) {
                dispatch(&mut split, rest, &mut seq);
            }
        }
        let _ = reader_events.send(Event::End(seq, error));
    };
    std::thread::Builder::new()
        .name("mmp-read".into())
        .spawn(read)
        .map_err(|e| Error::io("starting the reading thread", e))?;

    std::thread::scope(|s| {
        for _ in 0..engine.threads {
            let events_tx = events_tx.clone();
            let (jobs_rx, stop) = (&jobs_rx, &*stop);
            s.spawn(move || loop {
                let job = jobs_rx.lock().map(|rx| rx.recv());
                let Ok(Ok(Some((seq, range, out)))) = job else {
                    return;
                };
                if stop.load(Ordering::Relaxed) {
                    // Drain the queue so the reader and the writer's `None`s
                    // are not held up.
                    continue;
                }
                let scored = score_range(spec, &range, seq == 0, None, out, None);
                if events_tx.send(Event::Done(seq, range, scored)).is_err() {
                    return;
                }
            });
        }
        drop(events_tx);

        // The writer: this thread.
        let result = write_in_order(spec, &events, writer, &busy, &tokens_tx, progress);
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        // Unblock the reader (its tokens) and end the workers.
        drop(tokens_tx);
        for _ in 0..engine.threads {
            let _ = jobs_tx.send(None);
        }
        result
    })
}

/// Write the ranges' outputs in order as they come in. See [`run`].
fn write_in_order(
    spec: &Spec<'_>,
    events: &mpsc::Receiver<Event>,
    writer: &mut dyn Write,
    busy: &AtomicUsize,
    tokens: &mpsc::SyncSender<Token>,
    progress: Option<&Progress>,
) -> Result<Stats, Error> {
    let mut order = Ordered::new();
    let mut total: Option<(u64, Option<Error>)> = None;
    loop {
        if let Some((count, _)) = &total {
            if order.written() == *count {
                let (_, error) = total.take().unwrap_or_default();
                if let Some(e) = error {
                    return Err(e);
                }
                writer.flush().map_err(|e| Error::io("writing output", e))?;
                return Ok(order.stats());
            }
        }
        let (range, scored) = match order.turn() {
            Some(Turn::Write(range, scored)) => (range, scored),
            Some(Turn::Again(again)) => again.run(spec, None),
            None => {
                match events.recv() {
                    Ok(Event::Done(seq, range, scored)) => {
                        busy.fetch_sub(1, Ordering::Relaxed);
                        order.insert(seq, range, scored);
                    }
                    Ok(Event::End(count, error)) => total = Some((count, error)),
                    // Every sender is gone with ranges missing: cannot happen
                    // (workers answer every range they take), but do not hang.
                    Err(_) => return Err(model_error("a scoring thread stopped")),
                }
                continue;
            }
        };
        writer
            .write_all(&scored.out)
            .map_err(|e| Error::io("writing output", e))?;
        let stats = order.done(&range, &scored);
        scored.result?;
        if let Some(p) = progress {
            p.add(stats.records, range.input_len());
        }
        let _ = tokens.send((range.bytes, scored.out));
    }
}

/// The in-order side of the engine, without I/O or threads: ranges scored
/// anywhere come in in any order ([`Ordered::insert`]), and go out in
/// order ([`Ordered::turn`]), a range with a bad record first scored again
/// with its exact start (see the module docs). [`run`]'s writer drives it
/// with blocking channels; `mmp serve` drives it from a request body on the
/// compute pool (`src/serve/stage.rs`).
#[derive(Debug)]
pub(crate) struct Ordered {
    waiting: BTreeMap<u64, (Range, Scored)>,
    /// The next range to go out.
    next: u64,
    /// Where it starts in the stream.
    base: Position,
    /// The counters of the ranges out.
    stats: Stats,
    /// The stream began before range 0 ([`Ordered::after`]).
    begun: bool,
}

/// What goes out next.
#[derive(Debug)]
pub(crate) enum Turn {
    /// This range, as it was scored.
    Write(Range, Scored),
    /// This range, once scored again where it starts ([`Again::run`]).
    Again(Again),
}

/// A range with a bad record, to score again knowing where it starts.
#[derive(Debug)]
pub(crate) struct Again {
    range: Range,
    first: bool,
    base: Position,
    out: BytesMut,
}

impl Again {
    /// Score it (on any thread), with `on_placeholder` told of each
    /// placeholder written: the range and its final output.
    pub(crate) fn run(
        self,
        spec: &Spec<'_>,
        on_placeholder: Option<fn(&Error)>,
    ) -> (Range, Scored) {
        let scored = score_range(
            spec,
            &self.range,
            self.first,
            Some(self.base),
            self.out,
            on_placeholder,
        );
        (self.range, scored)
    }
}

impl Ordered {
    pub(crate) fn new() -> Ordered {
        Ordered {
            waiting: BTreeMap::new(),
            next: 0,
            base: Position {
                record: 1,
                line: 1,
                byte: 0,
            },
            stats: Stats::default(),
            begun: false,
        }
    }

    /// The ranges of a stream handed over ([`Handover`]): range 0 starts
    /// at `base`, after records whose counters were `stats`.
    pub(crate) fn after(base: Position, stats: Stats) -> Ordered {
        Ordered {
            base,
            stats,
            begun: true,
            ..Ordered::new()
        }
    }

    /// Whether range `seq` starts the stream (it reads the BOM and header).
    pub(crate) fn starts_stream(&self, seq: u64) -> bool {
        seq == 0 && !self.begun
    }

    /// Range `seq` (numbered from 0 in stream order) is scored.
    pub(crate) fn insert(&mut self, seq: u64, range: Range, scored: Scored) {
        self.waiting.insert(seq, (range, scored));
    }

    /// The next range to go out, if it is in: then [`Ordered::done`] once
    /// it is out.
    pub(crate) fn turn(&mut self) -> Option<Turn> {
        let (range, scored) = self.waiting.remove(&self.next)?;
        if scored.result.is_err() || scored.stats.placeholders > 0 {
            return Some(Turn::Again(Again {
                range,
                first: self.starts_stream(self.next),
                base: self.base,
                out: scored.out,
            }));
        }
        Some(Turn::Write(range, scored))
    }

    /// The range of the last turn went out as `scored` (its final scoring):
    /// the next one starts after it. Its counters.
    pub(crate) fn done(&mut self, range: &Range, scored: &Scored) -> Stats {
        self.stats.add(scored.stats);
        self.base.record += scored.stats.records;
        self.base.line += range.input_lines();
        self.base.byte += range.input_len();
        self.next += 1;
        scored.stats
    }

    /// Ranges gone out.
    pub(crate) fn written(&self) -> u64 {
        self.next
    }

    /// The counters of the ranges gone out.
    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }
}

#[cfg(test)]
pub(crate) mod tests;
