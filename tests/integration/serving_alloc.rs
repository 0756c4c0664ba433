//! The whole per-query path allocates nothing after warm-up:
//! `Handler::handle` (snapshot load, the answer engine, RRL, cookies, the
//! query/answer/GeoIP counters and the sampled duration) fed what the UDP
//! and the TCP transports hand it, for static, geo, geo+ECS, NXDOMAIN and
//! error queries, and for packets it drops. Counted per thread with the
//! support layer's counting allocator.

use std::net::SocketAddr;
use std::sync::Arc;

use steerdns::dns::transport::{Handler, Transport};
use steerdns::metrics::Metrics;
use steerdns::serving::Shared;

use crate::harness::*;
use crate::support::alloc::{assert_counter_counts, counted};

/// Queries per case and transport, after the warm-up.
const N: usize = 2_000;

/// One kind of query and what the handler does with it: `Some(rcode)`
/// answered, `None` dropped.
struct Case {
    what: &'static str,
    pkt: Vec<u8>,
    want: Option<u8>,
}

fn cases() -> Vec<Case> {
    let query = |name: &str| RawQuery::new(name, 1).id(0x1234).rd().edns(1232);
    let case = |what, q: RawQuery, want| Case {
        what,
        pkt: q.build(),
        want,
    };
    let mut runt = query("static.lb.example.com").build();
    runt.truncate(runt.len() - 14); // into the question's type
    vec![
        case("static", query("static.lb.example.com"), Some(0)),
        case("geo", query("www.lb.example.com"), Some(0)),
        case(
            "geo+ECS",
            query("www.lb.example.com").ecs_v4(24, &[216, 160, 83]),
            Some(0),
        ),
        case("NXDOMAIN", query("nx.lb.example.com"), Some(3)),
        case("REFUSED (no zone)", query("example.org"), Some(5)),
        case(
            "NOTIMP (STATUS)",
            query("lb.example.com").opcode(2),
            Some(4),
        ),
        case(
            "FORMERR (ECS family 3)",
            query("www.lb.example.com").options(&[0, 8, 0, 7, 0, 3, 24, 0, 81, 2, 69]),
            Some(1),
        ),
        case(
            "client cookie",
            query("static.lb.example.com").option(10, &[1, 2, 3, 4, 5, 6, 7, 8]),
            Some(0),
        ),
        Case {
            what: "FORMERR (question cut short)",
            pkt: runt,
            want: Some(1),
        },
        Case {
            what: "dropped (runt)",
            pkt: vec![0x12, 0x34, 0, 0, 0],
            want: None,
        },
    ]
}

/// Every case over both transports: zero allocations in `N` queries each,
/// after a warm-up (this thread's RNG, metric shards, duration sampler,
/// the RRL table). `check_rcode`: whether each answer must carry the
/// case's rcode (not under a tight rate limit, which slips and drops).
/// Returns (answered, dropped).
fn assert_no_allocation(what: &str, shared: &Shared, check_rcode: bool) -> (usize, usize) {
    let client: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let mut out = Vec::with_capacity(65535);
    let (mut answered, mut dropped) = (0, 0);
    for transport in [Transport::Udp, Transport::Tcp] {
        for c in cases() {
            let mut run = |n: usize| {
                for _ in 0..n {
                    out.clear();
                    let sent =
                        shared.handle(std::hint::black_box(&c.pkt), client, transport, &mut out);
                    if !sent {
                        dropped += 1;
                        assert!(
                            !check_rcode || c.want.is_none(),
                            "{what} {}: dropped",
                            c.what
                        );
                        continue;
                    }
                    answered += 1;
                    assert!(
                        out.len() >= 12 && out[2] & 0x80 != 0,
                        "{what} {}: a response",
                        c.what
                    );
                    assert_eq!(out[..2], c.pkt[..2], "{what} {}: id echoed", c.what);
                    if check_rcode {
                        assert_eq!(Some(out[3] & 0x0F), c.want, "{what} {} rcode", c.what);
                    }
                }
            };
            run(10);
            let ((), n) = counted(|| run(N));
            assert_eq!(
                n, 0,
                "{what}: {} over {transport:?} allocated {n} times in {N} queries",
                c.what
            );
        }
    }
    (answered, dropped)
}

fn shared(snap: steerdns::snapshot::Snapshot) -> Arc<Shared> {
    Shared::new(snap, Arc::new(Metrics::new().unwrap()))
}

#[test]
fn the_per_query_path_does_not_allocate() {
    // The global subscriber on (as when a server runs in this binary):
    // its per-event work must not reach the hot path either.
    crate::support::logs::init();
    assert_counter_counts();

    // The shipped example: geo, static, health-checked pools.
    let s = shared(example_snapshot());
    let (answered, dropped) = assert_no_allocation("example.toml", &s, true);
    // Every query was counted: answers by zone/rcode, drops by reason.
    let m = scrape::parse(&s.metrics.render());
    assert_eq!(m.sum("steerdns_dns_queries_total", &[]), answered as f64);
    assert_eq!(
        m.value("steerdns_dns_dropped_total", &[("reason", "malformed")]),
        dropped as f64
    );
    assert_eq!(dropped, 2 * (N + 10), "the runt, over both transports");

    // RRL on (never limiting) and cookies from a secret file.
    let (dir, path) = write_config(&format!(
        "{BASE}\n[rrl]\nenabled = true\nresponses_per_second = 65535\n\n[cookies]\nsecret_file = \"cookie.secret\"\n"
    ));
    std::fs::write(
        dir.path().join("cookie.secret"),
        "e5e973e5a6b2a43f48e7dc849e37bfcf\n",
    )
    .unwrap();
    let s = shared(load(&path).expect("RRL config loads"));
    assert_no_allocation("RRL and cookies", &s, true);

    // RRL limiting every UDP answer after the first: slips and drops.
    let s = shared(snapshot_of(&format!(
        "{BASE}\n[rrl]\nenabled = true\nresponses_per_second = 1\nslip = 2\n"
    )));
    assert_no_allocation("RRL limiting", &s, false);
    let m = scrape::parse(&s.metrics.render());
    assert!(
        m.value("steerdns_dns_dropped_total", &[("reason", "rate_limited")]) > 0.0,
        "the limiter dropped"
    );
    assert!(
        m.sum("steerdns_dns_rrl_slipped_total", &[]) > 0.0,
        "and slipped"
    );
}
