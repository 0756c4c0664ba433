//! Fair sharing of the TCP connection slots (RFC 7766 section 6.2.3):
//! a per-client-network connection limit, eviction of the longest-idle
//! connection when the cap is reached, and a shorter idle timeout while the
//! cap is near.
//!
//! No sockets here: the TCP event loop owns one [`FairTable`] for all its
//! listeners, asks [`FairTable::admit`] at accept, records each completed
//! query with [`FairTable::active`] and frees the slot with
//! [`FairTable::remove`]. Only the loop's thread touches it, so there is no
//! lock; ids are the loop's connection slots.

use std::net::IpAddr;
use std::time::Duration;

use rustc_hash::FxHashMap;

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

/// A client network: IPv4 /24 or IPv6 /56, and whether it is IPv6.
pub(crate) type Net = (u128, bool);

#[derive(Debug, Clone, Copy)]
struct Entry {
    net: Net,
    /// When the connection last completed a query (or was opened), in the
    /// loop's milliseconds.
    last: u64,
}

/// The connections of every TCP listener of a server.
///
/// `FxHashMap` for the per-network counts: the keys are networks that
/// completed a TCP handshake (not spoofable) and there are at most
/// `max_connections` of them, so a keyed hash buys nothing here and SipHash
/// cost ~900 instructions per connection.
#[derive(Debug, Default)]
pub(crate) struct FairTable {
    entries: Vec<Option<Entry>>,
    open: usize,
    per_net: FxHashMap<Net, usize>,
}

/// The client network a connection counts against.
pub(crate) fn network(ip: IpAddr) -> Net {
    match ip.to_canonical() {
        IpAddr::V4(a) => (u128::from(u32::from(a) & 0xFFFF_FF00), false),
        IpAddr::V6(a) => (u128::from(a) & (u128::MAX << 72), true),
    }
}

