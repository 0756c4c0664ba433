//! The anycast gate against a scripted BIRD control socket: the real
//! binary (so it can be stopped and killed) and the in-process server.
//! The real BIRD, BGP and a client behind a router are in
//! tests/anycast_netns.sh.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::harness::*;
use crate::support::daemon::Daemon;

/// A BIRD control socket that answers `enable`/`disable` of one protocol
/// and records every state change with its time.
struct FakeBird {
    path: PathBuf,
    _dir: tempfile::TempDir,
    history: Arc<Mutex<Vec<(Instant, bool)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeBird {
    /// Listening on `bird.ctl` in a temp dir of its own.
    fn start(protocol: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bird.ctl");
        let listener = UnixListener::bind(&path).expect("bind bird.ctl");
        listener.set_nonblocking(true).unwrap();
        let history = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, st) = (history.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut enabled = false;
            while !st.load(Ordering::Relaxed) {
                let mut s = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(_) => {
                        // Polling the stop flag between connections.
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let _ = s.write_all(b"0001 BIRD 2.0.12 ready.\n");
                let mut line = String::new();
                if BufReader::new(s.try_clone().unwrap())
                    .read_line(&mut line)
                    .is_err()
                {
                    continue;
                }
                let (verb, name) = line.trim().split_once(' ').unwrap_or(("", ""));
                let reply = if name.trim_matches('"') != protocol {
                    "9001 syntax error, unexpected CF_SYM_UNDEFINED\n".to_string()
                } else {
                    let on = verb == "enable";
                    let word = if on { "enabled" } else { "disabled" };
                    if enabled == on {
                        format!("0010-{protocol}: already {word}\n0000 \n")
                    } else {
                        enabled = on;
                        h.lock().unwrap().push((Instant::now(), on));
                        format!("0011-{protocol}: {word}\n0000 \n")
                    }
                };
                let _ = s.write_all(reply.as_bytes());
            }
        });
        FakeBird {
            path,
            _dir: dir,
            history,
            stop,
            thread: Some(thread),
        }
    }

    fn enabled(&self) -> bool {
        self.history.lock().unwrap().last().is_some_and(|e| e.1)
    }

    /// Wait (bounded) until the protocol is `on`; when that happened.
    fn wait(&self, on: bool, secs: u64, what: &str) -> Instant {
        wait_for(secs, what, || self.enabled() == on);
        self.history.lock().unwrap().last().unwrap().0
    }

    /// [`FakeBird::wait`], asserting that the change came at most `bound`
    /// after `since` (by the fake's own clock: the time the request
    /// arrived, not when the test noticed). The server's deadline under
    /// test; a real process cannot run on paused time.
    fn wait_within(&self, on: bool, since: Instant, bound: Duration, what: &str) -> Instant {
        let at = self.wait(on, 10, what);
        assert!(at - since <= bound, "{what} after {:?}", at - since);
        at
    }

    fn changes_since(&self, t: Instant) -> Vec<bool> {
        let h = self.history.lock().unwrap();
        h.iter().filter(|e| e.0 >= t).map(|e| e.1).collect()
    }
}

