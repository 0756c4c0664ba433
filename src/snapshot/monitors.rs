//! `[monitors]`, per-endpoint probe targets and `[notify]` → snapshot parts.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use toml::Spanned;

use super::NotifySettings;
use crate::config::raw::{ConfigFile, MonitorConfig, MonitorKind, SString};
use crate::config::{Diagnostics, Source, quote_key};
use crate::health::{Monitor, ProbeTarget};
use crate::probe::check::{self, CheckKind, CheckSpec, DnsCheck, HttpCheck, StatusSet, TlsCheck};
use crate::probe::notify::parse_http_url;
use crate::select::{Pool, Target};

const BROKEN: u32 = u32::MAX;

/// Compiled monitors and their ids by name.
pub struct Monitors {
    /// The monitors.
    pub list: Vec<Monitor>,
    /// Index by name.
    pub ids: HashMap<String, u32>,
    fingerprints: Vec<u64>,
}

fn fingerprint(m: &MonitorConfig) -> u64 {
    let mut h = DefaultHasher::new();
    m.hash(&mut h);
    h.finish()
}

/// Compile `[monitors]`.
pub fn compile_monitors(source: &Source, file: &ConfigFile, d: &mut Diagnostics<'_>) -> Monitors {
    let mut out = Monitors {
        list: Vec::new(),
        ids: HashMap::new(),
        fingerprints: Vec::new(),
    };
    for (name, m) in &file.monitors {
        let key = format!("monitors.{}", quote_key(name));
        if name == "none" {
            d.error(
                m.span(),
                &key,
                "\"none\" is reserved: endpoints use monitor = \"none\" to turn probing off",
            );
            continue;
        }
        match compile_monitor(source, name, m.get_ref(), &key, d) {
            Some(mon) => {
                out.ids.insert(name.clone(), out.list.len() as u32);
                out.fingerprints.push(fingerprint(m.get_ref()));
                out.list.push(mon);
            }
            // Known but broken: its own errors are reported; users of it
            // should not also get "unknown monitor".
            None => {
                out.ids.insert(name.clone(), BROKEN);
            }
        }
    }
    out
}

fn only_for(
    d: &mut Diagnostics<'_>,
    key: &str,
    field: &str,
    span: Option<std::ops::Range<usize>>,
    kind: MonitorKind,
    allowed: &[MonitorKind],
) {
    if let Some(span) = span
        && !allowed.contains(&kind)
    {
        let names: Vec<String> = allowed
            .iter()
            .map(|k| format!("{k:?}").to_lowercase())
            .collect();
        d.error(
            span,
            format!("{key}.{field}"),
            format!("only used by monitors of type {}", names.join(" or ")),
        );
    }
}

