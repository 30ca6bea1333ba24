//! One orderly shutdown: supervisor (which stops the services in order; started once more
//! if it was down, see [`restart_for_stop`]), then containerd together with a kill sweep of
//! whatever is left, unmount, sync, and power off or reboot. Every wait has a deadline;
//! when one passes we escalate instead of waiting more.
//! Further shutdown requests while this runs are logged and ignored.

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use nix::sys::reboot::{RebootMode, reboot};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use hoist_guest::console::Line;

use crate::children::{Child, State};
use crate::{Event, reap};

pub use hoist_guest::signals::Action;

/// What shutdown starts again before the ordered stop.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restart {
    pub containerd: bool,
    pub supervisor: bool,
}

/// Only the supervisor stops the services in order (stop signal, stop timeout, reverse
/// dependency order, then the onshutdown stages); the kill sweep does none of that. When
/// shutdown finds it waiting for its restart (it crashed) or given up on, the services still
/// run (their shims outlive both containerd and the supervisor), so it is started once more,
/// with containerd if that is waiting for its restart too. A supervisor never started
/// (shutdown during boot) has no services to stop, and a failed containerd runs none.
pub fn restart_for_stop(supervisor: State, containerd: State) -> Restart {
    if !matches!(supervisor, State::Waiting(_) | State::Failed) {
        return Restart::default();
    }
    match containerd {
        State::Running(_) => Restart { containerd: false, supervisor: true },
        State::Waiting(_) => Restart { containerd: true, supervisor: true },
        State::Failed | State::Stopped => Restart::default(),
    }
}

/// Does the `SigCgt` mask of a `/proc/PID/status` text include `sig`?
pub fn catches(status: &str, sig: Signal) -> bool {
    let Some(mask) = status.lines().find_map(|l| l.strip_prefix("SigCgt:")) else { return false };
    let bit = sig as i32 - 1;
    u64::from_str_radix(mask.trim(), 16).is_ok_and(|m| (0..64).contains(&bit) && m & (1 << bit) != 0)
}

/// Has process `pid` installed a handler for `sig` (`proc` is /proc)? Only a child that
/// has exec'd its own program counts: between fork and exec a child is a copy of PID 1,
/// with PID 1's handlers, and a signal sent then meets the program's default action.
pub fn catches_signal(proc: &Path, pid: Pid, sig: Signal) -> bool {
    let dir = proc.join(pid.to_string());
    let exe = |d: &Path| std::fs::read_link(d.join("exe")).ok();
    let exec_done = exe(&dir).is_some_and(|e| Some(e) != exe(&proc.join("self")));
    exec_done && std::fs::read_to_string(dir.join("status")).is_ok_and(|s| catches(&s, sig))
}

/// Starts a child for the shutdown sequence: no restart if it fails.
fn start_once(child: &mut Child) {
    log::info!("starting {} again so that the services stop in order", child.name);
    child.start(Instant::now());
    if child.pid().is_none() {
        child.state = State::Stopped;
    }
}

/// Waits until `done()` holds or `timeout` passes, reaping children as they exit.
fn wait_until(
    rx: &Receiver<Event>,
    children: &mut [&mut Child],
    timeout: Duration,
    mut done: impl FnMut(&[&mut Child]) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        reap(children, true);
        if done(children) {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        match rx.recv_timeout((deadline - now).min(Duration::from_millis(200))) {
            Ok(Event::Signal(_)) | Err(_) => {}
            Ok(Event::PowerButton) => log::info!("shutdown already in progress"),
        }
    }
}

fn stop_child(rx: &Receiver<Event>, children: &mut [&mut Child], which: usize, timeout: Duration) {
    if children[which].pid().is_none() {
        return;
    }
    let name = children[which].name;
    children[which].signal(Signal::SIGTERM);
    if !wait_until(rx, children, timeout, |c| c[which].pid().is_none()) {
        log::warn!("{name} did not stop within {} s: killing it", timeout.as_secs());
        children[which].signal(Signal::SIGKILL);
        wait_until(rx, children, Duration::from_secs(2), |c| c[which].pid().is_none());
    }
}

