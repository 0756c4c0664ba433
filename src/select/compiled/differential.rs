//! Differential test of the decision tries against the per-query reference
//! rule ([`rule_for`] on [`GeoDb::locate`]): random IPv4 and IPv6 clients
//! (fixed seed), the same list, and every sampled address inside the
//! returned scope answered the same.
//!
//! On the sample database in `cargo test`; on real databases with
//! `STEERDNS_GEO_DBS=a.mmdb[,b.mmdb] [STEERDNS_GEO_ASN=asn.mmdb] cargo test
//! --release --lib differential_on_real_databases -- --ignored --nocapture`
//! (what `.ci/geo-real.sh` runs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::*;
use crate::geo::{Continent, CountryCode, GeoDb, Location, LocationOverride, Subdivision};
use crate::select::{AllDown, Rng, rule_for};

/// CPU time of this thread, for build measurements on a shared machine.
fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn pools() -> Vec<Pool> {
    super::tests::pools(&[
        Some((50.1, 8.7)),    // Frankfurt
        Some((39.0, -77.5)),  // Ashburn
        Some((37.4, -122.0)), // San Jose
        Some((1.35, 103.8)),  // Singapore
        Some((-23.5, -46.6)), // São Paulo
        Some((35.7, 139.7)),  // Tokyo
        Some((-33.9, 151.2)), // Sydney
        Some((51.5, -0.1)),   // London
    ])
}

fn balancer(name: &str, policy: Policy) -> Balancer {
    Balancer {
        name: name.into(),
        ttl: 30,
        policy,
        fallback: None,
        max_answers: usize::MAX,
        all_down: AllDown::FailOpen,
    }
}

/// Maps of every kind: continent, country and subdivision exceptions, ASN
/// rules, CIDR rules, proximity.
fn balancers(with_asn: bool) -> Vec<Balancer> {
    let lists = || -> Vec<Box<[PoolId]>> {
        vec![
            Box::new([0, 1]),
            Box::new([1, 2]),
            Box::new([3, 5]),
            Box::new([4, 1]),
            Box::new([6, 3]),
            Box::new([7, 0]),
            Box::new([2, 1]),
            Box::new([0, 1]), // equal to list 0
        ]
    };
    let mut continent = GeoMap {
        lists: lists(),
        default: 0,
        ..GeoMap::default()
    };
    for (c, i) in [
        (Continent::EU, 0),
        (Continent::NA, 1),
        (Continent::AS, 2),
        (Continent::SA, 3),
        (Continent::OC, 4),
        (Continent::AF, 7),
    ] {
        continent.continent.insert(c, i);
    }
    let mut detailed = GeoMap {
        lists: lists(),
        default: 1,
        ..GeoMap::default()
    };
    detailed.continent.insert(Continent::EU, 0);
    detailed.continent.insert(Continent::AS, 2);
    for (c, i) in [("GB", 5), ("JP", 2), ("AU", 4), ("BR", 3), ("CA", 6)] {
        detailed.country.insert(CountryCode::parse(c).unwrap(), i);
    }
    for (s, i) in [("US-CA", 6), ("US-WA", 6), ("US-NY", 1), ("DE-BY", 5)] {
        detailed
            .subdivision
            .insert(Subdivision::parse(s).unwrap(), i);
    }
    let mut cidr = GeoMap {
        lists: lists(),
        default: 0,
        ..GeoMap::default()
    };
    cidr.continent.insert(Continent::NA, 1);
    for (n, i) in [
        ("8.0.0.0/8", 2),
        ("8.8.8.0/24", 3),
        ("100.64.0.0/10", 4),
        ("2001:4860::/32", 5),
        ("2400::/12", 6),
        ("::ffff:1.0.0.0/104", 7),
    ] {
        cidr.cidr.insert(n.parse().unwrap(), i);
    }
    cidr.has_cidr = true;
    let mut v = vec![
        balancer("continent", Policy::Geo(Box::new(continent))),
        balancer("detailed", Policy::Geo(Box::new(detailed))),
        balancer("cidr", Policy::Geo(Box::new(cidr))),
        balancer(
            "proximity",
            Policy::Proximity(Box::new([0, 1, 2, 3, 4, 5, 6, 7])),
        ),
        balancer("proximity3", Policy::Proximity(Box::new([7, 1, 3]))),
    ];
    if with_asn {
        let mut asn = GeoMap {
            lists: lists(),
            default: 0,
            ..GeoMap::default()
        };
        asn.continent.insert(Continent::NA, 1);
        asn.continent.insert(Continent::AS, 2);
        // Big networks of real databases, and the sample's.
        for (a, i) in [
            (15169, 3),
            (13335, 4),
            (16509, 5),
            (8075, 6),
            (3320, 7),
            (64498, 3),
            (64500, 4),
        ] {
            asn.asn.insert(a, i);
        }
        v.push(balancer("asn", Policy::Geo(Box::new(asn))));
    }
    v
}

