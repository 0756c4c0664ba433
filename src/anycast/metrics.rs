//! The anycast Prometheus series (announced, self-checks, changes).

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts};

pub(super) struct AnycastMetrics {
    pub(super) announced: IntGaugeVec,
    pub(super) checks: IntCounterVec,
    pub(super) check_ok: IntGauge,
    pub(super) changes: IntCounterVec,
}

impl AnycastMetrics {
    pub(super) fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let announced = IntGaugeVec::new(
            Opts::new(
                "steerdns_anycast_announced",
                "Whether BIRD confirmed this node announces the prefix (1) or not (0).",
            ),
            &["prefix"],
        )?;
        let checks = IntCounterVec::new(
            Opts::new(
                "steerdns_anycast_self_checks_total",
                "DNS self-checks through the listeners to the anycast addresses, by result (ok, failed).",
            ),
            &["result"],
        )?;
        let check_ok = IntGauge::new(
            "steerdns_anycast_self_check_ok",
            "Whether the last DNS self-check passed (1) or not (0).",
        )?;
        let changes = IntCounterVec::new(
            Opts::new(
                "steerdns_anycast_changes_total",
                "Decisions to announce or withdraw the anycast prefixes, by change (announce, withdraw).",
            ),
            &["change"],
        )?;
        for r in ["ok", "failed"] {
            checks.with_label_values(&[r]);
        }
        for c in ["announce", "withdraw"] {
            changes.with_label_values(&[c]);
        }
        registry.register(Box::new(announced.clone()))?;
        registry.register(Box::new(checks.clone()))?;
        registry.register(Box::new(check_ok.clone()))?;
        registry.register(Box::new(changes.clone()))?;
        Ok(AnycastMetrics {
            announced,
            checks,
            check_ok,
            changes,
        })
    }
}
