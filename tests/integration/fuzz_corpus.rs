//! Replays the fuzz seed corpus (`fuzz/corpus/<target>/*`) through the fuzz
//! target bodies on the stable toolchain, so `cargo test` exercises every
//! target and every committed input even where cargo-fuzz cannot run
//! (`.ci/fuzz.sh` fuzzes for real when a nightly toolchain is present).
//! Inputs that libFuzzer finds and that are worth keeping go into the
//! corpus and are replayed here from then on.

#[path = "../../fuzz/src/lib.rs"]
mod targets;

use std::path::PathBuf;

use crate::support::repo;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = repo("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    let inputs: Vec<_> = files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).expect("corpus file");
            (p, data)
        })
        .collect();
    assert!(!inputs.is_empty(), "empty corpus {}", dir.display());
    inputs
}

/// Every input, and every prefix of it (truncation is the most common
/// malformation), through `f`.
fn replay(target: &str, mut f: impl FnMut(&[u8])) {
    for (path, data) in corpus(target) {
        for end in 0..=data.len() {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&data[..end])));
            assert!(r.is_ok(), "{} (first {end} bytes) panicked", path.display());
        }
    }
}

#[test]
fn wire_corpus() {
    replay("wire", targets::wire);
}

#[test]
fn answer_corpus() {
    let snap = targets::example_snapshot(&repo(""));
    replay("answer", |d| targets::answer(&snap, d));
}

#[test]
fn config_corpus() {
    // Prefixes of a config are mostly syntax errors: the whole files, then
    // every line-aligned prefix, keep this quick.
    for (path, data) in corpus("config") {
        let cuts = data
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .map(|(i, _)| i + 1)
            .chain([data.len()]);
        for end in cuts {
            let r = std::panic::catch_unwind(|| targets::config(&data[..end]));
            assert!(r.is_ok(), "{} (first {end} bytes) panicked", path.display());
        }
    }
}

#[test]
fn geoip_corpus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scratch = dir.path().join("db.mmdb");
    // Every 64th prefix: opening writes a file, and the full set of
    // truncations adds little over these.
    for (path, data) in corpus("geoip") {
        for end in (0..=data.len()).step_by(64).chain([data.len()]) {
            let r = std::panic::catch_unwind(|| targets::geoip(&data[..end], &scratch));
            assert!(r.is_ok(), "{} (first {end} bytes) panicked", path.display());
        }
    }
}
