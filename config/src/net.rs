//! IPv4 addresses and `a.b.c.d/n` interface addresses for `[network]`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("invalid IPv4 address {0:?}: expected a.b.c.d")]
    Address(String),
    #[error("invalid address {0:?}: expected a.b.c.d/n")]
    Cidr(String),
    #[error("invalid prefix length in {0:?}: expected 0 to 32")]
    Prefix(String),
}

/// An interface address with its prefix length, e.g. 10.0.2.15/24.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// The netmask, e.g. 255.255.255.0 for /24.
    pub fn netmask(&self) -> Ipv4Addr {
        let bits = u32::MAX.checked_shl(32 - u32::from(self.prefix.min(32))).unwrap_or(0);
        Ipv4Addr::from(bits)
    }

    /// Whether `ip` is on this address's subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.netmask());
        u32::from(self.addr) & mask == u32::from(ip) & mask
    }
}

impl FromStr for Ipv4Cidr {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| NetError::Cidr(s.to_string()))?;
        let addr = addr.parse().map_err(|_| NetError::Cidr(s.to_string()))?;
        let prefix = match prefix.parse::<u8>() {
            Ok(p) if p <= 32 && prefix.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(NetError::Prefix(s.to_string())),
        };
        Ok(Ipv4Cidr { addr, prefix })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An `Ipv4Addr` whose parse error names the text (std's does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ipv4(pub Ipv4Addr);

impl FromStr for Ipv4 {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Ipv4).map_err(|_| NetError::Address(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Result<Ipv4Cidr, NetError> {
        s.parse()
    }

    #[test]
    fn cidr_parses_and_displays() {
        let c = cidr("10.0.2.15/24").expect("valid");
        assert_eq!(c, Ipv4Cidr { addr: Ipv4Addr::new(10, 0, 2, 15), prefix: 24 });
        assert_eq!(c.to_string(), "10.0.2.15/24");
        assert_eq!(cidr("0.0.0.0/0").map(|c| c.prefix), Ok(0));
        assert_eq!(cidr("192.168.1.1/32").map(|c| c.prefix), Ok(32));
    }

    #[test]
    fn cidr_syntax_errors() {
        for bad in ["10.0.2.15", "10.0.2/24", "10.0.2.300/24", "/24", "", "a.b.c.d/8", " 10.0.2.15/24"] {
            assert_eq!(cidr(bad), Err(NetError::Cidr(bad.to_string())), "{bad:?}");
        }
    }

    #[test]
    fn cidr_prefix_errors() {
        for bad in ["10.0.2.15/33", "10.0.2.15/", "10.0.2.15/+8", "10.0.2.15/x", "10.0.2.15/256", "10.0.2.15/24/1"] {
            assert_eq!(cidr(bad), Err(NetError::Prefix(bad.to_string())), "{bad:?}");
        }
    }

    #[test]
    fn netmask_and_contains() {
        let c = cidr("10.0.2.15/24").expect("valid");
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(c.contains(Ipv4Addr::new(10, 0, 2, 2)));
        assert!(!c.contains(Ipv4Addr::new(10, 0, 3, 2)));
        assert_eq!(cidr("1.2.3.4/0").expect("valid").netmask(), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(cidr("1.2.3.4/32").expect("valid").netmask(), Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(cidr("1.2.3.4/20").expect("valid").netmask(), Ipv4Addr::new(255, 255, 240, 0));
    }

    #[test]
    fn addresses_name_the_bad_text() {
        assert_eq!("10.0.2.2".parse::<Ipv4>(), Ok(Ipv4(Ipv4Addr::new(10, 0, 2, 2))));
        let e = "10.0.2.256".parse::<Ipv4>().expect_err("invalid");
        assert_eq!(e.to_string(), "invalid IPv4 address \"10.0.2.256\": expected a.b.c.d");
    }
}
