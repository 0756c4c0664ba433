//! Response rate limiting (RRL) as Knot, NSD and BIND define it: a token
//! bucket per client network (IPv4 /24, IPv6 /56 by default) and response
//! class (answers, NXDOMAIN, errors), refilled at the configured responses
//! per second; a response over the limit is dropped, except every `slip`-th
//! one, which goes out truncated (TC=1) so a real client behind a spoofed
//! prefix can retry over TCP.
//!
//! Pure: no sockets, no clock of its own (the caller passes milliseconds of
//! a monotonic clock), so tests drive it deterministically. The table has a
//! fixed number of slots, allocated once: a spoofed flood from random
//! sources only recycles slots, it cannot grow memory. Each slot is one
//! `AtomicU64` updated with compare-and-swap, so UDP worker threads share
//! one table without locks and without allocating.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::IpNet;

/// Which bucket a response is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Positive answers, NODATA and referrals.
    Response,
    /// NXDOMAIN.
    NxDomain,
    /// Every other RCODE (REFUSED, FORMERR, SERVFAIL, NOTIMP...).
    Error,
}

impl Class {
    /// The class of a response with this RCODE.
    pub fn of_rcode(rcode: u16) -> Class {
        match rcode {
            0 => Class::Response,
            3 => Class::NxDomain,
            _ => Class::Error,
        }
    }
}

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit (or exempt): send it.
    Send,
    /// Over the limit, and this one slips: send it truncated (TC=1, no
    /// records), so a real client retries over TCP.
    Slip,
    /// Over the limit: send nothing.
    Drop,
}

/// The limits, compiled from `[rrl]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Responses per second per network for [`Class::Response`].
    pub responses_per_second: u32,
    /// Per second for [`Class::NxDomain`].
    pub nxdomains_per_second: u32,
    /// Per second for [`Class::Error`].
    pub errors_per_second: u32,
    /// Every `slip`-th limited response is sent truncated; 0 never, 1 always.
    pub slip: u8,
    /// IPv4 clients are grouped by this prefix length.
    pub ipv4_prefix: u8,
    /// IPv6 clients are grouped by this prefix length.
    pub ipv6_prefix: u8,
    /// Networks never limited.
    pub exempt: Vec<IpNet>,
    /// Slots in the table (a power of two).
    pub table_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            responses_per_second: 200,
            nxdomains_per_second: 200,
            errors_per_second: 200,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: Vec::new(),
            table_size: DEFAULT_TABLE_SIZE,
        }
    }
}

/// Default number of slots: 2^16 × 8 bytes = 512 KiB.
pub const DEFAULT_TABLE_SIZE: usize = 1 << 16;
/// Highest rate a bucket can hold (16 bits of tokens).
pub const MAX_RATE: u32 = 0xFFFF;
/// Highest slip (4 bits of counter; BIND allows up to 10).
pub const MAX_SLIP: u8 = 10;

impl Limits {
    fn rate(&self, class: Class) -> u32 {
        match class {
            Class::Response => self.responses_per_second,
            Class::NxDomain => self.nxdomains_per_second,
            Class::Error => self.errors_per_second,
        }
    }

    /// The network a client is counted in (IPv4-mapped IPv6 counts as IPv4).
    fn network(&self, ip: IpAddr) -> (u128, bool) {
        match canonical(ip) {
            IpAddr::V4(a) => {
                let p = self.ipv4_prefix.min(32) as u32;
                let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                ((u32::from(a) & m) as u128, false)
            }
            IpAddr::V6(a) => {
                let p = self.ipv6_prefix.min(128) as u32;
                let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                (u128::from(a) & m, true)
            }
        }
    }

