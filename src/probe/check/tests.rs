//! Probes against real servers on 127.0.0.1 started by the tests.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use super::*;

const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Deadline of probes expected to finish quickly.
const GENEROUS: Duration = Duration::from_secs(5);
/// Deadline of probes expected to time out.
const SHORT: Duration = Duration::from_millis(800);

async fn bind() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// A loopback port that refuses connections: a socket bound but never
/// listening. It is leaked (closed when the test process exits) so that no
/// test running in parallel can bind the port and accept on it.
async fn closed_port() -> SocketAddr {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((LOCAL, 0)).into()).unwrap();
    let a = s.local_addr().unwrap().as_socket().unwrap();
    std::mem::forget(s);
    a
}

fn target(addr: SocketAddr) -> Target<'static> {
    Target { addr, host: None }
}

fn http_spec(h: HttpCheck, timeout: Duration) -> CheckSpec {
    CheckSpec {
        kind: CheckKind::Http(h),
        timeout,
    }
}

fn get(path: &str) -> HttpCheck {
    HttpCheck {
        path: path.to_string(),
        ..HttpCheck::default()
    }
}

fn expect_err(r: Result<ProbeOk, ProbeError>) -> ProbeError {
    match r {
        Ok(ok) => panic!("probe passed unexpectedly: {ok:?}"),
        Err(e) => e,
    }
}

fn expect_ok(r: Result<ProbeOk, ProbeError>) -> ProbeOk {
    match r {
        Ok(ok) => ok,
        Err(e) => panic!("probe failed unexpectedly: {e} ({:?})", e.kind),
    }
}

// ---------------------------------------------------------------- HTTP server

/// A test HTTP server; `requests` counts requests served.
struct HttpServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

async fn spawn_http(tls: Option<TlsAcceptor>) -> HttpServer {
    let (l, addr) = bind().await;
    serve_http_on(l, addr, tls)
}

fn serve_http_on(l: TcpListener, addr: SocketAddr, tls: Option<TlsAcceptor>) -> HttpServer {
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let count = count.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => serve_http(s, count).await,
                    Some(acc) => {
                        if let Ok(s) = acc.accept(s).await {
                            serve_http(s, count).await;
                        }
                    }
                }
            });
        }
    });
    HttpServer { addr, requests }
}

fn response(status: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve_http<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, count: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
        // Not HTTP (a TLS ClientHello, say): answer like a real server.
        if !buf[0].is_ascii_uppercase() {
            let _ = s.write_all(&response("400 Bad Request", "", "")).await;
            return;
        }
        if buf.len() > 16 * 1024 {
            return;
        }
    }
    count.fetch_add(1, Ordering::SeqCst);
    let head = String::from_utf8_lossy(&buf).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
    let host = head
        .lines()
        .find_map(|l| l.strip_prefix("Host: "))
        .unwrap_or("")
        .to_string();
    let resp = match path.as_str() {
        "/ok" => response("200 OK", "", "all good: marker-ok"),
        "/fail" => response("503 Service Unavailable", "", "down"),
        "/redirect" => response("302 Found", "Location: /ok\r\n", ""),
        "/redirect-abs" => response("301 Moved", &format!("Location: //{host}/ok\r\n"), ""),
        "/redirect-away" => response("302 Found", "Location: http://elsewhere.invalid/ok\r\n", ""),
        "/loop" => response("307 Temporary Redirect", "Location: /loop\r\n", ""),
        "/nomarker" => response("200 OK", "", "nothing to see"),
        "/echo" => response("200 OK", "", &head),
        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n4;x=y\r\nmark\r\n5\r\ner-ok\r\n0\r\n\r\n".to_vec(),
        "/close" => b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nread until close: marker-ok".to_vec(),
        "/garbage" => b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec(),
        "/hugehead" => {
            let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..2000 {
                r.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(40)).as_bytes());
            }
            r
        }
        _ => response("404 Not Found", "", ""),
    };
    let _ = s.write_all(&resp).await;
    let _ = s.shutdown().await;
}

// ---------------------------------------------------------------- HTTP tests

#[tokio::test]
async fn http_200_with_body_marker_passes() {
    let srv = spawn_http(None).await;
    let h = HttpCheck {
        expect_body: Some("marker-ok".into()),
        ..get("/ok")
    };
    let ok = expect_ok(probe(&http_spec(h, GENEROUS), target(srv.addr)).await);
    assert_eq!(ok.detail, "status 200");
    assert!(ok.duration < GENEROUS);
}

