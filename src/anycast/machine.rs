//! The announcement decision as a pure state machine: conditions and the
//! time go in, "announce or not" and the changes to log come out. No I/O,
//! no clock of its own (the caller passes `now`), so tests drive it with
//! any timeline.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// What the runner observed at one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conditions {
    /// A config is loaded and serving.
    pub config_loaded: bool,
    /// The last DNS self-check through the listeners: `Ok`, or why not.
    pub self_check: Result<(), String>,
    /// Usable pools now.
    pub usable_pools: u32,
}

/// Why the route is not announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Blocker {
    /// No config is serving.
    ConfigNotLoaded,
    /// The self-query failed.
    SelfCheck(String),
    /// Fewer usable pools than required.
    Pools {
        /// Usable now.
        usable: u32,
        /// Required.
        need: u32,
    },
    /// The runner itself did not run for longer than the lease (the
    /// process was stopped or starved): the guard has withdrawn meanwhile.
    Stalled(Duration),
    /// Shutting down (lame duck).
    Draining,
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::ConfigNotLoaded => f.write_str("no config loaded"),
            Blocker::SelfCheck(why) => write!(f, "DNS self-check failed: {why}"),
            Blocker::Pools { usable, need } => {
                write!(f, "{usable} usable pools, {need} required")
            }
            Blocker::Stalled(d) => write!(f, "steerdns did not run for {} ms", d.as_millis()),
            Blocker::Draining => f.write_str("draining (shutting down)"),
        }
    }
}

/// Where the machine is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not announced; `why` is the condition that failed last.
    Withdrawn {
        /// The failing condition.
        why: Blocker,
    },
    /// Every condition holds since `since`; announced once it held for the
    /// hold-down.
    HoldDown {
        /// When the conditions started to hold.
        since: Instant,
    },
    /// Announced.
    Announced,
    /// Withdrawn for good: the process is stopping.
    Draining,
}

impl Phase {
    /// Lower-case name for the API and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Withdrawn { .. } => "withdrawn",
            Phase::HoldDown { .. } => "hold_down",
            Phase::Announced => "announced",
            Phase::Draining => "draining",
        }
    }
}

/// A change of the wanted announcement, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Start announcing: the conditions held for the hold-down.
    Announce,
    /// Stop announcing, and why.
    Withdraw(Blocker),
}

/// The decision state machine.
#[derive(Debug)]
pub(crate) struct Machine {
    phase: Phase,
    hold_down: Duration,
    min_usable_pools: u32,
    /// A gap between steps longer than this counts as a failure.
    stall_limit: Duration,
    last_step: Option<Instant>,
}

