//! The read-only runtime snapshot: everything a query needs, behind one
//! pointer, and the compiler that builds it from a parsed config.

pub mod cluster;
mod compile;
mod monitors;
mod protect;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use compile::{GeoMode, build, build_reusing, build_with_geo, open_geo, open_geo_reusing};

use crate::geo::GeoDb;
use crate::health::{HealthTable, Monitor, ProbeTarget};
use crate::select::{Balancer, Compiled, Pool, PoolId};
use crate::zone::ZoneTable;

/// Server settings from `[server]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// DNS listen addresses.
    pub dns_listen: Vec<SocketAddr>,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// UDP sockets per listen address (0 = one per core).
    pub udp_workers: usize,
    /// Largest UDP response.
    pub max_udp_payload: u16,
    /// Locate clients by EDNS Client Subnet.
    pub ecs: bool,
    /// Node name (NSID, `id.server`, `hostname.bind`).
    pub node_name: String,
    /// Answer to `version.bind`, if any.
    pub version: Option<String>,
    /// TCP idle timeout.
    pub tcp_idle_timeout: Duration,
    /// TCP connection cap.
    pub tcp_max_connections: usize,
    /// Seed for weighted picks.
    pub random_seed: Option<u64>,
    /// Bearer token of the mutating API endpoints.
    pub api_token: Option<String>,
    /// Probes running at once.
    pub max_concurrent_probes: usize,
    /// Fraction of queries logged.
    pub query_log_sample: f64,
    /// File watch period (zero: off).
    pub watch_interval: Duration,
    /// `[anycast]`, when configured (read at start only).
    pub anycast: Option<crate::anycast::AnycastSettings>,
    /// Response rate limiting (`[rrl]`), when on.
    pub rrl: Option<crate::rrl::Limits>,
    /// TCP connections per client network.
    pub tcp_max_per_client: usize,
    /// TCP idle timeout while the connection cap is near.
    pub tcp_busy_idle_timeout: Duration,
    /// DNS Cookie secrets (`[cookies]`), when cookies are on.
    pub cookies: Option<Arc<crate::cookie::Secrets>>,
}

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
    pub webhooks: crate::probe::notify::Webhooks,
    /// Queue length.
    pub queue_size: usize,
    /// Attempts per event and URL.
    pub attempts: u32,
}
