//! AF_XDP listener: UDP queries taken off the network interface before the
//! kernel's IP stack, answered by the same [`Handler`] as the socket path
//! and sent back through the same interface queue.
//!
//! Opt-in with `server.xdp_interface`. At start it creates an XSKMAP, one
//! AF_XDP socket per receive queue of the interface (zero-copy when the
//! driver can, else copy mode), loads a hand-assembled XDP program (see
//! [`prog`]) that redirects only UDP to the listen addresses and ports and
//! passes everything else (counting it in a per-CPU map, read by
//! [`XdpServer::stats`]), and attaches it with a BPF link: native
//! (driver) XDP when the driver has it, else generic. The link lives in
//! this process, so stopping, or dying, detaches the program.
//!
//! The socket listeners stay bound: they answer TCP, and UDP the program
//! passes on (IPv4 with options, fragments, IPv6 extension headers, other
//! interfaces). Replies the interface's MTU cannot carry in one frame are
//! dropped and counted (no IP fragmentation here; keep
//! `server.max_udp_payload` below the MTU minus 48).
//!
//! Wake-ups, not packets, are what a query costs most here: each one is a
//! poll(2), a context switch and an interrupt, and under load they came
//! every three queries. So a worker that has just answered something sends
//! its replies and sleeps `coalesce` (`server.xdp_coalesce`, like a NIC's
//! interrupt coalescing) before it looks at the ring again, taking
//! everything that arrived meanwhile in one turn, as long as queries come
//! faster than it is woken: it sleeps only after a wake-up that found two
//! or more, else it blocks in poll(2) until the next packet. A quiet
//! server, or one client asking one query at a time, is answered without
//! a wait; under load a query waits at most `coalesce` longer.
//!
//! Where AF_XDP is not available (no such interface, not root, a kernel
//! without `CONFIG_XDP_SOCKETS` or bpf(2), another XDP program attached),
//! [`start`] fails with an [`XdpError`] saying which, and nothing is left
//! attached.

mod bpf;
mod packet;
mod prog;
mod xsk;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tracing::{info, warn};

use crate::dns::transport::{Handler, Transport};

/// Packets taken off the receive ring per round.
const BATCH: u32 = 64;

/// Queued replies that make the worker send before its next poll.
const KICK_AT: u32 = 32;

/// Frames per wake-up from which a worker sleeps `coalesce` before it
/// looks again (see the module doc).
const COALESCE_FROM: u32 = 2;

/// How long an idle worker waits for packets before checking for stop.
const WAKEUP_MS: i32 = 100;

/// Why the AF_XDP listener did not start.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The configured interface does not exist.
    #[error("xdp_interface {0:?}: no such network interface")]
    NoInterface(String),
    /// A system call failed.
    #[error("xdp_interface {interface:?}: {what}: {source}{hint}")]
    System {
        /// The interface.
        interface: String,
        /// The step that failed.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
        /// What it likely means.
        hint: &'static str,
    },
    /// Nothing to redirect.
    #[error("xdp_interface {interface:?}: {reason}")]
    Unusable {
        /// The interface.
        interface: String,
        /// Why.
        reason: String,
    },
}

fn hint(what: &str, e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        // EACCES from the loader is the verifier's verdict, not privileges.
        Some(libc::EPERM) => " (AF_XDP needs root: CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF)",
        Some(libc::EACCES) if what != "load XDP program" => {
            " (AF_XDP needs root: CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF)"
        }
        Some(libc::EAFNOSUPPORT) => " (the kernel has no AF_XDP: CONFIG_XDP_SOCKETS)",
        Some(libc::ENOSYS) => " (the kernel has no bpf(2))",
        Some(libc::EBUSY) | Some(libc::EEXIST) => {
            " (another XDP program or AF_XDP socket holds the interface)"
        }
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) if what == "attach" => {
            " (neither native nor generic XDP could attach)"
        }
        _ => "",
    }
}

/// Counters of one worker, on their own cache lines.
#[derive(Default)]
#[repr(align(128))]
struct Counters {
    received: AtomicU64,
    answered: AtomicU64,
    malformed: AtomicU64,
    by_handler: AtomicU64,
    too_big: AtomicU64,
    tx_full: AtomicU64,
    polls: AtomicU64,
    coalesced: AtomicU64,
}

