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

use std::future::{poll_fn, Future};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};

use crate::compute::{Pool, Task};
use crate::error::Error;
use crate::model::model_error;
use crate::pipeline::{Pipeline, Stats};

/// What comes back from the pool: the pipeline, the output, the result.
type Hop = (Pipeline, BytesMut, Result<(), Error>);

/// A pipeline and where its steps run.
pub(crate) struct Stage {
    /// The pipeline; `None` while a step runs on the pool (or after one
    /// panicked there).
    here: Option<Pipeline>,
    /// The pool, for an expensive model; `None`: run inline.
    pool: Option<Arc<Pool>>,
    /// The step on the pool.
    away: Option<Task<Hop>>,
    /// The counters as of the last step that came back.
    stats: Stats,
}

impl Stage {
    /// `pipeline`, run on `pool` if given, else inline.
    #[inline]
    pub(crate) fn new(pipeline: Pipeline, pool: Option<Arc<Pool>>) -> Stage {
        Stage {
            stats: pipeline.stats(),
            here: Some(pipeline),
            pool,
            away: None,
        }
    }

    /// Counters so far (while a step is away: before it).
    #[inline]
    pub(crate) fn stats(&self) -> Stats {
        self.here.as_ref().map_or(self.stats, Pipeline::stats)
    }

    /// Feed all of `buf` ([`Pipeline::feed`]), appending to `out`: done at
    /// once (`Ready`), or sent to the pool (`Pending`: then
    /// [`Stage::poll_back`] until it is back).
    #[inline]
    pub(crate) fn feed(
        &mut self,
        mut buf: impl Buf,
        out: &mut BytesMut,
    ) -> Poll<Result<(), Error>> {
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

    /// End of input ([`Pipeline::finish`]), as [`Stage::feed`].
    #[inline]
    pub(crate) fn finish(&mut self, out: &mut BytesMut) -> Poll<Result<(), Error>> {
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
    pub(crate) fn poll_back(
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

/// A step asked of a stage whose pipeline is not here: a step is already
/// away (the callers wait for each), or the model panicked on the pool.
fn lost() -> Error {
    model_error("the request's pipeline was lost on the compute pool")
}