#[tokio::test]
async fn http_503_fails_with_status_unless_expected() {
    let srv = spawn_http(None).await;
    let e = expect_err(probe(&http_spec(get("/fail"), GENEROUS), target(srv.addr)).await);
    assert_eq!(e.kind, ProbeErrorKind::Status);
    assert_eq!(e.to_string(), "status 503");
    assert_eq!(e.kind.as_str(), "status");

    let h = HttpCheck {
        expect_status: StatusSet::parse("2xx,503").unwrap(),
        ..get("/fail")
    };
    let ok = expect_ok(probe(&http_spec(h, GENEROUS), target(srv.addr)).await);
    assert_eq!(ok.detail, "status 503");
}

#[tokio::test]
async fn http_body_marker_missing_fails_with_body() {
    let srv = spawn_http(None).await;
    let h = HttpCheck {
        expect_body: Some("marker-ok".into()),
        ..get("/nomarker")
    };
    let e = expect_err(probe(&http_spec(h, GENEROUS), target(srv.addr)).await);
    assert_eq!(e.kind, ProbeErrorKind::Body);
    assert!(
        e.to_string().starts_with("body: \"marker-ok\" not found"),
        "{e}"
    );
}

#[tokio::test]
async fn http_chunked_and_until_close_bodies_are_read() {
    let srv = spawn_http(None).await;
    for path in ["/chunked", "/close"] {
        let h = HttpCheck {
            expect_body: Some("marker-ok".into()),
            ..get(path)
        };
        let ok = expect_ok(probe(&http_spec(h, GENEROUS), target(srv.addr)).await);
        assert_eq!(ok.detail, "status 200", "{path}");
    }
    // The chunk boundaries split "hello marker-ok"; a marker absent from
    // the decoded body is not found.
    let h = HttpCheck {
        expect_body: Some("4;x=y".into()),
        ..get("/chunked")
    };
    let e = expect_err(probe(&http_spec(h, GENEROUS), target(srv.addr)).await);
    assert_eq!(e.kind, ProbeErrorKind::Body);
}

#[tokio::test]
async fn http_redirects_followed_only_when_asked_and_only_on_the_same_origin() {
    let srv = spawn_http(None).await;
    let e = expect_err(probe(&http_spec(get("/redirect"), GENEROUS), target(srv.addr)).await);
    assert_eq!(
        (e.kind, e.detail.as_str()),
        (ProbeErrorKind::Status, "status 302")
    );

    let follow = |path: &str| HttpCheck {
        follow_redirects: true,
        expect_body: Some("marker-ok".into()),
        ..get(path)
    };
    let ok = expect_ok(probe(&http_spec(follow("/redirect"), GENEROUS), target(srv.addr)).await);
    assert_eq!(ok.detail, "status 200 (after 1 redirect)");
    let ok = expect_ok(
        probe(
            &http_spec(follow("/redirect-abs"), GENEROUS),
            target(srv.addr),
        )
        .await,
    );
    assert_eq!(ok.detail, "status 200 (after 1 redirect)");

    let e = expect_err(
        probe(
            &http_spec(follow("/redirect-away"), GENEROUS),
            target(srv.addr),
        )
        .await,
    );
    assert_eq!(e.kind, ProbeErrorKind::Status);
    assert!(e.detail.contains("not followed"), "{e}");

    let before = srv.requests.load(Ordering::SeqCst);
    let e = expect_err(probe(&http_spec(follow("/loop"), GENEROUS), target(srv.addr)).await);
    assert_eq!(e.kind, ProbeErrorKind::Protocol);
    assert!(e.detail.contains("too many redirects"), "{e}");
    // The first request and five redirects, no more.
    assert_eq!(
        srv.requests.load(Ordering::SeqCst) - before,
        1 + super::http::MAX_REDIRECTS
    );
}

