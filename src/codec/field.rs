//! Turning one field's bytes into a finite `f64`, with a precise error when
//! it is not one. Shared by the CSV and JSON decoders.

use crate::error::{snippet, Error, ErrorKind, Position};

/// Parse a field (surrounding ASCII whitespace allowed) as a finite number.
///
/// `field` is the 1-based field number used in the error message.
#[inline]
pub(crate) fn parse_field(bytes: &[u8], pos: Position, field: usize) -> Result<f64, Error> {
    let trimmed = bytes.trim_ascii();
    match fast_float2::parse::<f64, _>(trimmed) {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(field_error(bytes, pos, field)),
    }
}

/// Say why `bytes` is not a finite number. Cold: only bad input gets here.
#[cold]
#[inline(never)]
pub(crate) fn field_error(bytes: &[u8], pos: Position, field: usize) -> Error {
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return Error::new(ErrorKind::EmptyField { pos, field });
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Error::new(ErrorKind::InvalidUtf8 {
            pos,
            field,
            offset: e.valid_up_to(),
        });
    }
    let text = snippet(trimmed);
    if fast_float2::parse::<f64, _>(trimmed).is_ok() {
        // It parsed, so it was NaN, an infinity or an overflow.
        Error::new(ErrorKind::NonFinite { pos, field, text })
    } else {
        Error::new(ErrorKind::NotANumber { pos, field, text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[u8]) -> Result<f64, String> {
        parse_field(s, Position::default(), 1).map_err(|e| e.code().to_string())
    }

    #[test]
    fn numbers_parse_with_whitespace() {
        assert_eq!(p(b"1.5"), Ok(1.5));
        assert_eq!(p(b" -2e3\r"), Ok(-2000.0));
        assert_eq!(p(b"+7"), Ok(7.0));
        assert_eq!(p(b".5"), Ok(0.5));
    }

    #[test]
    fn bad_fields_say_why() {
        assert_eq!(p(b""), Err("empty_field".into()));
        assert_eq!(p(b"  "), Err("empty_field".into()));
        assert_eq!(p(b"abc"), Err("not_a_number".into()));
        assert_eq!(p(b"1.5x"), Err("not_a_number".into()));
        assert_eq!(p(b"1,5"), Err("not_a_number".into()));
        assert_eq!(p(b"NaN"), Err("non_finite".into()));
        assert_eq!(p(b"-inf"), Err("non_finite".into()));
        assert_eq!(p(b"1e999"), Err("non_finite".into()));
        assert_eq!(p(b"\xff1"), Err("invalid_utf8".into()));
        assert_eq!(p(b"\xc0\xaf"), Err("invalid_utf8".into()));
    }
}
