//! The build: open the geo data, run every compile step in order into one
//! [`Diagnostics`], and assemble the [`Snapshot`].

use std::collections::HashMap;
use std::sync::Arc;

use super::Snapshot;
use super::geo::{geo_warnings, open_geo_reusing};
use crate::config::raw::ConfigFile;
use crate::config::{ConfigError, Diagnostics, Source};
use crate::geo::GeoDb;
use crate::health::HealthTable;
use crate::select::{Pool, PoolId};
use crate::zone::ZoneTable;

/// How much of the geo data a build prepares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeoMode {
    /// Everything a server needs: records pre-decoded, decision tries
    /// compiled (from the location partition).
    Serve,
    /// What one `explain` question needs: databases read, records decoded
    /// per lookup, no tries (the rules are evaluated per query).
    Explain,
}
/// Parse, open databases and compile: what `steerdns check` and a reload do.
pub fn build(source: &Source, file: &ConfigFile, generation: u64) -> Result<Snapshot, ConfigError> {
    build_reusing(source, file, generation, None, GeoMode::Serve)
}

/// [`build`], reusing the geo data of `previous` (the snapshot being
/// replaced) when its inputs did not change.
pub(crate) fn build_reusing(
    source: &Source,
    file: &ConfigFile,
    generation: u64,
    previous: Option<&Arc<GeoDb>>,
    mode: GeoMode,
) -> Result<Snapshot, ConfigError> {
    match open_geo_reusing(source, file, previous, mode) {
        Ok(geo) => build_with_geo_mode(source, file, geo, generation, mode),
        Err(geo_err) => {
            // Still check the rest (against an empty database), so one run
            // lists every error.
            let empty = GeoDb::open(None, None, Vec::new()).map_err(|_| ConfigError::Invalid {
                path: source.path.clone(),
                diagnostics: Vec::new(),
            });
            let rest = empty.and_then(|g| build_with_geo(source, file, Arc::new(g), generation));
            Err(match (geo_err, rest) {
                (
                    ConfigError::Invalid {
                        path,
                        mut diagnostics,
                    },
                    Err(ConfigError::Invalid {
                        diagnostics: more, ..
                    }),
                ) => {
                    diagnostics.extend(more);
                    diagnostics.sort_by_key(|d| (d.line, d.col));
                    diagnostics.dedup();
                    ConfigError::Invalid { path, diagnostics }
                }
                (e, _) => e,
            })
        }
    }
}

/// Compile a parsed config with an already opened geo database.
pub fn build_with_geo(
    source: &Source,
    file: &ConfigFile,
    geo: Arc<GeoDb>,
    generation: u64,
) -> Result<Snapshot, ConfigError> {
    build_with_geo_mode(source, file, geo, generation, GeoMode::Serve)
}

fn build_with_geo_mode(
    source: &Source,
    file: &ConfigFile,
    geo: Arc<GeoDb>,
    generation: u64,
    mode: GeoMode,
) -> Result<Snapshot, ConfigError> {
    let mut d = Diagnostics::new(source);
    let mut settings = super::settings::compile_settings(file, &mut d);
    settings.cookies = super::protect::compile_cookies(source, file, &mut d);
    let mut c = Compiler::new(d);
    c.compile_pools(&file.pools);
    let mut zones = super::zones::compile_zones(&mut c.d, &file.zones);
    let balancers = c.compile_names(&file.names, &mut zones);
    let Compiler {
        mut d,
        pools,
        pool_ids,
        endpoints,
        geo_uses,
    } = c;
    let monitors = super::monitors::compile_monitors(source, file, &mut d);
    let probes = super::probes::compile_probes(file, &pools, &pool_ids, &monitors, &mut d);
    let notify = super::notify::compile_notify(file, &mut d);
    let cluster = super::cluster::compile_cluster(source, file, &settings.node_name, &mut d);
    d.finish()?;
    let warnings = geo_warnings(source, &geo, &geo_uses);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let decisions = match mode {
        GeoMode::Serve => {
            let d = crate::select::compiled::compile_all(&balancers, &pools, &geo);
            // Building the partition and tries frees a lot of scratch memory
            // (memo tables, per-node passes); hand it back to the system so
            // the steady RSS is what is kept, not the build's peak.
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim only releases free heap pages.
            unsafe {
                libc::malloc_trim(0);
            }
            d
        }
        GeoMode::Explain => balancers.iter().map(|_| None).collect(),
    };
    let mut table = ZoneTable::default();
    for z in zones {
        table
            .by_apex
            .insert(z.apex.clone(), table.zones.len() as u32);
        table.zones.push(z);
    }
    Ok(Snapshot {
        geo_warnings: warnings,
        generation,
        source: source.path.clone(),
        settings,
        zones: table,
        balancers,
        decisions,
        pools,
        pool_ids,
        geo,
        health: Arc::new(HealthTable::all_up(endpoints as usize)),
        monitors: monitors.list,
        probes,
        notify,
        cluster,
    })
}

