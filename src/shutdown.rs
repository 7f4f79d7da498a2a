//! The shutdown signal: SIGTERM (SageMaker's stop, `docker stop`) or SIGINT
//! (Ctrl-C while developing), as linkerd's `signal` crate does it.

/// Resolves on the first SIGTERM or SIGINT, logging which.
pub async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM/SIGINT; stop with SIGKILL");
            return std::future::pending().await;
        }
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(target: "mmp::shutdown", "received {name}, starting shutdown");
}
