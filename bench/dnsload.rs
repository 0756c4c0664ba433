//! `dnsload`: a small closed-loop UDP DNS load generator for loopback
//! benchmarks, plus the query mix and answer check that `bench/compare.sh`
//! uses for every server.
//!
//! ```text
//! cargo run --release --example dnsload -- gen --out queries.bin
//! cargo run --release --example dnsload -- check --server 127.0.0.1:5353
//! cargo run --release --example dnsload -- run --server 127.0.0.1:5353 \
//!     --duration 10 --sockets 4 --window 64 --cpu 1
//! cargo run --release --example dnsload -- run --server 127.0.0.1:5353 \
//!     --case geo-ecs --count 20000 --sockets 1 --window 64
//! cargo run --release --example dnsload -- tcp --server 127.0.0.1:5353 \
//!     --case static --count 2000 --per-conn 1
//! ```
//!
//! * `gen` writes the built-in query mix in the length-prefixed ("TCP
//!   stream") binary format that `dnsperf -B` reads, so dnsperf can send a
//!   per-query EDNS Client Subnet mix.
//! * `check` asks each geo case (one ECS subnet per continent, A and AAAA)
//!   plus a static name and an NXDOMAIN, compares with the expected
//!   answers of `config/example.toml`, and exits non-zero on any mismatch.
//! * `run` keeps `--window` queries in flight on each of `--sockets`
//!   nonblocking connected sockets (batched with `sendmmsg`/`recvmmsg`) for
//!   `--duration` seconds and reports sent, received, answered q/s, lost and
//!   p50/p99 latency. Queries unanswered after `--timeout-ms` count as lost.
//!   With `--count N` it sends exactly N queries (then waits for the
//!   answers; `--duration` is only the cap); with `--case NAME` it sends one
//!   of the single-case mixes (`static`, `geo`, `geo-ecs`, `nx`, `cookie`,
//!   `cookie-srv`) and checks every answer (rcode and addresses, and the
//!   COOKIE option in the cookie cases), reporting `wrong`. It exits
//!   non-zero when `--count` queries were not all answered or any was wrong.
//! * `tcp` sends `--count` queries of a case over TCP, `--per-conn` per
//!   connection (pipelined `--window` at a time), closing each connection
//!   after its last answer, and checks every answer like `run --case`.
//!
//! Only loopback targets are accepted; every loop is bounded by time.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Zone and the geo-steered name.
const WWW: &str = "www.lb.example.com";

/// One ECS subnet of the sample database with the continent it is in and
/// the addresses `config/example.toml` answers for it.
struct GeoCase {
    subnet: IpAddr,
    prefix: u8,
    continent: &'static str,
    a: &'static str,
    aaaa: &'static str,
}

const EU: (&str, &str) = ("192.0.2.10", "2001:db8:e::10");
const NA: (&str, &str) = ("198.51.100.10", "2001:db8:a::10");
const AP: (&str, &str) = ("203.0.113.10", "2001:db8:f::10");

fn geo_cases() -> Vec<GeoCase> {
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let v6 = |s: &str| IpAddr::V6(s.parse::<Ipv6Addr>().expect("v6 literal"));
    let case = |subnet, prefix, continent, pool: (&'static str, &'static str)| GeoCase {
        subnet,
        prefix,
        continent,
        a: pool.0,
        aaaa: pool.1,
    };
    vec![
        case(v4(81, 2, 69, 0), 24, "EU", EU),
        case(v4(89, 160, 20, 0), 24, "EU", EU),
        case(v4(216, 160, 83, 0), 24, "NA", NA),
        case(v4(200, 160, 0, 0), 24, "SA", NA),
        case(v4(175, 16, 199, 0), 24, "AS", AP),
        case(v4(203, 2, 218, 0), 24, "OC", AP),
        // Africa is not in the continent map: the default pools answer.
        case(v4(196, 216, 2, 0), 24, "AF", EU),
        case(v6("2001:218::"), 48, "AS", AP),
        case(v6("2a02:d280::"), 48, "EU", EU),
    ]
}

/// Static names in the mix (asked with EDNS, without ECS).
const STATIC: &[(&str, u16, &str)] = &[
    ("static.lb.example.com", 1, "192.0.2.1"),
    ("ns1.lb.example.com", 1, "192.0.2.53"),
    ("ns2.lb.example.com", 28, "2001:db8:1::53"),
    ("mail.lb.example.com", 1, "192.0.2.25"),
];

