//! Building decision tries: one shape from a partition ([`build_shape`]),
//! or any scoped oracle ([`build`]), with sibling leaves merged and
//! identical subtrees stored once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustc_hash::FxHashMap;

use super::{BuildStats, CompileError, DecisionTrie, LEAF, Plan, SharedTrie, order_positions_into};
use crate::geo::Partition;
use crate::geo::trie::{CURSOR_NONE, PrefixTrie};
use crate::select::{Radians, location_rule_index};

/// Build the trie of one shape from the partition: a value per location,
/// one pass over the partition's nodes (children first) merging equal
/// sibling leaves, then the CIDR rules laid over it.
pub(super) fn build_shape(
    plan: &Plan<'_>,
    part: &Partition,
    budget: usize,
) -> Result<SharedTrie, CompileError> {
    let locs = part.locations();
    let mut orders: Vec<Box<[u16]>> = Vec::new();
    let vals: Vec<u32> = match plan {
        Plan::Geo { m, canon, .. } => locs
            .iter()
            .map(|l| {
                let (_, i, _) = location_rule_index(m, l);
                canon.get(i as usize).copied().unwrap_or(0)
            })
            .collect(),
        Plan::Proximity { coords, .. } => {
            if coords.len() > usize::from(u16::MAX) {
                return Err(CompileError::TooManyLists);
            }
            // Value 0 is the configured order (unlocated clients).
            let identity: Box<[u16]> = (0..coords.len() as u16).collect();
            orders.push(identity.clone());
            let mut by_order: FxHashMap<Box<[u16]>, u32> = FxHashMap::default();
            by_order.insert(identity, 0);
            let prepared: Vec<Option<Radians>> =
                coords.iter().map(|p| p.map(Radians::of)).collect();
            let mut buf = Vec::new();
            let mut key: Vec<u16> = Vec::new();
            locs.iter()
                .map(|l| match l.coords {
                    None => 0,
                    Some(c) => {
                        order_positions_into(&prepared, Radians::of(c), &mut buf);
                        key.clear();
                        key.extend(buf.iter().map(|x| x.0 as u16));
                        match by_order.get(&key[..]) {
                            Some(&v) => v,
                            None => {
                                let o: Box<[u16]> = key.as_slice().into();
                                orders.push(o.clone());
                                let v = orders.len() as u32 - 1;
                                by_order.insert(o, v);
                                v
                            }
                        }
                    }
                })
                .collect()
        }
    };
    if vals.iter().any(|&v| v >= LEAF) || orders.len() >= LEAF as usize {
        return Err(CompileError::TooManyLists);
    }
    let mut a = Arena {
        nodes: Vec::new(),
        dedup: FxHashMap::default(),
        budget,
    };
    let pnodes = part.nodes();
    let mut out: Vec<u32> = Vec::with_capacity(pnodes.len());
    let map = |s: u32, out: &[u32]| {
        if s & LEAF != 0 {
            LEAF | vals[(s & !LEAF) as usize]
        } else {
            out[s as usize]
        }
    };
    for &[l, r] in pnodes {
        let (l, r) = (map(l, &out), map(r, &out));
        let v = a.join(l, r)?;
        out.push(v);
    }
    let (p4, p6) = part.roots();
    let mut v4_root = map(p4, &out);
    let mut v6_root = map(p6, &out);
    drop(out);
    if let Plan::Geo { m, canon, .. } = plan
        && m.has_cidr
    {
        let class = |i: u32| canon.get(i as usize).copied().unwrap_or(0);
        for (root, v6) in [(&mut v4_root, false), (&mut v6_root, true)] {
            let c = m.cidr.cursor_root(v6);
            let v = m.cidr.cursor_value(c);
            let best = if v == CURSOR_NONE {
                CURSOR_NONE
            } else {
                class(*m.cidr.value_at(v))
            };
            *root = a.overlay(&m.cidr, &class, *root, c, best)?;
        }
        // Subtrees the rules replaced are unreachable now.
        (v4_root, v6_root) = a.compact(v4_root, v6_root);
    }
    let stats = BuildStats {
        cells: pnodes.len() as u64,
        evaluations: locs.len() as u64,
    };
    Ok(SharedTrie {
        trie: DecisionTrie {
            nodes: a.nodes.into_boxed_slice(),
            v4_root,
            v6_root,
        },
        orders,
        stats,
    })
}

/// Output nodes with sibling merging and shared identical subtrees.
struct Arena {
    nodes: Vec<[u32; 2]>,
    dedup: FxHashMap<[u32; 2], u32>,
    budget: usize,
}

impl Arena {
    fn join(&mut self, l: u32, r: u32) -> Result<u32, CompileError> {
        if l == r && l & LEAF != 0 {
            return Ok(l);
        }
        let key = [l, r];
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

    /// `slot` with the CIDR rules below cursor `c` laid over it (`best`:
    /// the class of the most specific rule matched so far).
    fn overlay(
        &mut self,
        cidr: &PrefixTrie<u32>,
        class: &impl Fn(u32) -> u32,
        slot: u32,
        c: u32,
        best: u32,
    ) -> Result<u32, CompileError> {
        if !cidr.cursor_has_children(c) {
            return Ok(if best == CURSOR_NONE {
                slot
            } else {
                LEAF | best
            });
        }
        let halves = if slot & LEAF != 0 {
            [slot, slot]
        } else {
            self.nodes[slot as usize]
        };
        let mut kids = [0u32; 2];
        for bit in 0..2 {
            let n = cidr.cursor_child(c, bit);
            let v = cidr.cursor_value(n);
            let b = if v == CURSOR_NONE {
                best
            } else {
                class(*cidr.value_at(v))
            };
            kids[bit] = self.overlay(cidr, class, halves[bit], n, b)?;
        }
        self.join(kids[0], kids[1])
    }

    /// Keep only the nodes reachable from the roots.
    fn compact(&mut self, v4: u32, v6: u32) -> (u32, u32) {
        let mut map: FxHashMap<u32, u32> = FxHashMap::default();
        let mut nodes: Vec<[u32; 2]> = Vec::new();
        fn visit(
            s: u32,
            old: &[[u32; 2]],
            map: &mut FxHashMap<u32, u32>,
            nodes: &mut Vec<[u32; 2]>,
        ) -> u32 {
            if s & LEAF != 0 {
                return s;
            }
            if let Some(&n) = map.get(&s) {
                return n;
            }
            let [l, r] = old[s as usize];
            let l = visit(l, old, map, nodes);
            let r = visit(r, old, map, nodes);
            let id = nodes.len() as u32;
            nodes.push([l, r]);
            map.insert(s, id);
            id
        }
        let a = visit(v4, &self.nodes, &mut map, &mut nodes);
        let b = visit(v6, &self.nodes, &mut map, &mut nodes);
        self.nodes = nodes;
        self.dedup.clear();
        (a, b)
    }
}

/// Build a merged trie from a scoped oracle: `oracle(ip)` gives the value at
/// `ip` and a prefix length `s` such that every address in `ip/s` has the
/// same value.
pub fn build(
    oracle: impl FnMut(IpAddr) -> (u32, u8),
    budget: usize,
) -> Result<(DecisionTrie, BuildStats), CompileError> {
    let mut b = Builder {
        arena: Arena {
            nodes: Vec::new(),
            dedup: FxHashMap::default(),
            budget,
        },
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
            nodes: b.arena.nodes.into_boxed_slice(),
            v4_root,
            v6_root,
        },
        stats,
    ))
}

struct Builder<F> {
    arena: Arena,
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
        self.arena.join(left, right)
    }
}
