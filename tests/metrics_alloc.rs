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
