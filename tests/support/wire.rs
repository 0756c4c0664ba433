//! DNS queries for tests: hickory messages for readable tests, raw bytes
//! where the exact octets matter (hostile input, allocation counts), and
//! the UDP and TCP exchanges that carry them.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// A query without EDNS (id 0x4242, RD set).
pub fn q(name: &str, t: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.id = 0x4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).expect("name"), t));
    m
}

/// A query with EDNS (payload 1232).
pub fn qe(name: &str, t: RecordType) -> Message {
    let mut m = q(name, t);
    let mut e = Edns::new();
    e.set_max_payload(1232);
    m.set_edns(e);
    m
}

/// A query with EDNS and a Client Subnet option (`subnet`: "addr/len").
pub fn q_ecs(name: &str, t: RecordType, subnet: &str) -> Message {
    let (addr, len) = subnet.split_once('/').expect("subnet");
    let mut m = qe(name, t);
    let ip = IpAddr::from_str(addr).expect("ip");
    let e = m.edns.as_mut().expect("edns");
    e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
        ip,
        len.parse().expect("len"),
        0,
    )));
    m
}

/// A query with EDNS and one more option.
pub fn qe_with(name: &str, t: RecordType, option: EdnsOption) -> Message {
    let mut m = qe(name, t);
    m.edns.as_mut().expect("edns").options_mut().insert(option);
    m
}

/// A query in another class (CHAOS, HESIOD).
pub fn q_class(name: &str, t: RecordType, class: DNSClass) -> Message {
    let mut m = q(name, t);
    let mut qq = Query::query(Name::from_str(name).expect("name"), t);
    qq.set_query_class(class);
    m.queries = vec![qq];
    m
}

/// Encode a message.
pub fn wire(m: &Message) -> Vec<u8> {
    m.to_vec().expect("encode")
}

/// Decode a response, panicking with the bytes on failure.
pub fn decode(b: &[u8]) -> Message {
    Message::from_vec(b).unwrap_or_else(|e| panic!("bad response {e}: {b:02x?}"))
}

/// The ECS option of a response: (source, scope).
pub fn ecs_of(m: &Message) -> Option<(u8, u8)> {
    match m.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}

/// Addresses in the answer section, as strings, sorted.
pub fn addrs(m: &Message) -> Vec<String> {
    addrs_in(&m.answers)
}

