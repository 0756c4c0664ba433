//! Glue between a compiled [`Snapshot`] and [`Metrics`]: label slots
//! resolved once per snapshot, so the hot path only indexes arrays, and the
//! health gauges.

use super::{AnswerMode, AnswerSlot, GeoResult, Metrics, NO_ZONE_SLOT};
use crate::geo::LocationSource;
use crate::health::HealthTable;
use crate::select::{Inputs, Mode, Policy, PoolId};
use crate::snapshot::Snapshot;

impl From<Mode> for AnswerMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Normal => AnswerMode::Normal,
            Mode::Fallback => AnswerMode::Fallback,
            Mode::FailOpen => AnswerMode::FailOpen,
            Mode::Nodata => AnswerMode::Nodata,
        }
    }
}

impl From<LocationSource> for GeoResult {
    fn from(s: LocationSource) -> Self {
        match s {
            LocationSource::Unknown => GeoResult::NotFound,
            LocationSource::Database => GeoResult::Found,
            LocationSource::Override => GeoResult::Override,
        }
    }
}

/// The answer slots of one balanced name: (pool, slot) pairs.
type NameSlots = Box<[(PoolId, AnswerSlot)]>;

/// Metric slots of one snapshot's zones and balanced names. Build it when a
/// snapshot is compiled (it takes the metrics' label locks) and keep it next
/// to the snapshot; lookups are array indexing and a short linear scan.
#[derive(Debug, Clone, Default)]
pub struct SnapshotSlots {
    /// Zone slot by zone index (`ZoneTable::zones`).
    zones: Box<[u32]>,
    /// By balancer id: (pool, slot) for every pool the name can answer from.
    answers: Box<[NameSlots]>,
    /// By balancer id: the slot for answers without a pool (NODATA).
    no_pool: Box<[AnswerSlot]>,
}

fn pools_of(policy: &Policy) -> Vec<PoolId> {
    match policy {
        Policy::Failover(l) | Policy::Proximity(l) | Policy::Weighted(l) => l.to_vec(),
        Policy::Geo(map) => map.lists.iter().flat_map(|l| l.iter().copied()).collect(),
        Policy::Latency(l) => l.pools.to_vec(),
    }
}

impl SnapshotSlots {
    /// Allocate (or find) the slots of every zone and of every (balanced
    /// name, pool) pair `snap` can answer with. Zones are labelled by
    /// `Zone::display`, names by `Balancer::name`, pools by `Pool::name`.
    pub fn new(metrics: &Metrics, snap: &Snapshot) -> Self {
        let zones = snap
            .zones
            .zones
            .iter()
            .map(|z| metrics.queries().zone_slot(&z.display))
            .collect();
        let mut answers = Vec::with_capacity(snap.balancers.len());
        let mut no_pool = Vec::with_capacity(snap.balancers.len());
        for b in &snap.balancers {
            let mut pools = pools_of(&b.policy);
            pools.extend(b.fallback);
            pools.sort_unstable();
            pools.dedup();
            let slots: NameSlots = pools
                .into_iter()
                .filter_map(|p| {
                    let pool = snap.pools.get(p as usize)?;
                    Some((p, metrics.answers().answer_slot(&b.name, Some(&pool.name))))
                })
                .collect();
            answers.push(slots);
            no_pool.push(metrics.answers().answer_slot(&b.name, None));
        }
        SnapshotSlots {
            zones,
            answers: answers.into(),
            no_pool: no_pool.into(),
        }
    }

    /// The slot of zone index `zone` ([`NO_ZONE_SLOT`] for `None` or an
    /// unknown index).
    #[inline]
    pub fn zone(&self, zone: Option<u32>) -> u32 {
        zone.and_then(|z| self.zones.get(z as usize).copied())
            .unwrap_or(NO_ZONE_SLOT)
    }

    /// The slot for balancer `balancer` answering from `pool` (`None`: no
    /// pool); `None` when the pair was not allocated.
    #[inline]
    pub fn answer(&self, balancer: u32, pool: Option<PoolId>) -> Option<AnswerSlot> {
        match pool {
            None => self.no_pool.get(balancer as usize).copied(),
            Some(p) => self
                .answers
                .get(balancer as usize)?
                .iter()
                .find(|(q, _)| *q == p)
                .map(|&(_, s)| s),
        }
    }

