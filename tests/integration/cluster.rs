//! Three real steerdns nodes on loopback sharing probe verdicts: quorum,
//! a peer going away, identical answers for the same clients, drain
//! across the fleet and across a restart; and latency steering on real
//! backends with a delay the test controls.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::Value;
use steerdns::app::Running;

use crate::backends::*;
use crate::harness::*;
use crate::support::daemon::Daemon;
use crate::support::logs;

const TOKEN: &str = "peer-secret";
const ADMIN: &str = "admin-secret";
const PULL_MS: u64 = 200;

/// One node's config. `probe_port_101`: where this node probes endpoint
/// 192.0.2.101 (a 503 backend for the node with the bad view).
fn node_config(
    name: &str,
    peers: &[(String, SocketAddr)],
    quorum: &str,
    ok_port: u16,
    probe_port_101: u16,
    state_file: &Path,
) -> String {
    let peers: String = peers
        .iter()
        .map(|(n, a)| format!("  {{ name = \"{n}\", url = \"http://{a}\" }},\n"))
        .collect();
    format!(
        r#"
[server]
node_name = "{name}"
dns_listen = ["127.0.0.1:0"]
udp_workers = 1
random_seed = 7
api_token = "{ADMIN}"
watch_interval = "0s"

[geoip]
database = "@GEOIP@"

[cluster]
token = "{TOKEN}"
pull_interval = "{PULL_MS}ms"
pull_timeout = "150ms"
stale_after = "600ms"
state_file = "{state}"
peers = [
{peers}]

[zones."lb.example.com"]
ns = ["ns1"]
records = [{{ name = "ns1", type = "A", data = "192.0.2.53" }}]

{monitor}
[pools.web]
monitor = "web"
endpoints = [
  {{ address = "192.0.2.101", probe_address = "127.0.0.1", probe_port = {probe_port_101} }},
  {{ address = "192.0.2.102", probe_address = "127.0.0.1", probe_port = {ok_port} }},
]

[pools.spare]
endpoints = [{{ address = "192.0.2.200" }}]

[names."hc.lb.example.com"]
policy = "failover"
pools = ["web", "spare"]

[names."geo.lb.example.com"]
policy = "geo"
[names."geo.lb.example.com".geo]
default = ["web", "spare"]
continent = {{ EU = ["spare", "web"], NA = ["web", "spare"] }}
"#,
        state = state_file.display(),
        monitor = fast_monitor("web", "http", "80ms", &format!("quorum = \"{quorum}\"")),
    )
}

struct Node {
    name: String,
    dir: tempfile::TempDir,
    config: PathBuf,
    running: Option<Running>,
}

impl Node {
    fn run(&self) -> &Running {
        self.running.as_ref().expect("node running")
    }
    fn http(&self) -> SocketAddr {
        self.run().http_addr
    }
    fn dns(&self) -> SocketAddr {
        self.run().udp_addrs[0]
    }
    fn write(&self, text: &str) {
        let t = text.replace("@GEOIP@", &sample_mmdb().display().to_string());
        std::fs::write(&self.config, t).expect("write config");
    }
    fn start(&mut self) {
        self.running = Some(
            start_app(&self.config)
                .unwrap_or_else(|e| panic!("{} did not start: {e:#}", self.name)),
        );
    }
    fn state_file(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }
    fn answers(&self, name: &str) -> Vec<String> {
        addrs(&udp_ask(self.dns(), &q(name, RecordType::A)))
    }
    fn cluster(&self) -> Value {
        self.run().cluster.status_json()
    }
    fn peers_fresh(&self) -> usize {
        self.cluster()["peers"]
            .as_array()
            .map_or(0, |p| p.iter().filter(|p| p["fresh"] == true).count())
    }
}

struct Fleet {
    nodes: Vec<Node>,
    ok: HttpBackend,
    bad: HttpBackend,
    // Printed when the test fails.
    _log: logs::Window,
}

