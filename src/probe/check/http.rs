//! HTTP and HTTPS checks: the request, redirects and what the response must
//! look like. The wire work is done by the shared hyper-based client
//! ([`super::client`]): one request per fresh connection, `Connection:
//! close`, bounded reads.

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    ACCEPT, ACCEPT_ENCODING, CONNECTION, HOST, HeaderMap, HeaderValue, LOCATION, USER_AGENT,
};
use tokio::io::{AsyncRead, AsyncWrite};

use super::client::{self, Exchange, Seen, protocol};
use super::{Fail, HttpCheck, Phase, ProbeErrorKind, Target, TlsCheck, tcp, tls};
use crate::health::spec::{is_field_value, is_token};

/// Most redirects followed.
pub(super) const MAX_REDIRECTS: usize = 5;

/// Run an HTTP(S) check.
pub(super) async fn probe(
    h: &HttpCheck,
    tls: Option<&TlsCheck>,
    target: Target<'_>,
    phase: &Phase,
) -> Result<String, Fail> {
    validate(h).map_err(|e| {
        Fail::new(
            ProbeErrorKind::Protocol,
            format!("protocol: invalid request: {e}"),
        )
    })?;
    let https = tls.is_some();
    let default_port = if https { 443 } else { 80 };
    let authority = host_header(h, tls, target, default_port);
    let mut method = h.method.clone();
    let mut path = h.path.clone();
    let mut hops = 0;
    loop {
        let req = Request {
            method: &method,
            path: &path,
            authority: &authority,
            https,
            default_port,
        };
        let outcome = match tls {
            None => {
                let stream = tcp::connect(target.addr, phase).await?;
                exchange(stream, h, &req, phase).await?
            }
            Some(t) => {
                let tcp = tcp::connect(target.addr, phase).await?;
                let stream = tls::handshake(t, target, tcp, phase).await?;
                exchange(stream, h, &req, phase).await?
            }
        };
        match outcome {
            Outcome::Redirect { status, path: next } => {
                if hops == MAX_REDIRECTS {
                    return Err(Fail::new(
                        ProbeErrorKind::Protocol,
                        format!(
                            "protocol: too many redirects (status {status} after {MAX_REDIRECTS})"
                        ),
                    ));
                }
                hops += 1;
                if status == 303 && !method.eq_ignore_ascii_case("HEAD")
                    || matches!(status, 301 | 302) && method.eq_ignore_ascii_case("POST")
                {
                    method = "GET".to_string();
                }
                path = next;
            }
            Outcome::Done(detail) => {
                return Ok(match hops {
                    0 => detail,
                    1 => format!("{detail} (after 1 redirect)"),
                    n => format!("{detail} (after {n} redirects)"),
                });
            }
        }
    }
}

/// One request on a fresh connection.
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    authority: &'a str,
    https: bool,
    default_port: u16,
}

enum Outcome {
    /// Follow a redirect to this path on the same host.
    Redirect { status: u16, path: String },
    /// A final, acceptable response.
    Done(String),
}

