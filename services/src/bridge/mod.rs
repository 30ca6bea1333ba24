//! `network = "bridge"` services: each in a network namespace of its own on hoist's bridge
//! ([`nft::BRIDGE`]), with an address from the bridge subnet ([`ipam`]), NAT to the
//! outside and its `publish` rules ([`nft`]), and a hosts file that names every bridge
//! service, so that `db` resolves in `api`.
//!
//! Done over rtnetlink by hand and one `nft -f` per change, not by Debian's CNI plugins:
//! the plugins are Go programs (under TCG each start of one costs a large part of a
//! second, and a service start would run three: bridge, host-local, portmap), portmap
//! needs iptables besides, and their state lives in files of their own that a restarted
//! supervisor would have to reconcile with ours.
//!
//! [`attach`] runs before each start of a bridge service: address (kept across restarts),
//! a fresh namespace and veth pair (the old ones, if any, are removed first, so a restart
//! leaks neither), the hosts file and the NAT rules. [`release`] runs when the service
//! leaves the config: namespace, address, rules and hosts entry go. The addresses are kept
//! in [`paths::BRIDGE_STATE`], so a restarted supervisor hands out the same ones.

pub mod ipam;
pub mod netns;
pub mod nft;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use hoist_config::{Ipv4Cidr, Publish};
use hoist_guest::paths;

use ipam::Ipam;

/// What the bridge holds: addresses, and the publish rules of the services attached now.
struct Bridge {
    ipam: Ipam,
    publish: BTreeMap<String, Vec<Publish>>,
    /// The ruleset last loaded, so an unchanged one is not loaded again.
    loaded: Option<String>,
}

static BRIDGE: Mutex<Option<Bridge>> = Mutex::new(None);

fn with_bridge<T>(subnet: Ipv4Cidr, f: impl FnOnce(&mut Bridge) -> Result<T, String>) -> Result<T, String> {
    let mut guard = BRIDGE.lock().unwrap_or_else(|p| p.into_inner());
    let bridge = guard.get_or_insert_with(|| {
        let text = std::fs::read_to_string(paths::BRIDGE_STATE).unwrap_or_default();
        Bridge { ipam: Ipam::parse(&text, subnet), publish: BTreeMap::new(), loaded: None }
    });
    f(bridge)
}

/// The host end of a service's veth pair: `hv` and its address's offset in the subnet,
/// unique while the address is (and short: interface names have 15 bytes).
pub fn host_end(ipam: &Ipam, ip: std::net::Ipv4Addr) -> String {
    format!("hv{}", u32::from(ip) - u32::from(ipam.subnet().addr))
}

/// Everything service `name` needs on the bridge before its container is made.
pub fn attach(name: &str, subnet: Ipv4Cidr, publish: &[Publish]) -> Result<std::net::Ipv4Addr, String> {
    with_bridge(subnet, |b| {
        let ip = b.ipam.address(name)?;
        save(&b.ipam);
        let mut nl =
            hoist_guest::netlink::Socket::open(hoist_guest::netlink::ANSWER_TIMEOUT).map_err(|e| e.to_string())?;
        netns::ensure_bridge(&mut nl, nft::BRIDGE, b.ipam.gateway(), subnet.prefix)?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|e| format!("ip_forward: {e}"))?;
        let ns = netns::create(name)?;
        netns::veth(&mut nl, &host_end(&b.ipam, ip), &ns, nft::BRIDGE)?;
        netns::configure_inside(&ns, Some((ip, subnet.prefix, b.ipam.gateway())))?;
        b.publish.insert(name.to_string(), publish.to_vec());
        write_hosts(&b.ipam)?;
        load_rules(b)?;
        Ok(ip)
    })
}

/// Service `name` left the config: its namespace, address, hosts entry and rules go.
pub fn release(name: &str, subnet: Ipv4Cidr) -> Result<(), String> {
    with_bridge(subnet, |b| {
        let ip = b.ipam.release(name);
        save(&b.ipam);
        let mut errors = Vec::new();
        if let Some(ip) = ip
            && let Ok(mut nl) = hoist_guest::netlink::Socket::open(hoist_guest::netlink::ANSWER_TIMEOUT)
            && let Err(e) = netns::delete_link(&mut nl, &host_end(&b.ipam, ip))
        {
            errors.push(e);
        }
        if let Err(e) = netns::remove(name) {
            errors.push(e);
        }
        b.publish.remove(name);
        if let Err(e) = write_hosts(&b.ipam) {
            errors.push(e);
        }
        if let Err(e) = load_rules(b) {
            errors.push(e);
        }
        if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
    })
}

fn save(ipam: &Ipam) {
    if let Err(e) = hoist_guest::atomic::write(Path::new(paths::BRIDGE_STATE), ipam.format().as_bytes()) {
        log::warn!("{}: {e}", paths::BRIDGE_STATE);
    }
}

/// The hosts file every bridge service bind-mounts as /etc/hosts.
pub fn hosts_text(ipam: &Ipam) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n");
    out.push_str(&format!("{}\thoist-bridge\n", ipam.gateway()));
    for (name, ip) in ipam.entries() {
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    out
}

/// Rewritten in place: the services bind-mounted this inode.
fn write_hosts(ipam: &Ipam) -> Result<(), String> {
    let path = Path::new(paths::BRIDGE_HOSTS);
    let write = || {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))?;
        hoist_guest::atomic::rewrite_in_place(path, hosts_text(ipam).as_bytes())
    };
    write().map_err(|e| format!("{}: {e}", path.display()))
}

fn load_rules(b: &mut Bridge) -> Result<(), String> {
    let mut rules = Vec::new();
    for (name, publish) in &b.publish {
        if let Some((_, ip)) = b.ipam.entries().find(|(n, _)| n == name) {
            rules.extend(publish.iter().map(|p| (ip, *p)));
        }
    }
    let text = nft::ruleset(b.ipam.subnet(), &rules);
    if b.loaded.as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    let mut child = std::process::Command::new(paths::NFT)
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", paths::NFT))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).map_err(|e| format!("{}: {e}", paths::NFT))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("{}: {e}", paths::NFT))?;
    if !out.status.success() {
        return Err(format!("nft: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    b.loaded = Some(text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_file_names_every_bridge_service() {
        let mut ipam = Ipam::new("10.88.0.0/16".parse().expect("cidr"));
        ipam.address("db").expect("address");
        ipam.address("api").expect("address");
        let text = hosts_text(&ipam);
        assert!(text.contains("10.88.0.2\tdb\n") && text.contains("10.88.0.3\tapi\n"), "{text}");
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"), "{text}");
        assert_eq!(host_end(&ipam, std::net::Ipv4Addr::new(10, 88, 1, 2)), "hv258");
    }
}
