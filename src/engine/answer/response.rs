//! The response writer: header, sections, name compression into the
//! caller's buffer, OPT, truncation.

use std::net::IpAddr;

use super::{AnswerInfo, CLASS_IN, COMPRESS_SLOTS, Client, CookieState, Outcome, size_limit};
use crate::engine::wire::{self, Edns, Query};
use crate::metrics::Transport;
use crate::snapshot::Snapshot;
use crate::zone::{self, Node, RrSet, Zone, rtype};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Answer,
    Authority,
    Additional,
}

/// A response being written.
pub(super) struct Response<'a> {
    out: &'a mut Vec<u8>,
    question_end: usize,
    pub(super) an: u16,
    ns: u16,
    ar: u16,
    limit: usize,
    edns: Option<Edns>,
    snap: &'a Snapshot,
    /// Compression table: for every label written uncompressed (the
    /// question's included), its offset and the length of the whole name
    /// from there (uncompressed), so a later name with that suffix points
    /// at it. Fixed size: no allocation per query.
    comp: [CompEntry; COMPRESS_SLOTS],
    comp_len: usize,
    /// Entries of the question itself (kept when the answer is truncated).
    comp_question: usize,
    /// The COOKIE option to send: the client cookie and our server cookie.
    cookie: Option<([u8; 8], [u8; crate::cookie::SERVER_LEN])>,
}

