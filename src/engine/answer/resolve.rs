//! Resolution inside a zone: find where a name leads (node, delegation,
//! NXDOMAIN) and write the answer, authority and additional sections.

use super::response::{Response, Section};
use super::{AnswerInfo, Client, MAX_CHAIN, rcode, steer};
use crate::engine::wire::Query;
use crate::select::{self, Family, Inputs, Rng, Target};
use crate::snapshot::Snapshot;
use crate::zone::{self, Node, Zone, rtype};

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
pub(super) fn resolve(
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