const T_A: u16 = 1;
const T_AAAA: u16 = 28;

/// EDNS option code of DNS Cookies (RFC 7873).
const OPT_COOKIE: u16 = 10;
/// The client cookie of the cookie cases: one for the whole run, as a
/// resolver keeps one per server.
const CLIENT_COOKIE: [u8; 8] = *b"dnsload1";

/// Build a query. `ecs` adds an EDNS Client Subnet option.
fn build_query(id: u16, name: &str, qtype: u16, ecs: Option<(IpAddr, u8)>) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    // RD clear (authoritative), one question, one additional (OPT).
    q.extend_from_slice(&[0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    // OPT: root owner, type 41, payload 1232, ext rcode/version/flags 0.
    q.push(0);
    q.extend_from_slice(&41u16.to_be_bytes());
    q.extend_from_slice(&1232u16.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 0]);
    match ecs {
        None => q.extend_from_slice(&[0, 0]),
        Some((addr, prefix)) => {
            let (family, octets): (u16, Vec<u8>) = match addr {
                IpAddr::V4(a) => (1, a.octets().to_vec()),
                IpAddr::V6(a) => (2, a.octets().to_vec()),
            };
            let n = (prefix as usize).div_ceil(8);
            let opt_len = 4 + n;
            q.extend_from_slice(&((4 + opt_len) as u16).to_be_bytes());
            q.extend_from_slice(&8u16.to_be_bytes());
            q.extend_from_slice(&(opt_len as u16).to_be_bytes());
            q.extend_from_slice(&family.to_be_bytes());
            q.extend_from_slice(&[prefix, 0]);
            q.extend_from_slice(&octets[..n]);
        }
    }
    q
}

/// Append an EDNS option to a query of [`build_query`] (whose OPT record
/// is last), growing the OPT record's RDATA length.
fn add_option(q: &mut Vec<u8>, code: u16, data: &[u8]) {
    // Question, then OPT: root owner (1), type, class, TTL (8), RDLENGTH.
    let at = skip_name(q, 12).expect("query has a question") + 4 + 1 + 8;
    let rdlen = u16::from_be_bytes([q[at], q[at + 1]]) + 4 + data.len() as u16;
    q[at..at + 2].copy_from_slice(&rdlen.to_be_bytes());
    q.extend_from_slice(&code.to_be_bytes());
    q.extend_from_slice(&(data.len() as u16).to_be_bytes());
    q.extend_from_slice(data);
}

/// The built-in mix: per 10 queries, 8 geo+ECS (A and AAAA alternating,
/// subnets cycling over every continent of the sample database) and 2
/// static names. Deterministic.
fn builtin_mix(count: usize) -> Vec<Vec<u8>> {
    let cases = geo_cases();
    let mut out = Vec::with_capacity(count);
    let (mut g, mut s) = (0usize, 0usize);
    for i in 0..count {
        let q = if i % 10 < 8 {
            let c = &cases[g % cases.len()];
            let t = if (g / cases.len()).is_multiple_of(2) {
                T_A
            } else {
                T_AAAA
            };
            g += 1;
            build_query(0, WWW, t, Some((c.subnet, c.prefix)))
        } else {
            let (name, t, _) = STATIC[s % STATIC.len()];
            s += 1;
            build_query(0, name, t, None)
        };
        out.push(q);
    }
    out
}

/// What a query of a single-case mix must be answered with: rcode and the
/// answer section's A/AAAA addresses (sorted).
#[derive(Clone, Debug)]
struct Expect {
    rcode: u8,
    addrs: Vec<String>,
    /// The answer must carry a COOKIE option echoing this client cookie,
    /// with a server cookie (8 to 32 bytes).
    cookie: Option<[u8; 8]>,
}

impl Expect {
    fn new(rcode: u8, addrs: &[&str]) -> Self {
        let mut addrs: Vec<String> = addrs.iter().map(|s| s.to_string()).collect();
        addrs.sort();
        Expect {
            rcode,
            addrs,
            cookie: None,
        }
    }

