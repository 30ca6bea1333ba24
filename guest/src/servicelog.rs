//! Service output, as the shim writes it: the stdio URI the supervisor gives containerd
//! for every service task (`hoist-log:DIR?max_size=BYTES`), and what the shim does with
//! the lines: `[NAME] line` on the console, at a bounded rate, and `SECS.MS STREAM line`
//! in `DIR/NAME.log`, size-capped. The shim reads the task's pipes itself, so there is no
//! logger process per task, and output keeps flowing while the supervisor or containerd
//! restart.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::logfile::Capped;

/// The URI scheme of service logs.
pub const SCHEME: &str = "hoist-log:";
/// A longer line is cut into pieces of this size, so one line cannot grow without bound.
pub const MAX_LINE: usize = 16 * 1024;

/// The stdio URI for a service task whose log file is capped at `max_size` bytes.
pub fn uri(max_size: u64) -> String {
    format!("{SCHEME}{}?max_size={max_size}", crate::paths::LOG_DIR)
}

/// The log directory and size cap a [`uri`] names; None if it is not one.
pub fn parse(uri: &str) -> Option<(PathBuf, u64)> {
    let rest = uri.strip_prefix(SCHEME)?;
    let (dir, query) = rest.split_once('?')?;
    let max = query.strip_prefix("max_size=")?.parse().ok()?;
    let dir = PathBuf::from(dir);
    (dir.is_absolute() && !dir.components().any(|c| c == std::path::Component::ParentDir)).then_some((dir, max))
}

/// Token bucket for console lines: a serial console is slow (and under emulation every
/// byte costs the whole machine), so a chatty service gets `rate` lines a second with a
/// `burst`; the rest go to its log file only, and the console says how many it skipped.
#[derive(Debug)]
pub struct ConsoleBudget {
    tokens: f64,
    rate: f64,
    burst: f64,
    last_ms: u128,
    pub suppressed: u64,
}

impl ConsoleBudget {
    pub fn new(rate: f64, burst: f64) -> Self {
        ConsoleBudget { tokens: burst, rate, burst, last_ms: 0, suppressed: 0 }
    }

    /// May a line go to the console at `now_ms`?
    pub fn allow(&mut self, now_ms: u128) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.last_ms = now_ms;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Splits a byte stream into lines as it arrives: `\n` ends a line, trailing `\r`s are
/// dropped, a line longer than [`MAX_LINE`] is cut, and what is left at the end is a line.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    pub fn push(&mut self, mut bytes: &[u8], mut line: impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.partial.len();
            match bytes[..bytes.len().min(room)].iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.partial.extend_from_slice(&bytes[..i]);
                    bytes = &bytes[i + 1..];
                    self.emit(&mut line);
                }
                None if bytes.len() >= room => {
                    self.partial.extend_from_slice(&bytes[..room]);
                    bytes = &bytes[room..];
                    self.emit(&mut line);
                }
                None => {
                    self.partial.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
        }
    }

    /// The stream ended: a last line without its newline still counts.
    pub fn finish(&mut self, mut line: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            self.emit(&mut line);
        }
    }

    fn emit(&mut self, line: &mut impl FnMut(&[u8])) {
        let mut end = self.partial.len();
        while end > 0 && self.partial[end - 1] == b'\r' {
            end -= 1;
        }
        line(&self.partial[..end]);
        self.partial.clear();
        if self.partial.capacity() > 4096 {
            self.partial.shrink_to(256);
        }
    }
}

/// Where one service's lines go.
pub struct Sink {
    name: String,
    console: Option<File>,
    budget: ConsoleBudget,
    file: Capped,
}

impl Sink {
    /// `console` should be opened non-blocking: a line the console cannot take now is
    /// counted as skipped there, and is still in the file.
    pub fn new(name: &str, console: Option<File>, dir: &Path, cap: u64) -> Sink {
        let _ = std::fs::create_dir_all(dir);
        let file = Capped::open(&dir.join(format!("{name}.log")), cap);
        Sink { name: name.to_string(), console, budget: ConsoleBudget::new(20.0, 100.0), file }
    }

    pub fn line(&mut self, stream: &str, line: &[u8], now_ms: u128) {
        let text = String::from_utf8_lossy(line);
        if self.console.is_some() && self.budget.allow(now_ms) {
            let skipped = std::mem::take(&mut self.budget.suppressed);
            let mut out = String::new();
            if skipped > 0 {
                out.push_str(&format!(
                    "[{}] ({skipped} lines not shown here: hoist ctl logs {})\n",
                    self.name, self.name
                ));
            }
            out.push_str(&format!("[{}] {text}\n", self.name));
            if let Some(c) = &mut self.console
                && c.write_all(out.as_bytes()).is_err()
            {
                self.budget.suppressed += 1;
            }
        }
        self.file.write_line(format!("{}.{:03} {stream} {text}\n", now_ms / 1000, now_ms % 1000).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut l = Lines::default();
        for c in chunks {
            l.push(c, |x| lines.push(String::from_utf8_lossy(x).into_owned()));
        }
        l.finish(|x| lines.push(String::from_utf8_lossy(x).into_owned()));
        lines
    }

    #[test]
    fn lines_are_split_across_reads_trimmed_and_a_last_partial_one_kept() {
        assert_eq!(split(&[b"one\r\ntw", b"o\n\nthr", b"ee"]), ["one", "two", "", "three"]);
    }

    #[test]
    fn an_overlong_line_is_cut_at_the_cap() {
        let long = vec![b'x'; MAX_LINE + 10];
        let lines = split(&[&long, b"\nnext\n"]);
        assert_eq!(lines.iter().map(|l| l.len()).collect::<Vec<_>>(), [MAX_LINE, 10, 4]);
    }

    #[test]
    fn the_uri_round_trips_and_refuses_other_shapes() {
        assert_eq!(uri(1024), "hoist-log:/var/log?max_size=1024");
        assert_eq!(parse(&uri(1024)), Some((PathBuf::from("/var/log"), 1024)));
        for bad in
            ["hoist-log:relative?max_size=1", "hoist-log:/var/../etc?max_size=1", "hoist-log:/var/log", "file:///x"]
        {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_console_budget_refills_at_its_rate() {
        let mut b = ConsoleBudget::new(10.0, 3.0);
        let allowed = (0..10).filter(|_| b.allow(0)).count();
        assert_eq!(allowed, 3, "burst");
        assert_eq!(b.suppressed, 7);
        assert!(!b.allow(50), "half a token after 50 ms");
        assert!(b.allow(100), "one token after 100 ms");
        assert!(b.allow(2000) && b.allow(2000) && b.allow(2000) && !b.allow(2000), "refill is capped by the burst");
    }

    #[test]
    fn lines_reach_the_file_with_stream_and_stamp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sink = Sink::new("w", None, dir.path(), 1 << 20);
        sink.line("stderr", b"boom", 61_234);
        let text = std::fs::read_to_string(dir.path().join("w.log")).expect("log");
        assert_eq!(text, "61.234 stderr boom\n");
    }
}
