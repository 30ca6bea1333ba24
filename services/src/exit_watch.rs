//! Sees a service's main process exit when the kernel does, not when containerd says so.
//!
//! containerd learns of an exit from the shim, which reaps the process and reports it over
//! ttrpc; under TCG that took 0.3-0.9 s, and it is on the path of every restart and of
//! every level of an ordered shutdown. A pidfd turns readable the moment its process exits.
//! The exit status is then still in the zombie, which the shim has not reaped yet:
//! `/proc/PID/stat` shows it (field 52, `exit_code`, to a reader allowed to ptrace-read
//! the process, as the supervisor is).
//!
//! The pid is trusted only once pinned: the pidfd is opened first, then the process is
//! checked to be in the service's cgroup and its start time is noted. At the exit, the
//! status is taken only from a zombie with that same start time; anything else (the shim
//! reaped it first, the pid was reused) gives `None`, and containerd's answer counts.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use tokio::io::unix::AsyncFd;

use crate::cgroup_signal::{Cgroup, in_subtree, pidfd_open, read_bounded};

/// The most of `/proc/PID/stat` or `/proc/PID/cgroup` read.
const MAX_READ: u64 = 64 << 10;

/// A service's main process, held by a pidfd.
#[derive(Debug)]
pub struct Pinned {
    fd: AsyncFd<OwnedFd>,
    stat: PathBuf,
    start_time: u64,
}

/// What `/proc/PID/stat` says that matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    /// Field 22, in clock ticks since boot: with the pid, names one process for ever.
    pub start_time: u64,
    /// Field 52: the exit code of the main thread, in wait(2)'s encoding (0 before it
    /// exits). For a process that ends as a whole (`exit`, a fatal signal) it is the
    /// process's status. It is not when the main thread left early with `pthread_exit`
    /// and another thread ended the process later: then it reads 0. Service main
    /// processes do not do that in practice; containerd's answer would be right there.
    pub exit_code: i32,
}

/// Parses a `/proc/PID/stat` text. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state).
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(22 - 3)?.parse().ok()?;
    let exit_code = fields.get(52 - 3)?.parse().ok()?;
    Some(Stat { state, start_time, exit_code })
}

/// The exit status as containerd reports it: the exit code, or 128+n for signal n.
pub fn exit_status(wait_status: i32) -> u32 {
    let signal = wait_status & 0x7f;
    if signal != 0 { 128 + signal as u32 } else { ((wait_status >> 8) & 0xff) as u32 }
}

/// Pins `pid` if it is a process of `cgroup` (`proc` is the procfs mount). `None` when it
/// is gone, is not in the cgroup, or cannot be watched.
pub fn pin(pid: u32, cgroup: &Cgroup, proc: &Path) -> Option<Pinned> {
    let pid = i32::try_from(pid).ok().filter(|&p| p > 0)?;
    let fd = pidfd_open(pid).ok()??;
    let dir = proc.join(pid.to_string());
    let cgroup_text = read_bounded(&dir.join("cgroup"), MAX_READ).ok()?;
    if !in_subtree(&cgroup_text, &cgroup.path) {
        return None;
    }
    let stat = dir.join("stat");
    let start_time = parse_stat(&read_bounded(&stat, MAX_READ).ok()?)?.start_time;
    // SAFETY: the AsyncFd takes the OwnedFd, which stays open, and the same fd, until the
    // AsyncFd is dropped.
    let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()?;
    Some(Pinned { fd, stat, start_time })
}

impl Pinned {
    /// Waits for the exit; its status if the zombie could still be read.
    pub async fn exited(self) -> Option<u32> {
        let _ready = self.fd.readable().await.ok()?;
        let stat = parse_stat(&read_bounded(&self.stat, MAX_READ).ok()?)?;
        (stat.state == 'Z' && stat.start_time == self.start_time).then(|| exit_status(stat.exit_code))
    }
}

#[cfg(test)]
mod tests;
