use super::*;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const ME: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

fn reply(kind: ReplyKind, xid: u32) -> Reply {
    Reply {
        kind,
        xid,
        yiaddr: ME,
        server: Some(SERVER),
        lease_secs: Some(100),
        t1_secs: None,
        t2_secs: None,
        prefix: Some(24),
        router: Some(SERVER),
        dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
    }
}

fn sent(actions: &[Action]) -> Vec<&Outgoing> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(o) => Some(o),
            _ => None,
        })
        .collect()
}

fn configured(actions: &[Action]) -> Option<&Lease> {
    actions.iter().find_map(|a| match a {
        Action::Configure(l) => Some(l),
        _ => None,
    })
}

/// A client that went DISCOVER, OFFER, REQUEST, ACK at time 0; returns it bound.
fn bound() -> Client {
    let mut c = Client::new(0, 7);
    let out = c.poll(0);
    let xid = sent(&out)[0].xid;
    let out = c.on_reply(0, &reply(ReplyKind::Offer, xid));
    assert_eq!(sent(&out)[0].kind, MessageKind::Request);
    let out = c.on_reply(0, &reply(ReplyKind::Ack, xid));
    assert!(configured(&out).is_some(), "{out:?}");
    c
}

#[test]
fn discover_offer_request_ack_binds_the_lease() {
    let mut c = Client::new(5_000, 7);
    let out = c.poll(5_000);
    let d = sent(&out);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].kind, d[0].dest, d[0].ciaddr), (MessageKind::Discover, Dest::Broadcast, None));
    let xid = d[0].xid;
    // An offer for another transaction is someone else's.
    assert!(c.on_reply(5_100, &reply(ReplyKind::Offer, xid.wrapping_add(1))).is_empty());
    let out = c.on_reply(5_100, &reply(ReplyKind::Offer, xid));
    let r = sent(&out);
    assert_eq!(r[0].kind, MessageKind::Request);
    assert_eq!((r[0].requested, r[0].server, r[0].dest), (Some(ME), Some(SERVER), Dest::Broadcast));
    let out = c.on_reply(5_200, &reply(ReplyKind::Ack, xid));
    let lease = configured(&out).expect("configured");
    assert_eq!((lease.address, lease.prefix, lease.router), (ME, 24, Some(SERVER)));
    assert_eq!(lease.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
    // Timers count from the REQUEST: 100 s lease, T1 50 s, T2 87.5 s.
    assert_eq!((lease.acquired, lease.renew_at(), lease.rebind_at()), (5_100, 55_100, 92_100));
    assert_eq!(lease.expires_at(), 105_100);
    assert_eq!(c.state_name(), "bound");
    assert_eq!(c.next_wakeup(), 55_100);
}

#[test]
fn discover_is_retried_with_doubling_backoff_for_ever() {
    let mut c = Client::new(0, 1);
    let mut times = Vec::new();
    let mut now = 0;
    for _ in 0..9 {
        now = c.next_wakeup();
        let out = c.poll(now);
        assert_eq!(sent(&out)[0].kind, MessageKind::Discover);
        times.push(now);
        // Polling early sends nothing.
        assert!(c.poll(now + 1).is_empty());
    }
    assert_eq!(times, vec![0, 1_000, 3_000, 7_000, 15_000, 31_000, 63_000, 95_000, 127_000]);
    assert_eq!(c.state_name(), "selecting");
    assert!(c.lease().is_none());
    assert_eq!(sent(&c.poll(c.next_wakeup()))[0].secs, ((now + RETRY_MAX) / 1000) as u16);
}

#[test]
fn an_unanswered_request_goes_back_to_discover() {
    let mut c = Client::new(0, 3);
    let xid = sent(&c.poll(0))[0].xid;
    c.on_reply(0, &reply(ReplyKind::Offer, xid));
    let mut kinds = Vec::new();
    for _ in 0..REQUEST_TRIES {
        let now = c.next_wakeup();
        kinds.extend(sent(&c.poll(now)).iter().map(|o| o.kind));
    }
    assert_eq!(kinds[..3], [MessageKind::Request; 3]);
    assert_eq!(kinds[3], MessageKind::Discover);
    assert_eq!(c.state_name(), "selecting");
}

