//! Network setup over rtnetlink: loopback up, the configured interface's address, link
//! and default route. A few fixed-layout messages, so we encode them ourselves (about 100
//! lines) instead of pulling an async netlink stack into PID 1.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, sendto, setsockopt, socket,
    sockopt,
};
use nix::sys::time::TimeVal;

/// How long the kernel gets to answer one request. It answers rtnetlink requests at once;
/// this only keeps a kernel that never does from hanging boot.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFF_UP: u32 = 0x1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const AF_INET: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("netlink socket: {0}")]
    Socket(nix::errno::Errno),
    #[error("interface {0} did not appear")]
    NoInterface(String),
    #[error("{what}: {errno}")]
    Request { what: String, errno: nix::errno::Errno },
    #[error("{what}: no answer from the kernel within {after:?}")]
    Timeout { what: String, after: Duration },
}

/// One netlink message: header + fixed body + attributes, all 4-byte aligned.
pub fn message(kind: u16, flags: u16, seq: u32, body: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut m = vec![0u8; 16];
    m.extend_from_slice(body);
    pad(&mut m);
    for (kind, data) in attrs {
        m.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(data);
        pad(&mut m);
    }
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&kind.to_ne_bytes());
    m[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m
}

fn pad(m: &mut Vec<u8>) {
    while !m.len().is_multiple_of(4) {
        m.push(0);
    }
}

/// ifinfomsg setting IFF_UP.
fn link_up_body(index: u32) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    b[8..12].copy_from_slice(&IFF_UP.to_ne_bytes());
    b[12..16].copy_from_slice(&IFF_UP.to_ne_bytes());
    b
}

/// ifaddrmsg for an IPv4 address.
fn addr_body(index: u32, prefix: u8) -> Vec<u8> {
    let mut b = vec![AF_INET, prefix, 0, 0];
    b.extend_from_slice(&index.to_ne_bytes());
    b
}

/// rtmsg for a default route in the main table.
fn default_route_body() -> Vec<u8> {
    // family, dst_len, src_len, tos, table=main, protocol=boot, scope=universe, type=unicast, flags
    let mut b = vec![AF_INET, 0, 0, 0, 254, 3, 0, 1];
    b.extend_from_slice(&0u32.to_ne_bytes());
    b
}

struct Netlink {
    fd: std::os::fd::OwnedFd,
    seq: u32,
    timeout: Duration,
    /// ESRCH and EADDRNOTAVAIL count as done (a removal of what is gone).
    gone_ok: bool,
}

impl Netlink {
    fn open(timeout: Duration) -> Result<Self, NetError> {
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)
            .map_err(NetError::Socket)?;
        bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &NetlinkAddr::new(0, 0)).map_err(NetError::Socket)?;
        // Each recv then ends with EAGAIN instead of blocking forever.
        let tv =
            TimeVal::new(timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX), timeout.subsec_micros().into());
        setsockopt(&fd, sockopt::ReceiveTimeout, &tv).map_err(NetError::Socket)?;
        Ok(Netlink { fd, seq: 0, timeout, gone_ok: false })
    }

    /// Sends one request and waits for its ack; EEXIST counts as done.
    fn request(
        &mut self,
        what: &str,
        kind: u16,
        flags: u16,
        body: &[u8],
        attrs: &[(u16, &[u8])],
    ) -> Result<(), NetError> {
        use std::os::fd::AsRawFd;
        self.seq += 1;
        let msg = message(kind, flags, self.seq, body, attrs);
        let err = |errno| NetError::Request { what: what.to_string(), errno };
        sendto(self.fd.as_raw_fd(), &msg, &NetlinkAddr::new(0, 0), MsgFlags::empty()).map_err(err)?;
        self.wait_ack(what)
    }

    /// Reads until the ack of request `self.seq`. Bounded as a whole, not only per recv, so
    /// that a stream of other messages cannot keep us here either.
    fn wait_ack(&mut self, what: &str) -> Result<(), NetError> {
        use nix::errno::Errno;
        use std::os::fd::AsRawFd;
        let err = |errno| NetError::Request { what: what.to_string(), errno };
        let deadline = Instant::now() + self.timeout;
        let mut buf = [0u8; 4096];
        loop {
            if Instant::now() >= deadline {
                return Err(NetError::Timeout { what: what.to_string(), after: self.timeout });
            }
            let n = match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(Errno::EAGAIN) => {
                    return Err(NetError::Timeout { what: what.to_string(), after: self.timeout });
                }
                // A socket with a receive timeout is not restarted after a signal handler
                // (PID 1's handlers are installed before the network is set up).
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(err(e)),
            };
            if n < 20 {
                continue;
            }
            let kind = u16::from_ne_bytes([buf[4], buf[5]]);
            let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
            if kind != NLMSG_ERROR || seq != self.seq {
                continue;
            }
            let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
            return match code {
                0 => Ok(()),
                c if -c == libc::EEXIST => Ok(()),
                // Taking off what is already gone is done.
                c if (-c == libc::EADDRNOTAVAIL || -c == libc::ESRCH) && self.gone_ok => Ok(()),
                c => Err(err(nix::errno::Errno::from_raw(-c))),
            };
        }
    }
}

