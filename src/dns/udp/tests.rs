//! The UDP transport's tests, over real loopback sockets.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Instant;

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::batch::Batch;
use super::pktinfo::{CMSG_BUF_SIZE, PktInfo, read_pktinfo, sockaddr_to_std};
use super::*;
use crate::dns::test_support::{EchoHandler, expected_reply, query, wait_until};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

fn start(addr: &str, sockets: usize) -> (UdpServer, SocketAddr) {
    let socks = bind_udp(addr.parse().unwrap(), sockets).expect("bind_udp");
    let local = socks[0].local_addr().unwrap();
    let server = spawn_udp(socks, Arc::new(EchoHandler)).expect("spawn_udp");
    (server, local)
}

fn client(addr: &str) -> UdpSocket {
    let c = UdpSocket::bind(addr).expect("bind client");
    c.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    c
}

fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port)
}

/// Receive one datagram or panic after the client's read timeout.
fn recv(c: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0; 65536];
    let (n, from) = c.recv_from(&mut buf).expect("reply within the timeout");
    buf.truncate(n);
    (buf, from)
}

/// Every header the next `recvmmsg` may fill has full name and control
/// lengths and no flags.
fn assert_armed(batch: &Batch) {
    for (i, h) in batch.recv_hdrs.iter().enumerate().skip(batch.rearm) {
        let m = &h.msg_hdr;
        assert_eq!(
            m.msg_namelen as usize,
            mem::size_of::<libc::sockaddr_storage>(),
            "header {i}"
        );
        // msg_controllen is usize on glibc, u32 on musl.
        #[allow(clippy::unnecessary_cast)]
        let controllen = m.msg_controllen as usize;
        assert_eq!(controllen, CMSG_BUF_SIZE, "header {i}");
        assert_eq!(m.msg_flags, 0, "header {i}");
        assert_eq!(m.msg_name, ptr::from_ref(&batch.names[i]).cast_mut().cast());
    }
}

#[test]
fn small_batches_rearm_only_what_the_kernel_filled() {
    // A wildcard socket, so every datagram brings a control message and
    // the kernel shrinks name and control lengths of the headers it fills.
    let sock = bind_udp("0.0.0.0:0".parse().unwrap(), 1).unwrap().remove(0);
    sock.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let port = sock.local_addr().unwrap().port();
    let fd = sock.as_raw_fd();
    let c = client("127.0.0.1:0");
    let mut batch = Batch::new();
    assert_eq!(batch.rearm, 0);
    assert_armed(&batch);
    // Batches of 5, 1, 40 (32 + 8) and 2 datagrams: each one's headers
    // must carry that batch's data, whatever the previous batch left.
    let mut id = 0u16;
    for size in [5usize, 1, 40, 2] {
        let mut want: Vec<(u16, &str)> = Vec::new();
        for k in 0..size {
            id += 1;
            let dst = ["127.0.0.2", "127.0.0.3"][k % 2];
            c.send_to(&query(id), at(dst, port)).unwrap();
            want.push((id, dst));
        }
        while !want.is_empty() {
            let n = batch.recv(fd).expect("queued datagrams");
            assert!(n >= 1 && n <= want.len().min(BATCH));
            assert_eq!(batch.rearm, (n + 1).min(BATCH));
            for (i, (qid, dst)) in want.drain(..n).enumerate() {
                let h = &batch.recv_hdrs[i];
                let len = h.msg_len as usize;
                let q = &batch.bufs[i * RECV_BUF_SIZE..i * RECV_BUF_SIZE + len];
                assert_eq!(q, &query(qid)[..]);
                let from = sockaddr_to_std(&batch.names[i], h.msg_hdr.msg_namelen);
                assert_eq!(from, Some(c.local_addr().unwrap()));
                let Some(PktInfo::V4(pi)) = read_pktinfo(&h.msg_hdr) else {
                    panic!("no IPv4 pktinfo in header {i}");
                };
                let to = Ipv4Addr::from(pi.ipi_spec_dst.s_addr.to_ne_bytes());
                assert_eq!(to.to_string(), dst, "header {i}");
            }
            assert_armed(&batch);
            batch.rearm_recv();
            assert_eq!(batch.rearm, 0);
            assert_armed(&batch);
        }
    }
}

