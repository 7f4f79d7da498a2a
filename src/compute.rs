//! The compute pool: OS threads that run CPU-heavy (or otherwise blocking)
//! jobs for async code, so a slow [`crate::model::Model::predict`] never
//! holds one of the runtime's worker threads, which must stay free for
//! `/ping` (SageMaker gives each 2 s, `docs/contract.md` §1), other
//! connections and timers.
//!
//! [`Pool::run`] sends a closure to the pool and returns a [`Task`], a
//! future of its result (a oneshot channel). Jobs run in the order they were
//! sent, as many at once as the pool has threads; more wait in the queue, and the
//! futures awaiting them wait too, holding no runtime thread.
//!
//! Why not tokio's `spawn_blocking`: its pool is for blocking I/O and grows
//! to 512 threads, so under load a slow model would get one thread per
//! waiting request, which oversubscribes the CPUs instead of queueing;
//! bounding it takes a semaphore per job on top, and its threads are shared
//! with file I/O (the spill of `content-length` answers) and model loading.
//! A pool of our own is sized once to the CPUs the process may use
//! (`MMP_COMPUTE_THREADS`), its threads are named `mmp-compute-N` in `top`
//! and in a panic's message, and it does not need a runtime, so synchronous
//! code can use it too. A large request body's ranges run here as well
//! (`src/serve/stage.rs`), so one bounded set of threads does all of a
//! server's CPU-heavy work. It is a queue behind one mutex: a job's hop costs
//! two lock/unlock pairs and a wake-up, nothing next to the milliseconds of
//! a model worth moving here.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::error::{Error, ErrorKind};

/// A job as the threads receive it.
type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads running jobs sent by [`Pool::run`].
#[derive(Debug)]
pub struct Pool {
    queue: mpsc::Sender<Job>,
    threads: usize,
}

impl Pool {
    /// Start `threads` threads (at least one). They end when the pool is
    /// dropped, once the jobs already sent are done.
    pub fn new(threads: usize) -> Result<Pool, Error> {
        let threads = threads.max(1);
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..threads {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("mmp-compute-{n}"))
                .spawn(move || work(&jobs))
                .map_err(|e| Error::io("starting the compute pool's threads", e))?;
        }
        Ok(Pool { queue, threads })
    }

    /// Its threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `job` on the pool; the [`Task`] resolves to what it returns, or
    /// to an error if it panicked.
    pub fn run<T, F>(&self, job: F) -> Task<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The thread survives a panicking job; the task reports it.
            if let Ok(value) = catch_unwind(AssertUnwindSafe(job)) {
                let _ = tx.send(value);
            }
        });
        // The threads hold the receiver for as long as the pool lives, so
        // this fails only if every one of them is gone; the job is dropped
        // and the task reports it like a panic.
        let _ = self.queue.send(job);
        Task { rx }
    }
}

/// One thread's loop: take the next job, run it, until the pool is dropped.
fn work(jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The guard is dropped before the job runs, so the next idle thread
        // can wait for the next job meanwhile.
        let next = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match next {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// The result of a job sent by [`Pool::run`].
#[derive(Debug)]
pub struct Task<T> {
    rx: oneshot::Receiver<T>,
}

impl<T> Future for Task<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Not the model's panic: the pipeline answers those itself
        // ([`crate::model::model_panicked`]).
        Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.map_err(|_| {
                Error::new(ErrorKind::Internal(
                    "a job on the compute pool panicked (see the log)".into(),
                ))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn runs_jobs_off_the_calling_thread_and_returns_their_results() {
        let pool = Pool::new(2).unwrap();
        let caller = std::thread::current().id();
        let (value, thread) = block_on(pool.run(move || {
            let t = std::thread::current();
            (
                6 * 7,
                t.name().map(str::to_owned).filter(|_| t.id() != caller),
            )
        }))
        .unwrap();
        assert_eq!(value, 42);
        assert!(thread.unwrap().starts_with("mmp-compute-"));
    }

    #[test]
    fn runs_as_many_jobs_at_once_as_it_has_threads() {
        // Three jobs that each wait for the other two: they finish only if
        // all three run at once.
        let pool = Pool::new(3).unwrap();
        let barrier = Arc::new(Barrier::new(3));
        let tasks: Vec<_> = (0..3)
            .map(|i| {
                let b = barrier.clone();
                pool.run(move || {
                    b.wait();
                    i
                })
            })
            .collect();
        let got: Vec<i32> = block_on(futures::future::try_join_all(tasks)).unwrap();
        assert_eq!(got, [0, 1, 2]);
    }

    #[test]
    fn a_panicking_job_is_an_error_and_the_thread_goes_on() {
        let pool = Pool::new(1).unwrap();
        let e = block_on(pool.run(|| -> u8 { panic!("bad model") })).unwrap_err();
        assert_eq!(e.status(), 500);
        assert!(e.to_string().contains("panicked"), "{e}");
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        block_on(pool.run(move || d.fetch_add(1, Ordering::SeqCst))).unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}
