//! Zone data in the form the answer engine reads: names as lower-case wire
//! bytes, record data pre-encoded, lookups by hash of the wire name.
//!
//! Built once per config by the snapshot compiler; read-only afterwards.

use rustc_hash::FxHashMap;

use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

/// Index of a balanced name in the snapshot.
pub type BalancerId = u32;

/// A name as lower-case, uncompressed wire bytes (with the final zero).
pub type WireName = Box<[u8]>;

/// RR type numbers used by the engine.
pub mod rtype {
    /// A
    pub const A: u16 = 1;
    /// NS
    pub const NS: u16 = 2;
    /// CNAME
    pub const CNAME: u16 = 5;
    /// SOA
    pub const SOA: u16 = 6;
    /// PTR
    pub const PTR: u16 = 12;
    /// MX
    pub const MX: u16 = 15;
    /// TXT
    pub const TXT: u16 = 16;
    /// AAAA
    pub const AAAA: u16 = 28;
    /// SRV
    pub const SRV: u16 = 33;
    /// OPT
    pub const OPT: u16 = 41;
    /// DS
    pub const DS: u16 = 43;
    /// IXFR
    pub const IXFR: u16 = 251;
    /// AXFR
    pub const AXFR: u16 = 252;
    /// MAILB
    pub const MAILB: u16 = 253;
    /// MAILA
    pub const MAILA: u16 = 254;
    /// ANY
    pub const ANY: u16 = 255;
    /// CAA
    pub const CAA: u16 = 257;
}

/// Encode a hickory name as lower-case uncompressed wire bytes.
pub fn wire_name(name: &Name) -> WireName {
    let mut buf = Vec::with_capacity(64);
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_name_encoding(NameEncoding::UncompressedLowercase);
    // Encoding a valid Name into a Vec cannot fail.
    let _ = name.emit(&mut enc);
    buf.into_boxed_slice()
}

/// Encode record data without name compression (so it can be copied into any
/// message as is).
pub fn encode_rdata(rdata: &RData) -> Result<Box<[u8]>, String> {
    let mut buf = Vec::with_capacity(64);
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_name_encoding(NameEncoding::Uncompressed);
    rdata.emit(&mut enc).map_err(|e| e.to_string())?;
    Ok(buf.into_boxed_slice())
}

/// Presentation form of a wire name (`www.example.com.`), for logs and explain.
pub fn display_name(wire: &[u8]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < wire.len() {
        let len = wire[i] as usize;
        if len == 0 {
            break;
        }
        for &b in wire.get(i + 1..i + 1 + len).unwrap_or(&[]) {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                s.push(b as char);
            } else {
                s.push_str(&format!("\\{b:03}"));
            }
        }
        s.push('.');
        i += 1 + len;
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

/// Byte offsets of each label start in a wire name; the last entry is the
/// root (the final zero byte).
pub fn label_offsets(wire: &[u8], out: &mut [u8; 128]) -> usize {
    let mut n = 0;
    let mut i = 0usize;
    while i < wire.len() && n < out.len() {
        out[n] = i as u8;
        n += 1;
        let len = wire[i] as usize;
        if len == 0 {
            break;
        }
        i += 1 + len;
    }
    n
}

/// A set of records of one type at one name.
#[derive(Debug, Clone)]
pub struct RrSet {
    /// The type.
    pub rtype: u16,
    /// TTL of every record.
    pub ttl: u32,
    /// Encoded record data, one entry per record.
    pub rdata: Vec<Box<[u8]>>,
    /// Target name of a CNAME (lower-case wire), for following chains.
    pub target: Option<WireName>,
}

/// Additional-section data for an NS set: the addresses of name servers
/// that live inside the zone.
#[derive(Debug, Clone, Default)]
pub struct Glue {
    /// Owner name of each glue set and the A/AAAA sets at it.
    pub sets: Vec<(WireName, RrSet)>,
}

/// Everything at one owner name.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// Static record sets, one per type.
    pub rrsets: Vec<RrSet>,
    /// A balanced name at this node answers A/AAAA (and CNAME for host name
    /// endpoints) by steering.
    pub balancer: Option<BalancerId>,
    /// This node is a zone cut (NS below the apex): queries at or below it
    /// get a referral.
    pub delegation: bool,
    /// Glue for this node's NS set (apex or delegation).
    pub glue: Glue,
}

impl Node {
    /// The record set of type `t`, if any.
    pub fn rrset(&self, t: u16) -> Option<&RrSet> {
        self.rrsets.iter().find(|s| s.rtype == t)
    }

    /// True when nothing is at this node (an empty non-terminal).
    pub fn is_empty(&self) -> bool {
        self.rrsets.is_empty() && self.balancer.is_none()
    }
}

/// One authoritative zone.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Index in the snapshot's zone table.
    pub index: u32,
    /// Apex name, lower-case wire.
    pub apex: WireName,
    /// Apex in presentation form, for metrics labels and logs.
    pub display: String,
    /// The SOA set (one record).
    pub soa: RrSet,
    /// TTL for negative answers: min(SOA TTL, SOA MINIMUM) per RFC 2308.
    pub negative_ttl: u32,
    /// Every name in the zone, including empty non-terminals, keyed by
    /// lower-case wire name.
    ///
    /// Keys are configured names and lookups never insert, so a fast
    /// non-keyed hash is safe here (no collision flooding from queries).
    pub nodes: FxHashMap<WireName, Node>,
}

/// All zones, found by the longest suffix of the query name.
#[derive(Debug, Default)]
pub struct ZoneTable {
    /// Zone index by apex wire name.
    pub by_apex: FxHashMap<WireName, u32>,
    /// The zones.
    pub zones: Vec<Zone>,
}

impl ZoneTable {
    /// The zone with the longest apex that is a suffix of `qname_lc`
    /// (lower-case wire), and the label index where its apex starts.
    pub fn find(&self, qname_lc: &[u8], offsets: &[u8]) -> Option<(&Zone, usize)> {
        for (li, &off) in offsets.iter().enumerate() {
            if let Some(&zi) = self.by_apex.get(&qname_lc[off as usize..]) {
                return Some((&self.zones[zi as usize], li));
            }
        }
        None
    }
}

/// Record type from its mnemonic, restricted to what static records support.
pub fn static_record_type(s: &str) -> Option<RecordType> {
    let t = match s.to_ascii_uppercase().as_str() {
        "A" => RecordType::A,
        "AAAA" => RecordType::AAAA,
        "CNAME" => RecordType::CNAME,
        "MX" => RecordType::MX,
        "TXT" => RecordType::TXT,
        "SRV" => RecordType::SRV,
        "CAA" => RecordType::CAA,
        "NS" => RecordType::NS,
        "PTR" => RecordType::PTR,
        _ => return None,
    };
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn wire_name_is_lowercase_and_uncompressed() {
        let n = Name::from_str("WwW.Example.COM.").unwrap();
        assert_eq!(&*wire_name(&n), b"\x03www\x07example\x03com\x00");
        assert_eq!(display_name(&wire_name(&n)), "www.example.com.");
    }

    #[test]
    fn rdata_names_are_not_compressed() {
        let target = Name::from_str("a.example.com.").unwrap();
        let rd = RData::CNAME(hickory_proto::rr::rdata::CNAME(target));
        assert_eq!(&*encode_rdata(&rd).unwrap(), b"\x01a\x07example\x03com\x00");
    }

    #[test]
    fn label_offsets_include_root() {
        let mut o = [0u8; 128];
        let n = label_offsets(b"\x03www\x02lb\x00", &mut o);
        assert_eq!(&o[..n], &[0, 4, 7]);
    }
}
