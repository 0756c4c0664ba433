//! Signals on the real binary: handlers are in place before anything is
//! served, and a stop signal does not wait for a running reload.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::harness::*;

struct Server {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn spawn(config: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_steerdns"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .args(["--http-listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn steerdns");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Server { child, lines }
    }
    fn has(&self, what: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(what))
    }
    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
    fn udp_addr(&self) -> std::net::SocketAddr {
        let lines = self.lines.lock().unwrap();
        let line = lines
            .iter()
            .find(|l| l.contains("proto=udp"))
            .expect("udp line");
        let plain: String = line.chars().filter(|c| !c.is_control()).collect();
        plain
            .split("addr=")
            .nth(1)
            .and_then(|a| a.split_whitespace().next())
            .and_then(|a| {
                // Strip any colour codes left after the address.
                let a: String = a.chars().take_while(|c| *c != '[').collect();
                a.parse().ok()
            })
            .expect("udp addr")
    }
    /// Wait (bounded) for the exit status.
    fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Non-blocking: fails (ENXIO) while nobody has it open to read.
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(mut f) => {
                f.write_all(text.as_bytes()).expect("write config");
                return;
            }
            Err(_) => {
                assert!(Instant::now() < deadline, "nobody read the config");
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

#[test]
fn sighup_during_startup_does_not_kill_the_server() {
    let (_dir, path) = config();
    let text = std::fs::read_to_string(&path).unwrap();
    // The config is a FIFO nobody writes yet: the server blocks reading it
    // at startup, a window as long as we like, after the first log line.
    mkfifo(&path);
    let mut s = Server::spawn(&path);
    wait_for(20, "the start line", || s.has("starting"));
    for n in 1..=20 {
        s.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(1));
        if let Some(st) = s.child.try_wait().unwrap() {
            panic!("died from SIGHUP number {n} during startup: {st:?}");
        }
    }
    assert!(!s.has("proto=udp"), "served before the config was read");
    // The start reads it once...
    feed_once(&path, &text);
    wait_for(20, "serving", || s.has("proto=udp"));
    assert!(s.child.try_wait().unwrap().is_none(), "died during startup");
    let udp = s.udp_addr();
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
    let mut s = Server::spawn(&path);
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
    let term = Instant::now();
    s.signal(libc::SIGTERM);
    let st = s.wait_exit(10).expect("exits although a reload is running");
    assert!(st.success(), "{st:?}");
    assert!(
        term.elapsed() < Duration::from_secs(5),
        "took {:?}",
        term.elapsed()
    );
    assert!(s.has("stopping without waiting for the running reload"));
    drop(dir);
}
