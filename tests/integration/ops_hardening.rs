//! Operations under stress: reload metrics from a clean start, and an API
//! that slow clients cannot starve.

use crate::harness::*;

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn a_clean_start_records_the_initial_load() {
    let s = TestServer::base("");
    let api = s.running.http_addr;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let (code, text) = http(api, "GET", "/metrics", &[]);
    assert_eq!(code, 200);
    let loaded = metric(
        &text,
        "steerdns_config_last_reload_success_timestamp_seconds",
    );
    assert!(
        (now - loaded).abs() < 120.0,
        "loaded at {loaded}, now {now}"
    );
    assert_eq!(metric(&text, "steerdns_config_last_reload_successful"), 1.0);
    // The start is not a reload.
    assert!(
        text.contains(r#"steerdns_config_reloads_total{result="success"} 0"#),
        "{text}"
    );

    // A failed reload clears the success flag, keeps the timestamp.
    let good = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, good.replace("serial = 7", "serial = \"x\"")).unwrap();
    assert!(s.running.reload().is_err());
    let (_, text) = http(api, "GET", "/metrics", &[]);
    assert_eq!(metric(&text, "steerdns_config_last_reload_successful"), 0.0);
    assert_eq!(
        metric(
            &text,
            "steerdns_config_last_reload_success_timestamp_seconds"
        ),
        loaded
    );
    std::fs::write(&s.config, good).unwrap();
    s.running.reload().expect("good config reloads");
    let (_, text) = http(api, "GET", "/metrics", &[]);
    assert_eq!(metric(&text, "steerdns_config_last_reload_successful"), 1.0);
}
