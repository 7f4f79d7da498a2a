//! `mmp train`: SageMaker's training contract for the linear model.
//!
//! Reads the configuration under `<root>/input/config`, streams the
//! `training` channel (and `validation`, if configured) through the same
//! decoders `serve` uses, fits the hyperparameter `predictor_type`'s model
//! (a regressor's least squares with an optional L2 penalty in one pass,
//! or a classifier's logistic regression in several: [`logistic`]), and
//! writes `<root>/model/model.json`, which `serve` and `score` load; on a
//! job of several hosts, what each host writes is decided in [`hosts`].
//! Metrics are printed as `train:rmse=…;` (`train:log_loss=…;`,
//! `train:accuracy=…;`) lines for `MetricDefinitions`.
//! On any failure the reason goes to `<root>/output/failure` (cause first:
//! its first 1024 characters become the job's `FailureReason`) and to
//! stderr, no model is written, and the exit code is non-zero.
//!
//! # Layout
//!
//! - [`config`]: the JSON files under `input/config`, and the
//!   hyperparameters.
//! - [`channels`]: which files (or which FIFO) make up a channel, and
//!   opening them, gzip included.
//! - [`ingest`]: bytes → decoder → batches → sums, with progress lines.
//! - [`algorithm`]: the training file, the one to edit: which [`Trainer`]
//!   each `predictor_type` runs, and what it reads and returns.
//! - [`fit`]: the regressor's math: streaming sums, the solver, RMSE from
//!   the sums.
//! - [`logistic`]: the classifiers' math: label scan, Newton passes, log
//!   loss.
//! - [`hosts`]: several instances: who writes `model.json`, who writes
//!   per-host statistics.
//! - [`stats`]: the per-host statistics files, and combining them into one
//!   model when a model directory is loaded.
//! - [`failure`]: the failure file, from the crate's one error type (whose
//!   exit-code table has training's column).

pub mod algorithm;
pub mod channels;
pub mod config;
pub mod failure;
pub mod fit;
pub mod hosts;
pub mod ingest;
pub mod logistic;
pub mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use self::channels::Channel;
use self::config::{ChannelConfig, Distribution, Hyperparameters, InputMode, PredictorType};
use self::hosts::Role;
use self::ingest::{Accumulate, Ingest, Stream};
use crate::error::{Error, ErrorKind, Exits};
use crate::model::Artifact;
use crate::predictor::MODEL_FILE;
use crate::progress::Progress;
use crate::stop::{self, Ended};

/// The channel the fit reads (required).
pub const TRAINING: &str = "training";
/// The channel the fit is evaluated on (optional).
pub const VALIDATION: &str = "validation";

/// The paths of SageMaker's training tree under one root.
#[derive(Clone, Debug)]
pub struct Layout {
    /// `input/config`: hyperparameters.json, inputdataconfig.json,
    /// resourceconfig.json.
    pub config: PathBuf,
    /// `input/data`: one directory (File mode) or FIFO (Pipe mode) per
    /// channel.
    pub data: PathBuf,
    /// `model`: where model.json is written; SageMaker uploads it.
    pub model: PathBuf,
    /// `output`: where the failure file is written.
    pub output: PathBuf,
}

impl Layout {
    /// The tree under `root` (`/opt/ml` in SageMaker).
    pub fn new(root: &Path) -> Layout {
        Layout {
            config: root.join("input/config"),
            data: root.join("input/data"),
            model: root.join("model"),
            output: root.join("output"),
        }
    }
}

/// What a [`Trainer`] produced.
#[derive(Debug)]
pub struct Trained {
    /// The fit on the records this host read. `Err` (why the model is not
    /// determined) only on a `ShardedByS3Key` host, whose shard alone need
    /// not determine it: the combination of all shards is solved when the
    /// model directory is loaded.
    pub fit: Result<Fit, String>,
    /// What this host writes on a `ShardedByS3Key` job (`None` elsewhere).
    pub shard: Option<Box<dyn Shard>>,
    /// Records of the training channel this host read.
    pub records: u64,
}

