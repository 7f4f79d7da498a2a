//! Running a command's work so that a stop signal is always answered.
//!
//! SageMaker stops a training job (StopTrainingJob, MaxRuntimeInSeconds)
//! with SIGTERM and sends SIGKILL 120 s later; on a laptop, Ctrl-C sends
//! SIGINT to `mmp score` or `mmp transform`. The work may then be blocked
//! in a system call that no flag can interrupt: opening a FIFO nobody has
//! opened for writing yet, reading one that has no data, waiting on a
//! container that does not answer. So the work runs on its own thread and
//! the main thread waits for whichever comes first, the work's result or a
//! signal. On a signal the caller removes the outputs still being written
//! ([`crate::output::remove_unfinished`]), reports, and exits with 128 +
//! the signal's number, which ends the blocked thread with the process.
//!
//! The wait uses tokio's signal support, already a dependency for `serve`,
//! on a current-thread runtime: no extra thread, no extra crate. Handlers
//! are installed before the work starts, so a signal can never hit the
//! default action (death with temporary files left behind, and for
//! training no failure file) once the work is under way.

use std::io;

use tokio::signal::unix::{signal, SignalKind};

use crate::error::{Error, ErrorKind, Result};

/// How the wait ended.
#[derive(Debug)]
pub enum Ended<T> {
    /// The work returned.
    Done(T),
    /// A signal came first; the name (`SIGTERM`, `SIGINT`).
    Signal(&'static str),
    /// The work's thread panicked (the panic message is already on stderr).
    Panicked,
}

/// Run `work` on a new thread named `thread` and wait for it or for
/// SIGTERM/SIGINT.
pub fn run_until_signal<T, F>(thread: &str, work: F) -> io::Result<Ended<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async move {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                // The receiver is gone only if a signal ended the wait.
                let _ = tx.send(work());
            })?;
        Ok(tokio::select! {
            // A finished result wins over a signal that arrived with it.
            biased;
            done = rx => match done {
                Ok(value) => Ended::Done(value),
                Err(_) => Ended::Panicked,
            },
            _ = term.recv() => Ended::Signal("SIGTERM"),
            _ = int.recv() => Ended::Signal("SIGINT"),
        })
    })
}

/// Run the work of `mmp score` or `mmp transform` as [`run_until_signal`]
/// does. Stopped by a signal, the outputs still being written are removed
/// (those already finished stay) and the error names the signal.
pub fn run_command<T, F>(thread: &str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    match run_until_signal(thread, work) {
        Ok(Ended::Done(result)) => result,
        Ok(Ended::Signal(name)) => {
            crate::output::remove_unfinished();
            Err(Error::new(ErrorKind::Interrupted(name)))
        }
        Ok(Ended::Panicked) => Err(Error::new(ErrorKind::Internal(format!(
            "the {thread} thread panicked"
        )))),
        Err(e) => Err(Error::io("cannot start the work's thread", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_work_result() {
        match run_until_signal("mmp-test", || 42).unwrap() {
            Ended::Done(v) => assert_eq!(v, 42),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_panic_is_reported() {
        let outcome = run_until_signal("mmp-test", || -> u8 {
            panic!("boom (expected by the test)")
        });
        assert!(matches!(outcome.unwrap(), Ended::Panicked));
    }
}
