//! mock-model-pipeline: a streaming SageMaker bring-your-own-algorithm
//! container in one binary, `mmp`.
//!
//! # Layout
//!
//! The data path is bytes → [`record::Batch`] → [`model::Model`] →
//! predictions → bytes. Codecs never see the model and the model never sees
//! bytes; everything below `serve` is synchronous and runtime-free.
//!
//! - [`error`]: the one error type, with kinds, record positions, HTTP
//!   statuses and exit codes.
//! - [`media`]: `Content-Type`/`Accept` parsing and negotiation into a
//!   [`media::Format`].
//! - [`record`]: the intermediate representation, a batch of records packed
//!   into one flat buffer, with bad records kept in their places.
//! - [`codec`]: incremental decoders (CSV on csv-core with a fast path, JSON
//!   lines, bounded JSON documents) and encoders (Linear Learner's formats).
//! - [`model`]: the `Model` trait, the seam for your own algorithm.
//! - [`predictor`]: the models served here, a linear regressor and a
//!   (multinomial) logistic classifier read from `model.json`; the file to
//!   edit to serve another algorithm.
//! - [`pipeline`]: decoder → model → encoder for one stream, with the error
//!   policy (`fail` or `placeholder`).
//! - [`config`]: the server's configuration, from the environment.
//! - [`serve`]: `mmp serve`, the HTTP server (tokio, hyper, warp routes),
//!   with [`shutdown`] for SIGTERM, [`logging`] for `tracing` setup (text or
//!   JSON lines) and [`metrics`] for the Prometheus registry.
//! - [`score`]: `mmp score`, the offline file/stdin scorer.
//! - [`train`]: `mmp train`, SageMaker's training contract: the regressor's
//!   least squares and the classifiers' Newton passes.
//! - [`transform`]: `mmp transform`, a Batch Transform job against a
//!   container's URL or the model in-process.
//! - [`cli`]: the command line.

pub mod cli;
pub mod codec;
pub mod config;
pub mod error;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod predictor;
pub mod record;
pub mod score;
pub mod serve;
pub mod shutdown;
pub mod train;
pub mod transform;

pub use error::{Error, ErrorKind, Position, Result};

/// The git commit this binary was built from ("unknown" outside git).
pub const GIT_COMMIT: &str = env!("MMP_GIT_COMMIT");
