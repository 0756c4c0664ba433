//! `probe_cpu`: CPU time of one HTTP health probe, in process, so two
//! builds of the probe client can be compared without a fleet.
//!
//! ```text
//! cargo run --release --example probe_cpu -- [--probes 20000] [--body 2]
//! ```
//!
//! A plain-thread server on `127.0.0.1` (ephemeral port) answers every
//! connection with `200 OK`, `Content-Length: BODY`, `Connection: close`.
//! The probing thread (a tokio current-thread runtime) runs `--probes`
//! `http` probes (`GET /health`, expect `2xx` and the body marker `ok`)
//! one after the other, after 200 warm-up probes, and reports its own CPU
//! time per probe (`CLOCK_THREAD_CPUTIME_ID`: the server's work is not
//! counted). Any failed probe aborts the run.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use steerdns::probe::check::{CheckKind, CheckSpec, HttpCheck, Target, probe};

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn serve(l: TcpListener, body: usize) {
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {body}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    response.extend(std::iter::repeat_n(b'k', body.saturating_sub(2)));
    response.extend_from_slice(&b"ok"[..body.min(2)]);
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(&response);
    }
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let probes = arg(&args, "--probes", 20_000);
    let body = arg(&args, "--body", 2).max(2);
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1");
    let addr: SocketAddr = l.local_addr().unwrap();
    std::thread::spawn(move || serve(l, body));

    let spec = CheckSpec {
        kind: CheckKind::Http(HttpCheck {
            path: "/health".into(),
            expect_body: Some("ok".into()),
            ..HttpCheck::default()
        }),
        timeout: Duration::from_secs(5),
    };
    let target = Target { addr, host: None };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let run = |n: usize| {
            let spec = &spec;
            async move {
                for _ in 0..n {
                    if let Err(e) = probe(spec, target).await {
                        panic!("probe failed: {e}");
                    }
                }
            }
        };
        run(200).await;
        let (cpu0, wall0) = (thread_cpu(), Instant::now());
        run(probes).await;
        let (cpu, wall) = (thread_cpu() - cpu0, wall0.elapsed());
        println!(
            "probes {probes} body {body} B: cpu {:.1} us/probe, wall {:.1} us/probe",
            cpu.as_secs_f64() * 1e6 / probes as f64,
            wall.as_secs_f64() * 1e6 / probes as f64
        );
    });
}
