//! `[cluster]` and `policy = "latency"` → snapshot parts.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use crate::config::raw::{ConfigFile, NameConfig, PolicyKind, SString};
use crate::config::{Diagnostics, Source};
use crate::select::latency::{LatencyPolicy, MAX_POOLS};
use crate::select::{Policy, PoolId};

/// One peer node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its node name (a metrics label).
    pub name: String,
    /// Base URL as configured, for people.
    pub url: String,
    /// Host (name or address) to connect to.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// `[cluster]` compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// This node's name among its peers.
    pub node_name: String,
    /// The other nodes.
    pub peers: Vec<Peer>,
    /// Bearer token of the verdict exchange.
    pub token: Option<String>,
    /// Time between pulls of each peer.
    pub pull_interval: Duration,
    /// Deadline of one pull.
    pub pull_timeout: Duration,
    /// A peer is stale when its last good pull is older than this.
    pub stale_after: Duration,
    /// Where drain and forced states are kept.
    pub state_file: Option<PathBuf>,
}

fn parse_peer_url(url: &str) -> Result<(String, u16), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("{url:?}: write the peer's API as http://HOST:PORT (https is not supported)")
    })?;
    let hostport = rest.trim_end_matches('/');
    if hostport.contains('/') {
        return Err(format!("{url:?}: give the API's base URL, without a path"));
    }
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, p) = h
            .split_once("]:")
            .ok_or_else(|| format!("{url:?}: write [IPv6]:PORT"))?;
        (h, p)
    } else {
        hostport
            .rsplit_once(':')
            .ok_or_else(|| format!("{url:?}: the port is required"))?
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{url:?}: bad port {port:?}"))?;
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    Ok((host.to_string(), port))
}

fn dur(
    d: &mut Diagnostics<'_>,
    v: &Option<Spanned<crate::config::duration::Duration>>,
    key: &str,
) -> Option<Duration> {
    let v = v.as_ref()?;
    let x = v.get_ref().0;
    if x < Duration::from_millis(10) {
        d.error(v.span(), key, "must be at least 10ms");
        return None;
    }
    Some(x)
}

/// Compile `[cluster]`; `node_name` is `server.node_name` (the default).
pub(super) fn compile_cluster(
    source: &Source,
    file: &ConfigFile,
    node_name: &str,
    d: &mut Diagnostics<'_>,
) -> ClusterSettings {
    let c = &file.cluster;
    let me = c
        .node_name
        .as_ref()
        .map_or_else(|| node_name.to_string(), |n| n.get_ref().clone());
    let mut peers: Vec<Peer> = Vec::new();
    for (i, p) in c.peers.iter().enumerate() {
        let key = format!("cluster.peers[{i}]");
        let name = p.name.get_ref();
        if name.is_empty() || name.len() > 64 {
            d.error(p.name.span(), format!("{key}.name"), "1 to 64 characters");
            continue;
        }
        if *name == me {
            d.error(
                p.name.span(),
                format!("{key}.name"),
                format!("{name:?} is this node's own name (cluster.node_name, else server.node_name); list only the other nodes"),
            );
            continue;
        }
        if peers.iter().any(|q| q.name == *name) {
            d.error(
                p.name.span(),
                format!("{key}.name"),
                format!("peer {name:?} is listed twice"),
            );
            continue;
        }
        match parse_peer_url(p.url.get_ref()) {
            Ok((host, port)) => peers.push(Peer {
                name: name.clone(),
                url: p.url.get_ref().trim_end_matches('/').to_string(),
                host,
                port,
            }),
            Err(e) => d.error(p.url.span(), format!("{key}.url"), e),
        }
    }
    let token = c
        .token
        .as_ref()
        .map(|t| t.get_ref().clone())
        .filter(|t| !t.is_empty());
    if token.is_none()
        && !c.peers.is_empty()
        && let Some(p) = c.peers.first()
    {
        d.error(
            p.name.span(),
            "cluster.token",
            "peers need a shared token (cluster.token = \"...\", the same on every node): verdicts decide what every node answers",
        );
    }
    let pull_interval =
        dur(d, &c.pull_interval, "cluster.pull_interval").unwrap_or(Duration::from_secs(2));
    let pull_timeout = dur(d, &c.pull_timeout, "cluster.pull_timeout")
        .unwrap_or_else(|| (pull_interval / 2).min(Duration::from_secs(2)));
    if let Some(t) = &c.pull_timeout
        && pull_timeout > pull_interval
    {
        d.error(
            t.span(),
            "cluster.pull_timeout",
            format!("longer than the pull interval ({pull_interval:?})"),
        );
    }
    let stale_after = dur(d, &c.stale_after, "cluster.stale_after").unwrap_or(pull_interval * 3);
    if let Some(s) = &c.stale_after
        && stale_after < pull_interval
    {
        d.error(
            s.span(),
            "cluster.stale_after",
            format!(
                "shorter than the pull interval ({pull_interval:?}): every peer would look stale"
            ),
        );
    }
    ClusterSettings {
        node_name: me,
        peers,
        token,
        pull_interval,
        pull_timeout,
        stale_after,
        state_file: c
            .state_file
            .as_ref()
            .map(|f| source.dir().join(f.get_ref())),
    }
}

