//! Shared helpers for the transport tests.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::transport::{Handler, Transport};

/// Test handler: by the first byte of the query,
/// - `0xFF` (or empty query): drop (return false);
/// - `0xFE`: answer with the client address as text, then the transport;
/// - `0xFD`: answer with 70 000 bytes (too large for UDP and TCP framing);
/// - `0xFC`: panic (a handler bug);
/// - anything else: echo the query with the QR bit set in byte 2.
pub(crate) struct EchoHandler;

impl Handler for EchoHandler {
    fn handle(
        &self,
        query: &[u8],
        client: SocketAddr,
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> bool {
        match query.first() {
            None | Some(0xFF) => false,
            Some(0xFE) => {
                out.extend_from_slice(format!("{client} {transport:?}").as_bytes());
                true
            }
            Some(0xFD) => {
                out.resize(70_000, 0);
                true
            }
            Some(0xFC) => panic!("test handler asked to panic"),
            Some(_) => {
                out.extend_from_slice(query);
                if let Some(flags) = out.get_mut(2) {
                    *flags |= 0x80;
                }
                true
            }
        }
    }
}

/// A fake 12-byte DNS header with message id `id` (keep `id < 0xFC00`) and
/// a few payload bytes.
pub(crate) fn query(id: u16) -> Vec<u8> {
    assert!(id < 0xFC00, "ids from 0xFC00 select special handler modes");
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(b"\x07example\x00");
    q
}

/// What [`EchoHandler`] answers to `query`.
pub(crate) fn expected_reply(query: &[u8]) -> Vec<u8> {
    let mut r = query.to_vec();
    r[2] |= 0x80;
    r
}

/// Poll `cond` until it holds or `timeout` passes; returns whether it held.
pub(crate) fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