#[test]
fn binds_several_sockets_on_one_port() {
    let socks = bind_udp("127.0.0.1:0".parse().unwrap(), 3).unwrap();
    let port = socks[0].local_addr().unwrap().port();
    assert_ne!(port, 0);
    for s in &socks {
        assert_eq!(s.local_addr().unwrap(), at("127.0.0.1", port));
    }
    assert!(bind_udp("127.0.0.1:0".parse().unwrap(), 0).is_err());
}

#[test]
fn answers_many_datagrams_from_several_clients() {
    let (server, addr) = start("127.0.0.1:0", 2);
    let clients: Vec<UdpSocket> = (0..4).map(|_| client("127.0.0.1:0")).collect();
    let per_client = 3 * BATCH as u16;
    // Every client fires all its queries before reading, so the workers
    // see full batches.
    for (c_idx, c) in clients.iter().enumerate() {
        for i in 0..per_client {
            c.send_to(&query(c_idx as u16 * 1000 + i), addr).unwrap();
        }
    }
    for (c_idx, c) in clients.iter().enumerate() {
        let mut expected: HashSet<Vec<u8>> = (0..per_client)
            .map(|i| expected_reply(&query(c_idx as u16 * 1000 + i)))
            .collect();
        while !expected.is_empty() {
            let (reply, from) = recv(c);
            assert_eq!(from, addr);
            assert!(expected.remove(&reply), "unexpected reply {reply:?}");
        }
    }
    let total = 4 * u64::from(per_client);
    assert!(wait_until(CLIENT_TIMEOUT, || server.stats().sent == total));
    let stats = server.stats();
    assert_eq!(stats.received, total);
    assert_eq!(stats.send_errors, 0);
    assert_eq!(server.workers(), 2);
    server.shutdown();
}

#[test]
fn wildcard_v4_replies_from_the_address_queried() {
    let (server, addr) = start("0.0.0.0:0", 1);
    let c = client("127.0.0.1:0");
    for dst in ["127.0.0.2", "127.0.0.1", "127.0.0.3"] {
        let q = query(42);
        c.send_to(&q, at(dst, addr.port())).unwrap();
        let (reply, from) = recv(&c);
        assert_eq!(reply, expected_reply(&q));
        assert_eq!(from, at(dst, addr.port()), "reply must come from {dst}");
    }
    // The handler sees the client's real address and the transport.
    c.send_to(&[0xFE, 0, 0], at("127.0.0.2", addr.port()))
        .unwrap();
    let (reply, _) = recv(&c);
    let want = format!("{} Udp", c.local_addr().unwrap());
    assert_eq!(String::from_utf8(reply).unwrap(), want);
    server.shutdown();
}

#[test]
fn wildcard_v6_replies_from_the_address_queried() {
    let c = match UdpSocket::bind("[::1]:0") {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipping: cannot bind [::1]:0 ({e}); no IPv6 loopback");
            return;
        }
    };
    c.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    // IPV6_V6ONLY: a v4 wildcard and a v6 wildcard share the port.
    let (server4, addr4) = start("0.0.0.0:0", 1);
    let socks6 = bind_udp(at("::", addr4.port()), 1).expect("[::] next to 0.0.0.0");
    let server6 = spawn_udp(socks6, Arc::new(EchoHandler)).unwrap();

    let q = query(6);
    c.send_to(&q, at("::1", addr4.port())).unwrap();
    let (reply, from) = recv(&c);
    assert_eq!(reply, expected_reply(&q));
    assert_eq!(from, at("::1", addr4.port()));
    assert!(wait_until(CLIENT_TIMEOUT, || server6.stats().sent == 1));
    assert_eq!(server4.stats().received, 0);
    server6.shutdown();
    server4.shutdown();
}