    /// `loose`: only the rcode and the number of addresses must match (for
    /// GeoIP databases other than the sample one).
    fn matches(&self, r: &Parsed, loose: bool) -> bool {
        if let Some(c) = self.cookie
            && !r.cookie.as_ref().is_some_and(|k| cookie_answers(k, &c))
        {
            return false;
        }
        if loose {
            return r.rcode == self.rcode && r.addrs.len() == self.addrs.len();
        }
        let mut got = r.addrs.clone();
        got.sort();
        r.rcode == self.rcode && got == self.addrs
    }
}

/// The single-case mixes used by `bench/callgrind.sh`, with the answer each
/// query must get from the shared bench config. All queries carry EDNS.
/// * `static`: `static.lb.example.com A`, no ECS;
/// * `geo`: `www.lb.example.com A`, no ECS (from loopback: no location, the
///   default `eu` pool);
/// * `geo-ecs`: `www.lb.example.com A` with ECS cycling over the subnets of
///   every continent in the sample database;
/// * `nx`: `nx.lb.example.com A`, NXDOMAIN;
/// * `cookie`, `cookie-srv`: `static` with the COOKIE option `cookie`: the
///   client cookie alone, or (`cookie-srv`) with the server cookie learned
///   first ([`learn_cookie`]); the answer must echo the client cookie with
///   a server cookie.
fn case_mix(case: &str, count: usize, cookie: &[u8]) -> Option<(Vec<Vec<u8>>, Vec<Expect>)> {
    let count = count.max(1);
    let mut qs = Vec::with_capacity(count);
    let mut ex = Vec::with_capacity(count);
    let cases = geo_cases();
    for i in 0..count {
        let (q, e) = match case {
            "static" => (
                build_query(0, "static.lb.example.com", T_A, None),
                Expect::new(0, &["192.0.2.1"]),
            ),
            "geo" => (build_query(0, WWW, T_A, None), Expect::new(0, &[EU.0])),
            "geo-ecs" => {
                let c = &cases[i % cases.len()];
                (
                    build_query(0, WWW, T_A, Some((c.subnet, c.prefix))),
                    Expect::new(0, &[c.a]),
                )
            }
            "nx" => (
                build_query(0, "nx.lb.example.com", T_A, None),
                Expect::new(3, &[]),
            ),
            "cookie" | "cookie-srv" => {
                let mut q = build_query(0, "static.lb.example.com", T_A, None);
                add_option(&mut q, OPT_COOKIE, cookie);
                let mut e = Expect::new(0, &["192.0.2.1"]);
                e.cookie = Some(CLIENT_COOKIE);
                (q, e)
            }
            _ => return None,
        };
        qs.push(q);
        ex.push(e);
    }
    Some((qs, ex))
}

/// Read a length-prefixed query file (the `dnsperf -B` format).
fn read_queries(path: &str) -> Result<Vec<Vec<u8>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 <= data.len() {
        let n = u16::from_be_bytes([data[i], data[i + 1]]) as usize;
        i += 2;
        if n < 12 || i + n > data.len() {
            return Err(format!("{path}: truncated or bad message at byte {i}"));
        }
        out.push(data[i..i + n].to_vec());
        i += n;
    }
    if out.is_empty() {
        return Err(format!("{path}: no queries"));
    }
    Ok(out)
}

/// Parsed parts of a response that the check compares.
#[derive(Debug, Default)]
struct Parsed {
    id: u16,
    rcode: u8,
    addrs: Vec<String>,
    ecs_scope: Option<u8>,
    /// The COOKIE option's data (client cookie, then server cookie).
    cookie: Option<Vec<u8>>,
}

fn skip_name(p: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *p.get(i)? as usize;
        if len == 0 {
            return Some(i + 1);
        }
        if len & 0xC0 == 0xC0 {
            return Some(i + 2);
        }
        i += 1 + len;
    }
}

