//! Query parsing straight from the wire: the header, the one question, and
//! the OPT record (EDNS0, Client Subnet, NSID). No allocation.
//!
//! Anything the engine does not need (answer/authority records in a query,
//! TSIG) is skipped with bounds checks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::zone::rtype;

/// EDNS option code of Client Subnet (RFC 7871).
pub(crate) const OPT_ECS: u16 = 8;
/// EDNS option code of NSID (RFC 5001).
pub(crate) const OPT_NSID: u16 = 3;
/// EDNS option code of COOKIE (RFC 7873).
pub(crate) const OPT_COOKIE: u16 = 10;

/// The COOKIE option of a query: a client cookie, and a server cookie when
/// the client has learnt one (8 to 32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cookie {
    pub(crate) client: [u8; 8],
    /// Server cookie bytes (the first `server_len`).
    pub(crate) server: [u8; 32],
    /// Length of the server cookie (0: none sent).
    pub(crate) server_len: u8,
}

impl Cookie {
    /// The server cookie as sent (empty when none).
    pub(crate) fn server(&self) -> &[u8] {
        &self.server[..self.server_len as usize]
    }
}

/// The EDNS Client Subnet option of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ecs {
    /// 1 = IPv4, 2 = IPv6.
    pub(crate) family: u16,
    /// Source prefix length as sent.
    pub(crate) source_prefix: u8,
    /// The address, bits past the source prefix zero.
    pub(crate) addr: IpAddr,
}

/// EDNS0 data of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Edns {
    /// Requestor's UDP payload size.
    pub(crate) udp_size: u16,
    pub(crate) version: u8,
    pub(crate) dnssec_ok: bool,
    /// The client asked for NSID.
    pub(crate) nsid: bool,
    /// Client Subnet, when sent.
    pub(crate) ecs: Option<Ecs>,
    /// DNS Cookie, when sent.
    pub(crate) cookie: Option<Cookie>,
}

/// A parsed query. `qname` borrows the packet as sent; `qname_lc` is the
/// lower-cased copy used for lookups.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub(crate) id: u16,
    pub(crate) opcode: u8,
    /// Recursion desired (copied to the response).
    pub(crate) rd: bool,
    /// Checking disabled (copied to the response).
    pub(crate) cd: bool,
    /// The question section exactly as sent (name, type, class).
    pub(crate) question: &'a [u8],
    /// Lower-cased question name (wire).
    pub(crate) qname_lc: [u8; 255],
    /// Length of the name in `qname_lc`.
    pub(crate) qname_len: usize,
    pub(crate) qtype: u16,
    pub(crate) qclass: u16,
    /// EDNS, when an OPT record was present.
    pub(crate) edns: Option<Edns>,
}

impl Query<'_> {
    /// The lower-cased question name.
    pub fn name_lc(&self) -> &[u8] {
        &self.qname_lc[..self.qname_len]
    }
}

/// What a minimal error response needs to know about the query's OPT
/// record (RFC 6891 section 7: a FORMERR caused by the OPT record, and any
/// error answer to a query that had one, carries an OPT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptSeen {
    /// DNSSEC OK bit of the query's OPT (copied, RFC 3225).
    pub(crate) dnssec_ok: bool,
}

