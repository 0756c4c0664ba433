//! Geo location: MaxMind DB lookups, operator overrides, and the country tables.
//!
//! This module depends on nothing else in the crate. The hot path calls
//! [`GeoDb::locate`], which must not allocate, lock, or do I/O.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

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

/// The geo lookup service: location database, optional ASN database, overrides.
pub struct GeoDb {
    _private: (),
}

impl GeoDb {
    /// Open the databases (memory-mapped) and compile the overrides.
    pub fn open(
        location_db: Option<&Path>,
        asn_db: Option<&Path>,
        overrides: Vec<LocationOverride>,
    ) -> Result<GeoDb, GeoError> {
        let _ = (location_db, asn_db, overrides);
        todo!("geo helper")
    }

    /// Locate an address. Never fails: unknown addresses give a `Location`
    /// with `source == Unknown` and a scope that is still correct.
    pub fn locate(&self, ip: IpAddr) -> Location {
        let _ = ip;
        todo!("geo helper")
    }
}

pub mod mmdb_writer;
pub mod tables;
pub mod trie;
