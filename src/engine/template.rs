//! Response templates: a per-thread cache of [`answer`](super::answer)'s
//! output, so a repeated question is answered by copying bytes instead of
//! rebuilding the response record by record.
//!
//! The engine stays the single source of truth: a template *is* the bytes
//! the engine wrote for an earlier query with the same key (name, type,
//! class, transport size limit and EDNS shape: DO, NSID, version, ECS family
//! and source prefix). Replaying one patches what differs between such
//! queries: the message id, RD and CD, the question's letter case, and the
//! ECS option's address and scope. Answers of a balanced name are keyed by
//! its decision as well (pool and mode): a replay first re-decides for this
//! client with the engine's own [`steer`], then looks up the variant.
//!
//! Validity: an entry belongs to one snapshot (a process-unique id, see
//! [`next_snapshot_id`]); entries of balanced names also to one health
//! generation ([`HealthTable::generation`](crate::health::HealthTable)).
//! Not cached: answers that drew random numbers (weighted picks), that
//! took more than one balanced decision (CNAME chains between balanced
//! names), other opcodes, and responses over [`MAX_LEN`] bytes. Answers
//! with a DNS Cookie are cached too: the replay checks the query's cookie
//! and writes the COOKIE option (its client cookie, a fresh server cookie)
//! over the one stored, with the engine's own [`answer::cookie_reply`].
//!
//! The table is fixed-size and allocated once per thread: no allocation and
//! no lock per query.

use std::sync::atomic::{AtomicU64, Ordering};

use super::answer::{self, AnswerInfo, Client, Outcome, steer};
use super::wire::{self, Query};
use crate::select::{Mode, PoolId, Rng};
use crate::snapshot::Snapshot;

/// Entries per thread (a power of two).
const SLOTS: usize = 256;
/// Longest response kept.
pub const MAX_LEN: usize = 512;

static NEXT_SNAPSHOT_ID: AtomicU64 = AtomicU64::new(1);

/// A process-unique id for a published snapshot (never reused, unlike its
/// address), which the entries built from it carry.
pub fn next_snapshot_id() -> u64 {
    NEXT_SNAPSHOT_ID.fetch_add(1, Ordering::Relaxed)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Empty,
    /// A response that does not depend on the client.
    Plain,
    /// A balanced name: the response is in the variant entry for this
    /// client's decision; this entry holds the balanced name's id.
    Steered,
    /// A response for one decision of a balanced name.
    Variant,
}

#[derive(Clone, Copy)]
struct Entry {
    kind: Kind,
    hash: u64,
    snapshot: u64,
    /// Health generation (variants only).
    health: u64,
    shape: u64,
    /// The decision (variants only), see [`variant_of`].
    variant: u64,
    qtype: u16,
    qclass: u16,
    name_len: u8,
    name: [u8; 255],
    /// Balanced name (steered entries and variants).
    balancer: u32,
    zone: Option<u32>,
    rcode: u16,
    /// Offset of the ECS option echoed in the response (0: none).
    ecs_at: u16,
    len: u16,
    bytes: [u8; MAX_LEN],
}

const EMPTY: Entry = Entry {
    kind: Kind::Empty,
    hash: 0,
    snapshot: 0,
    health: 0,
    shape: 0,
    variant: 0,
    qtype: 0,
    qclass: 0,
    name_len: 0,
    name: [0; 255],
    balancer: 0,
    zone: None,
    rcode: 0,
    ecs_at: 0,
    len: 0,
    bytes: [0; MAX_LEN],
};

/// One thread's templates.
pub struct Templates {
    entries: Box<[Entry]>,
    /// Hits and misses (for tests and benchmarks).
    hits: u64,
    misses: u64,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// An empty cache (allocated now, once).
    pub fn new() -> Self {
        Templates {
            entries: vec![EMPTY; SLOTS].into_boxed_slice(),
            hits: 0,
            misses: 0,
        }
    }

    /// Queries answered from a template, and not.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    fn slot(&self, hash: u64) -> usize {
        (hash >> 7) as usize & (SLOTS - 1)
    }
}

/// The query's key apart from its name: transport size limit and EDNS
/// shape, packed. `None` when its answer is never cached.
fn shape_of(snap: &Snapshot, q: &Query<'_>, client: Client) -> Option<u64> {
    if q.opcode != 0 {
        return None;
    }
    let limit = answer::size_limit(snap, q, client.transport) as u64; // 17 bits
    let mut s = limit;
    if let Some(e) = &q.edns {
        // With a cookie the answer ends in a COOKIE option (client cookie
        // and a fresh server cookie, written by the replay).
        if e.cookie.is_some() && snap.settings.cookies.is_some() {
            s |= 1 << 39;
        }
        s |= 1 << 17
            | u64::from(e.dnssec_ok) << 18
            | u64::from(e.nsid) << 19
            | u64::from(e.version) << 20;
        if let Some(ecs) = e.ecs.filter(|_| snap.settings.ecs) {
            s |= 1 << 28 | u64::from(ecs.family & 3) << 29 | u64::from(ecs.source_prefix) << 31;
        }
    }
    Some(s)
}

