//! A request's [`Pipeline`], run where its model wants: on the runtime's
//! thread for a cheap model, on the compute pool ([`crate::compute`]) for an
//! expensive one ([`crate::model::Model::offload`]).
//!
//! For an expensive model each step (one body chunk or WebSocket message
//! decoded, predicted and encoded, or the end of the input) moves the
//! pipeline and the output buffer to the pool and back: one hop a step,
//! with nothing shared, so no lock is taken. The caller starts one step at a
//! time and waits for it before reading more of the body, so backpressure,
//! ordering, errors and positions are those of the inline path, which is
//! the same code ([`Pipeline::feed`], [`Pipeline::finish`]) on another
//! thread. A cheap model's steps run at once, as before: a hop costs more
//! than its prediction.
//!
//! A large record-wise body (Content-Length at least `MMP_PARALLEL_FROM`)
//! runs as [`Ranges`] instead: cut into ranges of whole records as it
//! arrives, the ranges scored on the same pool at once, their outputs put
//! back in order by [`crate::parallel`]'s [`Ordered`] (the engine of
//! `mmp score`, with its rule for bad records: a range holding one is
//! scored again with its exact start once the records before it are
//! counted, so positions, `fail` and `placeholder` are the sequential
//! path's). At most `in_flight` ranges are between the body and the
//! response: while they are all out, no more of the body is read, so
//! backpressure still reaches the client and memory stays bounded.
//!
//! A chunked body's size is not known up front, so it starts as one
//! pipeline, inline or on the pool as its model wants ([`Stage::watched`]),
//! while [`Handover`] finds record ends; at the first one past
//! `MMP_PARALLEL_FROM` bytes the pipeline is finished and the rest goes to
//! ranges that count on from there: the pipeline was range 0, scored with
//! its exact start.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};

use super::invocations::{FIRST_FLUSH, FLUSH};
use crate::compute::{Pool, Task};
use crate::error::Error;
use crate::media::Format;
use crate::model::{model_error, SharedModel};
use crate::parallel::{score_range, Handover, Ordered, Range, Scored, Spec, Splitter, Turn};
use crate::pipeline::{Pipeline, PipelineOptions, Stats};

/// What comes back from the pool: the pipeline, the output, the result.
type Hop = (Pipeline, BytesMut, Result<(), Error>);

/// Where a request's input is scored: one pipeline, or ranges at once.
// The small variant is the large one: a small request's pipeline stays in
// place (boxing it would cost an allocation per request), a large body's
// ranges are boxed.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Stage {
    /// One pipeline, inline or on the pool.
    One(One),
    /// A large body in ranges on the pool (boxed: the small-request path
    /// moves the stage with the request's future and must not grow).
    Ranges(Box<Ranges>),
}

/// A pipeline and where its steps run.
pub(crate) struct One {
    /// The pipeline; `None` while a step runs on the pool (or after one
    /// panicked there).
    here: Option<Pipeline>,
    /// The pool, for an expensive model; `None`: run inline.
    pool: Option<Arc<Pool>>,
    /// The step on the pool.
    away: Option<Task<Hop>>,
    /// The counters as of the last step that came back.
    stats: Stats,
    /// A chunked body's start, watched for where it goes to ranges (boxed:
    /// most requests have none).
    watch: Option<Box<Watch>>,
}

/// A record-wise body of unknown size, scored on its one pipeline while
/// [`Handover`] watches for where the rest goes to ranges, and what those
/// ranges are made with.
struct Watch {
    handover: Handover,
    scoring: Scoring,
    pool: Arc<Pool>,
    range_bytes: usize,
    in_flight: usize,
    /// The body after the head, while the head's last step is on the pool
    /// (an expensive model's pipeline).
    rest: Option<Bytes>,
}

impl Stage {
    /// `pipeline`, run on `pool` if given, else inline.
    #[inline]
    pub(crate) fn new(pipeline: Pipeline, pool: Option<Arc<Pool>>) -> Stage {
        Stage::One(One {
            stats: pipeline.stats(),
            here: Some(pipeline),
            pool,
            away: None,
            watch: None,
        })
    }

