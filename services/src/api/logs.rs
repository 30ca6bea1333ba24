//! Log sources for the API. Service output, the supervisor's lines and containerd's log are
//! size-capped files under /var/log (written by each service's shim, the supervisor and
//! containerd's redirected output; NAME.log plus one rotated NAME.log.1); "kernel" is the
//! kernel ring buffer (/dev/kmsg). Tail reads the newest lines; follow polls the file it
//! holds open, so a rotation loses no line ([`Follower`]).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc::Sender;

use hoist_api::pb::LogLine;

pub use hoist_guest::paths::LOG_DIR;
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("no log source {0:?} (a service name, supervisor, containerd or kernel)")]
    Unknown(String),
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("no logs of boot {0}: earlier boots' logs are kept only on a [state] volume")]
    NoState(i32),
    #[error("no logs of boot {boot}: this host keeps {kept} boots (0 to -{})", kept - 1)]
    NotKept { boot: i32, kept: usize },
}

/// The log directory of boot `boot` (0: this one, -1 the one before, ...), from PID 1's list
/// of the boots kept on the state volume (`list`, [`hoist_guest::paths::LOG_BOOTS`]).
/// Without that list the logs are this boot's, in RAM.
pub fn dir_of_boot(list: &Path, boot: i32) -> Result<PathBuf, LogError> {
    let text = match std::fs::File::open(list) {
        Ok(f) => {
            let mut text = String::new();
            let _ = f.take(64 << 10).read_to_string(&mut text);
            text
        }
        Err(_) if boot == 0 => return Ok(PathBuf::from(LOG_DIR)),
        Err(_) => return Err(LogError::NoState(boot)),
    };
    let dirs: Vec<&str> = text.lines().filter(|l| l.starts_with('/')).collect();
    if boot == 0 {
        return Ok(PathBuf::from(LOG_DIR));
    }
    let back = if boot < 0 { boot.unsigned_abs() as usize } else { usize::MAX };
    match dirs.len().checked_sub(back.saturating_add(1)) {
        Some(i) => Ok(PathBuf::from(dirs[i])),
        None => Err(LogError::NotKept { boot, kept: dirs.len().max(1) }),
    }
}

/// The file of a source; names are checked so a request cannot point outside the log dir.
pub fn file_of(dir: &Path, source: &str) -> Result<PathBuf, LogError> {
    let ok = !source.is_empty() && source.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let path = dir.join(format!("{source}.log"));
    if !ok || !path.exists() {
        return Err(LogError::Unknown(source.to_string()));
    }
    Ok(path)
}

/// `/dev/kmsg` records are "prio,seq,usec,flags;message": keep "[   s.usec] message".
pub fn kmsg_line(record: &str) -> Option<String> {
    let (head, msg) = record.split_once(';')?;
    let usec: u64 = head.split(',').nth(2)?.parse().ok()?;
    Some(format!("[{:5}.{:06}] {}", usec / 1_000_000, usec % 1_000_000, msg.lines().next().unwrap_or("")))
}

fn send(tx: &Sender<Result<LogLine, tonic::Status>>, source: &str, line: String) -> bool {
    tx.blocking_send(Ok(LogLine { source: source.to_string(), line })).is_ok()
}

/// Streams a file source: the tail, then (with follow) new lines until the client leaves.
pub fn stream_file(
    path: PathBuf,
    source: String,
    tail: usize,
    follow: bool,
    tx: Sender<Result<LogLine, tonic::Status>>,
) {
    let (mut follower, tail) = Follower::open(path, tail);
    for line in tail {
        if !send(&tx, &source, line) {
            return;
        }
    }
    if !follow {
        return;
    }
    loop {
        std::thread::sleep(POLL);
        if tx.is_closed() {
            return;
        }
        for line in follower.poll() {
            if !send(&tx, &source, line) {
                return;
            }
        }
    }
}

/// Follows NAME.log across rotations. It holds the file open, so after a rotation it still
/// reads the rest of the old generation (now NAME.log.1) before it moves on to the new
/// NAME.log. If the writer rotated twice between two polls, the generation in between is
/// NAME.log.1 and is read whole; one rotated away before a poll (the cap written three times
/// within [`POLL`]) is gone from disk and skipped. A file truncated in place (a rotation
/// that failed, see `hoist_guest::logfile::Capped`) is read again from its start.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    /// Bytes after the last newline read.
    partial: Vec<u8>,
}

