//! Start a server from a TOML string; query it over UDP or TCP. Built on
//! the shared support layer (`tests/support`), whose helpers it re-exports
//! so a test needs only `use crate::harness::*`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hickory_proto::op::Message;
use steerdns::app::{self, Running};
use steerdns::config::ConfigError;
use steerdns::snapshot::Snapshot;
use tempfile::TempDir;

pub use crate::support::http::{get, request};
pub use crate::support::scrape::{self, Metrics};
pub use crate::support::skip::{can_bind, skip};
pub use crate::support::wait::{self, wait_for};
pub use crate::support::wire::*;
use crate::support::{logs, repo};

/// Path of the shipped sample GeoIP database.
pub fn sample_mmdb() -> PathBuf {
    repo("geoip/sample.mmdb")
}

/// The test zone used by most tests; `{extra}` is appended.
pub const BASE: &str = r#"
[server]
node_name = "test-node-7"
dns_listen = ["127.0.0.1:0"]
udp_workers = 1
random_seed = 42

[geoip]
database = "@GEOIP@"

[zones."lb.example.com"]
ttl = "1h"
ns = ["ns1", "ns2.lb.example.com."]
soa = { rname = "hostmaster.example.com.", serial = 7, minimum = "60s", ttl = "2h" }
records = [
  { name = "ns1", type = "A", data = "192.0.2.53" },
  { name = "ns1", type = "AAAA", data = "2001:db8::53" },
  { name = "ns2", type = "A", data = "198.51.100.53" },
  { name = "static", type = "A", ttl = "5m", data = "192.0.2.1" },
  { name = "static", type = "A", ttl = "5m", data = "192.0.2.2" },
  { name = "@", type = "MX", data = "10 mail" },
  { name = "mail", type = "A", data = "192.0.2.25" },
  { name = "txt", type = "TXT", data = "\"hello\" \"world\"" },
  { name = "_sip._udp", type = "SRV", data = "10 60 5060 sip" },
  { name = "@", type = "CAA", data = "0 issue \"ca.example.net\"" },
  { name = "ptr", type = "PTR", data = "static" },
  { name = "alias", type = "CNAME", data = "alias2" },
  { name = "alias2", type = "CNAME", data = "static" },
  { name = "to-www", type = "CNAME", data = "www" },
  { name = "outside", type = "CNAME", data = "www.example.org." },
  { name = "*.wild", type = "A", data = "192.0.2.99" },
  { name = "*.wild", type = "TXT", data = "\"wild\"" },
  { name = "deep.ent", type = "A", data = "192.0.2.77" },
  { name = "child", type = "NS", data = "ns.child" },
  { name = "ns.child", type = "A", data = "192.0.2.200" },
]

[pools.eu]
region = "DE"
endpoints = [{ address = "192.0.2.10" }, { address = "2001:db8:e::10" }]

[pools.na]
region = "US"
endpoints = [{ address = "198.51.100.10" }, { address = "2001:db8:a::10" }]

[pools.ap]
region = "SG"
endpoints = [{ address = "203.0.113.10" }, { address = "2001:db8:f::10" }]

[names."www.lb.example.com"]
ttl = "30s"
policy = "geo"

[names."www.lb.example.com".geo]
default = ["eu", "na"]
continent = { EU = ["eu", "na"], NA = ["na", "eu"], SA = ["na", "eu"], AS = ["ap", "eu"], OC = ["ap", "na"] }
"#;

/// `[monitors.NAME]` of type `kind` probing every 100 ms (`timeout`),
/// one result to change state (rise 1, fall 1), then `extra` lines.
pub fn fast_monitor(name: &str, kind: &str, timeout: &str, extra: &str) -> String {
    format!(
        "\n[monitors.{name}]\ntype = \"{kind}\"\ninterval = \"100ms\"\ntimeout = \"{timeout}\"\nrise = 1\nfall = 1\n{extra}\n"
    )
}

/// `[pools.NAME]` checked by `monitor`, of one endpoint `address` probed
/// at 127.0.0.1:`port`.
pub fn probed_pool(name: &str, monitor: &str, address: &str, port: u16) -> String {
    format!(
        "\n[pools.{name}]\nmonitor = \"{monitor}\"\nendpoints = [{{ address = \"{address}\", probe_address = \"127.0.0.1\", probe_port = {port} }}]\n"
    )
}

