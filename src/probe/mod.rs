//! Health's runtime: the prober, one scheduler for every probe of every
//! endpoint, the probes themselves ([`check`]) and the webhooks ([`notify`]).
//! What a verdict is (table, hysteresis, monitor specs) lives in
//! [`crate::health`], which knows nothing of sockets or tasks.
//!
//! Each probed endpoint fires once per interval at a fixed offset derived
//! from a hash of its identity, so 10,000 endpoints at 10 s spread evenly
//! instead of bursting. Probes run as tokio tasks under a semaphore (bounded
//! concurrency), each with a hard deadline; an endpoint never has two probes
//! in flight, so a slow endpoint costs one slot until its timeout and skips
//! rounds rather than piling up. When every slot is busy, due endpoints wait
//! in a FIFO line (an index each, no parked task), so none starves, and the
//! wait is counted (`steerdns_probes_skipped_total{reason="busy"}`). Results go through hysteresis
//! ([`crate::health::state`]) and verdict changes are written to the current
//! snapshot's [`HealthTable`](crate::health::HealthTable) — the hot path only ever
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

pub mod check;
pub mod notify;

use check::Target;
use notify::{Event, Notifier};

use crate::health::state::{Hysteresis, Verdict};
use crate::select::Inputs;
use crate::serving::Shared;
use crate::snapshot::Snapshot;

/// What is known about one probed endpoint, for the API and `explain`.
#[derive(Debug, Clone, Default)]
pub struct EndpointHealth {
    /// Counters and verdict.
    pub hysteresis: Hysteresis,
    /// Why the last probe failed or what it saw (`status 200`, `timeout after 2s`).
    pub reason: Option<String>,
    /// Whether the last probe succeeded.
    pub(crate) last_ok: Option<bool>,
    /// When the last probe finished (unix seconds).
    pub(crate) last_probe_at: Option<u64>,
    /// When the verdict last changed (unix seconds).
    pub(crate) last_change_at: Option<u64>,
    /// Probe results seen for this endpoint (across reloads).
    pub(crate) probes: u64,
    /// Smoothed round-trip time of successful probes (EWMA, ms).
    pub(crate) rtt_ms: Option<f64>,
    /// When the last probe finished, on the monotonic clock.
    pub(crate) last_probe: Option<Instant>,
}

/// Weight of the newest sample in [`EndpointHealth::rtt_ms`].
pub(crate) const RTT_EWMA_ALPHA: f64 = 0.3;

