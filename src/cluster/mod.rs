//! A fleet that agrees: each node publishes its own probe verdicts, pulls
//! its peers' on a short interval, and writes the combination (quorum,
//! drain, forced states) into the snapshot's health atomics, which the hot
//! path reads as before. No consensus protocol and no shared store: fresh
//! verdicts only, and a node that reaches no peer says so and uses its own.
//!
//! - [`quorum`]: the pure combination (unit and property tests).
//! - [`wire`]: the compact exchange format.
//! - [`admin`]: drain / force states, last writer wins, the state file.
//! - [`peer`]: the HTTP pull.
//! - this module: the runtime ([`Cluster`]) — one task pulls every peer
//!   each `pull_interval`, then recomputes every endpoint and the latency
//!   orders.

pub mod admin;
pub mod ctl;
pub mod metrics;
pub mod peer;
pub mod quorum;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::health::ProbeTarget;
use crate::health::state::Verdict;
use crate::probe::{HealthStatus, Resolver};
use crate::select::{Inputs, Policy, PoolId};
use crate::serving::Shared;
use crate::snapshot::Snapshot;
use admin::AdminStore;
use metrics::ClusterMetrics;
use quorum::{Admin, Basis, Outcome, PeerVote, Vote};
use wire::{AdminEntry, Message, Record};

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The stable key of an endpoint among nodes: `pool/endpoint`.
pub fn endpoint_key(pool: &str, endpoint: &str) -> String {
    format!("{pool}/{endpoint}")
}

/// Per-snapshot tables, built once per generation.
struct Layout {
    generation: u64,
    /// `(key, monitor fingerprint)` of every probe target, in probe order.
    keys: Vec<(String, u64)>,
    hash: u64,
    /// Probe index by endpoint id.
    probe_of: Vec<Option<usize>>,
    /// `pool/endpoint` by endpoint id.
    key_of: Vec<String>,
}

impl Layout {
    fn build(snap: &Snapshot) -> Layout {
        let n = snap.health.len();
        let mut key_of = vec![String::new(); n];
        for p in &snap.pools {
            for e in p.endpoints.iter() {
                if let Some(k) = key_of.get_mut(e.id as usize) {
                    *k = endpoint_key(&p.name, &e.label);
                }
            }
        }
        let mut probe_of = vec![None; n];
        let keys: Vec<(String, u64)> = snap
            .probes
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if let Some(slot) = probe_of.get_mut(t.endpoint as usize) {
                    *slot = Some(i);
                }
                (
                    key_of.get(t.endpoint as usize).cloned().unwrap_or_default(),
                    t.monitor_hash,
                )
            })
            .collect();
        let hash = wire::layout_hash(keys.iter().map(|(k, h)| (k.as_str(), *h)));
        Layout {
            generation: snap.generation,
            keys,
            hash,
            probe_of,
            key_of,
        }
    }
}

/// What is known of one peer.
#[derive(Default)]
struct PeerView {
    last_ok: Option<Instant>,
    last_ok_unix_ms: Option<u64>,
    last_error: Option<String>,
    last_bytes: usize,
    layout: Option<u64>,
    generation: u64,
    /// Record index by endpoint key, with the monitor fingerprint.
    index: HashMap<String, (usize, u64)>,
    records: Vec<Record>,
    reasons: HashMap<u32, String>,
    /// For (our layout, its layout): its record index of each of our
    /// probes ([`NO_RECORD`], [`MISMATCH`]), so a round indexes arrays
    /// instead of hashing keys.
    mapped: Option<(u64, u64, Vec<u32>)>,
}

const NO_RECORD: u32 = u32::MAX;
const MISMATCH: u32 = u32::MAX - 1;