impl Follower {
    /// Starts following `path` at its current end; returns the follower and the last `tail`
    /// lines before that point (NAME.log.1, then NAME.log up to where following starts).
    pub fn open(path: PathBuf, tail: usize) -> (Follower, Vec<String>) {
        let old = std::fs::read_to_string(rotated(&path)).unwrap_or_default();
        let mut follower = Follower { file: File::open(&path).ok(), path, partial: Vec::new() };
        let mut lines: Vec<String> = old.lines().map(str::to_string).collect();
        if let Some(f) = follower.file.as_mut() {
            read_lines(f, &mut follower.partial, &mut lines);
        }
        let lines = lines.split_off(lines.len().saturating_sub(tail));
        (follower, lines)
    }

    /// The complete lines written since the last poll, in order.
    pub fn poll(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        // Looked at before the held file is drained: if the path already names another
        // file, the writer has left the held one for good, and draining it reads all of it.
        let current = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        let held = self.file.as_ref().and_then(|f| f.metadata().ok()).map(|m| (m.dev(), m.ino()));
        if let Some(f) = self.file.as_mut() {
            read_lines(f, &mut self.partial, &mut out);
        }
        if current.is_none() || current == held {
            return out;
        }
        // Rotated (or created). The old generation may end without a newline.
        if !self.partial.is_empty() {
            out.push(line_of(&std::mem::take(&mut self.partial)));
        }
        if held.is_some()
            && let Ok(mut between) = File::open(rotated(&self.path))
            && let Ok(m) = between.metadata()
            && Some((m.dev(), m.ino())) != held
            && Some((m.dev(), m.ino())) != current
        {
            read_lines(&mut between, &mut self.partial, &mut out);
            if !self.partial.is_empty() {
                out.push(line_of(&std::mem::take(&mut self.partial)));
            }
        }
        self.file = File::open(&self.path).ok();
        if let Some(f) = self.file.as_mut() {
            read_lines(f, &mut self.partial, &mut out);
        }
        out
    }
}

/// NAME.log.1 of NAME.log.
fn rotated(path: &Path) -> PathBuf {
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    PathBuf::from(old)
}

fn line_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim_end().to_string()
}

/// Reads `f` from its position to its end into complete `lines`, keeping an unfinished last
/// line in `partial`. A file now shorter than the position was truncated: read it again.
fn read_lines(f: &mut File, partial: &mut Vec<u8>, lines: &mut Vec<String>) {
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if f.stream_position().is_ok_and(|pos| pos > len) {
        partial.clear();
        if f.seek(SeekFrom::Start(0)).is_err() {
            return;
        }
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return;
    }
    partial.extend_from_slice(&buf);
    if let Some(end) = partial.iter().rposition(|b| *b == b'\n') {
        let rest = partial.split_off(end + 1);
        lines.extend(partial[..end].split(|b| *b == b'\n').map(line_of));
        *partial = rest;
    }
}

