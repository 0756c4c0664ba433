//! The probe schedule: each endpoint fires once per interval at a fixed
//! offset from a hash of its identity, and its slot (due time, probe in
//! flight, place in line) survives reloads that keep its probe key.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use tokio::time::Instant;

use super::status::HealthStatus;
use crate::snapshot::Snapshot;

pub(super) fn offset_for(key: &str, interval: Duration) -> Duration {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

/// Shortest time between two dispatch rounds of the scheduler.
pub(super) const DISPATCH_TICK: Duration = Duration::from_millis(20);

/// The schedule of one probed endpoint. A slot outlives reloads: when the
/// endpoint's probe key is unchanged, the new snapshot's target takes over
/// the slot with its due time, its probe in flight and its place in line.
pub(super) struct Slot {
    /// Stable across reloads; results and the waiting line name slots by it.
    pub(super) id: u64,
    /// Index into the current snapshot's probes.
    pub(super) target: usize,
    pub(super) due: Instant,
    pub(super) in_flight: bool,
    /// Waiting for a free probe slot.
    pub(super) queued: bool,
}

/// Every slot of the current snapshot and where to find each by id.
pub(super) struct Schedule {
    /// When the prober started: new endpoints fire at `epoch + offset + k *
    /// interval`, a point fixed in time, so (re)adding an endpoint during a
    /// reload storm does not push its first probe back at every reload.
    pub(super) epoch: Instant,
    pub(super) slots: Vec<Slot>,
    pub(super) by_id: HashMap<u64, usize>,
    pub(super) next_id: u64,
}

impl Schedule {
    pub(super) fn new(snap: &Snapshot, status: &HealthStatus) -> Self {
        let mut s = Schedule {
            epoch: Instant::now(),
            slots: Vec::new(),
            by_id: HashMap::new(),
            next_id: 0,
        };
        s.reload(None, snap, status);
        s
    }

    /// Take over the targets of `snap`. Endpoints whose probe key is in
    /// `old` (the previous snapshot) keep their slot (due time, probe in
    /// flight, place in line); new ones get a slot at their next offset.
    pub(super) fn reload(
        &mut self,
        old: Option<&Snapshot>,
        snap: &Snapshot,
        status: &HealthStatus,
    ) {
        let now = Instant::now();
        let keys: HashMap<&str, ()> = snap.probes.iter().map(|t| (t.key.as_str(), ())).collect();
        status.retain(&keys);
        // Old slots by key; a key could (in theory) repeat, so keep a list
        // and hand them out in order.
        let mut old_slots: HashMap<&str, std::collections::VecDeque<Slot>> = HashMap::new();
        if let Some(old) = old {
            for slot in std::mem::take(&mut self.slots) {
                if let Some(t) = old.probes.get(slot.target) {
                    old_slots.entry(t.key.as_str()).or_default().push_back(slot);
                }
            }
        }
        let mut slots = Vec::with_capacity(snap.probes.len());
        for (i, t) in snap.probes.iter().enumerate() {
            if let Some(mut slot) = old_slots
                .get_mut(t.key.as_str())
                .and_then(|q| q.pop_front())
            {
                slot.target = i;
                slots.push(slot);
                continue;
            }
            let interval = snap.monitors[t.monitor as usize].interval;
            let id = self.next_id;
            self.next_id += 1;
            slots.push(Slot {
                id,
                target: i,
                due: next_phase(self.epoch, offset_for(&t.key, interval), interval, now),
                in_flight: false,
                queued: false,
            });
        }
        self.slots = slots;
        self.by_id = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
    }

    pub(super) fn heap(&self) -> BinaryHeap<Reverse<(Instant, usize)>> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| Reverse((s.due, i)))
            .collect()
    }

    pub(super) fn index(&self, id: u64) -> Option<usize> {
        self.by_id.get(&id).copied()
    }
}

/// The first `epoch + offset + k * interval` (k ≥ 0) not before `now`.
pub(super) fn next_phase(
    epoch: Instant,
    offset: Duration,
    interval: Duration,
    now: Instant,
) -> Instant {
    let first = epoch + offset;
    if now <= first {
        return first;
    }
    let step = interval.as_nanos().max(1);
    let behind = (now - first).as_nanos();
    let k = behind.div_ceil(step);
    let ahead = u64::try_from(k * step).unwrap_or(u64::MAX);
    first + Duration::from_nanos(ahead)
}
