//! Built-in country tables: every ISO 3166-1 alpha-2 country (plus `XK`,
//! Kosovo, which GeoIP databases use) with its continent (GeoNames/MaxMind
//! convention) and an approximate centroid, and the parsers for operator
//! input (`Continent::from_code`, `CountryCode::parse`, `Subdivision::parse`).
//!
//! Centroids are approximate (about a degree); they are a fallback for
//! databases that carry no coordinates, good enough for "nearest site"
//! decisions between continents and large countries.

use super::{Continent, Coords, CountryCode, Subdivision};
use Continent::{AF, AN, AS, EU, NA, OC, SA};

/// Errors parsing operator-supplied continent, country and subdivision codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GeoParseError {
    /// Not one of AF, AN, AS, EU, NA, OC, SA.
    #[error("unknown continent code {0:?} (expected one of AF, AN, AS, EU, NA, OC, SA)")]
    Continent(String),
    /// Not two ASCII letters.
    #[error("invalid country code {0:?} (expected an ISO 3166-1 alpha-2 code such as \"US\")")]
    CountryFormat(String),
    /// Two letters, but not an assigned ISO 3166-1 alpha-2 code.
    #[error("unknown country code {0:?} (not an ISO 3166-1 alpha-2 country)")]
    UnknownCountry(String),
    /// Not `CC-XXX` with a known country and 1 to 3 letters or digits.
    #[error(
        "invalid subdivision code {0:?} (expected an ISO 3166-2 code such as \"US-CA\" or \"GB-ENG\")"
    )]
    Subdivision(String),
}

/// One row of the country table.
struct CountryInfo {
    code: [u8; 2],
    continent: Continent,
    lat: f32,
    lon: f32,
}

const fn c(code: &[u8; 2], continent: Continent, lat: f32, lon: f32) -> CountryInfo {
    CountryInfo {
        code: *code,
        continent,
        lat,
        lon,
    }
}