fn variant_of(pool: Option<PoolId>, mode: Mode) -> u64 {
    let m = match mode {
        Mode::Normal => 0,
        Mode::Fallback => 1,
        Mode::FailOpen => 2,
        Mode::Nodata => 3,
    };
    pool.map_or(0, |p| u64::from(p) + 1) << 2 | m
}

fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
}

impl Entry {
    fn matches(&self, kind: Kind, hash: u64, snapshot: u64, shape: u64, q: &Query<'_>) -> bool {
        self.kind == kind
            && self.hash == hash
            && self.snapshot == snapshot
            && self.shape == shape
            && self.qtype == q.qtype
            && self.qclass == q.qclass
            && self.name[..self.name_len as usize] == *q.name_lc()
    }

    fn set_key(&mut self, kind: Kind, hash: u64, snapshot: u64, shape: u64, q: &Query<'_>) {
        self.kind = kind;
        self.hash = hash;
        self.snapshot = snapshot;
        self.shape = shape;
        self.qtype = q.qtype;
        self.qclass = q.qclass;
        self.name_len = q.qname_len as u8;
        self.name[..q.qname_len].copy_from_slice(q.name_lc());
    }
}

/// [`answer::answer_with_info`] through the templates of `cache`:
/// byte-identical output, outcome, `info` and `rng` state. `snapshot_id`
/// identifies `snap` (from [`next_snapshot_id`]; the same id must never
/// name another snapshot).
#[allow(clippy::too_many_arguments)]
pub fn answer_templated(
    cache: &mut Templates,
    snap: &Snapshot,
    snapshot_id: u64,
    pkt: &[u8],
    client: Client,
    rng: &mut Rng,
    out: &mut Vec<u8>,
    info: &mut AnswerInfo,
) -> Outcome {
    // Borrowed, not moved out of the result: a query is a few hundred bytes.
    let parsed = wire::parse(pkt);
    let q = match &parsed {
        Ok(q) => q,
        Err(e) => return answer::answer_parse_error(snap, pkt, *e, out),
    };
    let Some(shape) = shape_of(snap, q, client) else {
        return answer::answer_query(snap, q, client, rng, out, info);
    };
    let hash = mix(
        mix(q.name_hash, shape),
        u64::from(q.qtype) << 16 | u64::from(q.qclass),
    );
    let base = cache.slot(hash);
    let e = &cache.entries[base];
    if e.matches(Kind::Plain, hash, snapshot_id, shape, q) {
        cache.hits += 1;
        return replay(&cache.entries[base], (snap, q, client), None, out, info);
    }
    if e.matches(Kind::Steered, hash, snapshot_id, shape, q) {
        let bid = e.balancer;
        let s = steer(snap, bid, q.edns.as_ref(), client);
        let variant = variant_of(s.d.pool, s.d.mode);
        let vhash = mix(hash, variant);
        let v = &cache.entries[cache.slot(vhash)];
        if v.matches(Kind::Variant, vhash, snapshot_id, shape, q)
            && v.variant == variant
            && v.balancer == bid
            && v.health == snap.health.generation()
        {
            cache.hits += 1;
            if s.geo.is_some() {
                info.geo = s.geo;
            }
            info.balancer = Some((bid, s.d.pool, s.d.mode));
            info.steered = 1;
            // As `resolve` computes it for one decision.
            let scope = s.d.scope.min(s.max_scope);
            return replay(v, (snap, q, client), Some(scope), out, info);
        }
    }
    cache.misses += 1;
    build(
        cache,
        snap,
        snapshot_id,
        q,
        shape,
        hash,
        client,
        rng,
        out,
        info,
    )
}

