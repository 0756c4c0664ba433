//! The answer engine: one synchronous function from query bytes to response
//! bytes, shared by the UDP and TCP transports, tests, benches and fuzzers.
//!
//! Responses are written straight into the caller's buffer. Record data was
//! encoded when the snapshot was compiled; owner names are compression
//! pointers into the question wherever possible.

use std::net::{IpAddr, SocketAddr};

use super::wire::{self, Ecs, Edns, ParseError, Query};
use crate::geo::Location;
use crate::metrics::Transport;
use crate::select::{self, Decision, Family, Inputs, Rng, Target};
use crate::snapshot::Snapshot;
use crate::zone::{self, Node, RrSet, Zone, rtype};

/// Response codes.
pub mod rcode {
    /// No error.
    pub const NOERROR: u16 = 0;
    /// Format error.
    pub const FORMERR: u16 = 1;
    /// Server failure.
    pub const SERVFAIL: u16 = 2;
    /// Name does not exist.
    pub const NXDOMAIN: u16 = 3;
    /// Not implemented.
    pub const NOTIMP: u16 = 4;
    /// Refused.
    pub const REFUSED: u16 = 5;
    /// Not authoritative for the zone (RFC 2136), or not authorized.
    pub const NOTAUTH: u16 = 9;
    /// Bad EDNS version (extended).
    pub const BADVERS: u16 = 16;
    /// Bad or missing server cookie (extended, RFC 7873).
    pub const BADCOOKIE: u16 = 23;
}

const CLASS_IN: u16 = 1;
/// Opcodes answered NOTAUTH outside our zones (RFC 1996, RFC 2136).
const OPCODE_NOTIFY: u8 = 4;
const OPCODE_UPDATE: u8 = 5;
/// Names remembered per response for compression (every label written
/// uncompressed adds one; beyond this, names are written without being
/// remembered, which costs size, never correctness).
const COMPRESS_SLOTS: usize = 64;
const CLASS_CH: u16 = 3;
const CLASS_ANY: u16 = 255;
/// Longest CNAME chain followed inside a zone.
const MAX_CHAIN: usize = 8;
/// ECS source prefixes are truncated to these before lookup (privacy, and
/// the databases are not more precise anyway).
const ECS_MAX_V4: u8 = 24;
const ECS_MAX_V6: u8 = 56;

/// What happened to a query (for metrics and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to send.
    Dropped,
    /// A response was written with this RCODE (extended codes included).
    Answered {
        /// The RCODE.
        rcode: u16,
    },
}

/// Who asked, as the transport saw it.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// Source address of the packet or connection.
    pub addr: SocketAddr,
    /// Transport the query came on.
    pub transport: Transport,
}

/// What a query touched, for metrics (no allocation; label values are
/// indices resolved against the snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AnswerInfo {
    /// Index of the zone that answered.
    pub(crate) zone: Option<u32>,
    /// QTYPE of a parsed query.
    pub(crate) qtype: u16,
    /// The balanced name that steered, the pool it answered from and how.
    pub(crate) balancer: Option<(u32, Option<select::PoolId>, select::Mode)>,
    /// Where the client's location came from, when a GeoIP lookup ran.
    pub(crate) geo: Option<crate::geo::LocationSource>,
    /// The query's DNS Cookie, when it sent one and cookies are on.
    pub cookie: Option<CookieState>,
    /// Balanced-name decisions taken (a CNAME chain may take several);
    /// answers of at most one are cached as templates.
    pub(crate) steered: u8,
}

/// What a query's DNS Cookie proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieState {
    /// A server cookie of ours (current or previous secret) for this client
    /// and fresh: the client is who its address says.
    Valid,
    /// Only a client cookie, or a server cookie we do not accept (another
    /// secret, too old, another address): answered with a new one.
    ClientOnly,
}

/// Answer one query packet into `out` (which is cleared first).
pub fn answer(
    snap: &Snapshot,
    pkt: &[u8],
    client: Client,
    rng: &mut Rng,
    out: &mut Vec<u8>,
) -> Outcome {
    answer_with_info(snap, pkt, client, rng, out, &mut AnswerInfo::default())
}

/// [`answer`], also reporting what the query touched into `info`.
pub fn answer_with_info(
    snap: &Snapshot,
    pkt: &[u8],
    client: Client,
    rng: &mut Rng,
    out: &mut Vec<u8>,
    info: &mut AnswerInfo,
) -> Outcome {
    match wire::parse(pkt) {
        Ok(q) => answer_query(snap, &q, client, rng, out, info),
        Err(e) => answer_parse_error(snap, pkt, e, out),
    }
}

