//! Webhook notifier: health changes POSTed as JSON to configured URLs, from
//! a bounded queue, with retries. The prober never waits for it: when the
//! queue is full, events are dropped and counted.
//!
//! Delivery uses the health checks' HTTP client (hyper, bounded response
//! head, rustls for `https://`), with optional extra headers and a bearer
//! token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, HeaderMap, HeaderValue, USER_AGENT,
};
use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::check::client::{self, Exchange, Seen};
use super::check::{Phase, tls};
use crate::health::state::Verdict;
pub use crate::health::webhook::{WebhookUrl, Webhooks, parse_webhook_url, validate_header};

/// One health change.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event {
    /// `endpoint_up`, `endpoint_down`, `pool_up`, `pool_down`.
    pub event: &'static str,
    /// The pool.
    pub pool: String,
    /// The endpoint (endpoint events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Previous verdict (endpoint events only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<&'static str>,
    /// Why (endpoint events only): the probe's result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix time.
    pub at: u64,
    /// The node that saw it (filled in by the notifier).
    pub node: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Event {
    /// An endpoint changed verdict.
    pub fn endpoint(pool: &str, endpoint: &str, old: Verdict, new: Verdict, reason: &str) -> Event {
        Event {
            event: if new == Verdict::Down {
                "endpoint_down"
            } else {
                "endpoint_up"
            },
            pool: pool.into(),
            endpoint: Some(endpoint.into()),
            old: Some(old.as_str()),
            reason: Some(reason.into()),
            at: now(),
            node: String::new(),
        }
    }

    /// A pool became usable or unusable.
    pub fn pool(pool: &str, usable: bool) -> Event {
        Event {
            event: if usable { "pool_up" } else { "pool_down" },
            pool: pool.into(),
            endpoint: None,
            old: None,
            reason: None,
            at: now(),
            node: String::new(),
        }
    }
}

impl WebhookUrl {
    /// The `Host` header: the host, bracketed if IPv6, with the port when it
    /// is not the scheme's default.
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Notifier settings.
#[derive(Debug, Clone)]
pub struct NotifyOptions {
    /// Targets and how to reach them.
    pub webhooks: Webhooks,
    /// Queue length.
    pub queue_size: usize,
    /// Attempts per event and URL.
    pub attempts: u32,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Node name put into events.
    pub node: String,
}

/// Handle to the notifier task.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Event>,
    node: Arc<str>,
    dropped: Arc<AtomicU64>,
    webhooks: Arc<ArcSwap<Webhooks>>,
}

impl Notifier {
    /// Start the delivery task.
    pub fn spawn(opts: NotifyOptions, shutdown: CancellationToken) -> Notifier {
        let (tx, rx) = mpsc::channel(opts.queue_size.max(1));
        let node: Arc<str> = Arc::from(opts.node.as_str());
        let webhooks = Arc::new(ArcSwap::from_pointee(opts.webhooks.clone()));
        tokio::spawn(deliver(rx, webhooks.clone(), opts, shutdown));
        Notifier {
            tx,
            node,
            dropped: Arc::new(AtomicU64::new(0)),
            webhooks,
        }
    }

    /// Replace the targets and their settings (on reload).
    pub fn set_webhooks(&self, webhooks: Webhooks) {
        self.webhooks.store(Arc::new(webhooks));
    }

