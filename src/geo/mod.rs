//! Geo location: MaxMind DB lookups, operator overrides, and the country tables.
//!
//! This module depends on nothing else in the crate. The hot path calls
//! [`GeoDb::locate`], which must not allocate, lock, or do I/O.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

mod db;
pub mod mmdb_writer;
pub mod sample;
pub mod tables;
pub mod trie;

use db::{MmdbTable, Record};
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

/// The geo lookup service: location database, optional ASN database, overrides.
///
/// `Send + Sync`, immutable after [`GeoDb::open`]; reloading means opening a
/// new `GeoDb` and swapping it in. Databases are memory-mapped: replace a
/// database file by renaming a new file over it, never by rewriting it in
/// place.
#[derive(Debug)]
pub struct GeoDb {
    location: Option<MmdbTable>,
    asn: Option<MmdbTable>,
    /// Use the location database's `autonomous_system_number` fields when no
    /// ASN database is configured.
    asn_from_location: bool,
    overrides: PrefixTrie<Location>,
    overrides_have_asn: bool,
}

impl GeoDb {
    /// Open the databases (memory-mapped) and compile the overrides.
    ///
    /// Every distinct record is decoded once here, so [`GeoDb::locate`] only
    /// walks the search tree. Both the nested (GeoIP2/GeoLite2, DB-IP) and the
    /// flat (ip-location-db) schemas are understood, per record. When
    /// `asn_db` is `None` but the location database has
    /// `autonomous_system_number` fields, those are used.
    ///
    /// Overrides: missing `continent` and `coords` are derived from the
    /// country (like database records); a missing `country` is taken from
    /// `subdivision`; `asn: Some` overrides the ASN database too. IPv4-mapped
    /// IPv6 networks (`::ffff:a.b.c.d/n`, n ≥ 96) are treated as IPv4. When
    /// two overrides have the same network, the later one wins.
    ///
    /// Errors: [`GeoError::Open`] when a file cannot be read,
    /// [`GeoError::Invalid`] when it is not a valid MaxMind DB, or has data
    /// but none of the fields its role needs (location fields for
    /// `location_db`, `autonomous_system_number` for `asn_db`).
    pub fn open(
        location_db: Option<&Path>,
        asn_db: Option<&Path>,
        overrides: Vec<LocationOverride>,
    ) -> Result<GeoDb, GeoError> {
        let location = location_db.map(MmdbTable::open).transpose()?;
        let asn = asn_db.map(MmdbTable::open).transpose()?;
        // A database with data but none of the fields we need is almost
        // certainly the wrong file (say, the ASN database as `database`).
        if let Some(t) = &location
            && t.networks() > 0
            && !t.has_location()
        {
            return Err(GeoError::Invalid {
                path: t.path().to_owned(),
                msg: format!(
                    "no record has a continent, country or coordinates \
                     (database_type {:?}); is this an ASN database?",
                    t.database_type()
                ),
            });
        }
        if let Some(t) = &asn
            && t.networks() > 0
            && !t.has_asn()
        {
            return Err(GeoError::Invalid {
                path: t.path().to_owned(),
                msg: format!(
                    "no record has an autonomous_system_number (database_type {:?})",
                    t.database_type()
                ),
            });
        }
        let asn_from_location = asn.is_none() && location.as_ref().is_some_and(MmdbTable::has_asn);
        let mut trie = PrefixTrie::new();
        let mut overrides_have_asn = false;
        for o in overrides {
            let mut loc = o.location;
            if loc.country.is_none() {
                loc.country = loc.subdivision.map(|s| s.country);
            }
            if loc.continent.is_none() {
                loc.continent = loc.country.and_then(tables::continent_of);
            }
            if loc.coords.is_none() {
                loc.coords = loc.country.and_then(tables::centroid_of);
            }
            loc.source = LocationSource::Override;
            loc.scope = 0;
            loc.asn_scope = 0;
            overrides_have_asn |= loc.asn.is_some();
            trie.insert(unmap_net(o.net), loc);
        }
        Ok(GeoDb {
            location,
            asn,
            asn_from_location,
            overrides: trie,
            overrides_have_asn,
        })
    }

