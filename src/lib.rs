//! steerdns: an authoritative GeoDNS server and global load balancer.
#![warn(missing_docs)]

pub mod config;
pub mod dns;
pub mod geo;
pub mod health;
pub mod select;
pub mod snapshot;
pub mod zone;
