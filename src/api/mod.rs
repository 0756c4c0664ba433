//! The HTTP API and status page (hyper 1.x, HTTP/1.1 only).
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | liveness: `200 ok` while the process serves HTTP |
//! | `GET /readyz` | `200 ready` once the config is loaded and DNS sockets are bound, else `503 not ready` |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /api/v1/status` | [`Status`] as JSON |
//! | `GET /api/v1/explain?name=&type=&client=` | the explain report as JSON: the structured [`Explanation`](crate::explain::Explanation) under `report`, the text and its lines beside it (`type` defaults to `A`) |
//! | `POST /api/v1/reload` | reload now; [`ReloadOutcome`] as JSON, `200` or `422` (`202` when still running after 90 s); bearer token when configured |
//! | `GET /` | the status page (HTML) |
//!
//! The server knows nothing about DNS: it calls an [`ApiBackend`], which the
//! application implements over its snapshot, health table and metrics.
//! Requests are bounded: headers must arrive within [`HEADER_READ_TIMEOUT`]
//! and fit in [`MAX_HEADER_BYTES`], bodies are not read (a `POST` declaring
//! more than [`MAX_BODY_BYTES`] gets `413`), at most [`MAX_CONNECTIONS`]
//! connections are served at once ([`MAX_PER_CLIENT`] per client), each for
//! at most [`MAX_CONNECTION_AGE`]; when a cap is reached, the connection idle
//! longest makes room (see [`limits`]), so slow clients cannot starve others.

pub mod backend;
pub mod cluster;
pub mod html;
pub mod limits;
pub mod model;
pub mod snapshot;

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use limits::{IDLE_TIMEOUT, IDLE_TIMEOUT_UNDER_PRESSURE, MAX_CONNECTIONS, MAX_PER_CLIENT};
pub use model::{EndpointState, EndpointStatus, LastReload, PoolStatus, ReloadOutcome, Status};

/// A client must send a request's headers within this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (the read buffer).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Largest declared request body accepted.
pub const MAX_BODY_BYTES: u64 = 4096;
/// A connection (keep-alive included) is closed after this.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(120);

/// `POST /api/v1/reload` waits this long for the outcome, then answers
/// `202` (the reload goes on; its outcome becomes the last reload in
/// `GET /api/v1/status`). Shorter than [`MAX_CONNECTION_AGE`].
pub const RELOAD_REPLY_WAIT: Duration = Duration::from_secs(90);

/// What the API needs from the server. Implemented by the application;
/// every method may be called from several threads at once. `explain` and
/// `reload` run on a blocking thread, the others should be quick.
pub trait ApiBackend: Send + Sync + 'static {
    /// Whether the config is loaded and the DNS sockets are bound.
    fn ready(&self) -> bool;
    /// The current state of pools, endpoints and config.
    fn status(&self) -> Status;
    /// The decision trace for `name`/`qtype` asked by `client`, or an error
    /// in the request (bad name, unknown type).
    fn explain(&self, name: &str, qtype: &str, client: IpAddr)
    -> Result<serde_json::Value, String>;
    /// Reload the config now.
    fn reload(&self) -> ReloadOutcome;
    /// The Prometheus text exposition.
    fn metrics_text(&self) -> String;
    /// The anycast gate's state, when `[anycast]` is configured.
    fn anycast(&self) -> Option<crate::anycast::AnycastStatus> {
        None
    }
}

/// How to serve the API.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Bearer token required by `POST /api/v1/reload`; `None` (or empty): no
    /// token.
    pub token: Option<String>,
    /// The configured listen address (for the exposure warning).
    pub listen: SocketAddr,
}

/// Bind a TCP listener for the API (non-blocking, `SO_REUSEADDR`; an IPv6
/// address is IPv6-only), ready for [`tokio::net::TcpListener::from_std`].
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    // Deep enough that a burst of connects waits for accept() (which never
    // blocks on the caps) rather than for a SYN retransmit.
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Whether serving on `listen` without a token deserves a warning.
pub fn exposed_without_token(opts: &ApiOptions) -> bool {
    opts.token.as_deref().is_none_or(str::is_empty) && !opts.listen.ip().is_loopback()
}

