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
//!
//! HTTP goes through [`client`], the crate's one HTTP/1.1 client (hyper's
//! client connection API), which the webhook notifier uses too.

pub(crate) mod client;
mod dns;
mod head;
mod http;
mod tcp;
pub(crate) mod tls;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::time::Instant;

pub use crate::health::spec::{
    CheckKind, CheckSpec, DEFAULT_BODY_LIMIT, DnsCheck, HttpCheck, RCODE_NOERROR, StatusSet,
    TlsCheck, default_user_agent,
};
pub use crate::health::spec::{parse_rcode, rcode_name};
pub use crate::health::tls::build_tls_config;

impl HttpCheck {
    /// Check that the request can be written safely: a method token, an
    /// origin-form path, header names that are tokens and values without
    /// control characters. The config compiler should call this; [`probe`]
    /// checks again and fails with [`ProbeErrorKind::Protocol`].
    pub fn validate(&self) -> Result<(), String> {
        http::validate(self)
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
    pub(crate) kind: ProbeErrorKind,
    pub(crate) detail: String,
}

impl Fail {
    pub(crate) fn new(kind: ProbeErrorKind, detail: impl Into<String>) -> Self {
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

    fn is(&self, p: PhaseName) -> bool {
        self.0.load(Ordering::Relaxed) == p as u8
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
