//! Visible skips: a test that cannot run in this environment says so on
//! stderr, `SKIPPED <test>: why`, and returns; it never passes silently.
//! Written to the process's real stderr: the test harness captures
//! `eprintln!` and shows it for failures only.

use std::io::Write;

/// Report that the calling test is skipped, and why. The caller returns.
pub fn skip(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string();
    // Not `eprintln!`: the test harness captures that and shows it only
    // for failures; a skip must be seen on a passing run too.
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}");
}

/// Whether a local address can be bound (for tests that use loopback
/// addresses other than 127.0.0.1, or ::1); skips the test visibly if not.
pub fn can_bind(ip: &str) -> bool {
    match std::net::TcpListener::bind((ip, 0)) {
        Ok(_) => true,
        Err(e) => {
            skip(&format!("cannot bind {ip} here: {e}"));
            false
        }
    }
}
