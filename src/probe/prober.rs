//! The prober task: one scheduler for every probe of every endpoint,
//! probes as tokio tasks under a semaphore with a hard deadline each, a
//! FIFO line when every slot is busy, and the targets re-read on reload.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::check::{self, Target};
use super::notify::Notifier;
use super::schedule::{DISPATCH_TICK, Schedule, Slot};
use super::status::HealthStatus;
use super::verdict::{ProbeResult, apply};
use crate::serving::Shared;
use crate::snapshot::Snapshot;

/// Prober settings.
#[derive(Debug, Clone)]
pub(crate) struct ProberOptions {
    /// Probes in flight at once.
    pub(crate) max_concurrency: usize,
}

impl Default for ProberOptions {
    fn default() -> Self {
        ProberOptions {
            max_concurrency: 512,
        }
    }
}

/// Run the prober until `shutdown`. `generations` ticks whenever `shared`
/// gets a new snapshot (reload); the prober then re-reads its targets.
/// An endpoint whose probe key did not change keeps its state, its due
/// time and its probe in flight (whose result then counts), so reloads,
/// however frequent, never delay or drop a probe; new endpoints fire at
/// their fixed offset.
pub(crate) async fn run(
    shared: Arc<Shared>,
    status: Arc<HealthStatus>,
    notifier: Option<Notifier>,
    mut generations: watch::Receiver<u64>,
    opts: ProberOptions,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(opts.max_concurrency.max(1)));
    let (tx, mut rx) = mpsc::channel::<ProbeResult>(1024);
    let mut snap = shared.current.load_full();
    crate::serving::labels::sync_health(&shared.metrics, &snap);
    let mut sched = Schedule::new(&snap, &status);
    let mut heap = sched.heap();
    let mut busy_skips = 0u64;
    // Slot ids waiting for a probe slot, oldest first.
    let mut waiting: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
    let mut warned_at = Instant::now();
    let mut last_dispatch = Instant::now();
    loop {
        if busy_skips > 0 && warned_at.elapsed() >= Duration::from_secs(60) {
            warn!(
                skipped = busy_skips,
                max_concurrency = opts.max_concurrency,
                "prober: every probe slot was busy, probes waited in line and intervals stretched (slow or blackholed endpoints? raise server.max_concurrent_probes); see steerdns_probes_skipped_total"
            );
            busy_skips = 0;
            warned_at = Instant::now();
        }
        // Dispatch at most once per tick: probes then start (and their I/O
        // completes) in small batches, so the runtime wakes the CPU far less
        // often than once per probe. 20 ms is noise against any interval.
        let next_due = heap
            .peek()
            .map(|Reverse((t, _))| (*t).max(last_dispatch + DISPATCH_TICK));
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = generations.changed() => {
                if changed.is_err() {
                    break;
                }
                let new = shared.current.load_full();
                crate::serving::labels::sync_health(&shared.metrics, &new);
                status.seed(&new);
                // Unchanged endpoints keep their schedule and probes in
                // flight, so a reload storm does not starve them.
                sched.reload(Some(&snap), &new, &status);
                snap = new;
                waiting.retain(|id| sched.index(*id).is_some());
                heap = sched.heap();
                info!(generation = snap.generation, probes = sched.slots.len(), "prober: targets reloaded");
            }
            Some(res) = rx.recv() => {
                // A result of an endpoint that is gone is dropped; one whose
                // slot carried over a reload counts for the current target.
                if let Some(i) = sched.index(res.slot) {
                    let slot = &mut sched.slots[i];
                    slot.in_flight = false;
                    let t = slot.target;
                    apply(&shared, &snap, &status, notifier.as_ref(), t, res);
                }
            }
            () = sleep_until_opt(next_due) => {
                let now = Instant::now();
                last_dispatch = now;
                while let Some(Reverse((due, i))) = heap.peek().copied() {
                    if due > now {
                        break;
                    }
                    heap.pop();
                    let slot = &mut sched.slots[i];
                    let interval = snap.monitors[snap.probes[slot.target].monitor as usize].interval;
                    slot.due = due + interval;
                    heap.push(Reverse((slot.due, i)));
                    if slot.in_flight || slot.queued {
                        // The last probe still runs or waits: skip a round.
                        shared.metrics.probe_skipped("in_flight");
                        continue;
                    }
                    match permits.clone().try_acquire_owned() {
                        Ok(permit) => start_probe(&snap, slot, permit, &tx),
                        Err(_) => {
                            // Every probe slot is busy: wait in line (FIFO,
                            // so no endpoint starves), counted and logged.
                            shared.metrics.probe_skipped("busy");
                            busy_skips += 1;
                            slot.queued = true;
                            waiting.push_back(slot.id);
                        }
                    }
                }
            }
        }
        // Results free probe slots: start those waiting, oldest first.
        while !waiting.is_empty() {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            let Some(id) = waiting.pop_front() else { break };
            let Some(i) = sched.index(id) else { continue };
            let slot = &mut sched.slots[i];
            slot.queued = false;
            start_probe(&snap, slot, permit, &tx);
        }
    }
}

/// Spawn one probe for `slot`, holding `permit` until it finishes.
fn start_probe(
    snap: &Snapshot,
    slot: &mut Slot,
    permit: tokio::sync::OwnedSemaphorePermit,
    tx: &mpsc::Sender<ProbeResult>,
) {
    slot.in_flight = true;
    let id = slot.id;
    let target = &snap.probes[slot.target];
    let monitor = &snap.monitors[target.monitor as usize];
    let spec = monitor.spec.clone();
    let addr = target.addr;
    let host = target.host.clone();
    let tx = tx.clone();
    let deadline = monitor.spec.timeout + Duration::from_secs(1);
    tokio::spawn(async move {
        let t = Target {
            addr,
            host: host.as_deref(),
        };
        // The probe has its own deadline; this outer one only guards against
        // a bug there holding a slot forever.
        let started = Instant::now();
        let (ok, reason, kind) = match tokio::time::timeout(deadline, check::probe(&spec, t)).await
        {
            Ok(Ok(done)) => (true, done.detail, None),
            Ok(Err(e)) => (false, e.to_string(), Some(e.kind.as_str())),
            Err(_) => (
                false,
                format!("timeout after {}s", deadline.as_secs()),
                Some("timeout"),
            ),
        };
        let duration = started.elapsed();
        // Free the probe slot before reporting, so the scheduler can hand
        // it to a waiting endpoint as soon as it sees this result.
        drop(permit);
        let _ = tx
            .send(ProbeResult {
                slot: id,
                ok,
                reason,
                kind,
                duration,
            })
            .await;
    });
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
