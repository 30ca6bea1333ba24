//! Bytes on the wire, through `dhcproto` (the DHCPv4 message format and its options): our
//! [`Outgoing`] encoded, a server's packet decoded into a [`Reply`]. Packets come from the
//! network, so they are hostile: anything that is not a BOOTREPLY for our hardware address
//! with a message type we use is dropped, and a decoder panic drops the packet too.

use std::net::Ipv4Addr;

use dhcproto::v4::{
    Decodable, Decoder, DhcpOption, Encodable, Encoder, Flags, Message, MessageType, Opcode, OptionCode,
};

use super::machine::{Dest, MessageKind, Outgoing, Reply, ReplyKind};

/// The largest DHCP message we read: an Ethernet frame's worth (RFC 2131's minimum is 576).
pub const MAX_MESSAGE: usize = 1500;

/// The message for `out`, from hardware address `mac`.
pub fn encode(out: &Outgoing, mac: &[u8; 6]) -> Vec<u8> {
    let ciaddr = out.ciaddr.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let z = Ipv4Addr::UNSPECIFIED;
    let mut msg = Message::new_with_id(out.xid, ciaddr, z, z, z, mac);
    msg.set_opcode(Opcode::BootRequest).set_secs(out.secs);
    // Without an address we cannot take a unicast answer: the server must broadcast it.
    if out.ciaddr.is_none() {
        msg.set_flags(Flags::default().set_broadcast());
    }
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(match out.kind {
        MessageKind::Discover => MessageType::Discover,
        MessageKind::Request => MessageType::Request,
        MessageKind::Release => MessageType::Release,
    }));
    // Client id: type 1 (Ethernet) and the MAC, as most clients send it.
    let mut id = vec![1u8];
    id.extend_from_slice(mac);
    opts.insert(DhcpOption::ClientIdentifier(id));
    if let Some(ip) = out.requested {
        opts.insert(DhcpOption::RequestedIpAddress(ip));
    }
    if let Some(server) = out.server {
        opts.insert(DhcpOption::ServerIdentifier(server));
    }
    if out.kind != MessageKind::Release {
        opts.insert(DhcpOption::MaxMessageSize(MAX_MESSAGE as u16));
        opts.insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::AddressLeaseTime,
            OptionCode::Renewal,
            OptionCode::Rebinding,
        ]));
    }
    let mut buf = Vec::with_capacity(300);
    // Encoding our own message with known options cannot fail; an empty packet would
    // only be dropped by the server.
    if msg.encode(&mut Encoder::new(&mut buf)).is_err() {
        buf.clear();
    }
    // Some servers drop BOOTP messages shorter than the 300 bytes BOOTP had.
    if buf.len() < 300 {
        buf.resize(300, 0);
    }
    buf
}

/// Where `out` goes.
pub fn destination(out: &Outgoing) -> Ipv4Addr {
    match out.dest {
        Dest::Broadcast => Ipv4Addr::BROADCAST,
        Dest::Server(ip) => ip,
    }
}

/// A server's packet, if it is an OFFER, ACK or NAK for `mac`.
pub fn decode(bytes: &[u8], mac: &[u8; 6]) -> Option<Reply> {
    let bytes = &bytes[..bytes.len().min(MAX_MESSAGE)];
    // BOOTREPLY, Ethernet, 6-byte addresses, ours: checked on the raw bytes first, which
    // drops most of what is not for us unparsed (and dhcproto's chaddr() panics on a
    // hardware length over 16).
    if bytes.len() < 34 || bytes[0] != 2 || bytes[1] != 1 || bytes[2] != 6 || bytes[28..34] != mac[..] {
        return None;
    }
    let bytes = only_options_we_use(bytes)?;
    let msg = std::panic::catch_unwind(|| Message::decode(&mut Decoder::new(&bytes)).ok()).ok()??;
    let opts = msg.opts();
    let kind = match opts.msg_type()? {
        MessageType::Offer => ReplyKind::Offer,
        MessageType::Ack => ReplyKind::Ack,
        MessageType::Nak => ReplyKind::Nak,
        _ => return None,
    };
    let ip = |code| match opts.get(code) {
        Some(DhcpOption::ServerIdentifier(a)) | Some(DhcpOption::SubnetMask(a)) => Some(*a),
        _ => None,
    };
    let secs = |code| match opts.get(code) {
        Some(DhcpOption::AddressLeaseTime(s)) | Some(DhcpOption::Renewal(s)) | Some(DhcpOption::Rebinding(s)) => {
            Some(*s)
        }
        _ => None,
    };
    let list = |code| match opts.get(code) {
        Some(DhcpOption::Router(l)) | Some(DhcpOption::DomainNameServer(l)) => l.clone(),
        _ => Vec::new(),
    };
    Some(Reply {
        kind,
        xid: msg.xid(),
        yiaddr: msg.yiaddr(),
        server: ip(OptionCode::ServerIdentifier),
        lease_secs: secs(OptionCode::AddressLeaseTime),
        t1_secs: secs(OptionCode::Renewal),
        t2_secs: secs(OptionCode::Rebinding),
        // A mask that is not a run of ones is no mask.
        prefix: ip(OptionCode::SubnetMask).and_then(prefix_of),
        router: list(OptionCode::Router).first().copied(),
        dns: list(OptionCode::DomainNameServer).into_iter().take(8).collect(),
    })
}

