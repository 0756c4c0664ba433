//! Prometheus metrics.
//!
//! [`Metrics`] owns its own [`prometheus::Registry`] (no global state: tests
//! run several servers in one process). Per-query metrics never take a lock
//! and never allocate: label values are resolved to *slots* when a config is
//! compiled ([`QueryCounters::zone_slot`], [`BalancerCounters::answer_slot`]),
//! and the hot path adds to sharded, cache-line aligned atomic counters
//! ([`QueryCounters::record_query`], [`BalancerCounters::record_answer`],
//! [`Metrics::record_drop`], [`Metrics::record_geoip`]). A custom
//! [`Collector`] sums the shards at scrape time.
//!
//! Everything that is not per query (endpoint and pool state, probes,
//! reloads, build info) uses ordinary prometheus vectors.
//!
//! Label sets are bounded by construction: zones, names, pools and endpoints
//! come from the config (slots are allocated at compile time, never from a
//! query), qtype and rcode go through fixed tables with an `other` bucket,
//! and reasons and monitor types are `&'static str` (a fixed set chosen by
//! the code, never by input).

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tracing::warn;

pub use crate::dns::transport::Transport;

mod snapshot;
pub use snapshot::{SnapshotSlots, sync_health, sync_health_with};

/// Label value of the zone slot for queries outside every zone (REFUSED,
/// FORMERR before a name was parsed, CHAOS class).
pub const NO_ZONE: &str = "(none)";
/// Slot of [`NO_ZONE`]; always allocated.
pub const NO_ZONE_SLOT: u32 = 0;

/// Query types with their own label value; everything else is `other`.
pub const QTYPES: [(u16, &str); 11] = [
    (1, "A"),
    (28, "AAAA"),
    (5, "CNAME"),
    (15, "MX"),
    (16, "TXT"),
    (33, "SRV"),
    (257, "CAA"),
    (2, "NS"),
    (12, "PTR"),
    (6, "SOA"),
    (255, "ANY"),
];
const N_QTYPE: usize = QTYPES.len() + 1;

/// Response codes with their own label value; everything else is `other`.
pub const RCODES: [(u16, &str); 7] = [
    (0, "NOERROR"),
    (1, "FORMERR"),
    (2, "SERVFAIL"),
    (3, "NXDOMAIN"),
    (4, "NOTIMP"),
    (5, "REFUSED"),
    (16, "BADVERS"),
];
const N_RCODE: usize = RCODES.len() + 1;
const N_TRANSPORT: usize = 2;
const PER_ZONE: usize = N_QTYPE * N_RCODE * N_TRANSPORT;

/// Upper bounds (seconds) of the DNS response duration histogram.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0,
];
const DURATION_BUCKETS_NS: [u64; 14] = [
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];
/// Buckets plus `+Inf`, plus the sum in nanoseconds.
const HIST_CELLS: usize = DURATION_BUCKETS.len() + 2;

/// Upper bounds (seconds) of the probe duration histogram.
pub const PROBE_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Most zone slots (further zones share the [`NO_ZONE`] slot, with a warning).
pub const MAX_ZONE_SLOTS: usize = 1024;
/// Most balancer answer slots (name, pool pairs).
pub const MAX_ANSWER_SLOTS: usize = 1 << 16;

/// `INDEX[code]` = position of `code` in `table`, or `table.len()` (other):
/// one load per query instead of a search.
const fn index_table<const N: usize>(table: &[(u16, &str)]) -> [u8; N] {
    let mut t = [table.len() as u8; N];
    let mut i = 0;
    while i < table.len() {
        t[table[i].0 as usize] = i as u8;
        i += 1;
    }
    t
}
const QTYPE_INDEX: [u8; 258] = index_table(&QTYPES);
const RCODE_INDEX: [u8; 17] = index_table(&RCODES);

fn qtype_index(qtype: u16) -> usize {
    QTYPE_INDEX
        .get(usize::from(qtype))
        .map_or(QTYPES.len(), |&i| usize::from(i))
}

fn rcode_index(rcode: u16) -> usize {
    RCODE_INDEX
        .get(usize::from(rcode))
        .map_or(RCODES.len(), |&i| usize::from(i))
}

fn transport_index(t: Transport) -> usize {
    match t {
        Transport::Udp => 0,
        Transport::Tcp => 1,
    }
}

const TRANSPORTS: [&str; N_TRANSPORT] = ["udp", "tcp"];

// ---------------------------------------------------------------------------
// Sharded atomic counters

/// Counters per chunk: 256 × 8 bytes = 2 KiB, a whole number of cache
/// lines.
const CHUNK: usize = 256;

#[repr(align(64))]
struct Chunk([AtomicU64; CHUNK]);

impl Chunk {
    fn new() -> Box<Self> {
        Box::new(Chunk(std::array::from_fn(|_| AtomicU64::new(0))))
    }
}

/// One shard: lazily allocated chunks, so memory follows the slots in use.
struct Shard {
    chunks: Box<[OnceLock<Box<Chunk>>]>,
}

