//! A growable array of `u64` counters, sharded per thread: the storage
//! behind every per-query counter.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Counters per chunk: 256 × 8 bytes = 2 KiB, a whole number of cache
/// lines.
const CHUNK: usize = 256;

#[repr(align(64))]
struct Chunk([AtomicU64; CHUNK]);

impl Chunk {
    fn new() -> Box<Self> {
        Box::new(Chunk(std::array::from_fn(|_| AtomicU64::new(0))))
    }
}

/// One shard: lazily allocated chunks, so memory follows the slots in use.
struct Shard {
    chunks: Box<[OnceLock<Box<Chunk>>]>,
}

/// A growable array of `u64` counters, sharded so threads rarely share a
/// cache line. Growing ([`Sharded::ensure`]) happens off the hot path; adding
/// never locks or allocates.
pub(super) struct Sharded {
    shards: Box<[Shard]>,
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard index (modulo the shard count), assigned round
    /// robin on first use.
    static SHARD_INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn shard_index() -> usize {
    SHARD_INDEX.with(|c| {
        let mut i = c.get();
        if i == usize::MAX {
            i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
            c.set(i);
        }
        i
    })
}

fn shard_count() -> usize {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get())
        .saturating_mul(2)
        .next_power_of_two()
        .clamp(4, 64)
}

impl Sharded {
    pub(super) fn new(capacity: usize) -> Self {
        let chunks = capacity.div_ceil(CHUNK);
        Sharded {
            shards: (0..shard_count())
                .map(|_| Shard {
                    chunks: (0..chunks).map(|_| OnceLock::new()).collect(),
                })
                .collect(),
        }
    }

    /// Make counters `0..n` addressable (allocates missing chunks).
    pub(super) fn ensure(&self, n: usize) {
        for shard in self.shards.iter() {
            for c in shard.chunks.iter().take(n.div_ceil(CHUNK)) {
                c.get_or_init(Chunk::new);
            }
        }
    }

    #[inline]
    pub(super) fn add(&self, index: usize, n: u64) {
        let shard = &self.shards[shard_index() & (self.shards.len() - 1)];
        if let Some(chunk) = shard.chunks.get(index / CHUNK).and_then(OnceLock::get) {
            chunk.0[index % CHUNK].fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(super) fn sum(&self, index: usize) -> u64 {
        self.shards
            .iter()
            .filter_map(|s| s.chunks.get(index / CHUNK).and_then(OnceLock::get))
            .map(|c| c.0[index % CHUNK].load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_past_ensure_count_nothing() {
        let s = Sharded::new(3 * CHUNK);
        s.ensure(CHUNK + 1);
        s.add(0, 2);
        s.add(CHUNK, 5);
        // The third chunk was never allocated: adding is a no-op.
        s.add(2 * CHUNK, 7);
        s.add(10 * CHUNK, 1);
        assert_eq!((s.sum(0), s.sum(CHUNK), s.sum(2 * CHUNK)), (2, 5, 0));
        s.ensure(3 * CHUNK);
        s.add(2 * CHUNK, 7);
        assert_eq!(s.sum(2 * CHUNK), 7);
    }

    #[test]
    fn shard_count_is_a_power_of_two() {
        let n = shard_count();
        assert!(n.is_power_of_two() && (4..=64).contains(&n), "{n}");
    }
}