impl PeerView {
    fn map_for(&mut self, layout: &Layout) {
        let theirs = self.layout.unwrap_or(0);
        if matches!(&self.mapped, Some((o, t, _)) if *o == layout.hash && *t == theirs) {
            return;
        }
        let map = layout
            .keys
            .iter()
            .map(|(k, h)| match self.index.get(k) {
                None => NO_RECORD,
                Some(&(_, mh)) if mh != *h => MISMATCH,
                Some(&(i, _)) => i as u32,
            })
            .collect();
        self.mapped = Some((layout.hash, theirs, map));
    }
}

/// The combined state of every endpoint of the serving generation, by
/// endpoint id.
#[derive(Default)]
struct LastOutcomes {
    generation: u64,
    by_id: Vec<Option<Outcome>>,
}

impl LastOutcomes {
    /// The table of `snap`, emptied when the generation changed.
    fn for_snapshot(&mut self, snap: &Snapshot) -> &mut Vec<Option<Outcome>> {
        if self.generation != snap.generation || self.by_id.len() != snap.health.len() {
            self.generation = snap.generation;
            self.by_id = vec![None; snap.health.len()];
        }
        &mut self.by_id
    }
}

/// One peer as a round sees it.
struct PeerCtx<'a> {
    fresh: bool,
    since: Duration,
    map: &'a [u32],
    records: &'a [Record],
}

fn peer_ctx<'a>(
    snap: &Snapshot,
    layout: &Layout,
    peers: &'a mut HashMap<String, PeerView>,
) -> Vec<PeerCtx<'a>> {
    for p in &snap.cluster.peers {
        if let Some(v) = peers.get_mut(&p.name) {
            v.map_for(layout);
        }
    }
    let peers: &'a HashMap<String, PeerView> = peers;
    snap.cluster
        .peers
        .iter()
        .map(|p| match peers.get(&p.name) {
            Some(v) => {
                let since = v.last_ok.map(|t| t.elapsed());
                PeerCtx {
                    fresh: since.is_some_and(|s| s <= snap.cluster.stale_after),
                    since: since.unwrap_or(Duration::MAX),
                    map: v.mapped.as_ref().map_or(&[][..], |(_, _, m)| m.as_slice()),
                    records: &v.records,
                }
            }
            None => PeerCtx {
                fresh: false,
                since: Duration::MAX,
                map: &[],
                records: &[],
            },
        })
        .collect()
}

/// The cluster runtime of one node.
pub struct Cluster {
    shared: Arc<Shared>,
    health: Arc<HealthStatus>,
    metrics: Option<ClusterMetrics>,
    layout: Mutex<Option<Arc<Layout>>>,
    peers: Mutex<HashMap<String, PeerView>>,
    admin: Mutex<AdminStore>,
    /// Combined state by endpoint key, for logs and the status page.
    last: Mutex<LastOutcomes>,
    isolated: std::sync::atomic::AtomicBool,
    /// Pull now (a peer's admin state changed).
    wake: tokio::sync::Notify,
}

/// Why an admin state change was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// No such pool or endpoint.
    #[error("no endpoint {0:?} in pool {1:?}")]
    Unknown(String, String),
    /// Not one of auto, drain, force-up, force-down.
    #[error("unknown state {0:?}: use auto, drain, force-up or force-down")]
    State(String),
    /// The state file could not be written (the state is applied anyway).
    #[error("state applied, but the state file could not be written: {0}")]
    Persist(String),
}

