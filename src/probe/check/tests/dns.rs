//! DNS checks against scripted loopback servers (UDP, TCP fallback).

use super::http::assert_timed_out;
use super::*;

// ---------------------------------------------------------------- DNS

#[derive(Clone, Copy)]
enum DnsMode {
    /// NOERROR with one A record.
    Answer(Ipv4Addr),
    /// SERVFAIL.
    ServFail,
    /// TC=1 over UDP; the answer over TCP.
    Truncate(Ipv4Addr),
    /// A reply with the wrong id first, then the answer.
    WrongIdFirst(Ipv4Addr),
    /// Never answers.
    Silent,
}

fn reply(q: &Message, answer: Option<Ipv4Addr>) -> Message {
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.authoritative = true;
    r.add_queries(q.queries.clone());
    if let (Some(ip), Some(query)) = (answer, q.queries.first()) {
        r.add_answer(Record::from_rdata(
            query.name().clone(),
            60,
            RData::A(A(ip)),
        ));
    }
    r
}

/// A DNS responder on UDP and TCP of the same loopback port.
async fn spawn_dns(mode: DnsMode) -> SocketAddr {
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let r = match mode {
                DnsMode::Silent => continue,
                DnsMode::Answer(ip) => reply(&q, Some(ip)),
                DnsMode::ServFail => {
                    let mut r = reply(&q, None);
                    r.metadata.response_code = hickory_proto::op::ResponseCode::ServFail;
                    r
                }
                DnsMode::Truncate(_) => {
                    let mut r = reply(&q, None);
                    r.metadata.truncation = true;
                    r
                }
                DnsMode::WrongIdFirst(ip) => {
                    let mut wrong = reply(&q, Some(Ipv4Addr::new(192, 0, 2, 66)));
                    wrong.metadata.id = q.metadata.id.wrapping_add(1);
                    let _ = udp.send_to(&wrong.to_vec().unwrap(), peer).await;
                    reply(&q, Some(ip))
                }
            };
            let _ = udp.send_to(&r.to_vec().unwrap(), peer).await;
        }
    });
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            let DnsMode::Truncate(ip) = mode else {
                continue;
            };
            tokio::spawn(async move {
                let mut len = [0u8; 2];
                s.read_exact(&mut len).await.ok()?;
                let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                s.read_exact(&mut buf).await.ok()?;
                let q = Message::from_vec(&buf).ok()?;
                let wire = reply(&q, Some(ip)).to_vec().ok()?;
                let mut out = (wire.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&wire);
                s.write_all(&out).await.ok()
            });
        }
    });
    addr
}

fn dns_spec(d: DnsCheck, timeout: Duration) -> CheckSpec {
    CheckSpec {
        kind: CheckKind::Dns(d),
        timeout,
    }
}

const DOC_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

#[tokio::test]
async fn dns_noerror_with_the_expected_answer() {
    let addr = spawn_dns(DnsMode::Answer(DOC_IP)).await;
    let d = DnsCheck {
        expect_answer: Some("192.0.2.1".into()),
        ..DnsCheck::new("www.example.test", 1)
    };
    let ok = expect_ok(probe(&dns_spec(d, GENEROUS), target(addr)).await);
    assert_eq!(ok.detail, "rcode NOERROR, 1 answer");

    // A substring of the presentation form.
    let d = DnsCheck {
        expect_answer: Some("192.0.2.".into()),
        ..DnsCheck::new("www.example.test.", 1)
    };
    expect_ok(probe(&dns_spec(d, GENEROUS), target(addr)).await);

    let d = DnsCheck {
        expect_answer: Some("192.0.2.99".into()),
        ..DnsCheck::new("www.example.test", 1)
    };
    let e = expect_err(probe(&dns_spec(d, GENEROUS), target(addr)).await);
    assert_eq!(e.kind, ProbeErrorKind::Dns);
    assert_eq!(e.to_string(), "dns: no answer matching 192.0.2.99");
}

#[tokio::test]
async fn dns_servfail_fails_unless_expected() {
    let addr = spawn_dns(DnsMode::ServFail).await;
    let e = expect_err(
        probe(
            &dns_spec(DnsCheck::new("example.test", 6), GENEROUS),
            target(addr),
        )
        .await,
    );
    assert_eq!(e.kind, ProbeErrorKind::Dns);
    assert_eq!(e.to_string(), "dns: rcode SERVFAIL");

    let d = DnsCheck {
        expect_rcodes: vec![RCODE_NOERROR, parse_rcode("servfail").unwrap()],
        ..DnsCheck::new("example.test", 6)
    };
    let ok = expect_ok(probe(&dns_spec(d, GENEROUS), target(addr)).await);
    assert_eq!(ok.detail, "rcode SERVFAIL, 0 answers");
}

#[tokio::test]
async fn dns_truncated_answer_is_retried_over_tcp() {
    let addr = spawn_dns(DnsMode::Truncate(DOC_IP)).await;
    let d = DnsCheck {
        expect_answer: Some("192.0.2.1".into()),
        ..DnsCheck::new("big.example.test", 1)
    };
    let ok = expect_ok(probe(&dns_spec(d, GENEROUS), target(addr)).await);
    assert_eq!(ok.detail, "rcode NOERROR, 1 answer over tcp");
}

#[tokio::test]
async fn dns_reply_with_a_foreign_id_is_ignored() {
    let addr = spawn_dns(DnsMode::WrongIdFirst(DOC_IP)).await;
    let d = DnsCheck {
        expect_answer: Some("192.0.2.1".into()),
        ..DnsCheck::new("www.example.test", 1)
    };
    expect_ok(probe(&dns_spec(d, GENEROUS), target(addr)).await);
}

#[tokio::test]
async fn dns_silent_server_times_out_and_closed_port_is_refused() {
    let addr = spawn_dns(DnsMode::Silent).await;
    let e = expect_err(
        probe(
            &dns_spec(DnsCheck::new("example.test", 1), SHORT),
            target(addr),
        )
        .await,
    );
    assert_timed_out(&e, SHORT, "dns over udp");

    // Nothing bound: ICMP port unreachable.
    let closed = {
        let s = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        s.local_addr().unwrap()
    };
    let e = expect_err(
        probe(
            &dns_spec(DnsCheck::new("example.test", 1), GENEROUS),
            target(closed),
        )
        .await,
    );
    assert_eq!(e.kind, ProbeErrorKind::Refused, "{e}");
}
