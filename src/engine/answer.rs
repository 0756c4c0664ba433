//! The answer engine: one synchronous function from query bytes to response
//! bytes, shared by the UDP and TCP transports, tests, benches and fuzzers.
//!
//! Responses are written straight into the caller's buffer. Record data was
//! encoded when the snapshot was compiled; owner names are compression
//! pointers into the question wherever possible.
//!
//! [`resolve`]: where a name leads inside a zone and what is written for
//! it; [`response`]: the response writer (sections, compression, OPT).

use std::net::{IpAddr, SocketAddr};

use super::wire::{self, Ecs, Edns, ParseError, Query};
use crate::geo::Location;
use crate::metrics::Transport;
use crate::select::{self, Decision, Inputs, Rng};
use crate::snapshot::Snapshot;
use crate::zone::{self, rtype};

mod resolve;
mod response;

use resolve::resolve;
pub(crate) use response::cookie_reply;
use response::{Response, Section};

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
