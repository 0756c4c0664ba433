//! Fair sharing of the TCP connection slots (RFC 7766 section 6.2.3):
//! a per-client-network connection limit, eviction of the longest-idle
//! connection when the cap is reached, and a shorter idle timeout while the
//! cap is near.
//!
//! No sockets here: the TCP transport asks [`ConnTable::admit`] at accept
//! and holds the returned [`Slot`] for the connection's life; the slot
//! records when the connection last completed a query (an atomic store per
//! query, no lock) and carries the token that evicts it. Admission takes a
//! mutex (once per connection, never per query).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Limits of the table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FairLimits {
    /// Connections, all listeners together.
    pub(crate) max_connections: usize,
    /// Connections from one client network (IPv4 /24, IPv6 /56).
    pub(crate) max_per_client: usize,
    /// Idle timeout normally.
    pub(crate) idle_timeout: Duration,
    /// Idle timeout while at least 3/4 of the slots are taken.
    pub(crate) busy_idle_timeout: Duration,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its network holds `max_per_client` connections already.
    PerClient,
    /// Every slot is taken and none could be freed.
    Full,
}

struct Conn {
    net: (u128, bool),
    last: Arc<AtomicU64>,
    evict: CancellationToken,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Conn>,
    per_net: HashMap<(u128, bool), usize>,
}

/// The connections of every TCP listener of a server (`pub`: reachable
/// through [`super::tcp::TcpOptions`]).
pub struct ConnTable {
    inner: Mutex<Inner>,
    open: AtomicUsize,
    epoch: Instant,
}

impl Default for ConnTable {
    fn default() -> Self {
        ConnTable {
            inner: Mutex::default(),
            open: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }
}

impl std::fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTable")
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A connection's place in the table; frees it when dropped.
pub(crate) struct Slot {
    pub(crate) table: Arc<ConnTable>,
    id: u64,
    last: Arc<AtomicU64>,
    /// Cancelled when the connection is evicted.
    pub(crate) evict: CancellationToken,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("id", &self.id).finish()
    }
}

/// The client network a connection counts against.
fn network(ip: IpAddr) -> (u128, bool) {
    match ip.to_canonical() {
        IpAddr::V4(a) => (u128::from(u32::from(a) & 0xFFFF_FF00), false),
        IpAddr::V6(a) => (u128::from(a) & (u128::MAX << 72), true),
    }
}

impl ConnTable {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The idle timeout that applies now.
    pub(crate) fn idle_timeout(&self, l: &FairLimits) -> Duration {
        if self.open() * 4 >= l.max_connections * 3 {
            l.busy_idle_timeout.min(l.idle_timeout)
        } else {
            l.idle_timeout
        }
    }

    /// Admit a connection from `peer`. At the cap, the connection that has
    /// gone longest without completing a query, among those of the network
    /// holding the most connections, is evicted to make room;
    /// while the cap is near, every connection idle longer than the busy
    /// timeout is evicted too.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr, l: &FairLimits) -> Result<Slot, Refused> {
        self.admit_at(peer, l, self.now_ms())
    }

    fn admit_at(self: &Arc<Self>, peer: IpAddr, l: &FairLimits, now: u64) -> Result<Slot, Refused> {
        let net = network(peer);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.per_net.get(&net).copied().unwrap_or(0) >= l.max_per_client.max(1) {
            return Err(Refused::PerClient);
        }
        let max = l.max_connections.max(1);
        if g.conns.len() * 4 >= max * 3 {
            let busy = l.busy_idle_timeout.as_millis() as u64;
            let stale: Vec<u64> = g
                .conns
                .iter()
                .filter(|(_, c)| !c.evict.is_cancelled())
                .filter(|(_, c)| now.saturating_sub(c.last.load(Ordering::Relaxed)) >= busy)
                .map(|(&id, _)| id)
                .collect();
            for id in stale {
                self.evict_locked(&mut g, id);
            }
        }
        if g.conns.len() >= max {
            // Make room at the expense of the network holding the most
            // connections (a flood from one network evicts its own), and
            // there the one that has gone longest without a query.
            let most = g.per_net.values().copied().max().unwrap_or(0);
            let oldest = g
                .conns
                .iter()
                .filter(|(_, c)| !c.evict.is_cancelled())
                .filter(|(_, c)| g.per_net.get(&c.net).copied() == Some(most))
                .min_by_key(|(id, c)| (c.last.load(Ordering::Relaxed), **id))
                .map(|(&id, _)| id);
            match oldest {
                Some(id) => self.evict_locked(&mut g, id),
                None => return Err(Refused::Full),
            }
        }
        let id = g.next_id;
        g.next_id += 1;
        let last = Arc::new(AtomicU64::new(now));
        let evict = CancellationToken::new();
        g.conns.insert(
            id,
            Conn {
                net,
                last: last.clone(),
                evict: evict.clone(),
            },
        );
        *g.per_net.entry(net).or_default() += 1;
        self.open.store(g.conns.len(), Ordering::Relaxed);
        Ok(Slot {
            table: Arc::clone(self),
            id,
            last,
            evict,
        })
    }

    /// Evict: the slot is freed at once (the task ends on its own when it
    /// sees the token), so the new connection can have it.
    fn evict_locked(&self, g: &mut Inner, id: u64) {
        if let Some(c) = g.conns.remove(&id) {
            c.evict.cancel();
            if let Some(n) = g.per_net.get_mut(&c.net) {
                *n -= 1;
                if *n == 0 {
                    g.per_net.remove(&c.net);
                }
            }
        }
        self.open.store(g.conns.len(), Ordering::Relaxed);
    }
}

