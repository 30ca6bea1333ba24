//! A service's confinement keys. `capabilities = { add = [...], drop = [...] }`: changes to
//! the container's default capability set. Names are checked against a fixed table
//! (Linux 6.1) rather than libc, like signals, so a typo fails `hoist check` on any build
//! machine. `seccomp = "default" | "unconfined"`: the supervisor's syscall filter, or none
//! (the explicit opt-out, which `hoist check` warns about).

use toml::Spanned;

use crate::error::{ConfigError, Source};
use crate::raw::RawCapabilities;

/// Every Linux capability as of 6.1; `CAPABILITIES[n]` is capability number `n`.
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Changes to the default capability set: `drop` is applied first, then `add`, so
/// `drop = ["ALL"], add = ["CAP_NET_BIND_SERVICE"]` leaves exactly one. Names are stored
/// with the `CAP_` prefix; `drop` may also hold "ALL".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

/// `seccomp`: which syscall filter the container gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Seccomp {
    /// The supervisor's default profile for the container's capabilities.
    #[default]
    Default,
    /// No filter at all: every syscall the capabilities allow.
    Unconfined,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid seccomp profile {0:?}: expected default or unconfined")]
pub struct SeccompError(String);

impl std::str::FromStr for Seccomp {
    type Err = SeccompError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "default" => Ok(Seccomp::Default),
            "unconfined" => Ok(Seccomp::Unconfined),
            _ => Err(SeccompError(s.to_string())),
        }
    }
}

/// The canonical `CAP_` name for `name` (written with or without the prefix).
fn canonical(name: &str) -> Option<&'static str> {
    let short = name.strip_prefix("CAP_").unwrap_or(name);
    CAPABILITIES.iter().copied().find(|c| c[4..] == *short)
}

pub(crate) fn build(raw: RawCapabilities, src: &Source, key: &str) -> Result<Capabilities, ConfigError> {
    let add = names(raw.add, src, &format!("{key}.add"), false)?;
    let drop = names(raw.drop, src, &format!("{key}.drop"), true)?;
    // "ALL" in drop with names in add is the usual allow-list; the same name on both sides
    // is a contradiction.
    if let Some((i, (name, span))) = drop.iter().enumerate().find(|(_, (name, _))| add.iter().any(|(a, _)| a == name)) {
        let message = format!("{name} is both added and dropped");
        return Err(src.invalid(Some(span.clone()), format!("{key}.drop[{i}]"), message));
    }
    let strip = |list: Vec<(String, std::ops::Range<usize>)>| list.into_iter().map(|(name, _)| name).collect();
    Ok(Capabilities { add: strip(add), drop: strip(drop) })
}

/// Canonical names, each with its span for the add/drop check.
fn names(
    list: Vec<Spanned<String>>,
    src: &Source,
    key: &str,
    allow_all: bool,
) -> Result<Vec<(String, std::ops::Range<usize>)>, ConfigError> {
    let mut out = Vec::with_capacity(list.len());
    for (i, name) in list.into_iter().enumerate() {
        let span = name.span();
        let name = name.into_inner();
        let canonical = match canonical(&name) {
            Some(c) => c,
            None if name == "ALL" && allow_all => "ALL",
            None if name == "ALL" => {
                let message = "ALL is only allowed in drop: list the capabilities to add";
                return Err(src.invalid(Some(span), format!("{key}[{i}]"), message));
            }
            None => {
                let message = format!("unknown capability {name:?}: expected a name like CAP_NET_ADMIN or NET_ADMIN");
                return Err(src.invalid(Some(span), format!("{key}[{i}]"), message));
            }
        };
        out.push((canonical.to_string(), span));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_and_without_prefix() {
        assert_eq!(canonical("CAP_NET_ADMIN"), Some("CAP_NET_ADMIN"));
        assert_eq!(canonical("NET_ADMIN"), Some("CAP_NET_ADMIN"));
        assert_eq!(canonical("CHECKPOINT_RESTORE"), Some("CAP_CHECKPOINT_RESTORE"));
        for bad in ["net_admin", "CAP_net_admin", "CAP_", "", "CAP_CAP_CHOWN", "ALL", "CAP_ALL", "CAP_SYS_WHATEVER"] {
            assert_eq!(canonical(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn seccomp_modes() {
        assert_eq!("default".parse(), Ok(Seccomp::Default));
        assert_eq!("unconfined".parse(), Ok(Seccomp::Unconfined));
        assert!("none".parse::<Seccomp>().is_err());
        assert!("Unconfined".parse::<Seccomp>().is_err());
    }

    #[test]
    fn table_is_complete_and_unique() {
        assert!(CAPABILITIES.iter().all(|c| c.starts_with("CAP_")));
        let mut sorted = CAPABILITIES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 41);
        // Spot-check numbering against linux/capability.h.
        assert_eq!(CAPABILITIES[12], "CAP_NET_ADMIN");
        assert_eq!(CAPABILITIES[21], "CAP_SYS_ADMIN");
        assert_eq!(CAPABILITIES[40], "CAP_CHECKPOINT_RESTORE");
    }
}