#[tokio::test]
async fn http_request_headers() {
    let srv = spawn_http(None).await;
    let port = srv.addr.port();
    let echo = |marker: String| HttpCheck {
        headers: vec![("X-Probe".into(), "yes".into())],
        expect_body: Some(marker),
        ..get("/echo")
    };
    for marker in [
        format!("Host: 127.0.0.1:{port}\r\n"),
        "User-Agent: steerdns/".to_string(),
        "X-Probe: yes\r\n".to_string(),
        "Connection: close\r\n".to_string(),
        "GET /echo HTTP/1.1\r\n".to_string(),
    ] {
        expect_ok(probe(&http_spec(echo(marker), GENEROUS), target(srv.addr)).await);
    }
    // The target's host name, with the non-default port.
    let named = Target {
        addr: srv.addr,
        host: Some("svc.example.test"),
    };
    let h = echo(format!("Host: svc.example.test:{port}\r\n"));
    expect_ok(probe(&http_spec(h, GENEROUS), named).await);
    // An explicit Host wins.
    let h = HttpCheck {
        host: Some("www.example.test".into()),
        ..echo("Host: www.example.test\r\n".into())
    };
    expect_ok(probe(&http_spec(h, GENEROUS), named).await);
    // HEAD reads no body.
    let h = HttpCheck {
        method: "HEAD".into(),
        ..get("/ok")
    };
    expect_ok(probe(&http_spec(h, GENEROUS), target(srv.addr)).await);
}

#[tokio::test]
async fn http_over_ipv6_loopback_brackets_the_host() {
    let Ok(l) = TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).await else {
        eprintln!("skipped: ::1 cannot be bound here (no IPv6 loopback)");
        return;
    };
    let addr = l.local_addr().unwrap();
    let srv = serve_http_on(l, addr, None);
    let h = HttpCheck {
        expect_body: Some(format!("Host: [::1]:{}\r\n", addr.port())),
        ..get("/echo")
    };
    expect_ok(probe(&http_spec(h, GENEROUS), target(srv.addr)).await);
}

#[tokio::test]
async fn http_malformed_responses_are_protocol_errors() {
    let srv = spawn_http(None).await;
    let e = expect_err(probe(&http_spec(get("/garbage"), GENEROUS), target(srv.addr)).await);
    assert_eq!(e.kind, ProbeErrorKind::Protocol);
    assert!(
        e.detail.starts_with("protocol: malformed status line"),
        "{e}"
    );

    let e = expect_err(probe(&http_spec(get("/hugehead"), GENEROUS), target(srv.addr)).await);
    assert_eq!(e.kind, ProbeErrorKind::Protocol);
    assert!(e.detail.contains("response head larger than 16384"), "{e}");

    // A request that cannot be written safely never leaves.
    let h = HttpCheck {
        path: "/a\r\nInjected: 1".into(),
        ..HttpCheck::default()
    };
    let before = srv.requests.load(Ordering::SeqCst);
    let e = expect_err(probe(&http_spec(h, GENEROUS), target(srv.addr)).await);
    assert_eq!(e.kind, ProbeErrorKind::Protocol);
    assert_eq!(srv.requests.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn http_closed_port_is_refused() {
    let addr = closed_port().await;
    let e = expect_err(probe(&http_spec(get("/"), GENEROUS), target(addr)).await);
    assert_eq!(e.kind, ProbeErrorKind::Refused);
    assert_eq!(e.to_string(), "connect refused");
}

/// Accepts, reads nothing, and sends `head` one byte per second; `None`
/// sends nothing at all. Holds each connection until the client leaves.
async fn spawn_slowloris(head: Option<&'static [u8]>) -> SocketAddr {
    let (l, addr) = bind().await;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                match head {
                    Some(head) => {
                        for b in head.iter().cycle() {
                            if s.write_all(&[*b]).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    None => {
                        let mut buf = [0u8; 1024];
                        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                    }
                }
            });
        }
    });
    addr
}

fn assert_timed_out(e: &ProbeError, timeout: Duration, phase: &str) {
    assert_eq!(e.kind, ProbeErrorKind::Timeout, "{e}");
    assert_eq!(e.kind.as_str(), "timeout");
    assert!(e.detail.starts_with("timeout after 800ms"), "{e}");
    assert!(e.detail.contains(phase), "{e}: expected phase {phase}");
    assert!(e.duration >= timeout, "{:?}", e.duration);
    // Generous for a loaded 2-core CI machine; the point is "not much later".
    assert!(
        e.duration < timeout + Duration::from_millis(1500),
        "{:?}",
        e.duration
    );
}

