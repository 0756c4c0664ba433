//! Unit tests for the policies, on hand-built pools (no config, no I/O).

use std::net::IpAddr;

use super::*;
use crate::geo::{Continent, Coords, CountryCode, Location, LocationSource};

fn ep(id: u32, addr: &str, weight: u32) -> Endpoint {
    let target = match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => Target::V4(a),
        Ok(IpAddr::V6(a)) => Target::V6(a),
        Err(_) => Target::Host(Box::from(addr.as_bytes())),
    };
    Endpoint {
        id,
        label: addr.into(),
        target,
        rdata: Box::from(&[][..]),
        weight,
        enabled: true,
    }
}

fn pool(name: &str, eps: Vec<Endpoint>, coords: Option<(f32, f32)>) -> Pool {
    Pool {
        name: name.into(),
        endpoints: eps.into_boxed_slice(),
        min_healthy: 1,
        coords: coords.map(|(lat, lon)| Coords { lat, lon }),
    }
}

/// eu(0: .10, .11), na(1: .20), ap(2: .30), backup(3: .40)
fn pools() -> Vec<Pool> {
    vec![
        pool(
            "eu",
            vec![ep(0, "192.0.2.10", 1), ep(1, "192.0.2.11", 3)],
            Some((50.0, 8.0)),
        ),
        pool(
            "na",
            vec![ep(2, "192.0.2.20", 1), ep(5, "2001:db8::20", 1)],
            Some((40.0, -100.0)),
        ),
        pool("ap", vec![ep(3, "192.0.2.30", 1)], Some((1.3, 103.8))),
        pool("backup", vec![ep(4, "192.0.2.40", 1)], None),
    ]
}

fn balancer(policy: Policy) -> Balancer {
    Balancer {
        name: "www.example.".into(),
        ttl: 30,
        policy,
        fallback: Some(3),
        max_answers: usize::MAX,
        all_down: AllDown::FailOpen,
    }
}

fn loc(continent: Continent, country: &str, coords: Option<(f32, f32)>) -> Location {
    Location {
        continent: Some(continent),
        country: CountryCode::parse(country).ok(),
        coords: coords.map(|(lat, lon)| Coords { lat, lon }),
        source: LocationSource::Database,
        scope: 24,
        ..Location::default()
    }
}

fn geo_map() -> GeoMap {
    let mut m = GeoMap {
        lists: vec![
            Box::from(&[0u32, 1][..]),
            Box::from(&[1u32, 0][..]),
            Box::from(&[2u32][..]),
        ],
        default: 0,
        ..GeoMap::default()
    };
    m.continent.insert(Continent::NA, 1);
    m.country.insert(CountryCode::parse("JP").unwrap(), 2);
    m
}

fn addrs(t: &Targets<'_>) -> Vec<String> {
    let mut v: Vec<String> = t.iter().map(|e| e.label.clone()).collect();
    v.sort();
    v
}

const IP: &str = "198.51.100.1";

struct Out {
    pool: Option<String>,
    mode: Mode,
    rule: Rule,
    scope: u8,
    addrs: Vec<String>,
}

fn pick(
    b: &Balancer,
    p: &[Pool],
    h: &HealthTable,
    l: &Location,
    fam: Family,
    rng: &mut Rng,
) -> Out {
    let inp = Inputs {
        pools: p,
        health: h,
    };
    let d = choose(b, &inp, l, IP.parse().unwrap());
    let t = targets(b, &inp, &d, fam, rng);
    Out {
        pool: d.pool.map(|i| p[i as usize].name.clone()),
        mode: d.mode,
        rule: d.rule,
        scope: d.scope,
        addrs: addrs(&t),
    }
}

fn v4(b: &Balancer, p: &[Pool], h: &HealthTable, l: &Location) -> Out {
    pick(b, p, h, l, Family::V4, &mut Rng::seeded(7))
}

