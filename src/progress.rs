//! What a long run shows while it runs, and its counters (records, bytes,
//! files), shared by the threads: for `mmp transform` and `mmp score`, a
//! progress bar on a terminal (bytes, MB/s, records/s, files done; with a
//! known total, the share done and the time left), nothing otherwise
//! ([`Progress::new`], [`Progress::stream`]); for `mmp train`, a plain line
//! at most once per interval on stdout ([`Progress::lines`]), which
//! CloudWatch keeps.
//!
//! The bar is indicatif's. Training's lines are not: indicatif hides a bar
//! whose terminal is not user attended (its `ProgressDrawTarget::term`
//! docs), and a training job's stdout is a pipe to CloudWatch, so it would
//! write 0 lines there; this module's 20-line [`Progress::tick`] writes
//! one every `--progress-interval`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Counters of a running job, shared by the threads.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: Option<Lines>,
    start: Instant,
    records: AtomicU64,
    bytes: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    files: u64,
    show_files: bool,
}

impl Progress {
    /// A transform job of `files` files and `bytes` input bytes; with a bar
    /// if `tty`.
    pub fn new(files: usize, bytes: u64, tty: bool) -> Progress {
        Progress::with(files, Some(bytes), tty, true)
    }

    /// A stream of `files` inputs (`mmp score`): `bytes` in all when known
    /// (regular files), else none (stdin from a pipe: a spinner, no share
    /// or time left). Files are counted only when there are several.
    pub fn stream(files: usize, bytes: Option<u64>, tty: bool) -> Progress {
        Progress::with(files, bytes, tty, files > 1)
    }

    fn with(files: usize, bytes: Option<u64>, tty: bool, show_files: bool) -> Progress {
        let bar = tty.then(|| {
            let (bar, template) = match bytes {
                Some(total) => (
                    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
                    "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {percent}% {binary_bytes_per_sec} ETA {eta} {wide_msg}",
                ),
                None => (
                    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
                    "{elapsed_precise} {spinner} {bytes} {binary_bytes_per_sec} {wide_msg}",
                ),
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            lines: None,
            start: Instant::now(),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            files: files as u64,
            show_files,
        }
    }

    /// A training run's counters, printed by [`Progress::tick`] as a line
    /// `{prefix}: {channel}: R records, M MB, S MB/s` at most once per
    /// `every`.
    pub fn lines(prefix: &'static str, every: Duration) -> Progress {
        Progress {
            lines: Some(Lines {
                prefix,
                every,
                last: AtomicU64::new(0),
            }),
            ..Progress::with(0, None, false, false)
        }
    }

    /// Print a progress line of `channel` if `every` has passed since the
    /// last one ([`Progress::lines`]; nothing otherwise).
    pub fn tick(&self, channel: &str) {
        let Some(lines) = &self.lines else {
            return;
        };
        let now = self.start.elapsed();
        let last = Duration::from_nanos(lines.last.load(Ordering::Relaxed));
        if now.saturating_sub(last) >= lines.every {
            lines.last.store(now.as_nanos() as u64, Ordering::Relaxed);
            println!(
                "{}: {channel}: {} records, {:.1} MB, {:.1} MB/s",
                lines.prefix,
                self.records(),
                self.bytes() as f64 / 1e6,
                self.mb_per_s()
            );
        }
    }

    /// Records counted so far.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Input bytes counted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Megabytes (10⁶ bytes) per second so far.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes() as f64 / 1e6 / self.elapsed().as_secs_f64().max(1e-9)
    }

    /// Print a line on stderr without garbling the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| crate::say!("{line}")),
            None => crate::say!("{line}"),
        }
    }

    /// Remove the bar (before the summary or an error message).
    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// `records` records of `bytes` input bytes are done.
    pub fn add(&self, records: u64, bytes: u64) {
        let r = self.records.fetch_add(records, Ordering::Relaxed) + records;
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            self.message(bar, r);
        }
    }

    /// A file finished.
    pub fn file_done(&self, ok: bool) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(bar) = &self.bar {
            self.message(bar, self.records.load(Ordering::Relaxed));
        }
    }

    fn message(&self, bar: &ProgressBar, records: u64) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = records as f64 / secs;
        if !self.show_files {
            bar.set_message(format!("{records} records ({rate:.0}/s)"));
            return;
        }
        bar.set_message(format!(
            "{records} records ({rate:.0}/s), files {}/{}{}",
            self.done.load(Ordering::Relaxed),
            self.files,
            match self.failed.load(Ordering::Relaxed) {
                0 => String::new(),
                n => format!(" ({n} failed)"),
            }
        ));
    }
}

/// The state of [`Progress::lines`].
#[derive(Debug)]
struct Lines {
    prefix: &'static str,
    every: Duration,
    /// When the last line was printed, in nanoseconds since the start.
    last: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_from_several_threads() {
        let p = Progress::lines("test", Duration::from_secs(3600));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        p.add(2, 10);
                    }
                });
            }
        });
        assert_eq!((p.records(), p.bytes()), (8000, 40_000));
    }
}