/// A growable array of `u64` counters, sharded so threads rarely share a
/// cache line. Growing ([`Sharded::ensure`]) happens off the hot path; adding
/// never locks or allocates.
struct Sharded {
    shards: Box<[Shard]>,
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard index (modulo the shard count), assigned round
    /// robin on first use.
    static SHARD_INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn shard_index() -> usize {
    SHARD_INDEX.with(|c| {
        let mut i = c.get();
        if i == usize::MAX {
            i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
            c.set(i);
        }
        i
    })
}

fn shard_count() -> usize {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get())
        .saturating_mul(2)
        .next_power_of_two()
        .clamp(4, 64)
}

impl Sharded {
    fn new(capacity: usize) -> Self {
        let chunks = capacity.div_ceil(CHUNK);
        Sharded {
            shards: (0..shard_count())
                .map(|_| Shard {
                    chunks: (0..chunks).map(|_| OnceLock::new()).collect(),
                })
                .collect(),
        }
    }

    /// Make counters `0..n` addressable (allocates missing chunks).
    fn ensure(&self, n: usize) {
        for shard in self.shards.iter() {
            for c in shard.chunks.iter().take(n.div_ceil(CHUNK)) {
                c.get_or_init(Chunk::new);
            }
        }
    }

    #[inline]
    fn add(&self, index: usize, n: u64) {
        let shard = &self.shards[shard_index() & (self.shards.len() - 1)];
        if let Some(chunk) = shard.chunks.get(index / CHUNK).and_then(OnceLock::get) {
            chunk.0[index % CHUNK].fetch_add(n, Ordering::Relaxed);
        }
    }

