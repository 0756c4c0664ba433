//! A wiring sketch until `app` serves the API itself: start the real server
//! (`app::start`) on a config, and the HTTP API over it with
//! `SharedBackend` (status, explain, reload and health gauges are real; the
//! DNS path does not count queries yet, as that needs hooks in `dns/`).
//!
//! ```sh
//! cargo run --example api_live -- config/example.toml 127.0.0.1:9153 [SECONDS]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use steerdns::api::backend::{Reloader, SharedBackend};
use steerdns::api::{self, ApiBackend, ApiOptions};
use steerdns::app::{self, Options};
use steerdns::metrics::Metrics;
use steerdns::serving::labels as metric_labels;
use tokio_util::sync::CancellationToken;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let usage = "usage: api_live CONFIG HTTP_ADDR [SECONDS]";
    let config = PathBuf::from(args.next().ok_or(usage)?);
    let http: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let seconds: Option<u64> = args.next().map(|s| s.parse()).transpose()?;

    let metrics = Arc::new(Metrics::new()?);
    let running = Arc::new(app::start(&Options {
        config,
        // Ephemeral loopback DNS ports: this is a sketch, not a server.
        dns_listen: vec!["127.0.0.1:0".parse()?],
        http_listen: Some(http),
    })?);
    metrics.reload_result(true);
    metric_labels::sync_health(&metrics, &running.shared.current.load());
    eprintln!("api_live: DNS on {:?}", running.udp_addrs);

    let (r, m, s) = (running.clone(), metrics.clone(), running.shared.clone());
    let reloader: Reloader = Box::new(move || {
        let g = r
            .reload()
            .map_err(|e| e.to_string().lines().map(String::from).collect::<Vec<_>>())?;
        metric_labels::sync_health(&m, &s.current.load());
        Ok(g)
    });
    let backend = Arc::new(SharedBackend::new(
        running.shared.clone(),
        metrics.clone(),
        reloader,
    ));
    backend.set_ready(true);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(api::bind(http)?)?;
        eprintln!("api_live: API on http://{}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let b: Arc<dyn ApiBackend> = backend;
        let opts = ApiOptions {
            token: std::env::var("STEERDNS_API_TOKEN").ok(),
            listen: http,
        };
        let server = tokio::spawn(api::serve(listener, b, opts, shutdown.clone()));
        tokio::select! {
            _ = async {
                match seconds {
                    Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        shutdown.cancel();
        let _ = server.await;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
