//! Tests of the decision tries: equivalence with the per-query rule
//! evaluation (the reference) on random databases, honesty of the merged
//! scopes, and measurements (ignored tests).

use std::net::IpAddr;

use super::*;
use crate::geo::mmdb_writer::{IpVersion, MmdbWriter};
use crate::geo::{Continent, GeoDb};
use crate::health::HealthTable;
use crate::select::{Inputs, Rng, Rule, choose, choose_fast};

mod fixtures;

pub(super) use fixtures::pools;
use fixtures::*;

#[test]
fn geo_trie_equals_rule_evaluation_on_random_databases() {
    for seed in 0..12u64 {
        let mut rng = Rng::seeded(seed);
        let with_asn_db = seed % 2 == 0;
        let mut world = random_world(&mut rng, with_asn_db);
        let asn_rules = seed % 3 != 0;
        let cidr_rules = seed % 4 != 1;
        let m = random_map(&mut rng, asn_rules, cidr_rules, &mut world.nets);
        let b = balancer(Policy::Geo(Box::new(m)));
        let c = compile(&b, &[], &world.geo, DEFAULT_NODE_BUDGET)
            .unwrap()
            .unwrap();
        assert!(c.lists().len() <= 5, "duplicate lists share a value");
        let addrs = test_addrs(&mut rng, &world.nets, 1500);
        check_equivalent(&b, &c, &world.geo, &addrs, &mut rng);
    }
}

#[test]
fn proximity_trie_equals_nearest_choice_on_random_databases() {
    for seed in 100..106u64 {
        let mut rng = Rng::seeded(seed);
        let world = random_world(&mut rng, false);
        // Pools in Europe, America, Asia, and one without coordinates.
        let ps = pools(&[
            Some((50.1, 8.7)),
            Some((39.0, -77.5)),
            None,
            Some((1.35, 103.8)),
            Some((50.1, 8.7)), // same place as pool 0: ties keep configured order
        ]);
        let list: Box<[PoolId]> = match seed % 2 {
            0 => Box::new([0, 1, 2, 3, 4]),
            _ => Box::new([4, 2, 3, 1, 0]),
        };
        let b = balancer(Policy::Proximity(list.clone()));
        let c = compile(&b, &ps, &world.geo, DEFAULT_NODE_BUDGET)
            .unwrap()
            .unwrap();
        assert_eq!(&*c.lists()[0], &*list, "value 0 is the configured order");
        let health = HealthTable::all_up(ps.len());
        let inp = Inputs {
            pools: &ps,
            health: &health,
        };
        let addrs = test_addrs(&mut rng, &world.nets, 1000);
        for (k, &a) in addrs.iter().enumerate() {
            // A different health state every few addresses, sometimes all down.
            if k % 7 == 0 {
                for id in 0..ps.len() as u32 {
                    health.set(id, rng.below(3) != 0);
                }
            }
            let loc = world.geo.locate(a);
            let slow = choose(&b, &inp, &loc, a);
            let fast = choose_fast(&b, Some(&c), &inp, a).unwrap();
            assert_eq!((fast.pool, fast.mode), (slow.pool, slow.mode), "{a}");
            assert!(fast.scope <= slow.scope, "{a}");
            assert_eq!(fast.rule, Rule::Compiled);
            // The leaf's order is the distance order at the client.
            let want = match loc.coords {
                Some(cc) => proximity_order(&ps, &list, cc),
                None => list.clone(),
            };
            let (order, scope) = c.lookup(a);
            assert_eq!(order, &*want, "{a}");
            for o in inside(&mut rng, a, scope, 8) {
                let lo = world.geo.locate(o);
                let w = match lo.coords {
                    Some(cc) => proximity_order(&ps, &list, cc),
                    None => list.clone(),
                };
                assert_eq!(&*w, order, "{a}/{scope} not honest at {o}");
            }
        }
    }
}

