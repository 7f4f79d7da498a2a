//! Logging setup: `tracing` to stderr, level from `RUST_LOG` or SageMaker's
//! `SAGEMAKER_CONTAINER_LOG_LEVEL` (Python's numeric levels or names), in a
//! human format or, with `MODEL_SERVER_LOG_FORMAT=json`, one JSON object per
//! line with the event's fields at the top level (what CloudWatch Logs
//! Insights discovers by itself).

use std::cell::Cell;
use std::io::{BufWriter, IsTerminal, Stderr, Write};
use std::panic::PanicHookInfo;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing::Level;
use tracing_subscriber::fmt::writer::{EitherWriter, MakeWriter};
use tracing_subscriber::EnvFilter;

use crate::config::{LogSettings, ProcessEnv};

mod format;

pub use format::{CachedTime, PlainFields, PlainFormat};

/// `eprintln!` that never panics. A command's last words (its error, a
/// summary) go to stderr, which may be closed (`mmp score 2>&-`, a reader
/// gone) or full (`2>/dev/full`); `eprintln!` then panics, and the exit code
/// the message went with turns into 101. The message is lost, the code kept.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// A duration as a log line's `duration_ms`: milliseconds to the
/// microsecond, which the text format writes without a float formatter.
pub fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1e3
}

/// The filter from `RUST_LOG`, else `SAGEMAKER_CONTAINER_LOG_LEVEL`, else
/// `default`; a value that is set (not blank) and not valid is an error
/// naming the variable (README, Configuration: a bad value ends
/// `mmp serve` with exit code 64).
pub fn filter(settings: &LogSettings, default: &str) -> Result<EnvFilter, String> {
    let set = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
    if let Some(v) = set(&settings.rust_log) {
        return EnvFilter::try_new(&v).map_err(|e| {
            format!("invalid configuration: RUST_LOG={v:?} is not a valid log filter: {e}")
        });
    }
    match set(&settings.container_log_level) {
        None => Ok(EnvFilter::new(default)),
        Some(v) => sagemaker_level(&v).map(EnvFilter::new).ok_or_else(|| {
            format!(
                "invalid configuration: SAGEMAKER_CONTAINER_LOG_LEVEL={v:?} is not valid: use a \
                 Python logging level (10, 20, 30, 40, 50) or name (debug, info, warning, error, \
                 critical)"
            )
        }),
    }
}

/// Python logging levels (`10`..`50`, any number by the level it reaches,
/// `DEBUG`..`CRITICAL`) as tracing's.
fn sagemaker_level(v: &str) -> Option<&'static str> {
    let v = v.trim().to_ascii_lowercase();
    if let Ok(n) = v.parse::<u32>() {
        return Some(match n {
            0..=10 => "debug",
            11..=20 => "info",
            21..=30 => "warn",
            _ => "error",
        });
    }
    Some(match v.as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "error" | "critical" | "fatal" => "error",
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
    /// The buffer; `None` for a panic's report that could not have it
    /// (see [`lock`]), written straight to stderr.
    out: Option<MutexGuard<'static, BufWriter<Stderr>>>,
    /// Write the buffer out once this line is in it.
    flush: bool,
}

