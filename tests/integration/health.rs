//! Active health checks against real loopback backends, observed through
//! real DNS answers: endpoints leave answers after `fall` failures and come
//! back after `rise` successes; pools fail over, then the fallback, then
//! fail-open.

use hickory_proto::rr::RecordType;

use crate::backends::*;
use crate::harness::*;

fn answers(s: &TestServer, name: &str) -> Vec<String> {
    addrs(&s.udp(&q(name, RecordType::A)))
}

/// Assert that the reason of the last probe of `label` contains `needle`.
fn assert_reason(s: &TestServer, pool: &str, label: &str, needle: &str) {
    let r = reason(s, pool, label);
    assert!(r.contains(needle), "{pool} {label}: {r:?} lacks {needle:?}");
}

fn reason(s: &TestServer, pool: &str, label: &str) -> String {
    let snap = s.running.shared.current.load();
    let t = snap
        .probes
        .iter()
        .find(|t| t.key.starts_with(&format!("{pool}|{label}|")))
        .expect("probe target");
    s.running
        .health
        .get(&t.key)
        .and_then(|h| h.reason)
        .unwrap_or_default()
}

/// `[pools.POOL]` of endpoints (address, monitor, port) probed on
/// 127.0.0.1, and the failover name `POOL.lb.example.com` over it.
fn probed_failover(pool: &str, endpoints: &[(&str, &str, u16)]) -> String {
    let eps: String = endpoints
        .iter()
        .map(|(a, m, p)| {
            format!(
                "  {{ address = \"{a}\", monitor = \"{m}\", probe_address = \"127.0.0.1\", probe_port = {p} }},\n"
            )
        })
        .collect();
    format!(
        "\n[pools.{pool}]\nendpoints = [\n{eps}]\n\n[names.\"{pool}.lb.example.com\"]\npolicy = \"failover\"\npools = [\"{pool}\"]\n"
    )
}

const MON: &str = r#"
[monitors.web]
type = "http"
interval = "100ms"
timeout = "80ms"
rise = 2
fall = 2
path = "/health"
expect_body = "OK"
"#;

#[test]
fn http_failures_remove_endpoints_and_recovery_brings_them_back() {
    // Backends on three loopback addresses.
    if !can_bind("127.0.0.3") {
        return;
    }
    let a = HttpBackend::start("127.0.0.1");
    let b = HttpBackend::start("127.0.0.2");
    let gone = HttpBackend::start("127.0.0.3");
    let gone_port = gone.addr.port();
    drop(gone); // connection refused from now on
    let cfg = format!(
        r#"{MON}
[pools.web]
monitor = "web"
endpoints = [
  {{ address = "192.0.2.101", probe_address = "127.0.0.1", probe_port = {pa} }},
  {{ address = "192.0.2.102", probe_address = "127.0.0.2", probe_port = {pb} }},
  {{ address = "192.0.2.103", probe_address = "127.0.0.3", probe_port = {pc} }},
  {{ address = "192.0.2.104", enabled = false, probe_address = "127.0.0.1", probe_port = {pa} }},
]
[pools.spare]
endpoints = [{{ address = "192.0.2.200" }}]

[names."hc.lb.example.com"]
policy = "failover"
pools = ["web", "spare"]
"#,
        pa = a.addr.port(),
        pb = b.addr.port(),
        pc = gone_port
    );
    let s = TestServer::base(&cfg);
    let name = "hc.lb.example.com.";
    // refused endpoint leaves after its first verdict; the disabled one never appears
    wait_for(5, "refused endpoint removed", || {
        answers(&s, name) == vec!["192.0.2.101", "192.0.2.102"]
    });
    assert_reason(&s, "web", "192.0.2.103", "refused");

    // wrong status
    a.set(Mode::Reply(503, "OK".into()));
    wait_for(5, "503 endpoint removed", || {
        answers(&s, name) == vec!["192.0.2.102"]
    });
    assert_reason(&s, "web", "192.0.2.101", "503");

    // body mismatch
    b.set(Mode::Reply(200, "DEGRADED".into()));
    wait_for(5, "failover to spare", || {
        answers(&s, name) == vec!["192.0.2.200"]
    });
    assert_reason(&s, "web", "192.0.2.102", "body");

    // recovery after `rise` successes
    a.set(Mode::Reply(200, "all OK".into()));
    wait_for(5, "recovered", || answers(&s, name) == vec!["192.0.2.101"]);
    assert_reason(&s, "web", "192.0.2.101", "200");

    // timeout: the backend accepts and never answers
    a.set(Mode::Hang);
    wait_for(5, "hung endpoint removed", || {
        answers(&s, name) == vec!["192.0.2.200"]
    });
    assert_reason(&s, "web", "192.0.2.101", "timeout");
}

