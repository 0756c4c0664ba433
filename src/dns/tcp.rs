//! DNS over TCP (RFC 1035 §4.2.2 framing, RFC 7766 connection handling) on
//! tokio.
//!
//! Each message is a 2-byte big-endian length followed by that many bytes.
//! Connections may pipeline queries; they are answered in order, and the
//! answers to queries that arrived together are written together.
//!
//! A connection is closed when:
//! - it is evicted to make room (RFC 7766 section 6.2.3, see
//!   [`super::tcp_fair`]): at the connection cap, the connection that has
//!   gone longest without completing a query; while the cap is near, every
//!   connection idle longer than [`TcpOptions::busy_idle_timeout`], which is
//!   then also its idle timeout;
//! - it takes longer than [`TcpOptions::idle_timeout`] to deliver its next
//!   complete query (partial data does not extend the deadline, so a client
//!   trickling bytes is closed at the timeout as well), or to accept our
//!   writes;
//! - it sends a zero-length message;
//! - the handler declines a query (returns `false` or writes nothing): the
//!   answers to earlier queries are written first. DNS over TCP has no way to
//!   skip one answer without leaving the client waiting for it, so closing is
//!   the clear signal;
//! - the client closes its side (a partial message is discarded), or on
//!   shutdown.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use steerdns::dns::transport::Handler;
//! # async fn demo(handler: Arc<dyn Handler>) -> std::io::Result<()> {
//! use steerdns::dns::tcp::{TcpOptions, bind_tcp, serve_tcp};
//! use tokio_util::sync::CancellationToken;
//! let listener = tokio::net::TcpListener::from_std(bind_tcp("[::]:53".parse().unwrap())?)?;
//! let shutdown = CancellationToken::new();
//! let server = tokio::spawn(serve_tcp(listener, handler, TcpOptions::default(), shutdown.clone()));
//! // ...
//! shutdown.cancel();
//! server.await.ok(); // returns once every connection task has ended
//! # Ok(()) }
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

use super::tcp_fair::{ConnTable, FairLimits, Slot};
use super::transport::{Handler, Transport};

/// Listen backlog of [`bind_tcp`] sockets.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Write buffered answers once they reach this size, even if more pipelined
/// queries are waiting, so one connection's buffer stays bounded.
const FLUSH_AT: usize = 64 * 1024;

/// Most bytes the read buffer makes room for before each read.
const READ_CHUNK: usize = 4096;

/// First size of a connection's buffers. Most connections carry one small
/// query and answer; starting small keeps them out of malloc's large-chunk
/// path (which consolidates its free lists), and the buffers grow for
/// clients that pipeline or ask for large answers.
const FIRST_BUF: usize = 512;

/// Back-off after an `accept` error such as `EMFILE`, doubling up to the max.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Settings for [`serve_tcp`].
#[derive(Clone, Debug)]
pub struct TcpOptions {
    /// Time a connection has to deliver its next complete query, and for
    /// each write of answers to complete, before it is closed. Default 10 s.
    pub idle_timeout: Duration,
    /// Maximum concurrent connections, all listeners sharing `table`
    /// together. At the cap, the longest-idle connection is evicted for a
    /// new one. Default 1024.
    pub max_connections: usize,
    /// Connections from one client network (IPv4 /24, IPv6 /56); beyond it,
    /// new connections from there are closed right after `accept`.
    /// Default 64.
    pub max_per_client: usize,
    /// Idle timeout while 3/4 of `max_connections` are in use. Default 1 s.
    pub busy_idle_timeout: Duration,
    /// The connection table (shared by clones of these options, so every
    /// listener counts against one cap).
    pub table: Arc<ConnTable>,
    /// Counts connections closed at accept because of `max_connections`
    /// (shared, so several listeners and the metrics can read one total).
    pub limit_drops: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            idle_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_per_client: 64,
            busy_idle_timeout: Duration::from_secs(1),
            table: Arc::default(),
            limit_drops: Arc::default(),
        }
    }
}

/// Bind a TCP listening socket for DNS: `SO_REUSEADDR`, `IPV6_V6ONLY` for
/// IPv6 addresses, non-blocking, backlog [`LISTEN_BACKLOG`]. Convert it with
/// `tokio::net::TcpListener::from_std` inside a runtime. Port 0 picks a free
/// port (read it back with `local_addr`).
pub fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let with_context = |what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("TCP socket {addr}: {what}: {e}"))
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| with_context("socket", e))?;
    socket
        .set_reuse_address(true)
        .map_err(|e| with_context("SO_REUSEADDR", e))?;
    if addr.is_ipv6() {
        socket
            .set_only_v6(true)
            .map_err(|e| with_context("IPV6_V6ONLY", e))?;
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| with_context("O_NONBLOCK", e))?;
    socket
        .bind(&addr.into())
        .map_err(|e| with_context("bind", e))?;
    socket
        .listen(LISTEN_BACKLOG)
        .map_err(|e| with_context("listen", e))?;
    Ok(socket.into())
}

