//! [`Metrics`]: the registry, the hot counter sets, and the operations
//! metrics (endpoint and pool state, probes, reloads, build info) on
//! ordinary prometheus vectors.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tracing::warn;

use super::answers::BalancerCounters;
use super::hot::{DropReason, GEO_BASE, GeoResult, HotCollector, SMALL_LEN};
use super::queries::QueryCounters;
use super::sharded::Sharded;
use super::slot_table::lock;

/// Upper bounds (seconds) of the probe duration histogram.
const PROBE_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Errors creating the metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The prometheus crate rejected a metric.
    #[error("registering metrics: {0}")]
    Prometheus(#[from] prometheus::Error),
}

/// Every steerdns metric, in its own registry.
pub struct Metrics {
    registry: Registry,
    queries: Arc<QueryCounters>,
    answers: Arc<BalancerCounters>,
    small: Arc<Sharded>,
    endpoint_up: IntGaugeVec,
    pool_usable: IntGaugeVec,
    probe_duration: HistogramVec,
    probe_failures: IntCounterVec,
    probes_skipped: IntCounterVec,
    reloads: IntCounterVec,
    last_reload_success: Gauge,
    last_reload_ok: IntGauge,
    /// (pool, endpoint) pairs with series, for [`Metrics::retain_endpoints`].
    endpoints: Mutex<HashSet<(String, String)>>,
    pools: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// All metrics, registered in a new registry. `steerdns_build_info` is
    /// set to this crate's version.
    pub fn new() -> Result<Self, MetricsError> {
        Self::with_version(env!("CARGO_PKG_VERSION"))
    }

    /// Like [`Metrics::new`] with another `version` label for
    /// `steerdns_build_info`.
    pub(crate) fn with_version(version: &str) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let queries = Arc::new(QueryCounters::new());
        let answers = Arc::new(BalancerCounters::new());
        let small = Arc::new(Sharded::new(SMALL_LEN));
        small.ensure(SMALL_LEN);
        registry.register(Box::new(HotCollector::new(
            queries.clone(),
            answers.clone(),
            small.clone(),
        )))?;

        let endpoint_up = IntGaugeVec::new(
            Opts::new(
                "steerdns_endpoint_up",
                "Whether an endpoint is up (1) or down (0) as its monitor sees it.",
            ),
            &["pool", "endpoint"],
        )?;
        let pool_usable = IntGaugeVec::new(
            Opts::new(
                "steerdns_pool_usable",
                "Whether a pool has at least min_healthy endpoints up (1) or not (0).",
            ),
            &["pool"],
        )?;
        let probe_duration = HistogramVec::new(
            HistogramOpts::new(
                "steerdns_probe_duration_seconds",
                "Duration of health probes, by monitor type.",
            )
            .buckets(PROBE_BUCKETS.to_vec()),
            &["monitor_type"],
        )?;
        let probe_failures = IntCounterVec::new(
            Opts::new(
                "steerdns_probe_failures_total",
                "Failed health probes, by pool, endpoint and reason.",
            ),
            &["pool", "endpoint", "reason"],
        )?;
        let probes_skipped = IntCounterVec::new(
            Opts::new(
                "steerdns_probes_skipped_total",
                "Probe rounds skipped because the endpoint's previous probe was still running or waiting (in_flight), and probes that had to wait for a free probe slot (busy).",
            ),
            &["reason"],
        )?;
        probes_skipped.with_label_values(&["in_flight"]);
        probes_skipped.with_label_values(&["busy"]);
        let reloads = IntCounterVec::new(
            Opts::new(
                "steerdns_config_reloads_total",
                "Config reloads, by result (success, failure).",
            ),
            &["result"],
        )?;
        let last_reload_success = Gauge::new(
            "steerdns_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load or reload.",
        )?;
        let last_reload_ok = IntGauge::new(
            "steerdns_config_last_reload_successful",
            "1 when the last config load or reload succeeded, else 0.",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("steerdns_build_info", "Always 1; the version is a label."),
            &["version"],
        )?;
        build_info.with_label_values(&[version]).set(1);
        reloads.with_label_values(&["success"]);
        reloads.with_label_values(&["failure"]);

        registry.register(Box::new(endpoint_up.clone()))?;
        registry.register(Box::new(pool_usable.clone()))?;
        registry.register(Box::new(probe_duration.clone()))?;
        registry.register(Box::new(probe_failures.clone()))?;
        registry.register(Box::new(probes_skipped.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(last_reload_success.clone()))?;
        registry.register(Box::new(last_reload_ok.clone()))?;
        registry.register(Box::new(build_info))?;

        Ok(Metrics {
            registry,
            queries,
            answers,
            small,
            endpoint_up,
            pool_usable,
            probe_duration,
            probe_failures,
            probes_skipped,
            reloads,
            last_reload_success,
            last_reload_ok,
            endpoints: Mutex::new(HashSet::new()),
            pools: Mutex::new(HashSet::new()),
        })
    }

