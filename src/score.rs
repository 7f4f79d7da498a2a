//! `mmp score`: run files or stdin through the pipeline offline.
//!
//! The same decoders, model and encoders as the server, so an offline answer
//! is byte-identical to the online one. Input is read and output written in
//! large buffers. With several inputs each gets its own output, and a failing
//! input does not stop the others (its output is not left behind half
//! written); the exit code reports the first failure.
//!
//! A record-wise input (CSV or JSON lines, answered in either) runs on every
//! CPU the process may use ([`crate::parallel`]): a file of at least
//! [`INLINE_BELOW`] bytes, and stdin when it is a pipe or terminal (then a
//! range is cut as soon as a read comes back short and the pool is idle, so
//! lines typed or trickled in are answered at once). Smaller files, an
//! `application/json` side, or one CPU run inline on this thread.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use bytes::BytesMut;

use crate::error::{Error, ErrorKind};
use crate::input::read_some;
use crate::media::{ContentType, Format};
use crate::model::{self, SharedModel};
use crate::output::Output;
use crate::parallel::{self, Engine, Spec};
use crate::pipeline::{Pipeline, PipelineOptions, Stats};
use crate::progress::Progress;

/// Bytes read per `read` call.
pub const READ_BUF: usize = 1 << 20;
/// Output is written once this much has accumulated.
pub const WRITE_BUF: usize = 1 << 18;
/// Regular files smaller than this are scored inline. Two ranges
/// ([`parallel::RANGE_BYTES`]): a smaller file gives the pool at most one
/// range and one other short one, so nothing to run side by side worth the
/// threads. (Timing 1–8 MiB files either way on the shared development
/// machine, loaded at 7–12 on 2 CPUs, was all noise.)
pub const INLINE_BELOW: u64 = 4 << 20;

/// What `mmp score` is told on its command line.
#[derive(Clone, Debug)]
pub struct ScoreOptions {
    /// Directory holding the model.
    pub model_dir: PathBuf,
    /// Input media type (`None`: from the file extension, else text/csv).
    pub content_type: Option<String>,
    /// Output media type (`None`: the input's).
    pub accept: Option<String>,
    /// Output file (one input) or directory (several).
    pub output: Option<PathBuf>,
    /// Input files; none or `-` is stdin.
    pub inputs: Vec<PathBuf>,
    /// Pipeline options.
    pub pipeline: PipelineOptions,
}

/// Run `mmp score`. On a terminal, a progress bar on stderr while it runs.
pub fn run(args: &ScoreOptions) -> Result<(), Error> {
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| Progress::stream(args.inputs.len().max(1), total_bytes(&args.inputs), true));
    let result = run_with(args, progress.as_ref());
    if let Some(p) = &progress {
        p.clear();
    }
    result
}

/// Input bytes in all, when every input is a regular file (stdin too, when
/// redirected from one); `None` for a pipe, FIFO or terminal.
fn total_bytes(inputs: &[PathBuf]) -> Option<u64> {
    if inputs.is_empty() {
        return stdin_size();
    }
    inputs.iter().try_fold(0u64, |sum, p| {
        if p.as_os_str() == "-" {
            return stdin_size().map(|n| sum + n);
        }
        let meta = std::fs::metadata(p).ok()?;
        meta.is_file().then(|| sum + meta.len())
    })
}

fn run_with(args: &ScoreOptions, progress: Option<&Progress>) -> Result<(), Error> {
    let model = model::load(&args.model_dir)?;
    let mut opts = args.pipeline.clone();
    let explicit = args
        .content_type
        .as_deref()
        .map(ContentType::parse_option)
        .transpose()?;
    if let Some(header) = explicit.and_then(|c| c.header) {
        opts.decode.csv_header = header;
    }
    let accept = args.accept.as_deref().map(Format::parse).transpose()?;
    // The job for an input: its format from the option, else its extension,
    // else CSV; the output's from the option, else the input's.
    let job_for = |path: Option<&Path>| {
        let input = explicit
            .map(|c| c.format)
            .or_else(|| path.and_then(Format::from_path))
            .unwrap_or(Format::Csv);
        Job {
            model: &model,
            opts: &opts,
            input,
            output: accept.unwrap_or(input),
            progress,
        }
    };

    let stdin_only = args.inputs.is_empty() || args.inputs.iter().all(|p| p.as_os_str() == "-");
    if stdin_only {
        let job = job_for(None);
        // `Stdin`, not its lock: the reading may run on a thread of its own.
        let size = stdin_size();
        return match &args.output {
            None => job
                .run(io::stdin(), &mut io::stdout().lock(), size)
                .map(drop),
            Some(out) => job.to_file(io::stdin(), out, size),
        };
    }
    if args.inputs.len() == 1 && args.output.as_ref().is_none_or(|o| !o.is_dir()) {
        let path = &args.inputs[0];
        let job = job_for(Some(path));
        let reader = open(path)?;
        let size = file_size(&reader);
        let result = match &args.output {
            None => job.run(reader, &mut io::stdout().lock(), size).map(drop),
            Some(out) => job.to_file(reader, out, size),
        };
        return result.map_err(|e| e.context(path.display().to_string()));
    }
    check_names(&args.inputs, args.output.as_deref())?;
    if let Some(dir) = &args.output {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let (mut first_error, mut failed) = (None, 0);
    for path in &args.inputs {
        let job = job_for(Some(path));
        let out = out_path(path, args.output.as_deref());
        let result = open(path).and_then(|r| {
            let size = file_size(&r);
            job.to_file(r, &out, size)
        });
        if let Some(p) = progress {
            p.file_done(result.is_ok());
        }
        if let Err(e) = result {
            let e = e.context(path.display().to_string());
            match progress {
                Some(p) => p.println(&format!("mmp: {e}")),
                None => crate::say!("mmp: {e}"),
            }
            failed += 1;
            first_error.get_or_insert(e);
        }
    }
    // Each failure is said above; the last line counts them.
    first_error.map_or(Ok(()), |first| {
        Err(Error::new(ErrorKind::InputsFailed {
            failed,
            total: args.inputs.len(),
            first,
        }))
    })
}

/// Several inputs: none of them stdin (its output would have no name),
/// and no two written to the same `NAME.out` (`a/x.csv` and `b/x.csv` into
/// one `-o DIR`: the second would replace the first's predictions).
fn check_names(inputs: &[PathBuf], dir: Option<&Path>) -> Result<(), Error> {
    if inputs.iter().any(|p| p.as_os_str() == "-") {
        return Err(Error::config(
            "- (stdin) must be the only input: with several inputs each output is NAME.out, and stdin has no name",
        ));
    }
    let mut seen = std::collections::HashMap::new();
    for path in inputs {
        if let Some(other) = seen.insert(out_path(path, dir), path) {
            if other != path {
                return Err(Error::config(format!(
                    "{} and {} would both be written to {}: score them into different folders",
                    other.display(),
                    path.display(),
                    out_path(path, dir).display()
                )));
            }
        }
    }
    Ok(())
}

/// `NAME.out`, in `dir` if given, else beside the input.
fn out_path(input: &Path, dir: Option<&Path>) -> PathBuf {
    let mut name = input.file_name().unwrap_or(input.as_os_str()).to_owned();
    name.push(".out");
    match dir {
        Some(d) => d.join(name),
        None => input.with_file_name(name),
    }
}

/// The size of a regular file; `None` for a pipe, FIFO, terminal or device.
fn file_size(file: &File) -> Option<u64> {
    let meta = file.metadata().ok()?;
    meta.is_file().then_some(meta.len())
}

/// [`file_size`] of stdin.
fn stdin_size() -> Option<u64> {
    use std::os::fd::AsFd;
    let fd = io::stdin().as_fd().try_clone_to_owned().ok()?;
    file_size(&File::from(fd))
}

fn open(path: &Path) -> Result<File, Error> {
    File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))
}

