//! Which rule of a balanced name applies to a located client, and the ECS
//! scope over which that stays true (the reference the decision tries are
//! built from).

use std::net::IpAddr;

use super::{Balancer, GeoMap, Policy, PoolId, Rule};
use crate::geo::Location;

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
