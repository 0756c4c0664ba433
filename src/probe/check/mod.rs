//! One health probe: given a check specification and a target, run a single
//! probe under a hard deadline and return success or a classified error.
//!
//! The scheduler (interval, rise/fall hysteresis, publishing into
//! [`HealthTable`](crate::health::HealthTable)) lives elsewhere and calls [`probe`].
//! Nothing here logs probe results; the caller does.
//!
//! Every probe runs under one `tokio::time::timeout` of
//! [`CheckSpec::timeout`]: connect, TLS handshake, request and response all
//! count against it, so a slow or hostile endpoint costs one probe until the
//! deadline and never more. Reads are bounded (16 KiB of response head,
//! [`HttpCheck::body_limit`] of body, 64 KiB per DNS message), so memory per
//! probe is bounded by design.

mod dns;
mod http;
mod status;
mod tcp;
mod tls;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::time::Instant;

pub use dns::{parse_rcode, rcode_name};
pub use status::StatusSet;
pub use tls::build_tls_config;

/// DNS response code NOERROR.
pub const RCODE_NOERROR: u16 = 0;

/// What to probe and how long it may take. Compiled from config and shared
/// by many endpoints (behind an `Arc`).
#[derive(Debug, Clone)]
pub struct CheckSpec {
    /// The kind of check.
    pub kind: CheckKind,
    /// Hard deadline for the whole probe (connect + TLS + request + response).
    pub timeout: Duration,
}

/// The kinds of check.
#[derive(Debug, Clone)]
pub enum CheckKind {
    /// A TCP connection is accepted within the deadline, then closed.
    Tcp,
    /// An HTTP/1.1 request over plain TCP.
    Http(HttpCheck),
    /// An HTTP/1.1 request over TLS.
    Https(HttpCheck, TlsCheck),
    /// A DNS query over UDP (TCP when the answer is truncated).
    Dns(DnsCheck),
}

/// An HTTP request and what its response must look like.
#[derive(Debug, Clone)]
pub struct HttpCheck {
    /// Request method (default `GET`). `HEAD` reads no body.
    pub method: String,
    /// Request target, origin form (default `/`).
    pub path: String,
    /// `Host` header. Default: the target's host name if it has one, else
    /// (for HTTPS) the TLS `sni` if set, else the IP; with `:port` when the
    /// port is not the scheme's default.
    pub host: Option<String>,
    /// Extra request headers, sent in order after the fixed ones.
    pub headers: Vec<(String, String)>,
    /// Acceptable status codes (default `2xx`).
    pub expect_status: StatusSet,
    /// A substring that must appear in the first `body_limit` bytes of the
    /// (de-chunked) body.
    pub expect_body: Option<String>,
    /// Follow up to 5 redirects (301, 302, 303, 307, 308) with the same
    /// scheme to the same host and port only; always to the same address.
    /// Every hop counts against the same deadline. Default false.
    pub follow_redirects: bool,
    /// Most body bytes read (default 64 KiB); past that reading stops.
    pub body_limit: usize,
    /// `User-Agent` header.
    pub user_agent: String,
}

/// Default [`HttpCheck::body_limit`]: 64 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

impl Default for HttpCheck {
    /// `GET /`, expecting 2xx, no body check, no redirects, 64 KiB body limit.
    fn default() -> Self {
        HttpCheck {
            method: "GET".to_string(),
            path: "/".to_string(),
            host: None,
            headers: Vec::new(),
            expect_status: StatusSet::default(),
            expect_body: None,
            follow_redirects: false,
            body_limit: DEFAULT_BODY_LIMIT,
            user_agent: default_user_agent(),
        }
    }
}

/// The default user agent: `steerdns/<version> (health check)`.
pub fn default_user_agent() -> String {
    format!("steerdns/{} (health check)", env!("CARGO_PKG_VERSION"))
}

impl HttpCheck {
    /// Check that the request can be written safely: a method token, an
    /// origin-form path, header names that are tokens and values without
    /// control characters. The config compiler should call this; [`probe`]
    /// checks again and fails with [`ProbeErrorKind::Protocol`].
    pub fn validate(&self) -> Result<(), String> {
        http::validate(self)
    }
}

/// TLS settings of an HTTPS check.
#[derive(Debug, Clone)]
pub struct TlsCheck {
    /// Client configuration, built once per monitor by [`build_tls_config`].
    pub config: Arc<rustls::ClientConfig>,
    /// Server name to send and verify. Default: the target's host name; with
    /// an IP-only target, the certificate is verified against the IP.
    pub sni: Option<String>,
}

/// A DNS query and what its response must look like.
#[derive(Debug, Clone)]
pub struct DnsCheck {
    /// Name to query (absolute; a missing final dot is implied).
    pub qname: String,
    /// Record type to query (e.g. 1 for A, 28 for AAAA, 6 for SOA).
    pub qtype: u16,
    /// Acceptable response codes (default `[NOERROR]`).
    pub expect_rcodes: Vec<u16>,
    /// An A/AAAA address that must be among the answers, or else a substring
    /// of an answer record's data in presentation form.
    pub expect_answer: Option<String>,
}