/// Totals over all queues of an [`XdpServer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStats {
    /// Frames taken off the receive rings.
    pub received: u64,
    /// Replies put on the transmit rings.
    pub answered: u64,
    /// Frames whose headers did not parse.
    pub dropped_malformed: u64,
    /// Queries the handler declined (or panicked on).
    pub dropped_by_handler: u64,
    /// Replies larger than the MTU or the frame.
    pub dropped_too_big: u64,
    /// Replies with no room on the transmit ring.
    pub dropped_tx_full: u64,
    /// Waits in poll(2) for the next packet (each ends in a wake-up).
    pub polls: u64,
    /// Sleeps of `xdp_coalesce` under load (see the module doc).
    pub coalesced: u64,
    /// Frames the program gave to the kernel: everything but UDP to a
    /// listen address and port (ARP, ICMP, TCP, other ports, VLAN tags,
    /// IPv4 options, fragments, IPv6 extension headers). Matches whose
    /// queue has no socket also go to the kernel but are not counted.
    pub passed: u64,
}

/// A running AF_XDP listener; [`XdpServer::shutdown`] (or drop) detaches the
/// program and stops the workers.
pub struct XdpServer {
    interface: String,
    /// "native" or "generic".
    attach: &'static str,
    /// "zero-copy" or "copy".
    bind: &'static str,
    queues: u32,
    link: Option<OwnedFd>,
    _prog: OwnedFd,
    _map: OwnedFd,
    passed: Arc<bpf::PassCounter>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    counters: Vec<Arc<Counters>>,
}

impl std::fmt::Debug for XdpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpServer")
            .field("interface", &self.interface)
            .field("attach", &self.attach)
            .field("bind", &self.bind)
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

/// Interface index of `name`, if it exists.
fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a live NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Receive queues of `name` (at least one).
fn rx_queues(name: &str) -> u32 {
    let n = std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(1);
    u32::try_from(n).unwrap_or(1).max(1)
}

fn mtu(name: &str) -> usize {
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1500)
}

/// Start answering UDP to `listen` (ports resolved; unspecified addresses
/// match any of their family) on every receive queue of `interface`; a busy
/// worker sleeps `coalesce` between turns (zero: woken by every packet).
pub fn start(
    interface: &str,
    listen: &[SocketAddr],
    handler: Arc<dyn Handler>,
    coalesce: Duration,
) -> Result<XdpServer, XdpError> {
    let sys = |what: &'static str| {
        move |source: io::Error| XdpError::System {
            interface: interface.to_string(),
            what,
            hint: hint(what, &source),
            source,
        }
    };
    let index = ifindex(interface).ok_or_else(|| XdpError::NoInterface(interface.into()))?;
    if listen.is_empty() {
        return Err(XdpError::Unusable {
            interface: interface.into(),
            reason: "no UDP listen address to redirect".into(),
        });
    }
    let queues = rx_queues(interface);
    let mtu = mtu(interface);
    // Sockets first: a kernel without AF_XDP says so here most clearly.
    let mut sockets = Vec::with_capacity(queues as usize);
    for q in 0..queues {
        sockets.push(xsk::Xsk::open(index, q).map_err(|(what, e)| sys(what)(e))?);
    }
    let map = bpf::create_xskmap(queues).map_err(sys("create XSKMAP"))?;
    for (q, x) in sockets.iter().enumerate() {
        bpf::map_set(&map, q as u32, x.raw_fd()).map_err(sys("XSKMAP update"))?;
    }
    let passed = bpf::create_percpu_counter().map_err(sys("create pass counter"))?;
    let cpus = bpf::possible_cpus().map_err(sys("read possible CPUs"))?;
    // One read now: a wrong value buffer size shows here, not in the metrics.
    bpf::percpu_sum(&passed, 0, cpus).map_err(sys("read pass counter"))?;
    let insns = prog::assemble(listen, map.as_raw_fd(), passed.as_raw_fd(), prog::XDP_PASS);
    let prog_fd = bpf::load_xdp(&insns).map_err(sys("load XDP program"))?;
    let (link, attach) = match bpf::link_xdp(&prog_fd, index, bpf::XDP_FLAGS_DRV_MODE) {
        Ok(l) => (l, "native"),
        Err(native) => match bpf::link_xdp(&prog_fd, index, bpf::XDP_FLAGS_SKB_MODE) {
            Ok(l) => {
                info!(interface, error = %native, "native XDP unavailable, using generic XDP");
                (l, "generic")
            }
            Err(e) => return Err(sys("attach")(e)),
        },
    };
    let bind = match sockets[0].mode {
        xsk::BindMode::ZeroCopy => "zero-copy",
        xsk::BindMode::Copy => "copy",
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut server = XdpServer {
        interface: interface.into(),
        attach,
        bind,
        queues,
        link: Some(link),
        _prog: prog_fd,
        _map: map,
        passed: Arc::new(bpf::PassCounter::new(passed, cpus)),
        stop: stop.clone(),
        workers: Vec::new(),
        counters: Vec::new(),
    };
    for (q, socket) in sockets.into_iter().enumerate() {
        let counters = Arc::new(Counters::default());
        server.counters.push(counters.clone());
        let (stop, handler) = (stop.clone(), handler.clone());
        let spawned = thread::Builder::new()
            .name(format!("steerdns-xdp{q}"))
            .spawn(move || worker(socket, &*handler, &stop, &counters, mtu, coalesce));
        match spawned {
            Ok(h) => server.workers.push(h),
            // Dropping `server` detaches the program and stops the others.
            Err(e) => return Err(sys("worker thread")(e)),
        }
    }
    let addrs: Vec<String> = listen.iter().map(ToString::to_string).collect();
    info!(
        "listening proto=udp-xdp interface={interface} queues={queues} xdp={attach} bind={bind} coalesce={}us addrs={}",
        coalesce.as_micros(),
        addrs.join(",")
    );
    Ok(server)
}

