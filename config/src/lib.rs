//! `host.toml`: the one file that describes a hoist host, and the types the builder
//! (`hoist build`), PID 1 and the supervisor read it into.
//!
//! The file is parsed twice in a host's life: on the build machine, and again inside the
//! VM from the copy in the initramfs. Both go through [`load`] (or [`parse`] for text), so
//! what `hoist check` accepts is exactly what boots.
//!
//! # How it works
//!
//! serde deserializes the text into private "raw" structs (`deny_unknown_fields`
//! everywhere). Values with a syntax of their own (durations, sizes, users, signals, image
//! sources, addresses, names) are parsed with `FromStr` while they are deserialized, so a
//! bad value fails with toml's byte span of that value and serde_path_to_error's key path.
//! What cannot be checked one value at a time (the `version`, list elements such as binds
//! and capabilities, numeric ranges, `ready` having exactly one kind, backoff `max` against
//! `initial`, the gateway against the address, the `depends_on` graph, names shared by
//! services and one-shots, the sum of the shutdown timeouts) is checked afterwards from
//! `toml::Spanned` positions. Defaults are filled in last (the `Default` impls and
//! [`Service::new`]), so a key the file leaves out reads as its default; the shutdown sum
//! counts defaults too.
//!
//! # Services, dependencies and one-shots
//!
//! A `[service.NAME]` is a long-running container. Besides what it runs (`image`,
//! `command`, `env`, `working_dir`, `user`, `binds`, `capabilities`, `seccomp`,
//! `readonly_rootfs`, `host_pid`) and its limits (`memory`, `pids` (1024 by default),
//! `cpu`, `disk`), it says how it is supervised:
//! `depends_on` other services, which must be [`Ready`] (a TCP port, a command, a file or
//! sd_notify; by default just running) within their `start_timeout` before it starts, and
//! on [`NETWORK_TARGET`] (`"network"`), built in, reached when PID 1's network setup has
//! ended, up or degraded (a service that does not list it does not wait for the network,
//! and no service may be named so);
//! `restart` with capped exponential [`Backoff`] (never under 100 ms) until more than
//! [`StartLimit`]`.burst` starts in `interval` mark it failed; `stop_signal`, then SIGKILL
//! after `stop_timeout` (at most 1h; with the onshutdown timeouts, at most 2h in all, so
//! that PID 1's shutdown deadline stays sane). The graph is checked here (every name a
//! service or the network target, no cycles, the cycle named in the error), so
//! [`Config::start_order`] can hand the supervisor start levels to run in parallel and stop
//! in reverse, and [`Config::dependents`] what to hold back when a service fails.
//!
//! `[[onboot]]` and `[[onshutdown]]` are [`OneShot`] containers run in file order, to
//! completion, before the first service starts and after the last one stops, each within
//! its `timeout`. A failed `required` onboot stops the boot there (the machine stays up and
//! says why); any other failure is reported and skipped. One-shots and services share the
//! containerd namespace, so one name is used once across all three. They also share the
//! log namespace with hoist itself, so `supervisor`, `containerd` and `kernel` are
//! reserved.
//!
//! Two more things both the build and the guest need live here: [`manifest`] (what
//! `hoist build` resolved, read by the supervisor) and [`seccomp`] (the default syscall
//! filter and capability set a container's config means; the build compiles it, the
//! supervisor writes it into the spec).
//!
//! # Errors
//!
//! Every rejection is [`ConfigError::Invalid`]: file, 1-based line and column of the
//! offending key or value, the dotted key (`service.web.stop_timeout`; non-bare keys are
//! quoted, as in `sysctl."net.ipv4.ip_forward"`) and a short message saying what was
//! expected. TOML syntax errors have no serde path; their key is the table header or
//! assignment on the failing line, and where toml's own message is empty or misleading (a
//! value missing at the end of the file, a control character) the message is made from
//! the text at the error. When toml gives no position the error points at 1:1. A file
//! that is not UTF-8 is rejected at its first invalid byte; only a file that cannot be
//! read at all is [`ConfigError::Io`].
//! Display is the whole story, so `hoist check` prints it as is:
//!
//! ```text
//! examples/bad.toml:7:16: service.web.stop_timeout: invalid duration "5x": expected a number followed by ms, s, m or h
//! ```
//!
//! # What it does not do
//!
//! No I/O besides reading the file in [`load`]: whether an image directory or kernel
//! exists is for the builder to find out. Defaults that depend on the machine (the newest
//! installed kernel, the default kernel command line) stay `None` here and are resolved by
//! the builder. Signal names are a fixed table of the Linux x86_64 numbers, and
//! [`CAPABILITIES`] the Linux 6.1 capability names, not libc. `user` is numeric only: a
//! name would need the image's /etc/passwd, which this crate does not see (the builder
//! resolves an image's own `User` names against it). Nothing here probes readiness or
//! enforces limits; this crate only says what they are.

mod backoff;
mod bind;
mod budget;
mod caps;
mod duration;
mod error;
mod graph;
mod image;
pub mod manifest;
mod names;
mod net;
mod oneshot;
mod policy;
mod raw;
mod ready;
mod reference;
mod resources;
mod scalar;
mod schema;
pub mod seccomp;
pub mod service_net;
mod validate;
mod volume;

use std::path::Path;

pub use backoff::{Backoff, StartLimit};
pub use bind::{Bind, VOLUMES_DIR};
pub use caps::{CAPABILITIES, Capabilities, Seccomp, SeccompError};
pub use duration::{DurationError, parse_duration};
pub use error::ConfigError;
pub use image::{ImageError, ImageSource};
pub use names::NETWORK_TARGET;
pub use net::{Ipv4Cidr, NetError};
pub use oneshot::OneShot;
pub use policy::{PolicyError, RestartPolicy, Signal};
pub use ready::Ready;
pub use reference::{Reference, ReferenceError};
pub use resources::{SizeError, parse_size};
pub use schema::{
    CURRENT_VERSION, Config, Container, Host, Kernel, Logs, Network, NetworkMode, OciRuntime, OciRuntimeError, Service,
};
pub use service_net::{Proto, Publish, ServiceNetwork};
pub use volume::{Device, Filesystem, LABEL_MAX, STATE_SUBDIR, State, Volume, VolumeError};

use error::Source;

/// Reads and validates the config at `path`. Relative image and kernel paths are resolved
/// against the file's directory, so the result does not depend on the working directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Io { file: file.clone(), cause: source })?;
    load_bytes(path, &bytes)
}

/// [`load`] of bytes already read from `path`: a caller that also sends the text (`hoist
/// apply`) validates exactly what it sends.
pub fn load_bytes(path: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = error::utf8(&file, bytes)?;
    let mut config = parse(text, &file)?;
    let base = path.parent().unwrap_or(Path::new(""));
    for service in config.service.values_mut() {
        service.image.resolve_against(base);
    }
    for oneshot in config.onboot.iter_mut().chain(&mut config.onshutdown) {
        oneshot.image.resolve_against(base);
    }
    if let Some(kernel) = config.kernel.path.as_mut().filter(|p| p.is_relative()) {
        *kernel = base.join(&*kernel);
    }
    Ok(config)
}

/// Parses and validates `text`. `file` only names the text in errors; paths are left as
/// written.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let src = Source { file, text };
    let raw: raw::RawConfig =
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| src.deserialize_error(e))?;
    validate::build(raw, &src)
}
