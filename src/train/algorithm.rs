//! The training file: the algorithm `mmp train` runs, the file to edit to
//! train your own (the AWS sample's `train` script; its `predictor.py` is
//! `src/predictor.rs`).
//!
//! The plumbing (`src/train/mod.rs`) reads the configuration, plans the
//! hosts, opens the training channel, and hands [`trainer`]'s choice a
//! [`Job`]: the hyperparameters, and [`Job::read`], one pass of a channel
//! into an [`Accumulate`] (any number of passes; Pipe mode opens the next
//! epoch's FIFO). The trainer returns what to write ([`Trained`]: a model
//! implementing `Artifact`, its metrics, or on a `ShardedByS3Key` host a
//! [`Shard`]), and the plumbing writes it, prints the metrics and maps
//! every error to the failure file and the exit code.
//!
//! The mock's algorithms are Linear Learner's three `predictor_type`s:
//! [`Regressor`] (least squares in one pass, [`super::fit`]; sharded jobs
//! write per-host statistics, [`super::stats`]) and [`Classifier`]
//! (logistic regression by Newton passes, [`super::logistic`]).

use super::channels::Channel;
use super::config::{Distribution, Hyperparameters, PredictorType};
use super::fit::Moments;
use super::hosts::Role;
use super::ingest::Sums;
use super::logistic::{self, Pass, Scan};
use super::{stats, Fit, Job, Shard, Trained, Trainer, TRAINING, TRAINING_METRICS, VALIDATION};
use crate::error::{Error, ErrorKind};
use crate::predictor::ClassifierType;

/// The algorithm for these hyperparameters.
pub fn trainer(hp: &Hyperparameters) -> Box<dyn Trainer> {
    match hp.predictor_type {
        PredictorType::Regressor => Box::new(Regressor),
        _ => Box::new(Classifier),
    }
}

/// `predictor_type` `regressor`: least squares with an L2 penalty, from
/// the sums of one pass; a `ShardedByS3Key` host's sums are its [`Shard`].
#[derive(Debug)]
pub struct Regressor;

/// A `ShardedByS3Key` host's sums (`None`: its shard was empty), written as
/// `stats-<host>.json` ([`stats::save`]).
#[derive(Debug)]
struct ShardSums {
    l2: f64,
    moments: Option<Moments>,
}

impl Shard for ShardSums {
    fn save(
        &self,
        dir: &std::path::Path,
        host: &str,
        hosts: &[String],
    ) -> Result<std::path::PathBuf, Error> {
        stats::save(dir, host, hosts, self.l2, self.moments.as_ref())
    }
}

impl Trainer for Regressor {
    fn train(&mut self, job: &mut Job<'_>) -> Result<Trained, Error> {
        let l2 = job.hp.l2;
        let sharded = job.sharded();
        let shard = |moments: Option<Moments>| -> Option<Box<dyn Shard>> {
            sharded.then(|| Box::new(ShardSums { l2, moments }) as Box<dyn Shard>)
        };
        // A sharded host's shard may be empty: SageMaker gives a host no
        // objects when there are more instances than objects ("some nodes
        // won't get any data", API S3DataSource). Its empty statistics still
        // complete the set, so the model is the fit on the other shards.
        let mut sums = Sums::default();
        job.read(job.training, &mut sums, sharded, 0)?;
        let Some(moments) = sums.moments else {
            if sharded {
                return Ok(Trained {
                    fit: Err(
                        "the shard has no records: SageMaker gives some hosts no objects \
                          when there are more instances than objects"
                            .into(),
                    ),
                    shard: shard(None),
                    records: 0,
                });
            }
            return Err(Error::channel(TRAINING, "has no records"));
        };
        let records = moments.count();
        let model = match moments.solve(l2) {
            Ok(model) => model,
            // The other shards may well make the system solvable.
            Err(reason) if sharded => {
                return Ok(Trained {
                    fit: Err(reason),
                    shard: shard(Some(moments)),
                    records,
                })
            }
            Err(reason) => return Err(Error::new(ErrorKind::Singular(reason))),
        };
        let train_rmse = moments.rmse(&model);
        let validation = match job.validation() {
            None => None,
            Some(cfg) => {
                let sharded = cfg.s3_distribution_type == Distribution::ShardedByS3Key
                    && job.role != &Role::Single;
                if sharded {
                    println!("mmp train: channel {VALIDATION} is ShardedByS3Key: its RMSE is over this host's shard of it");
                }
                let channel = Channel::new(VALIDATION, cfg)?;
                let mut v = Sums::fixed(moments.features(), &sums.origin);
                // A host's shard may be empty, as the training channel's.
                job.read(&channel, &mut v, sharded, 0)?;
                match v.moments.as_ref() {
                    Some(m) if m.count() > 0 => Some((m.rmse(&model), m.count())),
                    _ if sharded => {
                        println!("mmp train: channel {VALIDATION}: this host's shard is empty (more instances than objects): no validation metric here");
                        None
                    }
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
            }),
            shard: shard(Some(moments)),
            records,
        })
    }
}

