//! The bodies of the fuzz targets, shared by the cargo-fuzz binaries
//! (`fuzz_targets/`, nightly) and by the corpus replay that `cargo test`
//! runs on stable (`tests/fuzz_corpus.rs` in the main crate). Each takes
//! arbitrary bytes and must neither panic nor hang; where a property is
//! cheap to state, it is asserted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use steerdns::config::{self, Source};
use steerdns::dns::transport::Transport;
use steerdns::engine::answer::{self, Client, Outcome};
use steerdns::engine::wire;
use steerdns::geo::GeoDb;
use steerdns::select::Rng;
use steerdns::snapshot::Snapshot;

/// The wire parser: any bytes give a query or an error, never a panic; a
/// parsed question lies inside the packet.
pub fn wire(data: &[u8]) {
    if let Ok(q) = wire::parse(data) {
        assert!(q.name_lc().len() <= 255, "name longer than 255 octets");
    }
    let _ = wire::parse_ecs(data);
}

/// The example config, compiled (with its sample GeoIP database), for
/// [`answer`]. `repo` is the repository root.
pub fn example_snapshot(repo: &Path) -> Snapshot {
    steerdns::app::load_snapshot(&repo.join("config/example.toml"), 1)
        .unwrap_or_else(|e| panic!("config/example.toml: {e}"))
}

/// The answer engine over the example snapshot, on UDP and TCP from an
/// IPv4 and an IPv6 client: a reply is a DNS message with the query's id
/// and QR set, within the transport's size limit.
pub fn answer(snap: &Snapshot, data: &[u8]) {
    let mut out = Vec::new();
    let mut rng = Rng::seeded(7);
    let clients = [
        (IpAddr::V4(Ipv4Addr::new(81, 2, 69, 1)), Transport::Udp),
        (IpAddr::V6(Ipv6Addr::LOCALHOST), Transport::Tcp),
    ];
    for (ip, transport) in clients {
        let client = Client {
            addr: SocketAddr::new(ip, 5353),
            transport,
        };
        match answer::answer(snap, data, client, &mut rng, &mut out) {
            Outcome::Dropped => {}
            Outcome::Answered { .. } => {
                assert!(out.len() >= 12, "reply shorter than a header");
                assert_eq!(out[..2], data[..2], "reply id differs");
                assert!(out[2] & 0x80 != 0, "reply without QR");
                assert!(out.len() <= 65535, "reply over 65535 octets");
            }
        }
    }
}

/// The config parser and compiler (without GeoIP databases, which the
/// input could name anywhere): a result or errors with places, never a
/// panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = Source {
        path: "fuzz.toml".into(),
        text: text.to_string(),
    };
    let Ok(file) = config::parse(&source) else {
        return;
    };
    let geo = match GeoDb::open(None, None, Vec::new()) {
        Ok(g) => std::sync::Arc::new(g),
        Err(e) => panic!("empty GeoDb: {e}"),
    };
    if let Err(e) = steerdns::snapshot::build_with_geo(&source, &file, geo, 1) {
        // Every error names a place and renders.
        let _ = e.to_string();
    }
}

/// The GeoIP opener: arbitrary bytes as a MaxMind DB file, then a few
/// lookups when it opened.
pub fn geoip(data: &[u8], scratch: &Path) {
    if std::fs::write(scratch, data).is_err() {
        return;
    }
    if let Ok(db) = GeoDb::open(Some(scratch), None, Vec::new()) {
        for ip in [
            IpAddr::V4(Ipv4Addr::new(81, 2, 69, 1)),
            IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)),
            IpAddr::V4(Ipv4Addr::BROADCAST),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0x218, 0, 0, 0, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ] {
            let _ = db.locate(ip);
        }
    }
    if let Ok(db) = GeoDb::open(None, Some(scratch), Vec::new()) {
        let _ = db.locate(IpAddr::V4(Ipv4Addr::new(81, 2, 69, 1)));
    }
}
