//! Geo location: MaxMind DB lookups, operator overrides, and the country tables.
//! This file holds the location model; [`GeoDb`] is in `geodb.rs`.
//!
//! This module depends on nothing else in the crate. The hot path calls
//! [`GeoDb::locate`], which must not allocate, lock, or do I/O.

use std::path::PathBuf;
use std::sync::Arc;

mod db;
mod geodb;
pub mod mmdb_writer;
pub mod partition;
pub mod sample;
pub mod tables;
pub mod trie;

pub use geodb::GeoDb;
use geodb::apply_record;
pub use partition::Partition;
pub use tables::{GeoParseError, centroid_of, continent_of};
pub use trie::{PrefixTrie, TrieMatch};

/// A continent, as the two-letter codes MaxMind uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Continent {
    /// Africa
    AF,
    /// Antarctica
    AN,
    /// Asia
    AS,
    /// Europe
    EU,
    /// North America
    NA,
    /// Oceania
    OC,
    /// South America
    SA,
}

/// ISO 3166-1 alpha-2 country code, upper case ASCII.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode(pub [u8; 2]);

/// ISO 3166-2 subdivision: the country plus up to three upper case ASCII
/// characters, zero padded (`US-CA` is `{country: US, code: *b"CA\0"}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subdivision {
    /// The country the subdivision belongs to.
    pub country: CountryCode,
    /// The subdivision part after the dash, zero padded.
    pub code: [u8; 3],
}

/// Latitude and longitude in degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coords {
    /// Degrees north.
    pub lat: f32,
    /// Degrees east.
    pub lon: f32,
}

/// Where a [`Location`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LocationSource {
    /// Nothing known about the address.
    #[default]
    Unknown,
    /// Found in the location database.
    Database,
    /// Matched an operator override from the config.
    Override,
}

/// A located client: small and `Copy`, so the hot path passes it by value.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Location {
    /// Continent (from the database, else derived from the country).
    pub continent: Option<Continent>,
    /// Country.
    pub country: Option<CountryCode>,
    /// First-level subdivision, when the database has one.
    pub subdivision: Option<Subdivision>,
    /// Autonomous system number, when an ASN database is configured.
    pub asn: Option<u32>,
    /// Coordinates (from the database, else the country centroid).
    pub coords: Option<Coords>,
    /// Where continent/country/subdivision/coords came from.
    pub source: LocationSource,
    /// Longest prefix length (bits, in the address family of the lookup)
    /// over which continent/country/subdivision/coords stay the same.
    ///
    /// Precisely: every address in `ip/scope` gets the same
    /// continent/country/subdivision/coords/source. It is as short as the
    /// database tree and the override trie can prove (not always the
    /// shortest possible: equal neighbouring networks are not merged). For
    /// an IPv4-mapped IPv6 query it is 96 + the IPv4 scope.
    pub scope: u8,
    /// Same as `scope` for the `asn` field.
    pub asn_scope: u8,
}

/// An operator override: addresses in `net` are at `location`.
#[derive(Clone, Debug)]
pub struct LocationOverride {
    /// The network.
    pub net: ipnet::IpNet,
    /// Location fields; `scope`/`source` are filled in by lookups.
    pub location: Location,
}

/// Errors opening or reading geo databases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeoError {
    /// The file could not be opened or read.
    #[error("{}: cannot open GeoIP database: {source}", .path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a valid MaxMind DB.
    #[error("{}: not a valid MaxMind DB file: {msg}", .path.display())]
    Invalid {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

/// Summary of an opened database, for logs and status pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbInfo {
    /// The file.
    pub path: PathBuf,
    /// Metadata `database_type` (e.g. `GeoLite2-City`).
    pub database_type: String,
    /// Metadata `build_epoch` (seconds since 1970).
    pub build_epoch: u64,
    /// Networks with data.
    pub networks: usize,
    /// Distinct records (pre-decoded at open).
    pub records: usize,
    /// Whether any record has an `autonomous_system_number`.
    pub has_asn: bool,
}

/// The ASN partition and the AS numbers it keeps.
type AsnPartition = (Box<[u32]>, Arc<Partition>);

/// What to open: the databases and overrides of a `[geoip]` section.
#[derive(Clone, Debug, Default)]
pub struct GeoSpec {
    /// Location databases, consulted in order: an address is located by the
    /// first one with a location record for it (an IPv4 and an IPv6 file,
    /// as ip-location-db ships them).
    pub location: Vec<PathBuf>,
    /// The ASN database.
    pub asn: Option<PathBuf>,
    /// Operator overrides.
    pub overrides: Vec<LocationOverride>,
    /// Decode every record at open (servers); `false` decodes per lookup
    /// (one-shot `explain`).
    pub predecode: bool,
}

#[cfg(test)]
pub(crate) mod tests;