/// Why a packet could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not worth answering: too short for a header, or a response.
    Drop,
    /// Answer with FORMERR. `question_end` is the end of a question that
    /// did parse (0 if none), so it can be echoed; `opt` is set when an OPT
    /// record was found (the error may be in it), so the answer carries one.
    FormErr {
        /// End offset of the question section, or 0.
        question_end: usize,
        /// The query had an OPT record.
        opt: Option<OptSeen>,
    },
    /// Opcode other than QUERY without a single question: answer NOTIMP
    /// (header only, plus OPT when the query had one).
    NotImp {
        /// The query had an OPT record.
        opt: Option<OptSeen>,
    },
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.i)?;
        self.i += 1;
        Some(v)
    }
    fn u16(&mut self) -> Option<u16> {
        let s = self.b.get(self.i..self.i + 2)?;
        self.i += 2;
        Some(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        let s = self.b.get(self.i..self.i + 4)?;
        self.i += 4;
        Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }
    /// Skip a possibly compressed name.
    fn skip_name(&mut self) -> Option<()> {
        let mut total = 0usize;
        loop {
            let l = self.u8()?;
            match l & 0xC0 {
                0x00 if l == 0 => return Some(()),
                0x00 => {
                    total += l as usize + 1;
                    if total > 255 {
                        return None;
                    }
                    self.take(l as usize)?;
                }
                0xC0 => {
                    self.u8()?;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

/// Parse a query packet. Any opcode parses (the engine decides what to
/// answer); a QUERY needs exactly one question.
pub fn parse(pkt: &[u8]) -> Result<Query<'_>, ParseError> {
    if pkt.len() < 12 {
        return Err(ParseError::Drop);
    }
    let flags = u16::from_be_bytes([pkt[2], pkt[3]]);
    if flags & 0x8000 != 0 {
        return Err(ParseError::Drop);
    }
    let opcode = ((flags >> 11) & 0xF) as u8;
    let count = |i: usize| u16::from_be_bytes([pkt[i], pkt[i + 1]]);
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    if qd != 1 {
        // Still look for an OPT, so the error answer can carry one.
        let opt = scan_for_opt(pkt, qd, an, ns, ar);
        return Err(if opcode == 0 {
            ParseError::FormErr {
                question_end: 0,
                opt,
            }
        } else {
            ParseError::NotImp { opt }
        });
    }
    let form0 = ParseError::FormErr {
        question_end: 0,
        opt: None,
    };
    let mut c = Cursor { b: pkt, i: 12 };
    let mut qname_lc = [0u8; 255];
    let mut n = 0usize;
    loop {
        let l = c.u8().ok_or(form0)? as usize;
        if l & 0xC0 != 0 {
            // Compression or extended labels cannot be valid in the
            // question of a query (nothing precedes it to point at).
            return Err(form0);
        }
        if n + l + 1 > 255 {
            return Err(form0);
        }
        qname_lc[n] = l as u8;
        n += 1;
        if l == 0 {
            break;
        }
        let label = c.take(l).ok_or(form0)?;
        for (d, s) in qname_lc[n..n + l].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        n += l;
    }
    let qtype = c.u16().ok_or(form0)?;
    let qclass = c.u16().ok_or(form0)?;
    let question_end = c.i;
    let mut q = Query {
        id: u16::from_be_bytes([pkt[0], pkt[1]]),
        opcode,
        rd: flags & 0x0100 != 0,
        cd: flags & 0x0010 != 0,
        question: &pkt[12..question_end],
        qname_lc,
        qname_len: n,
        qtype,
        qclass,
        edns: None,
    };
    let mut opt: Option<OptSeen> = None;
    let bad = |opt| ParseError::FormErr { question_end, opt };
    for _ in 0..(an as u32 + ns as u32) {
        c.skip_name().ok_or(bad(None))?;
        c.take(8).ok_or(bad(None))?;
        let len = c.u16().ok_or(bad(None))? as usize;
        c.take(len).ok_or(bad(None))?;
    }
    for _ in 0..ar {
        let name_start = c.i;
        c.skip_name().ok_or(bad(opt))?;
        let is_root = c.i == name_start + 1 && pkt[name_start] == 0;
        let t = c.u16().ok_or(bad(opt))?;
        let class = c.u16().ok_or(bad(opt))?;
        let ttl = c.u32().ok_or(bad(opt))?;
        if t == rtype::OPT && opt.is_none() {
            opt = Some(OptSeen {
                dnssec_ok: ttl & 0x8000 != 0,
            });
        }
        let len = c.u16().ok_or(bad(opt))? as usize;
        let rdata = c.take(len).ok_or(bad(opt))?;
        if t != rtype::OPT {
            continue;
        }
        if q.edns.is_some() || !is_root {
            // RFC 6891 6.1.1: more than one OPT, or an OPT with a name.
            return Err(bad(opt));
        }
        q.edns = Some(parse_opt(class, ttl, rdata).ok_or(bad(opt))?);
    }
    Ok(q)
}

/// Find an OPT record in a packet whose question section did not parse as
/// one question: skip `qd` questions and the records before it.
fn scan_for_opt(pkt: &[u8], qd: u16, an: u16, ns: u16, ar: u16) -> Option<OptSeen> {
    let mut c = Cursor { b: pkt, i: 12 };
    for _ in 0..qd {
        c.skip_name()?;
        c.take(4)?;
    }
    for _ in 0..(an as u32 + ns as u32) {
        c.skip_name()?;
        c.take(8)?;
        let len = c.u16()? as usize;
        c.take(len)?;
    }
    for _ in 0..ar {
        c.skip_name()?;
        let t = c.u16()?;
        c.u16()?;
        let ttl = c.u32()?;
        if t == rtype::OPT {
            return Some(OptSeen {
                dnssec_ok: ttl & 0x8000 != 0,
            });
        }
        let len = c.u16()? as usize;
        c.take(len)?;
    }
    None
}

fn parse_opt(class: u16, ttl: u32, rdata: &[u8]) -> Option<Edns> {
    let mut e = Edns {
        udp_size: class,
        version: ((ttl >> 16) & 0xFF) as u8,
        dnssec_ok: ttl & 0x8000 != 0,
        nsid: false,
        ecs: None,
        cookie: None,
    };
    let mut c = Cursor { b: rdata, i: 0 };
    while c.i < rdata.len() {
        let code = c.u16()?;
        let len = c.u16()? as usize;
        let data = c.take(len)?;
        match code {
            OPT_NSID => e.nsid = true,
            OPT_ECS => {
                if e.ecs.is_some() {
                    return None;
                }
                e.ecs = Some(parse_ecs(data)?);
            }
            OPT_COOKIE => {
                // RFC 7873 5.2.2: 8 bytes, or 16 to 40; else FORMERR. One.
                if e.cookie.is_some() || !(data.len() == 8 || (16..=40).contains(&data.len())) {
                    return None;
                }
                let mut k = Cookie {
                    client: [0; 8],
                    server: [0; 32],
                    server_len: (data.len() - 8) as u8,
                };
                k.client.copy_from_slice(&data[..8]);
                k.server[..data.len() - 8].copy_from_slice(&data[8..]);
                e.cookie = Some(k);
            }
            _ => {}
        }
    }
    Some(e)
}

/// Parse an ECS option body; `None` means FORMERR (RFC 7871 section 7.1.1).
pub fn parse_ecs(data: &[u8]) -> Option<Ecs> {
    if data.len() < 4 {
        return None;
    }
    let family = u16::from_be_bytes([data[0], data[1]]);
    let source = data[2];
    let addr = &data[4..];
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    if source > max || addr.len() != (source as usize).div_ceil(8) {
        return None;
    }
    // Bits past the source prefix must be zero.
    if let Some(&last) = addr.last() {
        let used = source % 8;
        if used != 0 && last & (0xFFu8 >> used) != 0 {
            return None;
        }
    }
    let ip = if family == 1 {
        let mut b = [0u8; 4];
        b[..addr.len()].copy_from_slice(addr);
        IpAddr::V4(Ipv4Addr::from(b))
    } else {
        let mut b = [0u8; 16];
        b[..addr.len()].copy_from_slice(addr);
        IpAddr::V6(Ipv6Addr::from(b))
    };
    Some(Ecs {
        family,
        source_prefix: source,
        addr: ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16, extra: &[u8], arcount: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&arcount.to_be_bytes());
        p.extend_from_slice(name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p.extend_from_slice(extra);
        p
    }

    fn opt(options: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 0, 41, 0x04, 0xD0, 0, 0, 0x80, 0];
        o.extend_from_slice(&(options.len() as u16).to_be_bytes());
        o.extend_from_slice(options);
        o
    }

    #[test]
    fn parses_question_and_lowercases() {
        let p = query(b"\x03WWW\x02lb\x00", 1, &[], 0);
        let q = parse(&p).unwrap();
        assert_eq!(q.id, 0x1234);
        assert!(q.rd);
        assert_eq!(q.name_lc(), b"\x03www\x02lb\x00");
        assert_eq!(&q.question[1..4], b"WWW");
        assert_eq!(q.qtype, 1);
        assert!(q.edns.is_none());
    }

    #[test]
    fn parses_edns_ecs_and_nsid() {
        let ecs = [0, 8, 0, 7, 0, 1, 24, 0, 81, 2, 69];
        let mut opts = ecs.to_vec();
        opts.extend_from_slice(&[0, 3, 0, 0]);
        let p = query(b"\x01a\x00", 1, &opt(&opts), 1);
        let e = parse(&p).unwrap().edns.unwrap();
        assert_eq!(e.udp_size, 1232);
        assert!(e.dnssec_ok);
        assert!(e.nsid);
        let ecs = e.ecs.unwrap();
        assert_eq!(ecs.source_prefix, 24);
        assert_eq!(ecs.addr, "81.2.69.0".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse(&[0; 5]).unwrap_err(), ParseError::Drop);
        let mut resp = query(b"\x01a\x00", 1, &[], 0);
        resp[2] |= 0x80;
        assert_eq!(parse(&resp).unwrap_err(), ParseError::Drop);
        // Other opcodes parse (the engine answers NOTIMP/NOTAUTH).
        let mut notify = query(b"\x01a\x00", 1, &[], 0);
        notify[2] |= 4 << 3;
        assert_eq!(parse(&notify).unwrap().opcode, 4);
        notify[5] = 0;
        assert_eq!(
            parse(&notify).unwrap_err(),
            ParseError::NotImp { opt: None }
        );
        // pointer in question
        assert!(matches!(
            parse(&query(b"\xC0\x0C", 1, &[], 0)),
            Err(ParseError::FormErr { .. })
        ));
        // truncated name
        let p = query(b"\x05ab", 1, &[], 0);
        assert!(matches!(parse(&p[..15]), Err(ParseError::FormErr { .. })));
        // ECS with bits past the prefix
        // The OPT-caused errors say an OPT was there (the answer carries one).
        let seen = ParseError::FormErr {
            question_end: 12 + 3 + 4,
            opt: Some(OptSeen { dnssec_ok: true }),
        };
        let bad_ecs = [0, 8, 0, 7, 0, 1, 20, 0, 81, 2, 0x4F];
        assert_eq!(
            parse(&query(b"\x01a\x00", 1, &opt(&bad_ecs), 1)).unwrap_err(),
            seen
        );
        // two ECS options
        let ecs = [0, 8, 0, 7, 0, 1, 24, 0, 81, 2, 69];
        let two_ecs = [ecs, ecs].concat();
        assert_eq!(
            parse(&query(b"\x01a\x00", 1, &opt(&two_ecs), 1)).unwrap_err(),
            seen
        );
        // unknown family
        let fam3 = [0, 8, 0, 7, 0, 3, 24, 0, 81, 2, 69];
        assert_eq!(
            parse(&query(b"\x01a\x00", 1, &opt(&fam3), 1)).unwrap_err(),
            seen
        );
        // two OPT records
        let mut two = opt(&[]);
        two.extend_from_slice(&opt(&[]));
        assert_eq!(parse(&query(b"\x01a\x00", 1, &two, 2)).unwrap_err(), seen);
        // OPT with a non-root owner
        let mut named = b"\x01x".to_vec();
        named.extend_from_slice(&opt(&[]));
        assert_eq!(parse(&query(b"\x01a\x00", 1, &named, 1)).unwrap_err(), seen);
        // no question, but an OPT
        let mut noq = query(b"\x01a\x00", 1, &opt(&[]), 1);
        noq[5] = 0;
        noq.drain(12..12 + 3 + 4);
        assert_eq!(
            parse(&noq).unwrap_err(),
            ParseError::FormErr {
                question_end: 0,
                opt: Some(OptSeen { dnssec_ok: true }),
            }
        );
        // arcount larger than the records present
        assert!(matches!(
            parse(&query(b"\x01a\x00", 1, &[], 3)),
            Err(ParseError::FormErr { .. })
        ));
    }
}
