//! A running VM: console waits, QMP, exit, and the `Drop` guard that kills QEMU.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::QemuError;
use crate::console::{Console, WaitEnd};
use crate::process::ExitWatch;
use crate::qmp::{Qmp, QmpEvent};
use crate::workdir::WorkDir;

/// Console lines in error messages.
const ERROR_TAIL: usize = 40;
/// Console lines printed when a panicking thread drops a `Vm`.
const PANIC_TAIL: usize = 60;
const QMP_TIMEOUT: Duration = Duration::from_secs(30);
/// After QEMU exits, how long its last output and QMP events may take to be read.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How a VM ended.
#[derive(Debug, Clone)]
pub struct VmExit {
    /// QEMU exited on its own with status 0 after a `SHUTDOWN` event with reason
    /// `guest-shutdown`: the guest powered itself off.
    pub clean: bool,
    /// The `SHUTDOWN` reason (`guest-shutdown`, `guest-reset`, `guest-panic`, `host-qmp-quit`,
    /// ...), or how it ended otherwise (`killed ...`, `exited ... without a SHUTDOWN event`).
    pub reason: String,
    /// QEMU's exit status.
    pub status: ExitStatus,
    /// We killed QEMU ([`Vm::kill`], [`Vm::shutdown`] after its grace, or drop).
    pub killed: bool,
}

impl VmExit {
    /// QEMU exited on its own with status 0 after a `SHUTDOWN` event with reason
    /// `guest-reset`: under `-no-reboot` that is a guest reboot, or a kernel panic with
    /// `panic=-1`. Only the guest's console can tell which.
    pub fn guest_reset(&self) -> bool {
        !self.killed && self.status.success() && self.reason == "guest-reset"
    }
}

/// A running QEMU. Dropping it kills QEMU.
pub struct Vm {
    child: Child,
    console: Console,
    qmp: Qmp,
    exit_watch: Arc<ExitWatch>,
    work: WorkDir,
    log_path: PathBuf,
    exit: Option<VmExit>,
    keep: bool,
}

