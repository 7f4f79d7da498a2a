//! Logging setup: `tracing` to stderr, level from `RUST_LOG` or SageMaker's
//! `SAGEMAKER_CONTAINER_LOG_LEVEL` (Python's numeric levels or names), in a
//! human format or, with `MODEL_SERVER_LOG_FORMAT=json`, one JSON object per
//! line with the event's fields at the top level (what CloudWatch Logs
//! Insights discovers by itself).

use tracing_subscriber::EnvFilter;

/// The filter from `RUST_LOG`, else `SAGEMAKER_CONTAINER_LOG_LEVEL`, else
/// `default`.
pub fn filter(default: &str) -> EnvFilter {
    if let Ok(f) = EnvFilter::try_from_default_env() {
        return f;
    }
    let level = std::env::var("SAGEMAKER_CONTAINER_LOG_LEVEL")
        .ok()
        .and_then(|v| sagemaker_level(&v))
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
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `MODEL_SERVER_LOG_FORMAT`: `json` or `text` (default), any case.
pub fn format_from(value: Option<&str>) -> Result<Format, String> {
    match value.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(Format::Text),
        Some(v) if v.is_empty() || v == "text" => Ok(Format::Text),
        Some(v) if v == "json" => Ok(Format::Json),
        Some(v) => Err(format!(
            "invalid configuration: MODEL_SERVER_LOG_FORMAT={v:?} is not valid: use text or json"
        )),
    }
}

/// Install the subscriber. Colours only on a terminal: CloudWatch would show
/// the escape codes. A bad `MODEL_SERVER_LOG_FORMAT` is returned as an error
/// message (text logs are installed meanwhile, so it can be reported).
pub fn init(default: &str) -> Result<(), String> {
    use std::io::IsTerminal;
    let format = format_from(std::env::var("MODEL_SERVER_LOG_FORMAT").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(default))
        .with_writer(std::io::stderr);
    if format == Ok(Format::Json) {
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
        assert_eq!(format_from(None), Ok(Format::Text));
        assert_eq!(format_from(Some("JSON")), Ok(Format::Json));
        assert_eq!(format_from(Some("text")), Ok(Format::Text));
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
