//! Batched UDP transport.
//!
//! One OS thread per socket (gdnsd style: the sockets share one address via
//! `SO_REUSEPORT` and the kernel spreads clients across them). Each thread
//! loops `recvmmsg` → [`Handler::handle`] per datagram → one `sendmmsg` for the
//! whole batch, with every buffer allocated once when the thread starts.
//!
//! Replies leave from the address the query was sent to, also on sockets bound
//! to a wildcard address: the destination address is read from the
//! `IP_PKTINFO` / `IPV6_PKTINFO` control message of each query and set as the
//! source of the reply.
//!
//! # Lifecycle
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use steerdns::dns::transport::Handler;
//! # fn demo(handler: Arc<dyn Handler>) -> std::io::Result<()> {
//! use steerdns::dns::udp::{bind_udp, spawn_udp};
//! let sockets = bind_udp("0.0.0.0:53".parse().unwrap(), 2)?;
//! let server = spawn_udp(sockets, handler)?;
//! // ... later (or `tokio::spawn(server.shutdown_when_cancelled(token))`):
//! let totals = server.stats();
//! server.shutdown(); // stops and joins the threads (~100 ms worst case)
//! # let _ = totals; Ok(()) }
//! ```
//!
//! One concept per file: `bind.rs` (the sockets and their options),
//! `batch.rs` (the preallocated `recvmmsg`/`sendmmsg` state),
//! `pktinfo.rs` (addresses and `IP_PKTINFO` control messages), `stats.rs`
//! (the counters); this file runs the worker threads.

mod batch;
mod bind;
mod pktinfo;
mod stats;
#[cfg(test)]
mod tests;

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use self::batch::Batch;
pub use self::bind::bind_udp;
use self::stats::{Counters, sum};
pub use self::stats::{UdpStats, UdpStatsReader};
use super::transport::Handler;

/// Datagrams received (and replies sent) per `recvmmsg` / `sendmmsg` call.
pub const BATCH: usize = 32;

/// Receive buffer per datagram. Larger datagrams are dropped and counted in
/// [`UdpStats::dropped_truncated`].
pub const RECV_BUF_SIZE: usize = 4096;

/// Initial capacity of each reusable response buffer (the largest possible
/// DNS message), so handlers never make it reallocate.
const OUT_CAPACITY: usize = 65535;

/// How often an idle worker wakes up to check for shutdown (`SO_RCVTIMEO`).
const WAKEUP_PERIOD: Duration = Duration::from_millis(100);

