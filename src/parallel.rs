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
use std::io::{self, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use bytes::BytesMut;
use memchr::{memchr, memchr2, memchr_iter, memrchr};

use crate::error::{Error, Position};
use crate::input::read_some;
use crate::media::Format;
use crate::model::{model_error, SharedModel};
use crate::pipeline::{Pipeline, PipelineOptions, Stats};
use crate::progress::Progress;

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

/// Finds the ends of records in a stream given in pieces. See the module
/// docs.
#[derive(Debug)]
pub struct Scanner {
    csv: bool,
    max: u64,
    state: State,
    /// The next byte starts a field (CSV).
    field_start: bool,
    /// Still in the current record's first line.
    first_line: bool,
    /// Stream offset of the current record's first byte.
    record_start: u64,
    /// Stream offset of the next byte to scan.
    at: u64,
}

/// csv-core's states, as far as record ends depend on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Outside quotes.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just after a quote inside a quoted field: a second quote is a
    /// literal one, anything else ends the quoting.
    QuoteInQuoted,
}

impl Scanner {
    /// A scanner for `format` with the decoder's record limit.
    pub fn new(format: Format, max_record_bytes: usize) -> Scanner {
        Scanner {
            csv: format == Format::Csv,
            max: max_record_bytes as u64,
            state: State::Unquoted,
            field_start: true,
            first_line: true,
            record_start: 0,
            at: 0,
        }
    }

    /// Skip bytes that are not data (the BOM at the start).
    fn skip(&mut self, n: usize) {
        self.at += n as u64;
        self.record_start = self.at;
    }

    /// Count `n` bytes of the current record's first line as passed
    /// without scanning them: the [`Splitter`] drops them, and the line
    /// ends at its next newline whatever they hold.
    fn pass(&mut self, n: usize) {
        self.at += n as u64;
    }

    /// Bytes of the current record held so far, while they are all its
    /// first line (no newline yet).
    fn line_held(&self) -> Option<u64> {
        self.first_line.then(|| self.at - self.record_start)
    }

    /// Scan the next piece of the stream; returns the offset in `bytes`
    /// just past the last record end in it.
    pub fn scan(&mut self, bytes: &[u8]) -> Option<usize> {
        if !self.csv {
            let end = memrchr(b'\n', bytes).map(|i| i + 1);
            if let Some(e) = end {
                self.record_start = self.at + e as u64;
            }
            self.at += bytes.len() as u64;
            return end;
        }
        let base = self.at;
        let mut last = None;
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Unquoted => match memchr2(b'"', b'\n', &bytes[i..]) {
                    None => {
                        self.field_start = bytes[bytes.len() - 1] == b',';
                        i = bytes.len();
                    }
                    Some(k) => {
                        let j = i + k;
                        if k > 0 {
                            self.field_start = bytes[j - 1] == b',';
                        }
                        if bytes[j] == b'\n' {
                            last = Some(self.record_end(base, j));
                        } else if self.field_start {
                            self.state = State::Quoted;
                            self.field_start = false;
                        } else {
                            // A quote inside an unquoted field is data.
                            self.field_start = false;
                        }
                        i = j + 1;
                    }
                },
                State::Quoted => {
                    let rest = &bytes[i..];
                    let found = if self.first_line {
                        memchr2(b'"', b'\n', rest)
                    } else {
                        memchr(b'"', rest)
                    };
                    let Some(k) = found else {
                        i = bytes.len();
                        continue;
                    };
                    let j = i + k;
                    if bytes[j] == b'"' {
                        self.state = State::QuoteInQuoted;
                    } else if base + j as u64 - self.record_start > self.max {
                        // The framer finds the first line too long and skips
                        // to its newline, quotes or not.
                        last = Some(self.record_end(base, j));
                    } else {
                        self.first_line = false;
                    }
                    i = j + 1;
                }
                State::QuoteInQuoted => {
                    match bytes[i] {
                        b'"' => self.state = State::Quoted,
                        b'\n' => last = Some(self.record_end(base, i)),
                        b',' => {
                            self.state = State::Unquoted;
                            self.field_start = true;
                        }
                        _ => self.state = State::Unquoted,
                    }
                    i += 1;
                }
            }
        }
        self.at = base + bytes.len() as u64;
        last
    }

    /// The newline at `bytes[j]` ends a record: the next one starts after it.
    fn record_end(&mut self, base: u64, j: usize) -> usize {
        self.state = State::Unquoted;
        self.field_start = true;
        self.first_line = true;
        self.record_start = base + j as u64 + 1;
        j + 1
    }
}

