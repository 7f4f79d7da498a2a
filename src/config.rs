//! The server's configuration, parsed once from the environment (and the
//! command line, which wins) into types, with a clear error for a bad value.
//!
//! The environment is read through the [`Env`] trait, so tests pass a map
//! instead of mutating the process environment (linkerd's `env.rs` does the
//! same, and bans `set_var` for the data races it causes in tests).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::codec::DecodeOptions;
use crate::error::Error;
use crate::media::Format;
use crate::pipeline::{ErrorPolicy, PipelineOptions, DEFAULT_BATCH_RECORDS};

/// Where configuration values come from.
pub trait Env {
    /// The value of `key`, if set.
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl<S: std::hash::BuildHasher> Env for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

impl<S: std::hash::BuildHasher> Env for HashMap<&str, &str, S> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).map(|v| v.to_string())
    }
}

/// The logging variables, read here with the others; `logging` interprets
/// them.
#[derive(Clone, Debug, Default)]
pub struct LogSettings {
    /// `RUST_LOG`: a tracing filter, which wins.
    pub rust_log: Option<String>,
    /// `SAGEMAKER_CONTAINER_LOG_LEVEL`: Python's numeric levels or names.
    pub container_log_level: Option<String>,
    /// `MODEL_SERVER_LOG_FORMAT`: `text` or `json`.
    pub format: Option<String>,
}

impl LogSettings {
    /// The logging variables from `env`.
    pub fn from_env(env: &impl Env) -> LogSettings {
        LogSettings {
            rust_log: env.get("RUST_LOG"),
            container_log_level: env.get("SAGEMAKER_CONTAINER_LOG_LEVEL"),
            format: env.get("MODEL_SERVER_LOG_FORMAT"),
        }
    }
}

pub use crate::batch::BatchStrategy;

/// How `POST /invocations` frames a 200 response body
/// (`MMP_RESPONSE_FRAMING`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResponseFraming {
    /// Stream predictions as they are made: `Transfer-Encoding: chunked`
    /// once the answer outgrows the first flush (a small answer still gets a
    /// `Content-Length`). Realtime endpoints and response streaming.
    #[default]
    Chunked,
    /// Hold the whole answer (in memory, then in a temporary file) and send
    /// it with an exact `Content-Length`: Asynchronous Inference refuses a
    /// response without one.
    ContentLength,
}

impl ResponseFraming {
    /// The setting's spelling, also the log field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseFraming::Chunked => "chunked",
            ResponseFraming::ContentLength => "content-length",
        }
    }

    /// `chunked` or `content-length`, any case.
    pub fn parse(s: &str) -> Option<ResponseFraming> {
        match s.trim().to_ascii_lowercase().as_str() {
            "chunked" => Some(ResponseFraming::Chunked),
            "content-length" => Some(ResponseFraming::ContentLength),
            _ => None,
        }
    }
}

