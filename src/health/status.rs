//! Sets of acceptable HTTP status codes, as written in the config.

use std::fmt;
use std::str::FromStr;

/// A set of HTTP status codes: a union of inclusive ranges.
///
/// Parsed from a comma-separated list whose items are a code (`200`), a range
/// (`301-302`) or a class (`2xx`). Codes are three digits, 100 to 599.
/// Examples: `"2xx"`, `"200,301-302"`, `"200-299,404"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<(u16, u16)>);

impl StatusSet {
    /// Parse a status set; the error says which item is wrong.
    pub fn parse(s: &str) -> Result<StatusSet, String> {
        let mut ranges = Vec::new();
        if s.trim().is_empty() {
            return Err("empty status set".to_string());
        }
        for item in s.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err(format!("empty item in status set {s:?}"));
            }
            ranges.push(parse_item(item).map_err(|e| format!("status {item:?}: {e}"))?);
        }
        Ok(StatusSet(ranges))
    }

    /// Whether `code` is in the set.
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= code && code <= hi)
    }
}

/// Any 2xx status.
impl Default for StatusSet {
    fn default() -> Self {
        StatusSet(vec![(200, 299)])
    }
}

impl FromStr for StatusSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StatusSet::parse(s)
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else if lo % 100 == 0 && hi == lo + 99 {
                write!(f, "{}xx", lo / 100)?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

fn parse_item(item: &str) -> Result<(u16, u16), String> {
    let b = item.as_bytes();
    if b.len() == 3 && b[1..].eq_ignore_ascii_case(b"xx") {
        return match b[0] {
            c @ b'1'..=b'5' => {
                let lo = u16::from(c - b'0') * 100;
                Ok((lo, lo + 99))
            }
            _ => Err("class must be 1xx to 5xx".to_string()),
        };
    }
    match item.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (parse_code(lo.trim())?, parse_code(hi.trim())?);
            if lo > hi {
                return Err(format!("range {lo}-{hi} is empty"));
            }
            Ok((lo, hi))
        }
        None => {
            let c = parse_code(item)?;
            Ok((c, c))
        }
    }
}

fn parse_code(s: &str) -> Result<u16, String> {
    if s.len() != 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a three-digit status code"));
    }
    let c: u16 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !(100..=599).contains(&c) {
        return Err(format!("{c} is outside 100-599"));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_inputs() {
        let s = StatusSet::parse("2xx").unwrap();
        assert!(s.contains(200) && s.contains(204) && s.contains(299));
        assert!(!s.contains(199) && !s.contains(300) && !s.contains(503));

        let s = StatusSet::parse("200,301-302").unwrap();
        assert!(s.contains(200) && s.contains(301) && s.contains(302));
        assert!(!s.contains(201) && !s.contains(300) && !s.contains(303));

        let s = StatusSet::parse(" 200-299 , 404 ").unwrap();
        assert!(s.contains(250) && s.contains(404));
        assert!(!s.contains(403) && !s.contains(405) && !s.contains(300));

        let s = StatusSet::parse("5XX").unwrap();
        assert!(s.contains(503) && !s.contains(499));

        assert!(StatusSet::default().contains(200));
        assert!(!StatusSet::default().contains(301));
    }

    #[test]
    fn display_round_trips() {
        for text in ["2xx", "200,301-302", "200-299,404", "1xx,5xx"] {
            let set = StatusSet::parse(text).unwrap();
            assert_eq!(set.to_string(), text.replace("200-299", "2xx"));
            assert_eq!(StatusSet::parse(&set.to_string()).unwrap(), set);
        }
    }

    #[test]
    fn rejects_bad_inputs() {
        for bad in [
            "", " ", ",", "200,", "2x", "6xx", "0xx", "xx", "20", "2000", "099", "600", "abc",
            "302-301", "200-", "-200", "200--300", "+200", "2 00", "200;300",
        ] {
            assert!(StatusSet::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let e = StatusSet::parse("200,700").unwrap_err();
        assert!(e.contains("700"), "{e}");
    }
}