impl FairTable {
    /// Connections open now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open
    }

    /// The idle timeout that applies now.
    pub(crate) fn idle_timeout(&self, l: &FairLimits) -> Duration {
        if self.open * 4 >= l.max_connections * 3 {
            l.busy_idle_timeout.min(l.idle_timeout)
        } else {
            l.idle_timeout
        }
    }

    /// When connection `id` last completed a query (or opened).
    pub(crate) fn last(&self, id: usize) -> Option<u64> {
        self.entries.get(id).copied().flatten().map(|e| e.last)
    }

    /// May a connection from `net` open at `now`? At the cap, the connection
    /// that has gone longest without completing a query, among those of the
    /// network holding the most connections, is evicted to make room; while
    /// the cap is near, every connection idle longer than the busy timeout
    /// is evicted too. Evicted ids are freed here and appended to `evicted`
    /// (the caller closes them); then the caller inserts the new one with
    /// [`FairTable::insert`].
    pub(crate) fn admit(
        &mut self,
        net: Net,
        now: u64,
        l: &FairLimits,
        evicted: &mut Vec<usize>,
    ) -> Result<(), Refused> {
        if self.per_net.get(&net).copied().unwrap_or(0) >= l.max_per_client.max(1) {
            return Err(Refused::PerClient);
        }
        let max = l.max_connections.max(1);
        if self.open * 4 >= max * 3 {
            let busy = l.busy_idle_timeout.as_millis() as u64;
            let stale: Vec<usize> = self
                .live()
                .filter(|(_, e)| now.saturating_sub(e.last) >= busy)
                .map(|(id, _)| id)
                .collect();
            for id in stale {
                self.remove(id);
                evicted.push(id);
            }
        }
        if self.open >= max {
            // Make room at the expense of the network holding the most
            // connections (a flood from one network evicts its own), and
            // there the one that has gone longest without a query.
            let most = self.per_net.values().copied().max().unwrap_or(0);
            let oldest = self
                .live()
                .filter(|(_, e)| self.per_net.get(&e.net).copied() == Some(most))
                .min_by_key(|(id, e)| (e.last, *id))
                .map(|(id, _)| id);
            match oldest {
                Some(id) => {
                    self.remove(id);
                    evicted.push(id);
                }
                None => return Err(Refused::Full),
            }
        }
        Ok(())
    }

    /// Record connection `id` (admitted just before) from `net` at `now`.
    pub(crate) fn insert(&mut self, id: usize, net: Net, now: u64) {
        if self.entries.len() <= id {
            self.entries.resize(id + 1, None);
        }
        if self.entries[id].replace(Entry { net, last: now }).is_none() {
            self.open += 1;
            *self.per_net.entry(net).or_default() += 1;
        }
    }

    /// Connection `id` completed a query at `now`.
    pub(crate) fn active(&mut self, id: usize, now: u64) {
        if let Some(Some(e)) = self.entries.get_mut(id) {
            e.last = now;
        }
    }

    /// Free connection `id`'s slot (no-op when it is not in the table).
    pub(crate) fn remove(&mut self, id: usize) {
        let Some(e) = self.entries.get_mut(id).and_then(Option::take) else {
            return;
        };
        self.open -= 1;
        if let Some(n) = self.per_net.get_mut(&e.net) {
            *n -= 1;
            if *n == 0 {
                self.per_net.remove(&e.net);
            }
        }
    }

    fn live(&self) -> impl Iterator<Item = (usize, Entry)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(id, e)| e.map(|e| (id, e)))
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

    /// Admit `ip` at `now` as the next free id; returns it and the evicted.
    fn admit(
        t: &mut FairTable,
        ip: &str,
        now: u64,
        l: &FairLimits,
    ) -> Result<(usize, Vec<usize>), Refused> {
        let net = network(ip.parse().unwrap());
        let mut evicted = Vec::new();
        t.admit(net, now, l, &mut evicted)?;
        let id = t
            .entries
            .iter()
            .position(Option::is_none)
            .unwrap_or(t.entries.len());
        t.insert(id, net, now);
        Ok((id, evicted))
    }

    #[test]
    fn per_network_limit() {
        let mut t = FairTable::default();
        let l = limits(100, 2);
        let (a, _) = admit(&mut t, "192.0.2.1", 0, &l).unwrap();
        admit(&mut t, "192.0.2.200", 0, &l).unwrap();
        assert_eq!(
            admit(&mut t, "192.0.2.7", 0, &l).unwrap_err(),
            Refused::PerClient
        );
        assert_eq!(
            admit(&mut t, "::ffff:192.0.2.7", 0, &l).unwrap_err(),
            Refused::PerClient
        );
        admit(&mut t, "192.0.3.1", 0, &l).unwrap();
        admit(&mut t, "2001:db8:0:100::1", 0, &l).unwrap();
        admit(&mut t, "2001:db8:0:1ff::1", 0, &l).unwrap();
        assert_eq!(
            admit(&mut t, "2001:db8:0:100::9", 0, &l).unwrap_err(),
            Refused::PerClient
        );
        assert_eq!(t.open(), 5);
        t.remove(a);
        assert_eq!(t.open(), 4);
        // Removing twice changes nothing.
        t.remove(a);
        assert_eq!(t.open(), 4);
        admit(&mut t, "192.0.2.7", 0, &l).unwrap();
    }

    #[test]
    fn at_the_cap_the_longest_idle_is_evicted() {
        let mut t = FairTable::default();
        let l = limits(3, 3);
        let (a, _) = admit(&mut t, "192.0.2.1", 0, &l).unwrap();
        let (b, _) = admit(&mut t, "192.0.2.2", 0, &l).unwrap();
        let (c, _) = admit(&mut t, "192.0.2.3", 0, &l).unwrap();
        // a and c complete queries later than b.
        t.active(a, 50);
        t.active(b, 10);
        t.active(c, 40);
        let (d, evicted) = admit(&mut t, "198.51.100.1", 60, &l).unwrap();
        assert_eq!(evicted, vec![b]);
        assert_eq!(d, b, "the freed slot is reused");
        assert_eq!(t.open(), 3);
        assert_eq!(t.last(a), Some(50));
        t.remove(d);
        assert_eq!(t.open(), 2);
    }

    #[test]
    fn the_biggest_network_pays_for_room() {
        let mut t = FairTable::default();
        let l = limits(4, 4);
        // An old connection from one network, three newer from another.
        let (lone, _) = admit(&mut t, "203.0.113.5", 0, &l).unwrap();
        let flood: Vec<usize> = (1..=3)
            .map(|i| {
                admit(&mut t, &format!("192.0.2.{i}"), 100 + i, &l)
                    .unwrap()
                    .0
            })
            .collect();
        // A newcomer from the flooding network evicts that network's oldest,
        // not the older lone connection.
        let (_, evicted) = admit(&mut t, "192.0.2.77", 200, &l).unwrap();
        assert_eq!(evicted, vec![flood[0]]);
        assert!(t.last(lone).is_some());
    }

    #[test]
    fn near_the_cap_idle_connections_go_and_the_timeout_shrinks() {
        let mut t = FairTable::default();
        let mut l = limits(4, 4);
        l.busy_idle_timeout = Duration::from_millis(100);
        let ids: Vec<usize> = (1..=3)
            .map(|i| admit(&mut t, &format!("192.0.2.{i}"), 0, &l).unwrap().0)
            .collect();
        assert_eq!(
            t.idle_timeout(&l),
            Duration::from_millis(100),
            "3 of 4 open"
        );
        // At t = 1000 ms: two have been idle past the busy timeout, one
        // answered 50 ms ago.
        t.active(ids[2], 950);
        let (_, mut evicted) = admit(&mut t, "198.51.100.1", 1000, &l).unwrap();
        evicted.sort_unstable();
        assert_eq!(evicted, vec![ids[0], ids[1]]);
        assert_eq!(t.open(), 2);
        assert_eq!(t.idle_timeout(&l), Duration::from_secs(10));
    }
}
