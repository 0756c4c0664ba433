//! `[names]` → balancers: where each balanced name sits in its zone, its
//! policy and pool lists, fallback, `max_answers` and `all_down`.

use std::collections::BTreeMap;

use hickory_proto::rr::Name;
use toml::Spanned;

use super::build::{Compiler, GeoField, GeoUse};
use super::parse::parse_abs;
use super::zone_tree::{add_empty_non_terminals, in_zone, parent_is_cut};
use crate::config::quote_key;
use crate::config::raw::{AllDownConfig, NameConfig, PolicyKind, SString};
use crate::select::{AllDown, Balancer, Policy, PoolId, Target};
use crate::zone::{self, Zone, rtype};

impl Compiler<'_> {
    pub(super) fn compile_names(
        &mut self,
        names: &BTreeMap<String, Spanned<NameConfig>>,
        zones: &mut [Zone],
    ) -> Vec<Balancer> {
        let mut out = Vec::new();
        for (name, n) in names {
            let key = format!("names.{}", quote_key(name));
            let fqdn = match parse_abs(name) {
                Ok(f) => f,
                Err(msg) => {
                    self.d.error(n.span(), &key, msg);
                    continue;
                }
            };
            let w = zone::wire_name(&fqdn);
            let Some(zone) = zones
                .iter_mut()
                .filter(|z| in_zone(&w, &z.apex))
                .max_by_key(|z| z.apex.len())
            else {
                self.d.error(
                    n.span(),
                    &key,
                    format!(
                        "{fqdn} is not inside any zone in [zones]; add its zone or fix the name"
                    ),
                );
                continue;
            };
            let Some(b) = self.compile_balancer(&fqdn, n.get_ref(), &key) else {
                continue;
            };
            let has_host = self.balancer_pools(&b).any(|p| {
                self.pools[p as usize]
                    .endpoints
                    .iter()
                    .any(|e| matches!(e.target, Target::Host(_)))
            });
            let node = zone.nodes.entry(w.clone()).or_default();
            let conflict = node.rrsets.iter().any(|s| {
                s.rtype == rtype::A || s.rtype == rtype::AAAA || s.rtype == rtype::CNAME || has_host
            });
            if conflict {
                self.d.error(n.span(), &key, format!("{fqdn} also has static records that conflict with balancing (A/AAAA/CNAME, or any record when a pool has host-name endpoints, which answer with a CNAME)"));
                continue;
            }
            if node.delegation || parent_is_cut(&zone.nodes, &w, &zone.apex) {
                self.d.error(
                    n.span(),
                    &key,
                    format!("{fqdn} is at or below a delegation to a child zone"),
                );
                continue;
            }
            if has_host && w == zone.apex {
                self.d.error(
                    n.span(),
                    &key,
                    "the zone apex cannot be a CNAME, so its pools cannot have host-name endpoints",
                );
                continue;
            }
            if let Some(node) = zone.nodes.get_mut(&w) {
                node.balancer = Some(out.len() as u32);
            }
            add_empty_non_terminals(&mut zone.nodes, &zone.apex.clone());
            out.push(b);
        }
        out
    }

    fn balancer_pools<'b>(&self, b: &'b Balancer) -> impl Iterator<Item = PoolId> + 'b {
        let lists: Box<dyn Iterator<Item = PoolId>> = match &b.policy {
            Policy::Failover(l) | Policy::Proximity(l) | Policy::Weighted(l) => {
                Box::new(l.iter().copied())
            }
            Policy::Geo(m) => Box::new(m.lists.iter().flat_map(|l| l.iter().copied())),
            Policy::Latency(l) => Box::new(l.pools.iter().copied()),
        };
        lists.chain(b.fallback)
    }

    pub(super) fn pool_list(
        &mut self,
        list: &Spanned<Vec<SString>>,
        key: &str,
    ) -> Option<Box<[PoolId]>> {
        if list.get_ref().is_empty() {
            self.d.error(list.span(), key, "list at least one pool");
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, p) in list.get_ref().iter().enumerate() {
            match self.pool_ids.get(p.get_ref()) {
                Some(&id) if out.contains(&id) => {
                    self.d.error(
                        p.span(),
                        format!("{key}[{i}]"),
                        format!("pool {:?} is listed twice", p.get_ref()),
                    );
                    ok = false;
                }
                Some(&id) => out.push(id),
                None => {
                    self.unknown_pool(p, &format!("{key}[{i}]"));
                    ok = false;
                }
            }
        }
        ok.then(|| out.into_boxed_slice())
    }

    fn unknown_pool(&mut self, p: &SString, key: &str) {
        let mut known: Vec<&str> = self.pool_ids.keys().map(String::as_str).collect();
        known.sort_unstable();
        let known = if known.is_empty() {
            "none are defined".to_string()
        } else {
            format!("defined pools: {}", known.join(", "))
        };
        self.d.error(
            p.span(),
            key,
            format!("unknown pool {:?}; {known}", p.get_ref()),
        );
    }

    fn compile_balancer(&mut self, fqdn: &Name, n: &NameConfig, key: &str) -> Option<Balancer> {
        let kind = *n.policy.get_ref();
        super::cluster::check_latency_keys(&mut self.d, n, key);
        let policy = match kind {
            PolicyKind::Geo => {
                if let Some(p) = &n.pools {
                    self.d.error(p.span(), format!("{key}.pools"), "policy \"geo\" takes its pools from the geo map; remove `pools` or change the policy");
                }
                let Some(g) = &n.geo else {
                    self.d.error(n.policy.span(), format!("{key}.policy"), format!("policy \"geo\" needs a [{key}.geo] table with at least `default = [\"pool\"]`"));
                    return None;
                };
                self.geo_uses.push(GeoUse {
                    span: g.span(),
                    key: format!("{key}.geo"),
                    field: GeoField::Location,
                });
                Policy::Geo(Box::new(
                    self.compile_geo_map(g.get_ref(), &format!("{key}.geo"))?,
                ))
            }
            other => {
                if let Some(g) = &n.geo {
                    self.d.error(g.span(), format!("{key}.geo"), format!("a geo map is only used with policy = \"geo\" (this name uses {other:?})"));
                }
                let Some(p) = &n.pools else {
                    self.d.error(
                        n.policy.span(),
                        format!("{key}.pools"),
                        "this policy needs `pools = [\"pool\", ...]`",
                    );
                    return None;
                };
                let list = self.pool_list(p, &format!("{key}.pools"))?;
                match other {
                    PolicyKind::Failover => Policy::Failover(list),
                    PolicyKind::Proximity => Policy::Proximity(list),
                    PolicyKind::Latency => {
                        super::cluster::latency_policy(&mut self.d, n, list, p, key)?
                    }
                    _ => Policy::Weighted(list),
                }
            }
        };
        let fallback = match &n.fallback {
            Some(f) => match self.pool_ids.get(f.get_ref()) {
                Some(&id) => Some(id),
                None => {
                    self.unknown_pool(f, &format!("{key}.fallback"));
                    None
                }
            },
            None => None,
        };
        let max_answers = match &n.max_answers {
            Some(m) if *m.get_ref() == 0 => {
                self.d.error(
                    m.span(),
                    format!("{key}.max_answers"),
                    "must be at least 1 (leave it out to answer every usable endpoint)",
                );
                1
            }
            Some(m) => *m.get_ref() as usize,
            None if kind == PolicyKind::Weighted => 1,
            None => usize::MAX,
        };
        Some(Balancer {
            name: fqdn.to_string(),
            ttl: n.ttl.get_ref().as_ttl(),
            policy,
            fallback,
            max_answers,
            all_down: match n.all_down {
                AllDownConfig::FailOpen => AllDown::FailOpen,
                AllDownConfig::Nodata => AllDown::Nodata,
            },
        })
    }
}