fn compile_monitor(
    source: &Source,
    name: &str,
    m: &MonitorConfig,
    key: &str,
    d: &mut Diagnostics<'_>,
) -> Option<Monitor> {
    use MonitorKind::{Dns, Http, Https};
    let kind = *m.kind.get_ref();
    let interval = m.interval.get_ref().0;
    let timeout = m.timeout.get_ref().0;
    let mut ok = true;
    if interval < Duration::from_millis(10) {
        d.error(
            m.interval.span(),
            format!("{key}.interval"),
            "must be at least 10ms",
        );
        ok = false;
    }
    if timeout.is_zero() {
        d.error(
            m.timeout.span(),
            format!("{key}.timeout"),
            "must be more than zero",
        );
        ok = false;
    } else if timeout > interval {
        d.error(m.timeout.span(), format!("{key}.timeout"), format!("longer than the interval ({interval:?}); a probe must end before the next one is due"));
        ok = false;
    }
    for (v, f) in [(&m.rise, "rise"), (&m.fall, "fall")] {
        if *v.get_ref() == 0 {
            d.error(v.span(), format!("{key}.{f}"), "must be at least 1");
            ok = false;
        }
    }
    let sp = |x: &Option<SString>| x.as_ref().map(|s| s.span());
    only_for(d, key, "path", sp(&m.path), kind, &[Http, Https]);
    only_for(d, key, "method", sp(&m.method), kind, &[Http, Https]);
    only_for(d, key, "host", sp(&m.host), kind, &[Http, Https]);
    only_for(
        d,
        key,
        "expect_status",
        sp(&m.expect_status),
        kind,
        &[Http, Https],
    );
    only_for(
        d,
        key,
        "expect_body",
        sp(&m.expect_body),
        kind,
        &[Http, Https],
    );
    only_for(d, key, "sni", sp(&m.sni), kind, &[Https]);
    only_for(d, key, "ca_file", sp(&m.ca_file), kind, &[Https]);
    only_for(d, key, "query_name", sp(&m.query_name), kind, &[Dns]);
    only_for(d, key, "query_type", sp(&m.query_type), kind, &[Dns]);
    only_for(d, key, "expect_answer", sp(&m.expect_answer), kind, &[Dns]);
    only_for(
        d,
        key,
        "expect_rcode",
        m.expect_rcode.as_ref().map(Spanned::span),
        kind,
        &[Dns],
    );
    let check_kind = match kind {
        MonitorKind::Tcp => CheckKind::Tcp,
        MonitorKind::Http | MonitorKind::Https => {
            let expect_status = match &m.expect_status {
                Some(s) => match StatusSet::parse(s.get_ref()) {
                    Ok(set) => set,
                    Err(e) => {
                        d.error(s.span(), format!("{key}.expect_status"), e);
                        return None;
                    }
                },
                None => StatusSet::parse("2xx").ok()?,
            };
            let path = m
                .path
                .as_ref()
                .map_or_else(|| "/".to_string(), |p| p.get_ref().clone());
            if !path.starts_with('/') {
                if let Some(p) = &m.path {
                    d.error(p.span(), format!("{key}.path"), "must start with /");
                }
                ok = false;
            }
            let method = m
                .method
                .as_ref()
                .map_or_else(|| "GET".to_string(), |x| x.get_ref().to_ascii_uppercase());
            if !method.bytes().all(|b| b.is_ascii_uppercase()) || method.is_empty() {
                if let Some(x) = &m.method {
                    d.error(
                        x.span(),
                        format!("{key}.method"),
                        "not an HTTP method (GET, HEAD, ...)",
                    );
                }
                ok = false;
            }
            let h = HttpCheck {
                method,
                path,
                host: m.host.as_ref().map(|h| h.get_ref().clone()),
                headers: m
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                expect_status,
                expect_body: m.expect_body.as_ref().map(|b| b.get_ref().clone()),
                follow_redirects: m.follow_redirects,
                body_limit: check::DEFAULT_BODY_LIMIT,
                user_agent: check::default_user_agent(),
            };
            if let Err(e) = h.validate() {
                d.error(m.kind.span(), key, e);
                return None;
            }
            if kind == MonitorKind::Http {
                CheckKind::Http(h)
            } else {
                let ca = m.ca_file.as_ref().map(|c| source.dir().join(c.get_ref()));
                match check::build_tls_config(m.tls_verify, ca.as_deref()) {
                    Ok(config) => CheckKind::Https(
                        h,
                        TlsCheck {
                            config,
                            sni: m.sni.as_ref().map(|s| s.get_ref().clone()),
                        },
                    ),
                    Err(e) => {
                        let span = m.ca_file.as_ref().map_or(m.kind.span(), |c| c.span());
                        d.error(span, format!("{key}.ca_file"), e);
                        return None;
                    }
                }
            }
        }
        MonitorKind::Dns => {
            let Some(qname) = &m.query_name else {
                d.error(
                    m.kind.span(),
                    format!("{key}.query_name"),
                    "a dns monitor needs query_name = \"name to ask\"",
                );
                return None;
            };
            let qtype = match &m.query_type {
                Some(t) => match RecordType::from_str(&t.get_ref().to_ascii_uppercase()) {
                    Ok(rt) => u16::from(rt),
                    Err(_) => {
                        d.error(
                            t.span(),
                            format!("{key}.query_type"),
                            format!("unknown record type {:?}", t.get_ref()),
                        );
                        return None;
                    }
                },
                None => 1,
            };
            let mut rcodes = Vec::new();
            if let Some(list) = &m.expect_rcode {
                for r in list.get_ref() {
                    match check::parse_rcode(r) {
                        Some(v) => rcodes.push(v),
                        None => {
                            d.error(list.span(), format!("{key}.expect_rcode"), format!("unknown rcode {r:?} (NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...)"));
                            ok = false;
                        }
                    }
                }
            } else {
                rcodes.push(0);
            }
            CheckKind::Dns(DnsCheck {
                qname: qname.get_ref().clone(),
                qtype,
                expect_rcodes: rcodes,
                expect_answer: m.expect_answer.as_ref().map(|a| a.get_ref().clone()),
            })
        }
    };
    ok.then(|| Monitor {
        name: name.to_string(),
        kind,
        spec: Arc::new(CheckSpec {
            kind: check_kind,
            timeout,
        }),
        interval,
        rise: *m.rise.get_ref(),
        fall: *m.fall.get_ref(),
        quorum: m.quorum,
    })
}

fn default_port(kind: MonitorKind) -> Option<u16> {
    match kind {
        MonitorKind::Http => Some(80),
        MonitorKind::Https => Some(443),
        MonitorKind::Dns => Some(53),
        MonitorKind::Tcp => None,
    }
}