impl Cluster {
    /// The runtime over `shared` and this node's prober state; reads the
    /// state file named by the current config. Becomes `health`'s resolver.
    pub fn new(shared: Arc<Shared>, health: Arc<HealthStatus>) -> Arc<Cluster> {
        let metrics = match ClusterMetrics::register(shared.metrics.registry()) {
            Ok(m) => Some(m),
            Err(e) => {
                warn!("cluster metrics: {e}");
                None
            }
        };
        let admin = match &shared.current.load().cluster.state_file {
            Some(path) => match AdminStore::load(path) {
                Ok(s) => {
                    let n = s.entries().filter(|e| e.state != Admin::Auto).count();
                    if n > 0 {
                        info!(file = %path.display(), states = n, "admin states restored");
                    }
                    s
                }
                Err(e) => {
                    warn!("state file unreadable, starting without admin states: {e}");
                    AdminStore::default()
                }
            },
            None => AdminStore::default(),
        };
        let c = Arc::new(Cluster {
            shared,
            health: health.clone(),
            metrics,
            layout: Mutex::new(None),
            peers: Mutex::new(HashMap::new()),
            admin: Mutex::new(admin),
            last: Mutex::new(LastOutcomes::default()),
            isolated: std::sync::atomic::AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        });
        health.set_resolver(c.clone());
        let snap = c.shared.current.load_full();
        c.recompute(&snap);
        c
    }

    fn layout_for(&self, snap: &Snapshot) -> Arc<Layout> {
        let mut l = lock(&self.layout);
        match &*l {
            Some(x) if x.generation == snap.generation => x.clone(),
            _ => {
                let x = Arc::new(Layout::build(snap));
                *l = Some(x.clone());
                x
            }
        }
    }

    /// This node's verdicts as a wire message; the key table is left out
    /// when the puller already holds `known_layout`.
    pub fn publish(&self, known_layout: Option<u64>) -> Vec<u8> {
        let snap = self.shared.current.load_full();
        let layout = self.layout_for(&snap);
        let now = std::time::Instant::now();
        let mut reasons = Vec::new();
        let records = self.health.with_all(|map| {
            snap.probes
                .iter()
                .enumerate()
                .map(|(i, t)| match map.get(&t.key) {
                    None => Record {
                        state: wire::UNKNOWN,
                        rtt_tenth_ms: 0,
                        age_ms: u32::MAX,
                    },
                    Some(h) => {
                        let state = match h.hysteresis.verdict {
                            Verdict::Unknown => wire::UNKNOWN,
                            Verdict::Up => wire::UP,
                            Verdict::Down => wire::DOWN,
                        };
                        if state == wire::DOWN
                            && let Some(r) = &h.reason
                        {
                            reasons.push((i as u32, r.clone()));
                        }
                        Record {
                            state,
                            rtt_tenth_ms: h
                                .rtt_ms
                                .map_or(0, |ms| (ms * 10.0).round().clamp(1.0, 65535.0) as u16),
                            age_ms: h.last_probe.map_or(u32::MAX, |t| {
                                now.saturating_duration_since(t.into_std())
                                    .as_millis()
                                    .min(u32::MAX as u128 - 1)
                                    as u32
                            }),
                        }
                    }
                })
                .collect()
        });
        let admin = lock(&self.admin).entries().cloned().collect();
        wire::encode(&Message {
            node: snap.cluster.node_name.clone(),
            generation: snap.generation,
            layout: layout.hash,
            now_ms: unix_ms(),
            keys: (known_layout != Some(layout.hash)).then(|| layout.keys.clone()),
            records,
            reasons,
            admin,
        })
    }

    /// Set an endpoint's admin state here; peers take it at their next
    /// pull. Persisted when a state file is configured.
    pub fn set_admin(&self, pool: &str, endpoint: &str, state: &str) -> Result<Value, AdminError> {
        let st = Admin::parse(state).ok_or_else(|| AdminError::State(state.into()))?;
        let snap = self.shared.current.load_full();
        let known = snap.pool_ids.get(pool).is_some_and(|&p| {
            snap.pools[p as usize]
                .endpoints
                .iter()
                .any(|e| e.label == endpoint)
        });
        if !known {
            return Err(AdminError::Unknown(endpoint.into(), pool.into()));
        }
        let key = endpoint_key(pool, endpoint);
        let entry = AdminEntry {
            key: key.clone(),
            state: st,
            // Never older than what we hold, whatever the clocks say.
            at_ms: unix_ms().max(lock(&self.admin).entry(&key).map_or(0, |e| e.at_ms + 1)),
            origin: snap.cluster.node_name.clone(),
        };
        lock(&self.admin).offer(entry.clone());
        info!(pool, endpoint, state = st.as_str(), "admin state set");
        let saved = self.persist(&snap);
        self.recompute(&snap);
        saved?;
        Ok(json!({
            "pool": pool, "endpoint": endpoint, "state": st.as_str(),
            "at_ms": entry.at_ms, "origin": entry.origin,
        }))
    }

