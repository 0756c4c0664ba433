//! Operating a running server: metrics, the HTTP API, reloads by API,
//! SIGHUP and file change, and reloads under continuous queries.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::harness::*;

#[test]
fn metrics_count_queries_with_bounded_labels() {
    let s = TestServer::base("");
    for _ in 0..3 {
        s.udp(&q("static.lb.example.com.", RecordType::A));
    }
    s.tcp(&q("nope.lb.example.com.", RecordType::AAAA));
    s.udp(&q("example.org.", RecordType::MX));
    s.udp(&q_ecs(
        "www.lb.example.com.",
        RecordType::A,
        "216.160.83.0/24",
    ));
    assert!(udp_raw(s.udp, &[0u8; 5]).is_none());
    let (code, text) = http(s.running.http_addr, "GET", "/metrics", &[]);
    assert_eq!(code, 200);
    let line = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sample {prefix} in\n{text}"))
    };
    assert_eq!(
        line(
            r#"steerdns_dns_queries_total{qtype="A",rcode="NOERROR",transport="udp",zone="lb.example.com."}"#
        ),
        4.0
    );
    assert_eq!(
        line(
            r#"steerdns_dns_queries_total{qtype="AAAA",rcode="NXDOMAIN",transport="tcp",zone="lb.example.com."}"#
        ),
        1.0
    );
    assert_eq!(
        line(
            r#"steerdns_dns_queries_total{qtype="MX",rcode="REFUSED",transport="udp",zone="(none)"}"#
        ),
        1.0
    );
    assert_eq!(
        line(
            r#"steerdns_balancer_answers_total{mode="normal",name="www.lb.example.com.",pool="na"}"#
        ),
        1.0
    );
    assert!(line(r#"steerdns_dns_dropped_total{reason="malformed"}"#) >= 1.0);
    assert!(text.contains("steerdns_build_info{version="));
    // never a client address or an unconfigured name in a label
    for bad in ["127.0.0.1", "example.org", "nope.lb", "216.160"] {
        assert!(
            !text.lines().any(|l| !l.starts_with('#') && l.contains(bad)),
            "{bad} leaked into metrics"
        );
    }
}

#[test]
fn api_status_explain_readiness_and_reload() {
    let s = TestServer::base("");
    let api = s.running.http_addr;
    assert_eq!(http(api, "GET", "/healthz", &[]).0, 200);
    assert_eq!(http(api, "GET", "/readyz", &[]).0, 200);
    let (code, body) = http(api, "GET", "/api/v1/status", &[]);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    assert_eq!(v["generation"], 1);
    assert!(
        v["config_file"]
            .as_str()
            .unwrap()
            .ends_with("steerdns.toml")
    );
    assert!(
        v["pools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "eu")
    );

    let (code, body) = http(
        api,
        "GET",
        "/api/v1/explain?name=www.lb.example.com&type=A&client=216.160.83.9",
        &[],
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["chosen_pool"], "na", "{v}");

    let (code, body) = http(api, "POST", "/api/v1/reload", &[]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["generation"],
        2
    );

    // a broken config is refused with its place, and the old one serves on
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, text.replace("serial = 7", "serial = \"seven\"")).unwrap();
    let (code, body) = http(api, "POST", "/api/v1/reload", &[]);
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("soa.serial") || body.contains("serial"),
        "{body}"
    );
    let (_, status) = http(api, "GET", "/api/v1/status", &[]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["generation"], 2);
    assert_eq!(v["last_reload"]["ok"], false);
    assert_eq!(
        addrs(&s.udp(&q("static.lb.example.com.", RecordType::A))),
        vec!["192.0.2.1", "192.0.2.2"]
    );
    let (_, metrics) = http(api, "GET", "/metrics", &[]);
    assert!(
        metrics.contains(r#"steerdns_config_reloads_total{result="failure"} 1"#),
        "{metrics}"
    );
}

#[test]
fn reload_token_is_enforced() {
    let s = TestServer::start(
        &BASE.replace("udp_workers = 1", "udp_workers = 1\napi_token = \"s3cret\""),
    );
    let api = s.running.http_addr;
    assert_eq!(http(api, "POST", "/api/v1/reload", &[]).0, 401);
    assert_eq!(
        http(
            api,
            "POST",
            "/api/v1/reload",
            &[("Authorization", "Bearer wrong")]
        )
        .0,
        401
    );
    assert_eq!(
        http(
            api,
            "POST",
            "/api/v1/reload",
            &[("Authorization", "Bearer s3cret")]
        )
        .0,
        200
    );
}

#[test]
fn status_page_shows_a_down_endpoint() {
    let cfg = r#"
[monitors.port]
type = "tcp"
interval = "100ms"
timeout = "80ms"
fall = 1
rise = 1

[pools.probe]
monitor = "port"
endpoints = [{ address = "192.0.2.90", name = "dead-one", probe_address = "127.0.0.1", probe_port = 9 }]
"#;
    let s = TestServer::base(cfg);
    let api = s.running.http_addr;
    wait_for(5, "endpoint down", || {
        let (_, body) = http(api, "GET", "/api/v1/status", &[]);
        body.contains("\"state\": \"down\"") || body.contains("\"state\":\"down\"")
    });
    let (code, page) = http(api, "GET", "/", &[]);
    assert_eq!(code, 200);
    assert!(page.contains("dead-one"), "{page}");
    assert!(page.contains("DOWN"), "{page}");
    assert!(page.contains("refused"), "{page}");
    let (_, metrics) = http(api, "GET", "/metrics", &[]);
    assert!(
        metrics.contains(r#"steerdns_endpoint_up{endpoint="dead-one",pool="probe"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"steerdns_probe_failures_total{endpoint="dead-one",pool="probe",reason="refused"}"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"steerdns_pool_usable{pool="probe"} 0"#),
        "{metrics}"
    );
}

/// Two configs whose `v` record sets share nothing: a half-applied config
/// would show as a mixed answer.
fn versioned(which: u8) -> String {
    let extra = if which == 0 {
        "{ name = \"v\", type = \"A\", data = \"192.0.2.101\" },\n  { name = \"v\", type = \"A\", data = \"192.0.2.102\" },"
    } else {
        "{ name = \"v\", type = \"A\", data = \"192.0.2.201\" },\n  { name = \"v\", type = \"A\", data = \"192.0.2.202\" },"
    };
    BASE.replace("records = [\n", &format!("records = [\n  {extra}\n"))
}

#[test]
fn no_query_lost_or_half_answered_during_many_reloads() {
    let s = TestServer::start(&versioned(0));
    let addr = s.udp;
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    let client = std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let pkt = q("v.lb.example.com.", RecordType::A).to_vec().unwrap();
        let (mut a, mut b, mut lost) = (0u32, 0u32, 0u32);
        let mut buf = [0u8; 1500];
        // bounded: stops when reloads end, or after 200k queries
        for _ in 0..200_000 {
            if d2.load(Ordering::SeqCst) {
                break;
            }
            sock.send_to(&pkt, addr).unwrap();
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    let got = addrs(&decode(&buf[..n]));
                    match got.as_slice() {
                        [x, y] if x == "192.0.2.101" && y == "192.0.2.102" => a += 1,
                        [x, y] if x == "192.0.2.201" && y == "192.0.2.202" => b += 1,
                        other => panic!("mixed or empty answer {other:?}"),
                    }
                }
                Err(_) => lost += 1,
            }
        }
        (a, b, lost)
    });
    for i in 0..60 {
        let text = versioned((i % 2 + 1) as u8 % 2)
            .replace("@GEOIP@", &sample_mmdb().display().to_string());
        std::fs::write(&s.config, text).unwrap();
        s.running.reload().expect("reload");
    }
    done.store(true, Ordering::SeqCst);
    let (a, b, lost) = client.join().expect("client");
    assert_eq!(lost, 0, "queries lost during reloads");
    assert!(a > 0 && b > 0, "both configs answered: {a} / {b}");
}

