//! Label slots of one config: every zone and every (balanced name, pool)
//! pair resolved to its counter slot when the config is loaded, so a query
//! only indexes arrays. Built from plain label data, so this module knows
//! nothing of how a config is compiled.

use super::answers::AnswerSlot;
use super::labels::NO_ZONE_SLOT;
use super::queries::QueryCounters;
use super::{AnswerMode, Metrics};

/// The labels of one balanced name: its name and every pool it can answer
/// from, as (pool id, pool name). Ids are the caller's, passed back to
/// [`LabelSlots::answer`].
#[derive(Debug, Clone)]
pub struct NameLabels<'a> {
    /// The `name` label.
    pub name: &'a str,
    /// (pool id, `pool` label) pairs; duplicates are harmless.
    pub pools: Vec<(u32, &'a str)>,
}

/// The answer slots of one balanced name: (pool id, slot) pairs.
type NameSlots = Box<[(u32, AnswerSlot)]>;

/// Metric slots of one config's zones and balanced names. Build it when a
/// config is loaded (it takes the metrics' label locks) and publish it with
/// the config; lookups are array indexing and a short linear scan.
#[derive(Debug, Clone, Default)]
pub struct LabelSlots {
    /// Zone slot by zone index.
    zones: Box<[u32]>,
    /// By name index: (pool, slot) for every pool the name can answer from.
    answers: Box<[NameSlots]>,
    /// By name index: the slot for answers without a pool (NODATA).
    no_pool: Box<[AnswerSlot]>,
}

impl LabelSlots {
    /// Allocate (or find) the slots of `zones` (by index, as they appear in
    /// the `zone` label) and of every (name, pool) pair of `names` (by
    /// index), plus each name's pool-less slot.
    pub fn new<'a>(
        metrics: &Metrics,
        zones: impl IntoIterator<Item = &'a str>,
        names: impl IntoIterator<Item = NameLabels<'a>>,
    ) -> Self {
        let q: &QueryCounters = metrics.queries();
        let zones = zones.into_iter().map(|z| q.zone_slot(z)).collect();
        let (mut answers, mut no_pool) = (Vec::new(), Vec::new());
        for n in names {
            let mut pools = n.pools;
            pools.sort_unstable();
            pools.dedup();
            let slots: NameSlots = pools
                .into_iter()
                .map(|(id, pool)| (id, metrics.answers().answer_slot(n.name, Some(pool))))
                .collect();
            answers.push(slots);
            no_pool.push(metrics.answers().answer_slot(n.name, None));
        }
        LabelSlots {
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

    /// The slot for name index `name` answering from `pool` (`None`: no
    /// pool); `None` when the pair was not allocated.
    #[inline]
    pub(crate) fn answer(&self, name: u32, pool: Option<u32>) -> Option<AnswerSlot> {
        match pool {
            None => self.no_pool.get(name as usize).copied(),
            Some(p) => self
                .answers
                .get(name as usize)?
                .iter()
                .find(|(q, _)| *q == p)
                .map(|&(_, s)| s),
        }
    }

    /// Count one balanced answer: [`LabelSlots::answer`] then
    /// [`super::BalancerCounters::record_answer`]. Lock- and allocation-free.
    #[inline]
    pub(crate) fn record_answer(
        &self,
        metrics: &Metrics,
        name: u32,
        pool: Option<u32>,
        mode: AnswerMode,
    ) {
        if let Some(slot) = self.answer(name, pool) {
            metrics.answers().record_answer(slot, mode);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn www<'a>(pools: &[(u32, &'a str)]) -> NameLabels<'a> {
        NameLabels {
            name: "www.example.com.",
            pools: pools.to_vec(),
        }
    }

    #[test]
    fn slots_cover_zones_and_names() {
        let m = Metrics::new().unwrap();
        let names = || [www(&[(1, "na"), (0, "eu"), (1, "na")])];
        let slots = LabelSlots::new(&m, ["example.com.", "example.net."], names());
        let z = slots.zone(Some(0));
        assert_ne!(z, NO_ZONE_SLOT);
        assert_ne!(slots.zone(Some(1)), z);
        assert_eq!(slots.zone(None), NO_ZONE_SLOT);
        assert_eq!(slots.zone(Some(7)), NO_ZONE_SLOT);

        // Building again (a reload) finds the same slots.
        let again = LabelSlots::new(&m, ["example.com."], names());
        assert_eq!(again.zone(Some(0)), z);
        let eu = slots.answer(0, Some(0)).expect("eu");
        let na = slots.answer(0, Some(1)).expect("na");
        assert_ne!(eu, na);
        assert_eq!(again.answer(0, Some(0)), Some(eu));
        assert!(slots.answer(0, None).is_some());
        assert_eq!(slots.answer(0, Some(2)), None, "pool 2 was not listed");
        assert_eq!(slots.answer(9, Some(0)), None, "no name 9");

        slots.record_answer(&m, 0, Some(1), AnswerMode::Fallback);
        slots.record_answer(&m, 9, Some(1), AnswerMode::Fallback);
        assert_eq!(m.answers().count(na, AnswerMode::Fallback), 1);
        let text = m.render();
        assert!(
            text.contains(
                "steerdns_balancer_answers_total{mode=\"fallback\",name=\"www.example.com.\",pool=\"na\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn default_slots_count_nothing() {
        let m = Metrics::new().unwrap();
        let slots = LabelSlots::default();
        assert_eq!(slots.zone(Some(0)), NO_ZONE_SLOT);
        assert_eq!(slots.answer(0, None), None);
        slots.record_answer(&m, 0, None, AnswerMode::Nodata);
        assert!(!m.render().contains("steerdns_balancer_answers_total"));
    }
}
