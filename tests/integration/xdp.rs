//! `server.xdp_interface` where AF_XDP cannot run: the listener refuses
//! with a clear error and the socket path answers as before. (The AF_XDP
//! path itself is tested as root in network namespaces: tests/xdp_netns.sh.)

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::harness::*;

#[test]
fn missing_interface_refuses_xdp_and_sockets_still_answer() {
    let toml = BASE.replace("[server]\n", "[server]\nxdp_interface = \"sdns-absent0\"\n");
    let s = TestServer::start(&toml);
    let refusal = match &s.running.xdp {
        Some(Err(e)) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        refusal,
        "xdp_interface \"sdns-absent0\": no such network interface"
    );
    let m = s.udp(&q("static.lb.example.com.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let mut got: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect();
    got.sort();
    assert_eq!(got, ["192.0.2.1", "192.0.2.2"]);
    let m = s.tcp(&q("nope.lb.example.com.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn invalid_interface_name_is_a_config_error() {
    let toml = BASE.replace(
        "[server]\n",
        "[server]\nxdp_interface = \"a-name-far-too-long-for-linux\"\n",
    );
    let (_dir, path) = write_config(&toml);
    let e = steerdns::app::load_snapshot(&path, 1)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("server.xdp_interface"), "{e}");
}
