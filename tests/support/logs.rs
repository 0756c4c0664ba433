//! The in-process server's tracing output, kept in memory and printed when
//! a test fails.
//!
//! One global subscriber (installed on first use) formats every event
//! into a bounded in-memory log, with the thread name (server threads are
//! `steerdns-*`, the test thread carries the test's name). A test holds a
//! [`Window`] while its server runs; when the test panics, dropping the
//! window prints what was logged since it opened. Tests run in parallel
//! share the log, so lines of other tests can interleave; run the one
//! test (`cargo test --test integration NAME`) to see its lines alone.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Mutex, Once};

/// Lines kept at most (older ones are dropped first).
const KEEP: usize = 20_000;

struct Log {
    /// Number of the first line in `lines`.
    first: u64,
    lines: VecDeque<String>,
}

static LOG: Mutex<Log> = Mutex::new(Log {
    first: 0,
    lines: VecDeque::new(),
});

fn next_line() -> u64 {
    let log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    log.first + log.lines.len() as u64
}

/// One formatted event; appended to the log when dropped.
struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.0);
        let mut log = LOG.lock().unwrap_or_else(|e| e.into_inner());
        for line in text.lines() {
            log.lines.push_back(line.to_string());
        }
        while log.lines.len() > KEEP {
            log.lines.pop_front();
            log.first += 1;
        }
    }
}

/// Install the capturing subscriber (once; `RUST_LOG` filters, default
/// `info`).
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_thread_names(true)
            .with_writer(|| LineWriter(Vec::new()))
            .try_init();
    });
}

/// The log from the moment it was opened; printed to stderr if dropped
/// while the thread panics.
pub struct Window {
    from: u64,
    what: String,
}

/// Open a window on the log for `what` (e.g. "server").
pub fn window(what: &str) -> Window {
    init();
    Window {
        from: next_line(),
        what: what.to_string(),
    }
}

impl Window {
    /// The lines logged since the window opened.
    pub fn lines(&self) -> Vec<String> {
        let log = LOG.lock().unwrap_or_else(|e| e.into_inner());
        let skip = self.from.saturating_sub(log.first) as usize;
        log.lines.iter().skip(skip).cloned().collect()
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump(&self.what, &self.lines());
        }
    }
}

/// Print `lines` as the log of `what` (to the captured stderr of the test,
/// shown with its failure).
pub fn dump(what: &str, lines: &[String]) {
    eprintln!(
        "---- {what} log ({} lines; tests running in parallel may interleave) ----",
        lines.len()
    );
    for l in lines {
        eprintln!("{l}");
    }
    eprintln!("---- end of {what} log ----");
}
