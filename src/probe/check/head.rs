//! Why hyper refused a response head, in the words health checks have
//! always used. hyper's parse errors name a kind ("invalid HTTP header
//! parsed"), not the line; the client's tap keeps the raw head bytes, and
//! this module finds the first offending line in them, with a quoted
//! snippet, the way the hand-written client before hyper reported it.
//!
//! Only called after hyper has failed: it explains, it never decides.

/// A snippet of peer bytes for an error message: at most 32 bytes, quoted.
pub(super) fn snippet(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(32)]).into_owned();
    format!("{s:?}")
}

/// The first line of `bytes`, without its line end.
pub(super) fn first_line(bytes: &[u8]) -> &[u8] {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Offset just past the blank line ending the head (CRLF or bare LF).
pub(super) fn find_head_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|&c| c == b'\n') {
        let nl = i + p;
        let next = &b[nl + 1..];
        if next.starts_with(b"\n") {
            return Some(nl + 2);
        }
        if next.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

/// The end of the final (non-1xx) head in `bytes`, if it is all there:
/// where a head that hyper found too large actually ended.
pub(super) fn final_head_end(bytes: &[u8]) -> Option<usize> {
    let mut start = 0;
    loop {
        let end = start + find_head_end(&bytes[start..])?;
        match parse_status_line(first_line(&bytes[start..end])) {
            Some(100 | 102..=199) => start = end,
            _ => return Some(end),
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The status code of `HTTP/1.x NNN[ reason]`, if the line is one.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    if !minor.is_ascii_digit() {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    if rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if rest.len() > 3 && rest[3] != b' ' {
        return None;
    }
    let code = u16::from(rest[0] - b'0') * 100
        + u16::from(rest[1] - b'0') * 10
        + u16::from(rest[2] - b'0');
    (100..=599).contains(&code).then_some(code)
}

/// What is wrong with the head(s) at the start of `bytes` (informational
/// heads are skipped), or `None` when nothing this module checks is wrong.
/// Only complete lines are judged: the peer may have been cut off.
pub(super) fn diagnose(bytes: &[u8]) -> Option<String> {
    let mut rest = bytes;
    loop {
        let end = find_head_end(rest);
        let head = &rest[..end.unwrap_or(rest.len())];
        let mut lines = head.split_inclusive(|&b| b == b'\n');
        let status_line = lines.next().map(strip_eol).unwrap_or_default();
        let Some(status) = parse_status_line(status_line) else {
            return Some(format!("malformed status line {}", snippet(status_line)));
        };
        let mut content_length = None;
        for line in lines {
            let Some(line) = line.strip_suffix(b"\n") else {
                break; // incomplete: not judged
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            if let Some(why) = header_line(line, &mut content_length) {
                return Some(why);
            }
        }
        match (status, end) {
            (100 | 102..=199, Some(end)) => rest = &rest[end..],
            _ => return None,
        }
    }
}

fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// What is wrong with one header line (without its line end).
fn header_line(line: &[u8], content_length: &mut Option<u64>) -> Option<String> {
    if line[0] == b' ' || line[0] == b'\t' {
        return Some("obsolete header line folding".to_string());
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Some(format!("malformed header line {}", snippet(line)));
    };
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Some(format!("malformed header name {}", snippet(name)));
    }
    let value = line[colon + 1..].trim_ascii();
    // hyper (httparse) refuses controls in values; the old client took them.
    if value.iter().any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
        return Some(format!("malformed header value {}", snippet(value)));
    }
    if name.eq_ignore_ascii_case(b"content-length") {
        for part in value.split(|&b| b == b',') {
            let part = part.trim_ascii();
            let Some(n) = std::str::from_utf8(part)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                return Some(format!("bad content-length {}", snippet(value)));
            };
            if content_length.is_some_and(|c| c != n) {
                return Some("conflicting content-length headers".to_string());
            }
            *content_length = Some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status_line(b"HTTP/1.1 404 Not Found here"), Some(404));
        for bad in [
            &b"HTTP/2 200 OK"[..],
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 2000 OK",
            b"HTTP/1.1  200 OK",
            b"http/1.1 200 OK",
            b"SSH-2.0-OpenSSH_9.6",
            b"HTTP/1.1 099 x",
            b"HTTP/1.1 600 x",
            b"",
        ] {
            assert_eq!(parse_status_line(bad), None, "{}", snippet(bad));
        }
    }

    #[test]
    fn head_ends() {
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n\r\nbody"), Some(19));
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\n\nbody"), Some(17));
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\nX: y\r\n"), None);
        let two = b"HTTP/1.1 103 Early\r\n\r\nHTTP/1.1 200 OK\r\nX: y\r\n\r\nbody";
        assert_eq!(final_head_end(two), Some(two.len() - 4));
        assert_eq!(final_head_end(b"HTTP/1.1 200 OK\r\nX: y"), None);
    }

    #[test]
    fn diagnoses() {
        let d = |b: &[u8]| diagnose(b);
        assert_eq!(d(b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n"), None);
        assert_eq!(
            d(b"garbage\r\n\r\n").unwrap(),
            "malformed status line \"garbage\""
        );
        assert_eq!(
            d(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n").unwrap(),
            "obsolete header line folding"
        );
        assert_eq!(
            d(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n").unwrap(),
            "malformed header line \"no colon here\""
        );
        assert_eq!(
            d(b"HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n").unwrap(),
            "malformed header name \"Bad Name\""
        );
        assert_eq!(
            d(b"HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n").unwrap(),
            "malformed header value \"a\\u{1}b\""
        );
        assert_eq!(
            d(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").unwrap(),
            "bad content-length \"-1\""
        );
        assert_eq!(
            d(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n").unwrap(),
            "conflicting content-length headers"
        );
        // Informational heads are skipped; an incomplete last line is not
        // judged.
        assert_eq!(
            d(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n").unwrap(),
            "malformed header name \"Bad Name\""
        );
        assert_eq!(d(b"HTTP/1.1 200 OK\r\nBad Na"), None);
    }
}