impl Fleet {
    /// Three nodes; node 0 probes 192.0.2.101 at the 503 backend, the
    /// others at the good one. Peers are learned after the first start
    /// (ephemeral ports), then configured by a reload.
    fn start(quorum: &str) -> Fleet {
        let ok = HttpBackend::start("127.0.0.1");
        let bad = HttpBackend::start("127.0.0.1");
        bad.set(Mode::Reply(503, "no".into()));
        let mut f = Fleet {
            nodes: Vec::new(),
            ok,
            bad,
            _log: logs::window("three in-process nodes"),
        };
        for i in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("steerdns.toml");
            f.nodes.push(Node {
                name: format!("n{i}"),
                dir,
                config,
                running: None,
            });
        }
        for i in 0..3 {
            f.write(i, &[], quorum);
            f.nodes[i].start();
        }
        f.configure_peers(quorum);
        f
    }

    fn write(&self, i: usize, peers: &[(String, SocketAddr)], quorum: &str) {
        let n = &self.nodes[i];
        let port = if i == 0 {
            self.bad.addr.port()
        } else {
            self.ok.addr.port()
        };
        n.write(&node_config(
            &n.name,
            peers,
            quorum,
            self.ok.addr.port(),
            port,
            &n.state_file(),
        ));
    }

    fn peers_of(&self, i: usize) -> Vec<(String, SocketAddr)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(j, n)| *j != i && n.running.is_some())
            .map(|(_, n)| (n.name.clone(), n.http()))
            .collect()
    }

    /// Write every running node's config with the others as peers, reload.
    fn configure_peers(&self, quorum: &str) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].running.is_none() {
                continue;
            }
            let peers = self.peers_of(i);
            self.write(i, &peers, quorum);
            self.nodes[i].run().reload().expect("reload with peers");
        }
    }

    fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.running.is_some())
    }

    fn wait_exchanged(&self) {
        let want = self.running().count() - 1;
        for n in self.running() {
            wait_for(10, &format!("{} sees {want} fresh peers", n.name), || {
                n.peers_fresh() == want
            });
        }
    }

    /// Ask every running node the geo name for `n` pseudo-random client
    /// /24s (ECS); the number of clients answered differently.
    fn answer_differences(&self, n: usize) -> usize {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut diffs = 0;
        for _ in 0..n {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let ip = std::net::Ipv4Addr::from((seed >> 16) as u32 & 0xffff_ff00);
            let m = q_ecs("geo.lb.example.com.", RecordType::A, &format!("{ip}/24"));
            let pkt = m.to_vec().unwrap();
            let answers: Vec<Vec<String>> = self
                .running()
                .map(|n| addrs(&decode(&udp_raw(n.dns(), &pkt).expect("answer"))))
                .collect();
            if answers.windows(2).any(|w| w[0] != w[1]) {
                diffs += 1;
            }
        }
        diffs
    }

    fn wait_own_verdict(&self, node: usize, label: &str, down: bool) {
        let r = self.nodes[node].run();
        wait_for(10, &format!("n{node} probes {label}"), || {
            let snap = r.shared.current.load();
            snap.probes
                .iter()
                .find(|t| t.key.starts_with(&format!("web|{label}|")))
                .and_then(|t| r.health.get(&t.key))
                .is_some_and(|h| h.hysteresis.verdict.as_str() == if down { "down" } else { "up" })
        });
    }
}

/// A sample of `/metrics` at `addr`.
fn metric(addr: SocketAddr, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape::parse(&get(addr, "/metrics").body).get(name, labels)
}