    /// Queue an event; drops it (and counts) when the queue is full.
    pub fn send(&self, mut e: Event) {
        e.node = self.node.to_string();
        if self.tx.try_send(e).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn deliver(
    mut rx: mpsc::Receiver<Event>,
    webhooks: Arc<ArcSwap<Webhooks>>,
    opts: NotifyOptions,
    shutdown: CancellationToken,
) {
    loop {
        let e = tokio::select! {
            () = shutdown.cancelled() => return,
            e = rx.recv() => match e { Some(e) => e, None => return },
        };
        let body = match serde_json::to_vec(&e) {
            Ok(b) => Bytes::from(b),
            Err(_) => continue,
        };
        let hooks = webhooks.load_full();
        for target in &hooks.urls {
            let url = target.url.as_str();
            let mut backoff = Duration::from_millis(500);
            for attempt in 1..=opts.attempts.max(1) {
                match tokio::time::timeout(opts.timeout, post(&hooks, target, body.clone())).await {
                    Ok(Ok(())) => break,
                    Ok(Err(err)) if attempt == opts.attempts.max(1) => {
                        warn!(url, event = e.event, "webhook failed, giving up: {err}");
                    }
                    Err(_) if attempt == opts.attempts.max(1) => {
                        warn!(url, event = e.event, "webhook timed out, giving up");
                    }
                    _ => {
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        }
    }
}

/// One POST of `body` to `target`, on the probes' HTTP client.
async fn post(hooks: &Webhooks, target: &WebhookUrl, body: Bytes) -> Result<(), String> {
    let authority = target.authority();
    let mut headers = HeaderMap::with_capacity(5 + hooks.headers.len());
    headers.append(HOST, client::header_value("Host", &authority)?);
    headers.append(
        USER_AGENT,
        HeaderValue::from_static(concat!("steerdns/", env!("CARGO_PKG_VERSION"))),
    );
    headers.append(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.append(CONNECTION, HeaderValue::from_static("close"));
    if let Some(t) = &hooks.bearer_token {
        headers.append(
            AUTHORIZATION,
            client::header_value("Authorization", &format!("Bearer {t}"))?,
        );
    }
    for (name, value) in &hooks.headers {
        headers.append(
            client::header_name(name)?,
            client::header_value(name, value)?,
        );
    }
    let req = client::request("POST", &target.path, headers, body)?;
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let phase = Phase::default();
    let status = if target.https {
        let config = hooks
            .tls
            .clone()
            .ok_or("no TLS configuration for an https:// webhook")?;
        // Validated by parse_webhook_url.
        let name = ServerName::try_from(target.host.clone())
            .map_err(|_| format!("{:?} is not a valid TLS server name", target.host))?;
        let tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| tls::handshake_error(&e).detail)?;
        status_of(tls, req, &phase).await?
    } else {
        status_of(tcp, req, &phase).await?
    };
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// Send `req` and return the response status; the body is not read.
async fn status_of<S>(io: S, req: hyper::Request<Full<Bytes>>, phase: &Phase) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let seen = Seen::default();
    let (_conn, resp) = Exchange::start(io, req, phase, &seen)
        .await
        .map_err(|f| f.detail)?;
    Ok(resp.status().as_u16())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::probe::check::build_tls_config;
    use crate::probe::check::tests::pki;

    fn url(host: &str, port: u16, path: &str, https: bool) -> WebhookUrl {
        WebhookUrl {
            url: String::new(),
            https,
            host: host.into(),
            port,
            path: path.into(),
        }
    }

    #[test]
    fn parses_urls() {
        let p = |u: &str| parse_webhook_url(u).map(|w| (w.https, w.host, w.port, w.path));
        assert_eq!(
            p("http://127.0.0.1:9000/hook").unwrap(),
            (false, "127.0.0.1".into(), 9000, "/hook".into())
        );
        assert_eq!(
            p("http://[::1]/x").unwrap(),
            (false, "::1".into(), 80, "/x".into())
        );
        assert_eq!(p("http://h").unwrap(), (false, "h".into(), 80, "/".into()));
        assert_eq!(
            p("https://hooks.example.com/services/T0/B1?x=1").unwrap(),
            (
                true,
                "hooks.example.com".into(),
                443,
                "/services/T0/B1?x=1".into()
            )
        );
        assert_eq!(
            p("https://[::1]:8443?q").unwrap(),
            (true, "::1".into(), 8443, "/?q".into())
        );
        for bad in [
            "ftp://h/",
            "h/",
            "http://h:99999/",
            "http://:80/",
            "http://user@h/",
            "http://h/a b",
            "http://h/a#frag",
            "https://bad_name!/",
            "http://[::1/",
        ] {
            assert!(parse_webhook_url(bad).is_err(), "{bad}");
        }
        assert_eq!(url("::1", 80, "/", false).authority(), "[::1]");
        assert_eq!(url("h", 8443, "/", true).authority(), "h:8443");
        assert_eq!(url("h", 443, "/", true).authority(), "h");
    }

    #[test]
    fn header_validation() {
        assert!(validate_header("X-Team", "dns", true).is_ok());
        assert!(validate_header("Authorization", "Basic eDp5", false).is_ok());
        assert!(validate_header("Authorization", "Basic eDp5", true).is_err());
        assert!(validate_header("Content-Type", "text/plain", false).is_err());
        assert!(validate_header("Host", "x", false).is_err());
        assert!(validate_header("Bad Name", "x", false).is_err());
        assert!(validate_header("X-A", "v\r\nInjected: 1", false).is_err());
    }

    /// Reads one request (head and `Content-Length` body) from `s`,
    /// answers `status`, and returns the request text.
    async fn receive<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, status: &str) -> String {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        let mut need = None;
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                need = Some(end + 4 + len);
            }
            if need.is_some_and(|n| buf.len() >= n) {
                break;
            }
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        let _ = s
            .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
            .await;
        let _ = s.shutdown().await;
        String::from_utf8_lossy(&buf).into_owned()
    }

    #[tokio::test]
    async fn delivers_with_retry_and_drops_when_full() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (got_tx, mut got_rx) = mpsc::channel::<String>(8);
        tokio::spawn(async move {
            // First connection: fail with 503, then accept.
            let mut first = true;
            while let Ok((c, _)) = l.accept().await {
                let status = if first { "503 Busy" } else { "204 No Content" };
                first = false;
                let _ = got_tx.send(receive(c, status).await).await;
            }
        });
        let shutdown = CancellationToken::new();
        let n = Notifier::spawn(
            NotifyOptions {
                webhooks: Webhooks {
                    urls: vec![parse_webhook_url(&format!("http://{addr}/hook")).unwrap()],
                    ..Webhooks::default()
                },
                queue_size: 4,
                attempts: 3,
                timeout: Duration::from_secs(2),
                node: "node-a".into(),
            },
            shutdown.clone(),
        );
        n.send(Event::endpoint(
            "eu",
            "192.0.2.10",
            Verdict::Up,
            Verdict::Down,
            "status 503",
        ));
        let deadline = Duration::from_secs(10);
        let first = tokio::time::timeout(deadline, got_rx.recv())
            .await
            .unwrap()
            .unwrap();
        let second = tokio::time::timeout(deadline, got_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(first.starts_with("POST /hook HTTP/1.1\r\n"), "{first}");
        assert!(first.contains(&format!("\r\nHost: {addr}\r\n")), "{first}");
        assert!(
            first.contains("\r\nContent-Type: application/json\r\n"),
            "{first}"
        );
        assert!(!first.contains("Authorization"), "{first}");
        for body in [&first, &second] {
            assert!(body.contains("\"event\":\"endpoint_down\""), "{body}");
            assert!(body.contains("\"reason\":\"status 503\""), "{body}");
            assert!(body.contains("\"node\":\"node-a\""), "{body}");
        }
        // A full queue drops instead of blocking.
        for _ in 0..100 {
            n.send(Event::pool("eu", false));
        }
        assert!(n.dropped() > 0);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn https_webhook_with_headers_and_bearer_token() {
        let pki = pki();
        let acceptor = pki.acceptor(&["localhost", "127.0.0.1"], false);
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (got_tx, mut got_rx) = mpsc::channel::<String>(8);
        tokio::spawn(async move {
            while let Ok((c, _)) = l.accept().await {
                // A failed handshake (the untrusting client below) is no
                // request.
                if let Ok(tls) = acceptor.accept(c).await {
                    let _ = got_tx.send(receive(tls, "200 OK").await).await;
                }
            }
        });
        let hooks = Webhooks {
            urls: vec![parse_webhook_url(&format!("https://127.0.0.1:{port}/hook?k=1")).unwrap()],
            headers: vec![("X-Team".into(), "dns ops".into())],
            bearer_token: Some("s3cr3t-token".into()),
            tls: Some(build_tls_config(true, Some(pki.ca_file.path())).unwrap()),
        };

        // Without the test CA: a TLS failure, nothing delivered.
        let untrusting = Webhooks {
            tls: Some(build_tls_config(true, None).unwrap()),
            ..hooks.clone()
        };
        let e = post(&untrusting, &untrusting.urls[0], Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert_eq!(e, "tls: unknown issuer");

        let shutdown = CancellationToken::new();
        let n = Notifier::spawn(
            NotifyOptions {
                webhooks: hooks,
                queue_size: 4,
                attempts: 1,
                timeout: Duration::from_secs(5),
                node: "node-b".into(),
            },
            shutdown.clone(),
        );
        n.send(Event::pool("eu", false));
        let got = tokio::time::timeout(Duration::from_secs(10), got_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(got.starts_with("POST /hook?k=1 HTTP/1.1\r\n"), "{got}");
        assert!(
            got.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
            "{got}"
        );
        assert!(
            got.contains("\r\nAuthorization: Bearer s3cr3t-token\r\n"),
            "{got}"
        );
        assert!(got.contains("\r\nX-Team: dns ops\r\n"), "{got}");
        assert!(got.contains("\r\n\r\n{\"event\":\"pool_down\""), "{got}");
        assert!(got.contains("\"node\":\"node-b\""), "{got}");
        shutdown.cancel();
    }
}
