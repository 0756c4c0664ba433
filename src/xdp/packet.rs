//! Ethernet / IPv4 / IPv6 / UDP headers of the frames the XDP program
//! redirects: read the query's, write the reply's in place (addresses and
//! ports swapped, lengths and checksums new).
//!
//! Incoming UDP checksums are not verified: on veth and with checksum
//! offload the field holds only the pseudo-header sum (`CHECKSUM_PARTIAL`),
//! and a corrupted query costs one wrong answer at worst.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

pub(crate) const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const UDP_LEN: usize = 8;
/// Largest header in front of the DNS message (Ethernet + IPv6 + UDP).
pub(crate) const MAX_HEADERS: usize = ETH_LEN + IPV6_LEN + UDP_LEN;

/// A UDP datagram inside a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Datagram {
    /// Who sent it.
    pub client: SocketAddr,
    /// Where the DNS message starts (the headers' length).
    pub payload_at: usize,
    /// The DNS message's length.
    pub payload_len: usize,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Read the headers the XDP program matched (it also checked the address
/// and port; this checks the lengths). `None`: malformed, drop it.
pub(crate) fn parse(frame: &[u8]) -> Option<Datagram> {
    if frame.len() < ETH_LEN {
        return None;
    }
    let (ip_at, ip_payload_len, client_ip) = match be16(frame, 12) {
        0x0800 => {
            let ip = frame.get(ETH_LEN..ETH_LEN + IPV4_LEN)?;
            if ip[0] != 0x45 || ip[9] != 17 || be16(ip, 6) & 0x3fff != 0 {
                return None;
            }
            let total = usize::from(be16(ip, 2));
            if total < IPV4_LEN || ETH_LEN + total > frame.len() {
                return None;
            }
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            (ETH_LEN + IPV4_LEN, total - IPV4_LEN, ClientIp::V4(src))
        }
        0x86dd => {
            let ip = frame.get(ETH_LEN..ETH_LEN + IPV6_LEN)?;
            if ip[0] >> 4 != 6 || ip[6] != 17 {
                return None;
            }
            let payload = usize::from(be16(ip, 4));
            if ETH_LEN + IPV6_LEN + payload > frame.len() {
                return None;
            }
            let mut src = [0u8; 16];
            src.copy_from_slice(&ip[8..24]);
            (
                ETH_LEN + IPV6_LEN,
                payload,
                ClientIp::V6(Ipv6Addr::from(src)),
            )
        }
        _ => return None,
    };
    let udp = frame.get(ip_at..ip_at + UDP_LEN)?;
    let udp_len = usize::from(be16(udp, 4));
    if udp_len < UDP_LEN || udp_len > ip_payload_len {
        return None;
    }
    let port = be16(udp, 0);
    if port == 0 {
        return None;
    }
    let client = match client_ip {
        ClientIp::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, port)),
        ClientIp::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, port, 0, 0)),
    };
    Some(Datagram {
        client,
        payload_at: ip_at + UDP_LEN,
        payload_len: udp_len - UDP_LEN,
    })
}

