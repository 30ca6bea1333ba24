//! rtnetlink requests, the few PID 1 (address, route, link up) and the supervisor (the
//! bridge, veth pairs, addresses in a service's namespace) make: messages built by hand
//! ([`Msg`], attributes nested where the kernel wants them) and sent on a socket that
//! waits for each ack with a deadline ([`Socket`]). A socket works in the network
//! namespace of the thread that opened it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_DELADDR: u16 = 21;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;

pub const IFF_UP: u32 = 0x1;
pub const IFLA_ADDRESS: u16 = 1;
pub const IFLA_IFNAME: u16 = 3;
pub const IFLA_MASTER: u16 = 10;
pub const IFLA_LINKINFO: u16 = 18;
pub const IFLA_NET_NS_FD: u16 = 28;
pub const IFLA_INFO_KIND: u16 = 1;
pub const IFLA_INFO_DATA: u16 = 2;
pub const VETH_INFO_PEER: u16 = 1;
pub const IFA_ADDRESS: u16 = 1;
pub const IFA_LOCAL: u16 = 2;
pub const RTA_GATEWAY: u16 = 5;
pub const RTA_OIF: u16 = 4;
pub const AF_INET: u8 = 2;

/// How long the kernel gets to answer one request. It answers rtnetlink requests at once;
/// this only keeps a kernel that never does from hanging whoever asked.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("{what}: {err}")]
    Request { what: String, err: std::io::Error },
    #[error("{what}: no answer from the kernel within {after:?}")]
    Timeout { what: String, after: Duration },
}

impl Error {
    /// The errno the kernel answered with, if it answered with one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Request { err, .. } | Error::Socket(err) => err.raw_os_error(),
            Error::Timeout { .. } => None,
        }
    }
}

/// One message: header, fixed body, attributes (4-byte aligned; nested ones as a block).
#[derive(Debug, Clone)]
pub struct Msg {
    buf: Vec<u8>,
    /// Where each open nest's length field is.
    open: Vec<usize>,
}

