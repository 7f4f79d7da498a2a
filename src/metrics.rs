//! Prometheus metrics, served at `GET /metrics` (SageMaker's
//! `ContainerMetricsConfig` scrapes that path on the serving port).
//!
//! One process-wide registry of atomic counters, gauges and histograms from
//! the `prometheus` crate: recording is an atomic add, so the hot path pays
//! nanoseconds, and a scrape only reads. Routes are labelled by a fixed set
//! of names (unknown paths are `other`), and error kinds by their fixed
//! codes, so label cardinality is bounded whatever clients send.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by route and status.
    pub requests: IntCounterVec,
    /// Records decoded (good and bad).
    pub records: IntCounter,
    /// Predictions written.
    pub predictions: IntCounter,
    /// Bad records and failed requests, by error kind.
    pub errors: IntCounterVec,
    /// Request body bytes read by `/invocations`.
    pub request_bytes: IntCounter,
    /// Response body bytes written by `/invocations`.
    pub response_bytes: IntCounter,
    /// `/invocations` requests in progress.
    pub in_flight: IntGauge,
    /// `/invocations` duration, from headers read to the last byte.
    pub duration: Histogram,
    /// `/invocations` time to the first response byte (the status commit).
    pub first_byte: Histogram,
    /// Responses cut after their status was sent (client gone, fatal error,
    /// shutdown).
    pub aborted: IntCounter,
    /// `/invocations` responses by their body framing on the wire
    /// (`chunked` or `content_length`): two label values.
    pub framing: IntCounterVec,
    /// `content-length` answers too large for memory, held in a file.
    pub spills: IntCounter,
    /// Bytes those answers wrote to their files.
    pub spill_bytes: IntCounter,
    /// `/invocations` bodies scored in ranges on every core (all of a
    /// large one, or the rest of a chunked one past the threshold).
    pub in_ranges: IntCounter,
    /// Seconds the model took to load.
    pub model_load_seconds: Gauge,
    /// The label sets every small request counts, looked up once.
    hot: Hot,
}

/// Children of the labelled counters that every `/invocations` and `/ping`
/// counts, each found in its vector once (on first use, so a series shows
/// in `/metrics` only once it has counted something, as before): a lookup
/// hashes the labels under a lock, and `request` formatted the status as a
/// `String` each time.
#[derive(Default)]
struct Hot {
    invocations_ok: OnceLock<IntCounter>,
    ping_ok: OnceLock<IntCounter>,
    chunked: OnceLock<IntCounter>,
    content_length: OnceLock<IntCounter>,
}

