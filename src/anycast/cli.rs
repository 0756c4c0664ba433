//! `steerdns anycast status`: ask a running server's API for the gate's
//! state and print it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::AnycastStatus;

/// Errors fetching the status.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No connection, or it broke.
    #[error("API {addr}: {source}")]
    Io {
        /// The API address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The server answered, but not with the anycast state.
    #[error("API {addr}: {msg}")]
    Bad {
        /// The API address.
        addr: SocketAddr,
        /// What came back.
        msg: String,
    },
}

/// `GET /api/v1/anycast` from the API at `addr`.
pub fn fetch_status(addr: SocketAddr, timeout: Duration) -> Result<AnycastStatus, FetchError> {
    let io = |source| FetchError::Io { addr, source };
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        s,
        "GET /api/v1/anycast HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut body = Vec::new();
    s.take(4 << 20).read_to_end(&mut body).map_err(io)?;
    let text = String::from_utf8_lossy(&body);
    let (head, json) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or_default();
    if status_line.contains(" 404") {
        return Err(FetchError::Bad {
            addr,
            msg: "anycast is not configured on this server".into(),
        });
    }
    if !status_line.contains(" 200") {
        return Err(FetchError::Bad {
            addr,
            msg: format!("unexpected reply {status_line:?}"),
        });
    }
    serde_json::from_str(json).map_err(|e| FetchError::Bad {
        addr,
        msg: format!("bad JSON: {e}"),
    })
}

/// A human-readable report of `s`.
pub fn format_status(s: &AnycastStatus) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "prefixes     {}", s.prefixes.join(", "));
    let _ = writeln!(
        out,
        "bird         {} (protocol {} on {})",
        if s.announced {
            "ANNOUNCED"
        } else {
            "WITHDRAWN"
        },
        s.bird_protocols.join(", "),
        s.bird_socket
    );
    let _ = writeln!(out, "state        {} since {}", s.state, s.since);
    if let Some(r) = &s.reason {
        let _ = writeln!(out, "reason       {r}");
    }
    if let Some(e) = &s.bird_error {
        let _ = writeln!(out, "bird error   {e}");
    }
    let _ = writeln!(
        out,
        "self-checks  {} ok, {} failed",
        s.self_checks_ok, s.self_checks_failed
    );
    if let Some(c) = &s.last_self_check {
        let _ = writeln!(
            out,
            "last check   {} at {}{}",
            if c.ok { "ok" } else { "FAILED" },
            c.at,
            c.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "guard        {}",
        s.guard_pid
            .map_or_else(|| "not running".to_string(), |p| format!("pid {p}"))
    );
    let _ = writeln!(
        out,
        "hold-down    {} s, drain {} s",
        s.hold_down_secs, s.drain_secs
    );
    out
}
