//! Wiring: load the config, bind sockets, start transports, the prober, the
//! HTTP API and the file watch; reload on SIGHUP, API call or file change;
//! stop on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::backend::{Reloader, SharedBackend};
use crate::api::snapshot::ProbeInfo;
use crate::api::{self, ApiBackend, ApiOptions};
use crate::config::{self, ConfigError};
use crate::dns::server::Shared;
use crate::dns::tcp::{self, TcpOptions};
use crate::dns::udp::{self, UdpServer};
use crate::health::notify::{Notifier, NotifyOptions};
use crate::health::prober::{self, HealthStatus, ProberOptions};
use crate::metrics::Metrics;
use crate::snapshot::{self, Snapshot};

/// How to start the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// The config file.
    pub config: PathBuf,
    /// Replaces `server.dns_listen` when not empty.
    pub dns_listen: Vec<SocketAddr>,
    /// Replaces `server.http_listen`.
    pub http_listen: Option<SocketAddr>,
}

/// Read, parse, validate and compile a config file.
pub fn load_snapshot(path: &Path, generation: u64) -> Result<Snapshot, ConfigError> {
    load_snapshot_with(path, generation, None, snapshot::GeoMode::Serve)
}

/// [`load_snapshot`] reusing `previous`'s geo data (partition, decision
/// tries) when the databases and overrides did not change; `mode` says how
/// much geo data to prepare (`explain` needs no tries).
pub fn load_snapshot_with(
    path: &Path,
    generation: u64,
    previous: Option<&Snapshot>,
    mode: snapshot::GeoMode,
) -> Result<Snapshot, ConfigError> {
    let (source, file) = config::load(path)?;
    snapshot::build_reusing(&source, &file, generation, previous.map(|p| &p.geo), mode)
}

/// Everything a reload touches, shared by the signal loop, the API and the
/// file watch.
pub struct Control {
    /// The snapshot holder (and metrics).
    pub shared: Arc<Shared>,
    /// What the prober knows about each probed endpoint.
    pub health: Arc<HealthStatus>,
    notifier: Notifier,
    generations: tokio::sync::watch::Sender<u64>,
    config: PathBuf,
    generation: AtomicU64,
    reload_lock: std::sync::Mutex<()>,
}

impl Control {
    /// Re-read the config and swap it in; on any error the old config keeps
    /// serving and the error is returned. One reload runs at a time.
    pub fn reload(&self) -> Result<u64, ConfigError> {
        let _one = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let snap = {
            let old = self.shared.current.load_full();
            load_snapshot_with(
                &self.config,
                generation,
                Some(&old),
                snapshot::GeoMode::Serve,
            )?
        };
        // Health carries over for endpoints whose probe did not change.
        self.health.seed(&snap);
        self.notifier.set_urls(snap.notify.urls.clone());
        let listen_changed = {
            let old = self.shared.current.load();
            old.settings.dns_listen != snap.settings.dns_listen
                || old.settings.http_listen != snap.settings.http_listen
                || old.settings.udp_workers != snap.settings.udp_workers
                || old.settings.anycast != snap.settings.anycast
                || old.settings.xdp_interface != snap.settings.xdp_interface
        };
        if listen_changed {
            warn!(
                "listen addresses, workers or [anycast] changed: that takes a restart; keeping the current ones"
            );
        }
        self.shared.publish(snap);
        crate::metrics::sync_health(&self.shared.metrics, &self.shared.current.load());
        self.generation.store(generation, Ordering::Relaxed);
        let _ = self.generations.send(generation);
        Ok(generation)
    }

    fn probe_info(&self, endpoint: u32) -> ProbeInfo {
        let snap = self.shared.current.load();
        let Some(t) = snap.probes.iter().find(|t| t.endpoint == endpoint) else {
            return ProbeInfo::default();
        };
        let m = &snap.monitors[t.monitor as usize];
        let monitor = Some(format!("{} {} {}", m.name, m.kind.label(), t.addr));
        match self.health.get(&t.key) {
            None => ProbeInfo {
                monitor,
                ..ProbeInfo::default()
            },
            Some(h) => ProbeInfo {
                probed: match h.hysteresis.verdict {
                    crate::health::state::Verdict::Unknown => None,
                    v => Some(v.answerable()),
                },
                reason: h.reason,
                last_probe_at: h.last_probe_at,
                last_change_at: h.last_change_at,
                monitor,
            },
        }
    }
}

fn reload_errors(e: &ConfigError) -> Vec<String> {
    e.to_string().lines().map(String::from).collect()
}

