//! Wiring, one step per file: [`bind`] loads the config and binds every
//! socket (no runtime needed), [`serve`] starts everything on the caller's
//! runtime over those sockets, `watch` reloads on file changes, `signals`
//! reloads on SIGHUP and stops on SIGINT/SIGTERM. Loads and reloads go
//! through [`crate::reload`]. [`start`] does it all on a runtime of its own,
//! for embedding (tests, examples).

mod bind;
mod serve;
mod signals;
mod watch;

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

pub use self::bind::{Bound, bind};
pub use self::serve::{Server, serve};
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

/// The runtime the server runs on: `workers` (the UDP worker count) async
/// workers, at most 4.
pub fn runtime(workers: usize) -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.clamp(1, 4))
        .thread_name("steerdns-rt")
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A [`Server`] on a runtime of its own; dereferences to the server.
pub struct Running {
    server: Option<Server>,
    rt: Option<Runtime>,
}

/// Load the config, bind every listener and start answering, on a runtime
/// of its own.
pub fn start(opts: &Options) -> anyhow::Result<Running> {
    let bound = bind(opts)?;
    let rt = runtime(bound.workers())?;
    let server = rt.block_on(serve(bound, CancellationToken::new()))?;
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
        rt.block_on(self.deref().wait_for_signals())?;
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
