//! Protocol edges: minimal error answers with OPT (RFC 6891 section 7),
//! NOTIMP/NOTAUTH for other opcodes, name compression in record data and
//! glue owners, and no duplicate records in any answer. Responses are
//! decoded with hickory-proto and checked for content and size.

use std::net::SocketAddr;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use steerdns::dns::transport::Transport;
use steerdns::engine::answer::{self, Client, Outcome};
use steerdns::select::Rng;
use steerdns::snapshot::Snapshot;

use crate::harness::*;

/// A zone with an apex NS set with glue, a 2-NS and a 13-NS delegation
/// (glue A and AAAA each), MX, SOA, PTR and CNAME data to compress.
pub const REF_ZONE: &str = r#"
[zones."ref.example"]
ttl = "1h"
ns = ["ns1", "ns2"]
records = [
  { name = "ns1", type = "A", data = "192.0.2.53" },
  { name = "ns1", type = "AAAA", data = "2001:db8::53" },
  { name = "ns2", type = "A", data = "198.51.100.53" },
  { name = "ns2", type = "AAAA", data = "2001:db8:1::53" },
  { name = "@", type = "MX", data = "10 mail" },
  { name = "@", type = "MX", data = "20 mail2" },
  { name = "mail", type = "A", data = "192.0.2.25" },
  { name = "mail2", type = "A", data = "192.0.2.26" },
  { name = "ptr", type = "PTR", data = "mail" },
  { name = "alias", type = "CNAME", data = "mail" },
  { name = "two", type = "NS", data = "a.two" },
  { name = "two", type = "NS", data = "b.two" },
  { name = "a.two", type = "A", data = "192.0.2.1" },
  { name = "b.two", type = "A", data = "192.0.2.2" },
@BIG@
]
"#;

fn ref_zone() -> String {
    let mut big = String::new();
    for i in 1..=13 {
        big.push_str(&format!(
            "  {{ name = \"big\", type = \"NS\", data = \"ns{i}.big\" }},\n  {{ name = \"ns{i}.big\", type = \"A\", data = \"192.0.2.{i}\" }},\n  {{ name = \"ns{i}.big\", type = \"AAAA\", data = \"2001:db8:b::{i}\" }},\n"
        ));
    }
    REF_ZONE.replace("@BIG@", &big)
}

fn snapshot(extra: &str) -> Snapshot {
    let (_dir, path) = write_config(&format!("{BASE}\n{extra}"));
    steerdns::app::load_snapshot(&path, 1).expect("config loads")
}

fn ask(snap: &Snapshot, pkt: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let client = Client {
        addr: SocketAddr::from(([127, 0, 0, 1], 40000)),
        transport,
    };
    let mut out = Vec::new();
    match answer::answer(snap, pkt, client, &mut Rng::seeded(1), &mut out) {
        Outcome::Answered { .. } => Some(out),
        Outcome::Dropped => None,
    }
}

fn ask_msg(snap: &Snapshot, m: &Message, transport: Transport) -> (Vec<u8>, Message) {
    let bytes = ask(snap, &m.to_vec().unwrap(), transport).expect("answered");
    let decoded = decode(&bytes);
    (bytes, decoded)
}

/// Size of the same message as hickory encodes it (it compresses every name
/// it may, RFC 1035 style).
fn hickory_size(m: &Message) -> usize {
    let mut buf = Vec::new();
    let mut enc = BinEncoder::new(&mut buf);
    m.emit(&mut enc).unwrap();
    buf.len()
}

fn owners(rs: &[Record]) -> Vec<String> {
    rs.iter().map(|r| r.name.to_string()).collect()
}