    fn persist(&self, snap: &Snapshot) -> Result<(), AdminError> {
        let Some(path) = &snap.cluster.state_file else {
            return Ok(());
        };
        let store = lock(&self.admin).clone();
        store.save(path).map_err(|e| {
            warn!(file = %path.display(), "writing the state file: {e}");
            AdminError::Persist(format!("{}: {e}", path.display()))
        })
    }

    /// Pull every peer once (concurrently, each with its deadline), then
    /// recompute.
    pub async fn pull_all(self: &Arc<Self>) {
        let snap = self.shared.current.load_full();
        let settings = &snap.cluster;
        let mut set = tokio::task::JoinSet::new();
        for p in &settings.peers {
            let known = lock(&self.peers).get(&p.name).and_then(|v| v.layout);
            let (peer, token, timeout) = (p.clone(), settings.token.clone(), settings.pull_timeout);
            set.spawn(async move {
                let r = peer::pull(&peer, token.as_deref(), known, timeout).await;
                (peer.name, r)
            });
        }
        let mut admin_changed = false;
        while let Some(done) = set.join_next().await {
            let Ok((name, result)) = done else { continue };
            admin_changed |= self.take_pull(&name, result);
        }
        if admin_changed {
            let _ = self.persist(&snap);
        }
        self.recompute(&snap);
    }

    /// Record one pull's result; true when it changed admin states.
    fn take_pull(&self, name: &str, result: Result<bytes::Bytes, String>) -> bool {
        let decoded = result.and_then(|b| {
            let n = b.len();
            wire::decode(&b).map(|m| (m, n)).map_err(|e| e.to_string())
        });
        let ok = decoded.is_ok();
        if let Some(m) = &self.metrics {
            m.pulls
                .with_label_values(&[name, if ok { "ok" } else { "error" }])
                .inc();
        }
        let mut peers = lock(&self.peers);
        let view = peers.entry(name.to_string()).or_default();
        match decoded {
            Err(e) => {
                if view.last_error.as_deref() != Some(&e) {
                    warn!(peer = name, "cluster: pulling verdicts failed: {e}");
                }
                view.last_error = Some(e);
                false
            }
            Ok((m, bytes)) => {
                if let Some(keys) = m.keys {
                    view.index = keys
                        .into_iter()
                        .enumerate()
                        .map(|(i, (k, h))| (k, (i, h)))
                        .collect();
                    view.layout = Some(m.layout);
                } else if view.layout != Some(m.layout) || view.index.len() != m.records.len() {
                    // Not the table we hold: ask for it next time.
                    view.layout = None;
                    view.last_error = Some("layout changed; key table requested".into());
                    return false;
                }
                if view.last_error.take().is_some() || view.last_ok.is_none() {
                    info!(
                        peer = name,
                        endpoints = m.records.len(),
                        "cluster: peer verdicts received"
                    );
                }
                view.records = m.records;
                view.reasons = m.reasons.into_iter().collect();
                view.generation = m.generation;
                view.last_ok = Some(Instant::now());
                view.last_ok_unix_ms = Some(unix_ms());
                view.last_bytes = bytes;
                if let Some(mx) = &self.metrics {
                    mx.pull_bytes.with_label_values(&[name]).set(bytes as i64);
                    mx.last_success
                        .with_label_values(&[name])
                        .set((unix_ms() / 1000) as f64);
                }
                drop(peers);
                let mut store = lock(&self.admin);
                let mut changed = false;
                for e in m.admin {
                    let (key, st) = (e.key.clone(), e.state);
                    if store.offer(e) {
                        info!(
                            peer = name,
                            key,
                            state = st.as_str(),
                            "admin state taken from peer"
                        );
                        changed = true;
                    }
                }
                changed
            }
        }
    }