#[test]
fn renewal_at_t1_is_unicast_and_an_ack_extends_the_lease() {
    let mut c = bound();
    assert!(c.poll(49_999).is_empty());
    let out = c.poll(50_000);
    let r = sent(&out);
    assert_eq!(r[0].kind, MessageKind::Request);
    assert_eq!((r[0].dest, r[0].ciaddr, r[0].requested), (Dest::Server(SERVER), Some(ME), None));
    assert_eq!(c.state_name(), "renewing");
    let out = c.on_reply(50_050, &Reply { server: None, ..reply(ReplyKind::Ack, r[0].xid) });
    let lease = configured(&out).expect("renewed");
    assert!(!out.iter().any(|a| matches!(a, Action::Deconfigure(_))), "same address: not taken off");
    assert_eq!((lease.acquired, lease.address, lease.server), (50_000, ME, SERVER));
    assert_eq!(c.next_wakeup(), 100_000);
}

#[test]
fn renewal_retries_at_half_the_time_left_then_rebinds_then_expires() {
    let mut c = bound();
    let first = sent(&c.poll(50_000))[0].xid;
    // T2 at 87 s (7/8 of 100 s, whole seconds): retry at half of the 37 s left.
    assert_eq!(c.next_wakeup(), 68_500);
    let again = sent(&c.poll(68_500))[0].clone();
    assert_eq!((again.xid, again.dest), (first, Dest::Server(SERVER)));
    // Then half of what is left again: 9.25 s.
    assert_eq!(c.next_wakeup(), 77_750);
    c.poll(77_750);
    assert_eq!(c.next_wakeup(), 82_375);
    let out = c.poll(87_000);
    let r = sent(&out);
    assert_eq!((r[0].dest, r[0].ciaddr), (Dest::Broadcast, Some(ME)));
    assert_eq!(c.state_name(), "rebinding");
    assert_ne!(r[0].xid, first, "rebinding is a new transaction");
    // The retry never comes sooner than the floor, even near the end.
    let mut now = 87_000;
    while c.next_wakeup() < 100_000 {
        let next = c.next_wakeup();
        assert!(next - now >= RENEW_RETRY_MIN || next == 100_000, "{now} -> {next}");
        now = next;
        c.poll(now);
    }
    let out = c.poll(100_000);
    assert!(matches!(out.first(), Some(Action::Deconfigure(l)) if l.address == ME), "{out:?}");
    assert_eq!(sent(&out)[0].kind, MessageKind::Discover);
    assert!(c.lease().is_none());
}

#[test]
fn a_rebind_ack_with_another_address_replaces_the_old_one() {
    let mut c = bound();
    c.poll(50_000);
    let xid = sent(&c.poll(87_000))[0].xid;
    let other = Ipv4Addr::new(10, 0, 2, 16);
    let out = c.on_reply(88_000, &Reply { yiaddr: other, ..reply(ReplyKind::Ack, xid) });
    assert!(matches!(&out[0], Action::Deconfigure(l) if l.address == ME), "{out:?}");
    assert_eq!(configured(&out).map(|l| l.address), Some(other));
}

#[test]
fn a_nak_drops_the_lease_and_starts_over() {
    let mut c = bound();
    let xid = sent(&c.poll(50_000))[0].xid;
    let out = c.on_reply(50_100, &reply(ReplyKind::Nak, xid));
    assert!(matches!(&out[0], Action::Deconfigure(l) if l.address == ME), "{out:?}");
    assert_eq!(sent(&out)[0].kind, MessageKind::Discover);
    assert!(c.lease().is_none());
    // A NAK while selecting means nothing.
    let xid = sent(&out)[0].xid;
    assert!(c.on_reply(50_200, &reply(ReplyKind::Nak, xid)).is_empty());
}

#[test]
fn release_tells_the_server_and_takes_the_address_off() {
    let mut c = bound();
    let out = c.release(10_000);
    let r = sent(&out);
    assert_eq!(r[0].kind, MessageKind::Release);
    assert_eq!((r[0].dest, r[0].ciaddr, r[0].server), (Dest::Server(SERVER), Some(ME), Some(SERVER)));
    assert!(matches!(out.last(), Some(Action::Deconfigure(l)) if l.address == ME));
    assert!(c.release(10_001).is_empty(), "nothing left to release");
    assert!(Client::new(0, 1).release(0).is_empty());
}

