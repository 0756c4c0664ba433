//! The explain report as data: what `explain` found at each step, with a
//! [`Display`](std::fmt::Display) that prints the `steerdns explain` text
//! and a `serde` form for the API. The wording lives only here.

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
    /// The report's lines, in order.
    pub fn lines(&self) -> Vec<Line> {
        let mut out = vec![
            Line::new("client", self.client),
            Line::new("location", &self.location),
            Line::new("question", &self.question),
        ];
        if let Some(z) = &self.zone {
            out.push(Line::new("zone", z));
        }
        if let Some(s) = &self.steering {
            s.lines(&mut out);
        }
        self.response.lines(&mut out);
        out
    }

    /// The pool the answer came from, if a balancer chose one.
    pub fn chosen_pool(&self) -> Option<&str> {
        let s = self.steering.as_ref()?;
        s.pools.iter().find(|p| p.chosen).map(|p| p.name.as_str())
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in self.lines() {
            writeln!(f, "{:<11}{}", l.step, l.value)?;
            for d in &l.details {
                writeln!(f, "             {d}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for LocationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.source {
            LocationOrigin::Unknown => "unknown",
            LocationOrigin::Database => "database",
            LocationOrigin::Override => "override",
        })?;
        if let Some(c) = &self.continent {
            write!(f, ", continent {c}")?;
        }
        if let Some(c) = &self.country {
            write!(f, ", country {c}")?;
        }
        if let Some(s) = &self.subdivision {
            write!(f, ", subdivision {s}")?;
        }
        if let Some(a) = self.asn {
            write!(f, ", AS{a}")?;
        }
        if let Some(c) = self.coords {
            write!(f, ", at {:.2},{:.2}", c.lat, c.lon)?;
        }
        write!(f, " (same location over /{})", self.scope)
    }
}

impl fmt::Display for Question {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.qtype)
    }
}

impl fmt::Display for MatchedRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchedRule::Cidr { network } => write!(f, "cidr {network}"),
            MatchedRule::Asn { asn } => write!(f, "asn AS{asn}"),
            MatchedRule::Subdivision { code } => write!(f, "subdivision {code}"),
            MatchedRule::Country { code } => write!(f, "country {code}"),
            MatchedRule::Continent { code } => write!(f, "continent {code}"),
            MatchedRule::Default => f.write_str("default (no rule matched)"),
            MatchedRule::Ordered => f.write_str("failover order"),
            MatchedRule::Nearest { located: true } => f.write_str("nearest pool first"),
            MatchedRule::Nearest { located: false } => {
                f.write_str("nearest first, but the client has no coordinates: configured order")
            }
            MatchedRule::Weighted => f.write_str("weighted random over all pools"),
            MatchedRule::Latency => f.write_str("lowest smoothed probe RTT first (this node)"),
            MatchedRule::Compiled => f.write_str("precompiled decision (rules not re-evaluated)"),
        }
    }
}

impl fmt::Display for SteerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SteerMode::Normal => "normal",
            SteerMode::Fallback => "fallback pool (no listed pool usable)",
            SteerMode::FailOpen => "fail-open (nothing usable: answering as if all were up)",
            SteerMode::Nodata => "all down: NODATA",
        })
    }
}

impl Steering {
    fn lines(&self, out: &mut Vec<Line>) {
        out.push(Line::new(
            "balancer",
            format_args!("policy {}, ttl {}", self.policy, self.ttl),
        ));
        out.push(Line::new("rule", &self.rule));
        if let Some(l) = &self.latency {
            out.push(l.line());
        }
        for p in &self.pools {
            out.push(p.line());
        }
        out.push(Line::new("mode", self.mode));
        out.push(Line::new(
            "ecs scope",
            format_args!(
                "/{s} (with ECS, resolvers may cache the answer for the client's /{s} network)",
                s = self.ecs_scope
            ),
        ));
    }
}

impl PoolReport {
    fn line(&self) -> Line {
        let mut value = format!(
            "{}: {} ({}/{} endpoints up, min_healthy {})",
            self.name,
            if self.usable { "usable" } else { "not usable" },
            self.up,
            self.endpoints.len(),
            self.min_healthy
        );
        if self.fallback {
            value.push_str(", fallback");
        }
        if let Some(km) = self.distance_km {
            value.push_str(&format!(", {km:.0} km away"));
        }
        if self.chosen {
            value.push_str("  <- chosen");
        }
        Line {
            step: "pool",
            value,
            details: self.endpoints.iter().map(ToString::to_string).collect(),
        }
    }
}

impl fmt::Display for EndpointReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.target)?;
        if self.name != self.target {
            write!(f, " ({})", self.name)?;
        }
        write!(f, " weight {} {}", self.weight, self.health)
    }
}

impl fmt::Display for EndpointHealthReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointHealthReport::Disabled => f.write_str("disabled"),
            EndpointHealthReport::NotMonitored => f.write_str("up (not monitored)"),
            EndpointHealthReport::NoResultYet { monitor } => write!(
                f,
                "unknown, answered as up (monitor {monitor}, no probe result yet)"
            ),
            EndpointHealthReport::Probed {
                verdict,
                monitor,
                reason,
            } => write!(
                f,
                "{verdict} (monitor {monitor}: {})",
                reason.as_deref().unwrap_or("-")
            ),
        }
    }
}

