//! `[cluster]` and the `quorum` key of monitors, as read from TOML.

use serde::Deserialize;
use toml::Spanned;

use super::duration::Duration;
use super::raw::SString;

/// `[cluster]`: the other steerdns nodes this one shares verdicts with.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name among its peers (default: `server.node_name`).
    pub node_name: Option<SString>,
    /// The other nodes.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Bearer token peers send when pulling verdicts (and that this node
    /// requires of them). The same on every node.
    pub token: Option<SString>,
    /// How often each peer is pulled (default 2s).
    pub pull_interval: Option<Spanned<Duration>>,
    /// Deadline of one pull, connect to last byte (default: half the
    /// interval, at most 2s).
    pub pull_timeout: Option<Spanned<Duration>>,
    /// A peer whose last good pull is older than this is stale and does
    /// not vote (default: 3 pull intervals).
    pub stale_after: Option<Spanned<Duration>>,
    /// File keeping drain and forced states across restarts (relative to
    /// the config file's directory). Without it they live in memory only.
    pub state_file: Option<SString>,
}

/// One `[[cluster.peers]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's node name (a metrics label).
    pub name: SString,
    /// Base URL of its HTTP API, `http://10.0.0.2:9153`.
    pub url: SString,
}

/// `quorum` of a monitor: how many fresh verdicts must say down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuorumConfig {
    /// This node's own verdict alone (the default).
    #[default]
    Local,
    /// More than half of the fresh verdicts, own included.
    Majority,
    /// At least this many fresh verdicts (capped at the number of fresh
    /// verdicts, so a node alone uses its own view).
    AtLeast(u32),
}

// Not part of a monitor's fingerprint: how verdicts combine does not
// change what a probe sees, so a quorum change keeps health.
impl std::hash::Hash for QuorumConfig {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl<'de> Deserialize<'de> for QuorumConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = QuorumConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"local\", \"majority\" or a number of nodes (at least 1)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<QuorumConfig, E> {
                match v {
                    "local" => Ok(QuorumConfig::Local),
                    "majority" => Ok(QuorumConfig::Majority),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<QuorumConfig, E> {
                match u32::try_from(v) {
                    Ok(n) if n >= 1 => Ok(QuorumConfig::AtLeast(n)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<QuorumConfig, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
        }
        d.deserialize_any(V)
    }
}