#[test]
fn failover_takes_first_usable_then_fallback_then_fail_open() {
    let p = pools();
    let h = HealthTable::all_up(6);
    let b = balancer(Policy::Failover(Box::from(&[0u32, 1][..])));
    let l = Location::default();
    let o = v4(&b, &p, &h, &l);
    assert_eq!(o.pool.as_deref(), Some("eu"));
    assert_eq!(o.addrs, vec!["192.0.2.10", "192.0.2.11"]);
    assert_eq!(o.rule, Rule::Ordered);
    assert_eq!(o.scope, 0, "failover does not depend on the client");

    h.set(0, false);
    assert_eq!(
        v4(&b, &p, &h, &l).addrs,
        vec!["192.0.2.11"],
        "down endpoint left out"
    );
    h.set(1, false);
    let o = v4(&b, &p, &h, &l);
    assert_eq!(o.pool.as_deref(), Some("na"));
    assert_eq!(o.mode, Mode::Normal);
    h.set(2, false);
    h.set(5, false);
    let o = v4(&b, &p, &h, &l);
    assert_eq!(
        (o.pool.as_deref(), o.mode),
        (Some("backup"), Mode::Fallback)
    );
    h.set(4, false);
    let o = v4(&b, &p, &h, &l);
    assert_eq!((o.pool.as_deref(), o.mode), (Some("eu"), Mode::FailOpen));
    assert_eq!(
        o.addrs,
        vec!["192.0.2.10", "192.0.2.11"],
        "fail-open answers as if all were up"
    );
}

#[test]
fn all_down_nodata_answers_nothing() {
    let p = pools();
    let h = HealthTable::all_up(6);
    let mut b = balancer(Policy::Failover(Box::from(&[2u32][..])));
    b.fallback = None;
    b.all_down = AllDown::Nodata;
    h.set(3, false);
    let o = v4(&b, &p, &h, &Location::default());
    assert_eq!(o.mode, Mode::Nodata);
    assert!(o.addrs.is_empty());
}

#[test]
fn disabled_endpoints_are_never_answered_even_when_failing_open() {
    let mut p = pools();
    let mut eps = p[0].endpoints.to_vec();
    eps[0].enabled = false;
    p[0].endpoints = eps.into_boxed_slice();
    let h = HealthTable::all_up(6);
    let b = balancer(Policy::Failover(Box::from(&[0u32][..])));
    assert_eq!(
        v4(&b, &p, &h, &Location::default()).addrs,
        vec!["192.0.2.11"]
    );
    for id in 0..6 {
        h.set(id, false);
    }
    let o = v4(&b, &p, &h, &Location::default());
    assert_eq!(o.mode, Mode::FailOpen);
    assert_eq!(o.addrs, vec!["192.0.2.11"]);
}

#[test]
fn drained_endpoints_are_never_answered_even_when_failing_open() {
    let p = pools();
    let h = HealthTable::all_up(6);
    let b = balancer(Policy::Failover(Box::from(&[0u32][..])));
    // Drained while its probes pass: out, and the table still knows it is up.
    h.set_state(0, true, true);
    assert!(h.is_drained(0) && h.verdict_up(0) && !h.is_up(0));
    assert_eq!(
        v4(&b, &p, &h, &Location::default()).addrs,
        vec!["192.0.2.11"]
    );
    // Everything down: fail-open answers the other endpoint, not the drained one.
    for id in 1..6 {
        h.set(id, false);
    }
    let o = v4(&b, &p, &h, &Location::default());
    assert_eq!(o.mode, Mode::FailOpen);
    assert_eq!(o.addrs, vec!["192.0.2.11"]);
    // A pool whose endpoints are all drained is skipped even failing open.
    h.set_state(1, false, true);
    let o = v4(&b, &p, &h, &Location::default());
    assert_ne!(o.pool.as_deref(), Some("eu"), "{:?}", o.pool);
    assert!(
        o.addrs
            .iter()
            .all(|a| a != "192.0.2.10" && a != "192.0.2.11")
    );
}

