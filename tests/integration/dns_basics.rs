//! Zones, static records, negative answers, rcodes, CNAME, wildcards,
//! delegation, CHAOS — over UDP and TCP.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, RData, RecordType};

use crate::harness::*;

#[test]
fn apex_soa_and_ns_with_glue() {
    let s = TestServer::base("");
    for m in [
        s.udp(&q("lb.example.com.", RecordType::SOA)),
        s.tcp(&q("lb.example.com.", RecordType::SOA)),
    ] {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(types(&m.answers), vec![RecordType::SOA]);
        let RData::SOA(soa) = &m.answers[0].data else {
            panic!()
        };
        assert_eq!(soa.serial, 7);
        assert_eq!(soa.mname.to_string(), "ns1.lb.example.com.");
    }
    let m = s.udp(&q("lb.example.com.", RecordType::NS));
    assert_eq!(m.answers.len(), 2);
    assert!(m.metadata.authoritative);
    // glue for both in-zone name servers
    let glue: Vec<String> = m
        .additionals
        .iter()
        .map(|r| format!("{} {}", r.name, r.record_type()))
        .collect();
    assert!(
        glue.contains(&"ns1.lb.example.com. A".to_string()),
        "{glue:?}"
    );
    assert!(
        glue.contains(&"ns1.lb.example.com. AAAA".to_string()),
        "{glue:?}"
    );
    assert!(
        glue.contains(&"ns2.lb.example.com. A".to_string()),
        "{glue:?}"
    );
}

#[test]
fn static_records_case_insensitive_and_question_echoed() {
    let s = TestServer::base("");
    // raw bytes: the question must come back exactly as sent
    let pkt = RawQuery::new("StAtIc.LB.example.COM", 1).rd().build();
    let raw = udp_raw(s.udp, &pkt).unwrap();
    assert_eq!(&raw[12..pkt.len()], &pkt[12..], "question echoed as sent");
    let m = decode(&raw);
    assert_eq!(addrs(&m), vec!["192.0.2.1", "192.0.2.2"]);
    assert!(m.answers.iter().all(|r| r.ttl == 300));
    assert!(m.metadata.authoritative);
    assert!(m.metadata.recursion_desired, "RD is copied");
    assert!(!m.metadata.recursion_available);
    assert_eq!(m.metadata.id, 0x4242);
    for (name, t) in [
        ("lb.example.com.", RecordType::MX),
        ("txt.lb.example.com.", RecordType::TXT),
        ("_sip._udp.lb.example.com.", RecordType::SRV),
        ("lb.example.com.", RecordType::CAA),
        ("ptr.lb.example.com.", RecordType::PTR),
    ] {
        let m = s.tcp(&q(name, t));
        assert_eq!(types(&m.answers), vec![t], "{name} {t}");
    }
    let m = s.udp(&q("lb.example.com.", RecordType::MX));
    let RData::MX(mx) = &m.answers[0].data else {
        panic!()
    };
    assert_eq!(
        mx.exchange.to_string(),
        "mail.lb.example.com.",
        "relative names are relative to the zone"
    );
}