#[tokio::test]
async fn http_slowloris_and_silent_servers_time_out_at_the_deadline() {
    let slow = spawn_slowloris(Some(b"HTTP/1.1 200 OK\r\nX-Slow: 1\r\n")).await;
    let silent = spawn_slowloris(None).await;
    let spec = http_spec(get("/"), SHORT);
    let (a, b) = tokio::join!(probe(&spec, target(slow)), probe(&spec, target(silent)));
    assert_timed_out(&expect_err(a), SHORT, "response head");
    assert_timed_out(&expect_err(b), SHORT, "response head");
}

/// Answers 200 with no length and streams body bytes forever; the sender
/// reports how much it wrote once the client has gone away.
async fn spawn_endless() -> (SocketAddr, oneshot::Receiver<usize>) {
    let (l, addr) = bind().await;
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        let mut req = [0u8; 1024];
        let _ = s.read(&mut req).await;
        let mut sent = 0usize;
        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            .await
            .is_ok()
        {
            let chunk = vec![b'z'; 16 * 1024];
            while s.write_all(&chunk).await.is_ok() {
                sent += chunk.len();
            }
        }
        let _ = tx.send(sent);
    });
    (addr, rx)
}

#[tokio::test]
async fn http_endless_body_stops_at_the_body_limit() {
    let limit = 64 * 1024;
    // With a marker that never comes: a Body failure after `limit` bytes,
    // long before the deadline.
    let (addr, gone) = spawn_endless().await;
    let h = HttpCheck {
        expect_body: Some("never-sent".into()),
        body_limit: limit,
        ..get("/")
    };
    let e = expect_err(probe(&http_spec(h, GENEROUS), target(addr)).await);
    assert_eq!(e.kind, ProbeErrorKind::Body);
    assert_eq!(
        e.detail,
        format!("body: \"never-sent\" not found in {limit} bytes")
    );
    assert!(e.duration < GENEROUS / 2, "{:?}", e.duration);
    // The probe closed the connection: the server's writes fail soon.
    let sent = tokio::time::timeout(GENEROUS, gone).await.unwrap().unwrap();
    assert!(sent >= limit, "server sent only {sent}");

    // Without a marker: success after reading at most `limit` bytes.
    let (addr, gone) = spawn_endless().await;
    let h = HttpCheck {
        body_limit: limit,
        ..get("/")
    };
    let ok = expect_ok(probe(&http_spec(h, GENEROUS), target(addr)).await);
    assert_eq!(ok.detail, "status 200");
    assert!(ok.duration < GENEROUS / 2, "{:?}", ok.duration);
    tokio::time::timeout(GENEROUS, gone).await.unwrap().unwrap();
}

#[tokio::test]
async fn probe_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let spec = http_spec(get("/"), SHORT);
    let fut = probe(&spec, target(closed_port().await));
    assert_send(&fut);
    assert_eq!(expect_err(fut.await).kind, ProbeErrorKind::Refused);
}

// ---------------------------------------------------------------- TCP

#[tokio::test]
async fn tcp_check_connects_or_is_refused() {
    let (l, addr) = bind().await;
    let accepted = tokio::spawn(async move { l.accept().await.is_ok() });
    let spec = CheckSpec {
        kind: CheckKind::Tcp,
        timeout: GENEROUS,
    };
    let ok = expect_ok(probe(&spec, target(addr)).await);
    assert_eq!(ok.detail, "connected");
    assert!(
        tokio::time::timeout(GENEROUS, accepted)
            .await
            .unwrap()
            .unwrap()
    );

    let e = expect_err(probe(&spec, target(closed_port().await)).await);
    assert_eq!(e.kind, ProbeErrorKind::Refused);
    assert_eq!(e.kind.as_str(), "refused");
}

// ---------------------------------------------------------------- TLS

/// A test CA and certificates it signs.
struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    ca_file: tempfile::NamedTempFile,
}

fn pki() -> Pki {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "steerdns test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), cert.pem()).unwrap();
    Pki {
        issuer: Issuer::new(params, key),
        ca_der: cert.der().clone(),
        ca_file,
    }
}