/// A raw query for `a.lb.example.com. A` with the given OPT options.
fn raw_with_opt(options: &[u8], dnssec_ok: bool) -> Vec<u8> {
    let mut p = vec![0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    p.extend_from_slice(b"\x06static\x02lb\x07example\x03com\x00\x00\x01\x00\x01");
    p.extend_from_slice(&[
        0,
        0,
        41,
        0x04,
        0xD0,
        0,
        0,
        if dnssec_ok { 0x80 } else { 0 },
        0,
    ]);
    p.extend_from_slice(&(options.len() as u16).to_be_bytes());
    p.extend_from_slice(options);
    p
}

#[test]
fn formerr_caused_by_the_opt_record_carries_an_opt() {
    let snap = snapshot("");
    let ecs_ok = [0u8, 8, 0, 7, 0, 1, 24, 0, 81, 2, 69];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "ECS with bits past the prefix",
            raw_with_opt(&[0, 8, 0, 7, 0, 1, 20, 0, 81, 2, 0x4F], true),
        ),
        (
            "two ECS options",
            raw_with_opt(&[ecs_ok, ecs_ok].concat(), true),
        ),
        (
            "ECS family 3",
            raw_with_opt(&[0, 8, 0, 7, 0, 3, 24, 0, 81, 2, 69], true),
        ),
        (
            "option longer than the OPT",
            raw_with_opt(&[0, 8, 0, 9, 0, 1], true),
        ),
        ("non-root OPT owner", {
            let mut p = raw_with_opt(&[], true);
            let at = p.len() - 11;
            p.splice(at..at + 1, b"\x01x\x00".iter().copied());
            p
        }),
        ("two OPT records", {
            let mut p = raw_with_opt(&[], true);
            let opt = p[p.len() - 11..].to_vec();
            p.extend_from_slice(&opt);
            p[11] = 2;
            p
        }),
    ];
    for (what, pkt) in cases {
        let out = ask(&snap, &pkt, Transport::Udp).expect(what);
        let m = decode(&out);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr, "{what}");
        assert_eq!(m.metadata.id, 0xABCD, "{what}");
        assert_eq!(m.queries.len(), 1, "{what}: question echoed");
        let e = m.edns.as_ref().unwrap_or_else(|| panic!("{what}: no OPT"));
        assert_eq!(e.max_payload(), 1232, "{what}: our payload size");
        assert_eq!(e.version(), 0, "{what}");
        assert!(e.flags().dnssec_ok, "{what}: DO copied");
        assert!(m.answers.is_empty() && m.authorities.is_empty(), "{what}");
        assert!(e.options().as_ref().is_empty(), "{what}: no option echoed");
    }
    // A FORMERR without an OPT in the query has none.
    let mut no_opt = raw_with_opt(&[], false);
    no_opt.truncate(no_opt.len() - 11);
    no_opt[11] = 0;
    no_opt[5] = 2; // two questions promised
    let m = decode(&ask(&snap, &no_opt, Transport::Udp).unwrap());
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert!(m.edns.is_none());
    // No question but an OPT: FORMERR with OPT.
    let mut noq = raw_with_opt(&[], false);
    noq[5] = 0;
    noq.drain(12..12 + 27);
    let m = decode(&ask(&snap, &noq, Transport::Udp).unwrap());
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert!(m.queries.is_empty());
    assert!(
        m.edns.is_some(),
        "OPT found after an empty question section"
    );
}

#[test]
fn other_opcodes_get_notimp_or_notauth_with_question_and_opt() {
    let snap = snapshot("");
    for (opcode, name, want) in [
        (
            OpCode::Status,
            "static.lb.example.com.",
            ResponseCode::NotImp,
        ),
        (OpCode::Notify, "lb.example.com.", ResponseCode::NotImp),
        (OpCode::Update, "lb.example.com.", ResponseCode::NotImp),
        (OpCode::Notify, "example.org.", ResponseCode::NotAuth),
        (OpCode::Update, "example.org.", ResponseCode::NotAuth),
    ] {
        let mut m = qe(name, RecordType::SOA);
        m.metadata.op_code = opcode;
        let (_, r) = ask_msg(&snap, &m, Transport::Udp);
        assert_eq!(r.metadata.response_code, want, "{opcode:?} {name}");
        assert_eq!(r.metadata.op_code, opcode, "{opcode:?}: opcode echoed");
        assert_eq!(r.queries.len(), 1, "{opcode:?}: question echoed");
        assert_eq!(r.queries[0].name().to_string(), name);
        assert!(r.edns.is_some(), "{opcode:?}: OPT echoed");
        assert!(!r.metadata.authoritative);
        assert!(r.answers.is_empty());
        // Without EDNS in the query, none in the answer.
        let mut plain = q(name, RecordType::SOA);
        plain.metadata.op_code = opcode;
        let (_, r) = ask_msg(&snap, &plain, Transport::Udp);
        assert_eq!(r.metadata.response_code, want);
        assert!(r.edns.is_none());
    }
    // An opcode without a question: header only (plus OPT if sent).
    let mut p = raw_with_opt(&[], false);
    p[2] |= 2 << 3; // STATUS
    p[5] = 0;
    p.drain(12..12 + 27);
    let m = decode(&ask(&snap, &p, Transport::Udp).unwrap());
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    assert!(m.edns.is_some());
}

