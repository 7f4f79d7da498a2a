//! The text log line: tracing-subscriber's default format, byte for byte,
//! built in a per-thread buffer with a timestamp formatted once a second
//! (the request line is on `mmp serve`'s hottest path; see issue 19).

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultFields, DefaultVisitor, Format, Full, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// tracing-subscriber's default timestamp (`SystemTime`: RFC 3339 in UTC with
/// microseconds, `2026-12-02T02:49:23.123456Z`), byte for byte, but with
/// the part up to the second formatted once a second per thread rather than
/// for every line: formatting it through `core::fmt` was 2.4k of the 10.4k
/// instructions of `mmp serve`'s request line (callgrind, 1-row CSV POSTs).
/// A time it does not cover (before 1970, after 9999) is written by
/// `SystemTime` itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct CachedTime;

/// `YYYY-MM-DDTHH:MM:SS.`: what a timestamp starts with.
const SECOND_LEN: usize = 20;

thread_local! {
    /// The second this thread last wrote a timestamp in, and its text.
    static SECOND: Cell<(u64, [u8; SECOND_LEN])> = const { Cell::new((u64::MAX, [0; SECOND_LEN])) };
}

/// The text of the second `secs` after the epoch, up to its `.`.
fn second_text(secs: u64) -> Option<[u8; SECOND_LEN]> {
    use chrono::{Datelike, Timelike};
    let t = chrono::DateTime::from_timestamp(i64::try_from(secs).ok()?, 0)?;
    if t.year() > 9999 {
        return None;
    }
    let mut text = [0u8; SECOND_LEN];
    let mut out = &mut text[..];
    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
    .ok()?;
    out.is_empty().then_some(text)
}

/// The timestamp of `t` into `buf`, as `SystemTime` writes it (`None`: a
/// time outside the years 1970 to 9999).
fn timestamp(t: SystemTime, buf: &mut [u8; SECOND_LEN + 7]) -> Option<&str> {
    let since = t.duration_since(UNIX_EPOCH).ok()?;
    let secs = since.as_secs();
    let (cached, text) = SECOND.get();
    let text = if cached == secs {
        text
    } else {
        let text = second_text(secs)?;
        SECOND.set((secs, text));
        text
    };
    buf[..SECOND_LEN].copy_from_slice(&text);
    let mut micros = since.subsec_micros();
    for digit in buf[SECOND_LEN..SECOND_LEN + 6].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    buf[SECOND_LEN + 6] = b'Z';
    std::str::from_utf8(buf).ok()
}

impl FormatTime for CachedTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = SystemTime::now();
        let mut buf = [0u8; SECOND_LEN + 7];
        match timestamp(now, &mut buf) {
            Some(text) => w.write_str(text),
            None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

thread_local! {
    /// The text line being formatted on this thread, reused from line to line.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(LINE_CAPACITY));
}

/// Room for a request line; a longer line grows the buffer, which is
/// given back once it passes [`LINE_KEPT`].
const LINE_CAPACITY: usize = 1024;
const LINE_KEPT: usize = 16 * 1024;

/// Run `f` on this thread's empty line buffer (`None`: already in use, by an
/// event logged while formatting another).
fn with_line<R>(f: impl FnOnce(&mut String) -> R) -> Option<R> {
    LINE.with(|cell| {
        let mut line = cell.try_borrow_mut().ok()?;
        line.clear();
        let r = f(&mut line);
        if line.capacity() > LINE_KEPT {
            *line = String::with_capacity(LINE_CAPACITY);
        }
        Some(r)
    })
}

/// The text format: tracing-subscriber's default `Full` format with
/// [`PlainFields`], byte for byte, built in a per-thread buffer and handed
/// to the writer in one call. Each `Writer` call is two dynamic calls and
/// the request line is some 50 pieces, and the target went through
/// nu-ansi-term's painting even without colour: with [`CachedTime`], the
/// line went from 10.4k to 4.2k instructions (callgrind, `mmp serve` under
/// 1-row CSV POSTs). An event inside a span, from the `log`
/// crate, on a terminal (colour), or logged while another is formatted, is
/// written by `Full` itself.
pub struct PlainFormat<T> {
    timer: T,
    full: Format<Full, T>,
}

impl<T: FormatTime + Clone> PlainFormat<T> {
    /// The format, with timestamps from `timer`.
    pub fn new(timer: T) -> PlainFormat<T> {
        PlainFormat {
            full: Format::default().with_timer(timer.clone()),
            timer,
        }
    }
}

/// What `Full` writes for a level (tracing-subscriber's `FmtLevel`).
fn level_text(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

impl<S, T> FormatEvent<S, PlainFields> for PlainFormat<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, PlainFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        if writer.has_ansi_escapes()
            || !writer.sanitizes_ansi_escapes()
            || meta.target() == "log"
            || ctx.event_scope().is_some()
        {
            return self.full.format_event(ctx, writer, event);
        }
        let written = with_line(|line| {
            if self
                .timer
                .format_time(&mut Writer::new(&mut *line))
                .is_err()
            {
                line.push_str("<unknown time>");
            }
            line.push(' ');
            line.push_str(level_text(meta.level()));
            line.push(' ');
            line.push_str(meta.target());
            line.push_str(": ");
            let mut v = PlainVisitor::new(line);
            event.record(&mut v);
            v.result?;
            line.push('\n');
            writer.write_str(line)
        });
        match written {
            Some(r) => r,
            None => self.full.format_event(ctx, writer, event),
        }
    }
}

