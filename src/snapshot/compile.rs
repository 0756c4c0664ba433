//! Config → Snapshot. Every semantic check lives here and reports through
//! [`Diagnostics`], so one run lists every problem with its place.

use std::collections::{BTreeMap, HashMap, HashSet};

use rustc_hash::FxHashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{CNAME, NS, PTR, SOA};
use hickory_proto::rr::{Name, RData, RecordType};
use toml::Spanned;

use super::{Settings, Snapshot};
use crate::config::raw::{
    AllDownConfig, ConfigFile, GeoMapConfig, NameConfig, PolicyKind, PoolConfig, SString,
    ZoneConfig,
};
use crate::config::{ConfigError, Diagnostics, Source, quote_key};
use crate::geo::trie::PrefixTrie;
use crate::geo::{
    self, Continent, Coords, CountryCode, GeoDb, Location, LocationOverride, LocationSource,
    Subdivision,
};
use crate::health::HealthTable;
use crate::select::{AllDown, Balancer, Endpoint, GeoMap, Policy, Pool, PoolId, Target};
use crate::zone::{self, Glue, Node, RrSet, WireName, Zone, ZoneTable, rtype};

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

/// The location database paths of `[geoip]`, with their config keys.
fn location_paths<'f>(
    source: &Source,
    file: &'f ConfigFile,
) -> Vec<(PathBuf, String, &'f SString)> {
    let resolve = |p: &SString| -> PathBuf { source.dir().join(p.get_ref()) };
    let mut v: Vec<_> = file
        .geoip
        .database
        .iter()
        .map(|d| (resolve(d), "geoip.database".to_owned(), d))
        .collect();
    for (i, d) in file.geoip.databases.iter().enumerate() {
        v.push((resolve(d), format!("geoip.databases[{i}]"), d));
    }
    v
}

/// Open the GeoIP databases a config names (relative to the config's
/// directory). Slow for big databases: call it off the hot path.
pub fn open_geo(source: &Source, file: &ConfigFile) -> Result<GeoDb, ConfigError> {
    open_geo_reusing(source, file, None, GeoMode::Serve)
        .map(|g| Arc::try_unwrap(g).unwrap_or_else(|_| unreachable!("not shared")))
}

/// [`open_geo`], returning `previous` itself when its databases and
/// overrides did not change (then its partition and tries are reused).
pub fn open_geo_reusing(
    source: &Source,
    file: &ConfigFile,
    previous: Option<&Arc<GeoDb>>,
    mode: GeoMode,
) -> Result<Arc<GeoDb>, ConfigError> {
    let mut diags = Diagnostics::new(source);
    let overrides = compile_overrides(file, &mut diags);
    let locs = location_paths(source, file);
    if let (Some(d), false) = (&file.geoip.database, file.geoip.databases.is_empty()) {
        diags.error(
            d.span(),
            "geoip.database",
            "give either `database` (one file) or `databases` (a list), not both",
        );
    }
    if locs.len() > geo::partition::MAX_LOCATION_DBS {
        diags.error(
            locs[geo::partition::MAX_LOCATION_DBS].2.span(),
            "geoip.databases",
            format!(
                "at most {} location databases",
                geo::partition::MAX_LOCATION_DBS
            ),
        );
    }
    let asn = file.geoip.asn_database.as_ref();
    let asn_path = asn.map(|p| source.dir().join(p.get_ref()));
    diags.finish()?;
    let spec = geo::GeoSpec {
        location: locs.iter().map(|l| l.0.clone()).collect(),
        asn: asn_path.clone(),
        overrides,
        predecode: mode == GeoMode::Serve,
    };
    GeoDb::open_spec(&spec, previous).map_err(|e| {
        let mut diags = Diagnostics::new(source);
        let path = match &e {
            geo::GeoError::Open { path, .. } | geo::GeoError::Invalid { path, .. } => path,
        };
        let (key, span) = match (path, asn) {
            (p, Some(a)) if Some(p) == asn_path.as_ref() => {
                ("geoip.asn_database".to_owned(), a.span())
            }
            (p, _) if locs.iter().any(|l| &l.0 == p) => {
                let l = locs.iter().find(|l| &l.0 == p).expect("found");
                (l.1.clone(), l.2.span())
            }
            _ => ("geoip".to_owned(), 0..0),
        };
        diags.error(span, key, e);
        match diags.finish() {
            Err(err) => err,
            Ok(()) => unreachable!("an error was recorded"),
        }
    })
}

/// Parse, open databases and compile: what `steerdns check` and a reload do.
pub fn build(source: &Source, file: &ConfigFile, generation: u64) -> Result<Snapshot, ConfigError> {
    build_reusing(source, file, generation, None, GeoMode::Serve)
}