    /// Whether `ip` is in an exempt network.
    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.exempt.iter().any(|n| n.contains(&ip))
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

// Slot layout (one u64): tag 16 | tokens 16 | slip counter 4 | stamp 28.
// The stamp is milliseconds modulo 2^28 (about 74 hours); a bucket idle for
// exactly a multiple of that looks recent, which at worst limits one client
// for one second once in days. Tag 0 marks an empty slot.
const STAMP_BITS: u32 = 28;
const STAMP_MASK: u64 = (1 << STAMP_BITS) - 1;

#[derive(Clone, Copy)]
struct Bucket {
    tag: u16,
    tokens: u16,
    slip: u8,
    stamp: u32,
}

impl Bucket {
    fn unpack(v: u64) -> Bucket {
        Bucket {
            tag: (v >> 48) as u16,
            tokens: (v >> 32) as u16,
            slip: ((v >> 28) & 0xF) as u8,
            stamp: (v & STAMP_MASK) as u32,
        }
    }
    fn pack(self) -> u64 {
        (u64::from(self.tag) << 48)
            | (u64::from(self.tokens) << 32)
            | (u64::from(self.slip & 0xF) << 28)
            | (u64::from(self.stamp) & STAMP_MASK)
    }
    fn age(self, now: u32) -> u32 {
        (now.wrapping_sub(self.stamp)) & STAMP_MASK as u32
    }
}

/// The shared bucket table.
pub struct Table {
    slots: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
    /// Limited responses since the last log line, and that line's second.
    limited_since_log: AtomicU64,
    last_log_second: AtomicU64,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("rrl::Table")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// The result of charging one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// What to do with the response.
    pub verdict: Verdict,
    /// Set at most once per second when responses are being limited: the
    /// number limited since the last such report (for a sampled log line).
    pub report: Option<u64>,
}

const SEND: Charge = Charge {
    verdict: Verdict::Send,
    report: None,
};

impl Table {
    /// A table of `slots` buckets (rounded up to a power of two, at least 2).
    /// Slot positions are keyed by a random hash key, so an attacker cannot
    /// aim at a victim's slot.
    pub fn new(slots: usize) -> Table {
        let n = slots.clamp(2, 1 << 26).next_power_of_two();
        Table {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            limited_since_log: AtomicU64::new(0),
            last_log_second: AtomicU64::new(0),
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false (a table has at least two slots).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Charge one response of `class` to `client` at `now_ms` (monotonic
    /// milliseconds). No allocation, no lock.
    pub fn charge(&self, limits: &Limits, client: IpAddr, class: Class, now_ms: u64) -> Charge {
        let rate = limits.rate(class).min(MAX_RATE);
        if rate == 0 || limits.is_exempt(client) {
            return SEND;
        }
        let (net, v6) = limits.network(client);
        let h = self.hasher.hash_one((net, v6, class as u8));
        let tag = ((h >> 48) as u16).max(1);
        // Two candidate slots (2-way): a new network takes the older one, so
        // a busy network's bucket survives a flood of one-off sources longer.
        let a = (h as usize) & (self.slots.len() - 1);
        let b = a ^ 1;
        let now = (now_ms & STAMP_MASK) as u32;
        let cap = rate;
        for _ in 0..16 {
            let (va, vb) = (
                self.slots[a].load(Ordering::Relaxed),
                self.slots[b].load(Ordering::Relaxed),
            );
            let (ba, bb) = (Bucket::unpack(va), Bucket::unpack(vb));
            let (slot, old, bucket) = if ba.tag == tag {
                (a, va, ba)
            } else if bb.tag == tag {
                (b, vb, bb)
            } else {
                let (slot, old) = if ba.age(now) >= bb.age(now) || ba.tag == 0 {
                    (a, va)
                } else {
                    (b, vb)
                };
                let fresh = Bucket {
                    tag,
                    tokens: cap as u16,
                    slip: 0,
                    stamp: now,
                };
                (slot, old, fresh)
            };
            let (new, verdict) = step(bucket, now, rate, cap, limits.slip);
            if self.slots[slot]
                .compare_exchange_weak(old, new.pack(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                if verdict == Verdict::Send {
                    return SEND;
                }
                return Charge {
                    verdict,
                    report: self.note_limited(now_ms),
                };
            }
        }
        // Heavy contention on one slot: fail open rather than spin.
        SEND
    }

    fn note_limited(&self, now_ms: u64) -> Option<u64> {
        let n = self.limited_since_log.fetch_add(1, Ordering::Relaxed) + 1;
        let sec = now_ms / 1000 + 1;
        let last = self.last_log_second.load(Ordering::Relaxed);
        if sec > last
            && self
                .last_log_second
                .compare_exchange(last, sec, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.limited_since_log.fetch_sub(n, Ordering::Relaxed);
            return Some(n);
        }
        None
    }
}

/// Refill `b` for the time since its stamp and take one token.
fn step(mut b: Bucket, now: u32, rate: u32, cap: u32, slip: u8) -> (Bucket, Verdict) {
    let age = u64::from(b.age(now));
    let add = age * u64::from(rate) / 1000;
    let tokens = u64::from(b.tokens) + add;
    if tokens >= u64::from(cap) {
        b.tokens = cap as u16;
        b.stamp = now;
    } else if add > 0 {
        b.tokens = tokens as u16;
        // Keep the fraction of a token already earned: advance the stamp
        // only by the time the whole tokens took.
        let used = (add * 1000).div_ceil(u64::from(rate)).min(age);
        b.stamp = (b.stamp.wrapping_add(used as u32)) & STAMP_MASK as u32;
    }
    if b.tokens > 0 {
        b.tokens -= 1;
        return (b, Verdict::Send);
    }
    if slip == 0 {
        return (b, Verdict::Drop);
    }
    b.slip += 1;
    if b.slip >= slip {
        b.slip = 0;
        (b, Verdict::Slip)
    } else {
        (b, Verdict::Drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u32, slip: u8) -> Limits {
        Limits {
            responses_per_second: rate,
            nxdomains_per_second: rate / 2,
            errors_per_second: rate / 4,
            slip,
            table_size: 1024,
            ..Limits::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[derive(Default, Debug)]
    struct Count {
        send: u64,
        slip: u64,
        drop: u64,
    }

    /// Offer `qps` responses per second from `from` for `secs` seconds,
    /// evenly spaced, and count the verdicts.
    fn flood(t: &Table, l: &Limits, from: &dyn Fn(u64) -> IpAddr, qps: u64, secs: u64) -> Count {
        let mut c = Count::default();
        let n = qps * secs;
        for i in 0..n {
            let now = 10_000 + i * 1000 / qps;
            match t.charge(l, from(i), Class::Response, now).verdict {
                Verdict::Send => c.send += 1,
                Verdict::Slip => c.slip += 1,
                Verdict::Drop => c.drop += 1,
            }
        }
        c
    }

    #[test]
    fn flood_from_one_prefix_at_20x_is_held_to_rate_plus_slip() {
        let rate = 100;
        for slip in [0u8, 1, 2, 3] {
            let l = limits(rate, slip);
            let t = Table::new(l.table_size);
            let secs = 10;
            // 20x the rate, from every address of 198.51.100.0/24.
            let c = flood(
                &t,
                &l,
                &|i| IpAddr::from([198, 51, 100, (i % 256) as u8]),
                20 * u64::from(rate),
                secs,
            );
            let offered = 20 * u64::from(rate) * secs;
            assert_eq!(c.send + c.slip + c.drop, offered);
            // A full bucket at the start, then the rate.
            let max_full = u64::from(rate) * (secs + 1);
            assert!(c.send <= max_full, "slip {slip}: {c:?}");
            assert!(c.send >= u64::from(rate) * secs, "slip {slip}: {c:?}");
            let limited = offered - c.send;
            let want_slip = match slip {
                0 => 0,
                s => limited / u64::from(s),
            };
            assert_eq!(c.slip, want_slip, "slip {slip}: {c:?}");
        }
    }

    #[test]
    fn another_prefix_sees_no_loss_during_a_flood() {
        let l = limits(50, 2);
        let t = Table::new(l.table_size);
        let (mut victim_sent, mut other_sent) = (0, 0);
        // 20x from 192.0.2.0/24; a well-behaved client in 203.0.113.0/24 at
        // half the rate, interleaved.
        for i in 0..20_000u64 {
            let now = i; // 1000 per second
            if t.charge(
                &l,
                IpAddr::from([192, 0, 2, (i % 200) as u8]),
                Class::Response,
                now,
            )
            .verdict
                == Verdict::Send
            {
                victim_sent += 1;
            }
            if i % 40 == 0 {
                assert_eq!(
                    t.charge(&l, ip("203.0.113.9"), Class::Response, now)
                        .verdict,
                    Verdict::Send,
                    "other prefix limited at {i}"
                );
                other_sent += 1;
            }
        }
        assert_eq!(other_sent, 500);
        assert!(victim_sent <= 50 * 21, "{victim_sent}");
    }

    #[test]
    fn classes_have_their_own_buckets_and_rates() {
        let l = limits(40, 0);
        let t = Table::new(64);
        let c = ip("192.0.2.1");
        let count = |class| {
            (0..100)
                .filter(|_| t.charge(&l, c, class, 5_000).verdict == Verdict::Send)
                .count()
        };
        assert_eq!(count(Class::Response), 40);
        assert_eq!(count(Class::NxDomain), 20);
        assert_eq!(count(Class::Error), 10);
        assert_eq!(Class::of_rcode(0), Class::Response);
        assert_eq!(Class::of_rcode(3), Class::NxDomain);
        assert_eq!(Class::of_rcode(5), Class::Error);
    }

    #[test]
    fn prefixes_group_clients_and_exempt_networks_pass() {
        let mut l = limits(10, 0);
        l.exempt = vec![
            "192.0.2.128/25".parse().unwrap(),
            "2001:db8:1::/48".parse().unwrap(),
        ];
        let t = Table::new(256);
        let sent = |addr: &str| {
            (0..30)
                .filter(|_| t.charge(&l, ip(addr), Class::Response, 1_000).verdict == Verdict::Send)
                .count()
        };
        assert_eq!(sent("192.0.2.1"), 10);
        assert_eq!(sent("192.0.2.2"), 0, "same /24, same bucket");
        assert_eq!(
            sent("::ffff:192.0.2.3"),
            0,
            "mapped IPv4 is the same client"
        );
        assert_eq!(sent("192.0.3.1"), 10, "next /24");
        assert_eq!(sent("192.0.2.200"), 30, "exempt");
        assert_eq!(sent("2001:db8:0:ff00::1"), 10);
        assert_eq!(sent("2001:db8:0:ff01::1"), 0, "same /56");
        assert_eq!(sent("2001:db8:0:fe00::1"), 10, "other /56");
        assert_eq!(sent("2001:db8:1::5"), 30, "exempt v6");
        // Refilled at the rate: after 300 ms, 3 more.
        let later = (0..10)
            .filter(|_| {
                t.charge(&l, ip("192.0.2.9"), Class::Response, 1_300)
                    .verdict
                    == Verdict::Send
            })
            .count();
        assert_eq!(later, 3);
    }

    #[test]
    fn fractional_refill_is_not_lost() {
        // 3 per second, one query every 100 ms for 10 s: 3 per second pass
        // (not fewer from rounding), plus the initial bucket.
        let l = limits(3, 0);
        let t = Table::new(64);
        let sent = (0..100u64)
            .filter(|i| {
                t.charge(&l, ip("192.0.2.1"), Class::Response, 50_000 + i * 100)
                    .verdict
                    == Verdict::Send
            })
            .count();
        assert!((32..=34).contains(&sent), "{sent}");
    }

    #[test]
    fn random_source_flood_stays_in_the_fixed_table() {
        // A spoofed flood from a million random /24s: the table does not
        // grow (it cannot), every new source gets a fresh bucket, and a
        // steady client keeps being answered.
        let l = limits(20, 2);
        let t = Table::new(4096);
        let slots = t.len();
        let mut x = 0x1234_5678u32;
        let mut steady_ok = 0;
        for i in 0..1_000_000u64 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let now = i / 100; // 100k per second
            assert_eq!(
                t.charge(&l, IpAddr::from(x.to_be_bytes()), Class::Response, now)
                    .verdict,
                Verdict::Send
            );
            if i % 10_000 == 0
                && t.charge(&l, ip("203.0.113.1"), Class::Response, now)
                    .verdict
                    == Verdict::Send
            {
                steady_ok += 1;
            }
        }
        assert_eq!(t.len(), slots);
        assert_eq!(steady_ok, 100);
    }

    #[test]
    fn log_reports_are_sampled_once_per_second() {
        let l = limits(1, 0);
        let t = Table::new(64);
        let mut reports = Vec::new();
        let mut limited = 0;
        let mut limited_at_last_report = 0;
        for i in 0..3000u64 {
            let c = t.charge(&l, ip("192.0.2.1"), Class::Response, i);
            if c.verdict != Verdict::Send {
                limited += 1;
            }
            if let Some(n) = c.report {
                reports.push((i, n));
                limited_at_last_report = limited;
            }
        }
        // One report in each second that had limiting, and together they
        // count every limited response up to the last one.
        assert_eq!(reports.len(), 3, "{reports:?}");
        assert!(reports.windows(2).all(|w| w[1].0 / 1000 > w[0].0 / 1000));
        let total: u64 = reports.iter().map(|r| r.1).sum();
        assert_eq!(total, limited_at_last_report, "{reports:?}");
    }

    #[test]
    fn threads_share_one_table() {
        let l = limits(1000, 0);
        let t = Table::new(64);
        let sent = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..5000 {
                        if t.charge(&l, ip("192.0.2.1"), Class::Response, 7_000)
                            .verdict
                            == Verdict::Send
                        {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        // One bucket of 1000 at one instant, whatever the interleaving
        // (CAS failures retry; after 16 a charge fails open, so allow a few).
        let n = sent.load(Ordering::Relaxed);
        assert!((1000..1100).contains(&n), "{n}");
    }
}
