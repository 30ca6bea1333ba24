//! `ConfigError` and the bookkeeping that gives every rejection a `file:line:column: key:`
//! prefix: byte spans become 1-based positions, serde paths become dotted TOML keys.

use std::ops::Range;

use serde_path_to_error::{Path, Segment};

/// Why a host config was refused. Display is self-contained (file, position, key, reason),
/// so callers print it as is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {cause}")]
    Io { file: String, cause: std::io::Error },
    #[error("{file}:{line}:{column}: {key}: {message}")]
    Invalid { file: String, line: usize, column: usize, key: String, message: String },
}

/// The text being parsed and the name to report it under.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    /// An `Invalid` error at the start of `span`, or at 1:1 when the span is unknown.
    pub fn invalid(&self, span: Option<Range<usize>>, key: String, message: impl ToString) -> ConfigError {
        let (line, column) = span.map_or((1, 1), |s| position(self.text, s.start));
        ConfigError::Invalid { file: self.file.to_string(), line, column, key, message: message.to_string() }
    }

    /// Converts a deserialization failure: the key comes from the serde path, or, for TOML
    /// syntax errors (which happen before any path exists), from the text around the error.
    pub fn deserialize_error(&self, err: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
        let mut key = key_of_path(err.path());
        let err = err.into_inner();
        let span = err.span();
        let message = err.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(": ");
        let message = match &span {
            Some(s) if key.is_empty() => syntax_message(self.text, s.start, message),
            _ => message,
        };
        if key.is_empty() {
            key = span.as_ref().map(|s| key_at(self.text, s.start)).unwrap_or_default();
        }
        // serde reports a missing field against the table that lacks it; name the field.
        if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
            push_key(&mut key, field);
        }
        if key.is_empty() {
            key = "(top level)".to_string();
        }
        self.invalid(span, key, message)
    }
}

/// `bytes` as text, or an error pointing at the first byte that is not UTF-8.
pub(crate) fn utf8<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, ConfigError> {
    let err = match std::str::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(err) => err,
    };
    let valid = err.valid_up_to();
    let text = std::str::from_utf8(&bytes[..valid]).expect("valid_up_to bytes are UTF-8");
    let mut key = key_at(text, valid);
    if key.is_empty() {
        key = "(top level)".to_string();
    }
    let message = format!("invalid UTF-8 (byte 0x{:02X}): the file must be UTF-8", bytes[valid]);
    Err(Source { file, text }.invalid(Some(valid..valid), key, message))
}

/// The message for a TOML syntax error at `offset`. toml says nothing for some errors (a
/// value missing at the end of the file, a control character in a comment) and "expected
/// newline" for a control character after a value, so those are described here from the
/// text; any other message is kept.
fn syntax_message(text: &str, offset: usize, message: String) -> String {
    let rest = text.get(offset..).unwrap_or_default();
    let mut chars = rest.chars();
    if let Some(c) = chars.next()
        && is_forbidden_control(c, chars.next())
    {
        let code = u32::from(c);
        return format!(
            "control character U+{code:04X} is not allowed; TOML text may hold tabs and newlines only (in a string, write \\u{code:04X})"
        );
    }
    let line_start = text[..offset.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let before = text.get(line_start..offset).unwrap_or_default().trim_end();
    let after = rest.lines().next().unwrap_or_default().trim_start();
    // `key =` with nothing but a comment after it.
    if before.ends_with('=') && (after.is_empty() || after.starts_with('#')) {
        return "expected a value after `=`".to_string();
    }
    match (message.is_empty(), rest.chars().next()) {
        (false, _) => message,
        (true, None) => "unexpected end of file".to_string(),
        (true, Some(c)) => format!("unexpected {c:?}"),
    }
}

/// TOML allows no control characters but tab and newline (CRLF included), even in comments.
fn is_forbidden_control(c: char, next: Option<char>) -> bool {
    match c {
        '\t' | '\n' => false,
        '\r' => next != Some('\n'),
        c => c < ' ' || c == '\x7f',
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Appends one key to a dotted path, quoting it unless it is a bare TOML key.
fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        path.push_str(key);
    } else {
        path.push_str(&format!("{key:?}"));
    }
}

/// `toml::Spanned` shows up in serde paths as this pseudo-key; it is not part of the TOML.
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";

fn key_of_path(path: &Path) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key == SPANNED_VALUE => {}
            Segment::Map { key } | Segment::Enum { variant: key } => push_key(&mut out, key),
            Segment::Unknown => push_key(&mut out, "?"),
        }
    }
    out
}

