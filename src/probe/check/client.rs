//! The crate's one HTTP/1.1 client, on hyper's client connection API: one
//! request per fresh connection (`Connection: close`), a bounded response
//! head, a bounded body, and every failure classified as a [`Fail`] with the
//! reason strings health checks have always reported. HTTP(S) checks and
//! webhooks both use it; the caller connects (TCP, TLS) and owns the
//! deadline.
//!
//! A thin tap around the stream records what hyper's errors do not say: how
//! many bytes came in, the raw response head (so [`super::head`] can quote
//! the offending line), which direction an I/O error happened in, and when
//! the request has been flushed (so a timeout names the phase it happened
//! in). Its record lives on the caller's stack ([`Seen`]): nothing per
//! probe is allocated for it but the captured head.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING};
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::head::{self, snippet};
use super::{Fail, Phase, PhaseName, ProbeErrorKind, tcp};

/// Most bytes of response head (status line and headers) accepted.
pub(crate) const HEAD_LIMIT: usize = 16 * 1024;
/// Most response header lines accepted: hyper's default, which it parses
/// into an array on the stack (a larger cap is a heap array per response,
/// about 5k instructions a probe at 512). A 16 KiB head could hold ~3,000
/// tiny lines; real servers send a few dozen.
pub(crate) const MAX_HEADERS: usize = 100;
/// Most response bytes kept for error messages: one head at the limit.
const CAPTURE_LIMIT: usize = HEAD_LIMIT + 1;

/// What the tap saw; owned by the caller of [`Exchange::start`], which
/// must outlive the exchange.
#[derive(Default)]
pub(crate) struct Seen(Mutex<SeenInner>);

#[derive(Default)]
struct SeenInner {
    /// Response bytes read.
    read: usize,
    /// The response bytes up to the final head (at most [`CAPTURE_LIMIT`]).
    head: Vec<u8>,
    /// The final head has been parsed: stop capturing.
    head_done: bool,
    /// Request bytes written.
    written: usize,
    /// The first I/O error, classified.
    error: Option<Fail>,
}

impl Seen {
    fn lock(&self) -> MutexGuard<'_, SeenInner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The stream as hyper sees it: every read and write passes through.
struct Tap<'p, S> {
    inner: S,
    seen: &'p Seen,
    phase: &'p Phase,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                let mut seen = this.seen.lock();
                seen.read += new.len();
                if !seen.head_done {
                    let room = CAPTURE_LIMIT.saturating_sub(seen.head.len());
                    seen.head.extend_from_slice(&new[..new.len().min(room)]);
                }
                Poll::Ready(Ok(()))
            }
            // A TLS peer that closes without close_notify: end of stream,
            // as a plain TCP close would be.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                let mut seen = this.seen.lock();
                if seen.error.is_none() {
                    seen.error = Some(tcp::io_error("reading response", &e));
                }
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> Tap<'_, S> {
    fn wrote(&self, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match &r {
            Poll::Ready(Ok(n)) => self.seen.lock().written += n,
            Poll::Ready(Err(e)) => self.write_error(e),
            Poll::Pending => {}
        }
        r
    }

    fn write_error(&self, e: &io::Error) {
        let mut seen = self.seen.lock();
        if seen.error.is_none() {
            seen.error = Some(tcp::io_error("sending request", e));
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        match &r {
            // hyper flushes once the request is out: from now on we wait.
            Poll::Ready(Ok(()))
                if this.phase.is(PhaseName::Request) && this.seen.lock().written > 0 =>
            {
                this.phase.set(PhaseName::ResponseHead);
            }
            Poll::Ready(Err(e)) => this.write_error(e),
            _ => {}
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A header value; any byte but controls (tab allowed).
pub(crate) fn header_value(name: &str, value: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(value).map_err(|_| format!("header {name} has control characters"))
}

/// A header name (a token).
pub(crate) fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("header name {name:?} is not a token"))
}

/// A request for `target` (origin form) with `headers`, in their order.
/// Names go out title-case (`Host`, `User-Agent`, `X-Probe`).
pub(crate) fn request(
    method: &str,
    target: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("method {method:?} is not a token"))?;
    *req.uri_mut() = Uri::try_from(target).map_err(|e| format!("path {target:?}: {e}"))?;
    *req.headers_mut() = headers;
    Ok(req)
}

type Conn<'p, S> = http1::Connection<TokioIo<Tap<'p, S>>, Full<Bytes>>;

/// What was read of a body.
#[derive(Debug)]
pub(crate) struct BodyRead {
    /// Body bytes kept (never more than the limit).
    pub(crate) len: usize,
    /// Whether the marker was seen.
    pub(crate) found: bool,
}

/// One request on one connection, from sending it to reading the body.
pub(crate) struct Exchange<'p, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    conn: Pin<Box<Conn<'p, S>>>,
    /// The connection task's result, once it has ended.
    ended: Option<hyper::Result<()>>,
    seen: &'p Seen,
}

