//! The command line: `mmp serve | train | score | transform`.
//!
//! Parsing only; each command's behaviour lives in its own module. Options
//! shared by every command that runs the pipeline are in [`PipelineArgs`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::codec::{DecodeOptions, DEFAULT_MAX_DOCUMENT_BYTES, DEFAULT_MAX_RECORD_BYTES};
use crate::pipeline::{ErrorPolicy, PipelineOptions, DEFAULT_BATCH_RECORDS};

/// A streaming SageMaker container for a (mock) linear model.
#[derive(Debug, Parser)]
#[command(name = "mmp", version, about, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the model over HTTP: SageMaker's inference contract.
    Serve(ServeArgs),
    /// Train the model: SageMaker's training contract under /opt/ml.
    Train(TrainArgs),
    /// Score files or stdin offline, exactly as the server would answer.
    Score(ScoreArgs),
    /// Run a Batch Transform job on this machine, as SageMaker runs it.
    Transform(TransformArgs),
}

/// `mmp serve`. Everything else is read from the environment (see the
/// README's table); these flags win over it.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default: 0.0.0.0:$SAGEMAKER_BIND_TO_PORT, port
    /// 8080).
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
    /// Directory holding model.json (default: $SM_MODEL_DIR, else
    /// /opt/ml/model).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// What to do with a bad record (default: $MMP_ON_ERROR, else fail).
    #[arg(long, value_enum)]
    pub on_error: Option<ErrorPolicy>,
}

/// `mmp train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Root of SageMaker's training tree (input/config, input/data, model,
    /// output).
    #[arg(long, default_value = "/opt/ml")]
    pub opt_ml: PathBuf,
    /// Seconds between progress lines while reading (0: after every
    /// 1 MiB read).
    #[arg(long, default_value_t = 5.0, value_parser = crate::train::parse_seconds)]
    pub progress_interval: f64,
}

/// `mmp score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Directory holding model.json.
    #[arg(long, env = "SM_MODEL_DIR", default_value = "/opt/ml/model")]
    pub model_dir: PathBuf,
    /// Input media type (default: from the file extension, else text/csv).
    #[arg(long, short = 't')]
    pub content_type: Option<String>,
    /// Output media type (default: the input's).
    #[arg(long, short = 'a')]
    pub accept: Option<String>,
    /// Output file (one input) or directory (several inputs; each input
    /// `NAME` gives `NAME.out`). Default: stdout for one input, `NAME.out`
    /// beside each input for several.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Input files; none or `-` reads stdin.
    pub inputs: Vec<PathBuf>,
    /// Pipeline options.
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// `mmp transform`: SageMaker's `CreateTransformJob` parameters as flags.
/// Values not given come from the container's `/execution-parameters`, then
/// SageMaker's defaults.
#[derive(Debug, Args)]
pub struct TransformArgs {
    /// Input file, or folder (every file in it, recursively).
    #[arg(long)]
    pub input: PathBuf,
    /// Output folder: input `a/b.csv` gives `OUTPUT/a/b.csv.out`.
    #[arg(long)]
    pub output: PathBuf,
    /// URL of a running container (`http://127.0.0.1:8080`).
    #[arg(
        long,
        conflicts_with = "model_dir",
        required_unless_present = "model_dir"
    )]
    pub endpoint: Option<String>,
    /// Score in-process with the model in this folder (no HTTP).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// ContentType: a media type or csv, jsonl, json (none sent if not given;
    /// in-process reads CSV).
    #[arg(long)]
    pub content_type: Option<String>,
    /// Accept: a media type or csv, jsonl, json.
    #[arg(long)]
    pub accept: Option<String>,
    /// SplitType [default: None].
    #[arg(long, value_enum, ignore_case = true)]
    pub split_type: Option<crate::transform::plan::SplitType>,
    /// BatchStrategy [default: the container's, else MultiRecord].
    #[arg(long, value_enum, ignore_case = true)]
    pub batch_strategy: Option<crate::transform::plan::BatchStrategy>,
    /// MaxPayloadInMB, 0-100; 0 streams each file in one chunked request
    /// [default: the container's, else 6].
    #[arg(long)]
    pub max_payload_mb: Option<u32>,
    /// MaxConcurrentTransforms [default: the container's, else 1;
    /// in-process: the number of cores].
    #[arg(long)]
    pub max_concurrent: Option<u32>,
    /// AssembleWith [default: None].
    #[arg(long, value_enum, ignore_case = true)]
    pub assemble_with: Option<crate::transform::plan::AssembleWith>,
    /// DataProcessing InputFilter (JSONPath).
    #[arg(long)]
    pub input_filter: Option<String>,
    /// DataProcessing JoinSource.
    #[arg(long, value_enum, ignore_case = true, default_value = "None")]
    pub join_source: crate::transform::plan::JoinSource,
    /// DataProcessing OutputFilter (JSONPath).
    #[arg(long)]
    pub output_filter: Option<String>,
    /// Seconds a request may take (InvocationsTimeoutInSeconds).
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
    /// Retries of a failed request, 0-3 (InvocationsMaxRetries).
    #[arg(long, default_value_t = 3)]
    pub max_retries: u32,
    /// Seconds to wait for the container's /ping to answer 200.
    #[arg(long, default_value_t = 240.0)]
    pub ping_timeout: f64,
    /// In-process only: what to do with a bad record.
    #[arg(long, value_enum, default_value_t = ErrorPolicy::Fail)]
    pub on_error: ErrorPolicy,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Do not print the settings line before the job.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Options of the record pipeline.
#[derive(Clone, Debug, Args)]
pub struct PipelineArgs {
    /// What to do with a bad record: stop with its error, or write an error
    /// marker in its place and go on.
    #[arg(long, value_enum, default_value_t = ErrorPolicy::Fail)]
    pub on_error: ErrorPolicy,
    /// Skip the first CSV record of each input (a header row).
    #[arg(long)]
    pub csv_header: bool,
    /// Largest record, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_RECORD_BYTES, value_parser = positive)]
    pub max_record_bytes: usize,
    /// Largest application/json document that is one row, in bytes (arrays of rows stream).
    #[arg(long, default_value_t = DEFAULT_MAX_DOCUMENT_BYTES, value_parser = positive)]
    pub max_document_bytes: usize,
    /// Records scored per model call.
    #[arg(long, default_value_t = DEFAULT_BATCH_RECORDS, value_parser = positive, hide = true)]
    pub batch_records: usize,
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl PipelineArgs {
    /// The pipeline options these arguments give.
    pub fn options(&self) -> PipelineOptions {
        PipelineOptions {
            decode: DecodeOptions {
                csv_header: self.csv_header,
                max_record_bytes: self.max_record_bytes,
                max_document_bytes: self.max_document_bytes,
                ..DecodeOptions::default()
            },
            policy: self.on_error,
            batch_records: self.batch_records,
        }
    }
}
