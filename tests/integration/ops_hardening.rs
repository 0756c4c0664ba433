//! Operations under stress: reload metrics from a clean start, and an API
//! that slow clients cannot starve.

use crate::harness::*;
use crate::support::http::try_request;

#[test]
fn a_clean_start_records_the_initial_load() {
    let s = TestServer::base("");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let m = s.scrape();
    let loaded = m.value("steerdns_config_last_reload_success_timestamp_seconds", &[]);
    assert!(
        (now - loaded).abs() < 120.0,
        "loaded at {loaded}, now {now}"
    );
    assert_eq!(m.value("steerdns_config_last_reload_successful", &[]), 1.0);
    // The start is not a reload.
    assert_eq!(
        m.value("steerdns_config_reloads_total", &[("result", "success")]),
        0.0
    );

    // A failed reload clears the success flag, keeps the timestamp.
    let good = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, good.replace("serial = 7", "serial = \"x\"")).unwrap();
    assert!(s.running.reload().is_err());
    let m = s.scrape();
    assert_eq!(m.value("steerdns_config_last_reload_successful", &[]), 0.0);
    assert_eq!(
        m.value("steerdns_config_last_reload_success_timestamp_seconds", &[]),
        loaded
    );
    std::fs::write(&s.config, good).unwrap();
    s.running.reload().expect("good config reloads");
    assert_eq!(
        s.scrape()
            .value("steerdns_config_last_reload_successful", &[]),
        1.0
    );
}

/// Raise the soft open-file limit toward the hard one; returns the limit.
fn raise_fd_limit() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return 1024;
        }
        let want = l.rlim_max.min(8192);
        if want > l.rlim_cur {
            let n = libc::rlimit {
                rlim_cur: want,
                rlim_max: l.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &n) == 0 {
                l.rlim_cur = want;
            }
        }
    }
    l.rlim_cur
}

/// One GET on a fresh connection with a hard deadline: status (0 when it
/// failed) and time.
fn timed_get(addr: std::net::SocketAddr, path: &str) -> (u16, std::time::Duration) {
    let start = std::time::Instant::now();
    let r = try_request(addr, "GET", path, &[], std::time::Duration::from_secs(5));
    (r.map_or(0, |r| r.status), start.elapsed())
}

/// Slow clients hold many API connections and reconnect when closed
/// (slowloris: a request head that never ends, one byte at a time); some
/// from the checker's own address (127.0.0.1), some from another client
/// (127.0.0.2). `/healthz` and `/metrics` must still be answered. The
/// count is as large as the open-file limit allows, up to 1,000
/// (bench/api_slow_clients.py measures latencies with 1,000).
#[test]
fn slow_clients_do_not_starve_healthz_and_metrics() {
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let limit = raise_fd_limit();
    // Each slow client costs one fd here and, while admitted, one in the
    // server (same process); keep room for everything else.
    let n = (limit.saturating_sub(300) / 2).min(1000) as usize;
    if n < 100 {
        skip(&format!(
            "open-file limit {limit}: room for {n} slow clients, 100 needed"
        ));
        return;
    }
    let s = TestServer::base("");
    let api = s.running.http_addr;
    let stop = Arc::new(AtomicBool::new(false));
    let reconnects = Arc::new(AtomicU64::new(0));
    let opened = Arc::new(AtomicU64::new(0));
    let attacker = {
        let (stop, reconnects, opened) = (stop.clone(), reconnects.clone(), opened.clone());
        std::thread::spawn(move || {
            let open = |i: usize| -> Option<std::net::TcpStream> {
                let src: std::net::IpAddr = if i.is_multiple_of(2) {
                    "127.0.0.1".parse().unwrap()
                } else {
                    "127.0.0.2".parse().unwrap()
                };
                let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .ok()?;
                sock.bind(&std::net::SocketAddr::new(src, 0).into()).ok()?;
                sock.connect_timeout(&api.into(), std::time::Duration::from_millis(200))
                    .ok()?;
                let mut t: std::net::TcpStream = sock.into();
                t.set_write_timeout(Some(std::time::Duration::from_millis(200)))
                    .ok()?;
                t.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-a: ")
                    .ok()?;
                opened.fetch_add(1, Ordering::Relaxed);
                Some(t)
            };
            let mut conns: Vec<Option<std::net::TcpStream>> = (0..n).map(open).collect();
            // Bounded: at most 60 s, normally stopped after a few seconds.
            for _ in 0..120 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for (i, c) in conns.iter_mut().enumerate() {
                    let alive = c.as_mut().is_some_and(|t| t.write_all(b"a").is_ok());
                    if !alive {
                        reconnects.fetch_add(1, Ordering::Relaxed);
                        *c = open(i);
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            conns.len()
        })
    };
    // Let the slow clients connect first (bounded wait on the condition;
    // with a blocking cap, as before, most of them never got in).
    wait_for(30, "slow clients connected", || {
        opened.load(Ordering::Relaxed) >= n as u64
    });
    let mut worst = std::time::Duration::ZERO;
    let mut failed = Vec::new();
    for round in 0..10 {
        for path in ["/healthz", "/metrics"] {
            let (status, took) = timed_get(api, path);
            worst = worst.max(took);
            if status != 200 {
                failed.push(format!(
                    "round {round} {path}: status {status} after {took:?}"
                ));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let held = attacker.join().expect("attacker thread");
    eprintln!(
        "{held} slow clients, {} connections, {} reconnects; worst /healthz or /metrics: {worst:?}",
        opened.load(Ordering::Relaxed),
        reconnects.load(Ordering::Relaxed)
    );
    assert!(failed.is_empty(), "{failed:?}");
}
