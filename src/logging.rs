//! Logging setup: `tracing` to stderr, level from `RUST_LOG` or SageMaker's
//! `SAGEMAKER_CONTAINER_LOG_LEVEL` (Python's numeric levels or names).

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
/// Colours only on a terminal: CloudWatch would show the escape codes.
pub fn init(default: &str) {
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(default))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_levels() {
        assert_eq!(sagemaker_level("20"), Some("info"));
        assert_eq!(sagemaker_level("WARNING"), Some("warn"));
        assert_eq!(sagemaker_level("40"), Some("error"));
        assert_eq!(sagemaker_level("loud"), None);
    }
}
