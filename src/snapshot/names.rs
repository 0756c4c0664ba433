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

#[cfg(test)]
mod tests {
    use crate::select::{Balancer, Policy};
    use crate::snapshot::testing::run_compiler;
    use crate::zone::{self, Zone, rtype};

    const BASE: &str = "[zones.\"example.com\"]\nns = [\"ns1\"]\n\
        records = [{ name = \"static\", type = \"A\", data = \"192.0.2.9\" }, { name = \"sub\", type = \"NS\", data = \"ns.other.net.\" }]\n\
        [pools.eu]\nendpoints = [{ address = \"192.0.2.1\" }]\n\
        [pools.na]\nendpoints = [{ address = \"192.0.2.2\" }]\n\
        [pools.cdn]\nendpoints = [{ address = \"edge.cdn.net\" }]\n";

    fn names(extra: &str) -> ((Vec<Balancer>, Vec<Zone>), String) {
        run_compiler(&format!("{BASE}{extra}"), |f, c| {
            c.compile_pools(&f.pools);
            let mut zones = crate::snapshot::zones::compile_zones(&mut c.d, &f.zones);
            let b = c.compile_names(&f.names, &mut zones);
            (b, zones)
        })
    }

    #[test]
    fn a_balanced_name_is_hooked_into_its_zone() {
        let ((b, z), e) = names(
            "[names.\"www.example.com\"]\npolicy = \"failover\"\npools = [\"eu\", \"na\"]\nfallback = \"na\"\n\
             [names.\"w.example.com\"]\npolicy = \"weighted\"\npools = [\"eu\"]\n",
        );
        assert_eq!(e, "");
        let www = b.iter().position(|x| x.name == "www.example.com.").unwrap();
        assert!(
            matches!(&b[www].policy, Policy::Failover(l) if l[..] == [1, 2]),
            "ids by name order: cdn, eu, na"
        );
        assert_eq!(b[www].fallback, Some(2));
        assert_eq!(b[www].max_answers, usize::MAX);
        let w = b.iter().position(|x| x.name == "w.example.com.").unwrap();
        assert_eq!(b[w].max_answers, 1, "weighted answers one by default");
        let node = &z[0].nodes[&zone::wire_name(&"www.example.com.".parse().unwrap())];
        assert_eq!(node.balancer, Some(www as u32));
        assert!(node.rrset(rtype::A).is_none());
    }

    #[test]
    fn name_errors() {
        let (_, e) = names(
            "[names.\"www.example.org\"]\npolicy = \"failover\"\npools = [\"eu\"]\n\
             [names.\"static.example.com\"]\npolicy = \"failover\"\npools = [\"eu\"]\n\
             [names.\"x.sub.example.com\"]\npolicy = \"failover\"\npools = [\"eu\"]\n\
             [names.\"example.com\"]\npolicy = \"failover\"\npools = [\"cdn\"]\n\
             [names.\"u.example.com\"]\npolicy = \"failover\"\npools = [\"eu\", \"eu\", \"xx\"]\n\
             [names.\"g.example.com\"]\npolicy = \"geo\"\n\
             [names.\"m.example.com\"]\npolicy = \"failover\"\npools = [\"eu\"]\nmax_answers = 0\n",
        );
        for want in [
            "www.example.org. is not inside any zone in [zones]",
            "static.example.com. also has static records that conflict with balancing",
            "x.sub.example.com. is at or below a delegation to a child zone",
            "names.\"example.com\": example.com. also has static records",
            "pools[1]: pool \"eu\" is listed twice",
            "pools[2]: unknown pool \"xx\"; defined pools: cdn, eu, na",
            "policy \"geo\" needs a [names.\"g.example.com\".geo] table",
            "max_answers: must be at least 1",
        ] {
            assert!(e.contains(want), "{want} in\n{e}");
        }
    }
}
