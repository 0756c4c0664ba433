//! The anycast state as the API, the status page and the CLI show it.

use serde::{Deserialize, Serialize};

/// The anycast state for the API, the status page and the CLI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnycastStatus {
    /// The prefixes gated.
    pub prefixes: Vec<String>,
    /// What steerdns wants: `withdrawn`, `hold_down`, `announced` or `draining`.
    pub state: String,
    /// Why it is not announced (the condition that failed), if so.
    pub reason: Option<String>,
    /// Unix time `state` last changed.
    pub since: u64,
    /// Whether BIRD confirmed the announcement (the guard's last report).
    pub announced: bool,
    /// The BIRD protocols toggled.
    pub bird_protocols: Vec<String>,
    /// The BIRD control socket.
    pub bird_socket: String,
    /// The last error talking to BIRD, cleared by the next success.
    pub bird_error: Option<String>,
    /// The guard process, while it runs.
    pub guard_pid: Option<u32>,
    /// Hold-down, seconds.
    pub hold_down_secs: f64,
    /// Lame-duck drain, seconds.
    pub drain_secs: f64,
    /// Self-checks that passed since start.
    pub self_checks_ok: u64,
    /// Self-checks that failed since start.
    pub self_checks_failed: u64,
    /// The last self-check.
    pub last_self_check: Option<SelfCheck>,
}

/// One self-check result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SelfCheck {
    /// Unix time.
    pub at: u64,
    /// Whether every check address answered.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
}
