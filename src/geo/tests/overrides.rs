//! Overrides: they beat the database, the most specific one wins, and the
//! scopes around them (and around unknown space) stay honest.

use super::*;

#[test]
fn overrides_beat_database_and_most_specific_wins() {
    let d = Dir::new();
    let p = d.write(
        "city.mmdb",
        IpVersion::V6,
        &[(
            "81.2.69.0/24",
            city(Some("EU"), "GB", Some("ENG"), Some((51.5, -0.1))),
        )],
    );
    let mut asn_override = over("81.2.69.128/25", "FR");
    asn_override.location.asn = Some(64511);
    let overrides = vec![
        over("81.2.0.0/16", "DE"),
        asn_override,
        LocationOverride {
            net: net("81.2.69.200/29"),
            location: Location {
                subdivision: Some(Subdivision::parse("US-CA").unwrap()),
                coords: Some(Coords { lat: 1.0, lon: 2.0 }),
                ..Location::default()
            },
        },
    ];
    let db = GeoDb::open(Some(&p), None, overrides).unwrap();
    assert_eq!(db.override_count(), 3);

    // /16 override beats the /24 database network.
    let l = db.locate(ip("81.2.69.1"));
    assert_eq!(l.source, LocationSource::Override);
    assert_eq!(l.country, Some(cc("DE")));
    assert_eq!(l.continent, Some(Continent::EU));
    assert_eq!(l.coords, centroid_of(cc("DE")));
    assert_eq!(l.subdivision, None);
    // /25 beats /16.
    let l = db.locate(ip("81.2.69.130"));
    assert_eq!((l.country, l.asn), (Some(cc("FR")), Some(64511)));
    // The /29 nested inside the /25 (130 = 10000010 vs 200 = 11001000
    // diverge at bit 25) narrows the scope to 26.
    assert_eq!((l.scope, l.asn_scope), (26, 26));
    // /29 beats /25; country from the subdivision, given coords kept.
    let l = db.locate(ip("81.2.69.201"));
    assert_eq!(l.country, Some(cc("US")));
    assert_eq!(l.continent, Some(Continent::NA));
    assert_eq!(l.coords, Some(Coords { lat: 1.0, lon: 2.0 }));
    assert_eq!(l.scope, 29);
    // Outside all overrides: the database.
    let l = db.locate(ip("81.3.0.1"));
    assert_eq!(l.source, LocationSource::Unknown);
    for a in [
        "81.2.69.1",
        "81.2.69.130",
        "81.2.69.201",
        "81.2.69.199",
        "81.3.0.1",
        "81.2.200.1",
    ] {
        check_scope(&db, ip(a));
    }
}

#[test]
fn scope_shrinks_around_nested_override() {
    let d = Dir::new();
    let p = d.write(
        "city.mmdb",
        IpVersion::V6,
        &[
            ("10.0.0.0/8", city(Some("EU"), "GB", None, None)),
            ("2001:db8::/32", city(Some("AS"), "JP", None, None)),
        ],
    );
    let db = GeoDb::open(
        Some(&p),
        None,
        vec![over("10.1.2.0/24", "US"), over("2001:db8:1::/48", "US")],
    )
    .unwrap();
    // Far from the override inside the /8: 10.200 = 11001000 diverges from
    // 10.1 = 00000001 at bit 8, so the scope is 9, not the database's 8.
    let l = db.locate(ip("10.200.0.1"));
    assert_eq!((l.country, l.scope), (Some(cc("GB")), 9));
    // Close to it: diverges at bit 22 (10.1.0 vs 10.1.2).
    let l = db.locate(ip("10.1.0.1"));
    assert_eq!((l.country, l.scope), (Some(cc("GB")), 23));
    let l = db.locate(ip("10.1.2.3"));
    assert_eq!((l.country, l.scope), (Some(cc("US")), 24));
    // Outside the database network, away from overrides: the DB's empty region.
    let l = db.locate(ip("11.0.0.1"));
    assert_eq!((l.source, l.scope), (LocationSource::Unknown, 8));
    let l = db.locate(ip("2001:db8:2::1"));
    assert_eq!((l.country, l.scope), (Some(cc("JP")), 47));
    for a in [
        "10.200.0.1",
        "10.1.0.1",
        "10.1.2.3",
        "10.1.3.0",
        "11.0.0.1",
        "192.0.2.1",
        "0.0.0.1",
        "255.255.255.255",
    ] {
        check_scope(&db, ip(a));
    }
    for a in [
        "2001:db8:2::1",
        "2001:db8:1::1",
        "2001:db9::1",
        "::1",
        "fe80::1",
    ] {
        check_scope(&db, ip(a));
    }
}

#[test]
fn unknown_addresses_have_correct_scope() {
    let d = Dir::new();
    let p = d.write(
        "city.mmdb",
        IpVersion::V6,
        &[("81.2.69.0/24", city(Some("EU"), "GB", None, None))],
    );
    let db = GeoDb::open(Some(&p), None, vec![]).unwrap();
    // 81.2.70.x shares 23 bits with 81.2.69.0/24.
    let l = db.locate(ip("81.2.70.1"));
    assert_eq!((l.source, l.scope), (LocationSource::Unknown, 23));
    // 192.x differs from 81.x in the first bit.
    assert_eq!(db.locate(ip("192.0.2.1")).scope, 1);
    for a in [
        "81.2.70.1",
        "192.0.2.1",
        "81.2.68.255",
        "2001:db8::1",
        "::1",
    ] {
        check_scope(&db, ip(a));
    }

    // A database with IPv6 data only: the IPv4 subtree is empty.
    let p6 = d.write(
        "v6.mmdb",
        IpVersion::V6,
        &[("2001:218::/32", city(Some("AS"), "JP", None, None))],
    );
    let db = GeoDb::open(Some(&p6), None, vec![]).unwrap();
    let l = db.locate(ip("81.2.69.1"));
    assert_eq!((l.source, l.scope), (LocationSource::Unknown, 0));
    check_scope(&db, ip("2001:219::1"));
}