/// A running server and the temp dir holding its config.
pub struct TestServer {
    /// The server.
    pub running: Running,
    /// Its UDP address.
    pub udp: SocketAddr,
    /// Its TCP address.
    pub tcp: SocketAddr,
    /// The config file.
    pub config: PathBuf,
    _dir: TempDir,
    // Last: printed after the server stopped, when the test failed.
    _log: logs::Window,
}

/// Write `toml` (with `@GEOIP@` replaced) into a temp dir.
pub fn write_config(toml: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("steerdns.toml");
    let text = toml.replace("@GEOIP@", &sample_mmdb().display().to_string());
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

/// Start the in-process server on `config` (DNS as configured, the API on
/// an ephemeral loopback port).
pub fn start_app(config: &Path) -> anyhow::Result<Running> {
    app::start(&app::Options {
        config: config.to_path_buf(),
        dns_listen: vec![],
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
    })
}

/// Compile the config file at `path` (generation 1).
pub fn load(path: &Path) -> Result<Snapshot, ConfigError> {
    steerdns::reload::load_snapshot(path, 1)
}

/// Compile `toml` (with `@GEOIP@` replaced); panics on config errors.
pub fn snapshot_of(toml: &str) -> Snapshot {
    let (_dir, path) = write_config(toml);
    load(&path).unwrap_or_else(|e| panic!("config does not load: {e}"))
}

/// The shipped example config, compiled.
pub fn example_snapshot() -> Snapshot {
    load(&repo("config/example.toml")).expect("config/example.toml loads")
}

impl TestServer {
    /// Start on the base config plus `extra`.
    pub fn base(extra: &str) -> Self {
        Self::start(&format!("{BASE}\n{extra}"))
    }

    /// Start from a full config.
    pub fn start(toml: &str) -> Self {
        let (dir, config) = write_config(toml);
        Self::start_in(dir, config)
    }

    /// Start from a config already written at `config` inside `dir`.
    pub fn start_in(dir: TempDir, config: PathBuf) -> Self {
        let log = logs::window("in-process server");
        let running = start_app(&config).unwrap_or_else(|e| panic!("server did not start: {e:#}"));
        Self::with_log(running, config, dir, log)
    }

    fn with_log(running: Running, config: PathBuf, dir: TempDir, log: logs::Window) -> Self {
        TestServer {
            udp: running.udp_addrs[0],
            tcp: running.tcp_addrs[0],
            running,
            config,
            _dir: dir,
            _log: log,
        }
    }

    /// The temp dir holding the config.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// The HTTP API address.
    pub fn api(&self) -> SocketAddr {
        self.running.http_addr
    }

    /// The metrics as the server holds them (no HTTP).
    pub fn metrics(&self) -> Metrics {
        scrape::parse(&self.running.shared.metrics.render())
    }

    /// `GET /metrics` over the API, parsed.
    pub fn scrape(&self) -> Metrics {
        let r = get(self.api(), "/metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        scrape::parse(&r.body)
    }

    /// Replace `from` by `to` in the config file (panics if absent).
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        assert!(text.contains(from), "{from:?} not in the config");
        std::fs::write(&self.config, text.replace(from, to)).expect("write config");
    }

    /// Set an endpoint (by pool and address) up or down in the live health table.
    pub fn set_health(&self, pool: &str, address: &str, up: bool) {
        let snap = self.running.shared.current.load();
        let pid = snap.pool_ids[pool];
        let ep = snap.pools[pid as usize]
            .endpoints
            .iter()
            .find(|e| e.label == address)
            .expect("endpoint");
        snap.health.set(ep.id, up);
    }

    /// Query over UDP.
    pub fn udp(&self, m: &Message) -> Message {
        udp_ask(self.udp, m)
    }

    /// Query over TCP.
    pub fn tcp(&self, m: &Message) -> Message {
        decode(&tcp_raw(self.tcp, &wire(m)))
    }
}

/// A minimal HTTP/1.1 request over a fresh connection: (status, body).
/// Sends `Content-Length: 0` unless `headers` name a length.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut all = headers.to_vec();
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        all.push(("Content-Length", "0"));
    }
    let r = request(addr, method, path, &all);
    (r.status, r.body)
}