#[test]
fn oversize_datagram_is_dropped_and_counted() {
    let (server, addr) = start("127.0.0.1:0", 1);
    let c = client("127.0.0.1:0");
    let mut big = query(1);
    big.resize(RECV_BUF_SIZE + 1000, 0xAB);
    c.send_to(&big, addr).unwrap();
    // Exactly the buffer size still fits.
    let mut fits = query(2);
    fits.resize(RECV_BUF_SIZE, 0xCD);
    c.send_to(&fits, addr).unwrap();
    let (reply, _) = recv(&c);
    assert_eq!(reply, expected_reply(&fits));
    let q = query(3);
    c.send_to(&q, addr).unwrap();
    assert_eq!(recv(&c).0, expected_reply(&q));
    assert!(wait_until(CLIENT_TIMEOUT, || server.stats().sent == 2));
    let stats = server.stats();
    assert_eq!(stats.dropped_truncated, 1);
    assert_eq!(stats.received, 3);
    server.shutdown();
}

#[test]
fn handler_drop_sends_nothing() {
    let (server, addr) = start("127.0.0.1:0", 1);
    let c = client("127.0.0.1:0");
    let mut dropped = query(9);
    dropped[0] = 0xFF;
    c.send_to(&dropped, addr).unwrap();
    c.send_to(&[], addr).unwrap();
    let q = query(10);
    c.send_to(&q, addr).unwrap();
    // One socket answers in order, so a reply to the dropped queries
    // would have arrived first.
    assert_eq!(recv(&c).0, expected_reply(&q));
    assert!(wait_until(CLIENT_TIMEOUT, || server.stats().sent == 1));
    assert_eq!(server.stats().dropped_by_handler, 2);
    c.set_nonblocking(true).unwrap();
    let mut buf = [0; 512];
    let err = c.recv_from(&mut buf).expect_err("no further datagram");
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    server.shutdown();
}

#[test]
fn refused_reply_does_not_stop_the_batch() {
    let (server, addr) = start("127.0.0.1:0", 1);
    let c = client("127.0.0.1:0");
    // Sent back to back so they likely share a batch; the oversized
    // reply fails with EMSGSIZE on its own.
    let (q1, q2) = (query(1), query(2));
    c.send_to(&q1, addr).unwrap();
    c.send_to(&[0xFD, 0, 0], addr).unwrap();
    c.send_to(&q2, addr).unwrap();
    assert_eq!(recv(&c).0, expected_reply(&q1));
    assert_eq!(recv(&c).0, expected_reply(&q2));
    assert!(wait_until(CLIENT_TIMEOUT, || server.stats().sent == 2));
    assert_eq!(server.stats().send_errors, 1);
    server.shutdown();
}

#[tokio::test]
async fn shutdown_when_cancelled() {
    let (server, addr) = start("127.0.0.1:0", 2);
    let token = CancellationToken::new();
    let stopper = tokio::spawn(server.shutdown_when_cancelled(token.clone()));
    token.cancel();
    tokio::time::timeout(Duration::from_secs(2), stopper)
        .await
        .expect("stopped in time")
        .unwrap();
    UdpSocket::bind(addr).expect("port released after shutdown");
}

#[test]
fn shutdown_joins_quickly_and_closes_sockets() {
    let (server, addr) = start("127.0.0.1:0", 2);
    let c = client("127.0.0.1:0");
    let q = query(5);
    c.send_to(&q, addr).unwrap();
    assert_eq!(recv(&c).0, expected_reply(&q));
    let reader = server.stats_reader();
    let started = Instant::now();
    server.shutdown();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    assert_eq!(reader.stats().sent, 1);
    // All sockets are closed: a socket without SO_REUSEPORT can bind.
    UdpSocket::bind(addr).expect("port released after shutdown");
}

#[test]
fn drop_stops_the_workers() {
    let (server, addr) = start("127.0.0.1:0", 1);
    drop(server);
    UdpSocket::bind(addr).expect("port released after drop");
}
