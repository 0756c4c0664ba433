//! DNS: wire parsing, the answer engine, and transports.

pub mod tcp;
pub mod transport;
pub mod udp;

#[cfg(test)]
mod test_support;
