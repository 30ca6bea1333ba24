//! hoist-services: the supervisor that runs every service of a hoist host as a containerd
//! container and keeps it running, plus the per-task log forwarder.
//!
//! `hoist-supervisor` is started (and restarted, if it dies) by PID 1. It is a reconciler:
//! a pure [`core`] holds the desired state (every service's [`plan`], from the host config
//! and the build manifest) and the observed state, and decides; the [`driver`] is one async
//! loop that feeds the core its inputs and carries out its effects against containerd
//! through the [`driver::Runtime`] trait ([`runner`] implements it with [`containerd`]).
//! Each service is a container in namespace `hoist` with an OCI spec built from
//! containerd's defaults ([`spec`]) and a rootfs that is the image tree unpacked at build
//! time (overlay with a tmpfs upper layer). On start the core adopts tasks that already
//! run, so a supervisor restart restarts no service; what must outlive the supervisor is
//! in [`state`].
//!
//! PID 1 starts the supervisor before its network setup ends. Services that list the
//! built-in `network` target in `depends_on` wait until PID 1 writes how that setup ended
//! ([`hoist_guest::network`]; the driver polls for the file and the core starts them then,
//! degraded or not); the others start at once. A service that binds a volume waits the
//! same way for PID 1's volume helper to say it is mounted ([`hoist_guest::volume`]); the
//! directories it binds are made and staged without following symlinks ([`volume_dirs`]).
//! A `network = "bridge"` service gets its namespace, address and NAT rules from
//! [`bridge`] before each start.
//!
//! Service output never passes through the supervisor: each task's shim (`hoist-shim`)
//! reads its stdout and stderr and writes prefixed lines to the console and to
//! `/var/log/NAME.log` ([`hoist_guest::servicelog`]), so logs keep flowing while the
//! supervisor restarts.
//!
//! A new config arrives with `hoist apply` as a new generation ([`apply`]): the request is
//! validated and made into a [`candidate`], compared with what runs ([`diff`]: per-service
//! actions and the changed keys), recorded ([`generations`], under /run, on the state
//! volume with `[state]`), and handed to the
//! core as one more desired state, which rolls it out readiness-gated in dependency order
//! and rolls it back by itself when a touched service fails. Images the host lacks travel
//! as blobs into containerd's content store and are unpacked through its snapshotter
//! ([`images`], [`content`]); what no kept generation uses is removed.
//!
//! Stop signals go straight to the service's cgroup ([`cgroup_signal`]: `cgroup.kill` for
//! SIGKILL, pidfds for the rest), not through containerd, its shim and an exec of the OCI
//! runtime, which took about 0.5 s per signal under TCG. Exits are seen the same way: a
//! pidfd on the main process and the exit status in its zombie ([`exit_watch`]), before
//! the shim reports it to containerd (0.3-0.9 s later under TCG); containerd's answer
//! counts when the zombie is gone.
//!
//! Readiness probes ([`ready`], [`notify`]) and the restart policy ([`policy`]) live here
//! too, as does the control API's server ([`api`]): gRPC on a Unix socket and on TCP with
//! mutual TLS, served from the first moment and answered by the driver through a command
//! channel. The proto, its generated types and the client are `hoist-api`'s.
//!
//! What the supervisor shares with PID 1, the builder and the readers of the console
//! (paths, the console lines it prints, PID 1's signals, the logger URI) is `hoist-guest`'s;
//! this crate does not depend on PID 1.
//!
//! Modules depend one way, with no cycle: `core` on `plan`, `policy` and `state` only (no
//! I/O); `plan` on `spec` and `policy`; `diff` and `candidate` on `plan` (pure);
//! `generations` on `diff`; `images` on `content` and `containerd`; `apply` on `candidate`,
//! `diff`, `generations`, `images` and `core`; `driver` on `core`, `api`, `apply` and
//! `notify`; `runner` on `driver`'s trait, `plan`, `ready`, `cgroup_signal`, `exit_watch`
//! and `containerd`; `notify` on `core`'s input type; `cgroup_signal` on `spec` for the
//! path, and `exit_watch` on `cgroup_signal`. Nothing depends back on `driver` or `runner`.

pub mod api;
pub mod apply;
pub mod bridge;
pub mod candidate;
pub mod cgroup_signal;
pub mod containerd;
pub mod content;
pub mod core;
pub mod diff;
pub mod driver;
pub mod exec;
pub mod exit_watch;
pub mod generations;
pub mod images;
pub mod notify;
pub mod plan;
pub mod policy;
pub mod ready;
pub mod runner;
pub mod spec;
/// The default seccomp profile lives with the config (the build compiles it too).
pub use hoist_config::seccomp;
pub mod state;
pub mod stats;
pub mod volume_dirs;

use std::io::Write;

static LOG_FILE: std::sync::Mutex<Option<hoist_guest::logfile::Capped>> = std::sync::Mutex::new(None);

/// Also keep every [`say`] line in a size-capped file (the supervisor's log for the API).
pub fn log_to_file(path: &std::path::Path, cap: u64) {
    if let Ok(mut f) = LOG_FILE.lock() {
        *f = Some(hoist_guest::logfile::Capped::open(path, cap));
    }
}

/// A `hoist: ...` console line (one write, so lines of concurrent writers do not mix).
pub fn say(line: &str) {
    let _ = std::io::stdout().write_all(format!("{}{line}\n", hoist_guest::console::PREFIX).as_bytes());
    if let Ok(mut f) = LOG_FILE.lock()
        && let Some(f) = f.as_mut()
    {
        let ms = uptime_ms();
        f.write_line(format!("{}.{:03} {line}\n", ms / 1000, ms % 1000).as_bytes());
    }
}

pub use hoist_guest::timeline::uptime_ms;

/// stderr logger with a fixed prefix, for the supervisor.
pub struct PrefixLogger(pub &'static str);

impl log::Log for PrefixLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) && r.target().starts_with("hoist") {
            let level = match r.level() {
                log::Level::Error => "error: ",
                log::Level::Warn => "warning: ",
                _ => "",
            };
            let _ = std::io::stderr().write_all(format!("{}: {level}{}\n", self.0, r.args()).as_bytes());
        }
    }

    fn flush(&self) {}
}
