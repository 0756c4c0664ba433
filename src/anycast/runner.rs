//! The decision loop of the gate ([`Runner`]): every tick it takes the
//! conditions (self-check, usable pools, drain), steps the
//! [`Machine`](super::machine::Machine), and refreshes the guard process,
//! (re)starting it and withdrawing directly when it is gone.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::guard::{self, Want};
use super::machine::{Change, Conditions, Machine, Phase};
use super::metrics::AnycastMetrics;
use super::{AnycastSettings, AnycastStatus, bird, lock, now_unix, status_prefixes};
use crate::serving::Shared;

/// How often the decision runs and the guard is refreshed.
const TICK: Duration = Duration::from_millis(200);

pub(super) type CheckResult = Option<(Instant, Result<(), String>)>;

/// What a guard reported, tagged with its generation (a respawned guard
/// gets a new one, so late lines of a dead one are ignored).
enum Report {
    Line(u64, String),
    Exited(u64),
    /// steerdns withdrew directly (no guard running).
    Direct(Result<(), String>),
}

pub(super) struct GuardProc {
    generation: u64,
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
}

pub(super) struct Runner {
    pub(super) settings: AnycastSettings,
    pub(super) shared: Arc<Shared>,
    pub(super) metrics: Arc<AnycastMetrics>,
    pub(super) status: Arc<Mutex<AnycastStatus>>,
    pub(super) guard_exe: PathBuf,
    pub(super) machine: Machine,
    pub(super) guard: Option<GuardProc>,
    pub(super) next_spawn: Instant,
    pub(super) generation: u64,
    /// What BIRD last confirmed (None: not known).
    pub(super) announced: Option<bool>,
    pub(super) last_error: Option<String>,
    pub(super) drained_tx: watch::Sender<bool>,
}

