//! The report as text: the `steerdns explain` lines ([`Explanation::lines`])
//! and the `Display` of each part. The wording lives only here.

use std::fmt;

use super::{
    EndpointHealthReport, EndpointReport, Explanation, LatencyReport, Line, LocationOrigin,
    LocationReport, MatchedRule, NeighbourOutcome, Neighbours, PoolReport, Question, Response,
    SteerMode, Steering,
};

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
    pub(super) fn lines(&self, out: &mut Vec<Line>) {
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
    pub(super) fn line(&self) -> Line {
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
    pub(super) fn line(&self) -> Line {
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
    pub(super) fn lines(&self, out: &mut Vec<Line>) {
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
