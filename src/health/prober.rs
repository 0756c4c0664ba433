//! The prober: one scheduler for every probe of every endpoint.
//!
//! Each probed endpoint fires once per interval at a fixed offset derived
//! from a hash of its identity, so 10,000 endpoints at 10 s spread evenly
//! instead of bursting. Probes run as tokio tasks under a semaphore (bounded
//! concurrency), each with a hard deadline; an endpoint never has two probes
//! in flight, so a slow endpoint costs one slot until its timeout and skips
//! rounds rather than piling up. When every slot is busy, due endpoints wait
//! in a FIFO line (an index each, no parked task), so none starves, and the
//! wait is counted (`steerdns_probes_skipped_total{reason="busy"}`). Results go through hysteresis
//! ([`super::state`]) and verdict changes are written to the current
//! snapshot's [`HealthTable`](super::HealthTable) — the hot path only ever
//! reads those atomics.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::check::{self, Target};
use super::notify::{Event, Notifier};
use super::state::{Hysteresis, Verdict};
use crate::dns::server::Shared;
use crate::select::Inputs;
use crate::snapshot::Snapshot;

/// What is known about one probed endpoint, for the API and `explain`.
#[derive(Debug, Clone, Default)]
pub struct EndpointHealth {
    /// Counters and verdict.
    pub hysteresis: Hysteresis,
    /// Why the last probe failed or what it saw (`status 200`, `timeout after 2s`).
    pub reason: Option<String>,
    /// Whether the last probe succeeded.
    pub last_ok: Option<bool>,
    /// When the last probe finished (unix seconds).
    pub last_probe_at: Option<u64>,
    /// When the verdict last changed (unix seconds).
    pub last_change_at: Option<u64>,
    /// Smoothed round-trip time of successful probes (EWMA, ms).
    pub rtt_ms: Option<f64>,
    /// When the last probe finished, on the monotonic clock.
    pub last_probe: Option<Instant>,
}

/// Weight of the newest sample in [`EndpointHealth::rtt_ms`].
pub const RTT_EWMA_ALPHA: f64 = 0.3;

impl EndpointHealth {
    /// Fold one probe into the RTT average (failed probes carry no RTT).
    pub fn observe_rtt(&mut self, ok: bool, took: Duration) {
        if ok {
            let ms = took.as_secs_f64() * 1000.0;
            self.rtt_ms = Some(match self.rtt_ms {
                Some(old) => old + RTT_EWMA_ALPHA * (ms - old),
                None => ms,
            });
        }
    }
}

/// Decides what the hot path sees for an endpoint from this node's own
/// verdict: the cluster (peers' verdicts, quorum, drain and forced states).
/// Without one, the own verdict is written as is.
pub trait Resolver: Send + Sync {
    /// `(up, drained)` for `target` of `snap` when this node says `own`.
    fn resolve(
        &self,
        snap: &Snapshot,
        target: &crate::health::ProbeTarget,
        own: Verdict,
    ) -> (bool, bool);
    /// Write every endpoint of a freshly compiled `snap` (before it is
    /// published), after its own verdicts were seeded.
    fn seed(&self, snap: &Snapshot);
}

/// Shared view of the prober's state.
#[derive(Default)]
pub struct HealthStatus {
    by_key: Mutex<HashMap<String, EndpointHealth>>,
    resolver: std::sync::OnceLock<Arc<dyn Resolver>>,
}

impl HealthStatus {
    /// The state of the endpoint with this probe key.
    pub fn get(&self, key: &str) -> Option<EndpointHealth> {
        self.lock().get(key).cloned()
    }

    /// Route health writes through `r` from now on (set once).
    pub fn set_resolver(&self, r: Arc<dyn Resolver>) {
        let _ = self.resolver.set(r);
    }

    /// Run `f` over every known endpoint's state, under one lock.
    pub fn with_all<T>(&self, f: impl FnOnce(&HashMap<String, EndpointHealth>) -> T) -> T {
        f(&self.lock())
    }