#[test]
fn geo_choose_fast_matches_choose_under_random_health() {
    let mut rng = Rng::seeded(7);
    let mut world = random_world(&mut rng, true);
    let m = random_map(&mut rng, true, true, &mut world.nets);
    let ps = pools(&[None, None, None]);
    let mut b = balancer(Policy::Geo(Box::new(m)));
    b.fallback = Some(2);
    let c = compile(&b, &ps, &world.geo, DEFAULT_NODE_BUDGET)
        .unwrap()
        .unwrap();
    let health = HealthTable::all_up(ps.len());
    let inp = Inputs {
        pools: &ps,
        health: &health,
    };
    for (k, a) in test_addrs(&mut rng, &world.nets, 600)
        .into_iter()
        .enumerate()
    {
        if k % 5 == 0 {
            for id in 0..3 {
                health.set(id, rng.below(2) == 0);
            }
        }
        let slow = choose(&b, &inp, &world.geo.locate(a), a);
        let fast = choose_fast(&b, Some(&c), &inp, a).unwrap();
        assert_eq!(
            (fast.list, fast.pool, fast.mode),
            (slow.list, slow.pool, slow.mode),
            "{a}"
        );
    }
}

/// Two adjacent /24s in one continent, a continent-only map: the answer is
/// the same over the /23, which the per-input scope (/24) cannot say.
#[test]
fn adjacent_networks_with_the_same_answer_merge() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = MmdbWriter::new("Test-City", IpVersion::V6);
    w.description("en", "test").ipv4_aliases(true);
    for (n, cont, cc) in [
        ("10.0.0.0/24", "EU", "GB"),
        ("10.0.1.0/24", "EU", "FR"),
        ("10.0.2.0/24", "NA", "US"),
        ("10.0.3.0/24", "AS", "JP"),
        ("2001:db8::/48", "EU", "DE"),
        ("2001:db8:1::/48", "EU", "FR"),
    ] {
        w.insert(net(n), &city(Some(cont), cc, None, None, None))
            .unwrap();
    }
    let geo = GeoDb::open(Some(&write_db(&dir, "c.mmdb", &w)), None, vec![]).unwrap();
    let mut m = GeoMap {
        lists: vec![Box::new([0]), Box::new([1]), Box::new([2]), Box::new([3])],
        default: 3,
        ..GeoMap::default()
    };
    m.continent.insert(Continent::EU, 0);
    m.continent.insert(Continent::NA, 1);
    m.continent.insert(Continent::AS, 2);
    let b = balancer(Policy::Geo(Box::new(m)));
    let c = compile(&b, &[], &geo, DEFAULT_NODE_BUDGET)
        .unwrap()
        .unwrap();
    for a in ["10.0.0.7", "10.0.1.200"] {
        let (list, scope) = c.lookup(ip(a));
        assert_eq!(list, &[0]);
        assert_eq!(reference(&b, &geo, ip(a)).1, 24, "per-input scope");
        assert_eq!(scope, 23, "{a}: merged over 10.0.0.0/23");
    }
    assert_eq!(c.lookup(ip("10.0.2.1")), (&[1][..], 24));
    assert_eq!(c.lookup(ip("10.0.3.1")), (&[2][..], 24));
    let (l, s) = c.lookup(ip("2001:db8:1:2::1"));
    assert_eq!((l, s), (&[0][..], 47), "two EU /48s merge into the /47");
    // Unlocated space far away: the default over a short prefix.
    let (l, s) = c.lookup(ip("192.0.2.1"));
    assert_eq!((l, s), (&[3][..], 1), "128.0.0.0/1 is all unlocated");
    let (l, s) = c.lookup(ip("10.0.4.1"));
    assert_eq!((l, s), (&[3][..], 22), "10.0.4.0/22 is unlocated");
    // The default list equal to a rule's list: they merge too.
    let mut m2 = GeoMap {
        lists: vec![Box::new([0]), Box::new([1])],
        default: 0,
        ..GeoMap::default()
    };
    m2.continent.insert(Continent::EU, 0);
    m2.continent.insert(Continent::AS, 1);
    let b2 = balancer(Policy::Geo(Box::new(m2)));
    let c2 = compile(&b2, &[], &geo, DEFAULT_NODE_BUDGET)
        .unwrap()
        .unwrap();
    // 10.0.0.0/23 EU = default, 10.0.2.0/24 NA = default: only 10.0.3.0/24 differs.
    assert_eq!(c2.lookup(ip("10.0.0.7")).1, 23);
    assert_eq!(c2.lookup(ip("10.0.2.7")), (&[0][..], 24));
    // 8.0.0.0/7 is all default; its sibling 10.0.0.0/7 holds the JP /24.
    assert_eq!(c2.lookup(ip("8.8.8.8")), (&[0][..], 7));
}

