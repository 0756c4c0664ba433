//! `[server]` → [`Settings`], with the sections compiled alongside it
//! (`[anycast]`, `[rrl]`, the TCP fairness keys).

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Diagnostics;
use crate::config::raw::ConfigFile;

/// Server settings from `[server]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// DNS listen addresses.
    pub dns_listen: Vec<SocketAddr>,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// UDP sockets per listen address (0 = one per core).
    pub udp_workers: usize,
    /// Largest UDP response.
    pub max_udp_payload: u16,
    /// Locate clients by EDNS Client Subnet.
    pub ecs: bool,
    /// Node name (NSID, `id.server`, `hostname.bind`).
    pub node_name: String,
    /// Answer to `version.bind`, if any.
    pub version: Option<String>,
    /// TCP idle timeout.
    pub tcp_idle_timeout: Duration,
    /// TCP connection cap.
    pub tcp_max_connections: usize,
    /// Seed for weighted picks.
    pub random_seed: Option<u64>,
    /// Bearer token of the mutating API endpoints.
    pub api_token: Option<String>,
    /// Probes running at once.
    pub max_concurrent_probes: usize,
    /// Fraction of queries logged.
    pub query_log_sample: f64,
    /// File watch period (zero: off).
    pub watch_interval: Duration,
    /// `server.xdp_interface`: answer UDP through AF_XDP there too.
    pub xdp_interface: Option<String>,
    /// `server.xdp_coalesce`: how long a busy AF_XDP worker lets queries
    /// gather between turns (zero: woken by every packet).
    pub xdp_coalesce: std::time::Duration,
    /// `[anycast]`, when configured (read at start only).
    pub anycast: Option<super::anycast::AnycastSettings>,
    /// Response rate limiting (`[rrl]`), when on.
    pub rrl: Option<crate::rrl::Limits>,
    /// TCP connections per client network.
    pub tcp_max_per_client: usize,
    /// TCP idle timeout while the connection cap is near.
    pub tcp_busy_idle_timeout: Duration,
    /// DNS Cookie secrets (`[cookies]`), when cookies are on.
    pub cookies: Option<Arc<crate::cookie::Secrets>>,
    /// `server.dns_cpus`: where the DNS threads run (read at start only).
    pub dns_cpus: DnsCpus,
}

/// The longest `server.xdp_coalesce`: the added latency stays under a
/// millisecond.
const MAX_XDP_COALESCE: std::time::Duration = std::time::Duration::from_millis(1);

/// `server.dns_cpus`: pin the DNS threads (UDP workers, TCP) to CPUs and
/// the control plane (prober, API, cluster, reloads) to the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DnsCpus {
    /// No pinning (the default): the scheduler places every thread; the
    /// control plane still runs on its own, lower-priority threads.
    #[default]
    Off,
    /// With at least two usable CPUs: one UDP worker per CPU, the rest
    /// (at least one) for the control plane; see the README.
    Auto,
    /// These CPUs, UDP workers assigned in turn.
    List(Vec<usize>),
}

/// Largest CPU number `sched_setaffinity` takes (`CPU_SETSIZE`).
const MAX_CPU: i64 = 1023;

fn compile_dns_cpus(v: Option<&toml::Spanned<toml::Value>>, d: &mut Diagnostics<'_>) -> DnsCpus {
    let Some(v) = v else {
        return DnsCpus::Off;
    };
    let what = "\"off\", \"auto\" or a list of CPU numbers like [0, 1]";
    match v.get_ref() {
        toml::Value::String(s) if s == "off" => DnsCpus::Off,
        toml::Value::String(s) if s == "auto" => DnsCpus::Auto,
        toml::Value::Array(items) if !items.is_empty() => {
            let mut cpus = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.as_integer() {
                    Some(n) if (0..=MAX_CPU).contains(&n) => {
                        let n = n as usize;
                        if cpus.contains(&n) {
                            d.error(
                                v.span(),
                                format!("server.dns_cpus[{i}]"),
                                format!("CPU {n} is listed twice"),
                            );
                        }
                        cpus.push(n);
                    }
                    _ => d.error(
                        v.span(),
                        format!("server.dns_cpus[{i}]"),
                        format!("{item} is not a CPU number (0 to {MAX_CPU})"),
                    ),
                }
            }
            DnsCpus::List(cpus)
        }
        other => {
            d.error(
                v.span(),
                "server.dns_cpus",
                format!("{other} is not {what}"),
            );
            DnsCpus::Off
        }
    }
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes; gethostname NUL-terminates
    // on success when the name fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "steerdns".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

