//! Fixtures of the decision-trie tests: small databases written with the
//! MMDB writer, random worlds (databases, overrides, geo maps), test
//! addresses, and the reference every trie is checked against.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::IpNet;

use crate::geo::mmdb_writer::{IpVersion, MmdbValue, MmdbWriter};
use crate::geo::trie::PrefixTrie;
use crate::geo::{Continent, CountryCode, GeoDb, Location, LocationOverride, Subdivision};
use crate::select::compiled::*;
use crate::select::{AllDown, Endpoint, Rng, Target, rule_for};

pub(super) fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}
pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A GeoLite2-City-like record (continent derived from the country when
/// `cont` is None), with an optional ASN.
pub(super) fn city(
    cont: Option<&str>,
    country: &str,
    sub: Option<&str>,
    ll: Option<(f64, f64)>,
    asn: Option<u32>,
) -> MmdbValue {
    let mut m = Vec::new();
    if let Some(c) = cont {
        m.push((
            "continent".to_owned(),
            MmdbValue::map([("code", MmdbValue::string(c))]),
        ));
    }
    m.push((
        "country".to_owned(),
        MmdbValue::map([("iso_code", MmdbValue::string(country))]),
    ));
    if let Some((lat, lon)) = ll {
        m.push((
            "location".to_owned(),
            MmdbValue::map([
                ("latitude", MmdbValue::Double(lat)),
                ("longitude", MmdbValue::Double(lon)),
            ]),
        ));
    }
    if let Some(s) = sub {
        m.push((
            "subdivisions".to_owned(),
            MmdbValue::Array(vec![MmdbValue::map([("iso_code", MmdbValue::string(s))])]),
        ));
    }
    if let Some(a) = asn {
        m.push(("autonomous_system_number".to_owned(), MmdbValue::Uint32(a)));
    }
    MmdbValue::Map(m)
}

pub(super) fn asn_rec(a: u32) -> MmdbValue {
    MmdbValue::map([("autonomous_system_number", MmdbValue::Uint32(a))])
}

pub(super) fn write_db(dir: &tempfile::TempDir, name: &str, w: &MmdbWriter) -> PathBuf {
    let p = dir.path().join(name);
    w.write_to(&p).unwrap();
    p
}

pub(super) fn balancer(policy: Policy) -> Balancer {
    Balancer {
        name: "t.example.".into(),
        ttl: 30,
        policy,
        fallback: None,
        max_answers: usize::MAX,
        all_down: AllDown::FailOpen,
    }
}

/// Pools with one IPv4 endpoint each (endpoint id = pool id).
pub(in crate::select::compiled) fn pools(coords: &[Option<(f32, f32)>]) -> Vec<Pool> {
    coords
        .iter()
        .enumerate()
        .map(|(i, c)| Pool {
            name: format!("p{i}"),
            endpoints: vec![Endpoint {
                id: i as u32,
                label: format!("e{i}"),
                target: Target::V4(Ipv4Addr::new(192, 0, 2, i as u8)),
                rdata: Box::new([192, 0, 2, i as u8]),
                weight: 1,
                enabled: true,
            }]
            .into_boxed_slice(),
            min_healthy: 1,
            coords: c.map(|(lat, lon)| Coords { lat, lon }),
        })
        .collect()
}

/// Continent, country, subdivision code, coordinates.
pub(super) type Place = (&'static str, &'static str, Option<&'static str>, (f64, f64));

/// Countries with their continent and a subdivision code, for records.
pub(super) const PLACES: &[Place] = &[
    ("EU", "GB", Some("ENG"), (51.5, -0.1)),
    ("EU", "FR", None, (48.8, 2.3)),
    ("EU", "DE", Some("BE"), (52.5, 13.4)),
    ("NA", "US", Some("CA"), (37.7, -122.4)),
    ("NA", "US", Some("NY"), (40.7, -74.0)),
    ("NA", "CA", None, (45.4, -75.7)),
    ("AS", "JP", None, (35.7, 139.7)),
    ("AS", "CN", None, (39.9, 116.4)),
    ("OC", "AU", None, (-33.9, 151.2)),
    ("SA", "BR", None, (-23.5, -46.6)),
    ("AF", "ZA", None, (-26.2, 28.0)),
];

pub(super) const ASNS: &[u32] = &[64496, 64497, 64498, 64499, 64500];

/// A random location record: sometimes without continent or coordinates.
pub(super) fn random_record(rng: &mut Rng) -> MmdbValue {
    let (cont, cc, sub, ll) = PLACES[rng.below(PLACES.len() as u64) as usize];
    let cont = (rng.below(4) != 0).then_some(cont);
    let ll = (rng.below(3) != 0).then_some(ll);
    let asn = (rng.below(3) == 0).then(|| ASNS[rng.below(ASNS.len() as u64) as usize]);
    city(cont, cc, sub, ll, asn)
}

/// IPv4 networks clustered in a few /8s, so they nest and touch.
pub(super) fn random_v4_net(rng: &mut Rng) -> IpNet {
    const BASES: [u32; 4] = [0x0A00_0000, 0x5102_0000, 0xC000_0000, 0xCB00_0000];
    let base = BASES[rng.below(4) as usize];
    let len = 8 + rng.below(23) as u8; // 8..=30
    let addr = base | (rng.next_u64() as u32 & 0x00FF_FFFF);
    IpNet::new(IpAddr::V4(Ipv4Addr::from(addr)), len)
        .unwrap()
        .trunc()
}

pub(super) fn random_v6_net(rng: &mut Rng) -> IpNet {
    const BASES: [u128; 2] = [0x2001_0db8 << 96, 0x2a02 << 112];
    let base = BASES[rng.below(2) as usize];
    let len = 20 + rng.below(45) as u8; // 20..=64
    let addr = base | (u128::from(rng.next_u64()) << 40 & ((1u128 << 112) - 1));
    IpNet::new(IpAddr::V6(Ipv6Addr::from(addr)), len)
        .unwrap()
        .trunc()
}

/// A random world: location DB (IPv6 tree with IPv4 aliases), ASN DB
/// (IPv4 only), overrides. Returns the DB and the networks (for
/// boundary addresses).
pub(super) struct World {
    pub(super) _dir: tempfile::TempDir,
    pub(super) geo: GeoDb,
    pub(super) nets: Vec<IpNet>,
}

pub(super) fn random_world(rng: &mut Rng, with_asn_db: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut w = MmdbWriter::new("Test-City", IpVersion::V6);
    w.description("en", "test").ipv4_aliases(true);
    let mut nets = Vec::new();
    for _ in 0..250 {
        let n = random_v4_net(rng);
        w.insert(n, &random_record(rng)).unwrap();
        nets.push(n);
    }
    for _ in 0..60 {
        let n = random_v6_net(rng);
        w.insert(n, &random_record(rng)).unwrap();
        nets.push(n);
    }
    let loc_path = write_db(&dir, "city.mmdb", &w);
    let asn_path = with_asn_db.then(|| {
        let mut a = MmdbWriter::new("Test-ASN", IpVersion::V4);
        a.description("en", "asn");
        for _ in 0..80 {
            let n = random_v4_net(rng);
            a.insert(n, &asn_rec(ASNS[rng.below(ASNS.len() as u64) as usize]))
                .unwrap();
            nets.push(n);
        }
        write_db(&dir, "asn.mmdb", &a)
    });
    let mut overrides = Vec::new();
    for i in 0..8 {
        let n = if i % 4 == 3 {
            random_v6_net(rng)
        } else {
            random_v4_net(rng)
        };
        let (_, cc, sub, _) = PLACES[rng.below(PLACES.len() as u64) as usize];
        let country = CountryCode::parse(cc).unwrap();
        overrides.push(LocationOverride {
            net: n,
            location: Location {
                country: Some(country),
                subdivision: sub.and_then(|s| Subdivision::parse(&format!("{cc}-{s}")).ok()),
                asn: (rng.below(2) == 0).then(|| ASNS[rng.below(ASNS.len() as u64) as usize]),
                ..Location::default()
            },
        });
        nets.push(n);
    }
    let geo = GeoDb::open(Some(&loc_path), asn_path.as_deref(), overrides).unwrap();
    World {
        _dir: dir,
        geo,
        nets,
    }
}

/// A random geo map over pool lists 0..5; `asn` and `cidr` rules optional.
pub(super) fn random_map(rng: &mut Rng, asn: bool, cidr: bool, nets: &mut Vec<IpNet>) -> GeoMap {
    let lists: Vec<Box<[PoolId]>> = vec![
        Box::new([0]),
        Box::new([1]),
        Box::new([2]),
        Box::new([0, 1]),
        Box::new([1, 0]),
        Box::new([0]), // a duplicate list: must merge with list 0
    ];
    let n = lists.len() as u64;
    let mut m = GeoMap {
        lists,
        default: rng.below(n) as u32,
        ..GeoMap::default()
    };
    for c in ["AF", "AS", "EU", "NA", "OC", "SA"] {
        if rng.below(4) != 0 {
            m.continent
                .insert(Continent::from_code(c).unwrap(), rng.below(n) as u32);
        }
    }
    for c in ["GB", "US", "JP", "BR"] {
        if rng.below(2) == 0 {
            m.country
                .insert(CountryCode::parse(c).unwrap(), rng.below(n) as u32);
        }
    }
    if rng.below(2) == 0 {
        m.subdivision
            .insert(Subdivision::parse("US-CA").unwrap(), rng.below(n) as u32);
    }
    if asn {
        for &a in &ASNS[..3] {
            m.asn.insert(a, rng.below(n) as u32);
        }
    }
    if cidr {
        let mut t = PrefixTrie::new();
        for i in 0..10 {
            let nt = if i % 3 == 2 {
                random_v6_net(rng)
            } else {
                random_v4_net(rng)
            };
            t.insert(nt, rng.below(n) as u32);
            nets.push(nt);
        }
        m.cidr = t;
        m.has_cidr = true;
    }
    m
}

/// Test addresses: uniform ones, ones in the clusters, and the first and
/// last address of every network and their outside neighbours.
pub(super) fn test_addrs(rng: &mut Rng, nets: &[IpNet], n: usize) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for nt in nets {
        match nt {
            IpNet::V4(v) => {
                let lo = u32::from(v.network());
                let hi = u32::from(v.broadcast());
                for a in [lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)] {
                    out.push(IpAddr::V4(Ipv4Addr::from(a)));
                    // and IPv4-mapped
                    out.push(IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped()));
                }
            }
            IpNet::V6(v) => {
                let lo = u128::from(v.network());
                let hi = u128::from(v.broadcast());
                for a in [lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)] {
                    out.push(IpAddr::V6(Ipv6Addr::from(a)));
                }
            }
        }
    }
    for i in 0..n {
        let r = rng.next_u64();
        out.push(match i % 6 {
            0 => IpAddr::V4(Ipv4Addr::from(r as u32)),
            1 | 2 => random_v4_net(rng).network(),
            3 => random_v6_net(rng).network(),
            4 => IpAddr::V6(Ipv6Addr::from(
                (u128::from(rng.next_u64()) << 64) | u128::from(r),
            )),
            // 6to4 and IPv4-compatible: the aliases of the IPv4 space.
            _ => IpAddr::V6(Ipv6Addr::from(
                (0x2002u128 << 112) | (u128::from(r as u32) << 80),
            )),
        });
    }
    out
}