/// Everything `mmp serve` needs to know, validated.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Directory holding the model.
    pub model_dir: PathBuf,
    /// Tokio worker threads (`MODEL_SERVER_WORKERS`): they run the HTTP
    /// side and score requests. The pool that puts one stream on every core
    /// ([`crate::parallel`]) is separate and sized to the CPUs the process
    /// may use, whatever this says.
    pub workers: usize,
    /// Threads of the compute pool ([`crate::compute`], `MMP_COMPUTE_THREADS`)
    /// that run an expensive model's requests off the runtime
    /// ([`crate::model::Model::offload`]); 0 runs them on the runtime's
    /// workers, as a cheap model's always are.
    pub compute_threads: usize,
    /// A request that makes no progress for this long is ended.
    pub timeout: Duration,
    /// A bidirectional session with no frame at all (data, ping or pong)
    /// for this long is closed. Not `timeout`: SageMaker pings a quiet
    /// session every 60 s and gives up after 5 misses (AWS DG, bidirectional
    /// streaming contract), so a limit of 60 s would race its pings.
    pub bidi_idle: Duration,
    /// Running under Batch Transform (`SAGEMAKER_BATCH`).
    pub batch: bool,
    /// Body cap in bytes (`SAGEMAKER_MAX_PAYLOAD_IN_MB` when set and non-zero).
    pub max_body_bytes: Option<u64>,
    /// `MaxPayloadInMB` advertised by `/execution-parameters`.
    pub advertised_max_payload_mb: u64,
    /// `BatchStrategy` advertised by `/execution-parameters`.
    pub batch_strategy: BatchStrategy,
    /// `MaxConcurrentTransforms` advertised by `/execution-parameters`.
    pub max_concurrent_transforms: usize,
    /// Output format when `Accept` is missing or `*/*`; `None`: the input's.
    pub default_accept: Option<Format>,
    /// Decoding limits and the error policy.
    pub pipeline: PipelineOptions,
    /// How long in-flight requests may run on after SIGTERM.
    pub shutdown_grace: Duration,
    /// Connections served at once; more get a fast 503.
    pub max_connections: usize,
    /// `/invocations` in progress at once; more get a fast 503.
    pub max_in_flight: usize,
    /// Time to receive a request's headers, and the idle keep-alive timeout.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// A record-wise body with a `Content-Length` of at least this many
    /// bytes is scored in ranges on every core (`MMP_PARALLEL_FROM`,
    /// `src/serve/stage.rs`), a chunked one from here on; a smaller one
    /// inline, as always.
    pub parallel_from: u64,
    /// Bytes of such a range at most (`MMP_RANGE_BYTES`; tests set tiny
    /// ones so ranges are cut at many offsets).
    pub range_bytes: usize,
    /// How a 200 answer is framed (`MMP_RESPONSE_FRAMING`).
    pub response_framing: ResponseFraming,
    /// Where `content-length` framing spills answers too large to hold in
    /// memory (`TMPDIR`, else `/tmp`, as `std::env::temp_dir` does on Unix).
    pub spill_dir: PathBuf,
    /// Multi-model endpoint mode (`SAGEMAKER_MULTI_MODEL`): models are
    /// loaded on demand through `/models` instead of from `model_dir`.
    pub multi_model: bool,
    /// Bytes of model artifacts a multi-model endpoint may hold
    /// (`MMP_MME_MEMORY_BUDGET`); `None`: derived from the memory limit.
    pub mme_memory_budget: Option<u64>,
    /// The only tree `POST /models` may load from (`MMP_MME_MODEL_ROOT`).
    pub mme_model_root: PathBuf,
}

/// Overrides from the command line (each wins over its variable).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--bind`.
    pub bind: Option<SocketAddr>,
    /// `--model-dir`.
    pub model_dir: Option<PathBuf>,
    /// `--on-error`.
    pub on_error: Option<ErrorPolicy>,
    /// `--multi-model` (or `SAGEMAKER_MULTI_MODEL=true`).
    pub multi_model: bool,
}

