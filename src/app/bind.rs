//! Before anything runs: load the config (the first load) and bind every
//! listener, so the caller (the binary, or a test on its own runtime) holds
//! the sockets and their resolved addresses before serving starts.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tracing::info;

use super::Options;
use super::placement::{self, Placement};
use super::watch::{Fingerprint, fingerprint};
use crate::dns::{tcp, udp};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// The loaded config and the bound sockets, ready for [`serve`](super::serve).
pub struct Bound {
    pub(super) opts: Options,
    pub(super) snap: Snapshot,
    pub(super) metrics: Arc<Metrics>,
    /// UDP worker sockets and the TCP listener of each DNS address.
    pub(super) dns: Vec<(Vec<std::net::UdpSocket>, std::net::TcpListener)>,
    pub(super) http: std::net::TcpListener,
    pub(super) workers: usize,
    /// The config file's fingerprint before it was read.
    pub(super) config_seen: Fingerprint,
    /// Where the DNS and control threads run (`server.dns_cpus`).
    pub(super) placement: Placement,
}

impl Bound {
    /// UDP worker threads per DNS address (`server.udp_workers`, 0: one
    /// per core); the binary sizes its runtime by it.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The bound HTTP API address.
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }
}

/// Load the config and bind the HTTP API and every DNS address (UDP and
/// TCP). Needs no runtime.
pub fn bind(opts: &Options) -> anyhow::Result<Bound> {
    info!(config = %opts.config.display(), "starting");
    // Fingerprint before reading, so an edit racing the start is seen.
    let config_seen = fingerprint(std::slice::from_ref(&opts.config));
    let metrics = Arc::new(Metrics::new().context("creating metrics")?);
    let snap = crate::reload::first_load(&opts.config, &metrics)?;
    let settings = &snap.settings;
    let listen = if opts.dns_listen.is_empty() {
        settings.dns_listen.clone()
    } else {
        opts.dns_listen.clone()
    };
    anyhow::ensure!(!listen.is_empty(), "no DNS listen address configured");
    let workers = match settings.udp_workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // Read on the main thread before any other starts: the process's CPUs.
    let placement = Placement::plan(&settings.dns_cpus, &placement::allowed_cpus()?, workers)?;
    if placement.dns.is_some() {
        info!(dns = ?placement.dns, control = ?placement.control, "pinning threads (server.dns_cpus)");
    }
    let http_listen = opts.http_listen.unwrap_or(settings.http_listen);
    let http =
        crate::api::bind(http_listen).with_context(|| format!("binding HTTP API {http_listen}"))?;
    let dns = listen
        .into_iter()
        .map(|addr| bind_pair(addr, workers))
        .collect::<anyhow::Result<_>>()?;
    Ok(Bound {
        opts: opts.clone(),
        snap,
        metrics,
        dns,
        http,
        workers,
        config_seen,
        placement,
    })
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
