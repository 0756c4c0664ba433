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

/// The file watch on tokio's paused time, through the serving seam
/// (`app::bind`, then `app::serve` on this test's runtime): a change is read
/// only once it held still for one more period, a change during that period
/// restarts the wait, and a broken edit is refused and recorded. Virtual
/// time makes the periods exact (no wall-clock bounds); the reload itself
/// runs on the blocking pool, during which tokio does not advance time.
#[tokio::test(start_paused = true)]
async fn file_change_triggers_reload_once_it_settles() {
    use std::time::Duration;
    use steerdns::api::ApiBackend;
    use steerdns::app;
    use tokio::time::sleep;

    let (_dir, config) = write_config(&BASE.replace(
        "udp_workers = 1",
        "udp_workers = 1\nwatch_interval = \"1s\"",
    ));
    let bound = app::bind(&app::Options {
        config: config.clone(),
        dns_listen: vec![],
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
    })
    .expect("bind");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut server = app::serve(bound, shutdown.clone()).await.expect("serve");
    let generation = || server.shared.current.load().generation;
    let name = "static.lb.example.com.";
    // UDP is answered by worker threads, not this runtime: a blocking
    // query is fine here.
    let ask = || {
        addrs(&decode(
            &udp_raw(
                server.udp_addrs[0],
                &q(name, RecordType::A).to_vec().unwrap(),
            )
            .expect("answer"),
        ))
    };
    assert_eq!(ask(), vec!["192.0.2.1", "192.0.2.2"]);

    // The watch looks at t = 1 s, 2 s, 3 s, ...
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("data = \"192.0.2.2\"", "data = \"192.0.2.9\""),
    )
    .unwrap();
    sleep(Duration::from_millis(1500)).await; // seen changed at 1 s
    assert_eq!(generation(), 1, "read before it held still");
    // Another edit (a different length) before the next look: wait again.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("data = \"192.0.2.9\"", "data = \"192.0.2.99\""),
    )
    .unwrap();
    sleep(Duration::from_secs(1)).await; // 2.5 s: changed again at 2 s
    assert_eq!(generation(), 1, "read while it was still changing");
    sleep(Duration::from_secs(1)).await; // 3.5 s: unchanged at 3 s: reloaded
    assert_eq!(generation(), 2);
    assert_eq!(ask(), vec!["192.0.2.1", "192.0.2.99"]);
    let last = server.backend.status().last_reload.expect("recorded");
    assert!(last.ok && last.generation == 2, "{last:?}");

    // A broken edit is refused and recorded; the old config keeps serving.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("[server]", "[server\n")).unwrap();
    sleep(Duration::from_secs(2)).await; // seen at 4 s, read at 5 s
    let last = server.backend.status().last_reload.expect("recorded");
    assert!(!last.ok && last.generation == 2, "{last:?}");
    assert!(!last.errors.is_empty());
    assert!(
        server
            .backend
            .metrics_text()
            .contains(r#"steerdns_config_reloads_total{result="failure"} 1"#)
    );
    assert_eq!(ask(), vec!["192.0.2.1", "192.0.2.99"]);
    server.stop();
}
