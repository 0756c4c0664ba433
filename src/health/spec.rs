//! What a health check is, as compiled from the config: the pure part the
//! snapshot holds and the prober runs (`probe::check`), with no I/O here.

use std::sync::Arc;
use std::time::Duration;

pub use super::status::StatusSet;

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

/// TLS settings of an HTTPS check.
#[derive(Debug, Clone)]
pub struct TlsCheck {
    /// Client configuration, built once per monitor by `probe::check::build_tls_config`.
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

/// Mnemonics of DNS response codes (RFC 1035, 2136, 6891, 2845, 2930,
/// 4635, 7873).
const RCODES: [(u16, &str); 19] = [
    (0, "NOERROR"),
    (1, "FORMERR"),
    (2, "SERVFAIL"),
    (3, "NXDOMAIN"),
    (4, "NOTIMP"),
    (5, "REFUSED"),
    (6, "YXDOMAIN"),
    (7, "YXRRSET"),
    (8, "NXRRSET"),
    (9, "NOTAUTH"),
    (10, "NOTZONE"),
    (16, "BADVERS"),
    (17, "BADKEY"),
    (18, "BADTIME"),
    (19, "BADMODE"),
    (20, "BADNAME"),
    (21, "BADALG"),
    (22, "BADTRUNC"),
    (23, "BADCOOKIE"),
];

/// Mnemonic of a response code (`SERVFAIL`), or `RCODE<n>` when unnamed.
pub fn rcode_name(code: u16) -> String {
    RCODES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or_else(|| format!("RCODE{code}"), |(_, n)| (*n).to_string())
}

/// Parse a response code from its mnemonic (any case) or number (0-4095).
pub fn parse_rcode(s: &str) -> Option<u16> {
    let s = s.trim();
    if let Some((c, _)) = RCODES.iter().find(|(_, n)| n.eq_ignore_ascii_case(s)) {
        return Some(*c);
    }
    let digits = s
        .strip_prefix("RCODE")
        .or_else(|| s.strip_prefix("rcode"))
        .unwrap_or(s);
    digits.parse::<u16>().ok().filter(|c| *c < 4096)
}

/// `tchar` of RFC 9110.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A method or header name: one or more `tchar`s.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Header value: no control characters except tab.
pub(crate) fn is_field_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}
