//! Combining verdicts: every endpoint's own verdict, its peers' votes and
//! its admin state through [`quorum::combine`], written into the snapshot's
//! health atomics (with logs and metrics on change), the latency orders
//! recomputed from this node's RTTs, and the [`Resolver`] the prober writes
//! each verdict change through.

use std::time::Duration;

use tracing::{info, warn};

use super::admin::AdminStore;
use super::lock;
use super::quorum::{self, Outcome, PeerVote, Vote};
use super::runtime::Cluster;
use super::tables::{Layout, MISMATCH, NO_RECORD, PeerCtx, peer_ctx};
use super::wire;
use crate::health::ProbeTarget;
use crate::health::state::Verdict;
use crate::probe::{HealthStatus, Resolver};
use crate::select::{Inputs, Policy, PoolId};
use crate::snapshot::Snapshot;

impl Cluster {
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