/// [`build`], reusing the geo data of `previous` (the snapshot being
/// replaced) when its inputs did not change.
pub fn build_reusing(
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
    let mut settings = compile_settings(file, &mut d);
    settings.cookies = super::protect::compile_cookies(source, file, &mut d);
    let mut c = Compiler {
        d,
        pools: Vec::new(),
        pool_ids: HashMap::new(),
        endpoints: 0,
        geo_uses: Vec::new(),
    };
    c.compile_pools(&file.pools);
    let mut zones = c.compile_zones(&file.zones);
    let balancers = c.compile_names(&file.names, &mut zones);
    let Compiler {
        mut d,
        pools,
        pool_ids,
        endpoints,
        geo_uses,
    } = c;
    let monitors = super::monitors::compile_monitors(source, file, &mut d);
    let probes = super::monitors::compile_probes(file, &pools, &pool_ids, &monitors, &mut d);
    let notify = super::monitors::compile_notify(file, &mut d);
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

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes; gethostname NUL-terminates
    // on success when the name fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "steerdns".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn compile_settings(file: &ConfigFile, d: &mut Diagnostics<'_>) -> Settings {
    let s = &file.server;
    let mut dns_listen = Vec::new();
    for (i, a) in s.dns_listen.iter().enumerate() {
        match SocketAddr::from_str(a.get_ref()) {
            Ok(addr) => dns_listen.push(addr),
            Err(_) => d.error(
                a.span(),
                format!("server.dns_listen[{i}]"),
                format!(
                    "{:?} is not an address:port; write e.g. \"0.0.0.0:53\" or \"[::]:53\"",
                    a.get_ref()
                ),
            ),
        }
    }
    let http_listen = SocketAddr::from_str(s.http_listen.get_ref()).unwrap_or_else(|_| {
        d.error(
            s.http_listen.span(),
            "server.http_listen",
            format!(
                "{:?} is not an address:port; write e.g. \"127.0.0.1:9153\"",
                s.http_listen.get_ref()
            ),
        );
        SocketAddr::from(([127, 0, 0, 1], 9153))
    });
    let max_udp = *s.max_udp_payload.get_ref();
    if max_udp < 512 {
        d.error(
            s.max_udp_payload.span(),
            "server.max_udp_payload",
            "must be at least 512 (the DNS minimum); 1232 avoids IP fragmentation",
        );
    }
    let node_name = s
        .node_name
        .as_ref()
        .map(|n| n.get_ref().clone())
        .unwrap_or_else(host_name);
    if let Some(n) = s.node_name.as_ref().filter(|n| n.get_ref().len() > 255) {
        d.error(n.span(), "server.node_name", "longer than 255 bytes");
    }
    if let Some(v) = s.version.as_ref().filter(|v| v.get_ref().len() > 255) {
        d.error(v.span(), "server.version", "longer than 255 bytes");
    }
    let idle = s.tcp_idle_timeout.get_ref().0;
    if idle.is_zero() {
        d.error(
            s.tcp_idle_timeout.span(),
            "server.tcp_idle_timeout",
            "must be more than zero",
        );
    }
    let tcp = super::protect::compile_tcp(file, idle, d);
    Settings {
        dns_listen,
        http_listen,
        udp_workers: s.udp_workers,
        max_udp_payload: max_udp.max(512),
        ecs: s.ecs,
        node_name,
        version: s.version.as_ref().map(|v| v.get_ref().clone()),
        tcp_idle_timeout: idle,
        tcp_max_connections: s.tcp_max_connections.max(1),
        random_seed: s.random_seed,
        api_token: s.api_token.as_ref().map(|t| t.get_ref().clone()),
        max_concurrent_probes: {
            let n = *s.max_concurrent_probes.get_ref();
            if n == 0 {
                d.error(
                    s.max_concurrent_probes.span(),
                    "server.max_concurrent_probes",
                    "must be at least 1",
                );
            }
            n.max(1)
        },
        query_log_sample: {
            let r = *s.query_log_sample.get_ref();
            if !(0.0..=1.0).contains(&r) {
                d.error(
                    s.query_log_sample.span(),
                    "server.query_log_sample",
                    "a fraction between 0 (off) and 1 (every query)",
                );
            }
            r.clamp(0.0, 1.0)
        },
        watch_interval: s.watch_interval.get_ref().0,
        xdp_interface: s.xdp_interface.as_ref().map(|n| {
            let name = n.get_ref();
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                d.error(
                    n.span(),
                    "server.xdp_interface",
                    "not a network interface name",
                );
            }
            name.clone()
        }),
        anycast: crate::anycast::settings::compile(file, d),
        rrl: super::protect::compile_rrl(file, d),
        tcp_max_per_client: tcp.0,
        tcp_busy_idle_timeout: tcp.1,
        cookies: None,
    }
}

pub(super) fn parse_net(s: &SString, key: &str, d: &mut Diagnostics<'_>) -> Option<ipnet::IpNet> {
    let text = s.get_ref();
    let net = match ipnet::IpNet::from_str(text) {
        Ok(n) => n,
        Err(_) => {
            match IpAddr::from_str(text) {
                Ok(ip) => ipnet::IpNet::from(ip),
                Err(_) => {
                    d.error(s.span(), key, format!("{text:?} is not a network; write e.g. \"10.0.0.0/8\" or \"2001:db8::/32\""));
                    return None;
                }
            }
        }
    };
    if net.trunc() != net {
        d.error(
            s.span(),
            key,
            format!(
                "{text:?} has host bits set; did you mean \"{}\"?",
                net.trunc()
            ),
        );
        return None;
    }
    Some(net)
}

fn parse_country(s: &SString, key: &str, d: &mut Diagnostics<'_>) -> Option<CountryCode> {
    CountryCode::parse(s.get_ref())
        .map_err(|e| d.error(s.span(), key, e))
        .ok()
}

fn parse_continent(s: &SString, key: &str, d: &mut Diagnostics<'_>) -> Option<Continent> {
    Continent::from_code(s.get_ref())
        .map_err(|e| d.error(s.span(), key, e))
        .ok()
}

fn parse_subdivision(s: &SString, key: &str, d: &mut Diagnostics<'_>) -> Option<Subdivision> {
    Subdivision::parse(s.get_ref())
        .map_err(|e| d.error(s.span(), key, e))
        .ok()
}