impl<'a> Response<'a> {
    pub(super) fn start(
        snap: &'a Snapshot,
        q: &'a Query<'a>,
        transport: Transport,
        out: &'a mut Vec<u8>,
    ) -> Self {
        out.extend_from_slice(&q.id.to_be_bytes());
        let mut f1 = 0x80u8 | (q.opcode << 3);
        if q.rd {
            f1 |= 0x01;
        }
        let f2 = if q.cd { 0x10 } else { 0 };
        out.extend_from_slice(&[f1, f2, 0, 1, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(q.question);
        let limit = size_limit(snap, q, transport);
        let mut r = Response {
            question_end: out.len(),
            out,
            an: 0,
            ns: 0,
            ar: 0,
            limit,
            edns: q.edns,
            snap,
            comp: [CompEntry::default(); COMPRESS_SLOTS],
            comp_len: 0,
            comp_question: 0,
            cookie: None,
        };
        let mut hashes = [0u32; 128];
        suffix_hashes(q.name_lc(), &mut hashes);
        r.remember(12, q.name_lc(), &hashes, true);
        r.comp_question = r.comp_len;
        r
    }

    /// Check the query's DNS Cookie (RFC 7873, RFC 9018) and prepare the
    /// one we send back: always a fresh server cookie for this client.
    pub(super) fn cookie(&mut self, q: &Query<'_>, client: Client, info: &mut AnswerInfo) {
        if let Some((state, client_cookie, server)) = cookie_reply(self.snap, q, client) {
            info.cookie = Some(state);
            self.cookie = Some((client_cookie, server));
        }
    }

    pub(super) fn set_aa(&mut self, aa: bool) {
        if aa {
            self.out[2] |= 0x04;
        } else {
            self.out[2] &= !0x04;
        }
    }

    /// Write a name (uncompressed wire, any case), compressed (RFC 1035
    /// 4.1.4): its longest suffix already in the message becomes a pointer,
    /// the labels before it are written and remembered.
    fn name(&mut self, name: &[u8]) {
        let start = self.out.len();
        // Hash of every suffix (by label index), so a candidate is rejected
        // by two integer compares; a match is then checked byte by byte.
        let mut hashes = [0u32; 128];
        suffix_hashes(name, &mut hashes);
        let (mut i, mut k) = (0, 0);
        while i < name.len() && name[i] != 0 {
            if let Some(off) = self.find_suffix(&name[i..], hashes[k]) {
                self.out.extend_from_slice(&name[..i]);
                self.out.extend_from_slice(&(0xC000 | off).to_be_bytes());
                self.remember(start, &name[..i], &hashes, false);
                return;
            }
            i += 1 + name[i] as usize;
            k += 1;
        }
        self.out.extend_from_slice(name);
        self.remember(start, name, &hashes, true);
    }

    /// Remember the labels in `labels` (a whole name when `raw`, else the
    /// labels of a name before its pointer) written at `at`; `hashes` are
    /// the whole name's suffix hashes, so each entry knows the length and
    /// hash of the name from its label to the end.
    fn remember(&mut self, at: usize, labels: &[u8], hashes: &[u32; 128], raw: bool) {
        let (mut j, mut k) = (0, 0);
        while j < labels.len() && labels[j] != 0 && k < hashes.len() {
            let off = at + j;
            if self.comp_len == COMPRESS_SLOTS || off >= 0x3FFF {
                return;
            }
            self.comp[self.comp_len] = CompEntry {
                off: off as u16,
                hash: hashes[k],
                raw,
            };
            self.comp_len += 1;
            j += 1 + labels[j] as usize;
            k += 1;
        }
    }

    /// Offset of a name in the message equal to `suffix` (whose suffix hash
    /// is `hash`).
    fn find_suffix(&self, suffix: &[u8], hash: u32) -> Option<u16> {
        self.comp[..self.comp_len]
            .iter()
            .find(|e| {
                e.hash == hash
                    && if e.raw {
                        // Written without pointers: one slice compare.
                        self.out
                            .get(e.off as usize..e.off as usize + suffix.len())
                            .is_some_and(|w| w.eq_ignore_ascii_case(suffix))
                    } else {
                        name_at_eq(self.out, e.off as usize, suffix)
                    }
            })
            .map(|e| e.off)
    }

    /// Record data, with the names of the types RFC 3597 section 4 lets us
    /// compress (NS, CNAME, PTR, MX, SOA) compressed. SRV targets are not
    /// (RFC 2782), nor anything else.
    fn rdata(&mut self, t: u16, rd: &[u8]) {
        match t {
            rtype::NS | rtype::CNAME | rtype::PTR if wire_name_len(rd) == Some(rd.len()) => {
                self.name(rd);
            }
            rtype::MX if rd.len() > 2 && wire_name_len(&rd[2..]) == Some(rd.len() - 2) => {
                self.out.extend_from_slice(&rd[..2]);
                self.name(&rd[2..]);
            }
            rtype::SOA => {
                let m = wire_name_len(rd);
                let r = m.and_then(|m| wire_name_len(&rd[m..]).map(|r| (m, m + r)));
                match r {
                    Some((m, end)) if rd.len() == end + 20 => {
                        self.name(&rd[..m]);
                        self.name(&rd[m..end]);
                        self.out.extend_from_slice(&rd[end..]);
                    }
                    _ => self.out.extend_from_slice(rd),
                }
            }
            _ => self.out.extend_from_slice(rd),
        }
    }

    pub(super) fn record_class(
        &mut self,
        owner: &[u8],
        t: u16,
        class: u16,
        ttl: u32,
        rdata: &[u8],
        s: Section,
    ) {
        self.name(owner);
        self.out.extend_from_slice(&t.to_be_bytes());
        self.out.extend_from_slice(&class.to_be_bytes());
        self.out.extend_from_slice(&ttl.to_be_bytes());
        let len_at = self.out.len();
        self.out.extend_from_slice(&[0, 0]);
        self.rdata(t, rdata);
        let rdlen = (self.out.len() - len_at - 2) as u16;
        self.out[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        match s {
            Section::Answer => self.an += 1,
            Section::Authority => self.ns += 1,
            Section::Additional => self.ar += 1,
        }
    }

    pub(super) fn record(&mut self, owner: &[u8], t: u16, ttl: u32, rdata: &[u8], s: Section) {
        self.record_class(owner, t, CLASS_IN, ttl, rdata, s);
    }

    pub(super) fn rrset(&mut self, owner: &[u8], set: &RrSet, s: Section) {
        for rd in &set.rdata {
            self.record(owner, set.rtype, set.ttl, rd, s);
        }
    }

    /// The zone's SOA in the authority section, with the negative TTL.
    pub(super) fn soa(&mut self, zone: &Zone) {
        if let Some(rd) = zone.soa.rdata.first() {
            self.record(
                &zone.apex,
                rtype::SOA,
                zone.negative_ttl,
                rd,
                Section::Authority,
            );
        }
    }

    /// Glue addresses for a node's NS set, as far as they fit.
    pub(super) fn glue(&mut self, node: &Node) {
        for (owner, set) in &node.glue.sets {
            for rd in &set.rdata {
                let before = (self.out.len(), self.ar, self.comp_len);
                self.record(owner, set.rtype, set.ttl, rd, Section::Additional);
                if self.out.len() + self.opt_len() > self.limit {
                    self.out.truncate(before.0);
                    self.ar = before.1;
                    self.comp_len = before.2;
                    return;
                }
            }
        }
    }

    fn opt_len(&self) -> usize {
        match &self.edns {
            None => 0,
            Some(e) => {
                let mut n = 11;
                if e.ecs.is_some() && self.snap.settings.ecs {
                    n += 4 + 4 + 16;
                }
                if e.nsid {
                    n += 4 + self.snap.settings.node_name.len();
                }
                if self.cookie.is_some() {
                    n += 4 + 8 + crate::cookie::SERVER_LEN;
                }
                n
            }
        }
    }

    pub(super) fn finish(mut self, code: u16, scope: Option<u8>) -> Outcome {
        if self.out.len() + self.opt_len() > self.limit {
            // Does not fit: an empty, truncated answer tells the client to
            // retry over TCP.
            self.out.truncate(self.question_end);
            self.comp_len = self.comp_question;
            self.an = 0;
            self.ns = 0;
            self.ar = 0;
            self.out[2] |= 0x02;
        }
        self.out[3] = (self.out[3] & 0xF0) | (code & 0xF) as u8;
        if let Some(e) = self.edns {
            self.write_opt(&e, code, scope);
        }
        let counts = [self.an, self.ns, self.ar];
        for (i, c) in counts.iter().enumerate() {
            self.out[6 + 2 * i..8 + 2 * i].copy_from_slice(&c.to_be_bytes());
        }
        Outcome::Answered { rcode: code }
    }

    fn write_opt(&mut self, e: &Edns, code: u16, scope: Option<u8>) {
        let o = &mut *self.out;
        o.push(0);
        o.extend_from_slice(&rtype::OPT.to_be_bytes());
        o.extend_from_slice(&self.snap.settings.max_udp_payload.to_be_bytes());
        let ext = ((code >> 4) & 0xFF) as u8;
        let do_bit = if e.dnssec_ok { 0x80 } else { 0 };
        o.extend_from_slice(&[ext, 0, do_bit, 0]);
        let len_at = o.len();
        o.extend_from_slice(&[0, 0]);
        if let Some(ecs) = e.ecs.filter(|_| self.snap.settings.ecs) {
            let addr_len = (ecs.source_prefix as usize).div_ceil(8);
            let scope = scope.unwrap_or(0).min(ecs.source_prefix);
            o.extend_from_slice(&wire::OPT_ECS.to_be_bytes());
            o.extend_from_slice(&((4 + addr_len) as u16).to_be_bytes());
            o.extend_from_slice(&ecs.family.to_be_bytes());
            o.extend_from_slice(&[ecs.source_prefix, scope]);
            match ecs.addr {
                IpAddr::V4(a) => o.extend_from_slice(&a.octets()[..addr_len]),
                IpAddr::V6(a) => o.extend_from_slice(&a.octets()[..addr_len]),
            }
        }
        if e.nsid {
            let id = self.snap.settings.node_name.as_bytes();
            o.extend_from_slice(&wire::OPT_NSID.to_be_bytes());
            o.extend_from_slice(&(id.len() as u16).to_be_bytes());
            o.extend_from_slice(id);
        }
        if let Some((client, server)) = &self.cookie {
            o.extend_from_slice(&wire::OPT_COOKIE.to_be_bytes());
            o.extend_from_slice(&((client.len() + server.len()) as u16).to_be_bytes());
            o.extend_from_slice(client);
            o.extend_from_slice(server);
        }
        let rdlen = (o.len() - len_at - 2) as u16;
        o[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        self.ar += 1;
    }
}

/// What the query's DNS Cookie proved and the COOKIE option to answer
/// with (its client cookie and a fresh server cookie for this client);
/// `None` when it sent none or cookies are off. Shared by the engine and
/// the template replay, so both answer the same.
pub(crate) fn cookie_reply(
    snap: &Snapshot,
    q: &Query<'_>,
    client: Client,
) -> Option<(CookieState, [u8; 8], [u8; crate::cookie::SERVER_LEN])> {
    let (Some(c), Some(secrets)) = (
        q.edns.and_then(|e| e.cookie),
        snap.settings.cookies.as_deref(),
    ) else {
        return None;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    let ip = client.addr.ip();
    let valid = c.server_len > 0 && secrets.verify(&c.client, c.server(), ip, now);
    let state = if valid {
        CookieState::Valid
    } else {
        CookieState::ClientOnly
    };
    Some((state, c.client, secrets.make(&c.client, ip, now)))
}

/// A name remembered for compression.
#[derive(Clone, Copy, Default)]
struct CompEntry {
    /// Offset in the message.
    off: u16,
    /// [`suffix_hashes`] value of the name from there (it encodes the
    /// length too).
    hash: u32,
    /// The name is written there without pointers.
    raw: bool,
}

/// For each label of an uncompressed wire name, a hash of the name from
/// that label to the root, case-insensitive and including its length.
/// Computed from the root up, so each suffix costs its first label only.
fn suffix_hashes(name: &[u8], out: &mut [u32; 128]) {
    let mut starts = [0u8; 128];
    let n = zone::label_offsets(name, &mut starts);
    // `starts[n - 1]` is the root; hash the labels before it, right to left.
    let mut h: u32 = 0x811C_9DC5;
    for k in (0..n.saturating_sub(1)).rev() {
        let at = starts[k] as usize;
        let label = name.get(at..=at + name[at] as usize).unwrap_or(&[]);
        for &b in label {
            h = (h ^ u32::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0193);
        }
        out[k] = h ^ ((name.len() - at) as u32) << 24;
    }
}

/// Length of the uncompressed wire name at the start of `b`, if it is one.
fn wire_name_len(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let l = *b.get(i)? as usize;
        if l & 0xC0 != 0 || i + l >= 255 {
            return None;
        }
        i += 1 + l;
        if l == 0 {
            return (i <= b.len()).then_some(i);
        }
    }
}

/// Follow a name in our own message from `p` (labels, then at most a few
/// pointers) and call `f` for each label (with its length byte) until the
/// root; false when the message is not a valid name there.
fn walk_name_at(msg: &[u8], mut p: usize, mut f: impl FnMut(&[u8]) -> bool) -> bool {
    // Our pointers always point backwards; the bound is belt and braces.
    for _ in 0..256 {
        let Some(&l) = msg.get(p) else {
            return false;
        };
        if l & 0xC0 == 0xC0 {
            let Some(&l2) = msg.get(p + 1) else {
                return false;
            };
            p = ((l as usize & 0x3F) << 8) | l2 as usize;
            continue;
        }
        let Some(label) = msg.get(p..p + 1 + l as usize) else {
            return false;
        };
        if !f(label) {
            return false;
        }
        if l == 0 {
            return true;
        }
        p += 1 + l as usize;
    }
    false
}

/// The name at `p` in the message equals `name` (case-insensitive).
fn name_at_eq(msg: &[u8], p: usize, name: &[u8]) -> bool {
    let mut i = 0;
    walk_name_at(msg, p, |label| {
        let Some(other) = name.get(i..i + label.len()) else {
            return false;
        };
        i += label.len();
        other[0] == label[0] && other[1..].eq_ignore_ascii_case(&label[1..])
    }) && i == name.len()
}
