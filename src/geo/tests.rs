//! Tests of `GeoDb` against databases generated with the writer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::IpNet;

use super::mmdb_writer::{IpVersion, MmdbValue, MmdbWriter};
use super::*;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn cc(s: &str) -> CountryCode {
    CountryCode::parse(s).unwrap()
}

/// A GeoLite2-City-like record.
fn city(cont: Option<&str>, country: &str, sub: Option<&str>, ll: Option<(f64, f64)>) -> MmdbValue {
    let mut m = Vec::new();
    if let Some(c) = cont {
        m.push((
            "continent".to_owned(),
            MmdbValue::map([
                ("code", MmdbValue::string(c)),
                ("geoname_id", MmdbValue::Uint32(6255148)),
                (
                    "names",
                    MmdbValue::map([
                        ("en", MmdbValue::string("Somewhere")),
                        ("de", MmdbValue::string("Irgendwo")),
                    ]),
                ),
            ]),
        ));
    }
    m.push((
        "country".to_owned(),
        MmdbValue::map([
            ("geoname_id", MmdbValue::Uint32(1)),
            ("iso_code", MmdbValue::string(country)),
            ("is_in_european_union", MmdbValue::Bool(true)),
        ]),
    ));
    if let Some((lat, lon)) = ll {
        m.push((
            "location".to_owned(),
            MmdbValue::map([
                ("accuracy_radius", MmdbValue::Uint16(100)),
                ("latitude", MmdbValue::Double(lat)),
                ("longitude", MmdbValue::Double(lon)),
                ("time_zone", MmdbValue::string("Europe/London")),
            ]),
        ));
    }
    if let Some(s) = sub {
        m.push((
            "subdivisions".to_owned(),
            MmdbValue::Array(vec![
                MmdbValue::map([("iso_code", MmdbValue::string(s))]),
                MmdbValue::map([("iso_code", MmdbValue::string("ZZZ"))]),
            ]),
        ));
    }
    MmdbValue::Map(m)
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn write(&self, name: &str, version: IpVersion, entries: &[(&str, MmdbValue)]) -> PathBuf {
        let mut w = MmdbWriter::new("Test", version);
        w.description("en", "test").ipv4_aliases(true);
        for (n, v) in entries {
            w.insert(net(n), v).unwrap();
        }
        let path = self.0.path().join(name);
        w.write_to(&path).unwrap();
        path
    }
}

fn over(n: &str, country: &str) -> LocationOverride {
    LocationOverride {
        net: net(n),
        location: Location {
            country: Some(cc(country)),
            ..Location::default()
        },
    }
}

