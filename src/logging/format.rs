//! How a log line is written, so that nothing from outside can forge one: every field value and
//! the message pass through [`crate::printable`] (control characters, line separators and bidi
//! overrides become visible escapes) in the text format and in JSON, whatever macro sigil
//! (`%`, `?`, plain) logged them. Request paths, headers, a remote's messages, ref names and
//! error texts thus always stay inside their own line and field.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::printable;

/// A `fmt::Write` that escapes everything written through it.
struct Escaping<'w>(&'w mut dyn Write);

impl Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        printable::write_escaped(&mut self.0, s)
    }
}

/// Fields bridged from the `log` crate carry their metadata as `log.*` fields; the line already
/// shows it.
fn is_log_metadata(field: &Field) -> bool {
    field.name().starts_with("log.")
}

// --- Text --------------------------------------------------------------------------------------

/// The text format's fields: the message as it is, then `key=value`, with a value that holds a
/// space, `=`, a quote, a backslash or a control character quoted (`key="a b"`, as `?` values
/// already are), so text from outside can neither start a line nor pose as another field.
/// Everything is escaped.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'a> MakeVisitor<Writer<'a>> for EscapedFields {
    type Visitor = TextVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> TextVisitor<'a> {
        TextVisitor {
            writer,
            empty: true,
            result: Ok(()),
        }
    }
}

/// Writes one event's (or span's) fields; see [`EscapedFields`].
pub struct TextVisitor<'a> {
    writer: Writer<'a>,
    empty: bool,
    result: fmt::Result,
}

impl TextVisitor<'_> {
    fn write(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() || is_log_metadata(field) {
            return;
        }
        if !self.empty {
            self.result = self.writer.write_char(' ');
        }
        self.empty = false;
        let name = field.name();
        self.result = self.result.and_then(|()| {
            if name == "message" {
                return Escaping(&mut self.writer).write_fmt(format_args!("{value:?}"));
            }
            let name = name.strip_prefix("r#").unwrap_or(name);
            write!(self.writer, "{name}=")?;
            let text = format!("{value:?}");
            if !is_quoted(&text) && needs_quotes(&text) {
                Escaping(&mut self.writer).write_fmt(format_args!("{text:?}"))
            } else {
                Escaping(&mut self.writer).write_str(&text)
            }
        });
    }
}

/// Whether `text` is one well-formed quoted string (what `?` gives for a string): a quote at
/// each end and every quote between them escaped.
fn is_quoted(text: &str) -> bool {
    let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return false;
    };
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.next().is_none() => return false,
            '"' => return false,
            _ => {}
        }
    }
    true
}

fn needs_quotes(text: &str) -> bool {
    text.is_empty()
        || text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\'))
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, &format_args!("{value}"));
        } else {
            self.write(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.write(field, &format_args!("{}", ErrorChain(value)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, value);
    }
}

impl VisitOutput<fmt::Result> for TextVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for TextVisitor<'_> {
    fn writer(&mut self) -> &mut dyn Write {
        &mut self.writer
    }
}

