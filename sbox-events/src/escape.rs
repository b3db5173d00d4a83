//! Text from events, errors and handlers made safe for logs and terminals.
//!
//! Error messages, handler names, sources and event fields come from data
//! the application does not control. Written raw, a newline in them forges a
//! log line of its own, and an ANSI escape sequence moves the cursor, clears
//! the screen or recolors what follows. Everything this crate writes to a log
//! goes through [`LogSafe`]; applications can use it for their own output.

use std::fmt::{self, Write};

/// Displays a string with every character that could change how a terminal
/// or a log reads escaped: control characters (C0, DEL, C1) and the
/// invisible bidirectional and line-separator formatting characters.
/// `\n`, `\r` and `\t` are written as those two-character escapes, the rest
/// as `\u{..}`. Everything else, including non-ASCII text, is unchanged.
///
/// ```
/// use sbox_events::escape::LogSafe;
///
/// let from_input = "bad input\n\x1b[2Jfake line";
/// assert_eq!(LogSafe(from_input).to_string(), r"bad input\n\u{1b}[2Jfake line");
/// assert_eq!(LogSafe("café, 東京").to_string(), "café, 東京");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LogSafe<'a>(pub &'a str);

/// Whether `c` must not reach a terminal or a log as it is.
pub(crate) fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{61c}' // Arabic letter mark (a bidi control, like LRM/RLM)
            | '\u{200b}'..='\u{200f}' // zero-width spaces and marks, LRM/RLM
            | '\u{2028}'..='\u{202e}' // line/paragraph separators, embeddings, overrides
            | '\u{2066}'..='\u{2069}' // isolates
            | '\u{feff}')
}

impl fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(needs_escape) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// Text for a Mermaid label in double quotes: control characters escaped
/// as [`LogSafe`] does, and what Mermaid would read as markup or as the end
/// of the label written as entity codes.
pub(crate) fn mermaid_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in LogSafe(text).to_string().chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            '`' => out.push_str("#96;"),
            c => out.push(c),
        }
    }
    out
}

/// `Display` of `value`, escaped with [`LogSafe`].
#[cfg_attr(not(any(feature = "audit", feature = "history")), allow(dead_code))]
pub(crate) struct EscapedDisplay<T>(pub(crate) T);

impl<T: fmt::Display> fmt::Display for EscapedDisplay<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Escaping<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl Write for Escaping<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                write!(self.0, "{}", LogSafe(s))
            }
        }
        write!(Escaping(f), "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_escaped_and_text_is_kept() {
        let cases = [
            ("plain", "plain"),
            ("a\nb\r\tc", r"a\nb\r\tc"),
            ("\x1b[31mred\x7f", r"\u{1b}[31mred\u{7f}"),
            ("\u{9b}31m", r"\u{9b}31m"),
            ("abc\u{202e}cba", r"abc\u{202e}cba"),
            // Every Bidi_Control character: ALM, LRM, RLM, the embeddings
            // and overrides, the isolates.
            ("a\u{61c}b\u{200e}c\u{200f}", r"a\u{61c}b\u{200e}c\u{200f}"),
            (
                "\u{202a}\u{202b}\u{202c}\u{202d}",
                r"\u{202a}\u{202b}\u{202c}\u{202d}",
            ),
            (
                "\u{2066}\u{2067}\u{2068}\u{2069}",
                r"\u{2066}\u{2067}\u{2068}\u{2069}",
            ),
            ("\u{feff}bom", r"\u{feff}bom"),
            ("naïve ✓ 東京", "naïve ✓ 東京"),
            (r"C:\path", r"C:\path"),
        ];
        for (raw, shown) in cases {
            assert_eq!(LogSafe(raw).to_string(), shown, "{raw:?}");
        }
        assert_eq!(
            EscapedDisplay(format_args!("x{}y", "\n")).to_string(),
            r"x\ny"
        );
    }
}
