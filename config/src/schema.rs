//! The validated host description handed to the builder, PID 1 and the supervisor.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{ImageSource, Ipv4Cidr, RestartPolicy, Signal};

/// The only `version` this crate understands.
pub const CURRENT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub version: u32,
    pub host: Host,
    pub kernel: Kernel,
    /// Key -> value as written to /proc/sys; booleans become "1" / "0".
    pub sysctl: BTreeMap<String, String>,
    pub network: Network,
    /// `[service.NAME]` tables by NAME.
    pub service: BTreeMap<String, Service>,
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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// An RFC 1123 host name, at most 64 characters.
    pub hostname: String,
}

impl Default for Host {
    fn default() -> Self {
        Host { hostname: "hoist".to_string() }
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
    pub address: Option<Ipv4Cidr>,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// false: only loopback is configured.
    pub enabled: bool,
}

/// QEMU's user-mode network: guest 10.0.2.15/24, gateway .2, DNS .3.
impl Default for Network {
    fn default() -> Self {
        Network {
            interface: "eth0".to_string(),
            address: Some(Ipv4Cidr { addr: Ipv4Addr::new(10, 0, 2, 15), prefix: 24 }),
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
            enabled: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub image: ImageSource,
    /// Empty: the image's own entrypoint and cmd.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Absolute; None: the image's working directory.
    pub working_dir: Option<String>,
    pub restart: RestartPolicy,
    pub stop_signal: Signal,
    /// How long after `stop_signal` before SIGKILL.
    pub stop_timeout: Duration,
    pub readonly_rootfs: bool,
}

impl Service {
    pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

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
        }
    }
}