    fn peer_votes(
        snap: &Snapshot,
        ctx: &[PeerCtx<'_>],
        pi: usize,
        t: &ProbeTarget,
        out: &mut Vec<PeerVote>,
    ) {
        out.clear();
        let interval = snap.monitors[t.monitor as usize].interval;
        let max_age = (interval * 3).max(snap.cluster.stale_after);
        for c in ctx {
            let v = if !c.fresh {
                PeerVote::Stale
            } else {
                match c.map.get(pi).copied().unwrap_or(NO_RECORD) {
                    NO_RECORD => PeerVote::Unknown,
                    MISMATCH => PeerVote::Mismatch,
                    i => match c.records.get(i as usize) {
                        Some(r) if r.state == wire::UNKNOWN => PeerVote::Unknown,
                        Some(r)
                            if Duration::from_millis(r.age_ms as u64).saturating_add(c.since)
                                > max_age =>
                        {
                            PeerVote::Stale
                        }
                        Some(r) if r.state == wire::DOWN => PeerVote::Fresh(Vote::Down),
                        Some(_) => PeerVote::Fresh(Vote::Up),
                        None => PeerVote::Unknown,
                    },
                }
            };
            out.push(v);
        }
    }

    fn outcome(
        &self,
        snap: &Snapshot,
        layout: &Layout,
        (ctx, admin): (&[PeerCtx<'_>], &AdminStore),
        id: usize,
        own: Option<Verdict>,
        votes: &mut Vec<PeerVote>,
    ) -> Outcome {
        let key = &layout.key_of[id];
        let adm = admin.get(key);
        match layout.probe_of[id] {
            None => quorum::combine(
                crate::config::cluster::QuorumConfig::Local,
                adm,
                Some(Vote::Up),
                &[],
            ),
            Some(pi) => {
                let t = &snap.probes[pi];
                let q = snap.monitors[t.monitor as usize].quorum;
                Self::peer_votes(snap, ctx, pi, t, votes);
                let own = match own {
                    Some(Verdict::Up) => Some(Vote::Up),
                    Some(Verdict::Down) => Some(Vote::Down),
                    _ => None,
                };
                quorum::combine(q, adm, own, votes)
            }
        }
    }

    /// Write the combined state of every endpoint of `snap` into its health
    /// table, reorder latency policies, and update metrics and logs.
    pub fn recompute(&self, snap: &Snapshot) {
        let layout = self.layout_for(snap);
        let (own, rtts): (Vec<Option<Verdict>>, Vec<Option<f64>>) = self.health.with_all(|map| {
            snap.probes
                .iter()
                .map(|t| {
                    map.get(&t.key)
                        .map_or((None, None), |h| (Some(h.hysteresis.verdict), h.rtt_ms))
                })
                .unzip()
        });
        let mut peers = lock(&self.peers);
        let ctx = peer_ctx(snap, &layout, &mut peers);
        let admin = lock(&self.admin).clone();
        let mut last_guard = lock(&self.last);
        let last = last_guard.for_snapshot(snap);
        let mut votes = Vec::new();
        let mut changed_pools: Vec<PoolId> = Vec::new();
        let current_gen = self.shared.current.load().generation == snap.generation;
        for (pid, p) in snap.pools.iter().enumerate() {
            for e in p.endpoints.iter() {
                let id = e.id as usize;
                if id >= layout.key_of.len() {
                    continue;
                }
                let own_v = layout.probe_of[id].and_then(|pi| own[pi]);
                let o = self.outcome(snap, &layout, (&ctx, &admin), id, own_v, &mut votes);
                if !current_gen {
                    // A snapshot being seeded before publication: written
                    // whole; logs, metrics and `last` follow once it serves.
                    snap.health.set_state(e.id, o.up, o.drained);
                    continue;
                }
                let key = &layout.key_of[id];
                let prev = last[id].replace(o);
                let moved = prev.is_none_or(|x| x.up != o.up || x.drained != o.drained);
                if moved {
                    // Slots are written when the combined state changes
                    // (a write racing the prober's is redone next round).
                    snap.health.set_state(e.id, o.up, o.drained);
                    if prev.is_some() {
                        if o.up && !o.drained {
                            info!(pool = %p.name, endpoint = %e.label, basis = o.basis.as_str(), down = o.down, voters = o.voters, "cluster: endpoint answered again");
                        } else {
                            warn!(pool = %p.name, endpoint = %e.label, basis = o.basis.as_str(), down = o.down, voters = o.voters, drained = o.drained, "cluster: endpoint out of answers");
                        }
                    }
                    self.shared.metrics.set_endpoint_up(&p.name, &e.label, o.up);
                    if let Some(m) = &self.metrics {
                        m.set_admin(&p.name, &e.label, admin.get(key));
                    }
                    changed_pools.push(pid as PoolId);
                }
                if let (Some(m), Some(pi)) = (&self.metrics, layout.probe_of[id])
                    && let Some(ms) = rtts[pi]
                {
                    m.rtt
                        .with_label_values(&[&p.name, &e.label])
                        .set(ms / 1000.0);
                }
            }
        }
        drop(last_guard);
        let inputs = Inputs {
            pools: &snap.pools,
            health: &snap.health,
        };
        changed_pools.dedup();
        for p in changed_pools {
            self.shared
                .metrics
                .set_pool_usable(&snap.pools[p as usize].name, inputs.pool_usable(p));
        }
        let fresh = ctx.iter().filter(|c| c.fresh).count();
        if let Some(m) = &self.metrics {
            for (p, c) in snap.cluster.peers.iter().zip(&ctx) {
                m.peer_fresh
                    .with_label_values(&[&p.name])
                    .set(i64::from(c.fresh));
            }
        }
        drop(ctx);
        drop(peers);
        let isolated = !snap.cluster.peers.is_empty() && fresh == 0;
        let was = self
            .isolated
            .swap(isolated, std::sync::atomic::Ordering::Relaxed);
        if isolated != was && current_gen {
            if isolated {
                warn!(
                    peers = snap.cluster.peers.len(),
                    "cluster: no peer reachable; answering from this node's own verdicts alone"
                );
            } else {
                info!(
                    fresh,
                    "cluster: peers reachable again; verdicts are combined by quorum"
                );
            }
        }
        if let Some(m) = &self.metrics {
            m.isolated.set(i64::from(isolated));
        }
        self.reorder_latency(snap, &layout, &rtts);
    }

    fn reorder_latency(&self, snap: &Snapshot, layout: &Layout, rtts: &[Option<f64>]) {
        for b in &snap.balancers {
            let Policy::Latency(l) = &b.policy else {
                continue;
            };
            let rtt = |p: PoolId| pool_rtt(snap, layout, rtts, p);
            let current = l.current().to_vec();
            let next = crate::select::latency::reorder(
                &l.pools,
                &current,
                rtt,
                l.margin_ms,
                l.margin_frac,
            );
            if next != current && l.set_current(&next) {
                let names: Vec<String> = next
                    .iter()
                    .map(|&p| {
                        let n = &snap.pools[p as usize].name;
                        match rtt(p) {
                            Some(ms) => format!("{n} {ms:.1}ms"),
                            None => format!("{n} ?"),
                        }
                    })
                    .collect();
                info!(name = %b.name, order = %names.join(", "), "latency: pool order changed");
            }
        }
    }

    /// Smoothed RTT of each pool of `snap` (ms), for `explain`.
    pub fn pool_rtts(&self, snap: &Snapshot) -> Vec<Option<f64>> {
        let layout = self.layout_for(snap);
        let rtts = self.own_rtts(snap);
        (0..snap.pools.len())
            .map(|p| pool_rtt(snap, &layout, &rtts, p as PoolId))
            .collect()
    }

    fn own_rtts(&self, snap: &Snapshot) -> Vec<Option<f64>> {
        self.health.with_all(|map| {
            snap.probes
                .iter()
                .map(|t| map.get(&t.key).and_then(|h| h.rtt_ms))
                .collect()
        })
    }

    /// `GET /api/v1/cluster`: this node, its peers and their freshness,
    /// admin states and every endpoint not answered as plainly up.
    pub fn status_json(&self) -> Value {
        let snap = self.shared.current.load_full();
        let now = unix_ms();
        let peers = lock(&self.peers);
        let peer_list: Vec<Value> = snap
            .cluster
            .peers
            .iter()
            .map(|p| {
                let v = peers.get(&p.name);
                let last_ok = v.and_then(|v| v.last_ok);
                json!({
                    "name": p.name,
                    "url": p.url,
                    "fresh": last_ok.is_some_and(|t| t.elapsed() <= snap.cluster.stale_after),
                    "last_ok_at": v.and_then(|v| v.last_ok_unix_ms).map(|t| t / 1000),
                    "last_ok_age_ms": last_ok.map(|t| t.elapsed().as_millis() as u64),
                    "last_error": v.and_then(|v| v.last_error.clone()),
                    "bytes": v.map_or(0, |v| v.last_bytes),
                    "endpoints": v.map_or(0, |v| v.records.len()),
                    "generation": v.map_or(0, |v| v.generation),
                })
            })
            .collect();
        drop(peers);
        let admin: Vec<Value> = lock(&self.admin)
            .entries()
            .filter(|e| e.state != Admin::Auto)
            .map(|e| {
                let (pool, endpoint) = e.key.split_once('/').unwrap_or((&e.key, ""));
                json!({"pool": pool, "endpoint": endpoint, "state": e.state.as_str(),
                       "at": e.at_ms / 1000, "origin": e.origin})
            })
            .collect();
        let layout = self.layout_for(&snap);
        let last = lock(&self.last);
        let by_id: &[Option<Outcome>] = if last.generation == snap.generation {
            &last.by_id
        } else {
            &[]
        };
        let mut endpoints: Vec<Value> = by_id
            .iter()
            .enumerate()
            .filter_map(|(id, o)| Some((layout.key_of.get(id)?, (*o)?)))
            .filter(|(_, o)| !o.up || o.drained || o.basis != Basis::Local)
            .map(|(k, o)| {
                let (pool, endpoint) = k.split_once('/').unwrap_or((k, ""));
                json!({"pool": pool, "endpoint": endpoint, "up": o.up, "drained": o.drained,
                       "basis": o.basis.as_str(), "down_votes": o.down, "voters": o.voters})
            })
            .collect();
        endpoints.sort_by_key(|v| {
            (
                v["up"].as_bool(),
                v["pool"].to_string(),
                v["endpoint"].to_string(),
            )
        });
        json!({
            "node": snap.cluster.node_name,
            "now": now / 1000,
            "isolated": self.isolated.load(std::sync::atomic::Ordering::Relaxed),
            "pull_interval_ms": snap.cluster.pull_interval.as_millis() as u64,
            "stale_after_ms": snap.cluster.stale_after.as_millis() as u64,
            "peers": peer_list,
            "admin": admin,
            "endpoints": endpoints,
        })
    }

    /// The snapshot serving now.
    pub fn snapshot(&self) -> Arc<crate::serving::Served> {
        self.shared.current.load_full()
    }

    /// The verdict exchange token of the current config.
    pub fn token(&self) -> Option<String> {
        self.shared.current.load().cluster.token.clone()
    }

    /// The admin state of an endpoint (for the status page and explain).
    pub fn admin_of(&self, pool: &str, endpoint: &str) -> Admin {
        lock(&self.admin).get(&endpoint_key(pool, endpoint))
    }

    /// A peer asks us to pull now (it changed an admin state).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Ask every peer to pull us now, so an admin state change reaches
    /// them without waiting for their next round (best effort: their
    /// regular pulls carry it anyway).
    pub async fn poke_peers(&self) {
        let snap = self.shared.current.load_full();
        let mut set = tokio::task::JoinSet::new();
        for p in snap.cluster.peers.clone() {
            let (token, timeout) = (snap.cluster.token.clone(), snap.cluster.pull_timeout);
            set.spawn(async move {
                if let Err(e) = peer::poke(&p, token.as_deref(), timeout).await {
                    info!(peer = %p.name, "cluster: poke failed ({e}); the peer's next pull carries the change");
                }
            });
        }
        while set.join_next().await.is_some() {}
    }

    /// Pull and recompute every `pull_interval` (a fixed cadence), and at
    /// once when a peer pokes (at most every tenth of the interval), until
    /// `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut every = self.shared.current.load().cluster.pull_interval;
        let mut next = Instant::now() + every;
        loop {
            let woken = tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(next) => false,
                () = self.wake.notified() => true,
            };
            let started = Instant::now();
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.pull_all() => {}
            }
            let now_every = self.shared.current.load().cluster.pull_interval;
            if now_every != every || !woken {
                every = now_every;
                next += every;
                if next < Instant::now() {
                    // Fell behind (slow peers): keep the cadence, skip ticks.
                    next = Instant::now() + every;
                }
            }
            if woken {
                // Rate-limit pokes.
                tokio::time::sleep_until(started + every / 10).await;
            }
        }
    }
}

