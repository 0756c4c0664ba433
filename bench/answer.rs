//! Microbenchmarks of the in-process answer path: `answer()` for a static A
//! query, a geo-steered query with EDNS Client Subnet, an NXDOMAIN, and
//! `GeoDb::locate` alone. Built from `config/example.toml`.
//!
//! `cargo bench --bench answer` (about 20 s). Before measuring, a counting
//! global allocator checks whether answering allocates per query and prints
//! allocations per 10,000 answers for each case.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use steerdns::dns::transport::Transport;
use steerdns::engine::answer::{Client, Outcome, answer};
use steerdns::select::Rng;
use steerdns::snapshot::Snapshot;

/// Counts allocations (and reallocations) made by this process.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn snapshot() -> Snapshot {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    steerdns::app::load_snapshot(&path, 1).expect("config/example.toml loads")
}

/// A query with EDNS (payload 1232) and, optionally, an IPv4 ECS /24.
fn query(name: &str, qtype: u16, ecs: Option<[u8; 3]>) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0]);
    match ecs {
        None => q.extend_from_slice(&[0, 0]),
        Some(a) => {
            q.extend_from_slice(&[0, 11, 0, 8, 0, 7, 0, 1, 24, 0]);
            q.extend_from_slice(&a);
        }
    }
    q
}

fn client() -> Client {
    Client {
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000),
        transport: Transport::Udp,
    }
}

fn cases() -> Vec<(&'static str, Vec<u8>, u16)> {
    vec![
        ("static_a", query("static.lb.example.com", 1, None), 0),
        (
            "geo_ecs_a",
            query("www.lb.example.com", 1, Some([81, 2, 69])),
            0,
        ),
        ("nxdomain", query("nx.lb.example.com", 1, None), 3),
        // Compressed record data and glue owners.
        ("apex_ns_glue", query("lb.example.com", 2, None), 0),
        ("mx", query("lb.example.com", 15, None), 0),
    ]
}

/// Allocations per `n` answers of `pkt`, after one warm-up answer.
fn allocs_per(snap: &Snapshot, pkt: &[u8], n: u64) -> u64 {
    let mut rng = Rng::seeded(1);
    let mut out = Vec::with_capacity(4096);
    answer(snap, pkt, client(), &mut rng, &mut out);
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..n {
        answer(snap, black_box(pkt), client(), &mut rng, &mut out);
    }
    ALLOCS.load(Ordering::Relaxed) - before
}

fn report_allocations(snap: &Snapshot) {
    const N: u64 = 10_000;
    for (name, pkt, _) in cases() {
        let a = allocs_per(snap, &pkt, N);
        println!("allocations per {N} answers, {name}: {a}");
    }
    let ip: IpAddr = "81.2.69.1".parse().unwrap();
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..N {
        black_box(snap.geo.locate(black_box(ip)));
    }
    let a = ALLOCS.load(Ordering::Relaxed) - before;
    println!("allocations per {N} GeoDb::locate: {a}");
}

fn bench_answer(c: &mut Criterion) {
    let snap = snapshot();
    report_allocations(&snap);
    let mut g = c.benchmark_group("answer");
    for (name, pkt, rcode) in cases() {
        // Sanity: the case answers as expected before it is measured.
        let mut rng = Rng::seeded(7);
        let mut out = Vec::with_capacity(4096);
        assert_eq!(
            answer(&snap, &pkt, client(), &mut rng, &mut out),
            Outcome::Answered { rcode },
            "{name}"
        );
        g.bench_function(name, |b| {
            b.iter(|| answer(&snap, black_box(&pkt), client(), &mut rng, &mut out))
        });
    }
    g.finish();
    let ips: Vec<IpAddr> = [
        "81.2.69.1",
        "216.160.83.1",
        "175.16.199.1",
        "2001:218::1",
        "192.0.2.1",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let mut g = c.benchmark_group("geo");
    g.bench_function("locate_mix5", |b| {
        b.iter(|| {
            for ip in &ips {
                black_box(snap.geo.locate(black_box(*ip)));
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench_answer
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
