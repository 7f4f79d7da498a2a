//! Running the training so that a stop signal is always answered.
//!
//! SageMaker stops a job (StopTrainingJob, MaxRuntimeInSeconds) with
//! SIGTERM and sends SIGKILL 120 s later. The training may then be blocked
//! in a system call that no flag can interrupt: opening a FIFO nobody has
//! opened for writing yet, or reading one that has no data. So the work runs
//! on its own thread and the main thread waits for whichever comes first,
//! the work's result or a signal. On a signal the caller writes the failure
//! file and exits, which ends the blocked thread with the process.
//!
//! The wait uses tokio's signal support, already a dependency for `serve`,
//! on a current-thread runtime: no extra thread, no extra crate. Handlers
//! are installed before the work starts, so a signal can never hit the
//! default action (death without a failure file) once training is under
//! way. SIGINT is handled the same way, for Ctrl-C in a local run.

use std::io;

use tokio::signal::unix::{signal, SignalKind};

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

/// Run `work` on a new thread and wait for it or for SIGTERM/SIGINT.
pub fn run_until_signal<T, F>(work: F) -> io::Result<Ended<T>>
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
            .name("mmp-train".into())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_work_result() {
        match run_until_signal(|| 42).unwrap() {
            Ended::Done(v) => assert_eq!(v, 42),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_panic_is_reported() {
        let outcome = run_until_signal(|| -> u8 { panic!("boom (expected by the test)") });
        assert!(matches!(outcome.unwrap(), Ended::Panicked));
    }
}
