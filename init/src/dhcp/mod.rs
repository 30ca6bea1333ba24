//! The DHCPv4 client: `/init --dhcp`, a child PID 1 keeps alive like containerd (restarted
//! with backoff when it dies) while `[network] mode = "dhcp"`.
//!
//! Why a process of its own and not a thread of PID 1: its input is whatever the network
//! sends, so it is hostile; a panic, a hang or a leak here must not touch the process whose
//! end is a kernel panic. A restarted helper picks its lease up from
//! [`paths::DHCP_LEASE`] and goes on where it was (the address stays on the interface
//! meanwhile). Only what it needs runs here: the state machine ([`machine`], pure), the
//! wire format ([`wire`], dhcproto) and our netlink requests ([`crate::net`]).
//!
//! What it writes: the address and default route (netlink), `/etc/resolv.conf` in place
//! (every service bind-mounts that file, so a rename would leave them the old one), the
//! lease, and the `network` target's state ([`hoist_guest::network`]): up with the lease
//! once bound, or degraded when no lease came within [`DEADLINE`] (it keeps trying, with
//! backoff) or the lease expired. At SIGTERM (shutdown, after the services stopped) it
//! releases the lease and exits.

pub mod machine;
pub mod wire;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hoist_guest::boot::Network;
use hoist_guest::{network, paths};

use crate::console;
use crate::net::Interface;
use machine::{Action, Client, Lease, Ms};

/// The argument PID 1 runs its own binary with to make it this helper.
pub const ARG: &str = "--dhcp";

/// No lease this long after the interface appeared (or did not): the `network` target is
/// reached degraded, as for a static address without carrier, and the client keeps trying.
pub const DEADLINE: Duration = crate::NETWORK_DEADLINE;

/// The longest one wait for a packet or a timer lasts (SIGTERM also wakes it).
const TICK: Duration = Duration::from_secs(1);

fn now() -> Ms {
    console::uptime_ms() as Ms
}

/// The helper process. Never returns.
pub fn main() -> ! {
    console::init_logging(
        std::fs::read_to_string("/proc/cmdline")
            .is_ok_and(|c| crate::system::cmdline_flag(&c, hoist_guest::kernel::DEBUG_FLAG)),
    );
    let term = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&term)) {
        log::error!("dhcp: SIGTERM handler: {e}");
    }
    let network = match crate::read_boot_config(Path::new(paths::BOOT_CONFIG)) {
        Ok(c) => c.network,
        Err(e) => {
            log::error!("dhcp: {}: {e}", paths::BOOT_CONFIG);
            std::process::exit(1)
        }
    };
    let code = match run(&network, &term) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("dhcp: {e}");
            1
        }
    };
    std::process::exit(code)
}

/// What the helper has said in the state file, so each change is written once.
struct Reporter {
    interface: String,
    started: Ms,
    written: Option<String>,
}

impl Reporter {
    /// What the last state written says, whenever it was written.
    fn said(&self) -> Option<(Option<String>, Option<String>)> {
        let state = network::State::parse(self.written.as_deref()?)?;
        Some((state.degraded, state.detail))
    }

    fn write(&mut self, state: network::State) {
        if self.said() == Some((state.degraded.clone(), state.detail.clone())) {
            return;
        }
        let text = state.format();
        if let Err(e) = hoist_guest::atomic::write(Path::new(paths::NETWORK_STATE), text.as_bytes()) {
            log::warn!("dhcp: {}: {e}", paths::NETWORK_STATE);
        }
        self.written = Some(text);
    }

    fn bound(&mut self, lease: &Lease, dns: &[Ipv4Addr]) {
        let detail = describe(&self.interface, lease, dns);
        if self.said() == Some((None, Some(detail.clone()))) {
            // Renewed (or taken up again by a restarted helper): the same lease, longer.
            // `acquired` is when the REQUEST went out: the rest is the server's round trip
            // (a lease taken up from the file was acquired before this helper started).
            let until = lease.expires_at() / 1000;
            let took = match lease.acquired >= self.started {
                true => format!(" (renewed in {} ms)", now().saturating_sub(lease.acquired)),
                false => " (taken up again)".to_string(),
            };
            log::info!("dhcp: lease for {} on {} good until uptime {until} s{took}", lease.address, self.interface);
        } else {
            console::say(&format!("network: {detail}"));
        }
        self.write(network::State { detail: Some(detail), ..network::State::up(now()) });
    }