/// Upper bound of the back-off after repeated unexpected receive errors.
const MAX_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Running UDP worker threads, from [`spawn_udp`].
///
/// Stop them with [`UdpServer::shutdown`], which joins the threads; it
/// returns within about 100 ms (the workers' wake-up period) plus the time to
/// finish the batch in hand. Dropping the server does the same. It blocks, so
/// from async code use [`UdpServer::shutdown_when_cancelled`] (or call it
/// through `tokio::task::spawn_blocking`).
pub struct UdpServer {
    stop: Arc<AtomicBool>,
    counters: Arc<[Counters]>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpServer {
    /// Current totals over all workers.
    pub fn stats(&self) -> UdpStats {
        sum(&self.counters)
    }

    /// A handle to read the counters from elsewhere.
    pub fn stats_reader(&self) -> UdpStatsReader {
        UdpStatsReader(Arc::clone(&self.counters))
    }

    /// Number of worker threads (one per socket).
    pub fn workers(&self) -> usize {
        self.threads.len()
    }

    /// Stop all workers and wait for their threads to exit; the sockets are
    /// closed when this returns.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    /// Wait until `token` is cancelled, then [`shutdown`](Self::shutdown) on
    /// a blocking thread. For tokio code that standardises on a
    /// `CancellationToken`: `tokio::spawn(server.shutdown_when_cancelled(token))`
    /// (take a [`stats_reader`](Self::stats_reader) first if needed). Must
    /// run inside a tokio runtime.
    pub async fn shutdown_when_cancelled(self, token: CancellationToken) {
        token.cancelled().await;
        if let Err(e) = tokio::task::spawn_blocking(move || self.shutdown()).await {
            tracing::error!(error = %e, "UDP shutdown task failed");
        }
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let name = t.thread().name().unwrap_or("udp worker").to_owned();
            if t.join().is_err() {
                tracing::error!(thread = %name, "UDP worker thread panicked");
            }
        }
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Start one worker thread per socket, each answering queries with
/// `handler`.
///
/// The sockets are switched to blocking mode with an `SO_RCVTIMEO` of 100 ms
/// (the wake-up period used to notice shutdown). They should come from
/// [`bind_udp`]; sockets without `IP_PKTINFO` / `IPV6_RECVPKTINFO` work but
/// reply from whatever source address the kernel picks. The handler sees
/// IPv4-mapped IPv6 client addresses as plain IPv4.
pub fn spawn_udp(sockets: Vec<UdpSocket>, handler: Arc<dyn Handler>) -> io::Result<UdpServer> {
    spawn_udp_with(sockets, handler, Arc::new(|_| {}))
}

/// What a worker thread runs first, given its index (pinning it to a CPU,
/// for example); the transport itself knows nothing of CPUs.
pub type OnStart = Arc<dyn Fn(usize) + Send + Sync>;

/// [`spawn_udp`], with `on_start(index)` run first on each worker thread.
pub fn spawn_udp_with(
    sockets: Vec<UdpSocket>,
    handler: Arc<dyn Handler>,
    on_start: OnStart,
) -> io::Result<UdpServer> {
    if sockets.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "spawn_udp: no sockets",
        ));
    }
    for s in &sockets {
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(WAKEUP_PERIOD))?;
    }
    let counters: Arc<[Counters]> = sockets.iter().map(|_| Counters::default()).collect();
    // On an early return, dropping `server` stops the threads already started.
    let mut server = UdpServer {
        stop: Arc::new(AtomicBool::new(false)),
        counters,
        threads: Vec::with_capacity(sockets.len()),
    };
    for (index, socket) in sockets.into_iter().enumerate() {
        let handler = Arc::clone(&handler);
        let stop = Arc::clone(&server.stop);
        let counters = Arc::clone(&server.counters);
        let on_start = Arc::clone(&on_start);
        let thread = thread::Builder::new()
            .name(format!("dns-udp-{index}"))
            .spawn(move || {
                on_start(index);
                worker(socket, &*handler, &stop, &counters[index]);
            })?;
        server.threads.push(thread);
    }
    Ok(server)
}

fn worker(socket: UdpSocket, handler: &dyn Handler, stop: &AtomicBool, counters: &Counters) {
    let fd = socket.as_raw_fd();
    let mut batch = Batch::new();
    let mut local = UdpStats::default();
    let mut consecutive_errors: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        match batch.recv(fd) {
            Ok(n) => {
                consecutive_errors = 0;
                batch.process(n, handler, &mut local);
                batch.send(fd, &mut local);
                counters.publish(&mut local);
            }
            Err(e) => match e.raw_os_error() {
                // Wake-up timeout or signal: just check the stop flag.
                Some(libc::EAGAIN | libc::EINTR) => {}
                _ => {
                    // Possibly persistent (ENOMEM, ENOBUFS, or worse): count
                    // it, log sparsely and back off so we never spin.
                    local.recv_errors += 1;
                    counters.publish(&mut local);
                    consecutive_errors = consecutive_errors.saturating_add(1);
                    if consecutive_errors.is_power_of_two() {
                        tracing::warn!(error = %e, consecutive_errors, "UDP recvmmsg failed");
                    }
                    let backoff = Duration::from_millis(1 << consecutive_errors.min(7));
                    thread::sleep(backoff.min(MAX_ERROR_BACKOFF));
                }
            },
        }
    }
}