impl Write for BufferedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.out {
            Some(out) => out.write(buf),
            None => std::io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.out {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BufferedLine {
    fn drop(&mut self) {
        if let Some(out) = self.out.as_mut().filter(|_| self.flush) {
            let _ = out.flush();
        }
    }
}

fn lock(flush: bool) -> BufferedLine {
    let buffer = buffer();
    let out = if std::thread::panicking() {
        // A panic's report (the hook logs it) while this thread may hold
        // the buffer already, mid-line: waiting would never end.
        match buffer.try_lock() {
            Ok(out) => Some(out),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    } else {
        // A panic while holding the lock leaves a usable buffer behind.
        Some(buffer.lock().unwrap_or_else(|e| e.into_inner()))
    };
    BufferedLine { out, flush }
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
    // A bad level still logs at `default` until the caller exits on it.
    let (env_filter, bad_filter) = match filter(&settings, default) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new(default), Some(e)),
    };
    let builder = tracing_subscriber::fmt()
        // A line stderr will not take (closed, full) is lost: the layer's
        // own report of it would go to the same stderr, by `eprintln!`,
        // which panics there.
        .log_internal_errors(false)
        .with_env_filter(env_filter)
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
    format?;
    bad_filter.map_or(Ok(()), Err)
}

thread_local! {
    /// Set while this thread runs [`unreported`] work.
    static UNREPORTED: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` with its panics unreported: work that, if it fails, is run
/// again by a run that reports (a range scored before its place in the
/// stream is known, `src/parallel/mod.rs`), so a panic is reported once.
/// The panic is still caught and answered by the caller as before.
pub fn unreported<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            UNREPORTED.set(self.0);
        }
    }
    let _restore = Restore(UNREPORTED.replace(true));
    f()
}

/// Whether a panic on this thread now would be reported.
#[cfg(test)]
pub(crate) fn reports_panics() -> bool {
    !UNREPORTED.get()
}

/// Report panics (call once, first thing): as one error event of the log,
/// in its format (a JSON log stays one object per line, and the event comes
/// in order with the lines before it, which std's hook would overtake), once
/// [`init`] has installed a log that lets it through; otherwise as std's
/// default hook prints them. Never while [`unreported`] work runs.
pub fn report_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if UNREPORTED.get() {
            return;
        }
        if tracing::dispatcher::has_been_set()
            && tracing::enabled!(target: "mmp::panic", Level::ERROR)
        {
            log_panic(info);
        } else {
            default(info);
        }
    }));
}

/// A panic as an event: what std's hook prints, with the thread, location
/// and message as fields too. Why not tracing-panic's hook: its event drops
/// the thread's name (`mmp-compute-N`: the compute pool, where a model's
/// `predict` runs; `src/compute.rs`) and logs under its own target.
fn log_panic(info: &PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("Box<dyn Any>");
    let current = std::thread::current();
    let thread = current.name().unwrap_or("<unnamed>");
    let location = info.location().map(ToString::to_string).unwrap_or_default();
    let backtrace = std::backtrace::Backtrace::capture();
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        let backtrace = short_lines(&backtrace.to_string());
        tracing::error!(target: "mmp::panic", thread, location, backtrace,
            "thread '{thread}' panicked at {location}: {message}");
    } else {
        tracing::error!(target: "mmp::panic", thread, location,
            "thread '{thread}' panicked at {location}: {message}");
    }
}

/// Longest line of a logged backtrace, in bytes.
const BACKTRACE_LINE: usize = 512;

/// `text` with every line cut to [`BACKTRACE_LINE`] bytes (`…` marks a
/// cut). A frame of a request's task names the future's whole type, the
/// routes' filters nested, over 300 KB in one line: the backtrace is one
/// field of one log line, which a log event must hold (PutLogEvents takes
/// events of up to 1 MB; 256 KB before).
fn short_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(64 << 10));
    for line in text.lines() {
        let mut cut = line.len().min(BACKTRACE_LINE);
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&line[..cut]);
        if cut < line.len() {
            out.push('…');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::format::tests::Captured;
    use super::*;

    /// Set in the copy of the test binary that runs the panic alone.
    const ALONE: &str = "MMP_TEST_PANIC_ALONE";

    /// The hook is the process's, and tracing caches each log call site's
    /// interest process-wide: another test's subscriber coming or going on
    /// a parallel thread can leave this call site's interest stale for a
    /// moment, and the event unrecorded (seen about one run in five). So the
    /// test runs alone, in a copy of this test binary.
    #[test]
    fn a_panic_is_one_json_log_line_with_its_thread_place_and_message() {
        if std::env::var_os(ALONE).is_some() {
            return a_panic_alone();
        }
        let name = "logging::tests::a_panic_is_one_json_log_line_with_its_thread_place_and_message";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(ALONE, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("1 passed"), "{text}");
    }

    fn a_panic_alone() {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || sink.clone())
            .finish();
        // The hook is the process's: set only around this one panic (a
        // panic elsewhere meanwhile is logged to no subscriber).
        let std_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(log_panic));
        let line = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tracing::subscriber::with_default(subscriber, || panic!("model says {}", 7));
        }));
        std::panic::set_hook(std_hook);
        assert!(line.is_err());
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        let thread = std::thread::current().name().unwrap().to_string();
        assert_eq!(v["level"], "ERROR");
        assert_eq!(v["target"], "mmp::panic");
        assert_eq!(v["thread"], thread.as_str());
        let location = v["location"].as_str().unwrap();
        assert!(location.starts_with("src/logging/mod.rs:"), "{location}");
        assert_eq!(
            v["message"],
            format!("thread '{thread}' panicked at {location}: model says 7")
        );
    }

    #[test]
    fn a_backtrace_keeps_every_frame_with_long_names_cut() {
        let frame = format!("  29: poll<{}>", "é".repeat(1000));
        let text = format!("   0: log_panic\n{frame}\n             at src/x.rs:1:2\n");
        let short = short_lines(&text);
        let lines: Vec<&str> = short.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "   0: log_panic");
        assert!(lines[1].starts_with("  29: poll<éé") && lines[1].ends_with('…'));
        assert!(lines[1].len() <= BACKTRACE_LINE + '…'.len_utf8());
        assert_eq!(lines[2], "             at src/x.rs:1:2");
    }

    #[test]
    fn unreported_work_restores_reporting_even_when_it_panics() {
        assert!(reports_panics());
        let inside = unreported(|| {
            let nested = unreported(reports_panics);
            (reports_panics(), nested, reports_panics())
        });
        assert_eq!(inside, (false, false, false));
        assert!(reports_panics());
        let _ = std::panic::catch_unwind(|| unreported(|| panic!("unreported")));
        assert!(reports_panics());
    }

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
        assert_eq!(sagemaker_level("25"), Some("warn"));
        assert_eq!(sagemaker_level("Critical"), Some("error"));
    }

    /// README, Configuration: a bad value is refused, naming the variable;
    /// it used to be ignored, leaving the default level unannounced.
    #[test]
    fn a_bad_log_level_or_filter_is_refused_with_the_variable_named() {
        let with = |rust_log: Option<&str>, level: Option<&str>| LogSettings {
            rust_log: rust_log.map(str::to_owned),
            container_log_level: level.map(str::to_owned),
            format: None,
        };
        let e = filter(&with(None, Some("abc")), "info").unwrap_err();
        assert!(e.contains("SAGEMAKER_CONTAINER_LOG_LEVEL=\"abc\""), "{e}");
        let e = filter(&with(Some("x=["), None), "info").unwrap_err();
        assert!(e.contains("RUST_LOG=\"x=[\""), "{e}");
        assert!(filter(&with(Some("mmp=debug"), Some("abc")), "info").is_ok());
        assert!(filter(&with(None, Some("20")), "info").is_ok());
        assert!(filter(&with(Some(" "), Some("")), "info").is_ok());
    }
}
