//! Steering policy: given a balanced name, the client's location and the
//! health table, choose the pool and the endpoints to answer with.
//!
//! Pure and synchronous: no I/O, no locks, no allocation on the query path.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::geo::trie::PrefixTrie;
use crate::geo::{Continent, Coords, CountryCode, Location, Subdivision};
use crate::health::HealthTable;
use crate::zone::WireName;

pub mod compiled;
pub mod latency;

pub use compiled::Compiled;

/// Index of a pool in the snapshot.
pub type PoolId = u32;
/// Index of an endpoint in the health table.
pub type EndpointId = u32;

/// Most address records in one answer, whatever `max_answers` says.
pub const MAX_TARGETS: usize = 32;

/// What an endpoint answers with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An A record.
    V4(Ipv4Addr),
    /// An AAAA record.
    V6(Ipv6Addr),
    /// A CNAME to this host name (lower-case wire).
    Host(WireName),
}

/// One endpoint of a pool.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Index into the health table.
    pub id: EndpointId,
    /// Label for logs and explain.
    pub label: String,
    /// What it answers with.
    pub target: Target,
    /// Encoded record data (4 or 16 address bytes, or the host name).
    pub rdata: Box<[u8]>,
    /// Relative weight (> 0).
    pub weight: u32,
    /// Disabled endpoints are never answered.
    pub enabled: bool,
}

/// A pool of endpoints.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Name from the config.
    pub name: String,
    /// The endpoints.
    pub endpoints: Box<[Endpoint]>,
    /// Usable when at least this many enabled endpoints are up.
    pub min_healthy: u32,
    /// Location for proximity.
    pub coords: Option<Coords>,
}

/// Behaviour when nothing is usable anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllDown {
    /// Answer as if every enabled endpoint were up.
    FailOpen,
    /// Answer NODATA.
    Nodata,
}

/// A compiled geo map.
#[derive(Debug, Default)]
pub struct GeoMap {
    /// Distinct ordered pool lists; rules refer to them by index.
    pub lists: Vec<Box<[PoolId]>>,
    /// List for clients no rule matches.
    pub default: u32,
    /// By continent.
    pub continent: HashMap<Continent, u32>,
    /// By country.
    pub country: HashMap<CountryCode, u32>,
    /// By subdivision.
    pub subdivision: HashMap<Subdivision, u32>,
    /// By AS number.
    pub asn: HashMap<u32, u32>,
    /// By client network (most specific wins).
    pub cidr: PrefixTrie<u32>,
    /// True when `cidr` has entries (skip the walk otherwise).
    pub has_cidr: bool,
}

/// A steering policy.
#[derive(Debug)]
pub enum Policy {
    /// Ordered pools.
    Failover(Box<[PoolId]>),
    /// Location → ordered pools.
    Geo(Box<GeoMap>),
    /// Pools ordered by distance from the client.
    Proximity(Box<[PoolId]>),
    /// Endpoints of all pools, picked at random by weight.
    Weighted(Box<[PoolId]>),
    /// Pools in the order of this node's smoothed probe RTT (hysteresis
    /// off the hot path; the current order is one atomic index).
    Latency(Box<latency::LatencyPolicy>),
}

/// A balanced name.
#[derive(Debug)]
pub struct Balancer {
    /// The name (presentation form).
    pub name: String,
    /// TTL of answers.
    pub ttl: u32,
    /// How to choose.
    pub policy: Policy,
    /// Pool to use when no listed pool is usable.
    pub fallback: Option<PoolId>,
    /// Most records per answer.
    pub max_answers: usize,
    /// Behaviour when nothing is usable.
    pub all_down: AllDown,
}

/// Which rule decided the pool list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// A CIDR rule of the geo map, with its network.
    Cidr(ipnet::IpNet),
    /// An ASN rule.
    Asn(u32),
    /// A subdivision rule.
    Subdivision(Subdivision),
    /// A country rule.
    Country(CountryCode),
    /// A continent rule.
    Continent(Continent),
    /// The geo map's default list.
    Default,
    /// The failover order.
    Ordered,
    /// Nearest first (no coordinates known: configured order).
    Nearest {
        /// Whether the client's coordinates were known.
        located: bool,
    },
    /// Weighted random over all pools.
    Weighted,
    /// Lowest smoothed RTT first (this node's probes).
    Latency,
    /// Looked up in the balancer's compiled decision trie (geo or
    /// proximity): the list is what the rules give, but which rule gave it
    /// is not tracked on the hot path (`explain` evaluates the rules).
    Compiled,
}

/// How the answer was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A listed pool was usable.
    Normal,
    /// No listed pool was usable; the fallback pool was.
    Fallback,
    /// Nothing was usable; answering as if all were up.
    FailOpen,
    /// Nothing was usable and the name says NODATA.
    Nodata,
}

