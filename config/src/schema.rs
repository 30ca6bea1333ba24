//! The validated host description handed to the builder, PID 1 and the supervisor.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{
    Backoff, Bind, Capabilities, ImageSource, Ipv4Cidr, OneShot, Ready, RestartPolicy, Seccomp, Signal, StartLimit,
    State, Volume,
};

/// The only `version` this crate understands.
pub const CURRENT_VERSION: u32 = 1;

// Not Eq: `Service::cpu` and `Backoff::factor` are floats.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub version: u32,
    pub host: Host,
    pub kernel: Kernel,
    /// Key -> value as written to /proc/sys; booleans become "1" / "0".
    pub sysctl: BTreeMap<String, String>,
    pub network: Network,
    /// `[service.NAME]` tables by NAME.
    pub service: BTreeMap<String, Service>,
    /// `[[onboot]]` entries in file order: run before any service starts.
    pub onboot: Vec<OneShot>,
    /// `[[onshutdown]]` entries in file order: run after every service has stopped.
    pub onshutdown: Vec<OneShot>,
    pub logs: Logs,
    /// `[volume.NAME]` tables by NAME.
    pub volume: BTreeMap<String, Volume>,
    /// `[state]`; None: hoist's state lives in RAM.
    pub state: Option<State>,
}

/// One container the config runs: a service or an onboot/onshutdown one-shot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Container<'a> {
    /// "service", "onboot" or "onshutdown", for messages.
    pub kind: &'static str,
    pub name: &'a str,
    pub image: &'a ImageSource,
    /// (uid, gid) the config sets; None: the image's user.
    pub user: Option<(u32, u32)>,
}

impl Config {
    /// What is valid but weakens a service, one sentence each naming service and key, for
    /// `hoist check` to print: the config is still accepted.
    pub fn warnings(&self) -> Vec<String> {
        self.service
            .iter()
            .filter(|(_, s)| s.seccomp == Seccomp::Unconfined)
            .map(|(name, _)| format!("service.{name}.seccomp: \"unconfined\": the service runs with no syscall filter"))
            .collect()
    }

    /// Every container, services first (by name), then the onboot and onshutdown stages
    /// in file order: what the builder imports, and what an apply must find images for.
    pub fn containers(&self) -> impl Iterator<Item = Container<'_>> {
        let services =
            self.service.iter().map(|(n, s)| Container { kind: "service", name: n, image: &s.image, user: s.user });
        let stages =
            [("onboot", &self.onboot), ("onshutdown", &self.onshutdown)].into_iter().flat_map(|(kind, list)| {
                list.iter().map(move |o| Container { kind, name: &o.name, image: &o.image, user: o.user })
            });
        services.chain(stages)
    }
}

/// `[logs]`: how much output is kept per source (a service, the supervisor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logs {
    /// Size at which NAME.log is rotated to NAME.log.1 (one old copy is kept, so a
    /// source holds at most twice this). Default 1 MiB, at least 64 KiB.
    pub max_size: u64,
}

impl Logs {
    pub const DEFAULT_MAX_SIZE: u64 = 1 << 20;
    pub const MIN_MAX_SIZE: u64 = 64 << 10;
}

impl Default for Logs {
    fn default() -> Self {
        Logs { max_size: Self::DEFAULT_MAX_SIZE }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: CURRENT_VERSION,
            host: Host::default(),
            kernel: Kernel::default(),
            sysctl: BTreeMap::new(),
            network: Network::default(),
            service: BTreeMap::new(),
            onboot: Vec::new(),
            onshutdown: Vec::new(),
            logs: Logs::default(),
            volume: BTreeMap::new(),
            state: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// An RFC 1123 host name, at most 64 characters.
    pub hostname: String,
    /// The OCI runtime containerd's shim runs for every container.
    pub runtime: OciRuntime,
}

impl Default for Host {
    fn default() -> Self {
        Host { hostname: "hoist".to_string(), runtime: OciRuntime::default() }
    }
}

/// `[host] runtime`: which OCI runtime creates the containers. crun (C) is the default: under
/// emulation it starts a container in a fraction of runc's (Go) time; runc stays selectable.
/// Only the chosen one goes into the image, so changing it needs a new build and a boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OciRuntime {
    #[default]
    Crun,
    Runc,
}

