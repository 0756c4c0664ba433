//! The cluster as the API shows it (`GET /api/v1/cluster`).

use serde_json::{Value, json};

use super::quorum::{Admin, Basis, Outcome};
use super::runtime::Cluster;
use super::{lock, unix_ms};

impl Cluster {
    /// `GET /api/v1/cluster`: this node, its peers and their freshness,
    /// admin states and every endpoint not answered as plainly up.
    pub fn status_json(&self) -> Value {
        let snap = self.shared.current.load_full();
        let now = unix_ms();
        let peers = lock(&self.peers);
        let peer_list: Vec<Value> = snap
            .cluster
            .peers
            .iter()
            .map(|p| {
                let v = peers.get(&p.name);
                let last_ok = v.and_then(|v| v.last_ok);
                json!({
                    "name": p.name,
                    "url": p.url,
                    "fresh": last_ok.is_some_and(|t| t.elapsed() <= snap.cluster.stale_after),
                    "last_ok_at": v.and_then(|v| v.last_ok_unix_ms).map(|t| t / 1000),
                    "last_ok_age_ms": last_ok.map(|t| t.elapsed().as_millis() as u64),
                    "last_error": v.and_then(|v| v.last_error.clone()),
                    "bytes": v.map_or(0, |v| v.last_bytes),
                    "endpoints": v.map_or(0, |v| v.records.len()),
                    "generation": v.map_or(0, |v| v.generation),
                })
            })
            .collect();
        drop(peers);
        let admin: Vec<Value> = lock(&self.admin)
            .entries()
            .filter(|e| e.state != Admin::Auto)
            .map(|e| {
                let (pool, endpoint) = e.key.split_once('/').unwrap_or((&e.key, ""));
                json!({"pool": pool, "endpoint": endpoint, "state": e.state.as_str(),
                       "at": e.at_ms / 1000, "origin": e.origin})
            })
            .collect();
        let layout = self.layout_for(&snap);
        let last = lock(&self.last);
        let by_id: &[Option<Outcome>] = if last.generation == snap.generation {
            &last.by_id
        } else {
            &[]
        };
        let mut endpoints: Vec<Value> = by_id
            .iter()
            .enumerate()
            .filter_map(|(id, o)| Some((layout.key_of.get(id)?, (*o)?)))
            .filter(|(_, o)| !o.up || o.drained || o.basis != Basis::Local)
            .map(|(k, o)| {
                let (pool, endpoint) = k.split_once('/').unwrap_or((k, ""));
                json!({"pool": pool, "endpoint": endpoint, "up": o.up, "drained": o.drained,
                       "basis": o.basis.as_str(), "down_votes": o.down, "voters": o.voters})
            })
            .collect();
        endpoints.sort_by_key(|v| {
            (
                v["up"].as_bool(),
                v["pool"].to_string(),
                v["endpoint"].to_string(),
            )
        });
        json!({
            "node": snap.cluster.node_name,
            "now": now / 1000,
            "isolated": self.isolated.load(std::sync::atomic::Ordering::Relaxed),
            "pull_interval_ms": snap.cluster.pull_interval.as_millis() as u64,
            "stale_after_ms": snap.cluster.stale_after.as_millis() as u64,
            "peers": peer_list,
            "admin": admin,
            "endpoints": endpoints,
        })
    }
}
