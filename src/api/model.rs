//! The data the API serves: what an [`ApiBackend`](super::ApiBackend)
//! reports. All times are Unix seconds.

use serde::{Deserialize, Serialize};

/// State of the whole server, for `GET /api/v1/status` and the status page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// `server.node_name`.
    pub node_name: String,
    /// steerdns version.
    pub version: String,
    /// The config generation serving now (1 for the first load).
    pub generation: u64,
    /// The config file it came from.
    pub config_file: String,
    /// When the process started.
    pub started_at: u64,
    /// The last reload attempt, if any since start.
    pub last_reload: Option<LastReload>,
    /// Every configured pool, in config order.
    pub pools: Vec<PoolStatus>,
}

/// The result of the last reload attempt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LastReload {
    /// When it was attempted.
    pub at: u64,
    /// Whether it succeeded (on failure the previous config keeps serving).
    pub ok: bool,
    /// The generation serving after it.
    pub generation: u64,
    /// The errors, when it failed.
    pub errors: Vec<String>,
}

/// One pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolStatus {
    /// Pool name.
    pub name: String,
    /// Whether at least `min_healthy` enabled endpoints are up.
    pub usable: bool,
    /// `min_healthy` from the config.
    pub min_healthy: u32,
    /// Its endpoints, in config order.
    pub endpoints: Vec<EndpointStatus>,
}

/// Health of one endpoint as the hot path sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointState {
    /// Probes pass (or there is no monitor: counted as up).
    Up,
    /// Probes fail.
    Down,
    /// Not probed yet.
    #[default]
    Unknown,
    /// `enabled = false` in the config.
    Disabled,
    /// Drained by the operator: out of answers, still probed, no alert.
    Drained,
}

impl EndpointState {
    /// The lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Up => "up",
            EndpointState::Down => "down",
            EndpointState::Unknown => "unknown",
            EndpointState::Disabled => "disabled",
            EndpointState::Drained => "drained",
        }
    }
}

/// One endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointStatus {
    /// Endpoint name (defaults to its address in the config).
    pub name: String,
    /// Address or host name it answers with.
    pub address: String,
    /// `enabled` from the config.
    pub enabled: bool,
    /// Whether answers count it as up.
    pub up: bool,
    /// Up, down, unknown or disabled.
    pub state: EndpointState,
    /// Why: the last probe's result (`"connect timeout after 2s"`, …).
    pub reason: Option<String>,
    /// When it was last probed.
    pub last_probe_at: Option<u64>,
    /// When its state last changed ("since").
    pub last_change_at: Option<u64>,
    /// The monitor probing it (`"tcp:443"`, `"http GET /health"`, …).
    pub monitor: Option<String>,
}

/// The answer to `POST /api/v1/reload`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadOutcome {
    /// Whether the new config is serving.
    pub ok: bool,
    /// The generation serving now (unchanged on failure).
    pub generation: u64,
    /// Every error, when it failed.
    pub errors: Vec<String>,
}
