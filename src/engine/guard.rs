//! What the handler does around the answer engine to protect the listeners:
//! response rate limiting (the pure [`crate::rrl`] table), DNS Cookies'
//! part in it, and their metrics.

use prometheus::{IntCounter, IntCounterVec, Opts};
use tracing::{info, warn};

use super::answer::{self, Client, CookieState};
use crate::metrics::Metrics;
use crate::rrl::{self, Class, Limits, Table, Verdict};
use crate::snapshot::Snapshot;

/// Counters of the protections, registered next to the other metrics.
pub(crate) struct GuardMetrics {
    /// Rate-limited responses sent truncated (TC=1) or as BADCOOKIE.
    pub(crate) rrl_slipped: IntCounter,
    /// Queries with a DNS Cookie: valid server cookie, client cookie only
    /// (or one we do not accept), and BADCOOKIE answers sent.
    cookies: [IntCounter; 3],
}

impl GuardMetrics {
    /// Register in `metrics`' registry (a second registration, as when two
    /// servers share one registry, keeps working counters, just unexported).
    pub(crate) fn new(metrics: &Metrics) -> GuardMetrics {
        let rrl_slipped = IntCounter::new(
            "steerdns_dns_rrl_slipped_total",
            "Responses over the rate limit sent truncated (TC=1) instead of dropped (RRL slip).",
        )
        .expect("valid metric");
        if let Err(e) = metrics.registry().register(Box::new(rrl_slipped.clone())) {
            info!(error = %e, "rrl metrics not registered");
        }
        let cookies = IntCounterVec::new(
            Opts::new(
                "steerdns_dns_cookies_total",
                "Queries with a DNS Cookie, by result: valid (server cookie accepted), client_only (none or not accepted; a new one is sent), badcookie (answered BADCOOKIE while rate limited).",
            ),
            &["result"],
        )
        .expect("valid metric");
        if let Err(e) = metrics.registry().register(Box::new(cookies.clone())) {
            info!(error = %e, "cookie metrics not registered");
        }
        // Children resolved once: counting is one atomic add, no lookup.
        let cookies =
            ["valid", "client_only", "badcookie"].map(|r| cookies.with_label_values(&[r]));
        GuardMetrics {
            rrl_slipped,
            cookies,
        }
    }

    /// Count a query's cookie (nothing when it had none).
    pub(crate) fn count_cookie(&self, c: Option<CookieState>) {
        match c {
            Some(CookieState::Valid) => self.cookies[0].inc(),
            Some(CookieState::ClientOnly) => self.cookies[1].inc(),
            None => {}
        }
    }
}

/// Charge a UDP response to its client's bucket; `Drop` means send nothing.
/// A `Slip` has already turned `out` into a truncated answer, or, for a
/// client that sent a DNS Cookie, into BADCOOKIE with a fresh server cookie
/// (its retry with that cookie is then exempt).
pub(crate) fn rate_limit(
    table: &Table,
    limits: &Limits,
    (snap, query, client): (&Snapshot, &[u8], Client),
    rcode: u16,
    now_ms: u64,
    out: &mut Vec<u8>,
    m: &GuardMetrics,
) -> Verdict {
    let ip = client.addr.ip();
    let c = table.charge(limits, ip, Class::of_rcode(rcode), now_ms);
    if let Some(n) = c.report {
        warn!(
            client = %ip,
            limited = n,
            "response rate limiting: responses dropped or truncated since the last report"
        );
    }
    if c.verdict == Verdict::Slip {
        if answer::answer_badcookie(snap, query, client, out) {
            m.cookies[2].inc();
        } else {
            truncate(out);
        }
        m.rrl_slipped.inc();
    }
    c.verdict
}

/// Turn a response into an empty truncated one: header (TC=1, counts zero)
/// and the question, nothing else.
pub(crate) fn truncate(out: &mut Vec<u8>) {
    if out.len() < 12 {
        return;
    }
    let qd = u16::from_be_bytes([out[4], out[5]]);
    let mut end = 12;
    if qd == 1 {
        let mut i = 12;
        while let Some(&l) = out.get(i) {
            if l == 0 || l & 0xC0 != 0 {
                break;
            }
            i += 1 + l as usize;
        }
        if out.get(i) == Some(&0) && i + 5 <= out.len() {
            end = i + 5;
        }
    }
    out.truncate(end);
    out[2] |= 0x02;
    out[5] = u8::from(end > 12);
    out[4] = 0;
    out[6..12].fill(0);
}

/// The table for `limits`, made on first use (its size is fixed then; a
/// reload changes the limits, a restart the size).
pub(crate) fn table<'t>(cell: &'t std::sync::OnceLock<Table>, limits: &Limits) -> &'t Table {
    cell.get_or_init(|| Table::new(limits.table_size))
}

pub(crate) use rrl::Verdict as RrlVerdict;
