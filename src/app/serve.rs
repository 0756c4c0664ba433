//! Serving over bound sockets (the mini-redis seam): [`serve_on`] puts the
//! DNS transports on the caller's runtime and the control plane on another
//! (the binary's two runtimes); [`serve`] puts both on the caller's, so
//! tests can serve on a paused-time runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::bind::Bound;
use super::placement::{self, Placement};
use super::watch::{fingerprint, watch_files, watched_files};
use crate::api::backend::{Reloader, SharedBackend};
use crate::api::{self, ApiBackend, ApiOptions};
use crate::dns::tcp::{self, TcpOptions};
use crate::dns::udp::{self, UdpServer};
use crate::metrics::Metrics;
use crate::probe::notify::{Notifier, NotifyOptions};
use crate::probe::{self as prober, HealthStatus, ProberOptions};
use crate::reload::{Control, error_lines};
use crate::serving::Shared;

/// A serving server: its addresses and state. Cancelling the token given
/// to [`serve`] (or [`Server::stop`]) stops it.
pub struct Server {
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
    pub(super) placement: Placement,
}

/// Start everything on the current runtime over `bound`'s sockets: the
/// prober, the cluster exchange, the HTTP API, the DNS transports (UDP on
/// their own threads, TCP on its event-loop thread), the file watch and the anycast gate;
/// then mark the server ready. Returns once all of it runs; it serves
/// until `shutdown` is cancelled. Config compiles still run on threads of
/// their own at a lower priority (see [`serve_on`]).
pub async fn serve(bound: Bound, shutdown: CancellationToken) -> anyhow::Result<Server> {
    serve_on(bound, tokio::runtime::Handle::current(), shutdown).await
}

/// [`serve`], with the DNS over TCP on the current runtime and the control
/// plane (prober, cluster exchange, HTTP API, webhooks, file watch, anycast
/// gate, reloads) on `control`, so that a busy control plane competes with
/// DNS only at the control runtime's priority and on its CPUs.
pub async fn serve_on(
    bound: Bound,
    control: tokio::runtime::Handle,
    shutdown: CancellationToken,
) -> anyhow::Result<Server> {
    let Bound {
        opts,
        snap,
        metrics,
        dns,
        http,
        workers,
        config_seen,
        placement,
    } = bound;
    let settings = snap.settings.clone();
    // Every task spawned (and listener registered) in this scope lives on
    // the control runtime; no await while it is entered.
    let ctl = control.enter();
    let mut server = start_state(
        Shared::new(snap, metrics),
        opts.config,
        placement,
        &shutdown,
    );
    // HTTP API first: /readyz answers 503 until the DNS transports run.
    server.http_addr = serve_http(&server, http, settings.api_token.clone(), &shutdown)?;
    drop(ctl);
    let tcp_opts = TcpOptions {
        idle_timeout: settings.tcp_idle_timeout,
        max_connections: settings.tcp_max_connections,
        max_per_client: settings.tcp_max_per_client,
        busy_idle_timeout: settings.tcp_busy_idle_timeout,
        ..TcpOptions::default()
    };
    // The DNS threads (UDP workers, the TCP loop) inherit this thread's
    // CPUs: the DNS ones when pinned.
    server.placement.enter_dns();
    let mut tcp_listeners = Vec::with_capacity(dns.len());
    for (sockets, listener) in dns {
        serve_dns(&mut server, sockets, workers)?;
        let tcp_local = listener.local_addr()?;
        info!("listening proto=tcp addr={tcp_local}");
        server.tcp_addrs.push(tcp_local);
        tcp_listeners.push(listener);
    }
    // One TCP loop for every listener, so the connection limits count
    // them together.
    let tcp_loop = tcp::spawn_tcp(tcp_listeners, server.shared.clone(), tcp_opts.clone())
        .context("starting the DNS TCP loop")?;
    tokio::spawn(tcp::stop_when_cancelled(tcp_loop, shutdown.clone()));
    if let Some(interface) = &settings.xdp_interface {
        let started = crate::xdp::start(
            interface,
            &server.udp_addrs,
            server.shared.clone(),
            settings.xdp_coalesce,
        );
        if let Err(e) = &started {
            error!("AF_XDP listener refused to start: {e}; answering through the sockets only");
        }
        server.xdp = Some(started);
    }
    let _ctl = control.enter();
    if let Some(Ok(x)) = &server.xdp {
        tokio::spawn(carry_xdp(
            x.stats_reader(),
            server.shared.metrics.clone(),
            shutdown.clone(),
        ));
    }
    tokio::spawn(carry_drops(
        server.udp.iter().map(UdpServer::stats_reader).collect(),
        tcp_opts.limit_drops.clone(),
        server.shared.metrics.clone(),
        shutdown.clone(),
    ));
    if !settings.watch_interval.is_zero() {
        let files = watched_files(&server.control);
        let mut seen = fingerprint(&files);
        seen[0] = config_seen[0];
        tokio::spawn(watch_files(
            server.control.clone(),
            server.placement.clone(),
            (files, seen),
            settings.watch_interval,
            shutdown.clone(),
        ));
    }
    if let Some(a) = settings.anycast.clone() {
        // After the listeners: the self-check asks them.
        let exe = crate::anycast::guard_executable().context("anycast guard")?;
        let handle = crate::anycast::start(
            a,
            server.shared.clone(),
            &server.udp_addrs,
            exe,
            shutdown.clone(),
        )?;
        server.backend.set_anycast(handle.clone());
        server.anycast = Some(handle);
    }
    server.backend.set_ready(true);
    crate::sdnotify::notify_ready();
    Ok(server)
}