    /// This stage for the first `from` bytes or so, then (at a record
    /// end) the rest as [`Stage::ranges`] would run it on `pool`: a large
    /// chunked body on every core, a small one as before.
    pub(crate) fn watched(
        mut self,
        scoring: Scoring,
        from: u64,
        pool: Arc<Pool>,
        range_bytes: usize,
        in_flight: usize,
    ) -> Stage {
        let handover = Handover::new(&scoring.spec(), from);
        if let Stage::One(one) = &mut self {
            one.watch = Some(Box::new(Watch {
                handover,
                scoring,
                pool,
                range_bytes,
                in_flight,
                rest: None,
            }));
        }
        self
    }

    /// Run a one-pipeline stage's next steps on `pool` (`None`: inline),
    /// chosen step by step (a WebSocket session's large messages on the
    /// pool, its small ones inline). Between steps only; a watched or
    /// ranged stage keeps its own.
    pub(crate) fn run_on(&mut self, pool: Option<Arc<Pool>>) {
        if let Stage::One(one) = self {
            if one.away.is_none() && one.watch.is_none() {
                one.pool = pool;
            }
        }
    }

    /// Counters so far (while a step is away: before it).
    #[inline]
    pub(crate) fn stats(&self) -> Stats {
        match self {
            Stage::One(one) => one.stats(),
            Stage::Ranges(r) => r.order.stats(),
        }
    }

    /// Feed all of `buf`, appending to `out`: done (`Ready`), or away
    /// (`Pending`: then [`Stage::poll_back`] until it is back).
    #[inline]
    pub(crate) fn feed(&mut self, buf: impl Buf, out: &mut BytesMut) -> Poll<Result<(), Error>> {
        match self {
            Stage::One(one) if one.watch.is_some() => self.feed_watched(buf, out),
            Stage::One(one) => one.feed(buf, out),
            Stage::Ranges(r) => r.feed(buf),
        }
    }

    /// [`Stage::feed`] while the start of a chunked body is watched: the
    /// pipeline gets it up to the handover, the rest goes to ranges.
    #[cold]
    fn feed_watched(&mut self, mut buf: impl Buf, out: &mut BytesMut) -> Poll<Result<(), Error>> {
        let Stage::One(one) = self else {
            return Poll::Ready(Err(lost()));
        };
        let data = buf.copy_to_bytes(buf.remaining());
        let Some(watch) = one.watch.as_mut() else {
            return Poll::Ready(Err(lost()));
        };
        let Some(end) = watch.handover.see(&data) else {
            return one.feed(data, out);
        };
        if one.pool.is_some() {
            // The head's last step and the end on the pool, as one step;
            // the rest goes to ranges once it is back (`poll_back`).
            watch.rest = Some(data.slice(end..));
            let head = data.slice(..end);
            return one.send(out, move |p, out| {
                p.feed(&head, out)?;
                p.finish(out)
            });
        }
        for step in [one.feed(data.slice(..end), out), one.finish(out)] {
            if let Poll::Ready(Err(e)) = step {
                return Poll::Ready(Err(e));
            }
        }
        self.hand_over(data.slice(end..), out)
    }

    /// The head of a watched body is scored: `rest` and what follows go to
    /// ranges that count on from where it ended.
    fn hand_over(&mut self, rest: Bytes, out: &mut BytesMut) -> Poll<Result<(), Error>> {
        let Stage::One(one) = self else {
            return Poll::Ready(Err(lost()));
        };
        let (Some(watch), Some(p)) = (one.watch.take(), one.here.as_ref()) else {
            return Poll::Ready(Err(lost()));
        };
        let stats = p.stats();
        let Watch {
            handover,
            scoring,
            pool,
            range_bytes,
            in_flight,
            rest: _,
        } = *watch;
        let mut ranges = Ranges::new(scoring, pool, range_bytes, in_flight);
        ranges.split = ranges.split.continuing();
        ranges.order = Ordered::after(handover.base(stats.records), stats);
        *self = Stage::Ranges(Box::new(ranges));
        self.feed(rest, out)
    }

