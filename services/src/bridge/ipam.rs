//! Addresses for bridge services: the bridge takes the subnet's first host address, each
//! service the lowest free one after it, kept by name until the service is removed (so a
//! restart keeps its address). Pure; the state file is [`Ipam::format`]'s text.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use hoist_config::service_net::overlaps;

pub use hoist_config::Ipv4Cidr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipam {
    subnet: Ipv4Cidr,
    by_name: BTreeMap<String, Ipv4Addr>,
}

impl Ipam {
    pub fn new(subnet: Ipv4Cidr) -> Ipam {
        Ipam { subnet, by_name: BTreeMap::new() }
    }

    pub fn subnet(&self) -> Ipv4Cidr {
        self.subnet
    }

    /// The bridge's own address, every service's gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.addr) + 1)
    }

    /// `name`'s address: the one it has, or the lowest free one.
    pub fn address(&mut self, name: &str) -> Result<Ipv4Addr, String> {
        if let Some(ip) = self.by_name.get(name) {
            return Ok(*ip);
        }
        let first = u32::from(self.subnet.addr) + 2;
        let size = 1u64 << (32 - u32::from(self.subnet.prefix));
        // The last address is the broadcast.
        let last = (u64::from(u32::from(self.subnet.addr)) + size - 2) as u32;
        let taken: std::collections::BTreeSet<u32> = self.by_name.values().map(|ip| u32::from(*ip)).collect();
        let free = (first..=last).find(|n| !taken.contains(n));
        let ip = free.map(Ipv4Addr::from).ok_or_else(|| {
            format!("bridge subnet {} is full ({} services hold every address)", self.subnet, self.by_name.len())
        })?;
        self.by_name.insert(name.to_string(), ip);
        Ok(ip)
    }

    /// Frees `name`'s address; the address it had, if any.
    pub fn release(&mut self, name: &str) -> Option<Ipv4Addr> {
        self.by_name.remove(name)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&str, Ipv4Addr)> {
        self.by_name.iter().map(|(n, ip)| (n.as_str(), *ip))
    }

    /// One `NAME ADDRESS` line per service, after a `subnet CIDR` line.
    pub fn format(&self) -> String {
        let mut out = format!("subnet {}\n", self.subnet);
        for (name, ip) in &self.by_name {
            out.push_str(&format!("{name} {ip}\n"));
        }
        out
    }

    /// The state a previous supervisor wrote, if it was for `subnet`: addresses outside it,
    /// or taken twice, are dropped (the file is ours, but a damaged one must not hand out
    /// an address twice).
    pub fn parse(text: &str, subnet: Ipv4Cidr) -> Ipam {
        let mut ipam = Ipam::new(subnet);
        let mut lines = text.lines();
        if lines.next() != Some(&format!("subnet {subnet}")) {
            return ipam;
        }
        let gateway = ipam.gateway();
        for line in lines {
            let Some((name, ip)) = line.split_once(' ') else { continue };
            let Ok(ip) = ip.parse::<Ipv4Addr>() else { continue };
            let inside = overlaps(Ipv4Cidr { addr: ip, prefix: 32 }, subnet);
            let broadcast = u32::from(ip) == u32::from(subnet.addr) | !u32::from(subnet.netmask());
            if inside && ip != subnet.addr && ip != gateway && !broadcast && !ipam.by_name.values().any(|v| *v == ip) {
                ipam.by_name.insert(name.to_string(), ip);
            }
        }
        ipam
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(s: &str) -> Ipv4Cidr {
        s.parse().expect("cidr")
    }

    #[test]
    fn addresses_are_kept_by_name_and_freed_on_release() {
        let mut ipam = Ipam::new(subnet("10.88.0.0/16"));
        assert_eq!(ipam.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(ipam.address("db"), Ok(Ipv4Addr::new(10, 88, 0, 2)));
        assert_eq!(ipam.address("api"), Ok(Ipv4Addr::new(10, 88, 0, 3)));
        assert_eq!(ipam.address("db"), Ok(Ipv4Addr::new(10, 88, 0, 2)), "a restart keeps it");
        assert_eq!(ipam.release("db"), Some(Ipv4Addr::new(10, 88, 0, 2)));
        assert_eq!(ipam.release("db"), None);
        assert_eq!(ipam.address("web"), Ok(Ipv4Addr::new(10, 88, 0, 2)), "the lowest free one");
    }

    #[test]
    fn a_full_subnet_says_so() {
        // /29: network, bridge, 5 services, broadcast.
        let mut ipam = Ipam::new(subnet("192.168.9.0/29"));
        for i in 0..5 {
            assert!(ipam.address(&format!("s{i}")).is_ok());
        }
        assert_eq!(ipam.entries().last().map(|(_, ip)| ip), Some(Ipv4Addr::new(192, 168, 9, 6)));
        let e = ipam.address("one-more").expect_err("full");
        assert!(e.contains("192.168.9.0/29 is full"), "{e}");
        ipam.release("s3");
        assert_eq!(ipam.address("one-more"), Ok(Ipv4Addr::new(192, 168, 9, 5)));
    }

    #[test]
    fn the_state_reads_back_and_bad_lines_are_dropped() {
        let s = subnet("10.88.0.0/16");
        let mut ipam = Ipam::new(s);
        ipam.address("db").expect("address");
        ipam.address("api").expect("address");
        assert_eq!(Ipam::parse(&ipam.format(), s), ipam);
        // Another subnet: start over.
        assert_eq!(Ipam::parse(&ipam.format(), subnet("10.89.0.0/16")).entries().count(), 0);
        let damaged = "subnet 10.88.0.0/16\na 10.88.0.2\nb 10.88.0.2\nc 10.99.0.2\nd 10.88.0.1\ne 10.88.255.255\nf x\ng 10.88.0.9\n";
        let got: Vec<_> = Ipam::parse(damaged, s).entries().map(|(n, ip)| (n.to_string(), ip)).collect();
        assert_eq!(
            got,
            [("a".to_string(), Ipv4Addr::new(10, 88, 0, 2)), ("g".to_string(), Ipv4Addr::new(10, 88, 0, 9))]
        );
    }
}
