//! Signals: caught from the very start; SIGHUP reloads, SIGINT/SIGTERM
//! stop, with `[anycast]` after a lame-duck drain.

use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{error, info, warn};

use super::serve::Server;
use crate::config::ConfigError;

/// Set by the process-wide handlers installed before anything is served;
/// [`Server::wait_for_signals`] picks them up.
static EARLY_HUP: AtomicBool = AtomicBool::new(false);
static EARLY_STOP: AtomicBool = AtomicBool::new(false);

/// Catch SIGHUP, SIGTERM and SIGINT from the very start, before the config
/// is read or a socket bound: without this, a SIGHUP during startup (a
/// `systemctl reload` right after start) kills the process with the
/// default action. Installed once per process.
pub(super) fn install_early_signal_handlers() -> anyhow::Result<()> {
    static ONCE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        for (sig, flag) in [
            (libc::SIGHUP, &EARLY_HUP),
            (libc::SIGTERM, &EARLY_STOP),
            (libc::SIGINT, &EARLY_STOP),
        ] {
            // SAFETY: the action only stores to an atomic, which is
            // async-signal-safe.
            unsafe {
                signal_hook_registry::register(sig, move || flag.store(true, Ordering::SeqCst))
            }
            .map_err(|e| format!("installing signal handlers: {e}"))?;
        }
        Ok(())
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

impl Server {
    /// Serve until SIGINT or SIGTERM; reload on SIGHUP. A reload runs on
    /// its own thread, so a stop signal never waits for it. With
    /// `[anycast]`, a stop first withdraws the routes and keeps answering
    /// for `anycast.drain` (lame duck); a second stop signal ends the drain.
    pub async fn wait_for_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        // Signals that came while starting were caught by the early
        // handlers: act on them now.
        let early_stop = EARLY_STOP.swap(false, Ordering::SeqCst);
        let mut stop = early_stop;
        let mut hup_pending = EARLY_HUP.swap(false, Ordering::SeqCst);
        if stop {
            // Not announced yet (the hold-down has hardly begun), so no
            // drain; and the same signal may be pending on `term`.
            info!("stop signal during startup: shutting down");
        } else if hup_pending {
            info!("SIGHUP during startup: reloading now");
        }
        let mut running: Option<tokio::sync::oneshot::Receiver<Result<u64, ConfigError>>> = None;
        while !stop {
            if hup_pending && running.is_none() {
                hup_pending = false;
                running = Some(self.spawn_reload());
            }
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: shutting down"); stop = true; }
                _ = int.recv() => { info!("SIGINT: shutting down"); stop = true; }
                _ = hup.recv() => {
                    if running.is_some() {
                        info!("SIGHUP: a reload is running; reloading again after it");
                    }
                    hup_pending = true;
                }
                r = async { running.as_mut().expect("guarded").await }, if running.is_some() => {
                    running = None;
                    match r {
                        Ok(Ok(g)) => info!(generation = g, "config reloaded (SIGHUP)"),
                        Ok(Err(e)) => error!("reload failed, keeping the old config:\n{e}"),
                        Err(_) => {
                            error!("the reload thread died");
                            self.control.record(&Err(vec!["the reload thread died".into()]));
                        }
                    }
                }
            }
        }
        if running.is_some() {
            info!("stopping without waiting for the running reload");
        }
        if !early_stop {
            self.lame_duck(&mut term, &mut int).await;
        }
        Ok(())
    }

    /// Run a reload (recorded) on its own thread (not the runtime's
    /// blocking pool, which shutdown would wait for).
    fn spawn_reload(&self) -> tokio::sync::oneshot::Receiver<Result<u64, ConfigError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let control = self.control.clone();
        let place = self.placement.clone();
        let spawned = std::thread::Builder::new()
            .name(super::placement::RELOAD_THREAD.into())
            .spawn(move || {
                let _ = tx.send(super::placement::compile(&place, || control.reload()));
            });
        if let Err(e) = spawned {
            error!("cannot start a reload thread: {e}");
        }
        rx
    }

    /// Lame duck: withdraw the anycast routes, keep answering for the
    /// drain period (or until another stop signal), then return.
    async fn lame_duck(
        &self,
        term: &mut tokio::signal::unix::Signal,
        int: &mut tokio::signal::unix::Signal,
    ) {
        let Some(anycast) = &self.anycast else {
            return;
        };
        // Load balancers in front of the API see the node going away too.
        self.backend.set_ready(false);
        let drain = anycast.drain_period();
        info!(
            "lame duck: withdrawing the anycast routes, then answering for {} ms",
            drain.as_millis()
        );
        let withdrawn = tokio::select! {
            w = anycast.withdraw_for_shutdown() => w,
            _ = term.recv() => { info!("second stop signal: stopping now"); return; }
            _ = int.recv() => { info!("second stop signal: stopping now"); return; }
        };
        if withdrawn {
            info!("lame duck: BIRD confirmed the withdrawal; draining");
        } else {
            warn!("lame duck: BIRD did not confirm the withdrawal; draining anyway");
        }
        tokio::select! {
            () = tokio::time::sleep(drain) => info!("drain over: stopping"),
            _ = term.recv() => info!("second stop signal: stopping now"),
            _ = int.recv() => info!("second stop signal: stopping now"),
        }
    }
}
