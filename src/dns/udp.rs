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

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use libc::c_int;
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;

use super::transport::{Handler, Transport};

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

/// Requested `SO_RCVBUF` / `SO_SNDBUF`; the kernel clamps it to
/// `net.core.rmem_max` / `wmem_max`.
const SOCKET_BUFFER_SIZE: usize = 4 << 20;

/// Upper bound of the back-off after repeated unexpected receive errors.
const MAX_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Control message space per datagram; must hold one `in6_pktinfo` cmsg.
const CMSG_BUF_SIZE: usize = 64;

// SAFETY: CMSG_SPACE is plain arithmetic on its argument.
const _: () = assert!(
    unsafe { libc::CMSG_SPACE(mem::size_of::<libc::in6_pktinfo>() as u32) } as usize
        <= CMSG_BUF_SIZE
);
const _: () = assert!(mem::align_of::<libc::cmsghdr>() <= 8);

/// Bind `sockets` UDP sockets to `addr`, all with `SO_REUSEPORT` so that one
/// worker thread can own each (see [`spawn_udp`]).
///
/// IPv6 sockets get `IPV6_V6ONLY` (so `[::]:53` and `0.0.0.0:53` can both be
/// bound); wildcard-address sockets get `IP_PKTINFO` / `IPV6_RECVPKTINFO` so
/// replies leave from the query's destination address (a socket bound to one
/// address replies from it without them), and all get a large `SO_RCVBUF` /
/// `SO_SNDBUF` (best effort). If `addr` has port 0, the first socket picks
/// the port and the others bind to that same port.
///
/// Note that `SO_REUSEPORT` lets any other process of the same user bind the
/// same address and receive a share of the queries.
pub fn bind_udp(addr: SocketAddr, sockets: usize) -> io::Result<Vec<UdpSocket>> {
    if sockets == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bind_udp: at least one socket is required",
        ));
    }
    let first = bind_one(addr)?;
    let mut addr = addr;
    addr.set_port(first.local_addr()?.port());
    let mut all = Vec::with_capacity(sockets);
    all.push(first);
    for _ in 1..sockets {
        all.push(bind_one(addr)?);
    }
    Ok(all)
}

fn bind_one(addr: SocketAddr) -> io::Result<UdpSocket> {
    let with_context = |what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("UDP socket {addr}: {what}: {e}"))
    };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| with_context("socket", e))?;
    let fd = socket.as_raw_fd();
    set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)
        .map_err(|e| with_context("SO_REUSEPORT", e))?;
    // Only a wildcard socket needs the destination of each query: one bound
    // to a single address replies from it anyway, and skipping the control
    // messages saves kernel work on every packet.
    let wildcard = addr.ip().is_unspecified();
    if addr.is_ipv6() {
        socket
            .set_only_v6(true)
            .map_err(|e| with_context("IPV6_V6ONLY", e))?;
        if wildcard {
            set_int_opt(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
                .map_err(|e| with_context("IPV6_RECVPKTINFO", e))?;
        }
    } else if wildcard {
        set_int_opt(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
            .map_err(|e| with_context("IP_PKTINFO", e))?;
    }
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER_SIZE) {
        tracing::debug!(%addr, error = %e, "could not set SO_RCVBUF");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER_SIZE) {
        tracing::debug!(%addr, error = %e, "could not set SO_SNDBUF");
    }
    socket
        .bind(&addr.into())
        .map_err(|e| with_context("bind", e))?;
    Ok(socket.into())
}

fn set_int_opt(fd: RawFd, level: c_int, name: c_int, value: c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and we pass its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            ptr::from_ref(&value).cast(),
            mem::size_of::<c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Totals over all worker threads of a [`UdpServer`]. Every counter only
/// grows; workers publish them once per batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams received, including the dropped ones.
    pub received: u64,
    /// Replies handed to the kernel.
    pub sent: u64,
    /// Datagrams dropped because they were larger than [`RECV_BUF_SIZE`].
    pub dropped_truncated: u64,
    /// Datagrams the handler declined (returned `false`, wrote nothing, or
    /// panicked).
    pub dropped_by_handler: u64,
    /// Datagrams dropped before the handler: unknown address family or
    /// source port 0.
    pub dropped_invalid: u64,
    /// Replies the kernel refused (`sendmmsg` error for that message).
    pub send_errors: u64,
    /// Unexpected `recvmmsg` errors (timeouts and `EINTR` are not counted).
    pub recv_errors: u64,
}

