//! Starting QEMU so that it cannot outlive us, and noticing its exit without reaping it.
//!
//! QEMU gets `SIGKILL` as its parent-death signal. Linux sends that signal when the *thread*
//! that forked the child exits, not the process, so every QEMU is forked by one long-lived
//! spawner thread: a `Vm` can then be moved between threads, and a test thread that ends
//! does not take its VM with it.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc::{self, Sender};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

type Job = (Command, Sender<io::Result<Child>>);

/// Spawns `cmd` from the spawner thread with `SIGKILL` as its parent-death signal.
pub(crate) fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec. It calls only prctl(2) and
    // getppid(2), which are async-signal-safe, and does not allocate (io::Error from an
    // errno is a plain integer), so it cannot deadlock on a lock held by another thread.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            // If we died between fork and prctl, the signal will never come: give up.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()?
        .lock()
        .map_err(|_| io::Error::other("QEMU spawner lock poisoned"))?
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("QEMU spawner thread is gone"))?;
    reply_rx.recv().map_err(|_| io::Error::other("QEMU spawner thread is gone"))?
}

fn spawner() -> io::Result<&'static Mutex<Sender<Job>>> {
    static SPAWNER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    if let Some(s) = SPAWNER.get() {
        return Ok(s);
    }
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new().name("hoist-qemu-spawner".into()).spawn(move || {
        for (mut cmd, reply) in rx {
            let _ = reply.send(cmd.spawn());
        }
    })?;
    // A racing caller may have installed its own spawner first; ours then ends with its channel.
    Ok(SPAWNER.get_or_init(|| Mutex::new(tx)))
}

/// Watches one child for its exit with `waitid(WEXITED | WNOWAIT)`: the child stays a zombie
/// until `Child::wait` reaps it, so its pid cannot be reused while we might still kill it.
pub(crate) struct ExitWatch {
    status: Mutex<Option<String>>,
    cond: Condvar,
}

impl ExitWatch {
    pub(crate) fn start(pid: u32) -> io::Result<std::sync::Arc<ExitWatch>> {
        let watch = std::sync::Arc::new(ExitWatch { status: Mutex::new(None), cond: Condvar::new() });
        let raw = i32::try_from(pid).map_err(|_| io::Error::other(format!("pid {pid} out of range")))?;
        let w = std::sync::Arc::clone(&watch);
        std::thread::Builder::new().name(format!("qemu-exit-{pid}")).spawn(move || {
            let text = loop {
                match waitid(Id::Pid(Pid::from_raw(raw)), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    Ok(status) => break describe(status),
                    // ECHILD: we reaped it ourselves (kill) before this thread looked.
                    Err(e) => break format!("reaped ({e})"),
                }
            };
            if let Ok(mut s) = w.status.lock() {
                *s = Some(text);
            }
            w.cond.notify_all();
        })?;
        Ok(watch)
    }

    /// How the child ended, if it has.
    pub(crate) fn status(&self) -> Option<String> {
        self.status.lock().ok().and_then(|s| s.clone())
    }

    /// Waits until the child has exited or `deadline` passes.
    pub(crate) fn wait(&self, deadline: Instant) -> Option<String> {
        let Ok(mut guard) = self.status.lock() else { return None };
        loop {
            if let Some(s) = guard.as_ref() {
                return Some(s.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            guard = match self.cond.wait_timeout(guard, left) {
                Ok((g, _)) => g,
                Err(_) => return None,
            };
        }
    }
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("killed by {sig}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn watch_sees_exit_and_child_is_still_reapable() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 3"]);
        let mut child = spawn_tied(cmd).expect("spawn sh");
        let watch = ExitWatch::start(child.id()).expect("watch");
        let status = watch.wait(Instant::now() + Duration::from_secs(10)).expect("exit seen");
        assert_eq!(status, "exit status 3");
        assert_eq!(child.wait().expect("reap").code(), Some(3));
    }

    #[test]
    fn watch_times_out_on_a_live_child() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut child = spawn_tied(cmd).expect("spawn sleep");
        let watch = ExitWatch::start(child.id()).expect("watch");
        assert_eq!(watch.wait(Instant::now() + Duration::from_millis(100)), None);
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert!(watch.wait(Instant::now() + Duration::from_secs(10)).is_some());
    }
}
