//! `[state] volume = NAME`: what hoist keeps across reboots lives on that volume, under
//! `hoist-state/` ([`hoist_guest::paths::STATE_SUBDIR`]): containerd's root (content store,
//! snapshots, metadata), the supervisor's generations and import records, and the logs
//! of the last [`LOG_BOOTS`] boots. PID 1 waits for the volume helper to be done with the
//! volume, then bind-mounts those directories over their places in RAM before containerd
//! and the supervisor start. A state volume that did not mount leaves the state in RAM for
//! this boot, said as a host problem.
//!
//! The volume is hostile ground (services may bind parts of it, though not `hoist-state`:
//! the config refuses that): every directory is opened component by component with
//! `O_NOFOLLOW`, and mounted from its descriptor (`/proc/self/fd/N`), never by a path
//! looked up twice.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use hoist_guest::nofollow::{self, fd_path};
use hoist_guest::paths;
use hoist_guest::volume::{State, mount_point, state_path};
use nix::mount::MsFlags;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::Event;
use crate::shutdown::Action;

/// How many boots' logs are kept (this one included).
pub const LOG_BOOTS: usize = 5;
const POLL: Duration = Duration::from_millis(20);

/// Past the volume's own `wait`, how long the helper may take to check (e2fsck) and mount
/// the state volume before PID 1 goes on with the state in RAM.
pub const CHECK_BUDGET: Duration = Duration::from_secs(120);

/// Why the state is not on the volume.
#[derive(Debug)]
pub enum Error {
    /// It stays in RAM for this boot, and why.
    Failed(String),
    /// A shutdown was asked while PID 1 waited.
    Shutdown(Action),
}

