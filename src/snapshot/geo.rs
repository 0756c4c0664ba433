//! `[geoip]` → the geo database: paths, overrides, opening (with reuse
//! of an unchanged database), and the warnings for rules the opened
//! databases cannot match.

use std::path::PathBuf;
use std::sync::Arc;

use super::build::{GeoField, GeoMode, GeoUse};
use super::parse::{parse_continent, parse_coords, parse_country, parse_net, parse_subdivision};
use crate::config::raw::{ConfigFile, SString};
use crate::config::{ConfigError, Diagnostics, Source};
use crate::geo::{self, GeoDb, Location, LocationOverride, LocationSource};

/// The location database paths of `[geoip]`, with their config keys.
fn location_paths<'f>(
    source: &Source,
    file: &'f ConfigFile,
) -> Vec<(PathBuf, String, &'f SString)> {
    let resolve = |p: &SString| -> PathBuf { source.dir().join(p.get_ref()) };
    let mut v: Vec<_> = file
        .geoip
        .database
        .iter()
        .map(|d| (resolve(d), "geoip.database".to_owned(), d))
        .collect();
    for (i, d) in file.geoip.databases.iter().enumerate() {
        v.push((resolve(d), format!("geoip.databases[{i}]"), d));
    }
    v
}

/// Open the GeoIP databases a config names (relative to the config's
/// directory), or return `previous` itself when its databases and
/// overrides did not change (then its partition and tries are reused).
/// Slow for big databases: call it off the hot path.
pub(super) fn open_geo_reusing(
    source: &Source,
    file: &ConfigFile,
    previous: Option<&Arc<GeoDb>>,
    mode: GeoMode,
) -> Result<Arc<GeoDb>, ConfigError> {
    let mut diags = Diagnostics::new(source);
    let overrides = compile_overrides(file, &mut diags);
    let locs = location_paths(source, file);
    if let (Some(d), false) = (&file.geoip.database, file.geoip.databases.is_empty()) {
        diags.error(
            d.span(),
            "geoip.database",
            "give either `database` (one file) or `databases` (a list), not both",
        );
    }
    if locs.len() > geo::partition::MAX_LOCATION_DBS {
        diags.error(
            locs[geo::partition::MAX_LOCATION_DBS].2.span(),
            "geoip.databases",
            format!(
                "at most {} location databases",
                geo::partition::MAX_LOCATION_DBS
            ),
        );
    }
    let asn = file.geoip.asn_database.as_ref();
    let asn_path = asn.map(|p| source.dir().join(p.get_ref()));
    diags.finish()?;
    let spec = geo::GeoSpec {
        location: locs.iter().map(|l| l.0.clone()).collect(),
        asn: asn_path.clone(),
        overrides,
        predecode: mode == GeoMode::Serve,
    };
    GeoDb::open_spec(&spec, previous).map_err(|e| {
        let mut diags = Diagnostics::new(source);
        let path = match &e {
            geo::GeoError::Open { path, .. } | geo::GeoError::Invalid { path, .. } => path,
        };
        let (key, span) = match (path, asn) {
            (p, Some(a)) if Some(p) == asn_path.as_ref() => {
                ("geoip.asn_database".to_owned(), a.span())
            }
            (p, _) if locs.iter().any(|l| &l.0 == p) => {
                let l = locs.iter().find(|l| &l.0 == p).expect("found");
                (l.1.clone(), l.2.span())
            }
            _ => ("geoip".to_owned(), 0..0),
        };
        diags.error(span, key, e);
        match diags.finish() {
            Err(err) => err,
            Ok(()) => unreachable!("an error was recorded"),
        }
    })
}