impl Pki {
    /// A server certificate for `names`; expired when `expired`.
    fn leaf(
        &self,
        names: &[&str],
        expired: bool,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone(), self.ca_der.clone()], key)
    }

    fn acceptor(&self, names: &[&str], expired: bool) -> TlsAcceptor {
        let (chain, key) = self.leaf(names, expired);
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        TlsAcceptor::from(Arc::new(config))
    }
}

fn https_spec(h: HttpCheck, config: Arc<rustls::ClientConfig>, sni: Option<&str>) -> CheckSpec {
    CheckSpec {
        kind: CheckKind::Https(
            h,
            TlsCheck {
                config,
                sni: sni.map(str::to_string),
            },
        ),
        timeout: GENEROUS,
    }
}

fn localhost(addr: SocketAddr) -> Target<'static> {
    Target {
        addr,
        host: Some("localhost"),
    }
}

#[tokio::test]
async fn https_with_the_ca_file_passes_by_name_and_by_ip() {
    let pki = pki();
    let srv = spawn_http(Some(pki.acceptor(&["localhost", "127.0.0.1"], false))).await;
    let config = build_tls_config(true, Some(pki.ca_file.path())).unwrap();
    let h = HttpCheck {
        expect_body: Some("marker-ok".into()),
        ..get("/ok")
    };
    let spec = https_spec(h.clone(), config.clone(), None);
    assert_eq!(
        expect_ok(probe(&spec, localhost(srv.addr)).await).detail,
        "status 200"
    );
    // No host name and no sni: verified against the IP SAN.
    assert_eq!(
        expect_ok(probe(&spec, target(srv.addr)).await).detail,
        "status 200"
    );
    // An explicit sni is used for verification and as the Host default.
    let echo = HttpCheck {
        expect_body: Some(format!("Host: localhost:{}\r\n", srv.addr.port())),
        ..get("/echo")
    };
    let spec = https_spec(echo, config, Some("localhost"));
    expect_ok(probe(&spec, target(srv.addr)).await);
}

