//! `mmp serve`: the SageMaker inference server.
//!
//! One process replaces the sample's nginx → gunicorn → Flask stack: a tokio
//! runtime, our accept loop ([`listener`]) and warp routes ([`routes`]):
//! `GET /ping`, `POST /invocations` (streaming, [`invocations`]) and
//! `GET /execution-parameters`. The socket is bound before the model loads,
//! so connections are accepted at once (SageMaker wants that within 250 ms);
//! `/ping` answers 503 until the model is ready, and a model that cannot be
//! loaded ends the process with its reason. As a multi-model endpoint
//! ([`mme`], `SAGEMAKER_MULTI_MODEL=true`) it loads no model at start, answers
//! `/ping` at once, and loads models on demand through `/models`.

pub mod bidi;
pub mod invocations;
pub mod listener;
pub mod mme;
pub mod reply;
pub mod routes;
pub mod spill;
mod stage;

use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::config::{Overrides, ProcessEnv, ResponseFraming, ServeConfig};
use crate::error::Error;
use crate::model::SharedModel;

/// What every request handler shares.
pub struct State {
    /// The validated configuration.
    pub cfg: ServeConfig,
    /// The model, once loaded.
    pub model: OnceLock<SharedModel>,
    /// Permits for `/invocations` in progress (`max_in_flight` of them).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// WebSocket sessions, which outlive their HTTP connection's upgrade and
    /// so are drained on shutdown separately.
    pub sessions: tokio_util::task::TaskTracker,
    /// Turns true when shutdown starts: sessions close with 1001.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// When shutdown started (the signal came): the grace period runs from
    /// here, for requests and sessions alike.
    pub shutdown_at: OnceLock<tokio::time::Instant>,
    /// A multi-model endpoint's models (`None`: single-model serving).
    pub mme: Option<Arc<mme::Registry>>,
    /// Where an expensive model's requests run (`None`:
    /// `MMP_COMPUTE_THREADS=0`, on the runtime's workers).
    pub compute: Option<Arc<crate::compute::Pool>>,
}

impl State {
    /// Shared state for `cfg`, with no model yet; fails if the compute
    /// pool's threads cannot be started.
    pub fn new(cfg: ServeConfig) -> Result<State, Error> {
        let compute = match cfg.compute_threads {
            0 => None,
            n => Some(Arc::new(crate::compute::Pool::new(n)?)),
        };
        Ok(State {
            compute,
            in_flight: Arc::new(tokio::sync::Semaphore::new(cfg.max_in_flight)),
            sessions: tokio_util::task::TaskTracker::new(),
            shutdown: tokio::sync::watch::channel(false).0,
            shutdown_at: OnceLock::new(),
            mme: cfg.multi_model.then(|| {
                let budget = mme::budget(cfg.mme_memory_budget, mme::resident_bytes());
                Arc::new(mme::Registry::new(budget, cfg.mme_model_root.clone()))
            }),
            cfg,
            model: OnceLock::new(),
        })
    }

    /// Shutdown starts now: note when, and tell sessions to close.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown_at.set(tokio::time::Instant::now());
        self.shutdown.send_replace(true);
    }
}

