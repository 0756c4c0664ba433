//! The HTTP API over real TCP on loopback, with a fake backend and the
//! support layer's HTTP/1.1 client.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use steerdns::api::{
    self, ApiBackend, ApiOptions, EndpointState, EndpointStatus, LastReload, PoolStatus,
    ReloadOutcome, Status,
};
use steerdns::metrics::{Metrics, Transport};
use tokio_util::sync::CancellationToken;

use crate::support::http::{Reply, get, request};
use crate::support::{scrape, wait};

const HOSTILE: &str = "<script>alert(\"pwned\")</script>&";

struct Fake {
    ready: AtomicBool,
    generation: AtomicU64,
    fail_next_reload: AtomicBool,
    metrics: Metrics,
}

impl Fake {
    fn new() -> Self {
        let metrics = Metrics::new().unwrap();
        let z = metrics.queries().zone_slot("lb.example.com.");
        metrics
            .queries()
            .record_query(z, 1, 0, Transport::Udp, Duration::from_micros(40));
        metrics.set_endpoint_up("eu", "eu-2", false);
        Fake {
            ready: AtomicBool::new(false),
            generation: AtomicU64::new(1),
            fail_next_reload: AtomicBool::new(false),
            metrics,
        }
    }
}

impl ApiBackend for Fake {
    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn status(&self) -> Status {
        Status {
            node_name: "node-1".into(),
            version: "0.1.0".into(),
            generation: self.generation.load(Ordering::SeqCst),
            config_file: "/etc/steerdns/steerdns.toml".into(),
            started_at: 1_700_000_000,
            last_reload: Some(LastReload {
                at: 1_700_000_100,
                ok: false,
                generation: 1,
                errors: vec!["steerdns.toml:3:1: pools.x: bad".into()],
            }),
            pools: vec![PoolStatus {
                name: "eu".into(),
                usable: true,
                min_healthy: 1,
                endpoints: vec![
                    EndpointStatus {
                        name: "eu-1".into(),
                        address: "192.0.2.10".into(),
                        enabled: true,
                        up: true,
                        state: EndpointState::Up,
                        reason: Some("HTTP 200 in 12ms".into()),
                        last_probe_at: Some(1_700_000_200),
                        last_change_at: Some(1_700_000_010),
                        monitor: Some("http GET /health".into()),
                    },
                    EndpointStatus {
                        name: "eu-2".into(),
                        address: "192.0.2.11".into(),
                        enabled: true,
                        up: false,
                        state: EndpointState::Down,
                        reason: Some("connect timeout after 2s".into()),
                        last_probe_at: Some(1_700_000_200),
                        last_change_at: Some(1_700_000_150),
                        monitor: Some("tcp:443".into()),
                    },
                    EndpointStatus {
                        name: HOSTILE.into(),
                        address: "backup.example.net.".into(),
                        enabled: false,
                        up: false,
                        state: EndpointState::Disabled,
                        ..Default::default()
                    },
                ],
            }],
        }
    }

    fn explain(
        &self,
        name: &str,
        qtype: &str,
        client: IpAddr,
    ) -> Result<serde_json::Value, String> {
        if name == "bad..name" {
            return Err(format!("bad name {name:?}"));
        }
        Ok(
            serde_json::json!({ "name": name, "type": qtype, "client": client.to_string(), "pool": "eu" }),
        )
    }

    fn reload(&self) -> ReloadOutcome {
        if self.fail_next_reload.swap(false, Ordering::SeqCst) {
            return ReloadOutcome {
                ok: false,
                generation: self.generation.load(Ordering::SeqCst),
                errors: vec!["steerdns.toml:1:1: broken".into()],
            };
        }
        let g = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        ReloadOutcome {
            ok: true,
            generation: g,
            errors: vec![],
        }
    }

    fn metrics_text(&self) -> String {
        self.metrics.render()
    }
}

struct Server {
    addr: SocketAddr,
    fake: Arc<Fake>,
    shutdown: CancellationToken,
    rt: Option<tokio::runtime::Runtime>,
}

impl Server {
    fn start(token: Option<&str>) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let std_listener = api::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let fake = Arc::new(Fake::new());
        let shutdown = CancellationToken::new();
        let backend: Arc<dyn ApiBackend> = fake.clone();
        let opts = ApiOptions {
            token: token.map(String::from),
            listen: addr,
        };
        let token = shutdown.clone();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            api::serve(listener, backend, opts, token).await;
        });
        Server {
            addr,
            fake,
            shutdown,
            rt: Some(rt),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

fn json(r: &Reply) -> serde_json::Value {
    r.json()
}

#[test]
fn health_and_readiness() {
    let s = Server::start(None);
    let r = get(s.addr, "/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let r = get(s.addr, "/readyz");
    assert_eq!((r.status, r.body.as_str()), (503, "not ready\n"));
    s.fake.ready.store(true, Ordering::SeqCst);
    let r = get(s.addr, "/readyz");
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));
    // HEAD works like GET, without a body.
    let r = request(s.addr, "HEAD", "/healthz", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, ""));
}

