//! Endpoint health as the hot path sees it: one atomic per endpoint.
//!
//! The prober ([`prober`]) is each slot's only writer; endpoints start up
//! ("unknown, answered as if up") until their first probe result.

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

pub mod check;
pub mod notify;
pub mod prober;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::raw::MonitorKind;

/// A compiled `[monitors.name]`.
#[derive(Debug)]
pub struct Monitor {
    /// Name from the config.
    pub name: String,
    /// Kind, for logs and metrics labels.
    pub kind: MonitorKind,
    /// What one probe does.
    pub spec: Arc<check::CheckSpec>,
    /// Time between probes of one endpoint.
    pub interval: Duration,
    /// Consecutive successes to become up.
    pub rise: u32,
    /// Consecutive failures to become down.
    pub fall: u32,
}

/// One endpoint to probe.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// The endpoint's slot in the health table.
    pub endpoint: u32,
    /// Its pool.
    pub pool: u32,
    /// Index into the snapshot's monitors.
    pub monitor: u32,
    /// Address and port probed.
    pub addr: SocketAddr,
    /// The endpoint's host name, if it has one (Host header, SNI).
    pub host: Option<String>,
    /// Stable identity across reloads: pool, endpoint, probe address,
    /// monitor name and a fingerprint of its settings. Health carries over
    /// a reload exactly when this is unchanged.
    pub key: String,
}
