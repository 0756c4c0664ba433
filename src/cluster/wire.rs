//! The verdict exchange format: compact binary, fixed-width records.
//!
//! ```text
//! "SDV1"  magic
//! u8 len + node name
//! u64 config generation, u64 layout hash, u64 this node's unix ms
//! u8 flags (1: key table included)
//! u32 count
//! [key table, when flagged: count x (u16 len + key, u64 monitor hash)]
//! count x (u8 state 0 unknown / 1 up / 2 down, u16 RTT in 0.1 ms
//!          (0 unknown), u32 ms since the last probe (u32::MAX never))
//! u32 n + n x (u32 index, u8 len + reason)      reasons of down endpoints
//! u32 n + n x (u16 len + key, u8 admin state, u64 set at unix ms,
//!              u8 len + origin node)            admin states (all)
//! ```
//!
//! The key table (the stable endpoint keys, `pool/endpoint`, and their
//! monitor fingerprints, in the publisher's order) is sent only when the
//! puller does not already hold the layout it names, so a steady pull of
//! 10,000 endpoints is 7 bytes each plus reasons of the down ones.
//! Big-endian. Decoding checks every length against the remaining bytes.

use std::hash::Hasher;

use super::quorum::Admin;

const MAGIC: &[u8; 4] = b"SDV1";
/// Most endpoints one message may carry.
pub const MAX_ENDPOINTS: usize = 1 << 20;

/// Verdict state codes.
pub const UNKNOWN: u8 = 0;
/// Up.
pub const UP: u8 = 1;
/// Down.
pub const DOWN: u8 = 2;

/// One endpoint's verdict as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Record {
    /// [`UNKNOWN`], [`UP`] or [`DOWN`].
    pub state: u8,
    /// Smoothed probe RTT in units of 0.1 ms; 0 when unknown.
    pub rtt_tenth_ms: u16,
    /// Milliseconds since the last probe finished (`u32::MAX`: never).
    pub age_ms: u32,
}

/// One admin state entry, shared so every node converges (the latest
/// `at_ms` wins, ties broken by origin name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminEntry {
    /// Endpoint key `pool/endpoint`.
    pub key: String,
    /// The state (`auto` entries are kept, so they override older ones).
    pub state: Admin,
    /// When it was set, unix ms.
    pub at_ms: u64,
    /// The node it was set on.
    pub origin: String,
}

impl AdminEntry {
    /// Whether `self` supersedes `other` (last writer wins).
    pub fn newer_than(&self, other: &AdminEntry) -> bool {
        (self.at_ms, &self.origin) > (other.at_ms, &other.origin)
    }
}

/// A node's published verdicts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// Publisher's node name.
    pub node: String,
    /// Its config generation.
    pub generation: u64,
    /// Hash of its key table.
    pub layout: u64,
    /// Its clock, unix ms (shown, not trusted: ages are relative).
    pub now_ms: u64,
    /// `(key, monitor fingerprint)` per record, when included.
    pub keys: Option<Vec<(String, u64)>>,
    /// One per endpoint, in key-table order.
    pub records: Vec<Record>,
    /// `(record index, reason)` of down endpoints.
    pub reasons: Vec<(u32, String)>,
    /// Admin states.
    pub admin: Vec<AdminEntry>,
}

/// Why a message did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not a verdict message.
    #[error("not a steerdns verdict message")]
    Magic,
    /// Ended early.
    #[error("truncated at byte {0}")]
    Truncated(usize),
    /// A field out of range.
    #[error("bad {0}")]
    Bad(&'static str),
}

/// The layout hash of a key table (stable across processes and builds of
/// the same version: FxHash, no random seed).
pub fn layout_hash<'a>(keys: impl IntoIterator<Item = (&'a str, u64)>) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    for (k, m) in keys {
        h.write(k.as_bytes());
        h.write_u8(0xff);
        h.write_u64(m);
    }
    h.finish()
}

fn put_str8(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// Encode `m`.
pub fn encode(m: &Message) -> Vec<u8> {
    let keys_len: usize = m
        .keys
        .as_ref()
        .map_or(0, |k| k.iter().map(|(s, _)| s.len() + 10).sum());
    let mut out = Vec::with_capacity(64 + keys_len + m.records.len() * 7);
    out.extend_from_slice(MAGIC);
    put_str8(&mut out, &m.node);
    out.extend_from_slice(&m.generation.to_be_bytes());
    out.extend_from_slice(&m.layout.to_be_bytes());
    out.extend_from_slice(&m.now_ms.to_be_bytes());
    out.push(u8::from(m.keys.is_some()));
    out.extend_from_slice(&(m.records.len() as u32).to_be_bytes());
    if let Some(keys) = &m.keys {
        for (k, h) in keys {
            put_str16(&mut out, k);
            out.extend_from_slice(&h.to_be_bytes());
        }
    }
    for r in &m.records {
        out.push(r.state);
        out.extend_from_slice(&r.rtt_tenth_ms.to_be_bytes());
        out.extend_from_slice(&r.age_ms.to_be_bytes());
    }
    out.extend_from_slice(&(m.reasons.len() as u32).to_be_bytes());
    for (i, r) in &m.reasons {
        out.extend_from_slice(&i.to_be_bytes());
        put_str8(&mut out, r);
    }
    out.extend_from_slice(&(m.admin.len() as u32).to_be_bytes());
    for a in &m.admin {
        put_str16(&mut out, &a.key);
        out.push(a.state.code());
        out.extend_from_slice(&a.at_ms.to_be_bytes());
        put_str8(&mut out, &a.origin);
    }
    out
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(WireError::Truncated(self.at))?;
        let s = self
            .b
            .get(self.at..end)
            .ok_or(WireError::Truncated(self.at))?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }
    fn str_of(&mut self, n: usize) -> Result<String, WireError> {
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| WireError::Bad("text"))
    }
    fn str8(&mut self) -> Result<String, WireError> {
        let n = self.u8()? as usize;
        self.str_of(n)
    }
    fn str16(&mut self) -> Result<String, WireError> {
        let n = self.u16()? as usize;
        self.str_of(n)
    }
    /// A count whose items take at least `min_size` bytes each.
    fn count(&mut self, min_size: usize) -> Result<usize, WireError> {
        let n = self.u32()? as usize;
        if n > MAX_ENDPOINTS || n.saturating_mul(min_size) > self.b.len() - self.at {
            return Err(WireError::Bad("count"));
        }
        Ok(n)
    }
}

