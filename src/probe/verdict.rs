//! One probe result through hysteresis: the endpoint's state updated,
//! a verdict change written to the health table (through the resolver),
//! and metrics, logs and webhooks told.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::notify::{Event, Notifier};
use super::status::{EndpointHealth, HealthStatus};
use super::unix_now;
use crate::health::state::Verdict;
use crate::select::Inputs;
use crate::serving::Shared;
use crate::snapshot::Snapshot;

pub(super) struct ProbeResult {
    /// The slot's stable id.
    pub(super) slot: u64,
    pub(super) ok: bool,
    pub(super) reason: String,
    /// Error kind (a bounded metrics label) when the probe failed.
    pub(super) kind: Option<&'static str>,
    pub(super) duration: Duration,
}

pub(super) fn apply(
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
