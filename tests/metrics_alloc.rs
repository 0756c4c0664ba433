//! The per-query metric paths neither allocate nor lock: counted with a
//! global allocator (a binary of its own, so it does not clash with other
//! tests' allocators).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use steerdns::metrics::{AnswerMode, DropReason, GeoResult, Metrics, Transport};

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: the allocator also runs while thread locals are torn down.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

struct Counting;

// SAFETY: forwards to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

#[test]
fn hot_path_does_not_allocate() {
    let m = Metrics::new().unwrap();
    let zones: Vec<u32> = (0..20)
        .map(|i| m.queries().zone_slot(&format!("z{i}.example.")))
        .collect();
    let slot = m.answers().answer_slot("www.z0.example.", Some("eu"));
    // Warm up this thread (its shard index is a thread local).
    m.queries()
        .record_query(zones[0], 1, 0, Transport::Udp, Duration::ZERO);

    const N: u32 = 200_000;
    let before = allocs();
    let start = Instant::now();
    for i in 0..N {
        let z = zones[(i % 20) as usize];
        let qtype = [1u16, 28, 16, 65, 255][(i % 5) as usize];
        let rcode = [0u16, 3, 5, 2][(i % 4) as usize];
        let t = if i % 7 == 0 {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        m.queries()
            .record_query(z, qtype, rcode, t, Duration::from_nanos(u64::from(i) * 97));
        m.answers().record_answer(slot, AnswerMode::Normal);
        m.record_geoip(GeoResult::Found);
        if i % 1000 == 0 {
            m.record_drop(DropReason::Malformed);
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(allocs() - before, 0, "the hot path allocated");
    // The counter does count: a Vec allocates.
    let v = std::hint::black_box(vec![1u8; 16]);
    assert!(allocs() > before, "{}", v.len());

    let total: u64 = zones.iter().map(|&z| m.queries().zone_total(z)).sum();
    assert_eq!(total, u64::from(N) + 1);
    assert_eq!(m.answers().count(slot, AnswerMode::Normal), u64::from(N));
    // Not a benchmark gate (CI machines vary), just a figure in the log.
    println!(
        "record_query + record_answer + record_geoip: {:.1} ns per query",
        elapsed.as_nanos() as f64 / f64::from(N)
    );
}

/// The whole per-query path a transport calls — snapshot load, answer,
/// query/answer/GeoIP counters and the sampled duration — allocates nothing.
#[test]
fn handler_does_not_allocate() {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use steerdns::dns::transport::Handler;
    use steerdns::serving::Shared;

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let snap = steerdns::app::load_snapshot(&path, 1).expect("config/example.toml loads");
    let shared = Shared::new(snap, Arc::new(Metrics::new().unwrap()));
    let query = |name: &str, ecs: Option<[u8; 3]>| -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, A, IN
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0]); // OPT, 1232
        match ecs {
            None => q.extend_from_slice(&[0, 0]),
            Some(net) => {
                q.extend_from_slice(&[0, 11, 0, 8, 0, 7, 0, 1, 24, 0]);
                q.extend_from_slice(&net);
            }
        }
        q
    };
    let queries = [
        query("static.lb.example.com", None),
        query("www.lb.example.com", None),
        query("www.lb.example.com", Some([216, 160, 83])),
        query("nx.lb.example.com", None),
    ];
    let client: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let mut out = Vec::with_capacity(65535);
    let mut answer_all = |n: usize| {
        for i in 0..n {
            for (t, q) in queries.iter().enumerate() {
                out.clear();
                let transport = if (i + t) % 5 == 0 {
                    Transport::Tcp
                } else {
                    Transport::Udp
                };
                assert!(shared.handle(q, client, transport, &mut out));
                assert!(out.len() > 12 && out[2] & 0x80 != 0, "a response");
            }
        }
    };
    answer_all(10); // warm up this thread's RNG, shards and sampler
    let before = allocs();
    answer_all(5_000);
    assert_eq!(allocs() - before, 0, "answering allocated");
    // And every answer was counted.
    let slot = shared.current.load().slots.zone(Some(0));
    assert_eq!(shared.metrics.queries().zone_total(slot), 4 * 5_010);
}