/// Reads an [`XdpServer`]'s totals from another thread (the metrics).
#[derive(Clone)]
pub struct XdpStatsReader {
    counters: Vec<Arc<Counters>>,
    passed: Arc<bpf::PassCounter>,
}

impl std::fmt::Debug for XdpStatsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpStatsReader")
            .field("queues", &self.counters.len())
            .finish()
    }
}

impl XdpStatsReader {
    /// Totals so far (`passed` costs a system call).
    pub fn stats(&self) -> XdpStats {
        totals(&self.counters, &self.passed)
    }
}

fn totals(counters: &[Arc<Counters>], passed: &bpf::PassCounter) -> XdpStats {
    let mut s = XdpStats {
        passed: passed.read(),
        ..XdpStats::default()
    };
    for c in counters {
        s.received += c.received.load(Ordering::Relaxed);
        s.answered += c.answered.load(Ordering::Relaxed);
        s.dropped_malformed += c.malformed.load(Ordering::Relaxed);
        s.dropped_by_handler += c.by_handler.load(Ordering::Relaxed);
        s.dropped_too_big += c.too_big.load(Ordering::Relaxed);
        s.dropped_tx_full += c.tx_full.load(Ordering::Relaxed);
        s.polls += c.polls.load(Ordering::Relaxed);
        s.coalesced += c.coalesced.load(Ordering::Relaxed);
    }
    s
}

impl XdpServer {
    /// Totals so far (`passed` costs a system call).
    pub fn stats(&self) -> XdpStats {
        totals(&self.counters, &self.passed)
    }

    /// A reader of the totals that outlives borrowing the server.
    pub fn stats_reader(&self) -> XdpStatsReader {
        XdpStatsReader {
            counters: self.counters.clone(),
            passed: self.passed.clone(),
        }
    }

    /// "native" or "generic" XDP.
    pub fn attach_mode(&self) -> &'static str {
        self.attach
    }

    /// Detach the program (the kernel takes the traffic back at once), stop
    /// and join the workers, close the sockets.
    pub fn shutdown(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if self.link.take().is_none() {
            return;
        }
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let s = self.stats();
        info!(
            interface = self.interface,
            received = s.received,
            answered = s.answered,
            dropped_malformed = s.dropped_malformed,
            dropped_by_handler = s.dropped_by_handler,
            dropped_too_big = s.dropped_too_big,
            dropped_tx_full = s.dropped_tx_full,
            polls = s.polls,
            coalesced = s.coalesced,
            passed = s.passed,
            "xdp listener stopped, program detached"
        );
    }
}

impl Drop for XdpServer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Local counts, published once per round.
#[derive(Default)]
struct Local {
    received: u64,
    answered: u64,
    malformed: u64,
    by_handler: u64,
    too_big: u64,
    tx_full: u64,
    polls: u64,
    coalesced: u64,
}

impl Local {
    fn publish(&mut self, c: &Counters) {
        for (v, a) in [
            (&mut self.received, &c.received),
            (&mut self.answered, &c.answered),
            (&mut self.malformed, &c.malformed),
            (&mut self.by_handler, &c.by_handler),
            (&mut self.too_big, &c.too_big),
            (&mut self.tx_full, &c.tx_full),
            (&mut self.polls, &c.polls),
            (&mut self.coalesced, &c.coalesced),
        ] {
            if *v != 0 {
                a.fetch_add(*v, Ordering::Relaxed);
                *v = 0;
            }
        }
    }
}