/// Sorted by code (checked by a unit test), so lookups binary search.
static COUNTRIES: [CountryInfo; 250] = [
    c(b"AD", EU, 42.55, 1.58),
    c(b"AE", AS, 23.90, 54.30),
    c(b"AF", AS, 33.94, 67.71),
    c(b"AG", NA, 17.07, -61.80),
    c(b"AI", NA, 18.22, -63.05),
    c(b"AL", EU, 41.15, 20.17),
    c(b"AM", AS, 40.07, 45.04),
    c(b"AO", AF, -11.20, 17.87),
    c(b"AQ", AN, -75.00, 0.00),
    c(b"AR", SA, -38.42, -63.62),
    c(b"AS", OC, -14.27, -170.13),
    c(b"AT", EU, 47.52, 14.55),
    c(b"AU", OC, -25.27, 133.78),
    c(b"AW", NA, 12.52, -69.97),
    c(b"AX", EU, 60.18, 19.92),
    c(b"AZ", AS, 40.14, 47.58),
    c(b"BA", EU, 43.92, 17.68),
    c(b"BB", NA, 13.19, -59.54),
    c(b"BD", AS, 23.68, 90.36),
    c(b"BE", EU, 50.50, 4.47),
    c(b"BF", AF, 12.24, -1.56),
    c(b"BG", EU, 42.73, 25.49),
    c(b"BH", AS, 26.07, 50.56),
    c(b"BI", AF, -3.37, 29.92),
    c(b"BJ", AF, 9.31, 2.32),
    c(b"BL", NA, 17.90, -62.83),
    c(b"BM", NA, 32.32, -64.76),
    c(b"BN", AS, 4.54, 114.73),
    c(b"BO", SA, -16.29, -63.59),
    c(b"BQ", NA, 12.18, -68.24),
    c(b"BR", SA, -14.24, -51.93),
    c(b"BS", NA, 25.03, -77.40),
    c(b"BT", AS, 27.51, 90.43),
    c(b"BV", AN, -54.42, 3.41),
    c(b"BW", AF, -22.33, 24.68),
    c(b"BY", EU, 53.71, 27.95),
    c(b"BZ", NA, 17.19, -88.50),
    c(b"CA", NA, 56.13, -106.35),
    c(b"CC", AS, -12.16, 96.87),
    c(b"CD", AF, -4.04, 21.76),
    c(b"CF", AF, 6.61, 20.94),
    c(b"CG", AF, -0.23, 15.83),
    c(b"CH", EU, 46.82, 8.23),
    c(b"CI", AF, 7.54, -5.55),
    c(b"CK", OC, -21.24, -159.78),
    c(b"CL", SA, -35.68, -71.54),
    c(b"CM", AF, 7.37, 12.35),
    c(b"CN", AS, 35.86, 104.20),
    c(b"CO", SA, 4.57, -74.30),
    c(b"CR", NA, 9.75, -83.75),
    c(b"CU", NA, 21.52, -77.78),
    c(b"CV", AF, 16.00, -24.01),
    c(b"CW", NA, 12.17, -68.99),
    c(b"CX", AS, -10.45, 105.69),
    c(b"CY", EU, 35.13, 33.43),
    c(b"CZ", EU, 49.82, 15.47),
    c(b"DE", EU, 51.17, 10.45),
    c(b"DJ", AF, 11.83, 42.59),
    c(b"DK", EU, 56.26, 9.50),
    c(b"DM", NA, 15.41, -61.37),
    c(b"DO", NA, 18.74, -70.16),
    c(b"DZ", AF, 28.03, 1.66),
    c(b"EC", SA, -1.83, -78.18),
    c(b"EE", EU, 58.60, 25.01),
    c(b"EG", AF, 26.82, 30.80),
    c(b"EH", AF, 24.22, -12.89),
    c(b"ER", AF, 15.18, 39.78),
    c(b"ES", EU, 40.46, -3.75),
    c(b"ET", AF, 9.15, 40.49),
    c(b"FI", EU, 61.92, 25.75),
    c(b"FJ", OC, -16.58, 179.41),
    c(b"FK", SA, -51.80, -59.52),
    c(b"FM", OC, 7.43, 150.55),
    c(b"FO", EU, 61.89, -6.91),
    c(b"FR", EU, 46.23, 2.21),
    c(b"GA", AF, -0.80, 11.61),
    c(b"GB", EU, 55.38, -3.44),
    c(b"GD", NA, 12.26, -61.60),
    c(b"GE", AS, 42.32, 43.36),
    c(b"GF", SA, 3.93, -53.13),
    c(b"GG", EU, 49.47, -2.59),
    c(b"GH", AF, 7.95, -1.02),
    c(b"GI", EU, 36.14, -5.35),
    c(b"GL", NA, 71.71, -42.60),
    c(b"GM", AF, 13.44, -15.31),
    c(b"GN", AF, 9.95, -9.70),
    c(b"GP", NA, 16.25, -61.58),
    c(b"GQ", AF, 1.65, 10.27),
    c(b"GR", EU, 39.07, 21.82),
    c(b"GS", AN, -54.43, -36.59),
    c(b"GT", NA, 15.78, -90.23),
    c(b"GU", OC, 13.44, 144.79),
    c(b"GW", AF, 11.80, -15.18),
    c(b"GY", SA, 4.86, -58.93),
    c(b"HK", AS, 22.40, 114.11),
    c(b"HM", AN, -53.08, 73.50),
    c(b"HN", NA, 15.20, -86.24),
    c(b"HR", EU, 45.10, 15.20),
    c(b"HT", NA, 18.97, -72.29),
    c(b"HU", EU, 47.16, 19.50),
    c(b"ID", AS, -0.79, 113.92),
    c(b"IE", EU, 53.41, -8.24),
    c(b"IL", AS, 31.05, 34.85),
    c(b"IM", EU, 54.24, -4.55),
    c(b"IN", AS, 20.59, 78.96),
    c(b"IO", AS, -6.34, 71.88),
    c(b"IQ", AS, 33.22, 43.68),
    c(b"IR", AS, 32.43, 53.69),
    c(b"IS", EU, 64.96, -19.02),
    c(b"IT", EU, 41.87, 12.57),
    c(b"JE", EU, 49.21, -2.13),
    c(b"JM", NA, 18.11, -77.30),
    c(b"JO", AS, 30.59, 36.24),
    c(b"JP", AS, 36.20, 138.25),
    c(b"KE", AF, -0.02, 37.91),
    c(b"KG", AS, 41.20, 74.77),
    c(b"KH", AS, 12.57, 104.99),
    c(b"KI", OC, 1.87, -157.36),
    c(b"KM", AF, -11.88, 43.87),
    c(b"KN", NA, 17.36, -62.78),
    c(b"KP", AS, 40.34, 127.51),
    c(b"KR", AS, 35.91, 127.77),
    c(b"KW", AS, 29.31, 47.48),
    c(b"KY", NA, 19.51, -80.57),
    c(b"KZ", AS, 48.02, 66.92),
    c(b"LA", AS, 19.86, 102.50),
    c(b"LB", AS, 33.85, 35.86),
    c(b"LC", NA, 13.91, -60.98),
    c(b"LI", EU, 47.17, 9.56),
    c(b"LK", AS, 7.87, 80.77),
    c(b"LR", AF, 6.43, -9.43),
    c(b"LS", AF, -29.61, 28.23),
    c(b"LT", EU, 55.17, 23.88),
    c(b"LU", EU, 49.82, 6.13),
    c(b"LV", EU, 56.88, 24.60),
    c(b"LY", AF, 26.34, 17.23),
    c(b"MA", AF, 31.79, -7.09),
    c(b"MC", EU, 43.74, 7.42),
    c(b"MD", EU, 47.41, 28.37),
    c(b"ME", EU, 42.71, 19.37),
    c(b"MF", NA, 18.08, -63.05),
    c(b"MG", AF, -18.77, 46.87),
    c(b"MH", OC, 7.13, 171.18),
    c(b"MK", EU, 41.61, 21.75),
    c(b"ML", AF, 17.57, -4.00),
    c(b"MM", AS, 21.91, 95.96),
    c(b"MN", AS, 46.86, 103.85),
    c(b"MO", AS, 22.20, 113.54),
    c(b"MP", OC, 17.33, 145.38),
    c(b"MQ", NA, 14.64, -61.02),
    c(b"MR", AF, 21.01, -10.94),
    c(b"MS", NA, 16.74, -62.19),
    c(b"MT", EU, 35.94, 14.38),
    c(b"MU", AF, -20.35, 57.55),
    c(b"MV", AS, 3.20, 73.22),
    c(b"MW", AF, -13.25, 34.30),
    c(b"MX", NA, 23.63, -102.55),
    c(b"MY", AS, 4.21, 101.98),
    c(b"MZ", AF, -18.67, 35.53),
    c(b"NA", AF, -22.96, 18.49),
    c(b"NC", OC, -20.90, 165.62),
    c(b"NE", AF, 17.61, 8.08),
    c(b"NF", OC, -29.04, 167.95),
    c(b"NG", AF, 9.08, 8.68),
    c(b"NI", NA, 12.87, -85.21),
    c(b"NL", EU, 52.13, 5.29),
    c(b"NO", EU, 60.47, 8.47),
    c(b"NP", AS, 28.39, 84.12),
    c(b"NR", OC, -0.52, 166.93),
    c(b"NU", OC, -19.05, -169.87),
    c(b"NZ", OC, -40.90, 174.89),
    c(b"OM", AS, 21.51, 55.92),
    c(b"PA", NA, 8.54, -80.78),
    c(b"PE", SA, -9.19, -75.02),
    c(b"PF", OC, -17.68, -149.41),
    c(b"PG", OC, -6.31, 143.96),
    c(b"PH", AS, 12.88, 121.77),
    c(b"PK", AS, 30.38, 69.35),
    c(b"PL", EU, 51.92, 19.15),
    c(b"PM", NA, 46.94, -56.27),
    c(b"PN", OC, -24.70, -127.44),
    c(b"PR", NA, 18.22, -66.59),
    c(b"PS", AS, 31.95, 35.23),
    c(b"PT", EU, 39.40, -8.22),
    c(b"PW", OC, 7.51, 134.58),
    c(b"PY", SA, -23.44, -58.44),
    c(b"QA", AS, 25.35, 51.18),
    c(b"RE", AF, -21.12, 55.54),
    c(b"RO", EU, 45.94, 24.97),
    c(b"RS", EU, 44.02, 21.01),
    c(b"RU", EU, 61.52, 105.32),
    c(b"RW", AF, -1.94, 29.87),
    c(b"SA", AS, 23.89, 45.08),
    c(b"SB", OC, -9.65, 160.16),
    c(b"SC", AF, -4.68, 55.49),
    c(b"SD", AF, 12.86, 30.22),
    c(b"SE", EU, 60.13, 18.64),
    c(b"SG", AS, 1.35, 103.82),
    c(b"SH", AF, -15.96, -5.71),
    c(b"SI", EU, 46.15, 14.99),
    c(b"SJ", EU, 77.55, 23.67),
    c(b"SK", EU, 48.67, 19.70),
    c(b"SL", AF, 8.46, -11.78),
    c(b"SM", EU, 43.94, 12.46),
    c(b"SN", AF, 14.50, -14.45),
    c(b"SO", AF, 5.15, 46.20),
    c(b"SR", SA, 3.92, -56.03),
    c(b"SS", AF, 6.88, 31.31),
    c(b"ST", AF, 0.19, 6.61),
    c(b"SV", NA, 13.79, -88.90),
    c(b"SX", NA, 18.04, -63.05),
    c(b"SY", AS, 34.80, 39.00),
    c(b"SZ", AF, -26.52, 31.47),
    c(b"TC", NA, 21.69, -71.80),
    c(b"TD", AF, 15.45, 18.73),
    c(b"TF", AN, -49.28, 69.35),
    c(b"TG", AF, 8.62, 0.82),
    c(b"TH", AS, 15.87, 100.99),
    c(b"TJ", AS, 38.86, 71.28),
    c(b"TK", OC, -8.97, -171.86),
    c(b"TL", OC, -8.87, 125.73),
    c(b"TM", AS, 38.97, 59.56),
    c(b"TN", AF, 33.89, 9.54),
    c(b"TO", OC, -21.18, -175.20),
    c(b"TR", AS, 38.96, 35.24),
    c(b"TT", NA, 10.69, -61.22),
    c(b"TV", OC, -7.11, 177.65),
    c(b"TW", AS, 23.70, 120.96),
    c(b"TZ", AF, -6.37, 34.89),
    c(b"UA", EU, 48.38, 31.17),
    c(b"UG", AF, 1.37, 32.29),
    c(b"UM", OC, 19.28, 166.65),
    c(b"US", NA, 37.09, -95.71),
    c(b"UY", SA, -32.52, -55.77),
    c(b"UZ", AS, 41.38, 64.59),
    c(b"VA", EU, 41.90, 12.45),
    c(b"VC", NA, 12.98, -61.29),
    c(b"VE", SA, 6.42, -66.59),
    c(b"VG", NA, 18.42, -64.64),
    c(b"VI", NA, 18.34, -64.90),
    c(b"VN", AS, 14.06, 108.28),
    c(b"VU", OC, -15.38, 166.96),
    c(b"WF", OC, -13.77, -177.16),
    c(b"WS", OC, -13.76, -172.10),
    c(b"XK", EU, 42.60, 20.90),
    c(b"YE", AS, 15.55, 48.52),
    c(b"YT", AF, -12.83, 45.17),
    c(b"ZA", AF, -30.56, 22.94),
    c(b"ZM", AF, -13.13, 27.85),
    c(b"ZW", AF, -19.02, 29.15),
];

