//! A synthetic City-shaped database for the timing tests of `geo` and
//! `select`: 200k IPv4 /24s spread over the space plus 50k IPv6 /48s, ~5k
//! distinct records (country × a few cities), from a fixed seed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::{IpVersion, MmdbValue, MmdbWriter};
use crate::geo::{CountryCode, tables};

/// The database being built and the generator, which goes on to make the
/// addresses to look up.
pub(crate) struct Synthetic {
    pub(crate) writer: MmdbWriter,
    /// The inserted IPv6 /48s (high bits).
    pub(crate) v6_nets: Vec<u128>,
    x: u32,
}

impl Synthetic {
    /// Build it; `record(country, subdivision, (lat, lon))` makes each
    /// network's record in the caller's shape.
    pub(crate) fn new(
        record: impl Fn(&str, Option<&str>, Option<(f64, f64)>) -> MmdbValue,
    ) -> Synthetic {
        let countries: Vec<CountryCode> = tables::all_countries().collect();
        let mut writer = MmdbWriter::new("Bench-City", IpVersion::V6);
        writer.description("en", "bench").ipv4_aliases(true);
        let mut s = Synthetic {
            writer: MmdbWriter::new("unused", IpVersion::V6),
            v6_nets: Vec::new(),
            x: 12345,
        };
        for i in 0..200_000u32 {
            let r = s.next();
            let c = countries[(r % countries.len() as u32) as usize];
            let city_no = (r >> 16) % 20;
            let rec = record(
                c.as_str(),
                Some("AB"),
                Some((f64::from(city_no), f64::from(i % 7))),
            );
            let n = Ipv4Addr::from(s.next() & 0xffff_ff00);
            writer
                .insert(IpNet::new(IpAddr::V4(n), 24).unwrap(), &rec)
                .unwrap();
        }
        for _ in 0..50_000u32 {
            let r = s.next();
            let c = countries[(r % countries.len() as u32) as usize];
            let hi = (u128::from(0x2000_0000u32 | (s.next() & 0x0fff_ffff)) << 96)
                | (u128::from(s.next() & 0xffff) << 80);
            s.v6_nets.push(hi);
            writer
                .insert(
                    IpNet::new(IpAddr::V6(Ipv6Addr::from(hi)), 48).unwrap(),
                    &record(c.as_str(), None, None),
                )
                .unwrap();
        }
        s.writer = writer;
        s
    }

    /// The next number of the generator (xorshift32).
    pub(crate) fn next(&mut self) -> u32 {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 17;
        self.x ^= self.x << 5;
        self.x
    }

    /// A random IPv4 address.
    pub(crate) fn v4(&mut self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self.next()))
    }

    /// An IPv6 address: for even `i` inside an inserted /48, else random.
    pub(crate) fn v6(&mut self, i: usize) -> IpAddr {
        let hi = if i.is_multiple_of(2) {
            self.v6_nets[i % self.v6_nets.len()]
        } else {
            u128::from(0x2000_0000u32 | (self.next() & 0x0fff_ffff)) << 96
        };
        IpAddr::V6(Ipv6Addr::from(hi | u128::from(self.next())))
    }
}
