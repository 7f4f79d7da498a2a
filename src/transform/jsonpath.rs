//! The JSONPath subset of SageMaker's `InputFilter` and `OutputFilter`, with
//! the real service's validation errors.
//!
//! Operators (docs/contract.md §3, "DataProcessing"; only these): `$`
//! (the root, first), `.name`, `.*` / `[*]`, `['a','b']` (also after a dot,
//! `$.f.['a','b']`; a name inside cannot be nested further), `[1]`,
//! `[1,3,5]` with negative indexes (`-1` is the last), `[start:end]` with
//! either end optional. CSV records are arrays of fields, so only index
//! paths apply to `text/csv`.
//!
//! Rejected as the service rejects them (appendix, "What the real service
//! rejects"): a list mixing ranges (`$[0:2,246:]`: "only single range
//! filters of format (eg: [1:5]) are supported"); any character that is
//! neither a letter, a digit nor one of the operators, underscores included
//! ("Unexpected "_" in JsonPath. Supported operators for
//! "application/jsonlines" are [...]"); and a filter over 63 characters.
//!
//! **Slice ends.** AWS's page contradicts itself: its examples call `$[1:4]`
//! "the second through fifth columns" (end inclusive) while its operator
//! table compares slices to the array `slice()` method and cites Jayway
//! JsonPath, both end-exclusive (appendix, "Slice ends are ambiguous"). We
//! follow the operator table and Jayway, the implementation the page names:
//! `$[1:4]` selects indexes 1, 2 and 3. [`SLICE_END_INCLUSIVE`] is the one
//! switch to flip if the service is shown to do otherwise.

use crate::media::Format;

use super::json::Json;
use super::plan::validation;
use crate::error::Error;

/// Whether `[start:end]` includes `end`. `false`: end-exclusive, as the
/// operator table's `slice()` and Jayway JsonPath (see the module docs for
/// the documentation's contradiction).
pub const SLICE_END_INCLUSIVE: bool = false;

/// Longest filter the API accepts (`DataProcessing`, docs/contract.md §3).
pub const MAX_FILTER_CHARS: usize = 63;

/// The operators the service lists in its "Unexpected" error, in its order.
const OPERATORS: &str = "['$', '[', ']', '*', '.', ' ', ',', ':', '-', ''']";

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// `.name` or `['name']`.
    Name(String),
    /// `['a','b']`: an object holding those keys.
    Names(Vec<String>),
    /// `.*` or `[*]`.
    Wildcard,
    /// `[i]`.
    Index(i64),
    /// `[i,j,...]`.
    Indexes(Vec<i64>),
    /// `[start:end]`.
    Slice(Option<i64>, Option<i64>),
}

/// Which filter a path is, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// `DataProcessing.InputFilter`.
    Input,
    /// `DataProcessing.OutputFilter`.
    Output,
}

impl Filter {
    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Filter::Input => "InputFilter",
            Filter::Output => "OutputFilter",
        }
    }

    fn member(self) -> &'static str {
        match self {
            Filter::Input => "dataProcessing.inputFilter",
            Filter::Output => "dataProcessing.outputFilter",
        }
    }
}