/// Copy a template and patch what differs between queries with its key.
fn replay(
    e: &Entry,
    (snap, q, client): (&Snapshot, &Query<'_>, Client),
    scope: Option<u8>,
    out: &mut Vec<u8>,
    info: &mut AnswerInfo,
) -> Outcome {
    out.clear();
    out.extend_from_slice(&e.bytes[..e.len as usize]);
    out[..2].copy_from_slice(&q.id.to_be_bytes());
    out[2] = (out[2] & !0x01) | u8::from(q.rd);
    out[3] = (out[3] & !0x10) | if q.cd { 0x10 } else { 0 };
    out[12..12 + q.question.len()].copy_from_slice(q.question);
    if e.ecs_at != 0
        && let Some(ecs) = q.edns.and_then(|x| x.ecs)
    {
        // Family, source prefix and length are part of the key.
        let at = e.ecs_at as usize;
        let n = (ecs.source_prefix as usize).div_ceil(8);
        out[at + 7] = scope.unwrap_or(0).min(ecs.source_prefix);
        match ecs.addr {
            std::net::IpAddr::V4(a) => out[at + 8..at + 8 + n].copy_from_slice(&a.octets()[..n]),
            std::net::IpAddr::V6(a) => out[at + 8..at + 8 + n].copy_from_slice(&a.octets()[..n]),
        }
    }
    if let Some((state, client_cookie, server)) = answer::cookie_reply(snap, q, client) {
        // The COOKIE option ends the answer (checked when it was cached).
        let end = out.len();
        out[end - server.len()..].copy_from_slice(&server);
        out[end - server.len() - 8..end - server.len()].copy_from_slice(&client_cookie);
        info.cookie = Some(state);
    }
    info.qtype = q.qtype;
    info.zone = e.zone;
    Outcome::Answered { rcode: e.rcode }
}

/// Answer with the engine and keep the response when it may be replayed.
#[allow(clippy::too_many_arguments)]
fn build(
    cache: &mut Templates,
    snap: &Snapshot,
    snapshot_id: u64,
    q: &Query<'_>,
    shape: u64,
    hash: u64,
    client: Client,
    rng: &mut Rng,
    out: &mut Vec<u8>,
    info: &mut AnswerInfo,
) -> Outcome {
    // Read before answering: a health change during the answer leaves the
    // entry with an older generation, so it is never replayed.
    let health = snap.health.generation();
    let rng_before = rng.clone();
    let outcome = answer::answer_query(snap, q, client, rng, out, info);
    let Outcome::Answered { rcode } = outcome else {
        return outcome;
    };
    // SplitMix64's output is a bijection of its state: equal next values,
    // equal states, so the answer drew no random number.
    let drew = rng_before.clone().next_u64() != rng.clone().next_u64();
    if drew || info.steered > 1 || out.len() > MAX_LEN || out.len() < 12 || !cookie_last(info, out)
    {
        return outcome;
    }
    let ecs_at = match ecs_offset(snap, q, info, out) {
        Some(at) => at,
        None => return outcome,
    };
    let slot = match info.balancer {
        Some((bid, pool, mode)) => {
            let variant = variant_of(pool, mode);
            let vhash = mix(hash, variant);
            let (m, v) = (cache.slot(hash), cache.slot(vhash));
            if m == v {
                // One slot cannot hold the marker and the variant.
                return outcome;
            }
            let marker = &mut cache.entries[m];
            marker.set_key(Kind::Steered, hash, snapshot_id, shape, q);
            marker.balancer = bid;
            let e = &mut cache.entries[v];
            e.set_key(Kind::Variant, vhash, snapshot_id, shape, q);
            e.variant = variant;
            e.balancer = bid;
            e.health = health;
            v
        }
        None => {
            let s = cache.slot(hash);
            cache.entries[s].set_key(Kind::Plain, hash, snapshot_id, shape, q);
            s
        }
    };
    let e = &mut cache.entries[slot];
    e.zone = info.zone;
    e.rcode = rcode;
    e.ecs_at = ecs_at;
    e.len = out.len() as u16;
    e.bytes[..out.len()].copy_from_slice(out);
    outcome
}

/// Length of the COOKIE option the engine wrote for this query (0: none).
fn cookie_len(info: &AnswerInfo) -> usize {
    if info.cookie.is_some() {
        4 + 8 + crate::cookie::SERVER_LEN
    } else {
        0
    }
}

/// Whether an answer with a cookie ends in its COOKIE option, where the
/// replay writes the new one (always true without a cookie).
fn cookie_last(info: &AnswerInfo, out: &[u8]) -> bool {
    let n = cookie_len(info);
    n == 0
        || out.len().checked_sub(n).is_some_and(|at| {
            at > 12
                && out[at..at + 2] == wire::OPT_COOKIE.to_be_bytes()
                && out[at + 2..at + 4] == ((n - 4) as u16).to_be_bytes()
        })
}

/// Where the echoed ECS option starts in `out` (0 when none is echoed).
/// The engine writes the OPT record last: ECS its first option, then NSID,
/// then COOKIE; `None` when `out` does not look so.
fn ecs_offset(snap: &Snapshot, q: &Query<'_>, info: &AnswerInfo, out: &[u8]) -> Option<u16> {
    let Some(ecs) = q.edns.and_then(|e| e.ecs).filter(|_| snap.settings.ecs) else {
        return Some(0);
    };
    let nsid = if q.edns.is_some_and(|e| e.nsid) {
        4 + snap.settings.node_name.len()
    } else {
        0
    };
    let at = out
        .len()
        .checked_sub(cookie_len(info) + nsid + 8 + (ecs.source_prefix as usize).div_ceil(8))?;
    let ok = at > 12
        && out[at..at + 2] == wire::OPT_ECS.to_be_bytes()
        && out[at + 4..at + 6] == ecs.family.to_be_bytes()
        && out[at + 6] == ecs.source_prefix;
    (ok && at <= usize::from(u16::MAX)).then_some(at as u16)
}