#[tokio::test]
async fn https_without_the_ca_is_unknown_issuer() {
    let pki = pki();
    let srv = spawn_http(Some(pki.acceptor(&["localhost"], false))).await;
    let config = build_tls_config(true, None).unwrap();
    let e = expect_err(probe(&https_spec(get("/ok"), config, None), localhost(srv.addr)).await);
    assert_eq!(e.kind, ProbeErrorKind::Tls);
    assert_eq!(e.to_string(), "tls: unknown issuer");
    assert_eq!(srv.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn https_expired_certificate() {
    let pki = pki();
    let srv = spawn_http(Some(pki.acceptor(&["localhost"], true))).await;
    let config = build_tls_config(true, Some(pki.ca_file.path())).unwrap();
    let e = expect_err(probe(&https_spec(get("/ok"), config, None), localhost(srv.addr)).await);
    assert_eq!(e.kind, ProbeErrorKind::Tls);
    assert_eq!(e.to_string(), "tls: certificate expired");
}

#[tokio::test]
async fn https_wrong_name_certificate() {
    let pki = pki();
    let srv = spawn_http(Some(pki.acceptor(&["other.example.test"], false))).await;
    let config = build_tls_config(true, Some(pki.ca_file.path())).unwrap();
    let spec = https_spec(get("/ok"), config.clone(), None);
    let e = expect_err(probe(&spec, localhost(srv.addr)).await);
    assert_eq!(e.kind, ProbeErrorKind::Tls);
    assert_eq!(e.to_string(), "tls: certificate not valid for name");
    // Also by IP: the certificate has no IP SAN.
    let e = expect_err(probe(&spec, target(srv.addr)).await);
    assert_eq!(e.to_string(), "tls: certificate not valid for name");
    // The right sni passes.
    let spec = https_spec(get("/ok"), config, Some("other.example.test"));
    expect_ok(probe(&spec, localhost(srv.addr)).await);
}

#[tokio::test]
async fn https_without_verification_accepts_bad_certificates() {
    let pki = pki();
    let config = build_tls_config(false, None).unwrap();
    for (names, expired) in [
        (&["other.example.test"][..], false),
        (&["localhost"][..], true),
    ] {
        let srv = spawn_http(Some(pki.acceptor(names, expired))).await;
        let spec = https_spec(get("/ok"), config.clone(), None);
        assert_eq!(
            expect_ok(probe(&spec, localhost(srv.addr)).await).detail,
            "status 200"
        );
    }
}

#[tokio::test]
async fn tls_handshake_that_never_completes_times_out() {
    let silent = spawn_slowloris(None).await;
    let config = build_tls_config(false, None).unwrap();
    let mut spec = https_spec(get("/"), config, None);
    spec.timeout = SHORT;
    let e = expect_err(probe(&spec, localhost(silent)).await);
    assert_timed_out(&e, SHORT, "tls handshake");
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_error() {
    let srv = spawn_http(None).await;
    let config = build_tls_config(false, None).unwrap();
    let e = expect_err(probe(&https_spec(get("/ok"), config, None), localhost(srv.addr)).await);
    assert_eq!(e.kind, ProbeErrorKind::Tls, "{e}");
    assert!(e.detail.starts_with("tls: "), "{e}");
    assert!(e.duration < GENEROUS / 2, "{:?}", e.duration);
}

#[test]
fn tls_config_errors() {
    let pki = pki();
    assert!(build_tls_config(false, Some(pki.ca_file.path())).is_err());
    let missing = pki.ca_file.path().with_extension("missing");
    assert!(build_tls_config(true, Some(&missing)).is_err());
    let empty = tempfile::NamedTempFile::new().unwrap();
    let e = build_tls_config(true, Some(empty.path())).unwrap_err();
    assert!(e.contains("no certificates"), "{e}");
    assert!(build_tls_config(true, Some(pki.ca_file.path())).is_ok());
}

// ---------------------------------------------------------------- DNS

#[derive(Clone, Copy)]
enum DnsMode {
    /// NOERROR with one A record.
    Answer(Ipv4Addr),
    /// SERVFAIL.
    ServFail,
    /// TC=1 over UDP; the answer over TCP.
    Truncate(Ipv4Addr),
    /// A reply with the wrong id first, then the answer.
    WrongIdFirst(Ipv4Addr),
    /// Never answers.
    Silent,
}

fn reply(q: &Message, answer: Option<Ipv4Addr>) -> Message {
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.authoritative = true;
    r.add_queries(q.queries.clone());
    if let (Some(ip), Some(query)) = (answer, q.queries.first()) {
        r.add_answer(Record::from_rdata(
            query.name().clone(),
            60,
            RData::A(A(ip)),
        ));
    }
    r
}

/// A DNS responder on UDP and TCP of the same loopback port.
async fn spawn_dns(mode: DnsMode) -> SocketAddr {
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let r = match mode {
                DnsMode::Silent => continue,
                DnsMode::Answer(ip) => reply(&q, Some(ip)),
                DnsMode::ServFail => {
                    let mut r = reply(&q, None);
                    r.metadata.response_code = hickory_proto::op::ResponseCode::ServFail;
                    r
                }
                DnsMode::Truncate(_) => {
                    let mut r = reply(&q, None);
                    r.metadata.truncation = true;
                    r
                }
                DnsMode::WrongIdFirst(ip) => {
                    let mut wrong = reply(&q, Some(Ipv4Addr::new(192, 0, 2, 66)));
                    wrong.metadata.id = q.metadata.id.wrapping_add(1);
                    let _ = udp.send_to(&wrong.to_vec().unwrap(), peer).await;
                    reply(&q, Some(ip))
                }
            };
            let _ = udp.send_to(&r.to_vec().unwrap(), peer).await;
        }
    });
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            let DnsMode::Truncate(ip) = mode else {
                continue;
            };
            tokio::spawn(async move {
                let mut len = [0u8; 2];
                s.read_exact(&mut len).await.ok()?;
                let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                s.read_exact(&mut buf).await.ok()?;
                let q = Message::from_vec(&buf).ok()?;
                let wire = reply(&q, Some(ip)).to_vec().ok()?;
                let mut out = (wire.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&wire);
                s.write_all(&out).await.ok()
            });
        }
    });
    addr
}

fn dns_spec(d: DnsCheck, timeout: Duration) -> CheckSpec {
    CheckSpec {
        kind: CheckKind::Dns(d),
        timeout,
    }
}

const DOC_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