/// A fitted model and how well it fits.
#[derive(Debug)]
pub struct Fit {
    /// The fitted model (not yet written).
    pub model: Box<dyn Artifact>,
    /// Its figures, printed as `<channel>:<name>=<value>;` lines for
    /// MetricDefinitions: (`train` or `validation`, name, value).
    pub metrics: Vec<(&'static str, &'static str, f64)>,
    /// Records of the validation channel, if configured.
    pub validation: Option<u64>,
}

/// What `mmp train` is told on its command line.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Root of SageMaker's training tree (`/opt/ml`).
    pub opt_ml: PathBuf,
    /// Time between progress lines while reading.
    pub progress_interval: Duration,
    /// How long a Pipe mode FIFO may take to appear (`--fifo-wait`; `None`:
    /// [`fifo_wait`] decides).
    pub fifo_wait: Option<Duration>,
}

/// How long a Pipe mode FIFO may take to appear: the flag, else
/// `MMP_FIFO_WAIT_SECONDS` (the job's Environment), else 120 s, AWS's own
/// Pipe mode reader's wait ([`channels::wait_for`]). A bad value fails the
/// job like any other setting: failure file, exit 255.
pub fn fifo_wait(flag: Option<Duration>, env: Option<&str>) -> Result<Duration, Error> {
    match (flag, env) {
        (Some(wait), _) => Ok(wait),
        (None, None) => Ok(Duration::from_secs(120)),
        (None, Some(v)) => match v.trim().parse::<f64>() {
            Ok(secs) if (0.0..1e9).contains(&secs) => Ok(Duration::from_secs_f64(secs)),
            _ => Err(Error::config(format!(
                "MMP_FIFO_WAIT_SECONDS={v:?} is not valid: must be a number of seconds >= 0"
            ))),
        },
    }
}

/// Run `mmp train` and return the process exit code: 0 on success, 255 on
/// a failure, 128 + the signal's number when stopped by SIGTERM or SIGINT.
pub fn main(opts: &TrainOptions) -> ExitCode {
    let layout = Layout::new(&opts.opt_ml);
    let every = opts.progress_interval;
    let failure_file = layout.output.join("failure");
    if std::fs::remove_file(&failure_file).is_ok() {
        println!(
            "mmp train: removed {} from an earlier run",
            failure_file.display()
        );
    }
    let env = std::env::var("MMP_FIFO_WAIT_SECONDS").ok();
    let planned = fifo_wait(opts.fifo_wait, env.as_deref())
        .and_then(|wait| plan(&layout).map(|planned| (wait, planned)));
    let (fifo_wait, (role, channels)) = match planned {
        Ok(planned) => planned,
        Err(e) => {
            // A failed run leaves no model behind, whatever its role.
            Role::Single.remove_stale(&layout.model);
            failure::report(&layout.output, &e);
            return ExitCode::from(e.exit_code_for(Exits::Training));
        }
    };
    role.remove_stale(&layout.model);
    let work_layout = layout.clone();
    let work_role = role.clone();
    let work = move || train(&work_layout, &work_role, &channels, every, fifo_wait);
    let result = match stop::run_until_signal("mmp-train", work) {
        Ok(Ended::Done(result)) => result,
        Ok(Ended::Signal(name)) => Err(Error::new(ErrorKind::Stopped(name))),
        Ok(Ended::Panicked) => Err(Error::new(ErrorKind::Internal(
            "the training thread panicked".into(),
        ))),
        Err(e) => Err(Error::io("cannot start the training thread", e)),
    };
    // The model is written here, on the main thread, only after a
    // successful fit, so a stop signal can never leave one behind.
    match result.and_then(|(t, progress)| finish(&layout, &role, t, &progress)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            failure::report(&layout.output, &e);
            ExitCode::from(e.exit_code_for(Exits::Training))
        }
    }
}

/// This host's place in the job, from `resourceconfig.json` and the
/// training channel's `S3DistributionType`, logged; and the channels.
fn plan(layout: &Layout) -> Result<(Role, BTreeMap<String, ChannelConfig>), Error> {
    let file = layout.config.join("resourceconfig.json");
    let rc = config::read_resource_config(&file)?;
    if let Some(rc) = &rc {
        println!(
            "mmp train: host {} of {} ({})",
            rc.current_host,
            rc.hosts.len(),
            rc.hosts.join(", ")
        );
    }
    let channels = channel_configs(layout)?;
    let distribution = channels
        .get(TRAINING)
        .map_or(Distribution::FullyReplicated, |c| c.s3_distribution_type);
    let role = Role::plan(rc.as_ref(), distribution, &file)?;
    if let Some(line) = role.describe() {
        println!("mmp train: {line}");
    }
    Ok((role, channels))
}