#[test]
fn majority_ignores_one_bad_view_local_does_not_and_a_dead_peer_goes_stale() {
    let mut f = Fleet::start("majority");
    let name = "hc.lb.example.com.";
    f.wait_own_verdict(0, "192.0.2.101", true);
    f.wait_own_verdict(1, "192.0.2.101", false);
    f.wait_exchanged();
    // Majority: node 0's bad view does not take .101 out anywhere.
    for n in f.running() {
        wait_for(5, &format!("{} answers both", n.name), || {
            n.answers(name) == vec!["192.0.2.101", "192.0.2.102"]
        });
    }
    let c = f.nodes[0].cluster();
    let e = c["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["endpoint"] == "192.0.2.101")
        .cloned()
        .unwrap();
    assert_eq!(
        (
            e["up"].clone(),
            e["down_votes"].clone(),
            e["voters"].clone()
        ),
        (true.into(), 1.into(), 3.into()),
        "{c:#}"
    );

    // All three answer identically for the same 1,000 clients (ECS).
    assert_eq!(
        f.answer_differences(1000),
        0,
        "answer differences between nodes"
    );

    // Both good views turn bad: the quorum decision reaches every node.
    f.ok.set(Mode::Reply(503, "no".into()));
    f.wait_own_verdict(1, "192.0.2.101", true);
    f.wait_own_verdict(2, "192.0.2.101", true);
    let t0 = Instant::now();
    for n in f.running() {
        wait_for(5, &format!("{} answers the spare pool", n.name), || {
            n.answers(name) == vec!["192.0.2.200"]
        });
    }
    println!(
        "quorum decision on all nodes {} ms after the verdicts (pull interval {PULL_MS} ms)",
        t0.elapsed().as_millis()
    );
    assert_eq!(
        f.answer_differences(1000),
        0,
        "differences after a quorum change"
    );
    f.ok.set(Mode::Reply(200, "OK".into()));
    f.wait_own_verdict(1, "192.0.2.101", false);
    for n in f.running() {
        wait_for(5, &format!("{} answers both again", n.name), || {
            n.answers(name) == vec!["192.0.2.101", "192.0.2.102"]
        });
    }

    // Local: only node 0 takes .101 out.
    f.configure_peers("local");
    wait_for(5, "n0 answers without .101", || {
        f.nodes[0].answers(name) == vec!["192.0.2.102"]
    });
    for n in &f.nodes[1..] {
        assert_eq!(
            n.answers(name),
            vec!["192.0.2.101", "192.0.2.102"],
            "{}",
            n.name
        );
    }
    // The comparison can fail: with local views the nodes disagree for
    // the clients answered from the web pool.
    assert!(f.answer_differences(200) > 0, "local views should differ");

    // A peer killed: back to majority, n2 stops; n0 and n1 keep answering
    // correctly (n0 down, n1 up: no majority) and report n2 stale.
    f.configure_peers("majority");
    f.wait_exchanged();
    f.nodes[2].running.take().expect("n2").stop();
    for n in f.running() {
        wait_for(5, &format!("{} reports n2 stale", n.name), || {
            n.cluster()["peers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "n2" && p["fresh"] == false && p["last_error"].is_string())
        });
        wait_for(5, "stale peer in the metrics", || {
            metric(n.http(), "steerdns_cluster_peer_fresh", &[("peer", "n2")]) == Some(0.0)
        });
        assert_eq!(
            n.answers(name),
            vec!["192.0.2.101", "192.0.2.102"],
            "{}",
            n.name
        );
    }
    // n1 alone: isolated, own view (up), and says so.
    f.nodes[0].running.take().expect("n0").stop();
    let n1 = &f.nodes[1];
    wait_for(5, "n1 isolated", || n1.cluster()["isolated"] == true);
    wait_for(5, "isolation in the metrics", || {
        metric(n1.http(), "steerdns_cluster_isolated", &[]) == Some(1.0)
    });
    assert_eq!(n1.answers(name), vec!["192.0.2.101", "192.0.2.102"]);
    let (_, page) = http(n1.http(), "GET", "/", &[]);
    assert!(
        page.contains("ISOLATED") && page.contains("STALE"),
        "{page}"
    );
}

#[test]
fn drain_reaches_every_node_survives_restart_and_is_no_alert() {
    let mut f = Fleet::start("majority");
    let name = "hc.lb.example.com.";
    f.wait_exchanged();
    for n in f.running() {
        wait_for(5, &format!("{} answers .102", n.name), || {
            n.answers(name).contains(&"192.0.2.102".to_string())
        });
    }
    let path = "/api/v1/endpoints/web/192.0.2.102/state?state=drain";
    assert_eq!(http(f.nodes[0].http(), "POST", path, &[]).0, 401);
    assert_eq!(
        http(f.nodes[1].http(), "POST", "/api/v1/cluster/poke", &[]).0,
        401
    );
    let auth = format!("Bearer {ADMIN}");
    // The CLI wrapper: `steerdns ctl drain POOL ENDPOINT`.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .arg("ctl")
        .arg("--config")
        .arg(&f.nodes[0].config)
        .arg("--api")
        .arg(f.nodes[0].http().to_string())
        .args(["drain", "web", "192.0.2.102"])
        .output()
        .expect("run steerdns ctl");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"drain\""),
        "{out:?}"
    );
    let bad = "/api/v1/endpoints/web/192.0.2.250/state?state=drain";
    assert_eq!(
        http(f.nodes[0].http(), "POST", bad, &[("Authorization", &auth)]).0,
        404
    );
    let t0 = Instant::now();
    for n in f.running() {
        wait_for(5, &format!("{} drops .102", n.name), || {
            !n.answers(name).contains(&"192.0.2.102".to_string())
        });
    }
    println!(
        "drain on every node after {} ms (pull interval {PULL_MS} ms)",
        t0.elapsed().as_millis()
    );
    // Still probed and up, drained as its own state: no "down" for alerts.
    let n1 = &f.nodes[1];
    wait_for(5, "n1 exports the drain", || {
        let drain = [
            ("endpoint", "192.0.2.102"),
            ("pool", "web"),
            ("state", "drain"),
        ];
        metric(n1.http(), "steerdns_endpoint_admin_state", &drain) == Some(1.0)
    });
    let ep = [("endpoint", "192.0.2.102"), ("pool", "web")];
    assert_eq!(metric(n1.http(), "steerdns_endpoint_up", &ep), Some(1.0));
    let (_, page) = http(n1.http(), "GET", "/", &[]);
    assert!(
        page.contains("DRAINED") && page.contains("Name hc.lb.example.com."),
        "{page}"
    );
    let (_, status) = http(n1.http(), "GET", "/api/v1/status", &[]);
    let status: Value = serde_json::from_str(&status).expect("status JSON");
    let ep = status["pools"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["endpoints"].as_array().unwrap().iter())
        .find(|e| e["name"] == "192.0.2.102")
        .cloned()
        .unwrap();
    assert_eq!(ep["state"], "drained", "{ep:#}");

    // Restart n0 alone (peers stopped first): the drain comes from its file.
    for i in [1, 2] {
        f.nodes[i].running.take().unwrap().stop();
    }
    f.nodes[0].running.take().unwrap().stop();
    f.nodes[0].start();
    assert!(
        !f.nodes[0]
            .answers(name)
            .contains(&"192.0.2.102".to_string())
    );
    assert_eq!(
        f.nodes[0]
            .run()
            .cluster
            .admin_of("web", "192.0.2.102")
            .as_str(),
        "drain"
    );

    // auto brings it back.
    let back = "/api/v1/endpoints/web/192.0.2.102/state?state=auto";
    assert_eq!(
        http(f.nodes[0].http(), "POST", back, &[("Authorization", &auth)]).0,
        200
    );
    assert!(
        f.nodes[0]
            .answers(name)
            .contains(&"192.0.2.102".to_string())
    );
}

