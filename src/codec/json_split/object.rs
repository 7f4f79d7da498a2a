//! The checker outside the rows: the top-level object's keys and values
//! other than `"instances"`, checked byte by byte against RFC 8259 with
//! serde_json's wording, so that the splitter accepts exactly the documents
//! serde_json accepts (see the parent module).

use super::*;

impl JsonSplitter {
    // ---- the top-level object ----------------------------------------------

    /// Check the top-level object from `input[*at..]` (outside
    /// `"instances"`), keeping its bytes while it may still be one row.
    pub(super) fn object(&mut self, input: &[u8], at: &mut usize) -> Result<(), Error> {
        let from = *at;
        self.capture_from = *at;
        let result = self.check(input, at);
        if self.keeping {
            self.doc.extend_from_slice(&input[from..*at]);
            if self.doc.len() > self.max_document {
                // Too large to be one row; it may still hold "instances".
                self.doc = Vec::new();
                self.keeping = false;
                self.overflowed = true;
            }
        }
        if let Some((mark, cap)) = &mut self.capture {
            let room = MAX_CAPTURE.saturating_sub(cap.len());
            let end = (*at).min(self.capture_from + room);
            cap.extend_from_slice(&input[self.capture_from.min(end)..end]);
            if self.capture_done {
                let (mark, cap) = (*mark, std::mem::take(cap));
                return Err(not_an_array(mark, &cap));
            }
        }
        result
    }

    /// The checker's loop over `input[*at..]`; returns when the chunk is
    /// used up, the phase changes, or a captured value is complete.
    fn check(&mut self, input: &[u8], at: &mut usize) -> Result<(), Error> {
        let n = input.len();
        while *at < n {
            let i = *at;
            let b = input[i];
            match self.lex {
                Lex::Str { key } => {
                    if self.str_esc == 0 && self.utf8_need == 0 {
                        // Plain bytes, many at a time.
                        let mut j = i;
                        while j < n
                            && matches!(input[j], 0x20..=0x7F)
                            && !matches!(input[j], b'"' | b'\\')
                        {
                            j += 1;
                        }
                        if j > i {
                            self.key_bytes(key, &input[i..j]);
                            *at = j;
                            continue;
                        }
                    }
                    self.string_byte(key, input, i)?;
                    *at = i + 1;
                }
                Lex::Num(state) => match number_byte(state, b) {
                    Ok(Some(next)) => {
                        self.lex = Lex::Num(next);
                        *at = i + 1;
                    }
                    // The number ended before `b`: look at `b` again.
                    Ok(None) => self.value_done(),
                    Err(()) => return Err(self.error_at(input, i, "invalid number")),
                },
                Lex::Literal(rest) => {
                    if b != rest[0] {
                        return Err(self.error_at(input, i, "expected ident"));
                    }
                    *at = i + 1;
                    if rest.len() == 1 {
                        self.value_done();
                    } else {
                        self.lex = Lex::Literal(&rest[1..]);
                    }
                }
                _ if is_ws(b) => *at = i + 1,
                Lex::ValueOrClose if b == b']' => {
                    self.nest.pop(false);
                    *at = i + 1;
                    self.value_done();
                }
                Lex::Value | Lex::ValueOrClose => {
                    match self.pending.take() {
                        Some(TopKey::Instances) => match b {
                            b'[' => {
                                // The rows: stream them.
                                *at = i + 1;
                                self.keeping = false;
                                self.doc = Vec::new();
                                self.rows_in_object = true;
                                self.row_base = self.nest.depth;
                                self.phase = Phase::Rows(RowsAt::First);
                                return Ok(());
                            }
                            // `null` is no "instances" (serde's Option).
                            b'n' => {}
                            b'{' => {
                                return Err(self.error_at(
                                    input,
                                    i,
                                    "invalid type: map, expected a sequence",
                                ))
                            }
                            _ => {
                                // Kept to say what it is, as serde_json would.
                                self.capture = Some((self.mark(input, i), Vec::new()));
                                self.capture_from = i;
                            }
                        },
                        Some(TopKey::Features) if b != b'n' => self.features_seen = true,
                        _ => {}
                    }
                    self.begin_value(input, i)?;
                    *at = i + 1;
                }
                Lex::KeyOrClose | Lex::Key => match b {
                    b'"' => {
                        self.lex = Lex::Str { key: true };
                        self.key.clear();
                        self.key_long = false;
                        *at = i + 1;
                    }
                    b'}' if self.lex == Lex::KeyOrClose => {
                        *at = i + 1;
                        self.close_object();
                    }
                    b'}' if self.nest.depth == 1 => {
                        return Err(self.error_at(input, i, "trailing comma"))
                    }
                    _ => return Err(self.error_at(input, i, "key must be a string")),
                },
                Lex::Colon => {
                    if b != b':' {
                        return Err(self.error_at(input, i, "expected `:`"));
                    }
                    self.lex = Lex::Value;
                    if self.nest.depth == 1 && self.key_kind != TopKey::Other {
                        self.pending = Some(self.key_kind);
                    }
                    *at = i + 1;
                }
                Lex::CommaOrClose => {
                    let object = self.nest.top() == Some(true);
                    match b {
                        b',' => self.lex = if object { Lex::Key } else { Lex::Value },
                        b'}' if object => self.close_object(),
                        b']' if !object => {
                            self.nest.pop(false);
                            self.value_done();
                        }
                        _ if object => return Err(self.error_at(input, i, "expected `,` or `}`")),
                        _ => return Err(self.error_at(input, i, "expected `,` or `]`")),
                    }
                    *at = i + 1;
                }
            }
            if self.phase != Phase::Object || self.capture_done {
                return Ok(());
            }
        }
        Ok(())
    }