pub(super) fn compile_overrides(
    file: &ConfigFile,
    d: &mut Diagnostics<'_>,
) -> Vec<LocationOverride> {
    let mut out = Vec::new();
    for (i, o) in file.geoip.overrides.iter().enumerate() {
        let key = format!("geoip.override[{i}]");
        let Some(net) = parse_net(&o.cidr, &format!("{key}.cidr"), d) else {
            continue;
        };
        let country = o
            .country
            .as_ref()
            .and_then(|c| parse_country(c, &format!("{key}.country"), d));
        let continent = match &o.continent {
            Some(c) => parse_continent(c, &format!("{key}.continent"), d),
            None => country.and_then(geo::tables::continent_of),
        };
        let subdivision = o
            .subdivision
            .as_ref()
            .and_then(|s| parse_subdivision(s, &format!("{key}.subdivision"), d));
        let coords = parse_coords(o.latitude.as_ref(), o.longitude.as_ref(), &key, d)
            .or_else(|| country.and_then(geo::tables::centroid_of));
        if continent.is_none() && country.is_none() && o.asn.is_none() && coords.is_none() {
            d.error(o.cidr.span(), &key, "an override needs at least one of continent, country, subdivision, asn, latitude/longitude");
        }
        out.push(LocationOverride {
            net,
            location: Location {
                continent,
                country,
                subdivision,
                asn: o.asn,
                coords,
                source: LocationSource::Override,
                scope: 0,
                asn_scope: 0,
            },
        });
    }
    out
}
/// Warnings (`file:line:col: key: warning: ...`) for rules that cannot
/// match with the configured databases: subdivision rules on databases
/// without subdivisions (ip-location-db's flat files), ASN rules without
/// any ASN source, geo names without any location source. Not errors: the
/// config works, those rules just never match.
pub(super) fn geo_warnings(source: &Source, geo: &GeoDb, uses: &[GeoUse]) -> Vec<String> {
    let has_location = !geo.location_dbs_info().is_empty() || geo.override_count() > 0;
    let mut out = Vec::new();
    for u in uses {
        let msg = match u.field {
            GeoField::Location if !has_location => {
                "no [geoip] database or override is configured: every client gets the unlocated answer"
            }
            GeoField::Subdivision if !geo.has_subdivisions() => {
                "no location database record has a subdivision (flat files such as ip-location-db's have none): subdivision rules never match"
            }
            GeoField::Asn if !geo.has_asns() => {
                "no ASN source (geoip.asn_database, ASN fields in the location database, or overrides with an asn): ASN rules never match"
            }
            _ => continue,
        };
        let (line, col) = source.line_col(u.span.start);
        out.push(format!(
            "{}:{line}:{col}: {}: warning: {msg}",
            source.path.display(),
            u.key
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::testing::{run, source};

    #[test]
    fn overrides_fill_continent_and_coordinates_from_the_country() {
        let (o, e) = run(
            "[[geoip.override]]\ncidr = \"192.0.2.0/24\"\ncountry = \"FR\"\n\
             [[geoip.override]]\ncidr = \"198.51.100.0/24\"\nasn = 64512\n\
             [[geoip.override]]\ncidr = \"203.0.113.0/24\"\n",
            |_, f, d| compile_overrides(f, d),
        );
        assert!(
            e.contains("geoip.override[2]: an override needs at least one of"),
            "{e}"
        );
        assert_eq!(o.len(), 3);
        let fr = &o[0].location;
        assert!(fr.continent.is_some() && fr.coords.is_some(), "{fr:?}");
        assert_eq!(fr.source, LocationSource::Override);
        assert_eq!(
            (o[1].location.asn, o[1].location.country),
            (Some(64512), None)
        );
    }

    #[test]
    fn warnings_for_rules_the_databases_cannot_match() {
        let src = source("x = 1\n");
        let empty = GeoDb::open(None, None, Vec::new()).unwrap();
        let uses = [
            GeoUse {
                span: 0..1,
                key: "names.a.geo".into(),
                field: GeoField::Location,
            },
            GeoUse {
                span: 0..1,
                key: "names.a.geo.asn.1".into(),
                field: GeoField::Asn,
            },
        ];
        let w = geo_warnings(&src, &empty, &uses);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("t.toml:1:1: names.a.geo: warning: no [geoip] database"),
            "{w:?}"
        );
        assert!(w[1].contains("ASN rules never match"), "{w:?}");
    }

    #[test]
    fn database_errors_point_at_their_key() {
        let src = source("[geoip]\ndatabase = \"a.mmdb\"\ndatabases = [\"b.mmdb\"]\n");
        let file = crate::config::parse(&src).unwrap();
        let e = open_geo_reusing(&src, &file, None, GeoMode::Serve)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.toml:2:12: geoip.database: give either `database`"),
            "{e}"
        );
        let src = source("[geoip]\nasn_database = \"missing.mmdb\"\n");
        let file = crate::config::parse(&src).unwrap();
        let e = open_geo_reusing(&src, &file, None, GeoMode::Serve)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml:2:16: geoip.asn_database: "), "{e}");
    }

    #[test]
    fn the_sample_database_opens_relative_to_the_config() {
        let src = crate::config::Source {
            path: "geoip/../config/t.toml".into(),
            text: "[geoip]\ndatabase = \"../geoip/sample.mmdb\"\n".into(),
        };
        let file = crate::config::parse(&src).unwrap();
        let db = open_geo_reusing(&src, &file, None, GeoMode::Explain).expect("opens");
        assert_eq!(db.location_dbs_info().len(), 1);
    }
}