impl Slot {
    /// The connection completed a query now (one atomic store).
    pub(crate) fn active(&self) {
        self.last.store(self.table.now_ms(), Ordering::Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.table.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = g.conns.remove(&self.id)
            && let Some(n) = g.per_net.get_mut(&c.net)
        {
            *n -= 1;
            if *n == 0 {
                g.per_net.remove(&c.net);
            }
        }
        self.table.open.store(g.conns.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per: usize) -> FairLimits {
        FairLimits {
            max_connections: max,
            max_per_client: per,
            idle_timeout: Duration::from_secs(10),
            busy_idle_timeout: Duration::from_secs(3600),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_network_limit() {
        let t = Arc::new(ConnTable::default());
        let l = limits(100, 2);
        let a = t.admit(ip("192.0.2.1"), &l).unwrap();
        let _b = t.admit(ip("192.0.2.200"), &l).unwrap();
        assert_eq!(
            t.admit(ip("192.0.2.7"), &l).unwrap_err(),
            Refused::PerClient
        );
        assert_eq!(
            t.admit(ip("::ffff:192.0.2.7"), &l).unwrap_err(),
            Refused::PerClient
        );
        let _c = t.admit(ip("192.0.3.1"), &l).unwrap();
        let _v6a = t.admit(ip("2001:db8:0:100::1"), &l).unwrap();
        let _v6b = t.admit(ip("2001:db8:0:1ff::1"), &l).unwrap();
        assert_eq!(
            t.admit(ip("2001:db8:0:100::9"), &l).unwrap_err(),
            Refused::PerClient
        );
        assert_eq!(t.open(), 5);
        drop(a);
        assert_eq!(t.open(), 4);
        t.admit(ip("192.0.2.7"), &l).unwrap();
    }

    #[test]
    fn at_the_cap_the_longest_idle_is_evicted() {
        let t = Arc::new(ConnTable::default());
        let l = limits(3, 3);
        let a = t.admit(ip("192.0.2.1"), &l).unwrap();
        let b = t.admit(ip("192.0.2.2"), &l).unwrap();
        let c = t.admit(ip("192.0.2.3"), &l).unwrap();
        // a and c complete queries later than b.
        a.last.store(50, Ordering::Relaxed);
        b.last.store(10, Ordering::Relaxed);
        c.last.store(40, Ordering::Relaxed);
        let d = t.admit(ip("198.51.100.1"), &l).unwrap();
        assert!(b.evict.is_cancelled());
        assert!(!a.evict.is_cancelled() && !c.evict.is_cancelled());
        assert_eq!(t.open(), 3);
        // The evicted slot is already free: b's own drop changes nothing.
        drop(b);
        assert_eq!(t.open(), 3);
        drop(d);
        assert_eq!(t.open(), 2);
    }

    #[test]
    fn the_biggest_network_pays_for_room() {
        let t = Arc::new(ConnTable::default());
        let l = limits(4, 4);
        // An old connection from one network, three newer from another.
        let lone = t.admit(ip("203.0.113.5"), &l).unwrap();
        lone.last.store(0, Ordering::Relaxed);
        let flood: Vec<Slot> = (1..=3)
            .map(|i| t.admit(IpAddr::from([192, 0, 2, i]), &l).unwrap())
            .collect();
        for (i, f) in flood.iter().enumerate() {
            f.last.store(100 + i as u64, Ordering::Relaxed);
        }
        // A newcomer from the flooding network evicts that network's oldest,
        // not the older lone connection.
        let _n = t.admit(ip("192.0.2.77"), &l).unwrap();
        assert!(!lone.evict.is_cancelled());
        assert!(flood[0].evict.is_cancelled());
        assert!(!flood[1].evict.is_cancelled());
    }

    #[test]
    fn near_the_cap_idle_connections_go_and_the_timeout_shrinks() {
        let t = Arc::new(ConnTable::default());
        let mut l = limits(4, 4);
        l.busy_idle_timeout = Duration::from_millis(100);
        let slots: Vec<Slot> = (1..=3)
            .map(|i| t.admit(IpAddr::from([192, 0, 2, i]), &l).unwrap())
            .collect();
        assert_eq!(
            t.idle_timeout(&l),
            Duration::from_millis(100),
            "3 of 4 open"
        );
        // At t = 1000 ms: two have been idle past the busy timeout, one
        // answered 50 ms ago.
        slots[0].last.store(0, Ordering::Relaxed);
        slots[1].last.store(0, Ordering::Relaxed);
        slots[2].last.store(950, Ordering::Relaxed);
        let _n = t.admit_at(ip("198.51.100.1"), &l, 1000).unwrap();
        assert!(slots[0].evict.is_cancelled() && slots[1].evict.is_cancelled());
        assert!(!slots[2].evict.is_cancelled());
        assert_eq!(t.open(), 2);
        assert_eq!(t.idle_timeout(&l), Duration::from_secs(10));
    }
}
