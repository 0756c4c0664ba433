//! GeoIP databases under a running server: writes to the file cannot crash
//! it (it holds its own copy), reloads name a bad file and keep the old data,
//! a rename is picked up, unchanged databases are not recompiled, several
//! location databases are consulted in order, and `check` warns about rules
//! the databases cannot match.

use std::sync::Arc;

use hickory_proto::rr::RecordType;
use ipnet::IpNet;
use steerdns::geo::mmdb_writer::{IpVersion, MmdbValue, MmdbWriter};

use crate::harness::*;

const WWW: &str = "www.lb.example.com.";

/// The base config with the database at `live.mmdb` next to the config.
fn config_with_db(extra_server: &str) -> String {
    BASE.replace("database = \"@GEOIP@\"", "database = \"live.mmdb\"")
        .replace(
            "random_seed = 42",
            &format!("random_seed = 42\n{extra_server}"),
        )
}

/// A flat (ip-location-db style) database placing `nets` in `country`.
fn flat_db(version: IpVersion, nets: &[(&str, &str)]) -> Vec<u8> {
    let mut w = MmdbWriter::new("flat-test", version);
    w.description("en", "test");
    for (n, cc) in nets {
        let net: IpNet = n.parse().unwrap();
        w.insert(
            net,
            &MmdbValue::map([("country_code", MmdbValue::string(*cc))]),
        )
        .unwrap();
    }
    w.to_bytes().unwrap()
}

/// A server on [`config_with_db`] with a copy of the sample database as
/// `live.mmdb`; the server and that file's path.
fn start_with_live_db(extra_server: &str) -> (TestServer, std::path::PathBuf) {
    let (dir, config) = write_config(&config_with_db(extra_server));
    let live = dir.path().join("live.mmdb");
    std::fs::copy(sample_mmdb(), &live).unwrap();
    (TestServer::start_in(dir, config), live)
}

fn answer_for(s: &TestServer, subnet: &str) -> Vec<String> {
    addrs(&s.udp(&q_ecs(WWW, RecordType::A, subnet)))
}

#[test]
fn writing_to_the_database_file_cannot_crash_the_server() {
    let (s, live) = start_with_live_db("watch_interval = \"0s\"");
    let ask = |subnet: &str| answer_for(&s, subnet);
    // 216.160.83.0/24 is in the US in the sample: the na pool.
    assert_eq!(ask("216.160.83.0/24"), vec!["198.51.100.10"]);

    // Truncate the file in place, then ask (the explain API reads the
    // database too): a memory-mapped database would SIGBUS here.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&live)
        .unwrap()
        .set_len(64)
        .unwrap();
    let (code, body) = http(
        s.api(),
        "GET",
        "/api/v1/explain?name=www.lb.example.com&type=A&client=216.160.83.9",
        &[],
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("198.51.100.10"), "{body}");
    assert_eq!(ask("216.160.83.0/24"), vec!["198.51.100.10"]);
    let err = s
        .running
        .reload()
        .expect_err("truncated database")
        .to_string();
    assert!(err.contains("live.mmdb"), "the error names the file: {err}");
    assert!(err.contains("geoip.database"), "{err}");
    assert_eq!(
        ask("216.160.83.0/24"),
        vec!["198.51.100.10"],
        "old data serves"
    );

    // Overwrite in place with garbage of the original size.
    let size = std::fs::metadata(sample_mmdb()).unwrap().len() as usize;
    std::fs::write(&live, vec![0xA5u8; size]).unwrap();
    let err = s
        .running
        .reload()
        .expect_err("garbage database")
        .to_string();
    assert!(err.contains("live.mmdb"), "{err}");
    assert_eq!(
        ask("216.160.83.0/24"),
        vec!["198.51.100.10"],
        "old data serves"
    );

    // The safe update: write elsewhere, rename over. 216.160.83.0/24 is in
    // Germany in the new file: the eu pool.
    let tmp = s.dir().join("live.mmdb.tmp");
    std::fs::write(
        &tmp,
        flat_db(
            IpVersion::V6,
            &[("216.160.83.0/24", "DE"), ("81.2.69.0/24", "GB")],
        ),
    )
    .unwrap();
    std::fs::rename(&tmp, &live).unwrap();
    s.running.reload().expect("good database");
    assert_eq!(ask("216.160.83.0/24"), vec!["192.0.2.10"]);
    s.running.stop();
}

#[test]
fn the_file_watch_picks_up_a_renamed_database() {
    let (s, live) = start_with_live_db("watch_interval = \"50ms\"");
    let ask = |subnet: &str| answer_for(&s, subnet);
    assert_eq!(ask("216.160.83.0/24"), vec!["198.51.100.10"]);
    let tmp = s.dir().join("new.mmdb");
    std::fs::write(&tmp, flat_db(IpVersion::V6, &[("216.160.83.0/24", "JP")])).unwrap();
    std::fs::rename(&tmp, &live).unwrap();
    // JP is in Asia: the ap pool.
    wait_for(20, "the watcher reloads the renamed database", || {
        ask("216.160.83.0/24") == vec!["203.0.113.10"]
    });
    s.running.stop();
}