impl Drop for FakeBird {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn anycast_section(socket: &Path, hold_down: &str, drain: &str, extra: &str) -> String {
    format!(
        "\n[anycast]\nprefixes = [\"127.0.0.1/32\"]\nbird_socket = \"{}\"\nbird_protocols = [\"sd_test\"]\nhold_down = \"{hold_down}\"\ndrain = \"{drain}\"\nlease = \"1s\"\n{extra}\n",
        socket.display()
    )
}

/// The in-process server on the base config with an `[anycast]` section
/// pointing at `bird` (hold-down 300 ms, drain 1 s), once announced.
fn announced(bird: &FakeBird, extra: &str) -> TestServer {
    let s = TestServer::base(&anycast_section(&bird.path, "300ms", "1s", extra));
    bird.wait(true, 20, "the first announcement");
    s
}

/// The real binary on the base config with an `[anycast]` section
/// pointing at `bird`.
fn spawn_with_bird(bird: &FakeBird, hold_down: &str, drain: &str) -> (Daemon, tempfile::TempDir) {
    let (dir, config) = write_config(&format!(
        "{BASE}{}",
        anycast_section(&bird.path, hold_down, drain, "")
    ));
    (Daemon::serve(&config, &[]), dir)
}

fn answers(addr: std::net::SocketAddr) -> bool {
    udp_raw(
        addr,
        &q("static.lb.example.com.", RecordType::A).to_vec().unwrap(),
    )
    .is_some()
}

fn gone(pid: u32) -> bool {
    // Gone, or a zombie nobody reaped yet: either way not running.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn a_stopped_or_killed_server_is_withdrawn_by_its_guard() {
    let bird = FakeBird::start("sd_test");
    let (p, _cdir) = spawn_with_bird(&bird, "1s", "1s");
    let spawned = Instant::now();
    let udp = p.addr("udp");
    let announced = bird.wait(true, 20, "the first announcement");
    assert!(
        announced - spawned >= Duration::from_secs(1),
        "announced before the hold-down"
    );
    assert!(answers(udp));

    // Hung: the guard's lease runs out and it withdraws by itself.
    p.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    let three = Duration::from_secs(3);
    bird.wait_within(false, stopped, three, "withdrawal of a stopped server");
    // Resumed: it notices its own stall and holds down before announcing.
    p.signal(libc::SIGCONT);
    let resumed = Instant::now();
    let again = bird.wait(true, 20, "announcement after SIGCONT");
    assert!(
        again - resumed >= Duration::from_secs(1),
        "re-announced {:?} after SIGCONT, inside the hold-down",
        again - resumed
    );
    assert!(p.has("anycast: withdrawing 127.0.0.1/32: steerdns did not run for"));

    // Dead: the guard sees its pipe close and withdraws, then exits.
    let guard: u32 = p
        .value("anycast: guard started", "pid=Some(")
        .and_then(|v| v.trim_end_matches(')').parse().ok())
        .expect("guard pid in the log");
    p.signal(libc::SIGKILL);
    let killed = Instant::now();
    bird.wait_within(false, killed, three, "withdrawal of a killed server");
    wait_for(10, "the guard exits", || gone(guard));
    drop(p);
    assert!(!bird.enabled());
}

#[test]
fn sigterm_withdraws_first_then_keeps_answering_for_the_drain() {
    let bird = FakeBird::start("sd_test");
    let (mut p, _cdir) = spawn_with_bird(&bird, "500ms", "3s");
    let udp = p.addr("udp");
    bird.wait(true, 20, "the first announcement");
    p.signal(libc::SIGTERM);
    let term = Instant::now();
    bird.wait(false, 5, "withdrawal on SIGTERM");
    // Withdrawn, and still answering: the lame duck.
    assert!(answers(udp), "no answer during the drain");
    assert!(p.exited().is_none(), "exited before the drain");
    let status = p.wait_exit(15).expect("exits after the drain");
    assert!(status.success(), "{status:?}\n{}", p.log());
    assert!(term.elapsed() >= Duration::from_secs(3), "drain cut short");
    assert!(p.has("lame duck: BIRD confirmed the withdrawal"));
    assert!(p.has("drain over: stopping"));
    assert!(!bird.enabled());
}

#[test]
fn too_few_usable_pools_withdraw_and_the_api_shows_why() {
    let bird = FakeBird::start("sd_test");
    let s = announced(&bird, "min_usable_pools = 3");
    let r = get(s.api(), "/api/v1/anycast");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["announced"], true, "{v}");
    assert_eq!(v["state"], "announced");
    assert!(v["self_checks_ok"].as_u64().unwrap() >= 1);

    s.set_health("eu", "192.0.2.10", false);
    s.set_health("eu", "2001:db8:e::10", false);
    let t = Instant::now();
    let second = Duration::from_secs(1);
    bird.wait_within(false, t, second, "withdrawal when a pool is unusable");
    let body = get(s.api(), "/api/v1/anycast").body;
    assert!(body.contains("2 usable pools, 3 required"), "{body}");
    let prefix = [("prefix", "127.0.0.1/32")];
    let m = s.scrape();
    assert_eq!(m.value("steerdns_anycast_announced", &prefix), 0.0);
    m.value("steerdns_anycast_self_checks_total", &[("result", "ok")]);
    let page = get(s.api(), "/").body;
    assert!(
        page.contains("<dt>Anycast</dt>") && page.contains("WITHDRAWN"),
        "{page}"
    );

