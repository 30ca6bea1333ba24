//! The OCI runtime (crun or runc, whichever the container's options name) run as a
//! command: `create`, `start`, `exec`, `kill`, `delete`, `pause`, `resume`, `update`,
//! `ps`. The shim is the only reaper of its children, so a call waits on its runtime
//! process through a pidfd and collects every other exit it reaps meanwhile, for the
//! caller to apply. Each call has a deadline; a runtime that hangs is killed.

use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use crate::stdio::Fds;

/// Longest a runtime command may take (a create under emulation takes about a second).
const DEADLINE: Duration = Duration::from_secs(60);
/// Most of a runtime's output or log read back.
const MAX_OUTPUT: u64 = 1 << 20;

/// An exit reaped: pid and status (128 + signal for a killed process).
pub type Reaped = (u32, u32);

#[derive(Debug, Clone)]
pub struct Runtime {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub bundle: PathBuf,
}

/// The exit status a shell would report.
pub fn status_of(ws: WaitStatus) -> Option<Reaped> {
    match ws {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw() as u32, code as u32)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw() as u32, 128 + sig as u32)),
        _ => None,
    }
}

/// Reaps every child that has exited, without blocking.
pub fn reap(into: &mut Vec<Reaped>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(ws) => into.extend(status_of(ws)),
        }
    }
}

/// The `msg` of the last JSON log line that has one (crun and runc log errors that way).
pub fn last_message(log: &str) -> Option<String> {
    log.lines().rev().find_map(|line| {
        let start = line.find("\"msg\":\"")? + 7;
        let mut out = String::new();
        let mut chars = line[start..].chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(out),
                '\\' => match chars.next()? {
                    'n' => out.push(' '),
                    't' => out.push(' '),
                    other => out.push(other),
                },
                c => out.push(c),
            }
        }
        None
    })
}

fn memfd(name: &str) -> Result<File, String> {
    nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map(File::from)
        .map_err(|e| format!("memfd: {e}"))
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; a
    // descriptor it returns is owned by nobody else.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: fd is a fresh descriptor from pidfd_open (checked non-negative).
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Most of a bundle config or runtime state file read.
const MAX_JSON: u64 = 16 << 20;

/// A JSON file read whole (bounded), never through a symlink.
pub fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = Vec::new();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|f| f.take(MAX_JSON).read_to_end(&mut text))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Whether an OCI spec has hooks of `kind` (`poststart`, `poststop`, ...).
pub fn has_hooks(spec: &serde_json::Value, kind: &str) -> bool {
    spec.get("hooks").and_then(|h| h.get(kind)).and_then(|v| v.as_array()).is_some_and(|a| !a.is_empty())
}

impl Runtime {
    /// Whether this is crun, whose state layout the shim's own start and delete know.
    pub fn is_crun(&self) -> bool {
        self.binary.file_name().and_then(|n| n.to_str()) == Some("crun")
    }

    /// The bundle's config.json.
    pub fn bundle_config(&self) -> Result<serde_json::Value, String> {
        read_json(&self.bundle.join("config.json"))
    }

    fn log_path(&self) -> PathBuf {
        self.bundle.join("log.json")
    }

    /// Runs `binary --root R --log L --log-format json ARGS`, with `stdio` as its fds
    /// 0-2 (the new process inherits them) or /dev/null. Returns its stdout; other exits
    /// reaped meanwhile go to `reaped`.
    pub fn run(&self, args: &[&str], stdio: Option<&Fds>, reaped: &mut Vec<Reaped>) -> Result<Vec<u8>, String> {
        use std::process::{Command, Stdio};
        let what = format!(
            "{} {}",
            self.binary.file_name().and_then(|n| n.to_str()).unwrap_or("runtime"),
            args.first().unwrap_or(&"")
        );
        let log = self.log_path();
        let _ = std::fs::remove_file(&log);
        let mut out = memfd("runtime-stdout")?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root).arg("--log").arg(&log).arg("--log-format").arg("json").args(args);
        cmd.current_dir(&self.bundle);
        let dup = |fd: &OwnedFd| fd.try_clone().map(Stdio::from).map_err(|e| format!("{what}: {e}"));
        match stdio {
            Some(fds) => {
                cmd.stdin(dup(&fds.stdin)?).stdout(dup(&fds.stdout)?).stderr(dup(&fds.stderr)?);
            }
            None => {
                let out = out.try_clone().map_err(|e| format!("{what}: {e}"))?;
                cmd.stdin(Stdio::null()).stdout(out).stderr(Stdio::null());
            }
        }
        let child = cmd.spawn().map_err(|e| format!("{}: {e}", self.binary.display()))?;
        drop(cmd);
        let pid = child.id();
        let status = wait_for(pid, reaped);
        let status = match status {
            Some(0) => {
                let mut buf = Vec::new();
                let _ = out.seek(std::io::SeekFrom::Start(0));
                let _ = out.by_ref().take(MAX_OUTPUT).read_to_end(&mut buf);
                return Ok(buf);
            }
            Some(s) => format!("exit status {s}"),
            None => format!("killed after {DEADLINE:?}"),
        };
        let mut text = String::new();
        if let Ok(f) = File::open(&log) {
            let _ = f.take(MAX_OUTPUT).read_to_string(&mut text);
        }
        Err(match last_message(&text) {
            Some(msg) => format!("{what}: {msg}"),
            None => format!("{what}: {status}"),
        })
    }

    /// Reads the pid file a create or exec wrote (a few digits, bounded).
    pub fn read_pid(path: &Path) -> Result<u32, String> {
        let mut text = String::new();
        File::open(path)
            .and_then(|f| f.take(32).read_to_string(&mut text))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        text.trim().parse().map_err(|_| format!("{}: not a pid: {text:?}", path.display()))
    }
}