#[test]
fn fallback_then_fail_open_then_nodata() {
    let a = HttpBackend::start("127.0.0.1");
    let f = HttpBackend::start("127.0.0.1");
    let cfg = format!(
        r#"{MON}{}{}

[names."open.lb.example.com"]
policy = "failover"
pools = ["main"]
fallback = "fb"

[names."closed.lb.example.com"]
policy = "failover"
pools = ["main"]
fallback = "fb"
all_down = "nodata"
"#,
        probed_pool("main", "web", "192.0.2.111", a.addr.port()),
        probed_pool("fb", "web", "192.0.2.112", f.addr.port()),
    );
    let s = TestServer::base(&cfg);
    wait_for(5, "main answers", || {
        answers(&s, "open.lb.example.com.") == vec!["192.0.2.111"]
    });
    a.set(Mode::Reply(500, String::new()));
    wait_for(5, "fallback answers", || {
        answers(&s, "open.lb.example.com.") == vec!["192.0.2.112"]
    });
    f.set(Mode::Reply(500, String::new()));
    // both down: fail-open answers the listed pool as if up; nodata answers nothing
    wait_for(5, "fail-open", || {
        answers(&s, "open.lb.example.com.") == vec!["192.0.2.111"]
            && answers(&s, "closed.lb.example.com.").is_empty()
    });
    let m = s.udp(&q("closed.lb.example.com.", RecordType::A));
    assert_eq!(types(&m.authorities), vec![RecordType::SOA]);
}

#[test]
fn tls_verification_and_custom_ca() {
    let (tls, ca_pem) = self_signed(&["backend.test"]);
    let a = HttpBackend::start_tls("127.0.0.1", tls);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let cfg = format!(
        r#"
[monitors.strict]
type = "https"
interval = "300ms"
timeout = "250ms"
rise = 1
fall = 1
sni = "backend.test"

[monitors.trusted]
type = "https"
interval = "300ms"
timeout = "250ms"
rise = 1
fall = 1
sni = "backend.test"
ca_file = "{ca}"
{pool}"#,
        ca = ca.display(),
        pool = probed_failover(
            "tls",
            &[
                ("192.0.2.121", "strict", a.addr.port()),
                ("192.0.2.122", "trusted", a.addr.port())
            ]
        ),
    );
    let s = TestServer::base(&cfg);
    wait_for(8, "untrusted certificate removed", || {
        answers(&s, "tls.lb.example.com.") == vec!["192.0.2.122"]
    });
    let r = reason(&s, "tls", "192.0.2.121");
    assert!(r.starts_with("tls"), "{r}");
}

#[test]
fn tcp_and_dns_monitors() {
    let web = HttpBackend::start("127.0.0.1");
    let dns = DnsBackend::start("127.0.0.1");
    let cfg = format!(
        "{}{}{}",
        fast_monitor("port", "tcp", "80ms", ""),
        fast_monitor(
            "resolver",
            "dns",
            "80ms",
            "query_name = \"probe.example.\"\nexpect_answer = \"192.0.2.1\""
        ),
        probed_failover(
            "mixed",
            &[
                ("192.0.2.131", "port", web.addr.port()),
                ("192.0.2.132", "resolver", dns.addr.port())
            ]
        ),
    );
    let s = TestServer::base(&cfg);
    let name = "mixed.lb.example.com.";
    wait_for(5, "both up", || {
        answers(&s, name) == vec!["192.0.2.131", "192.0.2.132"]
            && !reason(&s, "mixed", "192.0.2.132").is_empty()
    });
    dns.set_servfail(true);
    wait_for(5, "servfail endpoint removed", || {
        answers(&s, name) == vec!["192.0.2.131"]
    });
    assert!(
        reason(&s, "mixed", "192.0.2.132")
            .to_lowercase()
            .contains("servfail")
    );
    dns.set_servfail(false);
    wait_for(5, "dns endpoint back", || answers(&s, name).len() == 2);
    drop(web);
    wait_for(5, "closed port removed", || {
        answers(&s, name) == vec!["192.0.2.132"]
    });
}