/// The answer to a packet [`wire::parse`] rejected with `e`.
pub(crate) fn answer_parse_error(
    snap: &Snapshot,
    pkt: &[u8],
    e: ParseError,
    out: &mut Vec<u8>,
) -> Outcome {
    out.clear();
    match e {
        ParseError::Drop => Outcome::Dropped,
        ParseError::NotImp { opt } => minimal(snap, pkt, 0, rcode::NOTIMP, opt, out),
        ParseError::FormErr { question_end, opt } => {
            minimal(snap, pkt, question_end, rcode::FORMERR, opt, out)
        }
    }
}

/// The answer to a parsed query (the engine proper: [`answer`] is parse and
/// this; response templates cache its output).
pub(crate) fn answer_query(
    snap: &Snapshot,
    q: &Query<'_>,
    client: Client,
    rng: &mut Rng,
    out: &mut Vec<u8>,
    info: &mut AnswerInfo,
) -> Outcome {
    out.clear();
    info.qtype = q.qtype;
    let mut r = Response::start(snap, q, client.transport, out);
    r.cookie(q, client, info);
    if q.opcode != 0 {
        // We implement QUERY only. NOTIFY and UPDATE for a zone we do not
        // serve get NOTAUTH (as Knot answers them); for our own zones and
        // every other opcode NOTIMP. Question and OPT are echoed.
        let ours = {
            let mut offsets = [0u8; 128];
            let n = zone::label_offsets(q.name_lc(), &mut offsets);
            snap.zones.find(q.name_lc(), &offsets[..n]).is_some()
        };
        let code = match q.opcode {
            OPCODE_NOTIFY | OPCODE_UPDATE if !ours => rcode::NOTAUTH,
            _ => rcode::NOTIMP,
        };
        return r.finish(code, None);
    }
    if q.edns.is_some_and(|e| e.version > 0) {
        return r.finish(rcode::BADVERS, None);
    }
    match q.qclass {
        CLASS_IN | CLASS_ANY => {}
        CLASS_CH => return chaos(snap, q, r),
        _ => return r.finish(rcode::REFUSED, None),
    }
    match q.qtype {
        rtype::OPT => return r.finish(rcode::FORMERR, None),
        rtype::AXFR | rtype::IXFR => return r.finish(rcode::REFUSED, None),
        rtype::MAILA | rtype::MAILB => return r.finish(rcode::NOTIMP, None),
        _ => {}
    }
    let mut offsets = [0u8; 128];
    let n = zone::label_offsets(q.name_lc(), &mut offsets);
    let Some((zone, _)) = snap.zones.find(q.name_lc(), &offsets[..n]) else {
        return r.finish(rcode::REFUSED, None);
    };
    r.set_aa(true);
    info.zone = Some(zone.index);
    let (code, scope) = resolve(snap, zone, q, client, rng, &mut r, info);
    r.finish(code, scope)
}

/// Largest response a query may get over `transport` (UDP: its EDNS
/// payload size, capped by ours, at least 512).
pub(crate) fn size_limit(snap: &Snapshot, q: &Query<'_>, transport: Transport) -> usize {
    match transport {
        Transport::Tcp => 65535,
        Transport::Udp => match &q.edns {
            Some(e) => (e.udp_size.min(snap.settings.max_udp_payload) as usize).max(512),
            None => 512,
        },
    }
}

/// How a balanced name steers one client: shared by [`answer`] and the
/// response templates, which re-decide before replaying an answer.
pub(crate) struct Steered<'s> {
    /// The decision.
    pub(crate) d: Decision<'s>,
    /// Cap on the ECS scope (the truncated source prefix).
    pub(crate) max_scope: u8,
    /// Where the location came from, when the client had to be located.
    pub(crate) geo: Option<crate::geo::LocationSource>,
}

/// Decide balanced name `bid` for this client (ECS address when present
/// and enabled, else the source).
pub(crate) fn steer<'s>(
    snap: &'s Snapshot,
    bid: u32,
    edns: Option<&Edns>,
    client: Client,
) -> Steered<'s> {
    let b = &snap.balancers[bid as usize];
    let who = client_address(snap, edns, client);
    let inputs = Inputs {
        pools: &snap.pools,
        health: &snap.health,
    };
    let compiled = snap.decisions.get(bid as usize).and_then(Option::as_ref);
    // A compiled trie (or a location-independent policy) decides without
    // locating the client; else evaluate the rules.
    let fast = if who.anonymous {
        None
    } else {
        select::choose_fast(b, compiled, &inputs, who.lookup_ip)
    };
    let (d, geo) = match fast {
        Some(d) => (d, None),
        None => {
            let loc = who.locate(snap);
            (
                select::choose(b, &inputs, &loc, who.lookup_ip),
                Some(loc.source),
            )
        }
    };
    Steered {
        d,
        max_scope: who.max_scope,
        geo,
    }
}

