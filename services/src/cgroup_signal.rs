//! Signals a service's processes straight through its cgroup (v2), without containerd.
//!
//! The way through containerd is a gRPC call, a ttrpc call to the shim and an exec of the
//! OCI runtime (`crun kill --all`): about 0.5 s per signal under TCG, and at shutdown the
//! signals of several services queue behind each other on one vCPU. Here a signal is a few
//! reads and syscalls in the supervisor.
//!
//! - SIGKILL is one write of `1` to the cgroup's `cgroup.kill`: the kernel kills the whole
//!   subtree at once, processes forked meanwhile included.
//! - Any other signal goes to each process listed in `cgroup.procs` of the cgroup and of
//!   the cgroups below it. A process is first pinned by a pidfd, then checked in
//!   `/proc/PID/cgroup` to be in the service's subtree, then signalled through the pidfd:
//!   a pid that was freed and reused by a process elsewhere between the listing and the
//!   pidfd fails the check, and one reused after the check is not the pidfd's process.
//!   Like `kill --all`, a process forked while the list is walked may miss the signal;
//!   the stop timeout's SIGKILL does not (on kernels with `cgroup.kill`, 5.14 and later;
//!   before, SIGKILL also goes pid by pid).
//!
//! Everything read is bounded: the cgroup files by size, the subtree by depth and count.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The most of `cgroup.procs` read per cgroup (about 140,000 pids).
const MAX_PROCS_BYTES: u64 = 1 << 20;
/// The most of `/proc/PID/cgroup` read.
const MAX_PROC_CGROUP_BYTES: u64 = 64 << 10;
/// How deep below the service's cgroup, and how many cgroups in all, are walked.
const MAX_DEPTH: usize = 8;
const MAX_CGROUPS: usize = 4096;

/// Where a service's cgroup is: `root` is the cgroup2 mount as the supervisor sees it
/// (`/sys/fs/cgroup`), `path` the cgroup's path below it as `/proc/PID/cgroup` shows it.
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub root: PathBuf,
    pub path: String,
}

impl Cgroup {
    /// The cgroup of service `name` in the supervisor's view of the cgroup2 tree.
    pub fn of_service(name: &str) -> Cgroup {
        Cgroup { root: PathBuf::from("/sys/fs/cgroup"), path: crate::spec::cgroup_path(name) }
    }

    fn dir(&self) -> PathBuf {
        self.root.join(self.path.trim_start_matches('/'))
    }
}

/// Sends `signal` to every process of the cgroup and its subtree. `Ok(None)` when the
/// cgroup does not exist (the caller may fall back to containerd); otherwise how many
/// processes were signalled (for SIGKILL through `cgroup.kill`, the processes listed right
/// after, best effort). A process that cannot be signalled does not stop the others; the
/// error comes back only when none was signalled, so a fallback never signals twice.
/// `proc` is the procfs mount (`/proc`).
pub fn signal(cgroup: &Cgroup, proc: &Path, signal: i32) -> io::Result<Option<usize>> {
    let dir = cgroup.dir();
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(io::Error::other(format!("{} is not a cgroup directory", dir.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    if signal == libc::SIGKILL {
        // First, before anything that could fail: the kill must not depend on the walk.
        let kill = dir.join("cgroup.kill");
        if kill.exists() {
            std::fs::write(&kill, b"1")?;
            return Ok(Some(subtree_pids(&dir).ok().flatten().map_or(0, |p| p.len())));
        }
    }
    let Some(pids) = subtree_pids(&dir)? else { return Ok(None) };
    let (mut sent, mut failed) = (0, None);
    for pid in pids {
        match signal_pid(pid, proc, &cgroup.path, signal) {
            Ok(true) => sent += 1,
            Ok(false) => {}
            Err(e) => {
                log::warn!("signal {signal} to pid {pid} of {}: {e}", cgroup.path);
                failed.get_or_insert(e);
            }
        }
    }
    match failed {
        Some(e) if sent == 0 => Err(e),
        _ => Ok(Some(sent)),
    }
}

/// Every pid listed in `cgroup.procs` of `dir` and of the cgroups below it; `None` when
/// `dir` itself went away.
fn subtree_pids(dir: &Path) -> io::Result<Option<Vec<i32>>> {
    let mut pids = Vec::new();
    let mut todo = vec![(dir.to_path_buf(), 0usize)];
    let mut seen = 0;
    while let Some((d, depth)) = todo.pop() {
        seen += 1;
        if seen > MAX_CGROUPS {
            return Err(io::Error::other(format!("{}: more than {MAX_CGROUPS} cgroups", dir.display())));
        }
        match read_bounded(&d.join("cgroup.procs"), MAX_PROCS_BYTES) {
            Ok(text) => pids.extend(parse_pids(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && depth == 0 => return Ok(None),
            // A child cgroup removed while walking.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push((entry.path(), depth + 1));
            }
        }
    }
    Ok(Some(pids))
}

/// The pids of a `cgroup.procs` text, one per line; anything else is skipped.
pub fn parse_pids(text: &str) -> Vec<i32> {
    text.lines().filter_map(|l| l.trim().parse::<i32>().ok()).filter(|&p| p > 0).collect()
}

/// Is a `/proc/PID/cgroup` text that of a process in cgroup `path` or below it? Only the
/// unified hierarchy's line (`0::PATH`) counts.
pub fn in_subtree(proc_cgroup: &str, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    proc_cgroup.lines().filter_map(|l| l.strip_prefix("0::")).any(|p| {
        let p = p.trim_end();
        p == path || p.strip_prefix(path).is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Pins `pid` with a pidfd, checks that it is in the subtree of `path`, and signals it.
/// `Ok(false)` when it has exited or is not (any more) in the subtree.
fn signal_pid(pid: i32, proc: &Path, path: &str, signal: i32) -> io::Result<bool> {
    let Some(pidfd) = pidfd_open(pid)? else { return Ok(false) };
    let text = match read_bounded(&proc.join(pid.to_string()).join("cgroup"), MAX_PROC_CGROUP_BYTES) {
        Ok(t) => t,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => return Ok(false),
        Err(e) => return Err(e),
    };
    if !in_subtree(&text, path) {
        return Ok(false);
    }
    // SAFETY: the fd is a pidfd we own for the duration of the call; info is null, which
    // pidfd_send_signal takes as a plain kill(2)-like siginfo; flags must be 0.
    let rc = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal, std::ptr::null::<libc::siginfo_t>(), 0)
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) { Ok(false) } else { Err(e) }
}

/// A pidfd for `pid`, or `None` when no such process exists.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags (0) and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ESRCH) { Ok(None) } else { Err(e) };
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd_open returned an fd out of range"))?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

pub(crate) fn read_bounded(path: &Path, max: u64) -> io::Result<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(max).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests;
