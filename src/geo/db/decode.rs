//! Schema-tolerant decoding of one MaxMind DB record: the few fields a
//! location needs (country, continent, subdivision, coordinates, ASN), every
//! other field and type skipped.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::Record;
use crate::geo::tables::{centroid_of, continent_of};
use crate::geo::{Continent, Coords, CountryCode, Subdivision};

/// A short code (≤ 3 ASCII bytes) read from a database string.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Code {
    buf: [u8; 3],
    len: u8,
}

impl Code {
    fn from_str(s: &str) -> Option<Code> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > 3 {
            return None;
        }
        let mut buf = [0u8; 3];
        buf[..b.len()].copy_from_slice(b);
        Some(Code {
            buf,
            len: b.len() as u8,
        })
    }
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

/// The raw fields of a record, either schema.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RawRecord {
    continent: Option<Code>,
    country: Option<Code>,
    registered_country: Option<Code>,
    subdivision: Option<Code>,
    lat: Option<f64>,
    lon: Option<f64>,
    flat_country: Option<Code>,
    flat_continent: Option<Code>,
    flat_lat: Option<f64>,
    flat_lon: Option<f64>,
    asn: Option<u32>,
}

impl RawRecord {
    /// Resolve into a [`Record`]: nested fields first, then flat ones, then
    /// the built-in tables.
    pub fn resolve(self) -> Record {
        let country = self
            .country
            .or(self.flat_country)
            .or(self.registered_country)
            .and_then(|c| CountryCode::from_bytes_lenient(c.bytes()));
        let continent = self
            .continent
            .or(self.flat_continent)
            .and_then(|c| {
                std::str::from_utf8(c.bytes())
                    .ok()
                    .and_then(|s| Continent::from_code(s).ok())
            })
            .or_else(|| country.and_then(continent_of));
        let subdivision = match (country, self.subdivision) {
            (Some(cc), Some(code)) => Subdivision::from_parts(cc, code.bytes()),
            _ => None,
        };
        let coords = match (self.lat.or(self.flat_lat), self.lon.or(self.flat_lon)) {
            (Some(lat), Some(lon))
                if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
            {
                Some(Coords {
                    lat: lat as f32,
                    lon: lon as f32,
                })
            }
            _ => None,
        }
        .or_else(|| country.and_then(centroid_of));
        Record {
            continent,
            country,
            subdivision,
            coords,
            asn: self.asn,
        }
    }
}

/// Visitor methods that accept and ignore scalars other than strings.
macro_rules! ignore_scalars {
    ($ret:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_u128<E: de::Error>(self, _: u128) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
            Ok($ret)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($ret)
        }
    };
}

/// Visitor method that accepts and ignores strings.
macro_rules! ignore_str {
    ($ret:expr) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($ret)
        }
    };
}

/// Visitor method that skips an array.
macro_rules! ignore_seq {
    ($ret:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($ret)
        }
    };
}

/// Visitor method that skips a map.
macro_rules! ignore_map {
    ($ret:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($ret)
        }
    };
}

/// A string code; other types give `None`.
struct CodeValue(Option<Code>);

impl<'de> Deserialize<'de> for CodeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CodeValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a code string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<CodeValue, E> {
                Ok(CodeValue(Code::from_str(s)))
            }
            ignore_scalars!(CodeValue(None));
            ignore_seq!(CodeValue(None));
            ignore_map!(CodeValue(None));
        }
        d.deserialize_any(V)
    }
}

/// A number (any numeric type, or a numeric string); others give `None`.
struct NumValue(Option<f64>);