    /// The registry (to add more collectors).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Per-query counters (hot path).
    pub fn queries(&self) -> &QueryCounters {
        &self.queries
    }

    /// Balancer answer counters (hot path).
    pub fn answers(&self) -> &BalancerCounters {
        &self.answers
    }

    /// Count a dropped packet. Lock-free and allocation-free.
    #[inline]
    pub fn record_drop(&self, reason: DropReason) {
        self.small.add(reason.index(), 1);
    }

    /// Count `n` drops at once (transports that keep their own counters
    /// report their deltas periodically).
    pub(crate) fn record_drops(&self, reason: DropReason, n: u64) {
        self.small.add(reason.index(), n);
    }

    /// Count a GeoIP lookup. Lock-free and allocation-free.
    #[inline]
    pub fn record_geoip(&self, result: GeoResult) {
        self.small.add(GEO_BASE + result.index(), 1);
    }

    /// Set `steerdns_endpoint_up{pool, endpoint}`.
    pub fn set_endpoint_up(&self, pool: &str, endpoint: &str, up: bool) {
        self.endpoint_up
            .with_label_values(&[pool, endpoint])
            .set(i64::from(up));
        let key = (pool.to_string(), endpoint.to_string());
        lock(&self.endpoints).insert(key);
    }

    /// Set `steerdns_pool_usable{pool}`.
    pub fn set_pool_usable(&self, pool: &str, usable: bool) {
        self.pool_usable
            .with_label_values(&[pool])
            .set(i64::from(usable));
        lock(&self.pools).insert(pool.to_string());
    }

    /// Drop the series of endpoints and pools no longer configured (call
    /// after a reload with the new config's pools and endpoints), so removed
    /// endpoints do not stay "down" forever.
    pub(crate) fn retain_endpoints<'a>(&self, keep: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let keep: HashSet<(&str, &str)> = keep.into_iter().collect();
        let pools: HashSet<&str> = keep.iter().map(|&(p, _)| p).collect();
        lock(&self.endpoints).retain(|(p, e)| {
            let kept = keep.contains(&(p.as_str(), e.as_str()));
            if !kept {
                let _ = self.endpoint_up.remove_label_values(&[p, e]);
            }
            kept
        });
        lock(&self.pools).retain(|p| {
            let kept = pools.contains(p.as_str());
            if !kept {
                let _ = self.pool_usable.remove_label_values(&[p]);
            }
            kept
        });
    }

    /// Observe one probe's duration; `monitor_type` is one of a fixed set
    /// (`"tcp"`, `"http"`, `"https"`, `"dns"`, …).
    pub fn observe_probe(&self, monitor_type: &'static str, duration: Duration) {
        self.probe_duration
            .with_label_values(&[monitor_type])
            .observe(duration.as_secs_f64());
    }

    /// Count a failed probe; `reason` is one of a fixed set chosen by the
    /// prober (`"timeout"`, `"refused"`, `"status"`, …), never free text.
    pub fn probe_failed(&self, pool: &str, endpoint: &str, reason: &'static str) {
        self.probe_failures
            .with_label_values(&[pool, endpoint, reason])
            .inc();
    }

    /// Count a skipped probe round (`"in_flight"`) or a probe that waited
    /// for a free slot (`"busy"`).
    pub(crate) fn probe_skipped(&self, reason: &'static str) {
        self.probes_skipped.with_label_values(&[reason]).inc();
    }

    /// Count a config load or reload; a success also sets
    /// `steerdns_config_last_reload_success_timestamp_seconds` to now.
    pub fn reload_result(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.with_label_values(&[result]).inc();
        self.last_reload_ok.set(i64::from(ok));
        if ok {
            self.loaded_now();
        }
    }

    /// Record the config loaded at start: the load timestamp and the
    /// success flag (not a reload, so `steerdns_config_reloads_total` stays
    /// 0). Without it the timestamp read 0 (1970) until the first reload.
    pub fn initial_load(&self) {
        self.last_reload_ok.set(1);
        self.loaded_now();
    }

    fn loaded_now(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_reload_success.set(now.floor());
    }

    /// The text exposition (format 0.0.4) of every metric.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            warn!("encoding metrics: {e}");
        }
        String::from_utf8(buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }
}

/// The `Content-Type` of [`Metrics::render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
