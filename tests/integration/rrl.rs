//! Response rate limiting over real UDP: a flood from one /24 at 20x the
//! rate is held to the rate plus the slipped (TC=1) answers, a client from
//! another /24 and an exempt one lose nothing, and the counters add up.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use crate::harness::*;

const RATE: u64 = 10;

/// (queries answered, dropped by RRL, slipped) so far.
fn counters(s: &TestServer) -> (u64, u64, u64) {
    let m = s.metrics();
    (
        m.sum("steerdns_dns_queries_total", &[]) as u64,
        m.sum("steerdns_dns_dropped_total", &[("reason", "rate_limited")]) as u64,
        m.sum("steerdns_dns_rrl_slipped_total", &[]) as u64,
    )
}

fn socket(ip: [u8; 4]) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::from((ip, 0))).expect("bind loopback source");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

#[test]
fn flood_from_one_prefix_is_limited_and_others_are_not() {
    // Sources in three loopback /24s (all of 127/8 is local on Linux).
    if !can_bind("127.0.1.1") {
        return;
    }
    let s = TestServer::base(&format!(
        "[rrl]\nenabled = true\nresponses_per_second = {RATE}\nslip = 2\nexempt = [\"127.0.2.0/24\"]\n"
    ));
    let query = q("static.lb.example.com.", RecordType::A).to_vec().unwrap();
    let flood = socket([127, 0, 0, 1]);
    let other = socket([127, 0, 1, 1]);
    let exempt = socket([127, 0, 2, 1]);
    let (q0, d0, s0) = counters(&s);

    // 20x the rate for a second: 200 queries from 127.0.0.1, with 5 from
    // another /24 and 20 from the exempt one in between.
    let n = 20 * RATE;
    let start = Instant::now();
    let (mut sent_other, mut sent_exempt) = (0, 0);
    for i in 0..n {
        flood.send_to(&query, s.udp).unwrap();
        if i % 40 == 0 {
            other.send_to(&query, s.udp).unwrap();
            sent_other += 1;
        }
        if i % 10 == 0 {
            exempt.send_to(&query, s.udp).unwrap();
            sent_exempt += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed();
    // Every query is accounted for by the server (a real condition).
    let total = n + sent_other + sent_exempt;
    wait_for(10, "server accounted for every query", || {
        let (qn, dn, _) = counters(&s);
        (qn - q0) + (dn - d0) == total
    });
    let (_, d1, s1) = counters(&s);
    let dropped = d1 - d0;
    let slipped = s1 - s0;

    // The flood's answers: exactly the ones not dropped arrive.
    let mut buf = [0u8; 1500];
    let (mut full, mut tc) = (0u64, 0u64);
    for _ in 0..(n - dropped) {
        let (len, _) = flood.recv_from(&mut buf).expect("an answer that was sent");
        let m = Message::from_vec(&buf[..len]).unwrap();
        if m.metadata.truncation {
            assert!(m.answers.is_empty() && m.additionals.is_empty());
            assert_eq!(m.queries.len(), 1, "slipped answer keeps the question");
            tc += 1;
        } else {
            assert_eq!(addrs(&m), ["192.0.2.1", "192.0.2.2"]);
            full += 1;
        }
    }
    let secs = elapsed.as_secs_f64();
    println!("rrl flood: {n} queries in {secs:.2}s: {full} full, {tc} slipped, {dropped} dropped");
    // Full answers: one second's bucket plus the refill while it ran.
    let max_full = RATE + (secs * RATE as f64).ceil() as u64 + 1;
    assert!(full <= max_full, "{full} full answers > {max_full}");
    assert!(full >= RATE, "{full}");
    // Every second limited response slips; the others are dropped.
    assert_eq!(tc, slipped);
    assert_eq!(tc, (n - full) / 2, "slip 2");
    assert_eq!(dropped, n - full - tc);

    // The other /24 and the exempt network lost nothing.
    for (sock, sent) in [(&other, sent_other), (&exempt, sent_exempt)] {
        for _ in 0..sent {
            let (len, _) = sock.recv_from(&mut buf).expect("no loss");
            let m = Message::from_vec(&buf[..len]).unwrap();
            assert!(!m.metadata.truncation);
            assert_eq!(addrs(&m), ["192.0.2.1", "192.0.2.2"]);
        }
    }

    // TCP is never rate limited.
    let m = s.tcp(&q("static.lb.example.com.", RecordType::A));
    assert_eq!(addrs(&m), ["192.0.2.1", "192.0.2.2"]);
}

#[test]
fn rrl_is_off_by_default() {
    let s = TestServer::base("");
    let query = q("static.lb.example.com.", RecordType::A).to_vec().unwrap();
    let sock = socket([127, 0, 0, 1]);
    for _ in 0..100 {
        sock.send_to(&query, s.udp).unwrap();
        let mut buf = [0u8; 1500];
        let (len, _) = sock.recv_from(&mut buf).expect("answered");
        assert!(!Message::from_vec(&buf[..len]).unwrap().metadata.truncation);
    }
}
