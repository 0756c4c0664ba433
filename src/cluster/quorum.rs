//! Combining verdicts: this node's, its peers' and the operator's admin
//! state → what answers use. Pure: no I/O, no clock, no order dependence.
//!
//! Rules, per endpoint:
//! - admin `drain`: drained (no new answers, failing open included); the
//!   verdict below is still computed and shown; `force-up` / `force-down`
//!   replace the verdict.
//! - `quorum = "local"`: this node's own verdict.
//! - otherwise the *voters* are the known verdicts (up or down) of this
//!   node and of every fresh peer with the same monitor fingerprint; stale,
//!   unreachable, not-yet-probed and mismatched peers do not vote.
//!   `majority`: down when more than half of the voters say down;
//!   `N`: down when at least `min(N, voters)` say down.
//! - no fresh peer at all while peers are configured: this node is
//!   *isolated* and uses its own verdict (reported as such).
//!
//! The own vote is one vote among the others, so nodes that see the same
//! set of verdicts reach the same state.

use crate::config::cluster::QuorumConfig;

/// A known verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vote {
    /// Probes pass.
    Up,
    /// Probes fail.
    Down,
}

/// What one peer contributes for one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerVote {
    /// A fresh, comparable verdict.
    Fresh(Vote),
    /// The peer is fresh but has no verdict yet (not probed, unknown key).
    Unknown,
    /// The peer (or its verdict) is too old, or unreachable.
    Stale,
    /// The peer probes with other monitor settings.
    Mismatch,
}

/// The operator's state of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Admin {
    /// Health decides.
    #[default]
    Auto,
    /// No new answers; still probed; not an alert.
    Drain,
    /// Answered as up whatever the probes say.
    ForceUp,
    /// Answered as down whatever the probes say.
    ForceDown,
}

impl Admin {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Admin::Auto => "auto",
            Admin::Drain => "drain",
            Admin::ForceUp => "force-up",
            Admin::ForceDown => "force-down",
        }
    }

    /// Parse the API's name.
    pub fn parse(s: &str) -> Option<Admin> {
        Some(match s {
            "auto" => Admin::Auto,
            "drain" => Admin::Drain,
            "force-up" => Admin::ForceUp,
            "force-down" => Admin::ForceDown,
            _ => return None,
        })
    }

    /// A small code for the wire and the state file.
    pub fn code(self) -> u8 {
        match self {
            Admin::Auto => 0,
            Admin::Drain => 1,
            Admin::ForceUp => 2,
            Admin::ForceDown => 3,
        }
    }

    /// The state of a [`Admin::code`].
    pub fn from_code(c: u8) -> Option<Admin> {
        [Admin::Auto, Admin::Drain, Admin::ForceUp, Admin::ForceDown]
            .get(c as usize)
            .copied()
    }
}

/// How an outcome was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// `quorum = "local"` (or no monitor).
    Local,
    /// Voted with fresh peers.
    Quorum,
    /// Peers configured, none fresh: own view only.
    Isolated,
    /// The operator forced it.
    Forced,
}

impl Basis {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Local => "local",
            Basis::Quorum => "quorum",
            Basis::Isolated => "isolated",
            Basis::Forced => "forced",
        }
    }
}

/// The combined state of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Answered as up (before drain).
    pub up: bool,
    /// Out of answers on purpose.
    pub drained: bool,
    /// Voters saying down.
    pub down: u32,
    /// Voters in all.
    pub voters: u32,
    /// How it was reached.
    pub basis: Basis,
}

