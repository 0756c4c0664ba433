//! HTTPS checks against loopback servers with test certificates (rcgen).

use super::*;

use super::http::*;

// ---------------------------------------------------------------- TLS

/// A test CA and certificates it signs (the webhook tests use it too).
pub(crate) struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    /// The CA certificate, PEM.
    pub(crate) ca_file: tempfile::NamedTempFile,
}

pub(crate) fn pki() -> Pki {
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

    /// A TLS acceptor with a certificate for `names`.
    pub(crate) fn acceptor(&self, names: &[&str], expired: bool) -> TlsAcceptor {
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
