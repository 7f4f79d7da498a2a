//! `mmp transform`: a Batch Transform job on this machine, as SageMaker runs
//! it (AWS DG, "Use Your Own Inference Code with Batch Transform"), against
//! any container's URL or against our model in-process.
//!
//! The job: list the input files, from a folder or a manifest ([`inputs`]);
//! against a container, wait for `/ping` and ask `/execution-parameters`
//! once ([`endpoint`], on hyper's client); settle each parameter, command
//! line first ([`plan`]); cut every file, decompressed if asked, into
//! records (`Line`, `RecordIO`, `TFRecord`: [`crate::codec::records`]) and
//! mini-batches ([`split`]), filtering them if asked ([`dataprocessing`],
//! [`jsonpath`]); send them, up to `MaxConcurrentTransforms` at once and
//! retried on failure, over HTTP or through `mmp score`'s pipeline
//! ([`inprocess`]); turn responses into output, joining if asked
//! ([`assemble`]); write each file's output in input order under a
//! temporary name, renamed only when the whole file succeeded ([`engine`],
//! [`output`]); report ([`crate::progress`], [`summary`]). Files fail on their own and the
//! others go on; the exit code says whether any failed.
//!
//! Where this differs from SDK local mode (sagemaker-python-sdk,
//! `sagemaker/local/`) on purpose:
//! exact mini-batch sizes, no empty body for an oversize record, status
//! codes checked, retries, concurrency, chunked streaming for
//! `MaxPayloadInMB=0`, both spellings of `BatchStrategy`, and no blank line
//! after each response under `AssembleWith=Line`.

pub mod assemble;
pub mod dataprocessing;
pub mod endpoint;
pub mod engine;
pub mod inprocess;
pub mod inputs;
pub mod json;
pub mod jsonpath;
pub mod output;
pub mod plan;
pub mod split;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::batch::BatchStrategy;
use crate::error::{Error, Result};
use crate::media::Format;
use crate::parallel::{self, RANGE_BYTES};
use crate::pipeline::{ErrorPolicy, PipelineOptions};
use crate::progress::Progress;

pub use self::engine::FileReport;

use self::endpoint::Endpoint;
use self::engine::{Backend, Mode, TransformJob};
use self::inprocess::InProcess;
use self::plan::{
    media_type_option, AssembleWith, CompressionType, JoinSource, Plan, SplitType,
    DEFAULT_MAX_CONCURRENT,
};
use self::split::SplitOptions;

/// What `mmp transform` is told: `CreateTransformJob`'s parameters (each
/// `None` when not given, to be settled by [`plan`]) and how to run.
#[derive(Clone, Debug)]
pub struct TransformOptions {
    /// Input file or folder (or `manifest`).
    pub input: Option<PathBuf>,
    /// A manifest listing the inputs (S3DataType=ManifestFile).
    pub manifest: Option<PathBuf>,
    /// `CompressionType`.
    pub compression_type: CompressionType,
    /// Output folder.
    pub output: PathBuf,
    /// URL of a running container (or `model_dir`).
    pub endpoint: Option<String>,
    /// Score in-process with the model in this folder.
    pub model_dir: Option<PathBuf>,
    /// `ContentType`: a media type or csv, jsonl, json.
    pub content_type: Option<String>,
    /// `Accept`: a media type or csv, jsonl, json.
    pub accept: Option<String>,
    /// `SplitType`.
    pub split_type: Option<SplitType>,
    /// `BatchStrategy`.
    pub batch_strategy: Option<BatchStrategy>,
    /// `MaxPayloadInMB`.
    pub max_payload_mb: Option<u32>,
    /// `MaxConcurrentTransforms`.
    pub max_concurrent: Option<u32>,
    /// `AssembleWith`.
    pub assemble_with: Option<AssembleWith>,
    /// DataProcessing `InputFilter` (JSONPath).
    pub input_filter: Option<String>,
    /// DataProcessing `JoinSource`.
    pub join_source: JoinSource,
    /// DataProcessing `OutputFilter` (JSONPath).
    pub output_filter: Option<String>,
    /// Seconds a request may take (`InvocationsTimeoutInSeconds`).
    pub timeout: f64,
    /// Retries of a failed request (`InvocationsMaxRetries`).
    pub max_retries: u32,
    /// Seconds to wait for the container's `/ping` to answer 200.
    pub ping_timeout: f64,
    /// In-process only: what to do with a bad record.
    pub on_error: ErrorPolicy,
    /// No progress bar, even on a terminal.
    pub no_progress: bool,
    /// Do not print the settings line before the job.
    pub quiet: bool,
}