/// Write what this host's role writes, then print the metrics and the
/// summary.
fn finish(layout: &Layout, role: &Role, t: Trained, p: &Progress) -> Result<(), Error> {
    let written = match role {
        Role::Sharded { host, hosts } => {
            let shard = t.shard.as_ref().ok_or_else(|| {
                Error::new(ErrorKind::Internal("the algorithm gave a ShardedByS3Key host nothing to write".into()))
            })?;
            create_model_dir(layout)?;
            let path = shard.save(&layout.model, host, hosts).map_err(|e| Error::new(ErrorKind::SaveModel(e)))?;
            format!(
                "statistics written to {} (the model is their combination with the other hosts')",
                path.display()
            )
        }
        Role::Replicated { first, .. } if !role.writes_model() => format!(
            "no model written: for a FullyReplicated job only the first host ({first}) writes {MODEL_FILE}"
        ),
        _ => {
            create_model_dir(layout)?;
            let fit = t.fit.as_ref().map_err(|e| Error::new(ErrorKind::Singular(e.clone())))?;
            fit.model.save(&layout.model).map_err(|e| Error::new(ErrorKind::SaveModel(e)))?;
            format!("model written to {}", layout.model.join(MODEL_FILE).display())
        }
    };
    // A sharded host's figures are those of its shard's own fit, a model
    // nobody serves, so they are printed under other names than the job's
    // metrics (`train_shard:rmse` does not match a `train:rmse=` regex): a
    // tuning job must not optimise a partial fit.
    let suffix = if matches!(role, Role::Sharded { .. }) {
        "_shard"
    } else {
        ""
    };
    match &t.fit {
        Ok(fit) => {
            for (channel, name, value) in &fit.metrics {
                println!("{channel}{suffix}:{name}={value};");
            }
        }
        Err(reason) => println!(
            "mmp train: this host's shard alone does not determine the model ({reason}); \
             no per-shard metrics"
        ),
    }
    let validation = match &t.fit {
        Ok(Fit {
            validation: Some(n),
            ..
        }) => format!(", validation {n}"),
        _ => String::new(),
    };
    let records = t.records;
    println!(
        "mmp train: done: {} records (training {}{validation}), {:.1} MB in {:.2} s, {:.1} MB/s; {written}",
        p.records(),
        records,
        p.bytes() as f64 / 1e6,
        p.elapsed().as_secs_f64(),
        p.mb_per_s(),
    );
    Ok(())
}

fn create_model_dir(layout: &Layout) -> Result<(), Error> {
    std::fs::create_dir_all(&layout.model)
        .map_err(|e| Error::io(format!("cannot create {}", layout.model.display()), e))
}

/// A training algorithm, behind which `mmp train`'s plumbing (this
/// module: configuration, channels, hosts, failures) runs any fit. The
/// mock's are in [`algorithm`], the file to edit for your own.
pub trait Trainer {
    /// Fit a model, reading the channels through `job` as often as needed.
    fn train(&mut self, job: &mut Job<'_>) -> Result<Trained, Error>;
}

/// What a `ShardedByS3Key` host writes instead of a model: its shard's part
/// of the fit, named for the host so the hosts' files cannot clash, and
/// combined when the model directory is loaded (`src/predictor.rs`).
pub trait Shard: std::fmt::Debug + Send {
    /// Write it into `dir` as `host`'s (of `hosts`); returns the file written.
    fn save(&self, dir: &Path, host: &str, hosts: &[String]) -> Result<PathBuf, Error>;
}

/// What a [`Trainer`] is given: the hyperparameters, this host's role, the
/// training channel, and the means to read any channel.
pub struct Job<'a> {
    /// `hyperparameters.json`, parsed.
    pub hp: &'a Hyperparameters,
    /// This host's place in the job.
    pub role: &'a Role,
    /// The `training` channel (opened; read it with [`Job::read`]).
    pub training: &'a Channel,
    channels: &'a BTreeMap<String, ChannelConfig>,
    /// Where the channels are, one reused buffer and batch, the counters.
    layout: &'a Layout,
    ingest: &'a mut Ingest,
    progress: &'a mut Progress,
    fifo_wait: Duration,
}

