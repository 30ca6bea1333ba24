//! The client's lease state machine (RFC 2131, 4.4), pure: time comes in as boot-clock
//! milliseconds, packets come in already decoded ([`Reply`]), and what to do goes out as
//! [`Action`]s (send this, configure that lease, remove that one). The helper's loop
//! ([`super::run`]) does the I/O; everything here is tested without a network.
//!
//! INIT -> SELECTING (DISCOVER, broadcast, backoff 1 s doubling to 32 s, for ever)
//! -> REQUESTING (REQUEST for the first acceptable OFFER; 4 tries, then INIT)
//! -> BOUND (at T1) -> RENEWING (REQUEST to the server, unicast)
//! -> (at T2) REBINDING (REQUEST, broadcast) -> (at expiry) INIT, the address removed.
//! A NAK anywhere after SELECTING drops the lease and starts over at once. A helper that
//! was restarted picks its unexpired lease up again in BOUND ([`Client::resume`]).

use std::net::Ipv4Addr;

/// Boot-clock milliseconds (CLOCK_BOOTTIME), so a lease stays right across helper restarts.
pub type Ms = u64;

/// The first retransmission comes after this; each one doubles it, up to [`RETRY_MAX`].
pub const RETRY_FIRST: Ms = 1_000;
pub const RETRY_MAX: Ms = 32_000;
/// REQUESTs sent for one offer before going back to DISCOVER.
pub const REQUEST_TRIES: u32 = 4;
/// Retransmissions while renewing or rebinding wait half the time left, but at least this.
pub const RENEW_RETRY_MIN: Ms = 1_000;
/// The shortest lease honoured: a server handing out 0 s leases must not make a renew storm.
pub const MIN_LEASE_SECS: u32 = 10;
/// resolv.conf reads three name servers; more are dropped.
pub const MAX_DNS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Offer,
    Ack,
    Nak,
}

/// A server's answer, decoded ([`super::wire::decode`]). Options the server left out are
/// None or empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: ReplyKind,
    pub xid: u32,
    pub yiaddr: Ipv4Addr,
    pub server: Option<Ipv4Addr>,
    pub lease_secs: Option<u32>,
    pub t1_secs: Option<u32>,
    pub t2_secs: Option<u32>,
    pub prefix: Option<u8>,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Discover,
    Request,
    Release,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Broadcast,
    Server(Ipv4Addr),
}

/// A message to send ([`super::wire::encode`] makes the bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub kind: MessageKind,
    pub xid: u32,
    pub dest: Dest,
    /// Our address, once we hold one (RENEWING, REBINDING, RELEASE).
    pub ciaddr: Option<Ipv4Addr>,
    /// Option 50: the address asked for (REQUEST in REQUESTING).
    pub requested: Option<Ipv4Addr>,
    /// Option 54: the server chosen (REQUEST in REQUESTING, RELEASE).
    pub server: Option<Ipv4Addr>,
    /// Seconds since the client started trying (the `secs` field).
    pub secs: u16,
}

/// What the server gave us, with when: every timer counts from `acquired`, the time the
/// REQUEST that got it was sent (RFC 2131, 4.4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Ipv4Addr,
    pub acquired: Ms,
    pub lease_secs: u32,
    pub t1_secs: u32,
    pub t2_secs: u32,
}

impl Lease {
    pub fn renew_at(&self) -> Ms {
        self.acquired.saturating_add(u64::from(self.t1_secs) * 1000)
    }
    pub fn rebind_at(&self) -> Ms {
        self.acquired.saturating_add(u64::from(self.t2_secs) * 1000)
    }
    pub fn expires_at(&self) -> Ms {
        if self.lease_secs == u32::MAX {
            return Ms::MAX;
        }
        self.acquired.saturating_add(u64::from(self.lease_secs) * 1000)
    }