/// Set by the process-wide handlers installed before anything is served;
/// [`Running::wait_for_signals`] picks them up.
static EARLY_HUP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static EARLY_STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Catch SIGHUP, SIGTERM and SIGINT from the very start, before the config
/// is read or a socket bound: without this, a SIGHUP during startup (a
/// `systemctl reload` right after start) kills the process with the
/// default action. Installed once per process.
fn install_early_signal_handlers() -> anyhow::Result<()> {
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

/// A running server.
pub struct Running {
    /// Bound UDP addresses (ports resolved).
    pub udp_addrs: Vec<SocketAddr>,
    /// Bound TCP addresses (ports resolved).
    pub tcp_addrs: Vec<SocketAddr>,
    /// Bound HTTP API address.
    pub http_addr: SocketAddr,
    /// The snapshot holder.
    pub shared: Arc<Shared>,
    /// What the prober knows about each probed endpoint.
    pub health: Arc<HealthStatus>,
    /// Reload machinery.
    pub control: Arc<Control>,
    /// The API's view (status, readiness, last reload).
    pub backend: Arc<SharedBackend>,
    /// Peers, quorum, admin states.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// The anycast gate, when `[anycast]` is configured.
    pub anycast: Option<Arc<crate::anycast::Handle>>,
    /// The AF_XDP listener when `server.xdp_interface` is set: running, or
    /// why it refused (the sockets serve either way).
    pub xdp: Option<Result<crate::xdp::XdpServer, crate::xdp::XdpError>>,
    udp: Vec<UdpServer>,
    shutdown: CancellationToken,
    rt: Option<Runtime>,
}

/// Load the config, bind every listener and start answering.
pub fn start(opts: &Options) -> anyhow::Result<Running> {
    info!(config = %opts.config.display(), "starting");
    // Fingerprint before reading, so an edit racing the start is seen.
    let config_seen = fingerprint(std::slice::from_ref(&opts.config));
    let snap = load_snapshot(&opts.config, 1)?;
    let settings = snap.settings.clone();
    let listen = if opts.dns_listen.is_empty() {
        settings.dns_listen.clone()
    } else {
        opts.dns_listen.clone()
    };
    anyhow::ensure!(!listen.is_empty(), "no DNS listen address configured");
    let metrics = Arc::new(Metrics::new().context("creating metrics")?);
    // The first load counts as the last successful one (else 0: 1970).
    metrics.initial_load();
    let shared = Shared::new(snap, metrics);
    crate::metrics::sync_health(&shared.metrics, &shared.current.load());
    let workers = match settings.udp_workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.clamp(1, 4))
        .thread_name("steerdns-rt")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let shutdown = CancellationToken::new();
    let health = Arc::new(HealthStatus::default());
    let (generations, generations_rx) = tokio::sync::watch::channel(1u64);
    let notifier = {
        let _guard = rt.enter();
        let snap = shared.current.load();
        Notifier::spawn(
            NotifyOptions {
                urls: snap.notify.urls.clone(),
                queue_size: snap.notify.queue_size,
                attempts: snap.notify.attempts,
                timeout: Duration::from_secs(5),
                node: snap.settings.node_name.clone(),
            },
            shutdown.clone(),
        )
    };
    let control = Arc::new(Control {
        shared: shared.clone(),
        health: health.clone(),
        notifier: notifier.clone(),
        generations,
        config: opts.config.clone(),
        generation: AtomicU64::new(1),
        reload_lock: std::sync::Mutex::new(()),
    });
    // Peers' verdicts, quorum, drain: the prober writes health through it.
    let cluster = crate::cluster::Cluster::new(shared.clone(), health.clone());
    rt.spawn(cluster.clone().run(shutdown.clone()));
    rt.spawn(prober::run(
        shared.clone(),
        health.clone(),
        Some(notifier),
        generations_rx,
        ProberOptions {
            max_concurrency: settings.max_concurrent_probes,
        },
        shutdown.clone(),
    ));
    let reloader: Reloader = {
        let c = control.clone();
        Box::new(move || c.reload().map_err(|e| reload_errors(&e)))
    };
    let backend = Arc::new(
        SharedBackend::new(shared.clone(), shared.metrics.clone(), reloader)
            .with_health(health.clone())
            .with_probe_info({
                let c = control.clone();
                Box::new(move |e| c.probe_info(e))
            }),
    );

    // HTTP API first: /readyz answers 503 until the DNS sockets are bound.
    let http_listen = opts.http_listen.unwrap_or(settings.http_listen);
    let http = api::bind(http_listen).with_context(|| format!("binding HTTP API {http_listen}"))?;
    let http_addr = http.local_addr()?;
    {
        let backend: Arc<dyn ApiBackend> = backend.clone();
        let api_opts = ApiOptions {
            token: settings.api_token.clone(),
            listen: http_addr,
        };
        let token = shutdown.clone();
        let cluster = cluster.clone();
        rt.spawn(async move {
            match tokio::net::TcpListener::from_std(http) {
                Ok(l) => api::serve_with_cluster(l, backend, api_opts, Some(cluster), token).await,
                Err(e) => error!("HTTP listener {http_addr}: {e}"),
            }
        });
        info!("listening proto=http addr={http_addr}");
    }

    let mut running = Running {
        udp_addrs: Vec::new(),
        tcp_addrs: Vec::new(),
        http_addr,
        shared: shared.clone(),
        health,
        control: control.clone(),
        backend: backend.clone(),
        cluster: cluster.clone(),
        anycast: None,
        xdp: None,
        udp: Vec::new(),
        shutdown: shutdown.clone(),
        rt: None,
    };
    let tcp_opts = TcpOptions {
        idle_timeout: settings.tcp_idle_timeout,
        max_connections: settings.tcp_max_connections,
        max_per_client: settings.tcp_max_per_client,
        busy_idle_timeout: settings.tcp_busy_idle_timeout,
        ..TcpOptions::default()
    };
    for addr in listen {
        // UDP and TCP on one port (port 0: the same kernel-chosen port).
        let (sockets, listener) = bind_pair(addr, workers)?;
        let local = sockets[0].local_addr()?;
        let tcp_local = listener.local_addr()?;
        running
            .udp
            .push(udp::spawn_udp(sockets, shared.clone()).context("starting UDP workers")?);
        info!("listening proto=udp addr={local} workers={workers}");
        let handler = shared.clone();
        let token = shutdown.clone();
        let opts = tcp_opts.clone();
        rt.spawn(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => tcp::serve_tcp(l, handler, opts, token).await,
                Err(e) => error!("TCP listener {tcp_local}: {e}"),
            }
        });
        info!("listening proto=tcp addr={tcp_local}");
        running.udp_addrs.push(local);
        running.tcp_addrs.push(tcp_local);
    }
    if let Some(interface) = &settings.xdp_interface {
        let started = crate::xdp::start(interface, &running.udp_addrs, shared.clone());
        if let Err(e) = &started {
            error!("AF_XDP listener refused to start: {e}; answering through the sockets only");
        }
        running.xdp = Some(started);
    }
    {
        // UDP workers count oversize datagrams and TCP listeners refused
        // connections themselves (no metrics on their loops); carry the
        // deltas into the metrics every second.
        let readers: Vec<_> = running.udp.iter().map(UdpServer::stats_reader).collect();
        let tcp_limit = tcp_opts.limit_drops.clone();
        let metrics = shared.metrics.clone();
        let token = shutdown.clone();
        rt.spawn(async move {
            let mut reported = 0u64;
            let mut reported_tcp = 0u64;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let now: u64 = readers.iter().map(|r| r.stats().dropped_truncated).sum();
                if now > reported {
                    metrics.record_drops(crate::metrics::DropReason::Oversize, now - reported);
                    reported = now;
                }
                let tcp_now = tcp_limit.load(std::sync::atomic::Ordering::Relaxed);
                if tcp_now > reported_tcp {
                    metrics.record_drops(
                        crate::metrics::DropReason::ConnectionLimit,
                        tcp_now - reported_tcp,
                    );
                    reported_tcp = tcp_now;
                }
            }
        });
    }
    if !settings.watch_interval.is_zero() {
        let files = watched_files(&control);
        let mut seen = fingerprint(&files);
        seen[0] = config_seen[0];
        rt.spawn(watch_files(
            control,
            backend.clone(),
            (files, seen),
            settings.watch_interval,
            shutdown.clone(),
        ));
    }
    if let Some(a) = settings.anycast.clone() {
        // After the listeners: the self-check asks them.
        let _guard = rt.enter();
        let exe = crate::anycast::guard_executable().context("anycast guard")?;
        let handle =
            crate::anycast::start(a, shared.clone(), &running.udp_addrs, exe, shutdown.clone())?;
        backend.set_anycast(handle.clone());
        running.anycast = Some(handle);
    }
    backend.set_ready(true);
    crate::sdnotify::notify_ready();
    running.rt = Some(rt);
    Ok(running)
}

