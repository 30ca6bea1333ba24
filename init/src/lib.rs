//! hoist-init: PID 1 of a hoist host.
//!
//! It does the machine's duties and nothing else (DESIGN.md decision 1): switch to a root
//! that the OCI runtime can pivot from, mount the API filesystems, set hostname, sysctls and
//! rlimits, load the kernel modules containerd and the services need (overlayfs, the
//! configured ones), bring loopback up, then start and keep alive two children: containerd
//! and the supervisor (`hoist-supervisor`, which runs the services). Meanwhile a thread
//! loads what the devices ask for and configures a static address over netlink with a
//! deadline, then reports the built-in `network` target ([`hoist_guest::network`]); with
//! `mode = "dhcp"` a third kept child, the DHCP client ([`dhcp`]), does that instead. It is the
//! machine's one reaper, and it turns SIGTERM, SIGINT, SIGPWR and the ACPI power button
//! into one orderly shutdown ([`shutdown`]). Volumes are set up by a child of its own
//! ([`volumes`]) while containerd starts; with a `[state]` volume, PID 1 waits for that one
//! and moves containerd's root, the generations and the logs onto it first ([`state`]). Its signal handlers are installed before
//! anything else, so a shutdown asked during boot is kept and honoured before the children
//! start.
//!
//! It never runs gRPC, never parses images and never parses the TOML: what it needs of the
//! host config (hostname, sysctls, modules, network, containerd's log cap, the stop
//! budget) the builder writes as a few lines ([`hoist_guest::boot`]), so PID 1 links no
//! TOML parser and no validation (its binary went from 2.1 MB to 0.8 MB). Errors are
//! mapped to actions: a failed optional step is logged and boot goes on; a failed
//! essential step (mounting /proc, a panic) is logged, then the machine powers off on
//! purpose instead of a kernel panic.
//!
//! Boot phases are printed as `hoist: phase NAME uptime_ms=N` and written to
//! [`paths::TIMELINE`] for the supervisor's ready line. What PID 1 shares with the
//! builder and the supervisor (paths, console lines, its signal protocol, the module index,
//! capped log files) is defined in `hoist-guest`; this crate is PID 1 only.

pub mod blockdev;
pub mod children;
pub mod console;
pub mod dhcp;
pub mod kmod;
pub mod mounts;
pub mod net;
pub mod power;
pub mod problems;
pub mod shutdown;
pub mod state;
pub mod system;
pub mod volumes;

use std::path::Path;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use children::Child;
use hoist_guest::boot::{Boot, Network};
use hoist_guest::kernel::DEBUG_FLAG;
use hoist_guest::paths;
use shutdown::Action;

/// What wakes the main loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Signal(i32),
    PowerButton,
}

/// Reaps every exited child (`waitpid(-1, WNOHANG)` until none is left) and tells the
/// kept children about their own exits. Orphans reparented to us are reaped and forgotten.
pub fn reap(children: &mut [&mut Child], stopping: bool) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => {
                let Some(pid) = status.pid() else { continue };
                for c in children.iter_mut() {
                    if c.pid() == Some(pid) {
                        log::log!(
                            if stopping { log::Level::Debug } else { log::Level::Warn },
                            "{} (pid {pid}) exited: {}",
                            c.name,
                            describe(&status)
                        );
                        c.last_status = match status {
                            WaitStatus::Exited(_, code) => Some(code),
                            WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
                            _ => None,
                        };
                        c.on_exit(Instant::now(), stopping);
                    }
                }
            }
        }
    }
}

fn describe(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("killed by {sig} (status {})", 128 + *sig as i32),
        other => format!("{other:?}"),
    }
}

/// Entry point of the `hoist-init` binary. Never returns.
pub fn main() -> ! {
    std::panic::set_hook(Box::new(|info| {
        console::say(&format!("PID 1 panicked: {info}"));
    }));
    match std::panic::catch_unwind(boot) {
        Ok(never) => never,
        Err(_) => fatal("panic"),
    }
}

/// The end of every unrecoverable error: say why, sync, power off on purpose.
pub fn fatal(why: &str) -> ! {
    console::say(&format!("fatal: {why}; powering off"));
    shutdown::finish(Action::PowerOff)
}

