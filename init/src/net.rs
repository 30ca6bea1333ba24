//! Network setup over rtnetlink ([`hoist_guest::netlink`]): loopback up, the configured
//! interface's address, link and default route, and the changes the DHCP helper makes.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hoist_guest::netlink::{
    self, IFA_ADDRESS, IFA_LOCAL, IFF_UP, Msg, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, RTA_GATEWAY, RTA_OIF,
    RTM_DELADDR, RTM_DELROUTE, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE, Socket,
};

pub use hoist_guest::netlink::ANSWER_TIMEOUT;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("interface {0} did not appear")]
    NoInterface(String),
    #[error(transparent)]
    Netlink(#[from] netlink::Error),
}

fn index_of(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

fn up(index: u32) -> Msg {
    Msg::new(RTM_NEWLINK, 0, &netlink::ifinfo(index, IFF_UP, IFF_UP))
}

fn address(kind: u16, flags: u16, index: u32, addr: Ipv4Addr, prefix: u8) -> Msg {
    let octets = addr.octets();
    Msg::new(kind, flags, &netlink::ifaddr(index, prefix)).attr(IFA_LOCAL, &octets).attr(IFA_ADDRESS, &octets)
}

fn default_route(kind: u16, flags: u16, index: u32, gw: Ipv4Addr) -> Msg {
    Msg::new(kind, flags, &netlink::default_route()).attr(RTA_GATEWAY, &gw.octets()).u32_attr(RTA_OIF, index)
}

pub fn loopback_up() -> Result<(), NetError> {
    let mut nl = Socket::open(ANSWER_TIMEOUT)?;
    let index = index_of("lo").ok_or_else(|| NetError::NoInterface("lo".into()))?;
    Ok(nl.request("lo up", up(index))?)
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
    let mut nl = Socket::open(ANSWER_TIMEOUT)?;
    let what = format!("address {addr}/{prefix} on {name}");
    nl.request(&what, address(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, index, addr, prefix))?;
    nl.request(&format!("{name} up"), up(index))?;
    if let Some(gw) = gateway {
        let route = default_route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, index, gw);
        nl.request(&format!("default route via {gw}"), route)?;
    }
    Ok(())
}

/// The link, address and route changes the DHCP helper makes, one request each.
pub struct Interface {
    nl: Socket,
    pub name: String,
    pub index: u32,
}

impl Interface {
    /// `name`, if it exists now.
    pub fn open(name: &str) -> Result<Interface, NetError> {
        let index = index_of(name).ok_or_else(|| NetError::NoInterface(name.to_string()))?;
        Ok(Interface { nl: Socket::open(ANSWER_TIMEOUT)?, name: name.to_string(), index })
    }

    pub fn up(&mut self) -> Result<(), NetError> {
        Ok(self.nl.request(&format!("{} up", self.name), up(self.index))?)
    }

    /// Adds `addr/prefix` (already there: done).
    pub fn add_address(&mut self, addr: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
        let what = format!("address {addr}/{prefix} on {}", self.name);
        Ok(self.nl.request(&what, address(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, self.index, addr, prefix))?)
    }

    /// Removes `addr/prefix` (already gone: done); its subnet route goes with it.
    pub fn remove_address(&mut self, addr: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
        let what = format!("removing address {addr}/{prefix} from {}", self.name);
        Ok(self.nl.remove(&what, address(RTM_DELADDR, 0, self.index, addr, prefix))?)
    }

    /// The default route through `gw` on this interface, replacing any other default.
    pub fn set_default_route(&mut self, gw: Ipv4Addr) -> Result<(), NetError> {
        let route = default_route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, self.index, gw);
        Ok(self.nl.request(&format!("default route via {gw}"), route)?)
    }

    /// Removes the default route through `gw` (already gone: done).
    pub fn remove_default_route(&mut self, gw: Ipv4Addr) -> Result<(), NetError> {
        let what = format!("removing the default route via {gw}");
        Ok(self.nl.remove(&what, default_route(RTM_DELROUTE, 0, self.index, gw))?)
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
}
