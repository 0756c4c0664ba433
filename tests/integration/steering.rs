//! Policies over real DNS: failover, geo fall-through, fallback, fail-open,
//! NODATA when all down, disabled endpoints, weights, proximity, CNAME pools.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::harness::*;

const EXTRA: &str = r#"
[pools.backup]
endpoints = [{ address = "192.0.2.50" }]

[pools.two]
min_healthy = 2
endpoints = [{ address = "192.0.2.61" }, { address = "192.0.2.62" }, { address = "192.0.2.63", enabled = false }]

[pools.weighted]
endpoints = [{ address = "192.0.2.71", weight = 1 }, { address = "192.0.2.72", weight = 3 }]

[pools.cdn]
endpoints = [{ address = "edge.cdn.example.net" }]

[names."fo.lb.example.com"]
policy = "failover"
pools = ["two", "na"]
fallback = "backup"

[names."strict.lb.example.com"]
policy = "failover"
pools = ["backup"]
all_down = "nodata"

[names."w.lb.example.com"]
policy = "weighted"
pools = ["weighted"]

[names."near.lb.example.com"]
policy = "proximity"
pools = ["eu", "na", "ap"]

[names."cdn.lb.example.com"]
policy = "failover"
pools = ["cdn"]

[names."limit.lb.example.com"]
policy = "failover"
pools = ["two"]
max_answers = 1
"#;

fn a(s: &TestServer, name: &str) -> Vec<String> {
    addrs(&s.udp(&q(name, RecordType::A)))
}

#[test]
fn failover_min_healthy_fallback_and_fail_open() {
    let s = TestServer::base(EXTRA);
    let fo = "fo.lb.example.com.";
    // disabled .63 is never answered
    assert_eq!(a(&s, fo), vec!["192.0.2.61", "192.0.2.62"]);
    // one down: below min_healthy = 2, so the next pool answers
    s.set_health("two", "192.0.2.61", false);
    assert_eq!(a(&s, fo), vec!["198.51.100.10"]);
    // next pool down too: the fallback pool
    s.set_health("na", "198.51.100.10", false);
    s.set_health("na", "2001:db8:a::10", false);
    assert_eq!(a(&s, fo), vec!["192.0.2.50"]);
    // everything down: fail-open answers the first listed pool as if up,
    // but never the disabled endpoint
    s.set_health("backup", "192.0.2.50", false);
    assert_eq!(a(&s, fo), vec!["192.0.2.61", "192.0.2.62"]);
    // recovery
    s.set_health("two", "192.0.2.61", true);
    assert_eq!(a(&s, fo), vec!["192.0.2.61", "192.0.2.62"]);
    s.set_health("two", "192.0.2.62", false);
    s.set_health("na", "198.51.100.10", true);
    assert_eq!(a(&s, fo), vec!["198.51.100.10"]);
}

#[test]
fn all_down_nodata_when_configured() {
    let s = TestServer::base(EXTRA);
    assert_eq!(a(&s, "strict.lb.example.com."), vec!["192.0.2.50"]);
    s.set_health("backup", "192.0.2.50", false);
    let m = s.udp(&q("strict.lb.example.com.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(types(&m.authorities), vec![RecordType::SOA]);
}

#[test]
fn geo_falls_through_to_the_next_pool() {
    let s = TestServer::base(EXTRA);
    let www = "www.lb.example.com.";
    s.set_health("eu", "192.0.2.10", false);
    s.set_health("eu", "2001:db8:e::10", false);
    let m = s.udp(&q_ecs(www, RecordType::A, "81.2.69.0/24"));
    assert_eq!(addrs(&m), vec!["198.51.100.10"], "EU falls through to na");
}

#[test]
fn weighted_picks_follow_weights() {
    let s = TestServer::base(EXTRA);
    let mut heavy = 0;
    let n = 400;
    for _ in 0..n {
        let got = a(&s, "w.lb.example.com.");
        assert_eq!(got.len(), 1, "weighted answers one endpoint by default");
        if got[0] == "192.0.2.72" {
            heavy += 1;
        }
    }
    // expected 300 of 400; 5 sigma is about +-43
    assert!(
        (250..=350).contains(&heavy),
        "heavy endpoint picked {heavy}/{n}"
    );
}

#[test]
fn max_answers_limits_the_answer() {
    let s = TestServer::base(EXTRA);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let got = a(&s, "limit.lb.example.com.");
        assert_eq!(got.len(), 1);
        seen.insert(got[0].clone());
    }
    assert_eq!(
        seen.len(),
        2,
        "both usable endpoints are picked over time: {seen:?}"
    );
}

#[test]
fn proximity_picks_the_nearest_pool() {
    let s = TestServer::base(EXTRA);
    let near = "near.lb.example.com.";
    for (subnet, want) in [
        ("203.2.218.0/24", "203.0.113.10"),  // AU -> SG
        ("89.160.20.0/24", "192.0.2.10"),    // SE -> DE
        ("200.160.0.0/24", "198.51.100.10"), // BR -> US
    ] {
        let m = s.udp(&q_ecs(near, RecordType::A, subnet));
        assert_eq!(addrs(&m), vec![want], "{subnet}");
        let (_, scope) = ecs_of(&m).unwrap();
        assert!(scope > 0, "proximity depends on location");
    }
    // nearest down: the next nearest
    s.set_health("ap", "203.0.113.10", false);
    s.set_health("ap", "2001:db8:f::10", false);
    let m = s.udp(&q_ecs(near, RecordType::A, "175.16.199.0/24"));
    assert_eq!(
        addrs(&m),
        vec!["192.0.2.10"],
        "CN: after SG, DE is nearer than US"
    );
}

#[test]
fn host_name_endpoints_answer_with_a_cname() {
    let s = TestServer::base(EXTRA);
    for t in [RecordType::A, RecordType::AAAA] {
        let m = s.udp(&q("cdn.lb.example.com.", t));
        assert_eq!(types(&m.answers), vec![RecordType::CNAME]);
        let RData::CNAME(c) = &m.answers[0].data else {
            panic!()
        };
        assert_eq!(c.0.to_string(), "edge.cdn.example.net.");
    }
}

#[test]
fn aaaa_answers_the_v6_endpoints_of_the_chosen_pool() {
    let s = TestServer::base(EXTRA);
    let m = s.udp(&q_ecs(
        "www.lb.example.com.",
        RecordType::AAAA,
        "216.160.83.0/24",
    ));
    assert_eq!(addrs(&m), vec!["2001:db8:a::10"]);
    // a pool without IPv6: NODATA for AAAA
    let m = s.udp(&q("fo.lb.example.com.", RecordType::AAAA));
    assert!(m.answers.is_empty());
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(types(&m.authorities), vec![RecordType::SOA]);
}