fn find(cc: CountryCode) -> Option<&'static CountryInfo> {
    COUNTRIES
        .binary_search_by(|row| row.code.cmp(&cc.0))
        .ok()
        .map(|i| &COUNTRIES[i])
}

/// The continent of a country, `None` for codes not in the table.
pub fn continent_of(cc: CountryCode) -> Option<Continent> {
    find(cc).map(|row| row.continent)
}

/// The approximate centroid of a country, `None` for codes not in the table.
pub fn centroid_of(cc: CountryCode) -> Option<Coords> {
    find(cc).map(|row| Coords {
        lat: row.lat,
        lon: row.lon,
    })
}

/// Whether `cc` is in the built-in table (ISO 3166-1 alpha-2 plus `XK`).
pub fn is_known_country(cc: CountryCode) -> bool {
    find(cc).is_some()
}

/// All country codes of the built-in table, sorted.
pub fn all_countries() -> impl Iterator<Item = CountryCode> {
    COUNTRIES.iter().map(|row| CountryCode(row.code))
}

impl Continent {
    /// All continents.
    pub const ALL: [Continent; 7] = [
        Continent::AF,
        Continent::AN,
        Continent::AS,
        Continent::EU,
        Continent::NA,
        Continent::OC,
        Continent::SA,
    ];

