//! Admission of HTTP API connections, so slow or idle clients cannot starve
//! `/healthz`, `/metrics` and reloads.
//!
//! Every connection is in a table with its client (an IPv4 address, or an
//! IPv6 /64) and whether a request is being handled on it. A connection
//! that is not inside a handler is *idle*: reading a request head, trickling
//! a body the handlers never read, or waiting between keep-alive requests.
//! A new connection is always accepted (the listen backlog never fills up),
//! and then:
//!
//! - when its client already has [`MAX_PER_CLIENT`] connections, the one of
//!   them idle longest is closed to make room (none idle: the new one is
//!   refused);
//! - when the table holds [`MAX_CONNECTIONS`], the connection idle longest,
//!   whoever's, is closed (none idle: the new one is refused).
//!
//! So a thousand slowloris connections cost each other their slots, while
//! a client that sends its request at once (a health check, a scrape) gets
//! in and is served. Idle time is also bounded: [`IDLE_TIMEOUT`] normally,
//! [`IDLE_TIMEOUT_UNDER_PRESSURE`] when the table is three quarters full.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 128;
/// Connections of one client (IPv4 address or IPv6 /64) at once.
pub const MAX_PER_CLIENT: usize = 32;
/// A connection outside a request handler is closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The same when the table is three quarters full.
pub const IDLE_TIMEOUT_UNDER_PRESSURE: Duration = Duration::from_secs(1);

/// The client a connection counts against.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Whether a connection is inside a handler, and since when it is not.
#[derive(Debug)]
pub(crate) struct ConnState {
    epoch: Instant,
    busy: AtomicU32,
    /// Milliseconds after `epoch` when the connection last became idle.
    idle_since_ms: AtomicU64,
}

impl ConnState {
    fn new(epoch: Instant) -> Self {
        ConnState {
            epoch,
            busy: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(ms_since(epoch)),
        }
    }

    /// Mark a request as being handled until the returned guard drops.
    pub(crate) fn begin(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::Relaxed);
        BusyGuard(self.clone())
    }

    /// How long the connection has been idle (`None` while busy).
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let since = self.idle_since_ms.load(Ordering::Relaxed);
        Some(Duration::from_millis(
            ms_since(self.epoch).saturating_sub(since),
        ))
    }
}

fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Ends a request's busy time (also when its future is dropped).
pub(crate) struct BusyGuard(Arc<ConnState>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0
            .idle_since_ms
            .store(ms_since(self.0.epoch), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its connection busy until hyper has taken
/// its last frame, so the connection is not closed to make room while the
/// response is still on its way out.
pub(crate) struct BusyBody<B> {
    inner: B,
    guard: Option<BusyGuard>,
}

impl<B> BusyBody<B> {
    pub(crate) fn new(inner: B, guard: BusyGuard) -> Self {
        BusyBody {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for BusyBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let r = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(r, std::task::Poll::Ready(None)) || this.inner.is_end_stream() {
            this.guard = None;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

struct Entry {
    client: IpAddr,
    state: Arc<ConnState>,
    evict: CancellationToken,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Entry>,
    per_client: HashMap<IpAddr, usize>,
    /// Connections closed to make room, and refused.
    evicted: u64,
    refused: u64,
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.conns.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&e.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&e.client);
            }
        }
        Some(e)
    }

    /// The connection idle longest, of `client` or of anyone.
    fn longest_idle(&self, client: Option<IpAddr>) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, e)| client.is_none_or(|c| e.client == c))
            // Ties (same millisecond): the older connection.
            .filter_map(|(id, e)| Some((e.state.idle_for()?, std::cmp::Reverse(*id))))
            .max()
            .map(|(_, id)| id.0)
    }
}

/// The table of API connections.
pub(crate) struct ConnTable {
    epoch: Instant,
    max_total: usize,
    max_per_client: usize,
    inner: Mutex<Inner>,
}

/// An admitted connection; dropping it frees its place.
pub(crate) struct Admitted {
    table: Arc<ConnTable>,
    id: u64,
    /// Busy/idle state, updated by the request handler.
    pub(crate) state: Arc<ConnState>,
    /// Cancelled when the connection is closed to make room for another.
    pub(crate) evicted: CancellationToken,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.table.lock().remove(self.id);
    }
}