    /// `}`: close an object; the top-level one ends the document.
    fn close_object(&mut self) {
        self.nest.pop(true);
        if self.nest.depth == 0 {
            self.phase = Phase::Done;
        } else {
            self.value_done();
        }
    }

    /// A value inside the object is complete.
    fn value_done(&mut self) {
        self.lex = Lex::CommaOrClose;
        if self.capture.is_some() && self.nest.depth == 1 {
            self.capture_done = true;
        }
    }

    /// The first byte of a value, `input[i]`.
    fn begin_value(&mut self, input: &[u8], i: usize) -> Result<(), Error> {
        self.lex = match input[i] {
            b'"' => Lex::Str { key: false },
            b'-' => Lex::Num(Num::Minus),
            b'0' => Lex::Num(Num::Zero),
            b'1'..=b'9' => Lex::Num(Num::Int),
            b't' => Lex::Literal(b"rue"),
            b'f' => Lex::Literal(b"alse"),
            b'n' => Lex::Literal(b"ull"),
            b @ (b'[' | b'{') => {
                if !self.nest.push(b == b'{') {
                    return Err(self.error_at(input, i, "nesting too deep"));
                }
                if b == b'[' {
                    Lex::ValueOrClose
                } else {
                    Lex::KeyOrClose
                }
            }
            _ => return Err(self.error_at(input, i, "expected value")),
        };
        Ok(())
    }

    /// Keep the bytes of a key of the top-level object (enough of them to
    /// compare).
    fn key_bytes(&mut self, key: bool, bytes: &[u8]) {
        if key && self.nest.depth == 1 {
            if self.key.len() + bytes.len() > self.max_record.max(MAX_KEY) {
                self.key_long = true;
            } else {
                self.key.extend_from_slice(bytes);
            }
        }
    }

