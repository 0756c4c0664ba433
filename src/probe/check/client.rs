//! The crate's one HTTP/1.1 client, on hyper's client connection API: one
//! request per fresh connection (`Connection: close`), a bounded response
//! head, a bounded body, and every failure classified as a [`Fail`] with the
//! reason strings health checks have always reported. HTTP(S) checks and
//! webhooks both use it; the caller connects (TCP, TLS) and owns the
//! deadline.
//!
//! A thin tap around the stream records what hyper's errors do not say: how
//! many bytes came in, the first line (for "malformed status line"), which
//! direction an I/O error happened in, and when the request has been flushed
//! (so a timeout names the phase it happened in).

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::header::{HeaderValue, TRANSFER_ENCODING};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Fail, Phase, PhaseName, ProbeErrorKind, tcp};

/// Most bytes of response head (status line and headers) accepted.
pub(crate) const HEAD_LIMIT: usize = 16 * 1024;
/// Most response header lines accepted (hyper parses into a fixed array).
pub(crate) const MAX_HEADERS: usize = 512;
/// Bytes of the start of the response kept for error messages.
const FIRST_BYTES: usize = 64;

/// What the tap saw.
#[derive(Default)]
struct Seen {
    /// Response bytes read.
    read: usize,
    /// The first [`FIRST_BYTES`] of them.
    first: Vec<u8>,
    /// Request bytes written.
    written: usize,
    /// The first I/O error, classified.
    error: Option<Fail>,
}

fn lock(m: &Mutex<Seen>) -> MutexGuard<'_, Seen> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The stream as hyper sees it: every read and write passes through.
struct Tap<'p, S> {
    inner: S,
    seen: Arc<Mutex<Seen>>,
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
                let mut seen = lock(&this.seen);
                seen.read += new.len();
                let room = FIRST_BYTES.saturating_sub(seen.first.len());
                seen.first.extend_from_slice(&new[..new.len().min(room)]);
                Poll::Ready(Ok(()))
            }
            // A TLS peer that closes without close_notify: end of stream,
            // as a plain TCP close would be.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                let mut seen = lock(&this.seen);
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
            Poll::Ready(Ok(n)) => lock(&self.seen).written += n,
            Poll::Ready(Err(e)) => self.write_error(e),
            Poll::Pending => {}
        }
        r
    }

    fn write_error(&self, e: &io::Error) {
        let mut seen = lock(&self.seen);
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
                if this.phase.is(PhaseName::Request) && lock(&this.seen).written > 0 =>
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

/// A request with these headers, in this order (names are sent title-case).
/// Values may hold any byte but controls (tab allowed).
pub(crate) fn request<'a>(
    method: &str,
    target: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    let mut b = Request::builder().method(method).uri(target);
    for (name, value) in headers {
        let value = HeaderValue::from_bytes(value.as_bytes())
            .map_err(|_| format!("header {name} has control characters"))?;
        b = b.header(name, value);
    }
    b.body(Full::new(body)).map_err(|e| e.to_string())
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
    seen: Arc<Mutex<Seen>>,
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
    ) -> Result<(Self, Response<Incoming>), Fail> {
        phase.set(PhaseName::Request);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let tap = Tap {
            inner: io,
            seen: seen.clone(),
            phase,
        };
        let (mut tx, conn) = http1::Builder::new()
            // Header names go out as `Host`, `User-Agent`, `X-Probe`: what
            // picky servers and the tests expect of an HTTP/1.1 client.
            .title_case_headers(true)
            .max_buf_size(HEAD_LIMIT)
            .max_headers(MAX_HEADERS)
            .handshake(TokioIo::new(tap))
            .await
            .map_err(|e| protocol(format!("client: {e}")))?;
        let mut ex = Exchange {
            conn: Box::pin(conn),
            ended: None,
            seen,
        };
        let sent = tx.send_request(req);
        match ex.drive(sent).await {
            Ok(resp) => Ok((ex, resp)),
            Err(e) => Err(ex.head_error(&e)),
        }
    }

    /// The first line the server sent (at most 32 bytes), quoted.
    pub(crate) fn first_line(&self) -> String {
        let seen = lock(&self.seen);
        let line = seen.first.split(|&b| b == b'\n').next().unwrap_or_default();
        snippet(line.strip_suffix(b"\r").unwrap_or(line))
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
        lock(&self.seen).error.take()
    }

    /// Classify a failure before the response head was complete.
    fn head_error(&self, e: &hyper::Error) -> Fail {
        if let Some(f) = self.io_failure() {
            return f;
        }
        let read = lock(&self.seen).read;
        if e.is_parse_too_large() {
            return if read >= HEAD_LIMIT {
                protocol(format!("response head larger than {HEAD_LIMIT} bytes"))
            } else {
                protocol(format!("more than {MAX_HEADERS} response header lines"))
            };
        }
        // httparse's "version" error is also what non-HTTP bytes give.
        if e.is_parse_status() || e.to_string().starts_with("invalid HTTP version") {
            return protocol(format!("malformed status line {}", self.first_line()));
        }
        if e.is_parse() {
            // The wording of the client this one replaced, where hyper's
            // kinds allow it.
            return protocol(match e.to_string().as_str() {
                "invalid HTTP header parsed" => "malformed header line".to_string(),
                "invalid content-length parsed" => "bad content-length".to_string(),
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
                    protocol(format!("malformed chunked body ({io})"))
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

/// A snippet of peer bytes for an error message.
fn snippet(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(32)]).into_owned();
    format!("{s:?}")
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

    /// Take what fits under the limit.
    fn push(&mut self, data: &[u8]) {
        let take = &data[..data.len().min(self.limit - self.len)];
        self.len += take.len();
        if let Some(m) = self.marker {
            self.window.extend_from_slice(take);
            if contains(&self.window, m) {
                self.found = true;
            }
            // Keep only what a match spanning the next frame could start in.
            let keep = m.len().saturating_sub(1);
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
