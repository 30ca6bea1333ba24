//! fnmatch(3)-style matching (flags 0, as libkmod uses for modules.alias): `*`, `?`,
//! `[...]` sets with ranges, `!`/`^` negation and `[:digit:]`-style classes, `\` escapes.
//!
//! PID 1 matches every device's modalias against every alias pattern, so this must never
//! backtrack exponentially: with every non-`*` token matching exactly one byte, going back
//! to the latest `*` only is enough, which bounds the work to O(pattern x text).

/// True when `text` matches `pattern` as a whole.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Pattern position after the latest `*`, and where in the text that star's match ends.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if pattern.get(p) == Some(&b'*') {
            p += 1;
            star = Some((p, t));
            continue;
        }
        if p < pattern.len() {
            let (ok, next) = one(pattern, p, text[t]);
            if ok {
                p = next;
                t += 1;
                continue;
            }
        }
        // Mismatch: let the latest star swallow one more byte, or fail.
        let Some((after_star, end)) = star else { return false };
        p = after_star;
        t = end + 1;
        star = Some((after_star, t));
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Matches the single token at `pattern[p]` (not `*`) against `c`; returns whether it
/// matched and where the next token starts.
fn one(pattern: &[u8], p: usize, c: u8) -> (bool, usize) {
    match pattern[p] {
        b'?' => (true, p + 1),
        b'[' => match set(pattern, p + 1, c) {
            Some(result) => result,
            None => (c == b'[', p + 1), // no closing bracket: a literal '['
        },
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c, p + 2),
        b => (b == c, p + 1),
    }
}

/// A bracket expression starting after its `[`: (matched, index after `]`), or None when
/// the bracket is never closed.
fn set(pattern: &[u8], mut i: usize, c: u8) -> Option<(bool, usize)> {
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let b = *pattern.get(i)?;
        if b == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if b == b'['
            && pattern.get(i + 1) == Some(&b':')
            && let Some((class_ok, next)) = named_class(pattern, i + 2, c)
        {
            matched |= class_ok;
            i = next;
            continue;
        }
        let (lo, next) = set_byte(pattern, i)?;
        i = next;
        if pattern.get(i) == Some(&b'-') && pattern.get(i + 1).is_some_and(|&b| b != b']') {
            let (hi, next) = set_byte(pattern, i + 1)?;
            i = next;
            matched |= lo <= c && c <= hi;
        } else {
            matched |= c == lo;
        }
    }
}

/// One possibly escaped byte inside a set.
fn set_byte(pattern: &[u8], i: usize) -> Option<(u8, usize)> {
    match *pattern.get(i)? {
        b'\\' => Some((*pattern.get(i + 1)?, i + 2)),
        b => Some((b, i + 1)),
    }
}

/// `[:name:]` inside a set, starting after `[:`; None when there is no closing `:]`.
fn named_class(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let len = pattern[start..].windows(2).position(|w| w == b":]")?;
    let matched = match &pattern[start..start + len] {
        b"alpha" => c.is_ascii_alphabetic(),
        b"digit" => c.is_ascii_digit(),
        b"alnum" => c.is_ascii_alphanumeric(),
        b"upper" => c.is_ascii_uppercase(),
        b"lower" => c.is_ascii_lowercase(),
        b"xdigit" => c.is_ascii_hexdigit(),
        b"space" => c.is_ascii_whitespace(),
        b"punct" => c.is_ascii_punctuation(),
        _ => false,
    };
    Some((matched, start + len + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        glob_match(pattern.as_bytes(), text.as_bytes())
    }

    /// Obviously correct and exponential: the reference for the differential test.
    fn naive(p: &[u8], t: &[u8]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some(b'*') => (0..=t.len()).any(|k| naive(&p[1..], &t[k..])),
            Some(_) => match t.first() {
                None => false,
                Some(&c) => {
                    let (ok, next) = one(p, 0, c);
                    ok && naive(&p[next..], &t[1..])
                }
            },
        }
    }

    #[test]
    fn literals_and_question_marks() {
        assert!(m("virtio:d00000001v*", "virtio:d00000001v00001AF4"));
        assert!(!m("virtio:d00000001v*", "virtio:d00000002v00001AF4"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(!m("abc", "abcd"));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn star_runs() {
        assert!(m("*", ""));
        assert!(m("**a**", "a"));
        assert!(m("pci:v00001AF4d00001000sv*sd*bc*sc*i*", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"));
        assert!(!m("pci:v00001AF4d00001000sv*sd*bc*sc*i*", "pci:v00001AF4d00001041sv00001AF4sd00000001bc02sc00i00"));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*b*c", "aXbYbZ"));
        assert!(m("*/x", "a/b/x"), "no FNM_PATHNAME: * crosses /");
    }

    #[test]
    fn bracket_sets() {
        assert!(m("usb:v[0-9]*", "usb:v1234"));
        assert!(!m("usb:v[0-9]*", "usb:vA234"));
        assert!(m("x[!0-9]", "xa") && !m("x[!0-9]", "x5"));
        assert!(m("x[^ab]", "xc") && !m("x[^ab]", "xa"));
        assert!(m("x[]]", "x]"));
        assert!(m("x[a-]", "x-"));
        assert!(m("d[0-9A-F][0-9A-F]", "d7E"));
        assert!(m("x[[:digit:]]", "x7") && !m("x[[:digit:]]", "xa"));
        assert!(m("x[", "x["), "an unclosed bracket is a literal");
        assert!(m("a\\*", "a*") && !m("a\\*", "ab"));
    }

    #[test]
    fn agrees_with_the_naive_matcher() {
        let patterns = ["*a*b", "a*?b", "[ab]*[!b]", "*?*", "a**b*", "?[a-c]*a", "*b?", "[^a]*"];
        let texts = ["", "a", "b", "ab", "ba", "aab", "abab", "abcba", "bbbbb", "aaaab", "cab"];
        for p in patterns {
            for t in texts {
                assert_eq!(m(p, t), naive(p.as_bytes(), t.as_bytes()), "{p:?} vs {t:?}");
            }
        }
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = "*a".repeat(30) + "b";
        let text = "a".repeat(5000);
        let started = std::time::Instant::now();
        assert!(!m(&pattern, &text));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
