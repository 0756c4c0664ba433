//! Compile `[rrl]`, `[cookies]` and the TCP fairness keys of `[server]`.

use std::time::Duration;

use toml::Spanned;

use std::sync::{Arc, OnceLock};

use super::parse::parse_net;
use crate::config::raw::ConfigFile;
use crate::config::{Diagnostics, Source};
use crate::cookie::Secrets;
use crate::rrl::{self, Limits};

/// `[rrl]` compiled: `None` when off.
pub(super) fn compile_rrl(file: &ConfigFile, d: &mut Diagnostics<'_>) -> Option<Limits> {
    let r = &file.rrl;
    let mut l = Limits::default();
    let rate = |v: &Option<Spanned<u32>>, key: &str, def: u32, d: &mut Diagnostics<'_>| {
        let Some(v) = v else { return def };
        let n = *v.get_ref();
        if n == 0 || n > rrl::MAX_RATE {
            d.error(
                v.span(),
                format!("rrl.{key}"),
                format!(
                    "must be between 1 and {} responses per second",
                    rrl::MAX_RATE
                ),
            );
        }
        n.clamp(1, rrl::MAX_RATE)
    };
    l.responses_per_second = rate(&r.responses_per_second, "responses_per_second", 200, d);
    let rps = l.responses_per_second;
    l.nxdomains_per_second = rate(&r.nxdomains_per_second, "nxdomains_per_second", rps, d);
    l.errors_per_second = rate(&r.errors_per_second, "errors_per_second", rps, d);
    if let Some(s) = &r.slip {
        if *s.get_ref() > rrl::MAX_SLIP {
            d.error(
                s.span(),
                "rrl.slip",
                format!(
                    "at most {}: every Nth limited response is truncated (0 never, 1 always)",
                    rrl::MAX_SLIP
                ),
            );
        }
        l.slip = (*s.get_ref()).min(rrl::MAX_SLIP);
    }
    for (v, key, max, out) in [
        (&r.ipv4_prefix, "ipv4_prefix", 32u8, &mut l.ipv4_prefix),
        (&r.ipv6_prefix, "ipv6_prefix", 128u8, &mut l.ipv6_prefix),
    ] {
        if let Some(p) = v {
            if *p.get_ref() > max {
                d.error(
                    p.span(),
                    format!("rrl.{key}"),
                    format!("a prefix length up to {max}"),
                );
            }
            *out = (*p.get_ref()).min(max);
        }
    }
    for (i, n) in r.exempt.iter().enumerate() {
        if let Some(net) = parse_net(n, &format!("rrl.exempt[{i}]"), d) {
            l.exempt.push(net);
        }
    }
    if let Some(t) = &r.table_size {
        let n = *t.get_ref();
        if !(1024..=1 << 26).contains(&n) {
            d.error(
                t.span(),
                "rrl.table_size",
                "between 1024 and 67108864 buckets (8 bytes each)",
            );
        }
        l.table_size = n.clamp(1024, 1 << 26);
    }
    r.enabled.then_some(l)
}

/// TCP fairness: (connections per client network, idle timeout when busy).
pub(super) fn compile_tcp(
    file: &ConfigFile,
    idle: Duration,
    d: &mut Diagnostics<'_>,
) -> (usize, Duration) {
    let s = &file.server;
    let cap = s.tcp_max_connections.max(1);
    let per_client = match &s.tcp_max_connections_per_client {
        Some(v) => {
            if *v.get_ref() == 0 {
                d.error(
                    v.span(),
                    "server.tcp_max_connections_per_client",
                    "must be at least 1",
                );
            }
            (*v.get_ref()).max(1)
        }
        // A quarter of the cap: one network cannot hold the rest.
        None => (cap / 4).clamp(1, 64),
    };
    let busy = match &s.tcp_busy_idle_timeout {
        Some(v) => {
            let t = v.get_ref().0;
            if t.is_zero() || t > idle {
                d.error(
                    v.span(),
                    "server.tcp_busy_idle_timeout",
                    "must be more than zero and at most server.tcp_idle_timeout",
                );
            }
            t.clamp(Duration::from_millis(1), idle.max(Duration::from_millis(1)))
        }
        None => idle.min(Duration::from_secs(1)),
    };
    (per_client, busy)
}

