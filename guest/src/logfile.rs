//! Size-capped log files (NAME.log rotated to NAME.log.1 at the cap), shared by every log
//! writer of the host: PID 1 gives containerd a pipe instead of the file and copies it
//! here, and the supervisor and each service's shim write theirs through [`Capped`], so no log
//! grows without bound in memory (the root filesystem is RAM). Never opened through a
//! symlink: a service that can write the log directory cannot aim the writer elsewhere.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Appends lines to `path`, rotating at `cap` bytes (one old copy kept).
pub struct Capped {
    path: PathBuf,
    cap: u64,
    size: u64,
    file: Option<std::fs::File>,
}

impl Capped {
    pub fn open(path: &Path, cap: u64) -> Self {
        let file = std::fs::OpenOptions::new().create(true).append(true).custom_flags(libc::O_NOFOLLOW).open(path).ok();
        let size = file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.len()).unwrap_or(0);
        Capped { path: path.to_path_buf(), cap, size, file }
    }

    pub fn write_line(&mut self, line: &[u8]) {
        if self.size > 0 && self.size + line.len() as u64 > self.cap {
            self.rotate();
        }
        self.append(line);
    }

    fn append(&mut self, bytes: &[u8]) {
        if let Some(f) = &mut self.file
            && f.write_all(bytes).is_ok()
        {
            self.size += bytes.len() as u64;
        }
    }

    /// NAME.log becomes NAME.log.1 and a fresh NAME.log is opened. When the rename fails
    /// (NAME.log.1 in the way, a read-only directory), the file is truncated instead, with a
    /// line saying why: keeping it would let it grow past the cap for as long as the cause
    /// lasts, in RAM. If even that fails, writing stops: the cap wins over the lines.
    fn rotate(&mut self) {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        self.size = 0;
        match std::fs::rename(&self.path, &old) {
            Ok(()) => {
                self.file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&self.path)
                    .ok()
            }
            Err(e) => {
                if self.file.as_ref().is_none_or(|f| f.set_len(0).is_err()) {
                    self.file = None;
                    return;
                }
                let note = format!("[log truncated: cannot rotate to {}: {e}]\n", Path::new(&old).display());
                self.append(note.as_bytes());
            }
        }
    }
}

/// A pipe whose read end a thread copies into `path` until every writer has closed it;
/// returns the write end for the child's stdout and stderr.
pub fn pipe_to(path: &Path, cap: u64) -> std::io::Result<OwnedFd> {
    // std's pipe is O_CLOEXEC: only the child's stdout and stderr keep the write end.
    let (read, write) = std::io::pipe()?;
    let path = path.to_path_buf();
    std::thread::Builder::new().name("child-log".into()).spawn(move || {
        let mut out = Capped::open(&path, cap);
        let mut reader = BufReader::new(read);
        let mut line = Vec::new();
        while reader.by_ref().take(64 * 1024).read_until(b'\n', &mut line).map(|n| n > 0).unwrap_or(false) {
            out.write_line(&line);
            line.clear();
        }
    })?;
    Ok(write.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_symlink_is_never_written_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep\n").expect("victim");
        let log = dir.path().join("svc.log");
        std::os::unix::fs::symlink(&victim, &log).expect("plant");
        let mut f = Capped::open(&log, 1 << 20);
        f.write_line(b"evil\n");
        assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep\n");
    }

    #[test]
    fn lines_rotate_at_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        let mut c = Capped::open(&path, 8);
        for line in [&b"aaaa\n"[..], b"bbbb\n", b"cccc\n"] {
            c.write_line(line);
        }
        assert_eq!(std::fs::read(&path).expect("log"), b"cccc\n");
        assert_eq!(std::fs::read(dir.path().join("c.log.1")).expect("old"), b"bbbb\n");
    }

    #[test]
    fn a_failed_rotation_does_not_grow_the_file_past_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        // NAME.log.1 a non-empty directory: rename(2) onto it fails.
        std::fs::create_dir_all(dir.path().join("c.log.1/x")).expect("mkdir");
        let mut c = Capped::open(&path, 256);
        for i in 0..1000 {
            c.write_line(format!("line {i:04}\n").as_bytes());
        }
        let text = std::fs::read_to_string(&path).expect("log");
        assert!(text.len() <= 256, "{} bytes past a 256-byte cap:\n{text}", text.len());
        assert!(text.starts_with("[log truncated: cannot rotate to "), "says why:\n{text}");
        assert!(text.ends_with("line 0999\n"), "the newest line is kept:\n{text}");
        assert!(dir.path().join("c.log.1/x").is_dir(), "the directory in the way is left alone");
    }

    #[test]
    fn a_pipe_is_copied_until_it_closes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.log");
        let write = pipe_to(&path, 1 << 20).expect("pipe");
        let mut w = std::fs::File::from(write);
        w.write_all(b"one\ntwo\n").expect("write");
        drop(w);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read(&path).unwrap_or_default() != b"one\ntwo\n" {
            assert!(std::time::Instant::now() < deadline, "copy did not finish");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