/// Every variable the server reads, with its default and meaning: printed by
/// `mmp serve --help`, and checked against the README's configuration table
/// (tests/readme.rs).
pub const VARIABLES: &[(&str, &str, &str)] = &[
    ("SAGEMAKER_BIND_TO_PORT", "8080", "port to listen on (all interfaces)"),
    ("SM_MODEL_DIR", "/opt/ml/model", "directory holding model.json"),
    (
        "MODEL_SERVER_WORKERS",
        "CPUs available",
        "tokio worker threads (also SAGEMAKER_MODEL_SERVER_WORKERS)",
    ),
    (
        "MMP_COMPUTE_THREADS",
        "CPUs available",
        "threads that run an expensive model's predictions off the tokio workers (0 = on them)",
    ),
    (
        "MODEL_SERVER_TIMEOUT",
        "60",
        "seconds a request may make no progress before it is ended (also SAGEMAKER_MODEL_SERVER_TIMEOUT)",
    ),
    ("SAGEMAKER_BATCH", "false", "set by Batch Transform; logged"),
    (
        "SAGEMAKER_MAX_PAYLOAD_IN_MB",
        "unset",
        "when set and non-zero, bodies over this many MiB get 413; also advertised",
    ),
    (
        "MMP_MAX_PAYLOAD_IN_MB",
        "6",
        "MaxPayloadInMB advertised when SAGEMAKER_MAX_PAYLOAD_IN_MB is unset (0 = chunked streaming)",
    ),
    ("SAGEMAKER_BATCH_STRATEGY", "MULTI_RECORD", "BatchStrategy advertised"),
    (
        "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS",
        "CPUs available, at most 100 / MaxPayloadInMB",
        "MaxConcurrentTransforms advertised",
    ),
    (
        "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT",
        "the request's Content-Type",
        "output type when Accept is missing or */*",
    ),
    (
        "MMP_BIDI_IDLE_SECONDS",
        "330",
        "seconds a bidirectional session may receive no frame (pings count) before it is closed",
    ),
    ("MMP_ON_ERROR", "fail", "bad record policy: fail or placeholder"),
    ("MMP_CSV_HEADER", "false", "skip the first CSV record of each request"),
    ("MMP_MAX_RECORD_BYTES", "1048576", "largest record"),
    ("MMP_MAX_DOCUMENT_BYTES", "6291456", "largest application/json document that is one row"),
    (
        "MMP_SHUTDOWN_GRACE_SECONDS",
        "25",
        "time in-flight requests get after SIGTERM (SageMaker kills at 30)",
    ),
    ("MMP_MAX_CONNECTIONS", "1024", "connections served at once"),
    ("MMP_MAX_IN_FLIGHT", "256", "/invocations in progress at once"),
    (
        "MMP_HEADER_READ_TIMEOUT_SECONDS",
        "60",
        "time to send a request's headers; also the idle keep-alive timeout",
    ),
    ("MMP_MAX_HEADER_BYTES", "65536", "largest request head"),
    (
        "MMP_PARALLEL_FROM",
        "1048576",
        "Content-Length from which a CSV or JSON-lines body is scored in ranges on every core",
    ),
    (
        "MMP_RANGE_BYTES",
        "524288",
        "size of those ranges (at most; a smaller body is cut into two per compute thread)",
    ),
    (
        "MMP_RESPONSE_FRAMING",
        "chunked",
        "chunked, or content-length (whole answer with a Content-Length; needed by Asynchronous Inference)",
    ),
    (
        "TMPDIR",
        "/tmp",
        "where content-length framing spills answers over 4 MiB (an unnamed file, gone when closed)",
    ),
    (
        "SAGEMAKER_MULTI_MODEL",
        "false",
        "multi-model endpoint: load models on demand through /models (also --multi-model)",
    ),
    (
        "MMP_MME_MEMORY_BUDGET",
        "90% of the memory limit",
        "multi-model: bytes of artifacts loaded at once; more gets 507",
    ),
    (
        "MMP_MME_MODEL_ROOT",
        "/opt/ml/models",
        "multi-model: the only tree POST /models may load from",
    ),
];

/// Default connection limit: far above what SageMaker's front end opens,
/// low enough that file descriptors and per-connection buffers stay bounded.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default limit on invocations in progress: each holds at most one record
/// and one output buffer, so 256 bound the worst case to a few hundred MiB
/// even with 1 MiB records.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Default header read (and keep-alive idle) timeout: the contract advises
/// persistent connections with an idle timeout of at least 60 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default largest request head: InvokeEndpoint's headers are each at most
/// 1 KiB, so 64 KiB is generous and still cheap to hold per connection.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// The least `MMP_MAX_HEADER_BYTES` taken: a request line and SageMaker's
/// headers need about that much, so less would refuse every request.
pub const MIN_MAX_HEADER_BYTES: usize = 1024;
/// Default of `MMP_PARALLEL_FROM` ([`ServeConfig::parallel_from`]). Where
/// the hop to the pool starts to pay, measured on the 2-core development
/// machine under load (2026-12-02, median per request of a keep-alive
/// client, 16-feature CSV, two runs, ranges vs inline): 64 KiB 0.63-0.65 vs
/// 0.54-0.56 ms, 256 KiB 1.38-1.54 vs 1.52-1.61 ms, 1 MiB 4.3-5.1 vs
/// 4.6-4.8 ms, 4 MiB 13.8-18.3 vs 17.9-19.1 ms. Below 256 KiB the hop
/// costs; from 1 MiB on the ranges are at least even, and a body of this
/// size is two ranges per thread.
pub const DEFAULT_PARALLEL_FROM: usize = 1 << 20;
/// Default of `MMP_RANGE_BYTES`: ranges of 512 KiB keep a large body's
/// peak memory near in-flight ranges x 2 x 512 KiB (input and output; the
/// 32 MiB bar of issue 19 on a 1 GB body) and cost one hop per millisecond
/// or so of scoring.
pub const DEFAULT_RANGE_BYTES: usize = 512 << 10;

