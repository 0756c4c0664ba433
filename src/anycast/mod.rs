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
//! - `gate`: starting the gate ([`start`], [`Handle`]) and the self-check
//!   loop.
//! - `runner`: the decision loop and the guard process it drives.
//! - `status`: [`AnycastStatus`], the state shown by the API and CLI.
//! - `metrics`: the anycast Prometheus series.
//!
//! This module reads the serving state ([`Shared`]) and sends DNS queries
//! over the network like any client; it knows nothing of the transports.
//! See docs/anycast.md for the design and why it is safe.

pub mod bird;
pub mod cli;
mod gate;
pub mod guard;
pub(crate) mod machine;
mod metrics;
mod runner;
pub(crate) mod selfcheck;
mod status;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::snapshot::anycast::AnycastSettings;
pub use gate::{AnycastError, Handle, start};
pub use status::{AnycastStatus, SelfCheck};

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn status_prefixes(s: &AnycastSettings) -> Vec<String> {
    s.prefixes.iter().map(ToString::to_string).collect()
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