impl Msg {
    /// A request of `kind` (acked) with `flags` and this fixed `body`.
    pub fn new(kind: u16, flags: u16, body: &[u8]) -> Msg {
        let mut buf = vec![0u8; 16];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(body);
        let mut m = Msg { buf, open: Vec::new() };
        m.pad();
        m
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub fn attr(mut self, kind: u16, data: &[u8]) -> Msg {
        self.buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    /// A NUL-terminated string attribute (interface names, link kinds).
    pub fn str_attr(self, kind: u16, s: &str) -> Msg {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.attr(kind, &data)
    }

    pub fn u32_attr(self, kind: u16, v: u32) -> Msg {
        self.attr(kind, &v.to_ne_bytes())
    }

    /// Opens a nested attribute; what follows goes inside until [`Msg::end`].
    pub fn nest(mut self, kind: u16) -> Msg {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    /// Raw bytes inside the open nest (a peer's ifinfomsg).
    pub fn raw(mut self, data: &[u8]) -> Msg {
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    pub fn end(mut self) -> Msg {
        if let Some(at) = self.open.pop() {
            let len = (self.buf.len() - at) as u16;
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// The bytes, with the length and sequence number filled in.
    pub fn bytes(mut self, seq: u32) -> Vec<u8> {
        while !self.open.is_empty() {
            self = self.end();
        }
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// ifinfomsg: family, type, index, flags, change mask.
pub fn ifinfo(index: u32, flags: u32, change: u32) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// ifaddrmsg for an IPv4 address on `index`.
pub fn ifaddr(index: u32, prefix: u8) -> Vec<u8> {
    let mut b = vec![AF_INET, prefix, 0, 0];
    b.extend_from_slice(&index.to_ne_bytes());
    b
}

/// rtmsg for a default route in the main table.
pub fn default_route() -> Vec<u8> {
    // family, dst_len, src_len, tos, table=main, protocol=boot, scope=universe, type=unicast, flags
    let mut b = vec![AF_INET, 0, 0, 0, 254, 3, 0, 1];
    b.extend_from_slice(&0u32.to_ne_bytes());
    b
}

/// A route socket in the opening thread's network namespace.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
    timeout: Duration,
}

impl Socket {
    pub fn open(timeout: Duration) -> Result<Socket, Error> {
        let last = || Error::Socket(std::io::Error::last_os_error());
        // SAFETY: plain syscalls on values we own; the fd is checked before it is owned.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return Err(last());
        }
        // SAFETY: fd is a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a zeroed sockaddr_nl is valid (pid 0: the kernel picks).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        // SAFETY: addr is a valid sockaddr_nl of `len` bytes.
        if unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) } < 0 {
            return Err(last());
        }
        // Each recv then ends with EAGAIN instead of blocking for ever.
        let tv = libc::timeval {
            tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
            tv_usec: timeout.subsec_micros().into(),
        };
        let tv_len = std::mem::size_of::<libc::timeval>() as u32;
        // SAFETY: tv is a valid timeval of `tv_len` bytes.
        if unsafe {
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&raw const tv).cast(), tv_len)
        } < 0
        {
            return Err(last());
        }
        Ok(Socket { fd, seq: 0, timeout })
    }

    /// Sends `msg` and waits for its ack. EEXIST counts as done (the thing is there).
    pub fn request(&mut self, what: &str, msg: Msg) -> Result<(), Error> {
        match self.ask(what, msg) {
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// [`Socket::request`] for a removal: gone already (ENODEV, ESRCH, EADDRNOTAVAIL)
    /// counts as done.
    pub fn remove(&mut self, what: &str, msg: Msg) -> Result<(), Error> {
        match self.ask(what, msg) {
            Err(e) if matches!(e.errno(), Some(libc::ENODEV | libc::ESRCH | libc::EADDRNOTAVAIL | libc::ENOENT)) => {
                Ok(())
            }
            other => other,
        }
    }

    /// Sends `msg` and waits for its ack, whatever it says.
    pub fn ask(&mut self, what: &str, msg: Msg) -> Result<(), Error> {
        self.seq = self.seq.wrapping_add(1);
        let bytes = msg.bytes(self.seq);
        // SAFETY: a zeroed sockaddr_nl addresses the kernel.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as u16;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        // SAFETY: bytes and to are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0, (&raw const to).cast(), len)
        };
        if sent < 0 {
            return Err(Error::Request { what: what.to_string(), err: std::io::Error::last_os_error() });
        }
        self.wait_ack(what)
    }

    /// Reads until the ack of request `self.seq`. Bounded as a whole, not only per recv, so
    /// that a stream of other messages cannot keep us here either.
    fn wait_ack(&mut self, what: &str) -> Result<(), Error> {
        let timeout = || Error::Timeout { what: what.to_string(), after: self.timeout };
        let deadline = Instant::now() + self.timeout;
        let mut buf = [0u8; 4096];
        loop {
            if Instant::now() >= deadline {
                return Err(timeout());
            }
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EAGAIN) => return Err(timeout()),
                    // A socket with a receive timeout is not restarted after a signal handler.
                    Some(libc::EINTR) => continue,
                    _ => return Err(Error::Request { what: what.to_string(), err }),
                }
            }
            let n = n as usize;
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
                c => Err(Error::Request { what: what.to_string(), err: std::io::Error::from_raw_os_error(-c) }),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([b[at], b[at + 1]])
    }

    #[test]
    fn messages_are_aligned_and_sized() {
        let m = Msg::new(RTM_NEWADDR, NLM_F_CREATE, &ifaddr(2, 24)).attr(IFA_LOCAL, &[10, 0, 2, 15]).bytes(7);
        // 16 header + 8 ifaddrmsg + 8 attribute
        assert_eq!(m.len(), 32);
        assert_eq!(u32::from_ne_bytes([m[0], m[1], m[2], m[3]]), 32);
        assert_eq!(u16_at(&m, 4), RTM_NEWADDR);
        assert_eq!(u16_at(&m, 6), NLM_F_CREATE | NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32::from_ne_bytes([m[8], m[9], m[10], m[11]]), 7);
        assert_eq!(u16_at(&m, 24), 8);
        assert_eq!(&m[28..32], &[10, 0, 2, 15]);
        // Odd lengths are padded.
        let m = Msg::new(RTM_NEWLINK, 0, &ifinfo(1, IFF_UP, IFF_UP)).str_attr(IFLA_IFNAME, "eth0").bytes(1);
        assert_eq!(m.len(), 16 + 16 + 12);
    }

    #[test]
    fn nests_carry_their_whole_length() {
        // A veth pair: linkinfo { kind "veth", data { peer { ifinfomsg, ifname "eth0" } } }.
        let m = Msg::new(RTM_NEWLINK, NLM_F_CREATE, &ifinfo(0, 0, 0))
            .str_attr(IFLA_IFNAME, "hv2")
            .nest(IFLA_LINKINFO)
            .str_attr(IFLA_INFO_KIND, "veth")
            .nest(IFLA_INFO_DATA)
            .nest(VETH_INFO_PEER)
            .raw(&ifinfo(0, 0, 0))
            .str_attr(IFLA_IFNAME, "eth0")
            .end()
            .end()
            .end()
            .bytes(3);
        assert_eq!(m.len() % 4, 0);
        let linkinfo = 32 + 8; // header + ifinfomsg, then "hv2\0" (8)
        assert_eq!(u16_at(&m, linkinfo + 2), IFLA_LINKINFO | NLA_F_NESTED);
        assert_eq!(usize::from(u16_at(&m, linkinfo)), m.len() - linkinfo, "linkinfo runs to the end");
        let data = linkinfo + 4 + 12; // its header, then kind "veth\0" (12)
        assert_eq!(u16_at(&m, data + 2), IFLA_INFO_DATA | NLA_F_NESTED);
        assert_eq!(usize::from(u16_at(&m, data)), m.len() - data);
        let peer = data + 4;
        assert_eq!(usize::from(u16_at(&m, peer)), 4 + 16 + 12);
        // An unclosed nest is closed by bytes().
        let open = Msg::new(RTM_NEWLINK, 0, &[]).nest(IFLA_LINKINFO).str_attr(IFLA_INFO_KIND, "bridge").bytes(1);
        assert_eq!(usize::from(u16_at(&open, 16)), open.len() - 16);
    }

    #[test]
    fn a_kernel_that_does_not_answer_is_a_timeout() {
        // Nothing was sent, so nothing will come: the wait must end, and say so.
        let mut s = Socket::open(Duration::from_millis(100)).expect("a route socket needs no privilege");
        s.seq = 1;
        let started = Instant::now();
        let e = s.wait_ack("lo up").expect_err("no answer");
        assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
        assert_eq!(e.to_string(), "lo up: no answer from the kernel within 100ms");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