/// The supervisor (`children[0]`, containerd is `children[1]`) gets the whole budget to stop
/// the services. It handles SIGTERM only once it is connected to containerd; a SIGTERM
/// before that would kill it with the services still running, so when containerd runs we
/// first wait, out of the same budget, until it catches SIGTERM. A supervisor that has run
/// for a while already does; one just started again takes a second or so.
///
/// A supervisor that ends otherwise than by exiting 0 (it was dying when shutdown came: a
/// SIGKILL not yet delivered) did not stop the services; it is started once more for that.
fn stop_supervisor(rx: &Receiver<Event>, children: &mut [&mut Child], budget: Duration) {
    let deadline = Instant::now() + budget;
    for attempt in 0..2 {
        if attempt == 1 {
            if children[0].last_status == Some(0) || children[1].pid().is_none() {
                return;
            }
            log::warn!("supervisor ended with status {:?} during shutdown", children[0].last_status);
            start_once(children[0]);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if children[0].pid().is_some() && children[1].pid().is_some() {
            let ready = |c: &[&mut Child]| {
                c[0].pid().is_none_or(|pid| catches_signal(Path::new("/proc"), pid, Signal::SIGTERM))
            };
            if !wait_until(rx, children, left, ready) {
                log::warn!("supervisor handles no SIGTERM after {} s", left.as_secs());
            }
        }
        stop_child(rx, children, 0, deadline.saturating_duration_since(Instant::now()));
    }
}

/// Any process left besides PID 1 (and kernel threads)?
fn others_alive() -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else { return false };
        // kernel threads have an empty cmdline
        pid != 1 && std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| !c.is_empty()).unwrap_or(false)
    })
}

/// Processes in state Z whose parent is PID 1.
pub fn zombies_of_init() -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|s| s.parse::<u32>().is_ok()))
        .filter(|e| {
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            status.lines().any(|l| l.starts_with("State:") && l.contains('Z'))
                && status.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["PPid:", "1"])
        })
        .count()
}

/// Runs the whole sequence and ends the machine. Never returns.
pub fn run(
    action: Action,
    rx: &Receiver<Event>,
    supervisor: &mut Child,
    containerd: &mut Child,
    services_budget: Duration,
) -> ! {
    let started = Instant::now();
    crate::console::print(&Line::ShutdownStarted(action));
    // A child that died just before the request (the supervisor SIGKILLed, then SIGTERM
    // to PID 1 at once) may not be reaped yet: reap it, so it counts as down, not running.
    reap(&mut [&mut *supervisor, &mut *containerd], false);
    let restart = restart_for_stop(supervisor.state, containerd.state);
    for c in [&mut *supervisor, &mut *containerd] {
        if let State::Waiting(_) = c.state {
            c.state = State::Stopped;
        }
    }
    if restart.containerd {
        start_once(containerd);
    }
    if restart.supervisor {
        start_once(supervisor);
    }
    let mut children = [supervisor, containerd];
    // 1. The supervisor stops every service (stop signal, stop timeout, SIGKILL) and exits.
    stop_supervisor(rx, &mut children, services_budget);
    // 2. containerd and everything else (shims, loggers, what a SIGKILLed service left) at
    //    once: the services are stopped, and one grace for all is shorter than containerd's
    //    exit followed by the sweep's. containerd gets the longer grace it had alone.
    for (sig, grace) in [(Signal::SIGTERM, Duration::from_secs(5)), (Signal::SIGKILL, Duration::from_secs(2))] {
        if !others_alive() {
            break;
        }
        let _ = kill(Pid::from_raw(-1), sig);
        wait_until(rx, &mut children, grace, |_| !others_alive());
    }
    // A shim killed by the sweep may turn into a zombie right after the last reap.
    wait_until(rx, &mut children, Duration::from_secs(1), |_| zombies_of_init() == 0);
    let after_ms = started.elapsed().as_millis() as u64;
    crate::console::print(&Line::AllStopped { zombies: zombies_of_init(), after_ms });
    finish(action)
}