/// A parsed, validated filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    segments: Vec<Segment>,
}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonPath {
    /// Parse `text` as a filter over records of `format` (`text/csv` allows
    /// index paths only).
    pub fn parse(text: &str, filter: Filter, format: Format) -> Result<JsonPath, Error> {
        if text.chars().count() > MAX_FILTER_CHARS {
            return Err(validation(
                text,
                filter.member(),
                "Member must have length less than or equal to 63",
            ));
        }
        if let Some(c) = text
            .chars()
            .find(|c| !c.is_alphanumeric() && !"$[]*. ,:-'".contains(*c))
        {
            return Err(Error::config(format!(
                "Unexpected \"{c}\" in JsonPath. Supported operators for \"{}\" are {OPERATORS}",
                format.mime()
            )));
        }
        let segments = Parser {
            text,
            chars: text.char_indices().collect(),
            at: 0,
        }
        .path()?;
        let path = JsonPath {
            text: text.to_string(),
            segments,
        };
        if format == Format::Csv {
            let index_only = match path.segments.as_slice() {
                [] => true,
                [s] => !matches!(s, Segment::Name(_) | Segment::Names(_)),
                _ => false,
            };
            if !index_only {
                return Err(invalid(
                    text,
                    "CSV records are arrays of fields: only index filters such as $[1], $[1,3,5] or $[2:5] apply to text/csv",
                ));
            }
        }
        Ok(path)
    }

    /// The segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The fields of a CSV record of `len` fields that the path selects, in
    /// order (a CSV path is `$` or one index segment).
    pub fn select_fields(&self, len: usize) -> Result<Vec<usize>, String> {
        match self.segments.first() {
            None | Some(Segment::Wildcard) => Ok((0..len).collect()),
            Some(Segment::Index(i)) => Ok(vec![index(*i, len)?]),
            Some(Segment::Indexes(is)) => is.iter().map(|i| index(*i, len)).collect(),
            Some(Segment::Slice(a, b)) => Ok(slice(*a, *b, len).collect()),
            Some(Segment::Name(_) | Segment::Names(_)) => {
                Err("a name cannot select a CSV field".into())
            }
        }
    }

    /// Apply the path to a JSON value. A definite path (names and single
    /// indexes only) gives the value itself; a wildcard, index list or slice
    /// gives an array of what it selects, as in Jayway JsonPath, where a key
    /// missing below an indefinite step is skipped rather than an error.
    pub fn select<'a>(&self, value: Json<'a>) -> Result<Json<'a>, String> {
        eval(value, &self.segments, false).map(|v| v.unwrap_or(Json::Array(Vec::new())))
    }
}

/// `Invalid JsonPath: <path>: <reason>`, the service's wording.
fn invalid(path: &str, reason: &str) -> Error {
    Error::config(format!("Invalid JsonPath: {path}: {reason}"))
}

/// A 0-based index for `i` in a list of `len` (negative counts from the end).
fn index(i: i64, len: usize) -> Result<usize, String> {
    let n = len as i64;
    let j = if i < 0 { n + i } else { i };
    if (0..n).contains(&j) {
        Ok(j as usize)
    } else {
        Err(format!("index {i} is out of range for {len} elements"))
    }
}

/// The indexes `[a:b]` selects in a list of `len` (see
/// [`SLICE_END_INCLUSIVE`]); out-of-range ends are clamped, as `slice()`.
fn slice(a: Option<i64>, b: Option<i64>, len: usize) -> std::ops::Range<usize> {
    let n = len as i64;
    let norm = |i: i64| (if i < 0 { n + i } else { i }).clamp(0, n);
    let start = a.map_or(0, norm);
    let end = match b {
        None => n,
        Some(b) if SLICE_END_INCLUSIVE => (norm(b) + 1).min(n),
        Some(b) => norm(b),
    };
    start as usize..(end.max(start) as usize)
}

/// Apply `segs` to `value`. `indefinite`: an earlier step selected several
/// values, so a missing key skips this value (`Ok(None)`) instead of failing.
fn eval<'a>(
    value: Json<'a>,
    segs: &[Segment],
    indefinite: bool,
) -> Result<Option<Json<'a>>, String> {
    let Some((seg, rest)) = segs.split_first() else {
        return Ok(Some(value));
    };
    let kind = value.kind();
    let not = |what: &str| format!("{} needs {what}, found {kind}", describe(seg));
    match seg {
        Segment::Name(name) => {
            let Some(entries) = value.into_object() else {
                return if indefinite {
                    Ok(None)
                } else {
                    Err(not("an object"))
                };
            };
            match entries.into_iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => eval(v, rest, indefinite),
                None if indefinite => Ok(None),
                None => Err(format!("no key '{name}'")),
            }
        }
        Segment::Names(names) => {
            let Some(entries) = value.into_object() else {
                return if indefinite {
                    Ok(None)
                } else {
                    Err(not("an object"))
                };
            };
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                match entries.iter().rev().find(|(k, _)| k == name) {
                    Some((k, v)) => out.push((k.clone(), v.clone())),
                    None if indefinite => {}
                    None => return Err(format!("no key '{name}'")),
                }
            }
            Ok(Some(Json::Object(out)))
        }
        Segment::Index(i) => {
            let Some(items) = value.into_array() else {
                return if indefinite {
                    Ok(None)
                } else {
                    Err(not("an array"))
                };
            };
            let j = index(*i, items.len())?;
            match items.into_iter().nth(j) {
                Some(v) => eval(v, rest, indefinite),
                None => Err(format!("index {i} is out of range")),
            }
        }
        Segment::Wildcard | Segment::Indexes(_) | Segment::Slice(..) => {
            let items: Vec<Json<'a>> = match (seg, value) {
                (Segment::Wildcard, v) if v.is_object() => v
                    .into_object()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(_, v)| v)
                    .collect(),
                (_, v) => match v.into_array() {
                    Some(items) => items,
                    None if indefinite => return Ok(None),
                    None => return Err(not("an array")),
                },
            };
            let picked: Vec<Json<'a>> = match seg {
                Segment::Indexes(is) => {
                    let mut out = Vec::with_capacity(is.len());
                    for i in is {
                        out.push(items[index(*i, items.len())?].clone());
                    }
                    out
                }
                Segment::Slice(a, b) => {
                    let r = slice(*a, *b, items.len());
                    items.into_iter().skip(r.start).take(r.len()).collect()
                }
                _ => items,
            };
            let mut out = Vec::with_capacity(picked.len());
            for v in picked {
                if let Some(v) = eval(v, rest, true)? {
                    out.push(v);
                }
            }
            Ok(Some(Json::Array(out)))
        }
    }
}

