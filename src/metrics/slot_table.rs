//! Label values resolved to dense slots, off the hot path.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (they
    // only guard label tables), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Label values allocated to slots; touched at compile and scrape time only.
#[derive(Default)]
pub(super) struct SlotTable<K> {
    by_key: HashMap<K, u32>,
    pub(super) keys: Vec<K>,
}

impl<K: Clone + Eq + std::hash::Hash> SlotTable<K> {
    pub(super) fn slot(&mut self, key: K, max: usize) -> Option<u32> {
        if let Some(&s) = self.by_key.get(&key) {
            return Some(s);
        }
        if self.keys.len() >= max {
            return None;
        }
        let s = u32::try_from(self.keys.len()).ok()?;
        self.keys.push(key.clone());
        self.by_key.insert(key, s);
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_and_bounded() {
        let mut t = SlotTable::default();
        assert_eq!(t.slot("a", 2), Some(0));
        assert_eq!(t.slot("b", 2), Some(1));
        assert_eq!(t.slot("a", 2), Some(0), "a known key keeps its slot");
        assert_eq!(t.slot("c", 2), None, "full");
        assert_eq!(t.keys, ["a", "b"]);
    }
}
