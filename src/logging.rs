//! Logging setup: `tracing` to stderr, level from `RUST_LOG` or SageMaker's
//! `SAGEMAKER_CONTAINER_LOG_LEVEL` (Python's numeric levels or names), in a
//! human format or, with `MODEL_SERVER_LOG_FORMAT=json`, one JSON object per
//! line with the event's fields at the top level (what CloudWatch Logs
//! Insights discovers by itself).

use std::io::{BufWriter, IsTerminal, Stderr, Write};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultFields, DefaultVisitor, Writer};
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriter};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::EnvFilter;

use crate::config::{LogSettings, ProcessEnv};

/// The filter from `RUST_LOG`, else `SAGEMAKER_CONTAINER_LOG_LEVEL`, else
/// `default`.
pub fn filter(settings: &LogSettings, default: &str) -> EnvFilter {
    if let Some(f) = settings
        .rust_log
        .as_deref()
        .and_then(|v| EnvFilter::try_new(v).ok())
    {
        return f;
    }
    let level = settings
        .container_log_level
        .as_deref()
        .and_then(sagemaker_level)
        .unwrap_or(default);
    EnvFilter::new(level)
}

/// Python logging levels (`10`..`50`, `DEBUG`..`CRITICAL`) as tracing's.
fn sagemaker_level(v: &str) -> Option<&'static str> {
    let v = v.trim().to_ascii_lowercase();
    Some(match v.as_str() {
        "10" | "debug" => "debug",
        "20" | "info" => "info",
        "30" | "warn" | "warning" => "warn",
        "40" | "50" | "error" | "critical" => "error",
        _ => return None,
    })
}

/// Install the subscriber. Logs go to stderr, which CloudWatch collects.
/// The log format: `text` (default) or `json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `MODEL_SERVER_LOG_FORMAT`: `json` or `text` (default), any case.
pub fn format_from(value: Option<&str>) -> Result<LogFormat, String> {
    match value.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(LogFormat::Text),
        Some(v) if v.is_empty() || v == "text" => Ok(LogFormat::Text),
        Some(v) if v == "json" => Ok(LogFormat::Json),
        Some(v) => Err(format!(
            "invalid configuration: MODEL_SERVER_LOG_FORMAT={v:?} is not valid: use text or json"
        )),
    }
}

/// Log lines bound for a pipe or file (CloudWatch), batched: a busy server
/// would otherwise pay a `write` system call per request on its own threads.
///
/// Why not tracing-appender's non-blocking writer (tried with `lossy(false)`
/// and a `BufWriter`, flushed whenever its queue runs dry): on this 2-CPU
/// machine its worker thread competes with the request threads: back-to-back
/// runs of the shared bench (1-row CSV, 16 connections) gave 50.0k
/// requests/s with it against 63.6k with this batching (echo ceiling 108k
/// and 107k in the same runs), and its bounded channel of 128k lines
/// doubled the idle RSS (5 to 10 MiB).
/// Only the per-request info lines wait: the buffer is flushed when full,
/// every [`FLUSH_EVERY`] by a background thread, by [`flush`] at exit, and
/// after any other line (startup, warnings, errors), which thus appears at
/// once. No line is dropped.
static BUFFER: OnceLock<Mutex<BufWriter<Stderr>>> = OnceLock::new();

/// How late a buffered log line may be.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

fn buffer() -> &'static Mutex<BufWriter<Stderr>> {
    BUFFER.get_or_init(|| Mutex::new(BufWriter::with_capacity(64 * 1024, std::io::stderr())))
}

/// Write out buffered log lines (call before the process exits).
pub fn flush() {
    if let Some(b) = BUFFER.get() {
        let mut b = b.lock().unwrap_or_else(|e| e.into_inner());
        let _ = b.flush();
    }
}

/// A `MakeWriter` over the shared buffer: each event is formatted first, then
/// written in one call under the lock.
struct Buffered;

struct BufferedLine {
    out: MutexGuard<'static, BufWriter<Stderr>>,
    /// Write the buffer out once this line is in it.
    flush: bool,
}