#[test]
fn apex_ns_is_compressed_with_glue() {
    let snap = snapshot(&ref_zone());
    let (bytes, m) = ask_msg(&snap, &qe("ref.example.", RecordType::NS), Transport::Udp);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let mut ns: Vec<String> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::NS(n) => n.0.to_string(),
            other => panic!("not NS: {other:?}"),
        })
        .collect();
    ns.sort();
    assert_eq!(ns, ["ns1.ref.example.", "ns2.ref.example."]);
    let mut glue = owners(&m.additionals);
    glue.sort();
    assert_eq!(
        glue,
        [
            "ns1.ref.example.",
            "ns1.ref.example.",
            "ns2.ref.example.",
            "ns2.ref.example."
        ]
    );
    // header 12 + question 17 + 2 NS (2+10+6) + 2 A (2+10+4) + 2 AAAA
    // (2+10+16) + OPT 11: every owner a pointer, NS data "nsN" + pointer.
    assert_eq!(bytes.len(), 12 + 17 + 2 * 18 + 2 * 16 + 2 * 28 + 11);
    assert!(
        bytes.len() <= hickory_size(&m),
        "no worse than hickory's encoder"
    );
}

#[test]
fn referrals_are_compressed() {
    let snap = snapshot(&ref_zone());
    for (name, n_ns, glue) in [
        ("x.two.ref.example.", 2, 2),
        ("www.big.ref.example.", 13, 26),
    ] {
        let (bytes, m) = ask_msg(&snap, &qe(name, RecordType::A), Transport::Tcp);
        assert!(!m.metadata.authoritative, "referral");
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), n_ns, "{name}");
        assert!(
            m.authorities
                .iter()
                .all(|r| r.record_type() == RecordType::NS)
        );
        assert_eq!(m.additionals.len(), glue, "{name}: glue");
        for g in &m.additionals {
            let target = g.name.to_string();
            assert!(
                m.authorities.iter().any(|r| match &r.data {
                    RData::NS(n) => n.0.to_string() == target,
                    _ => false,
                }),
                "glue {target} belongs to an NS"
            );
        }
        assert!(
            bytes.len() <= hickory_size(&m),
            "{name}: {} bytes, hickory {}",
            bytes.len(),
            hickory_size(&m)
        );
    }
    // The 2-NS referral, exactly: header 12 + question 23 + 2 NS
    // (2+10+ "a"+ptr 4) + 2 glue A (2+10+4) + OPT 11.
    let (bytes, _) = ask_msg(
        &snap,
        &qe("x.two.ref.example.", RecordType::A),
        Transport::Udp,
    );
    assert_eq!(bytes.len(), 12 + 23 + 2 * 16 + 2 * 16 + 11);
    // The 13-NS referral fits in 1232 octets of UDP now, with all its glue.
    let (bytes, m) = ask_msg(
        &snap,
        &qe("www.big.ref.example.", RecordType::A),
        Transport::Udp,
    );
    assert!(!m.metadata.truncation, "{} bytes", bytes.len());
    assert_eq!(m.additionals.len(), 26);
}

#[test]
fn rdata_names_point_into_the_message() {
    let snap = snapshot(&ref_zone());
    // MX: preference kept, exchange compressed against the question.
    let (bytes, m) = ask_msg(&snap, &q("ref.example.", RecordType::MX), Transport::Udp);
    let mut mx: Vec<(u16, String)> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::MX(mx) => (mx.preference, mx.exchange.to_string()),
            other => panic!("{other:?}"),
        })
        .collect();
    mx.sort();
    assert_eq!(
        mx,
        [
            (10, "mail.ref.example.".into()),
            (20, "mail2.ref.example.".into())
        ]
    );
    // 12 + 17 + (2+10+2+"mail"+ptr 7) + (2+10+2+"mail2"+ptr 8)
    assert_eq!(bytes.len(), 12 + 17 + 21 + 22);
    // SOA: mname and rname compressed.
    let (bytes, m) = ask_msg(&snap, &q("ref.example.", RecordType::SOA), Transport::Udp);
    match &m.answers[0].data {
        RData::SOA(soa) => {
            assert_eq!(soa.mname.to_string(), "ns1.ref.example.");
            assert_eq!(soa.rname.to_string(), "hostmaster.ref.example.");
        }
        other => panic!("{other:?}"),
    }
    // 12 + 17 + 2+10 + ("ns1"+ptr 6) + ("hostmaster"+ptr 13) + 20
    assert_eq!(bytes.len(), 12 + 17 + 12 + 6 + 13 + 20);
    // PTR, and a CNAME whose target's records then point at the CNAME data.
    let (_, m) = ask_msg(
        &snap,
        &q("ptr.ref.example.", RecordType::PTR),
        Transport::Udp,
    );
    assert!(matches!(&m.answers[0].data, RData::PTR(p) if p.0.to_string() == "mail.ref.example."));
    let (bytes, m) = ask_msg(
        &snap,
        &q("alias.ref.example.", RecordType::A),
        Transport::Udp,
    );
    assert_eq!(
        owners(&m.answers),
        ["alias.ref.example.", "mail.ref.example."]
    );
    assert!(matches!(&m.answers[1].data, RData::A(a) if a.0.to_string() == "192.0.2.25"));
    // 12 + 23 + CNAME (2+10+"mail"+ptr 7) + A (ptr 2+10+4)
    assert_eq!(bytes.len(), 12 + 23 + 19 + 16);
    // NXDOMAIN: the SOA in authority compresses too.
    let (_, m) = ask_msg(
        &snap,
        &q("nope.ref.example.", RecordType::A),
        Transport::Udp,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(owners(&m.authorities), ["ref.example."]);
    // The question's case is what compressed names read as (as sent).
    let (_, m) = ask_msg(&snap, &q("REF.example.", RecordType::NS), Transport::Udp);
    assert_eq!(m.answers.len(), 2);
}

