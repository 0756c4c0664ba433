//! The TCP event loop: listeners and connections on one `mio::Poll`,
//! connections in a slab, deadlines in a heap (see the module docs of
//! [`super`] for why it is hand-written).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use slab::Slab;

use super::TcpOptions;
use crate::dns::tcp_fair::{FairLimits, FairTable, network};
use crate::dns::transport::{Handler, Transport};

/// Write buffered answers once they reach this size, even if more pipelined
/// queries are waiting, so one connection's buffer stays bounded.
const FLUSH_AT: usize = 64 * 1024;

/// Bytes read from a connection at a time (the loop's one read buffer).
const READ_CHUNK: usize = 16 * 1024;

/// Reads from one connection per loop turn; a client that keeps its socket
/// readable (a pipelining flood) waits for the next turn after these, so it
/// cannot hold the loop.
const READS_PER_TURN: usize = 8;

/// Readiness events taken per wake-up.
const EVENTS: usize = 256;

/// Connections accepted from one listener per loop turn; the rest wait for
/// the next turn, so a connection flood cannot starve open connections.
const ACCEPTS_PER_TURN: usize = 128;

/// Back-off after an `accept` error such as `EMFILE`, doubling up to the max
/// (milliseconds).
const ACCEPT_BACKOFF_MIN: u64 = 5;
const ACCEPT_BACKOFF_MAX: u64 = 500;

const WAKER: Token = Token(usize::MAX);

/// Listener `i` has token `usize::MAX - 1 - i`; connections have their
/// slab key, far below.
fn listener_token(i: usize) -> Token {
    Token(usize::MAX - 1 - i)
}

struct Conn {
    stream: TcpStream,
    /// The client, IPv4-mapped addresses as plain IPv4.
    peer: SocketAddr,
    /// Tells this connection's heap entries from those of an earlier
    /// connection in the same slab slot.
    generation: u32,
    /// A partial message (and any whole ones after a flush stopped early);
    /// empty, with no allocation, for the usual one-shot connection.
    rbuf: Vec<u8>,
    /// Answers the socket has not taken yet, from `wpos` on.
    wbuf: Vec<u8>,
    wpos: usize,
    /// While a write is pending: when it must have completed.
    write_deadline: Option<u64>,
    /// Close once `wbuf` is written.
    close_after_write: bool,
    /// Registered for writability too (only while a write is pending).
    writable: bool,
    /// In the loop's list of connections to serve again next turn.
    queued: bool,
}

/// The loop's own buffers, shared by every connection.
struct Scratch {
    input: Box<[u8]>,
    answer: Vec<u8>,
    output: Vec<u8>,
}

/// What to do with a connection after serving it.
enum Next {
    Keep,
    /// Still readable after its budget: serve it again next turn.
    Again,
    Close(&'static str),
}

pub(super) struct EventLoop {
    poll: Poll,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    listeners: Vec<TcpListener>,
    /// Listeners with connections left over from a full turn of accepts.
    accept_pending: Vec<bool>,
    /// Connections (slab key, generation) that used their read budget.
    again: Vec<(usize, u32)>,
    again_next: Vec<(usize, u32)>,
    conns: Slab<Conn>,
    table: FairTable,
    limits: FairLimits,
    /// (deadline, slab key, generation): one entry per connection, checked
    /// when due against the connection's real deadline and pushed again if
    /// that moved.
    timers: BinaryHeap<Reverse<(u64, usize, u32)>>,
    generation: u32,
    io: Scratch,
    handler: Arc<dyn Handler>,
    limit_drops: Arc<AtomicU64>,
    evicted: Vec<usize>,
    epoch: Instant,
    /// Milliseconds since `epoch`, read once per wake-up.
    now: u64,
    accept_paused_until: Option<u64>,
    backoff: u64,
}

impl EventLoop {
    pub(super) fn new(
        listeners: Vec<std::net::TcpListener>,
        handler: Arc<dyn Handler>,
        opts: &TcpOptions,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut mio_listeners = Vec::with_capacity(listeners.len());
        for (i, l) in listeners.into_iter().enumerate() {
            l.set_nonblocking(true)?;
            let mut l = TcpListener::from_std(l);
            poll.registry()
                .register(&mut l, listener_token(i), Interest::READABLE)?;
            mio_listeners.push(l);
        }
        Ok(EventLoop {
            poll,
            waker,
            stop,
            accept_pending: vec![false; mio_listeners.len()],
            again: Vec::new(),
            again_next: Vec::new(),
            listeners: mio_listeners,
            conns: Slab::new(),
            table: FairTable::default(),
            limits: FairLimits {
                max_connections: opts.max_connections,
                max_per_client: opts.max_per_client,
                idle_timeout: opts.idle_timeout,
                busy_idle_timeout: opts.busy_idle_timeout,
            },
            timers: BinaryHeap::new(),
            generation: 0,
            io: Scratch {
                input: vec![0; READ_CHUNK].into_boxed_slice(),
                answer: Vec::with_capacity(4096),
                output: Vec::with_capacity(4096),
            },
            handler,
            limit_drops: opts.limit_drops.clone(),
            evicted: Vec::new(),
            epoch: Instant::now(),
            now: 0,
            accept_paused_until: None,
            backoff: ACCEPT_BACKOFF_MIN,
        })
    }

