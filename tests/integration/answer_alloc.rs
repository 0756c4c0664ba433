//! The answer engine does not allocate per query, also for answers with
//! compressed record data and glue (apex NS, referrals, MX, SOA, CNAME) and
//! for minimal error answers. Counted with the support layer's counting
//! allocator (per thread: tests on other threads do not disturb it).

use std::net::SocketAddr;

use steerdns::dns::transport::Transport;
use steerdns::engine::answer::{AnswerInfo, Client, Outcome, answer};
use steerdns::engine::template::{Templates, answer_templated, next_snapshot_id};
use steerdns::select::Rng;

use crate::harness::*;
use crate::support::alloc::{allocs, assert_counter_counts};

/// A server section for the reference zone of the protocol tests.
const SERVER: &str = r#"
[server]
node_name = "alloc-test"
dns_listen = ["127.0.0.1:0"]
"#;

/// A balanced name in the reference zone, for the template path.
const BALANCED: &str = r#"
[pools.one]
endpoints = [{ address = "192.0.2.80" }, { address = "2001:db8::80" }]

[names."lb.ref.example"]
policy = "failover"
pools = ["one"]
"#;

fn query(name: &str, qtype: u16, opcode: u8, opt: &[u8]) -> Vec<u8> {
    RawQuery::new(name, qtype)
        .id(0x1234)
        .opcode(opcode)
        .options(opt)
        .build()
}

#[test]
fn answers_do_not_allocate() {
    let snap = snapshot_of(&format!(
        "{SERVER}{}{BALANCED}",
        crate::protocol::ref_zone()
    ));
    let bad_ecs = [0, 8, 0, 7, 0, 3, 24, 0, 81, 2, 69];
    let cases = [
        ("apex NS with glue", query("ref.example", 2, 0, &[]), 0),
        ("referral", query("x.two.ref.example", 1, 0, &[]), 0),
        (
            "referral, 13 NS",
            query("www.big.ref.example", 1, 0, &[]),
            0,
        ),
        ("MX", query("ref.example", 15, 0, &[]), 0),
        ("SOA", query("ref.example", 6, 0, &[]), 0),
        ("CNAME chain", query("alias.ref.example", 1, 0, &[]), 0),
        ("NXDOMAIN", query("nope.ref.example", 1, 0, &[]), 3),
        ("FORMERR from OPT", query("ref.example", 1, 0, &bad_ecs), 1),
        ("NOTIMP", query("ref.example", 6, 2, &[]), 4),
        (
            "client cookie (server cookie made)",
            query("ref.example", 1, 0, &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]),
            0,
        ),
    ];
    let client = Client {
        addr: SocketAddr::from(([127, 0, 0, 1], 40000)),
        transport: Transport::Udp,
    };
    let mut rng = Rng::seeded(1);
    let mut out = Vec::with_capacity(4096);
    for (what, pkt, rcode) in &cases {
        // Warm up (thread locals, lazy statics).
        answer(&snap, pkt, client, &mut rng, &mut out);
        let before = allocs();
        for _ in 0..1000 {
            let o = answer(&snap, std::hint::black_box(pkt), client, &mut rng, &mut out);
            assert_eq!(o, Outcome::Answered { rcode: *rcode }, "{what}");
        }
        assert_eq!(allocs() - before, 0, "{what} allocated");
        assert!(out.len() > 12, "{what}");
    }
    // Through the response templates: the first answer builds one (a
    // single copy into the preallocated table), every later one replays it.
    let mut templates = Templates::new();
    let id = next_snapshot_id();
    let ecs = [0, 8, 0, 7, 0, 1, 24, 0, 81, 2, 69];
    let templated = [
        ("static A", query("mail.ref.example", 1, 0, &[]), 0),
        (
            "balanced A with ECS",
            query("lb.ref.example", 1, 0, &ecs),
            0,
        ),
        ("balanced AAAA", query("lb.ref.example", 28, 0, &[]), 0),
        ("NXDOMAIN", query("nope.ref.example", 1, 0, &[]), 3),
        ("apex NS with glue", query("ref.example", 2, 0, &[]), 0),
    ];
    for (what, pkt, rcode) in &templated {
        let mut info = AnswerInfo::default();
        answer_templated(
            &mut templates,
            &snap,
            id,
            pkt,
            client,
            &mut rng,
            &mut out,
            &mut info,
        );
        let (hits, _) = templates.stats();
        let before = allocs();
        for _ in 0..1000 {
            let mut info = AnswerInfo::default();
            let o = answer_templated(
                &mut templates,
                &snap,
                id,
                std::hint::black_box(pkt),
                client,
                &mut rng,
                &mut out,
                &mut info,
            );
            assert_eq!(o, Outcome::Answered { rcode: *rcode }, "{what}");
        }
        assert_eq!(allocs() - before, 0, "{what} allocated (templates)");
        assert_eq!(templates.stats().0 - hits, 1000, "{what}: not replayed");
    }
    assert_counter_counts();
}
