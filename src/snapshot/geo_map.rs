//! A name's `[names.x.geo]` table → its [`GeoMap`]: pool lists interned
//! per continent, country, subdivision, ASN and network.

use toml::Spanned;

use super::build::{Compiler, GeoField, GeoUse};
use super::parse::parse_net;
use crate::config::quote_key;
use crate::config::raw::{GeoMapConfig, SString};
use crate::geo::trie::PrefixTrie;
use crate::geo::{Continent, CountryCode, Subdivision};
use crate::select::GeoMap;

impl Compiler<'_> {
    pub(super) fn compile_geo_map(&mut self, g: &GeoMapConfig, key: &str) -> Option<GeoMap> {
        let mut m = GeoMap::default();
        let mut ok = true;
        let intern = |c: &mut Self,
                      list: &Spanned<Vec<SString>>,
                      k: String,
                      m: &mut GeoMap|
         -> Option<u32> {
            let l = c.pool_list(list, &k)?;
            if let Some(i) = m.lists.iter().position(|x| *x == l) {
                return Some(i as u32);
            }
            m.lists.push(l);
            Some(m.lists.len() as u32 - 1)
        };
        match intern(self, &g.default, format!("{key}.default"), &mut m) {
            Some(i) => m.default = i,
            None => ok = false,
        }
        for (code, list) in &g.continent {
            let k = format!("{key}.continent.{}", quote_key(code));
            let c = Continent::from_code(code)
                .map_err(|e| self.d.error(list.span(), &k, e))
                .ok();
            if let (Some(c), Some(i)) = (c, intern(self, list, k, &mut m)) {
                m.continent.insert(c, i);
            }
        }
        for (code, list) in &g.country {
            let k = format!("{key}.country.{}", quote_key(code));
            let c = CountryCode::parse(code)
                .map_err(|e| self.d.error(list.span(), &k, e))
                .ok();
            if let (Some(c), Some(i)) = (c, intern(self, list, k, &mut m)) {
                m.country.insert(c, i);
            }
        }
        if let Some((code, list)) = g.subdivision.iter().next() {
            self.geo_uses.push(GeoUse {
                span: list.span(),
                key: format!("{key}.subdivision.{}", quote_key(code)),
                field: GeoField::Subdivision,
            });
        }
        if let Some((code, list)) = g.asn.iter().next() {
            self.geo_uses.push(GeoUse {
                span: list.span(),
                key: format!("{key}.asn.{}", quote_key(code)),
                field: GeoField::Asn,
            });
        }
        for (code, list) in &g.subdivision {
            let k = format!("{key}.subdivision.{}", quote_key(code));
            let c = Subdivision::parse(code)
                .map_err(|e| self.d.error(list.span(), &k, e))
                .ok();
            if let (Some(c), Some(i)) = (c, intern(self, list, k, &mut m)) {
                m.subdivision.insert(c, i);
            }
        }
        for (code, list) in &g.asn {
            let k = format!("{key}.asn.{}", quote_key(code));
            let a = code
                .trim_start_matches(['A', 'S', 'a', 's'])
                .parse::<u32>()
                .ok();
            if a.is_none() {
                self.d.error(
                    list.span(),
                    &k,
                    format!("{code:?} is not an AS number; write e.g. \"64512\" or \"AS64512\""),
                );
            }
            if let (Some(a), Some(i)) = (a, intern(self, list, k, &mut m)) {
                m.asn.insert(a, i);
            }
        }
        let mut trie = PrefixTrie::new();
        for (net, list) in &g.cidr {
            let k = format!("{key}.cidr.{}", quote_key(net));
            let parsed = parse_net(&Spanned::new(list.span(), net.clone()), &k, &mut self.d);
            if let (Some(n), Some(i)) = (parsed, intern(self, list, k, &mut m)) {
                trie.insert(n, i);
                m.has_cidr = true;
            }
        }
        m.cidr = trie;
        ok.then_some(m)
    }
}

#[cfg(test)]
mod tests {
    use crate::geo::{Continent, CountryCode};
    use crate::select::GeoMap;
    use crate::snapshot::build::GeoField;
    use crate::snapshot::testing::run_compiler;

    fn geo(table: &str) -> ((Option<GeoMap>, Vec<GeoField>), String) {
        let text = format!(
            "[pools.eu]\nendpoints = [{{ address = \"192.0.2.1\" }}]\n\
             [pools.na]\nendpoints = [{{ address = \"192.0.2.2\" }}]\n\
             [names.\"www.example.com\"]\npolicy = \"geo\"\n[names.\"www.example.com\".geo]\n{table}"
        );
        run_compiler(&text, |f, c| {
            c.compile_pools(&f.pools);
            let g = f.names["www.example.com"].get_ref().geo.as_ref().unwrap();
            let m = c.compile_geo_map(g.get_ref(), "g");
            (m, c.geo_uses.iter().map(|u| u.field).collect())
        })
    }

    #[test]
    fn lists_are_interned_per_key() {
        let ((m, uses), e) = geo(
            "default = [\"eu\"]\ncontinent = { NA = [\"na\", \"eu\"] }\ncountry = { FR = [\"eu\"] }\n\
             asn = { AS64512 = [\"na\", \"eu\"] }\ncidr = { \"10.0.0.0/8\" = [\"na\"] }\nsubdivision = { \"US-CA\" = [\"na\"] }\n",
        );
        assert_eq!(e, "");
        let m = m.unwrap();
        assert_eq!(m.lists.len(), 3, "[eu], [na, eu], [na]");
        assert_eq!(m.lists[m.default as usize][..], [0]);
        let na = m.continent[&Continent::from_code("NA").unwrap()];
        assert_eq!(m.lists[na as usize][..], [1, 0]);
        assert_eq!(m.asn[&64512], na, "the same list, interned once");
        assert_eq!(m.country[&CountryCode::parse("FR").unwrap()], m.default);
        assert!(m.has_cidr);
        assert_eq!(m.subdivision.len(), 1);
        assert!(uses.contains(&GeoField::Subdivision) && uses.contains(&GeoField::Asn));
    }

    #[test]
    fn bad_keys_and_lists() {
        let ((m, _), e) = geo(
            "default = [\"zz\"]\ncontinent = { XX = [\"eu\"] }\nasn = { nope = [\"eu\"] }\ncidr = { \"10.0.0.1/8\" = [\"eu\"] }\n",
        );
        assert!(m.is_none(), "no default list");
        for want in [
            "g.default[0]: unknown pool \"zz\"",
            "g.continent.XX: ",
            "g.asn.nope: \"nope\" is not an AS number",
            "g.cidr.\"10.0.0.1/8\": \"10.0.0.1/8\" has host bits set",
        ] {
            assert!(e.contains(want), "{want} in\n{e}");
        }
    }
}
