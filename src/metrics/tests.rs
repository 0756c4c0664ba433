//! Tests across the counter sets: one scrape of everything, parsed back.

use std::collections::HashSet;
use std::time::Duration;

use super::answers::MODES;
use super::hot::{DROP_REASONS, GEO_RESULTS};
use super::labels::{QTYPES, RCODES};
use super::*;

fn parse(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("exposition parses")
}

fn sample_value(s: &prometheus_parse::Sample) -> f64 {
    match &s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("unexpected value {other:?}"),
    }
}

fn find<'a>(
    scrape: &'a prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus_parse::Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

#[test]
fn exposition_parses_and_has_bounded_labels() {
    let m = Metrics::with_version("1.2.3").unwrap();
    let q = m.queries();
    let zone = q.zone_slot("lb.example.com.");
    assert_eq!(q.zone_slot("lb.example.com."), zone, "slots are stable");
    let other = q.zone_slot("example.net.");
    assert_ne!(zone, other);
    let us = Duration::from_micros;
    q.record_query(zone, 1, 0, Transport::Udp, us(30));
    q.record_query(zone, 1, 0, Transport::Udp, us(70));
    q.record_query(zone, 28, 3, Transport::Tcp, us(2000));
    q.record_query(zone, 65000, 999, Transport::Udp, Duration::from_secs(5));
    q.record_query(NO_ZONE_SLOT, 1, 5, Transport::Udp, us(10));
    // An unknown slot counts nothing (and does not panic).
    q.record_query(1000, 1, 0, Transport::Udp, us(10));
    let a = m.answers().answer_slot("www.lb.example.com.", Some("eu"));
    let b = m.answers().answer_slot("www.lb.example.com.", Some("na"));
    let n = m.answers().answer_slot("www.lb.example.com.", None);
    m.answers().record_answer(a, AnswerMode::Normal);
    m.answers().record_answer(a, AnswerMode::Normal);
    m.answers().record_answer(b, AnswerMode::Fallback);
    m.answers().record_answer(b, AnswerMode::FailOpen);
    m.answers().record_answer(n, AnswerMode::Nodata);
    m.record_drop(DropReason::Malformed);
    m.record_geoip(GeoResult::Found);
    m.record_geoip(GeoResult::Override);
    m.set_endpoint_up("eu", "192.0.2.10", true);
    m.set_endpoint_up("eu", "192.0.2.11", false);
    m.set_pool_usable("eu", true);
    m.observe_probe("tcp", Duration::from_millis(3));
    m.probe_failed("eu", "192.0.2.11", "timeout");
    m.reload_result(true);
    m.reload_result(false);

    let text = m.render();
    let scrape = parse(&text);
    let get = |metric: &str, labels: &[(&str, &str)]| {
        find(&scrape, metric, labels)
            .map(sample_value)
            .unwrap_or_else(|| panic!("no {metric} {labels:?} in\n{text}"))
    };
    let qt = "steerdns_dns_queries_total";
    let base = [("zone", "lb.example.com."), ("transport", "udp")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    assert_eq!(get(qt, &with(&[("qtype", "A"), ("rcode", "NOERROR")])), 2.0);
    assert_eq!(
        get(qt, &with(&[("qtype", "other"), ("rcode", "other")])),
        1.0
    );
    assert_eq!(
        get(
            qt,
            &[
                ("zone", "lb.example.com."),
                ("qtype", "AAAA"),
                ("rcode", "NXDOMAIN"),
                ("transport", "tcp")
            ]
        ),
        1.0
    );
    assert_eq!(
        get(qt, &[("zone", NO_ZONE), ("rcode", "REFUSED")]),
        1.0,
        "refused queries count in the no-zone slot"
    );
    assert_eq!(q.zone_total(zone), 4);

    // The histogram: 30µs and 70µs land in the 50µs and 100µs buckets.
    let hist = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "steerdns_dns_response_duration_seconds"
                && s.labels.get("transport") == Some("udp")
        })
        .expect("udp histogram");
    match &hist.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let at = |le: f64| {
                buckets
                    .iter()
                    .find(|b| (b.less_than - le).abs() < 1e-12)
                    .map(|b| b.count)
            };
            // The two 10µs queries (refused, and the unknown slot: its
            // duration still counts).
            assert_eq!(at(0.000_025), Some(2.0));
            assert_eq!(at(0.000_05), Some(3.0));
            assert_eq!(at(0.000_1), Some(4.0));
            assert_eq!(at(1.0), Some(4.0));
        }
        other => panic!("not a histogram: {other:?}"),
    }
    assert!(text.contains("steerdns_dns_response_duration_seconds_count{transport=\"udp\"} 5"));
    assert!(text.contains(
        "steerdns_dns_response_duration_seconds_bucket{transport=\"udp\",le=\"+Inf\"} 5"
    ));

    let at = "steerdns_balancer_answers_total";
    assert_eq!(get(at, &[("pool", "eu"), ("mode", "normal")]), 2.0);
    assert_eq!(get(at, &[("pool", "na"), ("mode", "fallback")]), 1.0);
    assert_eq!(get(at, &[("pool", "na"), ("mode", "fail_open")]), 1.0);
    assert_eq!(get(at, &[("pool", NO_ZONE), ("mode", "nodata")]), 1.0);
    assert_eq!(m.answers().count(a, AnswerMode::Normal), 2);
    assert_eq!(
        get("steerdns_dns_dropped_total", &[("reason", "malformed")]),
        1.0
    );
    assert_eq!(
        get("steerdns_dns_dropped_total", &[("reason", "rate_limited")]),
        0.0
    );
    assert_eq!(
        get("steerdns_geoip_lookups_total", &[("result", "override")]),
        1.0
    );
    assert_eq!(
        get(
            "steerdns_endpoint_up",
            &[("pool", "eu"), ("endpoint", "192.0.2.11")]
        ),
        0.0
    );
    assert_eq!(get("steerdns_pool_usable", &[("pool", "eu")]), 1.0);
    assert_eq!(
        get(
            "steerdns_probe_failures_total",
            &[("endpoint", "192.0.2.11"), ("reason", "timeout")]
        ),
        1.0
    );
    assert_eq!(
        get("steerdns_config_reloads_total", &[("result", "failure")]),
        1.0
    );
    assert!(get("steerdns_config_last_reload_success_timestamp_seconds", &[]) > 1e9);
    assert_eq!(get("steerdns_config_last_reload_successful", &[]), 0.0);
    assert_eq!(get("steerdns_build_info", &[("version", "1.2.3")]), 1.0);
    assert!(text.contains("# TYPE steerdns_probe_duration_seconds histogram"));

    // Every label value is one we configured or one of the fixed tables.
    let mut allowed: HashSet<&str> = [
        "lb.example.com.",
        "example.net.",
        NO_ZONE,
        "www.lb.example.com.",
        "eu",
        "na",
        "192.0.2.10",
        "192.0.2.11",
        "udp",
        "tcp",
        "other",
        "timeout",
        "success",
        "failure",
        "in_flight",
        "busy",
        "1.2.3",
    ]
    .into_iter()
    .collect();
    allowed.extend(QTYPES.iter().map(|x| x.1));
    allowed.extend(RCODES.iter().map(|x| x.1));
    allowed.extend(MODES);
    allowed.extend(DROP_REASONS);
    allowed.extend(GEO_RESULTS);
    for s in &scrape.samples {
        for (k, v) in s.labels.iter() {
            assert!(
                allowed.contains(v.as_str()),
                "label {k}={v:?} of {} is outside the configured values",
                s.metric
            );
        }
    }
    // Every family has HELP and TYPE.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} lacks HELP"
        );
    }
}