    pub(super) fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Serve until the stop flag is set; dropping the loop then closes the
    /// listeners and every connection.
    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS);
        while !self.stop.load(Ordering::Acquire) {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "DNS TCP loop: poll failed; TCP stops");
                return;
            }
            self.now = self.clock();
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    Token(t) if t >= usize::MAX - self.listeners.len() => {
                        self.accept(usize::MAX - 1 - t);
                    }
                    Token(id) => self.service(id),
                }
            }
            // Connections that used their budget last turn, in turn order.
            std::mem::swap(&mut self.again, &mut self.again_next);
            for k in 0..self.again_next.len() {
                let (id, generation) = self.again_next[k];
                if let Some(c) = self
                    .conns
                    .get_mut(id)
                    .filter(|c| c.generation == generation)
                {
                    c.queued = false;
                    self.service(id);
                }
            }
            self.again_next.clear();
            self.expire();
            if self
                .accept_paused_until
                .is_some_and(|until| self.now >= until)
            {
                self.accept_paused_until = None;
                self.accept_pending.fill(true);
            }
            if self.accept_paused_until.is_none() {
                for i in 0..self.listeners.len() {
                    if self.accept_pending[i] {
                        self.accept(i);
                    }
                }
            }
        }
    }

    fn clock(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn idle_ms(&self) -> u64 {
        self.table.idle_timeout(&self.limits).as_millis() as u64
    }

    /// Until the next deadline, or at once when accepts are left over.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.again.is_empty()
            || (self.accept_paused_until.is_none() && self.accept_pending.contains(&true))
        {
            return Some(Duration::ZERO);
        }
        let next = self
            .timers
            .peek()
            .map(|Reverse((due, _, _))| *due)
            .into_iter()
            .chain(self.accept_paused_until)
            .min()?;
        Some(Duration::from_millis(next.saturating_sub(self.clock())))
    }

    fn accept(&mut self, i: usize) {
        self.accept_pending[i] = false;
        if self.accept_paused_until.is_some() {
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            match self.listeners[i].accept() {
                Ok((stream, peer)) => {
                    self.backoff = ACCEPT_BACKOFF_MIN;
                    self.admit(stream, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // The failed connection is gone already; the next one is fine.
                Err(e) if is_per_connection_error(&e) => {
                    tracing::debug!(error = %e, "TCP accept: connection failed");
                }
                Err(e) => {
                    tracing::warn!(error = %e, backoff_ms = self.backoff, "TCP accept failed; backing off");
                    self.accept_paused_until = Some(self.now + self.backoff);
                    self.backoff = (self.backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    return;
                }
            }
        }
        self.accept_pending[i] = true;
    }

    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let net = network(peer.ip());
        let mut evicted = std::mem::take(&mut self.evicted);
        let admitted = self.table.admit(net, self.now, &self.limits, &mut evicted);
        for &id in &evicted {
            tracing::debug!(%peer, "DNS TCP connection evicted to make room");
            self.close(id);
        }
        evicted.clear();
        self.evicted = evicted;
        if let Err(why) = admitted {
            tracing::debug!(%peer, ?why, "TCP connection limit reached; closing");
            self.limit_drops.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Answers are written whole; don't let Nagle hold back the next batch.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY failed");
        }
        let entry = self.conns.vacant_entry();
        let id = entry.key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(id), Interest::READABLE)
        {
            tracing::warn!(%peer, error = %e, "DNS TCP connection: register failed");
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        entry.insert(Conn {
            stream,
            peer,
            generation: self.generation,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            write_deadline: None,
            close_after_write: false,
            writable: false,
            queued: false,
        });
        self.table.insert(id, net, self.now);
        self.timers
            .push(Reverse((self.now + self.idle_ms(), id, self.generation)));
        // The client writes its query right after the handshake, so it is
        // often here already: answer now rather than after another poll.
        self.service(id);
    }

    fn close(&mut self, id: usize) {
        // Dropping the stream closes it, which also takes it out of epoll.
        self.conns.try_remove(id);
        self.table.remove(id);
    }

    /// Close connections whose deadline has passed.
    fn expire(&mut self) {
        let idle = self.idle_ms();
        // Entries of closed connections wait for their deadline; under a
        // stream of short connections drop them early, so the heap stays
        // in proportion to the open connections.
        if self.timers.len() > 2 * self.conns.len() + 1024 {
            let conns = &self.conns;
            self.timers.retain(|Reverse((_, id, generation))| {
                conns.get(*id).is_some_and(|c| c.generation == *generation)
            });
        }
        while let Some(&Reverse((due, id, generation))) = self.timers.peek() {
            if due > self.now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get(id).filter(|c| c.generation == generation) else {
                continue;
            };
            let deadline = match conn.write_deadline {
                Some(d) => d,
                None => self.table.last(id).unwrap_or(0) + idle,
            };
            if deadline <= self.now {
                tracing::debug!(peer = %conn.peer, "DNS TCP connection idle; closing");
                self.close(id);
            } else {
                self.timers.push(Reverse((deadline, id, generation)));
            }
        }
    }

    fn service(&mut self, id: usize) {
        let idle = self.idle_ms();
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let mut cx = Cx {
            io: &mut self.io,
            handler: &*self.handler,
            table: &mut self.table,
            registry: self.poll.registry(),
            now: self.now,
            idle,
            id,
        };
        match cx.drive(conn) {
            Next::Keep => {}
            Next::Again if !conn.queued => {
                conn.queued = true;
                self.again.push((id, conn.generation));
            }
            Next::Again => {}
            Next::Close(why) => {
                tracing::trace!(peer = %conn.peer, why, "DNS TCP connection closed");
                self.close(id);
            }
        }
    }
}

/// What serving one connection needs from the loop.
struct Cx<'a> {
    io: &'a mut Scratch,
    handler: &'a dyn Handler,
    table: &'a mut FairTable,
    registry: &'a Registry,
    now: u64,
    idle: u64,
    id: usize,
}