/// Latency buckets, seconds: sub-millisecond requests to minute-long streams.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    /// Every `expect` below is on a constant metric name, help text or label
    /// set, which the `prometheus` crate validates: they cannot fail at run
    /// time, and nothing here depends on a request (the first scrape in the
    /// tests exercises all of them).
    fn new() -> Metrics {
        let registry = Registry::new_custom(Some("mmp".into()), None).expect("a valid prefix");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route and status",
            ),
            &["route", "status"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "errors_total",
                "bad records (placeholders included) and failed requests, by error kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let framing = IntCounterVec::new(
            Opts::new(
                "invocation_responses_total",
                "/invocations responses by body framing: chunked or content_length",
            ),
            &["framing"],
        )
        .expect("valid metric");
        let histogram = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()))
                .expect("valid metric")
        };
        let m = Metrics {
            requests,
            records: IntCounter::new(
                "records_total",
                "records decoded by /invocations, good and bad",
            )
            .expect("valid metric"),
            predictions: IntCounter::new(
                "predictions_total",
                "predictions written by /invocations",
            )
            .expect("valid metric"),
            errors,
            request_bytes: IntCounter::new(
                "request_bytes_total",
                "request body bytes read by /invocations",
            )
            .expect("valid metric"),
            response_bytes: IntCounter::new(
                "response_bytes_total",
                "response body bytes written by /invocations",
            )
            .expect("valid metric"),
            in_flight: IntGauge::new("invocations_in_flight", "/invocations requests in progress")
                .expect("valid metric"),
            duration: histogram(
                "invocation_duration_seconds",
                "/invocations duration, from its headers to its last byte",
            ),
            first_byte: histogram(
                "invocation_first_byte_seconds",
                "/invocations time to the first response byte",
            ),
            aborted: IntCounter::new(
                "invocations_aborted_total",
                "/invocations responses cut after their status was sent",
            )
            .expect("valid metric"),
            framing,
            spills: IntCounter::new(
                "response_spills_total",
                "content-length answers larger than memory holds, spilled to a temporary file",
            )
            .expect("valid metric"),
            spill_bytes: IntCounter::new(
                "response_spill_bytes_total",
                "bytes written to temporary files by spilled answers",
            )
            .expect("valid metric"),
            in_ranges: IntCounter::new(
                "invocations_in_ranges_total",
                "/invocations bodies scored in ranges on every core",
            )
            .expect("valid metric"),
            model_load_seconds: Gauge::new("model_load_seconds", "seconds the model took to load")
                .expect("valid metric"),
            registry,
            hot: Hot::default(),
        };
        let build = IntGaugeVec::new(
            Opts::new(
                "build_info",
                "version and git commit of this build; always 1",
            ),
            &["version", "git_commit"],
        )
        .expect("valid metric");
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::GIT_COMMIT])
            .set(1);
        // Registering distinct names in a fresh registry cannot fail.
        let r = &m.registry;
        let _ = r.register(Box::new(m.requests.clone()));
        let _ = r.register(Box::new(m.records.clone()));
        let _ = r.register(Box::new(m.predictions.clone()));
        let _ = r.register(Box::new(m.errors.clone()));
        let _ = r.register(Box::new(m.request_bytes.clone()));
        let _ = r.register(Box::new(m.response_bytes.clone()));
        let _ = r.register(Box::new(m.in_flight.clone()));
        let _ = r.register(Box::new(m.duration.clone()));
        let _ = r.register(Box::new(m.first_byte.clone()));
        let _ = r.register(Box::new(m.aborted.clone()));
        let _ = r.register(Box::new(m.framing.clone()));
        let _ = r.register(Box::new(m.spills.clone()));
        let _ = r.register(Box::new(m.spill_bytes.clone()));
        let _ = r.register(Box::new(m.in_ranges.clone()));
        let _ = r.register(Box::new(m.model_load_seconds.clone()));
        let _ = r.register(Box::new(build));
        m
    }

    /// Count a request answered on `route` with `status`.
    pub fn request(&self, route: &str, status: u16) {
        let hot = match (route, status) {
            ("/invocations", 200) => &self.hot.invocations_ok,
            ("/ping", 200) => &self.hot.ping_ok,
            _ => {
                let mut digits = itoa::Buffer::new();
                let status = digits.format(status);
                return self.requests.with_label_values(&[route, status]).inc();
            }
        };
        hot.get_or_init(|| self.requests.with_label_values(&[route, "200"]))
            .inc();
    }

    /// Count an `/invocations` response by its framing (`chunked` or
    /// `content_length`).
    pub fn framed(&self, framing: &str) {
        let hot = match framing {
            "chunked" => &self.hot.chunked,
            "content_length" => &self.hot.content_length,
            other => return self.framing.with_label_values(&[other]).inc(),
        };
        hot.get_or_init(|| self.framing.with_label_values(&[framing]))
            .inc();
    }

    /// Count an error of this kind (a record error code or request error).
    pub fn error(&self, kind: &str) {
        self.errors.with_label_values(&[kind]).inc();
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into memory cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A pipeline's placeholder sink for the server: each bad record answered
/// with a placeholder is counted by kind.
pub fn count_placeholder(e: &crate::Error) {
    metrics().error(e.code());
}

/// Multi-model endpoint metrics. None carries a model label, so their number
/// stays fixed however many models come and go; invocations of a loaded
/// model are counted by the request metrics above, under the route
/// `/models/{model_name}/invoke`.
pub struct MmeMetrics {
    /// Models loaded now.
    pub loaded: IntGauge,
    /// Models loaded since start.
    pub loads: IntCounter,
    /// Models unloaded since start.
    pub unloads: IntCounter,
    /// Loads refused with 507 (over the memory budget).
    pub refused: IntCounter,
    /// Time to load a model, from request to ready.
    pub load_seconds: Histogram,
}

/// The multi-model metrics, registered with the others on first use (so a
/// single-model server's `/metrics` does not show them).
pub fn mme() -> &'static MmeMetrics {
    static MME: OnceLock<MmeMetrics> = OnceLock::new();
    MME.get_or_init(|| {
        // Constant names and help texts: see `Metrics::new`.
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let m = MmeMetrics {
            loaded: IntGauge::new(
                "mme_models_loaded",
                "models loaded now (multi-model endpoint)",
            )
            .expect("valid metric"),
            loads: counter("mme_loads_total", "models loaded since start"),
            unloads: counter("mme_unloads_total", "models unloaded since start"),
            refused: counter(
                "mme_loads_refused_total",
                "loads refused with 507 because they would exceed the memory budget",
            ),
            load_seconds: Histogram::with_opts(
                HistogramOpts::new("mme_load_seconds", "time to load a model, request to ready")
                    .buckets(BUCKETS.to_vec()),
            )
            .expect("valid metric"),
        };
        let r = &metrics().registry;
        let _ = r.register(Box::new(m.loaded.clone()));
        let _ = r.register(Box::new(m.loads.clone()));
        let _ = r.register(Box::new(m.unloads.clone()));
        let _ = r.register(Box::new(m.refused.clone()));
        let _ = r.register(Box::new(m.load_seconds.clone()));
        m
    })
}