#[test]
fn a_reload_with_unchanged_databases_recompiles_no_geo_data() {
    let s = TestServer::base("");
    let before = s.running.shared.current.load_full();
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        text.replace("data = \"192.0.2.2\"", "data = \"192.0.2.3\""),
    )
    .unwrap();
    s.running.reload().expect("reload");
    let after = s.running.shared.current.load_full();
    assert!(Arc::ptr_eq(&before.geo, &after.geo), "same GeoDb reused");
    let (b, a) = (
        before.decisions[0].as_ref().unwrap(),
        after.decisions[0].as_ref().unwrap(),
    );
    assert!(a.shares_trie_with(b), "same decision trie reused");
    // A change of an override is a change of geo input: rebuilt.
    std::fs::write(
        &s.config,
        text.replace(
            "[zones.",
            "[[geoip.override]]\ncidr = \"10.0.0.0/8\"\ncountry = \"JP\"\n\n[zones.",
        ),
    )
    .unwrap();
    s.running.reload().expect("reload");
    let third = s.running.shared.current.load_full();
    assert!(
        !Arc::ptr_eq(&after.geo, &third.geo),
        "new overrides: new GeoDb"
    );
    assert_eq!(answer_for(&s, "10.1.0.0/16"), vec!["203.0.113.10"]);
}

#[test]
fn several_location_databases_are_consulted_in_order() {
    let (dir, config) = write_config(&BASE.replace(
        "database = \"@GEOIP@\"",
        "databases = [\"v4.mmdb\", \"v6.mmdb\"]",
    ));
    // An IPv4 file and an IPv6 file, as ip-location-db ships them.
    let v4: &[(&str, &str)] = &[("198.51.100.0/24", "US"), ("203.0.113.0/24", "JP")];
    let v6: &[(&str, &str)] = &[("2001:db8:100::/48", "AU"), ("2001:db8:200::/48", "US")];
    for (file, version, nets) in [
        ("v4.mmdb", IpVersion::V4, v4),
        ("v6.mmdb", IpVersion::V6, v6),
    ] {
        std::fs::write(dir.path().join(file), flat_db(version, nets)).unwrap();
    }
    let s = TestServer::start_in(dir, config);
    let ask = |subnet: &str| answer_for(&s, subnet);
    assert_eq!(
        ask("198.51.100.0/24"),
        vec!["198.51.100.10"],
        "US from the v4 file"
    );
    assert_eq!(
        ask("203.0.113.0/24"),
        vec!["203.0.113.10"],
        "JP from the v4 file"
    );
    assert_eq!(
        ask("2001:db8:100::/48"),
        vec!["203.0.113.10"],
        "AU from the v6 file"
    );
    assert_eq!(
        ask("2001:db8:200::/48"),
        vec!["198.51.100.10"],
        "US from the v6 file"
    );
    assert_eq!(
        ask("192.0.2.0/24"),
        vec!["192.0.2.10"],
        "unlocated: default"
    );
    s.running.stop();
}

#[test]
fn check_warns_about_rules_the_databases_cannot_match() {
    let (dir, config) = write_config(&BASE.replace("database = \"@GEOIP@\"", "database = \"flat.mmdb\"").replace(
        "continent = { EU = [\"eu\", \"na\"]",
        "subdivision = { \"US-CA\" = [\"na\"] }\nasn = { \"64512\" = [\"eu\"] }\ncontinent = { EU = [\"eu\", \"na\"]",
    ));
    std::fs::write(
        dir.path().join("flat.mmdb"),
        flat_db(IpVersion::V6, &[("198.51.100.0/24", "US")]),
    )
    .unwrap();
    let snap = load(&config).expect("warnings are not errors");
    let w = snap.geo_warnings.join("\n");
    assert!(
        w.contains("geo.subdivision.US-CA") && w.contains("subdivision rules never match"),
        "{w}"
    );
    assert!(
        w.contains("geo.asn") && w.contains("ASN rules never match"),
        "{w}"
    );
    assert!(
        w.contains(&format!("{}:", config.display())),
        "file:line:col: {w}"
    );
    // The sample database has subdivisions: no subdivision warning.
    let (_d2, config2) = write_config(&BASE.replace(
        "continent = { EU = [\"eu\", \"na\"]",
        "subdivision = { \"US-CA\" = [\"na\"] }\ncontinent = { EU = [\"eu\", \"na\"]",
    ));
    let snap = load(&config2).unwrap();
    assert!(snap.geo_warnings.is_empty(), "{:?}", snap.geo_warnings);
}