    fn sum(&self, index: usize) -> u64 {
        self.shards
            .iter()
            .filter_map(|s| s.chunks.get(index / CHUNK).and_then(OnceLock::get))
            .map(|c| c.0[index % CHUNK].load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (they
    // only guard label tables), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Label values allocated to slots; touched at compile and scrape time only.
#[derive(Default)]
struct SlotTable<K> {
    by_key: HashMap<K, u32>,
    keys: Vec<K>,
}

impl<K: Clone + Eq + std::hash::Hash> SlotTable<K> {
    fn slot(&mut self, key: K, max: usize) -> Option<u32> {
        if let Some(&s) = self.by_key.get(&key) {
            return Some(s);
        }
        if self.keys.len() >= max {
            return None;
        }
        let s = u32::try_from(self.keys.len()).ok()?;
        self.keys.push(key.clone());
        self.by_key.insert(key, s);
        Some(s)
    }
}

// ---------------------------------------------------------------------------
// Metric family builders

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn counter_metric(labels: Vec<LabelPair>, value: u64) -> proto::Metric {
    let mut c = proto::Counter::default();
    c.set_value(value as f64);
    let mut m = proto::Metric::from_label(labels);
    m.set_counter(c);
    m
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn desc(name: &str, help: &str, labels: &[&str]) -> Desc {
    match Desc::new(
        name.to_string(),
        help.to_string(),
        labels.iter().map(|s| s.to_string()).collect(),
        HashMap::new(),
    ) {
        Ok(d) => d,
        // Names and help are constants of this module, checked by the tests.
        Err(e) => panic!("bad metric descriptor {name}: {e}"),
    }
}

// ---------------------------------------------------------------------------
// DNS queries

const QUERIES: &str = "steerdns_dns_queries_total";
const QUERIES_HELP: &str =
    "DNS queries answered, by zone, query type, response code and transport.";
const DURATION: &str = "steerdns_dns_response_duration_seconds";
const DURATION_HELP: &str = "Time from a DNS query reaching the answer engine to its response being ready, by transport; measured on a random sample of 1 in 16 answered queries (count and sum cover the sampled queries only, steerdns_dns_queries_total counts all).";

/// One answered query in this many (at random) has its duration measured
/// for `steerdns_dns_response_duration_seconds`: two clock reads per query
/// cost more than the rest of the metrics together. Must match the help text.
pub const DURATION_SAMPLE_EVERY: u32 = 16;

thread_local! {
    /// xorshift32 state of [`QueryCounters::sample_duration`].
    static DURATION_SAMPLER: Cell<u32> = const { Cell::new(0x9E37_79B9) };
}

/// Lock-free per-query counters: `steerdns_dns_queries_total{zone, qtype,
/// rcode, transport}` and `steerdns_dns_response_duration_seconds{transport}`.
pub struct QueryCounters {
    counts: Sharded,
    hist: Sharded,
    zones: Mutex<SlotTable<String>>,
    descs: [Desc; 2],
}

impl QueryCounters {
    fn new() -> Self {
        let q = QueryCounters {
            counts: Sharded::new(MAX_ZONE_SLOTS * PER_ZONE),
            hist: Sharded::new(N_TRANSPORT * HIST_CELLS),
            zones: Mutex::new(SlotTable::default()),
            descs: [
                desc(
                    QUERIES,
                    QUERIES_HELP,
                    &["zone", "qtype", "rcode", "transport"],
                ),
                desc(DURATION, DURATION_HELP, &["transport"]),
            ],
        };
        q.hist.ensure(N_TRANSPORT * HIST_CELLS);
        let slot = q.zone_slot(NO_ZONE);
        debug_assert_eq!(slot, NO_ZONE_SLOT);
        q
    }

    /// The slot of `zone` (as it should appear in the `zone` label, e.g.
    /// `lb.example.com.`), allocated on first use and never freed. Call it
    /// when compiling a config, not per query: it takes a lock and may
    /// allocate. Past [`MAX_ZONE_SLOTS`] zones, returns [`NO_ZONE_SLOT`].
    pub fn zone_slot(&self, zone: &str) -> u32 {
        let mut t = lock(&self.zones);
        match t.slot(zone.to_string(), MAX_ZONE_SLOTS) {
            Some(s) => {
                self.counts.ensure((s as usize + 1) * PER_ZONE);
                s
            }
            None => {
                warn!(zone, "too many zones for metrics; counted as {NO_ZONE}");
                NO_ZONE_SLOT
            }
        }
    }

    /// Count one answered query and its duration. Lock-free and
    /// allocation-free. Unknown slots count nothing; unknown qtypes and
    /// rcodes count as `other`.
    #[inline]
    pub fn record_query(
        &self,
        zone_slot: u32,
        qtype: u16,
        rcode: u16,
        transport: Transport,
        duration: Duration,
    ) {
        self.count_query(zone_slot, qtype, rcode, transport);
        self.observe_duration(transport, duration);
    }

    /// Whether the caller should time this query for
    /// [`observe_duration`](Self::observe_duration): true for one in
    /// [`DURATION_SAMPLE_EVERY`], at random (a per-thread xorshift, so no
    /// traffic pattern aliases with it). No clock read, no atomic.
    #[inline]
    pub fn sample_duration(&self) -> bool {
        DURATION_SAMPLER.with(|c| {
            let mut x = c.get();
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            c.set(x);
            x % DURATION_SAMPLE_EVERY == 0
        })
    }

    /// Count one answered query (without its duration). Lock-free and
    /// allocation-free, as [`record_query`](Self::record_query).
    #[inline]
    pub fn count_query(&self, zone_slot: u32, qtype: u16, rcode: u16, transport: Transport) {
        let idx = ((zone_slot as usize * N_QTYPE + qtype_index(qtype)) * N_RCODE
            + rcode_index(rcode))
            * N_TRANSPORT
            + transport_index(transport);
        self.counts.add(idx, 1);
    }

    /// Add one query's duration to the histogram (of a query chosen by
    /// [`sample_duration`](Self::sample_duration)).
    #[inline]
    pub fn observe_duration(&self, transport: Transport, duration: Duration) {
        let t = transport_index(transport);
        let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let bucket = DURATION_BUCKETS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(DURATION_BUCKETS_NS.len());
        let base = t * HIST_CELLS;
        self.hist.add(base + bucket, 1);
        self.hist.add(base + HIST_CELLS - 1, ns);
    }

    /// Total queries counted for `zone_slot` (all labels), for tests and
    /// status.
    pub fn zone_total(&self, zone_slot: u32) -> u64 {
        let base = zone_slot as usize * PER_ZONE;
        (base..base + PER_ZONE).map(|i| self.counts.sum(i)).sum()
    }

    fn families(&self) -> Vec<MetricFamily> {
        let zones: Vec<String> = lock(&self.zones).keys.clone();
        let mut queries = Vec::new();
        for (z, zone) in zones.iter().enumerate() {
            for q in 0..N_QTYPE {
                let qname = QTYPES.get(q).map_or("other", |x| x.1);
                for r in 0..N_RCODE {
                    let rname = RCODES.get(r).map_or("other", |x| x.1);
                    for (t, tname) in TRANSPORTS.iter().enumerate() {
                        let idx = ((z * N_QTYPE + q) * N_RCODE + r) * N_TRANSPORT + t;
                        let v = self.counts.sum(idx);
                        if v == 0 {
                            continue;
                        }
                        queries.push(counter_metric(
                            vec![
                                label("qtype", qname),
                                label("rcode", rname),
                                label("transport", tname),
                                label("zone", zone),
                            ],
                            v,
                        ));
                    }
                }
            }
        }
        let mut hists = Vec::new();
        for (t, tname) in TRANSPORTS.iter().enumerate() {
            let base = t * HIST_CELLS;
            let mut cumulative = 0u64;
            let mut buckets = Vec::with_capacity(DURATION_BUCKETS.len());
            for (i, &ub) in DURATION_BUCKETS.iter().enumerate() {
                cumulative += self.hist.sum(base + i);
                let mut b = proto::Bucket::default();
                b.set_upper_bound(ub);
                b.set_cumulative_count(cumulative);
                buckets.push(b);
            }
            let count = cumulative + self.hist.sum(base + DURATION_BUCKETS.len());
            let mut h = proto::Histogram::default();
            h.set_bucket(buckets);
            h.set_sample_count(count);
            h.set_sample_sum(self.hist.sum(base + HIST_CELLS - 1) as f64 / 1e9);
            let mut m = proto::Metric::from_label(vec![label("transport", tname)]);
            m.set_histogram(h);
            hists.push(m);
        }
        let mut out = vec![family(
            DURATION,
            DURATION_HELP,
            MetricType::HISTOGRAM,
            hists,
        )];
        if !queries.is_empty() {
            out.push(family(QUERIES, QUERIES_HELP, MetricType::COUNTER, queries));
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Balancer answers

const ANSWERS: &str = "steerdns_balancer_answers_total";
const ANSWERS_HELP: &str = "Answers for balanced names, by name, pool and mode (normal, fallback: the fallback pool answered, fail_open: nothing was usable and all enabled endpoints were answered, nodata).";

/// How a balanced name's answer was reached (mirrors `select::Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerMode {
    /// A listed pool was usable.
    Normal,
    /// The fallback pool answered.
    Fallback,
    /// Nothing was usable; answered as if all enabled endpoints were up.
    FailOpen,
    /// Nothing was usable; answered NODATA.
    Nodata,
}

const MODES: [&str; 4] = ["normal", "fallback", "fail_open", "nodata"];

impl AnswerMode {
    fn index(self) -> usize {
        match self {
            AnswerMode::Normal => 0,
            AnswerMode::Fallback => 1,
            AnswerMode::FailOpen => 2,
            AnswerMode::Nodata => 3,
        }
    }
}

/// A (balanced name, pool) pair resolved ahead of time; see
/// [`BalancerCounters::answer_slot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnswerSlot(u32);

/// Lock-free `steerdns_balancer_answers_total{name, pool, mode}`.
pub struct BalancerCounters {
    counts: Sharded,
    slots: Mutex<SlotTable<(String, String)>>,
    desc: Desc,
}

impl BalancerCounters {
    fn new() -> Self {
        BalancerCounters {
            counts: Sharded::new(MAX_ANSWER_SLOTS * MODES.len()),
            slots: Mutex::new(SlotTable::default()),
            desc: desc(ANSWERS, ANSWERS_HELP, &["name", "pool", "mode"]),
        }
    }

    /// The slot of answers for balanced `name` from `pool` (`None`: no pool,
    /// as for NODATA), allocated on first use and never freed. Call it when
    /// compiling a config, for each pool a name can answer from (its listed
    /// pools and its fallback), not per query. Past [`MAX_ANSWER_SLOTS`]
    /// pairs, returns a slot that counts nothing (with a warning).
    pub fn answer_slot(&self, name: &str, pool: Option<&str>) -> AnswerSlot {
        let key = (name.to_string(), pool.unwrap_or(NO_ZONE).to_string());
        let mut t = lock(&self.slots);
        match t.slot(key, MAX_ANSWER_SLOTS) {
            Some(s) => {
                self.counts.ensure((s as usize + 1) * MODES.len());
                AnswerSlot(s)
            }
            None => {
                warn!(
                    name,
                    "too many balancer answer slots for metrics; not counted"
                );
                AnswerSlot(u32::MAX)
            }
        }
    }

    /// Count one answer. Lock-free and allocation-free.
    #[inline]
    pub fn record_answer(&self, slot: AnswerSlot, mode: AnswerMode) {
        if slot.0 == u32::MAX {
            return;
        }
        self.counts
            .add(slot.0 as usize * MODES.len() + mode.index(), 1);
    }

    /// Answers counted for `slot` in `mode`.
    pub fn count(&self, slot: AnswerSlot, mode: AnswerMode) -> u64 {
        if slot.0 == u32::MAX {
            return 0;
        }
        self.counts
            .sum(slot.0 as usize * MODES.len() + mode.index())
    }

    fn families(&self) -> Vec<MetricFamily> {
        let keys = lock(&self.slots).keys.clone();
        let mut metrics = Vec::new();
        for (s, (name, pool)) in keys.iter().enumerate() {
            for (m, mode) in MODES.iter().enumerate() {
                let v = self.counts.sum(s * MODES.len() + m);
                // Normal answers are always shown, so every pair has a series.
                if v == 0 && m != 0 {
                    continue;
                }
                metrics.push(counter_metric(
                    vec![
                        label("mode", mode),
                        label("name", name),
                        label("pool", pool),
                    ],
                    v,
                ));
            }
        }
        if metrics.is_empty() {
            return Vec::new();
        }
        vec![family(ANSWERS, ANSWERS_HELP, MetricType::COUNTER, metrics)]
    }
}

// ---------------------------------------------------------------------------
// Drops and GeoIP lookups

/// Why a packet got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not a DNS query (no header, or a response).
    Malformed,
    /// Too large (a TCP length over the limit, an oversized datagram).
    Oversize,
    /// Over a rate limit.
    RateLimited,
    /// A TCP connection refused because of the connection cap.
    ConnectionLimit,
}

const DROP_REASONS: [&str; 4] = ["malformed", "oversize", "rate_limited", "connection_limit"];

impl DropReason {
    fn index(self) -> usize {
        match self {
            DropReason::Malformed => 0,
            DropReason::Oversize => 1,
            DropReason::RateLimited => 2,
            DropReason::ConnectionLimit => 3,
        }
    }
}

/// The result of locating a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeoResult {
    /// The database knew the address.
    Found,
    /// Neither the database nor an override knew it.
    NotFound,
    /// An override matched.
    Override,
}

const GEO_RESULTS: [&str; 3] = ["found", "not_found", "override"];

impl GeoResult {
    fn index(self) -> usize {
        match self {
            GeoResult::Found => 0,
            GeoResult::NotFound => 1,
            GeoResult::Override => 2,
        }
    }
}

const DROPPED: &str = "steerdns_dns_dropped_total";
const DROPPED_HELP: &str = "DNS packets dropped without a response, by reason.";
const GEOIP: &str = "steerdns_geoip_lookups_total";
const GEOIP_HELP: &str = "GeoIP lookups of clients, by result (found, not_found, override).";

/// The custom collector for everything sharded.
struct HotCollector {
    queries: std::sync::Arc<QueryCounters>,
    answers: std::sync::Arc<BalancerCounters>,
    small: std::sync::Arc<Sharded>,
    descs: Vec<Desc>,
}

/// Index of the first geoip counter in `small` (drops come first).
const GEO_BASE: usize = DROP_REASONS.len();

impl Collector for HotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs
            .iter()
            .chain(self.queries.descs.iter())
            .chain(std::iter::once(&self.answers.desc))
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = self.queries.families();
        out.extend(self.answers.families());
        let drops = DROP_REASONS
            .iter()
            .enumerate()
            .map(|(i, r)| counter_metric(vec![label("reason", r)], self.small.sum(i)))
            .collect();
        out.push(family(DROPPED, DROPPED_HELP, MetricType::COUNTER, drops));
        let geo = GEO_RESULTS
            .iter()
            .enumerate()
            .map(|(i, r)| counter_metric(vec![label("result", r)], self.small.sum(GEO_BASE + i)))
            .collect();
        out.push(family(GEOIP, GEOIP_HELP, MetricType::COUNTER, geo));
        out
    }
}

// ---------------------------------------------------------------------------
// Metrics

/// Errors creating the metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The prometheus crate rejected a metric.
    #[error("registering metrics: {0}")]
    Prometheus(#[from] prometheus::Error),
}

/// Every steerdns metric, in its own registry.
pub struct Metrics {
    registry: Registry,
    queries: std::sync::Arc<QueryCounters>,
    answers: std::sync::Arc<BalancerCounters>,
    small: std::sync::Arc<Sharded>,
    endpoint_up: IntGaugeVec,
    pool_usable: IntGaugeVec,
    probe_duration: HistogramVec,
    probe_failures: IntCounterVec,
    probes_skipped: IntCounterVec,
    reloads: IntCounterVec,
    last_reload_success: Gauge,
    last_reload_ok: IntGauge,
    /// (pool, endpoint) pairs with series, for [`Metrics::retain_endpoints`].
    endpoints: Mutex<HashSet<(String, String)>>,
    pools: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// All metrics, registered in a new registry. `steerdns_build_info` is
    /// set to this crate's version.
    pub fn new() -> Result<Self, MetricsError> {
        Self::with_version(env!("CARGO_PKG_VERSION"))
    }

    /// Like [`Metrics::new`] with another `version` label for
    /// `steerdns_build_info`.
    pub fn with_version(version: &str) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let queries = std::sync::Arc::new(QueryCounters::new());
        let answers = std::sync::Arc::new(BalancerCounters::new());
        let small = std::sync::Arc::new(Sharded::new(GEO_BASE + GEO_RESULTS.len()));
        small.ensure(GEO_BASE + GEO_RESULTS.len());
        registry.register(Box::new(HotCollector {
            queries: queries.clone(),
            answers: answers.clone(),
            small: small.clone(),
            descs: vec![
                desc(DROPPED, DROPPED_HELP, &["reason"]),
                desc(GEOIP, GEOIP_HELP, &["result"]),
            ],
        }))?;

        let endpoint_up = IntGaugeVec::new(
            Opts::new(
                "steerdns_endpoint_up",
                "Whether an endpoint is up (1) or down (0) as its monitor sees it.",
            ),
            &["pool", "endpoint"],
        )?;
        let pool_usable = IntGaugeVec::new(
            Opts::new(
                "steerdns_pool_usable",
                "Whether a pool has at least min_healthy endpoints up (1) or not (0).",
            ),
            &["pool"],
        )?;
        let probe_duration = HistogramVec::new(
            HistogramOpts::new(
                "steerdns_probe_duration_seconds",
                "Duration of health probes, by monitor type.",
            )
            .buckets(PROBE_BUCKETS.to_vec()),
            &["monitor_type"],
        )?;
        let probe_failures = IntCounterVec::new(
            Opts::new(
                "steerdns_probe_failures_total",
                "Failed health probes, by pool, endpoint and reason.",
            ),
            &["pool", "endpoint", "reason"],
        )?;
        let probes_skipped = IntCounterVec::new(
            Opts::new(
                "steerdns_probes_skipped_total",
                "Probe rounds skipped because the endpoint's previous probe was still running or waiting (in_flight), and probes that had to wait for a free probe slot (busy).",
            ),
            &["reason"],
        )?;
        probes_skipped.with_label_values(&["in_flight"]);
        probes_skipped.with_label_values(&["busy"]);
        let reloads = IntCounterVec::new(
            Opts::new(
                "steerdns_config_reloads_total",
                "Config reloads, by result (success, failure).",
            ),
            &["result"],
        )?;
        let last_reload_success = Gauge::new(
            "steerdns_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load or reload.",
        )?;
        let last_reload_ok = IntGauge::new(
            "steerdns_config_last_reload_successful",
            "1 when the last config load or reload succeeded, else 0.",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("steerdns_build_info", "Always 1; the version is a label."),
            &["version"],
        )?;
        build_info.with_label_values(&[version]).set(1);
        reloads.with_label_values(&["success"]);
        reloads.with_label_values(&["failure"]);

        registry.register(Box::new(endpoint_up.clone()))?;
        registry.register(Box::new(pool_usable.clone()))?;
        registry.register(Box::new(probe_duration.clone()))?;
        registry.register(Box::new(probe_failures.clone()))?;
        registry.register(Box::new(probes_skipped.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(last_reload_success.clone()))?;
        registry.register(Box::new(last_reload_ok.clone()))?;
        registry.register(Box::new(build_info))?;

        Ok(Metrics {
            registry,
            queries,
            answers,
            small,
            endpoint_up,
            pool_usable,
            probe_duration,
            probe_failures,
            probes_skipped,
            reloads,
            last_reload_success,
            last_reload_ok,
            endpoints: Mutex::new(HashSet::new()),
            pools: Mutex::new(HashSet::new()),
        })
    }

    /// The registry (to add more collectors).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Per-query counters (hot path).
    pub fn queries(&self) -> &QueryCounters {
        &self.queries
    }

    /// Balancer answer counters (hot path).
    pub fn answers(&self) -> &BalancerCounters {
        &self.answers
    }

    /// Count a dropped packet. Lock-free and allocation-free.
    #[inline]
    pub fn record_drop(&self, reason: DropReason) {
        self.small.add(reason.index(), 1);
    }

    /// Count `n` drops at once (transports that keep their own counters
    /// report their deltas periodically).
    pub fn record_drops(&self, reason: DropReason, n: u64) {
        self.small.add(reason.index(), n);
    }

    /// Count a GeoIP lookup. Lock-free and allocation-free.
    #[inline]
    pub fn record_geoip(&self, result: GeoResult) {
        self.small.add(GEO_BASE + result.index(), 1);
    }

    /// Set `steerdns_endpoint_up{pool, endpoint}`.
    pub fn set_endpoint_up(&self, pool: &str, endpoint: &str, up: bool) {
        self.endpoint_up
            .with_label_values(&[pool, endpoint])
            .set(i64::from(up));
        let key = (pool.to_string(), endpoint.to_string());
        lock(&self.endpoints).insert(key);
    }

    /// Set `steerdns_pool_usable{pool}`.
    pub fn set_pool_usable(&self, pool: &str, usable: bool) {
        self.pool_usable
            .with_label_values(&[pool])
            .set(i64::from(usable));
        lock(&self.pools).insert(pool.to_string());
    }

    /// Drop the series of endpoints and pools no longer configured (call
    /// after a reload with the new config's pools and endpoints), so removed
    /// endpoints do not stay "down" forever.
    pub fn retain_endpoints<'a>(&self, keep: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let keep: HashSet<(&str, &str)> = keep.into_iter().collect();
        let pools: HashSet<&str> = keep.iter().map(|&(p, _)| p).collect();
        lock(&self.endpoints).retain(|(p, e)| {
            let kept = keep.contains(&(p.as_str(), e.as_str()));
            if !kept {
                let _ = self.endpoint_up.remove_label_values(&[p, e]);
            }
            kept
        });
        lock(&self.pools).retain(|p| {
            let kept = pools.contains(p.as_str());
            if !kept {
                let _ = self.pool_usable.remove_label_values(&[p]);
            }
            kept
        });
    }

    /// Observe one probe's duration; `monitor_type` is one of a fixed set
    /// (`"tcp"`, `"http"`, `"https"`, `"dns"`, …).
    pub fn observe_probe(&self, monitor_type: &'static str, duration: Duration) {
        self.probe_duration
            .with_label_values(&[monitor_type])
            .observe(duration.as_secs_f64());
    }

    /// Count a failed probe; `reason` is one of a fixed set chosen by the
    /// prober (`"timeout"`, `"refused"`, `"status"`, …), never free text.
    pub fn probe_failed(&self, pool: &str, endpoint: &str, reason: &'static str) {
        self.probe_failures
            .with_label_values(&[pool, endpoint, reason])
            .inc();
    }

    /// Count a skipped probe round (`"in_flight"`) or a probe that waited
    /// for a free slot (`"busy"`).
    pub fn probe_skipped(&self, reason: &'static str) {
        self.probes_skipped.with_label_values(&[reason]).inc();
    }

    /// Count a config load or reload; a success also sets
    /// `steerdns_config_last_reload_success_timestamp_seconds` to now.
    pub fn reload_result(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.with_label_values(&[result]).inc();
        self.last_reload_ok.set(i64::from(ok));
        if ok {
            self.loaded_now();
        }
    }

    /// Record the config loaded at start: the load timestamp and the
    /// success flag (not a reload, so `steerdns_config_reloads_total` stays
    /// 0). Without it the timestamp read 0 (1970) until the first reload.
    pub fn initial_load(&self) {
        self.last_reload_ok.set(1);
        self.loaded_now();
    }

    fn loaded_now(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_reload_success.set(now.floor());
    }

    /// The text exposition (format 0.0.4) of every metric.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            warn!("encoding metrics: {e}");
        }
        String::from_utf8(buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }
}

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn index_tables_agree_with_the_label_tables() {
        for code in 0..=u16::MAX {
            let q = QTYPES
                .iter()
                .position(|&(t, _)| t == code)
                .unwrap_or(QTYPES.len());
            assert_eq!(qtype_index(code), q, "qtype {code}");
            let r = RCODES
                .iter()
                .position(|&(t, _)| t == code)
                .unwrap_or(RCODES.len());
            assert_eq!(rcode_index(code), r, "rcode {code}");
        }
    }

