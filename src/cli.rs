//! The command line: `mmp serve | train | score | transform`.
//!
//! Parsing only; each command's behaviour lives in its own module. Options
//! shared by every command that runs the pipeline are in [`PipelineArgs`].

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::batch::BatchStrategy;
use crate::codec::{DecodeOptions, DEFAULT_MAX_DOCUMENT_BYTES, DEFAULT_MAX_RECORD_BYTES};
use crate::pipeline::{ErrorPolicy, PipelineOptions, DEFAULT_BATCH_RECORDS};
use crate::transform::plan::{AssembleWith, CompressionType, JoinSource, SplitType};
use crate::transform::TransformOptions;

/// `mmp --version`: the package version and the commit built from, as
/// `/metrics`' `mmp_build_info` gives them (`0.1.0 (commit 15a1b010c56b)`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MMP_GIT_COMMIT"),
    ")"
);

/// A streaming SageMaker container for a (mock) linear model.
#[derive(Debug, Parser)]
#[command(name = "mmp", version = VERSION, about, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parse the process's arguments (exiting on an error or `--help`, as
    /// clap does); `mmp serve --help` also lists the environment variables
    /// the server reads, from [`crate::config::VARIABLES`].
    pub fn parse_args() -> Cli {
        let command = Cli::command().mut_subcommand("serve", |c| c.after_help(variables_help()));
        Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
    }
}

/// The environment variables of `mmp serve`, one a line with its default.
fn variables_help() -> String {
    let mut help = String::from("Environment (the flags above win):\n");
    for (name, default, what) in crate::config::VARIABLES {
        help.push_str(&format!(
            "  {name}  [default: {default}]\n          {what}\n"
        ));
    }
    help
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
    pub on_error: Option<OnError>,
    /// Serve a multi-model endpoint: load models on demand through
    /// `/models` (also $SAGEMAKER_MULTI_MODEL=true).
    #[arg(long)]
    pub multi_model: bool,
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
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    pub progress_interval: f64,
    /// Seconds to wait for a Pipe mode FIFO to appear (SageMaker makes
    /// each epoch's when the one before is read) [default:
    /// MMP_FIFO_WAIT_SECONDS, else 120].
    // Not clap's `env`: a bad value in the job's Environment must fail the
    // job with a failure file (exit 255), not a usage error (exit 2) that
    // SageMaker shows without a reason. `mmp train` reads the variable.
    #[arg(long, value_parser = parse_seconds)]
    pub fifo_wait: Option<f64>,
}

impl TrainArgs {
    /// The training run's options.
    pub fn options(&self) -> crate::train::TrainOptions {
        crate::train::TrainOptions {
            opt_ml: self.opt_ml.clone(),
            progress_interval: std::time::Duration::from_secs_f64(self.progress_interval),
            fifo_wait: self.fifo_wait.map(std::time::Duration::from_secs_f64),
        }
    }
}

/// A number of seconds, at least 0.
fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..1e9).contains(&v) => Ok(v),
        _ => Err("must be a number of seconds >= 0".into()),
    }
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
    #[arg(
        long,
        required_unless_present = "manifest",
        conflicts_with = "manifest"
    )]
    pub input: Option<PathBuf>,
    /// A manifest listing the inputs (S3DataType=ManifestFile): a JSON
    /// array, `{"prefix": "s3://bucket/path/"}` then keys; the prefix is a
    /// folder below the manifest's (`bucket/path/`).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// CompressionType: Gzip inputs are decompressed before splitting.
    #[arg(long, value_enum, ignore_case = true, default_value = "None")]
    pub compression_type: CompressionTypeArg,
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
    /// SplitType: None, Line, RecordIO or TFRecord [default: None].
    #[arg(long, value_enum, ignore_case = true)]
    pub split_type: Option<SplitTypeArg>,
    /// BatchStrategy [default: the container's, else MultiRecord].
    #[arg(long, value_enum, ignore_case = true)]
    pub batch_strategy: Option<BatchStrategyArg>,
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
    pub assemble_with: Option<AssembleWithArg>,
    /// DataProcessing InputFilter (JSONPath).
    #[arg(long)]
    pub input_filter: Option<String>,
    /// DataProcessing JoinSource.
    #[arg(long, value_enum, ignore_case = true, default_value = "None")]
    pub join_source: JoinSourceArg,
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
    #[arg(long, value_enum, default_value_t = OnError::Fail)]
    pub on_error: OnError,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Do not print the settings line before the job.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl TransformArgs {
    /// The job's options.
    pub fn options(&self) -> TransformOptions {
        TransformOptions {
            input: self.input.clone(),
            manifest: self.manifest.clone(),
            compression_type: self.compression_type.into(),
            output: self.output.clone(),
            endpoint: self.endpoint.clone(),
            model_dir: self.model_dir.clone(),
            content_type: self.content_type.clone(),
            accept: self.accept.clone(),
            split_type: self.split_type.map(Into::into),
            batch_strategy: self.batch_strategy.map(Into::into),
            max_payload_mb: self.max_payload_mb,
            max_concurrent: self.max_concurrent,
            assemble_with: self.assemble_with.map(Into::into),
            input_filter: self.input_filter.clone(),
            join_source: self.join_source.into(),
            output_filter: self.output_filter.clone(),
            timeout: self.timeout,
            max_retries: self.max_retries,
            ping_timeout: self.ping_timeout,
            on_error: self.on_error.into(),
            no_progress: self.no_progress,
            quiet: self.quiet,
        }
    }
}

