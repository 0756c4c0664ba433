//! Serve the HTTP API and status page with a fake backend (one endpoint
//! down, one reload failed) and real `Metrics` with a sample of every
//! metric, on 127.0.0.1:PORT, for `.ci/ops-e2e.sh` and for looking at the
//! page in a browser.
//!
//! ```sh
//! cargo run --example api_demo -- 9153        # until Ctrl-C
//! cargo run --example api_demo -- 9153 60     # for 60 seconds
//! ```
//! Set `STEERDNS_API_TOKEN` to require a token for `POST /api/v1/reload`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use steerdns::api::{
    self, ApiBackend, ApiOptions, EndpointState, EndpointStatus, LastReload, PoolStatus,
    ReloadOutcome, Status,
};
use steerdns::metrics::{AnswerMode, DropReason, GeoResult, Metrics, Transport};
use tokio_util::sync::CancellationToken;

struct Demo {
    metrics: Metrics,
    generation: AtomicU64,
    started: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn endpoint(
    name: &str,
    address: &str,
    state: EndpointState,
    reason: &str,
    t: u64,
) -> EndpointStatus {
    EndpointStatus {
        name: name.into(),
        address: address.into(),
        enabled: state != EndpointState::Disabled,
        up: state == EndpointState::Up,
        state,
        reason: (!reason.is_empty()).then(|| reason.into()),
        last_probe_at: (state != EndpointState::Disabled).then_some(t.saturating_sub(3)),
        last_change_at: Some(t.saturating_sub(754)),
        monitor: (state != EndpointState::Disabled).then(|| "tcp:443".into()),
    }
}

impl Demo {
    fn new() -> Self {
        let m = Metrics::new().expect("metrics");
        let q = m.queries();
        let zone = q.zone_slot("lb.example.com.");
        let us = Duration::from_micros;
        for i in 0..50u64 {
            q.record_query(zone, 1, 0, Transport::Udp, us(20 + i * 3));
        }
        q.record_query(zone, 28, 0, Transport::Tcp, us(400));
        q.record_query(zone, 1, 3, Transport::Udp, us(60));
        q.record_query(
            steerdns::metrics::NO_ZONE_SLOT,
            1,
            5,
            Transport::Udp,
            us(15),
        );
        let eu = m.answers().answer_slot("www.lb.example.com.", Some("eu"));
        let na = m.answers().answer_slot("www.lb.example.com.", Some("na"));
        m.answers().record_answer(eu, AnswerMode::Normal);
        m.answers().record_answer(na, AnswerMode::Fallback);
        m.record_drop(DropReason::Malformed);
        m.record_geoip(GeoResult::Found);
        m.record_geoip(GeoResult::NotFound);
        m.set_endpoint_up("eu", "eu-1", true);
        m.set_endpoint_up("eu", "eu-2", false);
        m.set_endpoint_up("na", "na-1", true);
        m.set_pool_usable("eu", true);
        m.set_pool_usable("na", true);
        m.observe_probe("tcp", Duration::from_millis(12));
        m.probe_failed("eu", "eu-2", "timeout");
        m.reload_result(true);
        m.reload_result(false);
        // Cluster series (peers, admin states, RTT), as a fleet node has them.
        if let Ok(c) = steerdns::cluster::metrics::ClusterMetrics::register(m.registry()) {
            use steerdns::cluster::quorum::Admin;
            c.peer_fresh.with_label_values(&["ns2"]).set(1);
            c.peer_fresh.with_label_values(&["ns3"]).set(0);
            c.isolated.set(0);
            c.set_admin("eu", "eu-1", Admin::Auto);
            c.set_admin("eu", "eu-2", Admin::Drain);
            c.set_admin("na", "na-1", Admin::Auto);
            c.rtt.with_label_values(&["eu", "eu-1"]).set(0.012);
        }
        Demo {
            metrics: m,
            generation: AtomicU64::new(1),
            started: now(),
        }
    }
}

impl ApiBackend for Demo {
    fn ready(&self) -> bool {
        true
    }

    fn status(&self) -> Status {
        let t = now();
        Status {
            node_name: "demo-node".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            generation: self.generation.load(Ordering::Relaxed),
            config_file: "config/example.toml".into(),
            started_at: self.started,
            last_reload: Some(LastReload {
                at: t.saturating_sub(60),
                ok: false,
                generation: 1,
                errors: vec![
                    "example.toml:41:19: names.\"www.lb.example.com\".pools[1]: unknown pool \"nosuchpool\"".into(),
                ],
            }),
            pools: vec![
                PoolStatus {
                    name: "eu".into(),
                    usable: true,
                    min_healthy: 1,
                    endpoints: vec![
                        endpoint("eu-1", "192.0.2.10", EndpointState::Up, "connected in 3ms", t),
                        endpoint(
                            "eu-2",
                            "192.0.2.11",
                            EndpointState::Down,
                            "connect timeout after 2s",
                            t,
                        ),
                    ],
                },
                PoolStatus {
                    name: "na".into(),
                    usable: true,
                    min_healthy: 1,
                    endpoints: vec![
                        endpoint("na-1", "198.51.100.10", EndpointState::Up, "connected in 41ms", t),
                        endpoint("na-2", "198.51.100.11", EndpointState::Disabled, "", t),
                    ],
                },
            ],
        }
    }

    fn explain(
        &self,
        name: &str,
        qtype: &str,
        client: IpAddr,
    ) -> Result<serde_json::Value, String> {
        Ok(serde_json::json!({
            "note": "demo backend: not a real decision",
            "name": name, "type": qtype, "client": client.to_string(), "pool": "eu",
        }))
    }

    fn reload(&self) -> ReloadOutcome {
        self.metrics.reload_result(true);
        ReloadOutcome {
            ok: true,
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
            errors: Vec::new(),
        }
    }

    fn metrics_text(&self) -> String {
        self.metrics.render()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .ok_or("usage: api_demo PORT [SECONDS]")?
        .parse()?;
    let seconds: Option<u64> = args.next().map(|s| s.parse()).transpose()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(api::bind(addr)?)?;
        eprintln!("api_demo: serving on http://{}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let opts = ApiOptions {
            token: std::env::var("STEERDNS_API_TOKEN").ok(),
            listen: addr,
        };
        let server = tokio::spawn(api::serve(
            listener,
            Arc::new(Demo::new()),
            opts,
            shutdown.clone(),
        ));
        let limit = async {
            match seconds {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = limit => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        shutdown.cancel();
        let _ = server.await;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
