//! Cluster metrics, registered into the server's registry. Every label
//! value comes from the config (peer names, pools, endpoints) or a fixed
//! set (admin states, pull results).

use prometheus::{GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::quorum::Admin;

/// Handles of the cluster metrics.
pub struct ClusterMetrics {
    /// `steerdns_cluster_peer_fresh{peer}`.
    pub peer_fresh: IntGaugeVec,
    /// `steerdns_cluster_pulls_total{peer,result}`.
    pub pulls: IntCounterVec,
    /// `steerdns_cluster_pull_bytes{peer}`: size of the last pull.
    pub pull_bytes: IntGaugeVec,
    /// `steerdns_cluster_peer_last_success_timestamp_seconds{peer}`.
    pub last_success: GaugeVec,
    /// `steerdns_cluster_isolated`: 1 when no peer is fresh.
    pub isolated: IntGauge,
    /// `steerdns_endpoint_admin_state{pool,endpoint,state}`: 1 for the
    /// endpoint's current admin state.
    pub admin_state: IntGaugeVec,
    /// `steerdns_endpoint_probe_rtt_seconds{pool,endpoint}`: smoothed RTT.
    pub rtt: GaugeVec,
}

impl ClusterMetrics {
    /// Create and register them.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = ClusterMetrics {
            peer_fresh: IntGaugeVec::new(
                Opts::new(
                    "steerdns_cluster_peer_fresh",
                    "Whether a peer's verdicts are fresh (1) or stale/unreachable (0).",
                ),
                &["peer"],
            )?,
            pulls: IntCounterVec::new(
                Opts::new(
                    "steerdns_cluster_pulls_total",
                    "Pulls of peers' verdicts, by result (ok, error).",
                ),
                &["peer", "result"],
            )?,
            pull_bytes: IntGaugeVec::new(
                Opts::new(
                    "steerdns_cluster_pull_bytes",
                    "Size of the last verdict message pulled from a peer.",
                ),
                &["peer"],
            )?,
            last_success: GaugeVec::new(
                Opts::new(
                    "steerdns_cluster_peer_last_success_timestamp_seconds",
                    "Unix time of the last good pull of a peer.",
                ),
                &["peer"],
            )?,
            isolated: IntGauge::new(
                "steerdns_cluster_isolated",
                "1 when peers are configured but none is fresh: this node answers from its own verdicts alone.",
            )?,
            admin_state: IntGaugeVec::new(
                Opts::new(
                    "steerdns_endpoint_admin_state",
                    "Operator state of an endpoint: 1 for the current one of auto, drain, force_up, force_down.",
                ),
                &["pool", "endpoint", "state"],
            )?,
            rtt: GaugeVec::new(
                Opts::new(
                    "steerdns_endpoint_probe_rtt_seconds",
                    "Smoothed round-trip time of an endpoint's successful probes (EWMA).",
                ),
                &["pool", "endpoint"],
            )?,
        };
        r.register(Box::new(m.peer_fresh.clone()))?;
        r.register(Box::new(m.pulls.clone()))?;
        r.register(Box::new(m.pull_bytes.clone()))?;
        r.register(Box::new(m.last_success.clone()))?;
        r.register(Box::new(m.isolated.clone()))?;
        r.register(Box::new(m.admin_state.clone()))?;
        r.register(Box::new(m.rtt.clone()))?;
        Ok(m)
    }

    /// Set the admin state series of one endpoint.
    pub fn set_admin(&self, pool: &str, endpoint: &str, state: Admin) {
        for s in [Admin::Auto, Admin::Drain, Admin::ForceUp, Admin::ForceDown] {
            let label = s.as_str().replace('-', "_");
            self.admin_state
                .with_label_values(&[pool, endpoint, &label])
                .set(i64::from(s == state));
        }
    }
}