fn boot() -> ! {
    // Before the heap and the threads' arenas grow: with the kernel's THP "always"
    // (Debian's), one huge page under one of them took 2 MB for a few kB used (RSS 2.5 or
    // 4.5 MB by chance). Children get the default back before exec ([`children`]). One
    // syscall; its failure is logged once logging is set up.
    let thp = nix::sys::prctl::set_thp_disable(true);
    // Then, before anything else: the kernel drops a signal PID 1 has no handler for, so
    // until the handlers exist a SIGTERM (or SIGPWR, Ctrl-Alt-Del's SIGINT) would be lost.
    // From here on it waits in the channel and is honoured before the children start, or
    // by the main loop.
    let (tx, rx) = channel();
    start_signal_thread(tx.clone());
    let mut timeline = Vec::new();
    console::phase(&mut timeline, "init");
    // Before any mount: / must be a mount runc can pivot from, and the API filesystems
    // mounted after the switch are then inside the new root.
    if let Err(e) = mounts::switch_to_bind_root() {
        fatal(&format!("root switch: {e}"));
    }
    console::phase(&mut timeline, "root");
    if let Err(e) = mounts::mount_api_filesystems() {
        fatal(&e.to_string());
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    console::init_logging(system::cmdline_flag(&cmdline, DEBUG_FLAG));
    if let Err(e) = thp {
        log::warn!("transparent huge pages stay on for PID 1: {e}");
    }
    console::phase(&mut timeline, "mounts");

    let config = match read_boot_config(Path::new(paths::BOOT_CONFIG)) {
        Ok(c) => c,
        Err(e) => fatal(&format!("{}: {e}", paths::BOOT_CONFIG)),
    };
    setup_system(&config);
    let loader = load_modules(&config);
    console::phase(&mut timeline, "modules");

    // The button's input device exists once its driver module is loaded.
    let buttons = power::watch(tx);
    log::debug!("watching {buttons} power button(s)");

    // What every service needs whatever the network: loopback, and the resolv.conf each
    // one bind-mounts. The rest of the network is set up while containerd starts.
    if let Err(e) = system::write_resolv_conf(Path::new("/etc"), &config.network) {
        log::warn!("resolv.conf: {e}");
    }
    if let Err(e) = net::loopback_up() {
        log::warn!("loopback: {e}");
    }

    let _ = std::fs::create_dir_all(paths::RUN_DIR);
    // Disks are found, checked and mounted while containerd starts; services that bind a
    // volume wait for its state file.
    let helper = if config.volumes.is_empty() { None } else { volumes::spawn() };
    let mut state = None;
    if let Some(name) = &config.state {
        // The state volume is waited for here: it holds containerd's root and the logs.
        let wait = config.volumes.iter().find(|v| v.name == *name).map_or(Duration::ZERO, |v| v.wait);
        match state::setup(name, wait, helper, &rx) {
            Ok(()) => console::phase(&mut timeline, "state"),
            Err(state::Error::Failed(e)) => problems::report(format!("{e}: hoist's state is in RAM for this boot")),
            Err(state::Error::Shutdown(action)) => state = Some(action),
        }
    }
    let _ = std::fs::create_dir_all(paths::LOG_DIR);
    if let Err(e) = std::fs::write(paths::TIMELINE, hoist_guest::timeline::format(&timeline)) {
        log::warn!("{}: {e}", paths::TIMELINE);
    }

    let mut containerd = Child::new("containerd", paths::CONTAINERD, &["--config", paths::CONTAINERD_CONFIG])
        .log_file(paths::CONTAINERD_LOG, config.log_max)
        .oom_score_adj(-999);
    // The supervisor waits for containerd through the API itself, so both start now and
    // the supervisor's own start-up overlaps containerd's.
    let mut supervisor = Child::new("supervisor", paths::SUPERVISOR, &[]).oom_score_adj(-999);
    if system::cmdline_flag(&cmdline, DEBUG_FLAG) {
        supervisor = supervisor.env("RUST_LOG", "debug");
    }
    let budget = config.stop_budget;
    // Asked during boot: shut down before starting anything (the sequence skips children
    // that never ran).
    if let Some(action) = state.or_else(|| pending_shutdown(&rx)) {
        shutdown::run(action, &rx, &mut supervisor, &mut containerd, budget)
    }
    // With DHCP a helper process holds the lease (see [`dhcp`] for why not a thread here);
    // it is kept alive like the other two and stopped by shutdown's sweep, which makes it
    // release the lease.
    let mut dhcp = (config.network.enabled && config.network.dhcp)
        .then(|| Child::new("dhcp", "/proc/self/exe", &[dhcp::ARG]).oom_score_adj(-999));
    let now = Instant::now();
    containerd.start(now);
    supervisor.start(now);
    if let Some(d) = &mut dhcp {
        d.start(now);
    }
    start_network_thread(loader, config.network.clone());
    main_loop(&rx, &mut supervisor, &mut containerd, dhcp, budget)
}

/// The builder's line file ([`hoist_guest::boot`]), read with a bound.
pub(crate) fn read_boot_config(path: &Path) -> Result<Boot, String> {
    use std::io::Read;
    let mut text = String::new();
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    file.take(hoist_guest::boot::MAX_BYTES).read_to_string(&mut text).map_err(|e| e.to_string())?;
    Boot::parse(&text).map_err(|e| e.to_string())
}

fn setup_system(config: &Boot) {
    let etc = Path::new("/etc");
    if let Err(e) = system::set_hostname(etc, &config.hostname) {
        log::warn!("hostname {}: {e}", config.hostname);
    }
    for (key, err) in system::apply_sysctls(Path::new("/proc/sys"), &config.sysctls) {
        log::warn!("sysctl {key}: {err}");
    }
    if let Err(e) = system::raise_rlimits() {
        log::warn!("rlimits: {e}");
    }
    if let Err(e) = system::set_oom_score_adj("self", -1000) {
        log::warn!("oom_score_adj: {e}");
    }
    // Ctrl-Alt-Del sends us SIGINT instead of rebooting on the spot.
    let _ = nix::sys::reboot::set_cad_enabled(false);
}

/// Loads what must be there before containerd and the services start: overlayfs (the
/// snapshotter checks for it when containerd starts), the power button's drivers, and the
/// modules the config asks for (a service may need them). The devices' own drivers (the
/// NIC's among them) are left to the network thread, which gets the loader.
/// The module index of the running kernel.
pub(crate) fn loader() -> Result<kmod::Loader, String> {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().to_string()).unwrap_or_default();
    let dir = Path::new(paths::MODULES_DIR).join(&release);
    kmod::Loader::new(&dir).map_err(|e| format!("no kernel modules for {release}: {e}"))
}

