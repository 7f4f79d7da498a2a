//! What a job shows while it runs: a progress bar on a terminal (bytes,
//! MB/s, records/s, files done; with a known total, the share done and the
//! time left), nothing otherwise; and one plain summary line at the end
//! either way, with a line per failed file. `mmp score` uses the same bar
//! ([`Progress::stream`]), for its files or stdin.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::engine::FileReport;

/// Counters of a running job, shared by the threads.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
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
            start: Instant::now(),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            files: files as u64,
            show_files,
        }
    }

    /// Print a line on stderr without garbling the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
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

    /// Clear the bar and give the summary: one line, then one per failed
    /// file.
    pub fn finish(&self, reports: &[FileReport]) -> String {
        self.clear();
        summary(
            reports,
            self.records.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.start.elapsed(),
        )
    }
}

/// `mmp transform: 3 files: 2 succeeded, 1 failed; 10000 records, 1.2 MB in
/// 0.35 s (3.4 MB/s, 28571 records/s)` ("1 file: ..." for one), then
/// `  failed a/b.csv: why`.
pub fn summary(reports: &[FileReport], records: u64, bytes: u64, took: Duration) -> String {
    let failed: Vec<&FileReport> = reports.iter().filter(|r| r.outcome.is_err()).collect();
    let secs = took.as_secs_f64().max(1e-9);
    let mb = bytes as f64 / 1e6;
    let mut s = format!(
        "mmp transform: {} {}: {} succeeded, {} failed; {records} records, {mb:.1} MB in {secs:.2} s ({:.1} MB/s, {:.0} records/s)",
        reports.len(),
        if reports.len() == 1 { "file" } else { "files" },
        reports.len() - failed.len(),
        failed.len(),
        mb / secs,
        records as f64 / secs,
    );
    for r in failed {
        if let Err(e) = &r.outcome {
            s.push_str(&format!("\n  failed {}: {e}", r.rel.display()));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorKind};
    use crate::transform::engine::FileStats;

    #[test]
    fn summary_lists_failures() {
        let reports = vec![
            FileReport {
                rel: "a.csv".into(),
                outcome: Ok(FileStats::default()),
            },
            FileReport {
                rel: "b/c.csv".into(),
                outcome: Err(Error::new(ErrorKind::Connection("reset".into()))),
            },
        ];
        let s = summary(&reports, 10, 2_000_000, Duration::from_secs(2));
        assert_eq!(
            s,
            "mmp transform: 2 files: 1 succeeded, 1 failed; 10 records, 2.0 MB in 2.00 s (1.0 MB/s, 5 records/s)\n  failed b/c.csv: connection failed: reset"
        );
        let s = summary(&reports[..1], 1, 0, Duration::from_secs(1));
        assert!(
            s.starts_with("mmp transform: 1 file: 1 succeeded, 0 failed"),
            "{s}"
        );
    }

    #[test]
    fn one_file_is_singular() {
        let reports = vec![FileReport {
            rel: "a.csv".into(),
            outcome: Ok(FileStats::default()),
        }];
        let s = summary(&reports, 2, 1_000_000, Duration::from_secs(1));
        assert!(
            s.starts_with("mmp transform: 1 file: 1 succeeded, 0 failed; 2 records"),
            "{s}"
        );
    }
}
