//! The decision: from the pool list to the pool that answers (first usable,
//! nearest, all-down fallback) and the endpoints it answers with.

use std::net::IpAddr;

use super::{
    AllDown, Balancer, Compiled, Decision, Endpoint, Family, Inputs, MAX_TARGETS, Mode, Policy,
    PoolId, Rng, Rule, Target, Targets, distance_km, rule_for,
};
use crate::geo::{Coords, Location};

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
