//! Start a server from a TOML string; query it over UDP or TCP.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use steerdns::app::{self, Running};
use tempfile::TempDir;

/// Path of the shipped sample GeoIP database.
pub fn sample_mmdb() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/sample.mmdb")
}

/// The test zone used by most tests; `{extra}` is appended.
pub const BASE: &str = r#"
[server]
node_name = "test-node-7"
dns_listen = ["127.0.0.1:0"]
udp_workers = 1
random_seed = 42

[geoip]
database = "@GEOIP@"

[zones."lb.example.com"]
ttl = "1h"
ns = ["ns1", "ns2.lb.example.com."]
soa = { rname = "hostmaster.example.com.", serial = 7, minimum = "60s", ttl = "2h" }
records = [
  { name = "ns1", type = "A", data = "192.0.2.53" },
  { name = "ns1", type = "AAAA", data = "2001:db8::53" },
  { name = "ns2", type = "A", data = "198.51.100.53" },
  { name = "static", type = "A", ttl = "5m", data = "192.0.2.1" },
  { name = "static", type = "A", ttl = "5m", data = "192.0.2.2" },
  { name = "@", type = "MX", data = "10 mail" },
  { name = "mail", type = "A", data = "192.0.2.25" },
  { name = "txt", type = "TXT", data = "\"hello\" \"world\"" },
  { name = "_sip._udp", type = "SRV", data = "10 60 5060 sip" },
  { name = "@", type = "CAA", data = "0 issue \"ca.example.net\"" },
  { name = "ptr", type = "PTR", data = "static" },
  { name = "alias", type = "CNAME", data = "alias2" },
  { name = "alias2", type = "CNAME", data = "static" },
  { name = "to-www", type = "CNAME", data = "www" },
  { name = "outside", type = "CNAME", data = "www.example.org." },
  { name = "*.wild", type = "A", data = "192.0.2.99" },
  { name = "*.wild", type = "TXT", data = "\"wild\"" },
  { name = "deep.ent", type = "A", data = "192.0.2.77" },
  { name = "child", type = "NS", data = "ns.child" },
  { name = "ns.child", type = "A", data = "192.0.2.200" },
]

[pools.eu]
region = "DE"
endpoints = [{ address = "192.0.2.10" }, { address = "2001:db8:e::10" }]

[pools.na]
region = "US"
endpoints = [{ address = "198.51.100.10" }, { address = "2001:db8:a::10" }]

[pools.ap]
region = "SG"
endpoints = [{ address = "203.0.113.10" }, { address = "2001:db8:f::10" }]

[names."www.lb.example.com"]
ttl = "30s"
policy = "geo"

[names."www.lb.example.com".geo]
default = ["eu", "na"]
continent = { EU = ["eu", "na"], NA = ["na", "eu"], SA = ["na", "eu"], AS = ["ap", "eu"], OC = ["ap", "na"] }
"#;

/// A running server and the temp dir holding its config.
pub struct TestServer {
    /// The server.
    pub running: Running,
    /// Its UDP address.
    pub udp: SocketAddr,
    /// Its TCP address.
    pub tcp: SocketAddr,
    /// The config file.
    pub config: PathBuf,
    _dir: TempDir,
}

/// Write `toml` (with `@GEOIP@` replaced) into a temp dir.
pub fn write_config(toml: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("steerdns.toml");
    let text = toml.replace("@GEOIP@", &sample_mmdb().display().to_string());
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

impl TestServer {
    /// Start on the base config plus `extra`.
    pub fn base(extra: &str) -> Self {
        Self::start(&format!("{BASE}\n{extra}"))
    }

    /// Start from a full config.
    pub fn start(toml: &str) -> Self {
        let (dir, config) = write_config(toml);
        let running = app::start(&app::Options {
            config: config.clone(),
            dns_listen: vec![],
            http_listen: Some("127.0.0.1:0".parse().unwrap()),
        })
        .unwrap_or_else(|e| panic!("server did not start: {e:#}"));
        TestServer {
            udp: running.udp_addrs[0],
            tcp: running.tcp_addrs[0],
            running,
            config,
            _dir: dir,
        }
    }

    /// Wrap a server started elsewhere (its config in `dir`).
    pub fn from_parts(running: Running, config: PathBuf, dir: TempDir) -> Self {
        TestServer {
            udp: running.udp_addrs[0],
            tcp: running.tcp_addrs[0],
            running,
            config,
            _dir: dir,
        }
    }

    /// Set an endpoint (by pool and address) up or down in the live health table.
    pub fn set_health(&self, pool: &str, address: &str, up: bool) {
        let snap = self.running.shared.current.load();
        let pid = snap.pool_ids[pool];
        let ep = snap.pools[pid as usize]
            .endpoints
            .iter()
            .find(|e| e.label == address)
            .expect("endpoint");
        snap.health.set(ep.id, up);
    }

    /// Query over UDP.
    pub fn udp(&self, m: &Message) -> Message {
        decode(&udp_raw(self.udp, &m.to_vec().expect("encode")).expect("no UDP answer"))
    }

    /// Query over TCP.
    pub fn tcp(&self, m: &Message) -> Message {
        decode(&tcp_raw(self.tcp, &m.to_vec().expect("encode")))
    }
}

/// Decode a response, panicking with the bytes on failure.
pub fn decode(b: &[u8]) -> Message {
    Message::from_vec(b).unwrap_or_else(|e| panic!("bad response {e}: {b:02x?}"))
}

/// Send raw bytes over UDP; the answer, or None after a bounded wait.
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

/// Send one length-prefixed message over TCP and read one answer.
pub fn tcp_raw(addr: SocketAddr, pkt: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut framed = (pkt.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(pkt);
    s.write_all(&framed).expect("write");
    let mut len = [0u8; 2];
    s.read_exact(&mut len).expect("read length");
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).expect("read body");
    buf
}

/// A query without EDNS.
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

/// A query with EDNS and a Client Subnet option.
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

/// The ECS option of a response: (source, scope).
pub fn ecs_of(m: &Message) -> Option<(u8, u8)> {
    match m.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}

/// Addresses in the answer section, as strings, sorted.
pub fn addrs(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
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

/// The class of a query made for CHAOS tests.
pub fn q_class(name: &str, t: RecordType, class: DNSClass) -> Message {
    let mut m = q(name, t);
    let mut qq = Query::query(Name::from_str(name).expect("name"), t);
    qq.set_query_class(class);
    m.queries = vec![qq];
    m
}

/// A minimal HTTP/1.1 request over a fresh connection: (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect API");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Chunked bodies: good enough to search in for these tests.
    (status, body)
}

/// Poll `f` until it returns true, or panic after `secs` seconds (a bounded
/// wait on a condition, not a sleep standing in for synchronisation).
pub fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for: {what}");
}
