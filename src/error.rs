//! One error type for the whole pipeline: a kind, and for input errors the
//! position of the record that caused it.
//!
//! Modelled on rust-csv's `Error(Box<ErrorKind>)`: the `Result` stays one
//! pointer wide on the hot path, and every message says *what* went wrong and
//! *where* ("record 12 (line 13, byte 311): expected 16 fields, found 3").
//! The HTTP layer maps kinds to statuses in one place ([`Error::status`]), and
//! the error policy asks [`Error::can_continue`] whether decoding may go on
//! after a bad record.

use std::fmt;
use std::io;

/// Where a record starts in its input stream.
///
/// `record` counts records (1-based; blank lines are not records), `line`
/// counts `\n`-terminated lines (1-based; a quoted newline inside a CSV field
/// starts a new line), `byte` is the 0-based offset of the record's first
/// byte from the start of the stream (after a UTF-8 BOM, which is counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// 1-based record number.
    pub record: u64,
    /// 1-based line number of the record's first byte.
    pub line: u64,
    /// 0-based byte offset of the record's first byte.
    pub byte: u64,
}

impl Position {
    /// The first record of a stream.
    pub const FIRST: Position = Position {
        record: 1,
        line: 1,
        byte: 0,
    };
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {} (line {}, byte {})",
            self.record, self.line, self.byte
        )
    }
}

/// The error type of the pipeline, the server and the CLIs.
pub struct Error(Box<ErrorKind>);