/// Streams the kernel log: every record (the ring keeps what fits), last `tail` first.
pub fn stream_kernel(tail: usize, follow: bool, tx: Sender<Result<LogLine, tonic::Status>>) {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut f) = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open("/dev/kmsg") else {
        let _ = tx.blocking_send(Err(tonic::Status::unavailable("/dev/kmsg cannot be read")));
        return;
    };
    let read_all = |f: &mut std::fs::File| {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend(kmsg_line(&String::from_utf8_lossy(&buf[..n]))),
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue, // overwritten records
                Err(_) => break,
            }
        }
        out
    };
    let first = read_all(&mut f);
    for line in first[first.len().saturating_sub(tail)..].iter().cloned() {
        if !send(&tx, "kernel", line) {
            return;
        }
    }
    while follow && !tx.is_closed() {
        std::thread::sleep(POLL);
        for line in read_all(&mut f) {
            if !send(&tx, "kernel", line) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod boot_tests {
    use super::*;

    #[test]
    fn boots_count_back_from_the_last_listed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let list = tmp.path().join("log-boots");
        assert_eq!(dir_of_boot(&list, 0).expect("this boot"), Path::new(LOG_DIR));
        assert!(matches!(dir_of_boot(&list, -1), Err(LogError::NoState(-1))));
        std::fs::write(&list, "/v/logs/3\n/v/logs/4\n/v/logs/5\n").expect("write");
        assert_eq!(dir_of_boot(&list, 0).expect("0"), Path::new(LOG_DIR));
        assert_eq!(dir_of_boot(&list, -1).expect("-1"), Path::new("/v/logs/4"));
        assert_eq!(dir_of_boot(&list, -2).expect("-2"), Path::new("/v/logs/3"));
        let e = dir_of_boot(&list, -3).expect_err("not kept");
        assert_eq!(e.to_string(), "no logs of boot -3: this host keeps 3 boots (0 to -2)");
        assert!(dir_of_boot(&list, 1).is_err());
        assert!(dir_of_boot(&list, i32::MIN).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_names_not_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("web.log"), "a\n").expect("write");
        assert!(file_of(dir.path(), "web").is_ok());
        assert!(matches!(file_of(dir.path(), "../etc/passwd"), Err(LogError::Unknown(_))));
        assert!(matches!(file_of(dir.path(), "db"), Err(LogError::Unknown(_))));
    }

    #[test]
    fn tail_spans_the_rotated_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("w.log.1"), "1\n2\n").expect("write");
        std::fs::write(dir.path().join("w.log"), "3\n4\n").expect("write");
        assert_eq!(Follower::open(dir.path().join("w.log"), 3).1, ["2", "3", "4"]);
        assert_eq!(Follower::open(dir.path().join("w.log"), 0).1, Vec::<String>::new());
    }

    /// Writes `lines` through the same capped writer the shim uses, polling the follower
    /// every `poll_every` lines; returns what it saw.
    fn follow_while_writing(cap: u64, lines: &[String], poll_every: usize) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.log");
        let mut writer = hoist_guest::logfile::Capped::open(&path, cap);
        writer.write_line(b"old\n");
        writer.write_line(b"before\n");
        let (mut follower, mut seen) = Follower::open(path, 1);
        for (i, line) in lines.iter().enumerate() {
            writer.write_line(format!("{line}\n").as_bytes());
            if (i + 1) % poll_every == 0 {
                seen.extend(follower.poll());
            }
        }
        seen.extend(follower.poll());
        seen
    }

    #[test]
    fn follow_sees_every_line_once_across_rotations() {
        let lines: Vec<String> = (0..200).map(|i| format!("line {i:03}")).collect();
        // 9 bytes a line, a rotation every 11 lines: polls see none, one, or two rotations
        // (then the generation in between is only in NAME.log.1).
        for poll_every in [1, 3, 7, 10, 13, 22] {
            let seen = follow_while_writing(100, &lines, poll_every);
            assert_eq!(seen[0], "before", "the tail comes first");
            assert_eq!(seen[1..], lines, "polling every {poll_every} lines");
        }
    }

    #[test]
    fn follow_reads_a_file_truncated_in_place_from_its_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.log");
        // NAME.log.1 in the way: each rotation fails and truncates NAME.log instead.
        std::fs::create_dir_all(dir.path().join("w.log.1/x")).expect("mkdir");
        let mut writer = hoist_guest::logfile::Capped::open(&path, 300);
        let (mut follower, mut seen) = Follower::open(path, 10);
        let lines: Vec<String> = (0..200).map(|i| format!("line {i:03}")).collect();
        // Polled after every line: truncation then drops only lines already read.
        for line in &lines {
            writer.write_line(format!("{line}\n").as_bytes());
            seen.extend(follower.poll());
        }
        let (notes, rest): (Vec<String>, Vec<String>) =
            seen.into_iter().partition(|l| l.starts_with("[log truncated: cannot rotate to "));
        assert!(!notes.is_empty());
        assert_eq!(rest, lines);
    }

    #[test]
    fn kmsg_records_become_lines() {
        assert_eq!(
            kmsg_line("6,339,5140900,-;virtio_net virtio0 eth0: up\n").as_deref(),
            Some("[    5.140900] virtio_net virtio0 eth0: up")
        );
        assert_eq!(kmsg_line("garbage"), None);
    }
}