#[test]
fn latency_policy_answers_in_the_current_order() {
    let p = pools();
    let h = HealthTable::all_up(6);
    let l = latency::LatencyPolicy::new(Box::from(&[0u32, 1][..]), 5.0, 0.1);
    assert!(l.set_current(&[1, 0]));
    let b = balancer(Policy::Latency(Box::new(l)));
    let o = v4(&b, &p, &h, &Location::default());
    assert_eq!(
        (o.pool.as_deref(), o.rule, o.scope),
        (Some("na"), Rule::Latency, 0)
    );
    h.set(2, false);
    h.set(5, false);
    assert_eq!(
        v4(&b, &p, &h, &Location::default()).pool.as_deref(),
        Some("eu")
    );
    let inp = Inputs {
        pools: &p,
        health: &h,
    };
    let fast = choose_fast(&b, None, &inp, IP.parse().unwrap()).expect("no location needed");
    assert_eq!(fast.pool, Some(0));
}

#[test]
fn min_healthy_makes_a_pool_unusable_before_it_is_empty() {
    let mut p = pools();
    p[0].min_healthy = 2;
    let h = HealthTable::all_up(6);
    let b = balancer(Policy::Failover(Box::from(&[0u32, 1][..])));
    assert_eq!(
        v4(&b, &p, &h, &Location::default()).pool.as_deref(),
        Some("eu")
    );
    h.set(1, false);
    assert_eq!(
        v4(&b, &p, &h, &Location::default()).pool.as_deref(),
        Some("na")
    );
}

#[test]
fn geo_most_specific_rule_wins_and_falls_through() {
    let p = pools();
    let h = HealthTable::all_up(6);
    let b = balancer(Policy::Geo(Box::new(geo_map())));
    let us = loc(Continent::NA, "US", None);
    let o = v4(&b, &p, &h, &us);
    assert_eq!(o.pool.as_deref(), Some("na"));
    assert_eq!(o.rule, Rule::Continent(Continent::NA));
    assert_eq!(o.scope, 24);
    let jp = loc(Continent::AS, "JP", None);
    let o = v4(&b, &p, &h, &jp);
    assert_eq!(o.rule, Rule::Country(CountryCode::parse("JP").unwrap()));
    assert_eq!(o.pool.as_deref(), Some("ap"));
    let o = v4(&b, &p, &h, &Location::default());
    assert_eq!((o.rule, o.pool.as_deref()), (Rule::Default, Some("eu")));
    // NA falls through to eu
    h.set(2, false);
    h.set(5, false);
    assert_eq!(v4(&b, &p, &h, &us).pool.as_deref(), Some("eu"));
    // JP has a one-pool list: then the fallback
    h.set(3, false);
    let o = v4(&b, &p, &h, &jp);
    assert_eq!(
        (o.pool.as_deref(), o.mode),
        (Some("backup"), Mode::Fallback)
    );
}

#[test]
fn geo_cidr_rule_beats_location_and_sets_scope() {
    let p = pools();
    let h = HealthTable::all_up(6);
    let mut m = geo_map();
    m.cidr.insert("198.51.100.0/24".parse().unwrap(), 2);
    m.has_cidr = true;
    let b = balancer(Policy::Geo(Box::new(m)));
    let o = v4(&b, &p, &h, &loc(Continent::NA, "US", None));
    assert_eq!(o.pool.as_deref(), Some("ap"));
    assert!(matches!(o.rule, Rule::Cidr(n) if n.to_string() == "198.51.100.0/24"));
    assert_eq!(o.scope, 24);
}

#[test]
fn proximity_orders_by_distance_and_skips_unusable() {
    let p = pools();
    let h = HealthTable::all_up(6);
    let b = balancer(Policy::Proximity(Box::from(&[0u32, 1, 2][..])));
    let tokyo = loc(Continent::AS, "JP", Some((35.7, 139.7)));
    assert_eq!(v4(&b, &p, &h, &tokyo).pool.as_deref(), Some("ap"));
    let paris = loc(Continent::EU, "FR", Some((48.9, 2.35)));
    assert_eq!(v4(&b, &p, &h, &paris).pool.as_deref(), Some("eu"));
    h.set(3, false);
    // from Tokyo, Frankfurt (~9300 km) is nearer than central US (~10000 km)
    assert_eq!(v4(&b, &p, &h, &tokyo).pool.as_deref(), Some("eu"));
    // unlocated: configured order
    let o = v4(&b, &p, &h, &Location::default());
    assert_eq!(
        (o.pool.as_deref(), o.rule),
        (Some("eu"), Rule::Nearest { located: false })
    );
}