/// Unmount, sync, and the reboot(2) call. Also the end of every fatal error.
pub fn finish(action: Action) -> ! {
    nix::unistd::sync();
    let busy = crate::mounts::unmount_all();
    if busy > 0 {
        log::warn!("{busy} filesystems stayed mounted (remounted read-only where possible)");
    }
    nix::unistd::sync();
    crate::console::print(&Line::Last(action));
    let mode = if action == Action::Reboot { RebootMode::RB_AUTOBOOT } else { RebootMode::RB_POWER_OFF };
    loop {
        let _ = reboot(mode);
        // reboot(2) only returns on error; nothing better to do than try again slowly.
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_supervisor_down_at_shutdown_is_started_again_to_stop_the_services() {
        let pid = State::Running(Pid::from_raw(42));
        let waiting = State::Waiting(Instant::now());
        let none = Restart::default();
        let supervisor = Restart { containerd: false, supervisor: true };
        let both = Restart { containerd: true, supervisor: true };
        for (sup, ctd, want) in [
            // running: it stops the services itself
            (pid, pid, none),
            (pid, waiting, none),
            // in its restart backoff or given up on, the services still run
            (waiting, pid, supervisor),
            (State::Failed, pid, supervisor),
            (waiting, waiting, both),
            (State::Failed, waiting, both),
            // containerd failed: no supervisor can stop anything; the sweep does
            (waiting, State::Failed, none),
            // never started (shutdown during boot): no services
            (State::Stopped, State::Stopped, none),
            (State::Stopped, pid, none),
        ] {
            assert_eq!(restart_for_stop(sup, ctd), want, "supervisor {sup:?}, containerd {ctd:?}");
        }
    }

    #[test]
    fn a_sigterm_handler_is_read_from_proc_status() {
        // SigCgt of a tokio program that handles SIGTERM (bit 14) and SIGCHLD (bit 16)
        let with = "Name:\thoist-supervisor\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000001000\nSigCgt:\t0000000180014000\n";
        assert!(catches(with, Signal::SIGTERM));
        assert!(catches(with, Signal::SIGCHLD));
        assert!(!catches(with, Signal::SIGINT));
        assert!(!catches("SigCgt:\t0000000000000000\n", Signal::SIGTERM));
        assert!(!catches("Name:\tx\n", Signal::SIGTERM));

        let proc = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(proc.path().join("7")).expect("mkdir");
        std::fs::write(proc.path().join("7/status"), with).expect("write");
        std::fs::create_dir_all(proc.path().join("self")).expect("mkdir");
        std::os::unix::fs::symlink("/init", proc.path().join("self/exe")).expect("self/exe");
        std::os::unix::fs::symlink("/usr/bin/hoist-supervisor", proc.path().join("7/exe")).expect("7/exe");
        assert!(catches_signal(proc.path(), Pid::from_raw(7), Signal::SIGTERM));
        assert!(!catches_signal(proc.path(), Pid::from_raw(8), Signal::SIGTERM));
        // Forked, not yet exec'd: PID 1's own image and handlers, which do not count.
        std::fs::create_dir_all(proc.path().join("9")).expect("mkdir");
        std::fs::write(proc.path().join("9/status"), with).expect("write");
        std::os::unix::fs::symlink("/init", proc.path().join("9/exe")).expect("9/exe");
        assert!(!catches_signal(proc.path(), Pid::from_raw(9), Signal::SIGTERM));

        // and the real /proc agrees once a handler exists (our own image: only the mask)
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        signal_hook::flag::register(libc::SIGUSR2, flag).expect("handler");
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        assert!(catches(&status, Signal::SIGUSR2));
        assert!(!catches_signal(Path::new("/proc"), nix::unistd::getpid(), Signal::SIGUSR2));
    }
}