/// Check the scope contract by sampling: every address in `a/scope` gets
/// the same continent/country/subdivision/coords (and ASN in `asn_scope`).
fn check_scope(db: &GeoDb, a: IpAddr) {
    let l = db.locate(a);
    let same = |o: &Location| {
        (o.continent, o.country, o.subdivision, o.coords, o.source)
            == (l.continent, l.country, l.subdivision, l.coords, l.source)
    };
    for (scope, is_asn) in [(l.scope, false), (l.asn_scope, true)] {
        match a {
            IpAddr::V4(v4) => {
                assert!(scope <= 32);
                let base = u32::from(v4);
                let mask = if scope == 0 {
                    0
                } else {
                    u32::MAX << (32 - scope)
                };
                let span = 1u64 << (32 - scope);
                let step = (span / 2048).max(1);
                let mut off = 0u64;
                while off < span {
                    let b = IpAddr::V4(Ipv4Addr::from((base & mask) | off as u32));
                    let o = db.locate(b);
                    if is_asn {
                        assert_eq!(o.asn, l.asn, "{a}/{scope} vs {b}");
                    } else {
                        assert!(same(&o), "{a}/{scope}: {l:?} vs {b}: {o:?}");
                    }
                    off += step;
                }
            }
            IpAddr::V6(v6) => {
                assert!(scope <= 128);
                let base = u128::from(v6);
                let mask = if scope == 0 {
                    0
                } else {
                    u128::MAX << (128 - scope)
                };
                let host_bits = 128 - u32::from(scope);
                for k in 0..2048u128 {
                    // Spread samples over the host part, plus the extremes.
                    let off = if host_bits == 0 {
                        0
                    } else {
                        let r = k.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
                        let r = if k == 1 { u128::MAX } else { r };
                        if host_bits >= 128 {
                            r
                        } else {
                            r & ((1u128 << host_bits) - 1)
                        }
                    };
                    let b =
                        IpAddr::V6(Ipv6Addr::from((base & mask) | if k == 0 { 0 } else { off }));
                    let o = db.locate(b);
                    if is_asn {
                        assert_eq!(o.asn, l.asn, "{a}/{scope} vs {b}");
                    } else {
                        assert!(same(&o), "{a}/{scope}: {l:?} vs {b}: {o:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn geodb_is_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GeoDb>();
}

#[test]
fn nested_schema() {
    let d = Dir::new();
    let p = d.write(
        "city.mmdb",
        IpVersion::V6,
        &[
            (
                "81.2.69.0/24",
                city(Some("EU"), "GB", Some("ENG"), Some((51.5142, -0.0931))),
            ),
            (
                "2001:218::/32",
                city(Some("AS"), "JP", None, Some((35.69, 139.69))),
            ),
        ],
    );
    let db = GeoDb::open(Some(&p), None, vec![]).unwrap();
    let l = db.locate(ip("81.2.69.142"));
    assert_eq!(l.source, LocationSource::Database);
    assert_eq!(l.continent, Some(Continent::EU));
    assert_eq!(l.country, Some(cc("GB")));
    assert_eq!(l.subdivision, Some(Subdivision::parse("GB-ENG").unwrap()));
    let c = l.coords.unwrap();
    assert!((c.lat - 51.5142).abs() < 1e-4 && (c.lon + 0.0931).abs() < 1e-4);
    assert_eq!(l.asn, None);
    assert_eq!(l.scope, 24);
    let l = db.locate(ip("2001:218:ffff::1"));
    assert_eq!((l.country, l.scope), (Some(cc("JP")), 32));
    assert_eq!(l.subdivision, None);
    let info = db.location_db_info().unwrap();
    assert_eq!((info.networks, info.records), (2, 2));
    assert!(info.path.ends_with("city.mmdb"));
}

#[test]
fn flat_schema_v4_only_tree() {
    let d = Dir::new();
    let flat = |country: &str, lat: Option<f32>| {
        let mut m = vec![
            ("country_code".to_owned(), MmdbValue::string(country)),
            ("state1".to_owned(), MmdbValue::string("Östergötland")),
            ("city".to_owned(), MmdbValue::string("Linköping")),
        ];
        if let Some(lat) = lat {
            m.push(("latitude".to_owned(), MmdbValue::Float(lat)));
            m.push(("longitude".to_owned(), MmdbValue::Float(15.62)));
        }
        MmdbValue::Map(m)
    };
    let p = d.write(
        "flat.mmdb",
        IpVersion::V4,
        &[
            ("89.160.20.0/24", flat("SE", Some(58.41))),
            ("89.160.21.0/24", flat("SE", None)),
            ("1.0.0.0/24", flat("XX", None)),
        ],
    );
    let db = GeoDb::open(Some(&p), None, vec![]).unwrap();
    let l = db.locate(ip("89.160.20.112"));
    assert_eq!(l.source, LocationSource::Database);
    assert_eq!(l.country, Some(cc("SE")));
    assert_eq!(l.continent, Some(Continent::EU), "derived from the table");
    assert_eq!(l.subdivision, None, "state1 is a name, not a code");
    let c = l.coords.unwrap();
    assert!((c.lat - 58.41).abs() < 1e-4 && (c.lon - 15.62).abs() < 1e-4);
    assert_eq!(l.scope, 24);
    // No coordinates in the record: the centroid of Sweden.
    let l = db.locate(ip("89.160.21.1"));
    assert_eq!(l.coords, centroid_of(cc("SE")));
    // A code the table does not know: kept, no continent, no coords.
    let l = db.locate(ip("1.0.0.1"));
    assert_eq!(l.country, Some(CountryCode(*b"XX")));
    assert_eq!((l.continent, l.coords), (None, None));
    // IPv6 in an IPv4-only database: unknown, for all of IPv6.
    let l = db.locate(ip("2001:db8::1"));
    assert_eq!((l.source, l.scope), (LocationSource::Unknown, 0));
    // v4-mapped IPv6 works against the IPv4 tree.
    let l = db.locate(ip("::ffff:89.160.20.1"));
    assert_eq!((l.country, l.scope), (Some(cc("SE")), 96 + 24));
}

#[test]
fn country_only_database_derives_continent_and_centroid() {
    let d = Dir::new();
    let p = d.write(
        "country.mmdb",
        IpVersion::V6,
        &[
            ("200.160.0.0/24", city(None, "BR", None, None)),
            ("196.216.2.0/24", city(Some("AF"), "ZA", None, None)),
        ],
    );
    let db = GeoDb::open(Some(&p), None, vec![]).unwrap();
    let l = db.locate(ip("200.160.0.8"));
    assert_eq!(l.country, Some(cc("BR")));
    assert_eq!(l.continent, Some(Continent::SA));
    assert_eq!(l.coords, centroid_of(cc("BR")));
    assert!(l.coords.is_some());
    let l = db.locate(ip("196.216.2.1"));
    assert_eq!(l.continent, Some(Continent::AF));
    assert_eq!(l.coords, centroid_of(cc("ZA")));
}

#[test]
fn registered_country_and_odd_types_are_tolerated() {
    let d = Dir::new();
    let registered_only = MmdbValue::map([
        (
            "continent",
            MmdbValue::map([("code", MmdbValue::string("EU"))]),
        ),
        (
            "registered_country",
            MmdbValue::map([("iso_code", MmdbValue::string("DE"))]),
        ),
    ]);
    let odd = MmdbValue::map([
        ("country", MmdbValue::string("FR")),
        ("country_code", MmdbValue::Uint32(7)),
        ("subdivisions", MmdbValue::string("nope")),
        (
            "location",
            MmdbValue::map([
                ("latitude", MmdbValue::string("48.85")),
                ("longitude", MmdbValue::Int32(2)),
            ]),
        ),
        ("autonomous_system_number", MmdbValue::Uint64(1 << 40)),
    ]);
    let p = d.write(
        "odd.mmdb",
        IpVersion::V6,
        &[
            ("10.0.0.0/8", registered_only),
            ("11.0.0.0/8", odd),
            ("12.0.0.0/8", MmdbValue::Uint32(5)),
        ],
    );
    let db = GeoDb::open(Some(&p), None, vec![]).unwrap();
    let l = db.locate(ip("10.1.1.1"));
    assert_eq!(
        (l.country, l.continent),
        (Some(cc("DE")), Some(Continent::EU))
    );
    let l = db.locate(ip("11.1.1.1"));
    assert_eq!(l.country, None);
    let c = l.coords.unwrap();
    assert!((c.lat - 48.85).abs() < 1e-4 && (c.lon - 2.0).abs() < 1e-4);
    assert_eq!(l.source, LocationSource::Database);
    assert_eq!(l.asn, None, "out of range ASN ignored");
    let l = db.locate(ip("12.1.1.1"));
    assert_eq!(l.source, LocationSource::Unknown);
}

#[test]
fn asn_database_and_asn_in_location_records() {
    let d = Dir::new();
    let asn = |n: u32| {
        MmdbValue::map([
            ("autonomous_system_number", MmdbValue::Uint32(n)),
            (
                "autonomous_system_organization",
                MmdbValue::string("Example"),
            ),
        ])
    };
    let asn_db = d.write(
        "asn.mmdb",
        IpVersion::V6,
        &[("81.2.0.0/16", asn(64500)), ("2001:218::/32", asn(2914))],
    );
    let mut with_asn = city(Some("EU"), "GB", None, None);
    if let MmdbValue::Map(m) = &mut with_asn {
        m.push(("autonomous_system_number".into(), MmdbValue::Uint32(64496)));
    }
    let loc_db = d.write("city.mmdb", IpVersion::V6, &[("81.2.69.0/24", with_asn)]);

    // ASN database alone.
    let db = GeoDb::open(None, Some(&asn_db), vec![]).unwrap();
    let l = db.locate(ip("81.2.69.142"));
    assert_eq!((l.asn, l.asn_scope), (Some(64500), 16));
    assert_eq!((l.source, l.country), (LocationSource::Unknown, None));
    assert_eq!(db.locate(ip("2001:218::5")).asn, Some(2914));
    let l = db.locate(ip("82.0.0.1"));
    assert_eq!(l.asn, None);
    check_scope(&db, ip("82.0.0.1"));

    // ASN from the location records when no ASN database is configured.
    let db = GeoDb::open(Some(&loc_db), None, vec![]).unwrap();
    let l = db.locate(ip("81.2.69.142"));
    assert_eq!((l.asn, l.asn_scope), (Some(64496), 24));

    // The ASN database wins when both exist.
    let db = GeoDb::open(Some(&loc_db), Some(&asn_db), vec![]).unwrap();
    let l = db.locate(ip("81.2.69.142"));
    assert_eq!((l.asn, l.asn_scope, l.scope), (Some(64500), 16, 24));
    assert_eq!(l.country, Some(cc("GB")));
    assert_eq!(db.asn_db_info().unwrap().networks, 2);
}

#[test]
fn ipv4_mapped_addresses_are_located_as_ipv4() {
    let d = Dir::new();
    let p = d.write(
        "city.mmdb",
        IpVersion::V6,
        &[("81.2.69.0/24", city(Some("EU"), "GB", None, None))],
    );
    let db = GeoDb::open(Some(&p), None, vec![over("::ffff:10.0.0.0/104", "US")]).unwrap();
    let l = db.locate(ip("::ffff:81.2.69.142"));
    assert_eq!(l.country, Some(cc("GB")));
    assert_eq!(l.scope, 96 + 24);
    assert_eq!(db.locate(ip("81.2.69.142")).scope, 24);
    // The mapped override applies to plain IPv4 as well.
    assert_eq!(db.locate(ip("10.1.2.3")).country, Some(cc("US")));
    assert_eq!(db.locate(ip("::ffff:10.1.2.3")).country, Some(cc("US")));
    // ::a.b.c.d (IPv4-compatible, deprecated) is plain IPv6 here.
    assert_eq!(
        db.locate(ip("::81.2.69.142")).source,
        LocationSource::Database
    );
    assert_eq!(db.locate(ip("::81.2.69.142")).scope, 96 + 24);
    check_scope(&db, ip("::ffff:81.2.69.142"));
    check_scope(&db, ip("::ffff:81.2.70.1"));
}

#[test]
fn no_database() {
    let db = GeoDb::open(None, None, vec![]).unwrap();
    let l = db.locate(ip("81.2.69.142"));
    assert_eq!(l, Location::default());
    let l = db.locate(ip("2001:db8::1"));
    assert_eq!(
        (l.source, l.scope, l.asn_scope),
        (LocationSource::Unknown, 0, 0)
    );
    assert!(db.location_db_info().is_none());

    let db = GeoDb::open(None, None, vec![over("192.0.2.0/24", "SE")]).unwrap();
    let l = db.locate(ip("192.0.2.1"));
    assert_eq!(
        (l.country, l.source, l.scope),
        (Some(cc("SE")), LocationSource::Override, 24)
    );
    let l = db.locate(ip("192.0.3.1"));
    assert_eq!((l.source, l.scope), (LocationSource::Unknown, 24));
    assert_eq!(db.locate(ip("2001:db8::1")).scope, 0);
}

#[test]
fn missing_and_corrupt_files_name_the_file() {
    let d = Dir::new();
    let missing = d.0.path().join("missing.mmdb");
    let e = GeoDb::open(Some(&missing), None, vec![]).unwrap_err();
    assert!(matches!(e, GeoError::Open { .. }), "{e:?}");
    assert!(e.to_string().contains("missing.mmdb"), "{e}");

    let e = GeoDb::open(None, Some(&missing), vec![]).unwrap_err();
    assert!(e.to_string().contains("missing.mmdb"), "{e}");

    let garbage = d.0.path().join("garbage.mmdb");
    std::fs::write(&garbage, b"this is not a maxmind db at all").unwrap();
    let e = GeoDb::open(Some(&garbage), None, vec![]).unwrap_err();
    assert!(matches!(e, GeoError::Invalid { .. }), "{e:?}");
    assert!(e.to_string().contains("garbage.mmdb"), "{e}");

    let empty = d.0.path().join("empty.mmdb");
    std::fs::write(&empty, b"").unwrap();
    let e = GeoDb::open(Some(&empty), None, vec![]).unwrap_err();
    assert!(e.to_string().contains("empty.mmdb"), "{e}");

    // A valid file with its search tree overwritten: pointers go nowhere.
    let good = d.write(
        "good.mmdb",
        IpVersion::V6,
        &[("81.2.69.0/24", city(Some("EU"), "GB", None, None))],
    );
    let mut bytes = std::fs::read(&good).unwrap();
    for b in bytes.iter_mut().take(600) {
        *b = 0xff;
    }
    let bad_tree = d.0.path().join("badtree.mmdb");
    std::fs::write(&bad_tree, &bytes).unwrap();
    let e = GeoDb::open(Some(&bad_tree), None, vec![]).unwrap_err();
    assert!(matches!(e, GeoError::Invalid { .. }), "{e:?}");
    assert!(e.to_string().contains("badtree.mmdb"), "{e}");

    // Truncated: metadata gone.
    let bytes = std::fs::read(&good).unwrap();
    let truncated = d.0.path().join("truncated.mmdb");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = GeoDb::open(Some(&truncated), None, vec![]).unwrap_err();
    assert!(e.to_string().contains("truncated.mmdb"), "{e}");

    // Swapped roles: an ASN database as the location database, and a
    // location-only database as the ASN database.
    let asn_only = d.write(
        "asn.mmdb",
        IpVersion::V6,
        &[(
            "81.2.0.0/16",
            MmdbValue::map([("autonomous_system_number", MmdbValue::Uint32(1))]),
        )],
    );
    let e = GeoDb::open(Some(&asn_only), None, vec![]).unwrap_err();
    assert!(matches!(e, GeoError::Invalid { .. }), "{e:?}");
    assert!(e.to_string().contains("asn.mmdb"), "{e}");
    assert!(e.to_string().contains("ASN database"), "{e}");
    let e = GeoDb::open(None, Some(&good), vec![]).unwrap_err();
    assert!(e.to_string().contains("good.mmdb"), "{e}");
    assert!(e.to_string().contains("autonomous_system_number"), "{e}");
    // An empty database is fine in either role.
    let empty_db = d.write("empty-db.mmdb", IpVersion::V4, &[]);
    let db = GeoDb::open(Some(&empty_db), Some(&empty_db), vec![]).unwrap();
    let l = db.locate(ip("1.2.3.4"));
    assert_eq!(
        (l.source, l.country, l.asn),
        (LocationSource::Unknown, None, None)
    );
    // The file's single (empty) node puts the boundary at /1.
    assert_eq!((l.scope, l.asn_scope), (1, 1));

    // A directory.
    let e = GeoDb::open(Some(d.0.path()), None, vec![]).unwrap_err();
    assert!(matches!(
        e,
        GeoError::Invalid { .. } | GeoError::Open { .. }
    ));
}

mod cost;
mod overrides;

pub(crate) use cost::alloc_count;
