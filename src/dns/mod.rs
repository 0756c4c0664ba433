//! DNS: wire parsing, the answer engine, and transports.

pub mod answer;
pub mod transport;
pub mod wire;
