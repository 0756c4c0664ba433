//! Geo steering by EDNS Client Subnet or source address, and ECS scopes.

use hickory_proto::rr::RecordType;

use crate::harness::*;

const WWW: &str = "www.lb.example.com.";

#[test]
fn steers_by_continent_of_the_client_subnet() {
    let s = TestServer::base("");
    for (subnet, want) in [
        ("81.2.69.0/24", "192.0.2.10"),       // GB, EU
        ("89.160.20.0/24", "192.0.2.10"),     // SE, EU
        ("216.160.83.0/24", "198.51.100.10"), // US, NA
        ("200.160.0.0/24", "198.51.100.10"),  // BR, SA
        ("175.16.199.0/24", "203.0.113.10"),  // CN, AS
        ("203.2.218.0/24", "203.0.113.10"),   // AU, OC
        ("196.216.2.0/24", "192.0.2.10"),     // ZA, AF: default
        ("192.0.2.0/24", "192.0.2.10"),       // unknown: default
    ] {
        for m in [
            s.udp(&q_ecs(WWW, RecordType::A, subnet)),
            s.tcp(&q_ecs(WWW, RecordType::A, subnet)),
        ] {
            assert_eq!(addrs(&m), vec![want], "{subnet}");
            assert!(m.metadata.authoritative);
            assert_eq!(m.answers[0].ttl, 30);
        }
    }
    let m = s.udp(&q_ecs(WWW, RecordType::AAAA, "2001:218::/32"));
    assert_eq!(addrs(&m), vec!["2001:db8:f::10"], "JP over IPv6");
    let m = s.udp(&q_ecs(WWW, RecordType::AAAA, "2a02:d280::/29"));
    assert_eq!(addrs(&m), vec!["2001:db8:e::10"], "CZ over IPv6");
}

#[test]
fn scope_is_bounded_by_the_geoip_network_and_the_source() {
    let s = TestServer::base("");
    let m = s.udp(&q_ecs(WWW, RecordType::A, "81.2.69.0/24"));
    let (src, scope) = ecs_of(&m).expect("ECS echoed");
    assert_eq!(src, 24);
    assert!(scope > 0 && scope <= 24, "scope {scope}");

    // a /32 source is truncated to /24 before lookup; the scope never exceeds that
    let m = s.udp(&q_ecs(WWW, RecordType::A, "81.2.69.77/32"));
    assert_eq!(addrs(&m), vec!["192.0.2.10"]);
    let (src, scope) = ecs_of(&m).unwrap();
    assert_eq!(src, 32, "source echoed as sent");
    assert!(scope > 0 && scope <= 24, "scope {scope}");

    // a short source prefix caps the scope
    let m = s.udp(&q_ecs(WWW, RecordType::A, "81.2.0.0/16"));
    let (_, scope) = ecs_of(&m).unwrap();
    assert!(scope <= 16, "scope {scope}");

    // an unlocated network: the answer holds for the whole empty region
    let m = s.udp(&q_ecs(WWW, RecordType::A, "192.0.2.0/24"));
    let (_, scope) = ecs_of(&m).unwrap();
    assert!(scope <= 24, "scope {scope}");

    let m = s.udp(&q_ecs(WWW, RecordType::AAAA, "2001:218:1234::/48"));
    let (src, scope) = ecs_of(&m).unwrap();
    assert_eq!(src, 48);
    assert!(
        scope > 0 && scope <= 32,
        "JP network is a /32: scope {scope}"
    );
}

#[test]
fn location_independent_answers_have_scope_zero() {
    let s = TestServer::base("");
    for name in ["static.lb.example.com.", "nope.lb.example.com."] {
        let m = s.udp(&q_ecs(name, RecordType::A, "81.2.69.0/24"));
        assert_eq!(ecs_of(&m), Some((24, 0)), "{name}");
    }
    // source /0: do not use any address, answer the default with scope 0
    let m = s.udp(&q_ecs(WWW, RecordType::A, "0.0.0.0/0"));
    assert_eq!(addrs(&m), vec!["192.0.2.10"]);
    assert_eq!(ecs_of(&m), Some((0, 0)));
}

