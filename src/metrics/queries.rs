//! `steerdns_dns_queries_total` and `steerdns_dns_response_duration_seconds`:
//! the per-query counters, sharded and lock-free.

use std::cell::Cell;
use std::sync::Mutex;
use std::time::Duration;

use prometheus::core::Desc;
use prometheus::proto::{self, MetricFamily, MetricType};
use tracing::warn;

use super::family::{counter_metric, desc, family, label};
use super::labels::{
    N_QTYPE, N_RCODE, N_TRANSPORT, NO_ZONE, NO_ZONE_SLOT, QTYPES, RCODES, TRANSPORTS, Transport,
    qtype_index, rcode_index, transport_index,
};
use super::sharded::Sharded;
use super::slot_table::{SlotTable, lock};

const PER_ZONE: usize = N_QTYPE * N_RCODE * N_TRANSPORT;

/// Most zone slots (further zones share the [`NO_ZONE`] slot, with a warning).
pub(crate) const MAX_ZONE_SLOTS: usize = 1024;

/// Upper bounds (seconds) of the DNS response duration histogram.
const DURATION_BUCKETS: [f64; 14] = [
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

const QUERIES: &str = "steerdns_dns_queries_total";
const QUERIES_HELP: &str =
    "DNS queries answered, by zone, query type, response code and transport.";
const DURATION: &str = "steerdns_dns_response_duration_seconds";
pub(super) const DURATION_HELP: &str = "Time from a DNS query reaching the answer engine to its response being ready, by transport; measured on a random sample of 1 in 16 answered queries (count and sum cover the sampled queries only, steerdns_dns_queries_total counts all).";

/// One answered query in this many (at random) has its duration measured
/// for `steerdns_dns_response_duration_seconds`: two clock reads per query
/// cost more than the rest of the metrics together. Must match the help text.
pub(crate) const DURATION_SAMPLE_EVERY: u32 = 16;

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
    pub(super) descs: [Desc; 2],
}

impl QueryCounters {
    pub(super) fn new() -> Self {
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
    pub(crate) fn sample_duration(&self) -> bool {
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
    pub(crate) fn count_query(&self, zone_slot: u32, qtype: u16, rcode: u16, transport: Transport) {
        let idx = ((zone_slot as usize * N_QTYPE + qtype_index(qtype)) * N_RCODE
            + rcode_index(rcode))
            * N_TRANSPORT
            + transport_index(transport);
        self.counts.add(idx, 1);
    }

    /// Add one query's duration to the histogram (of a query chosen by
    /// [`sample_duration`](Self::sample_duration)).
    #[inline]
    pub(crate) fn observe_duration(&self, transport: Transport, duration: Duration) {
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

    pub(super) fn families(&self) -> Vec<MetricFamily> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn zone_slots_are_stable() {
        let q = QueryCounters::new();
        assert_eq!(q.zone_slot(NO_ZONE), NO_ZONE_SLOT);
        let a = q.zone_slot("a.example.");
        assert_eq!(q.zone_slot("a.example."), a);
        assert_ne!(a, NO_ZONE_SLOT);
        q.count_query(a, 1, 0, Transport::Tcp);
        assert_eq!(q.zone_total(a), 1);
        assert_eq!(q.zone_total(NO_ZONE_SLOT), 0);
    }

    #[test]
    fn durations_land_in_their_buckets() {
        let q = QueryCounters::new();
        q.observe_duration(Transport::Tcp, Duration::from_micros(40));
        q.observe_duration(Transport::Tcp, Duration::from_secs(3));
        let base = HIST_CELLS; // tcp
        assert_eq!(q.hist.sum(base + 1), 1, "40us is in the 50us bucket");
        assert_eq!(q.hist.sum(base + DURATION_BUCKETS.len()), 1, "+Inf");
        assert_eq!(q.hist.sum(base + HIST_CELLS - 1), 3_000_040_000);
        assert_eq!(q.hist.sum(1), 0, "udp untouched");
    }
}
