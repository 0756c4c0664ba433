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

mod dns;
mod http;
mod tls;

pub(crate) use self::tls::pki;

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

// ---------------------------------------------------------------- labels

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