    /// Past the deadline without a lease: degraded, said once.
    fn check_deadline(&mut self, why: impl FnOnce() -> String) {
        if self.written.is_none() && now() >= self.started + DEADLINE.as_millis() as Ms {
            let why = why();
            console::say(&format!("network: {why}"));
            self.write(network::State::degraded(now(), why));
        }
    }
}

/// `DHCP 10.0.2.15/24 on eth0 via 10.0.2.2, dns 10.0.2.3, from 10.0.2.2, lease 86400 s`.
pub fn describe(interface: &str, lease: &Lease, dns: &[Ipv4Addr]) -> String {
    let mut s = format!("DHCP {}/{} on {interface}", lease.address, lease.prefix);
    if let Some(r) = lease.router {
        s.push_str(&format!(" via {r}"));
    }
    if !dns.is_empty() {
        let list: Vec<String> = dns.iter().map(Ipv4Addr::to_string).collect();
        s.push_str(&format!(", dns {}", list.join(" ")));
    }
    let secs = if lease.lease_secs == u32::MAX { "infinite".to_string() } else { format!("{} s", lease.lease_secs) };
    s.push_str(&format!(", from {}, lease {secs}", lease.server));
    s
}

fn run(network: &Network, term: &AtomicBool) -> Result<(), String> {
    let name = &network.interface;
    let mut reporter = Reporter { interface: name.clone(), started: now(), written: read_state() };
    // The interface appears once its driver (loaded by PID 1's network thread) probed it.
    let mut iface = loop {
        if term.load(Ordering::Relaxed) {
            return Ok(());
        }
        if let Ok(i) = Interface::open(name) {
            break i;
        }
        reporter.check_deadline(|| format!("interface {name} did not appear; still waiting for it"));
        std::thread::sleep(Duration::from_millis(50));
    };
    // The deadline for a lease counts from here.
    if reporter.written.is_none() {
        reporter.started = now();
    }
    iface.up().map_err(|e| e.to_string())?;
    let mac = read_mac(name)?;
    let socket = open_socket(name)?;
    let seed = seed(&mac);
    let (mut client, mut actions) = match load_lease() {
        Some(lease) => Client::resume(now(), seed, lease),
        None => (Client::new(now(), seed), Vec::new()),
    };
    let mut buf = vec![0u8; wire::MAX_MESSAGE];
    loop {
        actions.extend(client.poll(now()));
        for action in actions.drain(..) {
            carry_out(action, &mut iface, &socket, &mac, network, &mut reporter, false);
        }
        reporter.check_deadline(|| format!("no DHCP lease on {name} after {} s; still trying", DEADLINE.as_secs()));
        if term.load(Ordering::Relaxed) {
            for action in client.release(now()) {
                carry_out(action, &mut iface, &socket, &mac, network, &mut reporter, true);
            }
            log::debug!("dhcp: released, exiting");
            return Ok(());
        }
        let wait = Duration::from_millis(client.next_wakeup().saturating_sub(now())).min(TICK);
        if wait_readable(&socket, wait) {
            // Every packet waiting, not only the first.
            while let Ok((n, _from)) = socket.recv_from(&mut buf) {
                if let Some(reply) = wire::decode(&buf[..n], &mac) {
                    log::debug!("dhcp: {:?} xid {:#x} in state {}", reply.kind, reply.xid, client.state_name());
                    actions.extend(client.on_reply(now(), &reply));
                }
            }
        }
    }
}

