//! Integration tests: the real server on loopback ephemeral ports, queried
//! with hickory-proto messages over real UDP and TCP sockets; the API with
//! a fake backend; allocation counts; the fuzz corpus. One binary (one
//! link), on the shared support layer in `tests/support`.

#[path = "../support/mod.rs"]
mod support;

mod backends;
mod harness;

mod answer_alloc;
mod anycast;
mod api;
mod cli;
mod cluster;
mod cookies;
mod dns_basics;
mod ecs;
mod edns;
mod engine;
mod fuzz_corpus;
mod geo_db;
mod health;
mod malformed;
mod metrics_alloc;
mod ops;
mod ops_hardening;
mod protocol;
mod reload;
mod rrl;
mod serving_alloc;
mod signals;
mod steering;
mod tcp_fair;
mod xdp;
