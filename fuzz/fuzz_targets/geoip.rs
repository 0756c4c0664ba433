#![no_main]
use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

// One scratch file per process (the opener reads a path).
static SCRATCH: LazyLock<PathBuf> = LazyLock::new(|| {
    std::env::temp_dir().join(format!("steerdns-fuzz-geoip-{}.mmdb", std::process::id()))
});

fuzz_target!(|data: &[u8]| steerdns_fuzz::geoip(data, &SCRATCH));
