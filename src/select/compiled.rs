//! Decision tries: the answer of a location-dependent balancer (its ordered
//! pool list), precomputed at config load for the whole IPv4 and IPv6 space
//! and merged, the way gdnsd's `libgdmaps` does it.
//!
//! # How a trie is built
//!
//! The per-query reference is [`rule_for`] on [`GeoDb::locate`]: it returns
//! the pool list and a scope, the prefix length over which every input it
//! consulted (GeoIP network, ASN network, overrides, CIDR rules) stays the
//! same. That scope contract is what the build walks: starting at `0.0.0.0/0`
//! and `::/0`, a prefix whose first address reports a scope no longer than
//! the prefix is one cell of the partition (every address in it gets the same
//! list); any other prefix is split in two. So the cells are exactly the
//! combined partition of location database × ASN database (only when the map
//! has ASN rules) × overrides × CIDR rules, unlocated space included, and no
//! second implementation of the precedence rules exists that could drift
//! from the reference.
//!
//! The trie is built bottom-up while walking: two sibling leaves with the
//! same list collapse into their parent, so a leaf is the widest prefix over
//! which the answer is the same, and that prefix length is the ECS scope.
//! Identical subtrees are stored once (the IPv4 space appears several times
//! in IPv6 space through the databases' IPv4 aliases).
//!
//! The hot path is one walk down the trie: no `locate`, no hash lookups, no
//! allocation, no locks. IPv4 has its own root (scopes ≤ 32); IPv4-mapped
//! IPv6 addresses are canonicalised to IPv4 by the caller.
//!
//! This file plans and compiles the tries; [`builder`] builds them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

mod builder;

pub use builder::build;
use builder::build_shape;

use super::{Balancer, GeoMap, Policy, Pool, PoolId, Radians};
use crate::geo::partition::Fields;
use crate::geo::{Coords, GeoDb, Partition};

/// Marks a leaf in a child slot; the low 31 bits are the leaf's value.
const LEAF: u32 = 1 << 31;

/// Default most nodes per balancer trie (8 bytes each: 64 MiB).
pub const DEFAULT_NODE_BUDGET: usize = 8 << 20;

/// A binary prefix tree over IPv4 and IPv6 whose leaves hold a value.
///
/// Sibling leaves never hold the same value (they are merged at build), so
/// the depth of the leaf an address reaches is the shortest prefix of the
/// address over which the value is the same.
#[derive(Debug, Clone)]
pub struct DecisionTrie {
    nodes: Box<[[u32; 2]]>,
    v4_root: u32,
    v6_root: u32,
}

impl DecisionTrie {
    /// The value for `ip` and the prefix length of its leaf (in the family
    /// of `ip`). No allocation.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> (u32, u8) {
        match ip {
            IpAddr::V4(a) => self.walk(self.v4_root, u128::from(u32::from(a)) << 96),
            IpAddr::V6(a) => self.walk(self.v6_root, u128::from(a)),
        }
    }

    #[inline]
    fn walk(&self, mut cur: u32, mut bits: u128) -> (u32, u8) {
        let mut depth = 0u8;
        while cur & LEAF == 0 {
            let bit = (bits >> 127) as usize;
            bits <<= 1;
            // Indices come from the builder: always in range, and every
            // path ends in a leaf by depth 32 (IPv4) or 128 (IPv6).
            cur = self.nodes[cur as usize][bit];
            depth += 1;
        }
        (cur & !LEAF, depth)
    }

    /// Number of inner nodes (IPv4 and IPv6 together).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Heap bytes used by the nodes.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.nodes)
    }
}

/// Why a trie was not built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// The merged trie would need more nodes than allowed.
    #[error("decision trie needs more than {budget} nodes")]
    TooBig {
        /// The node budget.
        budget: usize,
    },
    /// More distinct pool lists than a leaf can index.
    #[error("too many distinct pool lists")]
    TooManyLists,
}

/// Build statistics, for logs and the measurements in the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Cells of the input partition visited (leaves before merging).
    pub cells: u64,
    /// Reference evaluations (`locate` + rules) made.
    pub evaluations: u64,
}

/// A balancer's compiled decision: the trie and the lists its leaves name.
///
/// The trie is shared (one `Arc`) by every balancer whose map has the same
/// shape on the same location partition, and across reloads that keep the
/// databases; the lists are this balancer's pools.
#[derive(Debug, Clone)]
pub struct Compiled {
    trie: Arc<SharedTrie>,
    lists: Box<[Box<[PoolId]>]>,
}

