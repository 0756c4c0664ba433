//! Probe targets by endpoint id: the status page and `explain` look up the
//! probe of every endpoint they show, so a linear search per endpoint would
//! make a page quadratic in the number of endpoints.

use crate::health::ProbeTarget;
use crate::select::EndpointId;
use crate::snapshot::Snapshot;

/// `snap.probes` indexed by endpoint id, built in one pass over the probes
/// of one snapshot (so every lookup sees that snapshot's probes).
pub(crate) struct ProbeIndex<'a> {
    probes: &'a [ProbeTarget],
    /// Endpoint id -> index into `probes`, `NONE` when not probed.
    slots: Vec<u32>,
}

const NONE: u32 = u32::MAX;

impl<'a> ProbeIndex<'a> {
    /// Index `snap`'s probes.
    pub(crate) fn new(snap: &'a Snapshot) -> Self {
        Self::over(&snap.probes)
    }

    fn over(probes: &'a [ProbeTarget]) -> Self {
        let len = probes
            .iter()
            .map(|t| t.endpoint as usize + 1)
            .max()
            .unwrap_or(0);
        let mut slots = vec![NONE; len];
        for (i, t) in probes.iter().enumerate() {
            // The first probe of an endpoint wins, as the linear search did.
            let slot = &mut slots[t.endpoint as usize];
            if *slot == NONE {
                *slot = i as u32;
            }
        }
        ProbeIndex { probes, slots }
    }

    /// The probe of endpoint `id`, if it is monitored.
    pub(crate) fn get(&self, id: EndpointId) -> Option<&'a ProbeTarget> {
        match self.slots.get(id as usize) {
            Some(&i) if i != NONE => Some(&self.probes[i as usize]),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(endpoint: u32, key: &str) -> ProbeTarget {
        ProbeTarget {
            endpoint,
            pool: 0,
            monitor: 0,
            addr: "127.0.0.1:80".parse().unwrap(),
            host: None,
            key: key.into(),
            monitor_hash: 0,
        }
    }

    #[test]
    fn finds_each_probe_by_endpoint_id() {
        let probes = vec![
            target(7, "a"),
            target(2, "b"),
            target(7, "c"),
            target(0, "d"),
        ];
        let index = ProbeIndex::over(&probes);
        assert_eq!(
            index.get(7).map(|t| t.key.as_str()),
            Some("a"),
            "first wins"
        );
        assert_eq!(index.get(2).map(|t| t.key.as_str()), Some("b"));
        assert_eq!(index.get(0).map(|t| t.key.as_str()), Some("d"));
        for unprobed in [1, 3, 6, 8, 1000, u32::MAX] {
            assert!(index.get(unprobed).is_none(), "{unprobed}");
        }
        assert!(ProbeIndex::over(&[]).get(0).is_none());
    }

    #[test]
    fn agrees_with_a_linear_search_on_the_example() {
        let snap = crate::reload::load_snapshot(std::path::Path::new("config/example.toml"), 1)
            .expect("example config");
        assert!(!snap.probes.is_empty());
        let index = ProbeIndex::new(&snap);
        for e in snap.pools.iter().flat_map(|p| p.endpoints.iter()) {
            let linear = snap.probes.iter().find(|t| t.endpoint == e.id);
            assert_eq!(index.get(e.id).map(|t| &t.key), linear.map(|t| &t.key));
        }
    }
}
