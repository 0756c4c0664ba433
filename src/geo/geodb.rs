//! The geo lookup service ([`GeoDb`]): opening the databases, `locate`,
//! and the partition the decision tries are built from.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ipnet::IpNet;

use super::db::{self, MmdbTable, Record};
use super::{
    AsnPartition, DbInfo, GeoError, GeoSpec, Location, LocationOverride, LocationSource, Partition,
    PrefixTrie, partition, tables,
};

/// The geo lookup service: location databases, optional ASN database,
/// overrides, and (built on first use, once per database set) the location
/// partition the decision tries are compiled from.
///
/// `Send + Sync`, immutable after opening; reloading means opening a new
/// `GeoDb` (or reusing this one when nothing changed) and swapping it in.
/// Databases are read into memory: writing to a database file cannot affect
/// a running server (it takes effect on the next reload).
pub struct GeoDb {
    pub(super) location: Vec<MmdbTable>,
    pub(super) asn: Option<MmdbTable>,
    /// Use the location database's `autonomous_system_number` fields when no
    /// ASN database is configured.
    pub(super) asn_from_location: bool,
    pub(super) overrides: PrefixTrie<Location>,
    pub(super) override_list: Vec<LocationOverride>,
    pub(super) overrides_have_asn: bool,
    /// The partition without the ASN dimension, built on first use.
    pub(super) partition: OnceLock<Arc<Partition>>,
    /// The partition with the AS numbers the maps ask about (sorted), built
    /// on first use, rebuilt when the set changes.
    pub(super) asn_partition: std::sync::Mutex<Option<AsnPartition>>,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("location", &self.location)
            .field("asn", &self.asn)
            .field("overrides", &self.overrides.len())
            .finish_non_exhaustive()
    }
}

impl GeoDb {
    /// Open the databases (read into memory, every record pre-decoded) and
    /// compile the overrides.
    ///
    /// Both the nested (GeoIP2/GeoLite2, DB-IP) and the flat
    /// (ip-location-db) schemas are understood, per record. When `asn_db`
    /// is `None` but the location database has `autonomous_system_number`
    /// fields, those are used.
    ///
    /// Overrides: missing `continent` and `coords` are derived from the
    /// country (like database records); a missing `country` is taken from
    /// `subdivision`; `asn: Some` overrides the ASN database too. IPv4-mapped
    /// IPv6 networks (`::ffff:a.b.c.d/n`, n ≥ 96) are treated as IPv4. When
    /// two overrides have the same network, the later one wins.
    ///
    /// Errors: [`GeoError::Open`] when a file cannot be read,
    /// [`GeoError::Invalid`] when it is not a valid MaxMind DB, or has data
    /// but none of the fields its role needs (location fields for
    /// `location_db`, `autonomous_system_number` for `asn_db`).
    pub fn open(
        location_db: Option<&Path>,
        asn_db: Option<&Path>,
        overrides: Vec<LocationOverride>,
    ) -> Result<GeoDb, GeoError> {
        Self::open_spec(
            &GeoSpec {
                location: location_db.into_iter().map(Path::to_owned).collect(),
                asn: asn_db.map(Path::to_owned),
                overrides,
                predecode: true,
            },
            None,
        )
        .map(|g| Arc::try_unwrap(g).unwrap_or_else(|_| unreachable!("not shared")))
    }

    /// Open what `spec` names. With `previous`: when it was opened from the
    /// same paths whose files still hold the same bytes, with the same
    /// overrides, it is returned as is (with its partitions and decision
    /// tries), so a reload that changes no geo input recompiles nothing.
    /// The files are read (and compared) in every case: a file rewritten
    /// with the same size and time is still seen.
    pub fn open_spec(
        spec: &GeoSpec,
        previous: Option<&Arc<GeoDb>>,
    ) -> Result<Arc<GeoDb>, GeoError> {
        let read = |p: &PathBuf| -> Result<db::Bytes, GeoError> {
            let meta = std::fs::metadata(p).map_err(|source| GeoError::Open {
                path: p.clone(),
                source,
            })?;
            if !meta.is_file() {
                return Err(GeoError::Invalid {
                    path: p.clone(),
                    msg: "not a regular file".into(),
                });
            }
            db::read_file(p).map_err(|source| GeoError::Open {
                path: p.clone(),
                source,
            })
        };
        if let Some(prev) = previous
            && prev.same_inputs(spec)
        {
            return Ok(prev.clone());
        }
        let loc_bytes: Vec<db::Bytes> = spec.location.iter().map(read).collect::<Result<_, _>>()?;
        let asn_bytes = spec.asn.as_ref().map(read).transpose()?;
        let location = spec
            .location
            .iter()
            .zip(loc_bytes)
            .map(|(p, b)| MmdbTable::from_bytes(p, b, spec.predecode))
            .collect::<Result<Vec<_>, _>>()?;
        let asn = match (&spec.asn, asn_bytes) {
            (Some(p), Some(b)) => Some(MmdbTable::from_bytes(p, b, spec.predecode)?),
            _ => None,
        };
        Self::from_tables(location, asn, spec.overrides.clone()).map(Arc::new)
    }

