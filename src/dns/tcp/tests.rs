use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::dns::test_support::{EchoHandler, expected_reply, query};

/// Bound on every wait in these tests.
const T: Duration = Duration::from_secs(3);

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

fn start_on(addr: &str, opts: TcpOptions) -> io::Result<Server> {
    let listener = TcpListener::from_std(bind_tcp(addr.parse().unwrap())?)?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_tcp(
        listener,
        Arc::new(EchoHandler),
        opts,
        shutdown.clone(),
    ));
    Ok(Server {
        addr,
        shutdown,
        task,
    })
}

fn start(opts: TcpOptions) -> Server {
    start_on("127.0.0.1:0", opts).expect("bind 127.0.0.1:0")
}

impl Server {
    async fn stop(self) {
        self.shutdown.cancel();
        timeout(T, self.task)
            .await
            .expect("serve_tcp returns after shutdown")
            .unwrap();
    }
}

fn frame(msg: &[u8]) -> Vec<u8> {
    let mut f = u16::try_from(msg.len()).unwrap().to_be_bytes().to_vec();
    f.extend_from_slice(msg);
    f
}

async fn connect(addr: SocketAddr) -> TcpStream {
    timeout(T, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

async fn read_answer(s: &mut TcpStream) -> Vec<u8> {
    timeout(T, async {
        let mut len = [0; 2];
        s.read_exact(&mut len).await?;
        let mut msg = vec![0; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut msg).await?;
        io::Result::Ok(msg)
    })
    .await
    .expect("answer in time")
    .expect("answer")
}

/// Wait until the server closes `s` (EOF or reset); returns how long it
/// took.
async fn expect_closed(s: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0; 512];
    match timeout(T, s.read(&mut buf)).await.expect("closed in time") {
        Ok(0) => started.elapsed(),
        Ok(n) => panic!("unexpected {n} bytes before close"),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => started.elapsed(),
        Err(e) => panic!("read error: {e}"),
    }
}

#[tokio::test]
async fn answers_a_query() {
    let server = start(TcpOptions::default());
    let mut c = connect(server.addr).await;
    let q = query(1);
    c.write_all(&frame(&q)).await.unwrap();
    assert_eq!(read_answer(&mut c).await, expected_reply(&q));
    // The handler sees the client's address and the transport.
    c.write_all(&frame(&[0xFE, 0, 0])).await.unwrap();
    let seen = String::from_utf8(read_answer(&mut c).await).unwrap();
    assert_eq!(seen, format!("{} Tcp", c.local_addr().unwrap()));
    server.stop().await;
}

#[tokio::test]
async fn answers_pipelined_queries_in_order() {
    let server = start(TcpOptions::default());
    let mut c = connect(server.addr).await;
    let queries: Vec<Vec<u8>> = (0..20).map(query).collect();
    let all: Vec<u8> = queries.iter().flat_map(|q| frame(q)).collect();
    c.write_all(&all).await.unwrap();
    for q in &queries {
        assert_eq!(read_answer(&mut c).await, expected_reply(q));
    }
    server.stop().await;
}

#[tokio::test]
async fn answers_many_large_pipelined_queries() {
    // More answer bytes than FLUSH_AT in one burst.
    let server = start(TcpOptions::default());
    let mut c = connect(server.addr).await;
    let queries: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            let mut q = query(i);
            q.resize(4000, i as u8);
            q
        })
        .collect();
    let all: Vec<u8> = queries.iter().flat_map(|q| frame(q)).collect();
    let (mut rd, mut wr) = c.split();
    let write = async {
        wr.write_all(&all).await.unwrap();
    };
    let read = async {
        for q in &queries {
            let mut len = [0; 2];
            rd.read_exact(&mut len).await.unwrap();
            let mut msg = vec![0; usize::from(u16::from_be_bytes(len))];
            rd.read_exact(&mut msg).await.unwrap();
            assert_eq!(msg, expected_reply(q));
        }
    };
    timeout(T, async { tokio::join!(write, read) })
        .await
        .expect("all answers in time");
    server.stop().await;
}

#[tokio::test]
async fn answers_a_query_written_byte_by_byte() {
    let server = start(TcpOptions::default());
    let mut c = connect(server.addr).await;
    c.set_nodelay(true).unwrap();
    for id in [7, 8] {
        let q = query(id);
        for byte in frame(&q) {
            c.write_all(&[byte]).await.unwrap();
            c.flush().await.unwrap();
        }
        assert_eq!(read_answer(&mut c).await, expected_reply(&q));
    }
    server.stop().await;
}

