//! The verdict exchange of one node: publishing its own verdicts as a
//! wire message, pulling every peer (and poking them), and taking a pulled
//! message in (records, key table, admin states).

use std::sync::Arc;

use tokio::time::Instant;
use tracing::{info, warn};

use super::runtime::Cluster;
use super::wire::{self, Message, Record};
use super::{lock, peer, unix_ms};
use crate::health::state::Verdict;

impl Cluster {
    /// This node's verdicts as a wire message; the key table is left out
    /// when the puller already holds `known_layout`.
    pub fn publish(&self, known_layout: Option<u64>) -> Vec<u8> {
        let snap = self.shared.current.load_full();
        let layout = self.layout_for(&snap);
        let now = std::time::Instant::now();
        let mut reasons = Vec::new();
        let records = self.health.with_all(|map| {
            snap.probes
                .iter()
                .enumerate()
                .map(|(i, t)| match map.get(&t.key) {
                    None => Record {
                        state: wire::UNKNOWN,
                        rtt_tenth_ms: 0,
                        age_ms: u32::MAX,
                    },
                    Some(h) => {
                        let state = match h.hysteresis.verdict {
                            Verdict::Unknown => wire::UNKNOWN,
                            Verdict::Up => wire::UP,
                            Verdict::Down => wire::DOWN,
                        };
                        if state == wire::DOWN
                            && let Some(r) = &h.reason
                        {
                            reasons.push((i as u32, r.clone()));
                        }
                        Record {
                            state,
                            rtt_tenth_ms: h
                                .rtt_ms
                                .map_or(0, |ms| (ms * 10.0).round().clamp(1.0, 65535.0) as u16),
                            age_ms: h.last_probe.map_or(u32::MAX, |t| {
                                now.saturating_duration_since(t.into_std())
                                    .as_millis()
                                    .min(u32::MAX as u128 - 1)
                                    as u32
                            }),
                        }
                    }
                })
                .collect()
        });
        let admin = lock(&self.admin).entries().cloned().collect();
        wire::encode(&Message {
            node: snap.cluster.node_name.clone(),
            generation: snap.generation,
            layout: layout.hash,
            now_ms: unix_ms(),
            keys: (known_layout != Some(layout.hash)).then(|| layout.keys.clone()),
            records,
            reasons,
            admin,
        })
    }

    /// Pull every peer once (concurrently, each with its deadline), then
    /// recompute.
    pub async fn pull_all(self: &Arc<Self>) {
        let snap = self.shared.current.load_full();
        let settings = &snap.cluster;
        let mut set = tokio::task::JoinSet::new();
        for p in &settings.peers {
            let known = lock(&self.peers).get(&p.name).and_then(|v| v.layout);
            let (peer, token, timeout) = (p.clone(), settings.token.clone(), settings.pull_timeout);
            set.spawn(async move {
                let r = peer::pull(&peer, token.as_deref(), known, timeout).await;
                (peer.name, r)
            });
        }
        let mut admin_changed = false;
        while let Some(done) = set.join_next().await {
            let Ok((name, result)) = done else { continue };
            admin_changed |= self.take_pull(&name, result);
        }
        if admin_changed {
            let _ = self.persist(&snap);
        }
        self.recompute(&snap);
    }

    /// Record one pull's result; true when it changed admin states.
    fn take_pull(&self, name: &str, result: Result<bytes::Bytes, String>) -> bool {
        let decoded = result.and_then(|b| {
            let n = b.len();
            wire::decode(&b).map(|m| (m, n)).map_err(|e| e.to_string())
        });
        let ok = decoded.is_ok();
        if let Some(m) = &self.metrics {
            m.pulls
                .with_label_values(&[name, if ok { "ok" } else { "error" }])
                .inc();
        }
        let mut peers = lock(&self.peers);
        let view = peers.entry(name.to_string()).or_default();
        match decoded {
            Err(e) => {
                if view.last_error.as_deref() != Some(&e) {
                    warn!(peer = name, "cluster: pulling verdicts failed: {e}");
                }
                view.last_error = Some(e);
                false
            }
            Ok((m, bytes)) => {
                if let Some(keys) = m.keys {
                    view.index = keys
                        .into_iter()
                        .enumerate()
                        .map(|(i, (k, h))| (k, (i, h)))
                        .collect();
                    view.layout = Some(m.layout);
                } else if view.layout != Some(m.layout) || view.index.len() != m.records.len() {
                    // Not the table we hold: ask for it next time.
                    view.layout = None;
                    view.last_error = Some("layout changed; key table requested".into());
                    return false;
                }
                if view.last_error.take().is_some() || view.last_ok.is_none() {
                    info!(
                        peer = name,
                        endpoints = m.records.len(),
                        "cluster: peer verdicts received"
                    );
                }
                view.records = m.records;
                view.reasons = m.reasons.into_iter().collect();
                view.generation = m.generation;
                view.last_ok = Some(Instant::now());
                view.last_ok_unix_ms = Some(unix_ms());
                view.last_bytes = bytes;
                if let Some(mx) = &self.metrics {
                    mx.pull_bytes.with_label_values(&[name]).set(bytes as i64);
                    mx.last_success
                        .with_label_values(&[name])
                        .set((unix_ms() / 1000) as f64);
                }
                drop(peers);
                let mut store = lock(&self.admin);
                let mut changed = false;
                for e in m.admin {
                    let (key, st) = (e.key.clone(), e.state);
                    if store.offer(e) {
                        info!(
                            peer = name,
                            key,
                            state = st.as_str(),
                            "admin state taken from peer"
                        );
                        changed = true;
                    }
                }
                changed
            }
        }
    }

    /// A peer asks us to pull now (it changed an admin state).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Ask every peer to pull us now, so an admin state change reaches
    /// them without waiting for their next round (best effort: their
    /// regular pulls carry it anyway).
    pub async fn poke_peers(&self) {
        let snap = self.shared.current.load_full();
        let mut set = tokio::task::JoinSet::new();
        for p in snap.cluster.peers.clone() {
            let (token, timeout) = (snap.cluster.token.clone(), snap.cluster.pull_timeout);
            set.spawn(async move {
                if let Err(e) = peer::poke(&p, token.as_deref(), timeout).await {
                    info!(peer = %p.name, "cluster: poke failed ({e}); the peer's next pull carries the change");
                }
            });
        }
        while set.join_next().await.is_some() {}
    }
}
