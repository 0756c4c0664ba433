//! Type-checking the parsed TOML piece by piece, so one run reports every
//! type error, not only the first.
//!
//! serde stops at the first error of a value. The document is therefore
//! deserialized in independent pieces: each zone, pool, balanced name and
//! monitor on its own, each static record of a zone on its own, and the
//! rest of the file (`[server]`, `[geoip]`, `[notify]`, unknown top-level
//! keys) as one. A piece with an error is reported (with the place and key
//! path) and left out; the caller stops after this pass when anything was
//! reported, so semantic checks never see a half-read config.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::{ConfigFile, Diagnostics, first_line, key_path, quote_key};

/// Deserialize `root`, reporting every failing piece into `d`.
pub(super) fn deserialize(
    root: Spanned<DeTable<'_>>,
    d: &mut Diagnostics<'_>,
) -> Option<ConfigFile> {
    let span = root.span();
    let mut rest = DeTable::new();
    let mut sections: [(&str, Option<Spanned<DeValue<'_>>>); 4] = [
        ("zones", None),
        ("pools", None),
        ("names", None),
        ("monitors", None),
    ];
    for (k, v) in root.into_inner() {
        match sections
            .iter_mut()
            .find(|(name, _)| *name == &**k.get_ref())
        {
            // Only a table is split; anything else is left to the whole-file
            // pass, which reports the type error.
            Some((_, slot)) if matches!(v.get_ref(), DeValue::Table(_)) => *slot = Some(v),
            _ => {
                rest.insert(k, v);
            }
        }
    }
    let mut file: ConfigFile = match piece(Spanned::new(span, DeValue::Table(rest)), "", d) {
        Some(f) => f,
        // Reported; an empty file (all defaults) stands in so that the
        // pieces are still checked.
        None => piece(Spanned::new(0..0, DeValue::Table(DeTable::new())), "", d)?,
    };
    let [(_, zones), (_, pools), (_, names), (_, monitors)] = sections;
    if let Some(t) = zones {
        file.zones = entries(t, "zones", d, zone);
    }
    if let Some(t) = pools {
        file.pools = entries(t, "pools", d, piece);
    }
    if let Some(t) = names {
        file.names = entries(t, "names", d, piece);
    }
    if let Some(t) = monitors {
        file.monitors = entries(t, "monitors", d, piece);
    }
    Some(file)
}

/// Each entry of the table `t` (at `section`) through `one`.
fn entries<'i, T>(
    t: Spanned<DeValue<'i>>,
    section: &str,
    d: &mut Diagnostics<'_>,
    one: impl Fn(Spanned<DeValue<'i>>, &str, &mut Diagnostics<'_>) -> Option<T>,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    let DeValue::Table(table) = t.into_inner() else {
        return out;
    };
    for (k, v) in table {
        let name = k.into_inner().into_owned();
        let prefix = format!("{section}.{}", quote_key(&name));
        if let Some(x) = one(v, &prefix, d) {
            out.insert(name, x);
        }
    }
    out
}

/// A zone, its records one by one.
fn zone(
    v: Spanned<DeValue<'_>>,
    prefix: &str,
    d: &mut Diagnostics<'_>,
) -> Option<Spanned<super::raw::ZoneConfig>> {
    let span = v.span();
    let DeValue::Table(mut t) = v.into_inner() else {
        return None;
    };
    let records = match t.remove("records") {
        Some(r) if matches!(r.get_ref(), DeValue::Array(_)) => {
            let DeValue::Array(items) = r.into_inner() else {
                return None;
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                if let Some(rec) = piece(item, &format!("{prefix}.records[{i}]"), d) {
                    out.push(rec);
                }
            }
            Some(out)
        }
        Some(other) => {
            // Not an array: put it back for the zone's own type error.
            t.insert(Spanned::new(other.span(), "records".into()), other);
            None
        }
        None => None,
    };
    let mut z: Spanned<super::raw::ZoneConfig> =
        piece(Spanned::new(span, DeValue::Table(t)), prefix, d)?;
    if let Some(records) = records {
        z.get_mut().records = records;
    }
    Some(z)
}

/// Deserialize one piece; on error report it under `prefix`.
fn piece<T: DeserializeOwned>(
    v: Spanned<DeValue<'_>>,
    prefix: &str,
    d: &mut Diagnostics<'_>,
) -> Option<T> {
    let span = v.span();
    match serde_path_to_error::deserialize(ValueDeserializer::from(v)) {
        Ok(x) => Some(x),
        Err(e) => {
            let inner_path = key_path(e.path());
            let path = match (prefix.is_empty(), inner_path.starts_with('[')) {
                (true, _) => inner_path,
                (false, _) if inner_path.is_empty() => prefix.to_string(),
                (false, true) => format!("{prefix}{inner_path}"),
                (false, false) => format!("{prefix}.{inner_path}"),
            };
            let inner = e.into_inner();
            d.error(
                inner.span().unwrap_or(span),
                path,
                first_line(inner.message()),
            );
            None
        }
    }
}
