//! SageMaker's `DataProcessing`: `InputFilter` picks what each record sends,
//! `JoinSource=Input` joins each output with its *original* record, and
//! `OutputFilter` picks what is written (docs/contract.md §3
//! "DataProcessing" and its appendix).
//!
//! Records here are lines without their line ending. CSV rows are read and
//! written with the `csv` crate, so quoting survives a filter
//! (`"a,b",1` stays one field), and are treated as JSON arrays of fields:
//! only index paths apply. A container's CSV output that is to be joined or
//! filtered must parse as strict RFC 4180 (a quote inside an unquoted field
//! is an error), since SageMaker "parses the container output as CSV" and
//! fails JSON answers with "Failed to parse output from the algorithm as CSV"
//! (§3, IS-TFS154).
//!
//! Joining (appendix, "Joining"): CSV appends the output's fields to the
//! input's (`1,2,3` + `1` → `1,2,3,1`); a JSON object gets the output under
//! `SageMakerOutput` (replacing an input key of that name, which is
//! reserved), after its own keys; any other JSON record becomes
//! `{"SageMakerInput": record, "SageMakerOutput": output}`.

use crate::error::Position;
use crate::media::Format;

use super::json::Json;
use super::jsonpath::{Filter, JsonPath};
use super::plan::{AssembleWith, JoinSource, SplitType};
use crate::batch::BatchStrategy;
use crate::error::{Error, ErrorKind, Result};

/// The key the output is joined under.
pub const OUTPUT_KEY: &str = "SageMakerOutput";
/// The key a non-object input record is put under when joined.
pub const INPUT_KEY: &str = "SageMakerInput";
/// UTF-8 byte order mark, dropped from a record before it is parsed.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// CSV or JSON: how a record is parsed and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `text/csv`.
    Csv,
    /// `application/json` or `application/jsonlines`.
    Json,
}

impl From<Format> for Family {
    fn from(f: Format) -> Family {
        match f {
            Format::Csv => Family::Csv,
            Format::Json | Format::JsonLines => Family::Json,
        }
    }
}

/// The job's DataProcessing, when it is not the identity.
#[derive(Clone, Debug)]
pub struct DataProcessing {
    /// `InputFilter`, unless `$`.
    pub input_filter: Option<JsonPath>,
    /// `JoinSource=Input`.
    pub join: bool,
    /// `OutputFilter`, unless `$`.
    pub output_filter: Option<JsonPath>,
    /// The input's format.
    pub input: Format,
    /// The output's format (the `Accept` type, else the input's).
    pub output: Format,
}

