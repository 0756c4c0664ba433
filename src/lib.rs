//! steerdns: an authoritative GeoDNS server and global load balancer.
//!
//! The crate is a library first: the binary in `main.rs` only parses the
//! command line and calls [`app`]. See the README's architecture section for
//! how the modules depend on each other.
#![warn(missing_docs)]

pub mod anycast;
pub mod api;
pub mod app;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod cookie;
pub mod dns;
pub mod engine;
pub mod explain;
pub mod geo;
pub mod health;
pub mod metrics;
pub(crate) mod net;
pub mod probe;
pub mod reload;
pub mod rrl;
pub mod sdnotify;
pub mod select;
pub mod serving;
pub mod snapshot;
pub mod zone;
