//! The snapshot → metrics adapter: metrics is a leaf that knows no config,
//! so the serving code hands it the label values of each snapshot (zones,
//! balanced names, pools, endpoints) and converts its own enums.

use crate::geo::LocationSource;
use crate::metrics::{AnswerMode, GeoResult, LabelSlots, Metrics, NameLabels};
use crate::select::{Inputs, Mode, Policy, PoolId};
use crate::snapshot::Snapshot;

impl From<Mode> for AnswerMode {
    #[inline]
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
    #[inline]
    fn from(s: LocationSource) -> Self {
        match s {
            LocationSource::Unknown => GeoResult::NotFound,
            LocationSource::Database => GeoResult::Found,
            LocationSource::Override => GeoResult::Override,
        }
    }
}

fn pools_of(policy: &Policy) -> Vec<PoolId> {
    match policy {
        Policy::Failover(l) | Policy::Proximity(l) | Policy::Weighted(l) => l.to_vec(),
        Policy::Geo(map) => map.lists.iter().flat_map(|l| l.iter().copied()).collect(),
        Policy::Latency(l) => l.pools.to_vec(),
    }
}

/// The metric slots of every zone of `snap` (labelled by `Zone::display`)
/// and of every (balanced name, pool) pair it can answer with (by
/// `Balancer::name` and `Pool::name`, the fallback included).
pub(crate) fn slots(metrics: &Metrics, snap: &Snapshot) -> LabelSlots {
    let zones = snap.zones.zones.iter().map(|z| z.display.as_str());
    let names = snap.balancers.iter().map(|b| {
        let mut ids = pools_of(&b.policy);
        ids.extend(b.fallback);
        NameLabels {
            name: &b.name,
            pools: ids
                .into_iter()
                .filter_map(|p| Some((p, snap.pools.get(p as usize)?.name.as_str())))
                .collect(),
        }
    });
    LabelSlots::new(metrics, zones, names)
}

/// Set `steerdns_endpoint_up` and `steerdns_pool_usable` from `snap`'s
/// health table (disabled endpoints count as down), and drop the series of
/// pools and endpoints `snap` no longer has. Call it after a (re)load and
/// whenever the prober changes an endpoint's state.
pub fn sync_health(metrics: &Metrics, snap: &Snapshot) {
    let health = &snap.health;
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
    use crate::metrics::NO_ZONE_SLOT;
    use std::path::Path;

    fn example() -> Snapshot {
        let (source, file) = crate::config::load(Path::new("config/example.toml")).expect("loads");
        crate::snapshot::build(&source, &file, 1).expect("example config")
    }

    #[test]
    fn slots_cover_zones_and_balanced_names() {
        let snap = example();
        let m = Metrics::new().unwrap();
        let slots = slots(&m, &snap);
        let zi = snap.zones.zones.len() as u32;
        assert!(zi >= 1);
        let z = slots.zone(Some(0));
        assert_ne!(z, NO_ZONE_SLOT);
        assert_eq!(slots.zone(Some(zi + 10)), NO_ZONE_SLOT);

        let b = snap
            .balancers
            .iter()
            .position(|x| x.name == "www.lb.example.com.")
            .expect("www is balanced") as u32;
        let www = &snap.balancers[b as usize];
        // Every listed pool and the fallback have a slot, nothing else.
        let mut reachable = pools_of(&www.policy);
        reachable.extend(www.fallback);
        for p in 0..snap.pools.len() as PoolId {
            assert_eq!(
                slots.answer(b, Some(p)).is_some(),
                reachable.contains(&p),
                "pool {}",
                snap.pools[p as usize].name
            );
        }
        let eu = snap.pool_ids["eu"];
        slots.record_answer(&m, b, Some(eu), Mode::Fallback.into());
        let text = m.render();
        assert!(
            text.contains(&format!(
                "steerdns_balancer_answers_total{{mode=\"fallback\",name=\"{}\",pool=\"eu\"}} 1",
                www.name
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
        assert_eq!(AnswerMode::from(Mode::Nodata), AnswerMode::Nodata);
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