    /// Parse a two-letter continent code (`"EU"`, case-insensitive).
    pub fn from_code(s: &str) -> Result<Continent, GeoParseError> {
        match s.as_bytes() {
            [a, b] => match [a.to_ascii_uppercase(), b.to_ascii_uppercase()] {
                [b'A', b'F'] => Ok(Continent::AF),
                [b'A', b'N'] => Ok(Continent::AN),
                [b'A', b'S'] => Ok(Continent::AS),
                [b'E', b'U'] => Ok(Continent::EU),
                [b'N', b'A'] => Ok(Continent::NA),
                [b'O', b'C'] => Ok(Continent::OC),
                [b'S', b'A'] => Ok(Continent::SA),
                _ => Err(GeoParseError::Continent(s.to_owned())),
            },
            _ => Err(GeoParseError::Continent(s.to_owned())),
        }
    }

    /// The two-letter code (`"EU"`).
    pub fn code(self) -> &'static str {
        match self {
            Continent::AF => "AF",
            Continent::AN => "AN",
            Continent::AS => "AS",
            Continent::EU => "EU",
            Continent::NA => "NA",
            Continent::OC => "OC",
            Continent::SA => "SA",
        }
    }
}

impl std::fmt::Display for Continent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl CountryCode {
    /// Parse an ISO 3166-1 alpha-2 code for operator input (case-insensitive).
    /// Codes that are not in the built-in table are rejected.
    pub fn parse(s: &str) -> Result<CountryCode, GeoParseError> {
        let cc = CountryCode::from_bytes_lenient(s.as_bytes())
            .ok_or_else(|| GeoParseError::CountryFormat(s.to_owned()))?;
        if is_known_country(cc) {
            Ok(cc)
        } else {
            Err(GeoParseError::UnknownCountry(s.to_owned()))
        }
    }

