//! `cluster_exchange`: the cost of the verdict exchange at scale.
//!
//! ```text
//! cargo run --release --example cluster_exchange -- [--endpoints 10000] [--peers 3] [--rounds 20]
//! ```
//!
//! Starts `peers + 1` real steerdns nodes in this process (loopback HTTP
//! APIs on ephemeral ports), each with `--endpoints` probed endpoints
//! (100 per pool; a TCP monitor at a 1 h interval, so probing is nearly
//! idle and the numbers are the exchange's), configures them as peers,
//! then drives node 0 through `--rounds` pull rounds (each round pulls
//! every peer concurrently and recomputes every endpoint) and prints, per
//! round and per peer pull: bytes on the wire (first pull with the key
//! table, then steady), wall time, and process CPU time (user + system,
//! `getrusage`; it covers both sides: the peers publishing and node 0
//! decoding and combining). Background pulls are disabled (1 h interval)
//! so only the measured rounds run.

use std::fmt::Write as _;
use std::time::Instant;

use steerdns::app;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(node: &str, endpoints: usize, peers: &[(String, std::net::SocketAddr)]) -> String {
    let mut s = format!(
        r#"
[server]
node_name = "{node}"
dns_listen = ["127.0.0.1:0"]
udp_workers = 1
watch_interval = "0s"
[cluster]
token = "bench"
pull_interval = "1h"
pull_timeout = "10s"
peers = [
"#
    );
    for (n, a) in peers {
        let _ = writeln!(s, "  {{ name = \"{n}\", url = \"http://{a}\" }},");
    }
    s.push_str(
        "]\n[zones.\"lb.example.com\"]\nns = [\"ns1\"]\nrecords = [{ name = \"ns1\", type = \"A\", data = \"192.0.2.53\" }]\n\
         [monitors.t]\ntype = \"tcp\"\nport = 9\ninterval = \"1h\"\ntimeout = \"1s\"\nquorum = \"majority\"\n",
    );
    for p in 0..endpoints.div_ceil(100) {
        let _ = write!(s, "[pools.p{p}]\nmonitor = \"t\"\nendpoints = [");
        for e in 0..100.min(endpoints - p * 100) {
            let i = p * 100 + e;
            let _ = write!(
                s,
                "{{ address = \"10.{}.{}.{}\", probe_address = \"127.0.0.1\" }},",
                i >> 16 & 255,
                i >> 8 & 255,
                i & 255
            );
        }
        s.push_str("]\n");
    }
    s
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let endpoints = arg(&args, "--endpoints", 10_000);
    let npeers = arg(&args, "--peers", 3);
    let rounds = arg(&args, "--rounds", 20).max(2);
    let dir = tempfile::tempdir()?;
    let mut nodes = Vec::new();
    for i in 0..=npeers {
        let path = dir.path().join(format!("n{i}.toml"));
        std::fs::write(&path, config(&format!("n{i}"), endpoints, &[]))?;
        let r = app::start(&app::Options {
            config: path.clone(),
            dns_listen: vec![],
            http_listen: Some("127.0.0.1:0".parse()?),
        })?;
        nodes.push((path, r));
    }
    let addrs: Vec<_> = nodes.iter().map(|(_, r)| r.http_addr).collect();
    for (i, (path, r)) in nodes.iter().enumerate() {
        let peers: Vec<_> = (0..addrs.len())
            .filter(|&j| j != i)
            .map(|j| (format!("n{j}"), addrs[j]))
            .collect();
        std::fs::write(path, config(&format!("n{i}"), endpoints, &peers))?;
        r.reload()?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let c = nodes[0].1.cluster.clone();
    let bytes = |c: &steerdns::cluster::Cluster| -> Vec<u64> {
        c.status_json()["peers"]
            .as_array()
            .map(|p| p.iter().map(|p| p["bytes"].as_u64().unwrap_or(0)).collect())
            .unwrap_or_default()
    };
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    rt.block_on(c.pull_all());
    let (first_cpu, first_wall) = (cpu_seconds() - cpu0, t0.elapsed());
    let first_bytes = bytes(&c);
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    for _ in 1..rounds {
        rt.block_on(c.pull_all());
    }
    let n = (rounds - 1) as f64;
    let (cpu, wall) = ((cpu_seconds() - cpu0) / n, t0.elapsed().as_secs_f64() / n);
    let steady = bytes(&c);
    let fresh = c.status_json()["peers"]
        .as_array()
        .map_or(0, |p| p.iter().filter(|p| p["fresh"] == true).count());
    println!("endpoints {endpoints}, peers {npeers}, rounds {rounds}, fresh peers after {fresh}");
    println!(
        "first round (key tables): bytes per peer {:?}, wall {:.1} ms, CPU {:.1} ms",
        first_bytes,
        first_wall.as_secs_f64() * 1e3,
        first_cpu * 1e3
    );
    println!(
        "steady round: bytes per peer {:?} ({:.2} B/endpoint), wall {:.1} ms, CPU {:.1} ms per round = {:.2} ms per peer pull ({:.0} ns per endpoint per pull)",
        steady,
        steady.first().copied().unwrap_or(0) as f64 / endpoints as f64,
        wall * 1e3,
        cpu * 1e3,
        cpu * 1e3 / npeers as f64,
        cpu * 1e9 / (npeers * endpoints) as f64,
    );
    println!(
        "at a 2 s pull interval: {:.1} KB/s in per node, {:.2} % of one core (both sides)",
        steady.iter().sum::<u64>() as f64 / 2.0 / 1024.0,
        cpu / 2.0 * 100.0
    );
    assert!(fresh == npeers, "not every peer was pulled");
    drop(nodes);
    Ok(())
}