struct State {
    backend: Arc<dyn ApiBackend>,
    token: Option<String>,
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// Serve the API on `listener` until `shutdown` is cancelled; then stop
/// accepting, and let open connections finish their current request.
pub async fn serve(
    listener: TcpListener,
    backend: Arc<dyn ApiBackend>,
    opts: ApiOptions,
    shutdown: CancellationToken,
) {
    serve_with_cluster(listener, backend, opts, None, shutdown).await;
}

/// [`serve`], with the cluster routes ([`cluster`]) when `cluster` is set.
pub async fn serve_with_cluster(
    listener: TcpListener,
    backend: Arc<dyn ApiBackend>,
    opts: ApiOptions,
    cluster: Option<Arc<crate::cluster::Cluster>>,
    shutdown: CancellationToken,
) {
    let local = listener.local_addr().ok();
    if exposed_without_token(&opts) {
        warn!(
            listen = %opts.listen,
            "the HTTP API listens beyond loopback without a token: anyone who can reach it \
             can trigger reloads and read the configuration's state"
        );
    }
    info!(addr = ?local, "HTTP API listening");
    let state = Arc::new(State {
        backend,
        token: opts.token.filter(|t| !t.is_empty()),
        cluster,
    });
    let table = limits::ConnTable::new(MAX_CONNECTIONS, MAX_PER_CLIENT);
    let mut last_refusal_log: Option<tokio::time::Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!("HTTP API accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = table.admit(peer.ip()) else {
            // Every connection in the way is inside a handler: refuse
            // (close) rather than queue behind them.
            if last_refusal_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                let (open, evicted, refused) = table.counts();
                warn!(%peer, open, evicted, refused, "HTTP API: connection limit reached, connection refused");
                last_refusal_log = Some(tokio::time::Instant::now());
            }
            drop(stream);
            continue;
        };
        let state = state.clone();
        let token = shutdown.clone();
        let table = table.clone();
        tokio::spawn(async move {
            let conn_state = admitted.state.clone();
            let svc = service_fn(move |req| {
                let state = state.clone();
                let busy = conn_state.begin();
                async move {
                    // Busy until the body's last frame is taken.
                    let r = route(req, &state).await;
                    Ok::<_, Infallible>(r.map(|b| limits::BusyBody::new(b, busy)))
                }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let deadline = tokio::time::sleep(MAX_CONNECTION_AGE);
            tokio::pin!(deadline);
            // Idle time (request head, unread body, keep-alive wait, a
            // response the client does not read) is bounded by the table:
            // shorter when it is nearly full.
            let mut idle_check = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            debug!(%peer, "HTTP connection: {e}");
                        }
                        return;
                    }
                    // Closed to make room for another connection.
                    () = admitted.evicted.cancelled() => return,
                    _ = idle_check.tick() => {
                        if admitted.state.idle_for().is_some_and(|d| d >= table.idle_timeout()) {
                            debug!(%peer, "HTTP connection idle too long: closed");
                            return;
                        }
                        continue;
                    }
                    _ = token.cancelled() => {}
                    _ = &mut deadline => {}
                }
                break;
            }
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        });
    }
    info!(addr = ?local, "HTTP API stopped");
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Resp {
    respond(status, "text/plain; charset=utf-8", body)
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    match serde_json::to_vec_pretty(value) {
        Ok(mut v) => {
            v.push(b'\n');
            respond(status, "application/json", v)
        }
        Err(e) => {
            warn!("serializing an API response: {e}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    }
}

fn json_error(status: StatusCode, msg: &str) -> Resp {
    json(status, &serde_json::json!({ "error": msg }))
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// Compare in time independent of where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(req: &Request<Incoming>, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let prefix = b"Bearer ";
    value.len() > prefix.len()
        && value[..prefix.len()].eq_ignore_ascii_case(prefix)
        && constant_time_eq(&value[prefix.len()..], token.as_bytes())
}

/// A browser sends `Origin` on cross-site POSTs: refuse those whose origin
/// is not this host, so a web page cannot make a visitor's browser reload.
fn cross_origin(req: &Request<Incoming>) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return false;
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin = origin.to_str().unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or(origin);
    host.is_empty() || !origin_host.eq_ignore_ascii_case(host)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode one `application/x-www-form-urlencoded` component.
fn url_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_val(*b.get(i + 1)?)?;
                let lo = hex_val(*b.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The value of query parameter `key` (the first one), decoded.
fn query_param(query: Option<&str>, key: &str) -> Option<Result<String, ()>> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (url_decode(k).as_deref() == Some(key)).then(|| url_decode(v).ok_or(()))
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            warn!("API backend call failed: {e}");
            None
        }
    }
}

async fn route(req: Request<Incoming>, state: &State) -> Resp {
    let req = match &state.cluster {
        Some(c) => {
            let page = || {
                html::render_page(
                    &state.backend.status(),
                    state.backend.anycast().as_ref(),
                    now_unix(),
                )
            };
            match cluster::route(req, c, state.token.as_deref(), page).await {
                Ok(r) => return r,
                Err(req) => req,
            }
        }
        None => req,
    };
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    match req.uri().path() {
        "/healthz" if get => text(StatusCode::OK, "ok\n"),
        "/readyz" if get => {
            if state.backend.ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        "/metrics" if get => respond(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            state.backend.metrics_text(),
        ),
        "/api/v1/status" if get => json(StatusCode::OK, &state.backend.status()),
        "/api/v1/explain" if get => explain(&req, state).await,
        "/api/v1/reload" if req.method() == Method::POST => reload(&req, state).await,
        "/api/v1/anycast" if get => match state.backend.anycast() {
            Some(a) => json(StatusCode::OK, &a),
            None => json_error(StatusCode::NOT_FOUND, "anycast is not configured"),
        },
        "/" if get => {
            let mut r = respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                html::render_page(
                    &state.backend.status(),
                    state.backend.anycast().as_ref(),
                    now_unix(),
                ),
            );
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            );
            r
        }
        "/healthz" | "/readyz" | "/metrics" | "/api/v1/status" | "/api/v1/explain"
        | "/api/v1/anycast" | "/" => method_not_allowed("GET, HEAD"),
        "/api/v1/reload" => method_not_allowed("POST"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn explain(req: &Request<Incoming>, state: &State) -> Resp {
    let q = req.uri().query();
    let name = match query_param(q, "name") {
        Some(Ok(n)) if !n.is_empty() => n,
        Some(Err(())) => return json_error(StatusCode::BAD_REQUEST, "bad encoding of name"),
        _ => return json_error(StatusCode::BAD_REQUEST, "missing parameter: name"),
    };
    let qtype = match query_param(q, "type") {
        Some(Ok(t)) if !t.is_empty() => t,
        Some(Err(())) => return json_error(StatusCode::BAD_REQUEST, "bad encoding of type"),
        _ => "A".to_string(),
    };
    let client: IpAddr = match query_param(q, "client") {
        Some(Ok(c)) => match c.parse() {
            Ok(ip) => ip,
            Err(_) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("client is not an IP address: {c:?}"),
                );
            }
        },
        Some(Err(())) => return json_error(StatusCode::BAD_REQUEST, "bad encoding of client"),
        None => return json_error(StatusCode::BAD_REQUEST, "missing parameter: client"),
    };
    let backend = state.backend.clone();
    match blocking(move || backend.explain(&name, &qtype, client)).await {
        Some(Ok(v)) => json(StatusCode::OK, &v),
        Some(Err(e)) => json_error(StatusCode::BAD_REQUEST, &e),
        None => json_error(StatusCode::INTERNAL_SERVER_ERROR, "explain failed"),
    }
}

async fn reload(req: &Request<Incoming>, state: &State) -> Resp {
    if !authorized(req, state.token.as_deref()) {
        let mut r = json_error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"steerdns\""),
        );
        return r;
    }
    if cross_origin(req) {
        return json_error(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if declared > MAX_BODY_BYTES {
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let backend = state.backend.clone();
    // A reload longer than RELOAD_REPLY_WAIT is answered 202 before the
    // connection's age limit; it goes on and records its outcome as the
    // last reload (GET /api/v1/status).
    let task = tokio::task::spawn_blocking(move || backend.reload());
    let outcome = match tokio::time::timeout(RELOAD_REPLY_WAIT, task).await {
        Ok(r) => r.map_err(|e| warn!("API backend call failed: {e}")).ok(),
        Err(_) => {
            return json(
                StatusCode::ACCEPTED,
                &serde_json::json!({
                    "ok": null,
                    "status": "running",
                    "detail": "the reload is still running; GET /api/v1/status shows its outcome as the last reload",
                }),
            );
        }
    };
    match outcome {
        Some(outcome) => {
            if outcome.ok {
                info!(generation = outcome.generation, "reload via API: ok");
                json(StatusCode::OK, &outcome)
            } else {
                warn!(errors = outcome.errors.len(), "reload via API failed");
                json(StatusCode::UNPROCESSABLE_ENTITY, &outcome)
            }
        }
        None => json_error(StatusCode::INTERNAL_SERVER_ERROR, "reload failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_parameters() {
        let q = Some("name=www.lb.example.com&type=AAAA&client=2001%3Adb8%3A%3A1&x=a+b");
        assert_eq!(
            query_param(q, "name"),
            Some(Ok("www.lb.example.com".into()))
        );
        assert_eq!(query_param(q, "client"), Some(Ok("2001:db8::1".into())));
        assert_eq!(query_param(q, "x"), Some(Ok("a b".into())));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param(Some("name=%zz"), "name"), Some(Err(())));
        assert_eq!(query_param(Some("name=%e2%82"), "name"), Some(Err(())));
        assert_eq!(query_param(None, "name"), None);
    }

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn warns_only_beyond_loopback_without_token() {
        let o = |listen: &str, token: Option<&str>| ApiOptions {
            token: token.map(String::from),
            listen: listen.parse().unwrap(),
        };
        assert!(!exposed_without_token(&o("127.0.0.1:9153", None)));
        assert!(!exposed_without_token(&o("[::1]:9153", None)));
        assert!(exposed_without_token(&o("0.0.0.0:9153", None)));
        assert!(exposed_without_token(&o("[::]:9153", None)));
        assert!(!exposed_without_token(&o("0.0.0.0:9153", Some("t"))));
    }
}
