//! The DNS self-check: a real query over UDP to the anycast address and
//! the port of the listener that serves it, so it passes through the same
//! sockets, workers and answer engine as a client's query.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

/// Encode a query for `name` (presentation form, trailing dot) and `qtype`.
pub(crate) fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]); // no flags, QDCOUNT 1
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        q.push(label.len().min(63) as u8);
        q.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    q
}

/// Whether `reply` is an authoritative NOERROR answer to query `id`.
pub(crate) fn judge(reply: &[u8], id: u16) -> Result<(), String> {
    if reply.len() < 12 {
        return Err(format!("short reply ({} octets)", reply.len()));
    }
    if u16::from_be_bytes([reply[0], reply[1]]) != id {
        return Err("reply with another id".into());
    }
    let (flags, rcode) = (reply[2], reply[3] & 0x0f);
    if flags & 0x80 == 0 {
        return Err("not a response".into());
    }
    if rcode != 0 {
        return Err(format!("rcode {rcode}"));
    }
    if flags & 0x04 == 0 {
        return Err("answer not authoritative".into());
    }
    Ok(())
}

/// Ask `target` once; `Ok` when it answered authoritatively within
/// `timeout`, else why not.
pub(crate) async fn check(
    target: SocketAddr,
    name: &str,
    qtype: u16,
    id: u16,
    timeout: Duration,
) -> Result<(), String> {
    let bind: SocketAddr = match target.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let attempt = async {
        let sock = UdpSocket::bind(bind)
            .await
            .map_err(|e| format!("bind: {e}"))?;
        sock.connect(target)
            .await
            .map_err(|e| format!("connect {target}: {e}"))?;
        sock.send(&query(id, name, qtype))
            .await
            .map_err(|e| format!("send to {target}: {e}"))?;
        let mut buf = [0u8; 1500];
        loop {
            let n = sock
                .recv(&mut buf)
                .await
                .map_err(|e| format!("from {target}: {e}"))?;
            // Another id would be a stray datagram: keep waiting.
            match judge(&buf[..n], id) {
                Err(e) if e == "reply with another id" => continue,
                r => return r.map_err(|e| format!("{target}: {e}")),
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{target}: no answer within {} ms",
            timeout.as_millis()
        )),
    }
}

/// The listener port that serves `ip`: a listener bound to `ip` itself,
/// else one bound to the wildcard of its family.
pub(crate) fn port_for(ip: IpAddr, udp_addrs: &[SocketAddr]) -> Option<u16> {
    udp_addrs
        .iter()
        .find(|a| a.ip() == ip)
        .or_else(|| {
            udp_addrs
                .iter()
                .find(|a| a.ip().is_unspecified() && a.is_ipv4() == ip.is_ipv4())
        })
        .map(SocketAddr::port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_replies_are_judged() {
        let q = query(0x1234, "lb.example.com.", 6);
        assert!(crate::engine::wire::parse(&q).is_ok());
        let mut reply = q.clone();
        reply[2] = 0x84; // QR AA
        assert_eq!(judge(&reply, 0x1234), Ok(()));
        assert!(judge(&reply, 0x4321).is_err());
        reply[3] = 5;
        assert_eq!(judge(&reply, 0x1234), Err("rcode 5".into()));
        reply[3] = 0;
        reply[2] = 0x80;
        assert!(judge(&reply, 0x1234).unwrap_err().contains("authoritative"));
        assert!(judge(&q, 0x1234).unwrap_err().contains("not a response"));
        assert!(judge(&q[..5], 0x1234).is_err());
    }

    #[test]
    fn finds_the_listener_port() {
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:5300".parse().unwrap(),
            "0.0.0.0:53".parse().unwrap(),
            "[::]:5353".parse().unwrap(),
        ];
        assert_eq!(port_for("127.0.0.1".parse().unwrap(), &addrs), Some(5300));
        assert_eq!(port_for("192.0.2.53".parse().unwrap(), &addrs), Some(53));
        assert_eq!(
            port_for("2001:db8::53".parse().unwrap(), &addrs),
            Some(5353)
        );
        assert_eq!(port_for("2001:db8::53".parse().unwrap(), &addrs[..2]), None);
    }

    #[tokio::test]
    async fn a_silent_address_fails_within_the_timeout() {
        // A bound socket that never answers.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = silent.local_addr().unwrap();
        let err = check(target, "x.", 1, 7, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(err.contains("no answer within 200 ms"), "{err}");
    }
}