/// Default idle limit of a bidirectional session: past SageMaker's own
/// give-up point (5 missed pings, 60 s apart), so the platform, not the
/// container, decides when a quiet session is dead.
pub const DEFAULT_BIDI_IDLE: Duration = Duration::from_secs(330);

/// Default grace period: below SageMaker's SIGKILL, 30 s after SIGTERM.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(25);

/// The longest time a setting in seconds gives; a longer one is taken as
/// this. A deadline is now plus the setting, and `Instant + Duration`
/// panics past about 2^63 seconds: `MODEL_SERVER_TIMEOUT=18446744073709551615`
/// (a "never" as gunicorn takes it) made every request panic, with no
/// answer. A century is "never" for any process.
pub const MAX_SECONDS: u64 = 100 * 365 * 24 * 3600;

/// The most threads `MODEL_SERVER_WORKERS` or `MMP_COMPUTE_THREADS` may
/// ask for. Each is started with the server, with its own stack (2 MiB of
/// address space): 100,000 compute threads panicked when one could not be
/// started, and `u64::MAX` workers on the runtime's allocation. 1,024 is
/// far past the CPUs of a machine, and 1,024 of each still answered
/// `/ping` 200 in 0.32 s (0.03 s with 2 of each; one run, on 2 loaded CPUs).
pub const MAX_THREADS: usize = 1024;

/// `secs` seconds, at most [`MAX_SECONDS`].
fn seconds(secs: u64) -> Duration {
    Duration::from_secs(secs.min(MAX_SECONDS))
}

/// The `MaxConcurrentTransforms` to advertise by default: one per CPU, but
/// no more than `CreateTransformJob` allows with the advertised payload
/// (`MaxConcurrentTransforms × MaxPayloadInMB ≤ 100`, contract §3).
pub fn default_concurrency(cpus: usize, payload_mb: u64) -> usize {
    match payload_mb {
        0 => cpus,
        mb => cpus.min((100 / mb) as usize).max(1),
    }
}