/// Proximity: two adjacent /24s at different places with the same nearest
/// order merge; unlocated space gets the configured order.
#[test]
fn proximity_merges_networks_with_the_same_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = MmdbWriter::new("Test-City", IpVersion::V6);
    w.description("en", "test").ipv4_aliases(true);
    for (n, cc, ll) in [
        ("10.0.0.0/24", "GB", (51.5, -0.1)),
        ("10.0.1.0/24", "FR", (48.8, 2.3)),
        ("10.0.2.0/24", "US", (40.7, -74.0)),
    ] {
        w.insert(net(n), &city(None, cc, None, Some(ll), None))
            .unwrap();
    }
    let geo = GeoDb::open(Some(&write_db(&dir, "c.mmdb", &w)), None, vec![]).unwrap();
    let ps = pools(&[Some((39.0, -77.5)), Some((50.1, 8.7)), None]);
    let b = balancer(Policy::Proximity(Box::new([0, 1, 2])));
    let c = compile(&b, &ps, &geo, DEFAULT_NODE_BUDGET)
        .unwrap()
        .unwrap();
    assert_eq!(c.lookup(ip("10.0.0.1")), (&[1, 0, 2][..], 23));
    assert_eq!(c.lookup(ip("10.0.1.1")), (&[1, 0, 2][..], 23));
    assert_eq!(c.lookup(ip("10.0.2.1")), (&[0, 1, 2][..], 23));
    // Unlocated: configured order, which is also New York's order, so the
    // US /24 merges with its unlocated neighbour 10.0.3.0/24.
    assert_eq!(c.lookup(ip("10.0.3.1")), (&[0, 1, 2][..], 23));
    assert_eq!(c.lookup(ip("192.0.2.1")), (&[0, 1, 2][..], 1));
}

#[test]
fn a_location_independent_map_is_one_leaf_per_family() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = MmdbWriter::new("Test-City", IpVersion::V6);
    w.description("en", "test").ipv4_aliases(true);
    w.insert(
        net("81.2.69.0/24"),
        &city(Some("EU"), "GB", None, None, None),
    )
    .unwrap();
    let geo = GeoDb::open(Some(&write_db(&dir, "c.mmdb", &w)), None, vec![]).unwrap();
    let mut m = GeoMap {
        lists: vec![Box::new([0, 1])],
        ..GeoMap::default()
    };
    m.continent.insert(Continent::EU, 0);
    let b = balancer(Policy::Geo(Box::new(m)));
    let c = compile(&b, &[], &geo, DEFAULT_NODE_BUDGET)
        .unwrap()
        .unwrap();
    assert_eq!(c.trie().node_count(), 0);
    assert_eq!(c.lookup(ip("81.2.69.1")), (&[0, 1][..], 0));
    assert_eq!(c.lookup(ip("2001:db8::1")), (&[0, 1][..], 0));
}

#[test]
fn over_budget_is_an_error_and_other_policies_compile_to_nothing() {
    let mut rng = Rng::seeded(3);
    let mut world = random_world(&mut rng, false);
    let m = random_map(&mut rng, false, true, &mut world.nets);
    let b = balancer(Policy::Geo(Box::new(m)));
    assert_eq!(
        compile(&b, &[], &world.geo, 10).unwrap_err(),
        CompileError::TooBig { budget: 10 }
    );
    for p in [
        Policy::Failover(Box::new([0])),
        Policy::Weighted(Box::new([0])),
    ] {
        assert!(
            compile(&balancer(p), &[], &world.geo, 10)
                .unwrap()
                .is_none()
        );
    }
}