#[test]
fn latency_picks_the_faster_pool_and_does_not_flap_within_the_margin() {
    let fast = HttpBackend::start("127.0.0.1");
    let slow = HttpBackend::start("127.0.0.1");
    slow.set(Mode::Delay(Duration::from_millis(50)));
    let cfg = format!(
        r#"
[server]
dns_listen = ["127.0.0.1:0"]
udp_workers = 1
watch_interval = "0s"
[geoip]
database = "@GEOIP@"
[cluster]
pull_interval = "100ms"
[zones."lb.example.com"]
ns = ["ns1"]
records = [{{ name = "ns1", type = "A", data = "192.0.2.53" }}]
{}{}{}[names."lat.lb.example.com"]
policy = "latency"
pools = ["slow", "fast"]
latency_margin_ms = 20
latency_margin_pct = 25
"#,
        fast_monitor("web", "http", "90ms", ""),
        probed_pool("slow", "web", "192.0.2.1", slow.addr.port()),
        probed_pool("fast", "web", "192.0.2.2", fast.addr.port()),
    );
    let s = TestServer::start(&cfg);
    let name = "lat.lb.example.com.";
    let ask = || addrs(&s.udp(&q(name, RecordType::A)));
    wait_for(10, "the fast pool answers", || ask() == vec!["192.0.2.2"]);
    let (_, ex) = http(
        s.running.http_addr,
        "GET",
        "/api/v1/explain?name=lat.lb.example.com&client=192.0.2.9",
        &[],
    );
    assert!(
        ex.contains("latency") && ex.contains("margin 20 ms"),
        "{ex}"
    );
    // The slow one gets close (within the margins): no switch back, over
    // many probe rounds of both.
    slow.set(Mode::Delay(Duration::from_millis(8)));
    let start = slow.requests.load(std::sync::atomic::Ordering::SeqCst);
    // Asking all along (bounded: the probes come every 100 ms).
    wait_for(10, "15 more probes of the slow pool", || {
        assert_eq!(ask(), vec!["192.0.2.2"], "flapped within the margin");
        slow.requests.load(std::sync::atomic::Ordering::SeqCst) >= start + 15
    });
    // The RTT gauge exists for both endpoints, labelled from the config.
    let rtt = [("endpoint", "192.0.2.1"), ("pool", "slow")];
    s.scrape()
        .value("steerdns_endpoint_probe_rtt_seconds", &rtt);
    // Made much faster than the current leader: it switches.
    fast.set(Mode::Delay(Duration::from_millis(60)));
    slow.set(Mode::Reply(200, "OK".into()));
    wait_for(10, "the now faster pool answers", || {
        ask() == vec!["192.0.2.1"]
    });
}