    /// Locate an address. Never fails: unknown addresses give a `Location`
    /// with `source == Unknown` and a scope that is still correct.
    ///
    /// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are located as IPv4;
    /// their scopes stay in IPv6 terms (96 + the IPv4 scope), so
    /// `ip/scope` is always a network of the queried family. No allocation,
    /// no locks.
    #[inline]
    pub fn locate(&self, ip: IpAddr) -> Location {
        let (ip, extra) = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), 96u8),
                None => (ip, 0),
            },
            IpAddr::V4(_) => (ip, 0),
        };
        let m = self.overrides.lookup(ip);
        let mut db: Option<(Option<Record>, u8)> = None;
        let mut loc = match m.value {
            Some(o) => {
                let mut loc = *o;
                loc.scope = m.safe_scope;
                loc
            }
            None => {
                let mut loc = Location {
                    scope: m.safe_scope,
                    ..Location::default()
                };
                if let Some(table) = &self.location {
                    let (rec, scope) = table.lookup(ip);
                    db = Some((rec, scope));
                    // The result is constant on ip/scope for the database and
                    // on ip/safe_scope for the overrides; the intersection
                    // of two prefixes of one address is the longer one.
                    loc.scope = loc.scope.max(scope);
                    if let Some(r) = rec.filter(Record::has_location) {
                        loc.continent = r.continent;
                        loc.country = r.country;
                        loc.subdivision = r.subdivision;
                        loc.coords = r.coords;
                        loc.source = LocationSource::Database;
                    }
                }
                loc.asn = None;
                loc
            }
        };

        // ASN: an override with an ASN wins; else the ASN database (or the
        // location database's ASN fields).
        match m.value.and_then(|o| o.asn) {
            Some(asn) => {
                loc.asn = Some(asn);
                loc.asn_scope = m.safe_scope;
            }
            None => {
                let (asn, scope) = if let Some(table) = &self.asn {
                    let (rec, scope) = table.lookup(ip);
                    (rec.and_then(|r| r.asn), scope)
                } else if self.asn_from_location {
                    let (rec, scope) = match (db, &self.location) {
                        (Some(d), _) => d,
                        (None, Some(table)) => table.lookup(ip),
                        (None, None) => (None, 0),
                    };
                    (rec.and_then(|r| r.asn), scope)
                } else {
                    (None, 0)
                };
                loc.asn = asn;
                loc.asn_scope = if self.overrides_have_asn {
                    scope.max(m.safe_scope)
                } else {
                    scope
                };
            }
        }
        loc.scope += extra;
        loc.asn_scope += extra;
        loc
    }

    /// The location database, if one is configured.
    pub fn location_db_info(&self) -> Option<DbInfo> {
        self.location.as_ref().map(info)
    }

    /// The ASN database, if one is configured.
    pub fn asn_db_info(&self) -> Option<DbInfo> {
        self.asn.as_ref().map(info)
    }

    /// Number of overrides compiled.
    pub fn override_count(&self) -> usize {
        self.overrides.len()
    }
}

fn info(t: &MmdbTable) -> DbInfo {
    DbInfo {
        path: t.path().to_owned(),
        database_type: t.database_type().to_owned(),
        build_epoch: t.build_epoch(),
        networks: t.networks(),
        records: t.records(),
        has_asn: t.has_asn(),
    }
}

/// `::ffff:a.b.c.d/n` with n ≥ 96 as the IPv4 network `a.b.c.d/(n-96)`.
fn unmap_net(net: IpNet) -> IpNet {
    if let IpNet::V6(n) = net
        && n.prefix_len() >= 96
        && let Some(v4) = n.network().to_ipv4_mapped()
        && let Ok(v4net) = ipnet::Ipv4Net::new(v4, n.prefix_len() - 96)
    {
        return IpNet::V4(v4net);
    }
    net
}

#[cfg(test)]
pub(crate) mod tests;
