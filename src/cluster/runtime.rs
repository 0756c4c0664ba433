//! The cluster runtime of one node ([`Cluster`]): its state, its start
//! (metrics, restored admin states, becoming the prober's resolver), admin
//! state changes and the pull loop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::admin::AdminStore;
use super::metrics::ClusterMetrics;
use super::quorum::Admin;
use super::tables::{LastOutcomes, Layout, PeerView};
use super::wire::AdminEntry;
use super::{endpoint_key, lock, unix_ms};
use crate::probe::HealthStatus;
use crate::serving::Shared;
use crate::snapshot::Snapshot;

/// The cluster runtime of one node.
pub struct Cluster {
    pub(super) shared: Arc<Shared>,
    pub(super) health: Arc<HealthStatus>,
    pub(super) metrics: Option<ClusterMetrics>,
    pub(super) layout: Mutex<Option<Arc<Layout>>>,
    pub(super) peers: Mutex<HashMap<String, PeerView>>,
    pub(super) admin: Mutex<AdminStore>,
    /// Combined state by endpoint key, for logs and the status page.
    pub(super) last: Mutex<LastOutcomes>,
    pub(super) isolated: std::sync::atomic::AtomicBool,
    /// Pull now (a peer's admin state changed).
    pub(super) wake: tokio::sync::Notify,
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

    pub(super) fn layout_for(&self, snap: &Snapshot) -> Arc<Layout> {
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

    pub(super) fn persist(&self, snap: &Snapshot) -> Result<(), AdminError> {
        let Some(path) = &snap.cluster.state_file else {
            return Ok(());
        };
        let store = lock(&self.admin).clone();
        store.save(path).map_err(|e| {
            warn!(file = %path.display(), "writing the state file: {e}");
            AdminError::Persist(format!("{}: {e}", path.display()))
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
