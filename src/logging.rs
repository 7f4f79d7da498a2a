//! Logging setup: `tracing` to stderr, level from `RUST_LOG` or SageMaker's
//! `SAGEMAKER_CONTAINER_LOG_LEVEL` (Python's numeric levels or names), in a
//! human format or, with `MODEL_SERVER_LOG_FORMAT=json`, one JSON object per
//! line with the event's fields at the top level (what CloudWatch Logs
//! Insights discovers by itself).

use std::io::{BufWriter, IsTerminal};
use std::sync::Mutex;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
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

/// Log lines bound for a pipe or file (CloudWatch) go through
/// tracing-appender's non-blocking writer: request threads hand each line to
/// its worker thread, which writes what has queued up in one `write` (a
/// `BufWriter` flushed whenever the queue runs dry), so a busy server does
/// not pay a system call per request on its own threads and a quiet one
/// shows each line at once. `lossy(false)`: a full queue slows the senders
/// down rather than dropping lines. The guard flushes what is queued when
/// [`flush`] drops it at exit.
static GUARD: Mutex<Option<tracing_appender::non_blocking::WorkerGuard>> = Mutex::new(None);

/// Write out queued log lines (call before the process exits).
pub fn flush() {
    let guard = GUARD.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(guard);
}

/// Install the subscriber. On a terminal, lines are written at once and in
/// colour; otherwise (CloudWatch, which would show the escape codes) without
/// colour, through the non-blocking writer. A bad `MODEL_SERVER_LOG_FORMAT` is returned as an
/// error message (text logs are installed meanwhile, so it can be reported).
pub fn init(default: &str) -> Result<(), String> {
    let settings = LogSettings::from_env(&ProcessEnv);
    let format = format_from(settings.format.as_deref());
    let terminal = std::io::stderr().is_terminal();
    let writer = if terminal {
        BoxMakeWriter::new(std::io::stderr)
    } else {
        let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .thread_name("mmp-log")
            .finish(BufWriter::with_capacity(64 * 1024, std::io::stderr()));
        *GUARD.lock().unwrap_or_else(|e| e.into_inner()) = Some(guard);
        BoxMakeWriter::new(writer)
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
            .with_ansi(std::io::stderr().is_terminal())
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