/// Decode a message.
pub fn decode(b: &[u8]) -> Result<Message, WireError> {
    let mut r = Reader { b, at: 0 };
    if r.take(4).map_err(|_| WireError::Magic)? != MAGIC {
        return Err(WireError::Magic);
    }
    let node = r.str8()?;
    let generation = r.u64()?;
    let layout = r.u64()?;
    let now_ms = r.u64()?;
    let flags = r.u8()?;
    let n = r.count(7)?;
    let keys = if flags & 1 != 0 {
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            let k = r.str16()?;
            keys.push((k, r.u64()?));
        }
        Some(keys)
    } else {
        None
    };
    let mut records = Vec::with_capacity(n);
    for _ in 0..n {
        let state = r.u8()?;
        if state > DOWN {
            return Err(WireError::Bad("state"));
        }
        records.push(Record {
            state,
            rtt_tenth_ms: r.u16()?,
            age_ms: r.u32()?,
        });
    }
    let nr = r.count(5)?;
    let mut reasons = Vec::with_capacity(nr);
    for _ in 0..nr {
        let i = r.u32()?;
        if i as usize >= n {
            return Err(WireError::Bad("reason index"));
        }
        reasons.push((i, r.str8()?));
    }
    let na = r.count(12)?;
    let mut admin = Vec::with_capacity(na);
    for _ in 0..na {
        let key = r.str16()?;
        let state = Admin::from_code(r.u8()?).ok_or(WireError::Bad("admin state"))?;
        let at_ms = r.u64()?;
        admin.push(AdminEntry {
            key,
            state,
            at_ms,
            origin: r.str8()?,
        });
    }
    if r.at != b.len() {
        return Err(WireError::Bad("trailing bytes"));
    }
    Ok(Message {
        node,
        generation,
        layout,
        now_ms,
        keys,
        records,
        reasons,
        admin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, with_keys: bool) -> Message {
        let keys: Vec<(String, u64)> = (0..n)
            .map(|i| {
                (
                    format!("pool{}/10.0.{}.{}", i / 100, i / 250, i % 250),
                    i as u64 * 7,
                )
            })
            .collect();
        Message {
            node: "node-a".into(),
            generation: 3,
            layout: layout_hash(keys.iter().map(|(k, h)| (k.as_str(), *h))),
            now_ms: 1_764_000_000_000,
            records: (0..n)
                .map(|i| Record {
                    state: (i % 3) as u8,
                    rtt_tenth_ms: (i % 2000) as u16,
                    age_ms: i as u32 * 13,
                })
                .collect(),
            keys: with_keys.then_some(keys),
            reasons: vec![(2, "status 503".into())],
            admin: vec![AdminEntry {
                key: "pool0/10.0.0.1".into(),
                state: Admin::Drain,
                at_ms: 5,
                origin: "node-b".into(),
            }],
        }
    }

    #[test]
    fn round_trips() {
        for keys in [true, false] {
            let m = sample(300, keys);
            assert_eq!(decode(&encode(&m)).unwrap(), m);
        }
        assert_eq!(
            decode(&encode(&Message::default())).unwrap(),
            Message::default()
        );
    }

    #[test]
    fn steady_pull_is_seven_bytes_per_endpoint() {
        let small = encode(&sample(10_000, false)).len();
        assert!(small < 10_000 * 7 + 200, "{small}");
        assert!(encode(&sample(10_000, true)).len() > small + 10_000 * 10);
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let b = encode(&sample(20, true));
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err(), "cut {cut}");
        }
        let mut x = b.clone();
        x.push(0);
        assert!(decode(&x).is_err());
        // flip every byte: decodes to something or errors, never panics
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0xa5;
            let _ = decode(&c);
        }
        assert_eq!(decode(b"nope"), Err(WireError::Magic));
    }

    #[test]
    fn admin_last_writer_wins() {
        let a = |at, o: &str| AdminEntry {
            key: "p/e".into(),
            state: Admin::Drain,
            at_ms: at,
            origin: o.into(),
        };
        assert!(a(2, "a").newer_than(&a(1, "z")));
        assert!(a(1, "b").newer_than(&a(1, "a")));
        assert!(!a(1, "a").newer_than(&a(1, "a")));
    }
}
