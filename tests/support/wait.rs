//! The one bounded wait: poll a real condition until it holds, or fail
//! naming what was awaited. Never a sleep standing in for synchronisation.

use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(10);

/// Poll `f` until it returns `Some`, and return that; `None` once
/// `timeout` has passed (for a test that asserts on the timeout itself).
pub fn within<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Poll `f` until it returns `Some`, and return that; panic naming `what`
/// once `timeout` has passed.
pub fn until<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    within(timeout, f).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for: {what}"))
}

/// Poll `f` until it returns true; panic naming `what` after `secs` seconds.
pub fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    until(Duration::from_secs(secs), what, || f().then_some(()));
}