impl OciRuntime {
    /// The name as written in host.toml (and the binary's name).
    pub fn name(self) -> &'static str {
        match self {
            OciRuntime::Crun => "crun",
            OciRuntime::Runc => "runc",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid runtime {0:?}: expected crun or runc")]
pub struct OciRuntimeError(String);

impl std::str::FromStr for OciRuntime {
    type Err = OciRuntimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "crun" => Ok(OciRuntime::Crun),
            "runc" => Ok(OciRuntime::Runc),
            _ => Err(OciRuntimeError(s.to_string())),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kernel {
    /// None: the builder picks the newest installed kernel.
    pub path: Option<PathBuf>,
    /// None: the builder's default command line.
    pub cmdline: Option<String>,
    /// Extra modules to load at boot.
    pub modules: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub interface: String,
    pub mode: NetworkMode,
    /// Static mode only (DHCP leases it).
    pub address: Option<Ipv4Cidr>,
    /// Static mode only (DHCP leases it).
    pub gateway: Option<Ipv4Addr>,
    /// Static: the name servers. DHCP: empty takes the lease's, a list overrides them.
    pub dns: Vec<Ipv4Addr>,
    /// false: only loopback is configured.
    pub enabled: bool,
    /// Where `network = "bridge"` services get their addresses (the bridge takes the first).
    pub bridge_subnet: Ipv4Cidr,
}

/// How the interface gets its address: `mode = "dhcp" | "static"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// From a DHCP server (the default when no `address` is given).
    #[default]
    Dhcp,
    /// `address`, `gateway` and `dns` as written (QEMU's user network by default).
    Static,
}

/// DHCP on eth0, the default without an `address`.
impl Default for Network {
    fn default() -> Self {
        Network {
            interface: "eth0".to_string(),
            mode: NetworkMode::Dhcp,
            address: None,
            gateway: None,
            dns: Vec::new(),
            enabled: true,
            bridge_subnet: crate::service_net::DEFAULT_BRIDGE_SUBNET,
        }
    }
}

impl Network {
    /// Static mode's defaults: QEMU's user-mode network, guest 10.0.2.15/24, gateway .2, DNS .3.
    pub fn qemu_static() -> Self {
        Network {
            mode: NetworkMode::Static,
            address: Some(Ipv4Cidr { addr: Ipv4Addr::new(10, 0, 2, 15), prefix: 24 }),
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
            ..Network::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub image: ImageSource,
    /// Empty: the image's own entrypoint and cmd.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Absolute; None: the image's working directory.
    pub working_dir: Option<String>,
    pub restart: RestartPolicy,
    pub stop_signal: Signal,
    /// How long after `stop_signal` before SIGKILL; at most 1h, and all of them plus the
    /// onshutdown timeouts at most 2h.
    pub stop_timeout: Duration,
    pub readonly_rootfs: bool,
    /// Share the host's pid namespace (system agents that must see or signal host
    /// processes, like LinuxKit's `pid: host`). Default false.
    pub host_pid: bool,
    /// Its network namespace: the host's (default), none, or hoist's bridge.
    pub network: crate::ServiceNetwork,
    /// Bridge services only: host ports forwarded to the service (no two services share one).
    pub publish: Vec<crate::Publish>,
    /// Services that must be ready before this one starts (all exist; no cycles), and
    /// perhaps [`crate::NETWORK_TARGET`]: wait until PID 1's network setup has ended.
    pub depends_on: Vec<String>,
    pub ready: Ready,
    /// From start to ready; past it the service is stopped and counted as failed.
    pub start_timeout: Duration,
    pub backoff: Backoff,
    pub start_limit: StartLimit,
    /// memory.max in bytes, at least 4 MiB and at most i64::MAX; None: no limit.
    pub memory: Option<u64>,
    /// pids.max, at least 1; None: [`Service::DEFAULT_PIDS`].
    pub pids: Option<u32>,
    /// CPU time in cores (0.5: half of one), from 0.01 (the smallest cpu.max quota, 1ms
    /// per 100ms period) to 1024; None: no limit.
    pub cpu: Option<f64>,
    /// Bytes the service's writable layer (root overlay upper, /tmp included) may hold: a
    /// tmpfs of its own, so a full one is ENOSPC for this service only.
    pub disk: u64,
    /// (uid, gid), neither 4294967295 ((uid_t)-1); None: the image's user.
    pub user: Option<(u32, u32)>,
    pub capabilities: Capabilities,
    /// The syscall filter; `Unconfined` is the explicit opt-out ([`Config::warnings`]).
    pub seccomp: Seccomp,
    pub binds: Vec<Bind>,
}

impl Service {
    /// pids.max when `pids` is not set: a fork bomb stops there, not at the host's pid_max.
    pub const DEFAULT_PIDS: u32 = 1024;
    /// `disk` when not set. A tmpfs holds pages only as they are written, in the guest's
    /// memory (charged to the service's memory cgroup).
    pub const DEFAULT_DISK: u64 = 256 << 20;
    pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

    /// A service running `image` with every other setting at its default.
    pub fn new(image: ImageSource) -> Self {
        Service {
            image,
            command: Vec::new(),
            env: BTreeMap::new(),
            working_dir: None,
            restart: RestartPolicy::default(),
            stop_signal: Signal::default(),
            stop_timeout: Self::DEFAULT_STOP_TIMEOUT,
            readonly_rootfs: false,
            host_pid: false,
            network: crate::ServiceNetwork::Host,
            publish: Vec::new(),
            depends_on: Vec::new(),
            ready: Ready::default(),
            start_timeout: Self::DEFAULT_START_TIMEOUT,
            backoff: Backoff::default(),
            start_limit: StartLimit::default(),
            memory: None,
            pids: None,
            cpu: None,
            disk: Self::DEFAULT_DISK,
            user: None,
            capabilities: Capabilities::default(),
            seccomp: Seccomp::default(),
            binds: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unconfined_seccomp_is_warned_about_by_service() {
        let text = "version = 1\n[service.web]\nimage = \"oci:/i\"\n[service.raw]\nimage = \"oci:/i\"\nseccomp = \"unconfined\"\n";
        let config = crate::parse(text, "host.toml").expect("valid");
        assert_eq!(config.service["web"].seccomp, crate::Seccomp::Default);
        assert_eq!(config.warnings(), ["service.raw.seccomp: \"unconfined\": the service runs with no syscall filter"]);
        let confined = crate::parse("version = 1\n[service.web]\nimage = \"oci:/i\"\n", "host.toml").expect("valid");
        assert!(confined.warnings().is_empty());
    }

    #[test]
    fn containers_are_services_by_name_then_stages_in_file_order() {
        let text = r#"
version = 1
[service.web]
image = "oci:/i"
user = "1:2"
[service.api]
image = "oci:/i"
[[onshutdown]]
name = "flush"
image = "oci:/j"
[[onboot]]
name = "migrate"
image = "oci:/j"
"#;
        let config = crate::parse(text, "host.toml").expect("valid");
        let got: Vec<String> = config.containers().map(|c| format!("{} {} {:?}", c.kind, c.name, c.user)).collect();
        assert_eq!(
            got,
            ["service api None", "service web Some((1, 2))", "onboot migrate None", "onshutdown flush None"]
        );
    }
}
