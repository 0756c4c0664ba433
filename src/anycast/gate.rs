//! Starting the gate: checking the self-check addresses are served, the
//! metrics, the self-check loop and the decision task ([`Runner`]); the
//! [`Handle`] the rest of the server holds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::machine::Machine;
use super::metrics::AnycastMetrics;
use super::runner::{CheckResult, Runner};
use super::{
    AnycastSettings, AnycastStatus, SelfCheck, lock, now_unix, selfcheck, status_prefixes,
};
use crate::serving::Shared;

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
