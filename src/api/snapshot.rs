//! Helpers for an [`ApiBackend`](super::ApiBackend) built over a
//! [`Snapshot`]: the pool part of [`Status`](super::Status), and the explain
//! report as JSON.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::model::{EndpointState, EndpointStatus, PoolStatus};
use crate::explain::{Explanation, ProbeIndex};
use crate::health::HealthTable;
use crate::probe::HealthStatus;
use crate::select::{EndpointId, Inputs, PoolId, Target};
use crate::snapshot::Snapshot;
use crate::zone;

/// What the prober knows about one endpoint, beyond up/down.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeInfo {
    /// `None`: not probed yet ([`EndpointState::Unknown`] when there is a
    /// monitor). `Some(up)`: the last verdict.
    pub probed: Option<bool>,
    /// The last probe's result or the reason of the state.
    pub reason: Option<String>,
    /// When the endpoint was last probed.
    pub last_probe_at: Option<u64>,
    /// When its state last changed.
    pub last_change_at: Option<u64>,
    /// The monitor (`"tcp:443"`, …); `None`: not monitored (counted as up).
    pub monitor: Option<String>,
}

/// The address an endpoint answers with, as shown to people.
pub fn target_text(t: &Target) -> String {
    match t {
        Target::V4(a) => a.to_string(),
        Target::V6(a) => a.to_string(),
        Target::Host(h) => zone::display_name(h),
    }
}

/// Every pool of `snap` with its endpoints, health from `health` (the hot
/// path's view: `up` and `usable` are what answers use) and details from
/// `probe`.
pub fn pool_statuses(
    snap: &Snapshot,
    health: &HealthTable,
    probe: impl Fn(EndpointId) -> ProbeInfo,
) -> Vec<PoolStatus> {
    let inputs = Inputs {
        pools: &snap.pools,
        health,
    };
    snap.pools
        .iter()
        .enumerate()
        .map(|(i, p)| PoolStatus {
            name: p.name.clone(),
            usable: inputs.pool_usable(i as PoolId),
            min_healthy: p.min_healthy,
            endpoints: p
                .endpoints
                .iter()
                .map(|e| {
                    let info = probe(e.id);
                    let up = e.enabled && health.is_up(e.id);
                    let state = if !e.enabled {
                        EndpointState::Disabled
                    } else if health.is_drained(e.id) {
                        EndpointState::Drained
                    } else if info.monitor.is_some() && info.probed.is_none() {
                        EndpointState::Unknown
                    } else if up {
                        EndpointState::Up
                    } else {
                        EndpointState::Down
                    };
                    EndpointStatus {
                        name: e.label.clone(),
                        address: target_text(&e.target),
                        enabled: e.enabled,
                        up,
                        state,
                        reason: info.reason,
                        last_probe_at: info.last_probe_at,
                        last_change_at: info.last_change_at,
                        monitor: info.monitor,
                    }
                })
                .collect(),
        })
        .collect()
}

/// What the prober knows about `endpoint` of `snap`, found through `probes`
/// (the same snapshot's index, so a reload cannot mix two configs).
pub(crate) fn probe_info(
    snap: &Snapshot,
    probes: &ProbeIndex<'_>,
    health: Option<&HealthStatus>,
    endpoint: EndpointId,
) -> ProbeInfo {
    let Some(t) = probes.get(endpoint) else {
        return ProbeInfo::default();
    };
    let m = &snap.monitors[t.monitor as usize];
    let monitor = Some(format!("{} {} {}", m.name, m.kind.label(), t.addr));
    match health.and_then(|h| h.get(&t.key)) {
        None => ProbeInfo {
            monitor,
            ..ProbeInfo::default()
        },
        Some(h) => ProbeInfo {
            probed: match h.hysteresis.verdict {
                crate::health::state::Verdict::Unknown => None,
                v => Some(v.answerable()),
            },
            reason: h.reason,
            last_probe_at: h.last_probe_at,
            last_change_at: h.last_change_at,
            monitor,
        },
    }
}

