//! The kernel side of a bridge service: its network namespace (a bind mount under
//! [`paths::NETNS_DIR`] that the OCI runtime joins), the bridge, and a veth pair with one
//! end on the bridge and the other as `eth0` in the namespace, with the service's address
//! and a default route through the bridge. All over rtnetlink ([`hoist_guest::netlink`]);
//! work inside a namespace is done by a short-lived thread that entered it.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use hoist_guest::netlink::{
    self, IFA_ADDRESS, IFA_LOCAL, IFF_UP, IFLA_IFNAME, IFLA_INFO_DATA, IFLA_INFO_KIND, IFLA_LINKINFO, IFLA_MASTER,
    IFLA_NET_NS_FD, Msg, NLM_F_CREATE, NLM_F_EXCL, RTA_GATEWAY, RTA_OIF, RTM_DELLINK, RTM_NEWADDR, RTM_NEWLINK,
    RTM_NEWROUTE, Socket, VETH_INFO_PEER,
};
use hoist_guest::paths;

/// Where service `name`'s namespace is bind-mounted.
pub fn path(name: &str) -> PathBuf {
    Path::new(paths::NETNS_DIR).join(name)
}

fn index_of(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

fn up(index: u32) -> Msg {
    Msg::new(RTM_NEWLINK, 0, &netlink::ifinfo(index, IFF_UP, IFF_UP))
}

fn address(index: u32, ip: Ipv4Addr, prefix: u8) -> Msg {
    let o = ip.octets();
    Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &netlink::ifaddr(index, prefix))
        .attr(IFA_LOCAL, &o)
        .attr(IFA_ADDRESS, &o)
}

/// The bridge with `gateway/prefix` on it, up; there already: done.
pub fn ensure_bridge(nl: &mut Socket, name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<(), String> {
    let create = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &netlink::ifinfo(0, 0, 0))
        .str_attr(IFLA_IFNAME, name)
        .nest(IFLA_LINKINFO)
        .str_attr(IFLA_INFO_KIND, "bridge")
        .end();
    nl.request(&format!("bridge {name}"), create).map_err(|e| e.to_string())?;
    let index = index_of(name).ok_or_else(|| format!("bridge {name} did not appear"))?;
    nl.request(&format!("address {gateway}/{prefix} on {name}"), address(index, gateway, prefix))
        .map_err(|e| e.to_string())?;
    nl.request(&format!("{name} up"), up(index)).map_err(|e| e.to_string())
}

/// Takes `name`'s namespace down: unmounted and unlinked (the kernel frees it, and the
/// veth pair in it, once no process is left in it); gone already: done.
pub fn remove(name: &str) -> Result<(), String> {
    let p = path(name);
    match nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(format!("unmounting {}: {e}", p.display())),
    }
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// Deletes link `name` in this namespace (a veth's host end takes its peer with it).
pub fn delete_link(nl: &mut Socket, name: &str) -> Result<(), String> {
    let Some(index) = index_of(name) else { return Ok(()) };
    nl.remove(&format!("deleting {name}"), Msg::new(RTM_DELLINK, 0, &netlink::ifinfo(index, 0, 0)))
        .map_err(|e| e.to_string())
}

/// A fresh namespace for `name` at [`path`], replacing whatever was there.
pub fn create(name: &str) -> Result<std::fs::File, String> {
    remove(name)?;
    let p = path(name);
    std::fs::create_dir_all(paths::NETNS_DIR).map_err(|e| format!("{}: {e}", paths::NETNS_DIR))?;
    std::fs::OpenOptions::new().write(true).create_new(true).open(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    // unshare(CLONE_NEWNET) moves only the calling thread: one made for it, which then
    // leaves the namespace held by the bind mount and ends.
    let target = p.clone();
    let made = std::thread::spawn(move || -> Result<(), String> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("binding the namespace to {}: {e}", target.display()))
    })
    .join()
    .map_err(|_| "the namespace thread panicked".to_string())?;
    if let Err(e) = made {
        let _ = std::fs::remove_file(&p);
        return Err(e);
    }
    std::fs::File::open(&p).map_err(|e| format!("{}: {e}", p.display()))
}

/// The veth pair: `host_end` on `bridge` (up), its peer `eth0` in `ns`.
pub fn veth(nl: &mut Socket, host_end: &str, ns: &std::fs::File, bridge: &str) -> Result<(), String> {
    delete_link(nl, host_end)?;
    let fd = ns.as_raw_fd() as u32;
    let create = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &netlink::ifinfo(0, 0, 0))
        .str_attr(IFLA_IFNAME, host_end)
        .nest(IFLA_LINKINFO)
        .str_attr(IFLA_INFO_KIND, "veth")
        .nest(IFLA_INFO_DATA)
        .nest(VETH_INFO_PEER)
        .raw(&netlink::ifinfo(0, 0, 0))
        .str_attr(IFLA_IFNAME, "eth0")
        .u32_attr(IFLA_NET_NS_FD, fd)
        .end()
        .end()
        .end();
    nl.request(&format!("veth {host_end}"), create).map_err(|e| e.to_string())?;
    let index = index_of(host_end).ok_or_else(|| format!("veth {host_end} did not appear"))?;
    let master = index_of(bridge).ok_or_else(|| format!("bridge {bridge} is gone"))?;
    let attach = Msg::new(RTM_NEWLINK, 0, &netlink::ifinfo(index, IFF_UP, IFF_UP)).u32_attr(IFLA_MASTER, master);
    nl.request(&format!("{host_end} on {bridge}"), attach).map_err(|e| e.to_string())
}

/// Inside `ns`: loopback up, and, with `eth0`, its address and a default route through
/// `gateway`.
pub fn configure_inside(ns: &std::fs::File, eth0: Option<(Ipv4Addr, u8, Ipv4Addr)>) -> Result<(), String> {
    let ns = ns.try_clone().map_err(|e| e.to_string())?;
    std::thread::spawn(move || -> Result<(), String> {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}"))?;
        let mut nl = Socket::open(netlink::ANSWER_TIMEOUT).map_err(|e| e.to_string())?;
        let lo = index_of("lo").ok_or("no lo in the namespace")?;
        nl.request("lo up", up(lo)).map_err(|e| e.to_string())?;
        let Some((ip, prefix, gateway)) = eth0 else { return Ok(()) };
        let index = index_of("eth0").ok_or("no eth0 in the namespace")?;
        nl.request(&format!("address {ip}/{prefix}"), address(index, ip, prefix)).map_err(|e| e.to_string())?;
        nl.request("eth0 up", up(index)).map_err(|e| e.to_string())?;
        let route = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &netlink::default_route())
            .attr(RTA_GATEWAY, &gateway.octets())
            .u32_attr(RTA_OIF, index);
        nl.request(&format!("default route via {gateway}"), route).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the namespace thread panicked".to_string())?
}
