//! TCP connect (shared by every TCP-based check) and the TCP check itself.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::{Fail, Phase, PhaseName, ProbeErrorKind, Target};

/// The TCP check: connect, then close.
pub(super) async fn probe(target: Target<'_>, phase: &Phase) -> Result<String, Fail> {
    let stream = connect(target.addr, phase).await?;
    drop(stream);
    Ok("connected".to_string())
}

/// Connect to `addr`, classifying failures.
pub(super) async fn connect(addr: SocketAddr, phase: &Phase) -> Result<TcpStream, Fail> {
    phase.set(PhaseName::Connect);
    let stream = TcpStream::connect(addr).await.map_err(connect_error)?;
    // Small request, then reads: no reason to wait for Nagle.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// ECONNREFUSED is `Refused`; everything else `Connect`.
pub(super) fn connect_error(e: io::Error) -> Fail {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        Fail::new(ProbeErrorKind::Refused, "connect refused")
    } else {
        Fail::new(ProbeErrorKind::Connect, format!("connect: {e}"))
    }
}

/// An I/O error after the connection is up.
pub(super) fn io_error(what: &str, e: &io::Error) -> Fail {
    match e.kind() {
        io::ErrorKind::ConnectionReset => {
            Fail::new(ProbeErrorKind::Io, format!("io: connection reset ({what})"))
        }
        io::ErrorKind::BrokenPipe => {
            Fail::new(ProbeErrorKind::Io, format!("io: broken pipe ({what})"))
        }
        _ => Fail::new(ProbeErrorKind::Io, format!("io: {what}: {e}")),
    }
}