/// UDP sockets and a TCP listener on the same address and port. With port 0
/// the kernel picks the UDP port, and TCP may find it taken by someone
/// else: then try again with a new port (a bounded number of times).
fn bind_pair(
    addr: SocketAddr,
    workers: usize,
) -> anyhow::Result<(Vec<std::net::UdpSocket>, std::net::TcpListener)> {
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let sockets =
            udp::bind_udp(addr, workers).with_context(|| format!("binding UDP {addr}"))?;
        let tcp_addr = SocketAddr::new(addr.ip(), sockets[0].local_addr()?.port());
        match tcp::bind_tcp(tcp_addr) {
            Ok(l) => return Ok((sockets, l)),
            Err(e) => last = Some(anyhow::Error::new(e).context(format!("binding TCP {tcp_addr}"))),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("binding {addr}")))
}

/// The files a config depends on: itself and its GeoIP databases.
fn watched_files(control: &Control) -> Vec<PathBuf> {
    let snap = control.shared.current.load();
    let mut files = vec![control.config.clone()];
    files.extend(snap.geo.location_dbs_info().into_iter().map(|i| i.path));
    if let Some(i) = snap.geo.asn_db_info() {
        files.push(i.path);
    }
    files
}

/// (length, modification time, inode) of each file; cheap to poll. The
/// inode changes when a new file is renamed over the old one (the safe way
/// to update a database), even with the same size and time.
fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.len(), m.modified().ok()?, m.ino()))
        })
        .collect()
}