#[tokio::test]
async fn serves_connections_concurrently() {
    let server = start(TcpOptions::default());
    let mut a = connect(server.addr).await;
    let mut b = connect(server.addr).await;
    let qa = frame(&query(1));
    let qb = frame(&query(2));
    // A stops halfway through its query; B must still be answered.
    a.write_all(&qa[..5]).await.unwrap();
    b.write_all(&qb).await.unwrap();
    assert_eq!(read_answer(&mut b).await, expected_reply(&query(2)));
    a.write_all(&qa[5..]).await.unwrap();
    assert_eq!(read_answer(&mut a).await, expected_reply(&query(1)));
    server.stop().await;
}

#[tokio::test]
async fn closes_stalled_connections_at_the_idle_timeout() {
    let opts = TcpOptions {
        idle_timeout: Duration::from_millis(200),
        ..TcpOptions::default()
    };
    let server = start(opts);

    // Silent from the start.
    let mut silent = connect(server.addr).await;
    let took = expect_closed(&mut silent).await;
    assert!(took >= Duration::from_millis(150), "closed after {took:?}");

    // Partial length, then stalls.
    let mut partial = connect(server.addr).await;
    partial.write_all(&[0]).await.unwrap();
    expect_closed(&mut partial).await;

    // Answered once, then a partial message, then stalls.
    let mut c = connect(server.addr).await;
    let q = frame(&query(3));
    c.write_all(&q).await.unwrap();
    read_answer(&mut c).await;
    c.write_all(&q[..6]).await.unwrap();
    expect_closed(&mut c).await;

    // Trickling one byte at a time does not extend the deadline.
    let c = connect(server.addr).await;
    let (mut rd, mut wr) = c.into_split();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        let msg = frame(&query(4));
        for byte in msg.iter().cycle().take(400) {
            if wr.write_all(&[*byte]).await.is_err() {
                break;
            }
            // Pacing the misbehaving client, not synchronisation.
            sleep(Duration::from_millis(20)).await;
        }
    });
    let mut buf = [0; 64];
    let closed = timeout(T, rd.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(closed, Ok(0)) || closed.is_err(), "{closed:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    trickle.abort();
    server.stop().await;
}

#[tokio::test]
async fn zero_length_message_closes_after_earlier_answers() {
    let server = start(TcpOptions::default());
    let mut c = connect(server.addr).await;
    let q = query(5);
    let mut bytes = frame(&q);
    bytes.extend_from_slice(&[0, 0]);
    bytes.extend_from_slice(&frame(&query(6)));
    c.write_all(&bytes).await.unwrap();
    assert_eq!(read_answer(&mut c).await, expected_reply(&q));
    expect_closed(&mut c).await;
    server.stop().await;
}

#[tokio::test]
async fn handler_drop_closes_after_earlier_answers() {
    let server = start(TcpOptions::default());
    let mut c = connect(server.addr).await;
    let q = query(5);
    let mut dropped = query(6);
    dropped[0] = 0xFF;
    let bytes: Vec<u8> = [frame(&q), frame(&dropped), frame(&query(7))].concat();
    c.write_all(&bytes).await.unwrap();
    assert_eq!(read_answer(&mut c).await, expected_reply(&q));
    expect_closed(&mut c).await;
    server.stop().await;
}

#[tokio::test]
async fn oversized_answer_closes_after_earlier_answers() {
    let server = start(TcpOptions::default());
    let mut c = connect(server.addr).await;
    let q = query(5);
    let bytes: Vec<u8> = [frame(&q), frame(&[0xFD, 0, 0]), frame(&query(7))].concat();
    c.write_all(&bytes).await.unwrap();
    assert_eq!(read_answer(&mut c).await, expected_reply(&q));
    expect_closed(&mut c).await;
    server.stop().await;
}