#[test]
fn weighted_respects_weights_and_max_answers() {
    let p = pools();
    let h = HealthTable::all_up(6);
    let mut b = balancer(Policy::Weighted(Box::from(&[0u32][..])));
    b.max_answers = 1;
    let mut rng = Rng::seeded(99);
    let mut heavy = 0;
    for _ in 0..4000 {
        let o = pick(&b, &p, &h, &Location::default(), Family::V4, &mut rng);
        assert_eq!(o.addrs.len(), 1);
        if o.addrs[0] == "192.0.2.11" {
            heavy += 1;
        }
    }
    // weight 3 of 4: expect 3000, allow 5 sigma (~137)
    assert!((2860..=3140).contains(&heavy), "{heavy}");
    // seeded: the same seed gives the same picks
    let a: Vec<_> = (0..20)
        .map(|_| 0)
        .scan(Rng::seeded(5), |r, _| {
            Some(pick(&b, &p, &h, &Location::default(), Family::V4, r).addrs)
        })
        .collect();
    let c: Vec<_> = (0..20)
        .map(|_| 0)
        .scan(Rng::seeded(5), |r, _| {
            Some(pick(&b, &p, &h, &Location::default(), Family::V4, r).addrs)
        })
        .collect();
    assert_eq!(a, c);
    // a down endpoint is never picked
    h.set(1, false);
    for _ in 0..200 {
        assert_eq!(
            pick(&b, &p, &h, &Location::default(), Family::V4, &mut rng).addrs,
            vec!["192.0.2.10"]
        );
    }
}

#[test]
fn family_selects_records_and_host_names_answer_when_no_address() {
    let mut p = pools();
    p.push(pool("cdn", vec![ep(6, "edge.example.net", 1)], None));
    let h = HealthTable::all_up(7);
    let b = balancer(Policy::Failover(Box::from(&[1u32][..])));
    let o = pick(
        &b,
        &p,
        &h,
        &Location::default(),
        Family::V6,
        &mut Rng::seeded(1),
    );
    assert_eq!(o.addrs, vec!["2001:db8::20"]);
    let b = balancer(Policy::Failover(Box::from(&[4u32][..])));
    let o = pick(
        &b,
        &p,
        &h,
        &Location::default(),
        Family::V4,
        &mut Rng::seeded(1),
    );
    assert_eq!(o.addrs, vec!["edge.example.net"]);
    // a pool with only IPv4: nothing for AAAA
    let b = balancer(Policy::Failover(Box::from(&[2u32][..])));
    assert!(
        pick(
            &b,
            &p,
            &h,
            &Location::default(),
            Family::V6,
            &mut Rng::seeded(1)
        )
        .addrs
        .is_empty()
    );
}

/// Property: for random health states, an ordered policy never answers a
/// down endpoint while the chosen pool has an up one, and only fails open
/// when no listed or fallback pool is usable.
#[test]
fn never_answers_down_endpoints_while_up_ones_exist() {
    let p = pools();
    let b = balancer(Policy::Failover(Box::from(&[0u32, 1, 2][..])));
    let mut rng = Rng::seeded(2024);
    for _ in 0..2000 {
        let h = HealthTable::all_up(6);
        let mask = rng.next_u64();
        for id in 0..6 {
            h.set(id, mask & (1 << id) != 0);
        }
        let o = pick(&b, &p, &h, &Location::default(), Family::V4, &mut rng);
        let inp = Inputs {
            pools: &p,
            health: &h,
        };
        let any_usable = [0u32, 1, 2, 3].iter().any(|&i| inp.pool_usable(i));
        if any_usable {
            assert_ne!(o.mode, Mode::FailOpen, "mask {mask:b}");
            let up: Vec<&str> = p
                .iter()
                .flat_map(|x| x.endpoints.iter())
                .filter(|e| h.is_up(e.id))
                .map(|e| e.label.as_str())
                .collect();
            for a in &o.addrs {
                assert!(
                    up.contains(&a.as_str()),
                    "answered down endpoint {a} (mask {mask:b})"
                );
            }
        } else {
            assert_eq!(o.mode, Mode::FailOpen);
        }
    }
}
