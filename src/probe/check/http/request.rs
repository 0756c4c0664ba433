//! The request of an HTTP(S) check: what may be sent (checked at compile
//! and again per probe), the `Host` header and the hyper request itself.

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    ACCEPT, ACCEPT_ENCODING, CONNECTION, HOST, HeaderMap, HeaderValue, USER_AGENT,
};

use super::super::client::{self, protocol};
use super::super::{Fail, HttpCheck, Target, TlsCheck};
use super::Request;
use crate::health::spec::{is_field_value, is_token};

/// The `Host` header: configured, else the target's host name, else the SNI
/// (HTTPS), else the IP; with the port when not the scheme's default.
pub(super) fn host_header(
    h: &HttpCheck,
    tls: Option<&TlsCheck>,
    target: Target<'_>,
    default_port: u16,
) -> String {
    if let Some(host) = &h.host {
        return host.clone();
    }
    // Written by hand: `format!` of an address and port was ~2k
    // instructions of every probe.
    let mut out = String::with_capacity(48);
    match (target.host, tls.and_then(|t| t.sni.as_deref())) {
        (Some(n), _) | (None, Some(n)) => out.push_str(n.trim_end_matches('.')),
        (None, None) => match target.addr.ip() {
            IpAddr::V4(a) => {
                for (i, octet) in a.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push('.');
                    }
                    push_decimal(&mut out, octet.into());
                }
            }
            IpAddr::V6(a) => {
                use std::fmt::Write as _;
                let _ = write!(out, "[{a}]");
            }
        },
    }
    let port = target.addr.port();
    if port != default_port {
        out.push(':');
        push_decimal(&mut out, port);
    }
    out
}

/// Append `n` in decimal.
pub(super) fn push_decimal(out: &mut String, n: u16) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// Origin-form request target: `/` then visible ASCII that hyper's URI
/// parser takes as is (the `http` crate's path and query maps, checked
/// here so a probe parses no URI twice).
pub(super) fn is_origin_form(s: &str) -> bool {
    origin_form_problem(s).is_none()
}

/// Why `s` cannot be sent as the request target, if it cannot.
fn origin_form_problem(s: &str) -> Option<String> {
    if !s.starts_with('/') {
        return Some("must start with /".to_string());
    }
    let mut in_query = false;
    for b in s.bytes() {
        let refused = match b {
            b'#' => return Some("has a fragment (#), which is never sent".to_string()),
            b'?' => {
                in_query = true;
                false
            }
            0x21..=0x7e => {
                matches!(b, b'<' | b'>') || !in_query && b == b'`' || in_query && b == b'"'
            }
            _ => {
                return Some("must contain no spaces, control or non-ASCII characters".to_string());
            }
        };
        if refused {
            return Some(format!(
                "has {:?}, which must be percent-encoded",
                char::from(b)
            ));
        }
    }
    None
}

/// Headers the client sets itself.
const RESERVED_HEADERS: [&str; 6] = [
    "host",
    "user-agent",
    "connection",
    "content-length",
    "transfer-encoding",
    "accept-encoding",
];

pub(in crate::probe::check) fn validate(h: &HttpCheck) -> Result<(), String> {
    if !is_token(&h.method) {
        return Err(format!("method {:?} is not a token", h.method));
    }
    if let Some(why) = origin_form_problem(&h.path) {
        return Err(format!("path {:?} {why}", h.path));
    }
    if let Some(host) = &h.host
        && (host.is_empty() || !host.bytes().all(|b| (0x21..0x7f).contains(&b)))
    {
        return Err(format!("host {host:?} is not a valid Host header"));
    }
    for (name, value) in &h.headers {
        if !is_token(name) {
            return Err(format!("header name {name:?} is not a token"));
        }
        if RESERVED_HEADERS
            .iter()
            .any(|r| name.eq_ignore_ascii_case(r))
        {
            return Err(format!("header {name:?} is set by the health checker"));
        }
        if !is_field_value(value) {
            return Err(format!("header {name} has control characters"));
        }
    }
    if !is_field_value(&h.user_agent) {
        return Err("user agent has control characters".to_string());
    }
    if h.method.eq_ignore_ascii_case("HEAD") && h.expect_body.is_some() {
        return Err("a HEAD response has no body to check".to_string());
    }
    if h.body_limit == 0 && h.expect_body.as_ref().is_some_and(|b| !b.is_empty()) {
        return Err("body_limit is 0 but a body is expected".to_string());
    }
    Ok(())
}

