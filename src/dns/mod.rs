//! DNS: wire parsing, the answer engine, and transports.

pub mod transport;
