//! DNS transports: batched UDP worker threads and a tokio TCP listener.
//!
//! Transports know nothing about DNS semantics: they move bytes between
//! sockets and a [`Handler`].

use std::net::SocketAddr;

// The transport is a metric label too; metrics owns it so it stays a leaf.
pub use crate::metrics::Transport;

/// Answers raw queries. Implemented by the DNS answer engine; transports call
/// it from many threads at once.
pub trait Handler: Send + Sync + 'static {
    /// Answer the query in `query` from `client`, writing the response into
    /// `out` (cleared by the caller). Return `false` to send nothing (drop).
    fn handle(
        &self,
        query: &[u8],
        client: SocketAddr,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> bool;
}