    /// Count one balanced answer: [`SnapshotSlots::answer`] then
    /// [`super::BalancerCounters::record_answer`]. Lock- and allocation-free.
    #[inline]
    pub fn record_answer(
        &self,
        metrics: &Metrics,
        balancer: u32,
        pool: Option<PoolId>,
        mode: Mode,
    ) {
        if let Some(slot) = self.answer(balancer, pool) {
            metrics.answers().record_answer(slot, mode.into());
        }
    }
}

/// Set `steerdns_endpoint_up` and `steerdns_pool_usable` from `snap`'s
/// health table (disabled endpoints count as down), and drop the series of
/// pools and endpoints `snap` no longer has. Call it after a (re)load and
/// whenever the prober changes an endpoint's state.
pub fn sync_health(metrics: &Metrics, snap: &Snapshot) {
    sync_health_with(metrics, snap, &snap.health);
}

/// [`sync_health`] with another health table (the prober's, if it keeps
/// its own across reloads).
pub fn sync_health_with(metrics: &Metrics, snap: &Snapshot, health: &HealthTable) {
    let inputs = Inputs {
        pools: &snap.pools,
        health,
    };
    for (i, p) in snap.pools.iter().enumerate() {
        for e in p.endpoints.iter() {
            metrics.set_endpoint_up(&p.name, &e.label, e.enabled && health.verdict_up(e.id));
        }
        metrics.set_pool_usable(&p.name, inputs.pool_usable(i as PoolId));
    }
    metrics.retain_endpoints(snap.pools.iter().flat_map(|p| {
        p.endpoints
            .iter()
            .map(move |e| (p.name.as_str(), e.label.as_str()))
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn example() -> Snapshot {
        crate::app::load_snapshot(Path::new("config/example.toml"), 1).expect("example config")
    }

    #[test]
    fn slots_cover_zones_and_balanced_names() {
        let snap = example();
        let m = Metrics::new().unwrap();
        let slots = SnapshotSlots::new(&m, &snap);
        let zi = snap.zones.zones.len() as u32;
        assert!(zi >= 1);
        let z = slots.zone(Some(0));
        assert_ne!(z, NO_ZONE_SLOT);
        assert_eq!(slots.zone(None), NO_ZONE_SLOT);
        assert_eq!(slots.zone(Some(zi + 10)), NO_ZONE_SLOT);
        // Building again (a reload) finds the same slots.
        let again = SnapshotSlots::new(&m, &snap);
        assert_eq!(again.zone(Some(0)), z);

        let b = snap
            .balancers
            .iter()
            .position(|x| x.name == "www.lb.example.com.")
            .expect("www is balanced") as u32;
        let eu = snap.pool_ids["eu"];
        let slot = slots.answer(b, Some(eu)).expect("eu is reachable");
        assert_eq!(again.answer(b, Some(eu)), Some(slot));
        assert!(slots.answer(b, None).is_some());
        assert_eq!(slots.answer(99, Some(eu)), None);
        slots.record_answer(&m, b, Some(eu), Mode::Fallback);
        assert_eq!(m.answers().count(slot, AnswerMode::Fallback), 1);

        let text = m.render();
        assert!(
            text.contains(&format!(
                "steerdns_balancer_answers_total{{mode=\"fallback\",name=\"{}\",pool=\"eu\"}} 1",
                snap.balancers[b as usize].name
            )),
            "{text}"
        );
    }

    #[test]
    fn health_gauges_follow_the_table() {
        let snap = example();
        let m = Metrics::new().unwrap();
        m.set_endpoint_up("gone", "old", true);
        sync_health(&m, &snap);
        let eu = &snap.pools[snap.pool_ids["eu"] as usize];
        for e in eu.endpoints.iter() {
            snap.health.set(e.id, false);
        }
        sync_health(&m, &snap);
        let text = m.render();
        assert!(
            text.contains("steerdns_pool_usable{pool=\"eu\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("steerdns_pool_usable{pool=\"na\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "steerdns_endpoint_up{{endpoint=\"{}\",pool=\"eu\"}} 0",
                eu.endpoints[0].label
            )),
            "{text}"
        );
        assert!(!text.contains("pool=\"gone\""), "{text}");
    }

    #[test]
    fn conversions() {
        assert_eq!(AnswerMode::from(Mode::FailOpen), AnswerMode::FailOpen);
        assert_eq!(
            GeoResult::from(LocationSource::Override),
            GeoResult::Override
        );
        assert_eq!(
            GeoResult::from(LocationSource::Unknown),
            GeoResult::NotFound
        );
    }
}
