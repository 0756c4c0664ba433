//! `[monitors]` → monitors: timing, the keys each type takes, and the
//! check of each type (in `checks.rs`).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::checks::{dns_check, http_check};
use crate::config::raw::{ConfigFile, MonitorConfig, MonitorKind, SString};
use crate::config::{Diagnostics, Source, quote_key};
use crate::health::Monitor;
use crate::health::spec::{CheckKind, CheckSpec};

pub(super) const BROKEN: u32 = u32::MAX;

/// Compiled monitors and their ids by name.
pub(super) struct Monitors {
    /// The monitors.
    pub(super) list: Vec<Monitor>,
    /// Index by name.
    pub(super) ids: HashMap<String, u32>,
    pub(super) fingerprints: Vec<u64>,
}

fn fingerprint(m: &MonitorConfig) -> u64 {
    let mut h = DefaultHasher::new();
    m.hash(&mut h);
    h.finish()
}

/// Compile `[monitors]`.
pub(super) fn compile_monitors(
    source: &Source,
    file: &ConfigFile,
    d: &mut Diagnostics<'_>,
) -> Monitors {
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
        MonitorKind::Http | MonitorKind::Https => http_check(source, m, key, d, &mut ok)?,
        MonitorKind::Dns => dns_check(m, key, d, &mut ok)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::testing::run;

    fn monitors(text: &str) -> (Monitors, String) {
        run(text, compile_monitors)
    }

    #[test]
    fn monitors_get_ids_and_fingerprints() {
        let (m, e) = monitors(
            "[monitors.web]\ntype = \"http\"\ninterval = \"2s\"\ntimeout = \"1s\"\nrise = 3\n\
             [monitors.port]\ntype = \"tcp\"\nport = 22\n",
        );
        assert_eq!(e, "");
        assert_eq!(m.list.len(), 2);
        let web = &m.list[m.ids["web"] as usize];
        assert_eq!(
            (web.interval, web.spec.timeout, web.rise),
            (Duration::from_secs(2), Duration::from_secs(1), 3)
        );
        assert!(matches!(web.spec.kind, CheckKind::Http(_)));
        assert!(matches!(
            m.list[m.ids["port"] as usize].spec.kind,
            CheckKind::Tcp
        ));
        assert_ne!(m.fingerprints[0], m.fingerprints[1]);
        // The same table gives the same fingerprint (health carries over).
        let (again, _) = monitors("[monitors.port]\ntype = \"tcp\"\nport = 22\n");
        assert_eq!(
            again.fingerprints[0],
            m.fingerprints[m.ids["port"] as usize]
        );
    }

    #[test]
    fn broken_monitors_keep_their_name() {
        let (m, e) = monitors(
            "[monitors.none]\ntype = \"tcp\"\nport = 1\n\
             [monitors.fast]\ntype = \"tcp\"\nport = 1\ninterval = \"1ms\"\ntimeout = \"0s\"\nfall = 0\n\
             [monitors.slow]\ntype = \"tcp\"\nport = 1\ninterval = \"1s\"\ntimeout = \"2s\"\n",
        );
        for want in [
            "monitors.none: \"none\" is reserved",
            "monitors.fast.interval: must be at least 10ms",
            "monitors.fast.timeout: must be more than zero",
            "monitors.fast.fall: must be at least 1",
            "monitors.slow.timeout: longer than the interval (1s)",
        ] {
            assert!(e.contains(want), "{want} in\n{e}");
        }
        assert!(m.list.is_empty());
        assert_eq!(
            m.ids["fast"], BROKEN,
            "known, so not also \"unknown monitor\""
        );
        assert!(!m.ids.contains_key("none"));
    }

    #[test]
    fn keys_of_other_types_are_refused() {
        let (_, e) = monitors(
            "[monitors.t]\ntype = \"tcp\"\nport = 1\npath = \"/x\"\nquery_name = \"a.\"\n\
             [monitors.h]\ntype = \"http\"\nsni = \"x\"\n",
        );
        for want in [
            "monitors.t.path: only used by monitors of type http or https",
            "monitors.t.query_name: only used by monitors of type dns",
            "monitors.h.sni: only used by monitors of type https",
        ] {
            assert!(e.contains(want), "{want} in\n{e}");
        }
    }
}
