//! The binary: `check`, `explain`, config errors with file:line:col.

use std::path::Path;
use std::process::Command;

use crate::harness::*;

fn steerdns(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run steerdns");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The line of `err` containing `needle` (panics with `err` if none).
fn line_with<'a>(err: &'a str, needle: &str) -> &'a str {
    err.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no error containing {needle:?} in:\n{err}"))
}

#[test]
fn check_accepts_every_shipped_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let (code, out, err) = steerdns(&["check", "--config", p.to_str().unwrap()]);
            assert_eq!(code, 0, "{}: {out}{err}", p.display());
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[test]
fn bad_config_lists_every_error_with_place_and_key() {
    let bad = BASE.replace("udp_workers = 1", "udp_workers = 1\nmax_udp_payload = 100")
        + r#"
[pools.broken]
endpoints = [{ address = "192.0.2.9", weight = 0 }]

[names."www2.lb.example.com"]
policy = "failover"
pools = ["eu", "nosuchpool"]

[names."elsewhere.example.org"]
policy = "failover"
pools = ["eu"]
"#;
    let bad = bad.replace("{ name = \"static\", type = \"A\", ttl = \"5m\", data = \"192.0.2.1\" },",
        "{ name = \"static\", type = \"A\", ttl = \"5m\", data = \"192.0.2.1\" },\n  { name = \"x.example.net.\", type = \"A\", data = \"192.0.2.3\" },\n  { name = \"y\", type = \"A\", data = \"not-an-ip\" },");
    let (_dir, path) = write_config(&bad);
    let (code, _out, err) = steerdns(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    let file = path.display().to_string();
    for (needle, key) in [
        ("must be at least 512", "server.max_udp_payload"),
        (
            "weight must be at least 1",
            "pools.broken.endpoints[0].weight",
        ),
        (
            "unknown pool \"nosuchpool\"",
            "names.\"www2.lb.example.com\".pools[1]",
        ),
        ("not inside any zone", "names.\"elsewhere.example.org\""),
        ("is outside zone", "records[4].name"),
        ("bad A data", "records[5].data"),
    ] {
        let line = line_with(&err, needle);
        assert!(line.starts_with(&format!("{file}:")), "{line}");
        assert!(line.contains(key), "{line} lacks key {key}");
        // file:line:col with real numbers
        let rest = &line[file.len() + 1..];
        let mut parts = rest.splitn(3, ':');
        let l: usize = parts.next().unwrap().parse().expect("line number");
        let c: usize = parts.next().unwrap().parse().expect("column number");
        assert!(l > 0 && c > 0, "{line}");
    }
}

#[test]
fn syntax_and_type_errors_point_into_the_file() {
    let (_d, path) = write_config("[server]\nudp_workers = \"many\"\n");
    let (code, _, err) = steerdns(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{}:2:15: server.udp_workers:", path.display())),
        "{err}"
    );

    let (_d, path) = write_config("[server\n");
    let (code, _, err) = steerdns(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.starts_with(&format!("{}:1:", path.display())), "{err}");
}

#[test]
fn missing_or_corrupt_geoip_database_is_named() {
    let (dir, path) = write_config(&BASE.replace("@GEOIP@", "missing.mmdb"));
    let (code, _, err) = steerdns(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("missing.mmdb"), "{err}");
    assert!(err.contains("geoip.database"), "{err}");

    std::fs::write(
        dir.path().join("corrupt.mmdb"),
        b"this is not a maxmind database",
    )
    .unwrap();
    let (_d2, path) = write_config(&BASE.replace(
        "@GEOIP@",
        &dir.path().join("corrupt.mmdb").display().to_string(),
    ));
    let (code, _, err) = steerdns(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("corrupt.mmdb"), "{err}");
}

#[test]
fn explain_shows_location_rule_pools_and_answer() {
    let (code, out, err) = steerdns(&[
        "explain",
        "--config",
        "config/example.toml",
        "--client",
        "81.2.69.160",
        "www.lb.example.com",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("country GB"), "{out}");
    assert!(out.contains("rule       continent EU"), "{out}");
    assert!(out.contains("pool       eu: usable"), "{out}");
    assert!(out.contains("<- chosen"), "{out}");
    assert!(out.contains("192.0.2.10"), "{out}");
    assert!(
        out.contains("rcode      No Error") || out.contains("NOERROR") || out.contains("NoError"),
        "{out}"
    );

    let (code, out, _) = steerdns(&[
        "explain",
        "--config",
        "config/example.toml",
        "--client",
        "2001:218::1",
        "www.lb.example.com",
        "AAAA",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("2001:db8:f::10"), "{out}");
}

#[test]
fn monitor_errors_are_explained() {
    let bad = BASE.to_string()
        + r#"
[monitors.slow]
type = "http"
interval = "1s"
timeout = "5s"
query_name = "x."

[monitors.port]
type = "tcp"

[monitors.okweb]
type = "http"

[monitors.nodns]
type = "dns"

[pools.p]
monitor = "port"
endpoints = [
  { address = "192.0.2.9" },
  { address = "cdn.example.net", monitor = "okweb" },
  { address = "192.0.2.7", monitor = "slow" },
  { address = "192.0.2.8", monitor = "nosuch" },
]
"#;
    let (_d, path) = write_config(&bad);
    let (code, _, err) = steerdns(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    for (needle, key) in [
        ("longer than the interval", "monitors.slow.timeout"),
        (
            "only used by monitors of type dns",
            "monitors.slow.query_name",
        ),
        ("needs query_name", "monitors.nodns.query_name"),
        (
            "tcp check without a port",
            "pools.p.endpoints[0].probe_port",
        ),
        ("needs probe_address", "pools.p.endpoints[1].probe_address"),
        ("unknown monitor \"nosuch\"", "pools.p.endpoints[3].monitor"),
    ] {
        let line = line_with(&err, needle);
        assert!(line.contains(key), "{line} lacks {key}");
        assert!(line.starts_with(&format!("{}:", path.display())), "{line}");
    }
    assert!(
        !err.contains("unknown monitor \"slow\""),
        "no cascade from a broken monitor:\n{err}"
    );
}

#[test]
fn duplicate_names_and_bad_networks_are_refused() {
    let (_d, path) = write_config(&format!(
        "{BASE}\n[names.\"www.lb.example.com\"]\npolicy = \"failover\"\npools = [\"eu\"]\n"
    ));
    let (code, _, err) = steerdns(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with(&format!("{}:", path.display())), "{err}");
    assert!(err.to_lowercase().contains("duplicate"), "{err}");

    let (_d, path) = write_config(&format!(
        "{BASE}\n[[geoip.override]]\ncidr = \"10.1.2.3/8\"\ncountry = \"SE\"\n\n[names.\"x.lb.example.com\"]\npolicy = \"geo\"\ngeo = {{ default = [\"eu\"], cidr = {{ \"300.0.0.0/8\" = [\"na\"] }}, country = {{ XX = [\"na\"] }} }}\n"
    ));
    let (code, _, err) = steerdns(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    for (needle, key) in [
        ("did you mean \"10.0.0.0/8\"", "geoip.override[0].cidr"),
        ("is not a network", "names.\"x.lb.example.com\".geo.cidr"),
        (
            "unknown country code",
            "names.\"x.lb.example.com\".geo.country.XX",
        ),
    ] {
        let line = line_with(&err, needle);
        assert!(line.contains(key), "{line} lacks {key}");
    }
}

#[test]
fn cname_loops_and_repeated_ns_are_refused_with_place_and_key() {
    let extra = r#"
[zones."loop.example"]
ns = ["ns1", "ns1"]
records = [
  { name = "ns1", type = "A", data = "192.0.2.53" },
  { name = "a", type = "CNAME", data = "b" },
  { name = "b", type = "CNAME", data = "a.loop.example." },
  { name = "self", type = "CNAME", data = "self" },
  { name = "*.w", type = "CNAME", data = "x.w" },
  { name = "into", type = "CNAME", data = "a" },
  { name = "fine", type = "CNAME", data = "ns1" },
]
"#;
    let (_d, path) = write_config(&format!("{BASE}\n{extra}"));
    let (code, _, err) = steerdns(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    let file = path.display().to_string();
    let text = std::fs::read_to_string(&path).unwrap();
    for (i, needle, data) in [
        (
            1,
            "CNAME loop: a.loop.example. -> b.loop.example. -> a.loop.example.",
            "\"b\"",
        ),
        (
            2,
            "CNAME loop: b.loop.example. -> a.loop.example. -> b.loop.example.",
            "\"a.loop.example.\"",
        ),
        (
            3,
            "CNAME loop: self.loop.example. -> self.loop.example.",
            "\"self\"",
        ),
        (
            4,
            "CNAME loop: *.w.loop.example. -> *.w.loop.example.",
            "\"x.w\"",
        ),
    ] {
        let line = line_with(&err, needle);
        let key = format!("zones.\"loop.example\".records[{i}].data");
        assert!(line.contains(&key), "{line} lacks {key}");
        // file:line:col of the record's data.
        let at = text.find(&format!("data = {data}")).unwrap() + "data = ".len();
        let l = text[..at].lines().count();
        let c = at - text[..at].rfind('\n').unwrap();
        assert!(
            line.starts_with(&format!("{file}:{l}:{c}: ")),
            "{line} not at {l}:{c}"
        );
    }
    assert_eq!(
        err.matches("CNAME loop").count(),
        4,
        "only loop members:\n{err}"
    );
    assert!(
        err.contains("zones.\"loop.example\".ns[1]") && err.contains("listed twice"),
        "{err}"
    );
}