impl Cx<'_> {
    /// Write what is pending, answer what is buffered, read until the socket
    /// is drained (readiness is edge-triggered).
    fn drive(&mut self, conn: &mut Conn) -> Next {
        let mut reads = 0;
        loop {
            if conn.wpos < conn.wbuf.len() {
                match (&conn.stream).write(&conn.wbuf[conn.wpos..]) {
                    Ok(n) => conn.wpos += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return self.want_writable(conn);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Next::Close("write error"),
                }
                if conn.wpos < conn.wbuf.len() {
                    continue;
                }
                conn.wbuf = Vec::new();
                conn.wpos = 0;
                conn.write_deadline = None;
                if conn.close_after_write {
                    return Next::Close("closing after the answers");
                }
                if conn.writable {
                    conn.writable = false;
                    if self
                        .registry
                        .reregister(&mut conn.stream, mio::Token(self.id), Interest::READABLE)
                        .is_err()
                    {
                        return Next::Close("reregister failed");
                    }
                }
            }
            if has_complete_message(&conn.rbuf) {
                // Left over when a flush stopped early: answer it before
                // reading more.
                let rbuf = std::mem::take(&mut conn.rbuf);
                let (consumed, close) = self.answer(&rbuf, conn.peer);
                conn.rbuf = rbuf;
                conn.rbuf.drain(..consumed);
                self.send(conn, close);
                if conn.close_after_write && conn.wbuf.is_empty() {
                    return Next::Close("closing after the answers");
                }
                continue;
            }
            if reads == READS_PER_TURN {
                return Next::Again;
            }
            reads += 1;
            let n = match (&conn.stream).read(&mut self.io.input) {
                Ok(0) => return Next::Close("closed by the client"),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Next::Close("read error"),
            };
            if conn.rbuf.is_empty() {
                // The usual case: whole messages straight from the read
                // buffer; only a partial tail is copied to the connection.
                let input = std::mem::take(&mut self.io.input);
                let (consumed, close) = self.answer(&input[..n], conn.peer);
                if !close && consumed < n {
                    conn.rbuf.extend_from_slice(&input[consumed..n]);
                }
                self.io.input = input;
                self.send(conn, close);
                if conn.close_after_write && conn.wbuf.is_empty() {
                    return Next::Close("closing after the answers");
                }
            } else {
                conn.rbuf.extend_from_slice(&self.io.input[..n]);
            }
        }
    }

    /// Answer the whole messages at the start of `data` (up to
    /// [`FLUSH_AT`] bytes of answers) into `io.output`. Returns the bytes
    /// consumed and whether to close after writing the answers.
    fn answer(&mut self, data: &[u8], peer: SocketAddr) -> (usize, bool) {
        let Scratch { answer, output, .. } = &mut *self.io;
        output.clear();
        let mut consumed = 0;
        let mut close = false;
        while output.len() < FLUSH_AT {
            let pending = &data[consumed..];
            let Some(len) = pending.first_chunk::<2>().map(|l| u16::from_be_bytes(*l)) else {
                break;
            };
            let len = usize::from(len);
            if len == 0 {
                close = true;
                break;
            }
            let Some(query) = pending.get(2..2 + len) else {
                break;
            };
            consumed += 2 + len;
            answer.clear();
            // One loop serves every connection: a panic in the handler ends
            // this connection, not TCP service.
            let handled = catch_unwind(AssertUnwindSafe(|| {
                self.handler.handle(query, peer, Transport::Tcp, answer)
            }))
            .unwrap_or_else(|_| {
                tracing::error!(%peer, "DNS TCP handler panicked; closing the connection");
                false
            });
            if !handled || answer.is_empty() {
                close = true;
                break;
            }
            let Ok(answer_len) = u16::try_from(answer.len()) else {
                tracing::warn!(%peer, len = answer.len(), "DNS answer too large for TCP; closing");
                close = true;
                break;
            };
            output.extend_from_slice(&answer_len.to_be_bytes());
            output.extend_from_slice(answer);
        }
        if consumed > 0 {
            self.table.active(self.id, self.now);
        }
        (consumed, close)
    }

    /// Write `io.output`; what the socket does not take waits in the
    /// connection's own buffer (written before anything more is read).
    fn send(&mut self, conn: &mut Conn, close: bool) {
        conn.close_after_write |= close;
        let out = &self.io.output;
        let mut written = 0;
        while written < out.len() {
            match (&conn.stream).write(&out[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock, or an error that the next write reports.
                Err(_) => break,
            }
        }
        if written < out.len() {
            conn.wbuf.extend_from_slice(&out[written..]);
            conn.write_deadline = Some(self.now + self.idle);
        }
    }

    fn want_writable(&mut self, conn: &mut Conn) -> Next {
        if !conn.writable {
            conn.writable = true;
            if self
                .registry
                .reregister(
                    &mut conn.stream,
                    mio::Token(self.id),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                return Next::Close("reregister failed");
            }
        }
        Next::Keep
    }
}

/// Whether `buf` starts with a whole message (or a zero-length one).
fn has_complete_message(buf: &[u8]) -> bool {
    match buf.first_chunk::<2>() {
        Some(len) => buf.len() >= 2 + usize::from(u16::from_be_bytes(*len)),
        None => false,
    }
}

fn is_per_connection_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::ECONNRESET | libc::EPROTO | libc::EPERM | libc::EINTR)
    )
}
