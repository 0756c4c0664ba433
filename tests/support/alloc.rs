//! The counting global allocator: allocations made by this thread, so
//! tests running in parallel on other threads do not disturb a count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: the allocator also runs while thread locals are torn down.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

/// Forwards to the system allocator, counting per thread.
pub struct Counting;

// SAFETY: forwards to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and reallocations) this thread has made so far.
pub fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

/// Run `f`; its result and the allocations it made on this thread.
pub fn counted<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = allocs();
    let r = f();
    (r, allocs() - before)
}

/// Check that the counter counts (a test relying on a zero count asserts
/// this too, so a broken counter cannot pass it).
pub fn assert_counter_counts() {
    let (v, n) = counted(|| std::hint::black_box(vec![1u8; 16]));
    assert!(n > 0, "the counting allocator did not count ({})", v.len());
}
