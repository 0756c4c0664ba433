//! The read-only runtime snapshot: everything a query needs, behind one
//! pointer, and the compiler that builds it from a parsed config.

pub(crate) mod anycast;
mod build;
mod checks;
pub mod cluster;
mod geo;
mod geo_map;
mod monitors;
mod names;
mod notify;
mod parse;
mod pools;
mod probes;
mod protect;
mod settings;
#[cfg(test)]
mod testing;
mod zone_tree;
mod zones;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) use build::build_reusing;
pub use build::{GeoMode, build, build_with_geo};
pub use settings::{DnsCpus, Settings};

use crate::geo::GeoDb;
use crate::health::{HealthTable, Monitor, ProbeTarget};
use crate::select::{Balancer, Compiled, Pool, PoolId};
use crate::zone::ZoneTable;

/// Everything a query needs, immutable once built (health is atomics).
pub struct Snapshot {
    /// Counts reloads: 1 for the first config.
    pub generation: u64,
    /// The config file this came from.
    pub source: PathBuf,
    /// Server settings.
    pub settings: Settings,
    /// Zones and their records.
    pub zones: ZoneTable,
    /// Balanced names, indexed by `BalancerId`.
    pub balancers: Vec<Balancer>,
    /// Compiled decision tries, indexed like `balancers` (`None` for
    /// policies that do not depend on the client, and when over budget).
    pub decisions: Vec<Option<Compiled>>,
    /// Pools, indexed by `PoolId`.
    pub pools: Vec<Pool>,
    /// Pool ids by name.
    pub pool_ids: HashMap<String, PoolId>,
    /// Geo lookups.
    pub geo: Arc<GeoDb>,
    /// Endpoint health.
    pub health: Arc<HealthTable>,
    /// Health monitors.
    pub monitors: Vec<Monitor>,
    /// Every probed endpoint.
    pub probes: Vec<ProbeTarget>,
    /// Webhook settings.
    pub notify: NotifySettings,
    /// Warnings about geo rules the databases cannot match
    /// (`file:line:col: key: warning: ...`); also logged.
    pub geo_warnings: Vec<String>,
    /// `[cluster]`: peers, token, pull timing, state file.
    pub cluster: cluster::ClusterSettings,
}

/// `[notify]` compiled.
#[derive(Debug, Clone, Default)]
pub struct NotifySettings {
    /// Webhook targets, headers, token and TLS settings.
    pub webhooks: crate::health::webhook::Webhooks,
    /// Queue length.
    pub queue_size: usize,
    /// Attempts per event and URL.
    pub attempts: u32,
}