fn parse_response(p: &[u8]) -> Option<Parsed> {
    if p.len() < 12 || p[2] & 0x80 == 0 {
        return None;
    }
    let rd16 = |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?])) };
    let mut r = Parsed {
        id: rd16(0)?,
        rcode: p[3] & 0x0F,
        ..Parsed::default()
    };
    let qd = rd16(4)?;
    let total = rd16(6)? as usize + rd16(8)? as usize + rd16(10)? as usize;
    let an = rd16(6)? as usize;
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(p, i)? + 4;
    }
    for k in 0..total {
        i = skip_name(p, i)?;
        let t = rd16(i)?;
        let len = rd16(i + 8)? as usize;
        let rd = p.get(i + 10..i + 10 + len)?;
        if k < an && t == T_A && len == 4 {
            r.addrs
                .push(Ipv4Addr::new(rd[0], rd[1], rd[2], rd[3]).to_string());
        } else if k < an && t == T_AAAA && len == 16 {
            let o: [u8; 16] = rd.try_into().ok()?;
            r.addrs.push(Ipv6Addr::from(o).to_string());
        } else if t == 41 {
            // EDNS options: look for ECS (code 8) and take its scope.
            let mut j = 0;
            while j + 4 <= rd.len() {
                let code = u16::from_be_bytes([rd[j], rd[j + 1]]);
                let olen = u16::from_be_bytes([rd[j + 2], rd[j + 3]]) as usize;
                if code == 8 && olen >= 4 && j + 4 + olen <= rd.len() {
                    r.ecs_scope = Some(rd[j + 7]);
                }
                if code == OPT_COOKIE && j + 4 + olen <= rd.len() {
                    r.cookie = Some(rd[j + 4..j + 4 + olen].to_vec());
                }
                j += 4 + olen;
            }
        }
        i += 10 + len;
    }
    Some(r)
}

/// Whether a COOKIE option's data answers `client`: our client cookie and a
/// server cookie of 8 to 32 bytes (RFC 7873 section 4).
fn cookie_answers(data: &[u8], client: &[u8; 8]) -> bool {
    (16..=40).contains(&data.len()) && data[..8] == client[..]
}

fn loopback_only(addr: SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!("{addr}: only loopback targets are allowed"))
    }
}

fn ask(sock: &UdpSocket, q: &[u8]) -> Result<Parsed, String> {
    let mut buf = [0u8; 4096];
    for _attempt in 0..3 {
        sock.send(q).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_millis(700);
        while Instant::now() < deadline {
            match sock.recv(&mut buf) {
                Ok(n) => match parse_response(&buf[..n]) {
                    Some(r) if r.id == u16::from_be_bytes([q[0], q[1]]) => return Ok(r),
                    _ => continue,
                },
                Err(_) => break,
            }
        }
    }
    Err("no response after 3 tries".into())
}

/// A loopback UDP socket connected to `server`, 300 ms read timeout.
fn asking_socket(server: SocketAddr) -> Result<UdpSocket, String> {
    loopback_only(server)?;
    let bind: SocketAddr = if server.is_ipv4() {
        "127.0.0.1:0".parse().unwrap()
    } else {
        "[::1]:0".parse().unwrap()
    };
    let sock = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    sock.connect(server).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .map_err(|e| e.to_string())?;
    Ok(sock)
}

/// What a resolver does first: send the client cookie alone and keep the
/// server cookie of the answer. Returns the COOKIE data to send from then
/// on (client cookie, then server cookie).
fn learn_cookie(server: SocketAddr) -> Result<Vec<u8>, String> {
    let sock = asking_socket(server)?;
    let mut q = build_query(0x4C00, "static.lb.example.com", T_A, None);
    add_option(&mut q, OPT_COOKIE, &CLIENT_COOKIE);
    match ask(&sock, &q)?.cookie {
        Some(c) if cookie_answers(&c, &CLIENT_COOKIE) => Ok(c),
        other => Err(format!("no server cookie in the answer (COOKIE {other:?})")),
    }
}