/// Accept DNS-over-TCP connections on `listener` and answer them with
/// `handler`, one task per connection, until `shutdown` is cancelled.
///
/// On shutdown it stops accepting, ends every connection (answers not yet
/// written are lost) and returns once all connection tasks are gone. Accept
/// errors (e.g. `EMFILE`) are logged and retried after a short, bounded
/// back-off. The handler sees IPv4-mapped IPv6 client addresses as plain
/// IPv4.
pub async fn serve_tcp(
    listener: TcpListener,
    handler: Arc<dyn Handler>,
    opts: TcpOptions,
    shutdown: CancellationToken,
) {
    let limits = FairLimits {
        max_connections: opts.max_connections,
        max_per_client: opts.max_per_client,
        idle_timeout: opts.idle_timeout,
        busy_idle_timeout: opts.busy_idle_timeout,
    };
    let mut connections = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                log_task_end(done);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                let slot = match opts.table.admit(peer.ip(), &limits) {
                    Ok(slot) => slot,
                    Err(why) => {
                        tracing::debug!(%peer, ?why, "TCP connection limit reached; closing");
                        opts.limit_drops
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        drop(stream);
                        continue;
                    }
                };
                connections.spawn(connection(
                    stream,
                    peer,
                    Arc::clone(&handler),
                    limits,
                    shutdown.clone(),
                    slot,
                ));
            }
            // The failed connection is gone already; the next one is fine.
            Err(e) if is_per_connection_error(&e) => {
                tracing::debug!(error = %e, "TCP accept: connection failed");
            }
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "TCP accept failed; backing off");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
    drop(listener);
    // Every connection task watches `shutdown`, so this ends promptly.
    while let Some(done) = connections.join_next().await {
        log_task_end(done);
    }
}

fn is_per_connection_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::ECONNRESET | libc::EPROTO | libc::EPERM | libc::EINTR)
    )
}

fn log_task_end(result: Result<(), tokio::task::JoinError>) {
    if let Err(e) = result
        && e.is_panic()
    {
        tracing::error!("DNS TCP connection task panicked");
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<dyn Handler>,
    limits: FairLimits,
    shutdown: CancellationToken,
    slot: Slot,
) {
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    // Answers are written whole; don't let Nagle hold back the next batch.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "TCP_NODELAY failed");
    }
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = slot.evict.cancelled() => {
            tracing::debug!(%peer, "DNS TCP connection evicted to make room");
        }
        result = serve_connection(stream, peer, &*handler, &limits, &slot) => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "DNS TCP connection ended with an error");
            }
        }
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: &dyn Handler,
    limits: &FairLimits,
    slot: &Slot,
) -> io::Result<()> {
    let table = &slot.table;
    let mut rbuf: Vec<u8> = Vec::with_capacity(FIRST_BUF);
    let mut wbuf: Vec<u8> = Vec::with_capacity(FIRST_BUF);
    let mut out: Vec<u8> = Vec::with_capacity(FIRST_BUF);
    // The next complete query is due within the idle timeout of the last
    // one; only complete queries move it, and the timeout shrinks while the
    // connection cap is near.
    let mut last_query = Instant::now();
    loop {
        let idle_timeout = table.idle_timeout(limits);
        // Answer the complete queries already buffered, in order.
        let mut consumed = 0;
        // Close after writing the answers buffered so far?
        let mut close = false;
        while wbuf.len() < FLUSH_AT {
            let pending = &rbuf[consumed..];
            let Some(len) = pending.first_chunk::<2>().map(|l| u16::from_be_bytes(*l)) else {
                break;
            };
            let len = usize::from(len);
            if len == 0 {
                close = true;
                break;
            }
            let Some(query) = pending.get(2..2 + len) else {
                break;
            };
            consumed += 2 + len;
            out.clear();
            if !handler.handle(query, peer, Transport::Tcp, &mut out) || out.is_empty() {
                close = true;
                break;
            }
            let Ok(answer_len) = u16::try_from(out.len()) else {
                tracing::warn!(%peer, len = out.len(), "DNS answer too large for TCP; closing");
                close = true;
                break;
            };
            wbuf.extend_from_slice(&answer_len.to_be_bytes());
            wbuf.extend_from_slice(&out);
        }
        if consumed > 0 {
            rbuf.drain(..consumed);
            last_query = Instant::now();
            slot.active();
        }

        if !wbuf.is_empty() {
            // The socket nearly always takes the answers at once; only arm
            // the write timer when it does not.
            let written = match stream.try_write(&wbuf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            if written < wbuf.len() {
                timeout(idle_timeout, stream.write_all(&wbuf[written..]))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))??;
            }
            wbuf.clear();
            // Keep at most FLUSH_AT bytes of capacity between bursts.
            wbuf.shrink_to(FLUSH_AT);
        }
        if close {
            return Ok(());
        }
        if has_complete_message(&rbuf) {
            // Stopped early to flush; answer the rest before reading more.
            continue;
        }

        // Room for as much as the buffer already holds (from FIRST_BUF up
        // to READ_CHUNK), so it grows only for clients that send more.
        rbuf.reserve(rbuf.capacity().clamp(FIRST_BUF, READ_CHUNK));
        let deadline = last_query + table.idle_timeout(limits);
        match timeout_at(deadline, stream.read_buf(&mut rbuf)).await {
            Err(_elapsed) => {
                tracing::debug!(%peer, "DNS TCP connection idle; closing");
                return Ok(());
            }
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Whether `buf` starts with a whole message (or a zero-length one).
fn has_complete_message(buf: &[u8]) -> bool {
    match buf.first_chunk::<2>() {
        Some(len) => buf.len() >= 2 + usize::from(u16::from_be_bytes(*len)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use tokio::task::JoinHandle;

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
}
