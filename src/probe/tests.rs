//! The prober's tests: the schedule's fixed phases and spread offsets, and
//! a reload storm on paused time that must neither reschedule nor drop
//! probes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::schedule::{next_phase, offset_for};
use super::{HealthStatus, ProberOptions, run};
use crate::config::{self, Source};
use crate::health::state::Verdict;
use crate::metrics::Metrics;
use crate::serving::Shared;
use crate::snapshot::Snapshot;

#[test]
fn next_phase_is_fixed_in_time() {
    let epoch = Instant::now();
    let (off, iv) = (Duration::from_secs(3), Duration::from_secs(10));
    assert_eq!(next_phase(epoch, off, iv, epoch), epoch + off);
    // However often it is asked, the answer is the same point.
    for s in [4u64, 5, 9, 13] {
        let now = epoch + Duration::from_secs(s);
        assert_eq!(
            next_phase(epoch, off, iv, now),
            epoch + Duration::from_secs(13)
        );
    }
    let now = epoch + Duration::from_secs(14);
    assert_eq!(
        next_phase(epoch, off, iv, now),
        epoch + Duration::from_secs(23)
    );
}

/// Ports that refuse connections: sockets bound but never listening.
/// They are held for the whole test, so no other test running in
/// parallel can bind the port and turn a "dead" endpoint into a live one
/// (a bound, non-listening port answers a SYN with a reset).
fn refused_ports(n: usize) -> (Vec<socket2::Socket>, Vec<u16>) {
    use socket2::{Domain, Socket, Type};
    let held: Vec<Socket> = (0..n)
        .map(|_| {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
            let addr: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
            s.bind(&addr.into()).expect("bind");
            s
        })
        .collect();
    let ports = held
        .iter()
        .map(|s| {
            s.local_addr()
                .expect("addr")
                .as_socket()
                .expect("inet")
                .port()
        })
        .collect();
    (held, ports)
}

fn storm_config(dead: &[u16], slow: &[u16], round: usize) -> String {
    let eps = |base: u8, ports: &[u16]| {
        ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "{{ address = \"192.0.2.{}\", probe_address = \"127.0.0.1\", probe_port = {p} }}",
                    usize::from(base) + i
                )
            })
            .collect::<Vec<_>>()
            .join(",\n  ")
    };
    // Every reload changes the zone; odd ones also add a pool whose
    // name sorts between the others, so target indices shift.
    let extra = if round % 2 == 1 {
        format!(
            "[pools.extra]\nmonitor = \"dead\"\nendpoints = [{}]\n",
            eps(250, &dead[..1])
        )
    } else {
        String::new()
    };
    format!(
        r#"
[server]
node_name = "t"
dns_listen = ["127.0.0.1:0"]

[zones."lb.example.com"]
ns = ["ns1"]
records = [
  {{ name = "ns1", type = "A", data = "192.0.2.53" }},
  {{ name = "r", type = "A", ttl = "{ttl}s", data = "192.0.2.1" }},
]

[monitors.dead]
type = "tcp"
interval = "10s"
timeout = "1s"

[monitors.slow]
type = "http"
interval = "10s"
timeout = "3s"

[pools.dead]
monitor = "dead"
endpoints = [
  {dead_eps}
]

[pools.slow]
monitor = "slow"
endpoints = [
  {slow_eps}
]
{extra}
[names."a.lb.example.com"]
policy = "failover"
pools = ["dead", "slow"]
"#,
        ttl = 60 + round,
        dead_eps = eps(1, dead),
        slow_eps = eps(100, slow),
    )
}

fn compile(text: String, generation: u64) -> Snapshot {
    let source = Source {
        path: "storm.toml".into(),
        text,
    };
    let file = config::parse(&source).expect("parse");
    crate::snapshot::build(&source, &file, generation).expect("compile")
}

/// 50 reloads 2 s apart (paused clock) against 40 dead endpoints at a
/// 10 s interval: 30 refuse connections (the result comes at once) and
/// 10 accept but never answer HTTP (every probe times out after 3 s, so
/// it is still in flight at the next reload). Every endpoint must be
/// probed about every 10 s all along, and none left unknown.
#[tokio::test(start_paused = true)]
async fn a_reload_storm_neither_reschedules_nor_drops_probes() {
    let (_held, dead) = refused_ports(30);
    // Listening, never accepting: connect succeeds, no reply ever.
    let silent: Vec<_> = (0..10)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let slow: Vec<u16> = silent
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect();
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let shared = Shared::new(compile(storm_config(&dead, &slow, 0), 1), metrics);
    let status = Arc::new(HealthStatus::default());
    let (gen_tx, gen_rx) = watch::channel(1u64);
    let shutdown = CancellationToken::new();
    let prober = tokio::spawn(run(
        shared.clone(),
        status.clone(),
        None,
        gen_rx,
        ProberOptions::default(),
        shutdown.clone(),
    ));
    let reloads = 50;
    for round in 1..=reloads {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let generation = round as u64 + 1;
        let snap = compile(storm_config(&dead, &slow, round), generation);
        // What `Control::reload` does.
        status.seed(&snap);
        shared.publish(snap);
        gen_tx.send(generation).expect("prober alive");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    shutdown.cancel();
    prober.await.expect("prober");

    // 102 s of virtual time at a 10 s interval: 10 rounds for each
    // endpoint (9 at least, whatever its offset); before this was
    // fixed, most endpoints were never probed at all.
    let snap = shared.current.load();
    let mut unknown = Vec::new();
    for t in snap.probes.iter().filter(|t| !t.key.starts_with("extra|")) {
        let h = status.get(&t.key).unwrap_or_default();
        if h.hysteresis.verdict == Verdict::Unknown {
            unknown.push(t.key.clone());
        }
        assert!(
            (9..=11).contains(&h.probes),
            "{}: {} probes in 102 s at a 10 s interval ({:?})",
            t.key,
            h.probes,
            h.reason
        );
        assert!(!snap.health.is_up(t.endpoint), "{} answered as up", t.key);
    }
    assert!(unknown.is_empty(), "left unknown: {unknown:?}");
    assert_eq!(snap.probes.len(), 40);
    let timeouts = snap
        .probes
        .iter()
        .filter_map(|t| status.get(&t.key)?.reason)
        .filter(|r| r.contains("timeout"))
        .count();
    assert!(
        timeouts >= 10,
        "the silent backends must time out: {timeouts}"
    );
    drop(silent);
}

#[test]
fn offsets_spread_probes_over_the_interval() {
    let interval = Duration::from_secs(10);
    let mut buckets = [0u32; 100];
    for i in 0..10_000 {
        let key = format!(
            "pool{}|192.0.2.{}|127.0.0.1:{}|web|00",
            i / 100,
            i % 250,
            8000 + i
        );
        let off = offset_for(&key, interval);
        assert!(off < interval);
        buckets[(off.as_millis() / 100) as usize] += 1;
    }
    // 100 per 100 ms on average; no burst above 2x, no gap below half
    let (min, max) = (buckets.iter().min().unwrap(), buckets.iter().max().unwrap());
    assert!(*max <= 200 && *min >= 50, "min {min} max {max}");
}

#[test]
fn offsets_are_stable_per_key() {
    let i = Duration::from_secs(10);
    assert_eq!(offset_for("a|b", i), offset_for("a|b", i));
    assert_ne!(offset_for("a|b", i), offset_for("a|c", i));
}
