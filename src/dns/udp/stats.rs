//! The workers' counters: one cache-line-aligned set per worker, published
//! once per batch, summed on read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
pub(super) struct Counters {
    received: AtomicU64,
    sent: AtomicU64,
    dropped_truncated: AtomicU64,
    dropped_by_handler: AtomicU64,
    dropped_invalid: AtomicU64,
    send_errors: AtomicU64,
    recv_errors: AtomicU64,
}

impl Counters {
    pub(super) fn publish(&self, local: &mut UdpStats) {
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

pub(super) fn sum(counters: &[Counters]) -> UdpStats {
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
pub struct UdpStatsReader(pub(super) Arc<[Counters]>);

impl UdpStatsReader {
    /// Current totals over all workers.
    pub fn stats(&self) -> UdpStats {
        sum(&self.0)
    }
}
