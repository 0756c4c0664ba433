//! Test support shared by the integration tests: one copy of the
//! scaffolding every test needs.
//!
//! - [`wait`]: the one bounded wait on a real condition;
//! - [`wire`]: DNS queries, as hickory messages or raw bytes, and the UDP
//!   and TCP exchanges that carry them;
//! - [`http`]: a small HTTP/1.1 client for the API;
//! - [`scrape`]: `/metrics` parsed with `prometheus-parse`;
//! - [`alloc`]: the counting global allocator;
//! - [`logs`]: the in-process server's tracing output, printed when a test
//!   fails;
//! - [`daemon`]: the real binary as a child process, its log collected;
//! - [`skip`]: a test that cannot run here says so on stderr.
//!
//! The fake backends (HTTP(S), DNS) are `tests/integration/backends.rs`,
//! the in-process server harness `tests/integration/harness.rs`, which
//! re-exports this layer's everyday helpers.
//!
//! Included with `#[path]` by a test binary (`tests/integration/main.rs`);
//! self-contained, so another binary can include it too.

// A binary uses only part of it.
#![allow(dead_code)]

pub mod alloc;
pub mod daemon;
pub mod http;
pub mod logs;
pub mod scrape;
pub mod skip;
pub mod wait;
pub mod wire;

use std::path::{Path, PathBuf};

/// A path inside the repository (`config/example.toml`, `geoip/...`).
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}
