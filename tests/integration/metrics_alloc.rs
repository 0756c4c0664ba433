//! The per-query metric paths neither allocate nor lock: counted with the
//! support layer's counting allocator (per thread). The whole per-query
//! path, metrics included, is in `serving_alloc`.

use std::time::{Duration, Instant};

use steerdns::metrics::{AnswerMode, DropReason, GeoResult, Metrics, Transport};

use crate::support::alloc::{allocs, assert_counter_counts};

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
    assert_counter_counts();

    let total: u64 = zones.iter().map(|&z| m.queries().zone_total(z)).sum();
    assert_eq!(total, u64::from(N) + 1);
    assert_eq!(m.answers().count(slot, AnswerMode::Normal), u64::from(N));
    // Not a benchmark gate (CI machines vary), just a figure in the log.
    println!(
        "record_query + record_answer + record_geoip: {:.1} ns per query",
        elapsed.as_nanos() as f64 / f64::from(N)
    );
}