/// CPUs this process may use: `available_parallelism` honours affinity
/// masks and cgroup v1/v2 CPU quotas.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl ServeConfig {
    /// Read the configuration from `env`, then apply `over`.
    pub fn from_env(env: &impl Env, over: &Overrides) -> Result<ServeConfig, Error> {
        let r = Reader(env);
        let cpus = available_cpus();
        let port: u16 = r.parse("SAGEMAKER_BIND_TO_PORT")?.unwrap_or(8080);
        let sagemaker_payload: Option<u64> = r.parse("SAGEMAKER_MAX_PAYLOAD_IN_MB")?;
        let advertised = match sagemaker_payload {
            Some(mb) => mb,
            None => r.parse("MMP_MAX_PAYLOAD_IN_MB")?.unwrap_or(6),
        };
        if advertised > 100 {
            let key = match sagemaker_payload {
                Some(_) => "SAGEMAKER_MAX_PAYLOAD_IN_MB",
                None => "MMP_MAX_PAYLOAD_IN_MB",
            };
            return Err(r.invalid(
                key,
                &advertised.to_string(),
                "Batch Transform allows at most 100",
            ));
        }
        let workers = r
            .first(&["MODEL_SERVER_WORKERS", "SAGEMAKER_MODEL_SERVER_WORKERS"])
            .map(|(k, v)| r.positive(k, &v).and_then(|n| r.threads(k, n)))
            .transpose()?
            .unwrap_or(cpus);
        let compute_threads = match r.parse("MMP_COMPUTE_THREADS")? {
            Some(n) => r.threads("MMP_COMPUTE_THREADS", n)?,
            None => cpus,
        };
        let timeout = r
            .first(&["MODEL_SERVER_TIMEOUT", "SAGEMAKER_MODEL_SERVER_TIMEOUT"])
            .map(|(k, v)| r.positive(k, &v))
            .transpose()?
            .unwrap_or(60);
        let batch_strategy = match r.get("SAGEMAKER_BATCH_STRATEGY") {
            None => BatchStrategy::MultiRecord,
            Some(v) => BatchStrategy::parse(&v).ok_or_else(|| {
                r.invalid(
                    "SAGEMAKER_BATCH_STRATEGY",
                    &v,
                    "use MULTI_RECORD or SINGLE_RECORD",
                )
            })?,
        };
        let default_accept = r
            .get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT")
            .filter(|v| !v.trim().is_empty())
            .map(|v| {
                Format::parse(&v).map_err(|e| {
                    r.invalid("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", &v, &e.to_string())
                })
            })
            .transpose()?;
        let policy = match r.get("MMP_ON_ERROR") {
            None => ErrorPolicy::Fail,
            Some(v) => v
                .parse()
                .map_err(|e: Error| r.invalid("MMP_ON_ERROR", &v, &e.to_string()))?,
        };
        let decode = DecodeOptions {
            csv_header: r.boolean("MMP_CSV_HEADER")?.unwrap_or(false),
            max_record_bytes: r.positive_or(
                "MMP_MAX_RECORD_BYTES",
                crate::codec::DEFAULT_MAX_RECORD_BYTES,
            )?,
            max_document_bytes: r.positive_or(
                "MMP_MAX_DOCUMENT_BYTES",
                crate::codec::DEFAULT_MAX_DOCUMENT_BYTES,
            )?,
            ..DecodeOptions::default()
        };
        let grace = r
            .parse::<u64>("MMP_SHUTDOWN_GRACE_SECONDS")?
            .map_or(DEFAULT_GRACE, seconds);
        let response_framing = match r.get("MMP_RESPONSE_FRAMING") {
            None => ResponseFraming::default(),
            Some(v) => ResponseFraming::parse(&v).ok_or_else(|| {
                r.invalid("MMP_RESPONSE_FRAMING", &v, "use chunked or content-length")
            })?,
        };
        let spill_dir = r
            .get("TMPDIR")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
        let mut cfg = ServeConfig {
            bind: SocketAddr::from(([0, 0, 0, 0], port)),
            model_dir: r
                .get("SM_MODEL_DIR")
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from("/opt/ml/model"), PathBuf::from),
            workers,
            compute_threads,
            timeout: seconds(timeout as u64),
            bidi_idle: r
                .positive_opt("MMP_BIDI_IDLE_SECONDS")?
                .map_or(DEFAULT_BIDI_IDLE, |s| seconds(s as u64)),
            batch: r.boolean("SAGEMAKER_BATCH")?.unwrap_or(false),
            max_body_bytes: sagemaker_payload
                .filter(|&mb| mb > 0)
                .map(|mb| mb * 1024 * 1024),
            advertised_max_payload_mb: advertised,
            batch_strategy,
            max_concurrent_transforms: r.positive_or(
                "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS",
                default_concurrency(cpus, advertised),
            )?,
            default_accept,
            pipeline: PipelineOptions {
                decode,
                policy,
                batch_records: DEFAULT_BATCH_RECORDS,
            },
            shutdown_grace: grace,
            // Each is a tokio semaphore, which panics above its MAX_PERMITS
            // (2^61 - 1): more than that is as unlimited.
            max_connections: r
                .positive_or("MMP_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS)?
                .min(Semaphore::MAX_PERMITS),
            max_in_flight: r
                .positive_or("MMP_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT)?
                .min(Semaphore::MAX_PERMITS),
            header_read_timeout: r
                .positive_opt("MMP_HEADER_READ_TIMEOUT_SECONDS")?
                .map_or(DEFAULT_HEADER_READ_TIMEOUT, |s| seconds(s as u64)),
            max_header_bytes: r.at_least(
                "MMP_MAX_HEADER_BYTES",
                MIN_MAX_HEADER_BYTES,
                DEFAULT_MAX_HEADER_BYTES,
            )?,
            parallel_from: r.positive_or("MMP_PARALLEL_FROM", DEFAULT_PARALLEL_FROM)? as u64,
            range_bytes: r.positive_or("MMP_RANGE_BYTES", DEFAULT_RANGE_BYTES)?,
            response_framing,
            spill_dir,
            multi_model: r.boolean("SAGEMAKER_MULTI_MODEL")?.unwrap_or(false),
            mme_memory_budget: r.positive_opt("MMP_MME_MEMORY_BUDGET")?.map(|b| b as u64),
            mme_model_root: r
                .get("MMP_MME_MODEL_ROOT")
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from("/opt/ml/models"), PathBuf::from),
        };
        if let Some(bind) = over.bind {
            cfg.bind = bind;
        }
        if let Some(dir) = &over.model_dir {
            cfg.model_dir = dir.clone();
        }
        cfg.multi_model |= over.multi_model;
        if let Some(policy) = over.on_error {
            cfg.pipeline.policy = policy;
        }
        Ok(cfg)
    }
}

