//! The DNS check: one query over UDP, retried over TCP when truncated.

use crate::health::spec::rcode_name;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::op::{Edns, Message, MessageType, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

use super::{DnsCheck, Fail, Phase, PhaseName, ProbeErrorKind, Target, tcp};

/// EDNS UDP payload size advertised (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;
/// Receive buffer for UDP responses.
const UDP_BUF: usize = 4096;

/// Run a DNS check.
pub(super) async fn probe(d: &DnsCheck, target: Target<'_>, phase: &Phase) -> Result<String, Fail> {
    let query = build_query(d)?;
    let wire = query.to_vec().map_err(|e| {
        Fail::new(
            ProbeErrorKind::Protocol,
            format!("protocol: encoding query: {e}"),
        )
    })?;

    phase.set(PhaseName::DnsUdp);
    let mut resp = udp_exchange(&wire, &query, target.addr).await?;
    let mut via = "";
    if resp.metadata.truncation {
        phase.set(PhaseName::Connect);
        resp = tcp_exchange(&wire, &query, target.addr, phase).await?;
        via = " over tcp";
    }
    evaluate(d, &resp).map(|s| format!("{s}{via}"))
}

fn build_query(d: &DnsCheck) -> Result<Message, Fail> {
    let mut name = Name::from_ascii(&d.qname).map_err(|e| {
        Fail::new(
            ProbeErrorKind::Protocol,
            format!("protocol: bad qname {:?}: {e}", d.qname),
        )
    })?;
    name.set_fqdn(true);
    // Random id from hickory's RNG.
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name, RecordType::from(d.qtype)));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    m.set_edns(edns);
    Ok(m)
}

/// Whether `resp` answers `query`: same id, a response, same question.
/// `Err` means the id matched but the rest did not.
fn matches(query: &Message, resp: &Message) -> Result<bool, Fail> {
    if resp.metadata.id != query.metadata.id {
        return Ok(false);
    }
    if resp.metadata.message_type != MessageType::Response {
        return Err(Fail::new(
            ProbeErrorKind::Protocol,
            "protocol: reply is not a response",
        ));
    }
    // hickory's Name equality ignores ASCII case.
    let same_question = match (query.queries.as_slice(), resp.queries.as_slice()) {
        ([q], [r]) => {
            q.name() == r.name()
                && q.query_type() == r.query_type()
                && q.query_class() == r.query_class()
        }
        _ => false,
    };
    if !same_question {
        return Err(Fail::new(
            ProbeErrorKind::Protocol,
            "protocol: response question does not match",
        ));
    }
    Ok(true)
}

async fn udp_exchange(wire: &[u8], query: &Message, addr: SocketAddr) -> Result<Message, Fail> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local)
        .await
        .map_err(|e| Fail::new(ProbeErrorKind::Io, format!("io: udp bind: {e}")))?;
    // A connected socket only receives from the target.
    sock.connect(addr).await.map_err(tcp::connect_error)?;
    sock.send(wire).await.map_err(udp_error)?;
    let mut buf = vec![0u8; UDP_BUF];
    loop {
        let n = sock.recv(&mut buf).await.map_err(udp_error)?;
        // Undecodable or foreign datagrams are ignored (late answers,
        // spoofing); the deadline bounds the wait.
        let Ok(resp) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if matches(query, &resp)? {
            return Ok(resp);
        }
    }
}

fn udp_error(e: io::Error) -> Fail {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        Fail::new(
            ProbeErrorKind::Refused,
            "connect refused (udp port unreachable)",
        )
    } else {
        Fail::new(ProbeErrorKind::Io, format!("io: udp: {e}"))
    }
}

async fn tcp_exchange(
    wire: &[u8],
    query: &Message,
    addr: SocketAddr,
    phase: &Phase,
) -> Result<Message, Fail> {
    let mut stream = tcp::connect(addr, phase).await?;
    phase.set(PhaseName::DnsTcp);
    let len = u16::try_from(wire.len())
        .map_err(|_| Fail::new(ProbeErrorKind::Protocol, "protocol: query too long"))?;
    let mut framed = Vec::with_capacity(wire.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(wire);
    stream
        .write_all(&framed)
        .await
        .map_err(|e| tcp::io_error("sending dns query", &e))?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(tcp_read_error)?;
    // At most 64 KiB, by the framing.
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.map_err(tcp_read_error)?;
    let resp = Message::from_vec(&buf).map_err(|e| {
        Fail::new(
            ProbeErrorKind::Protocol,
            format!("protocol: malformed dns response: {e}"),
        )
    })?;
    if !matches(query, &resp)? {
        return Err(Fail::new(
            ProbeErrorKind::Protocol,
            "protocol: dns response id does not match",
        ));
    }
    Ok(resp)
}

fn tcp_read_error(e: io::Error) -> Fail {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Fail::new(
            ProbeErrorKind::Protocol,
            "protocol: connection closed before dns response",
        )
    } else {
        tcp::io_error("reading dns response", &e)
    }
}

fn evaluate(d: &DnsCheck, resp: &Message) -> Result<String, Fail> {
    let rcode = resp.metadata.response_code;
    let code = u16::from(rcode);
    if !d.expect_rcodes.contains(&code) {
        return Err(Fail::new(
            ProbeErrorKind::Dns,
            format!("dns: rcode {}", rcode_name(code)),
        ));
    }
    if let Some(want) = &d.expect_answer {
        let found = match want.parse::<IpAddr>() {
            Ok(ip) => resp.answers.iter().any(|r| match &r.data {
                RData::A(a) => IpAddr::V4(a.0) == ip,
                RData::AAAA(a) => IpAddr::V6(a.0) == ip,
                _ => false,
            }),
            Err(_) => resp
                .answers
                .iter()
                .any(|r| r.data.to_string().contains(want.as_str())),
        };
        if !found {
            return Err(Fail::new(
                ProbeErrorKind::Dns,
                format!("dns: no answer matching {want}"),
            ));
        }
    }
    let n = resp.answers.len();
    Ok(format!(
        "rcode {}, {n} answer{}",
        rcode_name(code),
        if n == 1 { "" } else { "s" }
    ))
}
