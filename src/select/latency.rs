//! `policy = "latency"`: pools in the order of this node's smoothed probe
//! round-trip time, chosen off the hot path.
//!
//! Every order of the pools is precomputed (at most [`MAX_POOLS`] pools, so
//! at most 720 orders); the background task that smooths RTTs stores the
//! index of the current order in one atomic, and a query reads it with one
//! relaxed load and borrows the list — no lock, no allocation. Index 0 is
//! the configured order (what unknown RTTs fall back to).

use std::sync::atomic::{AtomicU32, Ordering};

use super::PoolId;

/// Most pools a latency-steered name may list.
pub const MAX_POOLS: usize = 6;

/// The compiled latency policy of one balanced name.
#[derive(Debug)]
pub struct LatencyPolicy {
    /// Pools in configured order.
    pub pools: Box<[PoolId]>,
    /// Every permutation of `pools`; `orders[0]` is `pools`.
    orders: Box<[Box<[PoolId]>]>,
    current: AtomicU32,
    /// Switch only when the other pool is faster by this many ms...
    pub margin_ms: f64,
    /// ...and by this fraction (0.1 = 10 %).
    pub margin_frac: f64,
}

impl LatencyPolicy {
    /// Compile for `pools` (at most [`MAX_POOLS`], checked by the caller).
    pub fn new(pools: Box<[PoolId]>, margin_ms: f64, margin_frac: f64) -> Self {
        let mut orders = Vec::new();
        permutations(&pools, &mut Vec::new(), &mut orders);
        LatencyPolicy {
            pools,
            orders: orders.into_boxed_slice(),
            current: AtomicU32::new(0),
            margin_ms,
            margin_frac,
        }
    }

    /// The pool order answers use now.
    #[inline]
    pub fn current(&self) -> &[PoolId] {
        let i = self.current.load(Ordering::Relaxed) as usize;
        self.orders.get(i).unwrap_or(&self.orders[0])
    }

