//! Media types: which [`Format`] a `Content-Type` names, and which one an
//! `Accept` header prefers.
//!
//! Types and parameter names are case-insensitive; parameters other than
//! `charset` (which must be UTF-8 or ASCII), `header` (RFC 4180's
//! `header=present|absent` for CSV) and `q` (in `Accept`) are ignored, so
//! `text/csv; charset=utf-8` is plain CSV. `Accept` is a list of ranges with
//! optional q-values; wildcards `*/*` and `type/*` match, the most specific
//! range that matches a type gives its q, and ties go to the default.

use crate::error::{Error, ErrorKind};

/// A record format we read and write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `text/csv`: one record per line, RFC 4180 quoting.
    Csv,
    /// `application/jsonlines`: one JSON value per line.
    JsonLines,
    /// `application/json`: one document.
    Json,
}

/// All formats, in the order that breaks a tie nothing else breaks.
pub const FORMATS: [Format; 3] = [Format::Csv, Format::JsonLines, Format::Json];

impl Format {
    /// The canonical media type, as written in a `Content-Type` response.
    pub fn mime(self) -> &'static str {
        match self {
            Format::Csv => "text/csv",
            Format::JsonLines => "application/jsonlines",
            Format::Json => "application/json",
        }
    }

    /// The format a `type/subtype` pair names, in any case.
    fn from_type(ty: &str, subtype: &str) -> Option<Format> {
        let is = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        if is(ty, "text") && is(subtype, "csv") {
            return Some(Format::Csv);
        }
        if !is(ty, "application") {
            return None;
        }
        if is(subtype, "json") {
            return Some(Format::Json);
        }
        [
            "jsonlines",
            "jsonl",
            "x-jsonlines",
            "json-lines",
            "x-ndjson",
        ]
        .iter()
        .any(|s| is(subtype, s))
        .then_some(Format::JsonLines)
    }

    /// The format a file name's extension suggests (`.csv`, `.jsonl`,
    /// `.jsonlines`, `.ndjson`, `.json`; a trailing `.gz` is looked through).
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let ext = name.rsplit_once('.')?.1;
        match ext {
            "csv" => Some(Format::Csv),
            "jsonl" | "jsonlines" | "ndjson" => Some(Format::JsonLines),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    /// A type given on a command line or in an environment variable: a
    /// media type, or a short name (`csv`, `jsonl`/`jsonlines`, `json`).
    pub fn parse(s: &str) -> Result<Format, Error> {
        ContentType::parse_option(s).map(|ct| ct.format)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.mime())
    }
}

/// A parsed `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentType {
    /// The format of the body.
    pub format: Format,
    /// RFC 4180 `header=present` (true) or `header=absent` (false), if given.
    pub header: Option<bool>,
}

impl ContentType {
    /// Parse a `Content-Type` value.
    pub fn parse(value: &str) -> Result<ContentType, Error> {
        // The values clients send nearly always, compared whole: the
        // general parse below (splitting, Unicode trims, alias lists) was
        // 535 of a 1-row request's 30k instructions (callgrind, issue 19).
        let exact = match value {
            "text/csv" => Some(Format::Csv),
            "application/jsonlines" => Some(Format::JsonLines),
            "application/json" => Some(Format::Json),
            _ => None,
        };
        if let Some(format) = exact {
            return Ok(ContentType {
                format,
                header: None,
            });
        }
        let unsupported = || {
            Error::new(ErrorKind::UnsupportedMediaType {
                given: value.chars().take(200).collect(),
            })
        };
        let mut parts = value.split(';');
        let (ty, subtype) = split_type(parts.next().unwrap_or("")).ok_or_else(unsupported)?;
        let format = Format::from_type(ty, subtype).ok_or_else(unsupported)?;
        let mut header = None;
        for param in parts {
            let Some((name, val)) = param.split_once('=') else {
                continue;
            };
            let val = val.trim().trim_matches('"');
            let (name, is) = (name.trim(), |a: &str, b: &str| a.eq_ignore_ascii_case(b));
            if is(name, "charset") {
                if !["utf-8", "utf8", "us-ascii", "ascii"]
                    .iter()
                    .any(|c| is(val, c))
                {
                    return Err(unsupported());
                }
            } else if is(name, "header") && format == Format::Csv {
                header = if is(val, "present") {
                    Some(true)
                } else if is(val, "absent") {
                    Some(false)
                } else {
                    None
                };
            }
        }
        Ok(ContentType { format, header })
    }
}

