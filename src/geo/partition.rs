//! The location partition: all of IPv4 and IPv6 cut into prefixes over which
//! the location (continent, country, subdivision, coordinates and, in the
//! ASN variant, AS number) is the same, built once per set of databases.
//!
//! It is built by walking the MMDB search trees themselves, node by node,
//! together with the override trie (and the ASN database's tree): where
//! every input is a leaf the location is constant, and each distinct
//! location is interned once. Subtrees the trees share (the IPv4 space under
//! `::/96`, `::ffff:0:0/96` and `2002::/16`) are walked once: states that
//! involve a shared node are memoised. Sibling leaves with the same location
//! merge. Decision tries (`select::compiled`) are then a linear pass over
//! the nodes, mapping locations to pool lists, instead of a walk of the
//! database per balanced name.
//!
//! The result agrees with [`GeoDb::locate`] address by address (the same
//! precedence: overrides, then the first location database with a location
//! record; ASN from an override, the ASN database, or the location
//! database). IPv4-mapped IPv6 (`::ffff:0:0/96`) is the IPv4 partition, as
//! `locate` treats it.

use std::any::Any;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use super::db::{MmdbTable, Record, Slot};
use super::trie::CURSOR_NONE;
use super::{Continent, CountryCode, GeoDb, Location, LocationSource, Subdivision, apply_record};

/// Marks a leaf in a child slot; the low 31 bits are a location id.
pub const LEAF: u32 = 1 << 31;

/// Most location databases consulted in a chain.
pub const MAX_LOCATION_DBS: usize = 4;

/// Cache keys of projections start with this byte.
const PROJECTION: u8 = 0xff;

/// The location fields a projection keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fields {
    /// Continent and country.
    Country,
    /// Continent, country and subdivision.
    Subdivision,
    /// Coordinates.
    Coords,
}

fn loc_key(l: &Location) -> LocKey {
    (
        l.continent,
        l.country,
        l.subdivision,
        l.coords.map(|c| (c.lat.to_bits(), c.lon.to_bits())),
        l.asn,
    )
}

type CacheMap = HashMap<Box<[u8]>, Arc<dyn Any + Send + Sync>>;
type Cache = Mutex<CacheMap>;

/// The partition: a binary prefix tree whose leaves are location ids.
///
/// Nodes are stored children first: every node's children have smaller
/// indices, so a pass in index order sees children before parents.
pub struct Partition {
    nodes: Box<[[u32; 2]]>,
    v4_root: u32,
    v6_root: u32,
    locations: Box<[Location]>,
    /// Values derived from this partition (decision tries), by key; kept as
    /// long as the partition, so an unchanged database recompiles nothing.
    cache: Cache,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("nodes", &self.nodes.len())
            .field("locations", &self.locations.len())
            .finish_non_exhaustive()
    }
}

impl Partition {
    /// Inner nodes, children before parents; a child slot is `LEAF | id`
    /// or a node index.
    pub fn nodes(&self) -> &[[u32; 2]] {
        &self.nodes
    }

    /// Root slots of IPv4 and IPv6.
    pub fn roots(&self) -> (u32, u32) {
        (self.v4_root, self.v6_root)
    }

    /// Interned locations (scope fields 0, source `Unknown`), by id.
    pub fn locations(&self) -> &[Location] {
        &self.locations
    }

    /// Number of inner nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Number of distinct locations.
    pub fn location_count(&self) -> usize {
        self.locations.len()
    }

