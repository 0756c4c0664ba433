//! TCP fairness on the real server: an attacker holding every TCP slot from
//! several loopback /24s (idle connections and slow-drip ones that trickle a
//! byte at a time) cannot lock a legitimate client out: its query is
//! answered within 1 s. One network cannot take more than its share.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use socket2::{Domain, Socket, Type};

use crate::harness::*;

fn connect_from(src: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::from((src, 0)).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(2))?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    Ok(s)
}

/// True when the server has closed `s` (EOF or reset) within the read
/// timeout; false when it is still open.
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

/// Closed already (no waiting): EOF or reset, not "no data yet".
fn closed_now(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let r = match s.peek(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    s.set_nonblocking(false).unwrap();
    r
}

fn ask(s: &mut TcpStream) -> Vec<u8> {
    tcp_exchange(s, &wire(&q("static.lb.example.com.", RecordType::A)))
}

#[test]
fn legitimate_client_is_served_while_an_attacker_holds_every_slot() {
    // Sources in six loopback /24s (all of 127/8 is local on Linux).
    if !can_bind("127.0.9.1") {
        return;
    }
    // 16 slots, 4 per /24; a long idle timeout so nothing ends on its own.
    let s = TestServer::start(&BASE.replace(
        "udp_workers = 1",
        "udp_workers = 1\ntcp_max_connections = 16\ntcp_max_connections_per_client = 4\ntcp_idle_timeout = \"60s\"\ntcp_busy_idle_timeout = \"30s\"",
    ));
    // The attacker: 4 networks x 4 connections; in each network two stay
    // silent and two drip a partial query.
    let mut held = Vec::new();
    for net in 0..4u8 {
        for i in 0..4u8 {
            let mut c = connect_from([127, 0, net, 10 + i], s.tcp).expect("attacker connects");
            if i % 2 == 1 {
                c.write_all(&[0, 40, 0x12]).unwrap(); // a 40-byte query, 1 byte of it
            }
            held.push(c);
        }
    }
    // A fifth connection from an attacker network is over its share.
    let mut extra = connect_from([127, 0, 0, 99], s.tcp).unwrap();
    assert!(
        closed(&mut extra),
        "fifth connection from one /24 is closed"
    );
    // Every slot is taken; keep dripping while the legitimate client asks.
    for c in held.iter_mut().skip(1).step_by(2) {
        c.write_all(&[0x34]).unwrap();
    }
    let started = Instant::now();
    let mut legit = connect_from([127, 0, 9, 1], s.tcp).expect("legitimate client connects");
    let answer = decode(&ask(&mut legit));
    let took = started.elapsed();
    assert_eq!(addrs(&answer), ["192.0.2.1", "192.0.2.2"]);
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
    println!("legitimate TCP query answered in {took:?} with 16/16 slots held");
    // It keeps being served on its connection (pipelining still works).
    assert_eq!(addrs(&decode(&ask(&mut legit))), ["192.0.2.1", "192.0.2.2"]);
    // One attacker connection made room: the oldest silent one (the
    // first accepted; dripping does not count as activity).
    wait_for(5, "the evicted connection is closed", || {
        closed_now(&held[0])
    });
    let still_open = held.iter().skip(1).filter(|c| !closed_now(c)).count();
    assert_eq!(still_open, 15, "only one evicted");
    // And a second legitimate client from yet another network too.
    let mut legit2 = connect_from([127, 0, 8, 1], s.tcp).unwrap();
    assert_eq!(
        addrs(&decode(&ask(&mut legit2))),
        ["192.0.2.1", "192.0.2.2"]
    );
}