fn load_modules(config: &Boot) -> Option<kmod::Loader> {
    let mut loader = match loader() {
        Ok(l) => l,
        Err(e) => {
            log::warn!("{e}");
            return None;
        }
    };
    loader.load_present(hoist_guest::kernel::ALWAYS_MODULES);
    let before = loader.report.failed.len();
    for (module, why) in &loader.report.failed {
        log::warn!("module {module}: {why}");
    }
    // A module the config asks for is a feature the user expects: keep saying it is missing.
    loader.load(&config.modules);
    for (module, why) in &loader.report.failed[before..] {
        problems::report(format!("module {module} (from [kernel] modules) did not load: {why}"));
    }
    Some(loader)
}

/// The devices' drivers, then the network, off the boot's path: containerd and the
/// supervisor are starting meanwhile, and only services that depend on the `network`
/// target wait for the state file written at the end (up, or degraded with the reason,
/// also after a panic here). It comes [`NETWORK_DEADLINE`] after the drivers are loaded at
/// the latest, plus the kernel's answers to the three netlink requests (immediate; each
/// bounded by [`net::ANSWER_TIMEOUT`]).
fn start_network_thread(loader: Option<kmod::Loader>, network: Network) {
    let spawned = std::thread::Builder::new().name("network".into()).spawn(move || {
        // Only the main thread's panics end the machine: one here must still reach the
        // target (degraded), or the services that depend on it would wait for ever.
        let job = std::panic::AssertUnwindSafe(move || {
            if let Some(mut loader) = loader {
                let before = loader.report.failed.len();
                loader.load_for_devices(Path::new("/sys"));
                for (module, why) in loader.report.failed.iter().skip(before) {
                    log::warn!("module {module}: {why}");
                }
                log::debug!("modules loaded: {}", loader.report.loaded.join(" "));
            }
            // With DHCP the helper reports the target, once it has a lease or gave up waiting.
            (!network.dhcp).then(|| setup_network(&network).err())
        });
        // The supervisor says it on the console and in status when it reads the state.
        match std::panic::catch_unwind(job) {
            Ok(Some(degraded)) => write_network_state(degraded),
            Ok(None) => {}
            Err(_) => write_network_state(Some("network setup panicked".into())),
        }
    });
    if let Err(e) = spawned {
        // Reached degraded, so the services that depend on it do not wait for ever.
        write_network_state(Some(format!("network thread: {e}")));
    }
}

fn write_network_state(degraded: Option<String>) {
    let state = hoist_guest::network::State { uptime_ms: console::uptime_ms() as u64, degraded, detail: None };
    console::print(&hoist_guest::console::Line::Phase { name: "network".into(), uptime_ms: state.uptime_ms });
    if let Err(e) = hoist_guest::atomic::write(Path::new(paths::NETWORK_STATE), state.format().as_bytes()) {
        log::warn!("{}: {e}", paths::NETWORK_STATE);
    }
}

/// How long the network gets, from its drivers loaded, for its interface to appear and
/// carrier to come up. Past it the `network` target is reached degraded and the boot goes on.
pub const NETWORK_DEADLINE: Duration = Duration::from_secs(5);

