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

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use super::{Balancer, GeoMap, Policy, Pool, PoolId, distance_km, geo_rule_index};
use crate::geo::{Coords, GeoDb};

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
#[derive(Debug, Clone)]
pub struct Compiled {
    trie: DecisionTrie,
    lists: Box<[Box<[PoolId]>]>,
    stats: BuildStats,
}

impl Compiled {
    /// The ordered pool list for `ip` and the prefix length over which it
    /// is the same (the ECS scope). `ip` should be canonical: an
    /// IPv4-mapped IPv6 address gets the IPv6 answer for `::ffff:0:0/96`,
    /// which equals the IPv4 one but with scopes ≥ 96. No allocation.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> (&[PoolId], u8) {
        let (v, scope) = self.trie.lookup(ip);
        (&self.lists[v as usize], scope)
    }

    /// The trie.
    pub fn trie(&self) -> &DecisionTrie {
        &self.trie
    }

    /// The distinct pool lists the leaves refer to.
    pub fn lists(&self) -> &[Box<[PoolId]>] {
        &self.lists
    }

    /// How much work the build did.
    pub fn stats(&self) -> BuildStats {
        self.stats
    }

    /// Heap bytes of the trie and lists.
    pub fn memory_bytes(&self) -> usize {
        self.trie.memory_bytes()
            + self
                .lists
                .iter()
                .map(|l| std::mem::size_of_val(&**l) + std::mem::size_of::<Box<[PoolId]>>())
                .sum::<usize>()
    }
}

/// Compile the decision of one balancer: `Ok(None)` for policies that do not
/// depend on the client's address (failover, weighted).
pub fn compile(
    b: &Balancer,
    pools: &[Pool],
    geo: &GeoDb,
    node_budget: usize,
) -> Result<Option<Compiled>, CompileError> {
    match &b.policy {
        Policy::Failover(_) | Policy::Weighted(_) | Policy::Latency(_) => Ok(None),
        Policy::Geo(m) => compile_geo(m, geo, node_budget).map(Some),
        Policy::Proximity(l) => compile_proximity(l, pools, geo, node_budget).map(Some),
    }
}