impl ScoreArgs {
    /// The scoring run's options.
    pub fn options(&self) -> crate::score::ScoreOptions {
        crate::score::ScoreOptions {
            model_dir: self.model_dir.clone(),
            content_type: self.content_type.clone(),
            accept: self.accept.clone(),
            output: self.output.clone(),
            inputs: self.inputs.clone(),
            pipeline: self.pipeline.options(),
        }
    }
}

impl ServeArgs {
    /// The server's overrides of its environment.
    pub fn overrides(&self) -> crate::config::Overrides {
        crate::config::Overrides {
            bind: self.bind,
            model_dir: self.model_dir.clone(),
            on_error: self.on_error.map(ErrorPolicy::from),
            multi_model: self.multi_model,
        }
    }
}

/// A clap-side copy of an enum of the core, which knows no clap: the same
/// variants (their docs are the help of each value, their `#[value]` the
/// spelling), and the conversion to the core's.
macro_rules! value_enum {
    ($(#[$meta:meta])* $name:ident => $core:ty {
        $($(#[$vmeta:meta])* $variant:ident,)+
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl From<$name> for $core {
            fn from(v: $name) -> $core {
                match v {
                    $($name::$variant => <$core>::$variant,)+
                }
            }
        }
    };
}

value_enum! {
    /// `--on-error`'s values: clap's side of [`ErrorPolicy`].
    OnError => ErrorPolicy {
        /// Stop at the first bad record with its error.
        Fail,
        /// Write an error marker in the bad record's place and go on.
        Placeholder,
    }
}

value_enum! {
    /// `--batch-strategy`'s values, as the API spells them: clap's side of
    /// [`BatchStrategy`].
    BatchStrategyArg => BatchStrategy {
        /// One record per request.
        #[value(name = "SingleRecord")]
        SingleRecord,
        /// As many whole records as fit in `MaxPayloadInMB`.
        #[value(name = "MultiRecord")]
        MultiRecord,
    }
}

value_enum! {
    /// `--split-type`'s values: clap's side of [`SplitType`].
    SplitTypeArg => SplitType {
        /// The whole file is one request (SageMaker's default).
        #[value(name = "None")]
        None,
        /// One record per line.
        #[value(name = "Line")]
        Line,
        /// MXNet RecordIO records.
        #[value(name = "RecordIO")]
        RecordIO,
        /// TensorFlow TFRecord records.
        #[value(name = "TFRecord")]
        TFRecord,
    }
}

value_enum! {
    /// `--compression-type`'s values: clap's side of [`CompressionType`].
    CompressionTypeArg => CompressionType {
        /// The input as it is.
        #[value(name = "None")]
        None,
        /// Gzip, decompressed as it is read.
        #[value(name = "Gzip")]
        Gzip,
    }
}

value_enum! {
    /// `--assemble-with`'s values: clap's side of [`AssembleWith`].
    AssembleWithArg => AssembleWith {
        /// Responses concatenated byte for byte (SageMaker's default).
        #[value(name = "None")]
        None,
        /// Every response ends with exactly one `\n` (see `output.rs`).
        #[value(name = "Line")]
        Line,
    }
}

value_enum! {
    /// `--join-source`'s values: clap's side of [`JoinSource`].
    JoinSourceArg => JoinSource {
        /// The output holds the inferences only.
        #[value(name = "None")]
        None,
        /// Each output record is joined with its original input record.
        #[value(name = "Input")]
        Input,
    }
}

/// Options of the record pipeline.
#[derive(Clone, Debug, Args)]
pub struct PipelineArgs {
    /// What to do with a bad record: stop with its error, or write an error
    /// marker in its place and go on.
    #[arg(long, value_enum, default_value_t = OnError::Fail)]
    pub on_error: OnError,
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
            policy: self.on_error.into(),
            batch_records: self.batch_records,
        }
    }
}