#[test]
fn nxdomain_and_nodata_carry_soa_with_negative_ttl() {
    let s = TestServer::base("");
    let m = s.udp(&q("nope.lb.example.com.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert!(m.answers.is_empty());
    assert_eq!(types(&m.authorities), vec![RecordType::SOA]);
    // min(SOA TTL 2h, minimum 60s)
    assert_eq!(m.authorities[0].ttl, 60);

    let m = s.udp(&q("static.lb.example.com.", RecordType::AAAA));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(types(&m.authorities), vec![RecordType::SOA]);

    // an empty non-terminal is NODATA, not NXDOMAIN
    let m = s.udp(&q("ent.lb.example.com.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(types(&m.authorities), vec![RecordType::SOA]);
}

#[test]
fn refused_outside_zones_and_notimp_for_other_opcodes() {
    let s = TestServer::base("");
    let m = s.udp(&q("example.org.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
    let m = s.udp(&q("example.com.", RecordType::A));
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::Refused,
        "the parent of a zone is not ours"
    );

    let mut notify = q("lb.example.com.", RecordType::SOA).to_vec().unwrap();
    notify[2] = (notify[2] & 0x87) | (4 << 3);
    let m = decode(&udp_raw(s.udp, &notify).unwrap());
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);

    let m = s.udp(&q("lb.example.com.", RecordType::AXFR));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    let m = s.udp(&q_class("lb.example.com.", RecordType::A, DNSClass::HS));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn cname_chains_are_followed_inside_the_zone() {
    let s = TestServer::base("");
    let m = s.udp(&q("alias.lb.example.com.", RecordType::A));
    assert_eq!(
        types(&m.answers),
        vec![
            RecordType::CNAME,
            RecordType::CNAME,
            RecordType::A,
            RecordType::A
        ]
    );
    assert_eq!(m.answers[1].name.to_string(), "alias2.lb.example.com.");
    assert_eq!(m.answers[2].name.to_string(), "static.lb.example.com.");

    // into a balanced name
    let m = s.udp(&q_ecs(
        "to-www.lb.example.com.",
        RecordType::A,
        "216.160.83.0/24",
    ));
    assert_eq!(types(&m.answers), vec![RecordType::CNAME, RecordType::A]);
    assert_eq!(addrs(&m), vec!["198.51.100.10"]);

    // out of the zone: only the CNAME
    let m = s.udp(&q("outside.lb.example.com.", RecordType::A));
    assert_eq!(types(&m.answers), vec![RecordType::CNAME]);

    // asking for the CNAME itself
    let m = s.udp(&q("alias.lb.example.com.", RecordType::CNAME));
    assert_eq!(types(&m.answers), vec![RecordType::CNAME]);
}

#[test]
fn wildcards_synthesise_records() {
    let s = TestServer::base("");
    let m = s.udp(&q("anything.wild.lb.example.com.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&m), vec!["192.0.2.99"]);
    assert_eq!(
        m.answers[0].name.to_string(),
        "anything.wild.lb.example.com."
    );
    let m = s.udp(&q("a.b.wild.lb.example.com.", RecordType::TXT));
    assert_eq!(types(&m.answers), vec![RecordType::TXT]);
    let m = s.udp(&q("x.wild.lb.example.com.", RecordType::MX));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    // the wildcard does not cover names that exist
    let m = s.udp(&q("x.deep.ent.lb.example.com.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn delegation_gives_a_referral_without_aa() {
    let s = TestServer::base("");
    for name in ["child.lb.example.com.", "www.child.lb.example.com."] {
        let m = s.udp(&q(name, RecordType::A));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(!m.metadata.authoritative, "{name}");
        assert!(m.answers.is_empty());
        assert_eq!(types(&m.authorities), vec![RecordType::NS]);
        assert_eq!(m.authorities[0].name.to_string(), "child.lb.example.com.");
        assert_eq!(addrs_in(&m.additionals), vec!["192.0.2.200"]);
    }
}

#[test]
fn any_is_answered_minimally() {
    let s = TestServer::base("");
    let m = s.udp(&q("static.lb.example.com.", RecordType::ANY));
    assert_eq!(types(&m.answers), vec![RecordType::A, RecordType::A]);
    let m = s.udp(&q("lb.example.com.", RecordType::ANY));
    let first = m.answers[0].record_type();
    assert!(
        m.answers.iter().all(|r| r.record_type() == first),
        "one RRset only"
    );
}

#[test]
fn chaos_identity_and_nsid() {
    let s = TestServer::base("");
    for name in ["id.server.", "hostname.bind."] {
        let m = s.udp(&q_class(name, RecordType::TXT, DNSClass::CH));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        let RData::TXT(t) = &m.answers[0].data else {
            panic!()
        };
        assert_eq!(t.to_string(), "test-node-7");
        assert_eq!(m.answers[0].dns_class, DNSClass::CH);
    }
    let m = s.udp(&q_class("version.bind.", RecordType::TXT, DNSClass::CH));
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::Refused,
        "version hidden by default"
    );

    let mut m = qe("static.lb.example.com.", RecordType::A);
    m.edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(hickory_proto::rr::rdata::opt::EdnsOption::NSID(
            hickory_proto::rr::rdata::opt::NSIDPayload::new(vec![]).unwrap(),
        ));
    let raw = udp_raw(s.udp, &m.to_vec().unwrap()).unwrap();
    let needle = b"test-node-7";
    assert!(
        raw.windows(needle.len()).any(|w| w == needle),
        "NSID carries the node name"
    );
    let m = decode(&raw);
    assert_eq!(addrs(&m), vec!["192.0.2.1", "192.0.2.2"]);
}

#[test]
fn version_bind_answers_when_configured() {
    let s = TestServer::start(&BASE.replace(
        "node_name = \"test-node-7\"",
        "node_name = \"n\"\nversion = \"steerdns-test\"",
    ));
    let m = s.tcp(&q_class("version.bind.", RecordType::TXT, DNSClass::CH));
    let RData::TXT(t) = &m.answers[0].data else {
        panic!("{m:?}")
    };
    assert_eq!(t.to_string(), "steerdns-test");
}