/// What the job's options say about DataProcessing.
#[derive(Clone, Debug)]
pub struct Options<'a> {
    /// `--input-filter`.
    pub input_filter: Option<&'a str>,
    /// `--join-source`.
    pub join: JoinSource,
    /// `--output-filter`.
    pub output_filter: Option<&'a str>,
    /// The content type as given, and its format if known.
    pub content_type: Option<(&'a str, Option<Format>)>,
    /// The accept type as given, and its format if known.
    pub accept: Option<(&'a str, Option<Format>)>,
    /// `SplitType`.
    pub split: SplitType,
    /// `AssembleWith`.
    pub assemble: AssembleWith,
    /// `BatchStrategy`.
    pub strategy: BatchStrategy,
}

impl DataProcessing {
    /// Check the options as `CreateTransformJob` would; `None` when they
    /// are the identity (`$`, `None`, `$`).
    pub fn new(o: &Options<'_>) -> Result<Option<DataProcessing>> {
        fn given(f: Option<&str>) -> Option<&str> {
            f.filter(|s| *s != "$")
        }
        if given(o.input_filter).is_none()
            && o.join == JoinSource::None
            && given(o.output_filter).is_none()
        {
            return Ok(None);
        }
        let supported = |what: &str, t: Option<(&str, Option<Format>)>| match t {
            Some((_, Some(f))) => Ok(f),
            Some((given, None)) => Err(unsupported(what, given)),
            None => Err(unsupported(what, "(none)")),
        };
        let input = supported("ContentType", o.content_type)?;
        let output = match o.accept {
            None => input,
            Some(_) => supported("Accept", o.accept)?,
        };
        if input == Format::Csv && (o.split != SplitType::Line || o.assemble != AssembleWith::Line)
        {
            return Err(Error::config(
                "DataProcessing with ContentType text/csv needs SplitType=Line and AssembleWith=Line",
            ));
        }
        let join = o.join == JoinSource::Input;
        let one_record_per_request = (o.split == SplitType::Line
            && o.strategy == BatchStrategy::SingleRecord)
            || (o.split == SplitType::None && input == Format::Json);
        if join && output == Format::Json && !one_record_per_request {
            return Err(Error::config(
                "JoinSource=Input with Accept application/json needs one record per request (BatchStrategy=SingleRecord, or an application/json input with SplitType=None): an application/json answer is one document for the whole request, so its records cannot be told apart; use application/jsonlines",
            ));
        }
        let parse = |f: Option<&str>, which: Filter, format: Format| {
            given(f)
                .map(|p| JsonPath::parse(p, which, format))
                .transpose()
        };
        // The output filter sees the joined record, which has the input's
        // shape when joining.
        let joined = if join { input } else { output };
        Ok(Some(DataProcessing {
            input_filter: parse(o.input_filter, Filter::Input, input)?,
            join,
            output_filter: parse(o.output_filter, Filter::Output, joined)?,
            input,
            output,
        }))
    }

    /// How output records are parsed and written: the input's family when
    /// joining (the joined record has the input's shape), else the output's.
    pub fn output_family(&self) -> Family {
        if self.join {
            self.input.into()
        } else {
            self.output.into()
        }
    }

    /// Whether an output record is the whole response (an `application/json`
    /// document) rather than one line of it.
    pub fn whole_response(&self) -> bool {
        self.output == Format::Json
    }

    /// Append the line to send for `record` (no line ending in `record`; one
    /// `\n` written).
    pub fn filter_input(&self, record: &[u8], pos: Position, out: &mut Vec<u8>) -> Result<()> {
        let Some(path) = &self.input_filter else {
            out.extend_from_slice(record);
            out.push(b'\n');
            return Ok(());
        };
        let fail = |reason: String| ErrorKind::DataProcessing {
            pos,
            what: "InputFilter",
            reason,
        };
        match Family::from(self.input) {
            Family::Csv => {
                let fields = read_csv(strip_bom(record)).map_err(fail)?;
                let picked = path.select_fields(fields.len()).map_err(fail)?;
                write_csv(picked.iter().map(|&i| &fields[i]), out);
            }
            Family::Json => {
                let text = utf8(record).map_err(fail)?;
                let value = Json::parse(text).map_err(|e| fail(format!("invalid JSON: {e}")))?;
                path.select(value).map_err(fail)?.write(out);
                out.push(b'\n');
            }
        }
        Ok(())
    }

    /// Append the output line for one record: `output` (the container's
    /// line for it, without line ending, or the whole response for
    /// `application/json`) joined with `original` if asked, then filtered.
    pub fn process_output(
        &self,
        original: &[u8],
        pos: Position,
        output: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let fail = |what: &'static str| {
            move |reason: String| ErrorKind::DataProcessing { pos, what, reason }
        };
        match self.output_family() {
            Family::Csv => {
                let result = read_csv_strict(output).map_err(|reason| ErrorKind::OutputParse {
                    pos,
                    format: "CSV",
                    reason,
                })?;
                let mut fields: Vec<Vec<u8>> = Vec::new();
                if self.join {
                    fields = read_csv(strip_bom(original)).map_err(fail("JoinSource"))?;
                }
                fields.extend(result);
                let picked: Vec<usize> = match &self.output_filter {
                    Some(p) => p
                        .select_fields(fields.len())
                        .map_err(fail("OutputFilter"))?,
                    None => (0..fields.len()).collect(),
                };
                write_csv(picked.iter().map(|&i| &fields[i]), out);
            }
            Family::Json => {
                let text = utf8(output).map_err(|reason| ErrorKind::OutputParse {
                    pos,
                    format: "JSON",
                    reason,
                })?;
                let result = Json::parse(text).map_err(|e| ErrorKind::OutputParse {
                    pos,
                    format: "JSON",
                    reason: e.to_string(),
                })?;
                let orig_text;
                let value = if self.join {
                    orig_text = utf8(strip_bom(original)).map_err(fail("JoinSource"))?;
                    let orig = Json::parse(orig_text)
                        .map_err(|e| fail("JoinSource")(format!("invalid JSON input: {e}")))?;
                    join_json(orig, result)
                } else {
                    result
                };
                let value = match &self.output_filter {
                    Some(p) => p.select(value).map_err(fail("OutputFilter"))?,
                    None => value,
                };
                value.write(out);
                out.push(b'\n');
            }
        }
        Ok(())
    }
}

