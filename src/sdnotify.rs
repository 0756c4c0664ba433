//! systemd readiness (`Type=notify`): tell the service manager we serve.
//!
//! The protocol is one datagram (`READY=1`) to the Unix socket named by
//! `$NOTIFY_SOCKET` (a path, or an abstract name starting with `@`). Without
//! the variable (not started by systemd) nothing happens.

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;

/// Send `READY=1` to `$NOTIFY_SOCKET` if set. Errors are logged, never fatal.
pub fn notify_ready() {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        if let Err(e) = notify(&path, "READY=1") {
            tracing::warn!("sd_notify to {}: {e}", path.to_string_lossy());
        } else {
            tracing::debug!("sd_notify READY=1 sent");
        }
    }
}

/// Send `msg` to the notify socket `path`.
pub fn notify(path: &OsStr, msg: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(msg.as_bytes(), &addr)?;
    } else {
        sock.send_to(msg.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ready_reaches_a_listening_socket() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify.sock");
        let rx = std::os::unix::net::UnixDatagram::bind(&p).unwrap();
        super::notify(p.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(super::notify(dir.path().join("none").as_os_str(), "READY=1").is_err());
    }
}
