//! What PID 1 needs of the host config, as the builder hands it over: [`paths::BOOT_CONFIG`],
//! one `KEY VALUE` per line, written from the validated config at build time. PID 1 reads
//! it instead of the TOML, so it links no TOML parser and no config validation (it stays
//! small, DESIGN.md decision 1) and never sees the text a user wrote.
//!
//! Keys: `hostname NAME`, `sysctl KEY VALUE` (repeated; VALUE is the rest of the line),
//! `module NAME` (repeated), `log_max BYTES` (containerd's log file cap), `stop_budget_ms
//! MS` (how long the supervisor may take to stop everything, [`services_budget`]),
//! `network on|off|dhcp` (dhcp: the DHCP helper configures `interface`; `dns` then
//! overrides the lease's name servers), `interface NAME`, `address A.B.C.D/N`, `gateway A.B.C.D`, `dns
//! A.B.C.D` (repeated), `volume SPEC` (repeated, [`crate::volume::Spec`]), `state NAME`
//! (optional: the volume hoist keeps its state on). Values are escaped (`\\`, `\n`, `\r`), so no value breaks a line.
//!
//! [`paths::BOOT_CONFIG`]: crate::paths::BOOT_CONFIG

use std::net::Ipv4Addr;
use std::time::Duration;

/// Margin for containerd's round trips on top of the stop timeouts.
const BUDGET_MARGIN: Duration = Duration::from_secs(10);
/// The most the supervisor ever gets, so that shutdown always ends.
const BUDGET_CAP: Duration = Duration::from_secs(180);
/// The most of the file PID 1 reads; a real one is a few hundred bytes.
pub const MAX_BYTES: u64 = 1 << 20;

/// How long the supervisor gets to stop every service and run the onshutdown stages, from
/// every service's stop timeout and every stage's timeout: services stop in dependency
/// order, so in the worst case one after another. Saturating: `Duration`'s `Sum` panics on
/// overflow, and a huge timeout in the config must not panic anything.
pub fn services_budget(timeouts: impl IntoIterator<Item = Duration>) -> Duration {
    timeouts.into_iter().fold(BUDGET_MARGIN, Duration::saturating_add).min(BUDGET_CAP)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    pub hostname: String,
    /// Key -> value as written to /proc/sys, in key order.
    pub sysctls: Vec<(String, String)>,
    pub modules: Vec<String>,
    pub log_max: u64,
    pub stop_budget: Duration,
    pub network: Network,
    /// `[volume.NAME]`s, by name.
    pub volumes: Vec<crate::volume::Spec>,
    /// `[state] volume`: one of `volumes`.
    pub state: Option<String>,
}

/// The interface PID 1 configures, and the name servers of every service's resolv.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// false: only loopback is configured.
    pub enabled: bool,
    /// The address comes from DHCP (`address` and `gateway` are then None).
    pub dhcp: bool,
    pub interface: String,
    pub address: Option<(Ipv4Addr, u8)>,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct BootError {
    pub line: usize,
    pub message: String,
}

impl Boot {
    pub fn format(&self) -> String {
        let mut out = String::new();
        let mut put = |key: &str, value: &str| {
            out.push_str(key);
            out.push(' ');
            out.push_str(&escape(value));
            out.push('\n');
        };
        put("hostname", &self.hostname);
        for (k, v) in &self.sysctls {
            put("sysctl", &format!("{k} {v}"));
        }
        for m in &self.modules {
            put("module", m);
        }
        put("log_max", &self.log_max.to_string());
        put("stop_budget_ms", &self.stop_budget.as_millis().to_string());
        let n = &self.network;
        put(
            "network",
            if !n.enabled {
                "off"
            } else if n.dhcp {
                "dhcp"
            } else {
                "on"
            },
        );
        put("interface", &n.interface);
        if let Some((addr, prefix)) = n.address {
            put("address", &format!("{addr}/{prefix}"));
        }
        if let Some(gw) = n.gateway {
            put("gateway", &gw.to_string());
        }
        for d in &n.dns {
            put("dns", &d.to_string());
        }
        for v in &self.volumes {
            put("volume", &v.format());
        }
        if let Some(state) = &self.state {
            put("state", state);
        }
        out
    }