/// Waits (at most `wait`) for the volume helper (`helper`, PID 1's child) to say how
/// volume `name` ended up, then moves the state onto it. Shutdown requests arriving on
/// `rx` meanwhile end the wait.
pub fn setup(name: &str, wait: Duration, helper: Option<Pid>, rx: &Receiver<Event>) -> Result<(), Error> {
    if let State::Failed { reason, .. } = wait_state(name, wait, helper, rx)? {
        return Err(Error::Failed(format!("state volume {name} not mounted ({reason})")));
    }
    let mut bound = Vec::new();
    let moved = move_state(name, &mut bound);
    if moved.is_err() {
        // All or nothing: containerd's root must not be on the volume with the rest in RAM.
        for target in bound.iter().rev() {
            let _ = nix::mount::umount2(*target, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    moved.map_err(Error::Failed)
}

fn move_state(name: &str, bound: &mut Vec<&'static str>) -> Result<(), String> {
    let root = open_dir(None, &mount_point(name))?;
    let state = make_dir(&root, paths::STATE_SUBDIR)?;
    for (sub, target) in [
        ("containerd", paths::CONTAINERD_ROOT),
        ("generations", paths::GENERATIONS_DIR),
        ("images", paths::IMPORTS_DIR),
    ] {
        let dir = make_dir(&state, sub)?;
        bind(&dir, Path::new(target))?;
        bound.push(target);
    }
    let logs = make_dir(&state, "logs")?;
    let kept = rotate_logs(&logs)?;
    let current = kept.last().cloned().ok_or("no log directory")?;
    let dir = open_dir(Some(&logs), Path::new(&current))?;
    bind(&dir, Path::new(paths::LOG_DIR))?;
    bound.push(paths::LOG_DIR);
    let base = mount_point(name).join(paths::STATE_SUBDIR).join("logs");
    let list: String = kept.iter().map(|n| format!("{}\n", base.join(n).display())).collect();
    hoist_guest::atomic::write(Path::new(paths::LOG_BOOTS), list.as_bytes())
        .map_err(|e| format!("{}: {e}", paths::LOG_BOOTS))
}

fn wait_state(name: &str, wait: Duration, helper: Option<Pid>, rx: &Receiver<Event>) -> Result<State, Error> {
    let path = state_path(name);
    let mut helper_gone = helper.is_none();
    let started = Instant::now();
    let deadline = started + wait + CHECK_BUDGET;
    let mut said = false;
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Some(state) = State::parse(&text)
        {
            return Ok(state);
        }
        if helper_gone {
            return Err(Error::Failed(format!("the volume helper ended without a word on volume {name}")));
        }
        let now = Instant::now();
        if now >= deadline {
            let secs = (deadline - started).as_secs();
            return Err(Error::Failed(format!("state volume {name} not ready after {secs}s")));
        }
        if !said && now >= started + Duration::from_secs(10) {
            crate::console::say(&format!("waiting for state volume {name} (its disk, then e2fsck)"));
            said = true;
        }
        if let Some(pid) = helper {
            // Reaped here, before the main loop's reaper exists: ours to collect.
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                _ => helper_gone = true, // one more look at the file, then give up
            }
        }
        // The signals' channel is the sleep: a shutdown asked now is honoured now. Other
        // events (SIGCHLD of orphans) wait for the main loop's reaper.
        match rx.recv_timeout(POLL) {
            Ok(event) => {
                if let Some(action) = crate::shutdown_action(&event) {
                    return Err(Error::Shutdown(action));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
        }
    }
}

/// Directory `path` opened without following a symlink; the error names it.
fn open_dir(at: Option<&OwnedFd>, path: &Path) -> Result<OwnedFd, String> {
    nofollow::open_dir(at, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The directory `name` in `parent`, made (0700) if missing; a symlink there is an error.
fn make_dir(parent: &OwnedFd, name: &str) -> Result<OwnedFd, String> {
    nofollow::make_dir(parent, name, 0o700).map(|(fd, _)| fd).map_err(|e| format!("{name}: {e}"))
}

/// Bind-mounts the opened directory over `target` (made if missing, in RAM).
fn bind(dir: &OwnedFd, target: &Path) -> Result<(), String> {
    std::fs::create_dir_all(target).map_err(|e| format!("{}: {e}", target.display()))?;
    let source = fd_path(dir);
    nix::mount::mount(Some(&source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| format!("bind {} on {}: {e}", source.display(), target.display()))
}

/// Makes the next boot's log directory (`N`, one more than the newest) and removes all but
/// the newest [`LOG_BOOTS`]. Returns the kept names, oldest first (the last is this boot's).
pub fn rotate_logs(logs: &OwnedFd) -> Result<Vec<String>, String> {
    let dir = fd_path(logs);
    let mut boots: Vec<u64> = std::fs::read_dir(&dir)
        .map_err(|e| format!("logs: {e}"))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| n.to_string() == e.file_name().to_string_lossy())
        })
        .collect();
    boots.sort_unstable();
    let next = match boots.last() {
        None => 1,
        Some(n) => n.checked_add(1).ok_or("logs: no boot number left")?,
    };
    make_dir(logs, &next.to_string())?;
    boots.push(next);
    let drop = boots.len().saturating_sub(LOG_BOOTS);
    for old in &boots[..drop] {
        // remove_dir_all does not follow symlinks inside what it removes.
        if let Err(e) = std::fs::remove_dir_all(dir.join(old.to_string())) {
            log::warn!("logs of boot {old}: {e}");
        }
    }
    Ok(boots[drop..].iter().map(u64::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_boot_gets_the_next_log_directory_and_only_the_last_ones_stay() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = open_dir(None, tmp.path()).expect("open");
        let logs = make_dir(&root, "logs").expect("logs");
        std::fs::write(tmp.path().join("logs/notes"), b"x").expect("a stray file");
        std::fs::create_dir(tmp.path().join("logs/007")).expect("not canonical");
        let mut last = Vec::new();
        for _ in 0..7 {
            last = rotate_logs(&logs).expect("rotate");
        }
        assert_eq!(last, ["3", "4", "5", "6", "7"]);
        assert!(!tmp.path().join("logs/2").exists() && tmp.path().join("logs/7").is_dir());
        assert!(
            tmp.path().join("logs/notes").exists() && tmp.path().join("logs/007").exists(),
            "only boots are removed"
        );
        std::os::unix::fs::symlink("/", tmp.path().join("link")).expect("symlink");
        assert!(make_dir(&root, "link").is_err(), "a symlink is never followed");
    }
}
