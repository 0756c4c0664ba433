//! [`SharedBackend`]: an [`ApiBackend`] over the serving [`Shared`] snapshot
//! holder and [`Metrics`], for the application to wire in. Reloading is
//! supplied as a closure, so this module does not depend on how the
//! application reloads; probe details are read from the prober's
//! [`HealthStatus`] through the probes of the one snapshot a page shows.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::ApiBackend;
use super::model::{LastReload, ReloadOutcome, Status};
use super::snapshot::{explain_json, pool_statuses, probe_info};
use crate::explain::ProbeIndex;
use crate::metrics::Metrics;
use crate::probe::HealthStatus;
use crate::serving::Shared;

/// Reload the config: the new generation, or every error (one per line of
/// the config error's report).
pub type Reloader = Box<dyn Fn() -> Result<u64, Vec<String>> + Send + Sync>;

/// An [`ApiBackend`] over the live snapshot.
pub struct SharedBackend {
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    ready: AtomicBool,
    started_at: u64,
    version: String,
    last_reload: Mutex<Option<LastReload>>,
    reloading: Mutex<()>,
    reloader: Reloader,
    health: Option<Arc<HealthStatus>>,
    anycast: std::sync::OnceLock<Arc<crate::anycast::Handle>>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SharedBackend {
    /// A backend serving `shared`'s current snapshot and `metrics`,
    /// reloading through `reloader`. Not ready until
    /// [`SharedBackend::set_ready`]; no probe details (reasons, probe
    /// times) until [`SharedBackend::with_health`].
    pub fn new(shared: Arc<Shared>, metrics: Arc<Metrics>, reloader: Reloader) -> Self {
        SharedBackend {
            shared,
            metrics,
            ready: AtomicBool::new(false),
            started_at: now_unix(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            last_reload: Mutex::new(None),
            reloading: Mutex::new(()),
            reloader,
            health: None,
            anycast: std::sync::OnceLock::new(),
        }
    }

    /// Report the anycast gate's state (set once, after it started).
    pub fn set_anycast(&self, handle: Arc<crate::anycast::Handle>) {
        let _ = self.anycast.set(handle);
    }

    /// Use the prober's state for `explain` and the endpoints' reasons and
    /// probe times in the status.
    pub fn with_health(mut self, health: Arc<HealthStatus>) -> Self {
        self.health = Some(health);
        self
    }

    /// Mark the server ready (config loaded, DNS sockets bound) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Record a reload done elsewhere (SIGHUP, file watch): the status
    /// page's "last reload" and the reload metrics. [`ApiBackend::reload`]
    /// calls it itself.
    pub fn record_reload(&self, result: &Result<u64, Vec<String>>) -> ReloadOutcome {
        let current = self.shared.current.load().generation;
        let outcome = match result {
            Ok(g) => ReloadOutcome {
                ok: true,
                generation: *g,
                errors: Vec::new(),
            },
            Err(errors) => ReloadOutcome {
                ok: false,
                generation: current,
                errors: errors.clone(),
            },
        };
        self.metrics.reload_result(outcome.ok);
        let mut last = self.last_reload.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some(LastReload {
            at: now_unix(),
            ok: outcome.ok,
            generation: outcome.generation,
            errors: outcome.errors.clone(),
        });
        outcome
    }
}

impl ApiBackend for SharedBackend {
    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn status(&self) -> Status {
        // One snapshot for the whole page: pools, endpoints and their probes
        // all come from it, even when a reload lands meanwhile.
        let snap = self.shared.current.load();
        let probes = ProbeIndex::new(&snap);
        let health = self.health.as_deref();
        Status {
            node_name: snap.settings.node_name.clone(),
            version: self.version.clone(),
            generation: snap.generation,
            config_file: snap.source.display().to_string(),
            started_at: self.started_at,
            last_reload: self
                .last_reload
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            pools: pool_statuses(&snap, &snap.health, |id| {
                probe_info(&snap, &probes, health, id)
            }),
        }
    }

    fn explain(
        &self,
        name: &str,
        qtype: &str,
        client: IpAddr,
    ) -> Result<serde_json::Value, String> {
        explain_json(
            &self.shared.current.load(),
            self.health.as_deref(),
            name,
            qtype,
            client,
        )
    }

    fn reload(&self) -> ReloadOutcome {
        // One reload at a time through the API.
        let _guard = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let result = (self.reloader)();
        self.record_reload(&result)
    }

    fn anycast(&self) -> Option<crate::anycast::AnycastStatus> {
        self.anycast.get().map(|a| a.status())
    }

    fn metrics_text(&self) -> String {
        self.metrics.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn status_reload_and_readiness() {
        let path = Path::new("config/example.toml");
        let snap = crate::reload::load_snapshot(path, 1).unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let shared = Shared::new(snap, metrics.clone());
        let fail = Arc::new(AtomicBool::new(false));
        let (s2, f2) = (shared.clone(), fail.clone());
        let reloader: Reloader = Box::new(move || {
            if f2.load(Ordering::SeqCst) {
                return Err(vec!["x.toml:1:1: broken".into()]);
            }
            let g = s2.current.load().generation + 1;
            let snap = crate::reload::load_snapshot(Path::new("config/example.toml"), g)
                .map_err(|e| e.to_string().lines().map(String::from).collect::<Vec<_>>())?;
            s2.publish(snap);
            Ok(g)
        });
        let b = SharedBackend::new(shared, metrics.clone(), reloader);
        assert!(!b.ready());
        b.set_ready(true);
        assert!(b.ready());
        let s = b.status();
        assert_eq!(s.generation, 1);
        assert!(s.config_file.ends_with("example.toml"));
        assert!(s.last_reload.is_none());
        assert!(!s.pools.is_empty());
        // Probe details come from the same snapshot's probes, by endpoint id.
        for p in &s.pools {
            for e in &p.endpoints {
                if p.name == "lab" {
                    let port = if e.name == "192.0.2.80" { 9153 } else { 9 };
                    let want = format!("self-api http 127.0.0.1:{port}");
                    assert_eq!(e.monitor.as_deref(), Some(want.as_str()), "{e:?}");
                    assert_eq!(e.state, super::super::model::EndpointState::Unknown);
                } else {
                    assert_eq!(e.monitor, None, "{e:?}");
                }
            }
        }

        let r = b.reload();
        assert!(r.ok && r.generation == 2, "{r:?}");
        assert_eq!(b.status().generation, 2);
        fail.store(true, Ordering::SeqCst);
        let r = b.reload();
        assert!(!r.ok && r.generation == 2 && r.errors.len() == 1, "{r:?}");
        let last = b.status().last_reload.unwrap();
        assert!(!last.ok);
        assert_eq!(last.errors, vec!["x.toml:1:1: broken".to_string()]);
        let text = b.metrics_text();
        assert!(text.contains("steerdns_config_reloads_total{result=\"failure\"} 1"));
        assert!(text.contains("steerdns_config_reloads_total{result=\"success\"} 1"));

        let v = b
            .explain("www.lb.example.com", "A", "81.2.69.1".parse().unwrap())
            .unwrap();
        assert_eq!(v["chosen_pool"], "eu");
    }
}
