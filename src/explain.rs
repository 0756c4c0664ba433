//! `steerdns explain`: why a client gets the answer it gets. Runs the same
//! engine as the server, on a query built for the client, and adds the
//! steering trace for balanced names.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RecordType};

use crate::dns::transport::Transport;
use crate::engine::answer::{self, Client};
use crate::geo::{Location, LocationSource};
use crate::probe::HealthStatus;
use crate::select::{self, Inputs, Mode, Policy, Rng, Rule, Target};
use crate::snapshot::Snapshot;
use crate::zone;

/// Errors in the explain request itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExplainError {
    /// The name does not parse.
    #[error("bad name {0:?}: {1}")]
    Name(String, String),
    /// The type is unknown.
    #[error("unknown record type {0:?}")]
    Type(String),
}

fn fmt_location(l: &Location) -> String {
    let mut s = String::new();
    match l.source {
        LocationSource::Unknown => s.push_str("unknown"),
        LocationSource::Database => s.push_str("database"),
        LocationSource::Override => s.push_str("override"),
    }
    if let Some(c) = l.continent {
        let _ = write!(s, ", continent {c:?}");
    }
    if let Some(c) = l.country {
        let _ = write!(s, ", country {}", c.as_str());
    }
    if let Some(sd) = l.subdivision {
        let _ = write!(s, ", subdivision {}-{}", sd.country.as_str(), sd.code_str());
    }
    if let Some(a) = l.asn {
        let _ = write!(s, ", AS{a}");
    }
    if let Some(c) = l.coords {
        let _ = write!(s, ", at {:.2},{:.2}", c.lat, c.lon);
    }
    let _ = write!(s, " (same location over /{})", l.scope);
    s
}

fn fmt_rule(r: &Rule) -> String {
    match r {
        Rule::Cidr(n) => format!("cidr {n}"),
        Rule::Asn(a) => format!("asn AS{a}"),
        Rule::Subdivision(s) => format!("subdivision {}-{}", s.country.as_str(), s.code_str()),
        Rule::Country(c) => format!("country {}", c.as_str()),
        Rule::Continent(c) => format!("continent {c:?}"),
        Rule::Default => "default (no rule matched)".into(),
        Rule::Ordered => "failover order".into(),
        Rule::Nearest { located: true } => "nearest pool first".into(),
        Rule::Nearest { located: false } => {
            "nearest first, but the client has no coordinates: configured order".into()
        }
        Rule::Weighted => "weighted random over all pools".into(),
        Rule::Latency => "lowest smoothed probe RTT first (this node)".into(),
        Rule::Compiled => "precompiled decision (rules not re-evaluated)".into(),
    }
}

