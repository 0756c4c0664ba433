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

mod encode;

use encode::encode;

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

#[cfg(test)]
pub(crate) mod synthetic;
#[cfg(test)]
mod tests;
