//! Prometheus metrics.
//!
//! [`Metrics`] owns its own [`prometheus::Registry`] (no global state: tests
//! run several servers in one process). Per-query metrics never take a lock
//! and never allocate: label values are resolved to *slots* when a config is
//! compiled ([`QueryCounters::zone_slot`], [`BalancerCounters::answer_slot`]),
//! and the hot path adds to sharded, cache-line aligned atomic counters
//! ([`QueryCounters::record_query`], [`BalancerCounters::record_answer`],
//! [`Metrics::record_drop`], [`Metrics::record_geoip`]). A custom
//! [`Collector`] sums the shards at scrape time.
//!
//! Everything that is not per query (endpoint and pool state, probes,
//! reloads, build info) uses ordinary prometheus vectors.
//!
//! Label sets are bounded by construction: zones, names, pools and endpoints
//! come from the config (slots are allocated at compile time, never from a
//! query), qtype and rcode go through fixed tables with an `other` bucket,
//! and reasons and monitor types are `&'static str` (a fixed set chosen by
//! the code, never by input).
//!
//! The module is a leaf: it imports nothing from the rest of the crate.
//! Callers hand it label values ([`LabelSlots::new`]) and numbers.

mod answers;
mod family;
mod hot;
mod labels;
mod queries;
mod registry;
mod sharded;
mod slot_table;
mod slots;
#[cfg(test)]
mod tests;

pub use answers::{AnswerMode, AnswerSlot, BalancerCounters};
pub use hot::{DropReason, GeoResult};
pub use labels::{NO_ZONE, NO_ZONE_SLOT, Transport};
pub use queries::QueryCounters;
pub(crate) use registry::CONTENT_TYPE;
pub use registry::{Metrics, MetricsError};
pub use slots::{LabelSlots, NameLabels};
