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