impl EndpointHealth {
    /// Fold one probe into the RTT average (failed probes carry no RTT).
    pub(crate) fn observe_rtt(&mut self, ok: bool, took: Duration) {
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
pub(crate) trait Resolver: Send + Sync {
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
    pub(crate) fn set_resolver(&self, r: Arc<dyn Resolver>) {
        let _ = self.resolver.set(r);
    }

    /// Run `f` over every known endpoint's state, under one lock.
    pub(crate) fn with_all<T>(&self, f: impl FnOnce(&HashMap<String, EndpointHealth>) -> T) -> T {
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
    pub(crate) fn seed(&self, snap: &Snapshot) {
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
pub(crate) struct ProberOptions {
    /// Probes in flight at once.
    pub(crate) max_concurrency: usize,
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

/// The schedule of one probed endpoint. A slot outlives reloads: when the
/// endpoint's probe key is unchanged, the new snapshot's target takes over
/// the slot with its due time, its probe in flight and its place in line.
struct Slot {
    /// Stable across reloads; results and the waiting line name slots by it.
    id: u64,
    /// Index into the current snapshot's probes.
    target: usize,
    due: Instant,
    in_flight: bool,
    /// Waiting for a free probe slot.
    queued: bool,
}

/// Every slot of the current snapshot and where to find each by id.
struct Schedule {
    /// When the prober started: new endpoints fire at `epoch + offset + k *
    /// interval`, a point fixed in time, so (re)adding an endpoint during a
    /// reload storm does not push its first probe back at every reload.
    epoch: Instant,
    slots: Vec<Slot>,
    by_id: HashMap<u64, usize>,
    next_id: u64,
}

impl Schedule {
    fn new(snap: &Snapshot, status: &HealthStatus) -> Self {
        let mut s = Schedule {
            epoch: Instant::now(),
            slots: Vec::new(),
            by_id: HashMap::new(),
            next_id: 0,
        };
        s.reload(None, snap, status);
        s
    }

    /// Take over the targets of `snap`. Endpoints whose probe key is in
    /// `old` (the previous snapshot) keep their slot (due time, probe in
    /// flight, place in line); new ones get a slot at their next offset.
    fn reload(&mut self, old: Option<&Snapshot>, snap: &Snapshot, status: &HealthStatus) {
        let now = Instant::now();
        let keys: HashMap<&str, ()> = snap.probes.iter().map(|t| (t.key.as_str(), ())).collect();
        status.retain(&keys);
        // Old slots by key; a key could (in theory) repeat, so keep a list
        // and hand them out in order.
        let mut old_slots: HashMap<&str, std::collections::VecDeque<Slot>> = HashMap::new();
        if let Some(old) = old {
            for slot in std::mem::take(&mut self.slots) {
                if let Some(t) = old.probes.get(slot.target) {
                    old_slots.entry(t.key.as_str()).or_default().push_back(slot);
                }
            }
        }
        let mut slots = Vec::with_capacity(snap.probes.len());
        for (i, t) in snap.probes.iter().enumerate() {
            if let Some(mut slot) = old_slots
                .get_mut(t.key.as_str())
                .and_then(|q| q.pop_front())
            {
                slot.target = i;
                slots.push(slot);
                continue;
            }
            let interval = snap.monitors[t.monitor as usize].interval;
            let id = self.next_id;
            self.next_id += 1;
            slots.push(Slot {
                id,
                target: i,
                due: next_phase(self.epoch, offset_for(&t.key, interval), interval, now),
                in_flight: false,
                queued: false,
            });
        }
        self.slots = slots;
        self.by_id = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
    }

    fn heap(&self) -> BinaryHeap<Reverse<(Instant, usize)>> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| Reverse((s.due, i)))
            .collect()
    }

    fn index(&self, id: u64) -> Option<usize> {
        self.by_id.get(&id).copied()
    }
}

/// The first `epoch + offset + k * interval` (k ≥ 0) not before `now`.
fn next_phase(epoch: Instant, offset: Duration, interval: Duration, now: Instant) -> Instant {
    let first = epoch + offset;
    if now <= first {
        return first;
    }
    let step = interval.as_nanos().max(1);
    let behind = (now - first).as_nanos();
    let k = behind.div_ceil(step);
    let ahead = u64::try_from(k * step).unwrap_or(u64::MAX);
    first + Duration::from_nanos(ahead)
}

struct ProbeResult {
    /// The slot's stable id.
    slot: u64,
    ok: bool,
    reason: String,
    /// Error kind (a bounded metrics label) when the probe failed.
    kind: Option<&'static str>,
    duration: Duration,
}

/// Run the prober until `shutdown`. `generations` ticks whenever `shared`
/// gets a new snapshot (reload); the prober then re-reads its targets.
/// An endpoint whose probe key did not change keeps its state, its due
/// time and its probe in flight (whose result then counts), so reloads,
/// however frequent, never delay or drop a probe; new endpoints fire at
/// their fixed offset.
pub(crate) async fn run(
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
    let mut sched = Schedule::new(&snap, &status);
    let mut heap = sched.heap();
    let mut busy_skips = 0u64;
    // Slot ids waiting for a probe slot, oldest first.
    let mut waiting: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
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
                let new = shared.current.load_full();
                crate::metrics::sync_health(&shared.metrics, &new);
                status.seed(&new);
                // Unchanged endpoints keep their schedule and probes in
                // flight, so a reload storm does not starve them.
                sched.reload(Some(&snap), &new, &status);
                snap = new;
                waiting.retain(|id| sched.index(*id).is_some());
                heap = sched.heap();
                info!(generation = snap.generation, probes = sched.slots.len(), "prober: targets reloaded");
            }
            Some(res) = rx.recv() => {
                // A result of an endpoint that is gone is dropped; one whose
                // slot carried over a reload counts for the current target.
                if let Some(i) = sched.index(res.slot) {
                    let slot = &mut sched.slots[i];
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
                    let slot = &mut sched.slots[i];
                    let interval = snap.monitors[snap.probes[slot.target].monitor as usize].interval;
                    slot.due = due + interval;
                    heap.push(Reverse((slot.due, i)));
                    if slot.in_flight || slot.queued {
                        // The last probe still runs or waits: skip a round.
                        shared.metrics.probe_skipped("in_flight");
                        continue;
                    }
                    match permits.clone().try_acquire_owned() {
                        Ok(permit) => start_probe(&snap, slot, permit, &tx),
                        Err(_) => {
                            // Every probe slot is busy: wait in line (FIFO,
                            // so no endpoint starves), counted and logged.
                            shared.metrics.probe_skipped("busy");
                            busy_skips += 1;
                            slot.queued = true;
                            waiting.push_back(slot.id);
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
            let Some(id) = waiting.pop_front() else { break };
            let Some(i) = sched.index(id) else { continue };
            let slot = &mut sched.slots[i];
            slot.queued = false;
            start_probe(&snap, slot, permit, &tx);
        }
    }
}

/// Spawn one probe for `slot`, holding `permit` until it finishes.
fn start_probe(
    snap: &Snapshot,
    slot: &mut Slot,
    permit: tokio::sync::OwnedSemaphorePermit,
    tx: &mpsc::Sender<ProbeResult>,
) {
    slot.in_flight = true;
    let id = slot.id;
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
                slot: id,
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
    h.probes += 1;
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
    use crate::config::{self, Source};
    use crate::metrics::Metrics;

    #[test]
    fn next_phase_is_fixed_in_time() {
        let epoch = Instant::now();
        let (off, iv) = (Duration::from_secs(3), Duration::from_secs(10));
        assert_eq!(next_phase(epoch, off, iv, epoch), epoch + off);
        // However often it is asked, the answer is the same point.
        for s in [4u64, 5, 9, 13] {
            let now = epoch + Duration::from_secs(s);
            assert_eq!(
                next_phase(epoch, off, iv, now),
                epoch + Duration::from_secs(13)
            );
        }
        let now = epoch + Duration::from_secs(14);
        assert_eq!(
            next_phase(epoch, off, iv, now),
            epoch + Duration::from_secs(23)
        );
    }

    /// Ports that refuse connections: sockets bound but never listening.
    /// They are held for the whole test, so no other test running in
    /// parallel can bind the port and turn a "dead" endpoint into a live one
    /// (a bound, non-listening port answers a SYN with a reset).
    fn refused_ports(n: usize) -> (Vec<socket2::Socket>, Vec<u16>) {
        use socket2::{Domain, Socket, Type};
        let held: Vec<Socket> = (0..n)
            .map(|_| {
                let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
                let addr: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
                s.bind(&addr.into()).expect("bind");
                s
            })
            .collect();
        let ports = held
            .iter()
            .map(|s| {
                s.local_addr()
                    .expect("addr")
                    .as_socket()
                    .expect("inet")
                    .port()
            })
            .collect();
        (held, ports)
    }

    fn storm_config(dead: &[u16], slow: &[u16], round: usize) -> String {
        let eps = |base: u8, ports: &[u16]| {
            ports
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    format!(
                        "{{ address = \"192.0.2.{}\", probe_address = \"127.0.0.1\", probe_port = {p} }}",
                        usize::from(base) + i
                    )
                })
                .collect::<Vec<_>>()
                .join(",\n  ")
        };
        // Every reload changes the zone; odd ones also add a pool whose
        // name sorts between the others, so target indices shift.
        let extra = if round % 2 == 1 {
            format!(
                "[pools.extra]\nmonitor = \"dead\"\nendpoints = [{}]\n",
                eps(250, &dead[..1])
            )
        } else {
            String::new()
        };
        format!(
            r#"
[server]
node_name = "t"
dns_listen = ["127.0.0.1:0"]

[zones."lb.example.com"]
ns = ["ns1"]
records = [
  {{ name = "ns1", type = "A", data = "192.0.2.53" }},
  {{ name = "r", type = "A", ttl = "{ttl}s", data = "192.0.2.1" }},
]

[monitors.dead]
type = "tcp"
interval = "10s"
timeout = "1s"

[monitors.slow]
type = "http"
interval = "10s"
timeout = "3s"

[pools.dead]
monitor = "dead"
endpoints = [
  {dead_eps}
]

[pools.slow]
monitor = "slow"
endpoints = [
  {slow_eps}
]
{extra}
[names."a.lb.example.com"]
policy = "failover"
pools = ["dead", "slow"]
"#,
            ttl = 60 + round,
            dead_eps = eps(1, dead),
            slow_eps = eps(100, slow),
        )
    }

    fn compile(text: String, generation: u64) -> Snapshot {
        let source = Source {
            path: "storm.toml".into(),
            text,
        };
        let file = config::parse(&source).expect("parse");
        crate::snapshot::build(&source, &file, generation).expect("compile")
    }

    /// 50 reloads 2 s apart (paused clock) against 40 dead endpoints at a
    /// 10 s interval: 30 refuse connections (the result comes at once) and
    /// 10 accept but never answer HTTP (every probe times out after 3 s, so
    /// it is still in flight at the next reload). Every endpoint must be
    /// probed about every 10 s all along, and none left unknown.
    #[tokio::test(start_paused = true)]
    async fn a_reload_storm_neither_reschedules_nor_drops_probes() {
        let (_held, dead) = refused_ports(30);
        // Listening, never accepting: connect succeeds, no reply ever.
        let silent: Vec<_> = (0..10)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let slow: Vec<u16> = silent
            .iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect();
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let shared = Shared::new(compile(storm_config(&dead, &slow, 0), 1), metrics);
        let status = Arc::new(HealthStatus::default());
        let (gen_tx, gen_rx) = watch::channel(1u64);
        let shutdown = CancellationToken::new();
        let prober = tokio::spawn(run(
            shared.clone(),
            status.clone(),
            None,
            gen_rx,
            ProberOptions::default(),
            shutdown.clone(),
        ));
        let reloads = 50;
        for round in 1..=reloads {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let generation = round as u64 + 1;
            let snap = compile(storm_config(&dead, &slow, round), generation);
            // What `Control::reload` does.
            status.seed(&snap);
            shared.publish(snap);
            gen_tx.send(generation).expect("prober alive");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        shutdown.cancel();
        prober.await.expect("prober");

        // 102 s of virtual time at a 10 s interval: 10 rounds for each
        // endpoint (9 at least, whatever its offset); before this was
        // fixed, most endpoints were never probed at all.
        let snap = shared.current.load();
        let mut unknown = Vec::new();
        for t in snap.probes.iter().filter(|t| !t.key.starts_with("extra|")) {
            let h = status.get(&t.key).unwrap_or_default();
            if h.hysteresis.verdict == Verdict::Unknown {
                unknown.push(t.key.clone());
            }
            assert!(
                (9..=11).contains(&h.probes),
                "{}: {} probes in 102 s at a 10 s interval ({:?})",
                t.key,
                h.probes,
                h.reason
            );
            assert!(!snap.health.is_up(t.endpoint), "{} answered as up", t.key);
        }
        assert!(unknown.is_empty(), "left unknown: {unknown:?}");
        assert_eq!(snap.probes.len(), 40);
        let timeouts = snap
            .probes
            .iter()
            .filter_map(|t| status.get(&t.key)?.reason)
            .filter(|r| r.contains("timeout"))
            .count();
        assert!(
            timeouts >= 10,
            "the silent backends must time out: {timeouts}"
        );
        drop(silent);
    }

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