#[test]
fn srv_targets_are_not_compressed() {
    // RFC 2782: "name compression is not to be used for this field".
    let snap = snapshot("");
    let (bytes, m) = ask_msg(
        &snap,
        &q("_sip._udp.lb.example.com.", RecordType::SRV),
        Transport::Udp,
    );
    match &m.answers[0].data {
        RData::SRV(s) => assert_eq!(s.target.to_string(), "sip.lb.example.com."),
        other => panic!("{other:?}"),
    }
    let target = b"\x03sip\x02lb\x07example\x03com\x00";
    assert!(bytes.windows(target.len()).any(|w| w == target));
}

#[test]
fn no_duplicate_records_in_any_answer() {
    // The same address in two weighted pools, CNAME chains, and loops
    // `check` cannot see: a balanced host name pointing back at its own
    // name, and one whose host name is a CNAME back to the balanced name.
    let extra = r#"
[zones."dup.example"]
ns = ["ns1"]
records = [
  { name = "ns1", type = "A", data = "192.0.2.53" },
  { name = "back", type = "CNAME", data = "round" },
  { name = "a", type = "CNAME", data = "b" },
  { name = "b", type = "A", data = "192.0.2.7" },
]

[pools.p1]
endpoints = [{ address = "192.0.2.10" }, { address = "192.0.2.11" }]

[pools.p2]
endpoints = [{ address = "192.0.2.10" }, { address = "192.0.2.12" }]

[pools.self]
endpoints = [{ address = "self.dup.example" }]

[names."w.dup.example"]
policy = "weighted"
pools = ["p1", "p2"]
max_answers = 8

[names."self.dup.example"]
policy = "failover"
pools = ["self"]

[pools.back]
endpoints = [{ address = "back.dup.example" }]

[names."round.dup.example"]
policy = "failover"
pools = ["back"]
"#;
    let snap = snapshot(extra);
    let queries = [
        ("w.dup.example.", RecordType::A),
        ("round.dup.example.", RecordType::A),
        ("back.dup.example.", RecordType::A),
        ("self.dup.example.", RecordType::A),
        ("a.dup.example.", RecordType::A),
        ("dup.example.", RecordType::NS),
        ("ref.example.", RecordType::NS),
    ];
    let snap2 = snapshot(&format!("{extra}\n{}", ref_zone()));
    for s in [&snap, &snap2] {
        for (name, t) in queries {
            let (_, m) = ask_msg(s, &qe(name, t), Transport::Tcp);
            for section in [&m.answers, &m.authorities, &m.additionals] {
                for (i, r) in section.iter().enumerate() {
                    assert!(
                        !section[..i].contains(r),
                        "{name} {t}: duplicate {r} in {section:?}"
                    );
                }
            }
        }
    }
    let (_, m) = ask_msg(&snap, &qe("w.dup.example.", RecordType::A), Transport::Udp);
    assert_eq!(addrs(&m), ["192.0.2.10", "192.0.2.11", "192.0.2.12"]);
    let (_, m) = ask_msg(
        &snap,
        &qe("round.dup.example.", RecordType::A),
        Transport::Udp,
    );
    assert_eq!(
        owners(&m.answers),
        ["round.dup.example.", "back.dup.example."],
        "round -> back -> round again: stop"
    );
    assert_eq!(types(&m.answers), [RecordType::CNAME, RecordType::CNAME]);
}