/// Run `mmp serve` and return the process exit code.
pub fn main(over: &Overrides) -> ExitCode {
    let started = Instant::now();
    let cfg = match ServeConfig::from_env(&ProcessEnv, over) {
        Ok(cfg) => cfg,
        Err(e) => {
            crate::say!("mmp serve: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.workers)
        .enable_all()
        .build();
    let runtime = match runtime.map_err(|e| Error::io("starting the runtime", e)) {
        Ok(rt) => rt,
        Err(e) => {
            crate::say!("mmp serve: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let code = runtime.block_on(async move {
        match run(cfg, started, crate::shutdown::signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "mmp serve failed");
                crate::say!("mmp serve: {e}");
                ExitCode::from(e.exit_code())
            }
        }
    });
    // In-flight requests cut by the grace period are dropped with the
    // runtime; don't wait on blocking tasks that might linger.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// Bind, load the model, serve until `shutdown`, drain.
pub async fn run(
    cfg: ServeConfig,
    started: Instant,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = TcpListener::bind(cfg.bind)
        .await
        .map_err(|e| Error::io(format!("cannot listen on {}", cfg.bind), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the bound address", e))?;
    log_config(&cfg, addr);
    if cfg.response_framing == ResponseFraming::ContentLength {
        spill::prepare(&cfg.spill_dir);
    }
    let state = Arc::new(State::new(cfg)?);
    let service = routes::service(state.clone());
    let limits = listener::Limits {
        header_read_timeout: state.cfg.header_read_timeout,
        max_header_bytes: state.cfg.max_header_bytes,
        max_connections: state.cfg.max_connections,
        grace: state.cfg.shutdown_grace,
        write_timeout: state.cfg.timeout,
    };
    // The signal also tells WebSocket sessions to close.
    let signal = {
        let state = state.clone();
        async move {
            shutdown.await;
            state.begin_shutdown();
        }
    };
    let server = tokio::spawn(listener::serve(listener, service, limits, signal));

    if let Some(reg) = &state.mme {
        let budget = reg.budget();
        tracing::info!(
            target: "mmp::startup",
            model_root = %state.cfg.mme_model_root.display(),
            budget_bytes = budget.bytes,
            budget_source = %budget.source,
            ready_ms = crate::logging::millis(started.elapsed()),
            "multi-model endpoint; ready"
        );
        return drain(&state, server).await;
    }
    let dir = state.cfg.model_dir.clone();
    let load_started = Instant::now();
    let loaded = tokio::task::spawn_blocking(move || crate::model::load(&dir))
        .await
        .map_err(|e| Error::config(format!("model loading panicked: {e}")))?;
    let model = loaded?;
    crate::metrics::metrics()
        .model_load_seconds
        .set(load_started.elapsed().as_secs_f64());
    tracing::info!(
        target: "mmp::startup",
        model_dir = %state.cfg.model_dir.display(),
        features = model.num_features(),
        ready_ms = crate::logging::millis(started.elapsed()),
        "model loaded; ready"
    );
    let _ = state.model.set(model);
    drain(&state, server).await
}

/// Wait for the server to stop, then give WebSocket sessions what is left of
/// the grace period, which runs from the signal (the server's requests had
/// it from there too, [`listener::serve`]).
async fn drain(state: &State, server: tokio::task::JoinHandle<bool>) -> Result<(), Error> {
    server
        .await
        .map_err(|e| Error::config(format!("the server task failed: {e}")))?;
    // Sessions were told to close when the signal came; give them what is
    // left of the grace period. (No signal noted: the server stopped by
    // itself; the whole period, from now.)
    state.sessions.close();
    let from = state
        .shutdown_at
        .get()
        .copied()
        .unwrap_or_else(tokio::time::Instant::now);
    let deadline = from + state.cfg.shutdown_grace;
    if tokio::time::timeout_at(deadline, state.sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(target: "mmp::shutdown", "WebSocket sessions still open after the grace period: cut");
    }
    Ok(())
}

fn log_config(cfg: &ServeConfig, addr: std::net::SocketAddr) {
    tracing::info!(
        target: "mmp::startup",
        version = env!("CARGO_PKG_VERSION"),
        %addr,
        model_dir = %cfg.model_dir.display(),
        workers = cfg.workers,
        compute_threads = cfg.compute_threads,
        timeout_s = cfg.timeout.as_secs(),
        batch = cfg.batch,
        max_body_bytes = ?cfg.max_body_bytes,
        max_payload_mb = cfg.advertised_max_payload_mb,
        batch_strategy = cfg.batch_strategy.as_aws(),
        max_concurrent_transforms = cfg.max_concurrent_transforms,
        default_accept = ?cfg.default_accept.map(|f| f.mime()),
        on_error = ?cfg.pipeline.policy,
        response_framing = cfg.response_framing.as_str(),
        csv_header = cfg.pipeline.decode.csv_header,
        max_record_bytes = cfg.pipeline.decode.max_record_bytes,
        max_document_bytes = cfg.pipeline.decode.max_document_bytes,
        shutdown_grace_s = cfg.shutdown_grace.as_secs(),
        "listening"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::time::{sleep, Instant};

    fn state(grace_s: &str) -> Arc<State> {
        let env: HashMap<&str, &str> = [("MMP_SHUTDOWN_GRACE_SECONDS", grace_s)].into();
        let cfg = ServeConfig::from_env(&env, &Overrides::default()).unwrap();
        Arc::new(State::new(cfg).unwrap())
    }

    /// A session that takes `closing` to close once shutdown starts, and
    /// whether it did.
    fn session(state: &State, closing: Duration) -> Arc<AtomicBool> {
        let closed = Arc::new(AtomicBool::new(false));
        let mut down = state.shutdown.subscribe();
        let done = closed.clone();
        state.sessions.spawn(async move {
            let _ = down.wait_for(|d| *d).await;
            sleep(closing).await;
            done.store(true, Ordering::SeqCst);
        });
        closed
    }

    /// A server up for `uptime` before the signal, whose requests then
    /// take `draining` to finish.
    fn server(
        state: &Arc<State>,
        uptime: Duration,
        draining: Duration,
    ) -> tokio::task::JoinHandle<bool> {
        let state = state.clone();
        tokio::spawn(async move {
            sleep(uptime).await;
            state.begin_shutdown();
            sleep(draining).await;
            true
        })
    }

    /// The grace period runs from the signal, not from when the server
    /// started: a server up a minute, longer than its 10 s grace, still
    /// gives a session the 4 s it takes to close (paused time: no waiting).
    #[tokio::test(start_paused = true)]
    async fn sessions_get_the_grace_period_from_the_signal() {
        let state = state("10");
        let closed = session(&state, Duration::from_secs(4));
        let t0 = Instant::now();
        drain(
            &state,
            server(&state, Duration::from_secs(60), Duration::ZERO),
        )
        .await
        .unwrap();
        assert!(closed.load(Ordering::SeqCst), "the session was cut");
        assert_eq!(t0.elapsed(), Duration::from_secs(64));
    }

    /// What the requests' drain took is part of the period: a session that
    /// needs longer than what is left is cut at the signal + grace.
    #[tokio::test(start_paused = true)]
    async fn sessions_are_cut_at_the_signal_plus_the_grace_period() {
        let state = state("10");
        let closed = session(&state, Duration::from_secs(15));
        let t0 = Instant::now();
        let server = server(&state, Duration::from_secs(60), Duration::from_secs(3));
        drain(&state, server).await.unwrap();
        assert!(!closed.load(Ordering::SeqCst));
        assert_eq!(t0.elapsed(), Duration::from_secs(70));
    }
}
