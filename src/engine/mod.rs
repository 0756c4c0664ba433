//! The answer engine: query bytes in, response bytes out, from one
//! snapshot. Wire parsing ([`wire`]), the one [`answer::answer`] that every
//! driver shares (transports, tests, `explain`, benchmarks, fuzzers), and
//! the protections around it ([`guard`]: RRL and cookies). No sockets.

pub mod answer;
pub(crate) mod guard;
pub mod wire;