impl ContentType {
    /// A content type given as an option: a media type or a short name. A
    /// bad value is a usage error (exit 64), not bad input data.
    pub fn parse_option(s: &str) -> Result<ContentType, Error> {
        let format = match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Format::Csv,
            "jsonl" | "jsonlines" | "ndjson" => Format::JsonLines,
            "json" => Format::Json,
            _ => {
                return ContentType::parse(s).map_err(|e| {
                    Error::config(format!("{e} (or use a short name: csv, jsonl, json)"))
                })
            }
        };
        Ok(ContentType {
            format,
            header: None,
        })
    }
}

/// `type/subtype`, trimmed (not lower-cased: every comparison ignores
/// ASCII case, so parsing a header allocates nothing); `None` if there is no
/// slash or either half is empty.
fn split_type(s: &str) -> Option<(&str, &str)> {
    let (ty, subtype) = s.trim().split_once('/')?;
    let (ty, subtype) = (ty.trim(), subtype.trim());
    if ty.is_empty() || subtype.is_empty() {
        return None;
    }
    Some((ty, subtype))
}

/// How well an `Accept` range matches a format: `None` for no match, else
/// (specificity, q) with specificity 2 for an exact type, 1 for `type/*`,
/// 0 for `*/*`.
fn range_match(ty: &str, subtype: &str, format: Format) -> Option<u8> {
    match (ty, subtype) {
        ("*", "*") => Some(0),
        (t, "*") => {
            let (ft, _) = format.mime().split_once('/')?;
            t.eq_ignore_ascii_case(ft).then_some(1)
        }
        (t, s) => (Format::from_type(t, s) == Some(format)).then_some(2),
    }
}

/// Parse a q-value (`0`, `0.5`, `1.000`); `None` if malformed.
fn parse_q(s: &str) -> Option<f32> {
    let q: f32 = s.trim().parse().ok()?;
    (0.0..=1.0).contains(&q).then_some(q)
}