fn margin(
    d: &mut Diagnostics<'_>,
    v: &Option<Spanned<f64>>,
    key: String,
    default: f64,
    max: f64,
) -> f64 {
    match v {
        Some(m) if !(0.0..=max).contains(m.get_ref()) => {
            d.error(m.span(), key, format!("between 0 and {max}"));
            default
        }
        Some(m) => *m.get_ref(),
        None => default,
    }
}

/// Complain about latency keys on names of other policies.
pub(super) fn check_latency_keys(d: &mut Diagnostics<'_>, n: &NameConfig, key: &str) {
    if *n.policy.get_ref() == PolicyKind::Latency {
        return;
    }
    for (v, f) in [
        (&n.latency_margin_ms, "latency_margin_ms"),
        (&n.latency_margin_pct, "latency_margin_pct"),
    ] {
        if let Some(v) = v {
            d.error(
                v.span(),
                format!("{key}.{f}"),
                "only used with policy = \"latency\"",
            );
        }
    }
}

/// `policy = "latency"` over `list` (the checked `pools`).
pub(super) fn latency_policy(
    d: &mut Diagnostics<'_>,
    n: &NameConfig,
    list: Box<[PoolId]>,
    pools: &Spanned<Vec<SString>>,
    key: &str,
) -> Option<Policy> {
    if list.len() > MAX_POOLS {
        d.error(
            pools.span(),
            format!("{key}.pools"),
            format!("policy \"latency\" orders at most {MAX_POOLS} pools"),
        );
        return None;
    }
    let ms = margin(
        d,
        &n.latency_margin_ms,
        format!("{key}.latency_margin_ms"),
        10.0,
        60_000.0,
    );
    let pct = margin(
        d,
        &n.latency_margin_pct,
        format!("{key}.latency_margin_pct"),
        10.0,
        100.0,
    );
    Some(Policy::Latency(Box::new(LatencyPolicy::new(
        list,
        ms,
        pct / 100.0,
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(extra: &str) -> String {
        let text = format!(
            "[server]\nnode_name = \"a\"\n[zones.\"lb.example.com\"]\nns = [\"ns1\"]\n\
             [pools.p]\nendpoints = [{{ address = \"192.0.2.1\" }}]\n{extra}"
        );
        let source = crate::config::Source {
            path: "c.toml".into(),
            text,
        };
        match crate::config::parse(&source).and_then(|f| super::super::build(&source, &f, 1)) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn cluster_and_latency_errors_point_at_the_key() {
        assert_eq!(errors("[cluster]\n"), "");
        let e = errors("[cluster]\npeers = [{ name = \"b\", url = \"http://127.0.0.1:1\" }]\n");
        assert!(e.contains("cluster.token"), "{e}");
        let e = errors(
            "[cluster]\ntoken = \"t\"\npeers = [{ name = \"a\", url = \"http://127.0.0.1:1\" }, { name = \"b\", url = \"ftp://x\" }]\n",
        );
        assert!(
            e.contains("cluster.peers[0].name") && e.contains("own name"),
            "{e}"
        );
        assert!(e.contains("cluster.peers[1].url"), "{e}");
        let e = errors("[cluster]\npull_interval = \"1s\"\nstale_after = \"100ms\"\n");
        assert!(
            e.contains("c.toml:9:15") && e.contains("cluster.stale_after"),
            "{e}"
        );
        let e = errors("[monitors.m]\ntype = \"tcp\"\nport = 1\nquorum = \"most\"\n");
        assert!(e.contains("quorum") && e.contains("majority"), "{e}");
        assert!(errors("[monitors.m]\ntype = \"tcp\"\nport = 1\nquorum = 0\n").contains("quorum"));
        assert_eq!(
            errors("[monitors.m]\ntype = \"tcp\"\nport = 1\nquorum = 2\n"),
            ""
        );
        let e = errors(
            "[names.\"x.lb.example.com\"]\npolicy = \"failover\"\npools = [\"p\"]\nlatency_margin_ms = 5\n",
        );
        assert!(
            e.contains("latency_margin_ms") && e.contains("only used with"),
            "{e}"
        );
        let e = errors(
            "[names.\"x.lb.example.com\"]\npolicy = \"latency\"\npools = [\"p\"]\nlatency_margin_pct = 300\n",
        );
        assert!(e.contains("latency_margin_pct"), "{e}");
    }

    #[test]
    fn peer_urls() {
        assert_eq!(
            parse_peer_url("http://127.0.0.1:9153").unwrap(),
            ("127.0.0.1".into(), 9153)
        );
        assert_eq!(
            parse_peer_url("http://[::1]:9153/").unwrap(),
            ("::1".into(), 9153)
        );
        assert_eq!(
            parse_peer_url("http://node-b.example:80").unwrap(),
            ("node-b.example".into(), 80)
        );
        assert!(parse_peer_url("https://127.0.0.1:9153").is_err());
        assert!(parse_peer_url("http://127.0.0.1").is_err());
        assert!(parse_peer_url("http://127.0.0.1:9153/api").is_err());
        assert!(parse_peer_url("http://:80").is_err());
    }
}
