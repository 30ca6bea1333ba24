//! Names and paths that end up in kernel interfaces or container specs, checked here so
//! that a typo fails `hoist check` instead of the boot.

use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NameError {
    #[error("invalid hostname {0:?}: expected dot-separated labels of letters, digits and '-', at most 64 characters")]
    Hostname(String),
    #[error(
        "invalid service name {0:?}: expected 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
    )]
    Service(String),
    #[error("name {0:?} is reserved: hoist's own log sources are supervisor, containerd and kernel")]
    Reserved(String),
    #[error(
        "`{NETWORK_TARGET}` is a built-in target (services that need the network list it in depends_on); rename this \
         service"
    )]
    Target,
    #[error(
        "invalid volume name {0:?}: expected 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
    )]
    Volume(String),
    #[error("invalid module name {0:?}: expected letters, digits, '_' and '-'")]
    Module(String),
    #[error("invalid environment variable name {0:?}: expected a non-empty name without '=' or NUL bytes")]
    EnvKey(String),
    #[error("invalid working_dir {0:?}: expected an absolute path")]
    WorkingDir(String),
    #[error("invalid interface name {0:?}: expected 1-15 characters without '/' or whitespace")]
    Interface(String),
    #[error("invalid sysctl name {0:?}: expected dot-separated names like net.ipv4.ip_forward")]
    Sysctl(String),
    #[error("invalid kernel path: the path is empty")]
    EmptyPath,
    #[error("invalid string {0:?}: a NUL byte would cut it short (it is passed on as a C string)")]
    Nul(String),
}

/// Defines a validated string newtype: `name!(Type, Variant, |s| is_valid(s))`.
macro_rules! name {
    ($ty:ident, $variant:ident, $valid:expr) => {
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
        pub(crate) struct $ty(pub String);

        impl FromStr for $ty {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let valid: fn(&str) -> bool = $valid;
                if valid(s) { Ok($ty(s.to_string())) } else { Err(NameError::$variant(s.to_string())) }
            }
        }
    };
}

// RFC 1123: labels of 1-63 letters, digits and '-', not starting or ending with '-';
// at most 64 characters in all (Linux's HOST_NAME_MAX).
name!(Hostname, Hostname, |s| {
    s.len() <= 64
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
});

/// Log sources of hoist itself (`hoist ctl logs NAME`: /var/log/supervisor.log,
/// /var/log/containerd.log, the kernel ring buffer). Services and one-shots log to
/// /var/log/NAME.log under the same names, so these would collide.
pub(crate) const RESERVED_NAMES: [&str; 3] = ["supervisor", "containerd", "kernel"];

/// A service or one-shot name. These become container ids, log file names and cgroup
/// names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ServiceName(pub String);

impl FromStr for ServiceName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = (1..=63).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            return Err(NameError::Service(s.to_string()));
        }
        if RESERVED_NAMES.contains(&s) {
            return Err(NameError::Reserved(s.to_string()));
        }
        Ok(ServiceName(s.to_string()))
    }
}

/// The built-in target a service lists in `depends_on` to start only once PID 1's network
/// setup has ended; no service may have the name. The supervisor checks that it agrees with
/// `hoist_guest::network::TARGET`, the name in PID 1's contract.
pub const NETWORK_TARGET: &str = "network";

/// A `[service.NAME]` key: a [`ServiceName`] that is not [`NETWORK_TARGET`], which
/// `depends_on` would read as the target. One-shots may have the name: nothing depends on
/// them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ServiceKey(pub String);

impl FromStr for ServiceKey {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name: ServiceName = s.parse()?;
        if name.0 == NETWORK_TARGET {
            return Err(NameError::Target);
        }
        Ok(ServiceKey(name.0))
    }
}

// A volume's name is a directory name under the volumes mount root and the first part
// of a bind source (`data/sub:/dest`).
name!(VolumeName, Volume, |s| {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
});

name!(ModuleName, Module, |s| {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
});

name!(EnvKey, EnvKey, |s| !s.is_empty() && !s.contains(['=', '\0']));

name!(WorkingDir, WorkingDir, |s| s.starts_with('/') && !s.contains('\0'));

// IFNAMSIZ is 16 including the terminating NUL.
name!(Interface, Interface, |s| {
    (1..=15).contains(&s.len())
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
});