    /// End of input, as [`Stage::feed`].
    #[inline]
    pub(crate) fn finish(&mut self, out: &mut BytesMut) -> Poll<Result<(), Error>> {
        match self {
            Stage::One(one) => one.finish(out),
            Stage::Ranges(r) => r.finish(),
        }
    }

    /// What is away: `Ready(None)` if nothing blocks the next step,
    /// `Pending` until it is back, then its result, with output appended
    /// to `out`.
    #[inline]
    pub(crate) fn poll_back(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut BytesMut,
    ) -> Poll<Option<Result<(), Error>>> {
        match self {
            Stage::One(one) => {
                let back = ready!(one.poll_back(cx, out));
                let rest = one.watch.as_mut().and_then(|w| w.rest.take());
                match (back, rest) {
                    // The head came back from the pool: on to ranges.
                    (Some(Ok(())), Some(rest)) => match self.hand_over(rest, out) {
                        Poll::Ready(r) => Poll::Ready(Some(r)),
                        Poll::Pending => self.poll_back(cx, out),
                    },
                    (back, _) => Poll::Ready(back),
                }
            }
            Stage::Ranges(r) => r.poll_back(cx, out),
        }
    }

    /// The body has nothing for now: whether records held back for a full
    /// range were sent to be scored, so a slow client gets its answers.
    #[inline]
    pub(crate) fn idle(&mut self) -> bool {
        match self {
            Stage::One(_) => false,
            Stage::Ranges(r) => r.idle(),
        }
    }

    /// [`Stage::feed`], waiting for the pool.
    pub(crate) async fn feed_now(
        &mut self,
        buf: impl Buf,
        out: &mut BytesMut,
    ) -> Result<(), Error> {
        match self.feed(buf, out) {
            Poll::Ready(r) => r,
            Poll::Pending => self.back(out).await,
        }
    }

    /// [`Stage::finish`], waiting for the pool.
    pub(crate) async fn finish_now(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        match self.finish(out) {
            Poll::Ready(r) => r,
            Poll::Pending => self.back(out).await,
        }
    }

    async fn back(&mut self, out: &mut BytesMut) -> Result<(), Error> {
        poll_fn(|cx| self.poll_back(cx, out))
            .await
            .unwrap_or(Ok(()))
    }
}

impl One {
    /// Counters so far (while a step is away: before it).
    #[inline]
    fn stats(&self) -> Stats {
        self.here.as_ref().map_or(self.stats, Pipeline::stats)
    }