enum ClientIp {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// Turn the query's headers in `frame` into the reply's, for a reply of
/// `len` bytes already written at `d.payload_at`. Returns the frame length.
pub(crate) fn write_reply(frame: &mut [u8], d: &Datagram, len: usize) -> usize {
    // Ethernet: back to where it came from.
    for i in 0..6 {
        frame.swap(i, 6 + i);
    }
    let ip_at = ETH_LEN;
    let udp_at = d.payload_at - UDP_LEN;
    let udp_len = UDP_LEN + len;
    // UDP ports swapped; checksum filled in below.
    for i in 0..2 {
        frame.swap(udp_at + i, udp_at + 2 + i);
    }
    frame[udp_at + 4..udp_at + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    frame[udp_at + 6..udp_at + 8].fill(0);
    let pseudo;
    if d.client.is_ipv4() {
        let ip = &mut frame[ip_at..ip_at + IPV4_LEN];
        ip[0] = 0x45;
        ip[1] = 0;
        ip[2..4].copy_from_slice(&((IPV4_LEN + udp_len) as u16).to_be_bytes());
        ip[4..6].fill(0); // identification: unused with DF
        ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
        ip[8] = 64;
        ip[9] = 17;
        ip[10..12].fill(0);
        for i in 0..4 {
            ip.swap(12 + i, 16 + i);
        }
        let c = fold(sum(ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        pseudo = sum(&ip[12..20], 17 + udp_len as u64);
    } else {
        let ip = &mut frame[ip_at..ip_at + IPV6_LEN];
        ip[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
        ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        ip[6] = 17;
        ip[7] = 64;
        for i in 0..16 {
            ip.swap(8 + i, 24 + i);
        }
        pseudo = sum(&ip[8..40], 17 + udp_len as u64);
    }
    let mut c = fold(sum(&frame[udp_at..udp_at + udp_len], pseudo));
    if c == 0 {
        // 0 means "no checksum" in UDP; the one's complement of 0 is 0xffff.
        c = 0xffff;
    }
    frame[udp_at + 6..udp_at + 8].copy_from_slice(&c.to_be_bytes());
    d.payload_at + len
}

/// One's complement sum of `b` (as big-endian 16-bit words, an odd last
/// byte padded with zero) added to `acc`, not yet folded.
fn sum(b: &[u8], mut acc: u64) -> u64 {
    let mut chunks = b.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u64::from(be16(rest, i));
        i += 2;
    }
    if i < rest.len() {
        acc += u64::from(rest[i]) << 8;
    }
    acc
}

/// Fold a sum to 16 bits and complement it.
fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A frame carrying `payload` from `src` to `dst` (test helper; the
    /// checksums are computed the simple way, word by word).
    pub(crate) fn frame(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
        // MAC addresses made from the IP addresses, so a reply's are the
        // query's swapped.
        let mac = |a: SocketAddr| match a.ip() {
            std::net::IpAddr::V4(ip) => ip.octets()[3],
            std::net::IpAddr::V6(ip) => ip.octets()[15],
        };
        let mut f = vec![0x02, 0, 0, 0, 0, mac(dst), 0x02, 0, 0, 0, 0, mac(src)];
        let udp_len = UDP_LEN + payload.len();
        let mut pseudo: Vec<u8> = Vec::new();
        match (src, dst) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                f.extend_from_slice(&[0x08, 0x00]);
                let mut ip = vec![0x45, 0];
                ip.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
                ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
                ip.extend_from_slice(&s.ip().octets());
                ip.extend_from_slice(&d.ip().octets());
                let c = naive_checksum(&ip);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&ip);
                pseudo.extend_from_slice(&s.ip().octets());
                pseudo.extend_from_slice(&d.ip().octets());
                pseudo.extend_from_slice(&[0, 17]);
                pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
            }
            (SocketAddr::V6(s), SocketAddr::V6(d)) => {
                f.extend_from_slice(&[0x86, 0xdd]);
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&(udp_len as u16).to_be_bytes());
                f.extend_from_slice(&[17, 64]);
                f.extend_from_slice(&s.ip().octets());
                f.extend_from_slice(&d.ip().octets());
                pseudo.extend_from_slice(&s.ip().octets());
                pseudo.extend_from_slice(&d.ip().octets());
                pseudo.extend_from_slice(&(udp_len as u32).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, 17]);
            }
            _ => panic!("mixed families"),
        }
        let mut udp = Vec::new();
        udp.extend_from_slice(&src.port().to_be_bytes());
        udp.extend_from_slice(&dst.port().to_be_bytes());
        udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(payload);
        let mut all = pseudo.clone();
        all.extend_from_slice(&udp);
        let c = naive_checksum(&all);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&udp);
        f
    }

    fn naive_checksum(b: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for pair in b.chunks(2) {
            let w = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            s += u32::from(w);
        }
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    fn check(client: &str, server: &str) {
        let client: SocketAddr = client.parse().unwrap();
        let server: SocketAddr = server.parse().unwrap();
        let query = b"\x12\x34query-bytes";
        let mut f = frame(client, server, query);
        // Ethernet minimum-size padding must not count as payload.
        f.extend_from_slice(&[0; 7]);
        let d = parse(&f).expect("parses");
        assert_eq!(d.client, client);
        assert_eq!(&f[d.payload_at..d.payload_at + d.payload_len], query);
        // Reply of odd length, longer than the query.
        let reply = b"\x12\x34a-longer-reply-of-odd-length";
        f.resize(d.payload_at + reply.len(), 0);
        f[d.payload_at..].copy_from_slice(reply);
        let n = write_reply(&mut f, &d, reply.len());
        assert_eq!(n, f.len());
        assert_eq!(f, frame(server, client, reply));
        // The reply parses back as coming from the server, and its
        // checksums verify (a correct checksum sums to 0xffff → fold 0).
        let back = parse(&f).expect("reply parses");
        assert_eq!(back.client, server);
        if client.is_ipv4() {
            assert_eq!(naive_checksum(&f[ETH_LEN..ETH_LEN + 20]), 0);
        }
    }

    #[test]
    fn ipv4_round_trip() {
        check("192.0.2.7:40000", "10.0.0.1:53");
    }

    #[test]
    fn ipv6_round_trip() {
        check("[2001:db8::7]:40000", "[fd00::1]:53");
    }

    #[test]
    fn udp_checksums_verify() {
        for (c, s) in [
            ("192.0.2.7:1", "10.0.0.1:53"),
            ("[2001:db8::7]:65535", "[fd00::1]:5353"),
        ] {
            let c: SocketAddr = c.parse().unwrap();
            let s: SocketAddr = s.parse().unwrap();
            for len in [0usize, 1, 2, 3, 17, 512] {
                let q: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut f = frame(c, s, &q);
                let d = parse(&f).unwrap();
                let r: Vec<u8> = (0..len + 5).map(|i| (i * 13 + 1) as u8).collect();
                f.resize(d.payload_at + r.len(), 0);
                f[d.payload_at..].copy_from_slice(&r);
                write_reply(&mut f, &d, r.len());
                let expected = frame(s, c, &r);
                let udp_at = d.payload_at - UDP_LEN;
                assert_eq!(f[udp_at..], expected[udp_at..], "len {len}");
            }
        }
    }

    #[test]
    fn malformed_is_refused() {
        let c: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let s: SocketAddr = "10.0.0.1:53".parse().unwrap();
        let good = frame(c, s, b"abcd");
        assert!(parse(&good).is_some());
        assert!(parse(&good[..ETH_LEN + 10]).is_none());
        let mut short = good.clone();
        short.truncate(good.len() - 1); // IP total length beyond the frame
        assert!(parse(&short).is_none());
        let mut frag = good.clone();
        frag[ETH_LEN + 6] = 0x20; // more fragments
        assert!(parse(&frag).is_none());
        let mut udp_long = good.clone();
        udp_long[ETH_LEN + 20 + 5] = 0xff; // UDP length beyond IP payload
        assert!(parse(&udp_long).is_none());
        let mut port0 = good;
        port0[ETH_LEN + 20] = 0;
        port0[ETH_LEN + 21] = 0;
        assert!(parse(&port0).is_none());
    }
}