    /// Heap bytes of nodes and locations.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.nodes) + std::mem::size_of_val(&*self.locations)
    }

    /// The location id of `ip` and the depth of its leaf. IPv4-mapped IPv6
    /// addresses walk the IPv6 tree (whose `::ffff:0:0/96` is IPv4).
    pub fn lookup(&self, ip: IpAddr) -> (u32, u8) {
        let (mut cur, mut bits) = match ip {
            IpAddr::V4(a) => (self.v4_root, u128::from(u32::from(a)) << 96),
            IpAddr::V6(a) => (self.v6_root, u128::from(a)),
        };
        let mut depth = 0u8;
        while cur & LEAF == 0 {
            cur = self.nodes[cur as usize][(bits >> 127) as usize];
            bits <<= 1;
            depth += 1;
        }
        (cur & !LEAF, depth)
    }

    /// The value cached under `key`, or `make()` (cached when `Ok`).
    /// `make` runs without the lock held.
    pub fn cached<T: Any + Send + Sync, E>(
        &self,
        key: &[u8],
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        if let Some(v) = self.lock().get(key)
            && let Ok(t) = v.clone().downcast::<T>()
        {
            return Ok(t);
        }
        let v = Arc::new(make()?);
        self.lock().insert(key.into(), v.clone());
        Ok(v)
    }

    /// Whether a value is cached under `key`.
    pub fn is_cached(&self, key: &[u8]) -> bool {
        self.lock().contains_key(key)
    }

    /// Drop the projections and the cached values nothing else holds any
    /// more. Projections are only build inputs (the tries built from them
    /// are cached here, in the partition they were projected from): one is
    /// rebuilt if a later compile needs a new shape.
    pub fn prune_cache(&self) {
        self.lock()
            .retain(|k, v| k.first() != Some(&PROJECTION) && Arc::strong_count(v) > 1);
    }

    /// This partition with only `fields` of each location kept (the AS
    /// number stays when this partition has it), neighbours that became
    /// equal merged: a smaller partition for maps that read fewer fields.
    /// Built once and kept with this partition until [`Partition::prune_cache`].
    pub fn projected(&self, fields: Fields) -> Arc<Partition> {
        let key = [PROJECTION, fields as u8];
        let r: Result<_, std::convert::Infallible> = self.cached(&key, || Ok(self.project(fields)));
        match r {
            Ok(p) => p,
            Err(e) => match e {},
        }
    }

    fn project(&self, fields: Fields) -> Partition {
        let mut locs: Vec<Location> = Vec::new();
        let mut ids: FxHashMap<LocKey, u32> = FxHashMap::default();
        let map: Vec<u32> = self
            .locations
            .iter()
            .map(|l| {
                let mut p = Location {
                    asn: l.asn,
                    ..Location::default()
                };
                match fields {
                    Fields::Country => {
                        p.continent = l.continent;
                        p.country = l.country;
                    }
                    Fields::Subdivision => {
                        p.continent = l.continent;
                        p.country = l.country;
                        p.subdivision = l.subdivision;
                    }
                    Fields::Coords => p.coords = l.coords,
                }
                let next = locs.len() as u32;
                let id = *ids.entry(loc_key(&p)).or_insert(next);
                if id == next {
                    locs.push(p);
                }
                id
            })
            .collect();
        let mut nodes: Vec<[u32; 2]> = Vec::new();
        let mut out: Vec<u32> = Vec::with_capacity(self.nodes.len());
        let slot = |s: u32, out: &[u32]| {
            if s & LEAF != 0 {
                LEAF | map[(s & !LEAF) as usize]
            } else {
                out[s as usize]
            }
        };
        for &[l, r] in self.nodes.iter() {
            let (l, r) = (slot(l, &out), slot(r, &out));
            // No hash-consing: one pass, no hashing per node.
            let v = if l == r && l & LEAF != 0 {
                l
            } else {
                nodes.push([l, r]);
                nodes.len() as u32 - 1
            };
            out.push(v);
        }
        let v4_root = slot(self.v4_root, &out);
        let v6_root = slot(self.v6_root, &out);
        Partition {
            nodes: nodes.into_boxed_slice(),
            v4_root,
            v6_root,
            locations: locs.into_boxed_slice(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Number of cached values.
    pub fn cache_len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheMap> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One point of the walk: where each input is.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct State {
    loc: [Slot; MAX_LOCATION_DBS],
    asn: Slot,
    /// Override trie cursor (none once no override lies below).
    ov: u32,
    /// The most specific override matched so far (value index).
    best: u32,
    /// Whether the prefix is on the path to `::ffff:0:0/96` (IPv6 walk).
    ffff: bool,
}

type LocKey = (
    Option<Continent>,
    Option<CountryCode>,
    Option<Subdivision>,
    Option<(u32, u32)>,
    Option<u32>,
);

struct Walk<'a> {
    geo: &'a GeoDb,
    with_asn: bool,
    /// The AS numbers kept (sorted).
    asns: &'a [u32],
    nodes: Vec<[u32; 2]>,
    locs: Vec<Location>,
    ids: FxHashMap<LocKey, u32>,
    /// Memo of states that involve a node reachable by several paths.
    memo: FxHashMap<State, u32>,
    shared: Vec<Vec<bool>>,
    asn_shared: Vec<bool>,
    /// Memo for the common state "only the first location database matters".
    dense: Vec<u32>,
    v4_root: u32,
}

/// In-degree ≥ 2 (or an entry point) per node: the nodes whose subtrees
/// more than one path reaches.
fn shared_nodes(t: &MmdbTable) -> Vec<bool> {
    let n = t.node_count() as usize;
    let mut deg = vec![0u8; n];
    let mut bump = |s: Slot| {
        if let Slot::Node(c) = s
            && let Some(d) = deg.get_mut(c as usize)
        {
            *d = d.saturating_add(1);
        }
    };
    bump(t.root());
    bump(t.ipv4_start());
    for i in 0..n as u32 {
        bump(t.child(i, 0));
        bump(t.child(i, 1));
    }
    deg.into_iter().map(|d| d >= 2).collect()
}

/// Build the partition of `geo`; `asns` adds the AS number dimension for
/// those AS numbers (sorted; others count as none).
pub(crate) fn build(geo: &GeoDb, asns: Option<&[u32]>) -> Partition {
    let with_asn = asns.is_some();
    let asn_table = geo.asn.as_ref().filter(|_| with_asn);
    let mut w = Walk {
        geo,
        with_asn,
        asns: asns.unwrap_or_default(),
        nodes: Vec::new(),
        locs: Vec::new(),
        ids: FxHashMap::default(),
        memo: FxHashMap::default(),
        shared: geo.location.iter().map(shared_nodes).collect(),
        asn_shared: asn_table.map(shared_nodes).unwrap_or_default(),
        dense: geo
            .location
            .first()
            .map(|t| vec![u32::MAX; t.node_count() as usize])
            .unwrap_or_default(),
        v4_root: 0,
    };
    let root_state = |v6: bool| {
        let mut loc = [Slot::Empty; MAX_LOCATION_DBS];
        for (i, t) in geo.location.iter().take(MAX_LOCATION_DBS).enumerate() {
            loc[i] = match (v6, t.is_ipv6()) {
                (false, _) => t.ipv4_start(),
                (true, true) => t.root(),
                // An IPv4 database knows nothing about IPv6.
                (true, false) => Slot::Empty,
            };
        }
        let asn = match asn_table {
            None => Slot::Empty,
            Some(t) => match (v6, t.is_ipv6()) {
                (false, _) => t.ipv4_start(),
                (true, true) => t.root(),
                (true, false) => Slot::Empty,
            },
        };
        let root = geo.overrides.cursor_root(v6);
        let best = geo.overrides.cursor_value(root);
        let ov = if geo.overrides.cursor_has_children(root) {
            root
        } else {
            CURSOR_NONE
        };
        State {
            loc,
            asn,
            ov,
            best,
            ffff: v6,
        }
    };
    let v4 = w.go(root_state(false), 0, 32, 0);
    w.v4_root = v4;
    let v6 = w.go(root_state(true), 0, 128, 0);
    Partition {
        nodes: w.nodes.into_boxed_slice(),
        v4_root: v4,
        v6_root: v6,
        locations: w.locs.into_boxed_slice(),
        cache: Mutex::new(HashMap::new()),
    }
}

fn addr(bits: u128, width: u8) -> IpAddr {
    if width == 32 {
        IpAddr::V4(Ipv4Addr::from((bits >> 96) as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(bits))
    }
}

impl Walk<'_> {
    fn override_value(&self, st: &State) -> Option<&Location> {
        (st.best != CURSOR_NONE).then(|| self.geo.overrides.value_at(st.best))
    }

    /// Whether the location databases still matter here.
    fn loc_relevant(&self, st: &State) -> bool {
        match self.override_value(st) {
            None => true,
            // The override fixes the location; the databases only give
            // the ASN, when the ASN comes from them.
            Some(o) => self.with_asn && self.geo.asn_from_location && o.asn.is_none(),
        }
    }

    fn asn_relevant(&self, st: &State) -> bool {
        self.with_asn && self.override_value(st).is_none_or(|o| o.asn.is_none())
    }

    /// Whether the location chain's answer is decided at this prefix.
    fn chain_fixed(&self, st: &State, bits: u128, width: u8) -> bool {
        let n = self.geo.location.len().min(MAX_LOCATION_DBS);
        for i in 0..n {
            match st.loc[i] {
                Slot::Node(_) => return false,
                Slot::Empty => {}
                Slot::Data(off) => {
                    if i + 1 == n
                        || self.geo.location[i]
                            .record_at(off, addr(bits, width))
                            .has_location()
                    {
                        return true;
                    }
                }
            }
        }
        true
    }

    fn fixed(&self, st: &State, bits: u128, width: u8) -> bool {
        st.ov == CURSOR_NONE
            && !(self.asn_relevant(st) && matches!(st.asn, Slot::Node(_)))
            && (!self.loc_relevant(st) || self.chain_fixed(st, bits, width))
    }

    /// The chain's record: the first with a location, else the first.
    fn chain_record(&self, st: &State, at: IpAddr) -> Option<Record> {
        let mut first = None;
        for (i, t) in self.geo.location.iter().take(MAX_LOCATION_DBS).enumerate() {
            if let Slot::Data(off) = st.loc[i] {
                let r = t.record_at(off, at);
                if r.has_location() {
                    return Some(r);
                }
                first.get_or_insert(r);
            }
        }
        first
    }

    fn leaf(&mut self, st: &State, bits: u128, width: u8) -> u32 {
        let at = addr(bits, width);
        let ov = self.override_value(st).copied();
        let mut loc = Location::default();
        let mut chain = None;
        match ov {
            Some(o) => loc = o,
            None => {
                chain = self.chain_record(st, at);
                if let Some(r) = chain.filter(Record::has_location) {
                    apply_record(&mut loc, &r);
                }
            }
        }
        loc.asn = None;
        if self.with_asn {
            loc.asn = match ov.and_then(|o| o.asn) {
                Some(a) => Some(a),
                None => match (&self.geo.asn, st.asn) {
                    (Some(t), Slot::Data(off)) => t.record_at(off, at).asn,
                    (Some(_), _) => None,
                    (None, _) if self.geo.asn_from_location => {
                        if chain.is_none() && ov.is_some() {
                            chain = self.chain_record(st, at);
                        }
                        chain.and_then(|r| r.asn)
                    }
                    (None, _) => None,
                },
            }
            .filter(|a| self.asns.binary_search(a).is_ok());
        }
        loc.source = LocationSource::Unknown;
        loc.scope = 0;
        loc.asn_scope = 0;
        let key = loc_key(&loc);
        let next = self.locs.len() as u32;
        let id = *self.ids.entry(key).or_insert(next);
        if id == next {
            assert!(next < LEAF, "too many distinct locations");
            self.locs.push(loc);
        }
        LEAF | id
    }

    fn child(&self, st: &State, bit: usize, depth: u8) -> State {
        let mut c = *st;
        for (i, t) in self.geo.location.iter().take(MAX_LOCATION_DBS).enumerate() {
            if let Slot::Node(n) = c.loc[i] {
                c.loc[i] = t.child(n, bit);
            }
        }
        if let (Slot::Node(n), Some(t)) = (c.asn, &self.geo.asn) {
            c.asn = t.child(n, bit);
        }
        if c.ov != CURSOR_NONE {
            let o = &self.geo.overrides;
            let n = o.cursor_child(c.ov, bit);
            let v = o.cursor_value(n);
            if v != CURSOR_NONE {
                c.best = v;
            }
            c.ov = if o.cursor_has_children(n) {
                n
            } else {
                CURSOR_NONE
            };
        }
        // ::ffff:0:0/96 is 80 zero bits, then 16 one bits.
        c.ffff = st.ffff && bit == usize::from(depth >= 80);
        c
    }

    /// The dense memo index when only the first database's node matters.
    fn dense_key(&self, st: &State) -> Option<usize> {
        match st.loc[0] {
            Slot::Node(n)
                if st.ov == CURSOR_NONE
                    && st.best == CURSOR_NONE
                    && !st.ffff
                    && st.asn == Slot::Empty
                    && st.loc[1..].iter().all(|s| *s == Slot::Empty) =>
            {
                Some(n as usize)
            }
            _ => None,
        }
    }

    fn is_shared(&self, st: &State) -> bool {
        st.loc.iter().enumerate().any(|(i, s)| match s {
            Slot::Node(n) => self.shared[i].get(*n as usize).copied().unwrap_or(false),
            _ => false,
        }) || matches!(st.asn, Slot::Node(n) if self.asn_shared.get(n as usize).copied().unwrap_or(false))
    }

    /// The partition slot of the prefix `bits/depth` in state `st`.
    fn go(&mut self, st: State, depth: u8, width: u8, bits: u128) -> u32 {
        if st.ffff && depth == 96 {
            // IPv4-mapped IPv6 is located as IPv4.
            return self.v4_root;
        }
        // The path to ::ffff:0:0/96 is always walked (even where the IPv6
        // inputs are all leaves, as with an IPv4-only or IPv6-only file):
        // the IPv4 answers below it differ from their IPv6 neighbours'.
        if depth >= width || (!st.ffff && self.fixed(&st, bits, width)) {
            return self.leaf(&st, bits, width);
        }
        // Memoised subtrees are the same at whatever depth they are reached:
        // a well-formed tree ends IPv4 data within 32 levels of its start.
        let dense = self.dense_key(&st);
        if let Some(k) = dense {
            let v = self.dense[k];
            if v != u32::MAX {
                return v;
            }
        }
        let memo = dense.is_none() && self.is_shared(&st);
        if memo && let Some(&v) = self.memo.get(&st) {
            return v;
        }
        let l = self.go(self.child(&st, 0, depth), depth + 1, width, bits);
        let rbits = bits | (1u128 << (127 - u32::from(depth)));
        let r = self.go(self.child(&st, 1, depth), depth + 1, width, rbits);
        let out = if l == r && l & LEAF != 0 {
            l
        } else {
            let id = self.nodes.len() as u32;
            assert!(id < LEAF, "partition too large");
            self.nodes.push([l, r]);
            id
        };
        if let Some(k) = dense {
            self.dense[k] = out;
        } else if memo {
            self.memo.insert(st, out);
        }
        out
    }
}