    /// One byte of a string that is not plain ASCII: a quote, an escape, a
    /// control character or part of a multi-byte character.
    fn string_byte(&mut self, key: bool, input: &[u8], i: usize) -> Result<(), Error> {
        let b = input[i];
        if b != b'"' || self.str_esc != 0 || self.utf8_need != 0 {
            self.key_bytes(key, &input[i..=i]);
        }
        if self.utf8_need > 0 {
            if b < self.utf8_lo || b > self.utf8_hi {
                // The lead byte is on the line of `input[i]`.
                self.sync(input, i);
                let col = self.utf8_lead - self.line_start + 1;
                return Err(doc_error(
                    self.line,
                    col,
                    self.utf8_lead,
                    "not valid UTF-8".into(),
                ));
            }
            self.utf8_need -= 1;
            (self.utf8_lo, self.utf8_hi) = (0x80, 0xBF);
            return Ok(());
        }
        match self.str_esc {
            0 => {}
            1 => {
                self.str_esc = match b {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 0,
                    // Four hex digits follow.
                    b'u' => 5,
                    _ => return Err(self.error_at(input, i, "invalid escape")),
                };
                return Ok(());
            }
            n => {
                if !b.is_ascii_hexdigit() {
                    return Err(self.error_at(input, i, "invalid escape"));
                }
                self.str_esc = if n == 2 { 0 } else { n - 1 };
                return Ok(());
            }
        }
        match b {
            b'"' if key => {
                self.lex = Lex::Colon;
                if self.nest.depth == 1 {
                    self.classify_key(input, i)?;
                }
            }
            b'"' => self.value_done(),
            b'\\' => self.str_esc = 1,
            0x00..=0x1F => {
                return Err(self.error_at(
                    input,
                    i,
                    "control character (\\u0000-\\u001F) found while parsing a string",
                ))
            }
            _ => {
                // The first byte of a UTF-8 sequence (RFC 3629's table):
                // how many follow, and the range of the next one.
                let (need, lo, hi) = match b {
                    0xC2..=0xDF => (1, 0x80, 0xBF),
                    0xE0 => (2, 0xA0, 0xBF),
                    0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
                    0xED => (2, 0x80, 0x9F),
                    0xF0 => (3, 0x90, 0xBF),
                    0xF1..=0xF3 => (3, 0x80, 0xBF),
                    0xF4 => (3, 0x80, 0x8F),
                    _ => return Err(self.error_at(input, i, "not valid UTF-8")),
                };
                (self.utf8_need, self.utf8_lo, self.utf8_hi) = (need, lo, hi);
                self.utf8_lead = self.base + i as u64;
            }
        }
        Ok(())
    }

    /// A key of the top-level object ended at `input[i]`: is it
    /// `instances` or `features`, and is it there twice?
    fn classify_key(&mut self, input: &[u8], i: usize) -> Result<(), Error> {
        let kind = if self.key_long {
            TopKey::Other
        } else if !self.key.contains(&b'\\') {
            top_key(&self.key)
        } else {
            // Escapes: let serde_json decode the key (rare, and small).
            let mut quoted = Vec::with_capacity(self.key.len() + 2);
            quoted.push(b'"');
            quoted.extend_from_slice(&self.key);
            quoted.push(b'"');
            match serde_json::from_slice::<String>(&quoted) {
                Ok(k) => top_key(k.as_bytes()),
                Err(e) => return Err(self.error_at(input, i, strip_location(&e))),
            }
        };
        let count = match kind {
            TopKey::Instances => &mut self.instances_keys,
            TopKey::Features => &mut self.features_keys,
            TopKey::Other => {
                self.key_kind = kind;
                return Ok(());
            }
        };
        *count += 1;
        if *count > 1 {
            let name = if kind == TopKey::Instances {
                "instances"
            } else {
                "features"
            };
            return Err(self.error_at(input, i, format!("duplicate field `{name}`")));
        }
        self.key_kind = kind;
        Ok(())
    }
}

/// The next state of a number after byte `b`: `Ok(None)` if the number
/// ended before `b`, `Err` if `b` makes it invalid.
fn number_byte(state: Num, b: u8) -> Result<Option<Num>, ()> {
    use Num::*;
    let digit = b.is_ascii_digit();
    let next = match state {
        Minus if b == b'0' => Zero,
        Minus if digit => Int,
        // One leading zero only.
        Zero if digit => return Err(()),
        Int if digit => Int,
        Zero | Int if b == b'.' => Dot,
        Zero | Int | Frac if b == b'e' || b == b'E' => Exp,
        Dot | Frac if digit => Frac,
        Exp if b == b'+' || b == b'-' => ExpSign,
        Exp | ExpSign | ExpDigits if digit => ExpDigits,
        Minus | Dot | Exp | ExpSign => return Err(()),
        Zero | Int | Frac | ExpDigits => return Ok(None),
    };
    Ok(Some(next))
}

fn top_key(key: &[u8]) -> TopKey {
    match key {
        b"instances" => TopKey::Instances,
        b"features" => TopKey::Features,
        _ => TopKey::Other,
    }
}
