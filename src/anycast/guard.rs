//! The guard: a small child process (`steerdns anycast guard`) that holds
//! the announcement as a *lease*. steerdns tells it every 200 ms whether
//! to announce; the guard enables or disables the BIRD protocol
//! accordingly, and disables it by itself when steerdns falls silent for
//! the lease (process stopped, hung, starved) or its pipe closes (process
//! died, whatever the signal). So a dead or hung steerdns cannot stay
//! announced: the thing that keeps a route up has to be refreshed.
//!
//! Wire protocol on the guard's stdin: `announce` / `withdraw` lines. On
//! its stdout it reports `announced`, `withdrawn` (BIRD confirmed),
//! `drift` (BIRD's state differed when re-asserted, e.g. after a
//! `birdc configure`), `lease-expired` and `error <text>`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::bird::Bird;

/// What steerdns asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// Keep the route announced.
    Announce,
    /// Keep it withdrawn.
    Withdraw,
}

impl Want {
    /// The line sent to the guard.
    pub fn line(self) -> &'static str {
        match self {
            Want::Announce => "announce\n",
            Want::Withdraw => "withdraw\n",
        }
    }
}

/// Turns the announcement on or off (BIRD, or a fake in tests).
pub(crate) trait Routes {
    /// Make the route announced (`true`) or not; `Ok(true)` when that
    /// changed something.
    fn set(&mut self, announce: bool) -> Result<bool, String>;
}

/// The BIRD protocols as [`Routes`]: all on or all off.
pub(crate) struct BirdRoutes {
    pub bird: Bird,
    pub protocols: Vec<String>,
}