/// Addresses (A and AAAA data) in a section, as strings, sorted.
pub fn addrs_in(rs: &[Record]) -> Vec<String> {
    let mut v: Vec<String> = rs
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// Record types of a section, in order.
pub fn types(rs: &[Record]) -> Vec<RecordType> {
    rs.iter().map(|r| r.record_type()).collect()
}

/// A query built octet by octet: one question, optionally an OPT record
/// with raw options. Names are written as given (case kept).
#[derive(Clone, Debug)]
pub struct RawQuery {
    id: u16,
    flags: [u8; 2],
    name: String,
    qtype: u16,
    qclass: u16,
    opt: Option<RawOpt>,
}

#[derive(Clone, Debug)]
struct RawOpt {
    payload: u16,
    dnssec_ok: bool,
    options: Vec<u8>,
}

impl RawQuery {
    /// `name` (absolute, the trailing dot optional) and a type; id 0x4242,
    /// RD clear, class IN, no OPT.
    pub fn new(name: &str, qtype: u16) -> Self {
        RawQuery {
            id: 0x4242,
            flags: [0, 0],
            name: name.trim_end_matches('.').to_string(),
            qtype,
            qclass: 1,
            opt: None,
        }
    }

    /// The message id.
    pub fn id(mut self, id: u16) -> Self {
        self.id = id;
        self
    }

    /// Set RD.
    pub fn rd(mut self) -> Self {
        self.flags[0] |= 0x01;
        self
    }

    /// The opcode (0 QUERY, 2 STATUS, 4 NOTIFY, 5 UPDATE).
    pub fn opcode(mut self, opcode: u8) -> Self {
        self.flags[0] = (self.flags[0] & 0x87) | (opcode << 3);
        self
    }

    /// The question's class.
    pub fn class(mut self, class: u16) -> Self {
        self.qclass = class;
        self
    }

    /// Add an OPT record advertising `payload` octets.
    pub fn edns(mut self, payload: u16) -> Self {
        self.opt.get_or_insert(RawOpt {
            payload,
            dnssec_ok: false,
            options: Vec::new(),
        });
        self
    }

    /// Set DO in the OPT record (adds one of 1232 octets if missing).
    pub fn dnssec_ok(self) -> Self {
        let mut s = self.edns(1232);
        s.opt.as_mut().expect("opt").dnssec_ok = true;
        s
    }

    /// Append raw option octets (code, length, data: as they go on the
    /// wire, well-formed or not) to the OPT record.
    pub fn options(self, raw: &[u8]) -> Self {
        let mut s = self.edns(1232);
        s.opt.as_mut().expect("opt").options.extend_from_slice(raw);
        s
    }

    /// Append one option `code` with `data`.
    pub fn option(self, code: u16, data: &[u8]) -> Self {
        let mut raw = code.to_be_bytes().to_vec();
        raw.extend_from_slice(&(data.len() as u16).to_be_bytes());
        raw.extend_from_slice(data);
        self.options(&raw)
    }

    /// Append a Client Subnet option: IPv4 `addr` (only the octets the
    /// source prefix covers) with `source` prefix bits, scope 0.
    pub fn ecs_v4(self, source: u8, addr: &[u8]) -> Self {
        let mut data = vec![0, 1, source, 0];
        data.extend_from_slice(addr);
        self.option(8, &data)
    }

    /// The octets.
    pub fn build(&self) -> Vec<u8> {
        let ar = u16::from(self.opt.is_some());
        let mut p = self.id.to_be_bytes().to_vec();
        p.extend_from_slice(&self.flags);
        p.extend_from_slice(&[0, 1, 0, 0, 0, 0]);
        p.extend_from_slice(&ar.to_be_bytes());
        if !self.name.is_empty() {
            for l in self.name.split('.') {
                p.push(l.len() as u8);
                p.extend_from_slice(l.as_bytes());
            }
        }
        p.push(0);
        p.extend_from_slice(&self.qtype.to_be_bytes());
        p.extend_from_slice(&self.qclass.to_be_bytes());
        if let Some(o) = &self.opt {
            p.extend_from_slice(&[0, 0, 41]);
            p.extend_from_slice(&o.payload.to_be_bytes());
            p.extend_from_slice(&[0, 0, if o.dnssec_ok { 0x80 } else { 0 }, 0]);
            p.extend_from_slice(&(o.options.len() as u16).to_be_bytes());
            p.extend_from_slice(&o.options);
        }
        p
    }
}

/// Send raw bytes over UDP from a fresh socket; the answer, or None after
/// a bounded wait.
pub fn udp_raw(addr: SocketAddr, pkt: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    s.send_to(pkt, addr).expect("send");
    let mut buf = vec![0u8; 65535];
    match s.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// Ask `m` over UDP and decode the answer (panics without one).
pub fn udp_ask(addr: SocketAddr, m: &Message) -> Message {
    decode(&udp_raw(addr, &wire(m)).expect("no UDP answer"))
}

/// `pkt` with its two-octet TCP length prefix.
pub fn frame(pkt: &[u8]) -> Vec<u8> {
    let mut framed = (pkt.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(pkt);
    framed
}

/// Write one framed message on `s` and read one framed answer.
pub fn tcp_exchange(s: &mut TcpStream, pkt: &[u8]) -> Vec<u8> {
    s.write_all(&frame(pkt)).expect("write");
    let mut len = [0u8; 2];
    s.read_exact(&mut len).expect("read length");
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).expect("read body");
    buf
}

/// Send one length-prefixed message over a new TCP connection and read one
/// answer.
pub fn tcp_raw(addr: SocketAddr, pkt: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    tcp_exchange(&mut s, pkt)
}

#[test]
fn raw_queries_are_the_octets_hickory_encodes() {
    let name = "static.lb.example.com";
    let raw = |q: RawQuery| q.rd().build();
    assert_eq!(
        raw(RawQuery::new(name, 1)),
        wire(&q("static.lb.example.com.", RecordType::A))
    );
    assert_eq!(
        raw(RawQuery::new(name, 28).edns(1232)),
        wire(&qe("static.lb.example.com.", RecordType::AAAA))
    );
    assert_eq!(
        raw(RawQuery::new(name, 1).ecs_v4(24, &[81, 2, 69])),
        wire(&q_ecs(
            "static.lb.example.com.",
            RecordType::A,
            "81.2.69.0/24"
        ))
    );
    let m = decode(&RawQuery::new(name, 6).id(7).opcode(4).class(3).build());
    assert_eq!(m.metadata.id, 7);
    assert_eq!(m.metadata.op_code, hickory_proto::op::OpCode::Notify);
    assert_eq!(m.queries[0].query_class(), DNSClass::CH);
    assert!(!m.metadata.recursion_desired);
}