struct Child2(Child);
impl Drop for Child2 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sighup_reloads_the_binary() {
    // Fixed loopback ports are avoided: bind port 0 and read the log lines.
    let (_dir, path) = write_config(&BASE.replace(
        "udp_workers = 1",
        "udp_workers = 1\nwatch_interval = \"0s\"",
    ));
    let mut child = Child2(
        Command::new(env!("CARGO_BIN_EXE_steerdns"))
            .args([
                "serve",
                "--config",
                path.to_str().unwrap(),
                "--dns-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut udp = None;
    let mut http_addr = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while (udp.is_none() || http_addr.is_none()) && Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        let addr_of = |l: &str| {
            l.split("addr=")
                .nth(1)
                .and_then(|a| a.split_whitespace().next())
                .and_then(|a| a.parse().ok())
        };
        if line.contains("proto=udp") {
            udp = addr_of(&line);
        }
        if line.contains("proto=http") {
            http_addr = addr_of(&line);
        }
    }
    let (udp, http_addr): (std::net::SocketAddr, std::net::SocketAddr) =
        (udp.expect("udp line"), http_addr.expect("http line"));
    let ask = || {
        addrs(&decode(
            &udp_raw(
                udp,
                &q("static.lb.example.com.", RecordType::A).to_vec().unwrap(),
            )
            .expect("answer"),
        ))
    };
    assert_eq!(ask(), vec!["192.0.2.1", "192.0.2.2"]);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("data = \"192.0.2.2\"", "data = \"192.0.2.8\""),
    )
    .unwrap();
    // SAFETY: kill(2) with a valid pid and signal number.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) };
    wait_for(10, "SIGHUP reload", || {
        ask() == vec!["192.0.2.1", "192.0.2.8"]
    });
    let (_, status) = http(http_addr, "GET", "/api/v1/status", &[]);
    assert!(
        status.contains("\"generation\": 2") || status.contains("\"generation\":2"),
        "{status}"
    );
}

#[test]
fn tcp_connection_limit_drops_are_counted() {
    let s = TestServer::start(&BASE.replace(
        "udp_workers = 1",
        "udp_workers = 1\ntcp_max_connections = 1",
    ));
    let held = std::net::TcpStream::connect(s.tcp).expect("first connection");
    // The first connection holds the only slot once accepted: keep opening
    // (bounded) until the server closes one at accept and counts it.
    wait_for(10, "connection_limit drop counted", || {
        let _extra = std::net::TcpStream::connect(s.tcp);
        let (_, m) = http(s.running.http_addr, "GET", "/metrics", &[]);
        m.lines().any(|l| {
            l.starts_with(r#"steerdns_dns_dropped_total{reason="connection_limit"}"#)
                && l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v >= 1.0)
        })
    });
    drop(held);
}
