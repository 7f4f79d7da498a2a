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
    /// Largest application/json document, in bytes.
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
