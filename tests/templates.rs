//! Response templates are a cache of the engine: over the example config and over
//! random configs and queries (a seeded generator), the templated answer
//! is byte-identical to `answer::answer_with_info`, with the same
//! outcome, metrics info and random number state, while health flips.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use steerdns::dns::transport::Transport;
use steerdns::engine::answer::{self, AnswerInfo, Client};
use steerdns::engine::template::{Templates, answer_templated, next_snapshot_id};
use steerdns::engine::wire;
use steerdns::select::Rng;
use steerdns::snapshot::Snapshot;

/// A tiny deterministic generator for the test's choices.
struct Gen(Rng);

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

const QTYPES: [u16; 13] = [1, 28, 5, 15, 16, 2, 6, 255, 33, 99, 12, 257, 43];
/// Networks of geoip/sample.csv (and some it does not know).
const CLIENTS: [&str; 8] = [
    "81.2.69.7",
    "216.160.83.60",
    "175.16.199.2",
    "89.160.20.130",
    "2001:218::1",
    "2a02:cf40::9",
    "10.1.2.3",
    "127.0.0.1",
];

fn wire_name(name: &str, g: &mut Gen) -> Vec<u8> {
    let mut w = Vec::new();
    for l in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        w.push(l.len() as u8);
        for b in l.bytes() {
            // Random letter case: the question is echoed as sent.
            w.push(if g.chance(30) {
                b.to_ascii_uppercase()
            } else {
                b
            });
        }
    }
    w.push(0);
    w
}

