//! Every config load goes through here: the first one at start (recorded as
//! a successful load) and each reload (SIGHUP, API, file watch): read,
//! parse, validate and compile off the hot path, carry health over, publish
//! with one atomic store, tell the prober, record the result.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::warn;

use crate::config::{self, ConfigError};
use crate::metrics::Metrics;
use crate::probe::HealthStatus;
use crate::probe::notify::Notifier;
use crate::serving::Shared;
use crate::snapshot::{self, Snapshot};

/// Read, parse, validate and compile a config file.
pub fn load_snapshot(path: &Path, generation: u64) -> Result<Snapshot, ConfigError> {
    load_snapshot_with(path, generation, None, snapshot::GeoMode::Serve)
}

/// [`load_snapshot`] reusing `previous`'s geo data (partition, decision
/// tries) when the databases and overrides did not change; `mode` says how
/// much geo data to prepare (`explain` needs no tries).
pub fn load_snapshot_with(
    path: &Path,
    generation: u64,
    previous: Option<&Snapshot>,
    mode: snapshot::GeoMode,
) -> Result<Snapshot, ConfigError> {
    let (source, file) = config::load(path)?;
    snapshot::build_reusing(&source, &file, generation, previous.map(|p| &p.geo), mode)
}

/// The load at start: generation 1, counted as the last successful load
/// (else the success timestamp read 0, 1970, until the first reload) but
/// not as a reload.
pub(crate) fn first_load(path: &Path, metrics: &Metrics) -> Result<Snapshot, ConfigError> {
    let snap = load_snapshot(path, 1)?;
    metrics.initial_load();
    Ok(snap)
}

/// A reload's result as the API reports it: the new generation, or the
/// error's lines.
pub(crate) type ReloadResult = Result<u64, Vec<String>>;

/// Where reload results go (the status page's "last reload" and the reload
/// metrics), set once by the wiring.
pub(crate) type Recorder = Box<dyn Fn(&ReloadResult) + Send + Sync>;

/// A config error as lines, one per error.
pub(crate) fn error_lines(e: &ConfigError) -> Vec<String> {
    e.to_string().lines().map(String::from).collect()
}

/// Everything a reload touches, shared by the signal loop, the API and the
/// file watch.
pub struct Control {
    /// The snapshot holder (and metrics).
    pub shared: Arc<Shared>,
    /// What the prober knows about each probed endpoint.
    pub health: Arc<HealthStatus>,
    notifier: Notifier,
    generations: tokio::sync::watch::Sender<u64>,
    config: PathBuf,
    generation: AtomicU64,
    reload_lock: Mutex<()>,
    recorder: OnceLock<Recorder>,
}

impl Control {
    /// Reloads of `config` into `shared` (serving generation 1, from
    /// [`first_load`]); each new generation is sent on `generations`.
    pub(crate) fn new(
        shared: Arc<Shared>,
        health: Arc<HealthStatus>,
        notifier: Notifier,
        generations: tokio::sync::watch::Sender<u64>,
        config: PathBuf,
    ) -> Self {
        Control {
            shared,
            health,
            notifier,
            generations,
            config,
            generation: AtomicU64::new(1),
            reload_lock: Mutex::new(()),
            recorder: OnceLock::new(),
        }
    }

    /// The config file.
    pub(crate) fn config(&self) -> &Path {
        &self.config
    }

    /// Send every recorded result to `recorder` from now on (set once).
    pub(crate) fn set_recorder(&self, recorder: Recorder) {
        let _ = self.recorder.set(recorder);
    }

    /// Reload and record the result (the status page, the reload metrics).
    pub fn reload(&self) -> Result<u64, ConfigError> {
        let r = self.swap();
        self.record(&r.as_ref().map(|g| *g).map_err(error_lines));
        r
    }

    /// Record a result obtained elsewhere (a reload whose thread died).
    pub(crate) fn record(&self, result: &ReloadResult) {
        if let Some(r) = self.recorder.get() {
            r(result);
        }
    }

    /// Re-read the config and swap it in, without recording the result
    /// (for callers that record it themselves, like the API backend); on
    /// any error the old config keeps serving and the error is returned.
    /// One reload runs at a time.
    pub(crate) fn swap(&self) -> Result<u64, ConfigError> {
        let _one = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let snap = {
            let old = self.shared.current.load_full();
            load_snapshot_with(
                &self.config,
                generation,
                Some(&old),
                snapshot::GeoMode::Serve,
            )?
        };
        // Health carries over for endpoints whose probe did not change.
        self.health.seed(&snap);
        self.notifier.set_webhooks(snap.notify.webhooks.clone());
        let listen_changed = {
            let old = self.shared.current.load();
            old.settings.dns_listen != snap.settings.dns_listen
                || old.settings.http_listen != snap.settings.http_listen
                || old.settings.udp_workers != snap.settings.udp_workers
                || old.settings.anycast != snap.settings.anycast
                || old.settings.xdp_interface != snap.settings.xdp_interface
                || old.settings.xdp_coalesce != snap.settings.xdp_coalesce
                || old.settings.dns_cpus != snap.settings.dns_cpus
        };
        if listen_changed {
            warn!(
                "listen addresses, workers, dns_cpus, xdp_* or [anycast] changed: that takes a restart; keeping the current ones"
            );
        }
        self.shared.publish(snap);
        crate::serving::labels::sync_health(&self.shared.metrics, &self.shared.current.load());
        self.generation.store(generation, Ordering::Relaxed);
        let _ = self.generations.send(generation);
        Ok(generation)
    }
}