    /// Two ASCII letters (any case) as a code, without checking the table.
    /// Used for database values, which may carry codes newer than the table.
    pub fn from_bytes_lenient(b: &[u8]) -> Option<CountryCode> {
        match b {
            [x, y] if x.is_ascii_alphabetic() && y.is_ascii_alphabetic() => Some(CountryCode([
                x.to_ascii_uppercase(),
                y.to_ascii_uppercase(),
            ])),
            _ => None,
        }
    }

    /// The code as a string slice (`"US"`).
    pub fn as_str(&self) -> &str {
        // Constructors only store ASCII letters; fall back to "??" otherwise.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl std::fmt::Display for CountryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Subdivision {
    /// Parse an ISO 3166-2 code such as `"US-CA"` or `"GB-ENG"`
    /// (case-insensitive). The country must be known; the part after the
    /// dash is 1 to 3 ASCII letters or digits.
    pub fn parse(s: &str) -> Result<Subdivision, GeoParseError> {
        let err = || GeoParseError::Subdivision(s.to_owned());
        let (cc, sub) = s.split_once('-').ok_or_else(err)?;
        let country = CountryCode::parse(cc).map_err(|_| err())?;
        Subdivision::from_parts(country, sub.as_bytes()).ok_or_else(err)
    }

    /// Build from a country and the part after the dash (1 to 3 ASCII
    /// letters or digits, any case), without checking the country table.
    pub fn from_parts(country: CountryCode, sub: &[u8]) -> Option<Subdivision> {
        if sub.is_empty() || sub.len() > 3 || !sub.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        let mut code = [0u8; 3];
        for (dst, src) in code.iter_mut().zip(sub) {
            *dst = src.to_ascii_uppercase();
        }
        Some(Subdivision { country, code })
    }

    /// The part after the dash (`"CA"` for `US-CA`).
    pub fn code_str(&self) -> &str {
        let len = self.code.iter().position(|&b| b == 0).unwrap_or(3);
        std::str::from_utf8(&self.code[..len]).unwrap_or("?")
    }
}

impl std::fmt::Display for Subdivision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.country, self.code_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_complete() {
        for pair in COUNTRIES.windows(2) {
            assert!(pair[0].code < pair[1].code, "{:?}", pair[1].code);
        }
        // 249 ISO 3166-1 alpha-2 codes plus XK.
        assert_eq!(COUNTRIES.len(), 250);
        for row in &COUNTRIES {
            assert!(row.code.iter().all(u8::is_ascii_uppercase));
            assert!((-90.0..=90.0).contains(&row.lat));
            assert!((-180.0..=180.0).contains(&row.lon));
        }
    }

