//! Steering policy: given a balanced name, the client's location and the
//! health table, choose the pool and the endpoints to answer with.
//!
//! Pure and synchronous: no I/O, no locks, no allocation on the query path.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::geo::trie::PrefixTrie;
use crate::geo::{Continent, Coords, CountryCode, Subdivision};
use crate::health::HealthTable;
use crate::zone::WireName;

pub mod compiled;
pub mod latency;

mod decide;
mod rules;

pub use compiled::Compiled;
pub use decide::{choose, choose_fast, decide_list, targets};
pub(crate) use rules::location_rule_index;
pub use rules::rule_for;

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

#[cfg(test)]
mod tests;