/// Choose the output format for an `Accept` header.
///
/// A missing or blank header, or one that rates several formats equally
/// (`*/*`), gives `default`. An empty choice is a 406.
pub fn negotiate(accept: Option<&str>, default: Format) -> Result<Format, Error> {
    let Some(value) = accept.filter(|v| !v.trim().is_empty()) else {
        return Ok(default);
    };
    // For each format, the (specificity, q) of the most specific range that
    // matches it.
    let mut best: [Option<(u8, f32)>; 3] = [None; 3];
    for range in value.split(',') {
        let mut parts = range.split(';');
        let Some((ty, subtype)) = split_type(parts.next().unwrap_or("")) else {
            continue;
        };
        let mut q = Some(1.0);
        for param in parts {
            if let Some((name, val)) = param.split_once('=') {
                if name.trim().eq_ignore_ascii_case("q") {
                    q = parse_q(val);
                }
            }
        }
        let Some(q) = q else { continue };
        for (i, format) in FORMATS.iter().enumerate() {
            if let Some(spec) = range_match(ty, subtype, *format) {
                if best[i].is_none_or(|(s, _)| spec > s) {
                    best[i] = Some((spec, q));
                }
            }
        }
    }
    let q_of = |f: Format| {
        let i = FORMATS.iter().position(|x| *x == f).unwrap_or(0);
        best[i].map_or(0.0, |(_, q)| q)
    };
    let top = FORMATS.iter().map(|f| q_of(*f)).fold(0.0f32, f32::max);
    if top <= 0.0 {
        return Err(Error::new(ErrorKind::NotAcceptable {
            given: value.chars().take(200).collect(),
        }));
    }
    if q_of(default) == top {
        return Ok(default);
    }
    Ok(FORMATS
        .into_iter()
        .find(|f| q_of(*f) == top)
        .unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(s: &str) -> Result<Format, Error> {
        ContentType::parse(s).map(|c| c.format)
    }

    #[test]
    fn content_type_ignores_case_and_parameters() {
        assert_eq!(ct("text/csv").unwrap(), Format::Csv);
        assert_eq!(ct("Text/CSV; charset=UTF-8").unwrap(), Format::Csv);
        assert_eq!(ct(" application/jsonlines ").unwrap(), Format::JsonLines);
        assert_eq!(ct("application/jsonl").unwrap(), Format::JsonLines);
        assert_eq!(ct("application/x-jsonlines").unwrap(), Format::JsonLines);
        assert_eq!(ct("application/json;charset=utf-8").unwrap(), Format::Json);
    }

    #[test]
    fn content_type_rejects_what_we_cannot_read() {
        for bad in [
            "",
            "text/plain",
            "application/x-www-form-urlencoded",
            "csv",
            "text/",
            "/csv",
            "text/csv; charset=latin-1",
        ] {
            let e = ct(bad).unwrap_err();
            assert_eq!(e.status(), 415, "{bad}");
            assert!(e.to_string().contains("unsupported content type"), "{e}");
        }
    }

    #[test]
    fn csv_header_parameter() {
        let c = ContentType::parse("text/csv; header=present").unwrap();
        assert_eq!(c.header, Some(true));
        let c = ContentType::parse("text/csv;Header=absent").unwrap();
        assert_eq!(c.header, Some(false));
        let c = ContentType::parse("TEXT/Csv; HEADER=\"Present\"; Charset=\"UTF-8\"").unwrap();
        assert_eq!(c.header, Some(true));
        assert_eq!(ContentType::parse("text/csv").unwrap().header, None);
    }

    #[test]
    fn accept_defaults_and_wildcards() {
        use Format::*;
        assert_eq!(negotiate(None, Csv).unwrap(), Csv);
        assert_eq!(negotiate(Some(""), JsonLines).unwrap(), JsonLines);
        assert_eq!(negotiate(Some("*/*"), JsonLines).unwrap(), JsonLines);
        assert_eq!(negotiate(Some("application/*"), Csv).unwrap(), JsonLines);
        assert_eq!(negotiate(Some("application/*"), Json).unwrap(), Json);
        assert_eq!(negotiate(Some("text/*"), Json).unwrap(), Csv);
        assert_eq!(negotiate(Some("TEXT/*"), Json).unwrap(), Csv);
        assert_eq!(
            negotiate(Some("Application/X-NDJSON"), Csv).unwrap(),
            JsonLines
        );
        assert_eq!(negotiate(Some("application/json"), Csv).unwrap(), Json);
    }

    #[test]
    fn accept_q_values_and_lists() {
        use Format::*;
        let a = "text/csv;q=0.5, application/jsonlines;q=0.9, */*;q=0.1";
        assert_eq!(negotiate(Some(a), Csv).unwrap(), JsonLines);
        // The most specific range wins: */* does not revive a q=0 type.
        let a = "text/csv;q=0, */*";
        assert_eq!(negotiate(Some(a), Csv).unwrap(), JsonLines);
        let a = "text/html, application/xml;q=0.9, Application/JSON;q=0.8";
        assert_eq!(negotiate(Some(a), Csv).unwrap(), Json);
        // A malformed q drops its range, not the header.
        let a = "text/csv;q=2, application/json";
        assert_eq!(negotiate(Some(a), Csv).unwrap(), Json);
    }

    #[test]
    fn accept_with_nothing_we_write_is_406() {
        for a in [
            "text/html",
            "image/png, text/plain",
            "text/csv;q=0",
            "garbage",
        ] {
            let e = negotiate(Some(a), Format::Csv).unwrap_err();
            assert_eq!(e.status(), 406, "{a}");
        }
    }

    #[test]
    fn options_take_short_names() {
        assert_eq!(Format::parse("csv").unwrap(), Format::Csv);
        assert_eq!(Format::parse("JSONL").unwrap(), Format::JsonLines);
        assert_eq!(Format::parse("json").unwrap(), Format::Json);
        assert_eq!(
            Format::parse("text/csv; charset=utf-8").unwrap(),
            Format::Csv
        );
        assert_eq!(Format::parse("xml").unwrap_err().exit_code(), 64);
    }

    #[test]
    fn format_from_path() {
        use std::path::Path;
        assert_eq!(Format::from_path(Path::new("a/b.CSV")), Some(Format::Csv));
        assert_eq!(
            Format::from_path(Path::new("x.jsonl.gz")),
            Some(Format::JsonLines)
        );
        assert_eq!(Format::from_path(Path::new("x.json")), Some(Format::Json));
        assert_eq!(Format::from_path(Path::new("x.txt")), None);
        assert_eq!(Format::from_path(Path::new("noext")), None);
    }
}