/// Where the options start: the fixed BOOTP fields, then the magic cookie.
const OPTIONS_AT: usize = 240;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// The packet with only the options we read, each with a length that fits its type, and
/// nothing after the end option: the decoder never sees the rest (route lists, domain
/// names, relay data), whose parsing is where malformed input does harm. None when the
/// fixed part or the magic cookie is missing.
pub fn only_options_we_use(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < OPTIONS_AT || bytes[OPTIONS_AT - 4..OPTIONS_AT] != MAGIC {
        return None;
    }
    let mut out = bytes[..OPTIONS_AT].to_vec();
    let mut at = OPTIONS_AT;
    while at < bytes.len() {
        let code = bytes[at];
        match code {
            0 => {
                at += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let Some(&len) = bytes.get(at + 1) else { break };
        let Some(data) = bytes.get(at + 2..at + 2 + usize::from(len)) else { break };
        let fits = match code {
            53 => len == 1,
            1 | 54 | 51 | 58 | 59 => len == 4,
            3 | 6 => len >= 4 && len % 4 == 0,
            _ => false,
        };
        if fits {
            out.extend_from_slice(&[code, len]);
            out.extend_from_slice(data);
        }
        at += 2 + usize::from(len);
    }
    out.push(255);
    Some(out)
}

/// 255.255.255.0 -> 24; None when the ones are not contiguous.
pub fn prefix_of(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn offer(mac: &[u8], kind: MessageType) -> Vec<u8> {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut msg = Message::new_with_id(42, z, Ipv4Addr::new(10, 0, 2, 15), z, z, mac);
        msg.set_opcode(Opcode::BootReply);
        let o = msg.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2)));
        o.insert(DhcpOption::AddressLeaseTime(86400));
        o.insert(DhcpOption::Renewal(600));
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        o.insert(DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 2, 2), Ipv4Addr::new(10, 0, 2, 9)]));
        o.insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(10, 0, 2, 3)]));
        let mut buf = Vec::new();
        msg.encode(&mut Encoder::new(&mut buf)).expect("encode");
        buf
    }

    #[test]
    fn a_server_reply_decodes_into_what_the_machine_needs() {
        let r = decode(&offer(&MAC, MessageType::Offer), &MAC).expect("offer");
        assert_eq!((r.kind, r.xid, r.yiaddr), (ReplyKind::Offer, 42, Ipv4Addr::new(10, 0, 2, 15)));
        assert_eq!(
            (r.server, r.lease_secs, r.t1_secs, r.t2_secs),
            (Some(Ipv4Addr::new(10, 0, 2, 2)), Some(86400), Some(600), None)
        );
        assert_eq!((r.prefix, r.router), (Some(24), Some(Ipv4Addr::new(10, 0, 2, 2))));
        assert_eq!(r.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(decode(&offer(&MAC, MessageType::Nak), &MAC).map(|r| r.kind), Some(ReplyKind::Nak));
    }

    #[test]
    fn packets_not_for_us_are_dropped() {
        assert_eq!(decode(&offer(&[1, 2, 3, 4, 5, 6], MessageType::Offer), &MAC), None, "another MAC");
        assert_eq!(decode(&offer(&MAC, MessageType::Discover), &MAC), None, "not a reply type");
        // Our own request, seen again: a BOOTREQUEST.
        let ours = Outgoing {
            kind: MessageKind::Discover,
            xid: 42,
            dest: Dest::Broadcast,
            ciaddr: None,
            requested: None,
            server: None,
            secs: 0,
        };
        assert_eq!(decode(&encode(&ours, &MAC), &MAC), None);
        for junk in [&[][..], &[2u8; 10][..], &[0xffu8; 2000][..]] {
            assert_eq!(decode(junk, &MAC), None);
        }
        // A hardware length past chaddr's 16 bytes (dhcproto would index out of range).
        let mut long = offer(&MAC, MessageType::Offer);
        long[2] = 25;
        assert_eq!(decode(&long, &MAC), None);
        // Truncated anywhere: no panic, and nothing half-read.
        let full = offer(&MAC, MessageType::Offer);
        for n in 0..full.len() {
            let _ = decode(&full[..n], &MAC);
        }
    }

    #[test]
    fn requests_carry_what_the_server_needs() {
        let out = Outgoing {
            kind: MessageKind::Request,
            xid: 0xdead_beef,
            dest: Dest::Broadcast,
            ciaddr: None,
            requested: Some(Ipv4Addr::new(10, 0, 2, 15)),
            server: Some(Ipv4Addr::new(10, 0, 2, 2)),
            secs: 3,
        };
        let bytes = encode(&out, &MAC);
        assert!(bytes.len() >= 300);
        let msg = Message::decode(&mut Decoder::new(&bytes)).expect("decodes");
        assert_eq!((msg.opcode(), msg.xid(), msg.secs()), (Opcode::BootRequest, 0xdead_beef, 3));
        assert!(msg.flags().broadcast(), "no address yet: the answer must be broadcast");
        assert_eq!(msg.chaddr(), &MAC[..]);
        assert_eq!(msg.opts().msg_type(), Some(MessageType::Request));
        assert!(
            matches!(msg.opts().get(OptionCode::RequestedIpAddress), Some(DhcpOption::RequestedIpAddress(a)) if *a == Ipv4Addr::new(10, 0, 2, 15))
        );
        assert!(matches!(msg.opts().get(OptionCode::ServerIdentifier), Some(DhcpOption::ServerIdentifier(_))));
        let renew = Outgoing { ciaddr: Some(Ipv4Addr::new(10, 0, 2, 15)), requested: None, server: None, ..out };
        let msg = Message::decode(&mut Decoder::new(&encode(&renew, &MAC))).expect("decodes");
        assert!(!msg.flags().broadcast());
        assert_eq!(msg.ciaddr(), Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(
            destination(&Outgoing { dest: Dest::Server(Ipv4Addr::new(10, 0, 2, 2)), ..renew }),
            Ipv4Addr::new(10, 0, 2, 2)
        );
    }

    #[test]
    fn only_the_options_we_read_reach_the_decoder() {
        let mut bytes = offer(&MAC, MessageType::Offer);
        let end = bytes.iter().rposition(|&b| b == 255).expect("end option");
        bytes.truncate(end);
        // A client FQDN too short for its fixed part, a route with a 40-bit prefix, a
        // mask of the wrong size, then an option running past the end.
        bytes.extend_from_slice(&[81, 1, 0, 121, 5, 40, 1, 2, 3, 4, 1, 3, 255, 255, 255, 6, 200, 1]);
        let kept = only_options_we_use(&bytes).expect("kept");
        assert_eq!(&kept[kept.len() - 1..], &[255]);
        assert!(!kept.windows(3).any(|w| w == [81, 1, 0]), "the FQDN is gone");
        let r = decode(&bytes, &MAC).expect("still an offer");
        assert_eq!((r.kind, r.prefix, r.dns.len()), (ReplyKind::Offer, Some(24), 1));
        assert_eq!(only_options_we_use(&bytes[..239]), None);
    }

    #[test]
    fn masks_become_prefixes() {
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 240, 0)), Some(20));
        assert_eq!(prefix_of(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(prefix_of(Ipv4Addr::BROADCAST), Some(32));
        assert_eq!(prefix_of(Ipv4Addr::new(255, 0, 255, 0)), None);
    }
}
