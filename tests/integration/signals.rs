//! Signals on the real binary: handlers are in place before anything is
//! served, and a stop signal does not wait for a running reload.

use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::harness::*;
use crate::support::daemon::Daemon;

fn config() -> (tempfile::TempDir, std::path::PathBuf) {
    write_config(&BASE.replace(
        "udp_workers = 1",
        "udp_workers = 1\nwatch_interval = \"0s\"",
    ))
}

/// Make `path` a FIFO: whoever reads it blocks until [`feed`] writes.
fn mkfifo(path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Write `text` once into the FIFO at `path`, as soon as someone opens it
/// to read (bounded wait).
fn feed_once(path: &std::path::Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking: fails (ENXIO) while nobody has it open to read.
    let mut f = wait::until(Duration::from_secs(20), "a reader of the config", || {
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .ok()
    });
    f.write_all(text.as_bytes()).expect("write config");
}

#[test]
fn sighup_during_startup_does_not_kill_the_server() {
    let (_dir, path) = config();
    let text = std::fs::read_to_string(&path).unwrap();
    // The config is a FIFO nobody writes yet: the server blocks reading it
    // at startup, a window as long as we like, after the first log line.
    mkfifo(&path);
    let mut s = Daemon::serve(&path, &[]);
    wait_for(20, "the start line", || s.has("starting"));
    for n in 1..=20 {
        s.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(1));
        if let Some(st) = s.exited() {
            panic!("died from SIGHUP number {n} during startup: {st:?}");
        }
    }
    assert!(!s.has("proto=udp"), "served before the config was read");
    // The start reads it once...
    feed_once(&path, &text);
    wait_for(20, "serving", || s.has("proto=udp"));
    assert!(s.exited().is_none(), "died during startup");
    let udp = s.addr("udp");
    let wire = q("static.lb.example.com.", RecordType::A).to_vec().unwrap();
    wait_for(10, "an answer after the startup SIGHUPs", || {
        udp_raw(udp, &wire).is_some()
    });
    // ...and the SIGHUPs during startup lead to one reload once it runs.
    feed_once(&path, &text);
    wait_for(10, "the reload they asked for", || {
        s.has("config reloaded (SIGHUP)")
    });
    s.signal(libc::SIGTERM);
    let st = s.wait_exit(10).expect("exits on SIGTERM");
    assert!(st.success(), "{st:?}");
}

#[test]
fn sigterm_does_not_wait_for_a_running_reload() {
    let (dir, path) = config();
    let mut s = Daemon::serve(&path, &[]);
    wait_for(20, "serving", || s.has("proto=udp"));
    // Replace the config by a FIFO nobody writes: a reload blocks reading
    // it for as long as we like.
    mkfifo(&path);
    s.signal(libc::SIGHUP);
    let pid = s.child.id();
    wait_for(10, "the reload thread blocked on the FIFO", || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.flatten().any(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "steerdns-reload")
                })
            })
            .unwrap_or(false)
    });
    s.signal(libc::SIGTERM);
    let st = s.wait_exit(10).expect("exits although a reload is running");
    assert!(st.success(), "{st:?}");
    // Nobody ever writes the FIFO: the reload was still blocked when the
    // process exited (a condition, where a wall-clock bound stood).
    assert!(!s.has("config reloaded"), "{}", s.log());
    assert!(s.has("stopping without waiting for the running reload"));
    drop(dir);
}