impl Runner {
    pub(super) async fn run(
        mut self,
        check_rx: watch::Receiver<CheckResult>,
        mut drain_rx: watch::Receiver<bool>,
        shutdown: CancellationToken,
    ) {
        let (report_tx, mut report_rx) = mpsc::unbounded_channel();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain_open = true;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(r) = report_rx.recv() => { self.on_report(r, &report_tx); continue; }
                _ = tick.tick() => {}
                // A drain request withdraws at once, not at the next tick.
                r = drain_rx.changed(), if drain_open => {
                    if r.is_err() {
                        drain_open = false;
                        continue;
                    }
                }
            }
            let now = Instant::now();
            let change = if *drain_rx.borrow() {
                if *self.machine.phase() == Phase::Draining {
                    None
                } else {
                    let c = self.machine.drain();
                    if self.announced == Some(false) {
                        let _ = self.drained_tx.send(true);
                    }
                    c
                }
            } else {
                let conditions = self.conditions(now, &check_rx);
                self.machine.step(now, &conditions)
            };
            if let Some(c) = change {
                self.log_change(&c);
            }
            self.set_phase();
            self.refresh_guard(now, &report_tx).await;
        }
        // Stopping: ask for a withdrawal and close the pipe; the guard
        // withdraws on EOF too.
        if let Some(mut g) = self.guard.take() {
            let _ = tokio::time::timeout(
                Duration::from_millis(200),
                g.stdin.write_all(Want::Withdraw.line().as_bytes()),
            )
            .await;
        }
    }

    fn conditions(&self, now: Instant, check_rx: &watch::Receiver<CheckResult>) -> Conditions {
        let stale_after = self.settings.check_interval * 2 + self.settings.check_timeout;
        let self_check = match &*check_rx.borrow() {
            None => Err("not checked yet".into()),
            Some((at, _)) if now.saturating_duration_since(*at) > stale_after => Err(format!(
                "no self-check result for {} ms",
                now.saturating_duration_since(*at).as_millis()
            )),
            Some((_, r)) => r.clone(),
        };
        let usable_pools = if self.settings.min_usable_pools == 0 {
            0
        } else {
            let snap = self.shared.current.load();
            let inputs = crate::select::Inputs {
                pools: &snap.pools,
                health: &snap.health,
            };
            (0..snap.pools.len() as u32)
                .filter(|&p| inputs.pool_usable(p))
                .count() as u32
        };
        Conditions {
            config_loaded: true,
            self_check,
            usable_pools,
        }
    }

    fn log_change(&self, c: &Change) {
        let prefixes = status_prefixes(&self.settings).join(", ");
        match c {
            Change::Announce => {
                self.metrics.changes.with_label_values(&["announce"]).inc();
                info!(
                    "anycast: announcing {prefixes}: every condition held for {} ms",
                    self.settings.hold_down.as_millis()
                );
            }
            Change::Withdraw(why) => {
                self.metrics.changes.with_label_values(&["withdraw"]).inc();
                warn!("anycast: withdrawing {prefixes}: {why}");
            }
        }
    }

    fn set_phase(&self) {
        let phase = self.machine.phase();
        let mut st = lock(&self.status);
        if st.state != phase.as_str() {
            st.state = phase.as_str().into();
            st.since = now_unix();
        }
        st.reason = match phase {
            Phase::Withdrawn { why } => Some(why.to_string()),
            Phase::HoldDown { .. } => Some("hold-down: conditions hold, waiting".into()),
            Phase::Draining => Some("draining (shutting down)".into()),
            Phase::Announced => None,
        };
    }

    fn set_announced(&mut self, on: bool) {
        if self.announced != Some(on) {
            let prefixes = status_prefixes(&self.settings).join(", ");
            if on {
                info!(protocols = ?self.settings.bird_protocols, "anycast: BIRD announces {prefixes}");
            } else {
                info!(protocols = ?self.settings.bird_protocols, "anycast: BIRD withdrew {prefixes}");
            }
        }
        self.announced = Some(on);
        for p in &self.settings.prefixes {
            self.metrics
                .announced
                .with_label_values(&[&p.to_string()])
                .set(i64::from(on));
        }
        let mut st = lock(&self.status);
        st.announced = on;
        st.bird_error = None;
        self.last_error = None;
        drop(st);
        if !on && *self.machine.phase() == Phase::Draining {
            let _ = self.drained_tx.send(true);
        }
    }

    fn set_error(&mut self, e: String) {
        if self.last_error.as_ref() != Some(&e) {
            warn!("anycast: {e}");
        }
        lock(&self.status).bird_error = Some(e.clone());
        self.last_error = Some(e);
    }

    fn on_report(&mut self, r: Report, report_tx: &mpsc::UnboundedSender<Report>) {
        let current = self.guard.as_ref().map(|g| g.generation);
        match r {
            Report::Line(g, _) | Report::Exited(g) if Some(g) != current => {}
            Report::Line(_, line) => match line.as_str() {
                "announced" => self.set_announced(true),
                "withdrawn" => self.set_announced(false),
                "lease-expired" => {
                    warn!(
                        "anycast: the guard's lease expired (steerdns did not refresh it): withdrawn"
                    )
                }
                "drift" => warn!(
                    "anycast: BIRD protocol {} had another state (birdc configure or a BIRD restart?); re-applied",
                    self.settings.bird_protocols.join(", ")
                ),
                other => {
                    let e = other.strip_prefix("error ").unwrap_or(other).to_string();
                    self.set_error(e);
                }
            },
            Report::Exited(_) => {
                warn!("anycast: the guard process exited; withdrawing directly and restarting it");
                self.guard = None;
                lock(&self.status).guard_pid = None;
                self.next_spawn = Instant::now() + Duration::from_secs(1);
                self.withdraw_directly(report_tx);
            }
            Report::Direct(Ok(())) => {
                if self.guard.is_none() {
                    self.set_announced(false);
                }
            }
            Report::Direct(Err(e)) => self.set_error(e),
        }
    }

    /// Without a guard, disable the BIRD protocol from here.
    fn withdraw_directly(&self, report_tx: &mpsc::UnboundedSender<Report>) {
        let b = bird::Bird::new(&self.settings.bird_socket, Duration::from_millis(500));
        let protocols = self.settings.bird_protocols.clone();
        let tx = report_tx.clone();
        tokio::task::spawn_blocking(move || {
            let mut routes = guard::BirdRoutes { bird: b, protocols };
            let r = guard::Routes::set(&mut routes, false).map(|_| ());
            let _ = tx.send(Report::Direct(r));
        });
    }

    fn spawn_guard(&mut self, report_tx: &mpsc::UnboundedSender<Report>) {
        self.generation += 1;
        let generation = self.generation;
        let mut cmd = tokio::process::Command::new(&self.guard_exe);
        cmd.args(["anycast", "guard", "--socket"])
            .arg(&self.settings.bird_socket);
        for p in &self.settings.bird_protocols {
            cmd.args(["--protocol", p]);
        }
        let spawned = cmd
            .args(["--lease", &format!("{}ms", self.settings.lease.as_millis())])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(false)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                self.set_error(format!(
                    "cannot start the guard {}: {e}",
                    self.guard_exe.display()
                ));
                self.next_spawn = Instant::now() + Duration::from_secs(1);
                return;
            }
        };
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            self.next_spawn = Instant::now() + Duration::from_secs(1);
            return;
        };
        let pid = child.id();
        info!(pid = ?pid, "anycast: guard started");
        lock(&self.status).guard_pid = pid;
        let tx = report_tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(Report::Line(generation, line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Report::Exited(generation));
        });
        self.guard = Some(GuardProc {
            generation,
            child,
            stdin,
        });
    }

    async fn refresh_guard(&mut self, now: Instant, report_tx: &mpsc::UnboundedSender<Report>) {
        if self.guard.is_none() && now >= self.next_spawn {
            self.spawn_guard(report_tx);
        }
        let want = if self.machine.announce() {
            Want::Announce
        } else {
            Want::Withdraw
        };
        let Some(g) = self.guard.as_mut() else {
            return;
        };
        let wrote = tokio::time::timeout(
            Duration::from_secs(1),
            g.stdin.write_all(want.line().as_bytes()),
        )
        .await;
        if !matches!(wrote, Ok(Ok(()))) {
            warn!(
                "anycast: the guard does not take refreshes; stopping it and withdrawing directly"
            );
            let _ = g.child.start_kill();
            self.guard = None;
            lock(&self.status).guard_pid = None;
            self.next_spawn = now + Duration::from_secs(1);
            self.withdraw_directly(report_tx);
        }
    }
}