/// `check`: one query per expectation; returns the number of mismatches.
fn check(server: SocketAddr) -> Result<usize, String> {
    let sock = asking_socket(server)?;
    let mut bad = 0;
    let mut id = 0x4000u16;
    let mut expect = |label: String, q: Vec<u8>, rcode: u8, want: &[&str]| -> Result<(), String> {
        let r = ask(&sock, &q)?;
        let mut got = r.addrs.clone();
        got.sort();
        let mut w: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        w.sort();
        let ok = r.rcode == rcode && got == w;
        println!(
            "{} {label}: rcode {} answer {:?} ecs-scope {:?}{}",
            if ok { "ok   " } else { "WRONG" },
            r.rcode,
            got,
            r.ecs_scope,
            if ok {
                String::new()
            } else {
                format!(" (want rcode {rcode} {w:?})")
            }
        );
        if !ok {
            bad += 1;
        }
        Ok(())
    };
    for c in geo_cases() {
        for (t, want) in [(T_A, c.a), (T_AAAA, c.aaaa)] {
            id = id.wrapping_add(1);
            let q = build_query(id, WWW, t, Some((c.subnet, c.prefix)));
            let tname = if t == T_A { "A" } else { "AAAA" };
            expect(
                format!(
                    "{WWW} {tname} ecs {}/{} ({})",
                    c.subnet, c.prefix, c.continent
                ),
                q,
                0,
                &[want],
            )?;
        }
    }
    for &(name, t, want) in STATIC {
        id = id.wrapping_add(1);
        expect(
            format!("{name} type {t}"),
            build_query(id, name, t, None),
            0,
            &[want],
        )?;
    }
    id = id.wrapping_add(1);
    expect(
        "nx.lb.example.com A".into(),
        build_query(id, "nx.lb.example.com", T_A, None),
        3,
        &[],
    )?;
    Ok(bad)
}

/// Latency histogram in microseconds up to 1 s (the last bucket is "more").
struct Histogram {
    buckets: Vec<u64>,
    n: u64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: vec![0; 1_000_001],
            n: 0,
        }
    }
    fn add(&mut self, us: u64) {
        let i = (us as usize).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.n += 1;
    }
    fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let target = ((self.n as f64) * q).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (i, &c) in self.buckets.iter().enumerate() {
            acc += c;
            if acc >= target {
                return i as u64;
            }
        }
        (self.buckets.len() - 1) as u64
    }
}

/// Per-socket state: in-flight send times by query ID.
struct Conn {
    sock: UdpSocket,
    /// Send time (ns since start) per ID; `u64::MAX` when free.
    inflight: Vec<u64>,
    free_ids: Vec<u16>,
    /// Index into the query list per in-flight ID (for `--case` checks).
    qidx: Vec<u32>,
    outstanding: usize,
}

const BATCH: usize = 64;

struct RunOpts {
    server: SocketAddr,
    duration: Duration,
    sockets: usize,
    window: usize,
    timeout: Duration,
    queries: Vec<Vec<u8>>,
    /// Send exactly this many queries, then stop.
    count: Option<u64>,
    /// Check every answer against these (parallel to `queries`).
    expect: Option<Vec<Expect>>,
    /// See [`Expect::matches`].
    loose: bool,
}

#[derive(Default)]
struct Totals {
    sent: u64,
    received: u64,
    answered: u64,
    rcodes: HashMap<u8, u64>,
    lost: u64,
    send_errors: u64,
    wrong: u64,
}

