//! EDNS0: OPT echo, payload size, truncation, BADVERS, unknown options.

use hickory_proto::op::{Edns, ResponseCode};

use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::EdnsOption;

use crate::harness::*;

/// 12 TXT records of ~70 bytes: ~1 KB, over 512 but under 1232.
fn big_txt() -> String {
    let mut s = String::from(
        "[[zones.\"big.example\".records]]\nname = \"@\"\ntype = \"TXT\"\ndata = \"\\\"seed\\\"\"\n",
    );
    for i in 0..12 {
        s.push_str(&format!(
            "[[zones.\"big.example\".records]]\nname = \"many\"\ntype = \"TXT\"\ndata = \"\\\"{i:02}-{}\\\"\"\n",
            "x".repeat(64)
        ));
    }
    s
}

fn with_big() -> TestServer {
    TestServer::base(&format!(
        "[zones.\"big.example\"]\nns = [\"ns1.lb.example.com.\"]\n{}",
        big_txt()
    ))
}

#[test]
fn opt_is_echoed_with_our_payload_size() {
    let s = TestServer::base("");
    let mut m = qe("static.lb.example.com.", RecordType::A);
    m.edns.as_mut().unwrap().set_max_payload(4096);
    m.edns.as_mut().unwrap().set_dnssec_ok(true);
    let r = s.udp(&m);
    let e = r.edns.as_ref().expect("OPT echoed");
    assert_eq!(e.max_payload(), 1232);
    assert_eq!(e.version(), 0);
    assert!(e.flags().dnssec_ok, "DO is copied (RFC 3225)");
    let r = s.udp(&q("static.lb.example.com.", RecordType::A));
    assert!(r.edns.is_none(), "no OPT in, no OPT out");
}

#[test]
fn truncation_without_edns_and_full_answers_with_it() {
    let s = with_big();
    let plain = s.udp(&q("many.big.example.", RecordType::TXT));
    assert!(plain.metadata.truncation, "over 512 bytes without EDNS");
    assert!(plain.answers.is_empty());
    assert_eq!(plain.queries.len(), 1);

    let small = {
        let mut m = qe("many.big.example.", RecordType::TXT);
        m.edns.as_mut().unwrap().set_max_payload(700);
        s.udp(&m)
    };
    assert!(small.metadata.truncation, "client buffer 700 is honoured");

    let full = s.udp(&qe("many.big.example.", RecordType::TXT));
    assert!(!full.metadata.truncation);
    assert_eq!(full.answers.len(), 12);

    let tcp = s.tcp(&q("many.big.example.", RecordType::TXT));
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 12);
}

#[test]
fn payload_cap_applies_when_client_offers_more() {
    let s = TestServer::start(&format!(
        "{}\n[zones.\"big.example\"]\nns = [\"ns1.lb.example.com.\"]\n{}",
        BASE.replace("udp_workers = 1", "udp_workers = 1\nmax_udp_payload = 600"),
        big_txt()
    ));
    let mut m = qe("many.big.example.", RecordType::TXT);
    m.edns.as_mut().unwrap().set_max_payload(4096);
    let r = s.udp(&m);
    assert!(r.metadata.truncation, "capped at 600 bytes");
    assert_eq!(r.edns.as_ref().unwrap().max_payload(), 600);
}

#[test]
fn badvers_for_unknown_edns_version() {
    let s = TestServer::base("");
    let mut m = qe("static.lb.example.com.", RecordType::A);
    m.edns.as_mut().unwrap().set_version(1);
    let raw = udp_raw(s.udp, &m.to_vec().unwrap()).unwrap();
    // header RCODE 0, OPT extended RCODE 1 => 16 (BADVERS)
    assert_eq!(raw[3] & 0x0F, 0);
    let r = decode(&raw);
    // 16 is both BADVERS and BADSIG; hickory names it BADSIG
    assert_eq!(u16::from(r.metadata.response_code), 16);
    assert!(r.answers.is_empty());
    assert_eq!(r.edns.as_ref().unwrap().version(), 0);
}

#[test]
fn unknown_options_are_ignored() {
    let s = TestServer::base("");
    let mut m = qe("static.lb.example.com.", RecordType::A);
    m.edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Unknown(65001, vec![1, 2, 3]));
    let r = s.udp(&m);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&r), vec!["192.0.2.1", "192.0.2.2"]);
    let _ = Edns::new();
}