/// Query families a balanced name answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A queries.
    V4,
    /// AAAA queries.
    V6,
}

/// The outcome of steering.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'s> {
    /// The rule that matched.
    pub rule: Rule,
    /// The ordered pool list the rule gave.
    pub list: &'s [PoolId],
    /// The pool answering (none for weighted and for NODATA).
    pub pool: Option<PoolId>,
    /// How the answer was reached.
    pub mode: Mode,
    /// ECS scope: the shortest prefix of the client address over which this
    /// decision stays the same (0 when it does not depend on the address).
    pub scope: u8,
}

/// Endpoints chosen for an answer.
#[derive(Debug, Clone, Copy)]
pub struct Targets<'s> {
    /// Address records (all of the query's family) or one host name.
    pub items: [Option<&'s Endpoint>; MAX_TARGETS],
    /// How many of `items` are set.
    pub len: usize,
}

impl<'s> Targets<'s> {
    fn new() -> Self {
        Targets {
            items: [None; MAX_TARGETS],
            len: 0,
        }
    }

    /// The chosen endpoints.
    pub fn iter(&self) -> impl Iterator<Item = &'s Endpoint> + '_ {
        self.items[..self.len].iter().flatten().copied()
    }

    fn push(&mut self, e: &'s Endpoint) {
        if self.len < MAX_TARGETS {
            self.items[self.len] = Some(e);
            self.len += 1;
        }
    }
}

/// A small, fast, seedable random number generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator with a fixed seed.
    pub fn seeded(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Read-only inputs of steering.
pub struct Inputs<'s> {
    /// All pools of the snapshot.
    pub pools: &'s [Pool],
    /// Endpoint health.
    pub health: &'s HealthTable,
}

impl Inputs<'_> {
    fn endpoint_up(&self, e: &Endpoint, ignore_health: bool) -> bool {
        // Drained endpoints are out even when failing open: drain is a
        // decision, not a health verdict.
        e.enabled
            && if ignore_health {
                !self.health.is_drained(e.id)
            } else {
                self.health.is_up(e.id)
            }
    }

    /// Whether `pool` has at least `min_healthy` enabled endpoints up.
    pub fn pool_usable(&self, pool: PoolId) -> bool {
        let p = &self.pools[pool as usize];
        let up = p
            .endpoints
            .iter()
            .filter(|e| self.endpoint_up(e, false))
            .count();
        up as u32 >= p.min_healthy.max(1)
    }

    fn pool_has_enabled(&self, pool: PoolId) -> bool {
        self.pools[pool as usize]
            .endpoints
            .iter()
            .any(|e| e.enabled && !self.health.is_drained(e.id))
    }
}

/// Great-circle distance in kilometres.
pub fn distance_km(a: Coords, b: Coords) -> f64 {
    Radians::of(a).distance_km(&Radians::of(b))
}

/// Coordinates in radians with the cosine of the latitude, so the distance
/// between many pairs computes the per-point parts once (same results as
/// [`distance_km`], which is built on it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Radians {
    lat: f64,
    lon: f64,
    cos_lat: f64,
}

impl Radians {
    pub(crate) fn of(c: Coords) -> Radians {
        let lat = (c.lat as f64).to_radians();
        Radians {
            lat,
            lon: (c.lon as f64).to_radians(),
            cos_lat: lat.cos(),
        }
    }

    pub(crate) fn distance_km(&self, b: &Radians) -> f64 {
        let h = ((b.lat - self.lat) / 2.0).sin().powi(2)
            + self.cos_lat * b.cos_lat * ((b.lon - self.lon) / 2.0).sin().powi(2);
        2.0 * 6371.0 * h.sqrt().min(1.0).asin()
    }
}

/// The rule and pool list for a client, and the ECS scope of that choice.
pub fn rule_for<'s>(b: &'s Balancer, loc: &Location, client: IpAddr) -> (Rule, &'s [PoolId], u8) {
    match &b.policy {
        Policy::Failover(l) => (Rule::Ordered, l, 0),
        Policy::Weighted(l) => (Rule::Weighted, l, 0),
        Policy::Latency(l) => (Rule::Latency, l.current(), 0),
        Policy::Proximity(l) => (
            Rule::Nearest {
                located: loc.coords.is_some(),
            },
            l,
            loc.scope,
        ),
        Policy::Geo(m) => geo_rule(m, loc, client),
    }
}

fn geo_rule<'s>(m: &'s GeoMap, loc: &Location, client: IpAddr) -> (Rule, &'s [PoolId], u8) {
    let (rule, i, scope) = geo_rule_index(m, loc, client);
    (rule, &m.lists[i as usize], scope)
}