/// `{...record, "SageMakerOutput": output}` or
/// `{"SageMakerInput": record, "SageMakerOutput": output}`.
fn join_json<'a>(orig: Json<'a>, output: Json<'a>) -> Json<'a> {
    if orig.is_object() {
        let mut entries = orig.into_object().unwrap_or_default();
        entries.retain(|(k, _)| k != OUTPUT_KEY);
        entries.push((OUTPUT_KEY.to_string(), output));
        Json::Object(entries)
    } else {
        Json::Object(vec![
            (INPUT_KEY.to_string(), orig),
            (OUTPUT_KEY.to_string(), output),
        ])
    }
}

fn unsupported(what: &str, given: &str) -> Error {
    Error::config(format!(
        "DataProcessing (InputFilter, JoinSource, OutputFilter) supports only text/csv, application/json and application/jsonlines; {what} is {given}"
    ))
}

fn strip_bom(record: &[u8]) -> &[u8] {
    record.strip_prefix(BOM).unwrap_or(record)
}

fn utf8(record: &[u8]) -> std::result::Result<&str, String> {
    std::str::from_utf8(record).map_err(|e| format!("not UTF-8: {e}"))
}

/// The fields of one CSV line (RFC 4180 quoting; lenient, like csv-core).
fn read_csv(line: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(line.len().max(64))
        .from_reader(line);
    let mut record = csv::ByteRecord::new();
    match reader.read_byte_record(&mut record) {
        Ok(true) => Ok(record.iter().map(<[u8]>::to_vec).collect()),
        Ok(false) => Ok(vec![Vec::new()]),
        Err(e) => Err(format!("not a CSV record: {e}")),
    }
}

/// The fields of a container's CSV line, rejecting what is not strict
/// RFC 4180: a quote inside an unquoted field, text after a closing quote,
/// an unterminated quote, or more than one record.
fn read_csv_strict(line: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut at = 0;
    let mut field = 1;
    loop {
        if line.get(at) == Some(&b'"') {
            at += 1;
            loop {
                match line.get(at) {
                    None => return Err(format!("field {field}: unterminated quote")),
                    Some(b'"') if line.get(at + 1) == Some(&b'"') => at += 2,
                    Some(b'"') => {
                        at += 1;
                        break;
                    }
                    Some(_) => at += 1,
                }
            }
            match line.get(at) {
                None => break,
                Some(b',') => {}
                Some(_) => return Err(format!("field {field}: text after a closing quote")),
            }
        } else {
            let end = memchr::memchr(b',', &line[at..]).map_or(line.len(), |i| at + i);
            if let Some(q) = memchr::memchr(b'"', &line[at..end]) {
                return Err(format!(
                    "field {field}: a quote inside an unquoted field (byte {})",
                    at + q
                ));
            }
            if let Some(nl) = memchr::memchr2(b'\n', b'\r', &line[at..end]) {
                return Err(format!("field {field}: a line break at byte {}", at + nl));
            }
            at = end;
            if at == line.len() {
                break;
            }
        }
        at += 1;
        field += 1;
    }
    read_csv(line)
}