#[tokio::test]
async fn dns_noerror_with_the_expected_answer() {
    let addr = spawn_dns(DnsMode::Answer(DOC_IP)).await;
    let d = DnsCheck {
        expect_answer: Some("192.0.2.1".into()),
        ..DnsCheck::new("www.example.test", 1)
    };
    let ok = expect_ok(probe(&dns_spec(d, GENEROUS), target(addr)).await);
    assert_eq!(ok.detail, "rcode NOERROR, 1 answer");

    // A substring of the presentation form.
    let d = DnsCheck {
        expect_answer: Some("192.0.2.".into()),
        ..DnsCheck::new("www.example.test.", 1)
    };
    expect_ok(probe(&dns_spec(d, GENEROUS), target(addr)).await);

    let d = DnsCheck {
        expect_answer: Some("192.0.2.99".into()),
        ..DnsCheck::new("www.example.test", 1)
    };
    let e = expect_err(probe(&dns_spec(d, GENEROUS), target(addr)).await);
    assert_eq!(e.kind, ProbeErrorKind::Dns);
    assert_eq!(e.to_string(), "dns: no answer matching 192.0.2.99");
}

#[tokio::test]
async fn dns_servfail_fails_unless_expected() {
    let addr = spawn_dns(DnsMode::ServFail).await;
    let e = expect_err(
        probe(
            &dns_spec(DnsCheck::new("example.test", 6), GENEROUS),
            target(addr),
        )
        .await,
    );
    assert_eq!(e.kind, ProbeErrorKind::Dns);
    assert_eq!(e.to_string(), "dns: rcode SERVFAIL");

    let d = DnsCheck {
        expect_rcodes: vec![RCODE_NOERROR, parse_rcode("servfail").unwrap()],
        ..DnsCheck::new("example.test", 6)
    };
    let ok = expect_ok(probe(&dns_spec(d, GENEROUS), target(addr)).await);
    assert_eq!(ok.detail, "rcode SERVFAIL, 0 answers");
}

#[tokio::test]
async fn dns_truncated_answer_is_retried_over_tcp() {
    let addr = spawn_dns(DnsMode::Truncate(DOC_IP)).await;
    let d = DnsCheck {
        expect_answer: Some("192.0.2.1".into()),
        ..DnsCheck::new("big.example.test", 1)
    };
    let ok = expect_ok(probe(&dns_spec(d, GENEROUS), target(addr)).await);
    assert_eq!(ok.detail, "rcode NOERROR, 1 answer over tcp");
}

#[tokio::test]
async fn dns_reply_with_a_foreign_id_is_ignored() {
    let addr = spawn_dns(DnsMode::WrongIdFirst(DOC_IP)).await;
    let d = DnsCheck {
        expect_answer: Some("192.0.2.1".into()),
        ..DnsCheck::new("www.example.test", 1)
    };
    expect_ok(probe(&dns_spec(d, GENEROUS), target(addr)).await);
}

#[tokio::test]
async fn dns_silent_server_times_out_and_closed_port_is_refused() {
    let addr = spawn_dns(DnsMode::Silent).await;
    let e = expect_err(
        probe(
            &dns_spec(DnsCheck::new("example.test", 1), SHORT),
            target(addr),
        )
        .await,
    );
    assert_timed_out(&e, SHORT, "dns over udp");

    // Nothing bound: ICMP port unreachable.
    let closed = {
        let s = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        s.local_addr().unwrap()
    };
    let e = expect_err(
        probe(
            &dns_spec(DnsCheck::new("example.test", 1), GENEROUS),
            target(closed),
        )
        .await,
    );
    assert_eq!(e.kind, ProbeErrorKind::Refused, "{e}");
}

#[test]
fn rcode_names() {
    assert_eq!(rcode_name(0), "NOERROR");
    assert_eq!(rcode_name(2), "SERVFAIL");
    assert_eq!(rcode_name(3), "NXDOMAIN");
    assert_eq!(rcode_name(99), "RCODE99");
    assert_eq!(parse_rcode("nxdomain"), Some(3));
    assert_eq!(parse_rcode("5"), Some(5));
    assert_eq!(parse_rcode("RCODE99"), Some(99));
    assert_eq!(parse_rcode("bogus"), None);
    assert_eq!(parse_rcode("5000"), None);
}

#[test]
fn error_kinds_are_distinct_labels() {
    let labels: std::collections::HashSet<_> =
        ProbeErrorKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(labels.len(), ProbeErrorKind::ALL.len());
    assert_eq!(fmt_duration(Duration::from_secs(2)), "2s");
    assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
    assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
}