/// The state around the snapshot holder: health, the notifier, reload
/// control, the cluster exchange and the prober (both started), and the
/// API backend recording every reload. No listener yet.
fn start_state(
    shared: Arc<Shared>,
    config: std::path::PathBuf,
    placement: Placement,
    shutdown: &CancellationToken,
) -> Server {
    crate::serving::labels::sync_health(&shared.metrics, &shared.current.load());
    let health = Arc::new(HealthStatus::default());
    let (generations, generations_rx) = tokio::sync::watch::channel(1u64);
    let notifier = {
        let snap = shared.current.load();
        Notifier::spawn(
            NotifyOptions {
                webhooks: snap.notify.webhooks.clone(),
                queue_size: snap.notify.queue_size,
                attempts: snap.notify.attempts,
                timeout: Duration::from_secs(5),
                node: snap.settings.node_name.clone(),
            },
            shutdown.clone(),
        )
    };
    let control = Arc::new(Control::new(
        shared.clone(),
        health.clone(),
        notifier.clone(),
        generations,
        config,
    ));
    // Peers' verdicts, quorum, drain: the prober writes health through it.
    let cluster = crate::cluster::Cluster::new(shared.clone(), health.clone());
    tokio::spawn(cluster.clone().run(shutdown.clone()));
    tokio::spawn(prober::run(
        shared.clone(),
        health.clone(),
        Some(notifier),
        generations_rx,
        ProberOptions {
            max_concurrency: shared.current.load().settings.max_concurrent_probes,
        },
        shutdown.clone(),
    ));
    let reloader: Reloader = {
        // The backend records API reloads itself; it calls this on a
        // control-plane blocking thread.
        let c = control.clone();
        let p = placement.clone();
        Box::new(move || placement::compile(&p, || c.swap()).map_err(|e| error_lines(&e)))
    };
    let backend = Arc::new(
        SharedBackend::new(shared.clone(), shared.metrics.clone(), reloader)
            .with_health(health.clone()),
    );
    {
        let b = backend.clone();
        control.set_recorder(Box::new(move |r| {
            b.record_reload(r);
        }));
    }
    Server {
        udp_addrs: Vec::new(),
        tcp_addrs: Vec::new(),
        http_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        shared,
        health,
        control,
        backend,
        cluster,
        anycast: None,
        xdp: None,
        udp: Vec::new(),
        shutdown: shutdown.clone(),
        placement,
    }
}

/// Serve the HTTP API on `http`; its address.
fn serve_http(
    server: &Server,
    http: std::net::TcpListener,
    token: Option<String>,
    shutdown: &CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let http_addr = http.local_addr()?;
    let backend: Arc<dyn ApiBackend> = server.backend.clone();
    let api_opts = ApiOptions {
        token,
        listen: http_addr,
    };
    let l = tokio::net::TcpListener::from_std(http)
        .with_context(|| format!("HTTP listener {http_addr}"))?;
    tokio::spawn(api::serve_with_cluster(
        l,
        backend,
        api_opts,
        Some(server.cluster.clone()),
        shutdown.clone(),
    ));
    info!("listening proto=http addr={http_addr}");
    Ok(http_addr)
}