/// Compile every balancer (`None` where there is nothing to compile or the
/// trie is over budget; those keep evaluating rules per query), on up to
/// one thread per core. Logs the size and build time of each trie.
pub fn compile_all(balancers: &[Balancer], pools: &[Pool], geo: &GeoDb) -> Vec<Option<Compiled>> {
    let one = |b: &Balancer| -> Option<Compiled> {
        let t = Instant::now();
        match compile(b, pools, geo, DEFAULT_NODE_BUDGET) {
            Ok(Some(c)) => {
                tracing::info!(
                    name = %b.name,
                    nodes = c.trie.node_count(),
                    bytes = c.memory_bytes(),
                    lists = c.lists.len(),
                    cells = c.stats.cells,
                    ms = t.elapsed().as_millis() as u64,
                    "compiled decision trie"
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
    let todo: Vec<usize> = (0..balancers.len())
        .filter(|&i| matches!(balancers[i].policy, Policy::Geo(_) | Policy::Proximity(_)))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(todo.len());
    let mut out: Vec<Option<Compiled>> = balancers.iter().map(|_| None).collect();
    if threads <= 1 {
        for &i in &todo {
            out[i] = one(&balancers[i]);
        }
        return out;
    }
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
    out
}

fn compile_geo(m: &GeoMap, geo: &GeoDb, budget: usize) -> Result<Compiled, CompileError> {
    // Equal lists get one value, so their cells merge.
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
    let oracle = |ip: IpAddr| {
        let loc = geo.locate(ip);
        let (_, i, scope) = geo_rule_index(m, &loc, ip);
        (canon.get(i as usize).copied().unwrap_or(0), scope)
    };
    let (trie, stats) = build(oracle, budget)?;
    Ok(Compiled {
        trie,
        lists: lists.into_boxed_slice(),
        stats,
    })
}

/// `list` ordered nearest first from `c`: pools with coordinates by
/// great-circle distance (ties in configured order), then pools without
/// coordinates in configured order. The first usable pool of this order is
/// what the per-query proximity choice picks.
pub fn proximity_order(pools: &[Pool], list: &[PoolId], c: Coords) -> Box<[PoolId]> {
    let mut v: Vec<(usize, Option<f64>, PoolId)> = list
        .iter()
        .enumerate()
        .map(|(i, &p)| (i, pools[p as usize].coords.map(|pc| distance_km(c, pc)), p))
        .collect();
    v.sort_by(|a, b| match (a.1, b.1) {
        (Some(x), Some(y)) => x.total_cmp(&y).then(a.0.cmp(&b.0)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.0.cmp(&b.0),
    });
    v.into_iter().map(|x| x.2).collect()
}

fn compile_proximity(
    list: &[PoolId],
    pools: &[Pool],
    geo: &GeoDb,
    budget: usize,
) -> Result<Compiled, CompileError> {
    // Value 0 is the configured order (unlocated clients).
    let mut lists: Vec<Box<[PoolId]>> = vec![list.into()];
    let mut by_list: HashMap<Box<[PoolId]>, u32> = HashMap::new();
    by_list.insert(list.into(), 0);
    let mut by_coords: HashMap<(u32, u32), u32> = HashMap::new();
    let oracle = |ip: IpAddr| {
        let loc = geo.locate(ip);
        let v = match loc.coords {
            None => 0,
            Some(c) => *by_coords
                .entry((c.lat.to_bits(), c.lon.to_bits()))
                .or_insert_with(|| {
                    let order = proximity_order(pools, list, c);
                    *by_list.entry(order.clone()).or_insert_with(|| {
                        lists.push(order);
                        lists.len() as u32 - 1
                    })
                }),
        };
        (v, loc.scope)
    };
    let (trie, stats) = build(oracle, budget)?;
    if lists.len() >= LEAF as usize {
        return Err(CompileError::TooManyLists);
    }
    Ok(Compiled {
        trie,
        lists: lists.into_boxed_slice(),
        stats,
    })
}

/// Build a merged trie from a scoped oracle: `oracle(ip)` gives the value at
/// `ip` and a prefix length `s` such that every address in `ip/s` has the
/// same value.
pub fn build(
    oracle: impl FnMut(IpAddr) -> (u32, u8),
    budget: usize,
) -> Result<(DecisionTrie, BuildStats), CompileError> {
    let mut b = Builder {
        nodes: Vec::new(),
        dedup: HashMap::new(),
        budget,
        oracle,
        stats: BuildStats::default(),
    };
    let first = b.eval(0, 32)?;
    let v4_root = b.walk(0, 0, 32, first)?;
    let first = b.eval(0, 128)?;
    let v6_root = b.walk(0, 0, 128, first)?;
    let stats = b.stats;
    Ok((
        DecisionTrie {
            nodes: b.nodes.into_boxed_slice(),
            v4_root,
            v6_root,
        },
        stats,
    ))
}

struct Builder<F> {
    nodes: Vec<[u32; 2]>,
    dedup: HashMap<[u32; 2], u32>,
    budget: usize,
    oracle: F,
    stats: BuildStats,
}

impl<F: FnMut(IpAddr) -> (u32, u8)> Builder<F> {
    /// The oracle at the address whose top `width` bits are the top bits of
    /// `bits`.
    fn eval(&mut self, bits: u128, width: u8) -> Result<(u32, u8), CompileError> {
        self.stats.evaluations += 1;
        let ip = if width == 32 {
            IpAddr::V4(Ipv4Addr::from((bits >> 96) as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(bits))
        };
        let (v, s) = (self.oracle)(ip);
        if v >= LEAF {
            return Err(CompileError::TooManyLists);
        }
        Ok((v, s))
    }

    /// The merged subtree for the prefix `bits/len`; `at` is the oracle at
    /// its first address. Returns a child slot: `LEAF | value` or a node.
    fn walk(
        &mut self,
        bits: u128,
        len: u8,
        width: u8,
        (v, scope): (u32, u8),
    ) -> Result<u32, CompileError> {
        if scope <= len || len >= width {
            self.stats.cells += 1;
            return Ok(LEAF | v);
        }
        // The left half starts at the same address.
        let left = self.walk(bits, len + 1, width, (v, scope))?;
        let rbits = bits | (1u128 << (127 - u32::from(len)));
        let at_r = self.eval(rbits, width)?;
        let right = self.walk(rbits, len + 1, width, at_r)?;
        if left == right && left & LEAF != 0 {
            return Ok(left);
        }
        let key = [left, right];
        if let Some(&id) = self.dedup.get(&key) {
            return Ok(id);
        }
        if self.nodes.len() >= self.budget || self.nodes.len() >= LEAF as usize {
            return Err(CompileError::TooBig {
                budget: self.budget,
            });
        }
        let id = self.nodes.len() as u32;
        self.nodes.push(key);
        self.dedup.insert(key, id);
        Ok(id)
    }
}

#[cfg(test)]
mod tests;