/// A random address: uniform IPv4, IPv4-mapped, uniform in 2000::/4 (where
/// the IPv6 data is), 6to4, anywhere in IPv6.
fn random_addr(rng: &mut Rng) -> IpAddr {
    let r = rng.next_u64();
    match rng.below(10) {
        0..=4 => IpAddr::V4(Ipv4Addr::from(r as u32)),
        5 => IpAddr::V6(Ipv4Addr::from(r as u32).to_ipv6_mapped()),
        6..=7 => IpAddr::V6(Ipv6Addr::from(
            (0x2u128 << 124) | ((u128::from(r) << 64 | u128::from(rng.next_u64())) >> 4),
        )),
        8 => IpAddr::V6(Ipv6Addr::from(
            (0x2002u128 << 112) | (u128::from(r as u32) << 80),
        )),
        _ => IpAddr::V6(Ipv6Addr::from(
            (u128::from(r) << 64) | u128::from(rng.next_u64()),
        )),
    }
}

/// An address inside `a/scope`, at random.
fn inside(rng: &mut Rng, a: IpAddr, scope: u8) -> IpAddr {
    match a {
        IpAddr::V4(v) => {
            let host = if scope >= 32 { 0 } else { u32::MAX >> scope };
            IpAddr::V4(Ipv4Addr::from(
                (u32::from(v) & !host) | (rng.next_u64() as u32 & host),
            ))
        }
        IpAddr::V6(v) => {
            let host = if scope >= 128 { 0 } else { u128::MAX >> scope };
            let r = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
            IpAddr::V6(Ipv6Addr::from((u128::from(v) & !host) | (r & host)))
        }
    }
}

/// The reference answer: the rule evaluation on the located client; for
/// proximity the nearest-first order the per-query choice walks.
fn reference(b: &Balancer, ps: &[Pool], geo: &GeoDb, a: IpAddr) -> Box<[PoolId]> {
    let loc = geo.locate(a);
    let (_, list, _) = rule_for(b, &loc, a);
    match (&b.policy, loc.coords) {
        (Policy::Proximity(l), Some(c)) => proximity_order(ps, l, c),
        _ => list.into(),
    }
}

/// Counts of one differential run.
#[derive(Debug, Default)]
struct Outcome {
    answers: u64,
    inside: u64,
    mismatches: u64,
}

