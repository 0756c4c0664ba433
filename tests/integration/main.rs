//! Integration tests: the real server on loopback ephemeral ports, queried
//! with hickory-proto messages over real UDP and TCP sockets. One binary.

mod backends;
mod harness;

mod anycast;
mod cli;
mod cluster;
mod cookies;
mod dns_basics;
mod ecs;
mod edns;
mod engine;
mod geo_db;
mod health;
mod malformed;
mod ops;
mod ops_hardening;
mod protocol;
mod reload;
mod rrl;
mod signals;
mod steering;
mod tcp_fair;
mod xdp;
