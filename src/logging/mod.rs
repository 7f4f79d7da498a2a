//! Logging setup: `tracing` to stderr, level from `RUST_LOG` or SageMaker's
//! `SAGEMAKER_CONTAINER_LOG_LEVEL` (Python's numeric levels or names), in a
//! human format or, with `MODEL_SERVER_LOG_FORMAT=json`, one JSON object per
//! line with the event's fields at the top level (what CloudWatch Logs
//! Insights discovers by itself).

use std::io::{BufWriter, IsTerminal, Stderr, Write};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing::Level;
use tracing_subscriber::fmt::writer::{EitherWriter, MakeWriter};
use tracing_subscriber::EnvFilter;

use crate::config::{LogSettings, ProcessEnv};

mod format;

pub use format::{CachedTime, PlainFields, PlainFormat};

/// A duration as a log line's `duration_ms`: milliseconds to the
/// microsecond, which the text format writes without a float formatter.
pub fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1e3
}

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

/// Where log lines go: stderr as is (a terminal), or the shared buffer, where
/// each event is formatted first, then written in one call under the lock.
/// An enum rather than tracing-subscriber's `BoxMakeWriter`, which allocates
/// a boxed writer for every line.
enum Sink {
    Terminal,
    Buffered,
}

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

impl<'a> MakeWriter<'a> for Sink {
    type Writer = EitherWriter<Stderr, BufferedLine>;

    fn make_writer(&'a self) -> Self::Writer {
        match self {
            Sink::Terminal => EitherWriter::A(std::io::stderr()),
            Sink::Buffered => EitherWriter::B(lock(true)),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        match self {
            Sink::Terminal => EitherWriter::A(std::io::stderr()),
            Sink::Buffered => {
                let routine = meta.target() == "mmp::request" && *meta.level() >= Level::INFO;
                EitherWriter::B(lock(!routine))
            }
        }
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
        Sink::Terminal
    } else {
        std::thread::Builder::new()
            .name("mmp-log-flush".into())
            .spawn(|| loop {
                std::thread::sleep(FLUSH_EVERY);
                flush();
            })
            .map_err(|e| format!("cannot start the log flusher: {e}"))?;
        Sink::Buffered
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(&settings, default))
        .with_writer(writer)
        .with_timer(CachedTime);
    if format == Ok(LogFormat::Json) {
        let _ = builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init();
    } else {
        let _ = builder
            .with_ansi(std::io::stderr().is_terminal())
            .fmt_fields(PlainFields)
            .event_format(PlainFormat::new(CachedTime))
            .try_init();
    }
    format.map(drop)
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

    #[test]
    fn python_levels() {
        assert_eq!(sagemaker_level("20"), Some("info"));
        assert_eq!(sagemaker_level("WARNING"), Some("warn"));
        assert_eq!(sagemaker_level("40"), Some("error"));
        assert_eq!(sagemaker_level("loud"), None);
    }
}