/// Best-effort key for a syntax error at `offset`: the table header on that line, or the
/// key being assigned there under the nearest header above.
fn key_at(text: &str, offset: usize) -> String {
    let (line_no, _) = position(text, offset);
    let mut table = String::new();
    for (n, line) in text.lines().enumerate().take(line_no) {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_start_matches('[');
            table = header.split(']').next().unwrap_or(header).trim().to_string();
            continue;
        }
        if n + 1 == line_no
            && let Some((lhs, _)) = line.split_once('=')
            && !lhs.trim().is_empty()
            && !lhs.starts_with('#')
        {
            let lhs = lhs.trim();
            return if table.is_empty() { lhs.to_string() } else { format!("{table}.{lhs}") };
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(keys: &[&str]) -> String {
        let mut path = String::new();
        for k in keys {
            push_key(&mut path, k);
        }
        path
    }

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(position(text, 0), (1, 1));
        assert_eq!(position(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(position(text, 10), (2, 4));
        assert_eq!(position(text, 10_000), (3, 1));
    }

    #[test]
    fn keys_are_quoted_only_when_not_bare() {
        assert_eq!(key(&["service", "web", "stop_timeout"]), "service.web.stop_timeout");
        assert_eq!(key(&["sysctl", "net.ipv4.ip_forward"]), "sysctl.\"net.ipv4.ip_forward\"");
        assert_eq!(key(&["service", "web", "env", "A=B"]), "service.web.env.\"A=B\"");
    }

    #[test]
    fn syntax_error_keys_come_from_the_surrounding_text() {
        let text = "version = 1\n[service.web]\nimage = \"x\"\n[service.web]\n";
        let second_header = text.rfind('[').expect("header");
        assert_eq!(key_at(text, second_header), "service.web");
        assert_eq!(key_at(text, text.find("image").expect("image")), "service.web.image");
        assert_eq!(key_at("version = \n", 10), "version");
        assert_eq!(key_at("garbage\n", 0), "");
    }

    fn syntax(text: &str) -> ConfigError {
        let err = serde_path_to_error::deserialize::<_, toml::Value>(toml::Deserializer::new(text));
        Source { file: "f.toml", text }.deserialize_error(err.expect_err("a syntax error"))
    }

    #[test]
    fn every_syntax_error_has_a_message_and_a_position() {
        let cases = [
            ("version = ", "f.toml:1:11: version: expected a value after `=`"),
            ("[service.web]\nimage =  # none\n", "f.toml:2:10: service.web.image: expected a value after `=`"),
            (
                "version = 1\n# a \u{7} bell\n",
                "f.toml:2:5: (top level): control character U+0007 is not allowed; TOML text may hold tabs and newlines only (in a string, write \\u0007)",
            ),
            ("a = 1 # \u{7f}\n", "f.toml:1:9: a: control character U+007F is not allowed"),
            ("a = \"x\u{0}\"\n", "f.toml:1:7: a: control character U+0000 is not allowed"),
            ("a = 1\rb = 2\n", "f.toml:1:6: a: control character U+000D is not allowed"),
            ("a = [1,", "f.toml:1:8: a: invalid array: expected `]`"),
        ];
        for (text, want) in cases {
            let got = syntax(text).to_string();
            assert!(got.starts_with(want), "{text:?}: got {got:?}");
        }
        // CRLF line ends are fine.
        assert!(toml::from_str::<toml::Value>("a = 1\r\nb = 2\r\n").is_ok());
    }

    #[test]
    fn invalid_utf8_points_at_the_first_bad_byte() {
        let message = |bytes: &[u8]| utf8("f.toml", bytes).map(str::to_string).map_err(|e| e.to_string());
        assert_eq!(
            message(b"version = 1\n[service.web]\nimage = \"dir:/caf\xe9\"\n"),
            Err("f.toml:3:18: service.web.image: invalid UTF-8 (byte 0xE9): the file must be UTF-8".into())
        );
        assert_eq!(
            message(b"\xff"),
            Err("f.toml:1:1: (top level): invalid UTF-8 (byte 0xFF): the file must be UTF-8".into())
        );
        assert_eq!(message("a = \"é\"".as_bytes()), Ok("a = \"é\"".into()));
    }
}