/// Answer `pkt` with BADCOOKIE (RFC 7873 5.2.3): the question and an OPT
/// with a fresh server cookie, so the client retries with it. Used instead
/// of a truncated answer when rate limiting a client that sent a cookie.
/// False (and `out` untouched) when the query has no cookie.
pub(crate) fn answer_badcookie(
    snap: &Snapshot,
    pkt: &[u8],
    client: Client,
    out: &mut Vec<u8>,
) -> bool {
    let Ok(q) = wire::parse(pkt) else {
        return false;
    };
    if q.edns.and_then(|e| e.cookie).is_none() || snap.settings.cookies.is_none() {
        return false;
    }
    out.clear();
    let mut r = Response::start(snap, &q, client.transport, out);
    r.cookie(&q, client, &mut AnswerInfo::default());
    r.finish(rcode::BADCOOKIE, None);
    true
}

/// Where a name led inside a zone.
enum Found<'z> {
    Node(&'z Node),
    Delegation(&'z [u8], &'z Node),
    NxDomain,
}

fn find<'z>(zone: &'z Zone, name: &[u8], qtype: u16) -> Found<'z> {
    let mut offsets = [0u8; 128];
    let n = zone::label_offsets(name, &mut offsets);
    let apex_len = zone.apex.len();
    // Label index where the apex starts.
    let Some(k) = offsets[..n]
        .iter()
        .position(|&o| name.len() - o as usize == apex_len)
    else {
        return Found::NxDomain;
    };
    for i in (0..k).rev() {
        let suffix = &name[offsets[i] as usize..];
        match zone.nodes.get_key_value(suffix) {
            None => {
                // Closest encloser is one label up: try its wildcard.
                let ce = &name[offsets[i + 1] as usize..];
                let mut key = [0u8; 257];
                key[0] = 1;
                key[1] = b'*';
                key[2..2 + ce.len()].copy_from_slice(ce);
                return match zone.nodes.get(&key[..2 + ce.len()]) {
                    Some(w) => Found::Node(w),
                    None => Found::NxDomain,
                };
            }
            Some((owner, node)) if node.delegation && !(i == 0 && qtype == rtype::DS) => {
                return Found::Delegation(owner, node);
            }
            Some(_) => {}
        }
    }
    match zone.nodes.get(name) {
        Some(n) => Found::Node(n),
        None => Found::NxDomain,
    }
}

