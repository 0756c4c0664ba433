//! Drops and GeoIP lookups (two small sharded counter sets), and the
//! collector that sums every sharded counter at scrape time.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{MetricFamily, MetricType};

use super::answers::BalancerCounters;
use super::family::{counter_metric, desc, family, label};
use super::queries::QueryCounters;
use super::sharded::Sharded;

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

pub(super) const DROP_REASONS: [&str; 4] =
    ["malformed", "oversize", "rate_limited", "connection_limit"];

impl DropReason {
    pub(super) fn index(self) -> usize {
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

pub(super) const GEO_RESULTS: [&str; 3] = ["found", "not_found", "override"];

impl GeoResult {
    pub(super) fn index(self) -> usize {
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
pub(super) struct HotCollector {
    queries: Arc<QueryCounters>,
    answers: Arc<BalancerCounters>,
    small: Arc<Sharded>,
    descs: Vec<Desc>,
}

/// Index of the first geoip counter in `small` (drops come first).
pub(super) const GEO_BASE: usize = DROP_REASONS.len();

/// Counters in the `small` set: drops, then geoip lookups.
pub(super) const SMALL_LEN: usize = GEO_BASE + GEO_RESULTS.len();

impl HotCollector {
    pub(super) fn new(
        queries: Arc<QueryCounters>,
        answers: Arc<BalancerCounters>,
        small: Arc<Sharded>,
    ) -> Self {
        HotCollector {
            queries,
            answers,
            small,
            descs: vec![
                desc(DROPPED, DROPPED_HELP, &["reason"]),
                desc(GEOIP, GEOIP_HELP, &["result"]),
            ],
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    #[test]
    fn label_tables_match_the_enums() {
        for (r, name) in [
            (DropReason::Malformed, "malformed"),
            (DropReason::Oversize, "oversize"),
            (DropReason::RateLimited, "rate_limited"),
            (DropReason::ConnectionLimit, "connection_limit"),
        ] {
            assert_eq!(DROP_REASONS[r.index()], name);
        }
        for (g, name) in [
            (GeoResult::Found, "found"),
            (GeoResult::NotFound, "not_found"),
            (GeoResult::Override, "override"),
        ] {
            assert_eq!(GEO_RESULTS[g.index()], name);
        }
    }

    #[test]
    fn collects_drops_and_lookups_apart() {
        let small = Arc::new(Sharded::new(SMALL_LEN));
        small.ensure(SMALL_LEN);
        small.add(DropReason::Oversize.index(), 3);
        small.add(GEO_BASE + GeoResult::Override.index(), 2);
        let c = HotCollector::new(
            Arc::new(QueryCounters::new()),
            Arc::new(BalancerCounters::new()),
            small,
        );
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&c.collect(), &mut buf)
            .unwrap();
        let text = String::from_utf8(buf).unwrap();
        for line in [
            "steerdns_dns_dropped_total{reason=\"oversize\"} 3",
            "steerdns_dns_dropped_total{reason=\"malformed\"} 0",
            "steerdns_geoip_lookups_total{result=\"override\"} 2",
            "steerdns_geoip_lookups_total{result=\"found\"} 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert_eq!(c.desc().len(), 5);
    }
}