/// A trie built for one map shape, cached in the location partition.
#[derive(Debug)]
struct SharedTrie {
    trie: DecisionTrie,
    /// Proximity: the order of each leaf value, as positions in the
    /// balancer's pool list. Empty for geo maps.
    orders: Vec<Box<[u16]>>,
    stats: BuildStats,
}

impl Compiled {
    /// The ordered pool list for `ip` and the prefix length over which it
    /// is the same (the ECS scope). `ip` should be canonical: an
    /// IPv4-mapped IPv6 address gets the IPv6 answer for `::ffff:0:0/96`,
    /// which equals the IPv4 one but with scopes ≥ 96. No allocation.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> (&[PoolId], u8) {
        let (v, scope) = self.trie.trie.lookup(ip);
        (&self.lists[v as usize], scope)
    }

    /// The trie.
    pub fn trie(&self) -> &DecisionTrie {
        &self.trie.trie
    }

    /// Whether `self` and `other` share one trie.
    pub fn shares_trie_with(&self, other: &Compiled) -> bool {
        Arc::ptr_eq(&self.trie, &other.trie)
    }

    /// The distinct pool lists the leaves refer to.
    pub fn lists(&self) -> &[Box<[PoolId]>] {
        &self.lists
    }

    /// How much work the build did.
    pub fn stats(&self) -> BuildStats {
        self.trie.stats
    }

    /// Heap bytes of the trie and lists.
    pub fn memory_bytes(&self) -> usize {
        self.trie.trie.memory_bytes()
            + self
                .lists
                .iter()
                .map(|l| std::mem::size_of_val(&**l) + std::mem::size_of::<Box<[PoolId]>>())
                .sum::<usize>()
    }
}

/// What a location-dependent balancer needs compiled: the partition it
/// reads, the cache key of its shape, and how to evaluate it.
enum Plan<'a> {
    Geo {
        m: &'a GeoMap,
        /// List index → class (equal lists share a class).
        canon: Vec<u32>,
        /// Class → list.
        lists: Vec<Box<[PoolId]>>,
    },
    Proximity {
        list: &'a [PoolId],
        coords: Vec<Option<Coords>>,
    },
}

impl Plan<'_> {
    /// The AS numbers the plan's rules name (sorted), if any.
    fn asns(&self) -> Option<Vec<u32>> {
        match self {
            Plan::Geo { m, .. } if !m.asn.is_empty() => {
                let mut v: Vec<u32> = m.asn.keys().copied().collect();
                v.sort_unstable();
                Some(v)
            }
            _ => None,
        }
    }

    /// The partition the plan reads: with the ASN dimension over `asns`
    /// (the union over the config; the plan's own set when `None`).
    ///
    /// When the config has ASN rules, maps without any read the ASN
    /// partition too: one partition is kept instead of two, and the trie is
    /// the same (the merged trie of a function over prefixes is unique, and
    /// the ASN partition only splits cells this map gives one value).
    fn partition(&self, geo: &GeoDb, asns: Option<&[u32]>) -> Arc<Partition> {
        match (self.asns(), asns) {
            (None, Some(all)) if !all.is_empty() => geo.asn_partition(all),
            (None, _) => geo.partition().clone(),
            (Some(own), all) => geo.asn_partition(all.unwrap_or(&own)),
        }
    }

    /// The location fields the plan reads.
    fn fields(&self) -> Fields {
        match self {
            Plan::Geo { m, .. } if m.subdivision.is_empty() => Fields::Country,
            Plan::Geo { .. } => Fields::Subdivision,
            Plan::Proximity { .. } => Fields::Coords,
        }
    }
}