/// [`geo_rule`] with the index of the list in `m.lists`: the reference the
/// compiled decision tries are built from.
pub(crate) fn geo_rule_index(m: &GeoMap, loc: &Location, client: IpAddr) -> (Rule, u32, u8) {
    // The answer depends on every input consulted: each is constant over
    // its own prefix, so the answer is constant over the longest of them.
    let mut scope = 0u8;
    if m.has_cidr {
        let hit = m.cidr.lookup(client);
        scope = scope.max(hit.safe_scope);
        if let Some(&i) = hit.value {
            let net = ipnet::IpNet::new(crate::net::mask(client, hit.matched_len), hit.matched_len)
                .unwrap_or_else(|_| ipnet::IpNet::from(client));
            return (Rule::Cidr(net), i, scope);
        }
    }
    let (rule, i, s) = location_rule_index(m, loc);
    (rule, i, scope.max(s))
}

/// The location part of [`geo_rule_index`] (every rule but CIDR): what the
/// decision tries evaluate once per distinct location.
pub(crate) fn location_rule_index(m: &GeoMap, loc: &Location) -> (Rule, u32, u8) {
    let mut scope = 0u8;
    if !m.asn.is_empty() {
        scope = scope.max(loc.asn_scope);
        if let Some(&i) = loc.asn.and_then(|a| m.asn.get(&a)) {
            return (Rule::Asn(loc.asn.unwrap_or(0)), i, scope);
        }
    }
    scope = scope.max(loc.scope);
    if let Some(s) = loc.subdivision
        && let Some(&i) = m.subdivision.get(&s)
    {
        return (Rule::Subdivision(s), i, scope);
    }
    if let Some(c) = loc.country
        && let Some(&i) = m.country.get(&c)
    {
        return (Rule::Country(c), i, scope);
    }
    if let Some(c) = loc.continent
        && let Some(&i) = m.continent.get(&c)
    {
        return (Rule::Continent(c), i, scope);
    }
    (Rule::Default, m.default, scope)
}

/// Choose the pool for a balanced name by evaluating its rules on a
/// located client (the reference path; [`choose_fast`] is the hot path).
pub fn choose<'s>(
    b: &'s Balancer,
    inp: &Inputs<'s>,
    loc: &Location,
    client: IpAddr,
) -> Decision<'s> {
    let (rule, list, scope) = rule_for(b, loc, client);
    let nearest = match (&b.policy, loc.coords) {
        (Policy::Proximity(_), Some(c)) => Some(c),
        _ => None,
    };
    decide(b, inp, rule, list, scope, nearest)
}

/// Choose without locating the client, when that is possible: for
/// policies that do not depend on the address (failover, weighted), and for
/// geo and proximity balancers with a compiled decision trie (`compiled`,
/// one trie walk; the scope is the merged one). `None` when the caller must
/// locate the client and call [`choose`]. `client` must be canonical (IPv4
/// for IPv4-mapped addresses). No allocation.
#[inline]
pub fn choose_fast<'s>(
    b: &'s Balancer,
    compiled: Option<&'s Compiled>,
    inp: &Inputs<'s>,
    client: IpAddr,
) -> Option<Decision<'s>> {
    match (&b.policy, compiled) {
        (Policy::Failover(l), _) => Some(decide(b, inp, Rule::Ordered, l, 0, None)),
        (Policy::Weighted(l), _) => Some(decide(b, inp, Rule::Weighted, l, 0, None)),
        (Policy::Latency(l), _) => Some(decide(b, inp, Rule::Latency, l.current(), 0, None)),
        (Policy::Geo(_) | Policy::Proximity(_), Some(c)) => {
            let (list, scope) = c.lookup(client);
            Some(decide(b, inp, Rule::Compiled, list, scope, None))
        }
        (Policy::Geo(_) | Policy::Proximity(_), None) => None,
    }
}

/// What `b` answers for a client whose rule gave `list` (in that order),
/// for the status page's per-region view: first usable pool, fallback,
/// all-down handling, as on the query path.
pub fn decide_list<'s>(b: &'s Balancer, inp: &Inputs<'s>, list: &'s [PoolId]) -> Decision<'s> {
    decide(b, inp, Rule::Ordered, list, 0, None)
}