/// `[cookies]` compiled: the secrets, or `None` when cookies are off.
/// Without a secret file, one random secret for the life of the process
/// (so reloads keep cookies valid).
pub(super) fn compile_cookies(
    source: &Source,
    file: &ConfigFile,
    d: &mut Diagnostics<'_>,
) -> Option<Arc<Secrets>> {
    static RANDOM: OnceLock<Arc<Secrets>> = OnceLock::new();
    let c = &file.cookies;
    if !c.enabled {
        return None;
    }
    let Some(f) = &c.secret_file else {
        return Some(RANDOM.get_or_init(|| Arc::new(Secrets::random())).clone());
    };
    let path = source.dir().join(f.get_ref());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            d.error(
                f.span(),
                "cookies.secret_file",
                format!("cannot read {}: {e}", path.display()),
            );
            return None;
        }
    };
    match Secrets::parse(&text) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            d.error(
                f.span(),
                "cookies.secret_file",
                format!("{}: {e}", path.display()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::testing::run;

    #[test]
    fn rrl_off_unless_enabled_and_rates_default_to_the_response_rate() {
        let (l, e) = run("[rrl]\nresponses_per_second = 50\n", |_, f, d| {
            compile_rrl(f, d)
        });
        assert_eq!((l.is_none(), e), (true, String::new()));
        let (l, e) = run(
            "[rrl]\nenabled = true\nresponses_per_second = 50\nexempt = [\"10.0.0.0/8\"]\n",
            |_, f, d| compile_rrl(f, d),
        );
        assert_eq!(e, "");
        let l = l.unwrap();
        assert_eq!(
            (
                l.responses_per_second,
                l.nxdomains_per_second,
                l.errors_per_second
            ),
            (50, 50, 50)
        );
        assert_eq!(l.exempt.len(), 1);
    }

    #[test]
    fn rrl_errors() {
        let (_, e) = run(
            "[rrl]\nenabled = true\nresponses_per_second = 0\nipv4_prefix = 33\nexempt = [\"10.0.0.1/8\"]\ntable_size = 10\n",
            |_, f, d| compile_rrl(f, d),
        );
        for want in [
            "rrl.responses_per_second: must be between 1 and",
            "rrl.ipv4_prefix: a prefix length up to 32",
            "rrl.exempt[0]: \"10.0.0.1/8\" has host bits set",
            "rrl.table_size: between 1024 and 67108864 buckets",
        ] {
            assert!(e.contains(want), "{want} in\n{e}");
        }
    }

    #[test]
    fn tcp_fairness_defaults_and_bounds() {
        let idle = Duration::from_secs(10);
        let (t, e) = run("[server]\ntcp_max_connections = 100\n", |_, f, d| {
            compile_tcp(f, idle, d)
        });
        assert_eq!((t, e), ((25, Duration::from_secs(1)), String::new()));
        let (_, e) = run(
            "[server]\ntcp_max_connections_per_client = 0\ntcp_busy_idle_timeout = \"20s\"\n",
            |_, f, d| compile_tcp(f, idle, d),
        );
        assert!(
            e.contains("server.tcp_max_connections_per_client: must be at least 1"),
            "{e}"
        );
        assert!(
            e.contains("server.tcp_busy_idle_timeout: must be more than zero and at most"),
            "{e}"
        );
    }

    #[test]
    fn cookies_random_secret_or_file() {
        let (a, _) = run("", compile_cookies);
        let (b, _) = run("", compile_cookies);
        assert!(
            Arc::ptr_eq(&a.unwrap(), &b.unwrap()),
            "one random secret per process"
        );
        let (c, e) = run("[cookies]\nenabled = false\n", compile_cookies);
        assert_eq!((c.is_none(), e), (true, String::new()));
        let (c, e) = run(
            "[cookies]\nsecret_file = \"no-such-secret\"\n",
            compile_cookies,
        );
        assert!(
            c.is_none() && e.contains("cookies.secret_file: cannot read"),
            "{e}"
        );
    }
}