/// One worker's counters, on its own cache lines.
#[derive(Default)]
#[repr(align(128))]
struct Counters {
    received: AtomicU64,
    sent: AtomicU64,
    dropped_truncated: AtomicU64,
    dropped_by_handler: AtomicU64,
    dropped_invalid: AtomicU64,
    send_errors: AtomicU64,
    recv_errors: AtomicU64,
}

impl Counters {
    fn publish(&self, local: &mut UdpStats) {
        let add = |counter: &AtomicU64, value: &mut u64| {
            if *value != 0 {
                counter.fetch_add(*value, Ordering::Relaxed);
                *value = 0;
            }
        };
        add(&self.received, &mut local.received);
        add(&self.sent, &mut local.sent);
        add(&self.dropped_truncated, &mut local.dropped_truncated);
        add(&self.dropped_by_handler, &mut local.dropped_by_handler);
        add(&self.dropped_invalid, &mut local.dropped_invalid);
        add(&self.send_errors, &mut local.send_errors);
        add(&self.recv_errors, &mut local.recv_errors);
    }
}

fn sum(counters: &[Counters]) -> UdpStats {
    let mut s = UdpStats::default();
    for c in counters {
        s.received += c.received.load(Ordering::Relaxed);
        s.sent += c.sent.load(Ordering::Relaxed);
        s.dropped_truncated += c.dropped_truncated.load(Ordering::Relaxed);
        s.dropped_by_handler += c.dropped_by_handler.load(Ordering::Relaxed);
        s.dropped_invalid += c.dropped_invalid.load(Ordering::Relaxed);
        s.send_errors += c.send_errors.load(Ordering::Relaxed);
        s.recv_errors += c.recv_errors.load(Ordering::Relaxed);
    }
    s
}

/// A cheap, cloneable reader of a [`UdpServer`]'s counters, for a metrics
/// module that lives apart from the server. Stays valid after shutdown.
#[derive(Clone)]
pub struct UdpStatsReader(Arc<[Counters]>);

impl UdpStatsReader {
    /// Current totals over all workers.
    pub fn stats(&self) -> UdpStats {
        sum(&self.0)
    }
}

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
        let thread = thread::Builder::new()
            .name(format!("dns-udp-{index}"))
            .spawn(move || worker(socket, &*handler, &stop, &counters[index]))?;
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

/// Control message buffer, aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf([u8; CMSG_BUF_SIZE]);

/// The destination of a query, as `IP_PKTINFO` / `IPV6_PKTINFO` reported it.
#[derive(Clone, Copy)]
enum PktInfo {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
}

/// Preallocated state for one worker, reused for every batch.
///
/// The `mmsghdr`s hold raw pointers into the other vectors' heap buffers.
/// Those are never resized after [`Batch::new`] (and moving a `Vec` does not
/// move its buffer), so the receive headers are pointed at their buffers once,
/// in `new`; before each `recvmmsg` only the headers the previous call filled
/// get their lengths and flags reset, so a batch of one datagram costs one
/// header's worth of work, not [`BATCH`]. Rust code only reads `names`,
/// `bufs` and `recv_cmsgs` (the kernel writes them), and reaches the headers
/// through `as_mut_ptr`, which never invalidates the stored raw pointers.
struct Batch {
    recv_hdrs: Vec<libc::mmsghdr>,
    recv_iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    recv_cmsgs: Vec<CmsgBuf>,
    /// `BATCH` receive buffers of `RECV_BUF_SIZE` bytes, back to back.
    bufs: Vec<u8>,
    /// One response buffer per received datagram.
    outs: Vec<Vec<u8>>,
    send_hdrs: Vec<libc::mmsghdr>,
    send_iovs: Vec<libc::iovec>,
    send_cmsgs: Vec<CmsgBuf>,
    /// Number of replies prepared in `send_hdrs`.
    pending: usize,
    /// Receive headers `0..rearm` may have been changed by the kernel since
    /// they were last armed.
    rearm: usize,
}