/// Answer UDP on one DNS address: worker threads on `sockets`.
fn serve_dns(
    server: &mut Server,
    sockets: Vec<std::net::UdpSocket>,
    workers: usize,
) -> anyhow::Result<()> {
    let local = sockets[0].local_addr()?;
    let place = server.placement.clone();
    let on_start: udp::OnStart = Arc::new(move |i| {
        if let Some(cpu) = place.udp_cpu(i)
            && let Err(e) = placement::pin_current(&[cpu])
        {
            tracing::warn!("pinning UDP worker {i} to CPU {cpu}: {e}");
        }
    });
    server.udp.push(
        udp::spawn_udp_with(sockets, server.shared.clone(), on_start)
            .context("starting UDP workers")?,
    );
    info!("listening proto=udp addr={local} workers={workers}");
    server.udp_addrs.push(local);
    Ok(())
}

/// UDP workers count oversize datagrams and TCP listeners refused
/// connections themselves (no metrics on their loops); carry the deltas
/// into the metrics every second.
async fn carry_drops(
    readers: Vec<udp::UdpStatsReader>,
    tcp_limit: Arc<std::sync::atomic::AtomicU64>,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) {
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
}

/// The AF_XDP workers count frames themselves (no metrics on their loops),
/// the XDP program counts what it passes in a map; carry the totals into
/// `steerdns_xdp_frames_total{result}` every second.
async fn carry_xdp(
    reader: crate::xdp::XdpStatsReader,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) {
    let families = [
        (
            "steerdns_xdp_frames_total",
            "Frames of the AF_XDP listener, by result: received (taken off the receive rings), answered (replies sent), malformed, declined (the handler sent nothing), too_big (reply over the MTU), tx_full (no room on the transmit ring), passed (given to the kernel by the XDP program: not UDP to a listen address and port, or not parsed by it).",
            "result",
        ),
        (
            "steerdns_xdp_waits_total",
            "Waits of the AF_XDP workers, by kind: poll (blocked until the next packet woke them), coalesce (slept server.xdp_coalesce under load so that queries gather).",
            "kind",
        ),
    ]
    .map(|(name, help, label)| {
        let family = prometheus::IntCounterVec::new(prometheus::Opts::new(name, help), &[label])?;
        if let Err(e) = metrics.registry().register(Box::new(family.clone())) {
            info!(error = %e, "xdp metrics not registered");
        }
        Ok::<_, prometheus::Error>(family)
    });
    let (family, wakeups) = match families {
        [Ok(f), Ok(w)] => (f, w),
        [Err(e), _] | [_, Err(e)] => {
            error!("xdp metrics: {e}");
            return;
        }
    };
    let counters = [
        "received",
        "answered",
        "malformed",
        "declined",
        "too_big",
        "tx_full",
        "passed",
    ]
    .map(|r| family.with_label_values(&[r]))
    .into_iter()
    .chain(["poll", "coalesce"].map(|k| wakeups.with_label_values(&[k])))
    .collect::<Vec<_>>();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let s = reader.stats();
        let now = [
            s.received,
            s.answered,
            s.dropped_malformed,
            s.dropped_by_handler,
            s.dropped_too_big,
            s.dropped_tx_full,
            s.passed,
            s.polls,
            s.coalesced,
        ];
        for (c, n) in counters.iter().zip(now) {
            // Counters only grow; the workers' totals do too.
            c.inc_by(n.saturating_sub(c.get()));
        }
    }
}

impl Server {
    /// Reload now (as SIGHUP does); the result also shows on the status
    /// page and in the reload metrics.
    pub fn reload(&self) -> Result<u64, crate::config::ConfigError> {
        self.control.reload()
    }

    /// Stop answering: not ready, every task told to stop, the UDP worker
    /// threads joined. Idempotent.
    pub fn stop(&mut self) {
        self.backend.set_ready(false);
        self.shutdown.cancel();
        if let Some(Ok(x)) = self.xdp.take() {
            x.shutdown();
        }
        for u in self.udp.drain(..) {
            u.shutdown();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