/// Waits for child `pid` (at most [`DEADLINE`], then kills it); returns its status and
/// puts every other exit reaped on the way into `reaped`.
fn wait_for(pid: u32, reaped: &mut Vec<Reaped>) -> Option<u32> {
    let deadline = Instant::now() + DEADLINE;
    let pidfd = pidfd_open(pid);
    let mut killed = false;
    loop {
        if let Some(fd) = &pidfd {
            let left = deadline.saturating_duration_since(Instant::now());
            // Once killed, wait in steps of a second rather than spin.
            let left = if killed { Duration::from_secs(1) } else { left };
            let ms = u16::try_from(left.as_millis().min(10_000)).unwrap_or(10_000);
            let mut pfd = [nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut pfd, ms);
        } else {
            // No pidfd (an old kernel): block in waitpid below.
            match waitpid(None, Some(WaitPidFlag::__WALL)) {
                Ok(ws) => match status_of(ws) {
                    Some((p, s)) if p == pid => return Some(s),
                    Some(other) => reaped.push(other),
                    None => {}
                },
                Err(_) => return None,
            }
            continue;
        }
        let mut got = Vec::new();
        reap(&mut got);
        let mut mine = None;
        for (p, s) in got {
            if p == pid { mine = Some(s) } else { reaped.push((p, s)) }
        }
        if let Some(s) = mine {
            return (!killed).then_some(s);
        }
        if Instant::now() >= deadline && !killed {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            killed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_are_found_only_when_present() {
        let json = |t: &str| serde_json::from_str::<serde_json::Value>(t).expect("json");
        assert!(has_hooks(&json(r#"{"hooks":{"poststart":[{"path":"/bin/true"}]}}"#), "poststart"));
        assert!(!has_hooks(&json(r#"{"hooks":{"poststart":[]}}"#), "poststart"));
        assert!(!has_hooks(
            &json(r#"{"hooks":{"prestart":[{"path":"/x"}]},"process":{"env":["poststart=1"]}}"#),
            "poststart"
        ));
        assert!(has_hooks(&json(r#"{"hooks":{"poststop":[{"path":"/x"}]}}"#), "poststop"));
    }

    #[test]
    fn the_last_logged_message_names_the_failure() {
        let log = "{\"msg\":\"first\",\"level\":\"error\"}\n{\"level\":\"error\",\"msg\":\"executable file `x` not found in $PATH: No such file \\\"or\\\" directory\",\"time\":\"t\"}\n";
        assert_eq!(
            last_message(log).as_deref(),
            Some("executable file `x` not found in $PATH: No such file \"or\" directory")
        );
        assert_eq!(last_message("not json"), None);
    }

    #[test]
    fn a_runtime_call_returns_its_output_and_keeps_other_exits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("fake-runtime");
        std::fs::write(&bin, "#!/bin/sh\n# --root R --log L --log-format json ARGS\nlog=$4; shift 6\n[ \"$1\" = fail ] && { echo '{\"level\":\"error\",\"msg\":\"no such container\"}' >\"$log\"; exit 1; }\necho \"$@\"\n").expect("script");
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let rt = Runtime { binary: bin, root: dir.path().into(), bundle: dir.path().into() };
        let other = std::process::Command::new("true").spawn().expect("spawn").id();
        let mut reaped = Vec::new();
        let out = rt.run(&["state", "web"], None, &mut reaped).expect("run");
        assert_eq!(String::from_utf8_lossy(&out), "state web\n");
        let err = rt.run(&["fail", "web"], None, &mut reaped).expect_err("fails");
        assert_eq!(err, "fake-runtime fail: no such container");
        // The other child may exit after the calls; it is reaped by them or by reap().
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reaped.iter().any(|(p, s)| *p == other && *s == 0) {
            assert!(Instant::now() < deadline, "exit of {other} never reaped: {reaped:?}");
            reap(&mut reaped);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