/// An error and its sources, `outer: inner: root`.
struct ErrorChain<'e>(&'e (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

// --- JSON --------------------------------------------------------------------------------------

/// One JSON object per line: `timestamp` (unless off), `level`, `message` and the event's
/// fields at the top level (the shape of tracing's flattened JSON). Strings are escaped as the
/// text format escapes them and then JSON-encoded, so a reader that decodes a value and prints
/// it still gets one line.
#[derive(Debug, Clone, Copy)]
pub struct JsonLines {
    pub timestamps: bool,
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::with_capacity(256);
        line.push('{');
        if self.timestamps {
            let mut time = String::new();
            SystemTime.format_time(&mut Writer::new(&mut time))?;
            line.push_str("\"timestamp\":");
            push_json_str(&mut line, &time);
            line.push(',');
        }
        line.push_str("\"level\":");
        push_json_str(&mut line, event.metadata().level().as_str());
        event.record(&mut JsonVisitor { line: &mut line });
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// Appends `,"name":value` per field to the line.
struct JsonVisitor<'l> {
    line: &'l mut String,
}

impl JsonVisitor<'_> {
    fn key(&mut self, field: &Field) -> bool {
        if is_log_metadata(field) {
            return false;
        }
        self.line.push(',');
        let name = field.name();
        push_json_str(self.line, name.strip_prefix("r#").unwrap_or(name));
        self.line.push(':');
        true
    }

    fn string(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.key(field) {
            let mut text = String::new();
            // Writing to a String cannot fail.
            let _ = Escaping(&mut text).write_fmt(value);
            push_json_str(self.line, &text);
        }
    }

    fn raw(&mut self, field: &Field, value: impl fmt::Display) {
        if self.key(field) {
            let _ = write!(self.line, "{value}");
        }
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.raw(field, value);
        } else {
            self.string(field, format_args!("{value}"));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field, format_args!("{value}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.string(field, format_args!("{}", ErrorChain(value)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.string(field, format_args!("{value:?}"));
    }
}

/// `text` as a JSON string literal (serde_json escapes quotes, backslashes and C0 controls).
fn push_json_str(line: &mut String, text: &str) {
    match serde_json::to_string(text) {
        Ok(s) => line.push_str(&s),
        Err(_) => line.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Captures what a subscriber writes.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const HOSTILE: &str = "x\nINFO sync repo=site result=\"ok\"\r\u{1b}[2J\u{2028}y";

    fn log_all() {
        let path = HOSTILE.to_string();
        let err = std::io::Error::other(HOSTILE);
        tracing::info!(
            plain = HOSTILE,
            display = %path,
            debug = ?path,
            error = &err as &(dyn std::error::Error + 'static),
            n = 3u64,
            ok = true,
            "refused {path}"
        );
    }

    fn text() -> String {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .fmt_fields(EscapedFields)
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::with_default(sub, log_all);
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn json(timestamps: bool) -> String {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .event_format(JsonLines { timestamps })
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::with_default(sub, log_all);
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn assert_one_clean_line(out: &str) {
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        assert!(out.ends_with('\n'), "{out:?}");
        assert!(!out.contains(['\r', '\u{1b}', '\u{2028}']), "{out:?}");
    }

    #[test]
    fn text_fields_and_the_message_are_escaped_whatever_the_sigil() {
        let out = text();
        assert_one_clean_line(&out);
        assert!(out.starts_with(" INFO refused x\\nINFO sync"), "{out:?}");
        // Quoted whatever the sigil, so the fake `repo=site` is no field of this line.
        let quoted = r#"="x\nINFO sync repo=site result=\"ok\"\r\u{1b}[2J\u{2028}y""#;
        for key in ["plain", "display", "debug", "error"] {
            assert!(out.contains(&format!(" {key}{quoted}")), "{key}: {out:?}");
        }
        assert!(out.contains(" n=3 ok=true"), "{out:?}");
    }

    #[test]
    fn only_values_that_need_it_are_quoted() {
        assert!(is_quoted(r#""a \" b""#));
        assert!(!is_quoted(r#""a" b="c""#));
        assert!(!is_quoted(r#""a\""#));
        assert!(!is_quoted("\""));
        assert!(!needs_quotes("1.5s"));
        assert!(!needs_quotes("refs/heads/main"));
        for v in ["", "a b", "a=b", "a\"", "a\\n", "a\tb"] {
            assert!(needs_quotes(v), "{v:?}");
        }
    }

    #[test]
    fn json_values_are_escaped_before_they_are_encoded() {
        for timestamps in [true, false] {
            let out = json(timestamps);
            assert_one_clean_line(&out);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["level"], "INFO");
            assert_eq!(v.get("timestamp").is_some(), timestamps, "{v}");
            assert_eq!(v["n"], 3);
            assert_eq!(v["ok"], true);
            // Decoded, every value is still one line of visible text.
            let escaped = printable::escape(HOSTILE).into_owned();
            assert_eq!(v["plain"], escaped.as_str());
            assert_eq!(v["display"], escaped.as_str());
            assert_eq!(v["error"], escaped.as_str());
            assert_eq!(v["message"], format!("refused {escaped}"));
            for value in v.as_object().unwrap().values() {
                let s = value.to_string();
                assert!(!s.contains(['\n', '\r', '\u{1b}', '\u{2028}']), "{s}");
            }
        }
    }
}