    #[test]
    fn continents_and_centroids() {
        let cc = |s: &str| CountryCode::parse(s).unwrap();
        assert_eq!(continent_of(cc("US")), Some(Continent::NA));
        assert_eq!(continent_of(cc("BR")), Some(Continent::SA));
        assert_eq!(continent_of(cc("GB")), Some(Continent::EU));
        assert_eq!(continent_of(cc("JP")), Some(Continent::AS));
        assert_eq!(continent_of(cc("AU")), Some(Continent::OC));
        assert_eq!(continent_of(cc("ZA")), Some(Continent::AF));
        assert_eq!(continent_of(cc("AQ")), Some(Continent::AN));
        assert_eq!(continent_of(CountryCode(*b"ZZ")), None);
        let de = centroid_of(cc("DE")).unwrap();
        assert!((de.lat - 51.2).abs() < 1.0 && (de.lon - 10.4).abs() < 1.0);
        let au = centroid_of(cc("AU")).unwrap();
        assert!(au.lat < -20.0 && au.lon > 130.0);
        assert_eq!(centroid_of(CountryCode(*b"ZZ")), None);
        assert_eq!(all_countries().count(), 250);
    }

    #[test]
    fn parse_continent() {
        assert_eq!(Continent::from_code("EU"), Ok(Continent::EU));
        assert_eq!(Continent::from_code("oc"), Ok(Continent::OC));
        assert!(Continent::from_code("XX").is_err());
        assert!(Continent::from_code("EUR").is_err());
        for c in Continent::ALL {
            assert_eq!(Continent::from_code(c.code()), Ok(c));
        }
    }

    #[test]
    fn parse_country() {
        assert_eq!(CountryCode::parse("US"), Ok(CountryCode(*b"US")));
        assert_eq!(CountryCode::parse("de"), Ok(CountryCode(*b"DE")));
        assert_eq!(
            CountryCode::parse("ZZ"),
            Err(GeoParseError::UnknownCountry("ZZ".into()))
        );
        assert_eq!(
            CountryCode::parse("USA"),
            Err(GeoParseError::CountryFormat("USA".into()))
        );
        assert!(CountryCode::parse("U1").is_err());
        assert!(CountryCode::parse("").is_err());
        let msg = CountryCode::parse("QQ").unwrap_err().to_string();
        assert!(msg.contains("unknown country code \"QQ\""), "{msg}");
        assert_eq!(CountryCode(*b"SE").to_string(), "SE");
    }

    #[test]
    fn parse_subdivision() {
        let s = Subdivision::parse("US-CA").unwrap();
        assert_eq!(s.country, CountryCode(*b"US"));
        assert_eq!(s.code, *b"CA\0");
        assert_eq!(s.to_string(), "US-CA");
        let s = Subdivision::parse("gb-eng").unwrap();
        assert_eq!(s.code, *b"ENG");
        assert_eq!(s.to_string(), "GB-ENG");
        assert_eq!(Subdivision::parse("FR-75").unwrap().code, *b"75\0");
        assert!(Subdivision::parse("US").is_err());
        assert!(Subdivision::parse("US-").is_err());
        assert!(Subdivision::parse("US-CALI").is_err());
        assert!(Subdivision::parse("ZZ-CA").is_err());
        assert!(Subdivision::parse("US-C A").is_err());
    }
}