#[test]
fn health_survives_reload_when_the_probe_is_unchanged() {
    let a = HttpBackend::start("127.0.0.1");
    let b = HttpBackend::start("127.0.0.1");
    b.set(Mode::Reply(503, String::new()));
    let cfg = format!(
        r#"{MON}
[pools.web]
monitor = "web"
endpoints = [
  {{ address = "192.0.2.141", probe_address = "127.0.0.1", probe_port = {pa} }},
  {{ address = "192.0.2.142", probe_address = "127.0.0.1", probe_port = {pb} }},
]

[names."keep.lb.example.com"]
policy = "failover"
pools = ["web"]
"#,
        pa = a.addr.port(),
        pb = b.addr.port()
    );
    let s = TestServer::base(&cfg);
    let name = "keep.lb.example.com.";
    wait_for(5, "503 endpoint down", || {
        answers(&s, name) == vec!["192.0.2.141"]
    });
    for round in 0..20 {
        let text = std::fs::read_to_string(&s.config).unwrap();
        let ttl = format!("ttl = \"{}h\"", round + 2);
        std::fs::write(
            &s.config,
            text.replacen("ttl = \"1h\"", &ttl, 1).replacen(
                &format!("ttl = \"{}h\"", round + 1),
                &ttl,
                1,
            ),
        )
        .unwrap();
        s.running.reload().expect("reload");
        // Without carry-over the new snapshot would start all-up and answer
        // .142 until its first probe: ask right away.
        assert_eq!(
            answers(&s, name),
            vec!["192.0.2.141"],
            "health carried over reload {round}"
        );
    }
}

#[test]
fn probes_of_removed_endpoints_stop() {
    let a = HttpBackend::start("127.0.0.1");
    let b = HttpBackend::start("127.0.0.1");
    let pool = |with_b: bool| {
        let second = if with_b {
            format!(
                ",\n  {{ address = \"192.0.2.152\", probe_address = \"127.0.0.1\", probe_port = {} }}",
                b.addr.port()
            )
        } else {
            String::new()
        };
        format!(
            "{MON}\n[pools.web]\nmonitor = \"web\"\nendpoints = [\n  {{ address = \"192.0.2.151\", probe_address = \"127.0.0.1\", probe_port = {} }}{second}\n]\n",
            a.addr.port()
        )
    };
    let s = TestServer::base(&pool(true));
    let count = |x: &HttpBackend| x.requests.load(std::sync::atomic::Ordering::SeqCst);
    wait_for(5, "both probed", || count(&a) > 0 && count(&b) > 0);
    let text = std::fs::read_to_string(&s.config).unwrap();
    let base_end = text.find("\n[monitors.web]").expect("monitor section");
    std::fs::write(&s.config, format!("{}{}", &text[..base_end], pool(false))).unwrap();
    s.running.reload().expect("reload without b");
    let (b0, a0) = (count(&b), count(&a));
    // a keeps being probed: wait for three more of its probes
    wait_for(5, "a probed three more times", || count(&a) >= a0 + 3);
    // b: at most one probe that was already in flight at the reload
    assert!(
        count(&b) <= b0 + 1,
        "b still probed: {} -> {}",
        b0,
        count(&b)
    );
    assert_reason(&s, "web", "192.0.2.151", "200");
}

#[test]
fn busy_probe_slots_skip_rounds_visibly() {
    let a = HttpBackend::start("127.0.0.1");
    let b = HttpBackend::start("127.0.0.1");
    a.set(Mode::Hang);
    b.set(Mode::Hang);
    let cfg = format!(
        r#"{MON}
[pools.slow]
monitor = "web"
endpoints = [
  {{ address = "192.0.2.161", probe_address = "127.0.0.1", probe_port = {pa} }},
  {{ address = "192.0.2.162", probe_address = "127.0.0.1", probe_port = {pb} }},
]
"#,
        pa = a.addr.port(),
        pb = b.addr.port()
    );
    let s = TestServer::start(&format!(
        "{}\n{cfg}",
        BASE.replace(
            "udp_workers = 1",
            "udp_workers = 1\nmax_concurrent_probes = 1"
        )
    ));
    let skipped = || {
        s.scrape()
            .sum("steerdns_probes_skipped_total", &[("reason", "busy")])
    };
    wait_for(5, "busy waits counted", || skipped() >= 2.0);
    // one probe slot, two endpoints: both still get probed (FIFO line)
    wait_for(5, "both endpoints probed", || {
        reason(&s, "slow", "192.0.2.161").contains("timeout")
            && reason(&s, "slow", "192.0.2.162").contains("timeout")
    });
}