fn run(opts: &RunOpts) -> Result<(), String> {
    loopback_only(opts.server)?;
    let window = opts.window.clamp(1, 4096);
    let bind: SocketAddr = if opts.server.is_ipv4() {
        "127.0.0.1:0".parse().unwrap()
    } else {
        "[::1]:0".parse().unwrap()
    };
    let mut conns = Vec::new();
    for _ in 0..opts.sockets.max(1) {
        let sock = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
        sock.connect(opts.server).map_err(|e| e.to_string())?;
        sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        conns.push(Conn {
            sock,
            inflight: vec![u64::MAX; 65536],
            free_ids: (0..=u16::MAX).rev().collect(),
            qidx: vec![0; 65536],
            outstanding: 0,
        });
    }
    let queries = &opts.queries;
    let mut next_q = 0usize;
    let mut tot = Totals::default();
    let mut hist = Histogram::new();
    let start = Instant::now();
    let end = start + opts.duration;
    // Drain time after the send phase, so in-flight answers are counted.
    let hard_end = end + opts.timeout;
    let timeout_ns = opts.timeout.as_nanos() as u64;
    let mut last_sweep = start;
    let mut sendbufs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
    let mut recvbufs: Vec<[u8; 1500]> = vec![[0u8; 1500]; BATCH];
    let now_ns = |s: Instant| s.elapsed().as_nanos() as u64;

    loop {
        let now = Instant::now();
        let sending = now < end && opts.count.is_none_or(|n| tot.sent < n);
        if now >= hard_end || (!sending && conns.iter().all(|c| c.outstanding == 0)) {
            break;
        }
        // Fill the windows.
        if sending {
            for c in conns.iter_mut() {
                let left = opts.count.map_or(usize::MAX, |n| (n - tot.sent) as usize);
                let want = window.saturating_sub(c.outstanding).min(BATCH).min(left);
                if want == 0 {
                    continue;
                }
                let mut ids = [0u16; BATCH];
                for (k, buf) in sendbufs.iter_mut().enumerate().take(want) {
                    let id = c.free_ids.pop().expect("window below 65536");
                    ids[k] = id;
                    c.qidx[id as usize] = (next_q % queries.len()) as u32;
                    buf.clear();
                    buf.extend_from_slice(&queries[next_q % queries.len()]);
                    buf[0..2].copy_from_slice(&id.to_be_bytes());
                    next_q += 1;
                }
                let t = now_ns(start);
                let sent = sendmmsg(&c.sock, &sendbufs[..want]);
                for (k, &id) in ids.iter().enumerate().take(want) {
                    if k < sent {
                        c.inflight[id as usize] = t;
                        c.outstanding += 1;
                    } else {
                        c.free_ids.push(id);
                    }
                }
                tot.sent += sent as u64;
                if sent < want {
                    tot.send_errors += 1;
                    next_q -= want - sent;
                }
            }
        }
        // Wait for readability on any socket (bounded).
        let mut fds: Vec<libc::pollfd> = conns
            .iter()
            .map(|c| libc::pollfd {
                fd: c.sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: fds is a valid array of pollfd for the call's duration.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 5) };
        for (c, fd) in conns.iter_mut().zip(&fds) {
            if fd.revents & libc::POLLIN == 0 {
                continue;
            }
            let n = recvmmsg(&c.sock, &mut recvbufs);
            let t = now_ns(start);
            for (buf, len) in n {
                let p = &recvbufs[buf][..len];
                tot.received += 1;
                if p.len() < 12 || p[2] & 0x80 == 0 {
                    continue;
                }
                let id = u16::from_be_bytes([p[0], p[1]]);
                let sent_at = c.inflight[id as usize];
                if sent_at == u64::MAX {
                    continue; // late answer to a query already counted lost
                }
                c.inflight[id as usize] = u64::MAX;
                c.free_ids.push(id);
                c.outstanding -= 1;
                tot.answered += 1;
                if let Some(expect) = &opts.expect {
                    let e = &expect[c.qidx[id as usize] as usize];
                    if !parse_response(p).is_some_and(|r| e.matches(&r, opts.loose)) {
                        if tot.wrong < 5 {
                            eprintln!("WRONG answer {:?} (want {e:?})", parse_response(p));
                        }
                        tot.wrong += 1;
                    }
                }
                *tot.rcodes.entry(p[3] & 0x0F).or_default() += 1;
                hist.add((t - sent_at) / 1000);
            }
        }
        // Expire lost queries every 50 ms.
        if now.duration_since(last_sweep) > Duration::from_millis(50) {
            last_sweep = now;
            let t = now_ns(start);
            for c in conns.iter_mut() {
                for id in 0..c.inflight.len() {
                    let s = c.inflight[id];
                    if s != u64::MAX && t.saturating_sub(s) > timeout_ns {
                        c.inflight[id] = u64::MAX;
                        c.free_ids.push(id as u16);
                        c.outstanding -= 1;
                        tot.lost += 1;
                    }
                }
            }
        }
    }
    let still = conns.iter().map(|c| c.outstanding as u64).sum::<u64>();
    tot.lost += still;
    let secs = if opts.count.is_some() {
        start.elapsed().as_secs_f64()
    } else {
        opts.duration.as_secs_f64()
    };
    let mut rc: Vec<_> = tot.rcodes.iter().collect();
    rc.sort();
    println!(
        "sent {} received {} answered {} lost {} send-errors {} duration {:.1}s",
        tot.sent, tot.received, tot.answered, tot.lost, tot.send_errors, secs
    );
    println!("rcodes {rc:?}");
    println!(
        "qps {:.0} p50_us {} p99_us {} p999_us {}",
        tot.answered as f64 / secs,
        hist.quantile(0.50),
        hist.quantile(0.99),
        hist.quantile(0.999)
    );
    if opts.expect.is_some() {
        println!("checked {} wrong {}", tot.answered, tot.wrong);
    }
    if tot.wrong > 0 {
        return Err(format!("{} wrong answers", tot.wrong));
    }
    if let Some(n) = opts.count
        && tot.answered != n
    {
        return Err(format!("{} of {n} queries answered", tot.answered));
    }
    Ok(())
}

struct TcpOpts {
    server: SocketAddr,
    count: u64,
    per_conn: u64,
    window: usize,
    cap: Duration,
    queries: Vec<Vec<u8>>,
    expect: Vec<Expect>,
}

/// `tcp`: `count` queries over TCP, `per_conn` per connection, `window`
/// pipelined at a time, each answer checked. Blocking sockets with read and
/// write timeouts; the whole run is capped by `cap`.
fn run_tcp(o: &TcpOpts) -> Result<(), String> {
    use std::io::Read;
    use std::net::TcpStream;
    loopback_only(o.server)?;
    let io_timeout = Some(Duration::from_secs(5));
    let window = o.window.clamp(1, 4096);
    let per_conn = o.per_conn.max(1);
    let start = Instant::now();
    let (mut sent, mut answered, mut wrong, mut conns) = (0u64, 0u64, 0u64, 0u64);
    let mut out = Vec::with_capacity(window * 64);
    let mut msg = vec![0u8; 65535];
    while sent < o.count {
        if start.elapsed() > o.cap {
            return Err(format!("time cap reached after {answered} answers"));
        }
        let mut s = TcpStream::connect_timeout(&o.server, Duration::from_secs(2))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(io_timeout).map_err(|e| e.to_string())?;
        s.set_write_timeout(io_timeout).map_err(|e| e.to_string())?;
        conns += 1;
        let in_conn = per_conn.min(o.count - sent);
        let mut done = 0u64;
        while done < in_conn {
            let w = (window as u64).min(in_conn - done);
            out.clear();
            for k in 0..w {
                let n = (sent + done + k) as usize;
                let q = &o.queries[n % o.queries.len()];
                out.extend_from_slice(&(q.len() as u16).to_be_bytes());
                out.extend_from_slice(&(n as u16).to_be_bytes());
                out.extend_from_slice(&q[2..]);
            }
            s.write_all(&out).map_err(|e| format!("write: {e}"))?;
            for k in 0..w {
                let n = (sent + done + k) as usize;
                let mut len = [0u8; 2];
                s.read_exact(&mut len).map_err(|e| format!("read: {e}"))?;
                let len = u16::from_be_bytes(len) as usize;
                s.read_exact(&mut msg[..len])
                    .map_err(|e| format!("read: {e}"))?;
                answered += 1;
                let e = &o.expect[n % o.expect.len()];
                let ok = parse_response(&msg[..len])
                    .is_some_and(|r| r.id == n as u16 && e.matches(&r, false));
                if !ok {
                    if wrong < 5 {
                        eprintln!(
                            "WRONG answer {:?} (want {e:?})",
                            parse_response(&msg[..len])
                        );
                    }
                    wrong += 1;
                }
            }
            done += w;
        }
        sent += in_conn;
    }
    println!(
        "tcp sent {sent} answered {answered} wrong {wrong} connections {conns} duration {:.1}s",
        start.elapsed().as_secs_f64()
    );
    if wrong > 0 {
        return Err(format!("{wrong} wrong answers"));
    }
    Ok(())
}

/// Send a batch on a connected socket; returns how many went out.
fn sendmmsg(sock: &UdpSocket, bufs: &[Vec<u8>]) -> usize {
    let mut iov: Vec<libc::iovec> = bufs
        .iter()
        .map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; zeroed is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = (0..bufs.len())
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut done = 0;
    while done < msgs.len() {
        // SAFETY: msgs and the iovecs they point at live across the call.
        let r = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                msgs[done..].as_mut_ptr(),
                (msgs.len() - done) as libc::c_uint,
                0,
            )
        };
        if r <= 0 {
            break;
        }
        done += r as usize;
    }
    done
}