#[test]
fn removed_endpoints_lose_their_series() {
    let m = Metrics::new().unwrap();
    m.set_endpoint_up("eu", "a", true);
    m.set_endpoint_up("eu", "b", false);
    m.set_endpoint_up("old", "c", false);
    m.set_pool_usable("eu", true);
    m.set_pool_usable("old", false);
    m.retain_endpoints([("eu", "a")]);
    let text = m.render();
    assert!(text.contains("endpoint=\"a\""), "{text}");
    assert!(!text.contains("endpoint=\"b\""), "{text}");
    assert!(!text.contains("pool=\"old\""), "{text}");
}

#[test]
fn counters_sum_across_threads() {
    let m = std::sync::Arc::new(Metrics::new().unwrap());
    let z = m.queries().zone_slot("example.com.");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    m.queries()
                        .record_query(z, 1, 0, Transport::Udp, Duration::from_micros(5));
                    m.record_drop(DropReason::Oversize);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(m.queries().zone_total(z), 80_000);
    let scrape = parse(&m.render());
    let s = find(
        &scrape,
        "steerdns_dns_dropped_total",
        &[("reason", "oversize")],
    )
    .unwrap();
    assert_eq!(sample_value(s), 80_000.0);
}

#[test]
fn two_instances_are_independent() {
    let a = Metrics::new().unwrap();
    let b = Metrics::new().unwrap();
    a.record_drop(DropReason::Malformed);
    assert!(
        a.render()
            .contains("steerdns_dns_dropped_total{reason=\"malformed\"} 1")
    );
    assert!(
        b.render()
            .contains("steerdns_dns_dropped_total{reason=\"malformed\"} 0")
    );
}