impl Job<'_> {
    /// Whether this host sees only its shard of the training channel
    /// (`ShardedByS3Key` on several hosts).
    pub fn sharded(&self) -> bool {
        matches!(self.role, Role::Sharded { .. })
    }

    /// The `validation` channel's configuration, if the job has one.
    pub fn validation(&self) -> Option<&ChannelConfig> {
        self.channels.get(VALIDATION)
    }

    /// One pass over `channel` into `acc` (pass `epoch`, from 0: Pipe
    /// mode's FIFO `<channel>_<epoch>`). No record is an error unless
    /// `allow_empty`.
    pub fn read(
        &mut self,
        channel: &Channel,
        acc: &mut dyn Accumulate,
        allow_empty: bool,
        epoch: usize,
    ) -> Result<(), Error> {
        read_channel(self, channel, acc, allow_empty, epoch)
    }
}

/// Everything but writing the output: hyperparameters, reading, fitting.
pub fn train(
    layout: &Layout,
    role: &Role,
    channels: &BTreeMap<String, ChannelConfig>,
    every: Duration,
    fifo_wait: Duration,
) -> Result<(Trained, Progress), Error> {
    let hp = Hyperparameters::read(&layout.config.join("hyperparameters.json"))?;
    match hp.predictor_type {
        PredictorType::Regressor => println!("mmp train: hyperparameters: l2={}", hp.l2),
        t => println!(
            "mmp train: hyperparameters: l2={}, predictor_type={}{}",
            hp.l2,
            t.name(),
            hp.num_classes
                .map_or(String::new(), |n| format!(", num_classes={n}"))
        ),
    }
    let train_cfg = channels
        .get(TRAINING)
        .ok_or_else(|| missing_training(channels))?;
    for name in channels
        .keys()
        .filter(|n| *n != TRAINING && *n != VALIDATION)
    {
        println!("mmp train: ignoring channel {name:?} (this algorithm reads {TRAINING} and {VALIDATION})");
    }
    let mut progress = Progress::lines("mmp train: progress", every);
    let mut ingest = Ingest::new();
    let training = Channel::new(TRAINING, train_cfg)?;
    // The validation channel is read after the fit: a bad configuration
    // of it (its content type, its record wrapping) fails the job now, not
    // after a pass over the training data.
    if let Some(cfg) = channels.get(VALIDATION) {
        Channel::new(VALIDATION, cfg)?;
    }
    let mut job = Job {
        hp: &hp,
        role,
        training: &training,
        channels,
        layout,
        ingest: &mut ingest,
        progress: &mut progress,
        fifo_wait,
    };
    let trained = algorithm::trainer(&hp).train(&mut job)?;
    Ok((trained, progress))
}

/// Fail before a fit allocates `numbers` f64s (its O(D²) matrices) that
/// this machine or container cannot hold: an allocation that fails aborts
/// the process, and one the kernel overcommits is killed on use, both
/// without a failure file. `what` says what needs them.
pub fn check_room(numbers: u128, what: impl FnOnce() -> String) -> Result<(), Error> {
    let cgroup = Path::new("/sys/fs/cgroup");
    let Some((limit, source)) = crate::serve::mme::memory_limit(cgroup, Path::new("/proc/meminfo"))
    else {
        return Ok(());
    };
    let bytes = numbers.saturating_mul(8);
    if bytes <= u128::from(limit) {
        return Ok(());
    }
    Err(Error::channel(
        TRAINING,
        format!(
            "{} needs {:.1} GB of memory, more than this machine allows ({source}): use fewer features",
            what(),
            bytes as f64 / 1e9
        ),
    ))
}

/// The metric lines' name for the training channel (`train:rmse=`).
pub const TRAINING_METRICS: &str = "train";

