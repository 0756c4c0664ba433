//! Real backends for health tests, on loopback: HTTP (and HTTPS via rustls)
//! whose behaviour can be switched at run time, and a UDP DNS responder.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};

/// What the HTTP backend does with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answer with this status and body.
    Reply(u16, String),
    /// Read the request, then say nothing until the connection is dropped.
    Hang,
    /// Wait this long, then answer 200 "OK" (a slower backend).
    Delay(Duration),
}

/// An HTTP(S) server on a loopback address.
pub struct HttpBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests received so far.
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpBackend {
    /// Plain HTTP on `ip:0`.
    pub fn start(ip: &str) -> Self {
        Self::start_inner(ip, None)
    }

    /// HTTPS on `ip:0` with this rustls config.
    pub fn start_tls(ip: &str, tls: Arc<rustls::ServerConfig>) -> Self {
        Self::start_inner(ip, Some(tls))
    }

    fn start_inner(ip: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let l = TcpListener::bind((ip, 0)).expect("bind backend");
        let addr = l.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(Mode::Reply(200, "OK".into())));
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (m, s, r) = (mode.clone(), stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            for conn in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(c) = conn else { continue };
                r.fetch_add(1, Ordering::SeqCst);
                let mode = m.lock().unwrap().clone();
                let stop = s.clone();
                let tls = tls.clone();
                std::thread::spawn(move || serve(c, mode, tls, stop));
            }
        });
        HttpBackend {
            addr,
            requests,
            mode,
            stop,
            thread: Some(thread),
        }
    }

    /// Change what the next requests get.
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so the listener closes (then: refused).
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request(c: &mut impl Read) -> bool {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match c.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return false,
        }
        if buf.len() > 16384 {
            return false;
        }
    }
    true
}

fn respond(c: &mut (impl Read + Write), mode: &Mode, stop: &AtomicBool) {
    if !read_request(c) {
        return;
    }
    match mode {
        Mode::Reply(status, body) => {
            let _ = write!(
                c,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = c.flush();
        }
        Mode::Delay(d) => {
            std::thread::sleep(*d);
            let _ = write!(
                c,
                "HTTP/1.1 200 X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
            );
            let _ = c.flush();
        }
        Mode::Hang => {
            // Hold the connection until the client gives up (bounded).
            let mut b = [0u8; 1];
            for _ in 0..100 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match c.read(&mut b) {
                    Ok(0) => break,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
    }
}

fn serve(c: TcpStream, mode: Mode, tls: Option<Arc<rustls::ServerConfig>>, stop: Arc<AtomicBool>) {
    let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
    let mut c = c;
    match tls {
        None => respond(&mut c, &mode, &stop),
        Some(cfg) => {
            let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                return;
            };
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut s = rustls::StreamOwned::new(conn, c);
            respond(&mut s, &mode, &stop);
        }
    }
}

/// A self-signed certificate for `names`, as (rustls server config, CA PEM).
pub fn self_signed(names: &[&str]) -> (Arc<rustls::ServerConfig>, String) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).expect("cert");
    let pem = ck.cert.pem();
    let der = ck.cert.der().clone();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).expect("key");
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .expect("server config");
    (Arc::new(cfg), pem)
}

/// A UDP DNS server answering every query with an A record (or SERVFAIL).
pub struct DnsBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    servfail: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsBackend {
    /// Start on `ip:0`.
    pub fn start(ip: &str) -> Self {
        let s = UdpSocket::bind((ip, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = s.local_addr().unwrap();
        let servfail = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (sf, st) = (servfail.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !st.load(Ordering::SeqCst) {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut r = Message::response(q.metadata.id, q.metadata.op_code);
                r.queries = q.queries.clone();
                if sf.load(Ordering::SeqCst) {
                    r.metadata.response_code = ResponseCode::ServFail;
                } else if let Some(qq) = q.queries.first() {
                    r.add_answer(Record::from_rdata(
                        qq.name().clone(),
                        60,
                        RData::A(A::new(192, 0, 2, 1)),
                    ));
                }
                if let Ok(b) = r.to_vec() {
                    let _ = s.send_to(&b, from);
                }
            }
        });
        DnsBackend {
            addr,
            servfail,
            stop,
            thread: Some(thread),
        }
    }

    /// Answer SERVFAIL (true) or NOERROR with an A record (false).
    pub fn set_servfail(&self, on: bool) {
        self.servfail.store(on, Ordering::SeqCst);
    }
}

impl Drop for DnsBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
