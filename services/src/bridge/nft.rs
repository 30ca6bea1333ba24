//! The bridge's NAT as one nftables table, `ip hoist`, replaced whole in one transaction
//! each time a bridge service comes or goes (`nft -f -`: the old table and the new one
//! never mix). Masquerade for what leaves the subnet through another interface; one DNAT
//! rule per `publish`, for packets to any of the host's own addresses (not loopback),
//! arriving (prerouting) or made here (output). Pure: the text is tested here.

use std::fmt::Write;
use std::net::Ipv4Addr;

use hoist_config::{Ipv4Cidr, Publish};

/// The bridge's interface name.
pub const BRIDGE: &str = "hoist0";
/// The nftables table hoist owns; nothing else is touched.
pub const TABLE: &str = "hoist";

/// The whole ruleset text: the table made (so the delete never fails), deleted, and
/// written again.
pub fn ruleset(subnet: Ipv4Cidr, rules: &[(Ipv4Addr, Publish)]) -> String {
    let mut dnat = String::new();
    for (ip, p) in rules {
        let _ = writeln!(
            dnat,
            "\t\tfib daddr type local ip daddr != 127.0.0.0/8 {} dport {} dnat to {ip}:{}",
            p.proto, p.host, p.service
        );
    }
    format!(
        "table ip {TABLE} {{}}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tchain prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n{dnat}\t}}\n\
         \tchain output {{\n\t\ttype nat hook output priority -100; policy accept;\n{dnat}\t}}\n\
         \tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {subnet} oifname != \"{BRIDGE}\" masquerade\n\t}}\n\
         }}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoist_config::Proto;

    #[test]
    fn the_ruleset_has_masquerade_and_one_dnat_per_publish_in_both_hooks() {
        let subnet: Ipv4Cidr = "10.88.0.0/16".parse().expect("cidr");
        let rules = [
            (Ipv4Addr::new(10, 88, 0, 2), Publish { host: 8080, service: 80, proto: Proto::Tcp }),
            (Ipv4Addr::new(10, 88, 0, 3), Publish { host: 53, service: 5353, proto: Proto::Udp }),
        ];
        let text = ruleset(subnet, &rules);
        assert!(text.starts_with("table ip hoist {}\ndelete table ip hoist\ntable ip hoist {\n"), "{text}");
        assert_eq!(text.matches("tcp dport 8080 dnat to 10.88.0.2:80").count(), 2, "{text}");
        assert_eq!(text.matches("udp dport 53 dnat to 10.88.0.3:5353").count(), 2, "{text}");
        assert!(text.contains("ip saddr 10.88.0.0/16 oifname != \"hoist0\" masquerade"), "{text}");
        assert_eq!(text.matches('{').count(), text.matches('}').count());
        // No publish: still the masquerade, no DNAT.
        let none = ruleset(subnet, &[]);
        assert!(!none.contains("dnat") && none.contains("masquerade"), "{none}");
    }
}
