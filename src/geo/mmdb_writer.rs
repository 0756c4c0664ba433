//! A small MaxMind DB (MMDB format 2.0) writer.
//!
//! Builds the binary search tree (IPv6 tree with IPv4 at `::/96`, optionally
//! with the conventional `::ffff:0:0/96` and `2002::/16` aliases, or an
//! IPv4-only tree), the data section (maps, UTF-8 strings, doubles, floats,
//! unsigned integers, int32, booleans, arrays; identical records are stored
//! once) and the metadata. The record size (24, 28 or 32 bits) is the
//! smallest that fits. Output is deterministic: the same inserts and
//! `build_epoch` give the same bytes.
//!
//! Inserting a network sets every address in it, replacing whatever earlier
//! inserts put there (later inserts win). Adjacent networks with identical
//! data are merged, as MaxMind's own writer does, so a reader may report a
//! larger network than was inserted.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::path::Path;

use ipnet::IpNet;

/// A value of the MMDB data section.
#[derive(Clone, Debug, PartialEq)]
pub enum MmdbValue {
    /// A map; keys are written in this order.
    Map(Vec<(String, MmdbValue)>),
    /// A UTF-8 string.
    String(String),
    /// A 64-bit float.
    Double(f64),
    /// A 32-bit float.
    Float(f32),
    /// An unsigned 16-bit integer.
    Uint16(u16),
    /// An unsigned 32-bit integer.
    Uint32(u32),
    /// An unsigned 64-bit integer.
    Uint64(u64),
    /// A signed 32-bit integer.
    Int32(i32),
    /// A boolean.
    Bool(bool),
    /// An array.
    Array(Vec<MmdbValue>),
}

impl MmdbValue {
    /// Convenience: a map from `(key, value)` pairs.
    pub fn map<K: Into<String>>(pairs: impl IntoIterator<Item = (K, MmdbValue)>) -> MmdbValue {
        MmdbValue::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Convenience: a string.
    pub fn string(s: impl Into<String>) -> MmdbValue {
        MmdbValue::String(s.into())
    }
}

/// Which search tree to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    /// IPv4-only tree (`ip_version` 4); IPv6 inserts are rejected.
    V4,
    /// IPv6 tree (`ip_version` 6); IPv4 networks live at `::/96`.
    V6,
}

/// Errors building or writing a database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MmdbWriteError {
    /// An IPv6 network was inserted into an IPv4-only tree.
    #[error("cannot insert IPv6 network {0} into an IPv4-only database")]
    Ipv6InIpv4Tree(IpNet),
    /// A value cannot be encoded (too large).
    #[error("value too large to encode: {0}")]
    TooLarge(String),
    /// The tree or data section does not fit in 32-bit records.
    #[error("database too large for 32-bit records")]
    TreeTooLarge,
    /// Writing the output file failed.
    #[error("{}: cannot write MaxMind DB: {source}", .path.display())]
    Io {
        /// The output file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A node of the in-memory build tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BNode {
    /// No data for this whole subtree.
    Empty,
    /// Record index into `MmdbWriter::records`.
    Data(u32),
    /// Two children (indices into `MmdbWriter::nodes`).
    Inner([u32; 2]),
}

/// Builder for a MaxMind DB file.
#[derive(Debug)]
pub struct MmdbWriter {
    ip_version: IpVersion,
    database_type: String,
    description: Vec<(String, String)>,
    languages: Vec<String>,
    build_epoch: u64,
    ipv4_aliases: bool,
    nodes: Vec<BNode>,
    /// Encoded records, index = record id.
    records: Vec<Vec<u8>>,
    record_ids: HashMap<Vec<u8>, u32>,
}

const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";

impl MmdbWriter {
    /// A new, empty database of the given type (`database_type` in the
    /// metadata, e.g. `"GeoLite2-City"`). `build_epoch` defaults to 0 and
    /// IPv4 aliases are off.
    pub fn new(database_type: &str, ip_version: IpVersion) -> MmdbWriter {
        MmdbWriter {
            ip_version,
            database_type: database_type.to_owned(),
            description: Vec::new(),
            languages: Vec::new(),
            build_epoch: 0,
            ipv4_aliases: false,
            nodes: vec![BNode::Empty],
            records: Vec::new(),
            record_ids: HashMap::new(),
        }
    }