fn index_of(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

pub fn loopback_up() -> Result<(), NetError> {
    let mut nl = Netlink::open(ANSWER_TIMEOUT)?;
    let index = index_of("lo").ok_or_else(|| NetError::NoInterface("lo".into()))?;
    nl.request("lo up", RTM_NEWLINK, 0, &link_up_body(index), &[])
}

/// Address, link up and default route for `name`, waiting up to `wait` for the interface
/// to appear (its driver may still be probing).
pub fn configure(
    name: &str,
    addr: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
    wait: Duration,
) -> Result<(), NetError> {
    let deadline = Instant::now() + wait;
    let index = loop {
        if let Some(i) = index_of(name) {
            break i;
        }
        if Instant::now() >= deadline {
            return Err(NetError::NoInterface(name.to_string()));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut nl = Netlink::open(ANSWER_TIMEOUT)?;
    let octets = addr.octets();
    nl.request(
        &format!("address {addr}/{prefix} on {name}"),
        RTM_NEWADDR,
        NLM_F_CREATE | NLM_F_EXCL,
        &addr_body(index, prefix),
        &[(IFA_LOCAL, &octets), (IFA_ADDRESS, &octets)],
    )?;
    nl.request(&format!("{name} up"), RTM_NEWLINK, 0, &link_up_body(index), &[])?;
    if let Some(gw) = gateway {
        let oif = index.to_ne_bytes();
        nl.request(
            &format!("default route via {gw}"),
            RTM_NEWROUTE,
            NLM_F_CREATE | NLM_F_EXCL,
            &default_route_body(),
            &[(RTA_GATEWAY, &gw.octets()), (RTA_OIF, &oif)],
        )?;
    }
    Ok(())
}

/// The link, address and route changes the DHCP helper makes, one request each.
pub struct Interface {
    nl: Netlink,
    pub name: String,
    pub index: u32,
}

impl Interface {
    /// `name`, if it exists now.
    pub fn open(name: &str) -> Result<Interface, NetError> {
        let index = index_of(name).ok_or_else(|| NetError::NoInterface(name.to_string()))?;
        Ok(Interface { nl: Netlink::open(ANSWER_TIMEOUT)?, name: name.to_string(), index })
    }

    pub fn up(&mut self) -> Result<(), NetError> {
        let what = format!("{} up", self.name);
        self.nl.request(&what, RTM_NEWLINK, 0, &link_up_body(self.index), &[])
    }

    /// Adds `addr/prefix` (already there: done).
    pub fn add_address(&mut self, addr: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
        let octets = addr.octets();
        let what = format!("address {addr}/{prefix} on {}", self.name);
        let body = addr_body(self.index, prefix);
        self.nl.request(
            &what,
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
            &body,
            &[(IFA_LOCAL, &octets), (IFA_ADDRESS, &octets)],
        )
    }

    /// Removes `addr/prefix` (already gone: done); its subnet route goes with it.
    pub fn remove_address(&mut self, addr: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
        let octets = addr.octets();
        let what = format!("removing address {addr}/{prefix} from {}", self.name);
        self.nl.gone_ok = true;
        let done = self.nl.request(
            &what,
            RTM_DELADDR,
            0,
            &addr_body(self.index, prefix),
            &[(IFA_LOCAL, &octets), (IFA_ADDRESS, &octets)],
        );
        self.nl.gone_ok = false;
        done
    }

    /// The default route through `gw` on this interface, replacing any other default.
    pub fn set_default_route(&mut self, gw: Ipv4Addr) -> Result<(), NetError> {
        let oif = self.index.to_ne_bytes();
        let what = format!("default route via {gw}");
        self.nl.request(
            &what,
            RTM_NEWROUTE,
            NLM_F_CREATE | NLM_F_REPLACE,
            &default_route_body(),
            &[(RTA_GATEWAY, &gw.octets()), (RTA_OIF, &oif)],
        )
    }

    /// Removes the default route through `gw` (already gone: done).
    pub fn remove_default_route(&mut self, gw: Ipv4Addr) -> Result<(), NetError> {
        let oif = self.index.to_ne_bytes();
        let what = format!("removing the default route via {gw}");
        self.nl.gone_ok = true;
        let done = self.nl.request(
            &what,
            RTM_DELROUTE,
            0,
            &default_route_body(),
            &[(RTA_GATEWAY, &gw.octets()), (RTA_OIF, &oif)],
        );
        self.nl.gone_ok = false;
        done
    }
}

/// Waits until `name` has carrier (`SYS_NET/NAME/carrier` reads 1), polling until
/// `deadline`; the error is how long it waited. Address and route are set before: the
/// kernel takes them on a link without carrier.
pub fn wait_carrier(sys_net: &std::path::Path, name: &str, deadline: Instant) -> Result<(), Duration> {
    let started = Instant::now();
    let file = sys_net.join(name).join("carrier");
    loop {
        if std::fs::read_to_string(&file).is_ok_and(|t| t.trim() == "1") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_aligned_and_sized() {
        let m = message(RTM_NEWADDR, NLM_F_CREATE, 7, &addr_body(2, 24), &[(IFA_LOCAL, &[10, 0, 2, 15])]);
        // 16 header + 8 ifaddrmsg + 8 attribute
        assert_eq!(m.len(), 32);
        assert_eq!(u32::from_ne_bytes([m[0], m[1], m[2], m[3]]), 32);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), RTM_NEWADDR);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), NLM_F_CREATE | NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(&m[24..26], &8u16.to_ne_bytes());
        assert_eq!(&m[28..32], &[10, 0, 2, 15]);
    }

    #[test]
    fn a_kernel_that_does_not_answer_is_a_timeout() {
        // Nothing was sent, so nothing will come: the wait must end, and say so.
        let mut nl = match Netlink::open(Duration::from_millis(100)) {
            Ok(nl) => nl,
            Err(e) => panic!("a netlink route socket needs no privilege: {e}"),
        };
        nl.seq = 1;
        let started = Instant::now();
        let e = nl.wait_ack("lo up").expect_err("no answer");
        assert!(matches!(e, NetError::Timeout { .. }), "{e:?}");
        assert_eq!(e.to_string(), "lo up: no answer from the kernel within 100ms");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn carrier_is_read_from_sysfs_and_waited_for_until_the_deadline() {
        let sys = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(sys.path().join("eth0")).expect("mkdir");
        std::fs::write(sys.path().join("eth0/carrier"), "1\n").expect("write");
        assert_eq!(wait_carrier(sys.path(), "eth0", Instant::now()), Ok(()));
        std::fs::write(sys.path().join("eth0/carrier"), "0\n").expect("write");
        let waited =
            wait_carrier(sys.path(), "eth0", Instant::now() + Duration::from_millis(100)).expect_err("no carrier");
        assert!(waited >= Duration::from_millis(100) && waited < Duration::from_secs(5), "{waited:?}");
        // No such interface reads as no carrier, not as a panic.
        assert!(wait_carrier(sys.path(), "eth9", Instant::now()).is_err());
    }

    #[test]
    fn odd_attributes_are_padded() {
        let m = message(RTM_NEWLINK, 0, 1, &link_up_body(1), &[(3, b"eth0\0")]);
        assert_eq!(m.len() % 4, 0);
        assert_eq!(m.len(), 16 + 16 + 12);
    }
}
