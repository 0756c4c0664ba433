#![no_main]
use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use steerdns::snapshot::Snapshot;

static SNAP: LazyLock<Snapshot> = LazyLock::new(|| {
    steerdns_fuzz::example_snapshot(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
});

fuzz_target!(|data: &[u8]| steerdns_fuzz::answer(&SNAP, data));