/// Typed reads from an [`Env`], with errors that name the variable.
struct Reader<'a, E>(&'a E);

impl<E: Env> Reader<'_, E> {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key)
    }

    /// The first of `keys` that is set, with its name.
    fn first(&self, keys: &[&'static str]) -> Option<(&'static str, String)> {
        keys.iter().find_map(|k| self.get(k).map(|v| (*k, v)))
    }

    /// `n` threads for `key`, at most [`MAX_THREADS`].
    fn threads(&self, key: &str, n: usize) -> Result<usize, Error> {
        match n {
            n if n > MAX_THREADS => Err(self.invalid(
                key,
                &n.to_string(),
                &format!("at most {MAX_THREADS} threads"),
            )),
            n => Ok(n),
        }
    }

    fn invalid(&self, key: &str, value: &str, why: &str) -> Error {
        Error::config(format!(
            "invalid configuration: {key}={value:?} is not valid: {why}"
        ))
    }

    fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, Error>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|e: T::Err| self.invalid(key, &v, &e.to_string())),
        }
    }

    /// `key` as a number ≥ 1, or `default` when unset.
    fn positive_or(&self, key: &str, default: usize) -> Result<usize, Error> {
        Ok(self.positive_opt(key)?.unwrap_or(default))
    }

    /// `key` as a number ≥ 1, if set.
    fn positive_opt(&self, key: &str) -> Result<Option<usize>, Error> {
        self.get(key).map(|v| self.positive(key, &v)).transpose()
    }

    /// `key` as a number ≥ `min`, or `default` when unset.
    fn at_least(&self, key: &str, min: usize, default: usize) -> Result<usize, Error> {
        match self.positive_opt(key)? {
            Some(n) if n < min => {
                let v = n.to_string();
                Err(self.invalid(key, &v, &format!("must be at least {min}")))
            }
            n => Ok(n.unwrap_or(default)),
        }
    }

    fn positive(&self, key: &str, v: &str) -> Result<usize, Error> {
        match v.trim().parse::<usize>() {
            Ok(0) => Err(self.invalid(key, v, "must be at least 1")),
            Ok(n) => Ok(n),
            Err(e) => Err(self.invalid(key, v, &e.to_string())),
        }
    }

    /// `true/false`, `1/0`, `yes/no`, any case (local mode writes `True`).
    fn boolean(&self, key: &str) -> Result<Option<bool>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(Some(true)),
                "false" | "0" | "no" | "" => Ok(Some(false)),
                _ => Err(self.invalid(key, &v, "use true or false")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<ServeConfig, Error> {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        ServeConfig::from_env(&env, &Overrides::default())
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.bind, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.model_dir, PathBuf::from("/opt/ml/model"));
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert!(
            c.bidi_idle > Duration::from_secs(5 * 60),
            "past 5 missed pings"
        );
        assert_eq!(c.max_body_bytes, None);
        assert_eq!(c.advertised_max_payload_mb, 6);
        assert_eq!(c.batch_strategy, BatchStrategy::MultiRecord);
        assert_eq!(c.workers, available_cpus());
        assert_eq!(c.compute_threads, available_cpus());
        assert_eq!(
            c.max_concurrent_transforms,
            default_concurrency(available_cpus(), 6)
        );
        assert_eq!(c.default_accept, None);
        assert_eq!(c.pipeline.policy, ErrorPolicy::Fail);
        assert_eq!(c.shutdown_grace, DEFAULT_GRACE);
        assert!(!c.batch);
        assert_eq!(c.response_framing, ResponseFraming::Chunked);
        assert_eq!(c.spill_dir, PathBuf::from("/tmp"));
    }

    #[test]
    fn response_framing_and_spill_dir() {
        for v in ["content-length", "Content-Length", " content-length "] {
            let c = cfg(&[("MMP_RESPONSE_FRAMING", v), ("TMPDIR", "/scratch")]).unwrap();
            assert_eq!(c.response_framing, ResponseFraming::ContentLength, "{v:?}");
            assert_eq!(c.spill_dir, PathBuf::from("/scratch"));
        }
        let c = cfg(&[("MMP_RESPONSE_FRAMING", "chunked"), ("TMPDIR", "")]).unwrap();
        assert_eq!(c.response_framing, ResponseFraming::Chunked);
        assert_eq!(c.spill_dir, PathBuf::from("/tmp"));
    }

    #[test]
    fn sagemaker_variables() {
        let c = cfg(&[
            ("SAGEMAKER_BIND_TO_PORT", "9090"),
            ("SAGEMAKER_BATCH", "True"),
            ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "2"),
            ("SAGEMAKER_BATCH_STRATEGY", "SingleRecord"),
            ("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", "3"),
            (
                "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT",
                "application/jsonlines",
            ),
            ("SAGEMAKER_MODEL_SERVER_WORKERS", "5"),
            ("MODEL_SERVER_TIMEOUT", "7"),
            ("SM_MODEL_DIR", "/models/m"),
            ("MMP_ON_ERROR", "placeholder"),
        ])
        .unwrap();
        assert_eq!(c.bind.port(), 9090);
        assert!(c.batch);
        assert_eq!(c.max_body_bytes, Some(2 * 1024 * 1024));
        assert_eq!(c.advertised_max_payload_mb, 2);
        assert_eq!(c.batch_strategy, BatchStrategy::SingleRecord);
        assert_eq!(c.max_concurrent_transforms, 3);
        assert_eq!(c.default_accept, Some(Format::JsonLines));
        assert_eq!(c.workers, 5);
        assert_eq!(c.timeout, Duration::from_secs(7));
        assert_eq!(c.model_dir, PathBuf::from("/models/m"));
        assert_eq!(c.pipeline.policy, ErrorPolicy::Placeholder);
    }

    /// README, Configuration: a header limit below what any request needs
    /// is refused (exit 64) and named, not quietly raised to 1024.
    #[test]
    fn a_header_limit_below_the_minimum_is_refused() {
        let e = cfg(&[("MMP_MAX_HEADER_BYTES", "10")]).unwrap_err();
        assert_eq!(e.exit_code(), 64);
        assert!(e.to_string().contains("MMP_MAX_HEADER_BYTES=\"10\""), "{e}");
        assert!(e.to_string().contains("at least 1024"), "{e}");
        let c = cfg(&[("MMP_MAX_HEADER_BYTES", "1024")]).unwrap();
        assert_eq!(c.max_header_bytes, 1024);
    }

    #[test]
    fn thread_counts_past_the_limit_are_refused() {
        for key in ["MODEL_SERVER_WORKERS", "MMP_COMPUTE_THREADS"] {
            let e = cfg(&[(key, "100000")]).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "invalid configuration: {key}=\"100000\" is not valid: at most 1024 threads"
                )
            );
            assert_eq!(
                e.exit_code(),
                64,
                "a configuration error (README: exit codes)"
            );
            assert!(cfg(&[(key, "1024")]).is_ok());
        }
    }

    #[test]
    fn an_unlimited_count_is_what_a_semaphore_holds() {
        let huge = u64::MAX.to_string();
        let c = cfg(&[
            ("MMP_MAX_CONNECTIONS", huge.as_str()),
            ("MMP_MAX_IN_FLIGHT", huge.as_str()),
        ])
        .unwrap();
        // What the server makes of them, which panicked.
        for n in [c.max_connections, c.max_in_flight] {
            assert_eq!(
                Semaphore::new(n).available_permits(),
                Semaphore::MAX_PERMITS
            );
        }
    }

    #[test]
    fn a_payload_limit_over_100_names_the_variable_given() {
        let e = cfg(&[("MMP_MAX_PAYLOAD_IN_MB", "101")]).unwrap_err();
        assert!(
            e.to_string().contains("MMP_MAX_PAYLOAD_IN_MB=\"101\""),
            "{e}"
        );
        let e = cfg(&[("SAGEMAKER_MAX_PAYLOAD_IN_MB", "101")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("SAGEMAKER_MAX_PAYLOAD_IN_MB=\"101\""),
            "{e}"
        );
    }

    #[test]
    fn a_timeout_too_long_for_a_deadline_is_a_century() {
        let huge = u64::MAX.to_string();
        let vars = [
            "MODEL_SERVER_TIMEOUT",
            "MMP_BIDI_IDLE_SECONDS",
            "MMP_HEADER_READ_TIMEOUT_SECONDS",
            "MMP_SHUTDOWN_GRACE_SECONDS",
        ];
        let c = cfg(&vars.map(|v| (v, huge.as_str()))).unwrap();
        let century = Duration::from_secs(100 * 365 * 24 * 3600);
        for d in [
            c.timeout,
            c.bidi_idle,
            c.header_read_timeout,
            c.shutdown_grace,
        ] {
            assert_eq!(d, century);
            // What the server does with each: a deadline from now.
            assert!(std::time::Instant::now().checked_add(d).is_some());
        }
        // Below the cap a value is as given.
        let c = cfg(&[("MODEL_SERVER_TIMEOUT", "3000000000")]).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(3_000_000_000));
    }

    #[test]
    fn compute_threads_zero_means_inline() {
        assert_eq!(
            cfg(&[("MMP_COMPUTE_THREADS", "0")])
                .unwrap()
                .compute_threads,
            0
        );
        assert_eq!(
            cfg(&[("MMP_COMPUTE_THREADS", " 3 ")])
                .unwrap()
                .compute_threads,
            3
        );
    }

    #[test]
    fn advertised_concurrency_respects_the_payload_product_limit() {
        assert_eq!(default_concurrency(2, 6), 2);
        assert_eq!(default_concurrency(32, 6), 16);
        assert_eq!(default_concurrency(32, 100), 1);
        assert_eq!(default_concurrency(32, 0), 32);
    }

    #[test]
    fn zero_payload_means_streaming_and_no_cap() {
        let c = cfg(&[("SAGEMAKER_MAX_PAYLOAD_IN_MB", "0")]).unwrap();
        assert_eq!(c.max_body_bytes, None);
        assert_eq!(c.advertised_max_payload_mb, 0);
        let c = cfg(&[("MMP_MAX_PAYLOAD_IN_MB", "0")]).unwrap();
        assert_eq!(c.advertised_max_payload_mb, 0);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (k, v, why) in [
            ("SAGEMAKER_BIND_TO_PORT", "80a", "invalid digit"),
            ("SAGEMAKER_BIND_TO_PORT", "70000", "too large"),
            ("MODEL_SERVER_WORKERS", "0", "at least 1"),
            ("MODEL_SERVER_TIMEOUT", "-1", "invalid digit"),
            ("MMP_COMPUTE_THREADS", "two", "invalid digit"),
            ("MMP_BIDI_IDLE_SECONDS", "0", "at least 1"),
            ("SAGEMAKER_BATCH", "maybe", "true or false"),
            ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "101", "at most 100"),
            ("SAGEMAKER_BATCH_STRATEGY", "ALL", "MULTI_RECORD"),
            (
                "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT",
                "text/html",
                "unsupported",
            ),
            ("MMP_ON_ERROR", "ignore", "fail or placeholder"),
            (
                "MMP_RESPONSE_FRAMING",
                "content_length",
                "chunked or content-length",
            ),
            ("MMP_RESPONSE_FRAMING", "", "chunked or content-length"),
        ] {
            let e = cfg(&[(k, v)]).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(&format!("{k}={v:?}")), "{msg}");
            assert!(msg.contains(why), "{msg}");
            assert_eq!(e.exit_code(), 64);
        }
    }

    #[test]
    fn overrides_win() {
        let env: HashMap<&str, &str> = [("SAGEMAKER_BIND_TO_PORT", "9090")].into_iter().collect();
        let over = Overrides {
            bind: Some("127.0.0.1:1234".parse().unwrap()),
            model_dir: Some("/tmp/m".into()),
            on_error: Some(ErrorPolicy::Placeholder),
            multi_model: true,
        };
        let c = ServeConfig::from_env(&env, &over).unwrap();
        assert!(c.multi_model);
        assert_eq!(c.bind, "127.0.0.1:1234".parse().unwrap());
        assert_eq!(c.model_dir, PathBuf::from("/tmp/m"));
        assert_eq!(c.pipeline.policy, ErrorPolicy::Placeholder);
    }
}