#[test]
fn build_merges_siblings_and_shares_subtrees() {
    // Value = bit 30 of the address (IPv4) / bit 126 (IPv6): every /2 has
    // one value, neighbours differ in pairs.
    let (t, stats) = build(
        |a| match a {
            IpAddr::V4(v) => ((u32::from(v) >> 30) & 1, 2),
            IpAddr::V6(v) => (((u128::from(v) >> 126) & 1) as u32, 2),
        },
        100,
    )
    .unwrap();
    // IPv4: root + two identical /1 nodes (shared) = 2 nodes; IPv6 the same
    // shapes, shared with IPv4.
    assert_eq!(t.node_count(), 2);
    assert_eq!(stats.cells, 8);
    assert_eq!(t.lookup(ip("64.0.0.1")), (1, 2));
    assert_eq!(t.lookup(ip("128.0.0.1")), (0, 2));
    assert_eq!(t.lookup(ip("4000::1")), (1, 2));
    // An oracle that refines the leftmost path down to one address, over a
    // constant value: everything merges back into the roots.
    let (t, stats) = build(
        |a| match a {
            IpAddr::V4(v) if v.is_unspecified() => (7, 32),
            IpAddr::V6(v) if v.is_unspecified() => (7, 128),
            _ => (7, 0),
        },
        10,
    )
    .unwrap();
    assert_eq!(t.node_count(), 0);
    assert_eq!(t.lookup(ip("1.2.3.4")), (7, 0));
    // Only the leftmost path is refined, one cell per level plus the last.
    assert_eq!(stats.cells, 33 + 129);
}

#[test]
fn choose_fast_does_not_allocate() {
    let mut rng = Rng::seeded(11);
    let mut world = random_world(&mut rng, true);
    let m = random_map(&mut rng, true, true, &mut world.nets);
    let ps = pools(&[Some((50.0, 8.0)), None, Some((1.0, 103.0))]);
    let geo_b = balancer(Policy::Geo(Box::new(m)));
    let prox_b = balancer(Policy::Proximity(Box::new([0, 1, 2])));
    let cg = compile(&geo_b, &ps, &world.geo, DEFAULT_NODE_BUDGET)
        .unwrap()
        .unwrap();
    let cp = compile(&prox_b, &ps, &world.geo, DEFAULT_NODE_BUDGET)
        .unwrap()
        .unwrap();
    let health = HealthTable::all_up(ps.len());
    let inp = Inputs {
        pools: &ps,
        health: &health,
    };
    let addrs = test_addrs(&mut rng, &world.nets, 200);
    let before = crate::geo::tests::alloc_count::count();
    let mut n = 0usize;
    for &a in &addrs {
        for (b, c) in [(&geo_b, &cg), (&prox_b, &cp)] {
            let d = std::hint::black_box(choose_fast(b, Some(c), &inp, a));
            n += usize::from(d.is_some_and(|d| d.pool.is_some()));
        }
    }
    assert_eq!(crate::geo::tests::alloc_count::count() - before, 0);
    assert_eq!(n, 2 * addrs.len());
}

