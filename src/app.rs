//! Wiring: load the config, bind sockets, start transports, reload on
//! SIGHUP, stop on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::{self, ConfigError};
use crate::dns::server::Shared;
use crate::dns::tcp::{self, TcpOptions};
use crate::dns::udp::{self, UdpServer};
use crate::health::notify::{Notifier, NotifyOptions};
use crate::health::prober::{self, HealthStatus, ProberOptions};
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
    let (source, file) = config::load(path)?;
    snapshot::build(&source, &file, generation)
}

/// A running server.
pub struct Running {
    /// Bound UDP addresses (ports resolved).
    pub udp_addrs: Vec<SocketAddr>,
    /// Bound TCP addresses (ports resolved).
    pub tcp_addrs: Vec<SocketAddr>,
    /// The snapshot holder.
    pub shared: Arc<Shared>,
    /// What the prober knows about each probed endpoint.
    pub health: Arc<HealthStatus>,
    notifier: Option<Notifier>,
    generations: tokio::sync::watch::Sender<u64>,
    config: PathBuf,
    generation: AtomicU64,
    reload_lock: std::sync::Mutex<()>,
    udp: Vec<UdpServer>,
    shutdown: CancellationToken,
    rt: Option<Runtime>,
}

/// Load the config, bind every listener and start answering.
pub fn start(opts: &Options) -> anyhow::Result<Running> {
    let snap = load_snapshot(&opts.config, 1)?;
    let settings = snap.settings.clone();
    let listen = if opts.dns_listen.is_empty() {
        settings.dns_listen.clone()
    } else {
        opts.dns_listen.clone()
    };
    anyhow::ensure!(!listen.is_empty(), "no DNS listen address configured");
    let shared = Shared::new(snap);
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
    rt.spawn(prober::run(
        shared.clone(),
        health.clone(),
        Some(notifier.clone()),
        generations_rx,
        ProberOptions::default(),
        shutdown.clone(),
    ));
    let mut running = Running {
        udp_addrs: Vec::new(),
        tcp_addrs: Vec::new(),
        shared: shared.clone(),
        health,
        notifier: Some(notifier),
        generations,
        config: opts.config.clone(),
        generation: AtomicU64::new(1),
        reload_lock: std::sync::Mutex::new(()),
        udp: Vec::new(),
        shutdown: shutdown.clone(),
        rt: None,
    };
    let tcp_opts = TcpOptions {
        idle_timeout: settings.tcp_idle_timeout,
        max_connections: settings.tcp_max_connections,
    };
    for addr in listen {
        let sockets =
            udp::bind_udp(addr, workers).with_context(|| format!("binding UDP {addr}"))?;
        let local = sockets[0].local_addr()?;
        // Bind TCP on the port UDP got, so port 0 gives one port for both.
        let tcp_addr = SocketAddr::new(addr.ip(), local.port());
        let listener =
            tcp::bind_tcp(tcp_addr).with_context(|| format!("binding TCP {tcp_addr}"))?;
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
    running.rt = Some(rt);
    Ok(running)
}

impl Running {
    /// Re-read the config and swap it in; on any error the old config keeps
    /// serving and the error is returned.
    pub fn reload(&self) -> Result<u64, ConfigError> {
        // One reload at a time (SIGHUP and the API may race).
        let _one = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let snap = load_snapshot(&self.config, generation)?;
        // Health carries over for endpoints whose probe did not change.
        self.health.seed(&snap);
        if let Some(n) = &self.notifier {
            n.set_urls(snap.notify.urls.clone());
        }
        self.shared.current.store(Arc::new(snap));
        self.generation.store(generation, Ordering::Relaxed);
        let _ = self.generations.send(generation);
        Ok(generation)
    }

    /// Serve until SIGINT or SIGTERM; reload on SIGHUP.
    pub fn wait_for_signals(&self) -> anyhow::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let rt = self.rt.as_ref().context("runtime gone")?;
        rt.block_on(async {
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            let mut hup = signal(SignalKind::hangup())?;
            loop {
                tokio::select! {
                    _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
                    _ = int.recv() => { info!("SIGINT: shutting down"); break; }
                    _ = hup.recv() => match self.reload() {
                        Ok(g) => info!(generation = g, "config reloaded"),
                        Err(e) => error!("reload failed, keeping the old config:\n{e}"),
                    },
                }
            }
            Ok::<(), std::io::Error>(())
        })?;
        Ok(())
    }

    /// Stop answering and release every socket.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.shutdown.cancel();
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
    let running = start(opts)?;
    if opts.http_listen.is_some() {
        info!("the HTTP API is not built yet; --http-listen is accepted and ignored");
    }
    running.wait_for_signals()?;
    running.stop();
    Ok(())
}