    s.set_health("eu", "192.0.2.10", true);
    let back = Instant::now();
    let at = bird.wait(true, 10, "announcement when the pool is back");
    assert!(
        at - back >= Duration::from_millis(300),
        "inside the hold-down"
    );
    let m = s.scrape();
    assert_eq!(m.value("steerdns_anycast_announced", &prefix), 1.0);
    assert_eq!(
        m.value("steerdns_anycast_changes_total", &[("change", "withdraw")]),
        1.0
    );

    // A dead guard: steerdns withdraws by itself and starts another.
    let a = s.running.anycast.as_ref().expect("anycast running");
    let guard = a.status().guard_pid.expect("guard pid");
    let killed = Instant::now();
    // SAFETY: kill(2) on the guard our server started.
    assert_eq!(unsafe { libc::kill(guard as i32, libc::SIGKILL) }, 0);
    wait_for(10, "a new guard", || {
        a.status().guard_pid.is_some_and(|p| p != guard) && bird.enabled()
    });
    assert!(
        bird.changes_since(killed).starts_with(&[false]),
        "{:?}",
        bird.changes_since(killed)
    );
}

#[test]
fn the_status_cli_reads_the_api() {
    let bird = FakeBird::start("sd_test");
    let s = announced(&bird, "");
    let out = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .args(["anycast", "status", "--api"])
        .arg(s.running.http_addr.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ANNOUNCED (protocol sd_test"), "{text}");
    assert!(text.contains("127.0.0.1/32"), "{text}");
    // A server without [anycast] says so.
    let plain = TestServer::base("");
    let out = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .args(["anycast", "status", "--api"])
        .arg(plain.running.http_addr.to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("anycast is not configured"));
}

#[test]
fn a_bad_anycast_section_is_refused_with_places() {
    let (_d, config) = write_config(&format!(
        "{BASE}\n[anycast]\nprefixes = [\"127.0.0.1/8\", \"nonsense\"]\ncheck_addresses = [\"10.0.0.1\"]\ncheck_name = \"www.example.org\"\nmin_usable_pools = 9\nbird_protocols = [\"1bad\"]\n"
    ));
    let err = load(&config).err().expect("refused").to_string();
    for want in [
        "anycast.prefixes[0]: \"127.0.0.1/8\" has host bits set",
        "anycast.prefixes[1]: \"nonsense\" is not a prefix",
        "anycast.check_addresses[0]: 10.0.0.1 is in none of anycast.prefixes",
        "anycast.check_name: www.example.org. is in no zone",
        "anycast.min_usable_pools: 9 pools required, but only 3",
        "anycast.bird_protocols[0]:",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(err.lines().all(|l| l.contains("steerdns.toml:")), "{err}");
    // A prefix wider than one address needs check_addresses.
    let (_d, config) = write_config(&format!(
        "{BASE}\n[anycast]\nprefixes = [\"127.0.0.0/24\"]\n"
    ));
    let err = load(&config).err().expect("refused").to_string();
    assert!(
        err.contains("list the addresses the self-check asks"),
        "{err}"
    );
}

#[test]
fn a_reload_that_drops_the_checked_zone_withdraws() {
    let bird = FakeBird::start("sd_test");
    let s = announced(&bird, "");
    // The new config serves another zone only: the self-check (asking the
    // start-time zone's SOA) now gets REFUSED through the real listener.
    s.edit_config(
        "[zones.\"lb.example.com\"]",
        "[zones.\"other.example.com\"]",
    );
    s.edit_config(
        "[names.\"www.lb.example.com\"",
        "[names.\"www.other.example.com\"",
    );
    let g = s.running.reload().expect("the new config loads");
    assert!(g >= 2);
    let t = Instant::now();
    // One check interval plus one decision step, with room for a slow machine.
    let three = Duration::from_secs(3);
    bird.wait_within(false, t, three, "withdrawal after the self-check fails");
    let st = s.running.anycast.as_ref().unwrap().status();
    assert!(
        st.reason.as_deref().unwrap_or("").contains("rcode 5"),
        "{st:?}"
    );
    assert!(st.self_checks_failed >= 1);
}
