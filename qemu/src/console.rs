//! The serial console: QEMU's stdout (and stderr) read by threads into shared state that
//! waiters block on with a deadline. Every byte reaches `console.log` as soon as it is read.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStderr, ChildStdout};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Why a wait ended without a match.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WaitEnd {
    Timeout,
    /// QEMU closed its stdout: it has exited, nothing more will come.
    Closed,
}

#[derive(Default)]
struct State {
    lines: Vec<String>,
    /// Bytes after the last newline.
    partial: Vec<u8>,
    closed: bool,
    stderr: Vec<String>,
}

impl State {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut self.partial);
                self.lines.push(to_line(&line));
            } else {
                self.partial.push(b);
            }
        }
    }

    fn close(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.lines.push(to_line(&line));
        }
        self.closed = true;
    }
}

fn to_line(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

#[derive(Clone, Default)]
pub(crate) struct Console {
    shared: Arc<Shared>,
}

impl Console {
    /// Starts the reader threads. `echo` copies stdout bytes to our stdout and stderr lines
    /// to our stderr as they arrive.
    pub(crate) fn start(stdout: ChildStdout, stderr: ChildStderr, log: File, echo: bool) -> std::io::Result<Console> {
        let console = Console::default();
        let log = Arc::new(Mutex::new(log));
        let (c, l) = (console.clone(), Arc::clone(&log));
        std::thread::Builder::new().name("qemu-console".into()).spawn(move || c.read_stdout(stdout, &l, echo))?;
        let c = console.clone();
        std::thread::Builder::new().name("qemu-stderr".into()).spawn(move || c.read_stderr(stderr, &log, echo))?;
        Ok(console)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A reader thread that panicked while holding the lock left consistent data (pushes
        // are the only writes), so recover it rather than lose the console.
        self.shared.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read_stdout(&self, mut stdout: ChildStdout, log: &Mutex<File>, echo: bool) {
        let mut buf = [0u8; 8192];
        let mut log_failed = false;
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("reading QEMU stdout: {e}");
                    break;
                }
            };
            let chunk = &buf[..n];
            if let Err(e) = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).write_all(chunk)
                && !log_failed
            {
                log::warn!("writing console log: {e}");
                log_failed = true;
            }
            if echo {
                let mut out = std::io::stdout().lock();
                // Our stdout going away (a closed pipe) must not stop the console capture.
                let _ = out.write_all(chunk).and_then(|()| out.flush());
            }
            self.lock().push(chunk);
            self.shared.cond.notify_all();
        }
        self.lock().close();
        self.shared.cond.notify_all();
    }

    fn read_stderr(&self, stderr: ChildStderr, log: &Mutex<File>, echo: bool) {
        let mut reader = BufReader::new(stderr);
        let mut raw = Vec::new();
        loop {
            raw.clear();
            match reader.read_until(b'\n', &mut raw) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("reading QEMU stderr: {e}");
                    break;
                }
            }
            let line = to_line(raw.strip_suffix(b"\n").unwrap_or(&raw));
            let _ = writeln!(log.lock().unwrap_or_else(std::sync::PoisonError::into_inner), "[qemu] {line}");
            if echo {
                eprintln!("[qemu] {line}");
            }
            self.lock().stderr.push(line);
            self.shared.cond.notify_all();
        }
    }

    /// The first line (complete, from the very beginning) for which `pred` holds.
    pub(crate) fn wait_for(&self, deadline: Instant, pred: impl Fn(&str) -> bool) -> Result<String, WaitEnd> {
        let mut checked = 0;
        let mut state = self.lock();
        loop {
            if let Some(line) = state.lines[checked..].iter().find(|l| pred(l)) {
                return Ok(line.clone());
            }
            checked = state.lines.len();
            if state.closed {
                return Err(WaitEnd::Closed);
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(WaitEnd::Timeout);
            };
            state = self.shared.cond.wait_timeout(state, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
    }

    /// Waits until QEMU's stdout is closed; false if `deadline` passed first.
    pub(crate) fn wait_closed(&self, deadline: Instant) -> bool {
        self.wait_for(deadline, |_| false) == Err(WaitEnd::Closed)
    }

    /// Everything so far, including an unfinished last line.
    pub(crate) fn text(&self) -> String {
        let state = self.lock();
        let mut text = state.lines.join("\n");
        if !state.lines.is_empty() {
            text.push('\n');
        }
        text.push_str(&String::from_utf8_lossy(&state.partial));
        text
    }

    /// Complete lines so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lock().lines.clone()
    }

    /// The last `n` lines (with an unfinished one) and the last `n` lines of QEMU's stderr.
    pub(crate) fn tail(&self, n: usize) -> (Vec<String>, Vec<String>) {
        let state = self.lock();
        let mut lines: Vec<String> = state.lines[state.lines.len().saturating_sub(n)..].to_vec();
        if !state.partial.is_empty() {
            lines.push(to_line(&state.partial));
        }
        let stderr = state.stderr[state.stderr.len().saturating_sub(n)..].to_vec();
        (lines, stderr)
    }
}

#[cfg(test)]
impl Console {
    fn feed(&self, bytes: &[u8]) {
        self.lock().push(bytes);
        self.shared.cond.notify_all();
    }

    fn close(&self) {
        self.lock().close();
        self.shared.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines_are_split_across_chunks() {
        let c = Console::default();
        c.feed(b"[    0.1] Linux ver");
        c.feed(b"sion 6.1\r\nhello \xff guest\npartial");
        assert_eq!(c.lines(), ["[    0.1] Linux version 6.1", "hello \u{fffd} guest"]);
        assert_eq!(c.text(), "[    0.1] Linux version 6.1\nhello \u{fffd} guest\npartial");
        let (tail, stderr) = c.tail(1);
        assert_eq!(tail, ["hello \u{fffd} guest", "partial"]);
        assert!(stderr.is_empty());
        c.close();
        assert_eq!(c.lines().last().map(String::as_str), Some("partial"));
    }

    #[test]
    fn waiters_see_old_and_new_lines() {
        let c = Console::default();
        c.feed(b"early line\n");
        let soon = || Instant::now() + Duration::from_secs(10);
        assert_eq!(c.wait_for(soon(), |l| l.contains("early")), Ok("early line".into()));
        let writer = c.clone();
        let t = std::thread::spawn(move || writer.feed(b"late line\n"));
        assert_eq!(c.wait_for(soon(), |l| l.starts_with("late")), Ok("late line".into()));
        t.join().expect("writer");
        let start = Instant::now();
        assert_eq!(c.wait_for(start + Duration::from_millis(50), |l| l == "never"), Err(WaitEnd::Timeout));
        assert!(start.elapsed() >= Duration::from_millis(50));
        c.close();
        assert_eq!(c.wait_for(soon(), |l| l == "never"), Err(WaitEnd::Closed));
        assert!(c.wait_closed(soon()));
    }
}