impl Write for BufferedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl Drop for BufferedLine {
    fn drop(&mut self) {
        if self.flush {
            let _ = self.out.flush();
        }
    }
}

fn lock(flush: bool) -> BufferedLine {
    BufferedLine {
        // A panic while holding the lock leaves a usable buffer behind.
        out: buffer().lock().unwrap_or_else(|e| e.into_inner()),
        flush,
    }
}

impl<'a> MakeWriter<'a> for Buffered {
    type Writer = BufferedLine;

    fn make_writer(&'a self) -> BufferedLine {
        lock(true)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> BufferedLine {
        let routine = meta.target() == "mmp::request" && *meta.level() >= tracing::Level::INFO;
        lock(!routine)
    }
}

/// Install the subscriber. On a terminal, lines are written at once and in
/// colour; otherwise (CloudWatch, which would show the escape codes) without
/// colour and batched. A bad `MODEL_SERVER_LOG_FORMAT` is returned as an
/// error message (text logs are installed meanwhile, so it can be reported).
pub fn init(default: &str) -> Result<(), String> {
    let settings = LogSettings::from_env(&ProcessEnv);
    let format = format_from(settings.format.as_deref());
    let terminal = std::io::stderr().is_terminal();
    let writer = if terminal {
        BoxMakeWriter::new(std::io::stderr)
    } else {
        std::thread::Builder::new()
            .name("mmp-log-flush".into())
            .spawn(|| loop {
                std::thread::sleep(FLUSH_EVERY);
                flush();
            })
            .map_err(|e| format!("cannot start the log flusher: {e}"))?;
        BoxMakeWriter::new(Buffered)
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(&settings, default))
        .with_writer(writer);
    if format == Ok(LogFormat::Json) {
        let _ = builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init();
    } else {
        let _ = builder
            .fmt_fields(PlainFields)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init();
    }
    format.map(drop)
}

/// The text format's fields, written as tracing-subscriber's `DefaultFields`
/// writes them, byte for byte, but without its `core::fmt` round trip for
/// the common values: an integer (itoa), a float (ryu, in the range where
/// its digits are `{:?}`'s), and a string of printable ASCII (written as is,
/// in quotes as `{:?}` would). Anything else (and every field on a
/// terminal, where names are styled) is handed to a `DefaultVisitor`.
///
/// Why ours: the per-request line has 15 fields, and callgrind on `mmp
/// serve` under 1-row CSV POSTs put 37% of all instructions (20.6k of 55.9k
/// per request) in formatting it, most of it `DefaultVisitor` painting each
/// field name through nu-ansi-term and `Debug` for each value.
pub struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> std::fmt::Result {
        if writer.has_ansi_escapes() {
            return DefaultFields::new().format_fields(writer, fields);
        }
        let mut v = PlainVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct PlainVisitor<'w> {
    writer: Writer<'w>,
    /// No field written yet (no separating space before the next).
    first: bool,
    result: std::fmt::Result,
}

impl PlainVisitor<'_> {
    /// A field name `DefaultVisitor` writes plainly as `name=value`.
    fn plain(field: &Field) -> bool {
        let name = field.name();
        name != "message" && !name.starts_with("r#") && !name.starts_with("log.")
    }

    /// Hand one field to tracing-subscriber's own visitor.
    fn delegate(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.result.is_err() {
            return;
        }
        let mut v = DefaultVisitor::new(self.writer.by_ref(), self.first);
        record(&mut v);
        self.result = v.finish();
        self.first = false;
    }

    /// Write `parts` after a separating space (but for the first field).
    fn put(&mut self, parts: &[&str]) {
        if self.result.is_err() {
            return;
        }
        if !self.first {
            self.result = self.writer.write_char(' ');
        }
        self.first = false;
        for p in parts {
            if self.result.is_ok() {
                self.result = self.writer.write_str(p);
            }
        }
    }
}