#[test]
fn without_ecs_the_source_address_locates_the_client() {
    // 127.0.0.0/8 placed in the US by an override: source-based steering.
    let s = TestServer::base("[[geoip.override]]\ncidr = \"127.0.0.0/8\"\ncountry = \"US\"\n");
    let m = s.udp(&qe(WWW, RecordType::A));
    assert_eq!(addrs(&m), vec!["198.51.100.10"]);
    assert!(ecs_of(&m).is_none(), "no ECS in, none out");
    let m = s.tcp(&q(WWW, RecordType::A));
    assert_eq!(addrs(&m), vec!["198.51.100.10"]);
    // ECS still wins over the source
    let m = s.udp(&q_ecs(WWW, RecordType::A, "175.16.199.0/24"));
    assert_eq!(addrs(&m), vec!["203.0.113.10"]);
}

#[test]
fn overrides_beat_the_database() {
    let s = TestServer::base(
        "[[geoip.override]]\ncidr = \"81.2.69.0/24\"\ncontinent = \"OC\"\ncountry = \"AU\"\n",
    );
    let m = s.udp(&q_ecs(WWW, RecordType::A, "81.2.69.0/24"));
    assert_eq!(addrs(&m), vec!["203.0.113.10"], "GB network placed in AU");
    let (_, scope) = ecs_of(&m).unwrap();
    assert!(scope > 0 && scope <= 24, "scope {scope}");
    // the neighbour keeps its database location
    let m = s.udp(&q_ecs(WWW, RecordType::A, "89.160.20.0/24"));
    assert_eq!(addrs(&m), vec!["192.0.2.10"]);
}

#[test]
fn ecs_can_be_disabled() {
    let s = TestServer::start(&BASE.replace("udp_workers = 1", "udp_workers = 1\necs = false"));
    let m = s.udp(&q_ecs(WWW, RecordType::A, "216.160.83.0/24"));
    assert_eq!(
        addrs(&m),
        vec!["192.0.2.10"],
        "ECS ignored: 127.0.0.1 is unlocated"
    );
    assert!(
        ecs_of(&m).is_none(),
        "RFC 7871: no ECS option when not supported"
    );
}

/// The scope is the widest prefix over which the *answer* stays the same
/// (decision trie merged at config load), not the GeoIP network: in the
/// continent-only map of the base config, EU and the default share the list
/// ["eu", "na"], and the sample database has only a handful of networks.
#[test]
fn scope_is_merged_over_networks_with_the_same_answer() {
    let s = TestServer::base("");
    for (subnet, qtype, want, want_scope) in [
        // 0.0.0.0/1 holds only unlocated space and the EU networks 81.2.69/24
        // and 89.160.20/24: all ["eu", "na"].
        ("81.2.69.0/24", RecordType::A, "192.0.2.10", 1),
        ("89.160.20.0/24", RecordType::A, "192.0.2.10", 1),
        // 192.0.0.0/5 (192-199) is unlocated space plus the ZA (AF) /24,
        // which has no rule: the default ["eu", "na"] again.
        ("192.0.2.0/24", RecordType::A, "192.0.2.10", 5),
        ("196.216.2.0/24", RecordType::A, "192.0.2.10", 5),
        // The US /24 (NA: ["na", "eu"]) is surrounded by unlocated space
        // (default ["eu", "na"]): no merge.
        ("216.160.83.0/24", RecordType::A, "198.51.100.10", 24),
        // The JP /32 (AS) differs from its unlocated sibling: no merge.
        ("2001:218::/32", RecordType::AAAA, "2001:db8:f::10", 32),
        // CZ (EU) in 2800::/5, otherwise unlocated: the default list.
        ("2a02:d280::/29", RecordType::AAAA, "2001:db8:e::10", 5),
    ] {
        let m = s.udp(&q_ecs(WWW, qtype, subnet));
        assert_eq!(addrs(&m), vec![want], "{subnet}");
        let (_, scope) = ecs_of(&m).expect("ECS echoed");
        assert_eq!(scope, want_scope, "{subnet}");
    }
    // A short source: the merged scope can be shorter than the source.
    let m = s.udp(&q_ecs(WWW, RecordType::A, "81.0.0.0/8"));
    assert_eq!(ecs_of(&m), Some((8, 1)));
    // Without ECS the source address (127.0.0.1, unlocated) decides; no ECS
    // option in the reply.
    let m = s.udp(&qe(WWW, RecordType::A));
    assert_eq!(addrs(&m), vec!["192.0.2.10"]);
    assert!(ecs_of(&m).is_none());
}