    /// Add a description in `language` (metadata `description` map).
    pub fn description(&mut self, language: &str, text: &str) -> &mut Self {
        self.description
            .push((language.to_owned(), text.to_owned()));
        self
    }

    /// Add a language to the metadata `languages` list.
    pub fn language(&mut self, language: &str) -> &mut Self {
        self.languages.push(language.to_owned());
        self
    }

    /// Set the metadata `build_epoch` (seconds since 1970).
    pub fn build_epoch(&mut self, epoch: u64) -> &mut Self {
        self.build_epoch = epoch;
        self
    }

    /// In an IPv6 tree, make `::ffff:0:0/96` (IPv4-mapped) and `2002::/16`
    /// (6to4) point to the IPv4 subtree, as MaxMind databases do.
    pub fn ipv4_aliases(&mut self, on: bool) -> &mut Self {
        self.ipv4_aliases = on;
        self
    }

    /// Set every address of `net` to `value`.
    pub fn insert(&mut self, net: IpNet, value: &MmdbValue) -> Result<(), MmdbWriteError> {
        let mut buf = Vec::new();
        encode(value, &mut buf)?;
        let next_id =
            u32::try_from(self.records.len()).map_err(|_| MmdbWriteError::TreeTooLarge)?;
        let id = *self.record_ids.entry(buf.clone()).or_insert_with(|| {
            self.records.push(buf);
            next_id
        });
        let (bits, len) = self.tree_bits(net)?;
        self.set(bits, len, BNode::Data(id));
        Ok(())
    }

    /// The network as (top-aligned 128 bits, prefix length) in tree terms.
    fn tree_bits(&self, net: IpNet) -> Result<(u128, u8), MmdbWriteError> {
        match (self.ip_version, net) {
            (IpVersion::V4, IpNet::V4(n)) => {
                Ok((u128::from(u32::from(n.network())) << 96, n.prefix_len()))
            }
            (IpVersion::V4, IpNet::V6(_)) => Err(MmdbWriteError::Ipv6InIpv4Tree(net)),
            (IpVersion::V6, IpNet::V4(n)) => {
                Ok((u128::from(u32::from(n.network())), n.prefix_len() + 96))
            }
            (IpVersion::V6, IpNet::V6(n)) => Ok((u128::from(n.network()), n.prefix_len())),
        }
    }

    fn push(&mut self, n: BNode) -> u32 {
        self.nodes.push(n);
        (self.nodes.len() - 1) as u32
    }

    /// Walk to depth `len` along `bits`, splitting leaves, and put `leaf`
    /// there (dropping whatever subtree was there).
    fn set(&mut self, bits: u128, len: u8, leaf: BNode) {
        let mut node = 0u32;
        for depth in 0..len {
            let bit = ((bits >> (127 - u32::from(depth))) & 1) as usize;
            node = match self.nodes[node as usize] {
                BNode::Inner(ch) => ch[bit],
                old => {
                    let l = self.push(old);
                    let r = self.push(old);
                    self.nodes[node as usize] = BNode::Inner([l, r]);
                    [l, r][bit]
                }
            };
        }
        self.nodes[node as usize] = leaf;
    }