// Each part becomes a path component under /proc/sys.
name!(SysctlKey, Sysctl, |s| {
    s.split('.').all(|part| !part.is_empty() && !part.chars().any(|c| c == '/' || c.is_whitespace() || c.is_control()))
});

/// A string without NUL bytes: command arguments, environment values, the kernel command
/// line and sysctl values all reach the kernel as C strings, where a NUL ends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoNul(pub String);

impl FromStr for NoNul {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains('\0') { Err(NameError::Nul(s.to_string())) } else { Ok(NoNul(s.to_string())) }
    }
}

/// A non-empty path string (the kernel image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NonEmptyPath(pub std::path::PathBuf);

impl FromStr for NonEmptyPath {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() { Err(NameError::EmptyPath) } else { Ok(NonEmptyPath(s.into())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok<T: FromStr>(s: &str) -> bool {
        s.parse::<T>().is_ok()
    }

    #[test]
    fn hostnames() {
        for good in
            ["hoist", "demo-1", "a.b.c", "x", "A1", &"a".repeat(63), &format!("{}.{}", "a".repeat(31), "b".repeat(32))]
        {
            assert!(ok::<Hostname>(good), "{good:?}");
        }
        let too_long = format!("{}.{}", "a".repeat(32), "b".repeat(32));
        for bad in ["", "-a", "a-", "a..b", "a_b", "a b", ".a", "a.", "héllo", &"a".repeat(64 + 1), &too_long] {
            assert!(!ok::<Hostname>(bad), "{bad:?}");
        }
        assert_eq!("bad_host".parse::<Hostname>(), Err(NameError::Hostname("bad_host".into())));
    }

    #[test]
    fn service_names() {
        for good in ["web", "0", "a_b-c", &"a".repeat(63)] {
            assert!(ok::<ServiceName>(good), "{good:?}");
        }
        for bad in ["", "Web", "-web", "_web", "web.1", "my web", &"a".repeat(64)] {
            assert!(!ok::<ServiceName>(bad), "{bad:?}");
        }
        for reserved in RESERVED_NAMES {
            assert_eq!(reserved.parse::<ServiceName>(), Err(NameError::Reserved(reserved.into())));
        }
        assert!(ok::<ServiceName>("kernel-tools") && ok::<ServiceName>("supervisor2"));
        assert_eq!(NETWORK_TARGET.parse::<ServiceKey>(), Err(NameError::Target));
        assert!(ok::<ServiceName>(NETWORK_TARGET) && ok::<ServiceKey>("network2") && !ok::<ServiceKey>("Web"));
    }

    #[test]
    fn module_env_and_paths() {
        assert!(ok::<ModuleName>("nf_tables") && ok::<ModuleName>("virtio-net"));
        assert!(!ok::<ModuleName>("") && !ok::<ModuleName>("../x") && !ok::<ModuleName>("a.ko"));
        assert!(ok::<EnvKey>("PATH") && ok::<EnvKey>("lower.case"));
        assert!(!ok::<EnvKey>("") && !ok::<EnvKey>("A=B"));
        assert!(ok::<WorkingDir>("/") && ok::<WorkingDir>("/srv/www"));
        assert!(!ok::<WorkingDir>("srv") && !ok::<WorkingDir>("") && !ok::<WorkingDir>("./srv"));
        assert!(ok::<NonEmptyPath>("/boot/vmlinuz") && !ok::<NonEmptyPath>(""));
        assert!(ok::<NoNul>("") && ok::<NoNul>("a b=c"));
        assert_eq!("a\0b".parse::<NoNul>(), Err(NameError::Nul("a\0b".into())));
    }

    #[test]
    fn interfaces_and_sysctls() {
        assert!(ok::<Interface>("eth0") && ok::<Interface>("enp0s3") && ok::<Interface>("eth0.100"));
        for bad in ["", "a/b", "eth 0", "..", "eth0:1", "abcdefghijklmnop"] {
            assert!(!ok::<Interface>(bad), "{bad:?}");
        }
        assert!(ok::<SysctlKey>("net.ipv4.ip_forward") && ok::<SysctlKey>("kernel.panic"));
        for bad in ["", "net..ipv4", ".net", "net/ipv4", "net.ipv4.", "a b"] {
            assert!(!ok::<SysctlKey>(bad), "{bad:?}");
        }
    }
}
