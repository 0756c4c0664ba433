//! Reading MaxMind DB files: the pre-decoded record table used by the hot
//! path, and file digests for reload; schema-tolerant record decoding is in
//! [`decode`].

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use maxminddb::{MaxMindDbError, Reader, WithinOptions};

mod decode;

use super::{Continent, Coords, CountryCode, GeoError, Subdivision};
use decode::RawRecord;

/// The fields steerdns uses from one database record, already resolved
/// (continent and coordinates derived from the country when missing).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Record {
    pub continent: Option<Continent>,
    pub country: Option<CountryCode>,
    pub subdivision: Option<Subdivision>,
    pub coords: Option<Coords>,
    pub asn: Option<u32>,
}

impl Record {
    /// Whether the record carries any location field.
    pub fn has_location(&self) -> bool {
        self.continent.is_some() || self.country.is_some() || self.coords.is_some()
    }
}

/// A database file's bytes, shared by the reader and the tree walk.
#[derive(Clone)]
pub(crate) struct Bytes(pub Arc<Vec<u8>>);

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Read a whole file (one read into one buffer, no copy afterwards).
pub(crate) fn read_file(path: &Path) -> std::io::Result<Bytes> {
    std::fs::read(path).map(|v| Bytes(Arc::new(v)))
}

/// A file's length and 128-bit SipHash: what tells an unchanged database
/// file from a changed one once its bytes are no longer all kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Digest {
    len: u64,
    hash: u128,
}

fn hasher() -> siphasher::sip128::SipHasher13 {
    // Fixed keys: the digest only has to tell files apart, across reloads.
    siphasher::sip128::SipHasher13::new_with_keys(0x7374_6565_7264_6e73, 0x6765_6f69_702d_6462)
}

/// The digest of `bytes`.
pub(crate) fn digest(bytes: &[u8]) -> Digest {
    use siphasher::sip128::Hasher128;
    use std::hash::Hasher as _;
    let mut h = hasher();
    h.write(bytes);
    Digest {
        len: bytes.len() as u64,
        hash: h.finish128().as_u128(),
    }
}

/// Whether the file at `path` has digest `d` (read in chunks, so an
/// unchanged reload holds no second copy).
pub(crate) fn same_content(path: &Path, d: Digest) -> std::io::Result<bool> {
    use siphasher::sip128::Hasher128;
    use std::hash::Hasher as _;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    if f.metadata()?.len() != d.len {
        return Ok(false);
    }
    let mut h = hasher();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
        len += n as u64;
    }
    Ok(len == d.len && h.finish128().as_u128() == d.hash)
}

/// One slot of the search tree: an inner node, no data, or a record at an
/// offset of the data section (the offset `LookupResult::offset` reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// Inner node number.
    Node(u32),
    /// No data below.
    Empty,
    /// A record at this data-section offset.
    Data(u32),
}

/// A database read into memory (never memory-mapped: a write to the file
/// cannot reach a running server), with its records pre-decoded.
///
/// Once every record is decoded, only the search tree is kept (the data
/// section is dropped with the reader: lookups walk the tree themselves
/// and find the record by its offset), and the file's digest, to tell
/// whether it changed.
pub(crate) struct MmdbTable {
    path: PathBuf,
    /// The search tree; the whole file while `reader` is kept.
    bytes: Bytes,
    /// The reader, for records not pre-decoded (`None` once all are).
    reader: Option<Reader<Bytes>>,
    digest: Digest,
    database_type: String,
    build_epoch: u64,
    ip_version: u16,
    records: Vec<Record>,
    index: HashMap<u32, u32, BuildHasherDefault<OffsetHasher>>,
    networks: usize,
    has_asn: bool,
    has_location: bool,
    has_subdivision: bool,
    predecoded: bool,
    node_count: u32,
    record_size: u16,
    data_len: usize,
    ipv4_start: Slot,
}

impl fmt::Debug for MmdbTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmdbTable")
            .field("path", &self.path)
            .field("database_type", &self.database_type)
            .field("networks", &self.networks)
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
}

fn invalid(path: &Path, e: impl fmt::Display) -> GeoError {
    GeoError::Invalid {
        path: path.to_owned(),
        msg: e.to_string(),
    }
}