/// Printable ASCII: written as is by `Debug` for `str` (but for `"` and
/// `\\`) and by tracing-subscriber's ANSI sanitiser.
fn printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Where `ryu` writes the digits `{:?}` writes for an `f64`: both print the
/// shortest round-trip digits, and `{:?}` switches to an exponent outside
/// this range (std's `float_to_general_debug`).
fn ryu_is_debug(v: f64) -> bool {
    let a = v.abs();
    a == 0.0 || (1e-4..1e16).contains(&a)
}

impl Visit for PlainVisitor<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if Self::plain(field) {
            self.put(&[field.name(), "=", itoa::Buffer::new().format(value)]);
        } else {
            self.delegate(|v| v.record_u64(field, value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if Self::plain(field) {
            self.put(&[field.name(), "=", itoa::Buffer::new().format(value)]);
        } else {
            self.delegate(|v| v.record_i64(field, value));
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if Self::plain(field) && ryu_is_debug(value) {
            let mut buf = ryu::Buffer::new();
            self.put(&[field.name(), "=", buf.format_finite(value)]);
        } else {
            self.delegate(|v| v.record_f64(field, value));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if !printable(value) {
            self.delegate(|v| v.record_str(field, value));
        } else if field.name() == "message" {
            // The message is written as is, without its name.
            self.put(&[value]);
        } else if Self::plain(field) && !value.contains(['"', '\\']) {
            self.put(&[field.name(), "=\"", value, "\""]);
        } else {
            self.delegate(|v| v.record_str(field, value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.delegate(|v| v.record_debug(field, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_values() {
        assert_eq!(format_from(None), Ok(LogFormat::Text));
        assert_eq!(format_from(Some("JSON")), Ok(LogFormat::Json));
        assert_eq!(format_from(Some("text")), Ok(LogFormat::Text));
        assert!(format_from(Some("xml"))
            .unwrap_err()
            .contains("MODEL_SERVER_LOG_FORMAT=\"xml\""));
    }

    /// A writer into a shared buffer, for a subscriber in a test.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Events covering every branch of [`PlainVisitor`]: plain values, and
    /// the ones it hands over (quotes, escapes, control characters, floats
    /// `{:?}` writes with an exponent, Display and Debug values, raw names).
    fn events() {
        let e = std::io::Error::other("disk on fire");
        for (v, s) in [
            (0.0, "POST"),
            (-0.0, "a \"quoted\" value"),
            (1e-4, "back\\slash"),
            (0.451_36, "tab\there"),
            (107.067_182, "line\nbreak"),
            (9.999_999_999_999_998e15, "esc\u{1b}[31m"),
            (1e16, "caf\u{e9}"),
            (9.9e-5, "\u{85}c1"),
            (f64::NAN, ""),
            (f64::INFINITY, "it's"),
            (-1.5e300, "~ ok {}"),
        ] {
            tracing::info!(
                target: "mmp::request",
                method = "POST", path = "/invocations", status = 200u16,
                records = 1u64, placeholders = 0u64, delta = -3i64,
                duration_ms = v, request_id = s, flag = true,
                model = Some(s), target_model = None::<&str>,
                "request"
            );
            tracing::warn!(error = %e, kind = ?s, r#type = s, "request failed: {s}");
            tracing::info!("{s}");
        }
        tracing::info!(u = u64::MAX, i = i64::MIN, big = u128::MAX, "extremes");
    }

    fn text(fields: impl for<'w> FormatFields<'w> + Send + Sync + 'static) -> String {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .without_time()
            .with_ansi(false)
            .fmt_fields(fields)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, events);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn plain_fields_write_what_default_fields_write() {
        let ours = text(PlainFields);
        let theirs = text(DefaultFields::new());
        // 34 events; the messages with a line break in them add two lines.
        assert_eq!(ours.lines().count(), 36);
        for (a, b) in ours.lines().zip(theirs.lines()) {
            assert_eq!(a, b);
        }
        assert_eq!(ours, theirs);
    }

    #[test]
    fn python_levels() {
        assert_eq!(sagemaker_level("20"), Some("info"));
        assert_eq!(sagemaker_level("WARNING"), Some("warn"));
        assert_eq!(sagemaker_level("40"), Some("error"));
        assert_eq!(sagemaker_level("loud"), None);
    }
}