/// Compile every balancer, then compare `n` random clients (and `k`
/// addresses inside each returned scope) with the reference.
fn differential(geo: &GeoDb, bs: &[Balancer], ps: &[Pool], n: usize, k: usize) -> Outcome {
    let t = thread_cpu();
    let part = geo.partition();
    eprintln!(
        "partition: {} nodes, {} locations, {:.3} CPU-s",
        part.node_count(),
        part.location_count(),
        (thread_cpu() - t).as_secs_f64()
    );
    // As `compile_all` does: every map on the partition of the config's
    // AS numbers (maps without ASN rules too, when there are any).
    let asns = config_asns(bs, ps);
    let compiled: Vec<Compiled> = bs
        .iter()
        .map(|b| {
            let t = thread_cpu();
            let c = compile_in(b, ps, geo, DEFAULT_NODE_BUDGET, Some(&asns))
                .unwrap_or_else(|e| panic!("{}: {e}", b.name))
                .unwrap();
            eprintln!(
                "{:>10}: {:>8} nodes, {:>3} lists, {:.1} CPU-ms",
                b.name,
                c.trie().node_count(),
                c.lists().len(),
                (thread_cpu() - t).as_secs_f64() * 1e3
            );
            c
        })
        .collect();
    let mut rng = Rng::seeded(20261201);
    let mut out = Outcome::default();
    let per = n.div_ceil(bs.len());
    for (b, c) in bs.iter().zip(&compiled) {
        for _ in 0..per {
            let a = random_addr(&mut rng);
            let (list, scope) = c.lookup(a);
            let want = reference(b, ps, geo, a);
            out.answers += 1;
            if *list != *want {
                out.mismatches += 1;
                eprintln!("MISMATCH {}: {a}: trie {list:?}, rules {want:?}", b.name);
                continue;
            }
            for _ in 0..k {
                let o = inside(&mut rng, a, scope);
                out.inside += 1;
                let w = reference(b, ps, geo, o);
                if *w != *list {
                    out.mismatches += 1;
                    eprintln!(
                        "MISMATCH {}: {o} inside {a}/{scope}: rules {w:?}, trie {list:?}",
                        b.name
                    );
                }
            }
        }
    }
    eprintln!("{out:?}");
    out
}

#[test]
fn differential_on_the_sample_database() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/sample.mmdb");
    let overrides = vec![
        LocationOverride {
            net: "10.0.0.0/8".parse().unwrap(),
            location: Location {
                country: CountryCode::parse("SE").ok(),
                ..Location::default()
            },
        },
        LocationOverride {
            net: "2001:db8::/32".parse().unwrap(),
            location: Location {
                subdivision: Subdivision::parse("US-CA").ok(),
                asn: Some(64500),
                ..Location::default()
            },
        },
        LocationOverride {
            net: "::ffff:192.0.2.0/120".parse().unwrap(),
            location: Location {
                country: CountryCode::parse("JP").ok(),
                ..Location::default()
            },
        },
    ];
    let geo = GeoDb::open(Some(&sample), None, overrides).unwrap();
    // 100,000 answers, each with 2 addresses inside its scope.
    let o = differential(&geo, &balancers(true), &pools(), 100_000, 2);
    assert_eq!(o.mismatches, 0);
    assert!(o.answers >= 100_000);
}

#[test]
#[ignore]
fn differential_on_real_databases() {
    let Ok(dbs) = std::env::var("STEERDNS_GEO_DBS") else {
        panic!("set STEERDNS_GEO_DBS=a.mmdb[,b.mmdb]");
    };
    let dbs: Vec<PathBuf> = dbs.split(',').map(PathBuf::from).collect();
    let asn = std::env::var("STEERDNS_GEO_ASN").ok().map(PathBuf::from);
    let n: usize = std::env::var("STEERDNS_GEO_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120_000);
    let t = thread_cpu();
    let geo = GeoDb::open_spec(
        &crate::geo::GeoSpec {
            location: dbs.clone(),
            asn: asn.clone(),
            overrides: Vec::new(),
            predecode: true,
        },
        None,
    )
    .unwrap();
    eprintln!(
        "opened {dbs:?} asn {asn:?}: {:.3} CPU-s",
        (thread_cpu() - t).as_secs_f64()
    );
    let o = differential(&geo, &balancers(geo.has_asns()), &pools(), n, 4);
    assert_eq!(o.mismatches, 0);
}