#[tokio::test]
async fn connection_limit_closes_extra_connections() {
    // One connection per client network: a second one from the same
    // address is closed at accept.
    let opts = TcpOptions {
        max_connections: 4,
        max_per_client: 1,
        ..TcpOptions::default()
    };
    let server = start(opts);
    let mut a = connect(server.addr).await;
    let q = query(1);
    a.write_all(&frame(&q)).await.unwrap();
    assert_eq!(read_answer(&mut a).await, expected_reply(&q));

    let mut b = connect(server.addr).await;
    let took = expect_closed(&mut b).await;
    assert!(took < Duration::from_secs(1), "closed after {took:?}");

    // Once A leaves, its slot is free again (released when its task
    // sees EOF, so retry until then).
    drop(a);
    let served = timeout(T, async {
        loop {
            let mut c = connect(server.addr).await;
            if c.write_all(&frame(&q)).await.is_err() {
                continue;
            }
            let mut len = [0; 2];
            if c.read_exact(&mut len).await.is_ok() {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(served.is_ok(), "a new connection is served after A closed");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_stops_accepting_and_ends_connections() {
    let server = start(TcpOptions::default());
    let addr = server.addr;
    let mut idle = connect(addr).await;
    let mut partial = connect(addr).await;
    let q = frame(&query(1));
    // Make sure both connections are being served before shutting down.
    for c in [&mut idle, &mut partial] {
        c.write_all(&q).await.unwrap();
        read_answer(c).await;
    }
    partial.write_all(&q[..3]).await.unwrap();
    let started = Instant::now();
    server.stop().await;
    assert!(started.elapsed() < Duration::from_secs(1));
    expect_closed(&mut idle).await;
    expect_closed(&mut partial).await;
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn ipv6_loopback_and_v6only() {
    // IPV6_V6ONLY: the v4 and v6 wildcards can share a port.
    let v4 = start_on("0.0.0.0:0", TcpOptions::default()).unwrap();
    let server = match start_on(&format!("[::]:{}", v4.addr.port()), TcpOptions::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipping: cannot bind [::] ({e}); no IPv6");
            v4.stop().await;
            return;
        }
    };
    let addr: SocketAddr = format!("[::1]:{}", v4.addr.port()).parse().unwrap();
    let mut c = match TcpStream::connect(addr).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipping: cannot connect to [::1] ({e}); no IPv6 loopback");
            server.stop().await;
            v4.stop().await;
            return;
        }
    };
    let q = query(9);
    c.write_all(&frame(&q)).await.unwrap();
    assert_eq!(read_answer(&mut c).await, expected_reply(&q));
    server.stop().await;
    v4.stop().await;
}

#[tokio::test]
async fn at_the_cap_an_idle_connection_makes_room() {
    let opts = TcpOptions {
        max_connections: 2,
        max_per_client: 2,
        ..TcpOptions::default()
    };
    let server = start(opts);
    // Two connections hold both slots: one idle, one answered once.
    let mut idle = connect(server.addr).await;
    let mut busy = connect(server.addr).await;
    let q = query(3);
    busy.write_all(&frame(&q)).await.unwrap();
    assert_eq!(read_answer(&mut busy).await, expected_reply(&q));
    // The pair is from one address; a third from the same network would
    // be refused, so come from another loopback /24.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.1.1:0".parse().unwrap()).unwrap();
    let mut third = timeout(T, sock.connect(server.addr))
        .await
        .unwrap()
        .unwrap();
    third.write_all(&frame(&q)).await.unwrap();
    assert_eq!(read_answer(&mut third).await, expected_reply(&q));
    // The idle one (no query since it connected) was evicted, the one
    // that had answers stays.
    expect_closed(&mut idle).await;
    busy.write_all(&frame(&q)).await.unwrap();
    assert_eq!(read_answer(&mut busy).await, expected_reply(&q));
    server.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_closes_only_its_connection() {
    let server = start(TcpOptions::default());
    let mut other = connect(server.addr).await;
    let mut c = connect(server.addr).await;
    let q = query(5);
    let bytes: Vec<u8> = [frame(&q), frame(&[0xFC, 0, 0]), frame(&query(7))].concat();
    c.write_all(&bytes).await.unwrap();
    assert_eq!(read_answer(&mut c).await, expected_reply(&q));
    expect_closed(&mut c).await;
    // The loop goes on: the other connection and new ones are answered.
    other.write_all(&frame(&q)).await.unwrap();
    assert_eq!(read_answer(&mut other).await, expected_reply(&q));
    let mut fresh = connect(server.addr).await;
    fresh.write_all(&frame(&q)).await.unwrap();
    assert_eq!(read_answer(&mut fresh).await, expected_reply(&q));
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_at_the_write_timeout() {
    let opts = TcpOptions {
        idle_timeout: Duration::from_millis(300),
        ..TcpOptions::default()
    };
    let server = start(opts);
    // Ask for far more answer bytes than the socket buffers hold, and read
    // nothing: the server's write stalls and the connection must go.
    let c = connect(server.addr).await;
    let (mut rd, mut wr) = c.into_split();
    let q = {
        let mut q = query(11);
        q.resize(60_000, 1);
        frame(&q)
    };
    let writer = tokio::spawn(async move {
        for _ in 0..400 {
            if wr.write_all(&q).await.is_err() {
                break;
            }
        }
    });
    // Meanwhile another client is served: the stalled writer blocks nobody.
    let mut other = connect(server.addr).await;
    other.write_all(&frame(&query(12))).await.unwrap();
    assert_eq!(read_answer(&mut other).await, expected_reply(&query(12)));
    // The stalled connection is closed (reset once we read past what the
    // server had written): wait until the writer gives up.
    timeout(T, writer)
        .await
        .expect("the server closed the stalled connection in time")
        .unwrap();
    let mut sink = vec![0; 1 << 16];
    let drained = timeout(T, async {
        loop {
            match rd.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the connection ends");
    server.stop().await;
}