/// The text format's fields, written as tracing-subscriber's `DefaultFields`
/// writes them, byte for byte, but without its `core::fmt` round trip for
/// the common values: an integer (itoa), a float (ryu, in the range where
/// its digits are `{:?}`'s), a string of printable ASCII (written as is,
/// in quotes as `{:?}` would), and a message whose text is printable ASCII.
/// Anything else (and every field on a terminal, where names are styled) is
/// handed to a `DefaultVisitor`. The fields are gathered in the per-thread
/// line buffer and written in one call.
///
/// Why ours: the per-request line has 15 fields, and callgrind on `mmp
/// serve` under 1-row CSV POSTs put 37% of all instructions (20.6k of 55.9k
/// per request) in formatting it, most of it `DefaultVisitor` painting each
/// field name through nu-ansi-term and `Debug` for each value.
pub struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        if writer.has_ansi_escapes() || !writer.sanitizes_ansi_escapes() {
            return DefaultFields::new().format_fields(writer, fields);
        }
        let written = with_line(|line| {
            let mut v = PlainVisitor::new(line);
            fields.record(&mut v);
            v.result?;
            writer.write_str(line)
        });
        written.unwrap_or_else(|| DefaultFields::new().format_fields(writer, fields))
    }
}

struct PlainVisitor<'a> {
    line: &'a mut String,
    /// No field written yet (no separating space before the next).
    first: bool,
    result: std::fmt::Result,
}

