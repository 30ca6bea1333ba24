//! Small machine settings: hostname, /etc/hosts and resolv.conf, sysctls, rlimits and
//! PID 1's own OOM protection. Paths are arguments so unit tests run against a temp dir.

use std::io;
use std::path::{Path, PathBuf};

use hoist_guest::boot::Network;
use nix::sys::resource::{Resource, setrlimit};

/// `net.ipv4.ip_forward` -> `<proc_sys>/net/ipv4/ip_forward`. Keys that could climb out of
/// /proc/sys are refused.
pub fn sysctl_path(proc_sys: &Path, key: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty() || p.contains('/') || *p == "..") {
        return None;
    }
    Some(parts.iter().fold(proc_sys.to_path_buf(), |acc, p| acc.join(p)))
}

/// Writes every sysctl; returns the ones that failed as `(key, error)`, having set the rest.
pub fn apply_sysctls(proc_sys: &Path, sysctls: &[(String, String)]) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    for (key, value) in sysctls {
        let result = match sysctl_path(proc_sys, key) {
            Some(path) => std::fs::write(&path, value.as_bytes()).map_err(|e| e.to_string()),
            None => Err("not a sysctl name".to_string()),
        };
        if let Err(e) = result {
            failed.push((key.clone(), e));
        }
    }
    failed
}

/// The kernel's hostname, /etc/hostname and /etc/hosts. The files are written even when the
/// kernel refuses the name: every service bind-mounts /etc/hosts, and a bind mount of a
/// missing file fails the container.
pub fn set_hostname(etc: &Path, hostname: &str) -> io::Result<()> {
    let files = write_host_files(etc, hostname);
    let kernel = nix::unistd::sethostname(hostname).map_err(io::Error::from);
    files.and(kernel)
}

pub fn write_host_files(etc: &Path, hostname: &str) -> io::Result<()> {
    std::fs::write(etc.join("hostname"), format!("{hostname}\n"))?;
    let hosts = format!("127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost\n");
    std::fs::write(etc.join("hosts"), hosts)
}

/// The resolver settings. Every service bind-mounts the host's /etc/resolv.conf (its OCI
/// spec, services/src/spec.rs), and a bind mount of a missing file fails the container, so
/// the file exists even when there is no network or no name server: then it only says why.
pub fn resolv_conf(network: &Network) -> String {
    if !network.enabled {
        return "# [network] enabled = false: loopback only, no name servers\n".to_string();
    }
    if network.dhcp && network.dns.is_empty() {
        // The DHCP helper rewrites it in place once it has a lease.
        return crate::dhcp::resolv_conf(&network.interface, &[]);
    }
    if network.dns.is_empty() {
        return "# [network] dns is empty: no name servers\n".to_string();
    }
    network.dns.iter().map(|d| format!("nameserver {d}\n")).collect()
}

pub fn write_resolv_conf(etc: &Path, network: &Network) -> io::Result<()> {
    std::fs::write(etc.join("resolv.conf"), resolv_conf(network))
}

/// containerd and its shims open many files; children inherit these limits.
pub fn raise_rlimits() -> nix::Result<()> {
    setrlimit(Resource::RLIMIT_NOFILE, 1 << 20, 1 << 20)
}

/// Under memory pressure the victim must be a service, never PID 1 (or containerd, which
/// gets its own score when it is started).
pub fn set_oom_score_adj(pid: &str, score: i32) -> io::Result<()> {
    std::fs::write(format!("/proc/{pid}/oom_score_adj"), score.to_string())
}

/// `hoist.debug` on the kernel command line.
pub fn cmdline_flag(cmdline: &str, flag: &str) -> bool {
    cmdline.split_whitespace().any(|w| w == flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_names_map_to_proc_paths() {
        let root = Path::new("/proc/sys");
        assert_eq!(sysctl_path(root, "net.ipv4.ip_forward"), Some(PathBuf::from("/proc/sys/net/ipv4/ip_forward")));
        assert_eq!(sysctl_path(root, "kernel..x"), None);
        assert_eq!(sysctl_path(root, "kernel/../../etc"), None);
    }

    #[test]
    fn sysctls_are_written_and_failures_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("kernel")).expect("mkdir");
        let s = [("kernel.panic".to_string(), "10".to_string()), ("nope.missing".to_string(), "1".to_string())];
        let failed = apply_sysctls(dir.path(), &s);
        assert_eq!(std::fs::read_to_string(dir.path().join("kernel/panic")).expect("read"), "10");
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, "nope.missing");
    }

    fn qemu_network() -> Network {
        Network {
            enabled: true,
            dhcp: false,
            interface: "eth0".into(),
            address: Some(("10.0.2.15".parse().expect("ip"), 24)),
            gateway: Some("10.0.2.2".parse().expect("ip")),
            dns: vec!["10.0.2.3".parse().expect("ip")],
        }
    }

    #[test]
    fn resolv_conf_lists_every_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let network =
            Network { dns: vec!["10.0.2.3".parse().expect("ip"), "1.1.1.1".parse().expect("ip")], ..qemu_network() };
        write_resolv_conf(dir.path(), &network).expect("write");
        let text = std::fs::read_to_string(dir.path().join("resolv.conf")).expect("read");
        assert_eq!(text, "nameserver 10.0.2.3\nnameserver 1.1.1.1\n");
    }

    #[test]
    fn resolv_conf_exists_without_network_or_dns() {
        for network in [Network { enabled: false, ..qemu_network() }, Network { dns: Vec::new(), ..qemu_network() }] {
            let dir = tempfile::tempdir().expect("tempdir");
            write_resolv_conf(dir.path(), &network).expect("write");
            let text = std::fs::read_to_string(dir.path().join("resolv.conf")).expect("a file to bind-mount");
            assert!(text.starts_with('#') && !text.contains("nameserver"), "{network:?}: {text:?}");
        }
    }

    #[test]
    fn host_files_name_the_host() {
        // Not set_hostname: the tests may run as root, and this machine keeps its name.
        let dir = tempfile::tempdir().expect("tempdir");
        write_host_files(dir.path(), "demo").expect("write");
        assert_eq!(std::fs::read_to_string(dir.path().join("hostname")).expect("hostname"), "demo\n");
        let hosts = std::fs::read_to_string(dir.path().join("hosts")).expect("hosts");
        assert!(hosts.contains("127.0.1.1\tdemo\n") && hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
    }

    #[test]
    fn cmdline_flags_are_whole_words() {
        assert!(cmdline_flag("console=ttyS0 hoist.debug quiet", "hoist.debug"));
        assert!(!cmdline_flag("hoist.debugx", "hoist.debug"));
    }
}
