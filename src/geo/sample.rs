//! Building a small MaxMind DB from a readable CSV file (the repository's
//! `geoip/sample.csv` → `geoip/sample.mmdb`).
//!
//! # CSV format
//!
//! Lines starting with `#` and blank lines are ignored. An optional header
//! line starts with `network`. Every other line has seven comma-separated
//! fields (the last, `asn`, may be omitted):
//!
//! ```text
//! network,continent,country,subdivision,latitude,longitude,asn
//! 81.2.69.0/24,EU,GB,GB-ENG,51.5142,-0.0931,64496
//! ```
//!
//! - `network`: an IPv4 or IPv6 CIDR (host bits are ignored);
//! - `continent`: `AF AN AS EU NA OC SA`, empty = derived from the country;
//! - `country`: ISO 3166-1 alpha-2, required;
//! - `subdivision`: ISO 3166-2 (`GB-ENG`) of that country, may be empty;
//! - `latitude`, `longitude`: degrees, both or neither (empty = the record
//!   has no `location`; readers use the country centroid);
//! - `asn`: autonomous system number, may be empty.
//!
//! The output uses the nested GeoLite2-City schema (`continent.code`,
//! `country.iso_code`, `subdivisions[0].iso_code` without the country
//! prefix, `location.latitude/longitude`), plus `autonomous_system_number`
//! in the same record when `asn` is set (GeoLite2-ASN's field name), in an
//! IPv6 tree with the usual IPv4 aliases. Later lines win where networks
//! overlap. The build epoch is fixed, so the same CSV always gives the same
//! bytes.

use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::mmdb_writer::{IpVersion, MmdbValue, MmdbWriteError, MmdbWriter};
use super::{Continent, CountryCode, Subdivision, tables};

/// Fixed `build_epoch` of generated databases (2025-01-01T00:00:00Z).
pub const SAMPLE_BUILD_EPOCH: u64 = 1_735_689_600;

/// `database_type` of generated databases.
pub const SAMPLE_DATABASE_TYPE: &str = "steerdns-Sample-City";

/// Errors building a database from CSV.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    /// The input could not be read.
    #[error("{}: cannot read: {source}", .path.display())]
    Read {
        /// The input file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{}:{line}: {msg}", .path.display())]
    Parse {
        /// The input file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// Building or writing the database failed.
    #[error(transparent)]
    Write(#[from] MmdbWriteError),
}

/// One parsed CSV row.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleRow {
    /// The network.
    pub network: IpNet,
    /// Continent (given or derived from the country).
    pub continent: Continent,
    /// Country.
    pub country: CountryCode,
    /// Subdivision, if any.
    pub subdivision: Option<Subdivision>,
    /// Latitude and longitude, if any.
    pub coords: Option<(f64, f64)>,
    /// ASN, if any.
    pub asn: Option<u32>,
}

/// Parse the CSV text (see the module docs). `path` is only used in errors.
pub fn parse_csv(text: &str, path: &Path) -> Result<Vec<SampleRow>, SampleError> {
    let mut rows = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("network,") {
            continue;
        }
        let err = |msg: String| SampleError::Parse {
            path: path.to_owned(),
            line: i + 1,
            msg,
        };
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 6 && f.len() != 7 {
            return Err(err(format!("expected 7 fields, found {}", f.len())));
        }
        let network: IpNet = f[0]
            .parse()
            .map_err(|e| err(format!("network {:?}: {e}", f[0])))?;
        let network = network.trunc();
        let country = CountryCode::parse(f[2]).map_err(|e| err(e.to_string()))?;
        let continent = if f[1].is_empty() {
            tables::continent_of(country)
                .ok_or_else(|| err(format!("no continent known for {country}")))?
        } else {
            Continent::from_code(f[1]).map_err(|e| err(e.to_string()))?
        };
        let subdivision = if f[3].is_empty() {
            None
        } else {
            let s = Subdivision::parse(f[3]).map_err(|e| err(e.to_string()))?;
            if s.country != country {
                return Err(err(format!("subdivision {s} is not in {country}")));
            }
            Some(s)
        };
        let num = |s: &str, what: &str, max: f64| -> Result<Option<f64>, SampleError> {
            if s.is_empty() {
                return Ok(None);
            }
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() && v.abs() <= max => Ok(Some(v)),
                _ => Err(err(format!("{what} {s:?} is not a number in ±{max}"))),
            }
        };
        let coords = match (num(f[4], "latitude", 90.0)?, num(f[5], "longitude", 180.0)?) {
            (Some(lat), Some(lon)) => Some((lat, lon)),
            (None, None) => None,
            _ => return Err(err("give both latitude and longitude, or neither".into())),
        };
        let asn = match f.get(6) {
            None | Some(&"") => None,
            Some(s) => Some(
                s.trim_start_matches("AS")
                    .parse::<u32>()
                    .map_err(|_| err(format!("asn {s:?} is not a 32-bit number")))?,
            ),
        };
        rows.push(SampleRow {
            network,
            continent,
            country,
            subdivision,
            coords,
            asn,
        });
    }
    Ok(rows)
}

