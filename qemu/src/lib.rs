//! hoist-qemu: the VM harness. `hoist run` boots a built host with it, and the VM tests use
//! it to boot hosts and watch what they print. It is a library on purpose: a builder makes
//! the QEMU command line, [`Vm`] owns the running QEMU, every wait has a deadline, and
//! dropping a [`Vm`] kills QEMU, so a failing test never leaves a VM behind.
//!
//! # How it works
//!
//! QEMU runs `-nodefaults` on the `pc` machine (under TCG it reaches `/init` a few tenths of a
//! second sooner than `q35`, and a container host needs nothing q35 adds), with the serial
//! port on its stdout, a user-mode network (`virtio-net-pci`, host ports forwarded from
//! 127.0.0.1 only), `virtio-rng-pci` so the guest gets entropy early, and `-no-reboot` so a
//! guest reboot or panic ends the run instead of looping. KVM is used when `/dev/kvm` opens
//! read-write and a tiny probe guest (tens of ms) really runs on it (nested KVM often opens
//! but then aborts); otherwise TCG. `HOIST_ACCEL=tcg|kvm` overrides the automatic choice.
//!
//! - **Console.** QEMU's stdout is a pipe read by a thread that appends every byte to
//!   `WORK/console.log` at once (so the log is complete even if we die), splits lines, and
//!   wakes waiters through a condition variable; it copies the bytes to our stdout when
//!   [`VmBuilder::echo_console`] is on. QEMU's stderr goes to the log too, prefixed `[qemu]`,
//!   and appears in error messages. QEMU's stdin is `/dev/null`: no keyboard input.
//! - **QMP.** QEMU starts paused (`-S`) with a QMP server on `WORK/qmp.sock`. We connect,
//!   negotiate, and only then send `cont`, so no event can be missed. One connection is kept;
//!   a reader thread routes replies to the caller by `id` and records every event. Commands
//!   are serialized.
//! - **Processes.** QEMU runs in its own process group, so a Ctrl-C on the terminal reaches
//!   only us and we can ask the guest to power off; it gets `SIGKILL` as its parent-death
//!   signal, so it does not outlive us even if we are killed. A watcher thread notices its
//!   exit with `waitid(WNOWAIT)` and only [`Vm`] reaps it, so its pid is never reused while
//!   we can still signal it. Nothing else in the process may reap children with
//!   `waitpid(-1)`.
//!
//! # Clean exit
//!
//! [`VmExit::clean`] is true only when QEMU exited on its own with status 0 *and* its QMP
//! `SHUTDOWN` event said `reason: "guest-shutdown"`, i.e. the guest powered itself off. A
//! guest reboot (`guest-reset`), a panic (`guest-panic`, or `guest-reset` with `panic=-1`), a
//! host-side quit or a kill is not clean. [`VmExit::guest_reset`] says it was a reset; a
//! caller that knows its guest tells a requested reboot from a panic by the console (`hoist
//! run` does, by PID 1's last line).
//!
//! # Artifacts
//!
//! `console.log` and `qmp.sock` live in the work dir: a fresh temp dir by default, removed
//! when the [`Vm`] is dropped unless [`Vm::keep_artifacts`] was called or the thread is
//! panicking (then the path and the last console lines are printed). A work dir given with
//! [`VmBuilder::work_dir`] is never removed.
//!
//! It does not: forward keyboard input, manage disks, or run anything but x86_64 Linux hosts.

mod accel;
mod builder;
mod console;
mod process;
mod qmp;
mod vm;
mod workdir;

use std::path::PathBuf;
use std::time::Duration;

pub use accel::{Accel, kvm_usable};
pub use builder::{DEFAULT_CMDLINE, VmBuilder};
pub use qmp::QmpEvent;
pub use vm::{Vm, VmExit};

/// Errors of the harness. Timeouts and early exits carry the console tail in their message.
/// `Debug` prints the message and its causes unescaped, so `.expect()` in a test shows the
/// console tail as lines.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum QemuError {
    #[error("cannot read {path}: {cause}")]
    Input { path: PathBuf, cause: std::io::Error },
    #[error("work dir {path}: {cause}")]
    WorkDir { path: PathBuf, cause: std::io::Error },
    #[error("QMP socket path {path} is longer than a unix socket allows (107 bytes)")]
    SocketPath { path: PathBuf },
    #[error("cannot start {program}: {cause}")]
    Spawn { program: String, cause: std::io::Error },
    #[error("QMP socket {path}: no connection within {after:?}: {cause}")]
    QmpConnect { path: PathBuf, after: Duration, cause: std::io::Error },
    #[error("QMP socket {path}: {cause}")]
    QmpIo { path: PathBuf, cause: std::io::Error },
    #[error("QMP socket {path}: {detail}")]
    QmpProtocol { path: PathBuf, detail: String },
    #[error("QMP {command}: {class}: {desc}")]
    QmpCommand { command: String, class: String, desc: String },
    #[error("QMP {command}: QEMU closed the connection")]
    QmpClosed { command: String },
    #[error("timed out after {after:?} waiting for {what}{tail}")]
    Timeout { what: String, after: Duration, tail: String },
    #[error("QEMU exited ({status}) before {what}{tail}")]
    Exited { what: String, status: String, tail: String },
    #[error("reaping QEMU pid {pid}: {cause}")]
    Wait { pid: u32, cause: std::io::Error },
    #[error("no free TCP port on 127.0.0.1: {0}")]
    FreePort(std::io::Error),
}

impl std::fmt::Debug for QemuError {
    /// The message, which carries its cause (tests print errors with `{:?}`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read, closed).
/// Another process may take it before QEMU does; good enough for tests and `hoist run`.
pub fn free_tcp_port() -> Result<u16, QemuError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(QemuError::FreePort)?;
    Ok(listener.local_addr().map_err(QemuError::FreePort)?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_tcp_port().expect("port");
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free again");
    }

    #[test]
    fn timeout_message_carries_the_tail() {
        let e = QemuError::Timeout {
            what: "a line".into(),
            after: Duration::from_secs(3),
            tail: "\n--- last console lines ---\nboot".into(),
        };
        assert_eq!(e.to_string(), "timed out after 3s waiting for a line\n--- last console lines ---\nboot");
        let e = QemuError::FreePort(std::io::Error::other("no ports"));
        assert_eq!(format!("{e:?}"), "no free TCP port on 127.0.0.1: no ports");
        assert!(std::error::Error::source(&e).is_none(), "the cause is in the message, not exposed twice");
    }
}