/// State the pool, zone and name steps share: the diagnostics, the pools
/// (names look their ids up), the endpoint count, and the geo fields the
/// names read.
pub(super) struct Compiler<'a> {
    pub(super) d: Diagnostics<'a>,
    pub(super) pools: Vec<Pool>,
    pub(super) pool_ids: HashMap<String, PoolId>,
    pub(super) endpoints: u32,
    /// Location fields the names read, for warnings about databases that
    /// lack them.
    pub(super) geo_uses: Vec<GeoUse>,
}

impl<'a> Compiler<'a> {
    pub(super) fn new(d: Diagnostics<'a>) -> Self {
        Compiler {
            d,
            pools: Vec::new(),
            pool_ids: HashMap::new(),
            endpoints: 0,
            geo_uses: Vec::new(),
        }
    }
}

/// A location field a balanced name reads, and where.
pub(super) struct GeoUse {
    pub(super) span: std::ops::Range<usize>,
    pub(super) key: String,
    pub(super) field: GeoField,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum GeoField {
    /// Any location (geo and proximity names).
    Location,
    Subdivision,
    Asn,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::testing::source;

    const CONFIG: &str = "[zones.\"b.example\"]\nns = [\"ns1\"]\n[zones.\"a.example\"]\nns = [\"ns1\"]\n\
        [pools.p]\nendpoints = [{ address = \"192.0.2.1\" }, { address = \"192.0.2.2\" }]\n\
        [names.\"www.a.example\"]\npolicy = \"failover\"\npools = [\"p\"]\n";

    #[test]
    fn the_steps_assemble_one_snapshot() {
        let src = source(CONFIG);
        let file = crate::config::parse(&src).unwrap();
        let snap = build(&src, &file, 7).expect("builds");
        assert_eq!(snap.generation, 7);
        assert_eq!(snap.zones.zones.len(), 2);
        for (i, z) in snap.zones.zones.iter().enumerate() {
            assert_eq!(snap.zones.by_apex[&z.apex], i as u32);
        }
        assert_eq!(snap.health.len(), 2, "one slot per endpoint");
        assert_eq!(snap.balancers.len(), snap.decisions.len());
        assert_eq!(snap.pool_ids["p"], 0);
    }

    #[test]
    fn explain_mode_compiles_no_tries() {
        let src = source(CONFIG);
        let file = crate::config::parse(&src).unwrap();
        let snap = build_reusing(&src, &file, 1, None, GeoMode::Explain).unwrap();
        assert!(snap.decisions.iter().all(Option::is_none));
    }

    #[test]
    fn a_geo_error_and_the_other_errors_come_in_one_report() {
        let src = source(&format!(
            "[geoip]\ndatabase = \"missing.mmdb\"\n{CONFIG}[pools.q]\nendpoints = []\n"
        ));
        let file = crate::config::parse(&src).unwrap();
        let e = build(&src, &file, 1).err().expect("fails").to_string();
        let geo = e.find("geoip.database").expect(&e);
        let pool = e.find("pools.q.endpoints").expect(&e);
        assert!(geo < pool, "sorted by place in the file:\n{e}");
    }
}