/// Which exit codes a command gives ([`Error::exit_code_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exits {
    /// `mmp score`, `serve` and `transform`: BSD `sysexits` values by kind:
    /// 64 bad usage or configuration, 65 bad input data, 66 model not
    /// loadable (or no input), 69 the container is unavailable, 70 model
    /// failure, 74 I/O; 128 + the signal's number when stopped by SIGTERM
    /// or SIGINT.
    Sysexits,
    /// `mmp train`: 255 for any failure, 128 + the signal's number when
    /// stopped by SIGTERM or SIGINT.
    Training,
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. Input errors carry the [`Position`] of their record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A record has a different number of fields than the model takes.
    #[error("{pos}: expected {expected} fields, found {found}")]
    FieldCount {
        /// Where the record starts.
        pos: Position,
        /// Fields the model (and label, when training) takes.
        expected: usize,
        /// Fields the record has.
        found: usize,
    },
    /// A field is empty (`1,,3`).
    #[error("{pos}: field {field} is empty")]
    EmptyField {
        /// Where the record starts.
        pos: Position,
        /// 1-based field number.
        field: usize,
    },
    /// A field is not a number.
    #[error("{pos}: field {field} is not a number: {text:?}")]
    NotANumber {
        /// Where the record starts.
        pos: Position,
        /// 1-based field number.
        field: usize,
        /// The field, cut to a readable length.
        text: String,
    },
    /// A field is NaN or infinite, or overflows an f64.
    #[error("{pos}: field {field} is not a finite number: {text:?}")]
    NonFinite {
        /// Where the record starts.
        pos: Position,
        /// 1-based field number.
        field: usize,
        /// The field, cut to a readable length.
        text: String,
    },
    /// A field holds bytes that are not UTF-8.
    #[error("{pos}: field {field} is not valid UTF-8 (bad byte at offset {offset} of the field)")]
    InvalidUtf8 {
        /// Where the record starts.
        pos: Position,
        /// 1-based field number.
        field: usize,
        /// Offset of the first invalid byte within the field.
        offset: usize,
    },
    /// A JSON line or JSON instance parsed, but is not a row of numbers.
    #[error("{pos}: not a row: {reason}")]
    NotARow {
        /// Where the record starts.
        pos: Position,
        /// What the record was instead.
        reason: String,
    },
    /// A JSON line is not valid JSON.
    #[error("{pos}: invalid JSON: {reason}")]
    InvalidJson {
        /// Where the record starts.
        pos: Position,
        /// serde_json's description.
        reason: String,
    },
    /// A record is longer than the configured maximum.
    #[error("{pos}: record is larger than the {limit}-byte limit (max record size)")]
    RecordTooLarge {
        /// Where the record starts.
        pos: Position,
        /// The limit in bytes.
        limit: usize,
    },
    /// An `application/json` document that is one row (not an array of
    /// rows) is larger than its cap.
    #[error("JSON document of one row is larger than the {limit}-byte limit (max document size); send rows as {{\"instances\": [...]}}, an array of rows, JSON lines or CSV to stream larger inputs")]
    DocumentTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// An `application/json` document does not parse or has the wrong shape.
    #[error("invalid JSON document (line {line}, column {column}, byte {byte}): {reason}")]
    InvalidDocument {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// 0-based offset in the stream (a BOM counts).
        byte: u64,
        /// What is wrong.
        reason: String,
    },
    /// The input ended inside a quoted CSV field.
    #[error("{pos}: input ended inside a quoted field (unterminated quote)")]
    UnterminatedQuote {
        /// Where the record starts.
        pos: Position,
    },
    /// The model produced NaN or infinity for a record.
    #[error("{pos}: the model's prediction is not a finite number ({value})")]
    NonFinitePrediction {
        /// Where the record starts.
        pos: Position,
        /// The value.
        value: f64,
    },
    /// `Content-Type` names a type we cannot read.
    #[error("unsupported content type {given:?}: supported are text/csv, application/jsonlines, application/json")]
    UnsupportedMediaType {
        /// The header as given.
        given: String,
    },
    /// `Accept` names no type we can write.
    #[error("cannot produce any type in Accept {given:?}: supported are text/csv, application/jsonlines, application/json")]
    NotAcceptable {
        /// The header as given.
        given: String,
    },
    /// The bidirectional-stream route's `content_type` (415) or `accept`
    /// (406) query parameter names a type a session cannot stream.
    #[error("cannot stream {param}={given:?}: a WebSocket session reads and writes text/csv or application/jsonlines (csv, jsonl); application/json is one document (POST /invocations)")]
    NotStreamable {
        /// `content_type` or `accept`.
        param: &'static str,
        /// The value as given.
        given: String,
    },
    /// A WebSocket session ended by the WebSocket layer rather than by a
    /// record: a protocol violation, a text message that is not UTF-8, a
    /// message over the size limit, or a client that stopped reading.
    #[error("{message}")]
    WebSocket {
        /// The `error` kind: `websocket_protocol`, `invalid_text`,
        /// `message_too_large` or `client_stalled`.
        code: &'static str,
        /// What happened.
        message: String,
    },
    /// The request body is larger than the configured body cap.
    #[error("request body is larger than the {limit}-byte limit (SAGEMAKER_MAX_PAYLOAD_IN_MB)")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// A request parameter is not valid.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A request made no progress for the configured time.
    #[error("no data received for {secs} s (MODEL_SERVER_TIMEOUT)")]
    Timeout {
        /// The timeout in seconds.
        secs: u64,
    },
    /// The client read none of a started response for the configured time
    /// (its request is ended, freeing its slot; the status had gone out).
    #[error("the client read none of the response for {secs} s (MODEL_SERVER_TIMEOUT)")]
    ClientNotReading {
        /// The timeout in seconds.
        secs: u64,
    },
    /// Too many requests in progress (the server answers 503).
    #[error("the server is at its limit of {limit} requests in progress; retry shortly")]
    Overloaded {
        /// The limit.
        limit: usize,
    },
    /// The model is still loading (the server answers 503).
    #[error("the model is still loading; retry shortly")]
    NotReady,
    /// The model failed.
    #[error("model failure: {0}")]
    Model(String),
    /// The model artifact could not be loaded.
    #[error("cannot load model from {path}: {reason}")]
    ModelLoad {
        /// The file that was read.
        path: String,
        /// Why it failed.
        reason: String,
    },
    /// Reading the input or writing the output failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being read or written.
        context: String,
        /// The cause.
        source: io::Error,
    },
    /// The connection ended inside the request body (EOF or reset): the
    /// client went away, or half-closed early and may still read the 400.
    #[error(
        "reading the request body: the client closed the connection before its end ({source})"
    )]
    ClientClosed {
        /// What the socket said.
        source: io::Error,
    },
    /// The answer could not be held for `content-length` framing (the
    /// temporary file in `TMPDIR`): 507 when the disk is full, else 500.
    #[error("cannot hold the response for Content-Length framing: {doing} in {} (TMPDIR): {source}", dir.display())]
    Spill {
        /// The directory the file was in (or was to be made in).
        dir: std::path::PathBuf,
        /// What was being done.
        doing: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// A bad option or environment value.
    #[error("{0}")]
    Config(String),
    /// `mmp transform`: no input file to transform (exit 66).
    #[error("no input files: {0}")]
    NoInput(String),
    /// `mmp transform`: the container never answered `/ping` with 200 (exit
    /// 69).
    #[error("endpoint {url} is not available: {reason}")]
    Unavailable {
        /// The endpoint's URL.
        url: String,
        /// The last thing that went wrong.
        reason: String,
    },
    /// `mmp transform`: the container answered with a status other than
    /// 2xx (exit 69 for 5xx, else 65).
    #[error("HTTP {status} from the container: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// `mmp transform`: the connection to the container broke (exit 69).
    #[error("connection failed: {0}")]
    Connection(String),
    /// `mmp transform`: no complete answer in time (exit 69).
    #[error("no complete response within {secs} s (--timeout, InvocationsTimeoutInSeconds)")]
    InvocationTimeout {
        /// The timeout in seconds.
        secs: f64,
    },
    /// `mmp transform`: a response to join has a different number of lines
    /// than the records sent.
    #[error(
        "the response has {got} lines for {sent} records: each record must give exactly one line"
    )]
    RecordCount {
        /// Records in the request.
        sent: u64,
        /// Lines in the response.
        got: u64,
    },
    /// `mmp transform`: one record is larger than `MaxPayloadInMB`.
    #[error(
        "{pos} is larger than MaxPayloadInMB={mb} ({limit} bytes): no mini-batch can carry it"
    )]
    PayloadTooLarge {
        /// Where the record starts in the file.
        pos: Position,
        /// MaxPayloadInMB.
        mb: u32,
        /// The limit in bytes.
        limit: u64,
    },
    /// `mmp transform`: with `SplitType=None` a file over `MaxPayloadInMB`.
    #[error("the file is {size} bytes, over MaxPayloadInMB={mb} ({limit} bytes); with SplitType=None the whole file is one request: use --split-type Line, or --max-payload-mb 0 to stream it")]
    FileTooLarge {
        /// The file's (or filtered body's) size.
        size: u64,
        /// MaxPayloadInMB.
        mb: u32,
        /// The limit in bytes.
        limit: u64,
    },
    /// `mmp transform`: a RecordIO or TFRecord record that is cut short or
    /// corrupt.
    #[error("{format} record {record} at byte {offset}: {reason}")]
    BadFrame {
        /// `RecordIO` or `TFRecord`.
        format: &'static str,
        /// 1-based record number.
        record: u64,
        /// Byte offset of the record's first byte in the (decompressed) file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// `mmp transform`: a `CompressionType=Gzip` input that is not gzip,
    /// is corrupt, or is cut short.
    #[error("{path}: bad gzip data, {offset} bytes into the compressed file: {reason}")]
    BadGzip {
        /// The input file.
        path: String,
        /// Compressed bytes read when the error was found.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// `mmp transform`: a record could not be filtered or joined
    /// (DataProcessing).
    #[error("{pos}: {what}: {reason}")]
    DataProcessing {
        /// Where the input record starts in the file.
        pos: Position,
        /// `InputFilter`, `OutputFilter` or `JoinSource`.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// `mmp transform`: a container's output line to join or filter does not
    /// parse (SageMaker: "Failed to parse output from the algorithm as CSV").
    #[error("{pos}: Failed to parse output from the algorithm as {format}: {reason}")]
    OutputParse {
        /// Where the input record that gave the output starts.
        pos: Position,
        /// `CSV` or `JSON`.
        format: &'static str,
        /// Why.
        reason: String,
    },
    /// `mmp transform`: a request failed on every attempt; the exit code is
    /// the last attempt's.
    #[error("failed after {attempts} attempts (1 + --max-retries {retries}); last error: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// `--max-retries`.
        retries: u32,
        /// The last attempt's error.
        last: Error,
    },
    /// `mmp score` of several inputs: some failed, each reported as it
    /// did; the exit code is the first one's.
    #[error("{failed} of {total} inputs failed (each error is above)")]
    InputsFailed {
        /// Inputs that failed.
        failed: usize,
        /// Inputs given.
        total: usize,
        /// The first failure.
        first: Error,
    },
    /// `mmp train`: a configuration file under `input/config` is
    /// unreadable or not the JSON it should be.
    #[error("bad configuration file {file}: {reason}")]
    ConfigFile {
        /// The file.
        file: std::path::PathBuf,
        /// What is wrong, with serde_json's line and column.
        reason: String,
    },
    /// `mmp train`: a hyperparameter is unknown or has a bad value; the
    /// message names the key, the value and what was expected.
    #[error("{0}")]
    Hyperparameter(String),
    /// `mmp train`: a channel is missing, empty or configured in a way we
    /// cannot read.
    #[error("channel {channel:?}: {reason}")]
    Channel {
        /// The channel name (`training`, `validation`).
        channel: String,
        /// What is wrong.
        reason: String,
    },
    /// `mmp train`: a record that cannot be trained on: its file, then the
    /// decoder's message, which carries record, line and byte.
    #[error("bad record in {channel} file {file}: {source}{hint}")]
    TrainingRecord {
        /// The channel.
        channel: String,
        /// The file (or FIFO) the record is in.
        file: String,
        /// The decoder's error, with the record's position.
        source: Error,
        /// Extra context, starting with "; " (or empty).
        hint: String,
    },
    /// `mmp train`: writing `model.json` (or the statistics) failed.
    #[error("cannot write the model: {0}")]
    SaveModel(Error),
    /// `mmp train`: the least-squares system has no unique solution.
    #[error("{0}")]
    Singular(String),
    /// `mmp train`: SageMaker (or a user) asked the job to stop before it
    /// finished; the signal's name (`SIGTERM`, `SIGINT`).
    #[error("training stopped by {0} before it finished (StopTrainingJob, or MaxRuntimeInSeconds reached); no model was written")]
    Stopped(&'static str),
    /// `mmp score` or `mmp transform` was stopped by a signal (its name)
    /// before it finished; the outputs it was writing were removed.
    #[error("stopped by {0} before the end")]
    Interrupted(&'static str),
    /// A bug: a thread panicked, or a loop made no progress.
    #[error("internal error: {0}")]
    Internal(String),
    /// Another error, with what was being worked on (a file name).
    #[error("{context}: {source}")]
    Context {
        /// Where it happened.
        context: String,
        /// The error.
        source: Error,
    },
}

impl Error {
    /// Wrap a kind.
    pub fn new(kind: ErrorKind) -> Error {
        Error(Box::new(kind))
    }

    /// An I/O error with what was being done; an error of ours carried
    /// through `io::Read` (bad input data, as a corrupt gzip stream) stays
    /// itself.
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        match source.downcast::<Error>() {
            Ok(ours) => ours,
            Err(source) => Error::new(ErrorKind::Io {
                context: context.into(),
                source,
            }),
        }
    }

    /// A configuration error.
    pub fn config(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config(msg.into()))
    }

    /// `mmp train`: a bad hyperparameter, the message naming it.
    pub fn hyperparameter(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::Hyperparameter(msg.into()))
    }

    /// `mmp train`: what is wrong with a channel.
    pub fn channel(channel: &str, reason: impl Into<String>) -> Error {
        Error::new(ErrorKind::Channel {
            channel: channel.to_string(),
            reason: reason.into(),
        })
    }

    /// Say what was being worked on (a file name); status, kind and exit
    /// code stay those of the error itself.
    pub fn context(self, context: impl Into<String>) -> Error {
        Error::new(ErrorKind::Context {
            context: context.into(),
            source: self,
        })
    }

    /// The kind of error.
    pub fn kind(&self) -> &ErrorKind {
        &self.0
    }

    /// Take the kind out.
    pub fn into_kind(self) -> ErrorKind {
        *self.0
    }

    /// The position of the record that caused it, for input errors.
    pub fn position(&self) -> Option<Position> {
        position_of(&self.0)
    }

    /// Rewrite the position of an input error (through any context), e.g.
    /// from a part of a file to the whole file; other errors are unchanged.
    pub fn map_position(mut self, f: impl FnOnce(Position) -> Position) -> Error {
        if let ErrorKind::Context { source, .. } = &mut *self.0 {
            let inner = std::mem::replace(source, Error::config(""));
            *source = inner.map_position(f);
        } else if let Some(pos) = position_mut(&mut self.0) {
            *pos = f(*pos);
        }
        self
    }

    /// Whether decoding can go on after this error: true for an error
    /// confined to one record (the `placeholder` policy then writes a marker
    /// and continues), false when the stream itself is broken.
    pub fn can_continue(&self) -> bool {
        if let ErrorKind::Context { source, .. } = &*self.0 {
            return source.can_continue();
        }
        use ErrorKind::*;
        matches!(
            *self.0,
            FieldCount { .. }
                | EmptyField { .. }
                | NotANumber { .. }
                | NonFinite { .. }
                | InvalidUtf8 { .. }
                | NotARow { .. }
                | InvalidJson { .. }
                | RecordTooLarge { .. }
                | NonFinitePrediction { .. }
        )
    }

    /// A short stable name for the kind, used as `"error"` in JSON error
    /// bodies, in placeholder markers, and as a metrics label.
    pub fn code(&self) -> &'static str {
        if let ErrorKind::Context { source, .. } = &*self.0 {
            return source.code();
        }
        use ErrorKind::*;
        match *self.0 {
            FieldCount { .. } => "field_count",
            EmptyField { .. } => "empty_field",
            NotANumber { .. } => "not_a_number",
            NonFinite { .. } => "non_finite",
            InvalidUtf8 { .. } => "invalid_utf8",
            NotARow { .. } => "not_a_row",
            InvalidJson { .. } => "invalid_json",
            RecordTooLarge { .. } => "record_too_large",
            DocumentTooLarge { .. } => "document_too_large",
            InvalidDocument { .. } => "invalid_document",
            UnterminatedQuote { .. } => "unterminated_quote",
            NonFinitePrediction { .. } => "non_finite_prediction",
            UnsupportedMediaType { .. } => "unsupported_media_type",
            NotAcceptable { .. } => "not_acceptable",
            NotStreamable {
                param: "accept", ..
            } => "not_acceptable",
            NotStreamable { .. } => "unsupported_media_type",
            WebSocket { code, .. } => code,
            BodyTooLarge { .. } => "body_too_large",
            NotReady => "loading",
            Overloaded { .. } => "overloaded",
            Timeout { .. } => "timeout",
            ClientNotReading { .. } => "client_not_reading",
            BadRequest(_) => "bad_request",
            Model(_) => "model_error",
            ModelLoad { .. } => "model_load",
            Io { .. } => "io",
            ClientClosed { .. } => ErrorKind::CLIENT_CLOSED,
            Spill { ref source, .. } if disk_full(source) => "insufficient_storage",
            Spill { .. } => "spill_failed",
            Config(_) => "config",
            NoInput(_) => "no_input",
            Unavailable { .. } => "unavailable",
            Status { .. } => "status",
            Connection(_) => "connection",
            InvocationTimeout { .. } => "invocation_timeout",
            RecordCount { .. } => "record_count",
            PayloadTooLarge { .. } => "payload_too_large",
            FileTooLarge { .. } => "file_too_large",
            BadFrame { .. } => "bad_frame",
            BadGzip { .. } => "bad_gzip",
            DataProcessing { .. } => "data_processing",
            OutputParse { .. } => "output_parse",
            GaveUp { .. } => "gave_up",
            InputsFailed { .. } => "inputs_failed",
            ConfigFile { .. } => "config_file",
            Hyperparameter(_) => "hyperparameter",
            Channel { .. } => "channel",
            TrainingRecord { .. } => "training_record",
            SaveModel(_) => "save_model",
            Singular(_) => "singular",
            Stopped(_) => "stopped",
            Interrupted(_) => "interrupted",
            Internal(_) => "internal",
            Context { .. } => "context",
        }
    }

    /// The HTTP status this error maps to while no response byte is sent.
    pub fn status(&self) -> u16 {
        if let ErrorKind::Context { source, .. } = &*self.0 {
            return source.status();
        }
        use ErrorKind::*;
        match *self.0 {
            RecordTooLarge { .. } | DocumentTooLarge { .. } | BodyTooLarge { .. } => 413,
            UnsupportedMediaType { .. } => 415,
            NotAcceptable { .. }
            | NotStreamable {
                param: "accept", ..
            } => 406,
            NotStreamable { .. } => 415,
            WebSocket {
                code: "message_too_large",
                ..
            } => 413,
            NotReady | Overloaded { .. } => 503,
            Timeout { .. } | ClientNotReading { .. } => 408,
            Model(_) | ModelLoad { .. } | Config(_) | Internal(_) => 500,
            // Reading the request body failed: the client sent a broken body.
            Io { .. } => 400,
            // As nginx answers "client prematurely closed connection": the
            // client may still be reading (a half-close); it is also counted
            // as an abort.
            ClientClosed { .. } => 400,
            // RFC 4918 §11.5: the server cannot store what it needs to
            // complete the request; SageMaker passes the status on in
            // `ModelError.OriginalStatusCode`.
            Spill { ref source, .. } if disk_full(source) => 507,
            Spill { .. } => 500,
            _ => 400,
        }
    }

    /// The exit code of `mmp score`, `serve` and `transform` for this error:
    /// [`Exits::Sysexits`] in [`Error::exit_code_for`].
    pub fn exit_code(&self) -> u8 {
        self.exit_code_for(Exits::Sysexits)
    }

    /// The process exit code for this error under a command's convention:
    /// the one table of exit codes.
    pub fn exit_code_for(&self, exits: Exits) -> u8 {
        if let ErrorKind::Context { source, .. }
        | ErrorKind::GaveUp { last: source, .. }
        | ErrorKind::InputsFailed { first: source, .. } = &*self.0
        {
            return source.exit_code_for(exits);
        }
        use ErrorKind::*;
        match (exits, &*self.0) {
            // Stopped by a signal: 128 + its number, the shell's convention.
            (_, Stopped("SIGINT") | Interrupted("SIGINT")) => 128 + 2,
            (_, Stopped(_) | Interrupted(_)) => 128 + 15,
            // What AWS's `scikit_bring_your_own` sample's `train` script
            // exits with on an exception; SageMaker marks the job `Failed`
            // on any non-zero exit and reads the reason from the failure
            // file (docs/contract.md §4).
            (Exits::Training, _) => 255,
            (Exits::Sysexits, kind) => match kind {
                Config(_) => 64,
                ModelLoad { .. } | NoInput(_) => 66,
                // `mmp transform`: the container is unavailable (sysexits'
                // EX_UNAVAILABLE); a 4xx answer is bad data (65).
                Unavailable { .. } | Connection(_) | InvocationTimeout { .. } => 69,
                Status { status, .. } if *status >= 500 => 69,
                Model(_) | Internal(_) => 70,
                Io { .. } | ClientClosed { .. } | Spill { .. } => 74,
                _ => 65,
            },
        }
    }

    /// Whether the client went away inside its request.
    pub fn is_client_closed(&self) -> bool {
        if let ErrorKind::Context { source, .. } = &*self.0 {
            return source.is_client_closed();
        }
        matches!(&*self.0, ErrorKind::ClientClosed { .. })
    }

    /// Whether the error is the reader of our output going away (a closed
    /// pipe), which a CLI treats as a normal end (ripgrep's convention).
    pub fn is_broken_pipe(&self) -> bool {
        if let ErrorKind::Context { source, .. } = &*self.0 {
            return source.is_broken_pipe();
        }
        matches!(&*self.0, Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }
}

