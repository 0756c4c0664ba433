//! TLS client configuration and handshake for HTTPS checks.

use std::io;

use rustls::CertificateError;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Fail, Phase, PhaseName, ProbeErrorKind, Target, TlsCheck};

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
pub(crate) fn handshake_error(e: &io::Error) -> Fail {
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