impl ConnTable {
    /// A table with the given caps.
    pub(crate) fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(ConnTable {
            epoch: Instant::now(),
            max_total: max_total.max(1),
            max_per_client: max_per_client.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update is a few map operations that cannot panic halfway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admit a connection from `peer`, closing the longest idle one of the
    /// same client, or of anyone, when a cap is reached; `None`: refused
    /// (every connection in the way is inside a handler).
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Admitted> {
        let client = client_of(peer);
        let mut inner = self.lock();
        let mine = inner.per_client.get(&client).copied().unwrap_or(0);
        let victim = if mine >= self.max_per_client {
            Some(inner.longest_idle(Some(client)))
        } else if inner.conns.len() >= self.max_total {
            Some(inner.longest_idle(None))
        } else {
            None
        };
        match victim {
            Some(None) => {
                inner.refused += 1;
                return None;
            }
            Some(Some(id)) => {
                if let Some(e) = inner.remove(id) {
                    e.evict.cancel();
                }
                inner.evicted += 1;
            }
            None => {}
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let state = Arc::new(ConnState::new(self.epoch));
        let evicted = CancellationToken::new();
        inner.conns.insert(
            id,
            Entry {
                client,
                state: state.clone(),
                evict: evicted.clone(),
            },
        );
        *inner.per_client.entry(client).or_insert(0) += 1;
        drop(inner);
        Some(Admitted {
            table: self.clone(),
            id,
            state,
            evicted,
        })
    }

    /// How long a connection may stay idle now.
    pub(crate) fn idle_timeout(&self) -> Duration {
        if self.lock().conns.len() * 4 >= self.max_total * 3 {
            IDLE_TIMEOUT_UNDER_PRESSURE
        } else {
            IDLE_TIMEOUT
        }
    }

    /// (open connections, closed to make room, refused) so far.
    pub(crate) fn counts(&self) -> (usize, u64, u64) {
        let i = self.lock();
        (i.conns.len(), i.evicted, i.refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_client_loses_its_longest_idle_connection() {
        let t = ConnTable::new(10, 2);
        let a = t.admit(ip("192.0.2.1")).unwrap();
        tokio::time::advance(Duration::from_millis(5)).await;
        let b = t.admit(ip("192.0.2.1")).unwrap();
        let _other = t.admit(ip("192.0.2.2")).unwrap();
        // Third from the same client: `a` (idle longest) goes.
        let c = t.admit(ip("192.0.2.1")).unwrap();
        assert!(a.evicted.is_cancelled());
        assert!(!b.evicted.is_cancelled());
        assert_eq!(t.counts(), (3, 1, 0));
        // Both remaining ones busy: refused, nothing closed.
        let _gb = b.state.begin();
        let _gc = c.state.begin();
        assert!(t.admit(ip("192.0.2.1")).is_none());
        assert!(!b.evicted.is_cancelled() && !c.evicted.is_cancelled());
        assert_eq!(t.counts(), (3, 1, 1));
        // Dropping the evicted guard later does not free anyone else's place.
        drop(a);
        assert_eq!(t.counts().0, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_closes_the_longest_idle_connection_of_anyone() {
        let t = ConnTable::new(3, 3);
        let a = t.admit(ip("2001:db8::1")).unwrap();
        let b = t.admit(ip("2001:db8::2")).unwrap(); // same /64 as a
        tokio::time::advance(Duration::from_millis(5)).await;
        let _busy = a.state.begin();
        let c = t.admit(ip("192.0.2.9")).unwrap();
        let d = t.admit(ip("192.0.2.10")).unwrap();
        // `a` is busy, so `b` was idle longest.
        assert!(b.evicted.is_cancelled());
        assert!(!a.evicted.is_cancelled() && !c.evicted.is_cancelled());
        assert!(!d.evicted.is_cancelled());
        assert_eq!(
            client_of(ip("2001:db8::1")),
            client_of(ip("2001:db8::ffff"))
        );
        assert_eq!(client_of(ip("::ffff:192.0.2.9")), ip("192.0.2.9"));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_counts_from_the_end_of_the_last_request() {
        let t = ConnTable::new(8, 8);
        let a = t.admit(ip("192.0.2.1")).unwrap();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(a.state.idle_for(), Some(Duration::from_secs(3)));
        let g = a.state.begin();
        assert_eq!(a.state.idle_for(), None);
        tokio::time::advance(Duration::from_secs(3)).await;
        drop(g);
        assert_eq!(a.state.idle_for(), Some(Duration::ZERO));
        assert_eq!(t.idle_timeout(), IDLE_TIMEOUT);
        let _more: Vec<_> = (0..5).map(|_| t.admit(ip("192.0.2.2")).unwrap()).collect();
        assert_eq!(t.idle_timeout(), IDLE_TIMEOUT_UNDER_PRESSURE);
    }
}
