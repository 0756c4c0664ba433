//! Embedding the server through the serving seam: bind first (the
//! addresses are known before anything runs), then serve on a runtime the
//! embedder owns, here a single-threaded one, and stop by cancelling the
//! token. The HTTP API is part of the server: status, explain, reload and
//! metrics are live on the printed address.
//!
//! ```sh
//! cargo run --example api_live -- config/example.toml 127.0.0.1:9153 [SECONDS]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use steerdns::app::{self, Options};
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

    let bound = app::bind(&Options {
        config,
        // Ephemeral loopback DNS ports: this is an example, not a server.
        dns_listen: vec!["127.0.0.1:0".parse()?],
        http_listen: Some(http),
    })?;
    eprintln!("api_live: API on http://{}", bound.http_addr()?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let mut server = app::serve(bound, shutdown.clone()).await?;
        eprintln!("api_live: DNS on {:?}", server.udp_addrs);
        tokio::select! {
            _ = async {
                match seconds {
                    Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        server.stop();
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
