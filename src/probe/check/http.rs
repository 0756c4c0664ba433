//! A small, strict HTTP/1.1 client: one request per fresh connection,
//! `Connection: close`, bounded reads.

use std::io;
use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Fail, HttpCheck, Phase, PhaseName, ProbeErrorKind, Target, TlsCheck, tcp, tls};

/// Most bytes of response head (status line and headers) accepted.
pub(super) const HEAD_LIMIT: usize = 16 * 1024;
/// Most bytes of a chunk-size line (with extensions) accepted.
const CHUNK_LINE_LIMIT: usize = 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 * 1024;
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
    let name = match (target.host, tls.and_then(|t| t.sni.as_deref())) {
        (Some(n), _) | (None, Some(n)) => n.trim_end_matches('.').to_string(),
        (None, None) => match target.addr.ip() {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        },
    };
    let port = target.addr.port();
    if port == default_port {
        name
    } else {
        format!("{name}:{port}")
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Header value: no control characters except tab.
fn is_field_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Origin-form request target: `/` then visible ASCII.
fn is_origin_form(s: &str) -> bool {
    s.starts_with('/') && s.bytes().all(|b| (0x21..0x7f).contains(&b))
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
    if !is_origin_form(&h.path) {
        return Err(format!(
            "path {:?} must start with / and contain no spaces or control characters",
            h.path
        ));
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

fn request_bytes(h: &HttpCheck, req: &Request<'_>) -> Vec<u8> {
    let mut s = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nAccept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n",
        req.method, req.path, req.authority, h.user_agent
    );
    for (name, value) in &h.headers {
        s.push_str(name);
        s.push_str(": ");
        s.push_str(value);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// Send the request and read the response on `stream`.
async fn exchange<S>(
    mut stream: S,
    h: &HttpCheck,
    req: &Request<'_>,
    phase: &Phase,
) -> Result<Outcome, Fail>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    phase.set(PhaseName::Request);
    let bytes = request_bytes(h, req);
    stream
        .write_all(&bytes)
        .await
        .map_err(|e| tcp::io_error("sending request", &e))?;
    stream
        .flush()
        .await
        .map_err(|e| tcp::io_error("sending request", &e))?;

    phase.set(PhaseName::ResponseHead);
    let mut r = Reader::new(stream);
    let head = loop {
        let head = r.read_head().await?;
        match head.status {
            101 => {
                return Err(Fail::new(
                    ProbeErrorKind::Protocol,
                    "protocol: unexpected 101 switching protocols",
                ));
            }
            100..=199 => continue, // informational (103 early hints, ...)
            _ => break head,
        }
    };

    let status = head.status;
    let mut redirect_note = String::new();
    if h.follow_redirects
        && matches!(status, 301 | 302 | 303 | 307 | 308)
        && let Some(loc) = &head.location
    {
        match resolve_redirect(loc, req) {
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

    let marker = h.expect_body.as_deref().map(str::as_bytes);
    let framing = if req.method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 {
        Framing::Length(0)
    } else {
        head.framing
    };
    phase.set(PhaseName::ResponseBody);
    let body = r.read_body(framing, h.body_limit, marker).await?;
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

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the server closes.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) status: u16,
    pub(super) framing: Framing,
    pub(super) location: Option<String>,
}

/// What was read of a body.
#[derive(Debug)]
pub(super) struct BodyRead {
    /// Body bytes read (never more than the limit).
    pub(super) len: usize,
    /// Whether the marker was seen.
    pub(super) found: bool,
}

fn protocol(detail: impl Into<String>) -> Fail {
    Fail::new(
        ProbeErrorKind::Protocol,
        format!("protocol: {}", detail.into()),
    )
}

/// A snippet of peer bytes for an error message.
fn snippet(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(32)]).into_owned();
    format!("{s:?}")
}

/// Buffered reads with explicit bounds.
pub(super) struct Reader<S> {
    s: S,
    buf: Vec<u8>,
    start: usize,
}

impl<S: AsyncRead + Unpin> Reader<S> {
    pub(super) fn new(s: S) -> Self {
        Reader {
            s,
            buf: Vec::new(),
            start: 0,
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Read up to `READ_CHUNK` more bytes; 0 at end of stream. A TLS peer
    /// that closes without close_notify counts as end of stream.
    async fn fill(&mut self) -> Result<usize, Fail> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let r = self.s.read(&mut self.buf[old..]).await;
        let n = match r {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => {
                self.buf.truncate(old);
                return Err(tcp::io_error("reading response", &e));
            }
        };
        self.buf.truncate(old + n);
        Ok(n)
    }

    /// Read and parse one response head, at most `HEAD_LIMIT` bytes.
    pub(super) async fn read_head(&mut self) -> Result<Head, Fail> {
        loop {
            if let Some(end) = find_head_end(self.available()) {
                if end > HEAD_LIMIT {
                    break;
                }
                let head = parse_head(&self.available()[..end])?;
                self.consume(end);
                return Ok(head);
            }
            if self.available().len() >= HEAD_LIMIT {
                break;
            }
            if self.fill().await? == 0 {
                return Err(protocol(if self.available().is_empty() {
                    "connection closed before status line".to_string()
                } else {
                    format!(
                        "connection closed in response head after {} bytes",
                        self.available().len()
                    )
                }));
            }
        }
        Err(protocol(format!(
            "response head larger than {HEAD_LIMIT} bytes"
        )))
    }

    /// Read the body: keep at most `limit` bytes, stop early once `marker`
    /// is seen or `limit` bytes are kept.
    pub(super) async fn read_body(
        &mut self,
        framing: Framing,
        limit: usize,
        marker: Option<&[u8]>,
    ) -> Result<BodyRead, Fail> {
        let mut sink = Sink::new(limit, marker);
        if sink.done() {
            return Ok(sink.result());
        }
        match framing {
            Framing::Length(mut left) => {
                while left > 0 {
                    if self.available().is_empty() && self.fill().await? == 0 {
                        return Err(protocol(format!("body truncated ({left} bytes missing)")));
                    }
                    let n = self
                        .available()
                        .len()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    let done = sink.push(&self.available()[..n]);
                    self.consume(n);
                    left -= n as u64;
                    if done {
                        break;
                    }
                }
            }
            Framing::UntilClose => loop {
                if self.available().is_empty() && self.fill().await? == 0 {
                    break;
                }
                let n = self.available().len();
                let done = sink.push(&self.available()[..n]);
                self.consume(n);
                if done {
                    break;
                }
            },
            Framing::Chunked => 'chunks: loop {
                let line = self.read_line(CHUNK_LINE_LIMIT, "chunk size").await?;
                let size = parse_chunk_size(&line)?;
                if size == 0 {
                    break; // trailers are not read: the connection closes
                }
                let mut left = size;
                while left > 0 {
                    if self.available().is_empty() && self.fill().await? == 0 {
                        return Err(protocol("connection closed in chunked body"));
                    }
                    let n = self
                        .available()
                        .len()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    let done = sink.push(&self.available()[..n]);
                    self.consume(n);
                    left -= n as u64;
                    if done {
                        break 'chunks;
                    }
                }
                let crlf = self.read_line(2, "chunk end").await?;
                if !crlf.is_empty() {
                    return Err(protocol(
                        "malformed chunked body (missing CRLF after chunk)",
                    ));
                }
            },
        }
        Ok(sink.result())
    }

    /// One line without its CRLF (or bare LF), at most `cap` bytes.
    async fn read_line(&mut self, cap: usize, what: &str) -> Result<Vec<u8>, Fail> {
        loop {
            if let Some(i) = self.available().iter().position(|&b| b == b'\n') {
                let mut line = self.available()[..i].to_vec();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.consume(i + 1);
                if line.len() > cap {
                    return Err(protocol(format!("{what} line too long")));
                }
                return Ok(line);
            }
            if self.available().len() > cap + 1 {
                return Err(protocol(format!("{what} line too long")));
            }
            if self.fill().await? == 0 {
                return Err(protocol("connection closed in chunked body"));
            }
        }
    }
}

/// Counts body bytes up to a limit, watching for a marker. Only a window of
/// the latest bytes is kept (one read plus the marker's length), whatever
/// the limit.
struct Sink<'m> {
    len: usize,
    limit: usize,
    marker: Option<&'m [u8]>,
    window: Vec<u8>,
    found: bool,
}

impl<'m> Sink<'m> {
    fn new(limit: usize, marker: Option<&'m [u8]>) -> Self {
        Sink {
            len: 0,
            limit,
            marker,
            window: Vec::new(),
            found: marker.is_some_and(<[u8]>::is_empty),
        }
    }

    fn done(&self) -> bool {
        self.found || self.len >= self.limit
    }

    /// Take what fits under the limit; true when reading can stop.
    fn push(&mut self, data: &[u8]) -> bool {
        let take = &data[..data.len().min(self.limit - self.len)];
        self.len += take.len();
        if let Some(m) = self.marker {
            self.window.extend_from_slice(take);
            if contains(&self.window, m) {
                self.found = true;
            }
            // Keep only what a match spanning the next read could start in.
            let keep = m.len().saturating_sub(1);
            if self.window.len() > keep {
                self.window.drain(..self.window.len() - keep);
            }
        }
        self.done()
    }

    fn result(self) -> BodyRead {
        BodyRead {
            len: self.len,
            found: self.found,
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Offset just past the blank line ending the head (CRLF or bare LF).
fn find_head_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|&c| c == b'\n') {
        let nl = i + p;
        let next = &b[nl + 1..];
        if next.starts_with(b"\n") {
            return Some(nl + 2);
        }
        if next.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    if !minor.is_ascii_digit() {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    if rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if rest.len() > 3 && rest[3] != b' ' {
        return None;
    }
    let code = u16::from(rest[0] - b'0') * 100
        + u16::from(rest[1] - b'0') * 10
        + u16::from(rest[2] - b'0');
    (100..=599).contains(&code).then_some(code)
}

pub(super) fn parse_head(head: &[u8]) -> Result<Head, Fail> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let status = parse_status_line(status_line)
        .ok_or_else(|| protocol(format!("malformed status line {}", snippet(status_line))))?;
    let mut content_length: Option<u64> = None;
    let mut chunked = None;
    let mut location = None;
    for line in lines {
        if line.is_empty() {
            continue; // the terminating blank line
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(protocol("obsolete header line folding"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| protocol(format!("malformed header line {}", snippet(line))))?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(protocol(format!("malformed header name {}", snippet(name))));
        }
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            for part in value.split(|&b| b == b',') {
                let part = part.trim_ascii();
                let n = std::str::from_utf8(part)
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| protocol(format!("bad content-length {}", snippet(value))))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(protocol("conflicting content-length headers"));
                }
                content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // The last coding decides; an earlier header is superseded.
            let last = value
                .rsplit(|&b| b == b',')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"location") {
            location = Some(String::from_utf8_lossy(value).into_owned());
        }
    }
    let framing = match (chunked, content_length) {
        (Some(true), _) => Framing::Chunked,
        (Some(false), _) => Framing::UntilClose,
        (None, Some(n)) => Framing::Length(n),
        (None, None) => Framing::UntilClose,
    };
    Ok(Head {
        status,
        framing,
        location,
    })
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, Fail> {
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let hex = line[..end].trim_ascii();
    if hex.is_empty() || hex.len() > 15 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(protocol(format!("malformed chunk size {}", snippet(line))));
    }
    let s = std::str::from_utf8(hex).map_err(|_| protocol("malformed chunk size"))?;
    u64::from_str_radix(s, 16).map_err(|_| protocol("malformed chunk size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status_line(b"HTTP/1.1 404 Not Found here"), Some(404));
        for bad in [
            &b"HTTP/2 200 OK"[..],
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 2000 OK",
            b"HTTP/1.1  200 OK",
            b"http/1.1 200 OK",
            b"SSH-2.0-OpenSSH_9.6",
            b"HTTP/1.1 099 x",
            b"HTTP/1.1 600 x",
            b"",
        ] {
            assert_eq!(
                parse_status_line(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn heads() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n").unwrap();
        assert_eq!((h.status, h.framing), (200, Framing::Length(12)));
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let h = parse_head(b"HTTP/1.1 302 Found\nLocation: /x\n\n").unwrap();
        assert_eq!(h.location.as_deref(), Some("/x"));
        assert_eq!(h.framing, Framing::UntilClose);
        let e = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
            .unwrap_err();
        assert!(e.detail.contains("conflicting"), "{}", e.detail);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").is_err());
        let e = parse_head(b"garbage\r\n\r\n").unwrap_err();
        assert_eq!(e.kind, ProbeErrorKind::Protocol);
        assert!(
            e.detail.starts_with("protocol: malformed status line"),
            "{}",
            e.detail
        );
    }

    #[test]
    fn head_end() {
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n\r\nbody"), Some(19));
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\n\nbody"), Some(17));
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\nX: y\r\n"), None);
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a").unwrap(), 26);
        assert_eq!(parse_chunk_size(b"0;ext=1").unwrap(), 0);
        assert!(parse_chunk_size(b"").is_err());
        assert!(parse_chunk_size(b"zz").is_err());
        assert!(parse_chunk_size(b"ffffffffffffffffff").is_err());
    }

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
    }

    #[tokio::test]
    async fn endless_body_is_bounded_by_the_limit() {
        // A peer that never stops sending: the reader keeps at most `limit`
        // bytes and returns as soon as it has them.
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            let chunk = vec![b'a'; 4096];
            let mut sent = 0usize;
            while server.write_all(&chunk).await.is_ok() {
                sent += chunk.len();
            }
            sent
        });
        let mut r = Reader::new(client);
        let limit = 100_000;
        let body = r
            .read_body(Framing::UntilClose, limit, Some(b"never"))
            .await
            .unwrap();
        assert_eq!(body.len, limit);
        assert!(!body.found);
        assert!(
            r.buf.capacity() <= 2 * READ_CHUNK,
            "read buffer grew to {}",
            r.buf.capacity()
        );
        drop(r);
        let sent = writer.await.unwrap();
        // The writer stopped because the reader went away, not because it
        // ran out: it got at most the limit plus what the pipe buffers.
        assert!(sent <= limit + 64 * 1024 + 4096, "sent {sent}");
    }

    #[tokio::test]
    async fn chunked_body_with_marker_across_chunks() {
        let (client, mut server) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let _ = server
                .write_all(b"5;ext\r\nhello\r\n4\r\n mar\r\n3\r\nker\r\n0\r\n\r\n")
                .await;
        });
        let mut r = Reader::new(client);
        let body = r
            .read_body(Framing::Chunked, 1024, Some(b"marker"))
            .await
            .unwrap();
        assert!(body.found);
    }

    #[tokio::test]
    async fn truncated_length_body_is_a_protocol_error() {
        let (client, mut server) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let _ = server.write_all(b"short").await;
        });
        let mut r = Reader::new(client);
        let e = r
            .read_body(Framing::Length(100), 1024, None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ProbeErrorKind::Protocol);
        assert!(e.detail.contains("truncated"), "{}", e.detail);
    }
}
