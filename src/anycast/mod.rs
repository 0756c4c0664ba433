//! Anycast: announce this node's service prefixes through BIRD only while
//! it really serves, and make sure a dead or hung steerdns cannot stay
//! announced. steerdns does not speak BGP: BIRD announces a static
//! protocol (`bird_protocols`) that starts `disabled`, and steerdns gates it.
//!
//! - [`machine`]: the pure decision (conditions + time → announce or not,
//!   hold-down, lame duck).
//! - [`selfcheck`]: a real DNS query to each anycast address through the
//!   normal UDP listener, every `check_interval`.
//! - [`guard`]: a child process holding the announcement as a lease; it
//!   withdraws by itself when steerdns stops refreshing it or dies.
//! - [`bird`]: the BIRD control-socket client.
//!
//! This module reads the serving state ([`Shared`]) and sends DNS queries
//! over the network like any client; it knows nothing of the transports.
//! See docs/anycast.md for the design and why it is safe.

pub mod bird;
pub mod cli;
pub mod guard;
pub(crate) mod machine;
pub(crate) mod selfcheck;
pub mod settings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use settings::AnycastSettings;

use crate::serving::Shared;
use guard::Want;
use machine::{Change, Conditions, Machine, Phase};

/// How often the decision runs and the guard is refreshed.
const TICK: Duration = Duration::from_millis(200);

/// Errors starting the anycast gate.
#[derive(Debug, thiserror::Error)]
pub enum AnycastError {
    /// A self-check address has no DNS listener.
    #[error(
        "anycast: no DNS listener serves {0}: add it (or the wildcard of its family) to server.dns_listen"
    )]
    NotServed(std::net::IpAddr),
    /// Registering the metrics failed.
    #[error("anycast metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The anycast state for the API, the status page and the CLI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnycastStatus {
    /// The prefixes gated.
    pub prefixes: Vec<String>,
    /// What steerdns wants: `withdrawn`, `hold_down`, `announced` or `draining`.
    pub state: String,
    /// Why it is not announced (the condition that failed), if so.
    pub reason: Option<String>,
    /// Unix time `state` last changed.
    pub since: u64,
    /// Whether BIRD confirmed the announcement (the guard's last report).
    pub announced: bool,
    /// The BIRD protocols toggled.
    pub bird_protocols: Vec<String>,
    /// The BIRD control socket.
    pub bird_socket: String,
    /// The last error talking to BIRD, cleared by the next success.
    pub bird_error: Option<String>,
    /// The guard process, while it runs.
    pub guard_pid: Option<u32>,
    /// Hold-down, seconds.
    pub hold_down_secs: f64,
    /// Lame-duck drain, seconds.
    pub drain_secs: f64,
    /// Self-checks that passed since start.
    pub self_checks_ok: u64,
    /// Self-checks that failed since start.
    pub self_checks_failed: u64,
    /// The last self-check.
    pub last_self_check: Option<SelfCheck>,
}

/// One self-check result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SelfCheck {
    /// Unix time.
    pub at: u64,
    /// Whether every check address answered.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct AnycastMetrics {
    announced: IntGaugeVec,
    checks: IntCounterVec,
    check_ok: IntGauge,
    changes: IntCounterVec,
}

impl AnycastMetrics {
    fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let announced = IntGaugeVec::new(
            Opts::new(
                "steerdns_anycast_announced",
                "Whether BIRD confirmed this node announces the prefix (1) or not (0).",
            ),
            &["prefix"],
        )?;
        let checks = IntCounterVec::new(
            Opts::new(
                "steerdns_anycast_self_checks_total",
                "DNS self-checks through the listeners to the anycast addresses, by result (ok, failed).",
            ),
            &["result"],
        )?;
        let check_ok = IntGauge::new(
            "steerdns_anycast_self_check_ok",
            "Whether the last DNS self-check passed (1) or not (0).",
        )?;
        let changes = IntCounterVec::new(
            Opts::new(
                "steerdns_anycast_changes_total",
                "Decisions to announce or withdraw the anycast prefixes, by change (announce, withdraw).",
            ),
            &["change"],
        )?;
        for r in ["ok", "failed"] {
            checks.with_label_values(&[r]);
        }
        for c in ["announce", "withdraw"] {
            changes.with_label_values(&[c]);
        }
        registry.register(Box::new(announced.clone()))?;
        registry.register(Box::new(checks.clone()))?;
        registry.register(Box::new(check_ok.clone()))?;
        registry.register(Box::new(changes.clone()))?;
        Ok(AnycastMetrics {
            announced,
            checks,
            check_ok,
            changes,
        })
    }
}

/// The running gate.
pub struct Handle {
    status: Arc<Mutex<AnycastStatus>>,
    drain_tx: watch::Sender<bool>,
    drained_rx: watch::Receiver<bool>,
    settings: AnycastSettings,
}

impl Handle {
    /// The current state.
    pub fn status(&self) -> AnycastStatus {
        lock(&self.status).clone()
    }

    /// The configured lame-duck period.
    pub fn drain_period(&self) -> Duration {
        self.settings.drain
    }

