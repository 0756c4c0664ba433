//! `[pools]` → pools: endpoints (address or host name, weight, label),
//! `min_healthy`, and the coordinates proximity steering uses.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;

use toml::Spanned;

use super::build::Compiler;
use super::parse::{parse_abs, parse_coords, parse_country, parse_subdivision};
use crate::config::quote_key;
use crate::config::raw::PoolConfig;
use crate::geo;
use crate::select::{Endpoint, Pool, PoolId, Target};
use crate::zone;

impl Compiler<'_> {
    pub(super) fn compile_pools(&mut self, pools: &BTreeMap<String, Spanned<PoolConfig>>) {
        for (name, p) in pools {
            let key = format!("pools.{}", quote_key(name));
            let pool = self.compile_pool(name, p, &key);
            self.pool_ids
                .insert(name.clone(), self.pools.len() as PoolId);
            self.pools.push(pool);
        }
    }

    fn compile_pool(&mut self, name: &str, p: &Spanned<PoolConfig>, key: &str) -> Pool {
        let d = &mut self.d;
        let pc = p.get_ref();
        let mut endpoints = Vec::new();
        let mut seen = HashSet::new();
        if pc.endpoints.get_ref().is_empty() {
            d.error(
                pc.endpoints.span(),
                format!("{key}.endpoints"),
                "a pool needs at least one endpoint",
            );
        }
        for (i, e) in pc.endpoints.get_ref().iter().enumerate() {
            let ekey = format!("{key}.endpoints[{i}]");
            let text = e.address.get_ref().trim();
            let (target, rdata) = if let Ok(ip) = IpAddr::from_str(text) {
                match ip {
                    IpAddr::V4(a) => (Target::V4(a), Box::from(&a.octets()[..])),
                    IpAddr::V6(a) => (Target::V6(a), Box::from(&a.octets()[..])),
                }
            } else {
                match parse_abs(text) {
                    Ok(n) if n.num_labels() >= 2 => {
                        let w = zone::wire_name(&n);
                        (Target::Host(w.clone()), w)
                    }
                    Ok(_) => {
                        d.error(
                            e.address.span(),
                            format!("{ekey}.address"),
                            format!("{text:?} is neither an IP address nor a full host name"),
                        );
                        continue;
                    }
                    Err(msg) => {
                        d.error(
                            e.address.span(),
                            format!("{ekey}.address"),
                            format!("{msg}; expected an IPv4/IPv6 address or a host name"),
                        );
                        continue;
                    }
                }
            };
            if !seen.insert(target.clone()) {
                d.error(
                    e.address.span(),
                    format!("{ekey}.address"),
                    format!("{text:?} is listed twice in pool {name:?}"),
                );
            }
            if *e.weight.get_ref() == 0 {
                d.error(
                    e.weight.span(),
                    format!("{ekey}.weight"),
                    "weight must be at least 1 (zero weight could never be picked); use enabled = false to take an endpoint out of service",
                );
            }
            endpoints.push(Endpoint {
                id: self.endpoints,
                label: e
                    .name
                    .as_ref()
                    .map_or_else(|| text.to_string(), |n| n.get_ref().clone()),
                target,
                rdata,
                weight: (*e.weight.get_ref()).max(1),
                enabled: e.enabled,
            });
            self.endpoints += 1;
        }
        let min_healthy = *pc.min_healthy.get_ref();
        if min_healthy == 0 || min_healthy as usize > pc.endpoints.get_ref().len().max(1) {
            d.error(
                pc.min_healthy.span(),
                format!("{key}.min_healthy"),
                format!(
                    "must be between 1 and the number of endpoints ({})",
                    pc.endpoints.get_ref().len()
                ),
            );
        }
        let mut coords = parse_coords(pc.latitude.as_ref(), pc.longitude.as_ref(), key, d);
        if let Some(r) = &pc.region {
            let rkey = format!("{key}.region");
            let country = if r.get_ref().contains('-') {
                parse_subdivision(r, &rkey, d).map(|s| s.country)
            } else {
                parse_country(r, &rkey, d)
            };
            if coords.is_none() {
                coords = country.and_then(geo::tables::centroid_of);
            }
        }
        Pool {
            name: name.to_string(),
            endpoints: endpoints.into_boxed_slice(),
            min_healthy: min_healthy.max(1),
            coords,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::select::Target;
    use crate::snapshot::testing::run_compiler;

    #[test]
    fn endpoints_get_ids_labels_and_targets() {
        let (c, e) = run_compiler(
            "[pools.a]\nendpoints = [{ address = \"192.0.2.1\" }, { address = \"2001:db8::1\", name = \"six\", weight = 3 }]\n\
             [pools.b]\nendpoints = [{ address = \"origin.example.net\" }]\nlatitude = 10.0\nlongitude = 20.0\n",
            |f, c| {
                c.compile_pools(&f.pools);
                (
                    std::mem::take(&mut c.pools),
                    c.pool_ids.clone(),
                    c.endpoints,
                )
            },
        );
        assert_eq!(e, "");
        let (pools, ids, n) = c;
        assert_eq!((ids["a"], ids["b"], n), (0, 1, 3));
        let a = &pools[0];
        assert_eq!(
            a.endpoints[0].label, "192.0.2.1",
            "the label defaults to the address"
        );
        assert_eq!(a.endpoints[1].label, "six");
        assert_eq!(a.endpoints[1].weight, 3);
        assert_eq!(a.endpoints[1].id, 1);
        assert!(matches!(pools[1].endpoints[0].target, Target::Host(_)));
        assert_eq!(pools[1].endpoints[0].id, 2, "ids run across pools");
        assert_eq!(pools[1].coords.map(|c| (c.lat, c.lon)), Some((10.0, 20.0)));
        assert!(pools[0].coords.is_none());
    }

    #[test]
    fn a_region_gives_coordinates() {
        let (c, e) = run_compiler(
            "[pools.a]\nendpoints = [{ address = \"192.0.2.1\" }]\nregion = \"FR\"\n",
            |f, c| {
                c.compile_pools(&f.pools);
                c.pools[0].coords
            },
        );
        assert_eq!(e, "");
        assert!(c.is_some(), "the country's centroid");
    }

    #[test]
    fn pool_errors() {
        let (_, e) = run_compiler(
            "[pools.a]\nendpoints = [{ address = \"192.0.2.1\" }, { address = \"192.0.2.1\" }, { address = \"localhost\" }, { address = \"192.0.2.2\", weight = 0 }]\nmin_healthy = 9\n\
             [pools.b]\nendpoints = []\n",
            |f, c| c.compile_pools(&f.pools),
        );
        for want in [
            "pools.a.endpoints[1].address: \"192.0.2.1\" is listed twice in pool \"a\"",
            "pools.a.endpoints[2].address: \"localhost\" is neither an IP address nor a full host name",
            "pools.a.endpoints[3].weight: weight must be at least 1",
            "pools.a.min_healthy: must be between 1 and the number of endpoints (4)",
            "pools.b.endpoints: a pool needs at least one endpoint",
        ] {
            assert!(e.contains(want), "{want} in\n{e}");
        }
    }
}