fn plan<'a>(b: &'a Balancer, pools: &[Pool]) -> Result<Option<(Plan<'a>, Vec<u8>)>, CompileError> {
    match &b.policy {
        Policy::Failover(_) | Policy::Weighted(_) | Policy::Latency(_) => Ok(None),
        Policy::Geo(m) => {
            let mut lists: Vec<Box<[PoolId]>> = Vec::new();
            let canon: Vec<u32> = m
                .lists
                .iter()
                .map(|l| match lists.iter().position(|x| x == l) {
                    Some(i) => i as u32,
                    None => {
                        lists.push(l.clone());
                        lists.len() as u32 - 1
                    }
                })
                .collect();
            if lists.is_empty() {
                // A map without lists cannot answer; keep the rule path.
                return Err(CompileError::TooManyLists);
            }
            let class = |i: u32| canon.get(i as usize).copied().unwrap_or(0);
            // The shape: every rule with the class it gives.
            let mut key = vec![b'g'];
            let put = |k: &mut Vec<u8>, bytes: &[u8], i: u32| {
                k.extend_from_slice(bytes);
                k.extend_from_slice(&class(i).to_le_bytes());
            };
            put(&mut key, &[0], m.default);
            let mut cont: Vec<_> = m.continent.iter().collect();
            cont.sort();
            for (c, &i) in cont {
                put(&mut key, &[1, *c as u8], i);
            }
            let mut ctry: Vec<_> = m.country.iter().collect();
            ctry.sort();
            for (c, &i) in ctry {
                put(&mut key, &[2, c.0[0], c.0[1]], i);
            }
            let mut sub: Vec<_> = m.subdivision.iter().collect();
            sub.sort();
            for (s, &i) in sub {
                let c = s.country.0;
                put(
                    &mut key,
                    &[3, c[0], c[1], s.code[0], s.code[1], s.code[2]],
                    i,
                );
            }
            let mut asn: Vec<_> = m.asn.iter().collect();
            asn.sort();
            for (a, &i) in asn {
                let mut k = vec![4];
                k.extend_from_slice(&a.to_le_bytes());
                put(&mut key, &k, i);
            }
            if m.has_cidr {
                for (net, &i) in m.cidr.entries() {
                    let mut k = vec![5, net.prefix_len()];
                    match net.network() {
                        IpAddr::V4(a) => k.extend_from_slice(&a.octets()),
                        IpAddr::V6(a) => k.extend_from_slice(&a.octets()),
                    }
                    put(&mut key, &k, i);
                }
            }
            Ok(Some((Plan::Geo { m, canon, lists }, key)))
        }
        Policy::Proximity(list) => {
            let coords: Vec<Option<Coords>> =
                list.iter().map(|&p| pools[p as usize].coords).collect();
            let mut key = vec![b'p'];
            for c in &coords {
                match c {
                    None => key.push(0),
                    Some(c) => {
                        key.push(1);
                        key.extend_from_slice(&c.lat.to_bits().to_le_bytes());
                        key.extend_from_slice(&c.lon.to_bits().to_le_bytes());
                    }
                }
            }
            Ok(Some((Plan::Proximity { list, coords }, key)))
        }
    }
}

/// Compile the decision of one balancer: `Ok(None)` for policies that do not
/// depend on the client's address (failover, weighted).
///
/// Reads the location partition of `geo` (built on first use) and caches
/// the trie there under the map's shape, so balancers with the same map
/// share it and recompiling an unchanged config is a cache hit.
pub fn compile(
    b: &Balancer,
    pools: &[Pool],
    geo: &GeoDb,
    node_budget: usize,
) -> Result<Option<Compiled>, CompileError> {
    compile_in(b, pools, geo, node_budget, None)
}

/// [`compile`] with the ASN partition over `asns` (the AS numbers of every
/// map of the config, so all share one partition).
fn compile_in(
    b: &Balancer,
    pools: &[Pool],
    geo: &GeoDb,
    node_budget: usize,
    asns: Option<&[u32]>,
) -> Result<Option<Compiled>, CompileError> {
    let Some((plan, key)) = plan(b, pools)? else {
        return Ok(None);
    };
    let base = plan.partition(geo, asns);
    // Cached in the base partition (the shape key determines the fields),
    // so the projection need not outlive the build.
    let shared = base.cached(&key, || match plan.fields() {
        // Coordinates are nearly one per network: projecting costs more
        // than it saves.
        Fields::Coords => build_shape(&plan, &base, node_budget),
        f => build_shape(&plan, &base.projected(f), node_budget),
    })?;
    if shared.trie.node_count() > node_budget {
        return Err(CompileError::TooBig {
            budget: node_budget,
        });
    }
    let lists: Box<[Box<[PoolId]>]> = match &plan {
        Plan::Geo { lists, .. } => lists.clone().into_boxed_slice(),
        Plan::Proximity { list, .. } => shared
            .orders
            .iter()
            .map(|o| o.iter().map(|&i| list[i as usize]).collect())
            .collect(),
    };
    Ok(Some(Compiled {
        trie: shared,
        lists,
    }))
}

/// The AS numbers named by the ASN rules of any of `balancers`, sorted:
/// the ASN dimension of the one partition they all read.
fn config_asns(balancers: &[Balancer], pools: &[Pool]) -> Vec<u32> {
    let mut asns: Vec<u32> = balancers
        .iter()
        .filter_map(|b| plan(b, pools).ok().flatten())
        .filter_map(|(p, _)| p.asns())
        .flatten()
        .collect();
    asns.sort_unstable();
    asns.dedup();
    asns
}

