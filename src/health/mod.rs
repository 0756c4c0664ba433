//! Endpoint health as the hot path sees it: one atomic per endpoint.
//!
//! The prober (a later piece of work) is each slot's only writer. Until it
//! exists every endpoint is up.

pub mod check;

use std::sync::atomic::{AtomicBool, Ordering};

/// Up/down state of every endpoint, indexed by `EndpointId`.
#[derive(Debug)]
pub struct HealthTable {
    up: Box<[AtomicBool]>,
}

impl HealthTable {
    /// A table of `n` endpoints, all up.
    pub fn all_up(n: usize) -> Self {
        HealthTable {
            up: (0..n).map(|_| AtomicBool::new(true)).collect(),
        }
    }

    /// Whether endpoint `id` is up (unknown ids are down).
    pub fn is_up(&self, id: u32) -> bool {
        self.up
            .get(id as usize)
            .is_some_and(|a| a.load(Ordering::Relaxed))
    }

    /// Set endpoint `id` up or down.
    pub fn set(&self, id: u32, up: bool) {
        if let Some(a) = self.up.get(id as usize) {
            a.store(up, Ordering::Relaxed);
        }
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.up.len()
    }

    /// True when there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.up.is_empty()
    }
}
