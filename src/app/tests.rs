//! The split between the DNS plane and the control plane, observed from
//! the outside: thread names and nice values in `/proc/self/task`, and
//! which runtime holds the server's tasks.

use std::path::PathBuf;

use super::placement::{CONTROL_NICE, CONTROL_THREAD, DNS_THREAD};
use super::*;

/// (name, nice) of every thread of this process.
fn threads() -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        // "tid (comm) state ..."; comm may hold spaces, so split at ')'.
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_string();
        // After ')': state is field 3, nice field 19.
        let nice: i32 = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
        out.push((name, nice));
    }
    out
}

#[test]
fn the_control_plane_runs_on_its_own_niced_runtime() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let running = start(&Options {
        config: root.join("config/example.toml"),
        dns_listen: vec!["127.0.0.1:0".parse().unwrap()],
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
    })
    .expect("start");
    let rt = running.rt.as_ref().unwrap();
    // Only the TCP loop's stopper lives on the DNS runtime; the prober, the
    // cluster exchange, the API, the webhooks, the drop counters and the
    // file watch on the control runtime.
    assert_eq!(
        rt.dns.metrics().num_alive_tasks(),
        1,
        "DNS runtime: the TCP loop's stopper"
    );
    assert!(
        rt.control.metrics().num_alive_tasks() >= 6,
        "control runtime tasks: {}",
        rt.control.metrics().num_alive_tasks()
    );
    // A new thread names itself, then lowers its priority, once it runs:
    // wait (bounded) for the state to settle, then assert it.
    // Relative to this test's own nice value (the suite may run under
    // `nice`), which the DNS threads keep.
    let base = super::placement::tests::nice();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = check(&threads(), base);
    while seen.is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        seen = check(&threads(), base);
    }
    if let Err(e) = seen {
        panic!("{e}");
    }
    running.stop();
}

/// The control threads (at least the two workers) at nice 10 (or the
/// test's, if higher), every kind of DNS thread present at the test's.
fn check(all: &[(String, i32)], base: i32) -> Result<(), String> {
    let of = |prefix: &str| -> Vec<i32> {
        all.iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, nice)| *nice)
            .collect()
    };
    let ctl = of(CONTROL_THREAD);
    if ctl.len() < 2 || ctl.iter().any(|&n| n != base.max(CONTROL_NICE)) {
        return Err(format!(
            "control threads at nice {}: {all:?}",
            base.max(CONTROL_NICE)
        ));
    }
    for dns in ["dns-udp-", "steerdns-tcp", DNS_THREAD] {
        let n = of(dns);
        if n.is_empty() || n.iter().any(|&n| n != base) {
            return Err(format!("{dns} threads at nice {base}: {all:?}"));
        }
    }
    Ok(())
}
