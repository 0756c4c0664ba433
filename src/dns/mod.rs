//! DNS: wire parsing, the answer engine, and transports.

pub mod answer;
pub mod guard;
pub mod server;
pub mod tcp;
pub mod tcp_fair;
pub mod template;
pub mod transport;
pub mod udp;
pub mod wire;

#[cfg(test)]
mod test_support;