    /// The lease in `reply`, if it is one we can use: a unicast address, a server id, and
    /// timers in order (T1 <= T2 <= lease; the RFC's 1/2 and 7/8 when missing or out of order).
    pub fn from_reply(reply: &Reply, acquired: Ms) -> Option<Lease> {
        let ip = reply.yiaddr;
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
            return None;
        }
        let server = reply.server?;
        let lease_secs = reply.lease_secs?.max(MIN_LEASE_SECS);
        let default_t1 = lease_secs / 2;
        let default_t2 = (u64::from(lease_secs) * 7 / 8) as u32;
        let (t1_secs, t2_secs) = match (reply.t1_secs, reply.t2_secs) {
            (Some(t1), Some(t2)) if t1 <= t2 && t2 <= lease_secs && t1 > 0 => (t1, t2),
            (Some(t1), None) if t1 > 0 && t1 <= default_t2 => (t1, default_t2),
            (None, Some(t2)) if t2 >= default_t1 && t2 <= lease_secs => (default_t1, t2),
            _ => (default_t1, default_t2),
        };
        let prefix = reply.prefix.unwrap_or_else(|| classful_prefix(ip));
        // A router off our subnet would be an unreachable default route.
        let on_subnet = |r: &Ipv4Addr| same_subnet(ip, *r, prefix) && *r != ip && !r.is_unspecified();
        let router = reply.router.filter(on_subnet);
        let mut dns: Vec<Ipv4Addr> = Vec::new();
        for d in &reply.dns {
            if !d.is_unspecified() && !d.is_broadcast() && !dns.contains(d) && dns.len() < MAX_DNS {
                dns.push(*d);
            }
        }
        Some(Lease { address: ip, prefix, router, dns, server, acquired, lease_secs, t1_secs, t2_secs })
    }
}

/// The prefix an address's class implies, for a server that sends no subnet mask.
pub fn classful_prefix(ip: Ipv4Addr) -> u8 {
    match ip.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

pub fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
    u32::from(a) & mask == u32::from(b) & mask
}

/// What the loop must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(Outgoing),
    /// Put this lease on the interface (address, default route, name servers). A lease
    /// renewed with the same address is configured again: idempotent.
    Configure(Lease),
    /// Take this lease's address and route off the interface.
    Deconfigure(Lease),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Init,
    Selecting,
    Requesting { offer: Lease, tries: u32 },
    Bound,
    Renewing,
    Rebinding,
}

/// The client. `poll` is called whenever [`Client::next_wakeup`] passes; `on_reply` for
/// each decoded packet.
#[derive(Debug)]
pub struct Client {
    state: State,
    lease: Option<Lease>,
    xid: u32,
    rng: u32,
    /// When the current transaction's next (re)transmission is due.
    next_send: Ms,
    /// The current backoff between transmissions (SELECTING, REQUESTING).
    backoff: Ms,
    /// When the first DISCOVER of this round went out (`secs`).
    started: Ms,
    /// When the last REQUEST went out: a lease counts from there.
    last_request: Ms,
}

impl Client {
    /// A client with no lease; `seed` makes its transaction ids (never 0).
    pub fn new(now: Ms, seed: u32) -> Client {
        let mut c = Client {
            state: State::Init,
            lease: None,
            xid: 0,
            rng: seed | 1,
            next_send: now,
            backoff: RETRY_FIRST,
            started: now,
            last_request: now,
        };
        c.xid = c.next_xid();
        c
    }

    /// A client restarted with a lease it held: bound again if the lease has not expired,
    /// and the loop configures it again (the address may have been taken off meanwhile).
    pub fn resume(now: Ms, seed: u32, lease: Lease) -> (Client, Vec<Action>) {
        let mut c = Client::new(now, seed);
        if now >= lease.expires_at() {
            return (c, Vec::new());
        }
        c.state = State::Bound;
        c.lease = Some(lease.clone());
        let mut actions = vec![Action::Configure(lease)];
        actions.extend(c.poll(now));
        (c, actions)
    }