/// Resolve inside the zone, writing answer/authority/additional. Returns the
/// RCODE and the ECS scope of the answer (None = location independent).
fn resolve(
    snap: &Snapshot,
    zone: &Zone,
    q: &Query<'_>,
    client: Client,
    rng: &mut Rng,
    r: &mut Response<'_>,
    info: &mut AnswerInfo,
) -> (u16, Option<u8>) {
    let mut name_buf = [0u8; 255];
    let mut name_len = q.qname_len;
    name_buf[..name_len].copy_from_slice(q.name_lc());
    let mut scope: Option<u8> = None;
    // Nodes already answered from: a CNAME loop (through wildcards or
    // balanced host names, which `check` cannot see) stops instead of
    // repeating records.
    let mut visited: [*const Node; MAX_CHAIN] = [std::ptr::null(); MAX_CHAIN];
    for step in 0..MAX_CHAIN {
        let name = &name_buf[..name_len];
        let node = match find(zone, name, q.qtype) {
            Found::NxDomain => {
                r.soa(zone);
                return (rcode::NXDOMAIN, scope);
            }
            Found::Delegation(owner, node) => {
                if r.an == 0 {
                    // A referral is not authoritative.
                    r.set_aa(false);
                    if let Some(ns) = node.rrset(rtype::NS) {
                        r.rrset(owner, ns, Section::Authority);
                    }
                    r.glue(node);
                }
                return (rcode::NOERROR, scope);
            }
            Found::Node(n) => n,
        };
        if visited[..step].contains(&(node as *const Node)) {
            return (rcode::NOERROR, scope);
        }
        visited[step] = node;
        // The next name in a CNAME chain, if this node has one.
        let mut next: Option<&[u8]> = None;
        if let Some(bid) = node.balancer.filter(|_| is_balanced_type(q.qtype)) {
            let b = &snap.balancers[bid as usize];
            let s = steer(snap, bid, q.edns.as_ref(), client);
            if s.geo.is_some() {
                info.geo = s.geo;
            }
            let d = s.d;
            info.balancer = Some((bid, d.pool, d.mode));
            info.steered = info.steered.saturating_add(1);
            scope = Some(scope.unwrap_or(0).max(d.scope).min(s.max_scope));
            let inputs = Inputs {
                pools: &snap.pools,
                health: &snap.health,
            };
            let family = if q.qtype == rtype::AAAA {
                Family::V6
            } else {
                Family::V4
            };
            let t = select::targets(b, &inputs, &d, family, rng);
            let mut t_iter = t.iter().peekable();
            let mut t2 = None;
            if t_iter.peek().is_none() && q.qtype == rtype::ANY {
                t2 = Some(select::targets(b, &inputs, &d, Family::V6, rng));
            }
            let chosen = t2.as_ref().map_or(t, |x| *x);
            let mut wrote = false;
            for (i, e) in chosen.iter().enumerate() {
                // The same address listed in two pools answers once.
                if chosen.iter().take(i).any(|p| p.rdata == e.rdata) {
                    continue;
                }
                match &e.target {
                    Target::Host(h) => {
                        r.record(name, rtype::CNAME, b.ttl, &e.rdata, Section::Answer);
                        next = Some(h);
                        wrote = true;
                        break;
                    }
                    Target::V4(_) => r.record(name, rtype::A, b.ttl, &e.rdata, Section::Answer),
                    Target::V6(_) => r.record(name, rtype::AAAA, b.ttl, &e.rdata, Section::Answer),
                }
                wrote = true;
            }
            if !wrote {
                r.soa(zone);
                return (rcode::NOERROR, scope);
            }
        } else if let Some(cname) = node.rrset(rtype::CNAME).filter(|_| q.qtype != rtype::CNAME) {
            r.rrset(name, cname, Section::Answer);
            next = cname.target.as_deref();
        } else if q.qtype == rtype::ANY {
            // RFC 8482: answer one RRset, not all of them.
            match node.rrsets.first() {
                Some(set) => r.rrset(name, set, Section::Answer),
                None => r.soa(zone),
            }
        } else if let Some(set) = node.rrset(q.qtype) {
            r.rrset(name, set, Section::Answer);
            if q.qtype == rtype::NS {
                r.glue(node);
            }
        } else {
            r.soa(zone);
        }
        match next {
            // Follow only inside this zone; resolvers chase the rest.
            Some(t) if t.len() >= zone.apex.len() && t.ends_with(&zone.apex) && t != name => {
                name_len = t.len();
                let (dst, src) = (&mut name_buf[..name_len], t);
                dst.copy_from_slice(src);
                dst.make_ascii_lowercase();
            }
            _ => return (rcode::NOERROR, scope),
        }
    }
    (rcode::NOERROR, scope)
}

fn is_balanced_type(t: u16) -> bool {
    matches!(t, rtype::A | rtype::AAAA | rtype::CNAME | rtype::ANY)
}

/// The address a client is located by, before any database lookup.
pub(crate) struct ClientAddress {
    /// The address to look up (ECS address truncated, or the canonical
    /// source address).
    pub(crate) lookup_ip: IpAddr,
    /// Cap on the ECS scope (the truncated source prefix).
    pub(crate) max_scope: u8,
    /// An ECS source prefix of 0: do not use any address (the client gets
    /// the unlocated answer).
    pub(crate) anonymous: bool,
}

impl ClientAddress {
    /// The client's location (unknown when anonymous).
    pub(crate) fn locate(&self, snap: &Snapshot) -> Location {
        if self.anonymous {
            Location::default()
        } else {
            snap.geo.locate(self.lookup_ip)
        }
    }
}