    /// Serialize the database.
    pub fn to_bytes(&self) -> Result<Vec<u8>, MmdbWriteError> {
        let mut nodes = self.nodes.clone();
        compact(&mut nodes, 0);
        if self.ip_version == IpVersion::V6 && self.ipv4_aliases {
            add_aliases(&mut nodes);
        }

        // Number the inner nodes in depth-first pre-order (root = 0, left
        // subtree before right), so the nodes of one lookup path sit close
        // together in the file; shared (aliased) subtrees get one number.
        let mut number: Vec<u32> = vec![u32::MAX; nodes.len()];
        let mut order: Vec<u32> = Vec::new();
        let mut stack: Vec<u32> = vec![0];
        while let Some(n) = stack.pop() {
            if number[n as usize] != u32::MAX {
                continue;
            }
            if let BNode::Inner([l, r]) = nodes[n as usize] {
                number[n as usize] = order.len() as u32;
                order.push(n);
                stack.push(r);
                stack.push(l);
            }
        }

        // Data section: records in id order.
        let mut data = Vec::new();
        let mut offsets = Vec::with_capacity(self.records.len());
        for r in &self.records {
            offsets.push(data.len() as u64);
            data.extend_from_slice(r);
        }

        // A tree with a leaf root still needs one node (MMDB requires
        // node_count > 0): a root whose two records are that leaf.
        let leaf_root = order.is_empty();
        let node_count = if leaf_root { 1u64 } else { order.len() as u64 };
        let record_value = |n: BNode| -> u64 {
            match n {
                BNode::Empty => node_count,
                BNode::Data(id) => node_count + 16 + offsets[id as usize],
                BNode::Inner(_) => 0, // replaced below
            }
        };
        let max_value = node_count + 16 + data.len() as u64;
        let record_size: u32 = if max_value < (1 << 24) {
            24
        } else if max_value < (1 << 28) {
            28
        } else if max_value < (1 << 32) {
            32
        } else {
            return Err(MmdbWriteError::TreeTooLarge);
        };

        let mut out = Vec::with_capacity(node_count as usize * record_size as usize / 4);
        let mut write_node = |l: u64, r: u64| match record_size {
            24 => {
                out.extend_from_slice(&(l as u32).to_be_bytes()[1..]);
                out.extend_from_slice(&(r as u32).to_be_bytes()[1..]);
            }
            28 => {
                out.extend_from_slice(&(l as u32).to_be_bytes()[1..]);
                out.push(((((l >> 24) & 0x0f) << 4) | ((r >> 24) & 0x0f)) as u8);
                out.extend_from_slice(&(r as u32).to_be_bytes()[1..]);
            }
            _ => {
                out.extend_from_slice(&(l as u32).to_be_bytes());
                out.extend_from_slice(&(r as u32).to_be_bytes());
            }
        };
        if leaf_root {
            let v = record_value(nodes[0]);
            write_node(v, v);
        } else {
            for &n in &order {
                if let BNode::Inner(ch) = nodes[n as usize] {
                    let v = ch.map(|c| match nodes[c as usize] {
                        BNode::Inner(_) => u64::from(number[c as usize]),
                        leaf => record_value(leaf),
                    });
                    write_node(v[0], v[1]);
                }
            }
        }
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&data);
        out.extend_from_slice(METADATA_MARKER);

