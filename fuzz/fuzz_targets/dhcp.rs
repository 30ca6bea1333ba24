//! What the DHCP helper reads from the network: any packet. The decoder never panics, and
//! whatever it decodes, fed to the client as an OFFER, an ACK and a renewal's ACK for its
//! own transactions, makes only leases the helper can put on an interface: a unicast
//! address, timers in order, a router on the subnet, at most three name servers.
#![no_main]

use hoist_init::dhcp::machine::{Action, Client, Lease, Reply, ReplyKind, same_subnet};
use hoist_init::dhcp::wire;
use libfuzzer_sys::fuzz_target;

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

fn check(actions: &[Action]) {
    for a in actions {
        if let Action::Configure(l) = a {
            usable(l);
        }
    }
}

fn usable(l: &Lease) {
    let ip = l.address;
    assert!(!(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback()), "{l:?}");
    assert!(l.t1_secs <= l.t2_secs && l.t2_secs <= l.lease_secs && l.t1_secs > 0, "{l:?}");
    assert!(l.prefix <= 32 && l.dns.len() <= 3, "{l:?}");
    if let Some(r) = l.router {
        assert!(same_subnet(ip, r, l.prefix) && r != ip, "{l:?}");
    }
    assert!(l.renew_at() <= l.rebind_at() && l.rebind_at() <= l.expires_at(), "{l:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some(reply) = wire::decode(data, &MAC) else { return };
    let mut c = Client::new(0, 1);
    c.poll(0);
    check(&c.on_reply(10, &Reply { xid: c.xid(), kind: ReplyKind::Offer, ..reply.clone() }));
    check(&c.on_reply(20, &Reply { xid: c.xid(), kind: ReplyKind::Ack, ..reply.clone() }));
    let Some(lease) = c.lease().cloned() else { return };
    check(&c.poll(lease.renew_at()));
    check(&c.on_reply(lease.renew_at(), &Reply { xid: c.xid(), ..reply }));
});