    /// Whether `spec` names what this `GeoDb` was opened from: same paths,
    /// files with the same bytes (same length and 128-bit SipHash, computed
    /// while reading in chunks, so an unchanged reload holds no second
    /// copy), same overrides.
    fn same_inputs(&self, spec: &GeoSpec) -> bool {
        let same = |t: &MmdbTable, p: &PathBuf| {
            t.path() == p
                && t.predecoded() == spec.predecode
                && db::same_content(p, t.digest()).unwrap_or(false)
        };
        self.location.len() == spec.location.len()
            && self.override_list.len() == spec.overrides.len()
            && self
                .override_list
                .iter()
                .zip(&spec.overrides)
                .all(|(a, b)| a.net == b.net && a.location == b.location)
            && match (&self.asn, &spec.asn) {
                (None, None) => true,
                (Some(t), Some(p)) => same(t, p),
                _ => false,
            }
            && self
                .location
                .iter()
                .zip(&spec.location)
                .all(|(t, p)| same(t, p))
    }

    fn from_tables(
        location: Vec<MmdbTable>,
        asn: Option<MmdbTable>,
        overrides: Vec<LocationOverride>,
    ) -> Result<GeoDb, GeoError> {
        if let Some(t) = location.get(partition::MAX_LOCATION_DBS) {
            return Err(GeoError::Invalid {
                path: t.path().to_owned(),
                msg: format!(
                    "at most {} location databases are supported",
                    partition::MAX_LOCATION_DBS
                ),
            });
        }
        // A database with data but none of the fields we need is almost
        // certainly the wrong file (say, the ASN database as `database`).
        for t in &location {
            if t.networks() > 0 && !t.has_location() {
                return Err(GeoError::Invalid {
                    path: t.path().to_owned(),
                    msg: format!(
                        "no record has a continent, country or coordinates \
                         (database_type {:?}); is this an ASN database?",
                        t.database_type()
                    ),
                });
            }
        }
        if let Some(t) = &asn
            && t.networks() > 0
            && !t.has_asn()
        {
            return Err(GeoError::Invalid {
                path: t.path().to_owned(),
                msg: format!(
                    "no record has an autonomous_system_number (database_type {:?})",
                    t.database_type()
                ),
            });
        }
        let asn_from_location = asn.is_none() && location.iter().any(MmdbTable::has_asn);
        let mut trie = PrefixTrie::new();
        let mut overrides_have_asn = false;
        for o in &overrides {
            let mut loc = o.location;
            if loc.country.is_none() {
                loc.country = loc.subdivision.map(|s| s.country);
            }
            if loc.continent.is_none() {
                loc.continent = loc.country.and_then(tables::continent_of);
            }
            if loc.coords.is_none() {
                loc.coords = loc.country.and_then(tables::centroid_of);
            }
            loc.source = LocationSource::Override;
            loc.scope = 0;
            loc.asn_scope = 0;
            overrides_have_asn |= loc.asn.is_some();
            trie.insert(unmap_net(o.net), loc);
        }
        Ok(GeoDb {
            location,
            asn,
            asn_from_location,
            overrides: trie,
            override_list: overrides,
            overrides_have_asn,
            partition: OnceLock::new(),
            asn_partition: std::sync::Mutex::new(None),
        })
    }

    /// The location partition, built on first use and kept for the life of
    /// this `GeoDb`.
    pub fn partition(&self) -> &Arc<Partition> {
        self.partition
            .get_or_init(|| Self::timed(|| partition::build(self, None)))
    }

    /// The partition with an AS number dimension: only the AS numbers in
    /// `asns` (sorted, what the maps' ASN rules name) are kept, others are
    /// "no ASN", so the ASN database splits the space only where a rule
    /// can tell the difference. Kept until asked for another set.
    pub fn asn_partition(&self, asns: &[u32]) -> Arc<Partition> {
        let mut slot = self.asn_partition.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((set, p)) = &*slot
            && **set == *asns
        {
            return p.clone();
        }
        let p = Self::timed(|| partition::build(self, Some(asns)));
        *slot = Some((asns.into(), p.clone()));
        p
    }

    fn timed(f: impl FnOnce() -> Partition) -> Arc<Partition> {
        let t = std::time::Instant::now();
        let p = Arc::new(f());
        tracing::info!(
            nodes = p.node_count(),
            locations = p.location_count(),
            ms = t.elapsed().as_millis() as u64,
            "built location partition"
        );
        p
    }

    /// The partitions built so far.
    pub fn built_partitions(&self) -> Vec<Arc<Partition>> {
        let mut v: Vec<Arc<Partition>> = self.partition.get().cloned().into_iter().collect();
        if let Some((_, p)) = &*self.asn_partition.lock().unwrap_or_else(|e| e.into_inner()) {
            v.push(p.clone());
        }
        v
    }

