//! Wiring, one step per file: [`bind`] loads the config and binds every
//! socket (no runtime needed), [`serve`] starts everything on the caller's
//! runtime over those sockets, `watch` reloads on file changes, `signals`
//! reloads on SIGHUP and stops on SIGINT/SIGTERM. Loads and reloads go
//! through [`crate::reload`]. [`start`] does it all on a runtime of its own,
//! for embedding (tests, examples). [`runtimes`] builds the two runtimes
//! the binary serves on: the DNS one (the serving loop, signals) and the
//! control plane's (`placement`).

mod bind;
mod placement;
mod serve;
mod signals;
mod watch;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

pub use self::bind::{Bound, bind};
pub use self::serve::{Server, serve, serve_on};
pub use crate::reload::{Control, load_snapshot, load_snapshot_with};

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

/// Catch SIGHUP, SIGTERM and SIGINT from now on (before the config is
/// read), so that a signal during startup is acted on once serving, not
/// fatal. Call it first in a process that serves; processes embedding the
/// server (the tests) keep their default signals by not calling it.
pub fn install_signal_handlers() -> anyhow::Result<()> {
    signals::install_early_signal_handlers()
}

/// The two runtimes a server runs on (see [`runtimes`]).
pub struct Runtimes {
    /// The caller's side: signals and stopping the transports (UDP and TCP
    /// answer on threads of their own); one thread named `dns-rt`, at
    /// normal priority, on the DNS CPUs when pinned.
    pub dns: Runtime,
    /// The control plane: prober, API, cluster exchange, file watch,
    /// webhooks, anycast, reloads. Two threads named `steerdns-ctl` (and
    /// its blocking pool), nice 10, on the other CPUs when pinned.
    pub control: Runtime,
}

/// Build the runtimes for `bound` (its worker count and placement).
pub fn runtimes(bound: &Bound) -> anyhow::Result<Runtimes> {
    let dns_place = bound.placement.clone();
    let dns = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(placement::DNS_THREAD)
        .on_thread_start(move || dns_place.enter_dns())
        .enable_all()
        .build()
        .context("starting the DNS runtime")?;
    let ctl_place = bound.placement.clone();
    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(placement::CONTROL_THREAD)
        .on_thread_start(move || ctl_place.enter_control())
        .enable_all()
        .build()
        .context("starting the control runtime")?;
    Ok(Runtimes { dns, control })
}

impl Runtimes {
    /// Stop both, waiting up to `timeout` each for their tasks.
    pub fn shutdown_timeout(self, timeout: Duration) {
        self.dns.shutdown_timeout(timeout);
        self.control.shutdown_timeout(timeout);
    }
}

/// A [`Server`] on runtimes of its own; dereferences to the server.
pub struct Running {
    server: Option<Server>,
    rt: Option<Runtimes>,
}

/// Load the config, bind every listener and start answering, on a runtime
/// of its own.
pub fn start(opts: &Options) -> anyhow::Result<Running> {
    let bound = bind(opts)?;
    let rt = runtimes(&bound)?;
    let control = rt.control.handle().clone();
    let server = rt
        .dns
        .block_on(serve_on(bound, control, CancellationToken::new()))?;
    Ok(Running {
        server: Some(server),
        rt: Some(rt),
    })
}

impl Deref for Running {
    type Target = Server;
    fn deref(&self) -> &Server {
        self.server.as_ref().expect("running until stopped")
    }
}

impl DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Server {
        self.server.as_mut().expect("running until stopped")
    }
}

impl Running {
    /// Serve until SIGINT or SIGTERM (see [`Server::wait_for_signals`]).
    pub fn wait_for_signals(&self) -> anyhow::Result<()> {
        let rt = self.rt.as_ref().context("runtime gone")?;
        rt.dns.block_on(self.deref().wait_for_signals())?;
        Ok(())
    }

    /// Stop answering and release every socket.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop();
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