    /// Withdraw for good and wait (bounded by the lease plus 2 s) until
    /// BIRD confirmed it; `false` when it could not be confirmed.
    pub async fn withdraw_for_shutdown(&self) -> bool {
        let _ = self.drain_tx.send(true);
        let mut rx = self.drained_rx.clone();
        let wait = self.settings.lease + Duration::from_secs(2);
        tokio::time::timeout(wait, rx.wait_for(|d| *d))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start the gate (inside a tokio runtime): the self-check loop, the
/// decision loop and the guard process `guard_exe anycast guard ...`.
/// `udp_addrs` are the bound DNS listeners.
pub fn start(
    settings: AnycastSettings,
    shared: Arc<Shared>,
    udp_addrs: &[SocketAddr],
    guard_exe: PathBuf,
    shutdown: CancellationToken,
) -> Result<Arc<Handle>, AnycastError> {
    let mut targets = Vec::new();
    for &ip in &settings.check_addresses {
        let port = selfcheck::port_for(ip, udp_addrs).ok_or(AnycastError::NotServed(ip))?;
        targets.push(SocketAddr::new(ip, port));
    }
    let metrics = Arc::new(AnycastMetrics::register(shared.metrics.registry())?);
    for p in &settings.prefixes {
        metrics
            .announced
            .with_label_values(&[&p.to_string()])
            .set(0);
    }
    let status = Arc::new(Mutex::new(AnycastStatus {
        prefixes: settings.prefixes.iter().map(ToString::to_string).collect(),
        state: "withdrawn".into(),
        reason: Some("starting".into()),
        since: now_unix(),
        bird_protocols: settings.bird_protocols.clone(),
        bird_socket: settings.bird_socket.display().to_string(),
        hold_down_secs: settings.hold_down.as_secs_f64(),
        drain_secs: settings.drain.as_secs_f64(),
        ..AnycastStatus::default()
    }));
    let (drain_tx, drain_rx) = watch::channel(false);
    let (drained_tx, drained_rx) = watch::channel(false);
    let (check_tx, check_rx) = watch::channel(None);
    tokio::spawn(self_check_loop(
        targets.clone(),
        settings.clone(),
        metrics.clone(),
        status.clone(),
        check_tx,
        shutdown.clone(),
    ));
    info!(
        prefixes = ?status_prefixes(&settings),
        protocols = ?settings.bird_protocols,
        socket = %settings.bird_socket.display(),
        "anycast: gating announcements; withdrawn until the self-check held for {} ms",
        settings.hold_down.as_millis()
    );
    tokio::spawn(
        Runner {
            settings: settings.clone(),
            shared,
            metrics,
            status: status.clone(),
            guard_exe,
            machine: Machine::new(
                settings.hold_down,
                settings.min_usable_pools,
                settings.lease,
            ),
            guard: None,
            next_spawn: Instant::now(),
            generation: 0,
            announced: None,
            last_error: None,
            drained_tx,
        }
        .run(check_rx, drain_rx, shutdown),
    );
    Ok(Arc::new(Handle {
        status,
        drain_tx,
        drained_rx,
        settings,
    }))
}

fn status_prefixes(s: &AnycastSettings) -> Vec<String> {
    s.prefixes.iter().map(ToString::to_string).collect()
}

type CheckResult = Option<(Instant, Result<(), String>)>;

async fn self_check_loop(
    targets: Vec<SocketAddr>,
    s: AnycastSettings,
    metrics: Arc<AnycastMetrics>,
    status: Arc<Mutex<AnycastStatus>>,
    tx: watch::Sender<CheckResult>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(s.check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut id: u16 = (now_unix() as u16).wrapping_mul(31);
    let mut last_ok: Option<bool> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut result = Ok(());
        for &t in &targets {
            id = id.wrapping_add(1);
            if let Err(e) =
                selfcheck::check(t, &s.check_name, s.check_type, id, s.check_timeout).await
            {
                result = Err(e);
                break;
            }
        }
        let ok = result.is_ok();
        metrics
            .checks
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
        metrics.check_ok.set(i64::from(ok));
        match (&result, last_ok) {
            (Err(e), Some(true) | None) => warn!("anycast: DNS self-check failed: {e}"),
            (Ok(()), Some(false)) => info!("anycast: DNS self-check passes again"),
            (Ok(()), None) => info!("anycast: DNS self-check passes"),
            _ => {}
        }
        last_ok = Some(ok);
        {
            let mut st = lock(&status);
            if ok {
                st.self_checks_ok += 1;
            } else {
                st.self_checks_failed += 1;
            }
            st.last_self_check = Some(SelfCheck {
                at: now_unix(),
                ok,
                error: result.as_ref().err().cloned(),
            });
        }
        let _ = tx.send(Some((Instant::now(), result)));
    }
}

/// What a guard reported, tagged with its generation (a respawned guard
/// gets a new one, so late lines of a dead one are ignored).
enum Report {
    Line(u64, String),
    Exited(u64),
    /// steerdns withdrew directly (no guard running).
    Direct(Result<(), String>),
}

struct GuardProc {
    generation: u64,
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
}

struct Runner {
    settings: AnycastSettings,
    shared: Arc<Shared>,
    metrics: Arc<AnycastMetrics>,
    status: Arc<Mutex<AnycastStatus>>,
    guard_exe: PathBuf,
    machine: Machine,
    guard: Option<GuardProc>,
    next_spawn: Instant,
    generation: u64,
    /// What BIRD last confirmed (None: not known).
    announced: Option<bool>,
    last_error: Option<String>,
    drained_tx: watch::Sender<bool>,
}

impl Runner {
    async fn run(
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

/// The binary that runs the guard (`steerdns anycast guard`): this
/// executable when it is steerdns, else a `steerdns` next to it or one
/// directory up (where cargo puts it for test binaries in `deps/`).
pub fn guard_executable() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    if exe.file_stem().is_some_and(|s| s == "steerdns") {
        return Ok(exe);
    }
    let dir = exe.parent().map(std::path::Path::to_path_buf);
    for d in [
        dir.clone(),
        dir.and_then(|d| d.parent().map(|p| p.to_path_buf())),
    ]
    .into_iter()
    .flatten()
    {
        let candidate = d.join("steerdns");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!(
            "the anycast guard runs as `steerdns anycast guard`, and {} is not steerdns",
            exe.display()
        ),
    ))
}
