//! The serde mirror of the TOML file. Every table denies unknown keys, and
//! values that semantic checks may complain about are `Spanned`, so errors
//! can point at them.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::duration::Duration;

/// A spanned string, the most common field type here.
pub type SString = Spanned<String>;

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[server]`: listeners, node identity, protocol limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[geoip]`: databases and overrides.
    #[serde(default)]
    pub geoip: GeoipConfig,
    /// `[zones."name"]`: the zones served.
    #[serde(default)]
    pub zones: BTreeMap<String, Spanned<ZoneConfig>>,
    /// `[pools.name]`: groups of endpoints.
    #[serde(default)]
    pub pools: BTreeMap<String, Spanned<PoolConfig>>,
    /// `[names."fqdn"]`: balanced names.
    #[serde(default)]
    pub names: BTreeMap<String, Spanned<NameConfig>>,
    /// `[monitors.name]`: health checks.
    #[serde(default)]
    pub monitors: BTreeMap<String, Spanned<MonitorConfig>>,
    /// `[notify]`: webhooks on health changes.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// `[cluster]`: peers sharing probe verdicts and admin states.
    #[serde(default)]
    pub cluster: super::cluster::ClusterConfig,
    /// `[anycast]`: health-gated route announcements through BIRD.
    pub anycast: Option<Spanned<AnycastConfig>>,
    /// `[rrl]`: response rate limiting.
    #[serde(default)]
    pub rrl: super::protect::RrlConfig,
    /// `[cookies]`: DNS Cookies.
    #[serde(default)]
    pub cookies: super::protect::CookiesConfig,
}

/// Kind of health check.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum MonitorKind {
    /// HTTP request, status and optional body check.
    Http,
    /// HTTP over TLS.
    Https,
    /// TCP connect.
    Tcp,
    /// DNS query, expected rcode and optional answer.
    Dns,
}

impl MonitorKind {
    /// Lower-case name, a bounded metrics label.
    pub fn label(self) -> &'static str {
        match self {
            MonitorKind::Http => "http",
            MonitorKind::Https => "https",
            MonitorKind::Tcp => "tcp",
            MonitorKind::Dns => "dns",
        }
    }
}

/// `[monitors.name]`
#[derive(Debug, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// Check kind.
    #[serde(rename = "type")]
    pub kind: Spanned<MonitorKind>,
    /// Time between probes of one endpoint.
    #[serde(default = "default_interval")]
    pub interval: Spanned<Duration>,
    /// Deadline of one probe.
    #[serde(default = "default_timeout")]
    pub timeout: Spanned<Duration>,
    /// Consecutive successes to become up.
    #[serde(default = "default_rise")]
    pub rise: Spanned<u32>,
    /// Consecutive failures to become down.
    #[serde(default = "default_fall")]
    pub fall: Spanned<u32>,
    /// Port (default: the endpoint's `probe_port`, else 80/443/53; `tcp` needs one).
    pub port: Option<u16>,
    /// HTTP path.
    pub path: Option<SString>,
    /// HTTP method.
    pub method: Option<SString>,
    /// Host header (default: the endpoint's host name, else its address).
    pub host: Option<SString>,
    /// TLS server name (default: the endpoint's host name, else its address).
    pub sni: Option<SString>,
    /// Extra HTTP headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Expected HTTP status codes: `"2xx"`, `"200,301-302"`.
    pub expect_status: Option<SString>,
    /// Substring the HTTP body must contain.
    pub expect_body: Option<SString>,
    /// Verify TLS certificates (default true).
    #[serde(default = "default_true")]
    pub tls_verify: bool,
    /// Extra CA certificates (PEM), relative to the config file.
    pub ca_file: Option<SString>,
    /// Follow redirects to the same host (default false).
    #[serde(default)]
    pub follow_redirects: bool,
    /// DNS: the name to query.
    pub query_name: Option<SString>,
    /// DNS: the type to query (default A).
    pub query_type: Option<SString>,
    /// DNS: acceptable rcodes (default NOERROR).
    pub expect_rcode: Option<Spanned<Vec<String>>>,
    /// DNS: an address or text that must appear in the answer.
    pub expect_answer: Option<SString>,
    /// How verdicts of the cluster combine: `"local"`, `"majority"` or a
    /// number. Not part of the monitor's fingerprint.
    #[serde(default)]
    pub quorum: super::cluster::QuorumConfig,
}

fn default_interval() -> Spanned<Duration> {
    unspanned(Duration::from_secs(10))
}
fn default_timeout() -> Spanned<Duration> {
    unspanned(Duration::from_secs(3))
}
fn default_rise() -> Spanned<u32> {
    unspanned(2)
}
fn default_fall() -> Spanned<u32> {
    unspanned(3)
}

