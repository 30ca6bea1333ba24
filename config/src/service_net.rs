//! A service's network: `network = "host" | "none" | "bridge"`, and for bridge services
//! `publish = ["8080:80", "53:53/udp"]` (host port -> service port). The checks that need
//! the whole config (one publisher per host port, the bridge subnet off the host's own) are
//! in [`check`].

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::net::Ipv4Cidr;

/// Which network namespace a service runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceNetwork {
    /// The host's (the default): its interfaces, addresses and ports.
    #[default]
    Host,
    /// Its own namespace with only loopback: no way in or out.
    None,
    /// Its own namespace on hoist's bridge: an address from the bridge subnet, NAT to the
    /// outside, `publish` rules from the host's ports, the other bridge services by name.
    Bridge,
}

impl FromStr for ServiceNetwork {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "host" => Ok(ServiceNetwork::Host),
            "none" => Ok(ServiceNetwork::None),
            "bridge" => Ok(ServiceNetwork::Bridge),
            other => Err(format!("network {other:?} is not \"host\", \"none\" or \"bridge\"")),
        }
    }
}

impl fmt::Display for ServiceNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceNetwork::Host => "host",
            ServiceNetwork::None => "none",
            ServiceNetwork::Bridge => "bridge",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One `publish` rule: traffic to the host's `host` port goes to the service's `service`
/// port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Publish {
    pub host: u16,
    pub service: u16,
    pub proto: Proto,
}

impl FromStr for Publish {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("publish {s:?} is not HOST:SERVICE[/tcp|/udp], e.g. \"8080:80\" or \"53:53/udp\"");
        let (ports, proto) = match s.split_once('/') {
            None => (s, Proto::Tcp),
            Some((p, "tcp")) => (p, Proto::Tcp),
            Some((p, "udp")) => (p, Proto::Udp),
            Some(_) => return Err(bad()),
        };
        let (host, service) = ports.split_once(':').ok_or_else(bad)?;
        let port = |p: &str| -> Result<u16, String> {
            match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
                _ => Err(format!("publish {s:?}: port {p:?} is not 1 to 65535")),
            }
        };
        Ok(Publish { host: port(host)?, service: port(service)?, proto })
    }
}

impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.service)?;
        if self.proto == Proto::Udp {
            f.write_str("/udp")?;
        }
        Ok(())
    }
}

/// The guest's control API port, which no service may publish over (hoist-guest's
/// `api::PORT`: this crate depends on no other hoist crate; images' tests keep them equal).
pub const API_PORT: u16 = 7443;

/// The bridge subnet when `[network] bridge_subnet` is not set.
pub const DEFAULT_BRIDGE_SUBNET: Ipv4Cidr = Ipv4Cidr { addr: Ipv4Addr::new(10, 88, 0, 0), prefix: 16 };

/// A bridge subnet must leave room for the bridge and a service, and be its own network.
pub fn bridge_subnet(c: Ipv4Cidr) -> Result<Ipv4Cidr, String> {
    if !(8..=29).contains(&c.prefix) {
        return Err(format!("bridge_subnet {c}: the prefix must be 8 to 29"));
    }
    let network = Ipv4Addr::from(u32::from(c.addr) & u32::from(c.netmask()));
    if network != c.addr {
        return Err(format!("bridge_subnet {c} is not a network address: write {network}/{}", c.prefix));
    }
    if c.addr.is_loopback() || c.addr.is_multicast() || c.addr.is_unspecified() || c.addr.is_broadcast() {
        return Err(format!("bridge_subnet {c} is not a unicast range"));
    }
    Ok(c)
}

/// Do two subnets share an address?
pub fn overlaps(a: Ipv4Cidr, b: Ipv4Cidr) -> bool {
    let prefix = a.prefix.min(b.prefix);
    Ipv4Cidr { addr: a.addr, prefix }.contains(b.addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_rules_parse_and_print() {
        let p = |s: &str| s.parse::<Publish>();
        assert_eq!(p("8080:80"), Ok(Publish { host: 8080, service: 80, proto: Proto::Tcp }));
        assert_eq!(p("53:53/udp"), Ok(Publish { host: 53, service: 53, proto: Proto::Udp }));
        assert_eq!(p("1:65535/tcp").map(|p| p.to_string()), Ok("1:65535".to_string()));
        assert_eq!(p("53:5353/udp").map(|p| p.to_string()), Ok("53:5353/udp".to_string()));
        for bad in ["8080", "8080:", ":80", "0:80", "8080:65536", "80:80/sctp", "+80:80", "80:80:80", "a:b", ""] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
        assert_eq!(p("0:80"), Err("publish \"0:80\": port \"0\" is not 1 to 65535".to_string()));
    }

    #[test]
    fn modes_parse() {
        assert_eq!("none".parse(), Ok(ServiceNetwork::None));
        assert_eq!("bridge".parse::<ServiceNetwork>().map(|m| m.to_string()), Ok("bridge".to_string()));
        assert!("Host".parse::<ServiceNetwork>().is_err());
    }

    #[test]
    fn bridge_subnets_and_overlaps() {
        let c = |s: &str| s.parse::<Ipv4Cidr>().expect("cidr");
        assert_eq!(bridge_subnet(c("10.88.0.0/16")), Ok(c("10.88.0.0/16")));
        assert!(bridge_subnet(c("10.88.0.1/16")).expect_err("host bits").contains("write 10.88.0.0/16"));
        assert!(bridge_subnet(c("10.88.0.0/30")).is_err());
        assert!(bridge_subnet(c("127.0.0.0/8")).is_err());
        assert!(overlaps(c("10.0.2.15/24"), c("10.0.0.0/16")));
        assert!(overlaps(c("10.0.0.0/16"), c("10.0.2.15/24")));
        assert!(!overlaps(c("10.0.2.15/24"), c("10.88.0.0/16")));
    }
}