/// The request as hyper sends it: the fixed headers in the order this
/// client has always sent them, then the configured ones. Built per
/// request (a redirect changes the method and path); the fixed names are
/// hyper's constants and the constant values static, so only the Host,
/// User-Agent and configured values are copied.
pub(super) fn build_request(
    h: &HttpCheck,
    req: &Request<'_>,
) -> Result<hyper::Request<Full<Bytes>>, Fail> {
    let invalid = |e: String| protocol(format!("invalid request: {e}"));
    let mut headers = HeaderMap::with_capacity(5 + h.headers.len());
    let host = HeaderValue::from_str(req.authority).map_err(|_| {
        invalid(format!(
            "host {:?} is not a valid Host header",
            req.authority
        ))
    })?;
    headers.append(HOST, host);
    headers.append(
        USER_AGENT,
        client::header_value("User-Agent", &h.user_agent).map_err(invalid)?,
    );
    headers.append(ACCEPT, HeaderValue::from_static("*/*"));
    headers.append(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    headers.append(CONNECTION, HeaderValue::from_static("close"));
    for (name, value) in &h.headers {
        headers.append(
            client::header_name(name).map_err(invalid)?,
            client::header_value(name, value).map_err(invalid)?,
        );
    }
    client::request(req.method, req.path, headers, Bytes::new()).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let ok = HttpCheck::default();
        assert!(validate(&ok).is_ok());
        let bad = [
            HttpCheck {
                method: "GE T".into(),
                ..HttpCheck::default()
            },
            HttpCheck {
                path: "nope".into(),
                ..HttpCheck::default()
            },
            HttpCheck {
                path: "/a\r\nX: y".into(),
                ..HttpCheck::default()
            },
            HttpCheck {
                host: Some("a b".into()),
                ..HttpCheck::default()
            },
            HttpCheck {
                headers: vec![("X-A".into(), "v\r\nInjected: 1".into())],
                ..HttpCheck::default()
            },
            HttpCheck {
                headers: vec![("Host".into(), "x".into())],
                ..HttpCheck::default()
            },
            HttpCheck {
                headers: vec![("Bad:Name".into(), "x".into())],
                ..HttpCheck::default()
            },
            HttpCheck {
                body_limit: 0,
                expect_body: Some("x".into()),
                ..HttpCheck::default()
            },
            HttpCheck {
                method: "HEAD".into(),
                expect_body: Some("x".into()),
                ..HttpCheck::default()
            },
        ];
        for h in bad {
            assert!(validate(&h).is_err(), "{h:?}");
        }
        let path = |p: &str| {
            validate(&HttpCheck {
                path: p.into(),
                ..HttpCheck::default()
            })
        };
        assert!(path("/a{b}|c~d\"e?q=`x'|{}").is_ok());
        assert_eq!(
            path("/a#top").unwrap_err(),
            "path \"/a#top\" has a fragment (#), which is never sent"
        );
        assert_eq!(
            path("/a<b").unwrap_err(),
            "path \"/a<b\" has '<', which must be percent-encoded"
        );
        assert_eq!(
            path("/a`b").unwrap_err(),
            "path \"/a`b\" has '`', which must be percent-encoded"
        );
        assert_eq!(
            path("/a?\"b\"").unwrap_err(),
            "path \"/a?\\\"b\\\"\" has '\"', which must be percent-encoded"
        );
        assert_eq!(path("a").unwrap_err(), "path \"a\" must start with /");
        // What passes is what hyper's URI parser keeps as it is.
        for p in [
            "/",
            "/a{b}|c~d\"e?q=`x'|{}",
            "/%20?x=%3C",
            "/a;b=c/d@e:f!$&'()*+,",
        ] {
            let uri: hyper::Uri = p.parse().unwrap();
            assert_eq!(uri.path_and_query().unwrap().as_str(), p);
        }
    }
}