/// Poll the config and GeoIP files; when they changed and then stayed the
/// same for one more period (updaters replace files in steps), reload.
type Fingerprint = Vec<Option<(u64, std::time::SystemTime, u64)>>;

async fn watch_files(
    control: Arc<Control>,
    backend: Arc<SharedBackend>,
    (mut files, mut seen): (Vec<PathBuf>, Fingerprint),
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut pending: Option<Fingerprint> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let now = fingerprint(&files);
        if now == seen {
            pending = None;
            continue;
        }
        if pending.as_ref() != Some(&now) {
            // Changed since the last look: wait one more period to settle.
            pending = Some(now);
            continue;
        }
        pending = None;
        // Fingerprint before reading, as at start.
        seen = now;
        let c = control.clone();
        let result =
            tokio::task::spawn_blocking(move || c.reload().map_err(|e| reload_errors(&e))).await;
        let result = result.unwrap_or_else(|e| Err(vec![format!("reload task failed: {e}")]));
        match &result {
            Ok(g) => info!(generation = g, "config reloaded (file change)"),
            Err(e) => error!(
                "reload after file change failed, keeping the old config:\n{}",
                e.join("\n")
            ),
        }
        backend.record_reload(&result);
        let new_files = watched_files(&control);
        if new_files != files {
            files = new_files;
            seen = fingerprint(&files);
        }
    }
}

impl Running {
    /// Reload now (as SIGHUP does); the result also shows on the status
    /// page and in the reload metrics.
    pub fn reload(&self) -> Result<u64, ConfigError> {
        let r = self.control.reload();
        self.backend
            .record_reload(&r.as_ref().map(|g| *g).map_err(reload_errors));
        r
    }

    /// Serve until SIGINT or SIGTERM; reload on SIGHUP. A reload runs on
    /// its own thread, so a stop signal never waits for it. With
    /// `[anycast]`, a stop first withdraws the routes and keeps answering
    /// for `anycast.drain` (lame duck); a second stop signal ends the drain.
    pub fn wait_for_signals(&self) -> anyhow::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let rt = self.rt.as_ref().context("runtime gone")?;
        rt.block_on(async {
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
            let mut running: Option<tokio::sync::oneshot::Receiver<Result<u64, ConfigError>>> =
                None;
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
                        let r = r.unwrap_or_else(|_| Err(ConfigError::Read {
                            path: self.control.config.clone(),
                            source: std::io::Error::other("the reload thread died"),
                        }));
                        self.backend.record_reload(&r.as_ref().map(|g| *g).map_err(reload_errors));
                        match r {
                            Ok(g) => info!(generation = g, "config reloaded (SIGHUP)"),
                            Err(e) => error!("reload failed, keeping the old config:\n{e}"),
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
            Ok::<(), std::io::Error>(())
        })?;
        Ok(())
    }

    /// Run a reload on its own thread (not the runtime's blocking pool,
    /// which shutdown would wait for).
    fn spawn_reload(&self) -> tokio::sync::oneshot::Receiver<Result<u64, ConfigError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let control = self.control.clone();
        let spawned = std::thread::Builder::new()
            .name("steerdns-reload".into())
            .spawn(move || {
                let _ = tx.send(control.reload());
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

    /// Stop answering and release every socket.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.backend.set_ready(false);
        self.shutdown.cancel();
        if let Some(Ok(x)) = self.xdp.take() {
            x.shutdown();
        }
        for u in self.udp.drain(..) {
            u.shutdown();
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// `steerdns serve`.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    // Before anything else (here rather than in `start`, so that processes
    // embedding the server, like the tests, keep their default signals).
    install_early_signal_handlers()?;
    let running = start(opts)?;
    running.wait_for_signals()?;
    running.stop();
    Ok(())
}