/// The channels to read: `inputdataconfig.json`, or, when it is missing (a
/// local run), `training` and `validation` in File mode if their
/// directories exist.
fn channel_configs(layout: &Layout) -> Result<BTreeMap<String, ChannelConfig>, Error> {
    let path = layout.config.join("inputdataconfig.json");
    if let Some(map) = config::read_input_data_config(&path)? {
        return Ok(map);
    }
    println!(
        "mmp train: no {}: reading channel directories in File mode",
        path.display()
    );
    Ok([TRAINING, VALIDATION]
        .into_iter()
        .filter(|name| *name == TRAINING || layout.data.join(name).is_dir())
        .map(|name| (name.to_string(), ChannelConfig::default()))
        .collect())
}

fn missing_training(channels: &BTreeMap<String, ChannelConfig>) -> Error {
    let listed: Vec<&str> = channels.keys().map(String::as_str).collect();
    Error::channel(
        TRAINING,
        format!(
            "required, but inputdataconfig.json does not list it (it lists: {})",
            if listed.is_empty() {
                "no channels".to_string()
            } else {
                listed.join(", ")
            }
        ),
    )
}

/// Read every source of a channel into `sums`. No source, or no record,
/// is an error unless `allow_empty`.
fn read_channel(
    job: &mut Job<'_>,
    channel: &Channel,
    sums: &mut dyn Accumulate,
    allow_empty: bool,
    epoch: usize,
) -> Result<(), Error> {
    let (layout, fifo_wait) = (job.layout, job.fifo_wait);
    let sources = channel.sources_of_epoch(&layout.data, allow_empty, epoch)?;
    let mode = match channel.mode {
        InputMode::File => "File",
        InputMode::FastFile => "FastFile",
        InputMode::Pipe => "Pipe",
    };
    let skipped = match sources.skipped.len() {
        0 => String::new(),
        n => format!(
            "; skipped {n} hidden or non-regular: {}",
            sources
                .skipped
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let what = match channel.mode {
        InputMode::Pipe => format!("reading the FIFO {}", sources.files[0].display()),
        _ => format!(
            "reading {} file{} under {}",
            sources.files.len(),
            if sources.files.len() == 1 { "" } else { "s" },
            layout.data.join(&channel.name).display()
        ),
    };
    if epoch == 0 {
        println!(
            "mmp train: channel {}: {mode} mode, {what}{skipped}",
            channel.name
        );
    }
    for path in &sources.files {
        let file = path.display().to_string();
        if channel.mode == InputMode::Pipe && !channels::wait_for(path, fifo_wait) {
            let pass = match epoch {
                0 => String::new(),
                // A classifier reads the channel once per pass.
                n => format!(" for pass {} of the classifier's fit", n + 1),
            };
            return Err(Error::channel(
                &channel.name,
                format!(
                    "Pipe mode, but there is no FIFO {file}{pass}: none appeared in {} s \
                     (SageMaker makes each epoch's FIFO once the one before is read; \
                     --fifo-wait, MMP_FIFO_WAIT_SECONDS)",
                    fifo_wait.as_secs_f64()
                ),
            ));
        }
        let mut reader = channels::open(path)?;
        let (format, csv_header) = channel.format_of(path);
        let stream = Stream {
            channel: &channel.name,
            file: &file,
            format,
            csv_header,
        };
        job.ingest.read(&mut reader, &stream, sums, job.progress)?;
    }
    if sums.count() == 0 && !allow_empty {
        return Err(Error::channel(
            &channel.name,
            format!(
                "has no records ({} source{} read)",
                sources.files.len(),
                if sources.files.len() == 1 { "" } else { "s" }
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_wait_flag_then_environment_then_120_s() {
        let s = Duration::from_secs;
        assert_eq!(fifo_wait(Some(s(3)), Some("9")).unwrap(), s(3));
        assert_eq!(fifo_wait(None, Some(" 9 ")).unwrap(), s(9));
        assert_eq!(fifo_wait(None, None).unwrap(), s(120));
        for bad in ["", "-1", "soon", "1e10"] {
            let e = fifo_wait(None, Some(bad)).unwrap_err();
            assert!(e.to_string().contains("MMP_FIFO_WAIT_SECONDS"), "{e}");
        }
    }
}
