//! The per-task log forwarder, run by containerd's shim through the `binary://` stdio
//! URI: the shim starts it with the task's stdout and stderr pipes on fds 3 and 4 and a
//! readiness pipe on fd 5 (closed once we are ready), and `CONTAINER_ID` in the
//! environment. Because the shim owns it, service output keeps flowing while the
//! supervisor or containerd restart.
//!
//! Each line goes to the console as `[NAME] line` and to `/var/log/NAME.log` with a
//! boot-time stamp and the stream; the file is rotated at a size cap (one old copy kept)
//! so a chatty service cannot fill memory.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

pub use hoist_guest::logfile::Capped as RotatingFile;

/// Splits a stream into lines (a trailing partial line is flushed at EOF; overlong lines
/// are cut at `max` bytes so one line cannot grow without bound) and hands each to `sink`.
pub fn pump(input: impl Read, max: usize, mut sink: impl FnMut(&[u8])) -> io::Result<()> {
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.by_ref().take(max as u64).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        while line.last() == Some(&b'\n') || line.last() == Some(&b'\r') {
            line.pop();
        }
        sink(&line);
    }
}

/// Token bucket for console lines: a serial console is slow (and under emulation every
/// byte costs the whole machine), so a chatty service gets `rate` lines a second with a
/// `burst`; the rest go to its log file only, and the console says how many it skipped.
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

pub struct Outputs {
    pub console: Option<File>,
    pub budget: ConsoleBudget,
    pub file: RotatingFile,
}

/// Forwards one stream until EOF.
pub fn forward(name: &str, stream: &str, input: impl Read, out: &Mutex<Outputs>) -> io::Result<()> {
    pump(input, 16 * 1024, |line| {
        let text = String::from_utf8_lossy(line);
        let stamp = crate::uptime_ms();
        let Ok(mut o) = out.lock() else { return };
        if o.console.is_some() && o.budget.allow(stamp) {
            let skipped = std::mem::take(&mut o.budget.suppressed);
            if let Some(c) = &mut o.console {
                if skipped > 0 {
                    let _ = c.write_all(
                        format!("[{name}] ({skipped} lines not shown here: hoist ctl logs {name})\n").as_bytes(),
                    );
                }
                let _ = c.write_all(format!("[{name}] {text}\n").as_bytes());
            }
        }
        o.file.write_line(format!("{}.{:03} {stream} {text}\n", stamp / 1000, stamp % 1000).as_bytes());
    })
}

/// The whole logger: fds 3/4 in, fd 5 closed when ready. Returns when both streams end.
pub fn run(name: &str, stdout: File, stderr: File, ready: File, log_dir: &Path, cap: u64) {
    let console = OpenOptions::new().write(true).open("/dev/console").ok();
    let _ = std::fs::create_dir_all(log_dir);
    let file = RotatingFile::open(&log_dir.join(format!("{name}.log")), cap);
    let out = Arc::new(Mutex::new(Outputs { console, budget: ConsoleBudget::new(20.0, 100.0), file }));
    drop(ready);
    let err_out = Arc::clone(&out);
    let err_name = name.to_string();
    let errs = std::thread::spawn(move || forward(&err_name, "stderr", stderr, &err_out));
    let _ = forward(name, "stdout", stdout, &out);
    let _ = errs.join();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_trimmed_and_capped() {
        let mut lines = Vec::new();
        pump(&b"one\r\ntwo\nthree-is-long\nlast"[..], 6, |l| lines.push(String::from_utf8_lossy(l).to_string()))
            .expect("pump");
        assert_eq!(lines, ["one", "two", "three-", "is-lon", "g", "last"]);
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
    fn files_rotate_at_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("svc.log");
        let mut f = RotatingFile::open(&path, 10);
        f.write_line(b"12345678\n");
        f.write_line(b"abcdefgh\n");
        f.write_line(b"ABCDEFGH\n");
        assert_eq!(std::fs::read_to_string(&path).expect("log"), "ABCDEFGH\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("svc.log.1")).expect("old"), "abcdefgh\n");
    }

    #[test]
    fn forwarded_lines_carry_stream_and_stamp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Mutex::new(Outputs {
            console: None,
            budget: ConsoleBudget::new(1.0, 1.0),
            file: RotatingFile::open(&dir.path().join("w.log"), 1 << 20),
        });
        forward("w", "stderr", &b"boom\n"[..], &out).expect("forward");
        let text = std::fs::read_to_string(dir.path().join("w.log")).expect("log");
        assert!(text.ends_with(" stderr boom\n"), "{text:?}");
    }
}
