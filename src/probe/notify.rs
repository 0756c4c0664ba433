//! Webhook notifier: health changes POSTed as JSON to configured URLs, from
//! a bounded queue, with retries. The prober never waits for it: when the
//! queue is full, events are dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::health::state::Verdict;

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

/// Notifier settings.
#[derive(Debug, Clone)]
pub struct NotifyOptions {
    /// Target URLs (`http://host:port/path`).
    pub urls: Vec<String>,
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
    urls: Arc<ArcSwap<Vec<String>>>,
}

impl Notifier {
    /// Start the delivery task.
    pub fn spawn(opts: NotifyOptions, shutdown: CancellationToken) -> Notifier {
        let (tx, rx) = mpsc::channel(opts.queue_size.max(1));
        let node: Arc<str> = Arc::from(opts.node.as_str());
        let urls = Arc::new(ArcSwap::from_pointee(opts.urls.clone()));
        tokio::spawn(deliver(rx, urls.clone(), opts, shutdown));
        Notifier {
            tx,
            node,
            dropped: Arc::new(AtomicU64::new(0)),
            urls,
        }
    }

    /// Replace the target URLs (on reload).
    pub fn set_urls(&self, urls: Vec<String>) {
        self.urls.store(Arc::new(urls));
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
    urls: Arc<ArcSwap<Vec<String>>>,
    opts: NotifyOptions,
    shutdown: CancellationToken,
) {
    loop {
        let e = tokio::select! {
            () = shutdown.cancelled() => return,
            e = rx.recv() => match e { Some(e) => e, None => return },
        };
        let body = match serde_json::to_vec(&e) {
            Ok(b) => b,
            Err(_) => continue,
        };
        let urls = urls.load_full();
        for url in urls.iter() {
            let mut backoff = Duration::from_millis(500);
            for attempt in 1..=opts.attempts.max(1) {
                match tokio::time::timeout(opts.timeout, post(url, &body)).await {
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

/// Split `http://host[:port]/path`.
pub fn parse_http_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// webhook URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, p) = h
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: bad IPv6 host"))?;
        (h.to_string(), p.strip_prefix(':').unwrap_or("80"))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (hostport.to_string(), "80"),
        }
    };
    let port: u16 = port.parse().map_err(|_| format!("{url:?}: bad port"))?;
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    Ok((host, port, path.to_string()))
}

async fn post(url: &str, body: &[u8]) -> Result<(), String> {
    let (host, port, path) = parse_http_url(url)?;
    let mut s = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: steerdns/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    s.write_all(body).await.map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
    let line = String::from_utf8_lossy(&buf[..n]);
    let code = line.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(c) if (200..300).contains(&c) => Ok(()),
        Some(c) => Err(format!("status {c}")),
        None => Err("malformed response".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:9000/hook").unwrap(),
            ("127.0.0.1".into(), 9000, "/hook".into())
        );
        assert_eq!(
            parse_http_url("http://[::1]/x").unwrap(),
            ("::1".into(), 80, "/x".into())
        );
        assert_eq!(
            parse_http_url("http://h").unwrap(),
            ("h".into(), 80, "/".into())
        );
        assert!(parse_http_url("https://h/").is_err());
        assert!(parse_http_url("http://h:99999/").is_err());
    }

    #[tokio::test]
    async fn delivers_with_retry_and_drops_when_full() {
        use tokio::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (got_tx, mut got_rx) = mpsc::channel::<String>(8);
        tokio::spawn(async move {
            // First connection: fail with 503, then accept.
            let mut first = true;
            loop {
                let Ok((mut c, _)) = l.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                // read until the JSON body is complete (ends with '}')
                loop {
                    let m = c.read(&mut buf[n..]).await.unwrap_or(0);
                    if m == 0 {
                        break;
                    }
                    n += m;
                    if buf[..n].ends_with(b"}") {
                        break;
                    }
                }
                let status = if first { "503 Busy" } else { "204 No Content" };
                first = false;
                let _ = c
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                let _ = got_tx.send(text).await;
            }
        });
        let shutdown = CancellationToken::new();
        let n = Notifier::spawn(
            NotifyOptions {
                urls: vec![format!("http://{addr}/hook")],
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
        assert!(first.starts_with("POST /hook HTTP/1.1"));
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
}
