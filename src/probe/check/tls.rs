//! TLS client configuration and handshake for HTTPS checks.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Fail, Phase, PhaseName, ProbeErrorKind, Target, TlsCheck};

/// Build the TLS client configuration of one monitor.
///
/// With `verify`, server certificates are checked against the operating
/// system's trust store (loaded with `rustls-native-certs`) plus the
/// certificates of `ca_file` (PEM), if given. Without `verify`, any
/// certificate is accepted (an explicit opt-out; the handshake signature is
/// still checked against the presented key); `ca_file` is then an error.
///
/// The crypto provider is `ring`. Session resumption is disabled so that
/// every probe sees and verifies the current certificate. ALPN offers only
/// `http/1.1`.
pub fn build_tls_config(verify: bool, ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let mut config = if verify {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!(error = %e, "loading system trust store");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        if ignored > 0 {
            tracing::debug!(
                added,
                ignored,
                "system trust store: some certificates ignored"
            );
        }
        if let Some(path) = ca_file {
            let mut n = 0;
            let iter = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            for cert in iter {
                let cert = cert.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                n += 1;
            }
            if n == 0 {
                return Err(format!("ca_file {}: no certificates", path.display()));
            }
        }
        if roots.is_empty() {
            tracing::warn!("no trusted certificates: every verified HTTPS check will fail");
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        if let Some(path) = ca_file {
            return Err(format!(
                "ca_file {} has no effect when verification is off",
                path.display()
            ));
        }
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth()
    };
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any certificate; still checks handshake signatures.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The name to send as SNI and verify: `sni`, else the target's host name,
/// else its IP.
pub(super) fn server_name(tls: &TlsCheck, target: Target<'_>) -> Result<ServerName<'static>, Fail> {
    let name = match (&tls.sni, target.host) {
        (Some(s), _) => s.clone(),
        (None, Some(h)) => h.to_string(),
        (None, None) => return Ok(ServerName::IpAddress(target.addr.ip().into())),
    };
    ServerName::try_from(name.trim_end_matches('.').to_string()).map_err(|_| {
        Fail::new(
            ProbeErrorKind::Tls,
            format!("tls: invalid server name {name:?}"),
        )
    })
}

/// TLS handshake over a connected stream.
pub(super) async fn handshake(
    tls: &TlsCheck,
    target: Target<'_>,
    tcp: TcpStream,
    phase: &Phase,
) -> Result<TlsStream<TcpStream>, Fail> {
    let name = server_name(tls, target)?;
    phase.set(PhaseName::TlsHandshake);
    TlsConnector::from(tls.config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| handshake_error(&e))
}

/// Classify a handshake failure.
pub(super) fn handshake_error(e: &io::Error) -> Fail {
    if let Some(err) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return Fail::new(ProbeErrorKind::Tls, format!("tls: {}", rustls_reason(err)));
    }
    let reason = match e.kind() {
        io::ErrorKind::UnexpectedEof => "connection closed during handshake".to_string(),
        io::ErrorKind::ConnectionReset => "connection reset during handshake".to_string(),
        _ => format!("handshake: {e}"),
    };
    Fail::new(ProbeErrorKind::Tls, format!("tls: {reason}"))
}

fn rustls_reason(e: &rustls::Error) -> String {
    use CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "certificate expired".to_string(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "certificate not yet valid".to_string()
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "certificate not valid for name".to_string()
            }
            C::UnknownIssuer => "unknown issuer".to_string(),
            C::BadSignature => "bad certificate signature".to_string(),
            C::Revoked => "certificate revoked".to_string(),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "certificate not valid for server authentication".to_string()
            }
            C::BadEncoding => "malformed certificate".to_string(),
            other => format!("invalid certificate: {other:?}"),
        },
        rustls::Error::AlertReceived(a) => format!("alert received: {a:?}"),
        rustls::Error::NoCertificatesPresented => "no certificate presented".to_string(),
        rustls::Error::InvalidMessage(m) => format!("invalid message ({m:?}); not a TLS server?"),
        rustls::Error::NoApplicationProtocol => "server does not speak http/1.1 (ALPN)".to_string(),
        other => other.to_string(),
    }
}