impl Batch {
    fn new() -> Self {
        // SAFETY: these are plain C structs for which all-zero bytes are a
        // valid value (null pointers, zero lengths, AF_UNSPEC).
        let (hdr, iov, name) = unsafe {
            (
                mem::zeroed::<libc::mmsghdr>(),
                mem::zeroed::<libc::iovec>(),
                mem::zeroed::<libc::sockaddr_storage>(),
            )
        };
        let mut batch = Batch {
            recv_hdrs: vec![hdr; BATCH],
            recv_iovs: vec![iov; BATCH],
            names: vec![name; BATCH],
            recv_cmsgs: vec![CmsgBuf([0; CMSG_BUF_SIZE]); BATCH],
            bufs: vec![0; BATCH * RECV_BUF_SIZE],
            outs: (0..BATCH)
                .map(|_| Vec::with_capacity(OUT_CAPACITY))
                .collect(),
            send_hdrs: vec![hdr; BATCH],
            send_iovs: vec![iov; BATCH],
            send_cmsgs: vec![CmsgBuf([0; CMSG_BUF_SIZE]); BATCH],
            pending: 0,
            rearm: 0,
        };
        batch.arm_all();
        batch
    }

    /// Point every receive header at its buffers, and every send header at
    /// its iovec (the per-reply fields are written by [`Batch::process`]).
    fn arm_all(&mut self) {
        let hdrs = self.recv_hdrs.as_mut_ptr();
        let iovs = self.recv_iovs.as_mut_ptr();
        let names = self.names.as_mut_ptr();
        let cmsgs = self.recv_cmsgs.as_mut_ptr();
        let bufs = self.bufs.as_mut_ptr();
        let send_hdrs = self.send_hdrs.as_mut_ptr();
        let send_iovs = self.send_iovs.as_mut_ptr();
        for i in 0..BATCH {
            // SAFETY: every vector has BATCH elements (bufs has BATCH
            // buffers), so all offsets are in bounds; we only write plain
            // values through pointers derived from `as_mut_ptr`.
            unsafe {
                *iovs.add(i) = libc::iovec {
                    iov_base: bufs.add(i * RECV_BUF_SIZE).cast(),
                    iov_len: RECV_BUF_SIZE,
                };
                let h = &mut *hdrs.add(i);
                h.msg_len = 0;
                h.msg_hdr.msg_name = names.add(i).cast();
                h.msg_hdr.msg_iov = iovs.add(i);
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = cmsgs.add(i).cast();
                let s = &mut *send_hdrs.add(i);
                s.msg_hdr.msg_iov = send_iovs.add(i);
                s.msg_hdr.msg_iovlen = 1;
                s.msg_hdr.msg_flags = 0;
            }
        }
        self.rearm = BATCH;
        self.rearm_recv();
    }

    /// Reset what `recvmmsg` changes (name and control lengths, flags) in
    /// the headers it may have filled since the last call.
    fn rearm_recv(&mut self) {
        let hdrs = self.recv_hdrs.as_mut_ptr();
        for i in 0..self.rearm.min(BATCH) {
            // SAFETY: i < BATCH = the vector's length; plain writes.
            unsafe {
                let h = &mut (*hdrs.add(i)).msg_hdr;
                h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as _;
                h.msg_controllen = CMSG_BUF_SIZE as _;
                h.msg_flags = 0;
            }
        }
        self.rearm = 0;
    }

