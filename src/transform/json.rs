//! JSON values for DataProcessing that keep key order and the original text
//! of everything they do not open.
//!
//! Joining puts `SageMakerOutput` *after* the record's own keys
//! (`{"key":1,"SageMakerOutput":{"label":1}}` in AWS's example), and a
//! filter must not reorder keys or rewrite numbers (`1.0` stays `1.0`, not
//! `1`). `serde_json::Value` sorts keys unless the crate-wide
//! `preserve_order` feature is on, which would change every other user of
//! `Value` in the crate; so a value here is opened one level at a time into
//! ordered entries of [`RawValue`]s, borrowed from the record's text, and
//! written back compactly (whitespace outside strings removed, so a
//! pretty-printed document still gives one output line).

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON value, opened only as deep as a path needed.
#[derive(Clone, Debug)]
pub enum Json<'a> {
    /// Untouched text of a value (a scalar, or a container nobody opened).
    Raw(&'a RawValue),
    /// An array we built or opened.
    Array(Vec<Json<'a>>),
    /// An object we built or opened, keys in order.
    Object(Vec<(String, Json<'a>)>),
}

/// Ordered `(key, raw value)` entries of an object.
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Entries<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Entries<'a>, M::Error> {
                let mut v = Vec::new();
                while let Some((k, raw)) = map.next_entry::<String, &'de RawValue>()? {
                    v.push((k, raw));
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<'a> Json<'a> {
    /// Parse one JSON value (surrounding whitespace allowed).
    pub fn parse(text: &'a str) -> Result<Json<'a>, serde_json::Error> {
        serde_json::from_str::<&'a RawValue>(text).map(Json::Raw)
    }

    /// The first significant byte of a raw value.
    fn first(raw: &RawValue) -> u8 {
        raw.get().trim_start().bytes().next().unwrap_or(b' ')
    }

    /// Whether this is an object.
    pub fn is_object(&self) -> bool {
        match self {
            Json::Raw(r) => Json::first(r) == b'{',
            Json::Object(_) => true,
            Json::Array(_) => false,
        }
    }

    /// The entries, if this is an object (opening it one level).
    pub fn into_object(self) -> Option<Vec<(String, Json<'a>)>> {
        match self {
            Json::Object(v) => Some(v),
            Json::Raw(r) if Json::first(r) == b'{' => {
                // Valid JSON already (it parsed as a RawValue), so this
                // cannot fail; `ok()` keeps a panic out of the data path.
                let e: Entries<'a> = serde_json::from_str(r.get()).ok()?;
                Some(e.0.into_iter().map(|(k, v)| (k, Json::Raw(v))).collect())
            }
            _ => None,
        }
    }

    /// The elements, if this is an array (opening it one level).
    pub fn into_array(self) -> Option<Vec<Json<'a>>> {
        match self {
            Json::Array(v) => Some(v),
            Json::Raw(r) if Json::first(r) == b'[' => {
                let v: Vec<&'a RawValue> = serde_json::from_str(r.get()).ok()?;
                Some(v.into_iter().map(Json::Raw).collect())
            }
            _ => None,
        }
    }

    /// A short name of the value's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
            Json::Raw(r) => match Json::first(r) {
                b'{' => "an object",
                b'[' => "an array",
                b'"' => "a string",
                b'n' => "null",
                b't' | b'f' => "a boolean",
                _ => "a number",
            },
        }
    }

    /// Append the compact text of the value.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Json::Raw(r) => minify(r.get(), out),
            Json::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Json::Object(entries) => {
                out.push(b'{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(k, out);
                    out.push(b':');
                    v.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// Append `s` as a JSON string.
pub fn write_string(s: &str, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail, and a &str always serialises.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Append valid JSON `text` without the whitespace outside strings.
fn minify(text: &str, out: &mut Vec<u8>) {
    let mut in_string = false;
    let mut escaped = false;
    for &b in text.as_bytes() {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(j: &Json) -> String {
        let mut v = Vec::new();
        j.write(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn objects_keep_order_and_number_text() {
        let j = Json::parse(r#" { "z": 1.0, "a" : [1e5, "x y"], "m": {"k": null} } "#).unwrap();
        assert_eq!(text(&j), r#"{"z":1.0,"a":[1e5,"x y"],"m":{"k":null}}"#);
        let entries = j.into_object().unwrap();
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        let arr = entries[1].1.clone().into_array().unwrap();
        assert_eq!(arr.len(), 2);
        assert_eq!(arr[1].kind(), "a string");
    }

    #[test]
    fn strings_keep_their_spaces_and_escapes() {
        let j = Json::parse("[\"a \\\" b\\\\\", \"\\n\"]").unwrap();
        assert_eq!(text(&j), "[\"a \\\" b\\\\\",\"\\n\"]");
    }

    #[test]
    fn built_values_and_escaped_keys() {
        let j = Json::Object(vec![(
            "a\"b".into(),
            Json::Array(vec![Json::parse("1").unwrap()]),
        )]);
        assert_eq!(text(&j), r#"{"a\"b":[1]}"#);
        assert!(Json::parse("{bad").is_err());
        assert!(Json::parse("1").unwrap().into_object().is_none());
    }
}