/// The cluster status of the process whose API is at `http`.
fn cluster_of(http: SocketAddr) -> Value {
    serde_json::from_str(&get(http, "/api/v1/cluster").body).unwrap_or(Value::Null)
}

#[test]
fn three_processes_agree_and_a_killed_one_goes_stale() {
    let ok = HttpBackend::start("127.0.0.1");
    let bad = HttpBackend::start("127.0.0.1");
    bad.set(Mode::Reply(503, "no".into()));
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let write = |i: usize, peers: &[(String, SocketAddr)]| {
        let port = if i == 0 {
            bad.addr.port()
        } else {
            ok.addr.port()
        };
        let path = dirs[i].path().join("steerdns.toml");
        let text = node_config(
            &format!("p{i}"),
            peers,
            "majority",
            ok.addr.port(),
            port,
            &dirs[i].path().join("state.json"),
        )
        .replace("@GEOIP@", &sample_mmdb().display().to_string());
        std::fs::write(&path, text).unwrap();
        path
    };
    let mut procs: Vec<Option<Daemon>> = (0..3)
        .map(|i| Some(Daemon::serve(&write(i, &[]), &[])))
        .collect();
    let http: Vec<SocketAddr> = procs
        .iter()
        .map(|p| p.as_ref().unwrap().addr("http"))
        .collect();
    let dns: Vec<SocketAddr> = procs
        .iter()
        .map(|p| p.as_ref().unwrap().addr("udp"))
        .collect();
    for (i, p) in procs.iter().enumerate() {
        let peers: Vec<(String, SocketAddr)> = (0..3)
            .filter(|&j| j != i)
            .map(|j| (format!("p{j}"), http[j]))
            .collect();
        write(i, &peers);
        p.as_ref().unwrap().signal(libc::SIGHUP);
    }
    let name = "hc.lb.example.com.";
    let answers = |i: usize| {
        udp_raw(dns[i], &wire(&q(name, RecordType::A)))
            .map(|r| addrs(&decode(&r)))
            .unwrap_or_default()
    };
    for (i, &api) in http.iter().enumerate() {
        wait_for(20, &format!("p{i} sees 2 fresh peers"), || {
            cluster_of(api)["peers"]
                .as_array()
                .is_some_and(|v| v.iter().filter(|x| x["fresh"] == true).count() == 2)
        });
    }
    // p0's own probe of .101 fails; the majority keeps it in everywhere.
    wait_for(
        20,
        "p0 has its own down verdict and still answers .101",
        || {
            let c = cluster_of(http[0]);
            c["endpoints"].as_array().is_some_and(|e| {
                e.iter().any(|x| {
                    x["endpoint"] == "192.0.2.101" && x["down_votes"] == 1 && x["voters"] == 3
                })
            })
        },
    );
    for i in 0..3 {
        assert_eq!(answers(i), vec!["192.0.2.101", "192.0.2.102"], "p{i}");
    }
    // SIGKILL p2: the others report it stale and keep answering the same.
    drop(procs[2].take());
    for (i, &api) in http.iter().enumerate().take(2) {
        wait_for(20, &format!("p{i} reports p2 stale"), || {
            cluster_of(api)["peers"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x["name"] == "p2" && x["fresh"] == false))
        });
        assert_eq!(answers(i), vec!["192.0.2.101", "192.0.2.102"], "p{i}");
    }
}