#[test]
fn a_restarted_helper_resumes_an_unexpired_lease() {
    let lease = bound().lease().cloned().expect("lease");
    let (c, out) = Client::resume(20_000, 9, lease.clone());
    assert_eq!(out, vec![Action::Configure(lease.clone())]);
    assert_eq!((c.state_name(), c.next_wakeup()), ("bound", 50_000));
    // Resumed past T1: renews at once.
    let (_, out) = Client::resume(60_000, 9, lease.clone());
    assert_eq!(sent(&out)[0].dest, Dest::Server(SERVER));
    // Expired: starts over.
    let (c, out) = Client::resume(100_000, 9, lease);
    assert!(out.is_empty());
    assert!(c.lease().is_none());
}

#[test]
fn offers_we_cannot_use_are_ignored() {
    let mut c = Client::new(0, 5);
    let xid = sent(&c.poll(0))[0].xid;
    for bad in [
        Reply { yiaddr: Ipv4Addr::UNSPECIFIED, ..reply(ReplyKind::Offer, xid) },
        Reply { yiaddr: Ipv4Addr::BROADCAST, ..reply(ReplyKind::Offer, xid) },
        Reply { yiaddr: Ipv4Addr::new(224, 0, 0, 1), ..reply(ReplyKind::Offer, xid) },
        Reply { server: None, ..reply(ReplyKind::Offer, xid) },
        Reply { lease_secs: None, ..reply(ReplyKind::Offer, xid) },
        reply(ReplyKind::Ack, xid),
    ] {
        assert!(c.on_reply(1, &bad).is_empty(), "{bad:?}");
        assert_eq!(c.state_name(), "selecting");
    }
}

#[test]
fn lease_timers_are_sane_whatever_the_server_says() {
    let l = |lease, t1, t2| {
        let r = Reply { lease_secs: Some(lease), t1_secs: t1, t2_secs: t2, ..reply(ReplyKind::Ack, 1) };
        let l = Lease::from_reply(&r, 0).expect("lease");
        (l.lease_secs, l.t1_secs, l.t2_secs)
    };
    assert_eq!(l(100, Some(10), Some(20)), (100, 10, 20));
    assert_eq!(l(100, Some(60), Some(20)), (100, 50, 87), "T1 after T2");
    assert_eq!(l(100, Some(10), Some(200)), (100, 50, 87), "T2 after the end");
    assert_eq!(l(100, Some(0), None), (100, 50, 87));
    assert_eq!(l(0, None, None), (MIN_LEASE_SECS, 5, 8), "a 0 s lease is floored");
    let forever = Lease::from_reply(&Reply { lease_secs: Some(u32::MAX), ..reply(ReplyKind::Ack, 1) }, 7).expect("l");
    assert_eq!(forever.expires_at(), Ms::MAX);
    assert!(forever.renew_at() > 7 + 2_000_000_000);
}

#[test]
fn routers_off_the_subnet_and_extra_name_servers_are_dropped() {
    let r = Reply {
        router: Some(Ipv4Addr::new(192, 168, 1, 1)),
        dns: vec![
            Ipv4Addr::new(1, 1, 1, 1),
            Ipv4Addr::new(1, 1, 1, 1),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(8, 8, 8, 8),
            Ipv4Addr::new(9, 9, 9, 9),
            Ipv4Addr::new(4, 4, 4, 4),
        ],
        ..reply(ReplyKind::Ack, 1)
    };
    let l = Lease::from_reply(&r, 0).expect("lease");
    assert_eq!(l.router, None);
    assert_eq!(l.dns, vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(9, 9, 9, 9)]);
    // No mask: the class decides.
    let l = Lease::from_reply(&Reply { prefix: None, ..reply(ReplyKind::Ack, 1) }, 0).expect("lease");
    assert_eq!(l.prefix, 8);
    assert_eq!(classful_prefix(Ipv4Addr::new(172, 16, 0, 1)), 16);
    assert_eq!(classful_prefix(Ipv4Addr::new(192, 168, 0, 1)), 24);
}