use ErrorKind::Io;

/// A full disk or an exhausted quota.
fn disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}

impl ErrorKind {
    /// The code of [`ErrorKind::ClientClosed`].
    pub const CLIENT_CLOSED: &'static str = "client_closed";
}

/// The kinds that carry a position: the one list of them.
macro_rules! positioned {
    ($kind:expr, $pos:ident => $body:expr) => {{
        use ErrorKind::*;
        match $kind {
            FieldCount { $pos, .. }
            | EmptyField { $pos, .. }
            | NotANumber { $pos, .. }
            | NonFinite { $pos, .. }
            | InvalidUtf8 { $pos, .. }
            | NotARow { $pos, .. }
            | InvalidJson { $pos, .. }
            | RecordTooLarge { $pos, .. }
            | UnterminatedQuote { $pos }
            | NonFinitePrediction { $pos, .. } => Some($body),
            _ => None,
        }
    }};
}

/// The position of a kind that has one, looking through a context.
fn position_of(kind: &ErrorKind) -> Option<Position> {
    match kind {
        ErrorKind::Context { source, .. } => source.position(),
        other => positioned!(other, pos => *pos),
    }
}

fn position_mut(kind: &mut ErrorKind) -> Option<&mut Position> {
    positioned!(kind, pos => pos)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.0 {
            Io { source, .. }
            | ErrorKind::ClientClosed { source }
            | ErrorKind::Spill { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Error {
        Error::new(kind)
    }
}

/// Cut a field to a length that fits an error message, on a char boundary.
pub(crate) fn snippet(bytes: &[u8]) -> String {
    const MAX: usize = 40;
    let text = String::from_utf8_lossy(bytes);
    if text.chars().count() <= MAX {
        text.into_owned()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_says_what_and_where() {
        let e = Error::new(ErrorKind::FieldCount {
            pos: Position {
                record: 12,
                line: 13,
                byte: 311,
            },
            expected: 16,
            found: 3,
        });
        assert_eq!(
            e.to_string(),
            "record 12 (line 13, byte 311): expected 16 fields, found 3"
        );
        assert_eq!(e.status(), 400);
        assert!(e.can_continue());
        assert_eq!(e.code(), "field_count");
    }

    #[test]
    fn snippet_cuts_long_fields_on_char_boundaries() {
        let long = "é".repeat(100);
        let s = snippet(long.as_bytes());
        assert_eq!(s.chars().count(), 41);
        assert!(s.ends_with('…'));
    }
}