/// `predictor_type` `binary_classifier` or `multiclass_classifier`: a pass
/// for the label set, Newton passes, and one pass over validation, if
/// configured. Every host sees all the data (`FullyReplicated`).
#[derive(Debug)]
pub struct Classifier;

impl Trainer for Classifier {
    fn train(&mut self, job: &mut Job<'_>) -> Result<Trained, Error> {
        let hp = job.hp;
        if job.sharded() {
            return Err(Error::channel(
                TRAINING,
                format!(
                    "S3DistributionType ShardedByS3Key is not supported for classifiers \
                     (predictor_type {}): use FullyReplicated",
                    hp.predictor_type.name()
                ),
            ));
        }
        let kind = match hp.predictor_type {
            PredictorType::BinaryClassifier => ClassifierType::BinaryClassifier,
            _ => ClassifierType::MulticlassClassifier,
        };
        let training = job.training;
        let mut scan = Scan::default();
        job.read(training, &mut scan, false, 0)?;
        let scaling = scan.scaling();
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
        // Each pass holds the dense Hessian: P² numbers, P = outputs·(D + 1).
        let p = logistic::outputs(k) as u128 * (d as u128 + 1);
        super::check_room(p * p, || {
            format!("{k} classes of {d} features: the classifier's Hessian ({p}² numbers)")
        })?;
        println!(
            "mmp train: {n} training records, {d} features, {k} classes: {}",
            names()
        );
        let mut epoch = 1;
        let fitted = logistic::fit(&labels, d, hp.l2, kind, &scaling, |theta| {
            let mut pass = Pass::new(&labels, d, theta, &scaling, true);
            job.read(training, &mut pass, false, epoch)?;
            epoch += 1;
            // Every pass must see the records the label scan saw: a Pipe
            // epoch cut short would make a lower loss that no later full
            // pass can match.
            if pass.records() != n {
                return Err(Error::channel(
                    TRAINING,
                    format!(
                        "pass {epoch} over it read {} records, but the first read {n}: each \
                         pass (in Pipe mode, each epoch's FIFO) must give the same records",
                        pass.records()
                    ),
                ));
            }
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
        if let Some(cfg) = job.validation() {
            let channel = Channel::new(VALIDATION, cfg)?;
            let a = &fitted.artifact;
            let theta: Vec<f64> = a
                .weights
                .iter()
                .zip(&a.bias)
                .flat_map(|(w, b)| w.iter().copied().chain(std::iter::once(*b)))
                .collect();
            let identity = logistic::Scaling::identity(d);
            let mut pass = Pass::new(&labels, d, &theta, &identity, false);
            job.read(&channel, &mut pass, false, 0)?;
            let n = pass.records() as f64;
            metrics.push((VALIDATION, "log_loss", pass.loss / n));
            metrics.push((VALIDATION, "accuracy", pass.correct as f64 / n));
            validation = Some(pass.records());
        }
        Ok(Trained {
            fit: Ok(Fit {
                model: Box::new(fitted.artifact),
                metrics,
                validation,
            }),
            shard: None,
            records: n,
        })
    }
}