        let metadata = MmdbValue::map([
            ("binary_format_major_version", MmdbValue::Uint16(2)),
            ("binary_format_minor_version", MmdbValue::Uint16(0)),
            ("build_epoch", MmdbValue::Uint64(self.build_epoch)),
            ("database_type", MmdbValue::string(&self.database_type)),
            (
                "description",
                MmdbValue::Map(
                    self.description
                        .iter()
                        .map(|(k, v)| (k.clone(), MmdbValue::string(v)))
                        .collect(),
                ),
            ),
            (
                "ip_version",
                MmdbValue::Uint16(match self.ip_version {
                    IpVersion::V4 => 4,
                    IpVersion::V6 => 6,
                }),
            ),
            (
                "languages",
                MmdbValue::Array(self.languages.iter().map(MmdbValue::string).collect()),
            ),
            ("node_count", MmdbValue::Uint32(node_count as u32)),
            ("record_size", MmdbValue::Uint16(record_size as u16)),
        ]);
        encode(&metadata, &mut out)?;
        Ok(out)
    }

    /// Serialize and write to `path` (via a temporary file and a rename, so
    /// a server memory-mapping the old file never sees a partial one).
    pub fn write_to(&self, path: &Path) -> Result<(), MmdbWriteError> {
        let bytes = self.to_bytes()?;
        let io = |source| MmdbWriteError::Io {
            path: path.to_owned(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Merge sibling leaves with identical contents, bottom up.
fn compact(nodes: &mut [BNode], node: u32) -> BNode {
    if let BNode::Inner([l, r]) = nodes[node as usize] {
        let a = compact(nodes, l);
        let b = compact(nodes, r);
        if a == b && !matches!(a, BNode::Inner(_)) {
            nodes[node as usize] = a;
        }
    }
    nodes[node as usize]
}

/// Point `::ffff:0:0/96` and `2002::/16` at the node of `::/96`.
fn add_aliases(nodes: &mut Vec<BNode>) {
    // Find the IPv4 subtree: the node at depth 96 along zeros (or the leaf
    // covering it).
    let mut node = 0u32;
    for _ in 0..96 {
        match nodes[node as usize] {
            BNode::Inner(ch) => node = ch[0],
            _ => break,
        }
    }
    // A leaf target is copied (walking the alias paths may split the very
    // node that holds it); an inner target at depth 96 is shared.
    let target_leaf = match nodes[node as usize] {
        BNode::Inner(_) => None,
        leaf => Some(leaf),
    };
    let target = node;
    let mapped = u128::from(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0));
    let sixtofour = u128::from(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0));
    for (bits, len) in [(mapped, 96u32), (sixtofour, 16)] {
        // Walk to the parent of the alias node, splitting leaves.
        let mut node = 0u32;
        for depth in 0..len - 1 {
            let bit = ((bits >> (127 - depth)) & 1) as usize;
            node = match nodes[node as usize] {
                BNode::Inner(ch) => ch[bit],
                old => {
                    nodes.push(old);
                    nodes.push(old);
                    let l = (nodes.len() - 2) as u32;
                    let r = (nodes.len() - 1) as u32;
                    nodes[node as usize] = BNode::Inner([l, r]);
                    [l, r][bit]
                }
            };
        }
        let bit = ((bits >> (127 - (len - 1))) & 1) as usize;
        let parent = node as usize;
        let target = match target_leaf {
            Some(leaf) => {
                nodes.push(leaf);
                (nodes.len() - 1) as u32
            }
            None => target,
        };
        match nodes[parent] {
            BNode::Inner(mut ch) => {
                ch[bit] = target;
                nodes[parent] = BNode::Inner(ch);
            }
            old => {
                nodes.push(old);
                let other = (nodes.len() - 1) as u32;
                let mut ch = [other, other];
                ch[bit] = target;
                nodes[parent] = BNode::Inner(ch);
            }
        }
    }
}

/// Write a control byte (and extended type byte and size bytes).
fn control(type_num: u8, size: usize, out: &mut Vec<u8>) -> Result<(), MmdbWriteError> {
    let (size_bits, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 29 + 256 {
        (29, vec![(size - 29) as u8])
    } else if size < 285 + 65536 {
        (30, ((size - 285) as u16).to_be_bytes().to_vec())
    } else if size < 65821 + (1 << 24) {
        (31, ((size - 65821) as u32).to_be_bytes()[1..].to_vec())
    } else {
        return Err(MmdbWriteError::TooLarge(format!("size {size}")));
    };
    if type_num <= 7 {
        out.push((type_num << 5) | size_bits);
    } else {
        out.push(size_bits);
        out.push(type_num - 7);
    }
    out.extend_from_slice(&extra);
    Ok(())
}

fn encode_uint(type_num: u8, v: u64, out: &mut Vec<u8>) -> Result<(), MmdbWriteError> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    control(type_num, 8 - skip, out)?;
    out.extend_from_slice(&bytes[skip..]);
    Ok(())
}

/// Encode a value of the data section (no pointers).
fn encode(v: &MmdbValue, out: &mut Vec<u8>) -> Result<(), MmdbWriteError> {
    match v {
        MmdbValue::String(s) => {
            control(2, s.len(), out)?;
            out.extend_from_slice(s.as_bytes());
        }
        MmdbValue::Double(d) => {
            control(3, 8, out)?;
            out.extend_from_slice(&d.to_be_bytes());
        }
        MmdbValue::Uint16(n) => encode_uint(5, u64::from(*n), out)?,
        MmdbValue::Uint32(n) => encode_uint(6, u64::from(*n), out)?,
        MmdbValue::Map(pairs) => {
            control(7, pairs.len(), out)?;
            for (k, v) in pairs {
                control(2, k.len(), out)?;
                out.extend_from_slice(k.as_bytes());
                encode(v, out)?;
            }
        }
        MmdbValue::Int32(n) => {
            if *n >= 0 {
                encode_uint(8, *n as u64, out)?;
            } else {
                control(8, 4, out)?;
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        MmdbValue::Uint64(n) => encode_uint(9, *n, out)?,
        MmdbValue::Array(items) => {
            control(11, items.len(), out)?;
            for item in items {
                encode(item, out)?;
            }
        }
        MmdbValue::Bool(b) => control(14, usize::from(*b), out)?,
        MmdbValue::Float(f) => {
            control(15, 4, out)?;
            out.extend_from_slice(&f.to_be_bytes());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Country<'a> {
        iso_code: &'a str,
    }
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Loc {
        latitude: f64,
        longitude: f64,
    }
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Nested<'a> {
        #[serde(borrow)]
        country: Country<'a>,
        location: Option<Loc>,
        #[serde(borrow, default)]
        subdivisions: Vec<Country<'a>>,
    }
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Flat<'a> {
        country_code: &'a str,
        latitude: Option<f32>,
        longitude: Option<f32>,
    }

    fn nested(cc: &str, lat: f64, lon: f64) -> MmdbValue {
        MmdbValue::map([
            (
                "country",
                MmdbValue::map([("iso_code", MmdbValue::string(cc))]),
            ),
            (
                "location",
                MmdbValue::map([
                    ("latitude", MmdbValue::Double(lat)),
                    ("longitude", MmdbValue::Double(lon)),
                ]),
            ),
            (
                "subdivisions",
                MmdbValue::Array(vec![MmdbValue::map([("iso_code", MmdbValue::string("X"))])]),
            ),
        ])
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn reader(w: &MmdbWriter) -> maxminddb::Reader<Vec<u8>> {
        let r = maxminddb::Reader::from_source(w.to_bytes().unwrap()).unwrap();
        r.verify().unwrap();
        r
    }

    #[test]
    fn nested_v6_tree_round_trip() {
        let mut w = MmdbWriter::new("Test-City", IpVersion::V6);
        w.description("en", "test")
            .language("en")
            .build_epoch(1_700_000_000);
        w.insert(net("81.2.69.0/24"), &nested("GB", 51.5, -0.1))
            .unwrap();
        w.insert(net("2001:218::/32"), &nested("JP", 35.7, 139.7))
            .unwrap();
        let r = reader(&w);
        let m = r.metadata();
        assert_eq!(m.ip_version, 6);
        assert_eq!(m.database_type, "Test-City");
        assert_eq!(m.build_epoch, 1_700_000_000);
        assert_eq!(m.record_size, 24);
        assert_eq!(m.languages, vec!["en".to_string()]);
        assert_eq!(
            m.description,
            BTreeMap::from([("en".to_string(), "test".to_string())])
        );

        let res = r.lookup(ip("81.2.69.142")).unwrap();
        let rec: Nested = res.decode().unwrap().unwrap();
        assert_eq!(rec.country.iso_code, "GB");
        assert_eq!(rec.subdivisions[0].iso_code, "X");
        assert_eq!(
            rec.location,
            Some(Loc {
                latitude: 51.5,
                longitude: -0.1
            })
        );
        assert_eq!(res.network().unwrap().to_string(), "81.2.69.0/24");

        let res = r.lookup(ip("2001:218:1::1")).unwrap();
        let rec: Nested = res.decode().unwrap().unwrap();
        assert_eq!(rec.country.iso_code, "JP");
        assert_eq!(res.network().unwrap().prefix(), 32);

        // Outside: not found, and the network is the empty region.
        let res = r.lookup(ip("81.2.70.1")).unwrap();
        assert!(!res.has_data());
        let n = res.network().unwrap();
        assert!(n.contains(ip("81.2.70.1")) && !n.contains(ip("81.2.69.1")));
        assert_eq!(n.prefix(), 23);
        assert!(!r.lookup(ip("2001:219::1")).unwrap().has_data());
        // Without aliases, ::ffff:81.2.69.142 is not the IPv4 address.
        assert!(!r.lookup(ip("::ffff:81.2.69.142")).unwrap().has_data());
    }

    #[test]
    fn aliases_point_to_ipv4() {
        let mut w = MmdbWriter::new("Test", IpVersion::V6);
        w.description("en", "t").ipv4_aliases(true);
        w.insert(net("81.2.69.0/24"), &nested("GB", 51.5, -0.1))
            .unwrap();
        let r = reader(&w);
        let rec: Nested = r
            .lookup(ip("::ffff:81.2.69.142"))
            .unwrap()
            .decode()
            .unwrap()
            .unwrap();
        assert_eq!(rec.country.iso_code, "GB");
        // 2002:5102:4500::/40 is 6to4 for 81.2.69.0/24.
        let rec: Nested = r
            .lookup(ip("2002:5102:4501::1"))
            .unwrap()
            .decode()
            .unwrap()
            .unwrap();
        assert_eq!(rec.country.iso_code, "GB");
        // Iteration skips the aliases: one network only.
        let n = r
            .networks(Default::default())
            .unwrap()
            .filter_map(Result::ok)
            .count();
        assert_eq!(n, 1);

        // Aliases of an empty IPv4 space (leaf subtree) must not loop.
        for v6_only in [false, true] {
            let mut w = MmdbWriter::new("Test", IpVersion::V6);
            w.description("en", "t").ipv4_aliases(true);
            if v6_only {
                w.insert(net("2001:db8::/32"), &MmdbValue::Uint16(1))
                    .unwrap();
            }
            let r = reader(&w);
            assert!(!r.lookup(ip("::ffff:1.2.3.4")).unwrap().has_data());
            assert!(!r.lookup(ip("1.2.3.4")).unwrap().has_data());
            assert_eq!(r.lookup(ip("2001:db8::1")).unwrap().has_data(), v6_only);
        }
    }

    #[test]
    fn flat_v4_tree_round_trip() {
        let mut w = MmdbWriter::new("ip-location-db", IpVersion::V4);
        w.description("en", "flat");
        let flat = MmdbValue::map([
            ("country_code", MmdbValue::string("SE")),
            ("latitude", MmdbValue::Float(58.41)),
            ("longitude", MmdbValue::Float(15.62)),
        ]);
        w.insert(net("89.160.20.0/24"), &flat).unwrap();
        w.insert(net("89.160.20.128/25"), &flat).unwrap();
        assert!(matches!(
            w.insert(net("2001:db8::/32"), &flat),
            Err(MmdbWriteError::Ipv6InIpv4Tree(_))
        ));
        let r = reader(&w);
        assert_eq!(r.metadata().ip_version, 4);
        let res = r.lookup(ip("89.160.20.200")).unwrap();
        let rec: Flat = res.decode().unwrap().unwrap();
        assert_eq!(rec.country_code, "SE");
        assert_eq!(rec.latitude, Some(58.41));
        // The /25 holds the same record as the /24: merged.
        assert_eq!(res.network().unwrap().to_string(), "89.160.20.0/24");
        assert!(!r.lookup(ip("89.160.21.1")).unwrap().has_data());
        assert!(r.lookup(ip("2001:db8::1")).is_err());
    }

    #[test]
    fn later_inserts_win_and_split() {
        let mut w = MmdbWriter::new("T", IpVersion::V6);
        w.description("en", "t");
        w.insert(net("10.0.0.0/8"), &MmdbValue::Uint32(1)).unwrap();
        w.insert(net("10.1.0.0/16"), &MmdbValue::Uint32(2)).unwrap();
        w.insert(net("::/0"), &MmdbValue::Uint32(0)).unwrap();
        w.insert(net("2001:db8::/32"), &MmdbValue::Uint32(3))
            .unwrap();
        let r = reader(&w);
        let get = |s: &str| -> u32 { r.lookup(ip(s)).unwrap().decode().unwrap().unwrap() };
        // ::/0 was inserted after the IPv4 networks and replaced them.
        assert_eq!(get("10.1.2.3"), 0);
        assert_eq!(get("2001:db8::1"), 3);
        assert_eq!(get("2001:db9::1"), 0);

        let mut w = MmdbWriter::new("T", IpVersion::V4);
        w.description("en", "t");
        w.insert(net("10.0.0.0/8"), &MmdbValue::Uint32(1)).unwrap();
        w.insert(net("10.1.0.0/16"), &MmdbValue::Uint32(2)).unwrap();
        let r = reader(&w);
        let get = |s: &str| r.lookup(ip(s)).unwrap();
        let a: u32 = get("10.1.2.3").decode().unwrap().unwrap();
        let b: u32 = get("10.2.0.0").decode().unwrap().unwrap();
        assert_eq!((a, b), (2, 1));
        assert_eq!(get("10.1.2.3").network().unwrap().prefix(), 16);
        assert_eq!(get("10.2.0.0").network().unwrap().prefix(), 15);
        assert_eq!(get("10.128.0.0").network().unwrap().prefix(), 9);
    }

    #[test]
    fn empty_and_leaf_root_databases() {
        let mut w = MmdbWriter::new("T", IpVersion::V4);
        w.description("en", "t");
        let r = reader(&w);
        assert_eq!(r.metadata().node_count, 1);
        assert!(!r.lookup(ip("1.2.3.4")).unwrap().has_data());
        w.insert(net("0.0.0.0/0"), &MmdbValue::Bool(true)).unwrap();
        let r = reader(&w);
        let v: bool = r.lookup(ip("1.2.3.4")).unwrap().decode().unwrap().unwrap();
        assert!(v);
    }

    #[test]
    fn all_value_types_round_trip() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct All {
            s: String,
            long: String,
            d: f64,
            f: f32,
            u16: u16,
            u32: u32,
            u64: u64,
            i: i32,
            neg: i32,
            t: bool,
            f0: bool,
            arr: Vec<u32>,
            big: Vec<u16>,
        }
        let long = "x".repeat(70_000);
        let v = MmdbValue::map([
            ("s", MmdbValue::string("héllo")),
            ("long", MmdbValue::string(long.clone())),
            ("d", MmdbValue::Double(-1.25)),
            ("f", MmdbValue::Float(2.5)),
            ("u16", MmdbValue::Uint16(65535)),
            ("u32", MmdbValue::Uint32(0)),
            ("u64", MmdbValue::Uint64(u64::MAX)),
            ("i", MmdbValue::Int32(300)),
            ("neg", MmdbValue::Int32(-5)),
            ("t", MmdbValue::Bool(true)),
            ("f0", MmdbValue::Bool(false)),
            (
                "arr",
                MmdbValue::Array(vec![MmdbValue::Uint32(1), MmdbValue::Uint32(70_000)]),
            ),
            (
                "big",
                MmdbValue::Array((0..300).map(MmdbValue::Uint16).collect()),
            ),
        ]);
        let mut w = MmdbWriter::new("T", IpVersion::V4);
        w.description("en", "t");
        w.insert(net("1.0.0.0/8"), &v).unwrap();
        let r = reader(&w);
        let got: All = r.lookup(ip("1.1.1.1")).unwrap().decode().unwrap().unwrap();
        assert_eq!(got.s, "héllo");
        assert_eq!(got.long, long);
        assert_eq!((got.d, got.f), (-1.25, 2.5));
        assert_eq!((got.u16, got.u32, got.u64), (65535, 0, u64::MAX));
        assert_eq!((got.i, got.neg), (300, -5));
        assert!(got.t && !got.f0);
        assert_eq!(got.arr, vec![1, 70_000]);
        assert_eq!(got.big.len(), 300);
        assert_eq!(got.big[299], 299);
    }

    #[test]
    fn record_size_grows_and_output_is_deterministic() {
        // > 2^24 total record values needs 28-bit records: make the data
        // section larger than 16 MiB with distinct big records.
        let mut w = MmdbWriter::new("T", IpVersion::V4);
        w.description("en", "t");
        let big = "y".repeat(1 << 20);
        for i in 0..17u32 {
            let v = MmdbValue::map([
                ("i", MmdbValue::Uint32(i)),
                ("pad", MmdbValue::string(big.clone())),
            ]);
            w.insert(
                IpNet::new(IpAddr::from([10, i as u8, 0, 0]), 16).unwrap(),
                &v,
            )
            .unwrap();
        }
        let bytes = w.to_bytes().unwrap();
        assert_eq!(bytes, w.to_bytes().unwrap());
        let r = maxminddb::Reader::from_source(bytes).unwrap();
        assert_eq!(r.metadata().record_size, 28);
        #[derive(serde::Deserialize)]
        struct I {
            i: u32,
        }
        let got: I = r
            .lookup(ip("10.16.1.1"))
            .unwrap()
            .decode()
            .unwrap()
            .unwrap();
        assert_eq!(got.i, 16);
    }

    #[test]
    fn write_to_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.mmdb");
        let mut w = MmdbWriter::new("T", IpVersion::V4);
        w.description("en", "t");
        w.insert(net("1.2.3.0/24"), &MmdbValue::Uint16(7)).unwrap();
        w.write_to(&path).unwrap();
        let r = maxminddb::Reader::open_readfile(&path).unwrap();
        let v: u16 = r.lookup(ip("1.2.3.4")).unwrap().decode().unwrap().unwrap();
        assert_eq!(v, 7);
        let err = w.write_to(&dir.path().join("no/such/dir/x.mmdb"));
        assert!(err.unwrap_err().to_string().contains("no/such/dir"));
    }
}