impl MmdbTable {
    /// The table for database bytes already read from `path`.
    pub fn from_bytes(path: &Path, bytes: Bytes, predecode: bool) -> Result<MmdbTable, GeoError> {
        let reader = Reader::from_source(bytes.clone()).map_err(|e| invalid(path, e))?;
        let digest = digest(&bytes.0);
        let node_count = reader.metadata().node_count;
        let record_size = reader.metadata().record_size;
        let database_type = reader.metadata().database_type.clone();
        let build_epoch = reader.metadata().build_epoch;
        let ip_version = reader.metadata().ip_version;
        if !matches!(record_size, 24 | 28 | 32) {
            return Err(invalid(
                path,
                format!("unsupported record_size {record_size}"),
            ));
        }
        let tree_bytes = node_count as usize * usize::from(record_size) / 4;
        let data_len = bytes.0.len().saturating_sub(tree_bytes + 16);
        let mut table = MmdbTable {
            path: path.to_owned(),
            bytes,
            reader: Some(reader),
            digest,
            database_type,
            build_epoch,
            ip_version,
            records: Vec::new(),
            index: HashMap::default(),
            networks: 0,
            has_asn: true,
            has_location: true,
            has_subdivision: true,
            predecoded: false,
            node_count,
            record_size,
            data_len,
            ipv4_start: Slot::Empty,
        };
        if table.bytes.0.len() < tree_bytes + 16 {
            return Err(invalid(path, "search tree larger than the file"));
        }
        table.ipv4_start = if ip_version == 6 {
            let mut s = table.root();
            for _ in 0..96 {
                match s {
                    Slot::Node(n) => s = table.child(n, 0),
                    _ => break,
                }
            }
            s
        } else {
            table.root()
        };
        if predecode {
            table.predecode()?;
            // Every record is decoded: keep only the search tree.
            table.reader = None;
            if let Some(v) = Arc::get_mut(&mut table.bytes.0) {
                v.truncate(tree_bytes);
                v.shrink_to_fit();
            }
            tracing::debug!(
                path = %table.path.display(),
                bytes = table.memory_bytes(),
                records = table.records.len(),
                "database kept in memory"
            );
        }
        Ok(table)
    }

    fn predecode(&mut self) -> Result<(), GeoError> {
        let path = self.path.clone();
        let path = path.as_path();
        let Some(reader) = &self.reader else {
            return Ok(());
        };
        let mut records = Vec::new();
        let mut index: HashMap<u32, u32, BuildHasherDefault<OffsetHasher>> = HashMap::default();
        let mut networks = 0usize;
        let iter = reader
            .networks(WithinOptions::default())
            .map_err(|e| invalid(path, e))?;
        for item in iter {
            let res = item.map_err(|e| invalid(path, e))?;
            let Some(offset) = res.offset() else {
                continue;
            };
            let offset =
                u32::try_from(offset).map_err(|_| invalid(path, "data section too large"))?;
            networks += 1;
            if index.contains_key(&offset) {
                continue;
            }
            let rec = match res.decode::<RawRecord>() {
                Ok(Some(raw)) => raw.resolve(),
                Ok(None) => Record::default(),
                // A record of an unexpected shape: no usable fields.
                Err(MaxMindDbError::Decoding { .. }) => Record::default(),
                Err(e) => return Err(invalid(path, e)),
            };
            let id = u32::try_from(records.len())
                .map_err(|_| invalid(path, "too many distinct records"))?;
            records.push(rec);
            index.insert(offset, id);
        }
        self.has_asn = records.iter().any(|r| r.asn.is_some());
        self.has_location = records.iter().any(Record::has_location);
        self.has_subdivision = records.iter().any(|r| r.subdivision.is_some());
        records.shrink_to_fit();
        index.shrink_to_fit();
        self.records = records;
        self.index = index;
        self.networks = networks;
        self.predecoded = true;
        Ok(())
    }

    /// The file's digest (to tell whether a file on disk is still the same).
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Heap bytes kept: the tree (or file) and the decoded records.
    pub fn memory_bytes(&self) -> usize {
        self.bytes.0.capacity()
            + self.records.capacity() * std::mem::size_of::<Record>()
            + self.index.capacity() * (std::mem::size_of::<(u32, u32)>() + 1)
    }

    /// The root slot of the search tree.
    pub fn root(&self) -> Slot {
        self.slot(0)
    }

    /// Where IPv4 addresses start (the node after 96 zero bits in an IPv6
    /// tree, the root in an IPv4 one).
    pub fn ipv4_start(&self) -> Slot {
        self.ipv4_start
    }

    /// Whether the tree is an IPv6 tree.
    pub fn is_ipv6(&self) -> bool {
        self.ip_version == 6
    }

