//! Service logs read by the shim itself (`hoist-log:` stdio, see
//! [`hoist_guest::servicelog`]): the task's stdout and stderr are pipes whose read ends the
//! shim's poll loop drains into the service's [`Sink`], so no logger process runs per task.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use hoist_guest::servicelog::{Lines, Sink};
use hoist_guest::timeline::uptime_ms;
use nix::fcntl::{FcntlArg, OFlag, fcntl};

struct Stream {
    pipe: File,
    name: &'static str,
    lines: Lines,
}

/// One process's two output pipes and where their lines go.
pub struct LogPipe {
    sink: Sink,
    streams: Vec<Stream>,
}

impl LogPipe {
    /// New pipes for `name`'s output; returns the write ends for the process's stdout and
    /// stderr. The console is opened without becoming the shim's terminal, non-blocking.
    pub fn new(name: &str, dir: &Path, cap: u64) -> nix::Result<(LogPipe, OwnedFd, OwnedFd)> {
        let console = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open("/dev/console")
            .ok();
        let mut streams = Vec::new();
        let mut writers = Vec::new();
        for stream in ["stdout", "stderr"] {
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            fcntl(&r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
            streams.push(Stream { pipe: File::from(r), name: stream, lines: Lines::default() });
            writers.push(w);
        }
        let err = writers.pop().expect("two pipes");
        let out = writers.pop().expect("two pipes");
        Ok((LogPipe { sink: Sink::new(name, console, dir, cap), streams }, out, err))
    }

    /// The read ends still open, for poll; index as for [`read`](Self::read).
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.streams.iter().map(|s| s.pipe.as_fd()).collect()
    }

    /// Reads what stream `i` has, at most `rounds` reads of 16 KiB; at its end (or on an
    /// error), the last partial line is written and the stream closed. True while the
    /// stream stays open.
    fn pump(&mut self, i: usize, rounds: usize) -> bool {
        let Some(s) = self.streams.get_mut(i) else { return false };
        let (name, sink) = (s.name, &mut self.sink);
        let mut buf = [0u8; 16 * 1024];
        for _ in 0..rounds {
            match s.pipe.read(&mut buf) {
                Ok(n) if n > 0 => s.lines.push(&buf[..n], |l| sink.line(name, l, uptime_ms())),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                _ => {
                    s.lines.finish(|l| sink.line(name, l, uptime_ms()));
                    self.streams.remove(i);
                    return false;
                }
            }
        }
        true
    }

    /// What stream `i` has now (at most 64 KiB, so one chatty service cannot hold the
    /// shim's loop).
    pub fn read(&mut self, i: usize) {
        self.pump(i, 4);
    }

    /// Reads whatever is left without waiting (the shim is about to exit), at most 16 MiB
    /// a stream; a line cut short there is still written.
    pub fn drain(&mut self) {
        while let Some(last) = self.streams.len().checked_sub(1) {
            if self.pump(last, 1024)
                && let Some(mut s) = self.streams.pop()
            {
                let (name, sink) = (s.name, &mut self.sink);
                s.lines.finish(|l| sink.line(name, l, uptime_ms()));
            }
        }
    }

    pub fn is_done(&self) -> bool {
        self.streams.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_written_to_the_pipes_lands_in_the_log_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut pipe, out, err) = LogPipe::new("svc", dir.path(), 1 << 20).expect("pipes");
        nix::unistd::write(&out, b"hello\nwor").expect("write");
        nix::unistd::write(&err, b"oops\n").expect("write");
        pipe.read(0);
        pipe.read(1);
        nix::unistd::write(&out, b"ld").expect("write");
        drop((out, err));
        pipe.drain();
        assert!(pipe.is_done());
        let text = std::fs::read_to_string(dir.path().join("svc.log")).expect("log");
        let lines: Vec<&str> = text.lines().map(|l| l.split_once(' ').expect("stamp").1).collect();
        assert_eq!(lines, ["stdout hello", "stderr oops", "stdout world"]);
    }

    #[test]
    fn draining_at_exit_keeps_more_than_one_read_and_a_line_cut_short() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut pipe, out, _err) = LogPipe::new("svc", dir.path(), 1 << 20).expect("pipes");
        let many = "x\n".repeat(30_000);
        nix::unistd::write(&out, many.as_bytes()).expect("write");
        nix::unistd::write(&out, b"cut").expect("write");
        pipe.drain();
        assert!(pipe.is_done(), "a stream whose writer is still open is closed too");
        let text = std::fs::read_to_string(dir.path().join("svc.log")).expect("log");
        assert_eq!(text.lines().count(), 30_001);
        assert!(text.ends_with(" stdout cut\n"), "{:?}", &text[text.len() - 40..]);
    }
}
