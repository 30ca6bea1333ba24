//! Log sources for the API. Service output, the supervisor's lines and containerd's log are
//! size-capped files under /var/log (written by hoist-logger, the supervisor and
//! containerd's redirected output; NAME.log plus one rotated NAME.log.1); "kernel" is the
//! kernel ring buffer (/dev/kmsg). Tail reads the newest lines; follow polls for growth
//! and notices rotation.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc::Sender;

use super::pb::LogLine;

pub const LOG_DIR: &str = "/var/log";
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("no log source {0:?} (a service name, supervisor, containerd or kernel)")]
    Unknown(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
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

/// The last `n` lines of NAME.log.1 + NAME.log.
pub fn tail_file(path: &Path, n: usize) -> Vec<String> {
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    let mut text = std::fs::read_to_string(&old).unwrap_or_default();
    text.push_str(&std::fs::read_to_string(path).unwrap_or_default());
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| l.to_string()).collect()
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
    for line in tail_file(&path, tail) {
        if !send(&tx, &source, line) {
            return;
        }
    }
    if !follow {
        return;
    }
    let mut offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut partial = String::new();
    loop {
        std::thread::sleep(POLL);
        if tx.is_closed() {
            return;
        }
        let Ok(mut f) = std::fs::File::open(&path) else { continue };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < offset {
            offset = 0; // rotated
        }
        if len == offset || f.seek(SeekFrom::Start(offset)).is_err() {
            continue;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            continue;
        }
        offset += buf.len() as u64;
        partial.push_str(&String::from_utf8_lossy(&buf));
        while let Some(i) = partial.find('\n') {
            let line: String = partial.drain(..=i).collect();
            if !send(&tx, &source, line.trim_end().to_string()) {
                return;
            }
        }
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
        assert_eq!(tail_file(&dir.path().join("w.log"), 3), ["2", "3", "4"]);
        assert_eq!(tail_file(&dir.path().join("w.log"), 0), Vec::<String>::new());
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