/// One input to score.
pub struct Job<'a> {
    /// The model.
    pub model: &'a SharedModel,
    /// Pipeline options.
    pub opts: &'a PipelineOptions,
    /// Input format.
    pub input: Format,
    /// Output format.
    pub output: Format,
    /// Where to count bytes and records as they go (a terminal's bar).
    pub progress: Option<&'a Progress>,
}

/// The engine for an input of `size` bytes (`None`: a stream), or `None`
/// to score it inline.
fn engine_for(input: Format, output: Format, size: Option<u64>) -> Option<Engine> {
    let engine = Engine::new();
    let worth = size.is_none_or(|n| n >= INLINE_BELOW);
    (engine.threads > 1 && worth && parallel::record_wise(input, output)).then_some(engine)
}

impl Job<'_> {
    /// Score `reader` into `writer`; `size`: the input's, if a regular file
    /// (`None`: a stream). On a bad record the predictions before it are
    /// written, then the error is returned.
    pub fn run(
        &self,
        mut reader: impl Read + Send + 'static,
        writer: &mut dyn Write,
        size: Option<u64>,
    ) -> Result<Stats, Error> {
        let Some(engine) = engine_for(self.input, self.output, size) else {
            return self.run_inline(&mut reader, writer);
        };
        let spec = Spec {
            model: self.model,
            opts: self.opts,
            input: self.input,
            output: self.output,
        };
        parallel::run(
            &engine,
            &spec,
            reader,
            writer,
            size.is_none(),
            self.progress,
        )
    }

    /// [`Job::run`] on this thread alone.
    pub fn run_inline(
        &self,
        reader: &mut dyn Read,
        writer: &mut dyn Write,
    ) -> Result<Stats, Error> {
        let mut pipeline = Pipeline::new(self.model.clone(), self.input, self.output, self.opts);
        let mut buf = vec![0u8; READ_BUF];
        let mut out = BytesMut::with_capacity(2 * WRITE_BUF);
        let mut counted = 0;
        let write = |out: &mut BytesMut, writer: &mut dyn Write| {
            writer
                .write_all(out)
                .map_err(|e| Error::io("writing output", e))?;
            out.clear();
            Ok::<_, Error>(())
        };
        loop {
            let n = match read_some(reader, &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return Err(Error::io("reading input", e)),
            };
            let fed = pipeline.feed(&buf[..n], &mut out);
            if let Some(p) = self.progress {
                // Once per read (1 MiB), not per record.
                let records = pipeline.stats().records;
                p.add(records - counted, n as u64);
                counted = records;
            }
            if let Err(e) = fed {
                write(&mut out, writer)?;
                return Err(e);
            }
            if out.len() >= WRITE_BUF {
                write(&mut out, writer)?;
            }
        }
        let finished = pipeline.finish(&mut out);
        if let Some(p) = self.progress {
            // A last record without a newline is decoded only now.
            p.add(pipeline.stats().records - counted, 0);
        }
        write(&mut out, writer)?;
        finished?;
        writer.flush().map_err(|e| Error::io("writing output", e))?;
        Ok(pipeline.stats())
    }

    /// Score `reader` into the file `path`, which appears only if the whole
    /// input succeeded (see [`crate::output`]: a device, FIFO or
    /// `/dev/stdout` is written through instead).
    pub fn to_file(
        &self,
        reader: impl Read + Send + 'static,
        path: &Path,
        size: Option<u64>,
    ) -> Result<(), Error> {
        let mut out = Output::create(path)
            .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        self.run(reader, &mut out, size)?;
        out.commit()
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }
}