    #[test]
    fn duration_sampling_is_about_one_in_sixteen() {
        let q = QueryCounters::new();
        let n = 160_000;
        let sampled = (0..n).filter(|_| q.sample_duration()).count();
        let want = n / DURATION_SAMPLE_EVERY as usize;
        assert!(
            sampled > want * 9 / 10 && sampled < want * 11 / 10,
            "{sampled} of {n} sampled"
        );
        // No short period: every window of 1,024 queries has some samples.
        let hits: Vec<bool> = (0..65_536).map(|_| q.sample_duration()).collect();
        assert!(
            hits.chunks(1024)
                .all(|w| w.iter().filter(|&&h| h).count() >= 32)
        );
        assert!(DURATION_HELP.contains(&format!("1 in {DURATION_SAMPLE_EVERY} ")));
    }

    fn parse(text: &str) -> prometheus_parse::Scrape {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        prometheus_parse::Scrape::parse(lines).expect("exposition parses")
    }

    fn sample_value(s: &prometheus_parse::Sample) -> f64 {
        match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("unexpected value {other:?}"),
        }
    }

    fn find<'a>(
        scrape: &'a prometheus_parse::Scrape,
        metric: &str,
        labels: &[(&str, &str)],
    ) -> Option<&'a prometheus_parse::Sample> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
    }

    #[test]
    fn exposition_parses_and_has_bounded_labels() {
        let m = Metrics::with_version("1.2.3").unwrap();
        let q = m.queries();
        let zone = q.zone_slot("lb.example.com.");
        assert_eq!(q.zone_slot("lb.example.com."), zone, "slots are stable");
        let other = q.zone_slot("example.net.");
        assert_ne!(zone, other);
        let us = Duration::from_micros;
        q.record_query(zone, 1, 0, Transport::Udp, us(30));
        q.record_query(zone, 1, 0, Transport::Udp, us(70));
        q.record_query(zone, 28, 3, Transport::Tcp, us(2000));
        q.record_query(zone, 65000, 999, Transport::Udp, Duration::from_secs(5));
        q.record_query(NO_ZONE_SLOT, 1, 5, Transport::Udp, us(10));
        // An unknown slot counts nothing (and does not panic).
        q.record_query(1000, 1, 0, Transport::Udp, us(10));
        let a = m.answers().answer_slot("www.lb.example.com.", Some("eu"));
        let b = m.answers().answer_slot("www.lb.example.com.", Some("na"));
        let n = m.answers().answer_slot("www.lb.example.com.", None);
        m.answers().record_answer(a, AnswerMode::Normal);
        m.answers().record_answer(a, AnswerMode::Normal);
        m.answers().record_answer(b, AnswerMode::Fallback);
        m.answers().record_answer(b, AnswerMode::FailOpen);
        m.answers().record_answer(n, AnswerMode::Nodata);
        m.record_drop(DropReason::Malformed);
        m.record_geoip(GeoResult::Found);
        m.record_geoip(GeoResult::Override);
        m.set_endpoint_up("eu", "192.0.2.10", true);
        m.set_endpoint_up("eu", "192.0.2.11", false);
        m.set_pool_usable("eu", true);
        m.observe_probe("tcp", Duration::from_millis(3));
        m.probe_failed("eu", "192.0.2.11", "timeout");
        m.reload_result(true);
        m.reload_result(false);

        let text = m.render();
        let scrape = parse(&text);
        let get = |metric: &str, labels: &[(&str, &str)]| {
            find(&scrape, metric, labels)
                .map(sample_value)
                .unwrap_or_else(|| panic!("no {metric} {labels:?} in\n{text}"))
        };
        let qt = "steerdns_dns_queries_total";
        let base = [("zone", "lb.example.com."), ("transport", "udp")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            v
        };
        assert_eq!(get(qt, &with(&[("qtype", "A"), ("rcode", "NOERROR")])), 2.0);
        assert_eq!(
            get(qt, &with(&[("qtype", "other"), ("rcode", "other")])),
            1.0
        );
        assert_eq!(
            get(
                qt,
                &[
                    ("zone", "lb.example.com."),
                    ("qtype", "AAAA"),
                    ("rcode", "NXDOMAIN"),
                    ("transport", "tcp")
                ]
            ),
            1.0
        );
        assert_eq!(
            get(qt, &[("zone", NO_ZONE), ("rcode", "REFUSED")]),
            1.0,
            "refused queries count in the no-zone slot"
        );
        assert_eq!(q.zone_total(zone), 4);

        // The histogram: 30µs and 70µs land in the 50µs and 100µs buckets.
        let hist = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "steerdns_dns_response_duration_seconds"
                    && s.labels.get("transport") == Some("udp")
            })
            .expect("udp histogram");
        match &hist.value {
            prometheus_parse::Value::Histogram(buckets) => {
                let at = |le: f64| {
                    buckets
                        .iter()
                        .find(|b| (b.less_than - le).abs() < 1e-12)
                        .map(|b| b.count)
                };
                // The two 10µs queries (refused, and the unknown slot: its
                // duration still counts).
                assert_eq!(at(0.000_025), Some(2.0));
                assert_eq!(at(0.000_05), Some(3.0));
                assert_eq!(at(0.000_1), Some(4.0));
                assert_eq!(at(1.0), Some(4.0));
            }
            other => panic!("not a histogram: {other:?}"),
        }
        assert!(text.contains("steerdns_dns_response_duration_seconds_count{transport=\"udp\"} 5"));
        assert!(text.contains(
            "steerdns_dns_response_duration_seconds_bucket{transport=\"udp\",le=\"+Inf\"} 5"
        ));

        let at = "steerdns_balancer_answers_total";
        assert_eq!(get(at, &[("pool", "eu"), ("mode", "normal")]), 2.0);
        assert_eq!(get(at, &[("pool", "na"), ("mode", "fallback")]), 1.0);
        assert_eq!(get(at, &[("pool", "na"), ("mode", "fail_open")]), 1.0);
        assert_eq!(get(at, &[("pool", NO_ZONE), ("mode", "nodata")]), 1.0);
        assert_eq!(m.answers().count(a, AnswerMode::Normal), 2);
        assert_eq!(
            get("steerdns_dns_dropped_total", &[("reason", "malformed")]),
            1.0
        );
        assert_eq!(
            get("steerdns_dns_dropped_total", &[("reason", "rate_limited")]),
            0.0
        );
        assert_eq!(
            get("steerdns_geoip_lookups_total", &[("result", "override")]),
            1.0
        );
        assert_eq!(
            get(
                "steerdns_endpoint_up",
                &[("pool", "eu"), ("endpoint", "192.0.2.11")]
            ),
            0.0
        );
        assert_eq!(get("steerdns_pool_usable", &[("pool", "eu")]), 1.0);
        assert_eq!(
            get(
                "steerdns_probe_failures_total",
                &[("endpoint", "192.0.2.11"), ("reason", "timeout")]
            ),
            1.0
        );
        assert_eq!(
            get("steerdns_config_reloads_total", &[("result", "failure")]),
            1.0
        );
        assert!(get("steerdns_config_last_reload_success_timestamp_seconds", &[]) > 1e9);
        assert_eq!(get("steerdns_config_last_reload_successful", &[]), 0.0);
        assert_eq!(get("steerdns_build_info", &[("version", "1.2.3")]), 1.0);
        assert!(text.contains("# TYPE steerdns_probe_duration_seconds histogram"));

        // Every label value is one we configured or one of the fixed tables.
        let mut allowed: HashSet<&str> = [
            "lb.example.com.",
            "example.net.",
            NO_ZONE,
            "www.lb.example.com.",
            "eu",
            "na",
            "192.0.2.10",
            "192.0.2.11",
            "udp",
            "tcp",
            "other",
            "timeout",
            "success",
            "failure",
            "in_flight",
            "busy",
            "1.2.3",
        ]
        .into_iter()
        .collect();
        allowed.extend(QTYPES.iter().map(|x| x.1));
        allowed.extend(RCODES.iter().map(|x| x.1));
        allowed.extend(MODES);
        allowed.extend(DROP_REASONS);
        allowed.extend(GEO_RESULTS);
        for s in &scrape.samples {
            for (k, v) in s.labels.iter() {
                assert!(
                    allowed.contains(v.as_str()),
                    "label {k}={v:?} of {} is outside the configured values",
                    s.metric
                );
            }
        }
        // Every family has HELP and TYPE.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} lacks HELP"
            );
        }
    }

    #[test]
    fn removed_endpoints_lose_their_series() {
        let m = Metrics::new().unwrap();
        m.set_endpoint_up("eu", "a", true);
        m.set_endpoint_up("eu", "b", false);
        m.set_endpoint_up("old", "c", false);
        m.set_pool_usable("eu", true);
        m.set_pool_usable("old", false);
        m.retain_endpoints([("eu", "a")]);
        let text = m.render();
        assert!(text.contains("endpoint=\"a\""), "{text}");
        assert!(!text.contains("endpoint=\"b\""), "{text}");
        assert!(!text.contains("pool=\"old\""), "{text}");
    }

    #[test]
    fn counters_sum_across_threads() {
        let m = std::sync::Arc::new(Metrics::new().unwrap());
        let z = m.queries().zone_slot("example.com.");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        m.queries()
                            .record_query(z, 1, 0, Transport::Udp, Duration::from_micros(5));
                        m.record_drop(DropReason::Oversize);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.queries().zone_total(z), 80_000);
        let scrape = parse(&m.render());
        let s = find(
            &scrape,
            "steerdns_dns_dropped_total",
            &[("reason", "oversize")],
        )
        .unwrap();
        assert_eq!(sample_value(s), 80_000.0);
    }

    #[test]
    fn two_instances_are_independent() {
        let a = Metrics::new().unwrap();
        let b = Metrics::new().unwrap();
        a.record_drop(DropReason::Malformed);
        assert!(
            a.render()
                .contains("steerdns_dns_dropped_total{reason=\"malformed\"} 1")
        );
        assert!(
            b.render()
                .contains("steerdns_dns_dropped_total{reason=\"malformed\"} 0")
        );
    }
}