impl Vm {
    /// Connects QMP to a QEMU started with `-S`, then lets the guest run.
    pub(crate) fn start(
        mut child: Child,
        work: WorkDir,
        log: File,
        log_path: PathBuf,
        socket: PathBuf,
        echo: bool,
        connect_timeout: Duration,
    ) -> Result<Vm, QemuError> {
        let pid = child.id();
        let fail = |child: &mut Child, e: QemuError| {
            let _ = child.kill();
            let _ = child.wait();
            e
        };
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let e = std::io::Error::other("stdout and stderr must be pipes");
            return Err(fail(&mut child, QemuError::Spawn { program: crate::builder::QEMU.into(), cause: e }));
        };
        let console = match Console::start(stdout, stderr, log, echo) {
            Ok(c) => c,
            Err(source) => {
                return Err(fail(&mut child, QemuError::Spawn { program: "console threads".into(), cause: source }));
            }
        };
        let exit_watch = match ExitWatch::start(pid) {
            Ok(w) => w,
            Err(source) => {
                return Err(fail(&mut child, QemuError::Spawn { program: "exit watcher".into(), cause: source }));
            }
        };
        let tail = || tail_text(&console, &log_path, ERROR_TAIL);
        let qmp = connect(&socket, &exit_watch, connect_timeout)
            .and_then(|qmp| qmp.execute("cont", None, QMP_TIMEOUT).map(|_| qmp));
        let qmp = match qmp {
            Ok(q) => q,
            // QEMU died on the way (bad argument, KVM failing): its stderr says why, and the
            // QMP error would only say "connection reset". The work dir stays for the log.
            Err(e) => {
                let e = match exit_watch.wait(Instant::now() + Duration::from_secs(1)) {
                    Some(status) => {
                        console.wait_closed(Instant::now() + DRAIN_TIMEOUT);
                        QemuError::Exited { what: "the guest started".into(), status, tail: tail() }
                    }
                    None => e,
                };
                return Err(fail(&mut child, e));
            }
        };
        log::debug!("QEMU pid {pid} running, work dir {}", work.path().display());
        Ok(Vm { child, console, qmp, exit_watch, work, log_path, exit: None, keep: false })
    }

    /// Waits for a console line containing `needle` (already printed or later) and returns it.
    /// Fails at the deadline or when QEMU exits first; the error carries the console tail.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Result<String, QemuError> {
        self.wait_for(&format!("a console line containing {needle:?}"), timeout, |l| l.contains(needle))
    }

    /// Waits for the first console line (from the start) for which `pred` holds. `what`
    /// describes it in the error.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> Result<String, QemuError> {
        match self.console.wait_for(Instant::now() + timeout, pred) {
            Ok(line) => Ok(line),
            Err(WaitEnd::Timeout) => {
                Err(QemuError::Timeout { what: what.to_string(), after: timeout, tail: self.tail() })
            }
            Err(WaitEnd::Closed) => {
                Err(QemuError::Exited { what: what.to_string(), status: self.exit_status_text(), tail: self.tail() })
            }
        }
    }

    /// All console output so far (lossy UTF-8, `\r\n` turned into `\n`).
    pub fn console(&self) -> String {
        self.console.text()
    }

    /// The complete console lines so far.
    pub fn console_lines(&self) -> Vec<String> {
        self.console.lines()
    }

    /// `WORK/console.log`: the raw console bytes, and QEMU's stderr prefixed `[qemu]`.
    pub fn console_log_path(&self) -> &Path {
        &self.log_path
    }

    /// Presses the ACPI power button (QMP `system_powerdown`). The guest decides what to do.
    pub fn powerdown(&self) -> Result<(), QemuError> {
        self.qmp("system_powerdown", None).map(|_| ())
    }

    /// Runs a QMP command and returns its `return` value.
    pub fn qmp(&self, command: &str, args: Option<Value>) -> Result<Value, QemuError> {
        self.qmp.execute(command, args, QMP_TIMEOUT)
    }

    /// QMP events received so far (`SHUTDOWN`, `POWERDOWN`, `RESET`, ...).
    pub fn qmp_events(&self) -> Vec<QmpEvent> {
        self.qmp.events()
    }

    /// Waits for QEMU to exit and says how. [`QemuError::Timeout`] if it still runs at the
    /// deadline (it keeps running; call again, or [`shutdown`](Self::shutdown)).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<VmExit, QemuError> {
        if let Some(exit) = &self.exit {
            return Ok(exit.clone());
        }
        if self.exit_watch.wait(Instant::now() + timeout).is_none() {
            return Err(QemuError::Timeout { what: "QEMU to exit".into(), after: timeout, tail: self.tail() });
        }
        let status = self.child.wait().map_err(|source| QemuError::Wait { pid: self.child.id(), cause: source })?;
        Ok(self.finish(status, None))
    }

    /// Powers the guest off: ACPI power button, up to `grace` for QEMU to exit, then `SIGKILL`.
    pub fn shutdown(&mut self, grace: Duration) -> Result<VmExit, QemuError> {
        if let Some(exit) = &self.exit {
            return Ok(exit.clone());
        }
        match self.powerdown() {
            // Closed: QEMU is already on its way out; wait_exit tells how.
            Ok(()) | Err(QemuError::QmpClosed { .. }) => {}
            Err(e) => log::warn!("QEMU pid {}: {e}; killing it", self.pid()),
        }
        match self.wait_exit(grace) {
            Err(QemuError::Timeout { .. }) => {
                self.kill_because(format!("killed: the guest did not power off within {grace:?}"));
                self.wait_exit(Duration::ZERO)
            }
            other => other,
        }
    }

    /// Kills QEMU (`SIGKILL`) and reaps it. Does nothing if it has already been reaped.
    pub fn kill(&mut self) {
        self.kill_because("killed".to_string());
    }

    fn kill_because(&mut self, reason: String) {
        if self.exit.is_some() {
            return;
        }
        // std sends nothing once the child has been reaped, so the pid cannot be stale.
        if let Err(e) = self.child.kill() {
            log::warn!("killing QEMU pid {}: {e}", self.pid());
        }
        match self.child.wait() {
            Ok(status) => {
                self.finish(status, Some(reason));
            }
            Err(e) => log::warn!("reaping QEMU pid {}: {e}", self.pid()),
        }
    }

    /// Records how QEMU ended, once its output and QMP events have been drained.
    fn finish(&mut self, status: ExitStatus, killed: Option<String>) -> VmExit {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        if !self.console.wait_closed(deadline) {
            log::warn!("QEMU pid {}: console still open {DRAIN_TIMEOUT:?} after exit", self.pid());
        }
        if !self.qmp.wait_closed(deadline) {
            log::warn!("QEMU pid {}: QMP still open {DRAIN_TIMEOUT:?} after exit", self.pid());
        }
        let shutdown = self.qmp.shutdown_reason();
        let exit = match killed {
            Some(reason) => VmExit { clean: false, reason, status, killed: true },
            None => VmExit {
                clean: status.success() && shutdown.as_deref() == Some("guest-shutdown"),
                reason: shutdown.unwrap_or_else(|| format!("exited ({status}) without a SHUTDOWN event")),
                status,
                killed: false,
            },
        };
        log::debug!("QEMU pid {}: {exit:?}", self.pid());
        self.exit = Some(exit.clone());
        exit
    }

    /// QEMU's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Keeps the work dir (console.log) after drop, and prints its path.
    pub fn keep_artifacts(&mut self) {
        if !self.keep {
            eprintln!("hoist-qemu: keeping {}", self.work.path().display());
        }
        self.keep = true;
    }

    fn exit_status_text(&self) -> String {
        self.exit_watch.wait(Instant::now() + Duration::from_secs(1)).unwrap_or_else(|| "stdout closed".to_string())
    }

    fn tail(&self) -> String {
        tail_text(&self.console, &self.log_path, ERROR_TAIL)
    }
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("pid", &self.pid())
            .field("work_dir", &self.work.path())
            .field("exit", &self.exit)
            .finish_non_exhaustive()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            self.keep = true;
            eprintln!(
                "hoist-qemu: VM of a failed test: artifacts kept in {}{}",
                self.work.path().display(),
                tail_text(&self.console, &self.log_path, PANIC_TAIL)
            );
        }
        // QEMU leaves its socket behind when killed; a later run would trip over it.
        let _ = std::fs::remove_file(self.work.path().join("qmp.sock"));
        if !self.keep {
            self.work.remove();
        }
    }
}