fn carry_out(
    action: Action,
    iface: &mut Interface,
    socket: &UdpSocket,
    mac: &[u8; 6],
    network: &Network,
    reporter: &mut Reporter,
    shutting_down: bool,
) {
    match action {
        Action::Send(out) => {
            let to = SocketAddrV4::new(wire::destination(&out), 67);
            log::debug!("dhcp: {:?} to {to} xid {:#x}", out.kind, out.xid);
            // No carrier yet, no route: the retransmission tries again.
            if let Err(e) = socket.send_to(&wire::encode(&out, mac), to) {
                log::debug!("dhcp: sending {:?} to {to}: {e}", out.kind);
            }
        }
        Action::Configure(lease) => {
            let mut failed = Vec::new();
            if let Err(e) = iface.add_address(lease.address, lease.prefix) {
                failed.push(e.to_string());
            }
            if let Some(gw) = lease.router
                && let Err(e) = iface.set_default_route(gw)
            {
                failed.push(e.to_string());
            }
            // Name servers from the config win over the lease's.
            let dns = if network.dns.is_empty() { lease.dns.clone() } else { network.dns.clone() };
            if let Err(e) = write_resolv_conf(Path::new("/etc/resolv.conf"), &resolv_conf(&iface.name, &dns)) {
                failed.push(format!("/etc/resolv.conf: {e}"));
            }
            save_lease(&lease);
            for f in &failed {
                log::warn!("dhcp: {f}");
            }
            reporter.bound(&lease, &dns);
        }
        Action::Deconfigure(lease) => {
            if let Some(gw) = lease.router
                && let Err(e) = iface.remove_default_route(gw)
            {
                log::warn!("dhcp: {e}");
            }
            if let Err(e) = iface.remove_address(lease.address, lease.prefix) {
                log::warn!("dhcp: {e}");
            }
            let _ = std::fs::remove_file(paths::DHCP_LEASE);
            if shutting_down {
                return;
            }
            let why = format!("the DHCP lease for {} on {} ended; trying again", lease.address, iface.name);
            let _ = write_resolv_conf(Path::new("/etc/resolv.conf"), &resolv_conf(&iface.name, &[]));
            console::say(&format!("network: {why}"));
            reporter.write(network::State::degraded(now(), why));
        }
    }
}

/// resolv.conf for `dns`; without servers it says why there are none.
pub fn resolv_conf(interface: &str, dns: &[Ipv4Addr]) -> String {
    if dns.is_empty() {
        return format!("# no DHCP lease on {interface} yet: no name servers\n");
    }
    dns.iter().map(|d| format!("nameserver {d}\n")).collect()
}

/// resolv.conf rewritten in place: every service bind-mounted this inode.
pub fn write_resolv_conf(path: &Path, text: &str) -> std::io::Result<()> {
    hoist_guest::atomic::rewrite_in_place(path, text.as_bytes())
}

/// The lease file's text: one line, `ADDR/PREFIX ROUTER|- DNS,..|- SERVER ACQUIRED LEASE T1 T2`.
pub fn format_lease(l: &Lease) -> String {
    let router = l.router.map_or("-".to_string(), |r| r.to_string());
    let dns = if l.dns.is_empty() {
        "-".to_string()
    } else {
        l.dns.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(",")
    };
    format!(
        "{}/{} {router} {dns} {} {} {} {} {}\n",
        l.address, l.prefix, l.server, l.acquired, l.lease_secs, l.t1_secs, l.t2_secs
    )
}

pub fn parse_lease(text: &str) -> Option<Lease> {
    let w: Vec<&str> = text.lines().next()?.split(' ').collect();
    let [cidr, router, dns, server, acquired, lease, t1, t2] = w.as_slice() else { return None };
    let (addr, prefix) = cidr.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    let router = if *router == "-" { None } else { Some(router.parse().ok()?) };
    let dns =
        if *dns == "-" { Vec::new() } else { dns.split(',').map(|d| d.parse().ok()).collect::<Option<Vec<_>>>()? };
    Some(Lease {
        address: addr.parse().ok()?,
        prefix,
        router,
        dns,
        server: server.parse().ok()?,
        acquired: acquired.parse().ok()?,
        lease_secs: lease.parse().ok()?,
        t1_secs: t1.parse().ok()?,
        t2_secs: t2.parse().ok()?,
    })
}

fn save_lease(lease: &Lease) {
    if let Err(e) = hoist_guest::atomic::write(Path::new(paths::DHCP_LEASE), format_lease(lease).as_bytes()) {
        log::warn!("dhcp: {}: {e}", paths::DHCP_LEASE);
    }
}

fn load_lease() -> Option<Lease> {
    let mut text = String::new();
    std::fs::File::open(paths::DHCP_LEASE).ok()?.take(4096).read_to_string(&mut text).ok()?;
    parse_lease(&text)
}

/// The state file a previous run of the helper wrote, if any.
fn read_state() -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(paths::NETWORK_STATE).ok()?.take(4096).read_to_string(&mut text).ok()?;
    Some(text)
}