impl Routes for BirdRoutes {
    fn set(&mut self, announce: bool) -> Result<bool, String> {
        let mut changed = false;
        let mut first_error = None;
        // Every protocol is tried even when one fails: a withdrawal must
        // get as far as it can.
        for p in &self.protocols {
            match self.bird.set_enabled(p, announce) {
                Ok(c) => changed |= c,
                Err(e) => {
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        first_error.map_or(Ok(changed), Err)
    }
}

/// How often the wanted state is applied again although it did not change
/// (repairs a `birdc configure` or a BIRD restart, which reset the
/// protocol to its configured `disabled yes`).
pub(crate) const REASSERT: Duration = Duration::from_secs(1);

/// The guard's loop: apply what `rx` asks, withdraw when nothing came for
/// `lease`, withdraw and return when `rx` is closed.
pub(crate) fn guard_loop(
    rx: &Receiver<Want>,
    out: &mut dyn Write,
    routes: &mut dyn Routes,
    lease: Duration,
    reassert: Duration,
) {
    let mut want = Want::Withdraw;
    let mut applied: Option<Want> = None;
    let mut last_apply: Option<Instant> = None;
    loop {
        match rx.recv_timeout(lease) {
            Ok(w) => want = w,
            Err(RecvTimeoutError::Timeout) => {
                if want == Want::Announce {
                    let _ = writeln!(out, "lease-expired");
                }
                want = Want::Withdraw;
            }
            Err(RecvTimeoutError::Disconnected) => {
                // steerdns is gone: withdraw, trying a few times in case
                // BIRD is busy, then leave.
                for _ in 0..5 {
                    match routes.set(false) {
                        Ok(_) => {
                            let _ = writeln!(out, "withdrawn");
                            break;
                        }
                        Err(e) => {
                            let _ = writeln!(out, "error {e}");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
                let _ = out.flush();
                return;
            }
        }
        let due = last_apply.is_none_or(|t| t.elapsed() >= reassert);
        if applied == Some(want) && !due {
            continue;
        }
        last_apply = Some(Instant::now());
        match routes.set(want == Want::Announce) {
            Ok(changed) => {
                if changed && applied == Some(want) {
                    let _ = writeln!(out, "drift");
                }
                applied = Some(want);
                let _ = writeln!(
                    out,
                    "{}",
                    if want == Want::Announce {
                        "announced"
                    } else {
                        "withdrawn"
                    }
                );
            }
            Err(e) => {
                applied = None;
                let _ = writeln!(out, "error {e}");
            }
        }
        let _ = out.flush();
    }
}

/// `steerdns anycast guard`: run the guard on stdin/stdout until stdin
/// closes.
pub fn run_guard(socket: &Path, protocols: &[String], lease: Duration) {
    // The guard outlives steerdns only to withdraw; it must not die from
    // the signals a service manager or a terminal sends to the whole group
    // before steerdns itself has withdrawn. It leaves when its stdin closes.
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: setting a signal's disposition to SIG_IGN has no
        // preconditions.
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { return };
            let want = match line.trim() {
                "announce" => Want::Announce,
                "withdraw" => Want::Withdraw,
                _ => continue,
            };
            if tx.send(want).is_err() {
                return;
            }
        }
    });
    let mut routes = BirdRoutes {
        bird: Bird::new(socket, Duration::from_millis(500)),
        protocols: protocols.to_vec(),
    };
    let mut out = std::io::stdout();
    guard_loop(&rx, &mut out, &mut routes, lease, REASSERT);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records every call; the route is "announced" while `state` is true.
    #[derive(Clone, Default)]
    struct Fake {
        state: Arc<Mutex<bool>>,
        calls: Arc<Mutex<Vec<bool>>>,
    }

    impl Routes for Fake {
        fn set(&mut self, announce: bool) -> Result<bool, String> {
            self.calls.lock().unwrap().push(announce);
            let mut s = self.state.lock().unwrap();
            let changed = *s != announce;
            *s = announce;
            Ok(changed)
        }
    }

    /// A writer whose lines the test can wait for.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Lines {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
        /// Wait (bounded) until the output contains `what`.
        fn wait_for(&self, what: &str) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !self.text().contains(what) {
                assert!(
                    Instant::now() < deadline,
                    "no {what:?} in {:?}",
                    self.text()
                );
                std::thread::yield_now();
            }
        }
    }

    fn start(
        lease: Duration,
    ) -> (
        std::sync::mpsc::Sender<Want>,
        Fake,
        Lines,
        std::thread::JoinHandle<()>,
    ) {
        let (tx, rx) = std::sync::mpsc::channel();
        let fake = Fake::default();
        let lines = Lines::default();
        let (mut f, mut l) = (fake.clone(), lines.clone());
        let t = std::thread::spawn(move || guard_loop(&rx, &mut l, &mut f, lease, REASSERT));
        (tx, fake, lines, t)
    }

    #[test]
    fn follows_steerdns_and_withdraws_when_it_closes_the_pipe() {
        let (tx, fake, lines, t) = start(Duration::from_secs(60));
        tx.send(Want::Announce).unwrap();
        lines.wait_for("announced");
        assert!(*fake.state.lock().unwrap());
        tx.send(Want::Withdraw).unwrap();
        lines.wait_for("withdrawn");
        assert!(!*fake.state.lock().unwrap());
        tx.send(Want::Announce).unwrap();
        lines.wait_for("announced\nwithdrawn\nannounced");
        // steerdns dies: the pipe closes and the guard withdraws, then exits.
        drop(tx);
        t.join().unwrap();
        assert!(!*fake.state.lock().unwrap());
        assert_eq!(fake.calls.lock().unwrap().last(), Some(&false));
    }

    #[test]
    fn withdraws_when_the_lease_is_not_refreshed() {
        let (tx, fake, lines, t) = start(Duration::from_millis(300));
        tx.send(Want::Announce).unwrap();
        lines.wait_for("announced");
        // Silence (steerdns stopped or hung): the lease runs out.
        lines.wait_for("lease-expired\nwithdrawn");
        assert!(!*fake.state.lock().unwrap());
        // The guard keeps running and obeys again once refreshed.
        tx.send(Want::Announce).unwrap();
        lines.wait_for("lease-expired\nwithdrawn\nannounced");
        drop(tx);
        t.join().unwrap();
    }

    #[test]
    fn repairs_drift_on_reassert() {
        let (tx, fake, lines, t) = start(Duration::from_secs(60));
        tx.send(Want::Announce).unwrap();
        lines.wait_for("announced");
        // Someone (a `birdc configure`) disabled the protocol behind our back.
        *fake.state.lock().unwrap() = false;
        // Refresh until the re-assert is due and repairs it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !lines.text().contains("drift") {
            assert!(Instant::now() < deadline, "{}", lines.text());
            tx.send(Want::Announce).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(*fake.state.lock().unwrap());
        drop(tx);
        t.join().unwrap();
    }
}
