use super::*;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(serde::Deserialize, Debug, PartialEq)]
struct Country<'a> {
    iso_code: &'a str,
}
#[derive(serde::Deserialize, Debug, PartialEq)]
struct Loc {
    latitude: f64,
    longitude: f64,
}
#[derive(serde::Deserialize, Debug, PartialEq)]
struct Nested<'a> {
    #[serde(borrow)]
    country: Country<'a>,
    location: Option<Loc>,
    #[serde(borrow, default)]
    subdivisions: Vec<Country<'a>>,
}
#[derive(serde::Deserialize, Debug, PartialEq)]
struct Flat<'a> {
    country_code: &'a str,
    latitude: Option<f32>,
    longitude: Option<f32>,
}

fn nested(cc: &str, lat: f64, lon: f64) -> MmdbValue {
    MmdbValue::map([
        (
            "country",
            MmdbValue::map([("iso_code", MmdbValue::string(cc))]),
        ),
        (
            "location",
            MmdbValue::map([
                ("latitude", MmdbValue::Double(lat)),
                ("longitude", MmdbValue::Double(lon)),
            ]),
        ),
        (
            "subdivisions",
            MmdbValue::Array(vec![MmdbValue::map([("iso_code", MmdbValue::string("X"))])]),
        ),
    ])
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn reader(w: &MmdbWriter) -> maxminddb::Reader<Vec<u8>> {
    let r = maxminddb::Reader::from_source(w.to_bytes().unwrap()).unwrap();
    r.verify().unwrap();
    r
}

#[test]
fn nested_v6_tree_round_trip() {
    let mut w = MmdbWriter::new("Test-City", IpVersion::V6);
    w.description("en", "test")
        .language("en")
        .build_epoch(1_700_000_000);
    w.insert(net("81.2.69.0/24"), &nested("GB", 51.5, -0.1))
        .unwrap();
    w.insert(net("2001:218::/32"), &nested("JP", 35.7, 139.7))
        .unwrap();
    let r = reader(&w);
    let m = r.metadata();
    assert_eq!(m.ip_version, 6);
    assert_eq!(m.database_type, "Test-City");
    assert_eq!(m.build_epoch, 1_700_000_000);
    assert_eq!(m.record_size, 24);
    assert_eq!(m.languages, vec!["en".to_string()]);
    assert_eq!(
        m.description,
        BTreeMap::from([("en".to_string(), "test".to_string())])
    );

    let res = r.lookup(ip("81.2.69.142")).unwrap();
    let rec: Nested = res.decode().unwrap().unwrap();
    assert_eq!(rec.country.iso_code, "GB");
    assert_eq!(rec.subdivisions[0].iso_code, "X");
    assert_eq!(
        rec.location,
        Some(Loc {
            latitude: 51.5,
            longitude: -0.1
        })
    );
    assert_eq!(res.network().unwrap().to_string(), "81.2.69.0/24");

    let res = r.lookup(ip("2001:218:1::1")).unwrap();
    let rec: Nested = res.decode().unwrap().unwrap();
    assert_eq!(rec.country.iso_code, "JP");
    assert_eq!(res.network().unwrap().prefix(), 32);

    // Outside: not found, and the network is the empty region.
    let res = r.lookup(ip("81.2.70.1")).unwrap();
    assert!(!res.has_data());
    let n = res.network().unwrap();
    assert!(n.contains(ip("81.2.70.1")) && !n.contains(ip("81.2.69.1")));
    assert_eq!(n.prefix(), 23);
    assert!(!r.lookup(ip("2001:219::1")).unwrap().has_data());
    // Without aliases, ::ffff:81.2.69.142 is not the IPv4 address.
    assert!(!r.lookup(ip("::ffff:81.2.69.142")).unwrap().has_data());
}

#[test]
fn aliases_point_to_ipv4() {
    let mut w = MmdbWriter::new("Test", IpVersion::V6);
    w.description("en", "t").ipv4_aliases(true);
    w.insert(net("81.2.69.0/24"), &nested("GB", 51.5, -0.1))
        .unwrap();
    let r = reader(&w);
    let rec: Nested = r
        .lookup(ip("::ffff:81.2.69.142"))
        .unwrap()
        .decode()
        .unwrap()
        .unwrap();
    assert_eq!(rec.country.iso_code, "GB");
    // 2002:5102:4500::/40 is 6to4 for 81.2.69.0/24.
    let rec: Nested = r
        .lookup(ip("2002:5102:4501::1"))
        .unwrap()
        .decode()
        .unwrap()
        .unwrap();
    assert_eq!(rec.country.iso_code, "GB");
    // Iteration skips the aliases: one network only.
    let n = r
        .networks(Default::default())
        .unwrap()
        .filter_map(Result::ok)
        .count();
    assert_eq!(n, 1);

    // Aliases of an empty IPv4 space (leaf subtree) must not loop.
    for v6_only in [false, true] {
        let mut w = MmdbWriter::new("Test", IpVersion::V6);
        w.description("en", "t").ipv4_aliases(true);
        if v6_only {
            w.insert(net("2001:db8::/32"), &MmdbValue::Uint16(1))
                .unwrap();
        }
        let r = reader(&w);
        assert!(!r.lookup(ip("::ffff:1.2.3.4")).unwrap().has_data());
        assert!(!r.lookup(ip("1.2.3.4")).unwrap().has_data());
        assert_eq!(r.lookup(ip("2001:db8::1")).unwrap().has_data(), v6_only);
    }
}

#[test]
fn flat_v4_tree_round_trip() {
    let mut w = MmdbWriter::new("ip-location-db", IpVersion::V4);
    w.description("en", "flat");
    let flat = MmdbValue::map([
        ("country_code", MmdbValue::string("SE")),
        ("latitude", MmdbValue::Float(58.41)),
        ("longitude", MmdbValue::Float(15.62)),
    ]);
    w.insert(net("89.160.20.0/24"), &flat).unwrap();
    w.insert(net("89.160.20.128/25"), &flat).unwrap();
    assert!(matches!(
        w.insert(net("2001:db8::/32"), &flat),
        Err(MmdbWriteError::Ipv6InIpv4Tree(_))
    ));
    let r = reader(&w);
    assert_eq!(r.metadata().ip_version, 4);
    let res = r.lookup(ip("89.160.20.200")).unwrap();
    let rec: Flat = res.decode().unwrap().unwrap();
    assert_eq!(rec.country_code, "SE");
    assert_eq!(rec.latitude, Some(58.41));
    // The /25 holds the same record as the /24: merged.
    assert_eq!(res.network().unwrap().to_string(), "89.160.20.0/24");
    assert!(!r.lookup(ip("89.160.21.1")).unwrap().has_data());
    assert!(r.lookup(ip("2001:db8::1")).is_err());
}

#[test]
fn later_inserts_win_and_split() {
    let mut w = MmdbWriter::new("T", IpVersion::V6);
    w.description("en", "t");
    w.insert(net("10.0.0.0/8"), &MmdbValue::Uint32(1)).unwrap();
    w.insert(net("10.1.0.0/16"), &MmdbValue::Uint32(2)).unwrap();
    w.insert(net("::/0"), &MmdbValue::Uint32(0)).unwrap();
    w.insert(net("2001:db8::/32"), &MmdbValue::Uint32(3))
        .unwrap();
    let r = reader(&w);
    let get = |s: &str| -> u32 { r.lookup(ip(s)).unwrap().decode().unwrap().unwrap() };
    // ::/0 was inserted after the IPv4 networks and replaced them.
    assert_eq!(get("10.1.2.3"), 0);
    assert_eq!(get("2001:db8::1"), 3);
    assert_eq!(get("2001:db9::1"), 0);

    let mut w = MmdbWriter::new("T", IpVersion::V4);
    w.description("en", "t");
    w.insert(net("10.0.0.0/8"), &MmdbValue::Uint32(1)).unwrap();
    w.insert(net("10.1.0.0/16"), &MmdbValue::Uint32(2)).unwrap();
    let r = reader(&w);
    let get = |s: &str| r.lookup(ip(s)).unwrap();
    let a: u32 = get("10.1.2.3").decode().unwrap().unwrap();
    let b: u32 = get("10.2.0.0").decode().unwrap().unwrap();
    assert_eq!((a, b), (2, 1));
    assert_eq!(get("10.1.2.3").network().unwrap().prefix(), 16);
    assert_eq!(get("10.2.0.0").network().unwrap().prefix(), 15);
    assert_eq!(get("10.128.0.0").network().unwrap().prefix(), 9);
}

#[test]
fn empty_and_leaf_root_databases() {
    let mut w = MmdbWriter::new("T", IpVersion::V4);
    w.description("en", "t");
    let r = reader(&w);
    assert_eq!(r.metadata().node_count, 1);
    assert!(!r.lookup(ip("1.2.3.4")).unwrap().has_data());
    w.insert(net("0.0.0.0/0"), &MmdbValue::Bool(true)).unwrap();
    let r = reader(&w);
    let v: bool = r.lookup(ip("1.2.3.4")).unwrap().decode().unwrap().unwrap();
    assert!(v);
}

#[test]
fn all_value_types_round_trip() {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct All {
        s: String,
        long: String,
        d: f64,
        f: f32,
        u16: u16,
        u32: u32,
        u64: u64,
        i: i32,
        neg: i32,
        t: bool,
        f0: bool,
        arr: Vec<u32>,
        big: Vec<u16>,
    }
    let long = "x".repeat(70_000);
    let v = MmdbValue::map([
        ("s", MmdbValue::string("héllo")),
        ("long", MmdbValue::string(long.clone())),
        ("d", MmdbValue::Double(-1.25)),
        ("f", MmdbValue::Float(2.5)),
        ("u16", MmdbValue::Uint16(65535)),
        ("u32", MmdbValue::Uint32(0)),
        ("u64", MmdbValue::Uint64(u64::MAX)),
        ("i", MmdbValue::Int32(300)),
        ("neg", MmdbValue::Int32(-5)),
        ("t", MmdbValue::Bool(true)),
        ("f0", MmdbValue::Bool(false)),
        (
            "arr",
            MmdbValue::Array(vec![MmdbValue::Uint32(1), MmdbValue::Uint32(70_000)]),
        ),
        (
            "big",
            MmdbValue::Array((0..300).map(MmdbValue::Uint16).collect()),
        ),
    ]);
    let mut w = MmdbWriter::new("T", IpVersion::V4);
    w.description("en", "t");
    w.insert(net("1.0.0.0/8"), &v).unwrap();
    let r = reader(&w);
    let got: All = r.lookup(ip("1.1.1.1")).unwrap().decode().unwrap().unwrap();
    assert_eq!(got.s, "héllo");
    assert_eq!(got.long, long);
    assert_eq!((got.d, got.f), (-1.25, 2.5));
    assert_eq!((got.u16, got.u32, got.u64), (65535, 0, u64::MAX));
    assert_eq!((got.i, got.neg), (300, -5));
    assert!(got.t && !got.f0);
    assert_eq!(got.arr, vec![1, 70_000]);
    assert_eq!(got.big.len(), 300);
    assert_eq!(got.big[299], 299);
}

#[test]
fn record_size_grows_and_output_is_deterministic() {
    // > 2^24 total record values needs 28-bit records: make the data
    // section larger than 16 MiB with distinct big records.
    let mut w = MmdbWriter::new("T", IpVersion::V4);
    w.description("en", "t");
    let big = "y".repeat(1 << 20);
    for i in 0..17u32 {
        let v = MmdbValue::map([
            ("i", MmdbValue::Uint32(i)),
            ("pad", MmdbValue::string(big.clone())),
        ]);
        w.insert(
            IpNet::new(IpAddr::from([10, i as u8, 0, 0]), 16).unwrap(),
            &v,
        )
        .unwrap();
    }
    let bytes = w.to_bytes().unwrap();
    assert_eq!(bytes, w.to_bytes().unwrap());
    let r = maxminddb::Reader::from_source(bytes).unwrap();
    assert_eq!(r.metadata().record_size, 28);
    #[derive(serde::Deserialize)]
    struct I {
        i: u32,
    }
    let got: I = r
        .lookup(ip("10.16.1.1"))
        .unwrap()
        .decode()
        .unwrap()
        .unwrap();
    assert_eq!(got.i, 16);
}

#[test]
fn write_to_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.mmdb");
    let mut w = MmdbWriter::new("T", IpVersion::V4);
    w.description("en", "t");
    w.insert(net("1.2.3.0/24"), &MmdbValue::Uint16(7)).unwrap();
    w.write_to(&path).unwrap();
    let r = maxminddb::Reader::open_readfile(&path).unwrap();
    let v: u16 = r.lookup(ip("1.2.3.4")).unwrap().decode().unwrap().unwrap();
    assert_eq!(v, 7);
    let err = w.write_to(&dir.path().join("no/such/dir/x.mmdb"));
    assert!(err.unwrap_err().to_string().contains("no/such/dir"));
}
