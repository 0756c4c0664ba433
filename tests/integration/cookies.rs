//! DNS Cookies (RFC 7873, RFC 9018 server cookies) on the real server: the
//! server cookie we hand out verifies with the shared secret, two nodes with
//! one secret file accept each other's cookies, the previous secret is
//! accepted during a rotation, malformed cookies get FORMERR (with OPT), and
//! a valid server cookie exempts a client from RRL while a rate-limited
//! client that sent a cookie gets BADCOOKIE with a fresh one.

use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use steerdns::cookie::Secrets;

use crate::harness::*;

const SECRET_A: &str = "e5e973e5a6b2a43f48e7dc849e37bfcf";
const SECRET_B: &str = "00112233445566778899aabbccddeeff";
const CC: [u8; 8] = [0xC1, 0x1E, 0x47, 0xC0, 0x0C, 0x1E, 0x00, 0x01];

fn with_cookie(cookie: &[u8]) -> Message {
    qe_with(
        "static.lb.example.com.",
        RecordType::A,
        EdnsOption::Unknown(10, cookie.to_vec()),
    )
}

fn cookie_of(m: &Message) -> Option<Vec<u8>> {
    match m.edns.as_ref()?.option(EdnsCode::Cookie)? {
        EdnsOption::Unknown(10, d) => Some(d.clone()),
        _ => None,
    }
}

fn start_with_secret(secrets: &str, extra: &str) -> TestServer {
    let (dir, config) = write_config(&format!(
        "{BASE}\n[cookies]\nsecret_file = \"cookie.secret\"\n{extra}"
    ));
    std::fs::write(config.with_file_name("cookie.secret"), secrets).unwrap();
    TestServer::start_in(dir, config)
}

/// `steerdns_dns_cookies_total{result}`, 0 before the first.
fn cookies(s: &TestServer, result: &str) -> f64 {
    s.metrics()
        .sum("steerdns_dns_cookies_total", &[("result", result)])
}

#[test]
fn server_cookie_is_rfc9018_and_shared_secret_nodes_accept_each_other() {
    let a = start_with_secret(SECRET_A, "");
    let b = start_with_secret(&format!("# fleet secret\n{SECRET_A}\n"), "");
    // Client cookie only: answered normally, with our server cookie.
    let r = a.udp(&with_cookie(&CC));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&r), ["192.0.2.1", "192.0.2.2"]);
    let got = cookie_of(&r).expect("COOKIE echoed");
    assert_eq!(got.len(), 24);
    assert_eq!(&got[..8], &CC, "client cookie echoed");
    let sc = &got[8..];
    assert_eq!(&sc[..4], &[1, 0, 0, 0], "RFC 9018 version 1, reserved 0");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let ts = u32::from_be_bytes([sc[4], sc[5], sc[6], sc[7]]);
    assert!(now.abs_diff(ts) < 60, "timestamp {ts} vs now {now}");
    let secrets = Secrets::parse(SECRET_A).unwrap();
    let me: IpAddr = "127.0.0.1".parse().unwrap();
    assert!(
        secrets.verify(&CC, sc, me, now),
        "verifies with the shared secret"
    );
    assert_eq!(cookies(&a, "client_only"), 1.0);

    // The other node accepts it as valid.
    let r = b.udp(&with_cookie(&got));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(&cookie_of(&r).unwrap()[..8], &CC);
    assert_eq!(cookies(&b, "valid"), 1.0);

    // A cookie made with another secret is not valid, but still answered
    // (with a new cookie), as RFC 7873 5.2.3 allows.
    let other = Secrets::parse(SECRET_B).unwrap().make(&CC, me, now);
    let r = a.udp(&with_cookie(&[&CC[..], &other[..]].concat()));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(secrets.verify(&CC, &cookie_of(&r).unwrap()[8..], me, now));
    assert_eq!(cookies(&a, "client_only"), 2.0);
    assert_eq!(cookies(&a, "valid"), 0.0);
}

