//! Text helpers every layer uses: the whitespace the C module trims from bodies, and text
//! made fit for one log line.

use std::borrow::Cow;
use std::fmt::Write;

/// Bytes trimmed from both ends of a body or Content-Type by the blocking functions.
pub fn trim_http_whitespace(text: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = text.iter().position(|b| !is_space(b)).unwrap_or(text.len());
    let end = text
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    &text[start..end]
}

/// `text` fit for one log line: CR, LF, tab and every other control character written as an
/// escape (`\r`, `\n`, `\t`, `\x1b`, `\u{85}`), so that data from scripts or servers cannot
/// start a line of its own or drive a terminal.
pub fn loggable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            // Writing to a String cannot fail.
            c if c.is_control() && c.is_ascii() => _ = write!(out, "\\x{:02x}", u32::from(c)),
            c if c.is_control() => _ = write!(out, "\\u{{{:x}}}", u32::from(c)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_space_tab_cr_lf_at_both_ends_only() {
        assert_eq!(trim_http_whitespace(b" \t\r\na b\r\n \t"), b"a b");
        assert_eq!(trim_http_whitespace(b" \r\n"), b"");
        assert_eq!(trim_http_whitespace(b""), b"");
        assert_eq!(trim_http_whitespace(b"x"), b"x");
    }

    #[test]
    fn escapes_control_characters_for_log_lines() {
        assert!(matches!(
            loggable("plain text"),
            Cow::Borrowed("plain text")
        ));
        assert_eq!(
            loggable("a\r\nFAKE: line\t\u{1b}[31m\u{0}\u{7f}\u{85}é"),
            "a\\r\\nFAKE: line\\t\\x1b[31m\\x00\\x7f\\u{85}é"
        );
    }
}