/// Build cost, size and lookup cost of decision tries, on the sample
/// database and on a synthetic large one. Run with:
/// `cargo test --release --lib select::compiled::tests::bench_decision_tries -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_decision_tries() {
    use std::time::Instant;

    use crate::geo::tables;

    let continent_map = || {
        let mut m = GeoMap {
            lists: vec![
                Box::new([0, 1]),
                Box::new([1, 0]),
                Box::new([2, 0]),
                Box::new([2, 1]),
            ],
            default: 0,
            ..GeoMap::default()
        };
        m.continent.insert(Continent::EU, 0);
        m.continent.insert(Continent::NA, 1);
        m.continent.insert(Continent::SA, 1);
        m.continent.insert(Continent::AS, 2);
        m.continent.insert(Continent::OC, 3);
        m
    };
    // One list per country for 60 countries (plus continents): many values.
    let country_map = || {
        let mut m = continent_map();
        for (i, c) in tables::all_countries().take(60).enumerate() {
            m.lists.push(Box::new([i as u32 % 3, 3 + i as u32]));
            m.country.insert(c, m.lists.len() as u32 - 1);
        }
        m
    };
    let ps = pools(&[
        Some((50.1, 8.7)),
        Some((39.0, -77.5)),
        Some((37.4, -122.1)),
        Some((1.35, 103.8)),
        Some((-33.9, 151.2)),
        Some((-23.5, -46.6)),
    ]);
    let health = HealthTable::all_up(ps.len());
    let inp = Inputs {
        pools: &ps,
        health: &health,
    };

    let run = |label: &str, geo: &GeoDb, addrs: &[IpAddr]| {
        for (name, policy) in [
            ("continent map", Policy::Geo(Box::new(continent_map()))),
            ("60-country map", Policy::Geo(Box::new(country_map()))),
            (
                "proximity 6 pools",
                Policy::Proximity(Box::new([0, 1, 2, 3, 4, 5])),
            ),
        ] {
            let b = balancer(policy);
            let t = Instant::now();
            let c = compile(&b, &ps, geo, DEFAULT_NODE_BUDGET).unwrap().unwrap();
            let build = t.elapsed();
            let st = c.stats();
            eprintln!(
                "{label:>10} {name:>18}: build {build:>9.2?}, {:>8} cells, {:>8} evaluations -> {:>7} nodes, {:>9} bytes, {} lists",
                st.cells,
                st.evaluations,
                c.trie().node_count(),
                c.memory_bytes(),
                c.lists().len()
            );
            let total = 2_000_000usize;
            let rounds = total.div_ceil(addrs.len());
            let n = (rounds * addrs.len()) as f64;
            let t = Instant::now();
            let mut acc = 0u64;
            for _ in 0..rounds {
                for &a in addrs {
                    let d = choose_fast(&b, Some(&c), &inp, std::hint::black_box(a));
                    acc += u64::from(d.map_or(0, |d| d.scope));
                }
            }
            let fast = t.elapsed().as_nanos() as f64 / n;
            let t = Instant::now();
            for _ in 0..rounds {
                for &a in addrs {
                    let a = std::hint::black_box(a);
                    let d = choose(&b, &inp, &geo.locate(a), a);
                    acc += u64::from(d.scope);
                }
            }
            let slow = t.elapsed().as_nanos() as f64 / n;
            let mut merged = 0u64;
            let mut per_input = 0u64;
            for &a in addrs {
                merged += u64::from(c.lookup(a).1);
                per_input += u64::from(reference(&b, geo, a).1);
            }
            eprintln!(
                "{label:>10} {name:>18}: choose_fast {fast:>5.0} ns, locate+choose {slow:>5.0} ns; mean scope merged /{:.1} vs per-input /{:.1} ({acc})",
                merged as f64 / addrs.len() as f64,
                per_input as f64 / addrs.len() as f64,
            );
        }
    };

    // The sample database.
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/sample.mmdb");
    let geo = GeoDb::open(Some(&sample), None, vec![]).unwrap();
    let addrs: Vec<IpAddr> = [
        "81.2.69.142",
        "89.160.20.1",
        "216.160.83.5",
        "192.0.2.1",
        "2001:218::1",
        "2a02:d280::1",
        "8.8.8.8",
    ]
    .iter()
    .map(|s| ip(s))
    .collect();
    run("sample", &geo, &addrs);

    // Synthetic: 200k IPv4 /24s + 50k IPv6 /48s over all countries, ~5k
    // distinct records (as in geo::tests::cost::bench_locate).
    let dir = tempfile::tempdir().unwrap();
    let mut syn = crate::geo::mmdb_writer::synthetic::Synthetic::new(|c, sub, ll| {
        city(None, c, sub, ll, None)
    });
    let w = &syn.writer;
    let path = dir.path().join("bench.mmdb");
    w.write_to(&path).unwrap();
    let geo = GeoDb::open(Some(&path), None, vec![]).unwrap();
    let mut addrs: Vec<IpAddr> = (0..50_000).map(|_| syn.v4()).collect();
    addrs.extend((0..50_000usize).map(|i| syn.v6(i)));
    run("synthetic", &geo, &addrs);
}