    /// Block (up to the socket's `SO_RCVTIMEO`) for at least one datagram and
    /// take up to `BATCH` that are queued. Returns how many arrived.
    fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.rearm_recv();
        let hdrs = self.recv_hdrs.as_mut_ptr();
        // SAFETY: `hdrs` points to BATCH armed headers whose buffers live in
        // `self` and stay put for the duration of the call.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                hdrs,
                BATCH as _,
                libc::MSG_WAITFORONE as _,
                ptr::null_mut(),
            )
        };
        if rc < 0 {
            // Nothing was received, but re-arm everything to be safe.
            self.rearm = BATCH;
            Err(io::Error::last_os_error())
        } else {
            // The kernel fills headers 0..rc; one more in case it touched
            // the header of a message that failed after those.
            self.rearm = (rc as usize + 1).min(BATCH);
            Ok(rc as usize)
        }
    }

    /// Run the handler over the first `n` received datagrams and prepare the
    /// replies in `send_hdrs`.
    fn process(&mut self, n: usize, handler: &dyn Handler, stats: &mut UdpStats) {
        self.pending = 0;
        stats.received += n as u64;
        let send_hdrs = self.send_hdrs.as_mut_ptr();
        let send_iovs = self.send_iovs.as_mut_ptr();
        let send_cmsgs = self.send_cmsgs.as_mut_ptr();
        let names = self.names.as_mut_ptr();
        for i in 0..n.min(BATCH) {
            let hdr = &self.recv_hdrs[i];
            let len = (hdr.msg_len as usize).min(RECV_BUF_SIZE);
            if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                stats.dropped_truncated += 1;
                continue;
            }
            let namelen = hdr.msg_hdr.msg_namelen;
            let Some(client) = sockaddr_to_std(&self.names[i], namelen) else {
                stats.dropped_invalid += 1;
                continue;
            };
            if client.port() == 0 {
                stats.dropped_invalid += 1;
                continue;
            }
            let pktinfo = read_pktinfo(&hdr.msg_hdr);

            let query = &self.bufs[i * RECV_BUF_SIZE..i * RECV_BUF_SIZE + len];
            let out = &mut self.outs[i];
            out.clear();
            let answered = panic::catch_unwind(AssertUnwindSafe(|| {
                handler.handle(query, client, Transport::Udp, out)
            }))
            .unwrap_or_else(|_| {
                tracing::error!(%client, "DNS handler panicked on a UDP query; dropped");
                false
            });
            if !answered || out.is_empty() {
                stats.dropped_by_handler += 1;
                continue;
            }

            let k = self.pending;
            self.pending += 1;
            // SAFETY: k < n <= BATCH, so all offsets are in bounds. The
            // reply's iovec points into `out`, which is not touched again
            // until the next batch; the name is the client's address as
            // received; the control buffer is ours and aligned for cmsghdr.
            unsafe {
                *send_iovs.add(k) = libc::iovec {
                    iov_base: out.as_mut_ptr().cast(),
                    iov_len: out.len(),
                };
                let controllen = match pktinfo {
                    Some(info) => write_reply_pktinfo(send_cmsgs.add(k), info),
                    None => 0,
                };
                // msg_iov, msg_iovlen and msg_flags were set once by
                // `arm_all` (sendmmsg only writes msg_len).
                let h = &mut *send_hdrs.add(k);
                h.msg_hdr.msg_name = names.add(i).cast();
                h.msg_hdr.msg_namelen = namelen;
                h.msg_hdr.msg_control = if controllen == 0 {
                    ptr::null_mut()
                } else {
                    send_cmsgs.add(k).cast()
                };
                h.msg_hdr.msg_controllen = controllen as _;
            }
        }
    }

    /// Send the replies prepared by [`Batch::process`], resending the rest
    /// after a partial send and skipping any message the kernel refuses.
    fn send(&mut self, fd: RawFd, stats: &mut UdpStats) {
        let hdrs = self.send_hdrs.as_mut_ptr();
        let total = self.pending;
        let mut done = 0;
        while done < total {
            // SAFETY: headers done..total were prepared by `process` and
            // point at buffers that are alive and unchanged.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs.add(done),
                    (total - done) as _,
                    libc::MSG_DONTWAIT as _,
                )
            };
            if rc > 0 {
                done += rc as usize;
                stats.sent += rc as u64;
                continue;
            }
            let err = io::Error::last_os_error();
            if rc < 0 && err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // The error belongs to the first unsent message: skip it.
            stats.send_errors += 1;
            tracing::debug!(error = %err, "UDP reply not sent");
            done += 1;
        }
        self.pending = 0;
    }
}

/// Convert a kernel-filled socket address; IPv4-mapped IPv6 becomes IPv4.
fn sockaddr_to_std(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match c_int::from(ss.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family is AF_INET and the kernel wrote a full
            // sockaddr_in; sockaddr_storage is aligned for every sockaddr.
            let sin = unsafe { &*ptr::from_ref(ss).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for AF_INET6 and sockaddr_in6.
            let sin6 = unsafe { &*ptr::from_ref(ss).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )),
            })
        }
        _ => None,
    }
}

