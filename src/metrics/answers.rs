//! `steerdns_balancer_answers_total`: answers of balanced names by pool
//! and mode, counted through slots resolved when a config is compiled.

use std::sync::Mutex;

use prometheus::core::Desc;
use prometheus::proto::{MetricFamily, MetricType};
use tracing::warn;

use super::family::{counter_metric, desc, family, label};
use super::labels::NO_ZONE;
use super::sharded::Sharded;
use super::slot_table::{SlotTable, lock};

/// Most balancer answer slots (name, pool pairs).
const MAX_ANSWER_SLOTS: usize = 1 << 16;

const ANSWERS: &str = "steerdns_balancer_answers_total";
const ANSWERS_HELP: &str = "Answers for balanced names, by name, pool and mode (normal, fallback: the fallback pool answered, fail_open: nothing was usable and all enabled endpoints were answered, nodata).";

/// How a balanced name's answer was reached (mirrors `select::Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerMode {
    /// A listed pool was usable.
    Normal,
    /// The fallback pool answered.
    Fallback,
    /// Nothing was usable; answered as if all enabled endpoints were up.
    FailOpen,
    /// Nothing was usable; answered NODATA.
    Nodata,
}

pub(super) const MODES: [&str; 4] = ["normal", "fallback", "fail_open", "nodata"];

impl AnswerMode {
    fn index(self) -> usize {
        match self {
            AnswerMode::Normal => 0,
            AnswerMode::Fallback => 1,
            AnswerMode::FailOpen => 2,
            AnswerMode::Nodata => 3,
        }
    }
}

/// A (balanced name, pool) pair resolved ahead of time; see
/// [`BalancerCounters::answer_slot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnswerSlot(u32);

/// Lock-free `steerdns_balancer_answers_total{name, pool, mode}`.
pub struct BalancerCounters {
    counts: Sharded,
    slots: Mutex<SlotTable<(String, String)>>,
    pub(super) desc: Desc,
}

impl BalancerCounters {
    pub(super) fn new() -> Self {
        BalancerCounters {
            counts: Sharded::new(MAX_ANSWER_SLOTS * MODES.len()),
            slots: Mutex::new(SlotTable::default()),
            desc: desc(ANSWERS, ANSWERS_HELP, &["name", "pool", "mode"]),
        }
    }

    /// The slot of answers for balanced `name` from `pool` (`None`: no pool,
    /// as for NODATA), allocated on first use and never freed. Call it when
    /// compiling a config, for each pool a name can answer from (its listed
    /// pools and its fallback), not per query. Past [`MAX_ANSWER_SLOTS`]
    /// pairs, returns a slot that counts nothing (with a warning).
    pub fn answer_slot(&self, name: &str, pool: Option<&str>) -> AnswerSlot {
        let key = (name.to_string(), pool.unwrap_or(NO_ZONE).to_string());
        let mut t = lock(&self.slots);
        match t.slot(key, MAX_ANSWER_SLOTS) {
            Some(s) => {
                self.counts.ensure((s as usize + 1) * MODES.len());
                AnswerSlot(s)
            }
            None => {
                warn!(
                    name,
                    "too many balancer answer slots for metrics; not counted"
                );
                AnswerSlot(u32::MAX)
            }
        }
    }

    /// Count one answer. Lock-free and allocation-free.
    #[inline]
    pub fn record_answer(&self, slot: AnswerSlot, mode: AnswerMode) {
        if slot.0 == u32::MAX {
            return;
        }
        self.counts
            .add(slot.0 as usize * MODES.len() + mode.index(), 1);
    }

    /// Answers counted for `slot` in `mode`.
    pub fn count(&self, slot: AnswerSlot, mode: AnswerMode) -> u64 {
        if slot.0 == u32::MAX {
            return 0;
        }
        self.counts
            .sum(slot.0 as usize * MODES.len() + mode.index())
    }

    pub(super) fn families(&self) -> Vec<MetricFamily> {
        let keys = lock(&self.slots).keys.clone();
        let mut metrics = Vec::new();
        for (s, (name, pool)) in keys.iter().enumerate() {
            for (m, mode) in MODES.iter().enumerate() {
                let v = self.counts.sum(s * MODES.len() + m);
                // Normal answers are always shown, so every pair has a series.
                if v == 0 && m != 0 {
                    continue;
                }
                metrics.push(counter_metric(
                    vec![
                        label("mode", mode),
                        label("name", name),
                        label("pool", pool),
                    ],
                    v,
                ));
            }
        }
        if metrics.is_empty() {
            return Vec::new();
        }
        vec![family(ANSWERS, ANSWERS_HELP, MetricType::COUNTER, metrics)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_per_mode() {
        let b = BalancerCounters::new();
        let eu = b.answer_slot("www.example.", Some("eu"));
        assert_eq!(b.answer_slot("www.example.", Some("eu")), eu, "stable");
        let none = b.answer_slot("www.example.", None);
        assert_ne!(eu, none);
        b.record_answer(eu, AnswerMode::Fallback);
        b.record_answer(eu, AnswerMode::Fallback);
        b.record_answer(none, AnswerMode::Nodata);
        assert_eq!(b.count(eu, AnswerMode::Fallback), 2);
        assert_eq!(b.count(eu, AnswerMode::Normal), 0);
        assert_eq!(b.count(none, AnswerMode::Nodata), 1);
        // The slot past the cap counts nothing and reads zero.
        let full = AnswerSlot(u32::MAX);
        b.record_answer(full, AnswerMode::Normal);
        assert_eq!(b.count(full, AnswerMode::Normal), 0);
    }
}