/// Compile every balancer (`None` where there is nothing to compile or the
/// trie is over budget; those keep evaluating rules per query). Each
/// distinct map shape is built once, on up to one thread per core; the
/// others reuse its trie. Logs the size and build time of each trie built.
pub fn compile_all(balancers: &[Balancer], pools: &[Pool], geo: &GeoDb) -> Vec<Option<Compiled>> {
    let t0 = Instant::now();
    let mut out: Vec<Option<Compiled>> = balancers.iter().map(|_| None).collect();
    // One representative balancer per shape, partitions built up front.
    let mut firsts: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut todo: Vec<usize> = Vec::new();
    let asns = config_asns(balancers, pools);
    let asns = &asns[..];
    for (i, b) in balancers.iter().enumerate() {
        if let Ok(Some((plan, key))) = plan(b, pools) {
            let base = plan.partition(geo, Some(asns));
            // Projections the shapes to build need, built once up front
            // (not by two workers at once).
            if plan.fields() != Fields::Coords && !base.is_cached(&key) {
                base.projected(plan.fields());
            }
            if let std::collections::hash_map::Entry::Vacant(e) = firsts.entry(key) {
                e.insert(i);
                todo.push(i);
            }
        }
    }
    let one = |b: &Balancer| -> Option<Compiled> {
        let t = Instant::now();
        match compile_in(b, pools, geo, DEFAULT_NODE_BUDGET, Some(asns)) {
            Ok(Some(c)) => {
                tracing::debug!(
                    name = %b.name,
                    nodes = c.trie().node_count(),
                    bytes = c.memory_bytes(),
                    lists = c.lists.len(),
                    us = t.elapsed().as_micros() as u64,
                    "decision trie"
                );
                Some(c)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(
                    name = %b.name,
                    error = %e,
                    "no decision trie: evaluating the rules per query (ECS scopes are per input, not merged)"
                );
                None
            }
        }
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(todo.len());
    if threads <= 1 {
        for &i in &todo {
            out[i] = one(&balancers[i]);
        }
    } else {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done: Vec<(usize, Option<Compiled>)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(&i) = todo.get(k) else {
                                break mine;
                            };
                            mine.push((i, one(&balancers[i])));
                        }
                    })
                })
                .collect();
            // A panicking build loses only its tries (rules per query).
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        });
        for (i, c) in done {
            out[i] = c;
        }
    }
    // The rest: cache hits on the shapes just built.
    for (i, b) in balancers.iter().enumerate() {
        if out[i].is_none() && !todo.contains(&i) {
            out[i] = one(b);
        }
    }
    for p in geo.built_partitions() {
        p.prune_cache();
    }
    let tries = out.iter().flatten().count();
    if tries > 0 {
        tracing::info!(
            names = tries,
            shapes = todo.len(),
            ms = t0.elapsed().as_millis() as u64,
            "compiled decision tries"
        );
    }
    out
}

/// `list` ordered nearest first from `c`: pools with coordinates by
/// great-circle distance (ties in configured order), then pools without
/// coordinates in configured order. The first usable pool of this order is
/// what the per-query proximity choice picks.
pub fn proximity_order(pools: &[Pool], list: &[PoolId], c: Coords) -> Box<[PoolId]> {
    let coords: Vec<Option<Coords>> = list.iter().map(|&p| pools[p as usize].coords).collect();
    order_positions(&coords, c)
        .iter()
        .map(|&i| list[i as usize])
        .collect()
}

/// [`proximity_order`] as positions in the list whose pools are at `pc`.
fn order_positions(pc: &[Option<Coords>], c: Coords) -> Box<[u16]> {
    let prepared: Vec<Option<Radians>> = pc.iter().map(|p| p.map(Radians::of)).collect();
    let mut buf = Vec::new();
    order_positions_into(&prepared, Radians::of(c), &mut buf);
    buf.iter().map(|x| x.0 as u16).collect()
}

/// Sort positions nearest first into `buf` (reused: no allocation once it
/// has grown).
fn order_positions_into(pc: &[Option<Radians>], c: Radians, buf: &mut Vec<(usize, Option<f64>)>) {
    buf.clear();
    buf.extend(
        pc.iter()
            .enumerate()
            .map(|(i, p)| (i, p.as_ref().map(|p| c.distance_km(p)))),
    );
    buf.sort_by(|a, b| match (a.1, b.1) {
        (Some(x), Some(y)) => x.total_cmp(&y).then(a.0.cmp(&b.0)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.0.cmp(&b.0),
    });
}
#[cfg(test)]
mod tests;

#[cfg(test)]
mod differential;
