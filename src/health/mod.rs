//! Endpoint health as the hot path sees it: one atomic per endpoint.
//!
//! The prober ([`crate::probe`]) is each slot's only writer; endpoints start up
//! ("unknown, answered as if up") until their first probe result.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// The verdict bit of a health slot: answered as up.
const UP: u8 = 1;
/// The drain bit: no new answers, whatever the verdict (`fail-open` too).
const DRAINED: u8 = 2;

/// Up/down state of every endpoint, indexed by `EndpointId`: one byte
/// each, a verdict bit and a drain bit, read with one relaxed load.
#[derive(Debug)]
pub struct HealthTable {
    slots: Box<[AtomicU8]>,
    /// Bumped whenever a slot changes, so caches of answers (response
    /// templates) know when health may answer differently.
    generation: AtomicU64,
}

impl HealthTable {
    /// A table of `n` endpoints, all up.
    pub(crate) fn all_up(n: usize) -> Self {
        HealthTable {
            slots: (0..n).map(|_| AtomicU8::new(UP)).collect(),
            generation: AtomicU64::new(0),
        }
    }

    fn load(&self, id: u32) -> u8 {
        self.slots
            .get(id as usize)
            .map_or(DRAINED, |a| a.load(Ordering::Relaxed))
    }

    /// Whether endpoint `id` may be answered: up and not drained (unknown
    /// ids are not).
    #[inline]
    pub(crate) fn is_up(&self, id: u32) -> bool {
        self.load(id) == UP
    }

    /// Whether endpoint `id` is drained (taken out of answers on purpose).
    #[inline]
    pub(crate) fn is_drained(&self, id: u32) -> bool {
        self.load(id) & DRAINED != 0
    }

    /// The verdict alone, drain ignored (what metrics export as
    /// `steerdns_endpoint_up`: a drained endpoint is still probed).
    pub(crate) fn verdict_up(&self, id: u32) -> bool {
        self.load(id) & UP != 0
    }

    /// Set endpoint `id` up or down (and not drained).
    pub fn set(&self, id: u32, up: bool) {
        self.set_state(id, up, false);
    }

    /// Set endpoint `id`'s verdict and drain bit at once.
    pub(crate) fn set_state(&self, id: u32, up: bool, drained: bool) {
        if let Some(a) = self.slots.get(id as usize) {
            let v = if up { UP } else { 0 } | if drained { DRAINED } else { 0 };
            // The slot first, then the generation (Release): a reader
            // that sees the new generation (Acquire) sees the new slot.
            if a.swap(v, Ordering::Relaxed) != v {
                self.generation.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// Changes so far: equal before and after an answer, no slot changed
    /// in between.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

pub mod spec;
pub(crate) mod state;
mod status;
pub mod tls;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::raw::MonitorKind;

/// A compiled `[monitors.name]`.
#[derive(Debug)]
pub struct Monitor {
    pub(crate) name: String,
    /// Kind, for logs and metrics labels.
    pub(crate) kind: MonitorKind,
    /// What one probe does.
    pub(crate) spec: Arc<spec::CheckSpec>,
    /// Time between probes of one endpoint.
    pub(crate) interval: Duration,
    /// Consecutive successes to become up.
    pub(crate) rise: u32,
    /// Consecutive failures to become down.
    pub(crate) fall: u32,
    /// How the cluster's verdicts combine.
    pub(crate) quorum: crate::config::cluster::QuorumConfig,
}

/// One endpoint to probe.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// The endpoint's slot in the health table.
    pub(crate) endpoint: u32,
    pub(crate) pool: u32,
    /// Index into the snapshot's monitors.
    pub(crate) monitor: u32,
    /// Address and port probed.
    pub(crate) addr: SocketAddr,
    /// The endpoint's host name, if it has one (Host header, SNI).
    pub(crate) host: Option<String>,
    /// Stable identity across reloads: pool, endpoint, probe address,
    /// monitor name and a fingerprint of its settings. Health carries over
    /// a reload exactly when this is unchanged.
    pub key: String,
    /// Fingerprint of the monitor's settings (not of the probed address):
    /// peers count each other's verdicts only when it matches.
    pub(crate) monitor_hash: u64,
}