/// `steerdns explain` as JSON: the [`Explanation`] under `"report"`, and
/// for readers of the text: `"text"` (the CLI's report), `"trace"` (its
/// lines: `{"step", "value", "details"?}`), and the first value of each
/// step as a field (`"client"`, `"location"`, `"question"`, `"zone"`,
/// `"balancer"`, `"rule"`, `"latency"`, `"mode"`, `"ecs_scope"`,
/// `"rcode"`) plus `"chosen_pool"`, `"answers"` and `"authority"`. Errors are
/// the request's (bad name or type).
pub fn explain_json(
    snap: &Snapshot,
    health: Option<&HealthStatus>,
    name: &str,
    qtype: &str,
    client: IpAddr,
) -> Result<Value, String> {
    let e =
        crate::explain::explain(snap, health, client, name, qtype).map_err(|e| e.to_string())?;
    Ok(explanation_json(&e))
}

/// The JSON of [`explain_json`] for an explanation.
pub(crate) fn explanation_json(e: &Explanation) -> Value {
    let lines = e.lines();
    let mut fields = serde_json::Map::new();
    for l in &lines {
        if !matches!(l.step, "answer" | "authority" | "pool") {
            fields
                .entry(l.step.replace(' ', "_"))
                .or_insert_with(|| Value::String(l.value.clone()));
        }
    }
    if let Some(p) = e.chosen_pool() {
        fields.insert("chosen_pool".into(), p.into());
    }
    let step_values = |step: &str| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| l.step == step)
            .map(|l| Value::String(l.value.clone()))
            .collect()
    };
    fields.insert("answers".into(), Value::Array(step_values("answer")));
    fields.insert("authority".into(), Value::Array(step_values("authority")));
    let trace = lines
        .iter()
        .map(|l| {
            let mut step = json!({ "step": l.step, "value": l.value });
            if !l.details.is_empty() {
                step["details"] = json!(l.details);
            }
            step
        })
        .collect();
    fields.insert("trace".into(), Value::Array(trace));
    fields.insert("text".into(), Value::String(e.to_string()));
    fields.insert(
        "report".into(),
        serde_json::to_value(e).unwrap_or_else(|err| json!({ "error": err.to_string() })),
    );
    Value::Object(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn example() -> Snapshot {
        crate::reload::load_snapshot(Path::new("config/example.toml"), 1).expect("example config")
    }

    #[test]
    fn pools_with_health_and_probe_details() {
        let snap = example();
        let eu = &snap.pools[snap.pool_ids["eu"] as usize];
        let down = eu.endpoints[0].id;
        for e in eu.endpoints.iter() {
            snap.health.set(e.id, e.id != down);
        }
        let pools = pool_statuses(&snap, &snap.health, |id| {
            if id == down {
                ProbeInfo {
                    probed: Some(false),
                    reason: Some("connect timeout".into()),
                    last_probe_at: Some(10),
                    last_change_at: Some(5),
                    monitor: Some("tcp:443".into()),
                }
            } else {
                ProbeInfo::default()
            }
        });
        assert_eq!(pools.len(), snap.pools.len());
        let p = pools.iter().find(|p| p.name == "eu").unwrap();
        let e = &p.endpoints[0];
        assert_eq!(e.state, EndpointState::Down);
        assert!(!e.up);
        assert_eq!(e.reason.as_deref(), Some("connect timeout"));
        assert_eq!(e.address, target_text(&eu.endpoints[0].target));
        // Unmonitored endpoints are up.
        assert!(
            pools
                .iter()
                .find(|p| p.name == "na")
                .unwrap()
                .endpoints
                .iter()
                .all(|e| e.state == EndpointState::Up || e.state == EndpointState::Disabled)
        );
    }

    /// The parser `/api/v1/explain` used before the report was data, kept
    /// only to show that every field it produced is still there, unchanged.
    fn legacy_report_to_json(text: &str) -> Value {
        let mut trace: Vec<Value> = Vec::new();
        let mut fields = serde_json::Map::new();
        let mut answers = Vec::new();
        let mut authority = Vec::new();
        for line in text.lines() {
            if line.trim().is_empty() {
                continue;
            }
            if line.starts_with(' ') {
                if let Some(Value::Object(last)) = trace.last_mut() {
                    let details = last
                        .entry("details")
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(d) = details {
                        d.push(Value::String(line.trim().to_string()));
                    }
                }
                continue;
            }
            let (key, value) = match line.get(..11) {
                Some(k) if line.len() > 11 => (k.trim(), line[11..].trim()),
                _ => match line.split_once(char::is_whitespace) {
                    Some((k, v)) => (k, v.trim()),
                    None => (line.trim(), ""),
                },
            };
            trace.push(json!({ "step": key, "value": value }));
            match key {
                "answer" => answers.push(Value::String(value.to_string())),
                "authority" => authority.push(Value::String(value.to_string())),
                "pool" => {
                    if let Some(v) = value.strip_suffix("<- chosen") {
                        let name = v.split(':').next().unwrap_or("").trim();
                        fields.insert("chosen_pool".into(), Value::String(name.to_string()));
                    }
                }
                k => {
                    fields
                        .entry(k.replace(' ', "_"))
                        .or_insert_with(|| Value::String(value.to_string()));
                }
            }
        }
        fields.insert("answers".into(), Value::Array(answers));
        fields.insert("authority".into(), Value::Array(authority));
        fields.insert("trace".into(), Value::Array(trace));
        fields.insert("text".into(), Value::String(text.to_string()));
        Value::Object(fields)
    }

    #[test]
    fn json_keeps_every_field_of_the_text_parser() {
        let example = example();
        let cluster = crate::reload::load_snapshot(Path::new("config/cluster-node.toml"), 1)
            .expect("cluster config");
        for (snap, client, name, qtype) in [
            (&example, "216.160.83.1", "www.lb.example.com", "A"),
            (&example, "10.1.2.3", "www.lb.example.com", "AAAA"),
            (&example, "192.0.2.1", "lab.lb.example.com", "A"),
            (&example, "192.0.2.1", "nope.lb.example.com", "A"),
            (&example, "192.0.2.1", "www.example.org", "A"),
            (&cluster, "192.0.2.1", "fast.lb.example.com", "A"),
        ] {
            let client: IpAddr = client.parse().unwrap();
            let v = explain_json(snap, None, name, qtype, client).unwrap();
            let text = crate::explain::explain(snap, None, client, name, qtype)
                .unwrap()
                .to_string();
            let Value::Object(old) = legacy_report_to_json(&text) else {
                unreachable!()
            };
            assert!(old.len() >= 7, "{old:?}");
            for (k, want) in &old {
                assert_eq!(&v[k], want, "{name} from {client}: field {k}");
            }
            // The structured form is there too, and agrees.
            assert_eq!(v["report"]["client"], client.to_string());
            assert_eq!(v["report"]["question"]["qtype"], qtype, "{}", v["report"]);
        }
    }

    #[test]
    fn explain_as_json() {
        let snap = example();
        let v = explain_json(
            &snap,
            None,
            "www.lb.example.com",
            "A",
            "216.160.83.1".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(v["client"], "216.160.83.1");
        assert_eq!(v["chosen_pool"], "na", "{v:#}");
        assert_eq!(v["mode"], "normal");
        assert_eq!(v["rcode"], "No Error");
        assert!(
            v["answers"][0].as_str().unwrap().contains("198.51.100.10"),
            "{v:#}"
        );
        assert!(v["ecs_scope"].as_str().unwrap().starts_with('/'), "{v:#}");
        let r = &v["report"];
        assert_eq!(r["location"]["country"], "US", "{r:#}");
        assert_eq!(
            r["steering"]["rule"],
            json!({"kind": "continent", "code": "NA"})
        );
        assert_eq!(r["steering"]["mode"], "normal");
        assert_eq!(r["steering"]["pools"][0]["name"], "na");
        assert_eq!(r["steering"]["pools"][0]["chosen"], true);
        assert_eq!(
            r["steering"]["pools"][0]["endpoints"][0]["health"],
            json!({"state": "not_monitored"})
        );
        assert_eq!(r["response"]["rcode"], "No Error");
        let pools: Vec<&Value> = v["trace"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["step"] == "pool")
            .collect();
        assert!(!pools.is_empty());
        assert!(
            pools[0]["details"]
                .as_array()
                .is_some_and(|d| !d.is_empty())
        );
        assert!(
            explain_json(
                &snap,
                None,
                "www.lb.example.com",
                "NOPE",
                "192.0.2.1".parse().unwrap()
            )
            .is_err()
        );
    }
}