/// Find the `IP_PKTINFO` / `IPV6_PKTINFO` control message of a received
/// datagram.
fn read_pktinfo(msg: &libc::msghdr) -> Option<PktInfo> {
    // SAFETY: `msg` was filled in by recvmmsg: msg_control points to our
    // buffer and msg_controllen is the length the kernel wrote, which is what
    // the CMSG_* helpers walk. Payloads are read unaligned after a length
    // check.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let level = (*c).cmsg_level;
            let kind = (*c).cmsg_type;
            let len = (*c).cmsg_len as usize;
            let data = libc::CMSG_DATA(c);
            if level == libc::IPPROTO_IP
                && kind == libc::IP_PKTINFO
                && len >= libc::CMSG_LEN(mem::size_of::<libc::in_pktinfo>() as u32) as usize
            {
                return Some(PktInfo::V4(ptr::read_unaligned(data.cast())));
            }
            if level == libc::IPPROTO_IPV6
                && kind == libc::IPV6_PKTINFO
                && len >= libc::CMSG_LEN(mem::size_of::<libc::in6_pktinfo>() as u32) as usize
            {
                return Some(PktInfo::V6(ptr::read_unaligned(data.cast())));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

/// The pktinfo to send a reply with, so that it leaves from the query's
/// destination address.
///
/// The interface index is kept only for link-local addresses, where it is
/// needed; otherwise it is cleared so the routing table picks the way out.
/// Forcing the arrival interface misroutes replies when routing is
/// asymmetric, e.g. an anycast address configured on `lo` and reached through
/// one interface while the route back uses another (gdnsd does the same for
/// IPv6).
fn reply_pktinfo(info: PktInfo) -> PktInfo {
    match info {
        PktInfo::V4(received) => {
            // On receive, ipi_spec_dst is the local address the packet was
            // sent to (the header destination for unicast, an address of the
            // interface for broadcast); on send, it is the source address.
            let dst = Ipv4Addr::from(received.ipi_spec_dst.s_addr.to_ne_bytes());
            PktInfo::V4(libc::in_pktinfo {
                ipi_ifindex: if dst.is_link_local() {
                    received.ipi_ifindex
                } else {
                    0
                },
                ipi_spec_dst: received.ipi_spec_dst,
                ipi_addr: libc::in_addr { s_addr: 0 },
            })
        }
        PktInfo::V6(received) => {
            let dst = Ipv6Addr::from(received.ipi6_addr.s6_addr);
            PktInfo::V6(libc::in6_pktinfo {
                ipi6_addr: received.ipi6_addr,
                ipi6_ifindex: if dst.is_unicast_link_local() {
                    received.ipi6_ifindex
                } else {
                    0
                },
            })
        }
    }
}

/// Write the reply's pktinfo control message into `buf`; returns the
/// control length to send.
///
/// # Safety
///
/// `buf` must point to a writable [`CmsgBuf`].
unsafe fn write_reply_pktinfo(buf: *mut CmsgBuf, info: PktInfo) -> usize {
    let c = buf.cast::<libc::cmsghdr>();
    // SAFETY: CmsgBuf is aligned for cmsghdr and large enough for a cmsghdr
    // followed by an in6_pktinfo (checked at compile time above); the
    // payload is written unaligned.
    unsafe {
        match reply_pktinfo(info) {
            PktInfo::V4(pi) => {
                let size = mem::size_of::<libc::in_pktinfo>() as u32;
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = libc::IP_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(size) as _;
                ptr::write_unaligned(libc::CMSG_DATA(c).cast(), pi);
                libc::CMSG_SPACE(size) as usize
            }
            PktInfo::V6(pi) => {
                let size = mem::size_of::<libc::in6_pktinfo>() as u32;
                (*c).cmsg_level = libc::IPPROTO_IPV6;
                (*c).cmsg_type = libc::IPV6_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(size) as _;
                ptr::write_unaligned(libc::CMSG_DATA(c).cast(), pi);
                libc::CMSG_SPACE(size) as usize
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::IpAddr;
    use std::time::Instant;

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
}