    fn write(&self, snap: &Snapshot, t: &crate::health::ProbeTarget, v: Verdict) {
        match self.resolver.get() {
            Some(r) => {
                let (up, drained) = r.resolve(snap, t, v);
                snap.health.set_state(t.endpoint, up, drained);
            }
            None => snap.health.set(t.endpoint, v.answerable()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, EndpointHealth>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single inserts), so a poisoned lock is still usable.
        self.by_key.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write every known verdict into `snap`'s health table, so a freshly
    /// compiled snapshot starts with the health of the old one (endpoints
    /// whose probe key is unchanged keep their state across a reload).
    pub fn seed(&self, snap: &Snapshot) {
        let map = self.lock();
        for t in &snap.probes {
            if let Some(h) = map.get(&t.key) {
                snap.health
                    .set(t.endpoint, h.hysteresis.verdict.answerable());
            }
        }
        drop(map);
        if let Some(r) = self.resolver.get() {
            r.seed(snap);
        }
    }

    /// Forget endpoints that are no longer probed.
    fn retain(&self, keys: &HashMap<&str, ()>) {
        self.lock().retain(|k, _| keys.contains_key(k.as_str()));
    }
}

/// Prober settings.
#[derive(Debug, Clone)]
pub struct ProberOptions {
    /// Probes in flight at once.
    pub max_concurrency: usize,
}

impl Default for ProberOptions {
    fn default() -> Self {
        ProberOptions {
            max_concurrency: 512,
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn offset_for(key: &str, interval: Duration) -> Duration {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

/// Shortest time between two dispatch rounds of the scheduler.
const DISPATCH_TICK: Duration = Duration::from_millis(20);

struct Slot {
    target: usize,
    due: Instant,
    in_flight: bool,
    /// Waiting for a free probe slot.
    queued: bool,
}

struct ProbeResult {
    generation: u64,
    slot: usize,
    ok: bool,
    reason: String,
    /// Error kind (a bounded metrics label) when the probe failed.
    kind: Option<&'static str>,
    duration: Duration,
}

/// Run the prober until `shutdown`. `generations` ticks whenever `shared`
/// gets a new snapshot (reload); the prober then re-reads its targets,
/// keeping the state of endpoints whose probe key did not change.
pub async fn run(
    shared: Arc<Shared>,
    status: Arc<HealthStatus>,
    notifier: Option<Notifier>,
    mut generations: watch::Receiver<u64>,
    opts: ProberOptions,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(opts.max_concurrency.max(1)));
    let (tx, mut rx) = mpsc::channel::<ProbeResult>(1024);
    let mut snap = shared.current.load_full();
    crate::metrics::sync_health(&shared.metrics, &snap);
    let mut generation = snap.generation;
    let mut slots = schedule(&snap, &status);
    let mut heap: BinaryHeap<Reverse<(Instant, usize)>> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| Reverse((s.due, i)))
        .collect();
    let mut busy_skips = 0u64;
    let mut waiting: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    let mut warned_at = Instant::now();
    let mut last_dispatch = Instant::now();
    loop {
        if busy_skips > 0 && warned_at.elapsed() >= Duration::from_secs(60) {
            warn!(
                skipped = busy_skips,
                max_concurrency = opts.max_concurrency,
                "prober: every probe slot was busy, probes waited in line and intervals stretched (slow or blackholed endpoints? raise server.max_concurrent_probes); see steerdns_probes_skipped_total"
            );
            busy_skips = 0;
            warned_at = Instant::now();
        }
        // Dispatch at most once per tick: probes then start (and their I/O
        // completes) in small batches, so the runtime wakes the CPU far less
        // often than once per probe. 20 ms is noise against any interval.
        let next_due = heap
            .peek()
            .map(|Reverse((t, _))| (*t).max(last_dispatch + DISPATCH_TICK));
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = generations.changed() => {
                if changed.is_err() {
                    break;
                }
                snap = shared.current.load_full();
                generation = snap.generation;
                crate::metrics::sync_health(&shared.metrics, &snap);
                status.seed(&snap);
                slots = schedule(&snap, &status);
                waiting.clear();
                heap = slots.iter().enumerate().map(|(i, s)| Reverse((s.due, i))).collect();
                info!(generation, probes = slots.len(), "prober: targets reloaded");
            }
            Some(res) = rx.recv() => {
                if res.generation == generation
                    && let Some(slot) = slots.get_mut(res.slot)
                {
                    slot.in_flight = false;
                    let t = slot.target;
                    apply(&shared, &snap, &status, notifier.as_ref(), t, res);
                }
            }
            () = sleep_until_opt(next_due) => {
                let now = Instant::now();
                last_dispatch = now;
                while let Some(Reverse((due, i))) = heap.peek().copied() {
                    if due > now {
                        break;
                    }
                    heap.pop();
                    let slot = &mut slots[i];
                    let interval = snap.monitors[snap.probes[slot.target].monitor as usize].interval;
                    slot.due = due + interval;
                    heap.push(Reverse((slot.due, i)));
                    if slot.in_flight || slot.queued {
                        // The last probe still runs or waits: skip a round.
                        shared.metrics.probe_skipped("in_flight");
                        continue;
                    }
                    match permits.clone().try_acquire_owned() {
                        Ok(permit) => start_probe(&snap, &mut slots[i], i, permit, generation, &tx),
                        Err(_) => {
                            // Every probe slot is busy: wait in line (FIFO,
                            // so no endpoint starves), counted and logged.
                            shared.metrics.probe_skipped("busy");
                            busy_skips += 1;
                            slots[i].queued = true;
                            waiting.push_back(i);
                        }
                    }
                }
            }
        }
        // Results free probe slots: start those waiting, oldest first.
        while !waiting.is_empty() {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            let Some(i) = waiting.pop_front() else { break };
            slots[i].queued = false;
            start_probe(&snap, &mut slots[i], i, permit, generation, &tx);
        }
    }
}

/// Spawn one probe for `slot`, holding `permit` until it finishes.
fn start_probe(
    snap: &Snapshot,
    slot: &mut Slot,
    i: usize,
    permit: tokio::sync::OwnedSemaphorePermit,
    generation: u64,
    tx: &mpsc::Sender<ProbeResult>,
) {
    slot.in_flight = true;
    let target = &snap.probes[slot.target];
    let monitor = &snap.monitors[target.monitor as usize];
    let spec = monitor.spec.clone();
    let addr = target.addr;
    let host = target.host.clone();
    let tx = tx.clone();
    let deadline = monitor.spec.timeout + Duration::from_secs(1);
    tokio::spawn(async move {
        let t = Target {
            addr,
            host: host.as_deref(),
        };
        // The probe has its own deadline; this outer one only guards against
        // a bug there holding a slot forever.
        let started = Instant::now();
        let (ok, reason, kind) = match tokio::time::timeout(deadline, check::probe(&spec, t)).await
        {
            Ok(Ok(done)) => (true, done.detail, None),
            Ok(Err(e)) => (false, e.to_string(), Some(e.kind.as_str())),
            Err(_) => (
                false,
                format!("timeout after {}s", deadline.as_secs()),
                Some("timeout"),
            ),
        };
        let duration = started.elapsed();
        // Free the probe slot before reporting, so the scheduler can hand
        // it to a waiting endpoint as soon as it sees this result.
        drop(permit);
        let _ = tx
            .send(ProbeResult {
                generation,
                slot: i,
                ok,
                reason,
                kind,
                duration,
            })
            .await;
    });
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn schedule(snap: &Snapshot, status: &HealthStatus) -> Vec<Slot> {
    let now = Instant::now();
    let keys: HashMap<&str, ()> = snap.probes.iter().map(|t| (t.key.as_str(), ())).collect();
    status.retain(&keys);
    snap.probes
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let interval = snap.monitors[t.monitor as usize].interval;
            Slot {
                target: i,
                due: now + offset_for(&t.key, interval),
                in_flight: false,
                queued: false,
            }
        })
        .collect()
}

fn apply(
    shared: &Shared,
    snap: &Snapshot,
    status: &HealthStatus,
    notifier: Option<&Notifier>,
    t: usize,
    res: ProbeResult,
) {
    let ProbeResult {
        ok,
        reason,
        kind,
        duration,
        ..
    } = res;
    let target = &snap.probes[t];
    let monitor = &snap.monitors[target.monitor as usize];
    let pool = &snap.pools[target.pool as usize];
    let endpoint = pool
        .endpoints
        .iter()
        .find(|e| e.id == target.endpoint)
        .map_or("?", |e| e.label.as_str());
    let metrics = &shared.metrics;
    metrics.observe_probe(monitor.kind.label(), duration);
    if let Some(k) = kind {
        metrics.probe_failed(&pool.name, endpoint, k);
    }
    let mut map = status.lock();
    if !map.contains_key(&target.key) {
        map.insert(target.key.clone(), EndpointHealth::default());
    }
    let Some(h) = map.get_mut(&target.key) else {
        return;
    };
    let old = h.hysteresis.verdict;
    h.last_ok = Some(ok);
    h.last_probe_at = Some(unix_now());
    h.reason = Some(reason.clone());
    h.observe_rtt(ok, duration);
    h.last_probe = Some(Instant::now());
    let Some(new) = h.hysteresis.observe(ok, monitor.rise, monitor.fall) else {
        return;
    };
    h.last_change_at = h.last_probe_at;
    drop(map);
    let inputs = Inputs {
        pools: &snap.pools,
        health: &snap.health,
    };
    let pool_was = inputs.pool_usable(target.pool);
    status.write(snap, target, new);
    let pool_is = inputs.pool_usable(target.pool);
    metrics.set_endpoint_up(
        &pool.name,
        endpoint,
        snap.health.verdict_up(target.endpoint),
    );
    metrics.set_pool_usable(&pool.name, pool_is);
    if new == Verdict::Down {
        warn!(pool = %pool.name, endpoint, old = old.as_str(), new = new.as_str(), reason = %reason, "endpoint health changed");
    } else {
        info!(pool = %pool.name, endpoint, old = old.as_str(), new = new.as_str(), reason = %reason, "endpoint health changed");
    }
    if pool_was != pool_is {
        if pool_is {
            info!(pool = %pool.name, "pool usable again");
        } else {
            warn!(pool = %pool.name, "pool no longer usable");
        }
    }
    if let Some(n) = notifier {
        n.send(Event::endpoint(&pool.name, endpoint, old, new, &reason));
        if pool_was != pool_is {
            n.send(Event::pool(&pool.name, pool_is));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_spread_probes_over_the_interval() {
        let interval = Duration::from_secs(10);
        let mut buckets = [0u32; 100];
        for i in 0..10_000 {
            let key = format!(
                "pool{}|192.0.2.{}|127.0.0.1:{}|web|00",
                i / 100,
                i % 250,
                8000 + i
            );
            let off = offset_for(&key, interval);
            assert!(off < interval);
            buckets[(off.as_millis() / 100) as usize] += 1;
        }
        // 100 per 100 ms on average; no burst above 2x, no gap below half
        let (min, max) = (buckets.iter().min().unwrap(), buckets.iter().max().unwrap());
        assert!(*max <= 200 && *min >= 50, "min {min} max {max}");
    }

    #[test]
    fn offsets_are_stable_per_key() {
        let i = Duration::from_secs(10);
        assert_eq!(offset_for("a|b", i), offset_for("a|b", i));
        assert_ne!(offset_for("a|b", i), offset_for("a|c", i));
    }
}