/// Let this thread's sleeps overrun by at most a tenth of `coalesce`
/// (the kernel's default slack, 50 µs, is as long as the sleep itself).
fn set_timer_slack(coalesce: Duration) {
    let ns = (coalesce.as_nanos() / 10).clamp(1_000, 100_000) as libc::c_ulong;
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer; it only changes this
    // thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, ns, 0, 0, 0);
    }
}

/// One queue's loop: recycle sent frames, take a batch off the rx ring,
/// answer each query in its own frame and queue it for sending; under load
/// sleep `coalesce` between turns (see the module doc).
fn worker(
    mut x: xsk::Xsk,
    handler: &dyn Handler,
    stop: &AtomicBool,
    counters: &Counters,
    mtu: usize,
    coalesce: Duration,
) {
    let mut out = Vec::with_capacity(65535);
    let mut local = Local::default();
    if !coalesce.is_zero() {
        set_timer_slack(coalesce);
    }
    // Frames taken since the last wake-up (from poll or from a sleep).
    let mut taken = 0u32;
    while !stop.load(Ordering::Relaxed) {
        x.recycle();
        let n = x.rx_ready(BATCH);
        if n == 0 {
            x.submit();
            // Two or more queries since the last wake-up: they come faster
            // than the worker is woken, so let the next ones gather instead
            // of being woken by each. One at a time (a quiet server, or
            // one client asking in turn) is answered without a wait.
            if std::mem::take(&mut taken) >= COALESCE_FROM && !coalesce.is_zero() {
                x.kick();
                local.coalesced += 1;
                local.publish(counters);
                thread::sleep(coalesce);
            } else {
                // The poll inside `wait` sends the replies queued so far:
                // one system call per idle turn instead of a send and a
                // poll.
                local.polls += 1;
                local.publish(counters);
                x.wait(WAKEUP_MS);
            }
            continue;
        }
        taken += n;
        for k in 0..n {
            let (addr, len) = x.rx_desc(k);
            local.received += 1;
            let Some(frame) = x.frame_mut(addr) else {
                local.malformed += 1;
                continue; // not a frame of ours: nothing to give back
            };
            match answer(frame, len, handler, &mut out, mtu) {
                Ok(reply_len) => {
                    if x.tx_push(addr, reply_len) {
                        local.answered += 1;
                    } else {
                        local.tx_full += 1;
                        x.refill(addr);
                    }
                }
                Err(why) => {
                    match why {
                        Discard::Malformed => local.malformed += 1,
                        Discard::Handler => local.by_handler += 1,
                        Discard::TooBig => local.too_big += 1,
                    }
                    x.refill(addr);
                }
            }
        }
        x.rx_release(n);
        x.submit();
        // Under load the rx ring never empties: send every KICK_AT replies.
        if x.tx_outstanding() >= KICK_AT {
            x.kick();
        }
        local.publish(counters);
    }
    local.publish(counters);
    if let Some(k) = x.kernel_stats()
        && (k.rx_dropped | k.rx_ring_full | k.rx_fill_ring_empty_descs) != 0
    {
        warn!(
            rx_dropped = k.rx_dropped,
            rx_ring_full = k.rx_ring_full,
            fill_ring_empty = k.rx_fill_ring_empty_descs,
            "xdp socket: kernel-side drops"
        );
    }
}

enum Discard {
    Malformed,
    Handler,
    TooBig,
}

/// Answer the query in `frame[..len]` in place; the reply frame's length.
fn answer(
    frame: &mut [u8],
    len: usize,
    handler: &dyn Handler,
    out: &mut Vec<u8>,
    mtu: usize,
) -> Result<usize, Discard> {
    let d = packet::parse(frame.get(..len).ok_or(Discard::Malformed)?).ok_or(Discard::Malformed)?;
    let query = &frame[d.payload_at..d.payload_at + d.payload_len];
    out.clear();
    let ok = panic::catch_unwind(AssertUnwindSafe(|| {
        handler.handle(query, d.client, Transport::Udp, out)
    }))
    .unwrap_or(false);
    if !ok || out.is_empty() {
        return Err(Discard::Handler);
    }
    // The IP packet must fit the MTU, the frame must hold the headers too.
    let ip_headers = d.payload_at - packet::ETH_LEN;
    if ip_headers + out.len() > mtu || d.payload_at + out.len() > frame.len() {
        return Err(Discard::TooBig);
    }
    frame[d.payload_at..d.payload_at + out.len()].copy_from_slice(out);
    Ok(packet::write_reply(frame, &d, out.len()))
}

const _: () = assert!(packet::MAX_HEADERS + 1232 < xsk::FRAME_SIZE as usize - 256);

#[cfg(test)]
mod tests;