impl Machine {
    /// Start withdrawn (nothing is announced before the first hold-down).
    pub fn new(hold_down: Duration, min_usable_pools: u32, stall_limit: Duration) -> Self {
        Machine {
            phase: Phase::Withdrawn {
                why: Blocker::SelfCheck("not checked yet".into()),
            },
            hold_down,
            min_usable_pools,
            stall_limit,
            last_step: None,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Whether the route should be announced now.
    pub fn announce(&self) -> bool {
        self.phase == Phase::Announced
    }

    /// Enter lame duck: withdraw now and never announce again.
    pub fn drain(&mut self) -> Option<Change> {
        let was = self.announce();
        self.phase = Phase::Draining;
        was.then_some(Change::Withdraw(Blocker::Draining))
    }

    fn blocker(&self, now: Instant, c: &Conditions) -> Option<Blocker> {
        if let Some(last) = self.last_step {
            let gap = now.saturating_duration_since(last);
            if gap > self.stall_limit {
                return Some(Blocker::Stalled(gap));
            }
        }
        if !c.config_loaded {
            return Some(Blocker::ConfigNotLoaded);
        }
        if let Err(why) = &c.self_check {
            return Some(Blocker::SelfCheck(why.clone()));
        }
        if c.usable_pools < self.min_usable_pools {
            return Some(Blocker::Pools {
                usable: c.usable_pools,
                need: self.min_usable_pools,
            });
        }
        None
    }

    /// One step at `now` with what was observed; returns the change of the
    /// wanted announcement, if any. A failing condition withdraws at once;
    /// announcing needs every condition to hold for the whole hold-down.
    pub fn step(&mut self, now: Instant, c: &Conditions) -> Option<Change> {
        if self.phase == Phase::Draining {
            return None;
        }
        let blocker = self.blocker(now, c);
        self.last_step = Some(now);
        match (blocker, &self.phase) {
            (Some(why), Phase::Announced) => {
                self.phase = Phase::Withdrawn { why: why.clone() };
                Some(Change::Withdraw(why))
            }
            (Some(why), _) => {
                self.phase = Phase::Withdrawn { why };
                None
            }
            (None, Phase::Withdrawn { .. }) => {
                if self.hold_down.is_zero() {
                    self.phase = Phase::Announced;
                    return Some(Change::Announce);
                }
                self.phase = Phase::HoldDown { since: now };
                None
            }
            (None, Phase::HoldDown { since }) => {
                if now.saturating_duration_since(*since) >= self.hold_down {
                    self.phase = Phase::Announced;
                    Some(Change::Announce)
                } else {
                    None
                }
            }
            (None, Phase::Announced | Phase::Draining) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(200);

    fn ok() -> Conditions {
        Conditions {
            config_loaded: true,
            self_check: Ok(()),
            usable_pools: 3,
        }
    }

    fn failing() -> Conditions {
        Conditions {
            self_check: Err("timeout".into()),
            ..ok()
        }
    }

    /// Step every TICK for `d` with `c`; returns the changes seen.
    fn run(m: &mut Machine, now: &mut Instant, d: Duration, c: &Conditions) -> Vec<Change> {
        let end = *now + d;
        let mut out = Vec::new();
        while *now < end {
            *now += TICK;
            out.extend(m.step(*now, c));
        }
        out
    }

    fn machine() -> (Machine, Instant) {
        (
            Machine::new(Duration::from_secs(3), 2, Duration::from_secs(1)),
            Instant::now(),
        )
    }

    #[test]
    fn announces_only_after_the_hold_down() {
        let (mut m, mut now) = machine();
        assert!(!m.announce());
        // Just under the hold-down: still not announced.
        assert!(run(&mut m, &mut now, Duration::from_millis(3000), &ok()).is_empty());
        assert_eq!(m.phase().as_str(), "hold_down");
        let changes = run(&mut m, &mut now, TICK * 2, &ok());
        assert_eq!(changes, vec![Change::Announce]);
        assert!(m.announce());
    }

    #[test]
    fn a_failure_withdraws_at_the_next_step_and_restarts_the_hold_down() {
        let (mut m, mut now) = machine();
        run(&mut m, &mut now, Duration::from_secs(4), &ok());
        assert!(m.announce());
        now += TICK;
        assert_eq!(
            m.step(now, &failing()),
            Some(Change::Withdraw(Blocker::SelfCheck("timeout".into())))
        );
        assert!(!m.announce());
        // A flapping check never gets announced: every failure restarts
        // the hold-down.
        for _ in 0..5 {
            assert!(run(&mut m, &mut now, Duration::from_secs(2), &ok()).is_empty());
            assert!(run(&mut m, &mut now, TICK, &failing()).is_empty());
        }
        assert!(!m.announce());
        let changes = run(&mut m, &mut now, Duration::from_millis(3400), &ok());
        assert_eq!(changes, vec![Change::Announce]);
    }

    #[test]
    fn too_few_usable_pools_block() {
        let (mut m, mut now) = machine();
        let one_pool = Conditions {
            usable_pools: 1,
            ..ok()
        };
        assert!(run(&mut m, &mut now, Duration::from_secs(10), &one_pool).is_empty());
        assert_eq!(
            m.phase(),
            &Phase::Withdrawn {
                why: Blocker::Pools { usable: 1, need: 2 }
            }
        );
        run(&mut m, &mut now, Duration::from_secs(4), &ok());
        assert!(m.announce());
        let not_loaded = Conditions {
            config_loaded: false,
            ..ok()
        };
        assert_eq!(
            run(&mut m, &mut now, TICK, &not_loaded),
            vec![Change::Withdraw(Blocker::ConfigNotLoaded)]
        );
    }

    #[test]
    fn a_stall_longer_than_the_lease_withdraws_and_holds_down() {
        let (mut m, mut now) = machine();
        run(&mut m, &mut now, Duration::from_secs(4), &ok());
        assert!(m.announce());
        // The process was stopped for 5 s: the guard withdrew meanwhile,
        // so the first step after it must not keep announcing.
        now += Duration::from_secs(5);
        assert_eq!(
            m.step(now, &ok()),
            Some(Change::Withdraw(Blocker::Stalled(Duration::from_secs(5))))
        );
        assert!(run(&mut m, &mut now, Duration::from_millis(2800), &ok()).is_empty());
        assert_eq!(
            run(&mut m, &mut now, Duration::from_millis(600), &ok()),
            vec![Change::Announce]
        );
    }

    #[test]
    fn draining_withdraws_for_good() {
        let (mut m, mut now) = machine();
        run(&mut m, &mut now, Duration::from_secs(4), &ok());
        assert_eq!(m.drain(), Some(Change::Withdraw(Blocker::Draining)));
        assert!(run(&mut m, &mut now, Duration::from_secs(30), &ok()).is_empty());
        assert!(!m.announce());
        assert_eq!(m.phase().as_str(), "draining");
        // Draining a node that was not announced changes nothing.
        let (mut m, _) = machine();
        assert_eq!(m.drain(), None);
    }

    #[test]
    fn zero_hold_down_announces_at_the_first_good_step() {
        let mut m = Machine::new(Duration::ZERO, 0, Duration::from_secs(1));
        let now = Instant::now();
        assert_eq!(m.step(now, &ok()), Some(Change::Announce));
    }
}