/// Receive up to `bufs.len()` datagrams without blocking; returns
/// (buffer index, length) pairs.
fn recvmmsg(sock: &UdpSocket, bufs: &mut [[u8; 1500]]) -> Vec<(usize, usize)> {
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: as in `sendmmsg`.
    let mut msgs: Vec<libc::mmsghdr> = (0..bufs.len())
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: msgs and iovecs point at live buffers for the call.
    let r = unsafe {
        libc::recvmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if r <= 0 {
        return Vec::new();
    }
    (0..r as usize)
        .map(|i| (i, msgs[i].msg_len as usize))
        .collect()
}

fn pin_to_cpu(cpu: usize) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!(
                "sched_setaffinity({cpu}): {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  dnsload gen --out FILE [--count N]\n  dnsload check --server ADDR\n  \
         dnsload run --server ADDR [--duration S] [--sockets N] [--window N] \
         [--timeout-ms MS] [--cpu N] [--queries FILE | --case CASE] [--count N] [--loose 1]\n  \
         dnsload tcp --server ADDR --case CASE --count N [--per-conn N] [--window N] \
         [--duration CAP_S]\n\
         cases: static, geo, geo-ecs, nx, cookie, cookie-srv"
    );
    ExitCode::from(2)
}

/// The queries of a `--case` (learning the server cookie first for
/// `cookie-srv`).
fn case_queries(case: &str, server: SocketAddr) -> Result<(Vec<Vec<u8>>, Vec<Expect>), String> {
    let cookie = if case == "cookie-srv" {
        learn_cookie(server)?
    } else {
        CLIENT_COOKIE.to_vec()
    };
    case_mix(case, 1000, &cookie).ok_or_else(|| format!("unknown case {case}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        return usage();
    };
    let mut flags: HashMap<String, String> = HashMap::new();
    let mut it = args[1..].iter();
    while let Some(k) = it.next() {
        let Some(v) = it.next() else {
            return usage();
        };
        flags.insert(k.trim_start_matches("--").to_owned(), v.clone());
    }
    let num = |k: &str, d: u64| -> u64 {
        flags
            .get(k)
            .map(|v| v.parse().unwrap_or_else(|_| panic!("--{k}: not a number")))
            .unwrap_or(d)
    };
    if let Some(cpu) = flags.get("cpu") {
        let cpu: usize = cpu.parse().expect("--cpu: not a number");
        if let Err(e) = pin_to_cpu(cpu) {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    let server = || -> SocketAddr {
        flags
            .get("server")
            .map(|s| s.parse().expect("--server: not an address"))
            .unwrap_or_else(|| "127.0.0.1:5353".parse().unwrap())
    };
    let result = match cmd.as_str() {
        "gen" => {
            let Some(out) = flags.get("out") else {
                return usage();
            };
            let mix = builtin_mix(num("count", 10_000) as usize);
            let mut bytes = Vec::new();
            for q in &mix {
                bytes.extend_from_slice(&(q.len() as u16).to_be_bytes());
                bytes.extend_from_slice(q);
            }
            std::fs::File::create(out)
                .and_then(|mut f| f.write_all(&bytes))
                .map_err(|e| format!("{out}: {e}"))
        }
        "check" => match check(server()) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!("{n} wrong answers")),
            Err(e) => Err(e),
        },
        "run" => {
            let count = flags.get("count").map(|_| num("count", 0));
            let queries = match (flags.get("queries"), flags.get("case")) {
                (Some(p), _) => read_queries(p).map(|q| (q, None)),
                (None, Some(c)) => case_queries(c, server()).map(|(q, e)| (q, Some(e))),
                (None, None) => Ok((builtin_mix(10_000), None)),
            };
            queries.and_then(|(queries, expect)| {
                run(&RunOpts {
                    server: server(),
                    duration: Duration::from_secs(num("duration", 10).clamp(1, 3600)),
                    sockets: num("sockets", 4).clamp(1, 256) as usize,
                    window: num("window", 64) as usize,
                    timeout: Duration::from_millis(num("timeout-ms", 1000).clamp(10, 10_000)),
                    queries,
                    count,
                    expect,
                    loose: num("loose", 0) != 0,
                })
            })
        }
        "tcp" => {
            let case = flags.get("case").map_or("static", String::as_str);
            match case_queries(case, server()) {
                Err(e) => Err(e),
                Ok((queries, expect)) => run_tcp(&TcpOpts {
                    server: server(),
                    count: num("count", 1000),
                    per_conn: num("per-conn", 1),
                    window: num("window", 16) as usize,
                    cap: Duration::from_secs(num("duration", 600).clamp(1, 3600)),
                    queries,
                    expect,
                }),
            }
        }
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dnsload: {e}");
            ExitCode::FAILURE
        }
    }
}