/// Health, fallback and all-down handling over a pool list. With `nearest`,
/// the list is in configured order and the nearest usable pool wins;
/// without, the first usable pool of the list.
fn decide<'s>(
    b: &'s Balancer,
    inp: &Inputs<'s>,
    rule: Rule,
    list: &'s [PoolId],
    scope: u8,
    nearest: Option<Coords>,
) -> Decision<'s> {
    let mut d = Decision {
        rule,
        list,
        pool: None,
        mode: Mode::Normal,
        scope,
    };
    let first_usable = |ignore_health: bool| -> Option<PoolId> {
        let ok = |p: PoolId| {
            if ignore_health {
                inp.pool_has_enabled(p)
            } else {
                inp.pool_usable(p)
            }
        };
        match nearest {
            Some(c) => nearest_usable(inp, list, c, ok),
            None => list.iter().copied().find(|&p| ok(p)),
        }
    };
    if let Policy::Weighted(_) = b.policy {
        if list.iter().any(|&p| inp.pool_usable(p)) {
            return d;
        }
    } else if let Some(p) = first_usable(false) {
        d.pool = Some(p);
        return d;
    }
    if let Some(f) = b.fallback.filter(|&f| inp.pool_usable(f)) {
        d.pool = Some(f);
        d.mode = Mode::Fallback;
        return d;
    }
    match b.all_down {
        AllDown::Nodata => d.mode = Mode::Nodata,
        AllDown::FailOpen => {
            d.mode = Mode::FailOpen;
            if !matches!(b.policy, Policy::Weighted(_)) {
                d.pool = first_usable(true);
            }
        }
    }
    d
}

fn nearest_usable(
    inp: &Inputs<'_>,
    list: &[PoolId],
    c: Coords,
    ok: impl Fn(PoolId) -> bool,
) -> Option<PoolId> {
    let mut best: Option<(f64, PoolId)> = None;
    let mut without_coords = None;
    for &p in list {
        if !ok(p) {
            continue;
        }
        match inp.pools[p as usize].coords {
            Some(pc) => {
                let dist = distance_km(c, pc);
                if best.is_none_or(|(bd, _)| dist < bd) {
                    best = Some((dist, p));
                }
            }
            None => {
                without_coords.get_or_insert(p);
            }
        }
    }
    best.map(|(_, p)| p).or(without_coords)
}

/// Pick the endpoints to answer with for a decision and a query family.
pub fn targets<'s>(
    b: &'s Balancer,
    inp: &Inputs<'s>,
    d: &Decision<'s>,
    family: Family,
    rng: &mut Rng,
) -> Targets<'s> {
    let mut out = Targets::new();
    if d.mode == Mode::Nodata {
        return out;
    }
    let ignore_health = d.mode == Mode::FailOpen;
    let family_ok = |e: &Endpoint| {
        matches!(
            (&e.target, family),
            (Target::V4(_), Family::V4) | (Target::V6(_), Family::V6)
        )
    };
    let is_host = |e: &Endpoint| matches!(e.target, Target::Host(_));
    // Candidates: the chosen pool, or every listed pool for weighted.
    let pools: &[PoolId] = match (d.pool.as_ref(), &b.policy) {
        (Some(p), _) => std::slice::from_ref(p),
        (None, Policy::Weighted(l)) => l,
        (None, _) => &[],
    };
    let all = || {
        pools
            .iter()
            .flat_map(|&p| inp.pools[p as usize].endpoints.iter())
            .filter(|e| inp.endpoint_up(e, ignore_health))
    };
    let addr_count = all().filter(|e| family_ok(e)).count();
    let host_count = all().filter(|e| is_host(e)).count();
    if addr_count == 0 && host_count == 0 {
        return out;
    }
    // For weighted, pick among addresses and host names together; otherwise
    // addresses of the family win, and host names answer only when the pool
    // has no address of the family.
    let weighted = matches!(b.policy, Policy::Weighted(_));
    let first_pick_is_host = if weighted && host_count > 0 {
        let first = weighted_pick(all().filter(|e| family_ok(e) || is_host(e)), rng, &out);
        first.is_some_and(is_host)
    } else {
        addr_count == 0
    };
    if first_pick_is_host {
        if let Some(e) = weighted_pick(all().filter(|e| is_host(e)), rng, &out) {
            out.push(e);
        }
        return out;
    }
    let want = b.max_answers.min(MAX_TARGETS);
    if addr_count <= want {
        for e in all().filter(|e| family_ok(e)) {
            out.push(e);
        }
    } else {
        while out.len < want {
            match weighted_pick(all().filter(|e| family_ok(e)), rng, &out) {
                Some(e) => out.push(e),
                None => break,
            }
        }
    }
    out
}

/// Weighted random pick among `cands` not already in `taken`.
fn weighted_pick<'s>(
    cands: impl Iterator<Item = &'s Endpoint> + Clone,
    rng: &mut Rng,
    taken: &Targets<'s>,
) -> Option<&'s Endpoint> {
    let free = |e: &&'s Endpoint| !taken.iter().any(|t| std::ptr::eq(t, *e));
    let total: u64 = cands.clone().filter(free).map(|e| e.weight as u64).sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.below(total);
    for e in cands.filter(free) {
        let w = e.weight as u64;
        if r < w {
            return Some(e);
        }
        r -= w;
    }
    None
}

#[cfg(test)]
mod tests;
