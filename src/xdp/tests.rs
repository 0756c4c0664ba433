use std::net::SocketAddr;
use std::sync::Arc;

use super::*;

/// Answers every query with "R" + the query and the client's port.
struct Echo;

impl Handler for Echo {
    fn handle(&self, q: &[u8], client: SocketAddr, t: Transport, out: &mut Vec<u8>) -> bool {
        assert_eq!(t, Transport::Udp);
        if q.starts_with(b"drop") {
            return false;
        }
        if q.starts_with(b"huge") {
            out.resize(3000, b'h');
            return true;
        }
        out.push(b'R');
        out.extend_from_slice(q);
        out.extend_from_slice(&client.port().to_be_bytes());
        true
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn refuses_a_missing_interface_with_a_clear_error() {
    let e = start(
        "sdns-absent0",
        &[sa("10.0.0.1:53")],
        Arc::new(Echo),
        Duration::ZERO,
    )
    .unwrap_err();
    assert!(matches!(e, XdpError::NoInterface(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "xdp_interface \"sdns-absent0\": no such network interface"
    );
}

#[test]
fn refuses_without_listen_addresses() {
    let e = start("lo", &[], Arc::new(Echo), Duration::ZERO).unwrap_err();
    assert!(e.to_string().contains("no UDP listen address"), "{e}");
}

#[test]
fn answers_in_place_through_the_handler() {
    for (client, server) in [
        ("192.0.2.9:33333", "10.0.0.1:53"),
        ("[2001:db8::9]:33333", "[fd00::1]:53"),
    ] {
        let (c, s) = (sa(client), sa(server));
        let mut f = packet::tests::frame(c, s, b"question");
        let len = f.len();
        f.resize(4096 - 256, 0);
        let mut out = Vec::with_capacity(65535);
        let n = answer(&mut f, len, &Echo, &mut out, 1500)
            .ok()
            .expect("answered");
        let expected = packet::tests::frame(s, c, b"Rquestion\x82\x35");
        assert_eq!(&f[..n], &expected[..]);
        // Declined and oversize replies are dropped.
        let mut f = packet::tests::frame(c, s, b"drop me");
        let len = f.len();
        assert!(matches!(
            answer(&mut f, len, &Echo, &mut out, 1500),
            Err(Discard::Handler)
        ));
        let mut f = packet::tests::frame(c, s, b"huge");
        let len = f.len();
        f.resize(4096 - 256, 0);
        assert!(matches!(
            answer(&mut f, len, &Echo, &mut out, 1500),
            Err(Discard::TooBig)
        ));
        assert!(matches!(
            answer(&mut f[..10], 10, &Echo, &mut out, 1500),
            Err(Discard::Malformed)
        ));
    }
}

/// The assembled program through the kernel's verifier and interpreter
/// (`BPF_PROG_TEST_RUN`), built to drop what it would redirect: needs root
/// (CI is); skipped with a message elsewhere.
#[test]
fn program_redirects_only_the_listen_addresses() {
    let map = match bpf::create_xskmap(1) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipped: bpf(2) unavailable here: {e}");
            return;
        }
    };
    let counter = bpf::create_percpu_counter().expect("a per-CPU array");
    let cpus = bpf::possible_cpus().unwrap();
    let listen = [sa("10.0.0.1:53"), sa("0.0.0.0:5353"), sa("[fd00::1]:53")];
    let insns = prog::assemble(
        &listen,
        map.as_raw_fd(),
        counter.as_raw_fd(),
        prog::XDP_DROP,
    );
    let p = bpf::load_xdp(&insns).expect("the verifier accepts the program");
    let matched = prog::XDP_DROP as u32;
    let passed = prog::XDP_PASS as u32;
    // Every run: the action, and the counter moved by one exactly when the
    // program passed the frame (a redirect, here the drop, is not counted).
    let count = std::cell::Cell::new(0u64);
    let run_frame = |frame: &[u8]| {
        let action = bpf::test_run(&p, frame).unwrap();
        let now = bpf::percpu_sum(&counter, 0, cpus).unwrap();
        let expected = count.get() + u64::from(action == passed);
        assert_eq!(now, expected, "pass counter after a run returning {action}");
        count.set(now);
        action
    };
    let run = |src: &str, dst: &str| {
        run_frame(&packet::tests::frame(sa(src), sa(dst), b"\x12\x34 payload"))
    };
    assert_eq!(run("192.0.2.1:1000", "10.0.0.1:53"), matched);
    assert_eq!(
        run("192.0.2.1:1000", "10.0.0.2:53"),
        passed,
        "other address"
    );
    assert_eq!(run("192.0.2.1:1000", "10.0.0.1:54"), passed, "other port");
    assert_eq!(run("192.0.2.1:1000", "10.9.9.9:5353"), matched, "wildcard");
    assert_eq!(
        run("192.0.2.1:1000", "192.168.1.1:5353"),
        matched,
        "wildcard"
    );
    assert_eq!(run("[2001:db8::1]:1000", "[fd00::1]:53"), matched);
    assert_eq!(
        run("[2001:db8::1]:1000", "[fd00::2]:53"),
        passed,
        "other v6"
    );
    assert_eq!(
        run("[2001:db8::1]:1000", "[fd00::1]:5353"),
        passed,
        "no v6 wildcard"
    );
    // Not UDP, fragments, IPv4 options, ARP: all passed.
    let mut tcp = packet::tests::frame(sa("192.0.2.1:1000"), sa("10.0.0.1:53"), b"x");
    tcp[14 + 9] = 6;
    assert_eq!(run_frame(&tcp), passed);
    let mut frag = packet::tests::frame(sa("192.0.2.1:1000"), sa("10.0.0.1:53"), b"x");
    frag[14 + 6] |= 0x20;
    assert_eq!(run_frame(&frag), passed);
    let mut opts = packet::tests::frame(sa("192.0.2.1:1000"), sa("10.0.0.1:53"), b"x");
    opts[14] = 0x46;
    assert_eq!(run_frame(&opts), passed);
    let mut arp = packet::tests::frame(sa("192.0.2.1:1000"), sa("10.0.0.1:53"), b"x");
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(run_frame(&arp), passed);
    // Truncated: the bounds checks pass it rather than read past the end.
    let short = packet::tests::frame(sa("192.0.2.1:1000"), sa("10.0.0.1:53"), b"");
    assert_eq!(run_frame(&short[..14 + 20 + 4]), passed);
    // Of the 13 runs above 4 matched; the 9 others were counted.
    assert_eq!(count.get(), 9);
}