    /// Feed all of `buf` ([`Pipeline::feed`]), appending to `out`: done at
    /// once (`Ready`), or sent to the pool (`Pending`: then
    /// [`One::poll_back`] until it is back).
    #[inline]
    fn feed(&mut self, mut buf: impl Buf, out: &mut BytesMut) -> Poll<Result<(), Error>> {
        if self.pool.is_some() {
            // The pool needs the bytes owned: a copy, unless `buf` is
            // already `Bytes` (warp's body chunks are).
            let data = buf.copy_to_bytes(buf.remaining());
            return self.send(out, move |p, out| p.feed(&data, out));
        }
        let Some(p) = self.here.as_mut() else {
            return Poll::Ready(Err(lost()));
        };
        while buf.has_remaining() {
            let chunk = buf.chunk();
            let n = chunk.len();
            if let Err(e) = p.feed(chunk, out) {
                return Poll::Ready(Err(e));
            }
            buf.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// End of input ([`Pipeline::finish`]), as [`One::feed`].
    #[inline]
    fn finish(&mut self, out: &mut BytesMut) -> Poll<Result<(), Error>> {
        if self.pool.is_some() {
            return self.send(out, |p, out| p.finish(out));
        }
        match self.here.as_mut() {
            Some(p) => Poll::Ready(p.finish(out)),
            None => Poll::Ready(Err(lost())),
        }
    }

    /// Move the pipeline and `out` to the pool to run `step` there.
    fn send(
        &mut self,
        out: &mut BytesMut,
        step: impl FnOnce(&mut Pipeline, &mut BytesMut) -> Result<(), Error> + Send + 'static,
    ) -> Poll<Result<(), Error>> {
        let (Some(pool), Some(mut p)) = (self.pool.as_ref(), self.here.take()) else {
            return Poll::Ready(Err(lost()));
        };
        self.stats = p.stats();
        let mut o = std::mem::take(out);
        self.away = Some(pool.run(move || {
            let r = step(&mut p, &mut o);
            (p, o, r)
        }));
        Poll::Pending
    }

    /// The step on the pool: `Ready(None)` if there is none, `Pending`
    /// until it is back, then its result, with its output appended to
    /// `out`.
    #[inline]
    fn poll_back(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut BytesMut,
    ) -> Poll<Option<Result<(), Error>>> {
        let Some(task) = self.away.as_mut() else {
            return Poll::Ready(None);
        };
        let back = ready!(std::pin::Pin::new(task).poll(cx));
        self.away = None;
        Poll::Ready(Some(back.and_then(|(p, o, r)| {
            self.stats = p.stats();
            self.here = Some(p);
            // `out` was left empty when the step left; its buffer comes
            // back as it was, with the step's output after what it held.
            *out = o;
            r
        })))
    }
}

/// A step asked of a stage whose pipeline is not here: a step is already
/// away (the callers wait for each), or the model panicked on the pool.
fn lost() -> Error {
    model_error("the request's pipeline was lost on the compute pool")
}

/// What a range is scored with, owned, for the pool's jobs.
pub(crate) struct Scoring {
    model: SharedModel,
    opts: PipelineOptions,
    input: Format,
    output: Format,
}

impl Scoring {
    /// `model` on `input` answered in `output` with `opts`.
    pub(crate) fn new(
        model: SharedModel,
        opts: PipelineOptions,
        input: Format,
        output: Format,
    ) -> Scoring {
        Scoring {
            model,
            opts,
            input,
            output,
        }
    }

    fn spec(&self) -> Spec<'_> {
        Spec {
            model: &self.model,
            opts: &self.opts,
            input: self.input,
            output: self.output,
        }
    }
}

/// A range back from the pool: its number, bytes and scoring.
type Back = (u64, Range, Scored);

/// A large record-wise body in ranges on the pool (see the module docs).
pub(crate) struct Ranges {
    scoring: Arc<Scoring>,
    pool: Arc<Pool>,
    split: Splitter,
    order: Ordered,
    /// Ranges being scored.
    running: FuturesUnordered<Task<Back>>,
    /// The range with a bad record being scored again (it is next out).
    again: Option<Task<(Range, Scored)>>,
    /// Ranges sent to the pool.
    sent: u64,
    /// Ranges between the body and the output at most.
    in_flight: usize,
    range_bytes: usize,
    /// The body ended ([`Ranges::finish`]).
    ending: bool,
    /// Every range is sent (the last one too).
    cut: bool,
    /// Every range is out; `poll_back` said so.
    finished: bool,
    /// Output buffers of ranges gone out, for reuse.
    spare: Vec<BytesMut>,
}

impl Stage {
    /// A body in `input` answered in `output` (both record-wise), cut into
    /// ranges of about `range_bytes`, `in_flight` of them at most on `pool`.
    pub(crate) fn ranges(
        model: SharedModel,
        input: Format,
        output: Format,
        opts: PipelineOptions,
        pool: Arc<Pool>,
        range_bytes: usize,
        in_flight: usize,
    ) -> Stage {
        let scoring = Scoring::new(model, opts, input, output);
        Stage::Ranges(Box::new(Ranges::new(scoring, pool, range_bytes, in_flight)))
    }
}

impl Ranges {
    fn new(scoring: Scoring, pool: Arc<Pool>, range_bytes: usize, in_flight: usize) -> Ranges {
        crate::metrics::metrics().in_ranges.inc();
        Ranges {
            split: Splitter::new(&scoring.spec(), range_bytes),
            scoring: Arc::new(scoring),
            pool,
            order: Ordered::new(),
            running: FuturesUnordered::new(),
            again: None,
            sent: 0,
            in_flight: in_flight.max(1),
            range_bytes: range_bytes.max(1),
            ending: false,
            cut: false,
            finished: false,
            spare: Vec::new(),
        }
    }

    /// Ranges sent and not yet out.
    fn out_there(&self) -> usize {
        (self.sent - self.order.written()) as usize
    }

