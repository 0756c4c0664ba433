//! Reload: a good config swaps in atomically; a bad one is refused with its
//! place in the file and the old config keeps serving.

use hickory_proto::rr::RecordType;

use crate::harness::*;

#[test]
fn reload_swaps_good_config_and_keeps_old_on_error() {
    let s = TestServer::base("");
    let name = "static.lb.example.com.";
    assert_eq!(
        addrs(&s.udp(&q(name, RecordType::A))),
        vec!["192.0.2.1", "192.0.2.2"]
    );

    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        text.replace("data = \"192.0.2.2\"", "data = \"192.0.2.3\""),
    )
    .unwrap();
    assert_eq!(s.running.reload().expect("good config"), 2);
    assert_eq!(
        addrs(&s.udp(&q(name, RecordType::A))),
        vec!["192.0.2.1", "192.0.2.3"]
    );

    std::fs::write(
        &s.config,
        text.replace("data = \"192.0.2.2\"", "data = \"192.0.2.300\""),
    )
    .unwrap();
    let err = s.running.reload().expect_err("bad config").to_string();
    assert!(err.contains(&format!("{}:", s.config.display())), "{err}");
    assert!(err.contains("records[4].data"), "{err}");
    assert_eq!(
        addrs(&s.udp(&q(name, RecordType::A))),
        vec!["192.0.2.1", "192.0.2.3"],
        "old config still serving"
    );
    assert_eq!(
        addrs(&s.tcp(&q(name, RecordType::A))),
        vec!["192.0.2.1", "192.0.2.3"]
    );
}
