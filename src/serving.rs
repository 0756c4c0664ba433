//! The serving state: the published snapshot with its metric slots (one
//! `ArcSwap`), and the [`Handler`] that transports call: it loads the
//! current snapshot once per query, runs the answer engine and counts the
//! outcome.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tracing::info;

use crate::dns::transport::{Handler, Transport};
use crate::engine::answer::{self, AnswerInfo, Client, CookieState, Outcome};
use crate::engine::guard::{self, GuardMetrics, RrlVerdict};
use crate::metrics::{DropReason, GeoResult, Metrics, SnapshotSlots};
use crate::select::Rng;
use crate::snapshot::Snapshot;

/// A snapshot with its metric label slots: published together in one swap,
/// so counters never mix one config's zones with another's.
pub struct Served {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Metric slots of its zones and balanced names.
    pub slots: SnapshotSlots,
}

impl Deref for Served {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.snapshot
    }
}

/// The current snapshot, swapped atomically on reload, and the metrics.
pub struct Shared {
    /// What every query reads.
    pub current: ArcSwap<Served>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Response rate limiting buckets (kept across reloads).
    rrl: std::sync::OnceLock<crate::rrl::Table>,
    /// Counters of RRL and cookies.
    guard: GuardMetrics,
    /// Zero of the monotonic milliseconds RRL counts in.
    epoch: Instant,
}

impl Shared {
    /// Start serving `snap`.
    pub fn new(snap: Snapshot, metrics: Arc<Metrics>) -> Arc<Self> {
        let slots = SnapshotSlots::new(&metrics, &snap);
        Arc::new(Shared {
            current: ArcSwap::from_pointee(Served {
                snapshot: snap,
                slots,
            }),
            guard: GuardMetrics::new(&metrics),
            metrics,
            rrl: std::sync::OnceLock::new(),
            epoch: Instant::now(),
        })
    }

    /// Publish a new snapshot.
    pub fn publish(&self, snap: Snapshot) {
        let slots = SnapshotSlots::new(&self.metrics, &snap);
        self.current.store(Arc::new(Served {
            snapshot: snap,
            slots,
        }));
    }
}

thread_local! {
    static RNG: RefCell<Option<Rng>> = const { RefCell::new(None) };
}

fn random_seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x5EED);
    h.finish()
}

impl Handler for Shared {
    fn handle(
        &self,
        query: &[u8],
        client: SocketAddr,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> bool {
        // Only a sample of queries is timed (see `DURATION_SAMPLE_EVERY`).
        let start = self.metrics.queries().sample_duration().then(Instant::now);
        let served = self.current.load();
        let mut info = AnswerInfo::default();
        let outcome = RNG.with(|cell| {
            let mut slot = cell.borrow_mut();
            let rng = slot.get_or_insert_with(|| {
                Rng::seeded(served.settings.random_seed.unwrap_or_else(random_seed))
            });
            let c = Client {
                addr: client,
                transport,
            };
            answer::answer_with_info(&served, query, c, rng, out, &mut info)
        });
        let m = &self.metrics;
        match outcome {
            Outcome::Dropped => {
                m.record_drop(DropReason::Malformed);
                false
            }
            Outcome::Answered { rcode } => {
                self.guard.count_cookie(info.cookie);
                // RRL applies to UDP only (TCP sources cannot be spoofed),
                // and not to a client that proved its address with a valid
                // server cookie.
                if let (Transport::Udp, Some(limits)) = (transport, &served.settings.rrl)
                    && info.cookie != Some(CookieState::Valid)
                {
                    let table = guard::table(&self.rrl, limits);
                    // RRL needs the time: the sampled start when there is
                    // one (microseconds earlier, the same millisecond).
                    let now = start.unwrap_or_else(Instant::now);
                    let now_ms = now.duration_since(self.epoch).as_millis() as u64;
                    let c = Client {
                        addr: client,
                        transport,
                    };
                    let v = guard::rate_limit(
                        table,
                        limits,
                        (&served, query, c),
                        rcode,
                        now_ms,
                        out,
                        &self.guard,
                    );
                    if v == RrlVerdict::Drop {
                        m.record_drop(DropReason::RateLimited);
                        return false;
                    }
                }
                let q = m.queries();
                q.count_query(served.slots.zone(info.zone), info.qtype, rcode, transport);
                if let Some(start) = start {
                    q.observe_duration(transport, start.elapsed());
                }
                if let Some((b, pool, mode)) = info.balancer {
                    served.slots.record_answer(m, b, pool, mode);
                }
                if let Some(src) = info.geo {
                    m.record_geoip(GeoResult::from(src));
                }
                let rate = served.settings.query_log_sample;
                if rate > 0.0
                    && RNG.with(|c| {
                        c.borrow_mut()
                            .as_mut()
                            .map_or(0.0, |r| (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
                    }) < rate
                {
                    let name = crate::engine::wire::parse(query)
                        .map(|q| crate::zone::display_name(q.name_lc()))
                        .unwrap_or_default();
                    info!(client = %client, transport = ?transport, name, qtype = info.qtype, rcode, "query");
                }
                true
            }
        }
    }
}