    /// Send what ranges are complete while there are slots for them;
    /// whether one was sent.
    fn send_ranges(&mut self) -> bool {
        let before = self.sent;
        while self.out_there() < self.in_flight {
            let range = match self.split.take(false, self.ending) {
                Some(r) => r,
                None if self.ending && !self.cut => {
                    self.cut = true;
                    let rest = self.split.rest();
                    // An empty body is still one range: a CSV header alone
                    // or nothing at all answers as the sequential path does.
                    if rest.is_empty() && self.sent > 0 {
                        break;
                    }
                    rest
                }
                None => break,
            };
            self.send(range);
        }
        self.sent > before
    }

    fn send(&mut self, range: Range) {
        let seq = self.sent;
        self.sent += 1;
        let out = self.spare.pop().unwrap_or_default();
        let scoring = self.scoring.clone();
        let first = self.order.starts_stream(seq);
        self.running.push(self.pool.run(move || {
            let scored = score_range(&scoring.spec(), &range, first, None, out, None);
            (seq, range, scored)
        }));
    }

    /// Every slot is taken and a range's worth is waiting: read no more.
    fn blocked(&self) -> bool {
        self.out_there() >= self.in_flight && self.split.len() >= self.range_bytes
    }

    fn feed(&mut self, mut buf: impl Buf) -> Poll<Result<(), Error>> {
        while buf.has_remaining() {
            let chunk = buf.chunk();
            let n = chunk.len();
            self.split.push(chunk);
            buf.advance(n);
        }
        self.send_ranges();
        if self.blocked() {
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn finish(&mut self) -> Poll<Result<(), Error>> {
        self.ending = true;
        self.send_ranges();
        Poll::Pending
    }

    fn idle(&mut self) -> bool {
        if self.ending || self.out_there() > 0 {
            return false;
        }
        match self.split.take(true, false) {
            Some(range) => {
                self.send(range);
                true
            }
            None => false,
        }
    }

    /// A range goes out as `scored`: its output after `out`'s, its buffers
    /// kept for reuse; its error ends the stream.
    fn write(&mut self, range: Range, scored: Scored, out: &mut BytesMut) -> Result<(), Error> {
        out.extend_from_slice(&scored.out);
        self.order.done(&range, &scored);
        self.split.recycle(range);
        if self.spare.len() < self.in_flight {
            self.spare.push(scored.out);
        }
        scored.result
    }

    fn poll_back(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut BytesMut,
    ) -> Poll<Option<Result<(), Error>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        // Output worth a write goes out at once, as the sequential path's
        // would (so a bad record after it comes once the status is out, as
        // there), even while the body waits or after it ended: the handler
        // sends a buffer this full before it reads on or ends.
        let flush = FIRST_FLUSH.min(FLUSH);
        let mut moved = false;
        loop {
            if let Some(task) = self.again.as_mut() {
                let back = ready!(Pin::new(task).poll(cx));
                self.again = None;
                let r = back.and_then(|(range, scored)| self.write(range, scored, out));
                if r.is_err() || out.len() >= flush {
                    return Poll::Ready(Some(r));
                }
                moved = true;
            }
            while let Poll::Ready(Some(back)) = self.running.poll_next_unpin(cx) {
                match back {
                    Ok((seq, range, scored)) => self.order.insert(seq, range, scored),
                    Err(e) => return Poll::Ready(Some(Err(e))),
                }
            }
            match self.order.turn() {
                Some(Turn::Write(range, scored)) => {
                    let r = self.write(range, scored, out);
                    if r.is_err() || out.len() >= flush {
                        return Poll::Ready(Some(r));
                    }
                    moved = true;
                    continue;
                }
                Some(Turn::Again(again)) => {
                    // On the pool too: a range is milliseconds of work.
                    let scoring = self.scoring.clone();
                    self.again = Some(self.pool.run(move || {
                        again.run(&scoring.spec(), Some(crate::metrics::count_placeholder))
                    }));
                    continue;
                }
                None => {}
            }
            if self.send_ranges() {
                // Poll the new ones, so their ends wake this task.
                continue;
            }
            if self.ending {
                if self.cut && self.out_there() == 0 {
                    self.finished = true;
                    return Poll::Ready(Some(Ok(())));
                }
                return Poll::Pending;
            }
            if self.blocked() {
                return Poll::Pending;
            }
            return Poll::Ready(moved.then_some(Ok(())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::tests::{decoder_cases, each_spec};

    /// `input` through a [`Ranges`] stage in pieces of `piece` bytes, as
    /// the request handler drives it: output and error text.
    fn through_ranges(
        spec: &Spec<'_>,
        pool: &Arc<Pool>,
        input: &[u8],
        range: usize,
        piece: usize,
    ) -> (Vec<u8>, Option<String>) {
        let stage = Stage::ranges(
            spec.model.clone(),
            spec.input,
            spec.output,
            spec.opts.clone(),
            pool.clone(),
            range,
            3,
        );
        drive(stage, input, piece)
    }

    /// `input` through `stage` in pieces of `piece` bytes, as the request
    /// handler drives it: output and error text.
    fn drive(mut stage: Stage, input: &[u8], piece: usize) -> (Vec<u8>, Option<String>) {
        let mut out = BytesMut::new();
        let run = async {
            for p in input.chunks(piece.max(1)) {
                stage.feed_now(p, &mut out).await?;
            }
            stage.finish_now(&mut out).await
        };
        let r = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(run);
        (out.to_vec(), r.err().map(|e| e.to_string()))
    }

    /// `input` in pieces of `piece` bytes through a [`Stage::watched`]
    /// handing over at `from` bytes or after, to ranges of `range` bytes.
    fn through_handover(
        spec: &Spec<'_>,
        pool: &Arc<Pool>,
        input: &[u8],
        (from, range, piece): (u64, usize, usize),
    ) -> (Vec<u8>, Option<String>) {
        let pipeline = Pipeline::new(spec.model.clone(), spec.input, spec.output, spec.opts);
        let scoring = Scoring::new(
            spec.model.clone(),
            spec.opts.clone(),
            spec.input,
            spec.output,
        );
        // The head inline for even offsets, on the pool (an expensive
        // model's) for odd ones.
        let head = (from % 2 == 1).then(|| pool.clone());
        let stage = Stage::new(pipeline, head).watched(scoring, from, pool.clone(), range, 3);
        drive(stage, input, piece)
    }

    /// Every decoder case as a chunked body handed over to ranges at every
    /// offset (from a head inline and from one on the pool), in ranges of 1, 4 and all bytes, fed in pieces of 1, 3 and
    /// all bytes, under both policies and to both record-wise outputs: the
    /// sequential path's bytes and error (positions of the whole body).
    #[test]
    fn every_decoder_case_is_the_same_through_a_handover_at_every_offset() {
        let pool = Arc::new(Pool::new(2).unwrap());
        for (name, format, decode, input) in decoder_cases() {
            each_spec(format, &decode, input, |spec, want, label| {
                for from in 0..=input.len() as u64 + 1 {
                    for range in [1, 4, input.len() + 1] {
                        for piece in [1, 3, input.len()] {
                            let got = through_handover(spec, &pool, input, (from, range, piece));
                            assert_eq!(
                                &got, want,
                                "{name}: {label}, handed over at {from}, ranges of {range}, \
                                 pieces of {piece}"
                            );
                        }
                    }
                }
            });
        }
    }

    /// Every decoder case through the server's ranges, cut at every offset
    /// (ranges of every size), fed in pieces of 1, 3 and all bytes, under
    /// both policies and to both record-wise outputs: the sequential
    /// path's bytes and error.
    #[test]
    fn every_decoder_case_is_the_same_through_the_servers_ranges() {
        let pool = Arc::new(Pool::new(2).unwrap());
        for (name, format, decode, input) in decoder_cases() {
            each_spec(format, &decode, input, |spec, want, label| {
                for range in 1..=input.len() + 1 {
                    for piece in [1, 3, input.len()] {
                        let got = through_ranges(spec, &pool, input, range, piece);
                        assert_eq!(
                            &got, want,
                            "{name}: {label}, ranges of {range}, pieces of {piece}"
                        );
                    }
                }
            });
        }
    }
}
