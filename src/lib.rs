//! mock-model-pipeline: a streaming SageMaker bring-your-own-algorithm
//! container in one binary, `mmp`.
//!
//! # Layout
//!
//! The data path is bytes → [`record::Batch`] → [`model::Model`] →
//! predictions → bytes. Codecs never see the model and the model never sees
//! bytes; everything below `serve` is synchronous and runtime-free.
//!
//! - [`error`]: the one error type of every command, with kinds, record
//!   positions, HTTP statuses and the one table of exit codes.
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
//! - [`parallel`]: one record-wise stream on every core: cut into ranges
//!   of whole records, scored on a pool, written back in order.
//! - [`config`]: the server's configuration, from the environment.
//! - [`compute`]: the server's compute pool, OS threads where an expensive
//!   model ([`model::Model::offload`]) runs off the async runtime.
//! - [`batch`]: Batch Transform's `BatchStrategy` and
//!   `/execution-parameters`, shared by the server and `mmp transform`.
//! - [`serve`]: `mmp serve`, the HTTP server (tokio, hyper, warp routes):
//!   `/invocations` streaming in both directions ([`serve::invocations`],
//!   with [`serve::spill`] holding a whole answer for `content-length`
//!   framing), the WebSocket sessions ([`serve::bidi`]) and multi-model
//!   endpoints ([`serve::mme`]); with [`shutdown`] for SIGTERM, [`logging`]
//!   for `tracing` setup (text or JSON lines) and [`metrics`] for the
//!   Prometheus registry.
//! - [`input`]: the one read call of every read loop (retried when a
//!   signal interrupts it).
//! - [`output`]: output files written all-or-nothing (temporary file,
//!   then rename) when they are regular files, written through when they
//!   are devices, FIFOs or `/dev/stdout`.
//! - [`progress`]: what a long run shows: the progress bar of `mmp score`
//!   and `mmp transform` on a terminal, `mmp train`'s progress lines.
//! - [`score`]: `mmp score`, the offline file/stdin scorer.
//! - [`stop`]: the work of `score`, `train` and `transform` on a thread of
//!   its own, so SIGTERM and SIGINT are answered at once, even mid-read.
//! - [`train`]: `mmp train`, SageMaker's training contract: the regressor's
//!   least squares and the classifiers' Newton passes, on one host or
//!   several (per-host statistics when the data is sharded, combined when
//!   the model is loaded).
//! - [`transform`]: `mmp transform`, a Batch Transform job against a
//!   container's URL or the model in-process.
//! - [`cli`]: the command line, the only module that knows the argument
//!   parser: it turns arguments into each command's own options
//!   ([`score::ScoreOptions`], [`train::TrainOptions`],
//!   [`transform::TransformOptions`], [`config::Overrides`]).
//!
//! What SageMaker requires of the container, and where each requirement is
//! met, is in `docs/contract.md`; comments cite it by section.

pub mod batch;
pub mod cli;
pub mod codec;
pub mod compute;
pub mod config;
pub mod error;
pub mod input;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod model;
pub mod output;
pub mod parallel;
pub mod pipeline;
pub mod predictor;
pub mod progress;
pub mod record;
pub mod score;
pub mod serve;
pub mod shutdown;
pub mod stop;
pub mod train;
pub mod transform;

pub use error::{Error, ErrorKind, Position, Result};

/// The git commit this binary was built from ("unknown" outside git).
pub const GIT_COMMIT: &str = env!("MMP_GIT_COMMIT");