/// A range of whole records cut from the stream: its bytes, and how many
/// bytes of the input between them the [`Splitter`] dropped (the middle of
/// a record over the limit, see [`Splitter`]). The bytes deref to a slice.
#[derive(Debug, Default)]
pub struct Range {
    bytes: Vec<u8>,
    dropped: u64,
}

impl Range {
    /// Bytes of the input the range stands for.
    pub fn input_len(&self) -> u64 {
        self.bytes.len() as u64 + self.dropped
    }
}

impl std::ops::Deref for Range {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Cuts a stream into ranges of whole records. See the module docs.
///
/// A record whose first line grows past `max_record_bytes` is over the
/// limit whatever follows, and the decoders' line framer reports it at its
/// start and skips it to its newline (`src/codec/lines.rs`). So only the
/// first `max_record_bytes + 1` bytes of that line are kept, enough for the
/// range's decoder to find it too long at the same place; the rest is
/// dropped as it arrives up to its newline, and the range is cut right
/// after that newline so that no later record's position in the range is
/// off. The range counts the bytes dropped, so the writer's positions for
/// later ranges stay those of the whole input; the dropped bytes hold no
/// newline, so line numbers need nothing. Without this a body with no
/// newline would be held whole; with it the splitter holds at most about
/// `range_bytes + max_record_bytes` plus one read.
#[derive(Debug)]
pub struct Splitter {
    scanner: Scanner,
    buf: Vec<u8>,
    /// The decoder's record limit.
    max: usize,
    /// Dropping the rest of a first line over the limit, to its newline.
    dropping: bool,
    /// Bytes dropped from the record over the limit not yet cut off.
    dropped: u64,
    /// The range must end here: just past the newline of a record whose
    /// bytes were dropped.
    forced: Option<usize>,
    /// Bytes of `buf` scanned.
    scanned: usize,
    /// Offset in `buf` just past its last record end (0: none).
    cut: usize,
    range_bytes: usize,
    /// The BOM check at the start is done.
    started: bool,
    /// No range was taken yet.
    first: bool,
    /// The first range must hold a record (the CSV header is skipped).
    header: bool,
    /// Buffers of earlier ranges, for reuse.
    free: Vec<Vec<u8>>,
}

impl Splitter {
    /// A splitter for `spec`'s input in ranges of about `range_bytes`.
    pub fn new(spec: &Spec<'_>, range_bytes: usize) -> Splitter {
        Splitter {
            scanner: Scanner::new(spec.input, spec.opts.decode.max_record_bytes),
            buf: Vec::new(),
            max: spec.opts.decode.max_record_bytes,
            dropping: false,
            dropped: 0,
            forced: None,
            scanned: 0,
            cut: 0,
            range_bytes: range_bytes.max(1),
            started: false,
            first: true,
            header: spec.input == Format::Csv && spec.opts.decode.csv_header,
            free: Vec::new(),
        }
    }

    /// The splitter for the rest of a stream handed over ([`Handover`]):
    /// its start (BOM, CSV header) was read already.
    pub(crate) fn continuing(mut self) -> Splitter {
        self.started = true;
        self.first = false;
        self.header = false;
        self
    }

