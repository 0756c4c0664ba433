//! The explain report as data: what `explain` found at each step, with a
//! [`Display`](std::fmt::Display) that prints the `steerdns explain` text
//! (the wording lives in [`text`]) and a `serde` form for the API.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

/// Why `client` gets the answer it gets for one question.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The client (or resolver) address the query came from.
    pub client: IpAddr,
    /// Where the client was located.
    pub location: LocationReport,
    /// The question asked.
    pub question: Question,
    /// The zone the name belongs to (presentation form), if any.
    pub zone: Option<String>,
    /// The steering trace, when the name is balanced.
    pub steering: Option<Steering>,
    /// The answer the engine gave.
    pub response: Response,
}

/// The client's location, as the server sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocationReport {
    /// Where the location came from.
    pub source: LocationOrigin,
    /// Continent code (`"EU"`).
    pub continent: Option<String>,
    /// Country code (`"DE"`).
    pub country: Option<String>,
    /// Subdivision (`"US-WA"`).
    pub subdivision: Option<String>,
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// Coordinates in degrees.
    pub coords: Option<Coordinates>,
    /// Prefix length over which the location stays the same.
    pub scope: u8,
}

/// Where a location came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocationOrigin {
    /// Not found anywhere.
    Unknown,
    /// The GeoIP database.
    Database,
    /// An operator override.
    Override,
}

/// Latitude and longitude in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Coordinates {
    /// Degrees north.
    pub lat: f32,
    /// Degrees east.
    pub lon: f32,
}

/// The question, in presentation form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Question {
    /// The name, fully qualified (`"www.lb.example.com."`).
    pub name: String,
    /// The record type (`"A"`).
    pub qtype: String,
}

/// How a balanced name was steered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Steering {
    /// The balancer's policy (`"geo"`, `"failover"`, …).
    pub policy: &'static str,
    /// The balancer's TTL in seconds.
    pub ttl: u32,
    /// The rule that decided the pool list.
    pub rule: MatchedRule,
    /// Latency policy details (latency balancers only).
    pub latency: Option<LatencyReport>,
    /// The pools considered, in order (the fallback last).
    pub pools: Vec<PoolReport>,
    /// How the answer was reached.
    pub mode: SteerMode,
    /// The ECS scope the answer carries.
    pub ecs_scope: u8,
}

/// The rule that decided the pool list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MatchedRule {
    /// A CIDR rule.
    Cidr {
        /// The rule's network.
        network: String,
    },
    /// An ASN rule.
    Asn {
        /// The AS number.
        asn: u32,
    },
    /// A subdivision rule.
    Subdivision {
        /// `"US-WA"`.
        code: String,
    },
    /// A country rule.
    Country {
        /// `"DE"`.
        code: String,
    },
    /// A continent rule.
    Continent {
        /// `"EU"`.
        code: String,
    },
    /// No rule matched: the geo map's default list.
    Default,
    /// The failover order.
    Ordered,
    /// Nearest pool first.
    Nearest {
        /// Whether the client's coordinates were known (else: configured order).
        located: bool,
    },
    /// Weighted random over all pools.
    Weighted,
    /// Lowest smoothed probe RTT first (this node).
    Latency,
    /// The precompiled decision (rules not re-evaluated).
    Compiled,
}

/// How the answer was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SteerMode {
    /// A listed pool was usable.
    Normal,
    /// The fallback pool (no listed pool usable).
    Fallback,
    /// Nothing usable: answering as if all were up.
    FailOpen,
    /// All down: NODATA.
    Nodata,
}

/// One pool considered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolReport {
    /// Pool name.
    pub name: String,
    /// Whether enough endpoints are up.
    pub usable: bool,
    /// Enabled endpoints up.
    pub up: usize,
    /// `min_healthy` from the config.
    pub min_healthy: u32,
    /// Whether it is the balancer's fallback pool.
    pub fallback: bool,
    /// Distance from the client, when both have coordinates.
    pub distance_km: Option<f64>,
    /// Whether the answer came from it.
    pub chosen: bool,
    /// Its endpoints, in config order.
    pub endpoints: Vec<EndpointReport>,
}

/// One endpoint of a considered pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointReport {
    /// What it answers with (`"192.0.2.10"`, `"CNAME web.example.net."`).
    pub target: String,
    /// Its name in the config (its address by default).
    pub name: String,
    /// Weight.
    pub weight: u32,
    /// Health as explain sees it.
    pub health: EndpointHealthReport,
}

/// An endpoint's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EndpointHealthReport {
    /// `enabled = false`.
    Disabled,
    /// No monitor: counted as up.
    NotMonitored,
    /// Monitored, no probe result yet: answered as up.
    NoResultYet {
        /// The monitor's name.
        monitor: String,
    },
    /// The prober's verdict.
    Probed {
        /// `"up"`, `"down"` or `"unknown"`.
        verdict: &'static str,
        /// The monitor's name.
        monitor: String,
        /// The last probe's result.
        reason: Option<String>,
    },
}

/// A latency balancer's view: smoothed RTTs and margins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencyReport {
    /// The current order with each pool's smoothed RTT.
    pub order: Vec<PoolRtt>,
    /// The margin in milliseconds.
    pub margin_ms: f64,
    /// The margin in percent.
    pub margin_pct: f64,
    /// For each neighbour pair in the order, whether it would switch.
    pub neighbours: Vec<Neighbours>,
}

/// A pool's smoothed RTT.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolRtt {
    /// Pool name.
    pub pool: String,
    /// Milliseconds; `None`: unknown.
    pub rtt_ms: Option<f64>,
}

/// Two neighbours in the latency order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Neighbours {
    /// The pool ahead.
    pub ahead: String,
    /// The pool behind it.
    pub behind: String,
    /// What happens next.
    pub outcome: NeighbourOutcome,
}

/// Whether the pool behind overtakes the one ahead.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NeighbourOutcome {
    /// An RTT is unknown: the configured order holds.
    RttUnknown,
    /// Faster beyond the margins: moves ahead at the next update.
    MovesAhead {
        /// By how much it is faster.
        gain_ms: f64,
    },
    /// Faster within the margins: no switch.
    WithinMargins {
        /// By how much it is faster.
        gain_ms: f64,
        /// The same in percent of the leader's RTT.
        gain_pct: f64,
    },
    /// The one ahead stays ahead.
    StaysAhead,
}

/// The engine's answer, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Response {
    /// The response code (`"No Error"`); `None` when it did not decode.
    pub rcode: Option<String>,
    /// Answer records, in presentation form.
    pub answers: Vec<String>,
    /// Authority records.
    pub authority: Vec<String>,
    /// Why the response could not be decoded.
    pub decode_error: Option<String>,
}

/// One line of the text report: a step (`"pool"`), its value and indented
/// detail lines. The API's `trace` is these lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// The step (`"client"`, `"pool"`, `"ecs scope"`, …).
    pub step: &'static str,
    /// The text after the step.
    pub value: String,
    /// Indented lines under it (a pool's endpoints, latency comparisons).
    pub details: Vec<String>,
}

impl Line {
    fn new(step: &'static str, value: impl fmt::Display) -> Line {
        Line {
            step,
            value: value.to_string(),
            details: Vec::new(),
        }
    }
}

impl Explanation {
    /// The pool the answer came from, if a balancer chose one.
    pub fn chosen_pool(&self) -> Option<&str> {
        let s = self.steering.as_ref()?;
        s.pools.iter().find(|p| p.chosen).map(|p| p.name.as_str())
    }
}

mod text;

#[cfg(test)]
mod tests;
