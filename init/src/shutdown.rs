//! One orderly shutdown: supervisor (which stops the services through containerd), then
//! containerd, then a kill sweep of whatever is left, unmount, sync, and power off or
//! reboot. Every wait has a deadline; when one passes we escalate instead of waiting more.
//! Further shutdown requests while this runs are logged and ignored.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use nix::sys::reboot::{RebootMode, reboot};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::children::{Child, State};
use crate::{Event, reap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    PowerOff,
    Reboot,
}

/// Margin for containerd's round trips on top of the stop timeouts.
const BUDGET_MARGIN: Duration = Duration::from_secs(10);
/// The most the supervisor ever gets, so that shutdown always ends.
const BUDGET_CAP: Duration = Duration::from_secs(180);

/// How long the supervisor gets to stop every service and run the onshutdown stages, from
/// every service's stop timeout and every stage's timeout: services stop in dependency
/// order, so in the worst case one after another. Saturating: `Duration`'s `Sum` panics on
/// overflow, and a huge timeout in the config must not panic PID 1.
pub fn services_budget(timeouts: impl IntoIterator<Item = Duration>) -> Duration {
    timeouts.into_iter().fold(BUDGET_MARGIN, Duration::saturating_add).min(BUDGET_CAP)
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
    crate::console::say(&format!(
        "shutdown started ({})",
        if action == Action::Reboot { "reboot" } else { "power off" }
    ));
    for c in [&mut *supervisor, &mut *containerd] {
        if let State::Waiting(_) = c.state {
            c.state = State::Stopped;
        }
    }
    let mut children = [supervisor, containerd];
    // 1. The supervisor stops every service (stop signal, stop timeout, SIGKILL) and exits.
    stop_child(rx, &mut children, 0, services_budget);
    // 2. containerd; shims and containers it leaves behind are caught by the sweep.
    stop_child(rx, &mut children, 1, Duration::from_secs(5));
    // 3. Everything else.
    for (sig, grace) in [(Signal::SIGTERM, Duration::from_secs(2)), (Signal::SIGKILL, Duration::from_secs(2))] {
        if !others_alive() {
            break;
        }
        let _ = kill(Pid::from_raw(-1), sig);
        wait_until(rx, &mut children, grace, |_| !others_alive());
    }
    // A shim killed by the sweep may turn into a zombie right after the last reap.
    wait_until(rx, &mut children, Duration::from_secs(1), |_| zombies_of_init() == 0);
    crate::console::say(&format!(
        "all processes stopped, zombies={} after {} ms",
        zombies_of_init(),
        started.elapsed().as_millis()
    ));
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
    crate::console::say(if action == Action::Reboot { "rebooting" } else { "power off" });
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
    fn the_budget_sums_timeouts_with_a_margin_and_a_cap() {
        let secs = Duration::from_secs;
        assert_eq!(services_budget([]), secs(10));
        assert_eq!(services_budget([secs(10), secs(5), secs(30)]), secs(55));
        assert_eq!(services_budget([secs(100), secs(100)]), secs(180));
        // A sum past Duration::MAX saturates instead of panicking.
        assert_eq!(services_budget([Duration::MAX, secs(1), Duration::MAX]), secs(180));
    }
}