/// Smoothed RTT (ms) of every pool of `snap` from this node's prober state:
/// the mean over its up endpoints with a known RTT (`explain` uses it).
pub fn pool_rtts_from(snap: &Snapshot, health: &HealthStatus) -> Vec<Option<f64>> {
    let layout = Layout::build(snap);
    let rtts: Vec<Option<f64>> = health.with_all(|map| {
        snap.probes
            .iter()
            .map(|t| map.get(&t.key).and_then(|h| h.rtt_ms))
            .collect()
    });
    (0..snap.pools.len())
        .map(|p| pool_rtt(snap, &layout, &rtts, p as PoolId))
        .collect()
}

fn pool_rtt(snap: &Snapshot, layout: &Layout, rtts: &[Option<f64>], p: PoolId) -> Option<f64> {
    let pool = &snap.pools[p as usize];
    let (mut sum, mut n) = (0.0, 0u32);
    for e in pool.endpoints.iter() {
        if !e.enabled || !snap.health.is_up(e.id) {
            continue;
        }
        if let Some(Some(pi)) = layout.probe_of.get(e.id as usize)
            && let Some(ms) = rtts[*pi]
        {
            sum += ms;
            n += 1;
        }
    }
    (n > 0).then(|| sum / f64::from(n))
}

impl Resolver for Cluster {
    fn resolve(&self, snap: &Snapshot, target: &ProbeTarget, own: Verdict) -> (bool, bool) {
        let layout = self.layout_for(snap);
        let mut peers = lock(&self.peers);
        let ctx = peer_ctx(snap, &layout, &mut peers);
        let admin = lock(&self.admin);
        let mut votes = Vec::new();
        let o = self.outcome(
            snap,
            &layout,
            (&ctx, &admin),
            target.endpoint as usize,
            Some(own),
            &mut votes,
        );
        drop(ctx);
        drop((peers, admin));
        let mut last = lock(&self.last);
        if last.generation == snap.generation
            && let Some(slot) = last.by_id.get_mut(target.endpoint as usize)
        {
            *slot = Some(o);
        }
        (o.up, o.drained)
    }

    fn seed(&self, snap: &Snapshot) {
        self.recompute(snap);
    }
}