impl LatencyReport {
    fn line(&self) -> Line {
        let order: Vec<String> = self
            .order
            .iter()
            .map(|p| match p.rtt_ms {
                Some(ms) => format!("{} {ms:.1} ms", p.pool),
                None => format!("{} unknown", p.pool),
            })
            .collect();
        Line {
            step: "latency",
            value: format!(
                "{} (margin {} ms and {} %)",
                order.join(", "),
                self.margin_ms,
                self.margin_pct
            ),
            details: self.neighbours.iter().map(ToString::to_string).collect(),
        }
    }
}

impl fmt::Display for Neighbours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b) = (&self.ahead, &self.behind);
        match self.outcome {
            NeighbourOutcome::RttUnknown => {
                write!(f, "{a} before {b}: RTT unknown, configured order")
            }
            NeighbourOutcome::MovesAhead { gain_ms } => write!(
                f,
                "{b} is faster than {a} by {gain_ms:.1} ms: beyond the margins, moves ahead at the next update"
            ),
            NeighbourOutcome::WithinMargins { gain_ms, gain_pct } => write!(
                f,
                "{b} is faster than {a} by {gain_ms:.1} ms ({gain_pct:.0} %): within the margins, no switch"
            ),
            NeighbourOutcome::StaysAhead => write!(f, "{a} stays ahead of {b}"),
        }
    }
}

impl Response {
    fn lines(&self, out: &mut Vec<Line>) {
        if let Some(e) = &self.decode_error {
            out.push(Line::new(
                "answer",
                format_args!("(could not decode the response: {e})"),
            ));
            return;
        }
        if let Some(rcode) = &self.rcode {
            out.push(Line::new("rcode", rcode));
        }
        out.extend(self.answers.iter().map(|r| Line::new("answer", r)));
        out.extend(self.authority.iter().map(|r| Line::new("authority", r)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variants the captured CLI reports do not reach (live health,
    /// disabled endpoints, fallback pools, measured RTTs), against the text
    /// the report printed before it was data.
    #[test]
    fn variants_print_as_before() {
        let ep = |health| EndpointReport {
            target: "192.0.2.10".into(),
            name: "fra-1".into(),
            weight: 3,
            health,
        };
        assert_eq!(
            ep(EndpointHealthReport::Probed {
                verdict: "down",
                monitor: "web".into(),
                reason: Some("connect refused".into()),
            })
            .to_string(),
            "192.0.2.10 (fra-1) weight 3 down (monitor web: connect refused)"
        );
        assert_eq!(
            ep(EndpointHealthReport::Probed {
                verdict: "up",
                monitor: "web".into(),
                reason: None,
            })
            .to_string(),
            "192.0.2.10 (fra-1) weight 3 up (monitor web: -)"
        );
        assert_eq!(
            ep(EndpointHealthReport::Disabled).to_string(),
            "192.0.2.10 (fra-1) weight 3 disabled"
        );
        let pool = PoolReport {
            name: "backup".into(),
            usable: false,
            up: 0,
            min_healthy: 1,
            fallback: true,
            distance_km: Some(1234.4),
            chosen: true,
            endpoints: vec![ep(EndpointHealthReport::Disabled)],
        };
        let l = pool.line();
        assert_eq!(
            l.value,
            "backup: not usable (0/1 endpoints up, min_healthy 1), fallback, 1234 km away  <- chosen"
        );
        assert_eq!(l.details, vec!["192.0.2.10 (fra-1) weight 3 disabled"]);

        let n = |outcome| {
            Neighbours {
                ahead: "eu".into(),
                behind: "na".into(),
                outcome,
            }
            .to_string()
        };
        assert_eq!(
            n(NeighbourOutcome::MovesAhead { gain_ms: 30.04 }),
            "na is faster than eu by 30.0 ms: beyond the margins, moves ahead at the next update"
        );
        assert_eq!(
            n(NeighbourOutcome::WithinMargins {
                gain_ms: 2.25,
                gain_pct: 7.6
            }),
            "na is faster than eu by 2.2 ms (8 %): within the margins, no switch"
        );
        assert_eq!(n(NeighbourOutcome::StaysAhead), "eu stays ahead of na");
        let lat = LatencyReport {
            order: vec![
                PoolRtt {
                    pool: "eu".into(),
                    rtt_ms: Some(12.345),
                },
                PoolRtt {
                    pool: "na".into(),
                    rtt_ms: None,
                },
            ],
            margin_ms: 20.0,
            margin_pct: 12.5,
            neighbours: Vec::new(),
        };
        assert_eq!(
            lat.line().value,
            "eu 12.3 ms, na unknown (margin 20 ms and 12.5 %)"
        );
        for (rule, text) in [
            (
                MatchedRule::Cidr {
                    network: "10.0.0.0/8".into(),
                },
                "cidr 10.0.0.0/8",
            ),
            (MatchedRule::Asn { asn: 64500 }, "asn AS64500"),
            (
                MatchedRule::Nearest { located: false },
                "nearest first, but the client has no coordinates: configured order",
            ),
            (
                MatchedRule::Compiled,
                "precompiled decision (rules not re-evaluated)",
            ),
        ] {
            assert_eq!(rule.to_string(), text);
        }
        let undecodable = Response {
            rcode: None,
            answers: Vec::new(),
            authority: Vec::new(),
            decode_error: Some("short".into()),
        };
        let mut lines = Vec::new();
        undecodable.lines(&mut lines);
        assert_eq!(lines.len(), 1);
        assert_eq!(
            (lines[0].step, lines[0].value.as_str()),
            ("answer", "(could not decode the response: short)")
        );
    }
}