fn random_query(g: &mut Gen, names: &[String]) -> (Vec<u8>, Client) {
    let mut p = Vec::new();
    p.extend_from_slice(&(g.below(65536) as u16).to_be_bytes());
    let mut f1 = if g.chance(50) { 0x01 } else { 0 };
    if g.chance(3) {
        f1 |= 4 << 3; // NOTIFY
    }
    let f2 = if g.chance(20) { 0x10 } else { 0 };
    p.extend_from_slice(&[f1, f2, 0, 1, 0, 0, 0, 0, 0, 0]);
    let name = g.pick(names).clone();
    p.extend_from_slice(&wire_name(&name, g));
    p.extend_from_slice(&g.pick(&QTYPES).to_be_bytes());
    let class: u16 = *g.pick(&[1, 1, 1, 1, 1, 1, 3, 255, 4]);
    p.extend_from_slice(&class.to_be_bytes());
    if g.chance(75) {
        p[11] = 1;
        let mut opts = Vec::new();
        if g.chance(60) {
            let v6 = g.chance(30);
            let (family, src, addr): (u16, u8, Vec<u8>) = if v6 {
                let a: IpAddr = g.pick(&CLIENTS[4..6]).parse().unwrap();
                let src = *g.pick(&[0u8, 32, 48, 56, 64]);
                (2, src, octets(steerdns::net::mask(a, src)))
            } else {
                let a: IpAddr = g.pick(&CLIENTS[..4]).parse().unwrap();
                let src = *g.pick(&[0u8, 8, 16, 20, 24, 32]);
                (1, src, octets(steerdns::net::mask(a, src)))
            };
            let n = (src as usize).div_ceil(8);
            opts.extend_from_slice(&[0, 8]);
            opts.extend_from_slice(&((4 + n) as u16).to_be_bytes());
            opts.extend_from_slice(&family.to_be_bytes());
            opts.extend_from_slice(&[src, 0]);
            opts.extend_from_slice(&addr[..n]);
        }
        if g.chance(20) {
            opts.extend_from_slice(&[0, 3, 0, 0]);
        }
        if g.chance(10) {
            opts.extend_from_slice(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        }
        let size: u16 = *g.pick(&[512, 600, 1232, 4096, 100]);
        let version = if g.chance(3) { 1 } else { 0 };
        let do_bit = if g.chance(30) { 0x80 } else { 0 };
        p.extend_from_slice(&[0, 0, 41]);
        p.extend_from_slice(&size.to_be_bytes());
        p.extend_from_slice(&[0, version, do_bit, 0]);
        p.extend_from_slice(&(opts.len() as u16).to_be_bytes());
        p.extend_from_slice(&opts);
    }
    let ip: IpAddr = g.pick(&CLIENTS).parse().unwrap();
    let transport = if g.chance(15) {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    let client = Client {
        addr: SocketAddr::new(ip, 40000),
        transport,
    };
    (p, client)
}

/// `base` with another id, RD and CD bits, letter case, ECS address
/// (same family and source prefix) and client address.
fn vary(g: &mut Gen, base: &[u8], client: Client) -> (Vec<u8>, Client) {
    let mut p = base.to_vec();
    p[0] = g.below(256) as u8;
    p[1] = g.below(256) as u8;
    p[2] = (p[2] & !0x01) | g.below(2) as u8;
    p[3] = (p[3] & !0x10) | if g.chance(20) { 0x10 } else { 0 };
    let mut i = 12;
    while p[i] != 0 {
        let end = i + 1 + p[i] as usize;
        for b in &mut p[i + 1..end] {
            if b.is_ascii_alphabetic() && g.chance(30) {
                *b ^= 0x20;
            }
        }
        i += 1 + p[i] as usize;
    }
    if let Ok(q) = wire::parse(base)
        && let Some(ecs) = q.edns.and_then(|e| e.ecs)
    {
        let at = p.len() - base.len() + find_ecs(base);
        let pool = if ecs.family == 1 {
            &CLIENTS[..4]
        } else {
            &CLIENTS[4..6]
        };
        let a: IpAddr = g.pick(pool).parse().unwrap();
        let n = (ecs.source_prefix as usize).div_ceil(8);
        p[at + 8..at + 8 + n]
            .copy_from_slice(&octets(steerdns::net::mask(a, ecs.source_prefix))[..n]);
    }
    let ip: IpAddr = g.pick(&CLIENTS).parse().unwrap();
    (
        p,
        Client {
            addr: SocketAddr::new(ip, 40000),
            transport: client.transport,
        },
    )
}

/// Offset of the ECS option (code 8, first option) in a query built by
/// `random_query`.
fn find_ecs(p: &[u8]) -> usize {
    let mut i = 12;
    while p[i] != 0 {
        i += 1 + p[i] as usize;
    }
    // root, type, class, OPT header (11), then the first option.
    let at = i + 1 + 4 + 11;
    assert_eq!(&p[at..at + 2], &[0, 8]);
    at
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Answer `queries` random queries both ways and compare; returns the
/// cache's (hits, misses).
fn compare(snap: &Snapshot, names: &[String], seed: u64, queries: usize) -> (u64, u64) {
    let mut g = Gen(Rng::seeded(seed));
    let mut cache = Templates::new();
    let id = next_snapshot_id();
    let (mut rng_a, mut rng_b) = (Rng::seeded(seed), Rng::seeded(seed));
    let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
    let bases: Vec<_> = (0..48).map(|_| random_query(&mut g, names)).collect();
    for i in 0..queries {
        if !snap.health.is_empty() && g.chance(2) {
            let ep = g.below(snap.health.len()) as u32;
            snap.health.set(ep, g.chance(60));
        }
        // Mostly variations of a few queries (id, flags, letter case,
        // ECS address, source), so templates get replayed.
        let (pkt, client) = if g.chance(20) {
            random_query(&mut g, names)
        } else {
            let (base, c) = &bases[g.below(bases.len())];
            vary(&mut g, base, *c)
        };
        let (mut info_a, mut info_b) = (AnswerInfo::default(), AnswerInfo::default());
        let a = answer::answer_with_info(snap, &pkt, client, &mut rng_a, &mut out_a, &mut info_a);
        let b = answer_templated(
            &mut cache,
            snap,
            id,
            &pkt,
            client,
            &mut rng_b,
            &mut out_b,
            &mut info_b,
        );
        let ctx = || format!("seed {seed} query {i}: {pkt:02x?} from {client:?}");
        assert_eq!(a, b, "{}", ctx());
        if info_a.cookie.is_some() && out_a.len() == out_b.len() && out_a.len() > 16 {
            // A fresh server cookie ends the answer: it carries the clock's
            // second (RFC 9018), which may tick between the two answers
            // (the replay writes its own); the rest must agree.
            let n = out_a.len() - 16;
            assert_eq!(out_a[..n], out_b[..n], "{}", ctx());
        } else {
            assert_eq!(out_a, out_b, "{}", ctx());
        }
        assert_eq!(info_a, info_b, "{}", ctx());
        assert_eq!(
            rng_a.clone().next_u64(),
            rng_b.clone().next_u64(),
            "{}",
            ctx()
        );
    }
    for ep in 0..snap.health.len() as u32 {
        snap.health.set(ep, true);
    }
    cache.stats()
}

fn compile(path: &Path) -> Result<Snapshot, steerdns::config::ConfigError> {
    let (source, file) = steerdns::config::load(path)?;
    steerdns::snapshot::build(&source, &file, 1)
}

fn load(text: &str) -> Option<Snapshot> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steerdns.toml");
    std::fs::write(&path, text).unwrap();
    compile(&path).ok()
}

#[test]
fn example_config_templates_match_the_engine() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let snap = compile(&path).unwrap();
    let names: Vec<String> = [
        "www",
        "static",
        "lab",
        "alias",
        "mail",
        "ns1",
        "ns2",
        "@",
        "nx",
        "a.b.www",
        "id.server.",
        "version.bind.",
        "other.example.",
    ]
    .iter()
    .map(|n| match *n {
        "@" => "lb.example.com".to_string(),
        n if n.ends_with('.') => n.to_string(),
        n => format!("{n}.lb.example.com"),
    })
    .collect();
    let (hits, misses) = compare(&snap, &names, 7, 20_000);
    assert!(
        hits > misses,
        "templates replayed too rarely: {hits} hits, {misses} misses"
    );
}

/// A random config: a few zones with static records (CNAME chains and
/// loops, wildcards, delegations, MX), pools of addresses and host
/// names, balanced names of every location-independent policy and geo.
fn random_config(g: &mut Gen) -> (String, Vec<String>) {
    let db = Path::new(env!("CARGO_MANIFEST_DIR")).join("geoip/sample.mmdb");
    let mut t = format!(
        "[server]\nnode_name = \"n{}\"\ndns_listen = [\"127.0.0.1:0\"]\n",
        g.below(1000)
    );
    if g.chance(50) {
        t.push_str("ecs = false\n");
    }
    if g.chance(50) {
        t.push_str("max_udp_payload = 600\n");
    }
    if g.chance(50) {
        t.push_str("[cookies]\nenabled = false\n");
    }
    t.push_str(&format!("[geoip]\ndatabase = {:?}\n", db.to_str().unwrap()));
    let mut names = vec!["nowhere.invalid".to_string()];
    let zones = 1 + g.below(2);
    let pools = 1 + g.below(4);
    for p in 0..pools {
        t.push_str(&format!("[pools.p{p}]\nendpoints = [\n"));
        for e in 0..1 + g.below(4) {
            let addr = match g.below(5) {
                0 | 1 => format!("192.0.2.{}", p * 10 + e + 1),
                2 | 3 => format!("2001:db8::{:x}", p * 16 + e + 1),
                _ => format!("h{e}.t0.test"),
            };
            let weight = 1 + g.below(3);
            t.push_str(&format!(
                "  {{ address = \"{addr}\", weight = {weight} }},\n"
            ));
        }
        t.push_str("]\n");
    }
    for z in 0..zones {
        let apex = format!("t{z}.test");
        names.push(apex.clone());
        t.push_str(&format!(
            "[zones.\"{apex}\"]\nns = [\"ns1\", \"ns1.other.example.\"]\nrecords = [\n  {{ name = \"ns1\", type = \"A\", data = \"192.0.2.53\" }},\n"
        ));
        names.push(format!("ns1.{apex}"));
        for r in 0..2 + g.below(8) {
            let name = format!("r{r}");
            let rec = match g.below(9) {
                0 => format!("type = \"A\", data = \"192.0.2.{r}\""),
                1 => format!("type = \"AAAA\", data = \"2001:db8::{r}\""),
                2 => format!("type = \"CNAME\", data = \"r{}\"", g.below(10)),
                3 => format!("type = \"CNAME\", data = \"b{}\"", g.below(3)),
                4 => "type = \"MX\", data = \"10 mail.other.example.\"".to_string(),
                5 => format!("type = \"TXT\", data = \"\\\"t{r}\\\"\""),
                6 => "type = \"NS\", data = \"ns.sub.other.example.\"".to_string(),
                7 => format!("type = \"SRV\", data = \"1 2 53 r{}\"", g.below(5)),
                _ => format!("type = \"A\", data = \"198.51.100.{r}\""),
            };
            let rname = if g.chance(8) {
                "*".to_string()
            } else {
                name.clone()
            };
            t.push_str(&format!("  {{ name = \"{rname}\", {rec} }},\n"));
            names.push(format!("{name}.{apex}"));
            names.push(format!("x.{name}.{apex}"));
        }
        t.push_str("]\n");
        for b in 0..g.below(4) {
            let fqdn = format!("b{b}.{apex}");
            names.push(fqdn.clone());
            let list = |g: &mut Gen| -> String {
                let n = 1 + g.below(pools);
                let v: Vec<String> = (0..n).map(|_| format!("\"p{}\"", g.below(pools))).collect();
                let mut v2: Vec<String> = Vec::new();
                for x in v {
                    if !v2.contains(&x) {
                        v2.push(x);
                    }
                }
                v2.join(", ")
            };
            t.push_str(&format!(
                "[names.\"{fqdn}\"]\nttl = \"{}s\"\n",
                5 + g.below(60)
            ));
            if g.chance(30) {
                t.push_str(&format!("max_answers = {}\n", 1 + g.below(2)));
            }
            if g.chance(30) {
                t.push_str("all_down = \"nodata\"\n");
            }
            if g.chance(30) {
                t.push_str(&format!("fallback = \"p{}\"\n", g.below(pools)));
            }
            match g.below(4) {
                0 => t.push_str(&format!("policy = \"failover\"\npools = [{}]\n", list(g))),
                1 => t.push_str(&format!("policy = \"weighted\"\npools = [{}]\n", list(g))),
                _ => {
                    t.push_str("policy = \"geo\"\n");
                    t.push_str(&format!(
                        "[names.\"{fqdn}\".geo]\ndefault = [{}]\ncontinent = {{ EU = [{}], NA = [{}], AS = [{}] }}\n",
                        list(g),
                        list(g),
                        list(g),
                        list(g)
                    ));
                }
            }
        }
    }
    (t, names)
}

#[test]
fn random_configs_templates_match_the_engine() {
    let (mut hits, mut configs) = (0, 0);
    for seed in 1..=60u64 {
        let mut g = Gen(Rng::seeded(seed * 7919));
        let (text, names) = random_config(&mut g);
        // The generator does not avoid what `check` rejects (CNAME
        // loops, dangling chains): such configs are skipped.
        let Some(snap) = load(&text) else {
            continue;
        };
        configs += 1;
        hits += compare(&snap, &names, seed, 2_000).0;
    }
    assert!(configs >= 30, "only {configs} random configs compiled");
    assert!(
        hits > configs * 500,
        "templates replayed too rarely: {hits} hits"
    );
}

/// A query with a DNS Cookie: `id`, static.lb.example.com A, EDNS with a
/// COOKIE option of `client` and, when given, `server`.
fn cookie_query(id: u16, client: [u8; 8], server: Option<&[u8]>) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&[0x01, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(b"\x06static\x02lb\x07example\x03com\x00\x00\x01\x00\x01");
    let slen = server.map_or(0, <[u8]>::len);
    let olen = 4 + 8 + slen;
    p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    p.extend_from_slice(&(olen as u16).to_be_bytes());
    p.extend_from_slice(&[0, 10]);
    p.extend_from_slice(&((8 + slen) as u16).to_be_bytes());
    p.extend_from_slice(&client);
    if let Some(s) = server {
        p.extend_from_slice(s);
    }
    p
}

#[test]
fn cookie_answers_are_replayed_with_a_fresh_cookie() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let snap = compile(&path).unwrap();
    assert!(
        snap.settings.cookies.is_some(),
        "the example has cookies on"
    );
    let id = next_snapshot_id();
    let mut cache = Templates::new();
    let mut rng = Rng::seeded(1);
    let client = Client {
        addr: SocketAddr::new("192.0.2.99".parse().unwrap(), 5300),
        transport: Transport::Udp,
    };
    let ask = |cache: &mut Templates, rng: &mut Rng, pkt: &[u8]| {
        let (mut out, mut info) = (Vec::new(), AnswerInfo::default());
        answer_templated(cache, &snap, id, pkt, client, rng, &mut out, &mut info);
        (out, info)
    };
    let (first, info) = ask(&mut cache, &mut rng, &cookie_query(1, [1; 8], None));
    assert_eq!(info.cookie, Some(answer::CookieState::ClientOnly));
    let server = first[first.len() - 16..].to_vec();
    // Another client cookie: replayed, with that client cookie echoed.
    let (second, info) = ask(&mut cache, &mut rng, &cookie_query(2, [2; 8], None));
    assert_eq!(cache.stats().0, 1, "the second query is a template hit");
    assert_eq!(info.cookie, Some(answer::CookieState::ClientOnly));
    assert_eq!(second[second.len() - 24..second.len() - 16], [2; 8]);
    assert_eq!(first.len(), second.len());
    // The server cookie we gave back is valid on a replay too, and the
    // replay answers as the engine does (but for the fresh server cookie's
    // clock second).
    let pkt = cookie_query(3, [1; 8], Some(&server));
    let (third, info) = ask(&mut cache, &mut rng, &pkt);
    assert_eq!(cache.stats().0, 2);
    assert_eq!(info.cookie, Some(answer::CookieState::Valid));
    let mut engine = Vec::new();
    let mut einfo = AnswerInfo::default();
    answer::answer_with_info(&snap, &pkt, client, &mut rng, &mut engine, &mut einfo);
    assert_eq!(einfo, info);
    assert_eq!(engine[..engine.len() - 16], third[..third.len() - 16]);
    // A forged server cookie is not.
    let mut forged = server.clone();
    forged[15] ^= 1;
    let (_, info) = ask(
        &mut cache,
        &mut rng,
        &cookie_query(4, [1; 8], Some(&forged)),
    );
    assert_eq!(info.cookie, Some(answer::CookieState::ClientOnly));
}