#[test]
fn metrics_route() {
    let s = Server::start(None);
    let r = get(s.addr, "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let m = scrape::parse(&r.body);
    let query = [
        ("qtype", "A"),
        ("rcode", "NOERROR"),
        ("transport", "udp"),
        ("zone", "lb.example.com."),
    ];
    assert_eq!(m.value("steerdns_dns_queries_total", &query), 1.0);
    assert_eq!(
        m.value(
            "steerdns_endpoint_up",
            &[("endpoint", "eu-2"), ("pool", "eu")]
        ),
        0.0
    );
}

#[test]
fn status_json() {
    let s = Server::start(None);
    let r = get(s.addr, "/api/v1/status");
    assert_eq!(r.status, 200);
    let v = json(&r);
    assert_eq!(v["node_name"], "node-1");
    assert_eq!(v["generation"], 1);
    assert_eq!(v["config_file"], "/etc/steerdns/steerdns.toml");
    assert_eq!(v["last_reload"]["ok"], false);
    let eps = &v["pools"][0]["endpoints"];
    assert_eq!(eps[1]["state"], "down");
    assert_eq!(eps[1]["up"], false);
    assert_eq!(eps[1]["reason"], "connect timeout after 2s");
    assert_eq!(eps[1]["last_change_at"], 1_700_000_150u64);
    assert_eq!(eps[2]["state"], "disabled");
    assert_eq!(eps[2]["reason"], serde_json::Value::Null);
    // The model round-trips.
    let back: Status = serde_json::from_str(&r.body).unwrap();
    assert_eq!(back, s.fake.status());
}

#[test]
fn explain_route() {
    let s = Server::start(None);
    let r = get(
        s.addr,
        "/api/v1/explain?name=www.lb.example.com&type=AAAA&client=2001%3Adb8%3A%3A1",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json(&r);
    assert_eq!(v["name"], "www.lb.example.com");
    assert_eq!(v["type"], "AAAA");
    assert_eq!(v["client"], "2001:db8::1");
    // type defaults to A
    let v = json(&get(
        s.addr,
        "/api/v1/explain?name=www.lb.example.com&client=192.0.2.1",
    ));
    assert_eq!(v["type"], "A");
    for (path, msg) in [
        (
            "/api/v1/explain?client=192.0.2.1",
            "missing parameter: name",
        ),
        ("/api/v1/explain?name=x", "missing parameter: client"),
        ("/api/v1/explain?name=x&client=nope", "not an IP"),
        (
            "/api/v1/explain?name=bad..name&client=192.0.2.1",
            "bad name",
        ),
    ] {
        let r = get(s.addr, path);
        assert_eq!(r.status, 400, "{path}");
        let v = json(&r);
        assert!(v["error"].as_str().unwrap().contains(msg), "{path}: {v}");
    }
}

#[test]
fn reload_without_token() {
    let s = Server::start(None);
    let r = request(s.addr, "POST", "/api/v1/reload", &[("Content-Length", "0")]);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json(&r);
    assert_eq!(v["ok"], true);
    assert_eq!(v["generation"], 2);
    // A failed reload answers 422 with the errors.
    s.fake.fail_next_reload.store(true, Ordering::SeqCst);
    let r = request(s.addr, "POST", "/api/v1/reload", &[]);
    assert_eq!(r.status, 422);
    let v = json(&r);
    assert_eq!(v["ok"], false);
    assert_eq!(v["generation"], 2);
    assert_eq!(v["errors"][0], "steerdns.toml:1:1: broken");
    // A cross-site browser POST is refused.
    let r = request(
        s.addr,
        "POST",
        "/api/v1/reload",
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(r.status, 403);
    // A huge declared body is refused.
    let r = request(
        s.addr,
        "POST",
        "/api/v1/reload",
        &[("Content-Length", "1000000")],
    );
    assert_eq!(r.status, 413);
    assert_eq!(s.fake.generation.load(Ordering::SeqCst), 2);
}

#[test]
fn reload_with_token() {
    let s = Server::start(Some("s3cret"));
    let r = request(s.addr, "POST", "/api/v1/reload", &[]);
    assert_eq!(r.status, 401);
    assert!(r.headers.contains_key("www-authenticate"));
    for bad in [
        "Bearer wrong",
        "Bearer s3cre",
        "Bearer s3cret2",
        "Basic s3cret",
        "s3cret",
    ] {
        let r = request(s.addr, "POST", "/api/v1/reload", &[("Authorization", bad)]);
        assert_eq!(r.status, 401, "{bad}");
    }
    assert_eq!(s.fake.generation.load(Ordering::SeqCst), 1);
    let r = request(
        s.addr,
        "POST",
        "/api/v1/reload",
        &[("Authorization", "Bearer s3cret")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json(&r)["generation"], 2);
    // Reads need no token.
    assert_eq!(get(s.addr, "/api/v1/status").status, 200);
}

#[test]
fn unknown_paths_and_wrong_methods() {
    let s = Server::start(None);
    for p in ["/nope", "/api/v1", "/api/v1/statuses", "/metrics/x"] {
        assert_eq!(get(s.addr, p).status, 404, "{p}");
    }
    let r = get(s.addr, "/api/v1/reload");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    for p in ["/", "/healthz", "/readyz", "/metrics", "/api/v1/status"] {
        let r = request(s.addr, "POST", p, &[]);
        assert_eq!(r.status, 405, "{p}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    assert_eq!(request(s.addr, "DELETE", "/api/v1/reload", &[]).status, 405);
}

#[test]
fn status_page() {
    let s = Server::start(None);
    let r = get(s.addr, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(
        r.headers
            .get("content-security-policy")
            .is_some_and(|v| v.contains("default-src 'none'"))
    );
    let html = &r.body;
    assert!(html.contains("<meta name=\"viewport\""));
    assert!(
        !html.contains("<script"),
        "no script, and the hostile name is escaped"
    );
    assert!(html.contains("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;&amp;"));
    // The down endpoint: its row says DOWN with the reason and since when.
    let row = html
        .lines()
        .find(|l| l.contains("data-endpoint=\"eu-2\""))
        .unwrap_or_else(|| panic!("no eu-2 row in\n{html}"));
    assert!(row.contains(">DOWN<"), "{row}");
    assert!(row.contains("connect timeout after 2s"), "{row}");
    assert!(row.contains("2023-11-14 22:15:50 UTC"), "since: {row}");
    let row = html
        .lines()
        .find(|l| l.contains("data-endpoint=\"eu-1\""))
        .unwrap();
    assert!(row.contains(">UP<"), "{row}");
    assert!(html.contains(">DISABLED<"));
    assert!(html.contains(">USABLE<"));
    // Config generation, file and the failed reload with its error.
    assert!(html.contains("/etc/steerdns/steerdns.toml"));
    assert!(html.contains(">FAILED<"));
    assert!(html.contains("steerdns.toml:3:1: pools.x: bad"));
}

#[test]
fn shutdown_stops_accepting() {
    let s = Server::start(None);
    assert_eq!(get(s.addr, "/healthz").status, 200);
    s.shutdown.cancel();
    wait::until(Duration::from_secs(10), "the listener closed", || {
        TcpStream::connect_timeout(&s.addr, Duration::from_millis(200))
            .is_err()
            .then_some(())
    });
}

#[test]
fn a_stalled_client_does_not_block_others() {
    // A client that never finishes its headers (cut off after
    // HEADER_READ_TIMEOUT, not waited for here) does not stop the server
    // from serving others meanwhile.
    let s = Server::start(None);
    let mut idle = TcpStream::connect(s.addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert_eq!(get(s.addr, "/healthz").status, 200);
}

/// The stalled client itself is cut off after [`api::HEADER_READ_TIMEOUT`]:
/// on tokio's paused clock (the runtime jumps to the next timer whenever
/// it would wait), so the test does not wait those seconds.
#[tokio::test(start_paused = true)]
async fn a_stalled_client_is_cut_off_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let std_listener = api::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
    let backend: Arc<dyn ApiBackend> = Arc::new(Fake::new());
    let opts = ApiOptions {
        token: None,
        listen: addr,
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(api::serve(listener, backend, opts, shutdown.clone()));
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    let mut got = Vec::new();
    let read = tokio::time::timeout(3 * api::HEADER_READ_TIMEOUT, c.read_to_end(&mut got)).await;
    let waited = start.elapsed();
    assert!(read.is_ok(), "still open after {waited:?}");
    assert!(
        waited >= api::HEADER_READ_TIMEOUT - Duration::from_secs(1),
        "cut off after {waited:?}, before the header timeout"
    );
    assert!(
        !String::from_utf8_lossy(&got).contains(" 200 "),
        "a half request was served: {got:?}"
    );
    shutdown.cancel();
    server.await.unwrap();
}
