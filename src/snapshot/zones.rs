//! `[zones]` → zones, one step per function: apex NS, SOA, static records,
//! then the checks of the finished name tree (delegations, glue, CNAME
//! loops).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use hickory_proto::rr::rdata::{CNAME, NS, PTR, SOA};
use hickory_proto::rr::{Name, RData, RecordType};
use rustc_hash::FxHashMap;
use toml::Spanned;

use super::parse::{parse_abs, parse_in_zone};
use super::zone_tree::{add_empty_non_terminals, cname_cycle, in_zone};
use crate::config::raw::ZoneConfig;
use crate::config::{Diagnostics, quote_key};
use crate::zone::{self, Glue, Node, RrSet, WireName, Zone, rtype};

type Nodes = FxHashMap<WireName, Node>;

/// Where each CNAME was written (record index, data span), to name the
/// records of a CNAME loop.
type CnameAt = HashMap<WireName, (usize, Range<usize>)>;

/// What every step of one zone reads.
#[derive(Clone, Copy)]
struct ZoneCx<'z> {
    apex: &'z Name,
    apex_w: &'z WireName,
    z: &'z ZoneConfig,
    key: &'z str,
    /// The zone's default TTL.
    zttl: u32,
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

pub(super) fn compile_zones(
    d: &mut Diagnostics<'_>,
    zones: &BTreeMap<String, Spanned<ZoneConfig>>,
) -> Vec<Zone> {
    let mut out: Vec<Zone> = Vec::new();
    for (zname, z) in zones {
        let key = format!("zones.{}", quote_key(zname));
        let apex = match parse_abs(zname) {
            Ok(n) => n,
            Err(msg) => {
                d.error(z.span(), &key, msg);
                continue;
            }
        };
        let apex_w = zone::wire_name(&apex);
        if out.iter().any(|o| o.apex == apex_w) {
            d.error(z.span(), &key, format!("zone {zname:?} is defined twice"));
            continue;
        }
        if let Some(zone) = compile_zone(d, &apex, z.get_ref(), &key) {
            out.push(zone);
        }
    }
    out
}

fn compile_zone(d: &mut Diagnostics<'_>, apex: &Name, z: &ZoneConfig, key: &str) -> Option<Zone> {
    let apex_w = zone::wire_name(apex);
    let cx = ZoneCx {
        apex,
        apex_w: &apex_w,
        z,
        key,
        zttl: z.ttl.get_ref().as_ttl(),
    };
    let mut nodes = Nodes::default();
    let ns_names = apex_ns(d, cx, &mut nodes);
    let (soa_set, soa_ttl, minimum) = apex_soa(d, cx, &ns_names, &mut nodes);
    let cname_at = static_records(d, cx, &mut nodes);
    check_cuts(d, key, &nodes);
    add_glue(&mut nodes);
    add_empty_non_terminals(&mut nodes, &apex_w);
    check_cname_loops(d, key, &nodes, &apex_w, &cname_at);
    Some(Zone {
        index: 0,
        display: apex.to_string(),
        negative_ttl: soa_ttl.min(minimum),
        apex: apex_w,
        soa: soa_set,
        nodes,
    })
}

/// The apex NS set from `ns = [...]`; returns the name servers.
fn apex_ns(d: &mut Diagnostics<'_>, cx: ZoneCx<'_>, nodes: &mut Nodes) -> Vec<Name> {
    let ZoneCx {
        apex,
        apex_w,
        z,
        key,
        zttl,
    } = cx;
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
    ns_names
}

/// The SOA from `[zones.x.soa]` (defaults from the first name server),
/// also put first at the apex; returns it, its TTL and its minimum.
fn apex_soa(
    d: &mut Diagnostics<'_>,
    cx: ZoneCx<'_>,
    ns_names: &[Name],
    nodes: &mut Nodes,
) -> (RrSet, u32, u32) {
    let ZoneCx {
        apex,
        apex_w,
        z,
        key,
        zttl,
    } = cx;
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
    if let Some(apex_node) = nodes.get_mut(apex_w) {
        apex_node.rrsets.insert(0, soa_set.clone());
    }
    (soa_set, soa_ttl, minimum)
}

