//! Probe targets: one per monitored endpoint, with its address, port,
//! monitor and the stable key that carries health across reloads.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use super::monitors::{BROKEN, Monitors};
use crate::config::raw::{ConfigFile, MonitorKind, SString};
use crate::config::{Diagnostics, quote_key};
use crate::health::ProbeTarget;
use crate::select::{Pool, Target};

fn default_port(kind: MonitorKind) -> Option<u16> {
    match kind {
        MonitorKind::Http => Some(80),
        MonitorKind::Https => Some(443),
        MonitorKind::Dns => Some(53),
        MonitorKind::Tcp => None,
    }
}

/// Probe targets for every monitored endpoint.
pub(super) fn compile_probes(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::monitors::compile_monitors;
    use crate::snapshot::testing::run_compiler;

    fn probes(text: &str) -> (Vec<ProbeTarget>, String) {
        run_compiler(text, |f, c| {
            c.compile_pools(&f.pools);
            let src = crate::snapshot::testing::source("");
            let m = compile_monitors(&src, f, &mut c.d);
            compile_probes(f, &c.pools, &c.pool_ids, &m, &mut c.d)
        })
    }

    #[test]
    fn one_target_per_monitored_endpoint() {
        let (p, e) = probes(
            "[monitors.web]\ntype = \"http\"\n[monitors.ssh]\ntype = \"tcp\"\nport = 22\n\
             [pools.a]\nmonitor = \"web\"\nendpoints = [\n\
             { address = \"192.0.2.1\" },\n\
             { address = \"192.0.2.2\", monitor = \"ssh\" },\n\
             { address = \"192.0.2.3\", monitor = \"none\" },\n\
             { address = \"origin.example.net\", probe_address = \"192.0.2.4\", probe_port = 8080 },\n]\n",
        );
        assert_eq!(e, "");
        let addrs: Vec<String> = p.iter().map(|t| t.addr.to_string()).collect();
        assert_eq!(addrs, ["192.0.2.1:80", "192.0.2.2:22", "192.0.2.4:8080"]);
        assert_eq!(p[2].host.as_deref(), Some("origin.example.net"));
        assert_eq!(p[1].endpoint, 1);
        assert!(
            p[0].key.starts_with("a|192.0.2.1|192.0.2.1:80|web|"),
            "{}",
            p[0].key
        );
    }

    #[test]
    fn probe_errors() {
        let (p, e) = probes(
            "[monitors.t]\ntype = \"tcp\"\n\
             [pools.a]\nendpoints = [\n\
             { address = \"192.0.2.1\", monitor = \"nope\" },\n\
             { address = \"192.0.2.2\", probe_address = \"192.0.2.9\" },\n\
             { address = \"192.0.2.3\", monitor = \"t\" },\n\
             { address = \"h.example.net\", monitor = \"t\", probe_port = 1 },\n\
             { address = \"192.0.2.5\", monitor = \"t\", probe_port = 1, probe_address = \"x\" },\n]\n",
        );
        assert!(p.is_empty());
        for want in [
            "endpoints[0].monitor: unknown monitor \"nope\"; defined monitors: t",
            "endpoints[1].probe_address: set, but this endpoint has no monitor",
            "endpoints[2].probe_port: monitor \"t\" is a tcp check without a port",
            "endpoints[3].probe_address: a host-name endpoint needs probe_address",
            "endpoints[4].probe_address: \"x\" is not an IP address",
        ] {
            assert!(e.contains(want), "{want} in\n{e}");
        }
    }
}