/// `[notify]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// URLs that get a JSON POST on every health change.
    #[serde(default)]
    pub webhooks: Vec<SString>,
    /// Events kept while webhooks are slow; more are dropped and counted.
    pub queue_size: Option<usize>,
    /// Attempts per event and URL.
    pub retries: Option<u32>,
    /// Extra HTTP headers on every webhook request.
    #[serde(default)]
    pub headers: BTreeMap<String, SString>,
    /// Sent as `Authorization: Bearer <token>` with every webhook request.
    pub bearer_token: Option<SString>,
    /// Verify the certificates of `https://` webhooks (default true).
    pub tls_verify: Option<Spanned<bool>>,
    /// Extra CA certificates (PEM) for `https://` webhooks, relative to the
    /// config file.
    pub ca_file: Option<SString>,
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Node name for NSID, `id.server` and `hostname.bind` (default: host name).
    pub node_name: Option<SString>,
    /// Answer to `version.bind`/`version.server`; absent means REFUSED.
    pub version: Option<SString>,
    /// DNS listen addresses (UDP and TCP on each).
    #[serde(default = "default_dns_listen")]
    pub dns_listen: Vec<SString>,
    /// HTTP API listen address.
    #[serde(default = "default_http_listen")]
    pub http_listen: SString,
    /// UDP worker threads (sockets) per listen address; 0 = one per core.
    #[serde(default)]
    pub udp_workers: usize,
    /// Largest UDP response we send, whatever the client advertises.
    #[serde(default = "default_max_udp_payload")]
    pub max_udp_payload: Spanned<u16>,
    /// Use EDNS Client Subnet to locate clients.
    #[serde(default = "default_true")]
    pub ecs: bool,
    /// Idle timeout of TCP connections.
    #[serde(default = "default_tcp_idle")]
    pub tcp_idle_timeout: Spanned<Duration>,
    /// Concurrent TCP connections, all listeners together.
    #[serde(default = "default_tcp_max")]
    pub tcp_max_connections: usize,
    /// Concurrent TCP connections from one client network (/24, /56).
    pub tcp_max_connections_per_client: Option<Spanned<usize>>,
    /// Idle timeout of TCP connections while the connection cap is near.
    pub tcp_busy_idle_timeout: Option<Spanned<Duration>>,
    /// Seed for weighted random picks (tests); absent = random.
    pub random_seed: Option<u64>,
    /// Bearer token required by `POST /api/v1/reload`.
    pub api_token: Option<SString>,
    /// Probes running at once, all monitors together.
    #[serde(default = "default_max_probes")]
    pub max_concurrent_probes: Spanned<usize>,
    /// Fraction of queries logged at info level (0 = none, 1 = all).
    #[serde(default = "default_sample")]
    pub query_log_sample: Spanned<f64>,
    /// How often the config and GeoIP files are checked for changes
    /// (`"0s"` turns the file watch off).
    #[serde(default = "default_watch")]
    pub watch_interval: Spanned<Duration>,
    /// Also answer UDP through AF_XDP on this network interface (opt-in).
    pub xdp_interface: Option<SString>,
    /// How long a busy AF_XDP worker lets queries gather before it looks
    /// at its ring again (`"0s"`: every packet wakes it).
    #[serde(default = "default_xdp_coalesce")]
    pub xdp_coalesce: Spanned<Duration>,
    /// CPUs the DNS threads are pinned to: `"off"` (default), `"auto"`, or
    /// a list of CPU numbers; the control plane gets the other CPUs.
    pub dns_cpus: Option<Spanned<toml::Value>>,
}

fn default_max_probes() -> Spanned<usize> {
    unspanned(512)
}

fn default_sample() -> Spanned<f64> {
    unspanned(0.0)
}

fn default_watch() -> Spanned<Duration> {
    unspanned(Duration::from_secs(5))
}

fn default_xdp_coalesce() -> Spanned<Duration> {
    unspanned(Duration(std::time::Duration::from_micros(100)))
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            node_name: None,
            version: None,
            dns_listen: default_dns_listen(),
            http_listen: default_http_listen(),
            udp_workers: 0,
            max_udp_payload: default_max_udp_payload(),
            ecs: true,
            tcp_idle_timeout: default_tcp_idle(),
            tcp_max_connections: default_tcp_max(),
            tcp_max_connections_per_client: None,
            tcp_busy_idle_timeout: None,
            random_seed: None,
            api_token: None,
            max_concurrent_probes: default_max_probes(),
            query_log_sample: unspanned(0.0),
            watch_interval: default_watch(),
            xdp_interface: None,
            xdp_coalesce: default_xdp_coalesce(),
            dns_cpus: None,
        }
    }
}

