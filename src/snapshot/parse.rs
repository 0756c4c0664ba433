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