impl<'de> Deserialize<'de> for NumValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NumValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumValue, E> {
                Ok(NumValue(v.is_finite().then_some(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumValue, E> {
                Ok(NumValue(Some(v as f64)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumValue, E> {
                Ok(NumValue(Some(v as f64)))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<NumValue, E> {
                Ok(NumValue(Some(v as f64)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<NumValue, E> {
                Ok(NumValue(
                    s.trim().parse::<f64>().ok().filter(|v| v.is_finite()),
                ))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<NumValue, E> {
                Ok(NumValue(None))
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<NumValue, E> {
                Ok(NumValue(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<NumValue, E> {
                Ok(NumValue(None))
            }
            ignore_seq!(NumValue(None));
            ignore_map!(NumValue(None));
        }
        d.deserialize_any(V)
    }
}

/// The keys we care about, at any level.
enum Key {
    Continent,
    Country,
    RegisteredCountry,
    Subdivisions,
    Location,
    CountryCode,
    ContinentCode,
    Latitude,
    Longitude,
    Asn,
    Code,
    IsoCode,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(match s {
                    "continent" => Key::Continent,
                    "country" => Key::Country,
                    "registered_country" => Key::RegisteredCountry,
                    "subdivisions" => Key::Subdivisions,
                    "location" => Key::Location,
                    "country_code" => Key::CountryCode,
                    "continent_code" => Key::ContinentCode,
                    "latitude" => Key::Latitude,
                    "longitude" => Key::Longitude,
                    "autonomous_system_number" => Key::Asn,
                    "code" => Key::Code,
                    "iso_code" => Key::IsoCode,
                    _ => Key::Other,
                })
            }
            ignore_scalars!(Key::Other);
            ignore_seq!(Key::Other);
            ignore_map!(Key::Other);
        }
        d.deserialize_any(V)
    }
}

/// A nested map such as `country` or `location`: collects `code`,
/// `iso_code`, `latitude`, `longitude`.
#[derive(Default)]
struct Inner {
    code: Option<Code>,
    iso_code: Option<Code>,
    lat: Option<f64>,
    lon: Option<f64>,
}

impl<'de> Deserialize<'de> for Inner {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Inner;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Inner, A::Error> {
                let mut out = Inner::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Code => out.code = map.next_value::<CodeValue>()?.0,
                        Key::IsoCode => out.iso_code = map.next_value::<CodeValue>()?.0,
                        Key::Latitude => out.lat = map.next_value::<NumValue>()?.0,
                        Key::Longitude => out.lon = map.next_value::<NumValue>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
            ignore_scalars!(Inner::default());
            ignore_str!(Inner::default());
            ignore_seq!(Inner::default());
        }
        d.deserialize_any(V)
    }
}

/// `subdivisions`: the `iso_code` of the first element.
struct FirstIsoCode(Option<Code>);

impl<'de> Deserialize<'de> for FirstIsoCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FirstIsoCode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of maps")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FirstIsoCode, A::Error> {
                let first = seq.next_element::<Inner>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstIsoCode(first.and_then(|i| i.iso_code)))
            }
            ignore_scalars!(FirstIsoCode(None));
            ignore_str!(FirstIsoCode(None));
            ignore_map!(FirstIsoCode(None));
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRecord;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a record map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRecord, A::Error> {
                let mut r = RawRecord::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Continent => r.continent = map.next_value::<Inner>()?.code,
                        Key::Country => r.country = map.next_value::<Inner>()?.iso_code,
                        Key::RegisteredCountry => {
                            r.registered_country = map.next_value::<Inner>()?.iso_code;
                        }
                        Key::Subdivisions => r.subdivision = map.next_value::<FirstIsoCode>()?.0,
                        Key::Location => {
                            let i = map.next_value::<Inner>()?;
                            r.lat = i.lat;
                            r.lon = i.lon;
                        }
                        Key::CountryCode => r.flat_country = map.next_value::<CodeValue>()?.0,
                        Key::ContinentCode => {
                            r.flat_continent = map.next_value::<CodeValue>()?.0;
                        }
                        Key::Latitude => r.flat_lat = map.next_value::<NumValue>()?.0,
                        Key::Longitude => r.flat_lon = map.next_value::<NumValue>()?.0,
                        Key::Asn => {
                            r.asn = map
                                .next_value::<NumValue>()?
                                .0
                                .filter(|v| {
                                    *v >= 0.0 && *v <= f64::from(u32::MAX) && v.fract() == 0.0
                                })
                                .map(|v| v as u32);
                        }
                        Key::Code | Key::IsoCode | Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(r)
            }
            ignore_scalars!(RawRecord::default());
            ignore_str!(RawRecord::default());
            ignore_seq!(RawRecord::default());
        }
        d.deserialize_any(V)
    }
}
