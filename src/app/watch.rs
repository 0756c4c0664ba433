//! The file watch: poll the config and its GeoIP databases, reload when
//! they changed and then held still for one more period.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::placement::{self, Placement};
use crate::reload::{Control, error_lines};

/// (length, modification time, inode) of each watched file, `None` when it
/// cannot be read.
pub(super) type Fingerprint = Vec<Option<(u64, std::time::SystemTime, u64)>>;

/// The files a config depends on: itself and its GeoIP databases.
pub(super) fn watched_files(control: &Control) -> Vec<PathBuf> {
    let snap = control.shared.current.load();
    let mut files = vec![control.config().to_path_buf()];
    files.extend(snap.geo.location_dbs_info().into_iter().map(|i| i.path));
    if let Some(i) = snap.geo.asn_db_info() {
        files.push(i.path);
    }
    files
}

/// (length, modification time, inode) of each file; cheap to poll. The
/// inode changes when a new file is renamed over the old one (the safe way
/// to update a database), even with the same size and time.
pub(super) fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.len(), m.modified().ok()?, m.ino()))
        })
        .collect()
}

/// Poll `files` every `every`; when they changed and then stayed the same
/// for one more period (updaters replace files in steps), reload. `seen` is
/// what the serving config was read from.
pub(super) async fn watch_files(
    control: Arc<Control>,
    place: Placement,
    (mut files, mut seen): (Vec<PathBuf>, Fingerprint),
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut pending: Option<Fingerprint> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let now = fingerprint(&files);
        if now == seen {
            pending = None;
            continue;
        }
        if pending.as_ref() != Some(&now) {
            // Changed since the last look: wait one more period to settle.
            pending = Some(now);
            continue;
        }
        pending = None;
        // Fingerprint before reading, as at start.
        seen = now;
        let c = control.clone();
        let p = place.clone();
        let result =
            tokio::task::spawn_blocking(move || placement::compile(&p, || c.reload())).await;
        match result {
            Ok(Ok(g)) => info!(generation = g, "config reloaded (file change)"),
            Ok(Err(e)) => error!(
                "reload after file change failed, keeping the old config:\n{}",
                error_lines(&e).join("\n")
            ),
            Err(e) => {
                let why = format!("reload task failed: {e}");
                error!("{why}");
                control.record(&Err(vec![why]));
            }
        }
        let new_files = watched_files(&control);
        if new_files != files {
            files = new_files;
            seen = fingerprint(&files);
        }
    }
}
