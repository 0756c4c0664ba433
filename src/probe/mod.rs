//! Health's runtime: the prober, one scheduler for every probe of every
//! endpoint, the probes themselves ([`check`]) and the webhooks ([`notify`]).
//! What a verdict is (table, hysteresis, monitor specs) lives in
//! [`crate::health`], which knows nothing of sockets or tasks.
//!
//! Each probed endpoint fires once per interval at a fixed offset derived
//! from a hash of its identity, so 10,000 endpoints at 10 s spread evenly
//! instead of bursting. Probes run as tokio tasks under a semaphore (bounded
//! concurrency), each with a hard deadline; an endpoint never has two probes
//! in flight, so a slow endpoint costs one slot until its timeout and skips
//! rounds rather than piling up. When every slot is busy, due endpoints wait
//! in a FIFO line (an index each, no parked task), so none starves, and the
//! wait is counted (`steerdns_probes_skipped_total{reason="busy"}`). Results go through hysteresis
//! ([`crate::health::state`]) and verdict changes are written to the current
//! snapshot's [`HealthTable`](crate::health::HealthTable) — the hot path only ever
//! reads those atomics.
//!
//! - `status`: [`HealthStatus`], the prober's state shared with the API,
//!   explain and the cluster, and the [`Resolver`] writes go through.
//! - `schedule`: when each endpoint fires (fixed offsets, slots kept
//!   across reloads).
//! - `prober`: the task ([`run`]) dispatching probes under the semaphore.
//! - `verdict`: one probe result through hysteresis into the health table,
//!   metrics, logs and webhooks.

pub mod check;
pub mod notify;
mod prober;
mod schedule;
mod status;
#[cfg(test)]
mod tests;
mod verdict;

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use prober::{ProberOptions, run};
pub(crate) use status::Resolver;
pub use status::{EndpointHealth, HealthStatus};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