fn parse_coords(
    lat: Option<&Spanned<f64>>,
    lon: Option<&Spanned<f64>>,
    key: &str,
    d: &mut Diagnostics<'_>,
) -> Option<Coords> {
    match (lat, lon) {
        (None, None) => None,
        (Some(la), Some(lo)) => {
            let (a, o) = (*la.get_ref(), *lo.get_ref());
            if !(-90.0..=90.0).contains(&a) {
                d.error(
                    la.span(),
                    format!("{key}.latitude"),
                    "must be between -90 and 90",
                );
                return None;
            }
            if !(-180.0..=180.0).contains(&o) {
                d.error(
                    lo.span(),
                    format!("{key}.longitude"),
                    "must be between -180 and 180",
                );
                return None;
            }
            Some(Coords {
                lat: a as f32,
                lon: o as f32,
            })
        }
        (Some(x), None) | (None, Some(x)) => {
            d.error(
                x.span(),
                key,
                "give both latitude and longitude, or neither",
            );
            None
        }
    }
}

fn compile_overrides(file: &ConfigFile, d: &mut Diagnostics<'_>) -> Vec<LocationOverride> {
    let mut out = Vec::new();
    for (i, o) in file.geoip.overrides.iter().enumerate() {
        let key = format!("geoip.override[{i}]");
        let Some(net) = parse_net(&o.cidr, &format!("{key}.cidr"), d) else {
            continue;
        };
        let country = o
            .country
            .as_ref()
            .and_then(|c| parse_country(c, &format!("{key}.country"), d));
        let continent = match &o.continent {
            Some(c) => parse_continent(c, &format!("{key}.continent"), d),
            None => country.and_then(geo::tables::continent_of),
        };
        let subdivision = o
            .subdivision
            .as_ref()
            .and_then(|s| parse_subdivision(s, &format!("{key}.subdivision"), d));
        let coords = parse_coords(o.latitude.as_ref(), o.longitude.as_ref(), &key, d)
            .or_else(|| country.and_then(geo::tables::centroid_of));
        if continent.is_none() && country.is_none() && o.asn.is_none() && coords.is_none() {
            d.error(o.cidr.span(), &key, "an override needs at least one of continent, country, subdivision, asn, latitude/longitude");
        }
        out.push(LocationOverride {
            net,
            location: Location {
                continent,
                country,
                subdivision,
                asn: o.asn,
                coords,
                source: LocationSource::Override,
                scope: 0,
                asn_scope: 0,
            },
        });
    }
    out
}

struct Compiler<'a> {
    d: Diagnostics<'a>,
    pools: Vec<Pool>,
    pool_ids: HashMap<String, PoolId>,
    endpoints: u32,
    /// Location fields the names read, for warnings about databases that
    /// lack them.
    geo_uses: Vec<GeoUse>,
}

