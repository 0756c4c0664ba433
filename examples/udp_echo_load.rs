//! Rough load check of the batched UDP transport on loopback: an echo
//! handler served by `spawn_udp`, driven by closed-loop client threads that
//! each keep a window of queries in flight.
//!
//! `cargo run --release --example udp_echo_load -- [workers] [clients] [seconds]`
//!
//! Client and server share the machine, so this measures the transport's
//! overhead, not a server's capacity.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use steerdns::dns::transport::{Handler, Transport};
use steerdns::dns::udp::{bind_udp, spawn_udp};

struct Echo;

impl Handler for Echo {
    fn handle(&self, query: &[u8], _: SocketAddr, _: Transport, out: &mut Vec<u8>) -> bool {
        out.extend_from_slice(query);
        if let Some(flags) = out.get_mut(2) {
            *flags |= 0x80;
        }
        true
    }
}

const WINDOW: usize = 32;

fn main() -> std::io::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric argument"))
        .collect();
    let workers = args.first().copied().unwrap_or(1);
    let clients = args.get(1).copied().unwrap_or(2);
    let seconds = args.get(2).copied().unwrap_or(3) as u64;

    let sockets = bind_udp("127.0.0.1:0".parse().unwrap(), workers)?;
    let server_addr = sockets[0].local_addr()?;
    let server = spawn_udp(sockets, Arc::new(Echo))?;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
            std::thread::spawn(move || {
                let c = UdpSocket::bind("127.0.0.1:0").unwrap();
                c.connect(server_addr).unwrap();
                c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                let query = *b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..WINDOW {
                        let _ = c.send(&query);
                    }
                    for _ in 0..WINDOW {
                        if c.recv(&mut buf).is_err() {
                            break; // lost in a full buffer: start a new window
                        }
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for t in threads {
        t.join().unwrap();
    }
    let stats = server.stats();
    server.shutdown();
    println!(
        "{workers} worker(s), {clients} client(s): {:.0} answers/s; server stats {stats:?}",
        answered.load(Ordering::Relaxed) as f64 / elapsed
    );
    Ok(())
}