#[test]
fn rotation_accepts_the_previous_secret_until_it_is_removed() {
    let s = start_with_secret(SECRET_A, "");
    let learnt = cookie_of(&s.udp(&with_cookie(&CC))).unwrap();
    // Rotate: new secret first, the old one second; reload.
    let file = s.config.with_file_name("cookie.secret");
    std::fs::write(&file, format!("{SECRET_B}\n{SECRET_A}\n")).unwrap();
    s.running.reload().expect("reload");
    let r = s.udp(&with_cookie(&learnt));
    assert_eq!(cookies(&s, "valid"), 1.0);
    // The fresh cookie is made with the new secret.
    let fresh = cookie_of(&r).unwrap();
    let now = u32::from_be_bytes([fresh[12], fresh[13], fresh[14], fresh[15]]);
    let me: IpAddr = "127.0.0.1".parse().unwrap();
    assert!(
        Secrets::parse(SECRET_B)
            .unwrap()
            .verify(&CC, &fresh[8..], me, now)
    );
    // Retire the old secret: the old cookie is no longer valid, the new is.
    std::fs::write(&file, format!("{SECRET_B}\n")).unwrap();
    s.running.reload().expect("reload");
    s.udp(&with_cookie(&learnt));
    assert_eq!(cookies(&s, "valid"), 1.0);
    s.udp(&with_cookie(&fresh));
    assert_eq!(cookies(&s, "valid"), 2.0);
    // A broken secret file is refused on reload; the old config serves on.
    std::fs::write(&file, "not hex\n").unwrap();
    let err = s.running.reload().unwrap_err().to_string();
    assert!(err.contains("cookies.secret_file"), "{err}");
    s.udp(&with_cookie(&fresh));
    assert_eq!(cookies(&s, "valid"), 3.0);
}

#[test]
fn malformed_cookies_get_formerr_with_opt() {
    let s = start_with_secret(SECRET_A, "");
    for bad in [vec![1u8; 5], vec![1u8; 12], vec![1u8; 41]] {
        let r = s.udp(&with_cookie(&bad));
        assert_eq!(
            r.metadata.response_code,
            ResponseCode::FormErr,
            "{} bytes",
            bad.len()
        );
        assert!(r.edns.is_some(), "FORMERR caused by the OPT carries an OPT");
    }
    // Two COOKIE options.
    let mut pkt = with_cookie(&CC).to_vec().unwrap();
    let n = pkt.len();
    pkt.extend_from_slice(&[0, 10, 0, 8]);
    pkt.extend_from_slice(&CC);
    let rdlen = u16::from_be_bytes([pkt[n - 14], pkt[n - 13]]) + 12;
    pkt[n - 14..n - 12].copy_from_slice(&rdlen.to_be_bytes());
    let r = decode(&udp_raw(s.udp, &pkt).unwrap());
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn valid_cookie_exempts_from_rrl_and_limited_cookie_clients_get_badcookie() {
    let s = start_with_secret(
        SECRET_A,
        "[rrl]\nenabled = true\nresponses_per_second = 2\nslip = 1\n",
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ask = |m: &Message| -> Message {
        sock.send_to(&m.to_vec().unwrap(), s.udp).unwrap();
        let mut buf = [0u8; 1500];
        let (n, _) = sock
            .recv_from(&mut buf)
            .expect("answer (slip 1: never dropped)");
        decode(&buf[..n])
    };
    // Learn a server cookie (uses one token).
    let learnt = cookie_of(&ask(&with_cookie(&CC))).unwrap();
    // 30 queries with only a client cookie: after the bucket (2), BADCOOKIE
    // with a fresh server cookie instead of TC=1.
    let mut bad = 0;
    for _ in 0..30 {
        let r = ask(&with_cookie(&CC));
        if u16::from(r.metadata.response_code) == 23 {
            assert!(r.answers.is_empty());
            assert_eq!(
                cookie_of(&r).unwrap().len(),
                24,
                "a fresh cookie to retry with"
            );
            bad += 1;
        }
    }
    assert!(bad >= 25, "{bad} BADCOOKIE of 30");
    assert_eq!(cookies(&s, "badcookie"), bad as f64);
    // With the valid server cookie: every one answered in full.
    for _ in 0..50 {
        let r = ask(&with_cookie(&learnt));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(!r.metadata.truncation);
        assert_eq!(addrs(&r), ["192.0.2.1", "192.0.2.2"]);
    }
    // Without any cookie: TC=1 slips.
    let r = ask(&qe("static.lb.example.com.", RecordType::A));
    assert!(r.metadata.truncation);
}

#[test]
fn bad_secret_file_is_a_config_error_with_place() {
    let (_d, config) = write_config(&format!(
        "{BASE}\n[cookies]\nsecret_file = \"missing.secret\"\n"
    ));
    let Err(err) = load(&config) else {
        panic!("a missing secret file is an error");
    };
    let err = err.to_string();
    let text = std::fs::read_to_string(&config).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("secret_file"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(":{line}:15: cookies.secret_file: cannot read")),
        "{err}"
    );
}
