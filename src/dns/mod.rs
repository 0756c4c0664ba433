//! DNS transports: batched UDP worker threads, the TCP listener and its
//! fair slot sharing. They move bytes between sockets and a
//! [`transport::Handler`] and know nothing about DNS semantics.

pub mod tcp;
pub(crate) mod tcp_fair;
pub mod transport;
pub mod udp;

#[cfg(test)]
mod test_support;
