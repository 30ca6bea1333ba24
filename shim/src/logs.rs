//! Service logs read by the shim itself (`hoist-log:` stdio, see
//! [`hoist_guest::servicelog`]): the task's stdout and stderr are pipes whose read ends the
//! shim's poll loop drains into the service's [`Sink`], so no logger process runs per task.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use hoist_guest::servicelog::{Lines, Sink, uptime_ms};
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

    /// Reads what stream `i` has (at most 64 KiB at a time); at its end, the last partial
    /// line is written and the stream closed.
    pub fn read(&mut self, i: usize) {
        let Some(s) = self.streams.get_mut(i) else { return };
        let mut buf = [0u8; 16 * 1024];
        for _ in 0..4 {
            match s.pipe.read(&mut buf) {
                Ok(0) => {
                    let (name, sink) = (s.name, &mut self.sink);
                    s.lines.finish(|l| sink.line(name, l, uptime_ms()));
                    self.streams.remove(i);
                    return;
                }
                Ok(n) => {
                    let (name, sink) = (s.name, &mut self.sink);
                    s.lines.push(&buf[..n], |l| sink.line(name, l, uptime_ms()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.streams.remove(i);
                    return;
                }
            }
        }
    }

    /// Reads whatever is left without waiting (the shim is about to exit).
    pub fn drain(&mut self) {
        for _ in 0..64 {
            if self.streams.is_empty() {
                return;
            }
            let before: usize = self.streams.len();
            self.read(before - 1);
            if self.streams.len() == before {
                // Nothing more now on the last stream: nobody waits for the rest.
                let s = self.streams.pop().expect("not empty");
                let (name, sink) = (s.name, &mut self.sink);
                let mut lines = s.lines;
                lines.finish(|l| sink.line(name, l, uptime_ms()));
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
        while !pipe.is_done() {
            let n = pipe.fds().len();
            pipe.read(n - 1);
            if pipe.fds().len() == n {
                pipe.read(0);
            }
        }
        let text = std::fs::read_to_string(dir.path().join("svc.log")).expect("log");
        let lines: Vec<&str> = text.lines().map(|l| l.split_once(' ').expect("stamp").1).collect();
        assert_eq!(lines, ["stdout hello", "stderr oops", "stdout world"]);
    }
}