impl DnsCheck {
    /// A query for `qname`/`qtype` expecting NOERROR and any answer.
    pub fn new(qname: impl Into<String>, qtype: u16) -> Self {
        DnsCheck {
            qname: qname.into(),
            qtype,
            expect_rcodes: vec![RCODE_NOERROR],
            expect_answer: None,
        }
    }
}

/// Where to probe.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Address and port to connect to; never anything else, even on redirect.
    pub addr: SocketAddr,
    /// Host name of the endpoint, if it has one (Host header, SNI).
    pub host: Option<&'a str>,
}

/// A successful probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOk {
    /// What was seen, e.g. `status 200`, `connected`, `rcode NOERROR`.
    pub detail: String,
    /// How long the probe took.
    pub duration: Duration,
}

/// A failed probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError {
    /// Bounded classification (a metrics label).
    pub kind: ProbeErrorKind,
    /// Operator-readable reason, e.g. `status 503`, `tls: unknown issuer`;
    /// also what `Display` prints.
    pub detail: String,
    /// How long the probe took.
    pub duration: Duration,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for ProbeError {}

/// Why a probe failed; a small closed set usable as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeErrorKind {
    /// The deadline passed.
    Timeout,
    /// The connection was refused (RST, or ICMP port unreachable for UDP).
    Refused,
    /// Any other connect failure (unreachable, no route, ...).
    Connect,
    /// TLS handshake or certificate failure.
    Tls,
    /// The HTTP status is not in the expected set.
    Status,
    /// The expected body substring was not found.
    Body,
    /// The peer broke HTTP or DNS framing, or sent something unexpected.
    Protocol,
    /// The DNS response has the wrong rcode or lacks the expected answer.
    Dns,
    /// Another I/O error after connecting (reset, ...).
    Io,
}

impl ProbeErrorKind {
    /// Lower-case label: `timeout`, `refused`, `connect`, `tls`, `status`,
    /// `body`, `protocol`, `dns`, `io`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProbeErrorKind::Timeout => "timeout",
            ProbeErrorKind::Refused => "refused",
            ProbeErrorKind::Connect => "connect",
            ProbeErrorKind::Tls => "tls",
            ProbeErrorKind::Status => "status",
            ProbeErrorKind::Body => "body",
            ProbeErrorKind::Protocol => "protocol",
            ProbeErrorKind::Dns => "dns",
            ProbeErrorKind::Io => "io",
        }
    }

    /// Every kind, for pre-registering metrics label values.
    pub const ALL: [ProbeErrorKind; 9] = [
        ProbeErrorKind::Timeout,
        ProbeErrorKind::Refused,
        ProbeErrorKind::Connect,
        ProbeErrorKind::Tls,
        ProbeErrorKind::Status,
        ProbeErrorKind::Body,
        ProbeErrorKind::Protocol,
        ProbeErrorKind::Dns,
        ProbeErrorKind::Io,
    ];
}

impl fmt::Display for ProbeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure inside a probe, before the duration is stamped on.
#[derive(Debug)]
pub(crate) struct Fail {
    kind: ProbeErrorKind,
    detail: String,
}

impl Fail {
    fn new(kind: ProbeErrorKind, detail: impl Into<String>) -> Self {
        Fail {
            kind,
            detail: detail.into(),
        }
    }
}

/// The phase a probe is in, for the timeout message. Atomic so the probe
/// future stays `Send`.
#[derive(Debug, Default)]
pub(crate) struct Phase(AtomicU8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum PhaseName {
    Connect = 0,
    TlsHandshake,
    Request,
    ResponseHead,
    ResponseBody,
    DnsUdp,
    DnsTcp,
}

impl Phase {
    fn set(&self, p: PhaseName) {
        self.0.store(p as u8, Ordering::Relaxed);
    }

    fn name(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            0 => "connect",
            1 => "tls handshake",
            2 => "request",
            3 => "response head",
            4 => "response body",
            5 => "dns over udp",
            _ => "dns over tcp",
        }
    }
}

/// Run one probe of `spec` against `target`, never longer than
/// `spec.timeout`.
pub async fn probe(spec: &CheckSpec, target: Target<'_>) -> Result<ProbeOk, ProbeError> {
    let start = Instant::now();
    let phase = Phase::default();
    let run = async {
        match &spec.kind {
            CheckKind::Tcp => tcp::probe(target, &phase).await,
            CheckKind::Http(h) => http::probe(h, None, target, &phase).await,
            CheckKind::Https(h, t) => http::probe(h, Some(t), target, &phase).await,
            CheckKind::Dns(d) => dns::probe(d, target, &phase).await,
        }
    };
    let result = match tokio::time::timeout(spec.timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(Fail::new(
            ProbeErrorKind::Timeout,
            format!(
                "timeout after {} ({})",
                fmt_duration(spec.timeout),
                phase.name()
            ),
        )),
    };
    let duration = start.elapsed();
    match result {
        Ok(detail) => Ok(ProbeOk { detail, duration }),
        Err(f) => Err(ProbeError {
            kind: f.kind,
            detail: f.detail,
            duration,
        }),
    }
}

/// `2s`, `1.5s`, `250ms`.
fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms >= 1000 {
        format!("{}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}
