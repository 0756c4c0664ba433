//! Hysteresis: consecutive probe results → up/down verdicts. Pure, no I/O.

/// The verdict on an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No probe result yet: answered as if up.
    Unknown,
    /// Healthy.
    Up,
    /// Unhealthy.
    Down,
}

impl Verdict {
    /// Lower-case name for logs and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Unknown => "unknown",
            Verdict::Up => "up",
            Verdict::Down => "down",
        }
    }

    /// Whether steering may answer an endpoint in this state.
    pub(crate) fn answerable(self) -> bool {
        self != Verdict::Down
    }
}

/// Consecutive-result counters of one endpoint.
///
/// A new endpoint is `Unknown` and answered as if up. Its first probe
/// result decides at once (like gdnsd): starting down would blackhole every
/// name for `rise` intervals at startup and after each reload, and waiting
/// for `fall` failures would keep answering a dead endpoint just as long.
/// After that, `rise` consecutive successes bring a down endpoint up and
/// `fall` consecutive failures take an up endpoint down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    /// Current verdict.
    pub verdict: Verdict,
    successes: u32,
    failures: u32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis {
            verdict: Verdict::Unknown,
            successes: 0,
            failures: 0,
        }
    }
}

impl Hysteresis {
    /// Record one probe result; returns the new verdict when it changed.
    pub(crate) fn observe(&mut self, ok: bool, rise: u32, fall: u32) -> Option<Verdict> {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        }
        let next = match (self.verdict, ok) {
            (Verdict::Unknown, true) => Verdict::Up,
            (Verdict::Unknown, false) => Verdict::Down,
            (Verdict::Down, true) if self.successes >= rise.max(1) => Verdict::Up,
            (Verdict::Up, false) if self.failures >= fall.max(1) => Verdict::Down,
            (v, _) => v,
        };
        (next != self.verdict).then(|| {
            self.verdict = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_result_decides() {
        let mut h = Hysteresis::default();
        assert_eq!(h.observe(false, 2, 3), Some(Verdict::Down));
        let mut h = Hysteresis::default();
        assert_eq!(h.observe(true, 2, 3), Some(Verdict::Up));
    }

    #[test]
    fn never_flips_before_threshold() {
        // Property over all result sequences of length 12.
        for seq in 0u32..(1 << 12) {
            for (rise, fall) in [(1, 1), (2, 3), (3, 2), (4, 4)] {
                let mut h = Hysteresis::default();
                let mut run_ok = 0;
                let mut run_fail = 0;
                for i in 0..12 {
                    let ok = seq & (1 << i) != 0;
                    if ok {
                        run_ok += 1;
                        run_fail = 0;
                    } else {
                        run_fail += 1;
                        run_ok = 0;
                    }
                    let before = h.verdict;
                    let changed = h.observe(ok, rise, fall);
                    match (before, changed) {
                        (Verdict::Down, Some(Verdict::Up)) => assert!(run_ok >= rise),
                        (Verdict::Up, Some(Verdict::Down)) => assert!(run_fail >= fall),
                        (Verdict::Unknown, Some(_)) => assert_eq!(i, 0),
                        (_, None) => {
                            if before == Verdict::Down && ok {
                                assert!(run_ok < rise);
                            }
                            if before == Verdict::Up && !ok {
                                assert!(run_fail < fall);
                            }
                        }
                        other => panic!("unexpected transition {other:?}"),
                    }
                }
            }
        }
    }
}
