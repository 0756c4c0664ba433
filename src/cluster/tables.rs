//! The cluster's lookup tables: the per-snapshot [`Layout`] (probe keys,
//! fingerprints, probe index and key by endpoint id), what is known of each
//! peer ([`PeerView`], with its record index mapped onto our layout), the
//! last combined state of every endpoint, and a round's view of the peers.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::endpoint_key;
use super::quorum::Outcome;
use super::wire::{self, Record};
use crate::snapshot::Snapshot;

/// Per-snapshot tables, built once per generation.
pub(super) struct Layout {
    pub(super) generation: u64,
    /// `(key, monitor fingerprint)` of every probe target, in probe order.
    pub(super) keys: Vec<(String, u64)>,
    pub(super) hash: u64,
    /// Probe index by endpoint id.
    pub(super) probe_of: Vec<Option<usize>>,
    /// `pool/endpoint` by endpoint id.
    pub(super) key_of: Vec<String>,
}

impl Layout {
    pub(super) fn build(snap: &Snapshot) -> Layout {
        let n = snap.health.len();
        let mut key_of = vec![String::new(); n];
        for p in &snap.pools {
            for e in p.endpoints.iter() {
                if let Some(k) = key_of.get_mut(e.id as usize) {
                    *k = endpoint_key(&p.name, &e.label);
                }
            }
        }
        let mut probe_of = vec![None; n];
        let keys: Vec<(String, u64)> = snap
            .probes
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if let Some(slot) = probe_of.get_mut(t.endpoint as usize) {
                    *slot = Some(i);
                }
                (
                    key_of.get(t.endpoint as usize).cloned().unwrap_or_default(),
                    t.monitor_hash,
                )
            })
            .collect();
        let hash = wire::layout_hash(keys.iter().map(|(k, h)| (k.as_str(), *h)));
        Layout {
            generation: snap.generation,
            keys,
            hash,
            probe_of,
            key_of,
        }
    }
}

/// What is known of one peer.
#[derive(Default)]
pub(super) struct PeerView {
    pub(super) last_ok: Option<Instant>,
    pub(super) last_ok_unix_ms: Option<u64>,
    pub(super) last_error: Option<String>,
    pub(super) last_bytes: usize,
    pub(super) layout: Option<u64>,
    pub(super) generation: u64,
    /// Record index by endpoint key, with the monitor fingerprint.
    pub(super) index: HashMap<String, (usize, u64)>,
    pub(super) records: Vec<Record>,
    pub(super) reasons: HashMap<u32, String>,
    /// For (our layout, its layout): its record index of each of our
    /// probes ([`NO_RECORD`], [`MISMATCH`]), so a round indexes arrays
    /// instead of hashing keys.
    pub(super) mapped: Option<(u64, u64, Vec<u32>)>,
}

pub(super) const NO_RECORD: u32 = u32::MAX;
pub(super) const MISMATCH: u32 = u32::MAX - 1;

impl PeerView {
    pub(super) fn map_for(&mut self, layout: &Layout) {
        let theirs = self.layout.unwrap_or(0);
        if matches!(&self.mapped, Some((o, t, _)) if *o == layout.hash && *t == theirs) {
            return;
        }
        let map = layout
            .keys
            .iter()
            .map(|(k, h)| match self.index.get(k) {
                None => NO_RECORD,
                Some(&(_, mh)) if mh != *h => MISMATCH,
                Some(&(i, _)) => i as u32,
            })
            .collect();
        self.mapped = Some((layout.hash, theirs, map));
    }
}

/// The combined state of every endpoint of the serving generation, by
/// endpoint id.
#[derive(Default)]
pub(super) struct LastOutcomes {
    pub(super) generation: u64,
    pub(super) by_id: Vec<Option<Outcome>>,
}

impl LastOutcomes {
    /// The table of `snap`, emptied when the generation changed.
    pub(super) fn for_snapshot(&mut self, snap: &Snapshot) -> &mut Vec<Option<Outcome>> {
        if self.generation != snap.generation || self.by_id.len() != snap.health.len() {
            self.generation = snap.generation;
            self.by_id = vec![None; snap.health.len()];
        }
        &mut self.by_id
    }
}

/// One peer as a round sees it.
pub(super) struct PeerCtx<'a> {
    pub(super) fresh: bool,
    pub(super) since: Duration,
    pub(super) map: &'a [u32],
    pub(super) records: &'a [Record],
}

pub(super) fn peer_ctx<'a>(
    snap: &Snapshot,
    layout: &Layout,
    peers: &'a mut HashMap<String, PeerView>,
) -> Vec<PeerCtx<'a>> {
    for p in &snap.cluster.peers {
        if let Some(v) = peers.get_mut(&p.name) {
            v.map_for(layout);
        }
    }
    let peers: &'a HashMap<String, PeerView> = peers;
    snap.cluster
        .peers
        .iter()
        .map(|p| match peers.get(&p.name) {
            Some(v) => {
                let since = v.last_ok.map(|t| t.elapsed());
                PeerCtx {
                    fresh: since.is_some_and(|s| s <= snap.cluster.stale_after),
                    since: since.unwrap_or(Duration::MAX),
                    map: v.mapped.as_ref().map_or(&[][..], |(_, _, m)| m.as_slice()),
                    records: &v.records,
                }
            }
            None => PeerCtx {
                fresh: false,
                since: Duration::MAX,
                map: &[],
                records: &[],
            },
        })
        .collect()
}
