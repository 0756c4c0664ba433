//! The answer engine does not allocate per query, also for answers with
//! compressed record data and glue (apex NS, referrals, MX, SOA, CNAME) and
//! for minimal error answers. Counted with a global allocator, in a binary
//! of its own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;

use steerdns::dns::transport::Transport;
use steerdns::engine::answer::{Client, Outcome, answer};
use steerdns::select::Rng;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: forwards to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
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

const CONFIG: &str = r#"
[server]
node_name = "alloc-test"
dns_listen = ["127.0.0.1:0"]

[zones."ref.example"]
ns = ["ns1", "ns2"]
records = [
  { name = "ns1", type = "A", data = "192.0.2.53" },
  { name = "ns1", type = "AAAA", data = "2001:db8::53" },
  { name = "ns2", type = "A", data = "198.51.100.53" },
  { name = "@", type = "MX", data = "10 mail" },
  { name = "mail", type = "A", data = "192.0.2.25" },
  { name = "alias", type = "CNAME", data = "mail" },
  { name = "child", type = "NS", data = "a.child" },
  { name = "child", type = "NS", data = "b.child" },
  { name = "a.child", type = "A", data = "192.0.2.1" },
  { name = "b.child", type = "AAAA", data = "2001:db8::2" },
]
"#;

fn query(name: &str, qtype: u16, opcode: u8, opt: &[u8]) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, opcode << 3, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0]);
    q.extend_from_slice(&(opt.len() as u16).to_be_bytes());
    q.extend_from_slice(opt);
    q
}

#[test]
fn answers_do_not_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerdns.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let snap = steerdns::app::load_snapshot(&path, 1).unwrap();
    let bad_ecs = [0, 8, 0, 7, 0, 3, 24, 0, 81, 2, 69];
    let cases = [
        ("apex NS with glue", query("ref.example", 2, 0, &[]), 0),
        ("referral", query("x.child.ref.example", 1, 0, &[]), 0),
        ("MX", query("ref.example", 15, 0, &[]), 0),
        ("SOA", query("ref.example", 6, 0, &[]), 0),
        ("CNAME chain", query("alias.ref.example", 1, 0, &[]), 0),
        ("NXDOMAIN", query("nope.ref.example", 1, 0, &[]), 3),
        ("FORMERR from OPT", query("ref.example", 1, 0, &bad_ecs), 1),
        ("NOTIMP", query("ref.example", 6, 2, &[]), 4),
        (
            "client cookie (server cookie made)",
            query("ref.example", 1, 0, &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]),
            0,
        ),
    ];
    let client = Client {
        addr: SocketAddr::from(([127, 0, 0, 1], 40000)),
        transport: Transport::Udp,
    };
    let mut rng = Rng::seeded(1);
    let mut out = Vec::with_capacity(4096);
    for (what, pkt, rcode) in &cases {
        // Warm up (thread locals, lazy statics).
        answer(&snap, pkt, client, &mut rng, &mut out);
        let before = allocs();
        for _ in 0..1000 {
            let o = answer(&snap, std::hint::black_box(pkt), client, &mut rng, &mut out);
            assert_eq!(o, Outcome::Answered { rcode: *rcode }, "{what}");
        }
        assert_eq!(allocs() - before, 0, "{what} allocated");
        assert!(out.len() > 12, "{what}");
    }
    // The counter does count.
    let before = allocs();
    let v = std::hint::black_box(vec![1u8; 16]);
    assert!(allocs() > before, "{}", v.len());
}