/// The `Host` header: configured, else the target's host name, else the SNI
/// (HTTPS), else the IP; with the port when not the scheme's default.
fn host_header(
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

fn push_decimal(out: &mut String, n: u16) {
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
fn is_origin_form(s: &str) -> bool {
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

pub(super) fn validate(h: &HttpCheck) -> Result<(), String> {
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
fn build_request(h: &HttpCheck, req: &Request<'_>) -> Result<hyper::Request<Full<Bytes>>, Fail> {
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

/// Send the request and read the response on `stream`.
async fn exchange<S>(
    stream: S,
    h: &HttpCheck,
    req: &Request<'_>,
    phase: &Phase,
) -> Result<Outcome, Fail>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let request = build_request(h, req)?;
    let seen = Seen::default();
    let (mut ex, resp) = Exchange::start(stream, request, phase, &seen).await?;
    let status = resp.status().as_u16();
    if status == 101 {
        return Err(protocol("unexpected 101 switching protocols"));
    }
    if status > 599 {
        return Err(protocol(format!(
            "malformed status line {}",
            ex.first_line()
        )));
    }

    let mut redirect_note = String::new();
    if h.follow_redirects
        && matches!(status, 301 | 302 | 303 | 307 | 308)
        && let Some(loc) = resp.headers().get(LOCATION)
    {
        match resolve_redirect(&String::from_utf8_lossy(loc.as_bytes()), req) {
            Ok(path) => return Ok(Outcome::Redirect { status, path }),
            Err(why) => redirect_note = format!(" (redirect {why} not followed)"),
        }
    }
    if !h.expect_status.contains(status) {
        return Err(Fail::new(
            ProbeErrorKind::Status,
            format!("status {status}{redirect_note}"),
        ));
    }

    // hyper knows HEAD, 204 and 304 have no body.
    let marker = h.expect_body.as_deref().map(str::as_bytes);
    let body = ex.read_body(resp, h.body_limit, marker, phase).await?;
    if let Some(m) = &h.expect_body
        && !body.found
    {
        return Err(Fail::new(
            ProbeErrorKind::Body,
            format!("body: {m:?} not found in {} bytes", body.len),
        ));
    }
    Ok(Outcome::Done(format!("status {status}")))
}

/// Where a redirect leads: the new path on the same scheme, host and port,
/// or why it is not followed.
fn resolve_redirect(loc: &str, req: &Request<'_>) -> Result<String, String> {
    let loc = loc.split('#').next().unwrap_or_default().trim();
    let scheme = if req.https { "https" } else { "http" };
    let rest = if let Some((s, rest)) = loc.split_once("://")
        && !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        if !s.eq_ignore_ascii_case(scheme) {
            return Err(format!("to scheme {s}"));
        }
        Some(rest)
    } else {
        loc.strip_prefix("//")
    };
    let path = match rest {
        Some(rest) => {
            let split = rest.find(['/', '?']).unwrap_or(rest.len());
            let (auth, path) = rest.split_at(split);
            if !same_authority(auth, req.authority, req.default_port) {
                return Err(format!("to {auth}"));
            }
            if path.starts_with('?') || path.is_empty() {
                format!("/{path}")
            } else {
                path.to_string()
            }
        }
        None if loc.starts_with('/') => loc.to_string(),
        None => {
            // Relative reference: resolve against the current path's
            // directory (dot segments are left to the server).
            let cur = req.path.split('?').next().unwrap_or("/");
            if loc.starts_with('?') {
                format!("{cur}{loc}")
            } else {
                let dir = &cur[..cur.rfind('/').map_or(0, |i| i + 1)];
                format!("{dir}{loc}")
            }
        }
    };
    if !is_origin_form(&path) {
        return Err(format!("to invalid location {loc:?}"));
    }
    Ok(path)
}

/// Split `host[:port]` (IPv6 in brackets).
fn split_authority(a: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        (format!("[{h}]"), after)
    } else {
        match a.rfind(':') {
            Some(i) => (a[..i].to_string(), &a[i..]),
            None => (a.to_string(), ""),
        }
    };
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => default_port,
        None => return None,
        Some("") => default_port,
        Some(p) => p.parse().ok()?,
    };
    Some((host.trim_end_matches('.').to_ascii_lowercase(), port))
}

fn same_authority(a: &str, ours: &str, default_port: u16) -> bool {
    !a.contains('@')
        && split_authority(a, default_port)
            .is_some_and(|x| split_authority(ours, default_port) == Some(x))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;
    use crate::probe::check::PhaseName;

    fn req<'a>(path: &'a str, authority: &'a str, https: bool) -> Request<'a> {
        Request {
            method: "GET",
            path,
            authority,
            https,
            default_port: if https { 443 } else { 80 },
        }
    }

    #[test]
    fn redirects_resolve_only_to_the_same_origin() {
        let r = req("/a/b?q=1", "example.com", false);
        assert_eq!(resolve_redirect("/x", &r).unwrap(), "/x");
        assert_eq!(resolve_redirect("c", &r).unwrap(), "/a/c");
        assert_eq!(resolve_redirect("?z", &r).unwrap(), "/a/b?z");
        assert_eq!(
            resolve_redirect("http://EXAMPLE.com/y#frag", &r).unwrap(),
            "/y"
        );
        assert_eq!(
            resolve_redirect("http://example.com:80?k", &r).unwrap(),
            "/?k"
        );
        assert_eq!(resolve_redirect("//example.com/z", &r).unwrap(), "/z");
        assert_eq!(resolve_redirect("http://example.com", &r).unwrap(), "/");
        assert!(resolve_redirect("https://example.com/", &r).is_err());
        assert!(resolve_redirect("http://example.com:8080/", &r).is_err());
        assert!(resolve_redirect("http://other.example/", &r).is_err());
        assert!(resolve_redirect("http://user@example.com/", &r).is_err());
        assert!(resolve_redirect("//other.example/", &r).is_err());
        assert!(resolve_redirect("/bad path", &r).is_err());

        let r = req("/", "[::1]:8443", true);
        assert_eq!(resolve_redirect("https://[::1]:8443/h", &r).unwrap(), "/h");
        assert!(resolve_redirect("https://[::1]/h", &r).is_err());
    }

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

    /// Run one exchange against a peer that answers `response` (then
    /// closes) on an in-memory pipe; also returns what the client sent.
    async fn against(h: &HttpCheck, response: &'static [u8]) -> (Result<Outcome, Fail>, String) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let peer = tokio::spawn(serve_once(server, response));
        let r = req(&h.path, "example.test", false);
        let phase = Phase::default();
        let out = exchange(client, h, &r, &phase).await;
        (out, peer.await.unwrap())
    }

    async fn serve_once(mut s: DuplexStream, response: &'static [u8]) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(response).await;
        let _ = s.shutdown().await;
        String::from_utf8_lossy(&got).into_owned()
    }

    fn done(r: Result<Outcome, Fail>) -> String {
        match r {
            Ok(Outcome::Done(d)) => d,
            Ok(Outcome::Redirect { status, path }) => panic!("redirect {status} to {path}"),
            Err(f) => panic!("failed: {:?} {}", f.kind, f.detail),
        }
    }

    fn failed(r: Result<Outcome, Fail>) -> Fail {
        match r {
            Ok(_) => panic!("passed unexpectedly"),
            Err(f) => f,
        }
    }

    #[tokio::test]
    async fn the_request_on_the_wire() {
        let h = HttpCheck {
            headers: vec![("X-Probe".into(), "yes".into())],
            ..HttpCheck::default()
        };
        let (out, sent) = against(&h, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        assert_eq!(done(out), "status 200");
        let ua = crate::probe::check::default_user_agent();
        assert_eq!(
            sent,
            format!(
                "GET / HTTP/1.1\r\nHost: example.test\r\nUser-Agent: {ua}\r\nAccept: */*\r\n\
                 Accept-Encoding: identity\r\nConnection: close\r\nX-Probe: yes\r\n\r\n"
            )
        );
    }

    #[tokio::test]
    async fn status_lines() {
        for (resp, status) in [
            (&b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..], "status 200"),
            (b"HTTP/1.0 204\r\n\r\n", "status 204"),
            (b"HTTP/1.1 204 No Content here\r\n\r\n", "status 204"),
            // Informational responses before the final one are skipped.
            (
                b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                "status 200",
            ),
        ] {
            let (out, _) = against(&HttpCheck::default(), resp).await;
            assert_eq!(done(out), status, "{:?}", String::from_utf8_lossy(resp));
        }
        for bad in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"http/1.1 200 OK\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
            b"HTTP/1.1 099 x\r\n\r\n",
            b"HTTP/1.1 600 x\r\n\r\n",
        ] {
            let (out, _) = against(&HttpCheck::default(), bad).await;
            let e = failed(out);
            assert_eq!(e.kind, ProbeErrorKind::Protocol);
            let line = String::from_utf8_lossy(bad.split(|&b| b == b'\r').next().unwrap());
            assert_eq!(
                e.detail,
                format!("protocol: malformed status line {line:?}"),
                "{line}"
            );
        }
        let (out, _) = against(&HttpCheck::default(), b"").await;
        assert_eq!(
            failed(out).detail,
            "protocol: connection closed before status line"
        );
        let (out, _) = against(&HttpCheck::default(), b"HTTP/1.1 200 OK\r\nX: y\r\n").await;
        assert_eq!(
            failed(out).detail,
            "protocol: connection closed in response head after 23 bytes"
        );
        let (out, _) = against(
            &HttpCheck::default(),
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
        )
        .await;
        assert_eq!(
            failed(out).detail,
            "protocol: unexpected 101 switching protocols"
        );
    }

    #[tokio::test]
    async fn heads() {
        // The last transfer coding decides; chunked wins over a length.
        let h = HttpCheck {
            expect_body: Some("hello".into()),
            ..HttpCheck::default()
        };
        let (out, _) = against(
            &h,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(done(out), "status 200");
        // Bare LF line ends.
        let (out, _) = against(&h, b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello").await;
        assert_eq!(done(out), "status 200");
        for (bad, why) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"[..],
                "protocol: conflicting content-length headers",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "protocol: bad content-length \"-1\"",
            ),
            (
                b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
                "protocol: obsolete header line folding",
            ),
            (
                b"HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n",
                "protocol: malformed header name \"Bad Name\"",
            ),
            (
                b"HTTP/1.1 200 OK\r\nServer: x\r\nno colon at all\r\n\r\n",
                "protocol: malformed header line \"no colon at all\"",
            ),
            (
                b"HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n",
                "protocol: malformed header value \"a\\u{1}b\"",
            ),
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n:empty\r\n\r\n",
                "protocol: malformed header name \"\"",
            ),
            (
                b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "protocol: transfer-encoding in an HTTP/1.0 response",
            ),
        ] {
            let (out, _) = against(&HttpCheck::default(), bad).await;
            let e = failed(out);
            assert_eq!(e.kind, ProbeErrorKind::Protocol, "{}", e.detail);
            assert_eq!(e.detail, why);
        }
        // Many small header lines within the size limit.
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..=client::MAX_HEADERS {
            many.extend_from_slice(b"X: y\r\n");
        }
        many.extend_from_slice(b"\r\n");
        let (out, _) = against(&HttpCheck::default(), many.leak()).await;
        assert_eq!(
            failed(out).detail,
            format!(
                "protocol: more than {} response header lines",
                client::MAX_HEADERS
            )
        );
    }

    #[tokio::test]
    async fn chunked_body_with_marker_across_chunks() {
        let h = HttpCheck {
            expect_body: Some("marker".into()),
            ..HttpCheck::default()
        };
        let (out, _) = against(
            &h,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext\r\nhello\r\n4\r\n mar\r\n3\r\nker\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(done(out), "status 200");
        // Trailers are not checked (nor were they before hyper).
        let (out, _) = against(
            &HttpCheck::default(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nmarker\r\n0\r\nBad Trailer\r\n\r\n",
        )
        .await;
        assert_eq!(done(out), "status 200");
        for (bad, why) in [
            (
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"[..],
                "protocol: malformed chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXY0\r\n\r\n",
                "protocol: malformed chunked body (missing CRLF after chunk)",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nhello",
                "protocol: connection closed in chunked body",
            ),
        ] {
            let (out, _) = against(&h, bad).await;
            let e = failed(out);
            assert_eq!(e.kind, ProbeErrorKind::Protocol);
            assert_eq!(e.detail, why);
        }
    }

    #[tokio::test]
    async fn truncated_length_body_is_a_protocol_error() {
        let (out, _) = against(
            &HttpCheck::default(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
        )
        .await;
        let e = failed(out);
        assert_eq!(e.kind, ProbeErrorKind::Protocol);
        assert_eq!(e.detail, "protocol: body truncated (95 bytes missing)");
    }

    #[tokio::test]
    async fn endless_body_is_bounded_by_the_limit() {
        // A peer that never stops sending: the client keeps at most `limit`
        // bytes and returns as soon as it has them.
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            let mut head = [0u8; 1024];
            let _ = server.read(&mut head).await;
            let _ = server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            let chunk = vec![b'a'; 4096];
            let mut sent = 0usize;
            while server.write_all(&chunk).await.is_ok() {
                sent += chunk.len();
            }
            sent
        });
        let limit = 100_000;
        let h = HttpCheck {
            expect_body: Some("never".into()),
            body_limit: limit,
            ..HttpCheck::default()
        };
        let phase = Phase::default();
        let e = failed(exchange(client, &h, &req("/", "example.test", false), &phase).await);
        assert_eq!(
            e.detail,
            format!("body: \"never\" not found in {limit} bytes")
        );
        let sent = writer.await.unwrap();
        // The writer stopped because the client went away, not because it
        // ran out: it got at most the limit plus what hyper and the pipe
        // buffer.
        assert!(
            sent <= limit + client::HEAD_LIMIT + 64 * 1024 + 4096,
            "sent {sent}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn phases_name_where_a_timeout_hit() {
        // A peer that reads the request and never answers: once everything
        // is idle (paused time advances only then), the client is waiting
        // in "response head", not "request".
        let (client, mut server) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while matches!(server.read(&mut buf).await, Ok(n) if n > 0) {}
        });
        let phase = Phase::default();
        let h = HttpCheck::default();
        let r = req("/", "example.test", false);
        let run = exchange(client, &h, &r, &phase);
        let timed_out = tokio::time::timeout(std::time::Duration::from_secs(1), run).await;
        assert!(timed_out.is_err());
        assert!(phase.is(PhaseName::ResponseHead), "{}", phase.name());
    }
}