/// `records = [...]` into their nodes, with the per-record checks.
fn static_records(d: &mut Diagnostics<'_>, cx: ZoneCx<'_>, nodes: &mut Nodes) -> CnameAt {
    let ZoneCx {
        apex,
        apex_w,
        z,
        key,
        zttl,
    } = cx;
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
        if !in_zone(&owner_w, apex_w) {
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
        if rt == RecordType::NS && owner_w == *apex_w {
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
                format!("{owner} has a CNAME and other records; a CNAME must be alone at its name"),
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
    cname_at
}

/// Data below a zone cut is occluded except glue addresses.
fn check_cuts(d: &mut Diagnostics<'_>, key: &str, nodes: &Nodes) {
    let cuts: Vec<WireName> = nodes
        .iter()
        .filter(|(_, n)| n.delegation)
        .map(|(k, _)| k.clone())
        .collect();
    for (name, node) in nodes {
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
}

/// Glue for every NS set: the A/AAAA sets of its targets inside the zone.
fn add_glue(nodes: &mut Nodes) {
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
}

fn check_cname_loops(
    d: &mut Diagnostics<'_>,
    key: &str,
    nodes: &Nodes,
    apex_w: &[u8],
    cname_at: &CnameAt,
) {
    for (start, (i, span)) in cname_at {
        if let Some(cycle) = cname_cycle(nodes, apex_w, start) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::testing::run;

    fn zones(extra: &str) -> (Vec<Zone>, String) {
        let text = format!("[zones.\"example.com\"]\nns = [\"ns1\", \"ns2.other.net.\"]\n{extra}");
        run(&text, |_, f, d| compile_zones(d, &f.zones))
    }

    fn w(name: &str) -> WireName {
        zone::wire_name(&name.parse().unwrap())
    }

    #[test]
    fn apex_has_soa_first_then_ns() {
        let (z, e) = zones("ttl = \"5m\"\nsoa = { minimum = \"30s\", serial = 7 }\n");
        assert_eq!(e, "");
        let z = &z[0];
        assert_eq!(z.display, "example.com.");
        let apex = &z.nodes[&z.apex];
        assert_eq!(apex.rrsets[0].rtype, rtype::SOA);
        assert_eq!(apex.rrsets[1].rtype, rtype::NS);
        assert_eq!(apex.rrsets[1].rdata.len(), 2);
        assert_eq!(apex.rrsets[1].ttl, 300);
        assert_eq!(z.soa.ttl, 300, "the SOA TTL defaults to the zone's");
        assert_eq!(z.negative_ttl, 30, "min(SOA TTL, minimum)");
        // mname defaults to the first name server, rname to hostmaster.
        let rdata = &z.soa.rdata[0];
        assert!(rdata.windows(4).any(|x| x == b"\x03ns1"));
        assert!(rdata.windows(11).any(|x| x == b"\x0ahostmaster"));
    }

    #[test]
    fn name_server_errors() {
        let (_, e) = run("[zones.\"example.com\"]\nns = []\n", |_, f, d| {
            compile_zones(d, &f.zones)
        });
        assert!(
            e.contains("zones.\"example.com\".ns: a zone needs at least one name server"),
            "{e}"
        );
        let (_, e) = run(
            "[zones.\"example.com\"]\nns = [\"ns1\", \"ns1.example.com.\"]\n",
            |_, f, d| compile_zones(d, &f.zones),
        );
        assert!(
            e.contains(".ns[1]: ns1.example.com. is listed twice"),
            "{e}"
        );
    }

    #[test]
    fn records_go_to_their_nodes() {
        let (z, e) = zones(
            "records = [\n\
             { name = \"www\", type = \"A\", data = \"192.0.2.1\" },\n\
             { name = \"www\", type = \"A\", data = \"192.0.2.2\", ttl = \"1m\" },\n\
             { name = \"alias\", type = \"CNAME\", data = \"www\" },\n\
             { name = \"a.b.c\", type = \"TXT\", data = \"hi\" },\n\
             ]\n",
        );
        assert!(
            e.contains("records[1].ttl: TTL 60 differs from records[0] (3600)"),
            "{e}"
        );
        let z = &z[0];
        assert_eq!(z.nodes[&w("www.example.com.")].rrsets[0].rdata.len(), 2);
        let alias = z.nodes[&w("alias.example.com.")]
            .rrset(rtype::CNAME)
            .unwrap();
        assert_eq!(
            alias.target.as_deref(),
            Some(&w("www.example.com.")[..]),
            "relative to the apex"
        );
        assert!(
            z.nodes[&w("b.c.example.com.")].is_empty(),
            "empty non-terminal"
        );
    }

    #[test]
    fn record_errors_name_the_record() {
        let (_, e) = zones(
            "records = [\n\
             { name = \"x.example.net.\", type = \"A\", data = \"192.0.2.1\" },\n\
             { name = \"@\", type = \"NS\", data = \"ns3\" },\n\
             { name = \"c\", type = \"CNAME\", data = \"www\" },\n\
             { name = \"c\", type = \"TXT\", data = \"x\" },\n\
             { name = \"d\", type = \"A\", data = \"192.0.2.1\" },\n\
             { name = \"d\", type = \"A\", data = \"192.0.2.1\" },\n\
             { name = \"e\", type = \"A\", data = \"nope\" },\n\
             { name = \"f\", type = \"HINFO\", data = \"x\" },\n\
             ]\n",
        );
        for want in [
            "records[0].name: x.example.net. is outside zone example.com.",
            "records[1].type: apex NS records come from zones.\"example.com\".ns",
            "records[3].name: c.example.com. has a CNAME and other records",
            "records[5].data: duplicate record",
            "records[6].data: bad A data \"nope\"",
            "records[7].type: unsupported record type \"HINFO\"",
        ] {
            assert!(e.contains(want), "{want} in\n{e}");
        }
    }

    #[test]
    fn delegations_get_glue_and_occlude() {
        let (z, e) = zones(
            "records = [\n\
             { name = \"sub\", type = \"NS\", data = \"ns.sub\" },\n\
             { name = \"ns.sub\", type = \"A\", data = \"192.0.2.53\" },\n\
             ]\n",
        );
        assert_eq!(e, "");
        let cut = &z[0].nodes[&w("sub.example.com.")];
        assert!(cut.delegation);
        assert_eq!(cut.glue.sets.len(), 1);
        assert_eq!(cut.glue.sets[0].0, w("ns.sub.example.com."));
        let (_, e) = zones(
            "records = [\n\
             { name = \"sub\", type = \"NS\", data = \"ns.sub\" },\n\
             { name = \"www.sub\", type = \"TXT\", data = \"hidden\" },\n\
             ]\n",
        );
        assert!(
            e.contains("www.sub.example.com. is at or below the delegation to a child zone"),
            "{e}"
        );
    }

    #[test]
    fn cname_loops_are_reported_at_their_records() {
        let (_, e) = zones(
            "records = [\n\
             { name = \"a\", type = \"CNAME\", data = \"b\" },\n\
             { name = \"b\", type = \"CNAME\", data = \"a\" },\n\
             ]\n",
        );
        assert!(
            e.contains(
                "records[0].data: CNAME loop: a.example.com. -> b.example.com. -> a.example.com."
            ),
            "{e}"
        );
        assert!(
            e.contains(
                "records[1].data: CNAME loop: b.example.com. -> a.example.com. -> b.example.com."
            ),
            "{e}"
        );
    }

    #[test]
    fn a_zone_twice_and_bad_names() {
        let (z, e) = run(
            "[zones.\"example.com\"]\nns = [\"ns1\"]\n[zones.\"example.com.\"]\nns = [\"ns1\"]\n[zones.\"a..b\"]\nns = [\"ns1\"]\n",
            |_, f, d| compile_zones(d, &f.zones),
        );
        assert_eq!(z.len(), 1);
        assert!(e.contains("zone \"example.com.\" is defined twice"), "{e}");
        assert!(e.contains("\"a..b\" is not a valid domain name"), "{e}");
    }
}