    /// Locate an address. Never fails: unknown addresses give a `Location`
    /// with `source == Unknown` and a scope that is still correct.
    ///
    /// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are located as IPv4;
    /// their scopes stay in IPv6 terms (96 + the IPv4 scope), so
    /// `ip/scope` is always a network of the queried family. No allocation,
    /// no locks.
    #[inline]
    pub fn locate(&self, ip: IpAddr) -> Location {
        let (ip, extra) = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), 96u8),
                None => (ip, 0),
            },
            IpAddr::V4(_) => (ip, 0),
        };
        let m = self.overrides.lookup(ip);
        let mut chain: Option<(Option<Record>, u8)> = None;
        let mut loc = match m.value {
            Some(o) => {
                let mut loc = *o;
                loc.scope = m.safe_scope;
                loc
            }
            None => {
                let mut loc = Location {
                    scope: m.safe_scope,
                    ..Location::default()
                };
                if !self.location.is_empty() {
                    let (rec, scope) = self.lookup_chain(ip);
                    chain = Some((rec, scope));
                    // The result is constant on ip/scope for the databases
                    // and on ip/safe_scope for the overrides; the
                    // intersection of two prefixes of one address is the
                    // longer one.
                    loc.scope = loc.scope.max(scope);
                    if let Some(r) = rec.filter(Record::has_location) {
                        apply_record(&mut loc, &r);
                    }
                }
                loc.asn = None;
                loc
            }
        };

        // ASN: an override with an ASN wins; else the ASN database (or the
        // location database's ASN fields).
        match m.value.and_then(|o| o.asn) {
            Some(asn) => {
                loc.asn = Some(asn);
                loc.asn_scope = m.safe_scope;
            }
            None => {
                let (asn, scope) = if let Some(table) = &self.asn {
                    let (rec, scope) = table.lookup(ip);
                    (rec.and_then(|r| r.asn), scope)
                } else if self.asn_from_location {
                    let (rec, scope) = chain.unwrap_or_else(|| self.lookup_chain(ip));
                    (rec.and_then(|r| r.asn), scope)
                } else {
                    (None, 0)
                };
                loc.asn = asn;
                loc.asn_scope = if self.overrides_have_asn {
                    scope.max(m.safe_scope)
                } else {
                    scope
                };
            }
        }
        loc.scope += extra;
        loc.asn_scope += extra;
        loc
    }

    /// The location databases in order: the first record with a location
    /// wins, else the first record at all (for its ASN fields); the scope
    /// covers every database consulted.
    #[inline]
    fn lookup_chain(&self, ip: IpAddr) -> (Option<Record>, u8) {
        let mut scope = 0u8;
        let mut first: Option<Record> = None;
        for t in &self.location {
            let (rec, s) = t.lookup(ip);
            scope = scope.max(s);
            if let Some(r) = rec {
                if r.has_location() {
                    return (Some(r), scope);
                }
                first.get_or_insert(r);
            }
        }
        (first, scope)
    }

    /// The first location database, if one is configured.
    pub fn location_db_info(&self) -> Option<DbInfo> {
        self.location.first().map(info)
    }

    /// Every location database, in lookup order.
    pub fn location_dbs_info(&self) -> Vec<DbInfo> {
        self.location.iter().map(info).collect()
    }

    /// The ASN database, if one is configured.
    pub fn asn_db_info(&self) -> Option<DbInfo> {
        self.asn.as_ref().map(info)
    }

    /// Number of overrides compiled.
    pub fn override_count(&self) -> usize {
        self.overrides.len()
    }

    /// Whether any address can have a subdivision: a location database
    /// record or an override has one.
    pub fn has_subdivisions(&self) -> bool {
        self.location.iter().any(MmdbTable::has_subdivision)
            || self
                .override_list
                .iter()
                .any(|o| o.location.subdivision.is_some())
    }

    /// Whether any address can have an AS number: an ASN database, ASN
    /// fields in a location database, or an override with an ASN.
    pub fn has_asns(&self) -> bool {
        self.asn.is_some()
            || self.asn_from_location
            || self.override_list.iter().any(|o| o.location.asn.is_some())
    }
}

pub(super) fn apply_record(loc: &mut Location, r: &Record) {
    loc.continent = r.continent;
    loc.country = r.country;
    loc.subdivision = r.subdivision;
    loc.coords = r.coords;
    loc.source = LocationSource::Database;
}

fn info(t: &MmdbTable) -> DbInfo {
    DbInfo {
        path: t.path().to_owned(),
        database_type: t.database_type().to_owned(),
        build_epoch: t.build_epoch(),
        networks: t.networks(),
        records: t.records(),
        has_asn: t.has_asn(),
    }
}

/// `::ffff:a.b.c.d/n` with n ≥ 96 as the IPv4 network `a.b.c.d/(n-96)`.
fn unmap_net(net: IpNet) -> IpNet {
    if let IpNet::V6(n) = net
        && n.prefix_len() >= 96
        && let Some(v4) = n.network().to_ipv4_mapped()
        && let Ok(v4net) = ipnet::Ipv4Net::new(v4, n.prefix_len() - 96)
    {
        return IpNet::V4(v4net);
    }
    net
}
