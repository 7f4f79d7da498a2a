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
//! - [`fit`]: the regressor: streaming sums, the solver, RMSE from the sums.
//! - [`logistic`]: the classifiers: label scan, Newton passes, log loss.
//! - [`hosts`]: several instances: who writes `model.json`, who writes
//!   per-host statistics.
//! - [`stats`]: the per-host statistics files, and combining them into one
//!   model when a model directory is loaded.
//! - [`failure`]: the failure file, from the crate's one error type (whose
//!   exit-code table has training's column).
//! - [`stop`]: running the work so that SIGTERM is answered at once.

pub mod channels;
pub mod config;
pub mod failure;
pub mod fit;
pub mod hosts;
pub mod ingest;
pub mod logistic;
pub mod stats;
pub mod stop;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use self::channels::Channel;
use self::config::{ChannelConfig, Distribution, Hyperparameters, InputMode, PredictorType};
use self::fit::Moments;
use self::hosts::Role;
use self::ingest::{Accumulate, Ingest, Stream, Sums};
use self::logistic::{Pass, Scan};
use self::stop::Ended;
use crate::error::{Error, ErrorKind, Exits};
use crate::model::Artifact;
use crate::predictor::{ClassifierType, MODEL_FILE};
use crate::progress::Progress;

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

/// What a successful run produced.
#[derive(Debug)]
pub struct Trained {
    /// The sums of the training records this host read; `None` if it
    /// read none (only on a `ShardedByS3Key` host: an empty shard).
    pub sums: Option<Moments>,
    /// The L2 penalty of the fit.
    pub l2: f64,
    /// The fit on those records. `Err` (why the system is singular) only on
    /// a `ShardedByS3Key` host, whose shard alone need not determine the
    /// model: the combination of all shards is solved when it is loaded.
    pub fit: Result<Fit, String>,
    /// Counters of the whole run.
    pub progress: Progress,
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
    /// Records of the training channel.
    pub records: u64,
}