/// The nested (GeoLite2-City-like) record of a row.
pub fn row_record(row: &SampleRow) -> MmdbValue {
    let mut m = vec![
        (
            "continent".to_owned(),
            MmdbValue::map([("code", MmdbValue::string(row.continent.code()))]),
        ),
        (
            "country".to_owned(),
            MmdbValue::map([("iso_code", MmdbValue::string(row.country.as_str()))]),
        ),
    ];
    if let Some((lat, lon)) = row.coords {
        m.push((
            "location".to_owned(),
            MmdbValue::map([
                ("latitude", MmdbValue::Double(lat)),
                ("longitude", MmdbValue::Double(lon)),
            ]),
        ));
    }
    if let Some(s) = row.subdivision {
        m.push((
            "subdivisions".to_owned(),
            MmdbValue::Array(vec![MmdbValue::map([(
                "iso_code",
                MmdbValue::string(s.code_str()),
            )])]),
        ));
    }
    if let Some(asn) = row.asn {
        m.push((
            "autonomous_system_number".to_owned(),
            MmdbValue::Uint32(asn),
        ));
    }
    MmdbValue::Map(m)
}

/// Read `input` (CSV, see the module docs) and write the MaxMind DB
/// `output`, deterministically. Returns the number of networks written.
pub fn build_from_csv(input: &Path, output: &Path) -> Result<usize, SampleError> {
    let text = std::fs::read_to_string(input).map_err(|source| SampleError::Read {
        path: input.to_owned(),
        source,
    })?;
    let rows = parse_csv(&text, input)?;
    let mut w = MmdbWriter::new(SAMPLE_DATABASE_TYPE, IpVersion::V6);
    w.description(
        "en",
        "steerdns sample GeoIP database (test data, not real geolocation)",
    )
    .language("en")
    .build_epoch(SAMPLE_BUILD_EPOCH)
    .ipv4_aliases(true);
    for row in &rows {
        w.insert(row.network, &row_record(row))?;
    }
    w.write_to(output)?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::{GeoDb, LocationSource};

    fn repo_file(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    #[test]
    fn parse_rows_and_errors() {
        let p = Path::new("t.csv");
        let rows = parse_csv(
            "# comment\nnetwork,continent,country,subdivision,latitude,longitude,asn\n\
             81.2.69.7/24,,GB,GB-ENG,51.5,-0.1,AS64496\n2001:218::/32,AS,JP,,,\n",
            p,
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].network.to_string(), "81.2.69.0/24");
        assert_eq!(rows[0].continent, Continent::EU);
        assert_eq!(rows[0].subdivision.unwrap().to_string(), "GB-ENG");
        assert_eq!(rows[0].asn, Some(64496));
        assert_eq!(rows[1].coords, None);
        assert_eq!(rows[1].asn, None);

        for (bad, needle) in [
            ("1.2.3.0/24,EU,ZZ,,,,", "unknown country code"),
            ("1.2.3.0/33,EU,GB,,,,", "network"),
            ("1.2.3.0/24,XX,GB,,,,", "continent"),
            ("1.2.3.0/24,EU,GB,US-CA,,,", "not in GB"),
            ("1.2.3.0/24,EU,GB,,51.5,,", "both latitude"),
            ("1.2.3.0/24,EU,GB,,91,0,", "latitude"),
            ("1.2.3.0/24,EU,GB", "expected 7 fields"),
        ] {
            let e = parse_csv(&format!("# x\n{bad}\n"), p)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("t.csv:2: "), "{e}");
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn missing_input_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = build_from_csv(&dir.path().join("nope.csv"), &dir.path().join("o.mmdb"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.csv"), "{e}");
    }

    #[test]
    fn committed_sample_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sample.mmdb");
        let n = build_from_csv(&repo_file("geoip/sample.csv"), &out).unwrap();
        assert!(n >= 9);
        let fresh = std::fs::read(&out).unwrap();
        let committed = std::fs::read(repo_file("geoip/sample.mmdb")).unwrap();
        let reader = maxminddb::Reader::from_source(&committed[..]).unwrap();
        reader.verify().unwrap();
        assert_eq!(reader.metadata().database_type, SAMPLE_DATABASE_TYPE);
        assert!(
            fresh == committed,
            "geoip/sample.mmdb is stale: run `cargo run --release -- geoip-build \
             --input geoip/sample.csv --output geoip/sample.mmdb`"
        );
    }

    #[test]
    fn sample_locations() {
        let db = GeoDb::open(Some(&repo_file("geoip/sample.mmdb")), None, vec![]).unwrap();
        let cases = [
            ("81.2.69.142", "EU", "GB", Some("GB-ENG")),
            ("89.160.20.112", "EU", "SE", None),
            ("216.160.83.56", "NA", "US", Some("US-WA")),
            ("200.160.0.8", "SA", "BR", None),
            ("175.16.199.1", "AS", "CN", None),
            ("203.2.218.214", "OC", "AU", None),
            ("196.216.2.1", "AF", "ZA", None),
            ("2001:218::1", "AS", "JP", None),
            ("2a02:d280::1", "EU", "CZ", None),
            ("2a02:d287:ffff::1", "EU", "CZ", None),
            ("::ffff:81.2.69.142", "EU", "GB", Some("GB-ENG")),
        ];
        for (ip, cont, cc, sub) in cases {
            let l = db.locate(ip.parse().unwrap());
            assert_eq!(l.source, LocationSource::Database, "{ip}");
            assert_eq!(l.continent.map(|c| c.code()), Some(cont), "{ip}");
            assert_eq!(
                l.country.map(|c| c.to_string()).as_deref(),
                Some(cc),
                "{ip}"
            );
            assert_eq!(l.subdivision.map(|s| s.to_string()).as_deref(), sub, "{ip}");
            assert!(l.coords.is_some(), "{ip}");
        }
        let l = db.locate("81.2.69.142".parse().unwrap());
        assert_eq!(l.scope, 24);
        let c = l.coords.unwrap();
        assert!((c.lat - 51.51).abs() < 0.1 && (c.lon + 0.09).abs() < 0.1);
        for ip in [
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
            "127.0.0.1",
            "::1",
            "8.8.8.8",
            "2a02:d288::1",
        ] {
            let l = db.locate(ip.parse().unwrap());
            assert_eq!(l.source, LocationSource::Unknown, "{ip}");
            assert_eq!(l.country, None, "{ip}");
        }
        let info = db.location_db_info().unwrap();
        assert_eq!(info.database_type, SAMPLE_DATABASE_TYPE);
        assert_eq!(info.build_epoch, SAMPLE_BUILD_EPOCH);
    }
}