/// Retries until QEMU's QMP socket accepts, QEMU exits, or the deadline passes.
fn connect(socket: &Path, exit_watch: &ExitWatch, timeout: Duration) -> Result<Qmp, QemuError> {
    let deadline = Instant::now() + timeout;
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return Qmp::handshake(socket, stream, deadline),
            Err(source) => {
                if exit_watch.status().is_some() {
                    // start() turns this into an Exited error, once stderr has been read.
                    return Err(QemuError::QmpConnect { path: socket.to_path_buf(), after: timeout, cause: source });
                }
                if Instant::now() >= deadline {
                    return Err(QemuError::QmpConnect { path: socket.to_path_buf(), after: timeout, cause: source });
                }
                // The socket appears within milliseconds of exec; a short pause between tries is enough.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The error-message tail: the last `n` console lines and QEMU's stderr, if any.
fn tail_text(console: &Console, log_path: &Path, n: usize) -> String {
    let (lines, stderr) = console.tail(n);
    let mut text = format!("\n--- last {} console lines ({}) ---", lines.len(), log_path.display());
    for line in &lines {
        text.push('\n');
        text.push_str(line);
    }
    if !stderr.is_empty() {
        text.push_str("\n--- QEMU stderr ---");
        for line in &stderr {
            text.push('\n');
            text.push_str(line);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn exit(reason: &str, code: i32, killed: bool) -> VmExit {
        VmExit { clean: false, reason: reason.into(), status: ExitStatus::from_raw(code << 8), killed }
    }

    #[test]
    fn a_reset_is_told_from_other_ends() {
        assert!(exit("guest-reset", 0, false).guest_reset());
        assert!(!exit("guest-reset", 1, false).guest_reset());
        assert!(!exit("guest-reset", 0, true).guest_reset());
        assert!(!exit("guest-panic", 0, false).guest_reset());
        assert!(!exit("guest-shutdown", 0, false).guest_reset());
    }
}