/// A segment as written, for messages.
fn describe(seg: &Segment) -> String {
    match seg {
        Segment::Name(n) => format!(".{n}"),
        Segment::Names(ns) => format!("['{}']", ns.join("','")),
        Segment::Wildcard => "*".into(),
        Segment::Index(i) => format!("[{i}]"),
        Segment::Indexes(is) => format!(
            "[{}]",
            is.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        ),
        Segment::Slice(a, b) => format!(
            "[{}:{}]",
            a.map(|v| v.to_string()).unwrap_or_default(),
            b.map(|v| v.to_string()).unwrap_or_default()
        ),
    }
}

/// A recursive-descent parser over the path's characters (all of them
/// already checked to be letters, digits or operators).
struct Parser<'t> {
    text: &'t str,
    chars: Vec<(usize, char)>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).map(|(_, c)| *c)
    }

    fn err(&self, reason: impl AsRef<str>) -> Error {
        invalid(self.text, reason.as_ref())
    }

    fn unexpected(&self) -> Error {
        match self.peek() {
            Some(c) => self.err(format!("unexpected '{c}' at character {}", self.at + 1)),
            None => self.err("unexpected end of path"),
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(' ') {
            self.at += 1;
        }
    }

    fn path(mut self) -> Result<Vec<Segment>, Error> {
        if self.peek() != Some('$') {
            return Err(self.err("a path starts with $"));
        }
        self.at += 1;
        let mut segs: Vec<Segment> = Vec::new();
        while let Some(c) = self.peek() {
            if matches!(segs.last(), Some(Segment::Names(_))) {
                return Err(self.err("a child selected with ['a','b'] cannot be nested further"));
            }
            match c {
                '.' => {
                    self.at += 1;
                    match self.peek() {
                        Some('*') => {
                            self.at += 1;
                            segs.push(Segment::Wildcard);
                        }
                        Some('[') => segs.push(self.bracket()?),
                        Some('.') => return Err(self.err("deep scan (..) is not supported")),
                        Some(c) if c.is_alphanumeric() => segs.push(Segment::Name(self.name())),
                        _ => return Err(self.unexpected()),
                    }
                }
                '[' => segs.push(self.bracket()?),
                _ => return Err(self.unexpected()),
            }
        }
        Ok(segs)
    }

    fn name(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric()) {
            s.push(c);
            self.at += 1;
        }
        s
    }

    /// `[...]`, from its `[` to past its `]`.
    fn bracket(&mut self) -> Result<Segment, Error> {
        self.at += 1;
        self.skip_spaces();
        let seg = match self.peek() {
            Some('*') => {
                self.at += 1;
                Segment::Wildcard
            }
            Some('\'') => {
                let mut names = vec![self.quoted()?];
                self.skip_spaces();
                while self.peek() == Some(',') {
                    self.at += 1;
                    self.skip_spaces();
                    names.push(self.quoted()?);
                    self.skip_spaces();
                }
                if names.len() == 1 {
                    Segment::Name(names.remove(0))
                } else {
                    Segment::Names(names)
                }
            }
            _ => self.indexes()?,
        };
        self.skip_spaces();
        if self.peek() != Some(']') {
            return Err(self.unexpected());
        }
        self.at += 1;
        Ok(seg)
    }

    /// `'name'`.
    fn quoted(&mut self) -> Result<String, Error> {
        if self.peek() != Some('\'') {
            return Err(self.unexpected());
        }
        self.at += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated quoted name")),
                Some('\'') => break,
                Some(c) => {
                    s.push(c);
                    self.at += 1;
                }
            }
        }
        self.at += 1;
        if s.is_empty() {
            return Err(self.err("empty name"));
        }
        if s.contains('.') {
            return Err(self.err(format!(
                "a name inside ['...'] cannot be nested further ('{s}')"
            )));
        }
        Ok(s)
    }

    /// `i`, `i,j,...` or `a:b` inside brackets.
    fn indexes(&mut self) -> Result<Segment, Error> {
        let mut items: Vec<(Option<i64>, Option<Option<i64>>)> = Vec::new();
        loop {
            self.skip_spaces();
            let start = self.int()?;
            self.skip_spaces();
            let end = if self.peek() == Some(':') {
                self.at += 1;
                self.skip_spaces();
                Some(self.int()?)
            } else {
                None
            };
            if start.is_none() && end.is_none() {
                return Err(self.unexpected());
            }
            items.push((start, end));
            self.skip_spaces();
            if self.peek() == Some(',') {
                self.at += 1;
            } else {
                break;
            }
        }
        let ranges = items.iter().filter(|(_, e)| e.is_some()).count();
        if ranges > 0 && items.len() > 1 {
            return Err(self.err("only single range filters of format (eg: [1:5]) are supported"));
        }
        Ok(match items.as_slice() {
            [(a, Some(b))] => Segment::Slice(*a, *b),
            [(Some(i), None)] => Segment::Index(*i),
            _ => Segment::Indexes(items.iter().filter_map(|(a, _)| *a).collect()),
        })
    }

    /// An optional integer with an optional `-`.
    fn int(&mut self) -> Result<Option<i64>, Error> {
        let from = self.at;
        if self.peek() == Some('-') {
            self.at += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        if self.at == from {
            return Ok(None);
        }
        let s: String = self.chars[from..self.at].iter().map(|(_, c)| *c).collect();
        s.parse::<i64>()
            .map(Some)
            .map_err(|_| self.err(format!("'{s}' is not an index")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<Segment> {
        JsonPath::parse(s, Filter::Input, Format::JsonLines)
            .unwrap()
            .segments
    }

    fn err(s: &str, f: Format) -> String {
        JsonPath::parse(s, Filter::Input, f)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_operator_table_parses() {
        use Segment::*;
        assert_eq!(p("$"), vec![]);
        assert_eq!(p("$.id"), vec![Name("id".into())]);
        assert_eq!(p("$.id.*"), vec![Name("id".into()), Wildcard]);
        assert_eq!(
            p("$['id','SageMakerOutput']"),
            vec![Names(vec!["id".into(), "SageMakerOutput".into()])]
        );
        assert_eq!(p("$[1]"), vec![Index(1)]);
        assert_eq!(p("$[1,3,5]"), vec![Indexes(vec![1, 3, 5])]);
        assert_eq!(p("$[0,-1]"), vec![Indexes(vec![0, -1])]);
        assert_eq!(p("$[2:5]"), vec![Slice(Some(2), Some(5))]);
        assert_eq!(p("$[:5]"), vec![Slice(None, Some(5))]);
        assert_eq!(p("$[2:]"), vec![Slice(Some(2), None)]);
        assert_eq!(p("$[ 1 , 2 ]"), vec![Indexes(vec![1, 2])]);
        assert_eq!(
            p("$.field1.['child1','child2']"),
            vec![
                Name("field1".into()),
                Names(vec!["child1".into(), "child2".into()])
            ]
        );
        assert_eq!(p("$[*]"), vec![Wildcard]);
    }

    #[test]
    fn the_services_own_rejections() {
        // The fixtures' reject-* cases hold the messages themselves.
        assert!(err("$[1:2,5]", Format::Csv).contains("only single range filters"));
        let long = format!("$.{}", "a".repeat(62));
        assert!(err(&long, Format::Json).contains("length less than or equal to 63"));
        assert!(JsonPath::parse(&long[..63], Filter::Input, Format::Json).is_ok());
    }

    #[test]
    fn malformed_paths() {
        for bad in [
            "",
            "id",
            "$.",
            "$..a",
            "$[",
            "$[]",
            "$[1",
            "$['a",
            "$['a'",
            "$[a]",
            "$['a','b'].c",
            "$['a.b','c']",
            "$[1:2:3]",
            "$ .a",
            "$[--1]",
        ] {
            let e = err(bad, Format::Json);
            assert!(e.starts_with("Invalid JsonPath: "), "{bad}: {e}");
        }
        assert!(err("$.a", Format::Csv).contains("only index filters"));
        assert!(err("$[1].a", Format::Csv).contains("only index filters"));
        assert!(err("$.a%", Format::Json).starts_with("Unexpected \"%\""));
    }

    fn csv(path: &str, len: usize) -> Result<Vec<usize>, String> {
        JsonPath::parse(path, Filter::Output, Format::Csv)
            .unwrap()
            .select_fields(len)
    }

    #[test]
    fn csv_field_selection() {
        assert_eq!(csv("$", 3).unwrap(), [0, 1, 2]);
        assert_eq!(csv("$[1:]", 4).unwrap(), [1, 2, 3]);
        assert_eq!(csv("$[0,-1]", 4).unwrap(), [0, 3]);
        assert_eq!(csv("$[1]", 4).unwrap(), [1]);
        assert_eq!(csv("$[-2:]", 4).unwrap(), [2, 3]);
        assert_eq!(csv("$[:9]", 2).unwrap(), [0, 1]);
        assert!(csv("$[4]", 4).unwrap_err().contains("out of range"));
        assert!(csv("$[0,-5]", 4).is_err());
    }

    #[test]
    fn slice_end_follows_the_switch() {
        let got = csv("$[1:4]", 10).unwrap();
        if SLICE_END_INCLUSIVE {
            assert_eq!(got, [1, 2, 3, 4]);
        } else {
            assert_eq!(got, [1, 2, 3]);
        }
    }

    fn json(path: &str, doc: &str) -> Result<String, String> {
        let p = JsonPath::parse(path, Filter::Output, Format::Json).unwrap();
        let v = p.select(Json::parse(doc).unwrap())?;
        let mut out = Vec::new();
        v.write(&mut out);
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn json_selection() {
        let doc = r#"{"id":7,"features":[1,2,3],"m":{"a":1,"b":[true]}}"#;
        assert_eq!(json("$", doc).unwrap(), doc);
        assert_eq!(json("$.features", doc).unwrap(), "[1,2,3]");
        assert_eq!(json("$.features[1:]", doc).unwrap(), "[2,3]");
        assert_eq!(json("$.features[-1]", doc).unwrap(), "3");
        assert_eq!(json("$.m.*", doc).unwrap(), "[1,[true]]");
        assert_eq!(
            json("$['id','m']", doc).unwrap(),
            r#"{"id":7,"m":{"a":1,"b":[true]}}"#
        );
        assert_eq!(json("$.m.['b','a']", doc).unwrap(), r#"{"b":[true],"a":1}"#);
        assert_eq!(json("$.*", "[[1,2],[3]]").unwrap(), "[[1,2],[3]]");
        assert_eq!(json("$[*][0]", "[[1,2],[3]]").unwrap(), "[1,3]");
        assert_eq!(json("$[*].a", r#"[{"a":1},{"b":2}]"#).unwrap(), "[1]");
        assert_eq!(json("$.nope", doc).unwrap_err(), "no key 'nope'");
        assert!(json("$.id.x", doc).unwrap_err().contains("needs an object"));
        assert!(json("$.features[3]", doc)
            .unwrap_err()
            .contains("out of range"));
        assert!(json("$['id','x']", doc).is_err());
    }
}
