//! What a lookup costs: time on a synthetic database (an ignored
//! measurement) and allocations (none) per `locate`.

use super::*;

/// Lookup performance on a synthetic database. Run with:
/// `cargo test --release --lib geo::tests::cost::bench_locate -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_locate() {
    use std::time::Instant;
    let d = Dir::new();
    // With an AS number in every record, so the same file also serves as
    // the ASN database below (one is refused without any).
    let mut syn = mmdb_writer::synthetic::Synthetic::new(|c, sub, ll| {
        let mut rec = city(None, c, sub, ll);
        if let MmdbValue::Map(m) = &mut rec {
            m.push((
                "autonomous_system_number".to_owned(),
                MmdbValue::Uint32(64_500),
            ));
        }
        rec
    });
    let w = &syn.writer;
    let path = d.0.path().join("bench.mmdb");
    let t = Instant::now();
    w.write_to(&path).unwrap();
    eprintln!(
        "write: {:?}, {} bytes",
        t.elapsed(),
        std::fs::metadata(&path).unwrap().len()
    );
    let overrides = || vec![over("10.0.0.0/8", "US"), over("192.0.2.0/24", "SE")];
    let t = Instant::now();
    let loc_only = GeoDb::open(Some(&path), None, overrides()).unwrap();
    let info = loc_only.location_db_info().unwrap();
    eprintln!(
        "open: {:?} ({} networks, {} records)",
        t.elapsed(),
        info.networks,
        info.records
    );
    // The same file as ASN database too: two tree walks per locate.
    let both = GeoDb::open(Some(&path), Some(&path), overrides()).unwrap();

    let v4: Vec<IpAddr> = (0..100_000).map(|_| syn.v4()).collect();
    let v4_hits: Vec<IpAddr> = v4
        .iter()
        .filter(|&&a| loc_only.locate(a).source == LocationSource::Database)
        .copied()
        .collect();
    // Half inside inserted /48s, half random.
    let v6: Vec<IpAddr> = (0..100_000usize).map(|i| syn.v6(i)).collect();
    let mapped: Vec<IpAddr> = v4_hits
        .iter()
        .map(|a| match a {
            IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
            other => *other,
        })
        .collect();
    assert!(!v4_hits.is_empty());
    for (dbname, db) in [("location db", &loc_only), ("location+asn db", &both)] {
        for (name, addrs) in [
            ("ipv4 random", &v4),
            ("ipv4 hits", &v4_hits),
            ("ipv4-mapped hits", &mapped),
            ("ipv6 50% hits", &v6),
        ] {
            let mut found = 0usize;
            let total = 2_000_000usize;
            let rounds = total.div_ceil(addrs.len());
            let t = Instant::now();
            for _ in 0..rounds {
                for &a in addrs.iter() {
                    let l = std::hint::black_box(db.locate(std::hint::black_box(a)));
                    found += usize::from(l.source != LocationSource::Unknown);
                }
            }
            let ns = t.elapsed().as_nanos() as f64 / (rounds * addrs.len()) as f64;
            eprintln!(
                "{dbname:>16} {name:>17}: {ns:>5.0} ns/locate ({:.0}% located)",
                100.0 * found as f64 / (rounds * addrs.len()) as f64
            );
        }
    }
    // The small sample database (fits in cache).
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/sample.mmdb");
    let db = GeoDb::open(Some(&sample), None, vec![]).unwrap();
    let a = ip("81.2.69.142");
    let t = Instant::now();
    for _ in 0..2_000_000 {
        std::hint::black_box(db.locate(std::hint::black_box(a)));
    }
    let ns = t.elapsed().as_nanos() as f64 / 2_000_000.0;
    eprintln!("sample.mmdb 81.2.69.142: {ns:.0} ns/locate");
    assert!(ns > 0.0);
}

/// Counts allocations made by the current thread (test binary only).
pub(crate) mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCS: Cell<usize> = const { Cell::new(0) };
    }

    struct Counting;

    fn bump() {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
    }

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

    /// Allocations made by this thread so far.
    pub fn count() -> usize {
        ALLOCS.with(Cell::get)
    }
}

#[test]
fn locate_does_not_allocate() {
    let d = Dir::new();
    let p = d.write(
        "city.mmdb",
        IpVersion::V6,
        &[
            (
                "81.2.69.0/24",
                city(Some("EU"), "GB", Some("ENG"), Some((51.5, -0.1))),
            ),
            ("2001:218::/32", city(Some("AS"), "JP", None, None)),
        ],
    );
    let db = GeoDb::open(
        Some(&p),
        Some(&d.write(
            "asn.mmdb",
            IpVersion::V4,
            &[(
                "81.2.0.0/16",
                MmdbValue::map([("autonomous_system_number", MmdbValue::Uint32(5))]),
            )],
        )),
        vec![over("10.0.0.0/8", "US")],
    )
    .unwrap();
    let addrs: Vec<IpAddr> = [
        "81.2.69.142",
        "::ffff:81.2.69.142",
        "2001:218::1",
        "10.1.1.1",
        "192.0.2.1",
        "2001:db8::1",
    ]
    .iter()
    .map(|s| ip(s))
    .collect();
    let before = alloc_count::count();
    let mut located = 0;
    for &a in &addrs {
        let l = std::hint::black_box(db.locate(a));
        located += usize::from(l.source != LocationSource::Unknown);
    }
    assert_eq!(alloc_count::count() - before, 0);
    assert_eq!(located, 4);
    // The counter does count: a Vec allocates.
    let v = std::hint::black_box(vec![1u8; 16]);
    assert!(alloc_count::count() > before, "{}", v.len());
}
