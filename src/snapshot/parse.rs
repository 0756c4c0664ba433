//! Value parsers shared by the compile steps: networks, geo codes,
//! coordinates and domain names, each reporting into [`Diagnostics`].

use std::net::IpAddr;
use std::str::FromStr;

use hickory_proto::rr::Name;
use toml::Spanned;

use crate::config::Diagnostics;
use crate::config::raw::SString;
use crate::geo::{Continent, Coords, CountryCode, Subdivision};

pub(super) fn parse_net(s: &SString, key: &str, d: &mut Diagnostics<'_>) -> Option<ipnet::IpNet> {
    let text = s.get_ref();
    let net = match ipnet::IpNet::from_str(text) {
        Ok(n) => n,
        Err(_) => {
            match IpAddr::from_str(text) {
                Ok(ip) => ipnet::IpNet::from(ip),
                Err(_) => {
                    d.error(s.span(), key, format!("{text:?} is not a network; write e.g. \"10.0.0.0/8\" or \"2001:db8::/32\""));
                    return None;
                }
            }
        }
    };
    if net.trunc() != net {
        d.error(
            s.span(),
            key,
            format!(
                "{text:?} has host bits set; did you mean \"{}\"?",
                net.trunc()
            ),
        );
        return None;
    }
    Some(net)
}

pub(super) fn parse_country(
    s: &SString,
    key: &str,
    d: &mut Diagnostics<'_>,
) -> Option<CountryCode> {
    CountryCode::parse(s.get_ref())
        .map_err(|e| d.error(s.span(), key, e))
        .ok()
}

pub(super) fn parse_continent(
    s: &SString,
    key: &str,
    d: &mut Diagnostics<'_>,
) -> Option<Continent> {
    Continent::from_code(s.get_ref())
        .map_err(|e| d.error(s.span(), key, e))
        .ok()
}

pub(super) fn parse_subdivision(
    s: &SString,
    key: &str,
    d: &mut Diagnostics<'_>,
) -> Option<Subdivision> {
    Subdivision::parse(s.get_ref())
        .map_err(|e| d.error(s.span(), key, e))
        .ok()
}

pub(super) fn parse_coords(
    lat: Option<&Spanned<f64>>,
    lon: Option<&Spanned<f64>>,
    key: &str,
    d: &mut Diagnostics<'_>,
) -> Option<Coords> {
    match (lat, lon) {
        (None, None) => None,
        (Some(la), Some(lo)) => {
            let (a, o) = (*la.get_ref(), *lo.get_ref());
            if !(-90.0..=90.0).contains(&a) {
                d.error(
                    la.span(),
                    format!("{key}.latitude"),
                    "must be between -90 and 90",
                );
                return None;
            }
            if !(-180.0..=180.0).contains(&o) {
                d.error(
                    lo.span(),
                    format!("{key}.longitude"),
                    "must be between -180 and 180",
                );
                return None;
            }
            Some(Coords {
                lat: a as f32,
                lon: o as f32,
            })
        }
        (Some(x), None) | (None, Some(x)) => {
            d.error(
                x.span(),
                key,
                "give both latitude and longitude, or neither",
            );
            None
        }
    }
}

/// Parse an absolute name (a trailing dot is optional).
pub(super) fn parse_abs(s: &str) -> Result<Name, String> {
    let mut n = Name::from_str(s).map_err(|e| format!("{s:?} is not a valid domain name: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

/// Parse a name the zone-file way: `@` is the apex, a trailing dot makes
/// it absolute, anything else is relative to the zone.
pub(super) fn parse_in_zone(s: &str, apex: &Name) -> Result<Name, String> {
    if s == "@" {
        return Ok(apex.clone());
    }
    let n = Name::from_str(s).map_err(|e| format!("{s:?} is not a valid domain name: {e}"))?;
    if n.is_fqdn() {
        Ok(n)
    } else {
        n.append_domain(apex).map_err(|e| format!("{s:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::testing::run;

    fn s(text: &str) -> SString {
        Spanned::new(0..text.len(), text.to_string())
    }

    #[test]
    fn networks() {
        let (n, e) = run("", |_, _, d| parse_net(&s("10.0.0.0/8"), "k", d));
        assert_eq!(
            (n.unwrap().to_string(), e),
            ("10.0.0.0/8".into(), "".into())
        );
        let (n, _) = run("", |_, _, d| parse_net(&s("2001:db8::1"), "k", d));
        assert_eq!(
            n.unwrap().to_string(),
            "2001:db8::1/128",
            "an address is its host prefix"
        );
        let (n, e) = run("", |_, _, d| parse_net(&s("10.1.2.3/8"), "k", d));
        assert!(n.is_none());
        assert!(
            e.contains("k: \"10.1.2.3/8\" has host bits set; did you mean \"10.0.0.0/8\"?"),
            "{e}"
        );
        let (n, e) = run("", |_, _, d| parse_net(&s("ten"), "k", d));
        assert!(n.is_none() && e.contains("\"ten\" is not a network"), "{e}");
    }

    #[test]
    fn coordinates_come_in_pairs_and_ranges() {
        let at = |v: f64| Spanned::new(0..1, v);
        let (c, e) = run("", |_, _, d| {
            parse_coords(Some(&at(48.0)), Some(&at(2.5)), "p", d)
        });
        assert_eq!(
            (c.map(|c| (c.lat, c.lon)), e),
            (Some((48.0, 2.5)), String::new())
        );
        let (c, e) = run("", |_, _, d| parse_coords(None, None, "p", d));
        assert_eq!((c.is_none(), e), (true, String::new()));
        let (c, e) = run("", |_, _, d| parse_coords(Some(&at(1.0)), None, "p", d));
        assert!(
            c.is_none() && e.contains("give both latitude and longitude"),
            "{e}"
        );
        let (_, e) = run("", |_, _, d| {
            parse_coords(Some(&at(91.0)), Some(&at(0.0)), "p", d)
        });
        assert!(e.contains("p.latitude: must be between -90 and 90"), "{e}");
        let (_, e) = run("", |_, _, d| {
            parse_coords(Some(&at(0.0)), Some(&at(-181.0)), "p", d)
        });
        assert!(
            e.contains("p.longitude: must be between -180 and 180"),
            "{e}"
        );
    }

    #[test]
    fn geo_codes() {
        let (c, e) = run("", |_, _, d| parse_country(&s("FR"), "k", d));
        assert!(c.is_some() && e.is_empty(), "{e}");
        let (c, e) = run("", |_, _, d| parse_continent(&s("XX"), "k", d));
        assert!(c.is_none() && e.contains("k: "), "{e}");
        let (c, e) = run("", |_, _, d| parse_subdivision(&s("US-CA"), "k", d));
        assert!(c.is_some() && e.is_empty(), "{e}");
    }

    #[test]
    fn names_absolute_and_in_zone() {
        let apex = parse_abs("example.com").unwrap();
        assert_eq!(
            apex.to_string(),
            "example.com.",
            "the trailing dot is optional"
        );
        assert_eq!(parse_in_zone("@", &apex).unwrap(), apex);
        assert_eq!(
            parse_in_zone("www", &apex).unwrap().to_string(),
            "www.example.com."
        );
        assert_eq!(
            parse_in_zone("ns.other.net.", &apex).unwrap().to_string(),
            "ns.other.net."
        );
        let long = "a".repeat(64);
        assert!(
            parse_abs(&long)
                .unwrap_err()
                .contains("is not a valid domain name")
        );
    }
}