impl<'a> PlainVisitor<'a> {
    fn new(line: &'a mut String) -> PlainVisitor<'a> {
        PlainVisitor {
            line,
            first: true,
            result: Ok(()),
        }
    }

    /// A field name `DefaultVisitor` writes plainly as `name=value`.
    fn plain(field: &Field) -> bool {
        match field.name().as_bytes() {
            [b'r', b'#', ..] | [b'l', b'o', b'g', b'.', ..] => false,
            name => name != b"message",
        }
    }

    /// Hand one field to tracing-subscriber's own visitor.
    fn delegate(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.result.is_err() {
            return;
        }
        let mut v = DefaultVisitor::new(Writer::new(&mut *self.line), self.first);
        record(&mut v);
        self.result = v.finish();
        self.first = false;
    }

    /// Write `parts` after a separating space (but for the first field).
    fn put(&mut self, parts: &[&str]) {
        if self.result.is_err() {
            return;
        }
        if !self.first {
            self.line.push(' ');
        }
        self.first = false;
        for p in parts {
            self.line.push_str(p);
        }
    }
}

/// Printable ASCII: written as is by `Debug` for `str` (but for `"` and
/// `\\`) and by tracing-subscriber's ANSI sanitiser.
fn printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Printable ASCII but for `"` and `\\`: what `Debug` for `str` writes as is.
fn printable_unquoted(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// Where `ryu` writes the digits `{:?}` writes for an `f64`: both print the
/// shortest round-trip digits, and `{:?}` switches to an exponent outside
/// this range (std's `float_to_general_debug`).
fn ryu_is_debug(v: f64) -> bool {
    let a = v.abs();
    a == 0.0 || (1e-4..1e16).contains(&a)
}
/// Room for [`thousandths`]: twelve digits, a point, three digits.
const THOUSANDTHS_LEN: usize = 16;

/// What `{:?}` writes for `v` when it is a whole number of thousandths from
/// 0.001 to below 10^12 (a duration in milliseconds to the microsecond, as
/// [`super::millis`] gives it), without `ryu`: its integer part, a point and
/// the thousandths without trailing zeros (at least one digit). `{:?}` writes
/// the shortest decimal that reads back as `v`; `v` is the double nearest to
/// k/1000, and distinct decimals of at most 15 significant digits are
/// distinct doubles, so no other decimal as short reads back as `v`. ryu's
/// shortest digits were 1.1k of a 1-row request's 27k instructions.
fn thousandths(v: f64, buf: &mut [u8; THOUSANDTHS_LEN]) -> Option<&str> {
    if !(1e-3..1e12).contains(&v) {
        return None;
    }
    let k = (v * 1000.0).round();
    if k / 1000.0 != v {
        return None;
    }
    let k = k as u64;
    let mut digits = itoa::Buffer::new();
    let int = digits.format(k / 1000).as_bytes();
    let (frac, mut len) = (k % 1000, int.len());
    buf[..len].copy_from_slice(int);
    buf[len] = b'.';
    let d = [frac / 100, frac / 10 % 10, frac % 10];
    let keep = d.iter().rposition(|&x| x != 0).map_or(1, |i| i + 1);
    for (slot, x) in buf[len + 1..].iter_mut().zip(&d[..keep]) {
        *slot = b'0' + *x as u8;
    }
    len += 1 + keep;
    std::str::from_utf8(&buf[..len]).ok()
}

impl Visit for PlainVisitor<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if Self::plain(field) {
            self.put(&[field.name(), "=", itoa::Buffer::new().format(value)]);
        } else {
            self.delegate(|v| v.record_u64(field, value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if Self::plain(field) {
            self.put(&[field.name(), "=", itoa::Buffer::new().format(value)]);
        } else {
            self.delegate(|v| v.record_i64(field, value));
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let mut text = [0u8; THOUSANDTHS_LEN];
        if let (true, Some(s)) = (Self::plain(field), thousandths(value, &mut text)) {
            self.put(&[field.name(), "=", s]);
        } else if Self::plain(field) && ryu_is_debug(value) {
            let mut buf = ryu::Buffer::new();
            self.put(&[field.name(), "=", buf.format_finite(value)]);
        } else {
            self.delegate(|v| v.record_f64(field, value));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" && printable(value) {
            // The message is written as is, without its name.
            self.put(&[value]);
        } else if Self::plain(field) && printable_unquoted(value) {
            self.put(&[field.name(), "=\"", value, "\""]);
        } else {
            self.delegate(|v| v.record_str(field, value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && self.result.is_ok() {
            // `DefaultVisitor` writes the message's `{:?}` through its ANSI
            // sanitiser, which leaves printable ASCII as it is.
            let mark = self.line.len();
            if !self.first {
                self.line.push(' ');
            }
            if write!(self.line, "{value:?}").is_ok() && printable(&self.line[mark..]) {
                self.first = false;
                return;
            }
            self.line.truncate(mark);
        }
        self.delegate(|v| v.record_debug(field, value));
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// A writer into a shared buffer, for a subscriber in a test (also
    /// `super::tests`'s).
    #[derive(Clone, Default)]
    pub(crate) struct Captured(pub(crate) std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Events covering every branch of [`PlainVisitor`]: plain values, and
    /// the ones it hands over (quotes, escapes, control characters, floats
    /// `{:?}` writes with an exponent, Display and Debug values, raw names).
    fn events() {
        let e = std::io::Error::other("disk on fire");
        for (v, s) in [
            (0.0, "POST"),
            (-0.0, "a \"quoted\" value"),
            (1e-4, "back\\slash"),
            (0.451_36, "tab\there"),
            (107.067_182, "line\nbreak"),
            (9.999_999_999_999_998e15, "esc\u{1b}[31m"),
            (1e16, "caf\u{e9}"),
            (9.9e-5, "\u{85}c1"),
            (f64::NAN, ""),
            (f64::INFINITY, "it's"),
            (-1.5e300, "~ ok {}"),
        ] {
            tracing::info!(
                target: "mmp::request",
                method = "POST", path = "/invocations", status = 200u16,
                records = 1u64, placeholders = 0u64, delta = -3i64,
                duration_ms = v, request_id = s, flag = true,
                model = Some(s), target_model = None::<&str>,
                "request"
            );
            tracing::warn!(error = %e, kind = ?s, r#type = s, "request failed: {s}");
            tracing::info!("{s}");
        }
        tracing::info!(u = u64::MAX, i = i64::MIN, big = u128::MAX, "extremes");
    }

    fn text(fields: impl for<'w> FormatFields<'w> + Send + Sync + 'static) -> String {
        let out = Captured::default();
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .without_time()
            .with_ansi(false)
            .fmt_fields(fields)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, events);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// A clock stopped at one instant, so two formats' lines can be compared.
    #[derive(Clone)]
    struct Stopped;

    impl FormatTime for Stopped {
        fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
            w.write_str("2026-12-02T02:49:23.004200Z")
        }
    }

    /// A value whose `Debug` logs an event of its own as it is formatted
    /// (tracing drops such an event: its dispatcher is not reentered).
    struct Chatty;

    impl std::fmt::Debug for Chatty {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            tracing::info!(target: "mmp::request", inner = 1u64, "logged while formatting");
            f.write_str("chatty")
        }
    }

    /// The events, then events inside spans, and events with a value that
    /// logs while it is formatted.
    fn events_in_spans() {
        events();
        let outer = tracing::info_span!("outer", id = 7u64, name = "a b");
        let _outer = outer.enter();
        tracing::info!(target: "mmp::request", status = 200u16, "in a span");
        let inner = tracing::info_span!("inner");
        inner.in_scope(|| tracing::warn!(records = 3u64, "in two spans"));
        drop(_outer);
        tracing::info!(target: "mmp::request", value = ?Chatty, "outer line");
        tracing::info!(target: "mmp::request", "{:?}", Chatty);
    }

    /// The lines of `events_in_spans` under the default text format and
    /// fields, or under ours (`PlainFormat` with `PlainFields`).
    fn lines(ours: bool) -> String {
        let out = Captured::default();
        let sink = out.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .with_timer(Stopped);
        if ours {
            let subscriber = builder
                .fmt_fields(PlainFields)
                .event_format(PlainFormat::new(Stopped))
                .finish();
            tracing::subscriber::with_default(subscriber, events_in_spans);
        } else {
            tracing::subscriber::with_default(builder.finish(), events_in_spans);
        }
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn plain_format_writes_what_the_full_format_writes() {
        let ours = lines(true);
        let theirs = lines(false);
        // 34 events and their two extra lines, 2 in spans, 2 with `Chatty`.
        assert_eq!(ours.lines().count(), 36 + 2 + 2, "{ours}");
        assert!(ours.starts_with("2026-12-02T02:49:23.004200Z  INFO mmp::request: "));
        assert!(ours.contains(
            " WARN outer{id=7 name=\"a b\"}:inner: mmp::logging::format::tests: in two spans records=3\n"
        ));
        assert!(ours.ends_with(" INFO mmp::request: chatty\n"));
        for (a, b) in ours.lines().zip(theirs.lines()) {
            assert_eq!(a, b);
        }
        assert_eq!(ours, theirs);
    }

    proptest::proptest! {
        /// Thousandths are written as `{:?}` writes them, whatever the value:
        /// whole thousandths (durations), and any other double.
        #[test]
        fn thousandths_write_what_debug_writes(k in 0u64..1_000_000_000_000_000, bits: u64) {
            let mut buf = [0u8; THOUSANDTHS_LEN];
            for v in [k as f64 / 1000.0, f64::from_bits(bits), (k % 100_000) as f64 / 1000.0] {
                if let Some(s) = thousandths(v, &mut buf) {
                    proptest::prop_assert_eq!(s, format!("{v:?}"));
                }
            }
            let v = (k % 1_000_000_000_000) as f64 / 1000.0;
            if v >= 1e-3 {
                let debug = format!("{v:?}");
                proptest::prop_assert_eq!(thousandths(v, &mut buf), Some(debug.as_str()));
            }
        }
    }

    #[test]
    fn cached_timestamps_are_rfc_3339_utc_with_microseconds() {
        // The references are `date -u -d @SECONDS +%FT%T`.
        for (secs, nanos, text) in [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_868_799, 999_999_999, "2000-02-29T23:59:59.999999Z"),
            (951_868_800, 1_000, "2000-03-01T00:00:00.000001Z"),
            (1_709_251_199, 123_456_789, "2024-02-29T23:59:59.123456Z"),
            (1_796_179_763, 4_200_000, "2026-12-02T02:49:23.004200Z"),
            (253_402_300_799, 500_000, "9999-12-31T23:59:59.000500Z"),
        ] {
            let t = UNIX_EPOCH + Duration::new(secs, nanos);
            let mut buf = [0u8; SECOND_LEN + 7];
            assert_eq!(timestamp(t, &mut buf), Some(text), "{secs}");
            // Again, from the cached second.
            let mut buf = [0u8; SECOND_LEN + 7];
            assert_eq!(timestamp(t, &mut buf), Some(text), "{secs}");
        }
        // Outside the years it covers, SystemTime writes it.
        let mut buf = [0u8; SECOND_LEN + 7];
        assert_eq!(
            timestamp(UNIX_EPOCH - Duration::from_secs(1), &mut buf),
            None
        );
        let mut buf = [0u8; SECOND_LEN + 7];
        let later = UNIX_EPOCH + Duration::from_secs(253_402_300_800);
        assert_eq!(timestamp(later, &mut buf), None);
    }

    #[test]
    fn plain_fields_write_what_default_fields_write() {
        let ours = text(PlainFields);
        let theirs = text(DefaultFields::new());
        // 34 events; the messages with a line break in them add two lines.
        assert_eq!(ours.lines().count(), 36);
        for (a, b) in ours.lines().zip(theirs.lines()) {
            assert_eq!(a, b);
        }
        assert_eq!(ours, theirs);
    }
}