    /// Append the next bytes of the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Read once from `reader` into the buffer: bytes read, 0 at the end.
    fn read_from(&mut self, reader: &mut dyn Read) -> io::Result<usize> {
        let len = self.buf.len();
        self.buf.resize(len + READ_BYTES, 0);
        let n = read_some(reader, &mut self.buf[len..]);
        self.buf.truncate(len + *n.as_ref().unwrap_or(&0));
        n
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Hand back a range's buffer for reuse.
    pub fn recycle(&mut self, range: Range) {
        self.recycle_bytes(range.bytes);
    }

    fn recycle_bytes(&mut self, mut range: Vec<u8>) {
        if self.free.len() < 4 {
            range.clear();
            self.free.push(range);
        }
    }

    /// The next range, if one of at least `range_bytes` is complete (or,
    /// with `eager`, any complete one). `eof`: no more bytes will come.
    pub fn take(&mut self, eager: bool, eof: bool) -> Option<Range> {
        if !self.started {
            if self.buf.len() < BOM.len() && !eof && BOM.starts_with(&self.buf) {
                return None;
            }
            self.started = true;
            if self.buf.starts_with(BOM) {
                self.scanner.skip(BOM.len());
                self.scanned = BOM.len();
            }
        }
        self.scan();
        if let Some(end) = self.forced.take() {
            let dropped = std::mem::take(&mut self.dropped);
            return Some(self.cut_at(end, dropped));
        }
        let c = self.cut;
        if c == 0 || (!eager && self.buf.len() < self.range_bytes) {
            return None;
        }
        if self.first && self.header {
            let data = self.buf[..c].strip_prefix(BOM).unwrap_or(&self.buf[..c]);
            if data.iter().all(|&b| b == b'\n' || b == b'\r') {
                return None;
            }
        }
        // A record being dropped is after the cut: its count stays.
        Some(self.cut_at(c, 0))
    }

    /// Scan the bytes pushed since the last call, dropping what is over the
    /// limit (see the type's docs).
    fn scan(&mut self) {
        while self.scanned < self.buf.len() && self.forced.is_none() {
            if self.dropping {
                let at = self.scanned;
                let Some(i) = memchr(b'\n', &self.buf[at..]) else {
                    self.pass(self.buf.len() - at);
                    self.buf.truncate(at);
                    return;
                };
                self.pass(i);
                self.buf.drain(at..at + i);
                self.dropping = false;
                // The newline ends the record whatever the scanner's state
                // (its first line is over the limit).
                let end = self.scanner.scan(&self.buf[at..=at]);
                debug_assert_eq!(end, Some(1), "an over-long first line ends at its newline");
                self.scanned = at + 1;
                self.cut = self.scanned;
                self.forced = Some(self.scanned);
                return;
            }
            if let Some(r) = self.scanner.scan(&self.buf[self.scanned..]) {
                self.cut = self.scanned + r;
            }
            self.scanned = self.buf.len();
            match self.scanner.line_held() {
                Some(held) if held > self.max as u64 => {
                    // The line starts `held` bytes back (all in `buf`: the
                    // line is not cut and nothing of it was dropped yet).
                    let keep = self.buf.len() - held as usize + self.max + 1;
                    self.dropped += (self.buf.len() - keep) as u64;
                    self.buf.truncate(keep);
                    self.scanned = keep;
                    self.dropping = true;
                }
                _ => {}
            }
        }
    }

    /// `n` bytes of the record over the limit dropped unscanned.
    fn pass(&mut self, n: usize) {
        self.scanner.pass(n);
        self.dropped += n as u64;
    }

    /// The range `buf[..c]`, standing for `dropped` more bytes of input.
    fn cut_at(&mut self, c: usize, dropped: u64) -> Range {
        let mut next = self.free.pop().unwrap_or_default();
        next.extend_from_slice(&self.buf[c..]);
        let mut bytes = std::mem::replace(&mut self.buf, next);
        bytes.truncate(c);
        self.scanned -= c;
        self.cut = 0;
        self.first = false;
        Range { bytes, dropped }
    }

    /// End of the stream: what is left, as the last range (may be empty).
    pub fn rest(&mut self) -> Range {
        Range {
            bytes: std::mem::take(&mut self.buf),
            dropped: std::mem::take(&mut self.dropped),
        }
    }
}

/// The start of a stream scored in one pipeline, watched for the first
/// record end at or past `from` bytes: there the stream can be handed
/// over, the rest cut into ranges that count on from where it ends
/// ([`Splitter::continuing`], [`Ordered::after`]). `mmp serve` scores a
/// chunked body so: its size is not known up front, and a small one must
/// not pay for the ranges (`src/serve/stage.rs`). What the start decides
/// for the whole stream is settled in it: a BOM is skipped, and a CSV
/// header is read before the handover (the splitter's first range has the
/// same rule).
#[derive(Debug)]
pub(crate) struct Handover {
    scanner: Scanner,
    from: u64,
    /// Bytes of the stream seen (all scored in the pipeline).
    seen: u64,
    /// Newlines in them.
    lines: u64,
    /// The first bytes, while they may be a BOM cut between pieces.
    head: Vec<u8>,
    /// The BOM check is done.
    started: bool,
    /// A CSV header is still to come.
    header: bool,
}

impl Handover {
    /// Watch `spec`'s input for a handover at `from` bytes or after.
    pub(crate) fn new(spec: &Spec<'_>, from: u64) -> Handover {
        Handover {
            scanner: Scanner::new(spec.input, spec.opts.decode.max_record_bytes),
            from,
            seen: 0,
            lines: 0,
            head: Vec::new(),
            started: false,
            header: spec.input == Format::Csv && spec.opts.decode.csv_header,
        }
    }