/// Write one CSV row, quoting as needed, ending with `\n`.
fn write_csv<'f>(fields: impl Iterator<Item = &'f Vec<u8>>, out: &mut Vec<u8>) {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .buffer_capacity(256)
        .from_writer(&mut *out);
    // Writing to a Vec cannot fail.
    let _ = w.write_record(fields);
    let _ = w.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dp(
        input_filter: &str,
        join: JoinSource,
        output_filter: &str,
        format: &str,
    ) -> Result<Option<DataProcessing>> {
        let (ct, f) = super::super::plan::media_type_option(format);
        DataProcessing::new(&Options {
            input_filter: Some(input_filter),
            join,
            output_filter: Some(output_filter),
            content_type: Some((&ct, f)),
            accept: None,
            split: SplitType::Line,
            assemble: AssembleWith::Line,
            strategy: BatchStrategy::MultiRecord,
        })
    }

    const POS: Position = Position::FIRST;

    fn run(d: &DataProcessing, orig: &str, output: &str) -> String {
        let mut sent = Vec::new();
        d.filter_input(orig.as_bytes(), POS, &mut sent).unwrap();
        let mut out = Vec::new();
        d.process_output(orig.as_bytes(), POS, output.as_bytes(), &mut out)
            .unwrap();
        format!(
            "{}|{}",
            String::from_utf8(sent).unwrap(),
            String::from_utf8(out).unwrap()
        )
    }

    #[test]
    fn csv_filters_and_join_keep_quoting() {
        let d = dp("$[1:]", JoinSource::Input, "$[0,-1]", "csv")
            .unwrap()
            .unwrap();
        assert_eq!(run(&d, "id7,\"a,b\",2", "0.5"), "\"a,b\",2\n|id7,0.5\n");
        let d = dp("$", JoinSource::Input, "$", "csv").unwrap().unwrap();
        assert_eq!(run(&d, "1,2,3", "1"), "1,2,3\n|1,2,3,1\n");
    }

    #[test]
    fn json_join_appends_sagemaker_output() {
        let d = dp("$", JoinSource::Input, "$", "jsonl").unwrap().unwrap();
        assert_eq!(
            run(&d, r#"{"key":1}"#, r#"{"label":1}"#),
            "{\"key\":1}\n|{\"key\":1,\"SageMakerOutput\":{\"label\":1}}\n"
        );
        assert_eq!(
            run(&d, "[1,2]", "0.5"),
            "[1,2]\n|{\"SageMakerInput\":[1,2],\"SageMakerOutput\":0.5}\n"
        );
        // The reserved key is replaced, at the end.
        assert_eq!(
            run(&d, r#"{"SageMakerOutput":0,"a":1}"#, "2"),
            "{\"SageMakerOutput\":0,\"a\":1}\n|{\"a\":1,\"SageMakerOutput\":2}\n"
        );
    }

    #[test]
    fn output_is_read_as_strict_csv_to_be_joined() {
        assert!(read_csv_strict(b"\"a\"b").is_err());
        assert!(read_csv_strict(b"\"a").is_err());
        assert_eq!(
            read_csv_strict(b"\"a\"\"b\",,c\r").unwrap(),
            [b"a\"b".to_vec(), vec![], b"c".to_vec()]
        );
    }

    #[test]
    fn a_joined_csv_record_is_filtered_by_index() {
        // The output filter of a joined CSV record is an index path.
        assert!(dp("$", JoinSource::Input, "$.a", "csv").is_err());
    }

    #[test]
    fn filter_errors_name_the_record() {
        let d = dp("$[5]", JoinSource::None, "$", "csv").unwrap().unwrap();
        let mut out = Vec::new();
        let e = d.filter_input(b"1,2", POS, &mut out).unwrap_err();
        assert_eq!(
            e.to_string(),
            "record 1 (line 1, byte 0): InputFilter: index 5 is out of range for 2 elements"
        );
    }
}
