//! DNS Cookies (RFC 7873) with interoperable server cookies (RFC 9018):
//! `Version 1 | Reserved 0 0 0 | Timestamp (4) | Hash (8)`, the hash being
//! SipHash-2-4 keyed with a 128-bit secret over the client cookie, the
//! first 8 bytes of the server cookie and the client's address.
//!
//! Every node that shares the secret accepts the others' cookies (an
//! anycast fleet); during a rotation the previous secret is accepted too.
//! Pure: the caller passes the time (seconds since the Unix epoch), so tests
//! are deterministic. No allocation.

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher24;

/// Length of a client cookie.
pub const CLIENT_LEN: usize = 8;
/// Length of the server cookies we make (RFC 9018).
pub const SERVER_LEN: usize = 16;
/// Cookies older than this are not accepted (RFC 9018 section 4.3).
pub const MAX_AGE: u32 = 3600;
/// Cookies from further in the future than this are not accepted.
pub const MAX_FUTURE: u32 = 300;

/// The secrets: the one cookies are made with, and the previous one, still
/// accepted while clients move to the new one.
#[derive(Clone, PartialEq, Eq)]
pub struct Secrets {
    /// Current secret.
    pub current: [u8; 16],
    /// Previous secret, accepted during a rotation.
    pub previous: Option<[u8; 16]>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets.
        f.debug_struct("Secrets")
            .field("previous", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a secret file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// No secret in the file.
    #[error("no secret: the first line must hold 32 hex digits (128 bits)")]
    Empty,
    /// A line that is not 32 hex digits.
    #[error("line {line}: a secret is 32 hex digits (128 bits), e.g. from `openssl rand -hex 16`")]
    Bad {
        /// 1-based line number.
        line: usize,
    },
    /// More than two secrets.
    #[error("line {line}: at most two secrets (current, then previous)")]
    TooMany {
        /// 1-based line number.
        line: usize,
    },
}

fn parse_hex16(s: &str) -> Option<[u8; 16]> {
    let s = s.as_bytes();
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (s[2 * i] as char).to_digit(16)?;
        let lo = (s[2 * i + 1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

impl Secrets {
    /// Parse a secret file: the current secret on the first line, the
    /// previous one (optional) on the second; blank lines and `#` comments
    /// are ignored.
    pub fn parse(text: &str) -> Result<Secrets, SecretError> {
        let mut found = Vec::with_capacity(2);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if found.len() == 2 {
                return Err(SecretError::TooMany { line: i + 1 });
            }
            found.push(parse_hex16(line).ok_or(SecretError::Bad { line: i + 1 })?);
        }
        let mut it = found.into_iter();
        let current = it.next().ok_or(SecretError::Empty)?;
        Ok(Secrets {
            current,
            previous: it.next(),
        })
    }

    /// A random secret (for a single node without a secret file).
    pub fn random() -> Secrets {
        let mut current = [0u8; 16];
        for chunk in current.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0xC00C_1E5E);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
        Secrets {
            current,
            previous: None,
        }
    }

    /// The server cookie for `client` at `now` (made with the current secret).
    pub fn make(
        &self,
        client_cookie: &[u8; CLIENT_LEN],
        client: IpAddr,
        now: u32,
    ) -> [u8; SERVER_LEN] {
        let mut sc = [0u8; SERVER_LEN];
        sc[0] = 1;
        sc[4..8].copy_from_slice(&now.to_be_bytes());
        let h = hash(&self.current, client_cookie, &sc[..8], client);
        sc[8..].copy_from_slice(&h.to_le_bytes());
        sc
    }

    /// Whether `server_cookie` is one of ours (either secret) for this
    /// client, and fresh at `now`.
    pub fn verify(
        &self,
        client_cookie: &[u8; CLIENT_LEN],
        server_cookie: &[u8],
        client: IpAddr,
        now: u32,
    ) -> bool {
        if server_cookie.len() != SERVER_LEN || server_cookie[0] != 1 {
            return false;
        }
        let ts = u32::from_be_bytes([
            server_cookie[4],
            server_cookie[5],
            server_cookie[6],
            server_cookie[7],
        ]);
        // Serial-number arithmetic (RFC 1982): the age may wrap.
        let age = now.wrapping_sub(ts);
        let fresh = age <= MAX_AGE || ts.wrapping_sub(now) <= MAX_FUTURE;
        if !fresh {
            return false;
        }
        let want = &server_cookie[8..];
        let ok = |secret: &[u8; 16]| {
            hash(secret, client_cookie, &server_cookie[..8], client).to_le_bytes() == want
        };
        ok(&self.current) || self.previous.as_ref().is_some_and(ok)
    }
}

use std::hash::BuildHasher;

/// SipHash-2-4 over Client Cookie | Version | Reserved | Timestamp | Client-IP.
fn hash(secret: &[u8; 16], client_cookie: &[u8; CLIENT_LEN], head: &[u8], client: IpAddr) -> u64 {
    let mut h = SipHasher24::new_with_key(secret);
    // Whole words: `write_u64(from_le_bytes(b))` feeds the same 8 bytes as
    // `write(b)` without the byte-slice loop (a quarter of the cost).
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    h.write_u64(word(client_cookie));
    h.write_u64(word(&head[..8]));
    match client.to_canonical() {
        IpAddr::V4(a) => h.write_u32(u32::from_le_bytes(a.octets())),
        IpAddr::V6(a) => {
            let o = a.octets();
            h.write_u64(word(&o[..8]));
            h.write_u64(word(&o[8..]));
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "e5e973e5a6b2a43f48e7dc849e37bfcf";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rfc9018_test_vector_ipv4() {
        // RFC 9018 appendix A.1: client cookie 2464c4abcf10c957, client
        // 198.51.100.100, timestamp 1559731985, secret e5e9...bfcf.
        let s = Secrets::parse(SECRET).unwrap();
        let cc = [0x24, 0x64, 0xc4, 0xab, 0xcf, 0x10, 0xc9, 0x57];
        let sc = s.make(&cc, ip("198.51.100.100"), 1_559_731_985);
        let want = [
            0x01, 0x00, 0x00, 0x00, 0x5c, 0xf7, 0x9f, 0x11, 0x1f, 0x81, 0x30, 0xc3, 0xee, 0xe2,
            0x94, 0x80,
        ];
        assert_eq!(sc, want);
    }

    #[test]
    fn rfc9018_test_vectors_renewal_and_ipv6_rollover() {
        // A.2: the same client renewing its cookie.
        let s = Secrets::parse(SECRET).unwrap();
        let cc = [0x24, 0x64, 0xc4, 0xab, 0xcf, 0x10, 0xc9, 0x57];
        let sc = s.make(&cc, ip("198.51.100.100"), 1_559_734_385);
        assert_eq!(hex(&sc), "010000005cf7a871d4a564a1442aca77");
        // A.4: an IPv6 client whose cookie was made with the old secret is
        // accepted after the rollover and gets one made with the new one.
        let rolled =
            Secrets::parse("445536bcd2513298075a5d379663c962\ndd3bdf9344b678b185a6f5cb60fca715\n")
                .unwrap();
        let cc6 = [0x22, 0x68, 0x1a, 0xb9, 0x7d, 0x52, 0xc2, 0x98];
        let c6 = ip("2001:db8:220:1:59de:d0f4:8769:82b8");
        let old = unhex("010000005cf7c57926556bd0934c72f8");
        assert!(rolled.verify(&cc6, &old, c6, 1_559_741_961));
        let fresh = rolled.make(&cc6, c6, 1_559_741_961);
        assert_eq!(hex(&fresh), "010000005cf7c609a6bb79d16625507a");
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn verify_checks_client_address_time_and_secret() {
        let s = Secrets::parse(SECRET).unwrap();
        let cc = [1, 2, 3, 4, 5, 6, 7, 8];
        let c = ip("192.0.2.1");
        let t = 1_700_000_000;
        let sc = s.make(&cc, c, t);
        assert!(s.verify(&cc, &sc, c, t));
        assert!(s.verify(&cc, &sc, c, t + MAX_AGE));
        assert!(!s.verify(&cc, &sc, c, t + MAX_AGE + 1), "too old");
        assert!(s.verify(&cc, &sc, c, t - MAX_FUTURE), "a bit in the future");
        assert!(!s.verify(&cc, &sc, c, t - MAX_FUTURE - 1));
        assert!(!s.verify(&cc, &sc, ip("192.0.2.2"), t), "other client");
        assert!(!s.verify(&[9; 8], &sc, c, t), "other client cookie");
        assert!(
            s.verify(&cc, &sc, ip("::ffff:192.0.2.1"), t),
            "mapped address"
        );
        let mut bad = sc;
        bad[15] ^= 1;
        assert!(!s.verify(&cc, &bad, c, t));
        assert!(!s.verify(&cc, &sc[..12], c, t), "length");
        let mut v2 = sc;
        v2[0] = 2;
        assert!(!s.verify(&cc, &v2, c, t), "version");
    }

    #[test]
    fn rotation_accepts_the_previous_secret_and_fleets_share() {
        let old = Secrets::parse(SECRET).unwrap();
        let other_node = Secrets::parse(SECRET).unwrap();
        let cc = [7; 8];
        let c = ip("2001:db8::1");
        let t = 1_800_000_000;
        let sc = old.make(&cc, c, t);
        assert!(other_node.verify(&cc, &sc, c, t), "same secret, other node");
        let rotated =
            Secrets::parse(&format!("00112233445566778899aabbccddeeff\n{SECRET}\n")).unwrap();
        assert!(rotated.verify(&cc, &sc, c, t), "previous secret accepted");
        let fresh = rotated.make(&cc, c, t);
        assert_ne!(fresh, sc, "new cookies use the new secret");
        assert!(!old.verify(&cc, &fresh, c, t));
        let after = Secrets::parse("00112233445566778899aabbccddeeff").unwrap();
        assert!(!after.verify(&cc, &sc, c, t), "retired secret refused");
    }

    #[test]
    fn secret_file_errors() {
        assert_eq!(Secrets::parse("# nothing\n\n"), Err(SecretError::Empty));
        assert_eq!(Secrets::parse("abc"), Err(SecretError::Bad { line: 1 }));
        assert_eq!(
            Secrets::parse(&format!("{SECRET}\n{SECRET}\n{SECRET}")),
            Err(SecretError::TooMany { line: 3 })
        );
        assert!(
            format!("{:?}", Secrets::parse(SECRET).unwrap())
                .find("e5e9")
                .is_none()
        );
        assert_ne!(Secrets::random().current, Secrets::random().current);
    }
}
