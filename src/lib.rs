//! steerdns: an authoritative GeoDNS server and global load balancer.
#![warn(missing_docs)]

pub mod dns;
pub mod geo;