/// Probe targets for every monitored endpoint.
pub fn compile_probes(
    file: &ConfigFile,
    pools: &[Pool],
    pool_ids: &HashMap<String, u32>,
    monitors: &Monitors,
    d: &mut Diagnostics<'_>,
) -> Vec<ProbeTarget> {
    let mut out = Vec::new();
    let lookup = |m: &SString, key: &str, d: &mut Diagnostics<'_>| -> Option<Option<u32>> {
        if m.get_ref() == "none" {
            return Some(None);
        }
        match monitors.ids.get(m.get_ref()) {
            Some(&BROKEN) => None,
            Some(&id) => Some(Some(id)),
            None => {
                let mut known: Vec<&str> = monitors.ids.keys().map(String::as_str).collect();
                known.sort_unstable();
                let known = if known.is_empty() {
                    "none are defined".into()
                } else {
                    format!("defined monitors: {}", known.join(", "))
                };
                d.error(
                    m.span(),
                    key,
                    format!("unknown monitor {:?}; {known}", m.get_ref()),
                );
                None
            }
        }
    };
    let by_name: BTreeMap<&String, _> = file.pools.iter().collect();
    for (pname, pc) in by_name {
        let Some(&pid) = pool_ids.get(pname) else {
            continue;
        };
        let pool = &pools[pid as usize];
        let pkey = format!("pools.{}", quote_key(pname));
        let pool_monitor = match &pc.get_ref().monitor {
            Some(m) => match lookup(m, &format!("{pkey}.monitor"), d) {
                Some(x) => x,
                None => continue,
            },
            None => None,
        };
        for (i, (ec, ep)) in pc
            .get_ref()
            .endpoints
            .get_ref()
            .iter()
            .zip(pool.endpoints.iter())
            .enumerate()
        {
            let ekey = format!("{pkey}.endpoints[{i}]");
            let monitor = match &ec.monitor {
                Some(m) => match lookup(m, &format!("{ekey}.monitor"), d) {
                    Some(x) => x,
                    None => continue,
                },
                None => pool_monitor,
            };
            let Some(mid) = monitor else {
                if let Some(pa) = &ec.probe_address {
                    d.error(
                        pa.span(),
                        format!("{ekey}.probe_address"),
                        "set, but this endpoint has no monitor",
                    );
                }
                continue;
            };
            let mon = &monitors.list[mid as usize];
            let (ip, host) = match (&ec.probe_address, &ep.target) {
                (Some(pa), _) => match IpAddr::from_str(pa.get_ref()) {
                    Ok(ip) => (ip, host_of(&ep.target)),
                    Err(_) => {
                        d.error(
                            pa.span(),
                            format!("{ekey}.probe_address"),
                            format!("{:?} is not an IP address", pa.get_ref()),
                        );
                        continue;
                    }
                },
                (None, Target::V4(a)) => (IpAddr::V4(*a), None),
                (None, Target::V6(a)) => (IpAddr::V6(*a), None),
                (None, Target::Host(_)) => {
                    d.error(ec.address.span(), format!("{ekey}.probe_address"), "a host-name endpoint needs probe_address = \"IP\" to be monitored (steerdns does not resolve names to probe them)");
                    continue;
                }
            };
            let Some(port) = ec
                .probe_port
                .or(monitor_port(file, &mon.name))
                .or(default_port(mon.kind))
            else {
                d.error(ec.address.span(), format!("{ekey}.probe_port"), format!("monitor {:?} is a tcp check without a port; set port in the monitor or probe_port here", mon.name));
                continue;
            };
            let addr = SocketAddr::new(ip, port);
            out.push(ProbeTarget {
                endpoint: ep.id,
                pool: pid,
                monitor: mid,
                addr,
                host,
                key: format!(
                    "{pname}|{}|{addr}|{}|{:016x}",
                    ep.label, mon.name, monitors.fingerprints[mid as usize]
                ),
                monitor_hash: monitors.fingerprints[mid as usize],
            });
        }
    }
    out
}

fn monitor_port(file: &ConfigFile, name: &str) -> Option<u16> {
    file.monitors.get(name).and_then(|m| m.get_ref().port)
}

fn host_of(t: &Target) -> Option<String> {
    match t {
        Target::Host(w) => {
            let s = crate::zone::display_name(w);
            Some(s.trim_end_matches('.').to_string())
        }
        _ => None,
    }
}

/// Compile `[notify]`.
pub fn compile_notify(file: &ConfigFile, d: &mut Diagnostics<'_>) -> NotifySettings {
    let n = &file.notify;
    let mut urls = Vec::new();
    for (i, u) in n.webhooks.iter().enumerate() {
        match parse_http_url(u.get_ref()) {
            Ok(_) => urls.push(u.get_ref().clone()),
            Err(e) => d.error(u.span(), format!("notify.webhooks[{i}]"), e),
        }
    }
    NotifySettings {
        urls,
        queue_size: n.queue_size.unwrap_or(1000).max(1),
        attempts: n.retries.unwrap_or(3).max(1),
    }
}
