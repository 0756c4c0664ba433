//! A fleet that agrees: each node publishes its own probe verdicts, pulls
//! its peers' on a short interval, and writes the combination (quorum,
//! drain, forced states) into the snapshot's health atomics, which the hot
//! path reads as before. No consensus protocol and no shared store: fresh
//! verdicts only, and a node that reaches no peer says so and uses its own.
//!
//! - [`quorum`]: the pure combination (unit and property tests).
//! - [`wire`]: the compact exchange format.
//! - [`admin`]: drain / force states, last writer wins, the state file.
//! - [`peer`]: the HTTP pull.
//! - [`metrics`]: the cluster's Prometheus series.
//! - `runtime`: the runtime ([`Cluster`]) and its loop — one task pulls
//!   every peer each `pull_interval`, then recomputes; admin state changes.
//! - `exchange`: publishing this node's verdicts and taking in peers'.
//! - `tables`: the per-snapshot layout and what is known of each peer.
//! - `combine`: every endpoint's combined state written into the health
//!   atomics, the latency orders, and the [`Resolver`](crate::probe::Resolver)
//!   the prober writes through.
//! - `status`: the `GET /api/v1/cluster` view.

pub mod admin;
mod combine;
pub mod ctl;
mod exchange;
pub mod metrics;
pub mod peer;
pub mod quorum;
mod runtime;
mod status;
mod tables;
pub mod wire;

use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

pub use combine::pool_rtts_from;
pub use runtime::{AdminError, Cluster};

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The stable key of an endpoint among nodes: `pool/endpoint`.
pub fn endpoint_key(pool: &str, endpoint: &str) -> String {
    format!("{pool}/{endpoint}")
}