fn unspanned<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}
fn default_dns_listen() -> Vec<SString> {
    vec![unspanned("[::]:53".into()), unspanned("0.0.0.0:53".into())]
}
fn default_http_listen() -> SString {
    unspanned("127.0.0.1:9153".into())
}
fn default_max_udp_payload() -> Spanned<u16> {
    unspanned(1232)
}
fn default_true() -> bool {
    true
}
fn default_tcp_idle() -> Spanned<Duration> {
    unspanned(Duration::from_secs(10))
}
fn default_tcp_max() -> usize {
    1024
}

/// `[geoip]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoipConfig {
    /// Location database (City or Country, nested or flat schema).
    pub database: Option<SString>,
    /// Several location databases (an IPv4 and an IPv6 file), consulted
    /// in order.
    #[serde(default)]
    pub databases: Vec<SString>,
    /// Optional ASN database.
    pub asn_database: Option<SString>,
    /// `[[geoip.override]]` entries.
    #[serde(default, rename = "override")]
    pub overrides: Vec<OverrideConfig>,
}

/// `[[geoip.override]]`: a network placed by the operator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    /// The network, `10.0.0.0/8`.
    pub cidr: SString,
    /// Continent code (derived from the country when absent).
    pub continent: Option<SString>,
    /// ISO country code.
    pub country: Option<SString>,
    /// ISO 3166-2 subdivision, `US-CA`.
    pub subdivision: Option<SString>,
    /// AS number.
    pub asn: Option<u32>,
    /// Latitude in degrees (with `longitude`).
    pub latitude: Option<Spanned<f64>>,
    /// Longitude in degrees (with `latitude`).
    pub longitude: Option<Spanned<f64>>,
}

/// `[zones."name"]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Default TTL of records.
    #[serde(default = "default_zone_ttl")]
    pub ttl: Spanned<Duration>,
    /// Name servers of the zone (apex NS records).
    pub ns: Vec<SString>,
    /// SOA fields.
    #[serde(default)]
    pub soa: SoaConfig,
    /// Static records.
    #[serde(default)]
    pub records: Vec<RecordConfig>,
}

fn default_zone_ttl() -> Spanned<Duration> {
    unspanned(Duration::from_secs(3600))
}

/// `[zones."name".soa]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SoaConfig {
    /// Primary name server (default: the first `ns`).
    pub mname: Option<SString>,
    /// Contact mailbox as a name (default: `hostmaster.<zone>`).
    pub rname: Option<SString>,
    /// Serial (default 1).
    pub serial: Option<u32>,
    /// Refresh (default 1h).
    pub refresh: Option<Spanned<Duration>>,
    /// Retry (default 15m).
    pub retry: Option<Spanned<Duration>>,
    /// Expire (default 1w).
    pub expire: Option<Spanned<Duration>>,
    /// Negative caching TTL, the SOA MINIMUM field (default 60s).
    pub minimum: Option<Spanned<Duration>>,
    /// TTL of the SOA record itself (default: the zone TTL).
    pub ttl: Option<Spanned<Duration>>,
}

/// One static record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// Owner: `@` for the apex, relative, or absolute with a trailing dot.
    pub name: SString,
    /// Record type (`A`, `AAAA`, `CNAME`, `MX`, `TXT`, `SRV`, `CAA`, `NS`, `PTR`).
    #[serde(rename = "type")]
    pub rtype: SString,
    /// TTL (default: the zone TTL).
    pub ttl: Option<Spanned<Duration>>,
    /// Record data in zone file syntax.
    pub data: SString,
}

/// `[pools.name]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The endpoints.
    pub endpoints: Spanned<Vec<EndpointConfig>>,
    /// Endpoints that must be up for the pool to be usable.
    #[serde(default = "default_min_healthy")]
    pub min_healthy: Spanned<u32>,
    /// Latitude of the pool (proximity).
    pub latitude: Option<Spanned<f64>>,
    /// Longitude of the pool (proximity).
    pub longitude: Option<Spanned<f64>>,
    /// Country or subdivision of the pool; its centroid is used for
    /// proximity when no coordinates are given.
    pub region: Option<SString>,
    /// Monitor of every endpoint (endpoints may override it).
    pub monitor: Option<SString>,
}

fn default_min_healthy() -> Spanned<u32> {
    unspanned(1)
}