/// The configured interface's address, link and route, then carrier; the error is why the
/// network is degraded. A disabled network, or one without an address, is up at once
/// (loopback only, or nothing PID 1 configures).
fn setup_network(n: &Network) -> Result<(), String> {
    let Some((addr, prefix)) = n.address.filter(|_| n.enabled) else {
        return Ok(());
    };
    let deadline = Instant::now() + NETWORK_DEADLINE;
    net::configure(&n.interface, addr, prefix, n.gateway, NETWORK_DEADLINE).map_err(|e| e.to_string())?;
    net::wait_carrier(Path::new("/sys/class/net"), &n.interface, deadline)
        .map_err(|waited| format!("no carrier on {} after {:.1}s", n.interface, waited.as_secs_f64()))
}

fn start_signal_thread(tx: std::sync::mpsc::Sender<Event>) {
    use libc::SIGPWR;
    use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM, SIGUSR1};
    let mut signals = match signal_hook::iterator::Signals::new([SIGCHLD, SIGTERM, SIGINT, SIGPWR, SIGUSR1]) {
        Ok(s) => s,
        Err(e) => fatal(&format!("signal handlers: {e}")),
    };
    let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            if tx.send(Event::Signal(sig)).is_err() {
                return;
            }
        }
    });
    if let Err(e) = spawned {
        fatal(&format!("signal thread: {e}"));
    }
}

/// The shutdown an event asks for, if any: SIGTERM, SIGINT (Ctrl-Alt-Del), SIGPWR and the
/// power button power off; SIGUSR1 (the control API's reboot) reboots.
pub fn shutdown_action(event: &Event) -> Option<Action> {
    match event {
        Event::Signal(sig) => Action::from_signal(*sig),
        Event::PowerButton => Some(Action::PowerOff),
    }
}

/// Drains what arrived during boot and returns the first shutdown asked for; later requests
/// are repeats (one shutdown for a storm of signals). Orphans that exited meanwhile are reaped.
pub fn pending_shutdown(rx: &Receiver<Event>) -> Option<Action> {
    let mut action = None;
    while let Ok(event) = rx.try_recv() {
        if event == Event::Signal(signal_hook::consts::SIGCHLD) {
            reap(&mut [], false);
        } else if action.is_none() {
            action = shutdown_action(&event);
            if action.is_some() {
                log::debug!("{event:?} during boot: starting shutdown");
            }
        }
    }
    action
}

fn main_loop(
    rx: &Receiver<Event>,
    supervisor: &mut Child,
    containerd: &mut Child,
    mut dhcp: Option<Child>,
    budget: Duration,
) -> ! {
    use signal_hook::consts::SIGCHLD;
    loop {
        let now = Instant::now();
        let dhcp_next = dhcp.as_mut().and_then(|d| d.poll(now));
        let next = [supervisor.poll(now), containerd.poll(now), dhcp_next].into_iter().flatten().min();
        let wait = next.map(|t| t.saturating_duration_since(now)).unwrap_or(Duration::from_secs(3600));
        let event = match rx.recv_timeout(wait) {
            Ok(e) => e,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => fatal("signal thread ended"),
        };
        if event == Event::Signal(SIGCHLD) {
            match &mut dhcp {
                Some(d) => reap(&mut [&mut *supervisor, &mut *containerd, d], false),
                None => reap(&mut [&mut *supervisor, &mut *containerd], false),
            }
            continue;
        }
        let Some(action) = shutdown_action(&event) else {
            log::debug!("ignoring {event:?}");
            continue;
        };
        log::debug!("{event:?}: starting shutdown");
        shutdown::run(action, rx, supervisor, containerd, budget)
    }
}

#[cfg(test)]
mod tests {
    use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1};

    use super::*;

    #[test]
    fn events_map_to_shutdowns() {
        assert_eq!(shutdown_action(&Event::Signal(SIGTERM)), Some(Action::PowerOff));
        assert_eq!(shutdown_action(&Event::Signal(SIGINT)), Some(Action::PowerOff));
        assert_eq!(shutdown_action(&Event::Signal(libc::SIGPWR)), Some(Action::PowerOff));
        assert_eq!(shutdown_action(&Event::PowerButton), Some(Action::PowerOff));
        assert_eq!(shutdown_action(&Event::Signal(SIGUSR1)), Some(Action::Reboot));
        assert_eq!(shutdown_action(&Event::Signal(SIGCHLD)), None);
        assert_eq!(shutdown_action(&Event::Signal(SIGHUP)), None);
    }

    #[test]
    fn a_shutdown_asked_during_boot_is_kept_for_later() {
        let (tx, rx) = channel();
        assert_eq!(pending_shutdown(&rx), None);
        for event in [Event::Signal(SIGHUP), Event::Signal(SIGUSR1), Event::Signal(SIGTERM), Event::PowerButton] {
            tx.send(event).expect("send");
        }
        // The first request decides; the rest were drained as repeats.
        assert_eq!(pending_shutdown(&rx), Some(Action::Reboot));
        assert_eq!(pending_shutdown(&rx), None);
    }
}