    /// Make `order` (a permutation of the pools) the current one; false
    /// when it is not one.
    pub fn set_current(&self, order: &[PoolId]) -> bool {
        match self.orders.iter().position(|o| **o == *order) {
            Some(i) => {
                self.current.store(i as u32, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

fn permutations(rest: &[PoolId], prefix: &mut Vec<PoolId>, out: &mut Vec<Box<[PoolId]>>) {
    if rest.is_empty() {
        out.push(prefix.clone().into_boxed_slice());
        return;
    }
    for i in 0..rest.len() {
        prefix.push(rest[i]);
        let mut r = rest.to_vec();
        r.remove(i);
        permutations(&r, prefix, out);
        prefix.pop();
    }
}

/// Whether a pool at `rtt_ms` beats one at `than_ms` by the margins: by at
/// least `margin_ms` AND by at least `margin_frac` of `than_ms`.
pub fn better_by_margin(rtt_ms: f64, than_ms: f64, margin_ms: f64, margin_frac: f64) -> bool {
    let gain = than_ms - rtt_ms;
    gain > 0.0 && gain >= margin_ms && gain >= margin_frac * than_ms
}

/// The next order from the `current` one and each pool's smoothed RTT
/// (`rtt(pool)`, `None` when unknown). Pure and deterministic.
///
/// Pools with a known RTT come first, pools without keep the configured
/// order at the end (all unknown: the configured order). Among the known
/// ones, two neighbours swap only when the later one is faster by both
/// margins; repeated until no swap is left (each swap puts a strictly
/// faster pool first, so this ends). Pools closer than the margins keep
/// their current order, so answers do not flap.
pub fn reorder(
    configured: &[PoolId],
    current: &[PoolId],
    rtt: impl Fn(PoolId) -> Option<f64>,
    margin_ms: f64,
    margin_frac: f64,
) -> Vec<PoolId> {
    let mut known: Vec<(PoolId, f64)> = current
        .iter()
        .filter_map(|&p| rtt(p).map(|r| (p, r)))
        .collect();
    let unknown = configured.iter().copied().filter(|&p| rtt(p).is_none());
    // A pool whose RTT just became known enters in configured position
    // among the known ones only through swaps, from the end of the list.
    for _ in 0..=known.len() * known.len() {
        let mut swapped = false;
        for i in 1..known.len() {
            if better_by_margin(known[i].1, known[i - 1].1, margin_ms, margin_frac) {
                known.swap(i, i - 1);
                swapped = true;
            }
        }
        if !swapped {
            break;
        }
    }
    known.into_iter().map(|(p, _)| p).chain(unknown).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(current: &[u32], rtts: &[(u32, f64)], ms: f64, pct: f64) -> Vec<u32> {
        let configured = [0, 1, 2];
        reorder(
            &configured,
            current,
            |p| rtts.iter().find(|(q, _)| *q == p).map(|(_, r)| *r),
            ms,
            pct,
        )
    }

    #[test]
    fn unknown_rtt_keeps_the_configured_order() {
        assert_eq!(run(&[0, 1, 2], &[], 5.0, 0.1), vec![0, 1, 2]);
        // known ones first, unknown in configured order after them
        assert_eq!(run(&[0, 1, 2], &[(2, 10.0)], 5.0, 0.1), vec![2, 0, 1]);
    }

    #[test]
    fn switches_only_beyond_both_margins() {
        // 1 is faster by 30 ms (60 %): switch.
        assert_eq!(
            run(&[0, 1, 2], &[(0, 50.0), (1, 20.0), (2, 90.0)], 10.0, 0.2),
            vec![1, 0, 2]
        );
        // by 8 ms only: no switch (ms margin 10).
        assert_eq!(
            run(&[0, 1, 2], &[(0, 50.0), (1, 42.0), (2, 90.0)], 10.0, 0.0),
            vec![0, 1, 2]
        );
        // by 12 ms but 6 % of 200: no switch (pct margin 10 %).
        assert_eq!(
            run(&[0, 1, 2], &[(0, 200.0), (1, 188.0), (2, 300.0)], 10.0, 0.1),
            vec![0, 1, 2]
        );
        // the current order sticks: 0 is now slower by a little only
        assert_eq!(
            run(&[1, 0, 2], &[(0, 18.0), (1, 20.0), (2, 90.0)], 10.0, 0.2),
            vec![1, 0, 2]
        );
    }

    #[test]
    fn property_no_flap_within_margin_and_deterministic() {
        // For every RTT triple on a grid and every current order: the
        // result is a permutation, equal inputs give equal results, and a
        // pool only moves ahead of another that it beats by the margins.
        let grid = [5.0, 10.0, 14.0, 30.0, 31.0, 100.0];
        let orders: Vec<Vec<u32>> = {
            let mut o = Vec::new();
            permutations(&[0, 1, 2], &mut Vec::new(), &mut o);
            o.into_iter().map(|b| b.to_vec()).collect()
        };
        for &a in &grid {
            for &b in &grid {
                for &c in &grid {
                    let rtts = [(0, a), (1, b), (2, c)];
                    for cur in &orders {
                        let out = run(cur, &rtts, 5.0, 0.1);
                        assert_eq!(out, run(cur, &rtts, 5.0, 0.1));
                        let mut sorted = out.clone();
                        sorted.sort_unstable();
                        assert_eq!(sorted, vec![0, 1, 2]);
                        let pos = |v: &[u32], p: u32| v.iter().position(|&x| x == p).unwrap();
                        let r = |p: u32| rtts[p as usize].1;
                        for x in 0..3u32 {
                            for y in 0..3u32 {
                                if pos(cur, x) < pos(cur, y) && pos(&out, y) < pos(&out, x) {
                                    // y overtook x: y must be faster than x
                                    assert!(r(y) < r(x), "{cur:?} {rtts:?} -> {out:?}");
                                }
                            }
                        }
                        // stable: applying again changes nothing
                        assert_eq!(run(&out, &rtts, 5.0, 0.1), out);
                    }
                }
            }
        }
    }

    #[test]
    fn current_order_is_one_atomic_index() {
        let l = LatencyPolicy::new(vec![3, 5, 7].into(), 5.0, 0.1);
        assert_eq!(l.current(), &[3, 5, 7]);
        assert!(l.set_current(&[7, 3, 5]));
        assert_eq!(l.current(), &[7, 3, 5]);
        assert!(!l.set_current(&[7, 7, 5]));
        assert_eq!(l.orders.len(), 6);
    }
}