    /// The current transaction's id: replies must carry it.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// The state's name, for logs.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Init => "init",
            State::Selecting => "selecting",
            State::Requesting { .. } => "requesting",
            State::Bound => "bound",
            State::Renewing => "renewing",
            State::Rebinding => "rebinding",
        }
    }

    fn next_xid(&mut self) -> u32 {
        // xorshift32: ids need to differ, not to be secret (the MAC and the xid are both on
        // the wire anyway).
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x.max(1)
    }

    /// When `poll` must be called next.
    pub fn next_wakeup(&self) -> Ms {
        match (&self.state, &self.lease) {
            (State::Bound, Some(l)) => l.renew_at(),
            (State::Renewing, Some(l)) => self.next_send.min(l.rebind_at()),
            (State::Rebinding, Some(l)) => self.next_send.min(l.expires_at()),
            _ => self.next_send,
        }
    }

    /// Timers: retransmissions, T1, T2, expiry.
    pub fn poll(&mut self, now: Ms) -> Vec<Action> {
        let mut out = Vec::new();
        // Expiry first: a lease past its end is gone whatever else was going on.
        if let Some(lease) = self.lease.clone()
            && now >= lease.expires_at()
        {
            out.push(Action::Deconfigure(lease));
            self.lease = None;
            self.restart(now);
        }
        match self.state.clone() {
            State::Init => self.restart(now),
            State::Selecting | State::Requesting { .. } if now < self.next_send => {}
            State::Selecting => {
                out.push(self.discover(now));
                self.schedule_backoff(now);
            }
            State::Requesting { offer, tries } => {
                if tries >= REQUEST_TRIES {
                    self.restart(now);
                    out.push(self.discover(now));
                    self.schedule_backoff(now);
                } else {
                    self.state = State::Requesting { offer: offer.clone(), tries: tries + 1 };
                    out.push(self.request_offer(now, &offer));
                    self.schedule_backoff(now);
                }
            }
            State::Bound => {
                if let Some(lease) = self.lease.clone()
                    && now >= lease.renew_at()
                {
                    self.state = State::Renewing;
                    self.xid = self.next_xid();
                    self.next_send = now;
                    return self.poll_more(now, out);
                }
            }
            State::Renewing | State::Rebinding => return self.poll_more(now, out),
        }
        if self.state == State::Init {
            self.state = State::Selecting;
            out.push(self.discover(now));
            self.schedule_backoff(now);
        }
        out
    }

    /// RENEWING and REBINDING: move on at T2, retransmit at half the time left.
    fn poll_more(&mut self, now: Ms, mut out: Vec<Action>) -> Vec<Action> {
        let Some(lease) = self.lease.clone() else {
            return out;
        };
        if self.state == State::Renewing && now >= lease.rebind_at() {
            self.state = State::Rebinding;
            self.xid = self.next_xid();
            self.next_send = now;
        }
        if now < self.next_send {
            return out;
        }
        let (dest, until) = match self.state {
            State::Renewing => (Dest::Server(lease.server), lease.rebind_at()),
            _ => (Dest::Broadcast, lease.expires_at()),
        };
        self.last_request = now;
        out.push(Action::Send(Outgoing {
            kind: MessageKind::Request,
            xid: self.xid,
            dest,
            ciaddr: Some(lease.address),
            requested: None,
            server: None,
            secs: 0,
        }));
        self.next_send = now + (until.saturating_sub(now) / 2).max(RENEW_RETRY_MIN);
        out
    }

    /// A decoded packet. Anything not for our current transaction is ignored.
    pub fn on_reply(&mut self, now: Ms, reply: &Reply) -> Vec<Action> {
        if reply.xid != self.xid {
            return Vec::new();
        }
        match (&self.state, reply.kind) {
            (State::Selecting, ReplyKind::Offer) => {
                let Some(offer) = Lease::from_reply(reply, now) else {
                    return Vec::new();
                };
                self.state = State::Requesting { offer: offer.clone(), tries: 1 };
                self.backoff = RETRY_FIRST;
                let send = self.request_offer(now, &offer);
                self.schedule_backoff(now);
                vec![send]
            }
            (State::Requesting { offer, .. }, ReplyKind::Ack) => {
                // The ACK must be for the address asked for, from the server chosen.
                if reply.yiaddr != offer.address || reply.server.is_some_and(|s| s != offer.server) {
                    return Vec::new();
                }
                let reply = with_server(reply, offer.server);
                self.bind(Lease::from_reply(&reply, self.last_request))
            }
            (State::Renewing | State::Rebinding, ReplyKind::Ack) => {
                let Some(old) = self.lease.clone() else {
                    return Vec::new();
                };
                let reply = with_server(reply, old.server);
                let Some(new) = Lease::from_reply(&reply, self.last_request) else {
                    return Vec::new();
                };
                let mut out = Vec::new();
                if new.address != old.address || new.prefix != old.prefix {
                    out.push(Action::Deconfigure(old));
                }
                out.extend(self.bind(Some(new)));
                out
            }
            (State::Requesting { .. } | State::Renewing | State::Rebinding, ReplyKind::Nak) => {
                let mut out = Vec::new();
                if let Some(lease) = self.lease.take() {
                    out.push(Action::Deconfigure(lease));
                }
                self.restart(now);
                self.state = State::Selecting;
                out.push(self.discover(now));
                self.schedule_backoff(now);
                out
            }
            _ => Vec::new(),
        }
    }

    /// Shutdown: tell the server the address is free, and take it off.
    pub fn release(&mut self, now: Ms) -> Vec<Action> {
        let Some(lease) = self.lease.take() else {
            return Vec::new();
        };
        self.state = State::Init;
        self.next_send = now;
        let xid = self.next_xid();
        vec![
            Action::Send(Outgoing {
                kind: MessageKind::Release,
                xid,
                dest: Dest::Server(lease.server),
                ciaddr: Some(lease.address),
                requested: None,
                server: Some(lease.server),
                secs: 0,
            }),
            Action::Deconfigure(lease),
        ]
    }

    fn bind(&mut self, lease: Option<Lease>) -> Vec<Action> {
        let Some(lease) = lease else {
            return Vec::new();
        };
        self.state = State::Bound;
        self.lease = Some(lease.clone());
        self.backoff = RETRY_FIRST;
        vec![Action::Configure(lease)]
    }

    fn restart(&mut self, now: Ms) {
        self.state = State::Init;
        self.xid = self.next_xid();
        self.backoff = RETRY_FIRST;
        self.next_send = now;
        self.started = now;
    }

    fn schedule_backoff(&mut self, now: Ms) {
        self.next_send = now + self.backoff;
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
    }

    fn secs(&self, now: Ms) -> u16 {
        (now.saturating_sub(self.started) / 1000).min(u64::from(u16::MAX)) as u16
    }

    fn discover(&mut self, now: Ms) -> Action {
        Action::Send(Outgoing {
            kind: MessageKind::Discover,
            xid: self.xid,
            dest: Dest::Broadcast,
            ciaddr: None,
            requested: None,
            server: None,
            secs: self.secs(now),
        })
    }

    fn request_offer(&mut self, now: Ms, offer: &Lease) -> Action {
        self.last_request = now;
        Action::Send(Outgoing {
            kind: MessageKind::Request,
            xid: self.xid,
            dest: Dest::Broadcast,
            ciaddr: None,
            requested: Some(offer.address),
            server: Some(offer.server),
            secs: self.secs(now),
        })
    }
}

/// An ACK may leave the server id out when it is the one we asked (RENEWING is unicast).
fn with_server(reply: &Reply, server: Ipv4Addr) -> Reply {
    Reply { server: reply.server.or(Some(server)), ..reply.clone() }
}

#[cfg(test)]
mod tests;