/// Which address locates the client: the ECS address when present and
/// enabled, else the packet's source. No lookup.
pub(crate) fn client_address(
    snap: &Snapshot,
    edns: Option<&Edns>,
    client: Client,
) -> ClientAddress {
    let ecs = edns.and_then(|e| e.ecs).filter(|_| snap.settings.ecs);
    match ecs {
        Some(Ecs {
            source_prefix: 0,
            addr,
            ..
        }) => ClientAddress {
            lookup_ip: addr,
            max_scope: 0,
            anonymous: true,
        },
        Some(e) => {
            let max = if e.family == 1 {
                ECS_MAX_V4
            } else {
                ECS_MAX_V6
            };
            let len = e.source_prefix.min(max);
            ClientAddress {
                lookup_ip: crate::net::mask(e.addr, len),
                max_scope: len,
                anonymous: false,
            }
        }
        None => {
            let ip = canonical_ip(client.addr.ip());
            ClientAddress {
                lookup_ip: ip,
                max_scope: if ip.is_ipv4() { 32 } else { 128 },
                anonymous: false,
            }
        }
    }
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn chaos(snap: &Snapshot, q: &Query<'_>, mut r: Response<'_>) -> Outcome {
    let name = q.name_lc();
    let text: Option<&str> = match name {
        b"\x02id\x06server\x00" | b"\x08hostname\x04bind\x00" => Some(&snap.settings.node_name),
        b"\x07version\x04bind\x00" | b"\x07version\x06server\x00" => {
            snap.settings.version.as_deref()
        }
        _ => None,
    };
    match text {
        Some(t) if q.qtype == rtype::TXT || q.qtype == rtype::ANY => {
            let bytes = t.as_bytes();
            let len = bytes.len().min(255);
            let mut rdata = [0u8; 256];
            rdata[0] = len as u8;
            rdata[1..=len].copy_from_slice(&bytes[..len]);
            r.record_class(
                name,
                rtype::TXT,
                CLASS_CH,
                0,
                &rdata[..=len],
                Section::Answer,
            );
            r.set_aa(true);
            r.finish(rcode::NOERROR, None)
        }
        Some(_) => r.finish(rcode::NOERROR, None),
        None => r.finish(rcode::REFUSED, None),
    }
}

/// A minimal error answer to a packet that did not parse: the header, the
/// question when it parsed (`question_end` > 12), and an OPT when the query
/// had one (RFC 6891 section 7: a FORMERR caused by the OPT carries one, so
/// the client does not retry without EDNS).
fn minimal(
    snap: &Snapshot,
    pkt: &[u8],
    question_end: usize,
    code: u16,
    opt: Option<wire::OptSeen>,
    out: &mut Vec<u8>,
) -> Outcome {
    out.clear();
    out.extend_from_slice(&pkt[..12]);
    // QR, keep opcode and RD, clear the rest, set RCODE.
    out[2] = 0x80 | (pkt[2] & 0x79);
    out[3] = (code & 0xF) as u8;
    out[4..12].fill(0);
    if question_end > 12 {
        out.extend_from_slice(&pkt[12..question_end]);
        out[5] = 1;
    }
    if let Some(o) = opt {
        out.push(0);
        out.extend_from_slice(&rtype::OPT.to_be_bytes());
        out.extend_from_slice(&snap.settings.max_udp_payload.to_be_bytes());
        let do_bit = if o.dnssec_ok { 0x80 } else { 0 };
        out.extend_from_slice(&[((code >> 4) & 0xFF) as u8, 0, do_bit, 0, 0, 0]);
        out[11] = 1;
    }
    Outcome::Answered { rcode: code }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Answer,
    Authority,
    Additional,
}

/// A response being written.
struct Response<'a> {
    out: &'a mut Vec<u8>,
    question_end: usize,
    an: u16,
    ns: u16,
    ar: u16,
    limit: usize,
    edns: Option<Edns>,
    snap: &'a Snapshot,
    /// Compression table: for every label written uncompressed (the
    /// question's included), its offset and the length of the whole name
    /// from there (uncompressed), so a later name with that suffix points
    /// at it. Fixed size: no allocation per query.
    comp: [CompEntry; COMPRESS_SLOTS],
    comp_len: usize,
    /// Entries of the question itself (kept when the answer is truncated).
    comp_question: usize,
    /// The COOKIE option to send: the client cookie and our server cookie.
    cookie: Option<([u8; 8], [u8; crate::cookie::SERVER_LEN])>,
}