/// Explain the answer `client` gets for `name`/`qtype`.
///
/// `health` is the prober's state when explaining inside a running server;
/// offline (the CLI) endpoints show their monitor and "not probed".
pub fn explain(
    snap: &Snapshot,
    health: Option<&HealthStatus>,
    client: IpAddr,
    name: &str,
    qtype: &str,
) -> Result<String, ExplainError> {
    let n = Name::from_str(name).map_err(|e| ExplainError::Name(name.into(), e.to_string()))?;
    let rt = RecordType::from_str(&qtype.to_ascii_uppercase())
        .map_err(|_| ExplainError::Type(qtype.into()))?;
    let wire = zone::wire_name(&n);
    let mut out = String::new();
    let loc = snap.geo.locate(client);
    let _ = writeln!(out, "client     {client}");
    let _ = writeln!(out, "location   {}", fmt_location(&loc));
    let _ = writeln!(out, "question   {} {rt}", zone::display_name(&wire));

    // Steering trace, when the name is balanced.
    let mut offsets = [0u8; 128];
    let k = zone::label_offsets(&wire, &mut offsets);
    if let Some((z, _)) = snap.zones.find(&wire, &offsets[..k]) {
        let _ = writeln!(out, "zone       {}", z.display);
        if let Some(bid) = z.nodes.get(&wire).and_then(|n| n.balancer) {
            let b = &snap.balancers[bid as usize];
            let policy = match &b.policy {
                Policy::Failover(_) => "failover",
                Policy::Geo(_) => "geo",
                Policy::Proximity(_) => "proximity",
                Policy::Weighted(_) => "weighted",
                Policy::Latency(_) => "latency",
            };
            let _ = writeln!(out, "balancer   policy {policy}, ttl {}", b.ttl);
            let inputs = Inputs {
                pools: &snap.pools,
                health: &snap.health,
            };
            let d = select::choose(b, &inputs, &loc, client);
            let _ = writeln!(out, "rule       {}", fmt_rule(&d.rule));
            if let Policy::Latency(l) = &b.policy {
                latency_lines(&mut out, snap, health, l);
            }
            let mut considered: Vec<u32> = d.list.to_vec();
            if let Some(f) = b.fallback.filter(|f| !considered.contains(f)) {
                considered.push(f);
            }
            for p in considered {
                let pool = &snap.pools[p as usize];
                let up = pool
                    .endpoints
                    .iter()
                    .filter(|e| e.enabled && snap.health.is_up(e.id))
                    .count();
                let mut line = format!(
                    "pool       {}: {} ({up}/{} endpoints up, min_healthy {})",
                    pool.name,
                    if inputs.pool_usable(p) {
                        "usable"
                    } else {
                        "not usable"
                    },
                    pool.endpoints.len(),
                    pool.min_healthy
                );
                if Some(p) == b.fallback {
                    line.push_str(", fallback");
                }
                if let (Some(c), Some(pc)) = (loc.coords, pool.coords) {
                    let _ = write!(line, ", {:.0} km away", select::distance_km(c, pc));
                }
                if d.pool == Some(p) {
                    line.push_str("  <- chosen");
                }
                let _ = writeln!(out, "{line}");
                for e in pool.endpoints.iter() {
                    let what = match &e.target {
                        Target::V4(a) => a.to_string(),
                        Target::V6(a) => a.to_string(),
                        Target::Host(h) => format!("CNAME {}", zone::display_name(h)),
                    };
                    let probe = snap.probes.iter().find(|t| t.endpoint == e.id);
                    let state = if !e.enabled {
                        "disabled".to_string()
                    } else {
                        let known = health.and_then(|h| probe.and_then(|t| h.get(&t.key)));
                        match (probe, known) {
                            (None, _) => "up (not monitored)".to_string(),
                            (Some(t), None) => format!(
                                "unknown, answered as up (monitor {}, no probe result yet)",
                                snap.monitors[t.monitor as usize].name
                            ),
                            (Some(t), Some(h)) => format!(
                                "{} (monitor {}: {})",
                                h.hysteresis.verdict.as_str(),
                                snap.monitors[t.monitor as usize].name,
                                h.reason.as_deref().unwrap_or("-")
                            ),
                        }
                    };
                    let label = if e.label == what {
                        String::new()
                    } else {
                        format!(" ({})", e.label)
                    };
                    let _ = writeln!(
                        out,
                        "             {what}{label} weight {} {state}",
                        e.weight
                    );
                }
            }
            let mode = match d.mode {
                Mode::Normal => "normal",
                Mode::Fallback => "fallback pool (no listed pool usable)",
                Mode::FailOpen => "fail-open (nothing usable: answering as if all were up)",
                Mode::Nodata => "all down: NODATA",
            };
            let _ = writeln!(out, "mode       {mode}");
            // The server answers from the compiled decision trie when there
            // is one: its scope is the merged one (the widest prefix with the
            // same pool list), usually shorter than the per-input scope.
            let compiled = snap.decisions.get(bid as usize).and_then(Option::as_ref);
            let lookup_ip = match client {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
                v4 => v4,
            };
            let scope = match compiled {
                Some(c) => c.lookup(lookup_ip).1,
                None => d.scope,
            };
            let _ = writeln!(
                out,
                "ecs scope  /{scope} (with ECS, resolvers may cache the answer for the client's /{scope} network)"
            );
        }
    }

    // The real answer, from the engine, for a query sent from the client's
    // address (as a resolver without ECS would).
    let pkt = build_query(&wire, u16::from(rt));
    let mut resp = Vec::new();
    let mut rng = Rng::seeded(snap.settings.random_seed.unwrap_or(1));
    let from = Client {
        addr: SocketAddr::new(client, 53),
        transport: Transport::Tcp,
    };
    answer::answer(snap, &pkt, from, &mut rng, &mut resp);
    match Message::from_vec(&resp) {
        Ok(m) => {
            let _ = writeln!(out, "rcode      {}", m.metadata.response_code);
            for r in &m.answers {
                let _ = writeln!(out, "answer     {r}");
            }
            for r in &m.authorities {
                let _ = writeln!(out, "authority  {r}");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "answer     (could not decode the response: {e})");
        }
    }
    Ok(out)
}

/// A plain query (EDNS, no options) for `wire`/`qtype`.
pub fn build_query(wire: &[u8], qtype: u16) -> Vec<u8> {
    let mut p = vec![0xE1, 0x01, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    p.extend_from_slice(wire);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    p.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
    p
}

/// The `latency` line: each pool's smoothed RTT, the margins, and for each
/// neighbour in the current order whether it is past the margins.
fn latency_lines(
    out: &mut String,
    snap: &Snapshot,
    health: Option<&HealthStatus>,
    l: &crate::select::latency::LatencyPolicy,
) {
    let rtts = match health {
        Some(h) => crate::cluster::pool_rtts_from(snap, h),
        None => vec![None; snap.pools.len()],
    };
    let name = |p: u32| snap.pools[p as usize].name.as_str();
    let fmt = |p: u32| match rtts[p as usize] {
        Some(ms) => format!("{} {ms:.1} ms", name(p)),
        None => format!("{} unknown", name(p)),
    };
    let order = l.current();
    let _ = writeln!(
        out,
        "latency    {} (margin {} ms and {} %)",
        order.iter().map(|&p| fmt(p)).collect::<Vec<_>>().join(", "),
        l.margin_ms,
        l.margin_frac * 100.0
    );
    for w in order.windows(2) {
        let (a, b) = (w[0], w[1]);
        let text = match (rtts[a as usize], rtts[b as usize]) {
            (Some(ra), Some(rb)) => {
                let gain = ra - rb;
                if crate::select::latency::better_by_margin(rb, ra, l.margin_ms, l.margin_frac) {
                    format!(
                        "{} is faster than {} by {gain:.1} ms: beyond the margins, moves ahead at the next update",
                        name(b),
                        name(a)
                    )
                } else if gain > 0.0 {
                    format!(
                        "{} is faster than {} by {gain:.1} ms ({:.0} %): within the margins, no switch",
                        name(b),
                        name(a),
                        100.0 * gain / ra
                    )
                } else {
                    format!("{} stays ahead of {}", name(a), name(b))
                }
            }
            _ => format!(
                "{} before {}: RTT unknown, configured order",
                name(a),
                name(b)
            ),
        };
        let _ = writeln!(out, "             {text}");
    }
}