impl<'p, S> Exchange<'p, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Send `req` on `io` and wait for the final response head (1xx
    /// informational responses are skipped, 101 is returned). Sets the
    /// phase to `request`, then `response head` once the request is out.
    pub(crate) async fn start(
        io: S,
        req: Request<Full<Bytes>>,
        phase: &'p Phase,
        seen: &'p Seen,
    ) -> Result<(Self, Response<Incoming>), Fail> {
        phase.set(PhaseName::Request);
        let tap = Tap {
            inner: io,
            seen,
            phase,
        };
        let (mut tx, conn) = http1::Builder::new()
            // Header names go out as `Host`, `User-Agent`, `X-Probe`: what
            // picky servers and the tests expect of an HTTP/1.1 client.
            .title_case_headers(true)
            // No `max_headers`: hyper's default (MAX_HEADERS) is parsed
            // on the stack.
            .max_buf_size(HEAD_LIMIT)
            .handshake(TokioIo::new(tap))
            .await
            .map_err(|e| protocol(format!("client: {e}")))?;
        let mut ex = Exchange {
            conn: Box::pin(conn),
            ended: None,
            seen,
        };
        let sent = tx.send_request(req);
        let r = ex.drive(sent).await;
        ex.seen.lock().head_done = true;
        match r {
            Ok(resp) => Ok((ex, resp)),
            Err(e) => Err(ex.head_error(&e)),
        }
    }

    /// The first line the server sent (at most 32 bytes), quoted.
    pub(crate) fn first_line(&self) -> String {
        snippet(head::first_line(&self.seen.lock().head))
    }

    /// Read the body of `resp`: keep at most `limit` bytes, stop early once
    /// `marker` is seen or `limit` bytes are kept. Sets the phase to
    /// `response body`.
    pub(crate) async fn read_body(
        &mut self,
        resp: Response<Incoming>,
        limit: usize,
        marker: Option<&[u8]>,
        phase: &Phase,
    ) -> Result<BodyRead, Fail> {
        phase.set(PhaseName::ResponseBody);
        // For error messages only: hyper does the framing.
        let chunked = resp.headers().contains_key(TRANSFER_ENCODING);
        let mut body = resp.into_body();
        let length = body.size_hint().exact();
        let mut sink = Sink::new(limit, marker);
        let mut received = 0u64;
        while !sink.done() {
            match self.drive(body.frame()).await {
                None => break,
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        received += data.len() as u64;
                        sink.push(data);
                    }
                }
                // The body is complete; trailers are not the check's
                // business (the client before hyper never read them).
                Some(Err(e)) if in_trailers(&e) => break,
                Some(Err(e)) => {
                    let closed = match length {
                        Some(n) => format!(
                            "body truncated ({} bytes missing)",
                            n.saturating_sub(received)
                        ),
                        None if chunked => "connection closed in chunked body".to_string(),
                        None => "connection closed in body".to_string(),
                    };
                    return Err(self.body_error(&e, &closed).await);
                }
            }
        }
        Ok(sink.result())
    }

    /// Poll `fut` and the connection together until `fut` is ready: hyper's
    /// connection future does the I/O, `fut` waits on its channels.
    async fn drive<T>(&mut self, fut: impl Future<Output = T>) -> T {
        let mut fut = pin!(fut);
        poll_fn(|cx| {
            if let Poll::Ready(t) = fut.as_mut().poll(cx) {
                return Poll::Ready(t);
            }
            if self.ended.is_none()
                && let Poll::Ready(r) = self.conn.as_mut().poll(cx)
            {
                self.ended = Some(r);
                // The connection closed its channels; `fut` may be ready.
                return fut.as_mut().poll(cx);
            }
            Poll::Pending
        })
        .await
    }

    /// The I/O error the tap recorded, if any.
    fn io_failure(&self) -> Option<Fail> {
        self.seen.lock().error.take()
    }

    /// Classify a failure before the response head was complete. Parse
    /// errors are explained from the captured head bytes where it shows
    /// the cause (the offending line, quoted).
    fn head_error(&self, e: &hyper::Error) -> Fail {
        if let Some(f) = self.io_failure() {
            return f;
        }
        let seen = self.seen.lock();
        let read = seen.read;
        if e.is_parse_too_large() {
            return match head::final_head_end(&seen.head) {
                Some(end) if end <= HEAD_LIMIT => {
                    protocol(format!("more than {MAX_HEADERS} response header lines"))
                }
                _ => protocol(format!("response head larger than {HEAD_LIMIT} bytes")),
            };
        }
        if e.is_parse() || e.is_parse_status() {
            if let Some(why) = head::diagnose(&seen.head) {
                return protocol(why);
            }
            // What the captured bytes do not explain.
            return protocol(match e.to_string().as_str() {
                "invalid HTTP version parsed" | "invalid HTTP status-code parsed" => {
                    format!(
                        "malformed status line {}",
                        snippet(head::first_line(&seen.head))
                    )
                }
                "invalid HTTP header parsed" => "malformed header line".to_string(),
                "invalid content-length parsed" => "bad content-length".to_string(),
                "unexpected transfer-encoding parsed" => {
                    "transfer-encoding in an HTTP/1.0 response".to_string()
                }
                other => format!("malformed response head ({other})"),
            });
        }
        if e.is_incomplete_message() {
            return protocol(if read == 0 {
                "connection closed before status line".to_string()
            } else {
                format!("connection closed in response head after {read} bytes")
            });
        }
        match io_cause(e) {
            Some(io) => tcp::io_error("reading response", io),
            None => protocol(e.to_string()),
        }
    }

    /// Classify a failure while reading the body.
    /// `closed` says what an early end of stream means here.
    async fn body_error(&mut self, e: &hyper::Error, closed: &str) -> Fail {
        if let Some(f) = self.io_failure() {
            return f;
        }
        if let Some(io) = io_cause(e) {
            return match io.kind() {
                io::ErrorKind::UnexpectedEof => protocol(closed),
                io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => {
                    protocol(chunk_error(&io.to_string()))
                }
                _ => tcp::io_error("reading response", io),
            };
        }
        if e.is_incomplete_message() {
            return protocol(closed);
        }
        // A generic "connection error": the connection future has the cause.
        if self.ended.is_none() {
            self.ended = Some(self.conn.as_mut().await);
        }
        if let Some(f) = self.io_failure() {
            return f;
        }
        if let Some(Err(real)) = &self.ended
            && let Some(io) = io_cause(real)
        {
            return tcp::io_error("reading response", io);
        }
        protocol(format!("reading body: {e}"))
    }
}

