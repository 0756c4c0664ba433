//! Pulling a peer's verdicts over HTTP (hyper client, one fresh
//! connection per pull, one deadline over connect, request and body).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper::header;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::snapshot::cluster::Peer;

/// Path of the verdict exchange on every node.
pub const VERDICTS_PATH: &str = "/api/v1/cluster/verdicts";
/// `POST` here asks a node to pull its peers now (an admin state changed).
pub const POKE_PATH: &str = "/api/v1/cluster/poke";
/// Largest verdict message accepted (10,000 endpoints with their key
/// table take about 0.4 MB).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Fetch `peer`'s verdict message; `layout`: the key table we hold of it
/// (the peer then leaves its key table out when it is unchanged).
pub async fn pull(
    peer: &Peer,
    token: Option<&str>,
    layout: Option<u64>,
    timeout: Duration,
) -> Result<Bytes, String> {
    match tokio::time::timeout(timeout, pull_inner(peer, token, layout)).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout after {timeout:?}")),
    }
}

/// Ask `peer` to pull its peers now; best effort, bounded by `timeout`.
pub async fn poke(peer: &Peer, token: Option<&str>, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, request(peer, token, "POST", POKE_PATH.into())).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(format!("timeout after {timeout:?}")),
    }
}

async fn pull_inner(
    peer: &Peer,
    token: Option<&str>,
    layout: Option<u64>,
) -> Result<Bytes, String> {
    let path = match layout {
        Some(l) => format!("{VERDICTS_PATH}?layout={l:016x}"),
        None => VERDICTS_PATH.to_string(),
    };
    request(peer, token, "GET", path).await
}

async fn request(
    peer: &Peer,
    token: Option<&str>,
    method: &str,
    path: String,
) -> Result<Bytes, String> {
    let stream = TcpStream::connect((peer.host.as_str(), peer.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http: {e}"))?;
    // The connection task ends when the exchange is over or when this
    // future is dropped at its deadline (the sender goes, then the socket).
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let host = if peer.host.contains(':') {
        format!("[{}]:{}", peer.host, peer.port)
    } else {
        format!("{}:{}", peer.host, peer.port)
    };
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, host)
        .header(
            header::USER_AGENT,
            concat!("steerdns/", env!("CARGO_PKG_VERSION"), " (cluster)"),
        );
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("http: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("status {}", status.as_u16()));
    }
    let body = Limited::new(resp.into_body(), MAX_MESSAGE_BYTES)
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok(body.to_bytes())
}
