//! The real binary as a child process: its stderr log collected line by
//! line, listening addresses read from it, signals sent to it. Killed on
//! drop; its log is printed when the test fails.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::wait;

/// A running `steerdns` process.
pub struct Daemon {
    /// The child.
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// `steerdns serve --config CONFIG --http-listen 127.0.0.1:0 EXTRA...`
    /// at log level info.
    pub fn serve(config: &Path, extra: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_steerdns"));
        cmd.args(["serve", "--config", config.to_str().expect("utf-8 path")])
            .args(["--http-listen", "127.0.0.1:0"])
            .args(extra);
        Self::spawn(cmd)
    }

    /// Spawn `cmd` (stderr piped and collected, log level info, no colour).
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn steerdns");
        let stderr = child.stderr.take().expect("stderr piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                l.lock().unwrap().push(strip_ansi(&line));
            }
        });
        Daemon { child, lines }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send `sig`.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill {sig}");
    }

    /// Whether a log line so far contains `what`.
    pub fn has(&self, what: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(what))
    }

    /// The word after `key` in the first log line containing `marker`.
    pub fn value(&self, marker: &str, key: &str) -> Option<String> {
        let lines = self.lines.lock().unwrap();
        let line = lines.iter().find(|l| l.contains(marker))?;
        let v = line.split(key).nth(1)?.split_whitespace().next()?;
        Some(v.to_string())
    }

    /// The address logged as `listening proto=PROTO addr=...` (waits for
    /// the line, bounded).
    pub fn addr(&self, proto: &str) -> SocketAddr {
        let key = format!("proto={proto} addr=");
        wait::until(
            Duration::from_secs(20),
            &format!("{proto} listening line"),
            || self.value(&key, &key)?.parse().ok(),
        )
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Wait (bounded) for the exit status.
    pub fn wait_exit(&mut self, secs: u64) -> Option<ExitStatus> {
        wait::within(Duration::from_secs(secs), || self.exited())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            super::logs::dump(&format!("steerdns pid {}", self.child.id()), &lines);
        }
    }
}

/// `s` without ANSI colour sequences.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\x1b') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}
