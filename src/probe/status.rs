//! The prober's state as the rest of the server reads it: what is known
//! of each probed endpoint ([`EndpointHealth`], by probe key), and the
//! [`Resolver`] through which verdict changes reach the health table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::health::state::{Hysteresis, Verdict};
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

    pub(super) fn write(&self, snap: &Snapshot, t: &crate::health::ProbeTarget, v: Verdict) {
        match self.resolver.get() {
            Some(r) => {
                let (up, drained) = r.resolve(snap, t, v);
                snap.health.set_state(t.endpoint, up, drained);
            }
            None => snap.health.set(t.endpoint, v.answerable()),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, EndpointHealth>> {
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
    pub(super) fn retain(&self, keys: &HashMap<&str, ()>) {
        self.lock().retain(|k, _| keys.contains_key(k.as_str()));
    }
}