/// A location field a balanced name reads, and where.
struct GeoUse {
    span: std::ops::Range<usize>,
    key: String,
    field: GeoField,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum GeoField {
    /// Any location (geo and proximity names).
    Location,
    Subdivision,
    Asn,
}

/// Warnings (`file:line:col: key: warning: ...`) for rules that cannot
/// match with the configured databases: subdivision rules on databases
/// without subdivisions (ip-location-db's flat files), ASN rules without
/// any ASN source, geo names without any location source. Not errors: the
/// config works, those rules just never match.
fn geo_warnings(source: &Source, geo: &GeoDb, uses: &[GeoUse]) -> Vec<String> {
    let has_location = !geo.location_dbs_info().is_empty() || geo.override_count() > 0;
    let mut out = Vec::new();
    for u in uses {
        let msg = match u.field {
            GeoField::Location if !has_location => {
                "no [geoip] database or override is configured: every client gets the unlocated answer"
            }
            GeoField::Subdivision if !geo.has_subdivisions() => {
                "no location database record has a subdivision (flat files such as ip-location-db's have none): subdivision rules never match"
            }
            GeoField::Asn if !geo.has_asns() => {
                "no ASN source (geoip.asn_database, ASN fields in the location database, or overrides with an asn): ASN rules never match"
            }
            _ => continue,
        };
        let (line, col) = source.line_col(u.span.start);
        out.push(format!(
            "{}:{line}:{col}: {}: warning: {msg}",
            source.path.display(),
            u.key
        ));
    }
    out
}

/// Parse an absolute name (a trailing dot is optional).
fn parse_abs(s: &str) -> Result<Name, String> {
    let mut n = Name::from_str(s).map_err(|e| format!("{s:?} is not a valid domain name: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

/// Parse a name the zone-file way: `@` is the apex, a trailing dot makes
/// it absolute, anything else is relative to the zone.
fn parse_in_zone(s: &str, apex: &Name) -> Result<Name, String> {
    if s == "@" {
        return Ok(apex.clone());
    }
    let n = Name::from_str(s).map_err(|e| format!("{s:?} is not a valid domain name: {e}"))?;
    if n.is_fqdn() {
        Ok(n)
    } else {
        n.append_domain(apex).map_err(|e| format!("{s:?}: {e}"))
    }
}

fn relative_to(n: &Name, apex: &Name) -> Name {
    if n.is_fqdn() {
        n.clone()
    } else {
        n.clone().append_domain(apex).unwrap_or_else(|_| n.clone())
    }
}

/// Names inside record data follow the same relative-name rule.
fn absolutize(rdata: RData, apex: &Name) -> RData {
    match rdata {
        RData::CNAME(CNAME(n)) => RData::CNAME(CNAME(relative_to(&n, apex))),
        RData::NS(NS(n)) => RData::NS(NS(relative_to(&n, apex))),
        RData::PTR(PTR(n)) => RData::PTR(PTR(relative_to(&n, apex))),
        RData::MX(mut mx) => {
            mx.exchange = relative_to(&mx.exchange, apex);
            RData::MX(mx)
        }
        RData::SRV(mut srv) => {
            srv.target = relative_to(&srv.target, apex);
            RData::SRV(srv)
        }
        other => other,
    }
}

fn rrset_target(rdata: &RData) -> Option<WireName> {
    match rdata {
        RData::CNAME(CNAME(n)) => Some(zone::wire_name(n)),
        _ => None,
    }
}

/// Whether `name` (lower-case wire) is at or below `apex`.
fn in_zone(name: &[u8], apex: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        if &name[i..] == apex {
            return true;
        }
        i += 1 + name[i] as usize;
    }
    false
}

/// The node a name (lower-case wire, inside `apex`) is answered from: the
/// name itself, else the wildcard at its closest encloser (RFC 4592).
fn answering_node<'n>(
    nodes: &'n FxHashMap<WireName, Node>,
    name: &[u8],
    apex: &[u8],
) -> Option<(&'n WireName, &'n Node)> {
    if let Some(kv) = nodes.get_key_value(name) {
        return Some(kv);
    }
    let mut ce = parent(name);
    while !nodes.contains_key(ce) {
        if ce.len() <= apex.len() {
            return None;
        }
        ce = parent(ce);
    }
    let mut wild = b"\x01*".to_vec();
    wild.extend_from_slice(ce);
    nodes.get_key_value(wild.as_slice())
}

/// The CNAME chain from `start` when it comes back to `start` (a loop), as
/// the owners in order; None when it ends, leaves the zone, or joins a loop
/// that `start` is not part of (that loop's own records are reported).
fn cname_cycle(
    nodes: &FxHashMap<WireName, Node>,
    apex: &[u8],
    start: &WireName,
) -> Option<Vec<WireName>> {
    let mut path = vec![start.clone()];
    let mut cur = nodes.get(start)?;
    for _ in 0..=nodes.len() {
        let target = cur.rrset(rtype::CNAME)?.target.as_deref()?;
        if !in_zone(target, apex) {
            return None;
        }
        let (key, node) = answering_node(nodes, target, apex)?;
        node.rrset(rtype::CNAME)?;
        if key == start {
            return Some(path);
        }
        if path.contains(key) {
            return None;
        }
        path.push(key.clone());
        cur = node;
    }
    None
}

/// Parent of a wire name (drop the first label).
fn parent(name: &[u8]) -> &[u8] {
    let l = name.first().copied().unwrap_or(0) as usize;
    if l == 0 { name } else { &name[1 + l..] }
}

impl Compiler<'_> {
    fn compile_pools(&mut self, pools: &BTreeMap<String, Spanned<PoolConfig>>) {
        for (name, p) in pools {
            let key = format!("pools.{}", quote_key(name));
            let pool = self.compile_pool(name, p, &key);
            self.pool_ids
                .insert(name.clone(), self.pools.len() as PoolId);
            self.pools.push(pool);
        }
    }

    fn compile_pool(&mut self, name: &str, p: &Spanned<PoolConfig>, key: &str) -> Pool {
        let d = &mut self.d;
        let pc = p.get_ref();
        let mut endpoints = Vec::new();
        let mut seen = HashSet::new();
        if pc.endpoints.get_ref().is_empty() {
            d.error(
                pc.endpoints.span(),
                format!("{key}.endpoints"),
                "a pool needs at least one endpoint",
            );
        }
        for (i, e) in pc.endpoints.get_ref().iter().enumerate() {
            let ekey = format!("{key}.endpoints[{i}]");
            let text = e.address.get_ref().trim();
            let (target, rdata) = if let Ok(ip) = IpAddr::from_str(text) {
                match ip {
                    IpAddr::V4(a) => (Target::V4(a), Box::from(&a.octets()[..])),
                    IpAddr::V6(a) => (Target::V6(a), Box::from(&a.octets()[..])),
                }
            } else {
                match parse_abs(text) {
                    Ok(n) if n.num_labels() >= 2 => {
                        let w = zone::wire_name(&n);
                        (Target::Host(w.clone()), w)
                    }
                    Ok(_) => {
                        d.error(
                            e.address.span(),
                            format!("{ekey}.address"),
                            format!("{text:?} is neither an IP address nor a full host name"),
                        );
                        continue;
                    }
                    Err(msg) => {
                        d.error(
                            e.address.span(),
                            format!("{ekey}.address"),
                            format!("{msg}; expected an IPv4/IPv6 address or a host name"),
                        );
                        continue;
                    }
                }
            };
            if !seen.insert(target.clone()) {
                d.error(
                    e.address.span(),
                    format!("{ekey}.address"),
                    format!("{text:?} is listed twice in pool {name:?}"),
                );
            }
            if *e.weight.get_ref() == 0 {
                d.error(
                    e.weight.span(),
                    format!("{ekey}.weight"),
                    "weight must be at least 1 (zero weight could never be picked); use enabled = false to take an endpoint out of service",
                );
            }
            endpoints.push(Endpoint {
                id: self.endpoints,
                label: e
                    .name
                    .as_ref()
                    .map_or_else(|| text.to_string(), |n| n.get_ref().clone()),
                target,
                rdata,
                weight: (*e.weight.get_ref()).max(1),
                enabled: e.enabled,
            });
            self.endpoints += 1;
        }
        let min_healthy = *pc.min_healthy.get_ref();
        if min_healthy == 0 || min_healthy as usize > pc.endpoints.get_ref().len().max(1) {
            d.error(
                pc.min_healthy.span(),
                format!("{key}.min_healthy"),
                format!(
                    "must be between 1 and the number of endpoints ({})",
                    pc.endpoints.get_ref().len()
                ),
            );
        }
        let mut coords = parse_coords(pc.latitude.as_ref(), pc.longitude.as_ref(), key, d);
        if let Some(r) = &pc.region {
            let rkey = format!("{key}.region");
            let country = if r.get_ref().contains('-') {
                parse_subdivision(r, &rkey, d).map(|s| s.country)
            } else {
                parse_country(r, &rkey, d)
            };
            if coords.is_none() {
                coords = country.and_then(geo::tables::centroid_of);
            }
        }
        Pool {
            name: name.to_string(),
            endpoints: endpoints.into_boxed_slice(),
            min_healthy: min_healthy.max(1),
            coords,
        }
    }

    fn compile_zones(&mut self, zones: &BTreeMap<String, Spanned<ZoneConfig>>) -> Vec<Zone> {
        let mut out: Vec<Zone> = Vec::new();
        for (zname, z) in zones {
            let key = format!("zones.{}", quote_key(zname));
            let apex = match parse_abs(zname) {
                Ok(n) => n,
                Err(msg) => {
                    self.d.error(z.span(), &key, msg);
                    continue;
                }
            };
            let apex_w = zone::wire_name(&apex);
            if out.iter().any(|o| o.apex == apex_w) {
                self.d
                    .error(z.span(), &key, format!("zone {zname:?} is defined twice"));
                continue;
            }
            if let Some(zone) = self.compile_zone(&apex, z.get_ref(), &key) {
                out.push(zone);
            }
        }
        out
    }

    fn compile_zone(&mut self, apex: &Name, z: &ZoneConfig, key: &str) -> Option<Zone> {
        let d = &mut self.d;
        let apex_w = zone::wire_name(apex);
        let zttl = z.ttl.get_ref().as_ttl();
        let mut nodes: FxHashMap<WireName, Node> = FxHashMap::default();
        // Apex NS.
        let mut ns_names = Vec::new();
        if z.ns.is_empty() {
            d.error(
                0..0,
                format!("{key}.ns"),
                "a zone needs at least one name server (ns = [\"ns1\", ...])",
            );
        }
        for (i, n) in z.ns.iter().enumerate() {
            match parse_in_zone(n.get_ref(), apex) {
                Ok(name) if ns_names.contains(&name) => d.error(
                    n.span(),
                    format!("{key}.ns[{i}]"),
                    format!("{name} is listed twice"),
                ),
                Ok(name) => ns_names.push(name),
                Err(msg) => d.error(n.span(), format!("{key}.ns[{i}]"), msg),
            }
        }
        let ns_rdata: Vec<Box<[u8]>> = ns_names
            .iter()
            .filter_map(|n| zone::encode_rdata(&RData::NS(NS(n.clone()))).ok())
            .collect();
        nodes.entry(apex_w.clone()).or_default().rrsets.push(RrSet {
            rtype: rtype::NS,
            ttl: zttl,
            rdata: ns_rdata,
            target: None,
        });
        // SOA.
        let soa_cfg = &z.soa;
        let mname = match &soa_cfg.mname {
            Some(m) => parse_in_zone(m.get_ref(), apex).unwrap_or_else(|msg| {
                d.error(m.span(), format!("{key}.soa.mname"), msg);
                apex.clone()
            }),
            None => ns_names.first().cloned().unwrap_or_else(|| apex.clone()),
        };
        let rname = match &soa_cfg.rname {
            Some(r) => parse_in_zone(r.get_ref(), apex).unwrap_or_else(|msg| {
                d.error(r.span(), format!("{key}.soa.rname"), msg);
                apex.clone()
            }),
            None => Name::from_ascii("hostmaster")
                .ok()
                .and_then(|h| h.append_domain(apex).ok())
                .unwrap_or_else(|| apex.clone()),
        };
        let dur = |v: &Option<Spanned<crate::config::duration::Duration>>, def: u32| {
            v.as_ref().map_or(def, |x| x.get_ref().as_ttl())
        };
        let minimum = dur(&soa_cfg.minimum, 60);
        let soa_ttl = dur(&soa_cfg.ttl, zttl);
        let clamp = |x: u32| i32::try_from(x).unwrap_or(i32::MAX);
        let soa = SOA::new(
            mname,
            rname,
            soa_cfg.serial.unwrap_or(1),
            clamp(dur(&soa_cfg.refresh, 3600)),
            clamp(dur(&soa_cfg.retry, 900)),
            clamp(dur(&soa_cfg.expire, 604_800)),
            minimum,
        );
        let soa_set = RrSet {
            rtype: rtype::SOA,
            ttl: soa_ttl,
            rdata: zone::encode_rdata(&RData::SOA(soa))
                .ok()
                .into_iter()
                .collect(),
            target: None,
        };
        if let Some(apex_node) = nodes.get_mut(&apex_w) {
            apex_node.rrsets.insert(0, soa_set.clone());
        }
        // Static records.
        let mut ttls: HashMap<(WireName, u16), (u32, usize)> = HashMap::new();
        // Where each CNAME was written (record index, data span), to name
        // the records of a CNAME loop.
        let mut cname_at: HashMap<WireName, (usize, std::ops::Range<usize>)> = HashMap::new();
        for (i, r) in z.records.iter().enumerate() {
            let rkey = format!("{key}.records[{i}]");
            let owner = match parse_in_zone(r.name.get_ref(), apex) {
                Ok(n) => n,
                Err(msg) => {
                    d.error(r.name.span(), format!("{rkey}.name"), msg);
                    continue;
                }
            };
            let owner_w = zone::wire_name(&owner);
            if !in_zone(&owner_w, &apex_w) {
                d.error(
                    r.name.span(),
                    format!("{rkey}.name"),
                    format!("{owner} is outside zone {apex}; records must be at or below the zone apex (write relative names without a trailing dot)"),
                );
                continue;
            }
            let Some(rt) = zone::static_record_type(r.rtype.get_ref()) else {
                d.error(r.rtype.span(), format!("{rkey}.type"), format!("unsupported record type {:?}; use A, AAAA, CNAME, MX, TXT, SRV, CAA, NS or PTR", r.rtype.get_ref()));
                continue;
            };
            if rt == RecordType::NS && owner_w == apex_w {
                d.error(
                    r.rtype.span(),
                    format!("{rkey}.type"),
                    format!("apex NS records come from {key}.ns; list the name server there"),
                );
                continue;
            }
            let rdata = match RData::try_from_str(rt, r.data.get_ref()) {
                Ok(rd) => absolutize(rd, apex),
                Err(e) => {
                    d.error(
                        r.data.span(),
                        format!("{rkey}.data"),
                        format!("bad {rt} data {:?}: {e}", r.data.get_ref()),
                    );
                    continue;
                }
            };
            let encoded = match zone::encode_rdata(&rdata) {
                Ok(b) => b,
                Err(e) => {
                    d.error(r.data.span(), format!("{rkey}.data"), e);
                    continue;
                }
            };
            let ttl = r.ttl.as_ref().map_or(zttl, |t| t.get_ref().as_ttl());
            let tkey = (owner_w.clone(), u16::from(rt));
            if let Some(&(prev, pi)) = ttls.get(&tkey) {
                if prev != ttl {
                    d.error(r.name.span(), format!("{rkey}.ttl"), format!("TTL {ttl} differs from records[{pi}] ({prev}) of the same name and type; records of one set share one TTL"));
                }
            } else {
                ttls.insert(tkey, (ttl, i));
            }
            let node = nodes.entry(owner_w.clone()).or_default();
            let t = u16::from(rt);
            if t == rtype::CNAME && !node.rrsets.is_empty()
                || t != rtype::CNAME && node.rrset(rtype::CNAME).is_some()
            {
                d.error(
                    r.name.span(),
                    format!("{rkey}.name"),
                    format!(
                        "{owner} has a CNAME and other records; a CNAME must be alone at its name"
                    ),
                );
                continue;
            }
            match node.rrsets.iter_mut().find(|s| s.rtype == t) {
                Some(set) => {
                    if t == rtype::CNAME {
                        d.error(
                            r.name.span(),
                            format!("{rkey}.name"),
                            format!("{owner} has two CNAME records; only one is allowed"),
                        );
                        continue;
                    }
                    if set.rdata.contains(&encoded) {
                        d.error(r.data.span(), format!("{rkey}.data"), "duplicate record");
                        continue;
                    }
                    set.rdata.push(encoded);
                }
                None => node.rrsets.push(RrSet {
                    rtype: t,
                    ttl,
                    target: rrset_target(&rdata),
                    rdata: vec![encoded],
                }),
            }
            if t == rtype::NS {
                node.delegation = true;
            }
            if t == rtype::CNAME {
                cname_at.insert(owner_w.clone(), (i, r.data.span()));
            }
        }
        // Data below a zone cut is occluded except glue addresses.
        let cuts: Vec<WireName> = nodes
            .iter()
            .filter(|(_, n)| n.delegation)
            .map(|(k, _)| k.clone())
            .collect();
        for (name, node) in &nodes {
            let below_cut = cuts.iter().any(|c| c != name && in_zone(name, c));
            let at_cut_other = node.delegation
                && node
                    .rrsets
                    .iter()
                    .any(|s| s.rtype != rtype::NS && s.rtype != rtype::A && s.rtype != rtype::AAAA);
            let below_bad = below_cut
                && node
                    .rrsets
                    .iter()
                    .any(|s| s.rtype != rtype::A && s.rtype != rtype::AAAA);
            if at_cut_other || below_bad {
                d.error(0..0, key, format!("{} is at or below the delegation to a child zone; only NS and glue A/AAAA records may be there", zone::display_name(name)));
            }
        }
        // Glue for every NS set.
        let ns_targets: Vec<(WireName, Vec<WireName>)> = nodes
            .iter()
            .filter_map(|(k, n)| {
                let set = n.rrset(rtype::NS)?;
                Some((k.clone(), set.rdata.to_vec()))
            })
            .collect();
        for (owner, targets) in ns_targets {
            let mut glue = Glue::default();
            for t in targets {
                let lc: WireName = t.iter().map(u8::to_ascii_lowercase).collect();
                if let Some(n) = nodes.get(&lc) {
                    for set in n
                        .rrsets
                        .iter()
                        .filter(|s| s.rtype == rtype::A || s.rtype == rtype::AAAA)
                    {
                        glue.sets.push((lc.clone(), set.clone()));
                    }
                }
            }
            if let Some(n) = nodes.get_mut(&owner) {
                n.glue = glue;
            }
        }
        add_empty_non_terminals(&mut nodes, &apex_w);
        for (start, (i, span)) in &cname_at {
            if let Some(cycle) = cname_cycle(&nodes, &apex_w, start) {
                let path: Vec<String> = cycle.iter().map(|n| zone::display_name(n)).collect();
                d.error(
                    span.clone(),
                    format!("{key}.records[{i}].data"),
                    format!(
                        "CNAME loop: {} -> {}; a chain must end at a name with data",
                        path.join(" -> "),
                        zone::display_name(start)
                    ),
                );
            }
        }
        Some(Zone {
            index: 0,
            display: apex.to_string(),
            negative_ttl: soa_ttl.min(minimum),
            apex: apex_w,
            soa: soa_set,
            nodes,
        })
    }

    fn compile_names(
        &mut self,
        names: &BTreeMap<String, Spanned<NameConfig>>,
        zones: &mut [Zone],
    ) -> Vec<Balancer> {
        let mut out = Vec::new();
        for (name, n) in names {
            let key = format!("names.{}", quote_key(name));
            let fqdn = match parse_abs(name) {
                Ok(f) => f,
                Err(msg) => {
                    self.d.error(n.span(), &key, msg);
                    continue;
                }
            };
            let w = zone::wire_name(&fqdn);
            let Some(zone) = zones
                .iter_mut()
                .filter(|z| in_zone(&w, &z.apex))
                .max_by_key(|z| z.apex.len())
            else {
                self.d.error(
                    n.span(),
                    &key,
                    format!(
                        "{fqdn} is not inside any zone in [zones]; add its zone or fix the name"
                    ),
                );
                continue;
            };
            let Some(b) = self.compile_balancer(&fqdn, n.get_ref(), &key) else {
                continue;
            };
            let has_host = self.balancer_pools(&b).any(|p| {
                self.pools[p as usize]
                    .endpoints
                    .iter()
                    .any(|e| matches!(e.target, Target::Host(_)))
            });
            let node = zone.nodes.entry(w.clone()).or_default();
            let conflict = node.rrsets.iter().any(|s| {
                s.rtype == rtype::A || s.rtype == rtype::AAAA || s.rtype == rtype::CNAME || has_host
            });
            if conflict {
                self.d.error(n.span(), &key, format!("{fqdn} also has static records that conflict with balancing (A/AAAA/CNAME, or any record when a pool has host-name endpoints, which answer with a CNAME)"));
                continue;
            }
            if node.delegation || parent_is_cut(&zone.nodes, &w, &zone.apex) {
                self.d.error(
                    n.span(),
                    &key,
                    format!("{fqdn} is at or below a delegation to a child zone"),
                );
                continue;
            }
            if has_host && w == zone.apex {
                self.d.error(
                    n.span(),
                    &key,
                    "the zone apex cannot be a CNAME, so its pools cannot have host-name endpoints",
                );
                continue;
            }
            if let Some(node) = zone.nodes.get_mut(&w) {
                node.balancer = Some(out.len() as u32);
            }
            add_empty_non_terminals(&mut zone.nodes, &zone.apex.clone());
            out.push(b);
        }
        out
    }

    fn balancer_pools<'b>(&self, b: &'b Balancer) -> impl Iterator<Item = PoolId> + 'b {
        let lists: Box<dyn Iterator<Item = PoolId>> = match &b.policy {
            Policy::Failover(l) | Policy::Proximity(l) | Policy::Weighted(l) => {
                Box::new(l.iter().copied())
            }
            Policy::Geo(m) => Box::new(m.lists.iter().flat_map(|l| l.iter().copied())),
            Policy::Latency(l) => Box::new(l.pools.iter().copied()),
        };
        lists.chain(b.fallback)
    }

    fn pool_list(&mut self, list: &Spanned<Vec<SString>>, key: &str) -> Option<Box<[PoolId]>> {
        if list.get_ref().is_empty() {
            self.d.error(list.span(), key, "list at least one pool");
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, p) in list.get_ref().iter().enumerate() {
            match self.pool_ids.get(p.get_ref()) {
                Some(&id) if out.contains(&id) => {
                    self.d.error(
                        p.span(),
                        format!("{key}[{i}]"),
                        format!("pool {:?} is listed twice", p.get_ref()),
                    );
                    ok = false;
                }
                Some(&id) => out.push(id),
                None => {
                    self.unknown_pool(p, &format!("{key}[{i}]"));
                    ok = false;
                }
            }
        }
        ok.then(|| out.into_boxed_slice())
    }

    fn unknown_pool(&mut self, p: &SString, key: &str) {
        let mut known: Vec<&str> = self.pool_ids.keys().map(String::as_str).collect();
        known.sort_unstable();
        let known = if known.is_empty() {
            "none are defined".to_string()
        } else {
            format!("defined pools: {}", known.join(", "))
        };
        self.d.error(
            p.span(),
            key,
            format!("unknown pool {:?}; {known}", p.get_ref()),
        );
    }

    fn compile_balancer(&mut self, fqdn: &Name, n: &NameConfig, key: &str) -> Option<Balancer> {
        let kind = *n.policy.get_ref();
        super::cluster::check_latency_keys(&mut self.d, n, key);
        let policy = match kind {
            PolicyKind::Geo => {
                if let Some(p) = &n.pools {
                    self.d.error(p.span(), format!("{key}.pools"), "policy \"geo\" takes its pools from the geo map; remove `pools` or change the policy");
                }
                let Some(g) = &n.geo else {
                    self.d.error(n.policy.span(), format!("{key}.policy"), format!("policy \"geo\" needs a [{key}.geo] table with at least `default = [\"pool\"]`"));
                    return None;
                };
                self.geo_uses.push(GeoUse {
                    span: g.span(),
                    key: format!("{key}.geo"),
                    field: GeoField::Location,
                });
                Policy::Geo(Box::new(
                    self.compile_geo_map(g.get_ref(), &format!("{key}.geo"))?,
                ))
            }
            other => {
                if let Some(g) = &n.geo {
                    self.d.error(g.span(), format!("{key}.geo"), format!("a geo map is only used with policy = \"geo\" (this name uses {other:?})"));
                }
                let Some(p) = &n.pools else {
                    self.d.error(
                        n.policy.span(),
                        format!("{key}.pools"),
                        "this policy needs `pools = [\"pool\", ...]`",
                    );
                    return None;
                };
                let list = self.pool_list(p, &format!("{key}.pools"))?;
                match other {
                    PolicyKind::Failover => Policy::Failover(list),
                    PolicyKind::Proximity => Policy::Proximity(list),
                    PolicyKind::Latency => {
                        super::cluster::latency_policy(&mut self.d, n, list, p, key)?
                    }
                    _ => Policy::Weighted(list),
                }
            }
        };
        let fallback = match &n.fallback {
            Some(f) => match self.pool_ids.get(f.get_ref()) {
                Some(&id) => Some(id),
                None => {
                    self.unknown_pool(f, &format!("{key}.fallback"));
                    None
                }
            },
            None => None,
        };
        let max_answers = match &n.max_answers {
            Some(m) if *m.get_ref() == 0 => {
                self.d.error(
                    m.span(),
                    format!("{key}.max_answers"),
                    "must be at least 1 (leave it out to answer every usable endpoint)",
                );
                1
            }
            Some(m) => *m.get_ref() as usize,
            None if kind == PolicyKind::Weighted => 1,
            None => usize::MAX,
        };
        Some(Balancer {
            name: fqdn.to_string(),
            ttl: n.ttl.get_ref().as_ttl(),
            policy,
            fallback,
            max_answers,
            all_down: match n.all_down {
                AllDownConfig::FailOpen => AllDown::FailOpen,
                AllDownConfig::Nodata => AllDown::Nodata,
            },
        })
    }

    fn compile_geo_map(&mut self, g: &GeoMapConfig, key: &str) -> Option<GeoMap> {
        let mut m = GeoMap::default();
        let mut ok = true;
        let intern = |c: &mut Self,
                      list: &Spanned<Vec<SString>>,
                      k: String,
                      m: &mut GeoMap|
         -> Option<u32> {
            let l = c.pool_list(list, &k)?;
            if let Some(i) = m.lists.iter().position(|x| *x == l) {
                return Some(i as u32);
            }
            m.lists.push(l);
            Some(m.lists.len() as u32 - 1)
        };
        match intern(self, &g.default, format!("{key}.default"), &mut m) {
            Some(i) => m.default = i,
            None => ok = false,
        }
        for (code, list) in &g.continent {
            let k = format!("{key}.continent.{}", quote_key(code));
            let c = Continent::from_code(code)
                .map_err(|e| self.d.error(list.span(), &k, e))
                .ok();
            if let (Some(c), Some(i)) = (c, intern(self, list, k, &mut m)) {
                m.continent.insert(c, i);
            }
        }
        for (code, list) in &g.country {
            let k = format!("{key}.country.{}", quote_key(code));
            let c = CountryCode::parse(code)
                .map_err(|e| self.d.error(list.span(), &k, e))
                .ok();
            if let (Some(c), Some(i)) = (c, intern(self, list, k, &mut m)) {
                m.country.insert(c, i);
            }
        }
        if let Some((code, list)) = g.subdivision.iter().next() {
            self.geo_uses.push(GeoUse {
                span: list.span(),
                key: format!("{key}.subdivision.{}", quote_key(code)),
                field: GeoField::Subdivision,
            });
        }
        if let Some((code, list)) = g.asn.iter().next() {
            self.geo_uses.push(GeoUse {
                span: list.span(),
                key: format!("{key}.asn.{}", quote_key(code)),
                field: GeoField::Asn,
            });
        }
        for (code, list) in &g.subdivision {
            let k = format!("{key}.subdivision.{}", quote_key(code));
            let c = Subdivision::parse(code)
                .map_err(|e| self.d.error(list.span(), &k, e))
                .ok();
            if let (Some(c), Some(i)) = (c, intern(self, list, k, &mut m)) {
                m.subdivision.insert(c, i);
            }
        }
        for (code, list) in &g.asn {
            let k = format!("{key}.asn.{}", quote_key(code));
            let a = code
                .trim_start_matches(['A', 'S', 'a', 's'])
                .parse::<u32>()
                .ok();
            if a.is_none() {
                self.d.error(
                    list.span(),
                    &k,
                    format!("{code:?} is not an AS number; write e.g. \"64512\" or \"AS64512\""),
                );
            }
            if let (Some(a), Some(i)) = (a, intern(self, list, k, &mut m)) {
                m.asn.insert(a, i);
            }
        }
        let mut trie = PrefixTrie::new();
        for (net, list) in &g.cidr {
            let k = format!("{key}.cidr.{}", quote_key(net));
            let parsed = parse_net(&Spanned::new(list.span(), net.clone()), &k, &mut self.d);
            if let (Some(n), Some(i)) = (parsed, intern(self, list, k, &mut m)) {
                trie.insert(n, i);
                m.has_cidr = true;
            }
        }
        m.cidr = trie;
        ok.then_some(m)
    }
}

fn parent_is_cut(nodes: &FxHashMap<WireName, Node>, name: &[u8], apex: &[u8]) -> bool {
    let mut n = parent(name);
    while n.len() > apex.len() {
        if nodes.get(n).is_some_and(|x| x.delegation) {
            return true;
        }
        n = parent(n);
    }
    false
}

/// Every ancestor of a name, up to the apex, exists (RFC 4592 empty
/// non-terminals), so NXDOMAIN is only given for names that really have
/// nothing at or below them.
fn add_empty_non_terminals(nodes: &mut FxHashMap<WireName, Node>, apex: &[u8]) {
    let names: Vec<WireName> = nodes.keys().cloned().collect();
    for n in names {
        let mut p: &[u8] = &n;
        while p.len() > apex.len() {
            p = parent(p);
            nodes.entry(Box::from(p)).or_default();
        }
    }
}
