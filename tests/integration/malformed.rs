//! Malformed packets get FORMERR or are dropped, and never stop the server.

use std::net::UdpSocket;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::*;

#[test]
fn formerr_for_broken_queries() {
    let s = TestServer::base("");
    let good = q("static.lb.example.com.", RecordType::A).to_vec().unwrap();

    // question cut short
    let m = decode(&udp_raw(s.udp, &good[..good.len() - 3]).unwrap());
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, 0x4242);

    // two questions
    let mut two = good.clone();
    two[5] = 2;
    let m = decode(&udp_raw(s.udp, &two).unwrap());
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);

    // additional count promises a record that is not there
    let mut ar = good.clone();
    ar[11] = 1;
    let m = decode(&udp_raw(s.udp, &ar).unwrap());
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.queries.len(), 1, "the question that parsed is echoed");

    // a label longer than the packet
    let mut long = good[..12].to_vec();
    long.extend_from_slice(&[63, b'a', b'b']);
    let m = decode(&udp_raw(s.udp, &long).unwrap());
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn responses_and_runts_are_dropped() {
    let s = TestServer::base("");
    assert!(udp_raw(s.udp, &[1, 2, 3]).is_none());
    let mut resp = q("static.lb.example.com.", RecordType::A).to_vec().unwrap();
    resp[2] |= 0x80;
    assert!(
        udp_raw(s.udp, &resp).is_none(),
        "QR=1 is never answered (no reflection loops)"
    );
    // still alive
    assert_eq!(
        addrs(&s.udp(&q("static.lb.example.com.", RecordType::A))),
        vec!["192.0.2.1", "192.0.2.2"]
    );
}

#[test]
fn garbage_flood_does_not_stall_the_server() {
    let s = TestServer::base("");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    // Deterministic pseudo-random packets, including mutations of a valid query.
    let good = q("www.lb.example.com.", RecordType::A).to_vec().unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..3000 {
        let pkt: Vec<u8> = if i % 2 == 0 {
            let len = (next() % 300) as usize;
            (0..len).map(|_| next() as u8).collect()
        } else {
            let mut p = good.clone();
            for _ in 0..(1 + next() % 4) {
                let at = (next() as usize) % p.len();
                p[at] = next() as u8;
            }
            p.truncate(12 + (next() as usize) % (p.len() - 11));
            p
        };
        let _ = sock.send_to(&pkt, s.udp);
    }
    // Over TCP too, on one connection.
    let mut garbage = vec![0, 40];
    garbage.extend((0..40).map(|_| next() as u8));
    let _ = std::panic::catch_unwind(|| tcp_raw(s.tcp, &garbage[2..]));
    for t in [RecordType::A, RecordType::AAAA] {
        let m = s.udp(&q_ecs("www.lb.example.com.", t, "81.2.69.0/24"));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        let m = s.tcp(&q_ecs("www.lb.example.com.", t, "81.2.69.0/24"));
        assert_eq!(m.answers.len(), 1);
    }
}