impl<'a> Response<'a> {
    fn start(
        snap: &'a Snapshot,
        q: &'a Query<'a>,
        transport: Transport,
        out: &'a mut Vec<u8>,
    ) -> Self {
        out.extend_from_slice(&q.id.to_be_bytes());
        let mut f1 = 0x80u8 | (q.opcode << 3);
        if q.rd {
            f1 |= 0x01;
        }
        let f2 = if q.cd { 0x10 } else { 0 };
        out.extend_from_slice(&[f1, f2, 0, 1, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(q.question);
        let limit = size_limit(snap, q, transport);
        let mut r = Response {
            question_end: out.len(),
            out,
            an: 0,
            ns: 0,
            ar: 0,
            limit,
            edns: q.edns,
            snap,
            comp: [CompEntry::default(); COMPRESS_SLOTS],
            comp_len: 0,
            comp_question: 0,
            cookie: None,
        };
        let mut hashes = [0u32; 128];
        suffix_hashes(q.name_lc(), &mut hashes);
        r.remember(12, q.name_lc(), &hashes, true);
        r.comp_question = r.comp_len;
        r
    }

    /// Check the query's DNS Cookie (RFC 7873, RFC 9018) and prepare the
    /// one we send back: always a fresh server cookie for this client.
    fn cookie(&mut self, q: &Query<'_>, client: Client, info: &mut AnswerInfo) {
        let (Some(c), Some(secrets)) = (
            q.edns.and_then(|e| e.cookie),
            self.snap.settings.cookies.as_deref(),
        ) else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let ip = client.addr.ip();
        let valid = c.server_len > 0 && secrets.verify(&c.client, c.server(), ip, now);
        info.cookie = Some(if valid {
            CookieState::Valid
        } else {
            CookieState::ClientOnly
        });
        self.cookie = Some((c.client, secrets.make(&c.client, ip, now)));
    }

    fn set_aa(&mut self, aa: bool) {
        if aa {
            self.out[2] |= 0x04;
        } else {
            self.out[2] &= !0x04;
        }
    }

    /// Write a name (uncompressed wire, any case), compressed (RFC 1035
    /// 4.1.4): its longest suffix already in the message becomes a pointer,
    /// the labels before it are written and remembered.
    fn name(&mut self, name: &[u8]) {
        let start = self.out.len();
        // Hash of every suffix (by label index), so a candidate is rejected
        // by two integer compares; a match is then checked byte by byte.
        let mut hashes = [0u32; 128];
        suffix_hashes(name, &mut hashes);
        let (mut i, mut k) = (0, 0);
        while i < name.len() && name[i] != 0 {
            if let Some(off) = self.find_suffix(&name[i..], hashes[k]) {
                self.out.extend_from_slice(&name[..i]);
                self.out.extend_from_slice(&(0xC000 | off).to_be_bytes());
                self.remember(start, &name[..i], &hashes, false);
                return;
            }
            i += 1 + name[i] as usize;
            k += 1;
        }
        self.out.extend_from_slice(name);
        self.remember(start, name, &hashes, true);
    }

    /// Remember the labels in `labels` (a whole name when `raw`, else the
    /// labels of a name before its pointer) written at `at`; `hashes` are
    /// the whole name's suffix hashes, so each entry knows the length and
    /// hash of the name from its label to the end.
    fn remember(&mut self, at: usize, labels: &[u8], hashes: &[u32; 128], raw: bool) {
        let (mut j, mut k) = (0, 0);
        while j < labels.len() && labels[j] != 0 && k < hashes.len() {
            let off = at + j;
            if self.comp_len == COMPRESS_SLOTS || off >= 0x3FFF {
                return;
            }
            self.comp[self.comp_len] = CompEntry {
                off: off as u16,
                hash: hashes[k],
                raw,
            };
            self.comp_len += 1;
            j += 1 + labels[j] as usize;
            k += 1;
        }
    }

    /// Offset of a name in the message equal to `suffix` (whose suffix hash
    /// is `hash`).
    fn find_suffix(&self, suffix: &[u8], hash: u32) -> Option<u16> {
        self.comp[..self.comp_len]
            .iter()
            .find(|e| {
                e.hash == hash
                    && if e.raw {
                        // Written without pointers: one slice compare.
                        self.out
                            .get(e.off as usize..e.off as usize + suffix.len())
                            .is_some_and(|w| w.eq_ignore_ascii_case(suffix))
                    } else {
                        name_at_eq(self.out, e.off as usize, suffix)
                    }
            })
            .map(|e| e.off)
    }

    /// Record data, with the names of the types RFC 3597 section 4 lets us
    /// compress (NS, CNAME, PTR, MX, SOA) compressed. SRV targets are not
    /// (RFC 2782), nor anything else.
    fn rdata(&mut self, t: u16, rd: &[u8]) {
        match t {
            rtype::NS | rtype::CNAME | rtype::PTR if wire_name_len(rd) == Some(rd.len()) => {
                self.name(rd);
            }
            rtype::MX if rd.len() > 2 && wire_name_len(&rd[2..]) == Some(rd.len() - 2) => {
                self.out.extend_from_slice(&rd[..2]);
                self.name(&rd[2..]);
            }
            rtype::SOA => {
                let m = wire_name_len(rd);
                let r = m.and_then(|m| wire_name_len(&rd[m..]).map(|r| (m, m + r)));
                match r {
                    Some((m, end)) if rd.len() == end + 20 => {
                        self.name(&rd[..m]);
                        self.name(&rd[m..end]);
                        self.out.extend_from_slice(&rd[end..]);
                    }
                    _ => self.out.extend_from_slice(rd),
                }
            }
            _ => self.out.extend_from_slice(rd),
        }
    }

    fn record_class(
        &mut self,
        owner: &[u8],
        t: u16,
        class: u16,
        ttl: u32,
        rdata: &[u8],
        s: Section,
    ) {
        self.name(owner);
        self.out.extend_from_slice(&t.to_be_bytes());
        self.out.extend_from_slice(&class.to_be_bytes());
        self.out.extend_from_slice(&ttl.to_be_bytes());
        let len_at = self.out.len();
        self.out.extend_from_slice(&[0, 0]);
        self.rdata(t, rdata);
        let rdlen = (self.out.len() - len_at - 2) as u16;
        self.out[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        match s {
            Section::Answer => self.an += 1,
            Section::Authority => self.ns += 1,
            Section::Additional => self.ar += 1,
        }
    }

    fn record(&mut self, owner: &[u8], t: u16, ttl: u32, rdata: &[u8], s: Section) {
        self.record_class(owner, t, CLASS_IN, ttl, rdata, s);
    }

    fn rrset(&mut self, owner: &[u8], set: &RrSet, s: Section) {
        for rd in &set.rdata {
            self.record(owner, set.rtype, set.ttl, rd, s);
        }
    }

    /// The zone's SOA in the authority section, with the negative TTL.
    fn soa(&mut self, zone: &Zone) {
        if let Some(rd) = zone.soa.rdata.first() {
            self.record(
                &zone.apex,
                rtype::SOA,
                zone.negative_ttl,
                rd,
                Section::Authority,
            );
        }
    }

    /// Glue addresses for a node's NS set, as far as they fit.
    fn glue(&mut self, node: &Node) {
        for (owner, set) in &node.glue.sets {
            for rd in &set.rdata {
                let before = (self.out.len(), self.ar, self.comp_len);
                self.record(owner, set.rtype, set.ttl, rd, Section::Additional);
                if self.out.len() + self.opt_len() > self.limit {
                    self.out.truncate(before.0);
                    self.ar = before.1;
                    self.comp_len = before.2;
                    return;
                }
            }
        }
    }

    fn opt_len(&self) -> usize {
        match &self.edns {
            None => 0,
            Some(e) => {
                let mut n = 11;
                if e.ecs.is_some() && self.snap.settings.ecs {
                    n += 4 + 4 + 16;
                }
                if e.nsid {
                    n += 4 + self.snap.settings.node_name.len();
                }
                if self.cookie.is_some() {
                    n += 4 + 8 + crate::cookie::SERVER_LEN;
                }
                n
            }
        }
    }

    fn finish(mut self, code: u16, scope: Option<u8>) -> Outcome {
        if self.out.len() + self.opt_len() > self.limit {
            // Does not fit: an empty, truncated answer tells the client to
            // retry over TCP.
            self.out.truncate(self.question_end);
            self.comp_len = self.comp_question;
            self.an = 0;
            self.ns = 0;
            self.ar = 0;
            self.out[2] |= 0x02;
        }
        self.out[3] = (self.out[3] & 0xF0) | (code & 0xF) as u8;
        if let Some(e) = self.edns {
            self.write_opt(&e, code, scope);
        }
        let counts = [self.an, self.ns, self.ar];
        for (i, c) in counts.iter().enumerate() {
            self.out[6 + 2 * i..8 + 2 * i].copy_from_slice(&c.to_be_bytes());
        }
        Outcome::Answered { rcode: code }
    }

    fn write_opt(&mut self, e: &Edns, code: u16, scope: Option<u8>) {
        let o = &mut *self.out;
        o.push(0);
        o.extend_from_slice(&rtype::OPT.to_be_bytes());
        o.extend_from_slice(&self.snap.settings.max_udp_payload.to_be_bytes());
        let ext = ((code >> 4) & 0xFF) as u8;
        let do_bit = if e.dnssec_ok { 0x80 } else { 0 };
        o.extend_from_slice(&[ext, 0, do_bit, 0]);
        let len_at = o.len();
        o.extend_from_slice(&[0, 0]);
        if let Some(ecs) = e.ecs.filter(|_| self.snap.settings.ecs) {
            let addr_len = (ecs.source_prefix as usize).div_ceil(8);
            let scope = scope.unwrap_or(0).min(ecs.source_prefix);
            o.extend_from_slice(&wire::OPT_ECS.to_be_bytes());
            o.extend_from_slice(&((4 + addr_len) as u16).to_be_bytes());
            o.extend_from_slice(&ecs.family.to_be_bytes());
            o.extend_from_slice(&[ecs.source_prefix, scope]);
            match ecs.addr {
                IpAddr::V4(a) => o.extend_from_slice(&a.octets()[..addr_len]),
                IpAddr::V6(a) => o.extend_from_slice(&a.octets()[..addr_len]),
            }
        }
        if e.nsid {
            let id = self.snap.settings.node_name.as_bytes();
            o.extend_from_slice(&wire::OPT_NSID.to_be_bytes());
            o.extend_from_slice(&(id.len() as u16).to_be_bytes());
            o.extend_from_slice(id);
        }
        if let Some((client, server)) = &self.cookie {
            o.extend_from_slice(&wire::OPT_COOKIE.to_be_bytes());
            o.extend_from_slice(&((client.len() + server.len()) as u16).to_be_bytes());
            o.extend_from_slice(client);
            o.extend_from_slice(server);
        }
        let rdlen = (o.len() - len_at - 2) as u16;
        o[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        self.ar += 1;
    }
}

/// A name remembered for compression.
#[derive(Clone, Copy, Default)]
struct CompEntry {
    /// Offset in the message.
    off: u16,
    /// [`suffix_hashes`] value of the name from there (it encodes the
    /// length too).
    hash: u32,
    /// The name is written there without pointers.
    raw: bool,
}

/// For each label of an uncompressed wire name, a hash of the name from
/// that label to the root, case-insensitive and including its length.
/// Computed from the root up, so each suffix costs its first label only.
fn suffix_hashes(name: &[u8], out: &mut [u32; 128]) {
    let mut starts = [0u8; 128];
    let n = zone::label_offsets(name, &mut starts);
    // `starts[n - 1]` is the root; hash the labels before it, right to left.
    let mut h: u32 = 0x811C_9DC5;
    for k in (0..n.saturating_sub(1)).rev() {
        let at = starts[k] as usize;
        let label = name.get(at..=at + name[at] as usize).unwrap_or(&[]);
        for &b in label {
            h = (h ^ u32::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0193);
        }
        out[k] = h ^ ((name.len() - at) as u32) << 24;
    }
}

/// Length of the uncompressed wire name at the start of `b`, if it is one.
fn wire_name_len(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let l = *b.get(i)? as usize;
        if l & 0xC0 != 0 || i + l >= 255 {
            return None;
        }
        i += 1 + l;
        if l == 0 {
            return (i <= b.len()).then_some(i);
        }
    }
}

/// Follow a name in our own message from `p` (labels, then at most a few
/// pointers) and call `f` for each label (with its length byte) until the
/// root; false when the message is not a valid name there.
fn walk_name_at(msg: &[u8], mut p: usize, mut f: impl FnMut(&[u8]) -> bool) -> bool {
    // Our pointers always point backwards; the bound is belt and braces.
    for _ in 0..256 {
        let Some(&l) = msg.get(p) else {
            return false;
        };
        if l & 0xC0 == 0xC0 {
            let Some(&l2) = msg.get(p + 1) else {
                return false;
            };
            p = ((l as usize & 0x3F) << 8) | l2 as usize;
            continue;
        }
        let Some(label) = msg.get(p..p + 1 + l as usize) else {
            return false;
        };
        if !f(label) {
            return false;
        }
        if l == 0 {
            return true;
        }
        p += 1 + l as usize;
    }
    false
}

/// The name at `p` in the message equals `name` (case-insensitive).
fn name_at_eq(msg: &[u8], p: usize, name: &[u8]) -> bool {
    let mut i = 0;
    walk_name_at(msg, p, |label| {
        let Some(other) = name.get(i..i + label.len()) else {
            return false;
        };
        i += label.len();
        other[0] == label[0] && other[1..].eq_ignore_ascii_case(&label[1..])
    }) && i == name.len()
}