/// What `mmp train` is told on its command line.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Root of SageMaker's training tree (`/opt/ml`).
    pub opt_ml: PathBuf,
    /// Time between progress lines while reading.
    pub progress_interval: Duration,
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
    let (role, channels) = match plan(&layout) {
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
    let work = move || train(&work_layout, &work_role, &channels, every);
    let result = match stop::run_until_signal(work) {
        Ok(Ended::Done(result)) => result,
        Ok(Ended::Signal(name)) => Err(Error::new(ErrorKind::Stopped(name))),
        Ok(Ended::Panicked) => Err(Error::new(ErrorKind::Internal(
            "the training thread panicked".into(),
        ))),
        Err(e) => Err(Error::io("cannot start the training thread", e)),
    };
    // The model is written here, on the main thread, only after a
    // successful fit, so a stop signal can never leave one behind.
    match result.and_then(|t| finish(&layout, &role, t)) {
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
fn finish(layout: &Layout, role: &Role, t: Trained) -> Result<(), Error> {
    let written = match role {
        Role::Sharded { host, hosts } => {
            create_model_dir(layout)?;
            let path = stats::save(&layout.model, host, hosts, t.l2, t.sums.as_ref())
                .map_err(|e| Error::new(ErrorKind::SaveModel(e)))?;
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
    let p = &t.progress;
    let validation = match &t.fit {
        Ok(Fit {
            validation: Some(n),
            ..
        }) => format!(", validation {n}"),
        _ => String::new(),
    };
    let records = match &t.fit {
        Ok(fit) => fit.records,
        Err(_) => t.sums.as_ref().map_or(0, Moments::count),
    };
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

/// Everything but writing the output: hyperparameters, reading, fitting.
pub fn train(
    layout: &Layout,
    role: &Role,
    channels: &BTreeMap<String, ChannelConfig>,
    every: Duration,
) -> Result<Trained, Error> {
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
    let sharded = matches!(role, Role::Sharded { .. });
    let mut progress = Progress::lines("mmp train: progress", every);
    let mut ingest = Ingest::new();
    let training = Channel::new(TRAINING, train_cfg)?;
    if hp.predictor_type != PredictorType::Regressor {
        if sharded {
            return Err(Error::channel(
                TRAINING,
                format!(
                    "S3DistributionType ShardedByS3Key is not supported for classifiers \
                     (predictor_type {}): use FullyReplicated",
                    hp.predictor_type.name()
                ),
            ));
        }
        let reader = Reader {
            layout,
            ingest: &mut ingest,
            progress: &mut progress,
        };
        let fit = train_classifier(&hp, &training, channels, reader)?;
        return Ok(Trained {
            sums: None,
            l2: hp.l2,
            fit: Ok(fit),
            progress,
        });
    }
    // A sharded host's shard may be empty: SageMaker gives a host no
    // objects when there are more instances than objects ("some nodes won't
    // get any data", API S3DataSource). Its empty statistics still complete
    // the set, so the model is the fit on the other shards.
    let mut sums = Sums::default();
    let mut reader = Reader {
        layout,
        ingest: &mut ingest,
        progress: &mut progress,
    };
    reader.read(&training, &mut sums, sharded, 0)?;
    let Some(moments) = sums.moments else {
        if sharded {
            return Ok(Trained {
                sums: None,
                l2: hp.l2,
                fit: Err(
                    "the shard has no records: SageMaker gives some hosts no objects \
                          when there are more instances than objects"
                        .into(),
                ),
                progress,
            });
        }
        return Err(Error::channel(TRAINING, "has no records"));
    };
    let model = match moments.solve(hp.l2) {
        Ok(model) => model,
        // The other shards may well make the system solvable.
        Err(reason) if sharded => {
            return Ok(Trained {
                sums: Some(moments),
                l2: hp.l2,
                fit: Err(reason),
                progress,
            })
        }
        Err(reason) => return Err(Error::new(ErrorKind::Singular(reason))),
    };
    let train_rmse = moments.rmse(&model);
    let validation = match channels.get(VALIDATION) {
        None => None,
        Some(cfg) => {
            if cfg.s3_distribution_type == Distribution::ShardedByS3Key && role != &Role::Single {
                println!("mmp train: channel {VALIDATION} is ShardedByS3Key: its RMSE is over this host's shard of it");
            }
            let channel = Channel::new(VALIDATION, cfg)?;
            let mut v = Sums::fixed(moments.features(), &sums.origin);
            reader.read(&channel, &mut v, false, 0)?;
            match v.moments.as_ref() {
                Some(m) if m.count() > 0 => Some((m.rmse(&model), m.count())),
                _ => return Err(Error::channel(VALIDATION, "has no records")),
            }
        }
    };
    let mut metrics = vec![(TRAINING_METRICS, "rmse", train_rmse)];
    if let Some((rmse, _)) = validation {
        metrics.push((VALIDATION, "rmse", rmse));
    }
    Ok(Trained {
        fit: Ok(Fit {
            model: Box::new(model),
            metrics,
            validation: validation.map(|(_, n)| n),
            records: moments.count(),
        }),
        sums: Some(moments),
        l2: hp.l2,
        progress,
    })
}

/// The metric lines' name for the training channel (`train:rmse=`).
const TRAINING_METRICS: &str = "train";

/// Fit a classifier: a pass for the label set, Newton passes, and one pass
/// over validation, if configured.
fn train_classifier(
    hp: &Hyperparameters,
    training: &Channel,
    channels: &BTreeMap<String, ChannelConfig>,
    mut reader: Reader<'_>,
) -> Result<Fit, Error> {
    let kind = match hp.predictor_type {
        PredictorType::BinaryClassifier => ClassifierType::BinaryClassifier,
        _ => ClassifierType::MulticlassClassifier,
    };
    let mut scan = Scan::default();
    reader.read(training, &mut scan, false, 0)?;
    let (labels, features, _, n) = scan.labels()?;
    let d = features.unwrap_or(0);
    let k = labels.len();
    let names = || {
        let all: Vec<String> = labels.labels().iter().map(|l| l.text()).collect();
        all.join(", ")
    };
    let want = match kind {
        ClassifierType::BinaryClassifier => Some(2),
        ClassifierType::MulticlassClassifier => hp.num_classes,
    };
    if k < 2 || want.is_some_and(|w| w != k) {
        let expected = match want {
            Some(w) => {
                format!("{w} (predictor_type {}", hp.predictor_type.name())
                    + &hp
                        .num_classes
                        .map_or(String::new(), |n| format!(", num_classes {n}"))
                    + ")"
            }
            None => "at least 2".into(),
        };
        return Err(Error::channel(
            TRAINING,
            format!("has {k} distinct labels ({}), expected {expected}", names()),
        ));
    }
    println!(
        "mmp train: {n} training records, {d} features, {k} classes: {}",
        names()
    );
    let mut epoch = 1;
    let fitted = logistic::fit(&labels, d, hp.l2, kind, |theta| {
        let mut pass = Pass::new(&labels, d, theta, true);
        reader.read(training, &mut pass, false, epoch)?;
        epoch += 1;
        Ok((
            pass.loss,
            pass.correct,
            pass.strict,
            pass.records(),
            std::mem::take(&mut pass.grad),
            std::mem::take(&mut pass.hess),
        ))
    })?;
    println!(
        "mmp train: converged after {} Newton passes over {TRAINING} ({} reads with the label scan)",
        fitted.passes,
        fitted.passes + 1
    );
    let mut metrics = vec![
        (TRAINING_METRICS, "log_loss", fitted.log_loss),
        (TRAINING_METRICS, "accuracy", fitted.accuracy),
    ];
    let mut validation = None;
    if let Some(cfg) = channels.get(VALIDATION) {
        let channel = Channel::new(VALIDATION, cfg)?;
        let a = &fitted.artifact;
        let theta: Vec<f64> = a
            .weights
            .iter()
            .zip(&a.bias)
            .flat_map(|(w, b)| w.iter().copied().chain(std::iter::once(*b)))
            .collect();
        let mut pass = Pass::new(&labels, d, &theta, false);
        reader.read(&channel, &mut pass, false, 0)?;
        let n = pass.records() as f64;
        metrics.push((VALIDATION, "log_loss", pass.loss / n));
        metrics.push((VALIDATION, "accuracy", pass.correct as f64 / n));
        validation = Some(pass.records());
    }
    Ok(Fit {
        model: Box::new(fitted.artifact),
        metrics,
        validation,
        records: n,
    })
}

/// Reads channels with one reused buffer and batch, counting progress.
struct Reader<'a> {
    layout: &'a Layout,
    ingest: &'a mut Ingest,
    progress: &'a mut Progress,
}

impl Reader<'_> {
    /// One pass over `channel` (pass `epoch`, from 0: Pipe mode's FIFO).
    fn read(
        &mut self,
        channel: &Channel,
        acc: &mut dyn Accumulate,
        allow_empty: bool,
        epoch: usize,
    ) -> Result<(), Error> {
        read_channel(
            channel,
            self.layout,
            acc,
            allow_empty,
            self.ingest,
            self.progress,
            epoch,
        )
    }
}

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
    channel: &Channel,
    layout: &Layout,
    sums: &mut dyn Accumulate,
    allow_empty: bool,
    ingest: &mut Ingest,
    progress: &mut Progress,
    epoch: usize,
) -> Result<(), Error> {
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
        let mut reader = channels::open(path).map_err(|e| match e.kind() {
            ErrorKind::Io { source, .. }
                if channel.mode == InputMode::Pipe
                    && source.kind() == std::io::ErrorKind::NotFound =>
            {
                Error::channel(
                    &channel.name,
                    if epoch == 0 {
                        format!("Pipe mode, but there is no FIFO {file}")
                    } else {
                        // A classifier reads the channel once per pass.
                        format!(
                            "Pipe mode, but there is no FIFO {file} for pass {} of the \
                             classifier's fit (one FIFO per epoch): give the job more epochs",
                            epoch + 1
                        )
                    },
                )
            }
            _ => e,
        })?;
        let (format, csv_header) = channel.format_of(path);
        let stream = Stream {
            channel: &channel.name,
            file: &file,
            format,
            csv_header,
        };
        ingest.read(&mut reader, &stream, sums, progress)?;
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
