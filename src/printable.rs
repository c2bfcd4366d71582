//! Text from outside (request paths, headers, a remote's messages and ref names) made safe to
//! show on one line: control characters, line and paragraph separators and bidirectional
//! overrides become visible escapes (`\n`, `\r`, `\t`, `\u{1b}`), so such text can never start
//! a log line of its own, move a terminal's cursor or reorder what a reader sees. Pure.

use std::borrow::Cow;
use std::fmt::{self, Write};

/// Whether `c` must not reach a log line or a terminal as it is.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character escaped; borrowed when there is none (the common case).
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    // Writing to a String cannot fail.
    let _ = write_escaped(&mut out, text);
    Cow::Owned(out)
}

/// Writes `text` to `out` with every unsafe character escaped, without allocating.
pub fn write_escaped(out: &mut impl Write, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some(i) = rest.find(unsafe_char) {
        out.write_str(&rest[..i])?;
        let c = rest[i..].chars().next().unwrap_or_default();
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c => write!(out, "\\u{{{:x}}}", u32::from(c))?,
        }
        rest = &rest[i + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// Bytes from outside (a remote's `ERR` line, a pkt-line) as escaped text: invalid UTF-8 is
/// replaced, then [`escape`]d.
pub fn escape_bytes(bytes: &[u8]) -> String {
    escape(&String::from_utf8_lossy(bytes)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_and_unchanged() {
        assert!(matches!(escape("refs/heads/main é ü"), Cow::Borrowed(_)));
    }

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(
            escape("x\nINFO sync result=\"ok\"\r\t\u{1b}[2J\u{7f}\u{85}"),
            "x\\nINFO sync result=\"ok\"\\r\\t\\u{1b}[2J\\u{7f}\\u{85}"
        );
        assert_eq!(
            escape("a\u{2028}b\u{202e}c\u{2066}"),
            "a\\u{2028}b\\u{202e}c\\u{2066}"
        );
        assert_eq!(escape_bytes(b"ERR no\n\xff"), "ERR no\\n\u{fffd}");
    }

    #[test]
    fn the_result_never_holds_a_line_break() {
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            let s = format!("a{c}b");
            let e = escape(&s);
            assert!(
                !e.contains(['\n', '\r', '\u{2028}', '\u{2029}', '\u{85}']),
                "{c:?}"
            );
        }
    }
}