fn read_mac(name: &str) -> Result<[u8; 6], String> {
    let path = format!("/sys/class/net/{name}/address");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_mac(text.trim()).ok_or_else(|| format!("{path}: {:?} is not an Ethernet address", text.trim()))
}

pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// UDP port 68 on `name` only, broadcasts allowed. Before we hold an address the server
/// broadcasts its answers (we set the flag), which the kernel delivers to this socket.
fn open_socket(name: &str) -> Result<UdpSocket, String> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 68)).map_err(|e| format!("UDP port 68: {e}"))?;
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::BindToDevice, &std::ffi::OsString::from(name))
        .map_err(|e| format!("binding the DHCP socket to {name}: {e}"))?;
    socket.set_broadcast(true).map_err(|e| format!("SO_BROADCAST: {e}"))?;
    socket.set_nonblocking(true).map_err(|e| format!("O_NONBLOCK: {e}"))?;
    Ok(socket)
}

fn wait_readable(socket: &UdpSocket, wait: Duration) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::from(wait.as_millis().min(60_000) as u16);
    // EINTR (SIGTERM) reads as nothing to read: the loop sees the flag.
    matches!(poll(&mut fds, ms), Ok(n) if n > 0)
}

/// Transaction ids: from the kernel's random pool, else from the MAC and the clock.
fn seed(mac: &[u8; 6]) -> u32 {
    let mut b = [0u8; 4];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_ok() {
        return u32::from_ne_bytes(b);
    }
    u32::from_ne_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ (now() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease {
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix: 24,
            router: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)],
            server: Ipv4Addr::new(10, 0, 2, 2),
            acquired: 2345,
            lease_secs: 86400,
            t1_secs: 43200,
            t2_secs: 75600,
        }
    }

    #[test]
    fn the_lease_file_reads_back() {
        let l = lease();
        assert_eq!(format_lease(&l), "10.0.2.15/24 10.0.2.2 10.0.2.3,1.1.1.1 10.0.2.2 2345 86400 43200 75600\n");
        assert_eq!(parse_lease(&format_lease(&l)), Some(l.clone()));
        let bare = Lease { router: None, dns: Vec::new(), ..l };
        assert_eq!(parse_lease(&format_lease(&bare)), Some(bare));
        for bad in
            ["", "10.0.2.15/33 - - 10.0.2.2 1 2 3 4", "10.0.2.15/24 - - 10.0.2.2 1 2 3", "x/24 - - 1.1.1.1 1 2 3 4"]
        {
            assert_eq!(parse_lease(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_description_names_what_a_user_checks() {
        let l = lease();
        assert_eq!(
            describe("eth0", &l, &l.dns),
            "DHCP 10.0.2.15/24 on eth0 via 10.0.2.2, dns 10.0.2.3 1.1.1.1, from 10.0.2.2, lease 86400 s"
        );
        assert_eq!(
            describe("eth1", &Lease { router: None, lease_secs: u32::MAX, ..l }, &[]),
            "DHCP 10.0.2.15/24 on eth1, from 10.0.2.2, lease infinite"
        );
    }

    #[test]
    fn resolv_conf_is_rewritten_in_place_and_never_through_a_symlink() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "# a long comment that is longer than what replaces it\n").expect("write");
        let inode = std::fs::metadata(&path).expect("stat").ino();
        write_resolv_conf(&path, &resolv_conf("eth0", &[Ipv4Addr::new(10, 0, 2, 3)])).expect("rewrite");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "nameserver 10.0.2.3\n");
        assert_eq!(std::fs::metadata(&path).expect("stat").ino(), inode, "a bind mount of it sees the change");
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "keep\n").expect("write");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(write_resolv_conf(&link, "nameserver 1.1.1.1\n").is_err());
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep\n");
        assert_eq!(resolv_conf("eth0", &[]), "# no DHCP lease on eth0 yet: no name servers\n");
    }

    #[test]
    fn macs_parse_from_sysfs_text() {
        assert_eq!(parse_mac("52:54:00:12:34:56"), Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        for bad in ["", "52:54:00:12:34", "52:54:00:12:34:56:78", "5254:00:12:34:56", "zz:54:00:12:34:56"] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }
}
