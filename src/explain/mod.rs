//! `steerdns explain`: why a client gets the answer it gets. Runs the same
//! engine as the server, on a query built for the client, and adds the
//! steering trace for balanced names. The result is data
//! ([`Explanation`]); its `Display` is the CLI's text, its `serde` form the
//! API's.

mod probes;
mod report;

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RecordType};

pub(crate) use self::probes::ProbeIndex;
pub use self::report::*;
use crate::engine::answer::{self, Client};
use crate::geo::{Location, LocationSource};
use crate::metrics::Transport;
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

fn location_report(l: &Location) -> LocationReport {
    LocationReport {
        source: match l.source {
            LocationSource::Unknown => LocationOrigin::Unknown,
            LocationSource::Database => LocationOrigin::Database,
            LocationSource::Override => LocationOrigin::Override,
        },
        continent: l.continent.map(|c| format!("{c:?}")),
        country: l.country.map(|c| c.as_str().to_string()),
        subdivision: l
            .subdivision
            .map(|sd| format!("{}-{}", sd.country.as_str(), sd.code_str())),
        asn: l.asn,
        coords: l.coords.map(|c| Coordinates {
            lat: c.lat,
            lon: c.lon,
        }),
        scope: l.scope,
    }
}

fn matched_rule(r: &Rule) -> MatchedRule {
    match r {
        Rule::Cidr(n) => MatchedRule::Cidr {
            network: n.to_string(),
        },
        Rule::Asn(a) => MatchedRule::Asn { asn: *a },
        Rule::Subdivision(s) => MatchedRule::Subdivision {
            code: format!("{}-{}", s.country.as_str(), s.code_str()),
        },
        Rule::Country(c) => MatchedRule::Country {
            code: c.as_str().to_string(),
        },
        Rule::Continent(c) => MatchedRule::Continent {
            code: format!("{c:?}"),
        },
        Rule::Default => MatchedRule::Default,
        Rule::Ordered => MatchedRule::Ordered,
        Rule::Nearest { located } => MatchedRule::Nearest { located: *located },
        Rule::Weighted => MatchedRule::Weighted,
        Rule::Latency => MatchedRule::Latency,
        Rule::Compiled => MatchedRule::Compiled,
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
) -> Result<Explanation, ExplainError> {
    let n = Name::from_str(name).map_err(|e| ExplainError::Name(name.into(), e.to_string()))?;
    let rt = RecordType::from_str(&qtype.to_ascii_uppercase())
        .map_err(|_| ExplainError::Type(qtype.into()))?;
    let wire = zone::wire_name(&n);
    let loc = snap.geo.locate(client);
    let mut offsets = [0u8; 128];
    let k = zone::label_offsets(&wire, &mut offsets);
    let found = snap.zones.find(&wire, &offsets[..k]).map(|(z, _)| z);
    let steering = found
        .and_then(|z| z.nodes.get(&wire).and_then(|n| n.balancer))
        .map(|bid| steering(snap, health, bid, &loc, client));
    Ok(Explanation {
        client,
        location: location_report(&loc),
        question: Question {
            name: zone::display_name(&wire),
            qtype: rt.to_string(),
        },
        zone: found.map(|z| z.display.clone()),
        steering,
        response: response(snap, &wire, rt, client),
    })
}

/// The steering trace of balancer `bid` for a client at `loc`.
fn steering(
    snap: &Snapshot,
    health: Option<&HealthStatus>,
    bid: u32,
    loc: &Location,
    client: IpAddr,
) -> Steering {
    let b = &snap.balancers[bid as usize];
    let policy = match &b.policy {
        Policy::Failover(_) => "failover",
        Policy::Geo(_) => "geo",
        Policy::Proximity(_) => "proximity",
        Policy::Weighted(_) => "weighted",
        Policy::Latency(_) => "latency",
    };
    let inputs = Inputs {
        pools: &snap.pools,
        health: &snap.health,
    };
    let d = select::choose(b, &inputs, loc, client);
    let latency = match &b.policy {
        Policy::Latency(l) => Some(latency_report(snap, health, l)),
        _ => None,
    };
    let mut considered: Vec<u32> = d.list.to_vec();
    if let Some(f) = b.fallback.filter(|f| !considered.contains(f)) {
        considered.push(f);
    }
    let probes = ProbeIndex::new(snap);
    let pools = considered
        .into_iter()
        .map(|p| {
            let pool = &snap.pools[p as usize];
            PoolReport {
                name: pool.name.clone(),
                usable: inputs.pool_usable(p),
                up: pool
                    .endpoints
                    .iter()
                    .filter(|e| e.enabled && snap.health.is_up(e.id))
                    .count(),
                min_healthy: pool.min_healthy,
                fallback: Some(p) == b.fallback,
                distance_km: match (loc.coords, pool.coords) {
                    (Some(c), Some(pc)) => Some(select::distance_km(c, pc)),
                    _ => None,
                },
                chosen: d.pool == Some(p),
                endpoints: pool
                    .endpoints
                    .iter()
                    .map(|e| EndpointReport {
                        target: match &e.target {
                            Target::V4(a) => a.to_string(),
                            Target::V6(a) => a.to_string(),
                            Target::Host(h) => format!("CNAME {}", zone::display_name(h)),
                        },
                        name: e.label.clone(),
                        weight: e.weight,
                        health: endpoint_health(snap, health, &probes, e),
                    })
                    .collect(),
            }
        })
        .collect();
    // The server answers from the compiled decision trie when there is one:
    // its scope is the merged one (the widest prefix with the same pool
    // list), usually shorter than the per-input scope.
    let compiled = snap.decisions.get(bid as usize).and_then(Option::as_ref);
    let lookup_ip = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    Steering {
        policy,
        ttl: b.ttl,
        rule: matched_rule(&d.rule),
        latency,
        pools,
        mode: match d.mode {
            Mode::Normal => SteerMode::Normal,
            Mode::Fallback => SteerMode::Fallback,
            Mode::FailOpen => SteerMode::FailOpen,
            Mode::Nodata => SteerMode::Nodata,
        },
        ecs_scope: match compiled {
            Some(c) => c.lookup(lookup_ip).1,
            None => d.scope,
        },
    }
}

fn endpoint_health(
    snap: &Snapshot,
    health: Option<&HealthStatus>,
    probes: &ProbeIndex,
    e: &crate::select::Endpoint,
) -> EndpointHealthReport {
    if !e.enabled {
        return EndpointHealthReport::Disabled;
    }
    let Some(t) = probes.get(e.id) else {
        return EndpointHealthReport::NotMonitored;
    };
    let monitor = snap.monitors[t.monitor as usize].name.clone();
    match health.and_then(|h| h.get(&t.key)) {
        None => EndpointHealthReport::NoResultYet { monitor },
        Some(h) => EndpointHealthReport::Probed {
            verdict: h.hysteresis.verdict.as_str(),
            monitor,
            reason: h.reason,
        },
    }
}

/// The real answer, from the engine, for a query sent from the client's
/// address (as a resolver without ECS would).
fn response(snap: &Snapshot, wire: &[u8], rt: RecordType, client: IpAddr) -> Response {
    let pkt = build_query(wire, u16::from(rt));
    let mut resp = Vec::new();
    let mut rng = Rng::seeded(snap.settings.random_seed.unwrap_or(1));
    let from = Client {
        addr: SocketAddr::new(client, 53),
        transport: Transport::Tcp,
    };
    answer::answer(snap, &pkt, from, &mut rng, &mut resp);
    match Message::from_vec(&resp) {
        Ok(m) => Response {
            rcode: Some(m.metadata.response_code.to_string()),
            answers: m.answers.iter().map(ToString::to_string).collect(),
            authority: m.authorities.iter().map(ToString::to_string).collect(),
            decode_error: None,
        },
        Err(e) => Response {
            rcode: None,
            answers: Vec::new(),
            authority: Vec::new(),
            decode_error: Some(e.to_string()),
        },
    }
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

/// Each pool's smoothed RTT, the margins, and for each neighbour in the
/// current order whether it is past the margins.
fn latency_report(
    snap: &Snapshot,
    health: Option<&HealthStatus>,
    l: &crate::select::latency::LatencyPolicy,
) -> LatencyReport {
    let rtts = match health {
        Some(h) => crate::cluster::pool_rtts_from(snap, h),
        None => vec![None; snap.pools.len()],
    };
    let name = |p: u32| snap.pools[p as usize].name.clone();
    let order = l.current();
    let neighbours = order
        .windows(2)
        .map(|w| {
            let (a, b) = (w[0], w[1]);
            let outcome = match (rtts[a as usize], rtts[b as usize]) {
                (Some(ra), Some(rb)) => {
                    let gain_ms = ra - rb;
                    if crate::select::latency::better_by_margin(rb, ra, l.margin_ms, l.margin_frac)
                    {
                        NeighbourOutcome::MovesAhead { gain_ms }
                    } else if gain_ms > 0.0 {
                        NeighbourOutcome::WithinMargins {
                            gain_ms,
                            gain_pct: 100.0 * gain_ms / ra,
                        }
                    } else {
                        NeighbourOutcome::StaysAhead
                    }
                }
                _ => NeighbourOutcome::RttUnknown,
            };
            Neighbours {
                ahead: name(a),
                behind: name(b),
                outcome,
            }
        })
        .collect();
    LatencyReport {
        order: order
            .iter()
            .map(|&p| PoolRtt {
                pool: name(p),
                rtt_ms: rtts[p as usize],
            })
            .collect(),
        margin_ms: l.margin_ms,
        margin_pct: l.margin_frac * 100.0,
        neighbours,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::GeoMode;
    use std::path::Path;

    fn offline(config: &str) -> Snapshot {
        crate::reload::load_snapshot_with(Path::new(config), 1, None, GeoMode::Explain)
            .expect("config loads")
    }

    /// The CLI's text, byte for byte as `steerdns explain` printed it before
    /// the report became data (captured from the binary).
    #[test]
    fn display_is_the_cli_text() {
        let example = offline("config/example.toml");
        let cluster = offline("config/cluster-node.toml");
        let cases: &[(&Snapshot, &str, &str, &str, &str)] = &[
            (
                &example,
                "216.160.83.1",
                "www.lb.example.com",
                "A",
                include_str!("../../tests/data/explain/www-na.txt"),
            ),
            (
                &example,
                "81.2.69.1",
                "www.lb.example.com",
                "AAAA",
                include_str!("../../tests/data/explain/www-eu-aaaa.txt"),
            ),
            (
                &example,
                "2001:218::1",
                "www.lb.example.com",
                "AAAA",
                include_str!("../../tests/data/explain/www-v6.txt"),
            ),
            (
                &example,
                "127.0.0.1",
                "www.lb.example.com",
                "A",
                include_str!("../../tests/data/explain/www-unknown.txt"),
            ),
            (
                &example,
                "10.1.2.3",
                "www.lb.example.com",
                "A",
                include_str!("../../tests/data/explain/www-override.txt"),
            ),
            (
                &example,
                "192.0.2.1",
                "lab.lb.example.com",
                "A",
                include_str!("../../tests/data/explain/lab.txt"),
            ),
            (
                &example,
                "192.0.2.1",
                "static.lb.example.com",
                "A",
                include_str!("../../tests/data/explain/static.txt"),
            ),
            (
                &example,
                "81.2.69.1",
                "alias.lb.example.com",
                "A",
                include_str!("../../tests/data/explain/alias.txt"),
            ),
            (
                &example,
                "192.0.2.1",
                "lb.example.com",
                "MX",
                include_str!("../../tests/data/explain/mx.txt"),
            ),
            (
                &example,
                "192.0.2.1",
                "nope.lb.example.com",
                "A",
                include_str!("../../tests/data/explain/nx.txt"),
            ),
            (
                &example,
                "192.0.2.1",
                "www.example.org",
                "A",
                include_str!("../../tests/data/explain/outside.txt"),
            ),
            (
                &cluster,
                "192.0.2.1",
                "fast.lb.example.com",
                "A",
                include_str!("../../tests/data/explain/latency.txt"),
            ),
        ];
        for (snap, client, name, qtype, want) in cases {
            let e = explain(snap, None, client.parse().unwrap(), name, qtype).unwrap();
            assert_eq!(e.to_string(), *want, "{client} {name} {qtype}");
        }
    }

    #[test]
    fn the_report_is_data() {
        let snap = offline("config/example.toml");
        let e = explain(
            &snap,
            None,
            "216.160.83.1".parse().unwrap(),
            "www.lb.example.com",
            "a",
        )
        .unwrap();
        assert_eq!(e.question.qtype, "A");
        assert_eq!(e.location.source, LocationOrigin::Database);
        assert_eq!(e.location.country.as_deref(), Some("US"));
        assert_eq!(e.chosen_pool(), Some("na"));
        let s = e.steering.as_ref().expect("balanced");
        assert_eq!((s.policy, s.ttl), ("geo", 30));
        assert_eq!(s.rule, MatchedRule::Continent { code: "NA".into() });
        assert_eq!(s.mode, SteerMode::Normal);
        assert!(
            s.pools[0]
                .endpoints
                .iter()
                .all(|e| e.health == EndpointHealthReport::NotMonitored)
        );
        assert_eq!(e.response.rcode.as_deref(), Some("No Error"));
        let lab = explain(
            &snap,
            None,
            "192.0.2.1".parse().unwrap(),
            "lab.lb.example.com",
            "A",
        )
        .unwrap();
        assert_eq!(
            lab.steering.unwrap().pools[0].endpoints[0].health,
            EndpointHealthReport::NoResultYet {
                monitor: "self-api".into()
            }
        );
        assert!(matches!(
            explain(&snap, None, "192.0.2.1".parse().unwrap(), "a..b", "A"),
            Err(ExplainError::Name(..))
        ));
        assert!(matches!(
            explain(&snap, None, "192.0.2.1".parse().unwrap(), "x.", "NOPE"),
            Err(ExplainError::Type(..))
        ));
    }
}