/// Whether `e` is hyper refusing the trailer section of a chunked body.
fn in_trailers(e: &hyper::Error) -> bool {
    // hyper's own words, and httparse's for a trailer line it cannot parse.
    const TRAILER: [&str; 7] = [
        "chunk trailers",
        "invalid trailer",
        "invalid header",
        "invalid token",
        "invalid new line",
        "too many headers",
        "partial header",
    ];
    io_cause(e).is_some_and(|io| {
        let m = io.to_string().to_ascii_lowercase();
        TRAILER.iter().any(|t| m.starts_with(t))
    })
}

/// hyper's chunked-decoder complaint in the old client's words (hyper does
/// not hand out the offending line, so there is no quoted snippet).
fn chunk_error(hyper_says: &str) -> String {
    match hyper_says {
        "Invalid chunk size line: missing size digit"
        | "Invalid chunk size line: Invalid Size"
        | "Invalid chunk size linear white space"
        | "Invalid chunk size LF"
        | "invalid chunk size: overflow"
        | "invalid chunk extension contains newline" => "malformed chunk size".to_string(),
        "chunk extensions over limit" => "chunk size line too long".to_string(),
        "Invalid chunk body CR" | "Invalid chunk body LF" => {
            "malformed chunked body (missing CRLF after chunk)".to_string()
        }
        other => format!("malformed chunked body ({other})"),
    }
}

/// The `io::Error` somewhere in `e`'s chain of causes.
fn io_cause(e: &hyper::Error) -> Option<&io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = c.source();
    }
    None
}

pub(crate) fn protocol(detail: impl Into<String>) -> Fail {
    Fail::new(
        ProbeErrorKind::Protocol,
        format!("protocol: {}", detail.into()),
    )
}

/// Counts body bytes up to a limit, watching for a marker. Only a window of
/// the latest bytes is kept (the marker's length), whatever the limit.
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

    /// Take what fits under the limit. A marker inside one frame is found
    /// without copying; only a match that may span frames keeps bytes.
    fn push(&mut self, data: &[u8]) {
        let take = &data[..data.len().min(self.limit - self.len)];
        self.len += take.len();
        let Some(m) = self.marker else { return };
        if self.found || take.is_empty() {
            return;
        }
        let keep = m.len().saturating_sub(1);
        let spanned = !self.window.is_empty();
        if spanned {
            // The previous frame's tail with this one's head.
            self.window.extend_from_slice(&take[..take.len().min(keep)]);
            if contains(&self.window, m) {
                self.found = true;
                return;
            }
        }
        if contains(take, m) {
            self.found = true;
            return;
        }
        // Keep only what a match spanning the next frame could start in.
        if take.len() >= keep {
            self.window.clear();
            self.window.extend_from_slice(&take[take.len() - keep..]);
        } else {
            if !spanned {
                self.window.extend_from_slice(take);
            }
            if self.window.len() > keep {
                self.window.drain(..self.window.len() - keep);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_finds_a_marker_however_the_body_is_cut() {
        let body = b"xxhello marker tail";
        for cut in 1..=body.len() {
            let mut sink = Sink::new(1024, Some(b"marker"));
            for frame in body.chunks(cut) {
                sink.push(frame);
            }
            assert!(sink.found, "frames of {cut}");
            // Never more than a tail and a head of the marker, whatever the body.
            assert!(sink.window.len() <= 2 * 5, "frames of {cut}");
        }
        let mut sink = Sink::new(1024, Some(b"marker"));
        for frame in b"mark er marke".chunks(2) {
            sink.push(frame);
        }
        assert!(!sink.found);
        // The limit cuts the marker off.
        let mut sink = Sink::new(10, Some(b"marker"));
        sink.push(b"xxxxxmarker");
        assert_eq!((sink.len, sink.found), (10, false));
    }
}