/// Combine one endpoint's verdicts. `own` is this node's verdict (`None`:
/// not probed yet); `peers` one entry per configured peer.
pub fn combine(
    quorum: QuorumConfig,
    admin: Admin,
    own: Option<Vote>,
    peers: &[PeerVote],
) -> Outcome {
    let own_down = own == Some(Vote::Down);
    let mut out = Outcome {
        up: !own_down,
        drained: admin == Admin::Drain,
        down: u32::from(own_down),
        voters: u32::from(own.is_some()),
        basis: Basis::Local,
    };
    if quorum != QuorumConfig::Local && !peers.is_empty() {
        let fresh = peers
            .iter()
            .any(|p| matches!(p, PeerVote::Fresh(_) | PeerVote::Unknown));
        if fresh {
            out.basis = Basis::Quorum;
            for p in peers {
                if let PeerVote::Fresh(v) = p {
                    out.voters += 1;
                    out.down += u32::from(*v == Vote::Down);
                }
            }
            out.up = match quorum {
                QuorumConfig::Majority => out.down * 2 <= out.voters,
                QuorumConfig::AtLeast(n) => out.down == 0 || out.down < n.min(out.voters),
                QuorumConfig::Local => out.up,
            };
        } else {
            out.basis = Basis::Isolated;
        }
    }
    match admin {
        Admin::ForceUp => {
            out.up = true;
            out.basis = Basis::Forced;
        }
        Admin::ForceDown => {
            out.up = false;
            out.basis = Basis::Forced;
        }
        Admin::Auto | Admin::Drain => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use PeerVote::*;
    use Vote::*;

    const MAJ: QuorumConfig = QuorumConfig::Majority;

    #[test]
    fn majority_needs_more_than_half() {
        // one node's bad view does not take the endpoint out
        let o = combine(MAJ, Admin::Auto, Some(Down), &[Fresh(Up), Fresh(Up)]);
        assert!(o.up && o.basis == Basis::Quorum && o.down == 1 && o.voters == 3);
        // seen from a node whose own view is good: the same
        assert!(combine(MAJ, Admin::Auto, Some(Up), &[Fresh(Down), Fresh(Up)]).up);
        // two of three: down everywhere
        assert!(!combine(MAJ, Admin::Auto, Some(Down), &[Fresh(Down), Fresh(Up)]).up);
        assert!(!combine(MAJ, Admin::Auto, Some(Up), &[Fresh(Down), Fresh(Down)]).up);
        // a tie is not a majority
        assert!(combine(MAJ, Admin::Auto, Some(Down), &[Fresh(Up), Stale]).up);
    }

    #[test]
    fn local_uses_the_own_view_only() {
        let q = QuorumConfig::Local;
        assert!(!combine(q, Admin::Auto, Some(Down), &[Fresh(Up), Fresh(Up)]).up);
        assert!(combine(q, Admin::Auto, Some(Up), &[Fresh(Down), Fresh(Down)]).up);
        assert!(combine(q, Admin::Auto, None, &[]).up);
    }

    #[test]
    fn stale_and_mismatched_peers_do_not_vote_and_isolation_is_reported() {
        let o = combine(MAJ, Admin::Auto, Some(Down), &[Stale, Stale]);
        assert!(!o.up && o.basis == Basis::Isolated);
        let o = combine(MAJ, Admin::Auto, Some(Down), &[Mismatch, Stale]);
        assert_eq!(o.basis, Basis::Isolated);
        // a fresh peer without a verdict: not isolated, but no extra voter
        let o = combine(MAJ, Admin::Auto, Some(Down), &[Unknown, Stale]);
        assert!(!o.up && o.basis == Basis::Quorum && o.voters == 1);
        // no peers configured: local
        assert_eq!(
            combine(MAJ, Admin::Auto, Some(Down), &[]).basis,
            Basis::Local
        );
    }

    #[test]
    fn at_least_n_is_capped_by_the_voters() {
        let q = QuorumConfig::AtLeast(2);
        assert!(combine(q, Admin::Auto, Some(Down), &[Fresh(Up), Fresh(Up)]).up);
        assert!(!combine(q, Admin::Auto, Some(Down), &[Fresh(Down), Fresh(Up)]).up);
        let q = QuorumConfig::AtLeast(3);
        // one peer stale: 2 voters, both down, N capped at 2
        assert!(!combine(q, Admin::Auto, Some(Down), &[Fresh(Down), Stale]).up);
        assert!(combine(q, Admin::Auto, Some(Down), &[Fresh(Up), Stale]).up);
    }

    #[test]
    fn admin_states_win() {
        let o = combine(MAJ, Admin::Drain, Some(Up), &[Fresh(Up)]);
        assert!(o.up && o.drained);
        assert!(combine(MAJ, Admin::ForceUp, Some(Down), &[Fresh(Down)]).up);
        assert!(!combine(MAJ, Admin::ForceDown, Some(Up), &[Fresh(Up)]).up);
        for a in [Admin::Auto, Admin::Drain, Admin::ForceUp, Admin::ForceDown] {
            assert_eq!(Admin::parse(a.as_str()), Some(a));
            assert_eq!(Admin::from_code(a.code()), Some(a));
        }
        assert_eq!(Admin::parse("maintenance"), None);
    }

    /// Every node of a 3..5 node cluster, seeing the same fresh verdicts,
    /// reaches the same state: the result depends on the multiset of votes
    /// only, not on which one is "own" nor on the order of the peers.
    #[test]
    fn property_same_verdicts_same_state_on_every_node() {
        let choices = [None, Some(Up), Some(Down)];
        for n in 3..=5usize {
            let combos = 3usize.pow(n as u32);
            for c in 0..combos {
                let verdicts: Vec<Option<Vote>> = (0..n)
                    .map(|i| choices[(c / 3usize.pow(i as u32)) % 3])
                    .collect();
                for q in [
                    MAJ,
                    QuorumConfig::AtLeast(1),
                    QuorumConfig::AtLeast(2),
                    QuorumConfig::AtLeast(4),
                ] {
                    let mut results = Vec::new();
                    for me in 0..n {
                        let mut peers: Vec<PeerVote> = verdicts
                            .iter()
                            .enumerate()
                            .filter(|&(i, _)| i != me)
                            .map(|(_, v)| v.map_or(Unknown, Fresh))
                            .collect();
                        let a = combine(q, Admin::Auto, verdicts[me], &peers);
                        peers.reverse();
                        let b = combine(q, Admin::Auto, verdicts[me], &peers);
                        assert_eq!(a, b);
                        results.push((a.up, a.down, a.voters));
                    }
                    assert!(
                        results.windows(2).all(|w| w[0] == w[1]),
                        "{verdicts:?} {q:?} {results:?}"
                    );
                    // and down needs at least one down vote
                    let downs = verdicts.iter().filter(|v| **v == Some(Down)).count();
                    if downs == 0 {
                        assert!(results[0].0);
                    }
                }
            }
        }
    }
}