/// Addresses inside `a/scope`: both ends and random ones.
pub(super) fn inside(rng: &mut Rng, a: IpAddr, scope: u8, n: usize) -> Vec<IpAddr> {
    match a {
        IpAddr::V4(v4) => {
            let host = if scope >= 32 { 0 } else { u32::MAX >> scope };
            let base = u32::from(v4) & !host;
            let mut v = vec![base, base | host];
            v.extend((0..n).map(|_| base | (rng.next_u64() as u32 & host)));
            v.into_iter()
                .map(|x| IpAddr::V4(Ipv4Addr::from(x)))
                .collect()
        }
        IpAddr::V6(v6) => {
            let host = if scope >= 128 { 0 } else { u128::MAX >> scope };
            let base = u128::from(v6) & !host;
            let mut v = vec![base, base | host];
            v.extend((0..n).map(|_| {
                let r = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
                base | (r & host)
            }));
            v.into_iter()
                .map(|x| IpAddr::V6(Ipv6Addr::from(x)))
                .collect()
        }
    }
}

/// The reference: the rule evaluation on a located client.
pub(super) fn reference<'s>(b: &'s Balancer, geo: &GeoDb, a: IpAddr) -> (&'s [PoolId], u8) {
    let (_, list, scope) = rule_for(b, &geo.locate(a), a);
    (list, scope)
}

/// (a) same list as the rules, (b) the list is the same over `a/scope`,
/// (c) the scope is never longer than the per-input scope.
pub(super) fn check_equivalent(
    b: &Balancer,
    c: &Compiled,
    geo: &GeoDb,
    addrs: &[IpAddr],
    rng: &mut Rng,
) {
    for &a in addrs {
        let (list, scope) = c.lookup(a);
        let (want, ref_scope) = reference(b, geo, a);
        assert_eq!(list, want, "(a) list for {a}");
        assert!(
            scope <= ref_scope,
            "(c) {a}: merged scope /{scope} longer than the per-input /{ref_scope}"
        );
        assert!(scope <= if a.is_ipv4() { 32 } else { 128 });
        for o in inside(rng, a, scope, 24) {
            assert_eq!(
                reference(b, geo, o).0,
                list,
                "(b) {a}/{scope} is not honest: {o} differs"
            );
            assert_eq!(c.lookup(o), (list, scope), "{o} in {a}/{scope}: same leaf");
        }
    }
}
