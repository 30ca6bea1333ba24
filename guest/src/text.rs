//! Text from outside (file names in an image, config values, names on a disk) made safe
//! for a terminal: a hostile name must not move the cursor, recolour, retitle or forge
//! a line. [`escape`] is for one name inside a message; [`escape_message`] for a whole
//! message about to be printed, which keeps its own line breaks and tabs.
//!
//! Escaped: C0 controls and DEL as `\xNN`, C1 controls (U+0080..U+009F, which some
//! terminals obey as CSI and OSC) and the bidirectional overrides and isolates
//! (U+202A..U+202E, U+2066..U+2069, which reorder what is shown) as `\u{NNNN}`. Everything
//! else, backslashes included, is left as it is.

use std::borrow::Cow;

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape_with(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| needs_escape(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if !needs_escape(c) || keep(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// `s` with every control and reordering character escaped, line breaks included.
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_with(s, |_| false)
}

/// [`escape`] for a whole message: its line breaks and tabs stay.
pub fn escape_message(s: &str) -> Cow<'_, str> {
    escape_with(s, |c| c == '\n' || c == '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_plain_text_is_borrowed() {
        assert!(matches!(escape("usr/bin/ls -> a\\b ü 日本"), Cow::Borrowed(_)));
        assert_eq!(escape("\x1b[31mred\x07\x7f"), "\\x1b[31mred\\x07\\x7f");
        assert_eq!(escape("a\nb\r\tc"), "a\\x0ab\\x0d\\x09c");
        assert_eq!(escape("\u{9b}2J \u{202e}txt.exe"), "\\u{009b}2J \\u{202e}txt.exe");
        assert_eq!(
            escape_message("line one: \x1b]0;title\x07\n\tline two"),
            "line one: \\x1b]0;title\\x07\n\tline two"
        );
    }
}