/// One endpoint of a pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// IPv4 (A), IPv6 (AAAA) or a host name (CNAME).
    pub address: SString,
    /// Label for logs and the API (default: the address).
    pub name: Option<SString>,
    /// Relative weight (default 1).
    #[serde(default = "default_weight")]
    pub weight: Spanned<u32>,
    /// Disabled endpoints are never answered.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Monitor for this endpoint, overriding the pool's (`"none"`: not probed).
    pub monitor: Option<SString>,
    /// Address to probe instead of `address` (NAT, floating IPs).
    pub probe_address: Option<SString>,
    /// Port to probe (overrides the monitor's default port).
    pub probe_port: Option<u16>,
}

fn default_weight() -> Spanned<u32> {
    unspanned(1)
}

/// Steering policy of a balanced name.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// Ordered pools, first usable wins.
    Failover,
    /// Location map to ordered pool lists.
    Geo,
    /// Nearest pool first.
    Proximity,
    /// Endpoints of all pools picked at random by weight.
    Weighted,
    /// Pools ordered by this node's smoothed probe RTT.
    Latency,
}

/// What to answer when no endpoint is usable anywhere.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AllDownConfig {
    /// Answer as if every endpoint were up.
    #[default]
    FailOpen,
    /// Answer NODATA.
    Nodata,
}

/// `[names."fqdn"]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameConfig {
    /// TTL of answers.
    #[serde(default = "default_name_ttl")]
    pub ttl: Spanned<Duration>,
    /// The policy.
    pub policy: Spanned<PolicyKind>,
    /// Pools for `failover`, `proximity`, `weighted`.
    #[serde(default)]
    pub pools: Option<Spanned<Vec<SString>>>,
    /// Map for `geo`.
    pub geo: Option<Spanned<GeoMapConfig>>,
    /// Pool used when no listed pool is usable.
    pub fallback: Option<SString>,
    /// Most address records in one answer (default: all of the chosen
    /// pool; 1 for `weighted`).
    pub max_answers: Option<Spanned<u32>>,
    /// Behaviour when nothing is usable.
    #[serde(default)]
    pub all_down: AllDownConfig,
    /// `latency`: switch pools only when the new one is faster by this
    /// many milliseconds...
    pub latency_margin_ms: Option<Spanned<f64>>,
    /// ...and by this many percent.
    pub latency_margin_pct: Option<Spanned<f64>>,
}

fn default_name_ttl() -> Spanned<Duration> {
    unspanned(Duration::from_secs(30))
}

/// `[names."fqdn".geo]`: location → ordered pool list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoMapConfig {
    /// Pools for clients no rule matches.
    pub default: Spanned<Vec<SString>>,
    /// By continent code.
    #[serde(default)]
    pub continent: BTreeMap<String, Spanned<Vec<SString>>>,
    /// By ISO country code.
    #[serde(default)]
    pub country: BTreeMap<String, Spanned<Vec<SString>>>,
    /// By ISO 3166-2 subdivision (`US-CA`).
    #[serde(default)]
    pub subdivision: BTreeMap<String, Spanned<Vec<SString>>>,
    /// By AS number (keys are strings in TOML).
    #[serde(default)]
    pub asn: BTreeMap<String, Spanned<Vec<SString>>>,
    /// By client network.
    #[serde(default)]
    pub cidr: BTreeMap<String, Spanned<Vec<SString>>>,
}

/// `[anycast]`: the prefixes this node announces through BIRD and when.
/// Defaults are applied (and checked) in `snapshot::anycast`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnycastConfig {
    /// Prefixes announced (`"192.0.2.53/32"`, `"2001:db8::53/128"`).
    pub prefixes: Spanned<Vec<SString>>,
    /// Addresses the DNS self-check queries (default: each /32 or /128).
    pub check_addresses: Option<Spanned<Vec<SString>>>,
    /// Name the self-check asks for (default: the first zone's apex).
    pub check_name: Option<SString>,
    /// Type the self-check asks for (default SOA).
    pub check_type: Option<SString>,
    /// Time between self-checks.
    pub check_interval: Option<Spanned<Duration>>,
    /// Deadline of one self-check.
    pub check_timeout: Option<Spanned<Duration>>,
    /// How long every condition must hold before announcing.
    pub hold_down: Option<Spanned<Duration>>,
    /// Lame duck: how long to keep answering after withdrawing on SIGTERM.
    pub drain: Option<Spanned<Duration>>,
    /// Announce only while at least this many pools are usable.
    pub min_usable_pools: Option<Spanned<u32>>,
    /// BIRD's control socket.
    pub bird_socket: Option<SString>,
    /// The BIRD protocols (holding the routes; one per address family)
    /// that are enabled to announce.
    pub bird_protocols: Option<Spanned<Vec<SString>>>,
    /// The guard withdraws when steerdns has not refreshed it for this long.
    pub lease: Option<Spanned<Duration>>,
}