    /// The next piece of the stream: `Some(end)` if the stream is handed
    /// over after `bytes[..end]` (the pipeline gets that much and is
    /// finished, ranges get the rest), `None` if all of it is for the
    /// pipeline.
    pub(crate) fn see(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut data = 0;
        if !self.started {
            let take = (BOM.len() - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            if self.head.len() < BOM.len() && BOM.starts_with(&self.head) {
                self.seen += bytes.len() as u64;
                return None;
            }
            self.started = true;
            if self.head == BOM {
                self.scanner.skip(BOM.len());
                data = take;
            } else {
                // The bytes of earlier pieces are data after all (two at
                // most, and no newline among them).
                let earlier = self.head.len() - take;
                self.scanner.scan(&self.head[..earlier]);
                self.header &= earlier == 0;
            }
        }
        let end = self.scanner.scan(&bytes[data..]).map(|e| e + data);
        // A header is read once a record starts: its end is a later one.
        let mut ready = true;
        if self.header {
            match bytes[data..].iter().position(|&b| b != b'\n' && b != b'\r') {
                Some(i) => {
                    self.header = false;
                    ready = end.is_some_and(|e| e > data + i);
                }
                None => ready = false,
            }
        }
        match end {
            Some(e) if ready && self.seen + bytes.len() as u64 >= self.from => {
                self.seen += e as u64;
                self.lines += memchr_iter(b'\n', &bytes[..e]).count() as u64;
                Some(e)
            }
            _ => {
                self.seen += bytes.len() as u64;
                self.lines += memchr_iter(b'\n', bytes).count() as u64;
                None
            }
        }
    }

    /// Where the rest starts, after a handover whose pipeline decoded
    /// `records` records: the base of the ranges ([`Ordered::after`]).
    pub(crate) fn base(&self, records: u64) -> Position {
        Position {
            record: 1 + records,
            line: 1 + self.lines,
            byte: self.seen,
        }
    }
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
/// record). `on_placeholder`: told of each placeholder written.
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
    match catch_unwind(run) {
        Ok((stats, result)) => Scored { out, stats, result },
        Err(_) => Scored {
            out: BytesMut::new(),
            stats: Stats::default(),
            result: Err(model_error("the model panicked")),
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
        // The bytes a range dropped hold no newline (see [`Splitter`]).
        self.base.line += memchr_iter(b'\n', range).count() as u64;
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
pub(crate) mod tests {
    use super::*;
    use crate::codec::tests::{opts, partial_bom_opts, width, PARTIAL_BOM};
    use crate::codec::DecodeOptions;
    use crate::pipeline::ErrorPolicy;
    use crate::record::{Rows, Shape};
    use Format::{Csv, JsonLines};

    /// The sum of a record's features, for any width or a fixed one (so
    /// the decoders' shape checks run as in their own tests).
    struct Sum(Option<usize>);

    impl crate::model::Model for Sum {
        fn num_features(&self) -> Option<usize> {
            self.0
        }

        fn predict(&self, rows: Rows<'_>, out: &mut Vec<f64>) -> Result<(), Error> {
            out.extend(rows.iter().map(|r| r.iter().sum::<f64>()));
            Ok(())
        }
    }

    /// A reader handing out `piece` bytes per read.
    struct Pieces(Vec<u8>, usize, usize);

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let rest = &self.0[self.2..];
            let n = rest.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.2 += n;
            Ok(n)
        }
    }

    fn model_for(opts: &DecodeOptions) -> SharedModel {
        std::sync::Arc::new(Sum(match opts.shape {
            Shape::Any => None,
            Shape::Features(n) => Some(n),
        }))
    }

    /// Output and error text of the sequential path: one pipeline.
    fn sequential(spec: &Spec<'_>, input: &[u8]) -> (Vec<u8>, Option<String>) {
        let mut p = Pipeline::new(spec.model.clone(), spec.input, spec.output, spec.opts);
        let mut out = BytesMut::new();
        let r = p.feed(input, &mut out).and_then(|()| p.finish(&mut out));
        (out.to_vec(), r.err().map(|e| e.to_string()))
    }

    fn parallel(
        spec: &Spec<'_>,
        engine: &Engine,
        input: &[u8],
        piece: usize,
        stream: bool,
    ) -> (Vec<u8>, Option<String>) {
        let mut out = Vec::new();
        let reader = Pieces(input.to_vec(), piece, 0);
        let r = run(engine, spec, reader, &mut out, stream, None);
        (out, r.err().map(|e| e.to_string()))
    }

    /// `input` through the engine with ranges of every size from 1 byte to
    /// the whole (so a range starts at every record end), read in pieces of
    /// 1, 3 and all bytes, as a file and as a stream, under both policies
    /// and both record-wise outputs: the same bytes and error as the
    /// sequential path.
    fn same_as_sequential(name: &str, format: Format, decode: &DecodeOptions, input: &[u8]) {
        each_spec(format, decode, input, |spec, want, label| {
            for range in 1..=input.len() + 1 {
                let engine = Engine::with(2, range);
                for piece in [1, 3, input.len().max(1)] {
                    for stream in [false, true] {
                        let got = parallel(spec, &engine, input, piece, stream);
                        assert_eq!(
                            &got, want,
                            "{name}: {label}, ranges of {range}, pieces of {piece}, stream {stream}"
                        );
                    }
                }
            }
        });
    }

    /// Call `f` under both policies and to both record-wise outputs of a
    /// case, with the spec, the sequential path's answer to `input` and a
    /// label for messages.
    pub(crate) fn each_spec(
        format: Format,
        decode: &DecodeOptions,
        input: &[u8],
        mut f: impl FnMut(&Spec<'_>, &(Vec<u8>, Option<String>), &str),
    ) {
        let model = model_for(decode);
        for policy in [ErrorPolicy::Fail, ErrorPolicy::Placeholder] {
            let opts = PipelineOptions {
                decode: decode.clone(),
                policy,
                batch_records: 2,
            };
            for output in [Csv, JsonLines] {
                let spec = Spec {
                    model: &model,
                    opts: &opts,
                    input: format,
                    output,
                };
                let want = sequential(&spec, input);
                f(&spec, &want, &format!("{policy:?} to {output:?}"));
            }
        }
    }

    /// Every CSV and JSON-lines case of the decoders' own tests
    /// (`src/codec/tests.rs`), and a few more on quotes, BOMs and headers
    /// at range starts.
    #[test]
    fn every_decoder_case_is_the_same_through_ranges() {
        for (name, format, decode, input) in &decoder_cases() {
            same_as_sequential(name, *format, decode, input);
        }
    }

    /// A case: its name, input format, decoder options and input.
    pub(crate) type Case = (&'static str, Format, DecodeOptions, &'static [u8]);

    /// Every CSV and JSON-lines case of the decoders' own tests
    /// (`src/codec/tests.rs`), and a few more on quotes, BOMs and headers
    /// at range starts; `src/serve/stage.rs`'s tests run them too.
    pub(crate) fn decoder_cases() -> Vec<Case> {
        vec![
            ("csv_lf", Csv, width(2), &b"1,2\n3,4\n"[..]),
            ("csv_crlf", Csv, width(2), &b"1,2\r\n3,4\r\n"[..]),
            ("csv_no_final_newline", Csv, width(2), &b"1,2\n3,4"[..]),
            (
                "csv_no_final_newline_crlf",
                Csv,
                width(2),
                &b"1,2\r\n3,4\r"[..],
            ),
            ("csv_bom", Csv, width(2), &b"\xEF\xBB\xBF1,2\n3,4\n"[..]),
            (
                "csv_bom_then_quote",
                Csv,
                width(2),
                &b"\xEF\xBB\xBF\"1\",2\n"[..],
            ),
            ("csv_only_bom", Csv, width(2), &b"\xEF\xBB\xBF"[..]),
            ("csv_empty", Csv, width(2), &b""[..]),
            (
                "csv_blank_lines_skipped",
                Csv,
                width(2),
                &b"\n\r\n1,2\n\n\r\n3,4\n\n"[..],
            ),
            (
                "csv_spaces_around_numbers",
                Csv,
                width(2),
                &b" 1 ,\t2 \n"[..],
            ),
            (
                "csv_quoted_fields",
                Csv,
                width(2),
                &b"\"1\",2\n3,\"4\"\n\"5\",\"6\""[..],
            ),
            (
                "csv_quoted_crlf",
                Csv,
                width(2),
                &b"\"1\",\"2\"\r\n3,4\r\n"[..],
            ),
            (
                "csv_quoted_newline_inside_field",
                Csv,
                width(2),
                &b"\"1\n\",2\n3,\"\r\n4\"\n5,6\n"[..],
            ),
            (
                "csv_numbers_of_every_form",
                Csv,
                width(6),
                &b"1,-2.5,+3e2,.5,1E-3,0\n"[..],
            ),
            ("csv_any_width", Csv, opts(), &b"1\n1,2,3\n"[..]),
            (
                "csv_header_skipped",
                Csv,
                DecodeOptions {
                    csv_header: true,
                    ..width(2)
                },
                &b"\na,b\n1,2\n"[..],
            ),
            (
                "csv_quoted_header_skipped",
                Csv,
                DecodeOptions {
                    csv_header: true,
                    ..width(2)
                },
                &b"\"a\",\"b,c\"\n1,2\n"[..],
            ),
            (
                "csv_header_not_skipped_by_default",
                Csv,
                width(2),
                &b"a,b\n1,2\n"[..],
            ),
            (
                "csv_label_first_column",
                Csv,
                DecodeOptions {
                    label: true,
                    ..width(2)
                },
                &b"9,1,2\n8,3,4\n"[..],
            ),
            (
                "csv_field_count",
                Csv,
                width(2),
                &b"1,2\n\n3\n4,5,6\n7,8\n"[..],
            ),
            (
                "csv_field_count_preferred_over_bad_field",
                Csv,
                width(3),
                &b"a,b\n"[..],
            ),
            ("csv_empty_field", Csv, width(3), &b"1,,3\n"[..]),
            ("csv_not_a_number", Csv, width(2), &b"1,2\n1,x7\n"[..]),
            (
                "csv_non_finite",
                Csv,
                width(3),
                &b"nan,1,2\n1,inf,2\n1,2,1e400\n"[..],
            ),
            (
                "csv_invalid_utf8",
                Csv,
                width(2),
                &b"1,\xff\xfe\n1,\xc0\xaf\n"[..],
            ),
            (
                "csv_utf8_split_across_chunks_is_still_an_error_not_a_panic",
                Csv,
                width(1),
                "é\n".as_bytes(),
            ),
            (
                "csv_doubled_quote_is_a_literal_quote",
                Csv,
                width(2),
                &b"\"1\"\"\",2\n"[..],
            ),
            (
                "csv_unterminated_quote",
                Csv,
                width(2),
                &b"1,2\n3,\"4\n5,6\n"[..],
            ),
            (
                "csv_unterminated_quote_without_newline",
                Csv,
                width(2),
                &b"3,\"4"[..],
            ),
            (
                "csv_record_too_large_then_resync",
                Csv,
                DecodeOptions {
                    max_record_bytes: 8,
                    ..width(2)
                },
                &b"1,2\n1111111111,2\n3,4\n55555555555555555"[..],
            ),
            (
                "csv_quoted_record_too_large_then_resync",
                Csv,
                DecodeOptions {
                    max_record_bytes: 8,
                    ..width(2)
                },
                &b"\"1\n2\n3\n4\n5\n6\n7\",2\n3,4\n"[..],
            ),
            (
                "jsonl_arrays_and_objects",
                JsonLines,
                width(2),
                &b"[1,2]\n{\"features\":[3,4],\"id\":\"x\"}\n{\"id\":[1,{}],\"features\":[5, 6.5]}"
                    [..],
            ),
            (
                "jsonl_crlf_blank_lines_bom_and_spaces",
                JsonLines,
                width(2),
                &b"\xEF\xBB\xBF [1,2] \r\n\r\n\n\t[3,4]\r\n"[..],
            ),
            (
                "jsonl_label",
                JsonLines,
                DecodeOptions {
                    label: true,
                    ..width(2)
                },
                &b"{\"label\":1,\"features\":[1,2]}\n[0,3,4]\n{\"features\":[1,2]}\n"[..],
            ),
            (
                "jsonl_errors",
                JsonLines,
                width(2),
                &b"[1,\"a\"]\n{\"x\":1}\n[1,2\n[1]\n7\n[1,1e400]\n[1,2]\n"[..],
            ),
            (
                "jsonl_invalid_utf8_even_in_an_ignored_field",
                JsonLines,
                width(2),
                &b"{\"id\":\"\xe9\",\"features\":[1,2]}\n[3,4]\n"[..],
            ),
            (
                "jsonl_trailing_garbage_is_invalid",
                JsonLines,
                width(2),
                &b"[1,2] [3,4]\n"[..],
            ),
            (
                "jsonl_line_too_large",
                JsonLines,
                DecodeOptions {
                    max_record_bytes: 6,
                    ..width(2)
                },
                &b"[1,2]\n[1.0000,2]\n[3,4]"[..],
            ),
            (
                "csv_partial_bom_keeps_positions",
                Csv,
                partial_bom_opts(),
                PARTIAL_BOM,
            ),
            (
                "jsonl_partial_bom_keeps_positions",
                JsonLines,
                DecodeOptions {
                    max_record_bytes: 1,
                    stop_on_error: true,
                    ..width(2)
                },
                &b"\xef\xbb[1,2]\n[3,4]\n"[..],
            ),
            // Quotes opening only at a field's start; a quote after a
            // closing one; a quoted newline right at a cut.
            (
                "quote_mid_field",
                Csv,
                width(2),
                &b"1\"2,3\n4,5\"\n6,7\n"[..],
            ),
            (
                "quote_after_close",
                Csv,
                width(2),
                &b"\"1\"2\",3\n\"4\n\",5\n"[..],
            ),
            (
                "quoted_newlines",
                Csv,
                width(2),
                &b"\"1\n\n\",2\n\"\"\"\n\",3\n4,5\n"[..],
            ),
            // A BOM (whole or in part) at the start of a later line is data.
            (
                "bom_mid_stream",
                Csv,
                width(2),
                &b"1,2\n\xEF\xBB\xBF3,4\n\xEF\xBB5,6\n\xEF7,8\n"[..],
            ),
            // ... so a quote after it is data too, not a quoted field's.
            (
                "bom_mid_stream_then_quote",
                Csv,
                width(2),
                &b"1,2\n\xEF\xBB\xBF\"3\n\",4\n5,6\n"[..],
            ),
            (
                "bom_mid_stream_jsonl",
                JsonLines,
                width(2),
                &b"[1,2]\n\xEF\xBB\xBF[3,4]\n[5,6]\n"[..],
            ),
            // The header after blank lines, and quoted over two lines.
            (
                "header_after_blank_lines",
                Csv,
                DecodeOptions {
                    csv_header: true,
                    ..width(2)
                },
                &b"\xEF\xBB\xBF\r\n\n\"a\nb\",c\n1,2\n3,4\n"[..],
            ),
            // A first line over the limit inside an open quote.
            (
                "too_long_quoted_first_line",
                Csv,
                DecodeOptions {
                    max_record_bytes: 4,
                    ..width(2)
                },
                &b"1,2\n\"0123456789\n1,2\n\"3\",4\n"[..],
            ),
            // Lines far over the limit (one with a quote that never closes,
            // one at the end without a newline) with bad records after
            // them, whose positions count the bytes the splitter dropped.
            (
                "csv_far_over_the_limit",
                Csv,
                over_limit(Csv),
                OVER_LIMIT_CSV,
            ),
            (
                "jsonl_far_over_the_limit",
                JsonLines,
                over_limit(JsonLines),
                OVER_LIMIT_JSONL,
            ),
            // A prediction that is not finite, between good ones.
            (
                "non_finite_prediction",
                Csv,
                width(2),
                &b"1,2\n1e308,1e308\n3,4\n"[..],
            ),
        ]
    }

    /// CSV with records far over [`over_limit`]'s limit.
    const OVER_LIMIT_CSV: &[u8] = b"1,2\n\"1111111111111111111111111111111111,2\n3,4\n\
        1,x\n22222222222222222222222222222222222222\n\n5,6\n1,y\n3333333333333333333333333";

    /// JSON lines with records far over [`over_limit`]'s limit.
    const OVER_LIMIT_JSONL: &[u8] = b"[1,2]\n[1,111111111111111111111111111111111,2]\n[3,4]\n\
        [1,\"x\"]\n[2222222222222222222222222222222222222]\n\n[5,6]\n[7]\n[333333333333333333";

    /// A small record limit for [`OVER_LIMIT_CSV`] and [`OVER_LIMIT_JSONL`].
    fn over_limit(format: Format) -> DecodeOptions {
        DecodeOptions {
            max_record_bytes: if format == Csv { 8 } else { 6 },
            ..width(2)
        }
    }

    /// Records far over the limit, read in pieces of every size up to the
    /// whole, in ranges of a few sizes: the same bytes and error (message
    /// and position) as the sequential path.
    #[test]
    fn records_far_over_the_limit_read_in_pieces_of_every_size() {
        for (format, input) in [(Csv, OVER_LIMIT_CSV), (JsonLines, OVER_LIMIT_JSONL)] {
            each_spec(format, &over_limit(format), input, |spec, want, label| {
                for range in [1, 5, 16, 64, input.len()] {
                    let engine = Engine::with(2, range);
                    for piece in 1..=input.len() {
                        for stream in [false, true] {
                            let got = parallel(spec, &engine, input, piece, stream);
                            assert_eq!(
                                &got, want,
                                "{format:?}: {label}, ranges of {range}, pieces of {piece}"
                            );
                        }
                    }
                }
            });
        }
    }

    /// A stream with no newline for many times the limit, then records:
    /// the splitter never holds more than a range and the limit's worth,
    /// and the ranges stand for every byte of the input.
    #[test]
    fn splitter_holds_at_most_a_range_and_a_record() {
        let max = 16;
        let mut input = b"[1,2]\n[3,".to_vec();
        input.extend(std::iter::repeat_n(b'4', 50 * max));
        input.extend_from_slice(b"]\n[5,6]\n[7,");
        input.extend(std::iter::repeat_n(b'8', 50 * max));
        with_limit(JsonLines, max, |spec| {
            for range in [1, 8, 64] {
                for piece in [1, 7, max, 3 * max, input.len()] {
                    let mut s = Splitter::new(spec, range);
                    let mut total = 0;
                    for p in input.chunks(piece) {
                        s.push(p);
                        while let Some(r) = s.take(false, false) {
                            total += r.input_len();
                        }
                        assert!(
                            s.len() <= range + max + 1,
                            "holds {} (ranges of {range}, pieces of {piece})",
                            s.len()
                        );
                    }
                    while let Some(r) = s.take(false, true) {
                        total += r.input_len();
                    }
                    total += s.rest().input_len();
                    assert_eq!(
                        total,
                        input.len() as u64,
                        "ranges of {range}, pieces of {piece}"
                    );
                }
            }
        });
    }

    /// Every record-wise golden fixture, in both record-wise outputs, with
    /// ranges of every size: the expected files byte for byte.
    #[test]
    fn golden_fixtures_through_ranges_of_every_size() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let model = crate::model::load(&root.join("model")).unwrap();
        let opts = PipelineOptions::default();
        let mut seen = 0;
        for entry in std::fs::read_dir(root.join("golden")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let input = match path.extension().and_then(|e| e.to_str()) {
                Some("csv") if !name.contains(".expected.") => Csv,
                Some("jsonl") if !name.contains(".expected.") => JsonLines,
                _ => continue,
            };
            let data = std::fs::read(&path).unwrap();
            for (output, ext) in [(Csv, "csv"), (JsonLines, "jsonl")] {
                let want =
                    std::fs::read(root.join("golden").join(format!("{name}.expected.{ext}")))
                        .unwrap();
                let spec = Spec {
                    model: &model,
                    opts: &opts,
                    input,
                    output,
                };
                for range in 1..=data.len() + 1 {
                    for stream in [false, true] {
                        let got = parallel(&spec, &Engine::with(2, range), &data, 5, stream);
                        assert_eq!(
                            got,
                            (want.clone(), None),
                            "{name} as {ext}, ranges of {range}"
                        );
                    }
                }
                seen += 1;
            }
        }
        assert!(seen >= 16, "the golden fixtures were found ({seen})");
    }

    /// Run `f` on a spec for `format` in and out with a record limit of
    /// `max` bytes.
    fn with_limit<R>(format: Format, max: usize, f: impl FnOnce(&Spec<'_>) -> R) -> R {
        let mut opts = PipelineOptions::default();
        opts.decode.max_record_bytes = max;
        let model = model_for(&opts.decode);
        f(&Spec {
            model: &model,
            opts: &opts,
            input: format,
            output: format,
        })
    }

    /// The ranges `input` is cut into, fed in pieces of `piece` bytes.
    fn ranges(
        format: Format,
        input: &[u8],
        range: usize,
        piece: usize,
        max: usize,
    ) -> Vec<Vec<u8>> {
        with_limit(format, max, |spec| {
            let mut s = Splitter::new(spec, range);
            let mut out = Vec::new();
            for p in input.chunks(piece.max(1)) {
                s.push(p);
                while let Some(r) = s.take(false, false) {
                    out.push(r.to_vec());
                }
            }
            while let Some(r) = s.take(false, true) {
                out.push(r.to_vec());
            }
            out.push(s.rest().to_vec());
            out
        })
    }

    #[test]
    fn csv_cuts_only_at_record_ends() {
        // Records: `a,"x\ny"`, `b""c,"d""\n"`, `"e"f`, `g`.
        let input = b"a,\"x\ny\"\nb\"\"c,\"d\"\"\n\"\n\"e\"f\ng\n";
        let ends = [8usize, 20, 25, 27];
        for piece in 1..=input.len() {
            let got = ranges(Format::Csv, input, 1, piece, 1 << 20);
            let mut at = 0;
            for r in &got[..got.len() - 1] {
                at += r.len();
                assert!(ends.contains(&at), "cut at {at} (piece {piece}): {got:?}");
            }
            assert_eq!(got.concat(), input.to_vec());
        }
    }

    #[test]
    fn csv_too_long_first_line_ends_at_its_newline() {
        // The framer skips a first line over the limit to its newline, so
        // the record after it starts there even inside an open quote. Of
        // the line only the limit's worth and a byte is kept, then its end.
        let input = b"\"0123456789\n1,2\n";
        let got = ranges(Format::Csv, input, 1, 1, 4);
        assert_eq!(got[0], b"\"0123\n".to_vec());
        assert_eq!(got[1], b"1,2\n".to_vec());
    }
}