/// What a finished job gives.
#[derive(Debug)]
pub struct TransformOutcome {
    /// One report per input file.
    pub reports: Vec<FileReport>,
    /// The summary printed at the end.
    pub summary: String,
}

impl TransformOutcome {
    /// 0 if every file succeeded, else the first failed file's exit code.
    pub fn exit_code(&self) -> u8 {
        self.reports
            .iter()
            .find_map(|r| r.outcome.as_ref().err())
            .map_or(0, Error::exit_code)
    }
}

/// Run `mmp transform` and print its summary; the exit code.
pub fn main(args: &TransformOptions) -> ExitCode {
    let tty = !args.no_progress && std::io::stderr().is_terminal();
    let owned = args.clone();
    match crate::stop::run_command("mmp-transform", move || run(&owned, tty)) {
        Ok(outcome) => {
            crate::say!("{}", outcome.summary);
            ExitCode::from(outcome.exit_code())
        }
        Err(e) => {
            crate::say!("mmp transform: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Run a job: an error is one that stops it before any file is done.
pub fn run(args: &TransformOptions, tty: bool) -> Result<TransformOutcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the runtime", e))?;
    runtime.block_on(job(args, tty))
}

async fn job(args: &TransformOptions, tty: bool) -> Result<TransformOutcome> {
    plan::check(args)?;
    let files = match (&args.manifest, &args.input) {
        (Some(m), _) => inputs::manifest(m)?,
        (None, Some(input)) => inputs::list(input, &args.output)?,
        (None, None) => return Err(Error::config("give --input PATH or --manifest FILE")),
    };
    std::fs::create_dir_all(&args.output)
        .map_err(|e| Error::io(format!("creating {}", args.output.display()), e))?;
    let mut notes = Vec::new();

    if let Some(url) = &args.endpoint {
        let endpoint = Endpoint::new(url)?;
        // Options are checked before the container is contacted, as
        // CreateTransformJob validates them; the container's values are
        // checked again below.
        let defaults = (DEFAULT_MAX_CONCURRENT, "default");
        Plan::new(args, None, defaults)?;
        endpoint
            .wait_ready(Duration::from_secs_f64(args.ping_timeout))
            .await?;
        let params = endpoint.execution_parameters(&mut notes).await;
        let plan = Plan::new(args, params.as_ref(), defaults)?;
        let backend = Backend::Http(Box::new(endpoint.job(&plan)));
        let mode = request_mode(&plan);
        return Ok(execute(backend, plan, mode, args, files, tty, notes).await);
    }

    let Some(model_dir) = &args.model_dir else {
        return Err(Error::config(
            "give --endpoint URL (a running container) or --model-dir DIR (in-process)",
        ));
    };
    // In-process, this process is the container: it asks for what `mmp
    // serve`'s /execution-parameters advertises, one request per core.
    let cores = (
        parallel::available_threads() as u32,
        "in-process: one per core",
    );
    let mut plan = Plan::new(args, None, cores)?;
    let known = |option: &str, given: &Option<String>, default: Format| {
        match given.as_deref().map(media_type_option) {
            None => Ok(default),
            Some((_, Some(f))) => Ok(f),
            Some((given, None)) => Err(Error::config(format!(
                "{option} {given}: in-process scoring reads and writes text/csv, application/jsonlines and application/json"
            ))),
        }
    };
    let input = known("--content-type", &args.content_type, Format::Csv)?;
    let output = known("--accept", &args.accept, input)?;
    plan.input_format = Some(input);
    plan.output_format = Some(output);
    let model = crate::model::load(model_dir)?;
    let opts = PipelineOptions {
        policy: args.on_error,
        ..PipelineOptions::default()
    };
    let local = InProcess::new(model, input, output, opts);
    let mode = match plan.payload_limit() {
        _ if local.scores_files(&plan) => Mode::Scored,
        Some(_) => request_mode(&plan),
        // Unlimited with DataProcessing: record-wise output is the same in
        // any batches, anything else is one request.
        None if parallel::record_wise(input, output) => batches(&plan, RANGE_BYTES as u64, None),
        None => Mode::Whole,
    };
    let backend = Backend::Local(Arc::new(local));
    Ok(execute(backend, plan, mode, args, files, tty, notes).await)
}

/// Requests exactly as SageMaker makes them.
fn request_mode(plan: &Plan) -> Mode {
    match (plan.split.splits(), plan.payload_limit()) {
        // An application/json document is read whole to be filtered.
        _ if plan.whole_document() => Mode::Whole,
        (true, Some(limit)) => batches(plan, limit, Some(limit)),
        (false, Some(_)) => Mode::Whole,
        (_, None) => Mode::Streamed,
    }
}

/// Mini-batches of at most `target` bytes, records of at most `max_record`.
fn batches(plan: &Plan, target: u64, max_record: Option<u64>) -> Mode {
    Mode::Batches(SplitOptions {
        framing: plan.framing(),
        target,
        single: plan.strategy == BatchStrategy::SingleRecord,
        max_record,
        mb: plan.max_payload_mb,
        blank: plan.blank(),
        keep_originals: plan.joins(),
        drop_blank: plan.joins(),
    })
}

async fn execute(
    backend: Backend,
    plan: Plan,
    mode: Mode,
    args: &TransformOptions,
    files: Vec<inputs::InputFile>,
    tty: bool,
    mut notes: Vec<String>,
) -> TransformOutcome {
    notes.push(plan.sources.join(", "));
    if !args.quiet {
        for n in &notes {
            crate::say!("mmp transform: {n}");
        }
    }
    let job = TransformJob {
        plan,
        mode,
        out_dir: args.output.clone(),
    };
    let total: u64 = files.iter().map(|f| f.size).sum();
    let progress = Arc::new(Progress::new(files.len(), total, tty));
    let reports = engine::run(&backend, Arc::new(job), Arc::new(files), &progress).await;
    progress.clear();
    let summary = summary(
        &reports,
        progress.records(),
        progress.bytes(),
        progress.elapsed(),
    );
    TransformOutcome { reports, summary }
}

/// `mmp transform: 3 files: 2 succeeded, 1 failed; 10000 records, 1.2 MB in
/// 0.35 s (3.4 MB/s, 28571 records/s)` ("1 file: ..." for one), then
/// `  failed a/b.csv: why`.
pub fn summary(reports: &[FileReport], records: u64, bytes: u64, took: Duration) -> String {
    let failed: Vec<&FileReport> = reports.iter().filter(|r| r.outcome.is_err()).collect();
    let secs = took.as_secs_f64().max(1e-9);
    let mb = bytes as f64 / 1e6;
    let mut s = format!(
        "mmp transform: {} {}: {} succeeded, {} failed; {records} {}, {mb:.1} MB in {secs:.2} s ({:.1} MB/s, {:.0} records/s)",
        reports.len(),
        if reports.len() == 1 { "file" } else { "files" },
        reports.len() - failed.len(),
        failed.len(),
        if records == 1 { "record" } else { "records" },
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