    /// Number of inner nodes.
    pub fn node_count(&self) -> u32 {
        self.node_count
    }

    fn slot(&self, v: u32) -> Slot {
        if v < self.node_count {
            Slot::Node(v)
        } else if v == self.node_count {
            Slot::Empty
        } else {
            let off = (v - self.node_count).checked_sub(16);
            match off {
                Some(o) if (o as usize) < self.data_len => Slot::Data(o),
                // A pointer outside the data section: a lookup would fail.
                _ => Slot::Empty,
            }
        }
    }

    /// Child `bit` (0 left, 1 right) of inner node `n`.
    #[inline]
    pub fn child(&self, n: u32, bit: usize) -> Slot {
        let b = &self.bytes.0[..];
        let v = match self.record_size {
            24 => {
                let o = n as usize * 6 + bit * 3;
                u32::from_be_bytes([0, b[o], b[o + 1], b[o + 2]])
            }
            28 => {
                let o = n as usize * 7;
                if bit == 0 {
                    (u32::from(b[o + 3] & 0xF0) << 20)
                        | u32::from_be_bytes([0, b[o], b[o + 1], b[o + 2]])
                } else {
                    (u32::from(b[o + 3] & 0x0F) << 24)
                        | u32::from_be_bytes([0, b[o + 4], b[o + 5], b[o + 6]])
                }
            }
            _ => {
                let o = n as usize * 8 + bit * 4;
                u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
            }
        };
        self.slot(v)
    }

    /// The record at data offset `offset`, reached by the address `at`
    /// (used to decode it when it was not pre-decoded).
    pub fn record_at(&self, offset: u32, at: IpAddr) -> Record {
        if let Some(&id) = self.index.get(&offset) {
            return self.records[id as usize];
        }
        let Some(reader) = &self.reader else {
            // Every reachable record was decoded at open.
            return Record::default();
        };
        match reader.lookup(at) {
            Ok(res) if res.offset() == Some(offset as usize) => res
                .decode::<RawRecord>()
                .ok()
                .flatten()
                .map(RawRecord::resolve)
                .unwrap_or_default(),
            _ => Record::default(),
        }
    }

    /// Whether any record has a subdivision (true when not pre-decoded).
    pub fn has_subdivision(&self) -> bool {
        self.has_subdivision
    }

    /// Whether every record was decoded at open.
    pub fn predecoded(&self) -> bool {
        self.predecoded
    }

    /// The file this table was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Metadata `database_type`.
    pub fn database_type(&self) -> &str {
        &self.database_type
    }

    /// Metadata `build_epoch`.
    pub fn build_epoch(&self) -> u64 {
        self.build_epoch
    }

    /// Number of networks with data.
    pub fn networks(&self) -> usize {
        self.networks
    }

    /// Number of distinct records.
    pub fn records(&self) -> usize {
        self.records.len()
    }

    /// Whether any record has an ASN.
    pub fn has_asn(&self) -> bool {
        self.has_asn
    }

    /// Whether any record has a continent, country or coordinates.
    pub fn has_location(&self) -> bool {
        self.has_location
    }

    /// Look `ip` up: the record (if the address is in a network with data)
    /// and the prefix length, in the family of `ip`, of the database network
    /// (or empty region) containing it. A walk of the search tree (IPv4 from
    /// the node after `::/96` in an IPv6 tree; scope 0 when the whole IPv4
    /// space is one leaf above it). No allocation.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> (Option<Record>, u8) {
        let (mut slot, bits, full) = match ip {
            IpAddr::V4(a) => (self.ipv4_start, u128::from(u32::from(a)) << 96, 32u8),
            // An IPv4-only database knows nothing about all of IPv6.
            IpAddr::V6(_) if !self.is_ipv6() => return (None, 0),
            IpAddr::V6(a) => (self.root(), u128::from(a), 128u8),
        };
        let mut depth = 0u8;
        while let Slot::Node(n) = slot {
            if depth >= full {
                // A malformed tree deeper than the address.
                return (None, full);
            }
            slot = self.child(n, ((bits >> (127 - u32::from(depth))) & 1) as usize);
            depth += 1;
        }
        match slot {
            Slot::Data(off) => (Some(self.record_at(off, ip)), depth),
            _ => (None, depth),
        }
    }
}

/// Hasher for data-section offsets (already well spread integers).
#[derive(Default)]
pub(crate) struct OffsetHasher(u64);

impl Hasher for OffsetHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        let h = (u64::from(n) ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }
}