pub(super) fn compile_settings(file: &ConfigFile, d: &mut Diagnostics<'_>) -> Settings {
    let s = &file.server;
    let mut dns_listen = Vec::new();
    for (i, a) in s.dns_listen.iter().enumerate() {
        match SocketAddr::from_str(a.get_ref()) {
            Ok(addr) => dns_listen.push(addr),
            Err(_) => d.error(
                a.span(),
                format!("server.dns_listen[{i}]"),
                format!(
                    "{:?} is not an address:port; write e.g. \"0.0.0.0:53\" or \"[::]:53\"",
                    a.get_ref()
                ),
            ),
        }
    }
    let http_listen = SocketAddr::from_str(s.http_listen.get_ref()).unwrap_or_else(|_| {
        d.error(
            s.http_listen.span(),
            "server.http_listen",
            format!(
                "{:?} is not an address:port; write e.g. \"127.0.0.1:9153\"",
                s.http_listen.get_ref()
            ),
        );
        SocketAddr::from(([127, 0, 0, 1], 9153))
    });
    let max_udp = *s.max_udp_payload.get_ref();
    if max_udp < 512 {
        d.error(
            s.max_udp_payload.span(),
            "server.max_udp_payload",
            "must be at least 512 (the DNS minimum); 1232 avoids IP fragmentation",
        );
    }
    let node_name = s
        .node_name
        .as_ref()
        .map(|n| n.get_ref().clone())
        .unwrap_or_else(host_name);
    if let Some(n) = s.node_name.as_ref().filter(|n| n.get_ref().len() > 255) {
        d.error(n.span(), "server.node_name", "longer than 255 bytes");
    }
    if let Some(v) = s.version.as_ref().filter(|v| v.get_ref().len() > 255) {
        d.error(v.span(), "server.version", "longer than 255 bytes");
    }
    let idle = s.tcp_idle_timeout.get_ref().0;
    if idle.is_zero() {
        d.error(
            s.tcp_idle_timeout.span(),
            "server.tcp_idle_timeout",
            "must be more than zero",
        );
    }
    let tcp = super::protect::compile_tcp(file, idle, d);
    Settings {
        dns_listen,
        http_listen,
        udp_workers: s.udp_workers,
        max_udp_payload: max_udp.max(512),
        ecs: s.ecs,
        node_name,
        version: s.version.as_ref().map(|v| v.get_ref().clone()),
        tcp_idle_timeout: idle,
        tcp_max_connections: s.tcp_max_connections.max(1),
        random_seed: s.random_seed,
        api_token: s.api_token.as_ref().map(|t| t.get_ref().clone()),
        max_concurrent_probes: {
            let n = *s.max_concurrent_probes.get_ref();
            if n == 0 {
                d.error(
                    s.max_concurrent_probes.span(),
                    "server.max_concurrent_probes",
                    "must be at least 1",
                );
            }
            n.max(1)
        },
        query_log_sample: {
            let r = *s.query_log_sample.get_ref();
            if !(0.0..=1.0).contains(&r) {
                d.error(
                    s.query_log_sample.span(),
                    "server.query_log_sample",
                    "a fraction between 0 (off) and 1 (every query)",
                );
            }
            r.clamp(0.0, 1.0)
        },
        watch_interval: s.watch_interval.get_ref().0,
        xdp_interface: s.xdp_interface.as_ref().map(|n| {
            let name = n.get_ref();
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                d.error(
                    n.span(),
                    "server.xdp_interface",
                    "not a network interface name",
                );
            }
            name.clone()
        }),
        xdp_coalesce: {
            let c = s.xdp_coalesce.get_ref().0;
            if c > MAX_XDP_COALESCE {
                d.error(
                    s.xdp_coalesce.span(),
                    "server.xdp_coalesce",
                    "at most \"1ms\": every query arriving meanwhile waits for it; \"0s\" turns it off",
                );
            }
            c.min(MAX_XDP_COALESCE)
        },
        anycast: super::anycast::compile(file, d),
        rrl: super::protect::compile_rrl(file, d),
        tcp_max_per_client: tcp.0,
        tcp_busy_idle_timeout: tcp.1,
        cookies: None,
        dns_cpus: compile_dns_cpus(s.dns_cpus.as_ref(), d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::testing::run;

    #[test]
    fn defaults() {
        let (s, e) = run("[server]\nnode_name = \"n1\"\n", |_, f, d| {
            compile_settings(f, d)
        });
        assert_eq!(e, "");
        assert_eq!(s.node_name, "n1");
        assert!(s.max_udp_payload >= 512);
        assert!(!s.tcp_idle_timeout.is_zero());
        assert!(s.anycast.is_none() && s.rrl.is_none() && s.cookies.is_none());
        assert!((0.0..=1.0).contains(&s.query_log_sample));
    }

    #[test]
    fn xdp_coalesce() {
        for (text, want) in [
            ("", 100),
            ("xdp_coalesce = \"0s\"", 0),
            ("xdp_coalesce = \"250us\"", 250),
            ("xdp_coalesce = \"1ms\"", 1000),
        ] {
            let (s, e) = run(&format!("[server]\n{text}\n"), |_, f, d| {
                compile_settings(f, d)
            });
            assert_eq!(e, "", "{text}");
            assert_eq!(s.xdp_coalesce.as_micros(), want, "{text}");
        }
        let (_, e) = run(
            "[server]\nnode_name = \"n\"\nxdp_coalesce = \"2ms\"\n",
            |_, f, d| compile_settings(f, d),
        );
        assert!(
            e.contains("3:16: server.xdp_coalesce: at most \"1ms\""),
            "{e}"
        );
    }

    #[test]
    fn dns_cpus() {
        for (text, want) in [
            ("", DnsCpus::Off),
            ("dns_cpus = \"off\"", DnsCpus::Off),
            ("dns_cpus = \"auto\"", DnsCpus::Auto),
            ("dns_cpus = [0, 2]", DnsCpus::List(vec![0, 2])),
        ] {
            let (s, e) = run(&format!("[server]\n{text}\n"), |_, f, d| {
                compile_settings(f, d)
            });
            assert_eq!(e, "", "{text}");
            assert_eq!(s.dns_cpus, want, "{text}");
        }
        for (text, want) in [
            (
                "dns_cpus = \"all\"",
                "3:12: server.dns_cpus: \"all\" is not \"off\", \"auto\" or a list",
            ),
            ("dns_cpus = []", "server.dns_cpus: [] is not"),
            (
                "dns_cpus = [0, 0]",
                "server.dns_cpus[1]: CPU 0 is listed twice",
            ),
            (
                "dns_cpus = [1, -1]",
                "server.dns_cpus[1]: -1 is not a CPU number (0 to 1023)",
            ),
            (
                "dns_cpus = [\"0\"]",
                "server.dns_cpus[0]: \"0\" is not a CPU number",
            ),
        ] {
            let (_, e) = run(
                &format!("[server]\nnode_name = \"n\"\n{text}\n"),
                |_, f, d| compile_settings(f, d),
            );
            assert!(e.contains(want), "{text}: want {want:?} in\n{e}");
        }
    }

    #[test]
    fn the_host_name_is_the_default_node_name() {
        let (s, _) = run("", |_, f, d| compile_settings(f, d));
        assert_eq!(s.node_name, host_name());
        assert!(!s.node_name.is_empty());
    }

    #[test]
    fn server_errors() {
        let (s, e) = run(
            "[server]\ndns_listen = [\"127.0.0.1:53\", \"nope\"]\nhttp_listen = \"x\"\nmax_udp_payload = 100\n\
             tcp_idle_timeout = \"0s\"\nmax_concurrent_probes = 0\nquery_log_sample = 2.0\n",
            |_, f, d| compile_settings(f, d),
        );
        for want in [
            "server.dns_listen[1]: \"nope\" is not an address:port",
            "server.http_listen: \"x\" is not an address:port",
            "server.max_udp_payload: must be at least 512",
            "server.tcp_idle_timeout: must be more than zero",
            "server.max_concurrent_probes: must be at least 1",
            "server.query_log_sample: a fraction between 0 (off) and 1 (every query)",
        ] {
            assert!(e.contains(want), "{want} in\n{e}");
        }
        // Values are clamped so a broken config still builds a usable value.
        assert_eq!(s.dns_listen.len(), 1);
        assert_eq!(s.max_udp_payload, 512);
        assert_eq!(s.max_concurrent_probes, 1);
        assert_eq!(s.query_log_sample, 1.0);
    }
}