    /// Every key but the repeated ones must be there once; an unknown key is an error (a
    /// builder and a PID 1 of different versions do not mix).
    pub fn parse(text: &str) -> Result<Boot, BootError> {
        // The keys given once, with the line each came from, for errors found later.
        let mut single: Vec<(&'static str, String, usize)> = Vec::new();
        let mut sysctls = Vec::new();
        let mut modules = Vec::new();
        let mut dns = Vec::new();
        let mut volumes = Vec::new();
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            let err = |message: String| BootError { line, message };
            if raw.is_empty() {
                continue;
            }
            let (key, value) = raw.split_once(' ').ok_or_else(|| err(format!("{raw:?} has no value")))?;
            let value = unescape(value).map_err(err)?;
            match key {
                "sysctl" => {
                    let (k, v) = value.split_once(' ').ok_or_else(|| err(format!("sysctl {value:?} has no value")))?;
                    sysctls.push((k.to_string(), v.to_string()));
                }
                "module" => modules.push(value),
                "volume" => volumes.push(
                    crate::volume::Spec::parse(&value)
                        .ok_or_else(|| err(format!("volume {value:?} does not parse")))?,
                ),
                "dns" => dns.push(value.parse().map_err(|_| err(format!("dns {value:?} is not an IPv4 address")))?),
                _ => {
                    const SINGLE: [&str; 8] = [
                        "hostname",
                        "log_max",
                        "stop_budget_ms",
                        "network",
                        "interface",
                        "address",
                        "gateway",
                        "state",
                    ];
                    let Some(name) = SINGLE.iter().copied().find(|k| *k == key) else {
                        return Err(err(format!("unknown key {key:?}")));
                    };
                    if single.iter().any(|(k, _, _)| *k == name) {
                        return Err(err(format!("{key} given twice")));
                    }
                    single.push((name, value, line));
                }
            }
        }
        let end = text.lines().count();
        let get = |key: &str| single.iter().find(|(k, _, _)| *k == key).map(|(_, v, line)| (v.as_str(), *line));
        let need = |key: &str| get(key).ok_or_else(|| BootError { line: end, message: format!("{key} is missing") });
        let number = |key: &str| -> Result<u64, BootError> {
            let (v, line) = need(key)?;
            v.parse().map_err(|_| BootError { line, message: format!("{key} {v:?} is not a number") })
        };
        let address = match get("address") {
            None => None,
            Some((a, line)) => Some(
                parse_cidr(a).ok_or_else(|| BootError { line, message: format!("address {a:?} is not A.B.C.D/N") })?,
            ),
        };
        let gateway = match get("gateway") {
            None => None,
            Some((g, line)) => Some(
                g.parse().map_err(|_| BootError { line, message: format!("gateway {g:?} is not an IPv4 address") })?,
            ),
        };
        let (enabled, dhcp) = match need("network")? {
            ("on", _) => (true, false),
            ("off", _) => (false, false),
            ("dhcp", line) if address.is_some() || gateway.is_some() => {
                return Err(BootError { line, message: "network dhcp with an address or gateway".to_string() });
            }
            ("dhcp", _) => (true, true),
            (other, line) => {
                return Err(BootError { line, message: format!("network {other:?} is not on, off or dhcp") });
            }
        };
        Ok(Boot {
            hostname: need("hostname")?.0.to_string(),
            sysctls,
            modules,
            log_max: number("log_max")?,
            stop_budget: Duration::from_millis(number("stop_budget_ms")?),
            network: Network { enabled, dhcp, interface: need("interface")?.0.to_string(), address, gateway, dns },
            state: match get("state") {
                Some((name, line)) if !volumes.iter().any(|v: &crate::volume::Spec| v.name == name) => {
                    return Err(BootError { line, message: format!("state {name:?} is not a volume") });
                }
                other => other.map(|(name, _)| name.to_string()),
            },
            volumes,
        })
    }
}

fn parse_cidr(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, prefix) = text.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((addr.parse().ok()?, prefix))
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n").replace('\r', "\\r")
}

fn unescape(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            other => return Err(format!("bad escape \\{}", other.map(String::from).unwrap_or_default())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
