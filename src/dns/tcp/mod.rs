//! DNS over TCP (RFC 1035 §4.2.2 framing, RFC 7766 connection handling) on
//! one event-loop thread of its own.
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
//! Why a hand-written loop on `mio` rather than a tokio task per
//! connection: most resolvers send one query per connection, and there the
//! task machinery (registration, spawn, wakers, a timer entry and three
//! buffers per connection) cost ~20,000 user-space instructions per query
//! against gdnsd's ~4,200. The loop keeps the connections in a slab, reads
//! and answers through buffers it owns (a connection only gets buffers of
//! its own when a message or a write is left half done), reads the clock
//! once per wake-up and keeps deadlines in a heap checked lazily.
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
//! server.await.ok(); // returns once the loop and every connection are gone
//! # Ok(()) }
//! ```

mod event_loop;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;

use super::transport::Handler;

/// Listen backlog of [`bind_tcp`] sockets.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Settings for [`serve_tcp`].
#[derive(Clone, Debug)]
pub struct TcpOptions {
    /// Time a connection has to deliver its next complete query, and for
    /// each write of answers to complete, before it is closed. Default 10 s.
    pub idle_timeout: Duration,
    /// Maximum concurrent connections, all listeners of one loop together.
    /// At the cap, the longest-idle connection is evicted for a new one.
    /// Default 1024.
    pub max_connections: usize,
    /// Connections from one client network (IPv4 /24, IPv6 /56); beyond it,
    /// new connections from there are closed right after `accept`.
    /// Default 64.
    pub max_per_client: usize,
    /// Idle timeout while 3/4 of `max_connections` are in use. Default 1 s.
    pub busy_idle_timeout: Duration,
    /// Counts connections closed at accept because of the limits (shared,
    /// so the metrics can read the total).
    pub limit_drops: Arc<AtomicU64>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            idle_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_per_client: 64,
            busy_idle_timeout: Duration::from_secs(1),
            limit_drops: Arc::default(),
        }
    }
}

/// Bind a TCP listening socket for DNS: `SO_REUSEADDR`, `IPV6_V6ONLY` for
/// IPv6 addresses, non-blocking, backlog [`LISTEN_BACKLOG`]. Port 0 picks a
/// free port (read it back with `local_addr`).
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

/// Answer DNS over TCP on `listener` with `handler` until `shutdown` is
/// cancelled (see [`serve_tcp_all`]).
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    handler: Arc<dyn Handler>,
    opts: TcpOptions,
    shutdown: CancellationToken,
) {
    match listener.into_std() {
        Ok(l) => serve_tcp_all(vec![l], handler, opts, shutdown).await,
        Err(e) => tracing::error!(error = %e, "DNS TCP listener unusable"),
    }
}

/// Answer DNS over TCP on every listener in `listeners` (one loop thread,
/// one connection table, so the limits count them together) until
/// `shutdown` is cancelled.
///
/// On shutdown it stops accepting, ends every connection (answers not yet
/// written are lost) and returns once the loop thread has ended. Accept
/// errors (e.g. `EMFILE`) are logged and retried after a short, bounded
/// back-off. The handler sees IPv4-mapped IPv6 client addresses as plain
/// IPv4.
pub async fn serve_tcp_all(
    listeners: Vec<std::net::TcpListener>,
    handler: Arc<dyn Handler>,
    opts: TcpOptions,
    shutdown: CancellationToken,
) {
    match spawn_tcp(listeners, handler, opts) {
        Ok(server) => stop_when_cancelled(server, shutdown).await,
        Err(e) => tracing::error!(error = %e, "DNS TCP loop failed to start"),
    }
}

/// Stop `server` once `shutdown` is cancelled; returns when its thread has
/// ended.
pub(crate) async fn stop_when_cancelled(server: TcpServer, shutdown: CancellationToken) {
    shutdown.cancelled().await;
    // Joining blocks for at most one loop turn; keep it off the async workers.
    if tokio::task::spawn_blocking(move || server.stop())
        .await
        .is_err()
    {
        tracing::error!("DNS TCP loop panicked");
    }
}

/// A running TCP loop thread; [`TcpServer::stop`] (or dropping it) ends it.
#[derive(Debug)]
pub(crate) struct TcpServer {
    stop: Arc<AtomicBool>,
    waker: Arc<mio::Waker>,
    thread: Option<JoinHandle<()>>,
}

/// Start the loop thread over `listeners` (non-blocking std listeners).
pub(crate) fn spawn_tcp(
    listeners: Vec<std::net::TcpListener>,
    handler: Arc<dyn Handler>,
    opts: TcpOptions,
) -> io::Result<TcpServer> {
    let stop = Arc::new(AtomicBool::new(false));
    let el = event_loop::EventLoop::new(listeners, handler, &opts, stop.clone())?;
    let waker = el.waker();
    let thread = std::thread::Builder::new()
        .name("steerdns-tcp".into())
        .spawn(move || el.run())?;
    Ok(TcpServer {
        stop,
        waker,
        thread: Some(thread),
    })
}

impl TcpServer {
    /// Stop the loop (closing the listeners and every connection) and wait
    /// for its thread.
    pub(crate) fn stop(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Err(e) = self.waker.wake() {
            tracing::error!(error = %e, "waking the DNS TCP loop failed");
        }
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("DNS TCP loop panicked");
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.end();
        }
    }
}

#[cfg(test)]
mod tests;
