//! Storage reuse inside the engine: the buffer of a large tensor that nothing references any
//! more is kept, and the next output of exactly the same size takes it instead of asking the
//! allocator, so a program that installs nothing runs as fast as one with a caching global
//! allocator (the project had one, `engine::alloc::CachingAlloc`, removed once this made it
//! redundant: `bench/README.md`, "Buffer reuse inside the engine").
//!
//! Why: glibc returns large freed blocks to the kernel (`munmap` above its mmap threshold,
//! trimming the top of the heap), so a training loop that allocates the same tensors at every
//! step has the kernel fault in and clear every page again at every step. On the CSC layer
//! (T = 20 unrolled, batch 64) that was 3.5× the CPU time of the forward, most of it system
//! time (`sparse/examples/csc_timing.rs --no-reuse`, 2026-12-06).
//!
//! How: [`Tensor`](crate::Tensor)'s `Drop` hands its buffer to [`give`] when the tensor held the
//! last reference; the kernels' output buffers ([`crate::filled`] and the element-wise
//! kernels) come from [`take`]. Only buffers of at least [`MIN_BYTES`] are kept (smaller ones
//! are reused by glibc's own free lists without faults), at most [`SLOTS`] of them and at most
//! [`budget`] bytes in all (default [`DEFAULT_BUDGET`]; [`set_budget`] changes it, `0` turns
//! reuse off, [`release`] hands everything kept back to the allocator). A buffer is taken
//! only by a request of exactly its size and alignment, so a kept block is always freed with
//! the layout it was allocated with. The contents of a reused buffer are stale: [`take`]
//! returns an empty `Vec` whose capacity the caller writes before reading, as a fresh one.
//! Values never depend on whether a buffer was reused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Smallest buffer kept, in bytes (glibc's smallest mmap threshold).
pub const MIN_BYTES: usize = 128 << 10;
/// Most bytes kept at once unless [`set_budget`] says otherwise.
pub const DEFAULT_BUDGET: usize = 2 << 30;
/// Most buffers kept at once. A NiN training step at batch 64 frees about 300 buffers above
/// [`MIN_BYTES`]; with 256 slots the oldest were evicted before the next step asked for their
/// sizes again, and the kernel cleared fresh pages for them (0.97 s of system time in two
/// steps, 3% of the step; 2026-12-07). Taking a buffer scans the kept ones, a few
/// microseconds at this bound.
pub const SLOTS: usize = 1024;

/// A kept buffer: address, capacity in bytes, alignment.
#[derive(Debug, PartialEq)]
struct Block {
    ptr: usize,
    bytes: usize,
    align: usize,
}

/// The kept buffers, oldest first, and their total size.
struct Kept {
    blocks: Vec<Block>,
    bytes: usize,
}

impl Kept {
    const fn new() -> Self {
        Kept { blocks: Vec::new(), bytes: 0 }
    }

    /// The newest kept block of exactly this size and alignment, removed from the pool.
    fn take(&mut self, bytes: usize, align: usize) -> Option<Block> {
        let i = self.blocks.iter().rposition(|b| b.bytes == bytes && b.align == align)?;
        let b = self.blocks.remove(i);
        self.bytes -= b.bytes;
        Some(b)
    }

    /// Keeps `b`, first evicting the oldest blocks until it fits within `budget` bytes and
    /// [`SLOTS`] blocks (so sizes a program stopped using make room for the ones it uses now).
    /// Returns the blocks to free: the evicted ones, or `b` itself when it alone exceeds the
    /// budget.
    fn give(&mut self, b: Block, budget: usize) -> Vec<Block> {
        if b.bytes > budget {
            return vec![b];
        }
        let evicted = self.evict(budget - b.bytes, SLOTS - 1);
        self.bytes += b.bytes;
        self.blocks.push(b);
        evicted
    }

    /// Evicts the oldest blocks until at most `budget` bytes are kept.
    fn shrink(&mut self, budget: usize) -> Vec<Block> {
        self.evict(budget, SLOTS)
    }

    /// Removes the oldest blocks until at most `bytes` bytes in at most `slots` blocks remain.
    fn evict(&mut self, bytes: usize, slots: usize) -> Vec<Block> {
        let n = self.blocks.iter().rev().scan(0usize, |kept, b| {
            *kept += b.bytes;
            Some(*kept)
        });
        // The newest blocks that fit; the rest (the oldest) go.
        let keep = n.take(slots).take_while(|&k| k <= bytes).count();
        let evicted: Vec<Block> = self.blocks.drain(..self.blocks.len() - keep).collect();
        self.bytes -= evicted.iter().map(|b| b.bytes).sum::<usize>();
        evicted
    }
}

static KEPT: Mutex<Kept> = Mutex::new(Kept::new());
static BUDGET: AtomicUsize = AtomicUsize::new(DEFAULT_BUDGET);

fn kept() -> std::sync::MutexGuard<'static, Kept> {
    KEPT.lock().unwrap_or_else(|e| e.into_inner())
}

/// The most bytes kept for reuse.
pub fn budget() -> usize {
    BUDGET.load(Ordering::Relaxed)
}

/// Sets the most bytes kept for reuse (`0`: no reuse) and frees what no longer fits.
pub fn set_budget(bytes: usize) {
    BUDGET.store(bytes, Ordering::Relaxed);
    let evicted = kept().shrink(bytes);
    evicted.into_iter().for_each(free);
}

/// Hands every kept buffer back to the allocator (e.g. after training, before a phase that
/// needs the memory for something else). Reuse goes on afterwards.
pub fn release() {
    let evicted = kept().shrink(0);
    evicted.into_iter().for_each(free);
}

/// Bytes kept for reuse now.
pub fn kept_bytes() -> usize {
    kept().bytes
}

/// Frees a kept block with the layout it was allocated with.
fn free(b: Block) {
    let layout = std::alloc::Layout::from_size_align(b.bytes, b.align).expect("a kept block's layout");
    // SAFETY: the block came from a `Vec` whose allocation had exactly this size and
    // alignment (`give`), and it left the pool, so it is freed once.
    unsafe { std::alloc::dealloc(b.ptr as *mut u8, layout) };
}

/// An empty `Vec` with capacity for exactly `n` elements: a kept buffer of that size when
/// there is one, else a new allocation. Its capacity must be written before it is read.
pub fn take<T>(n: usize) -> Vec<T> {
    let (size, align) = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
    let bytes = n.saturating_mul(size);
    if bytes >= MIN_BYTES && size > 0 {
        let hit = kept().take(bytes, align);
        if let Some(b) = hit {
            // SAFETY: the block was allocated as a `Vec` with capacity `bytes / size` of an
            // element type with this size and alignment (`give` recorded both), so it has
            // the layout `Vec<T>` with capacity `n` frees; length 0, nothing to drop.
            return unsafe { Vec::from_raw_parts(b.ptr as *mut T, 0, n) };
        }
    }
    Vec::with_capacity(n)
}

/// Keeps the buffer of `v` for a later [`take`] of the same size when it is large enough
/// (evicting the oldest kept buffers to stay within the budget); frees it otherwise. The
/// elements are dropped first (the engine's element types are `Copy`).
pub fn give<T>(mut v: Vec<T>) {
    let (size, align) = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
    let bytes = v.capacity().saturating_mul(size);
    let budget = budget();
    if bytes < MIN_BYTES || size == 0 || budget == 0 {
        return;
    }
    v.clear();
    let mut v = std::mem::ManuallyDrop::new(v);
    let b = Block { ptr: v.as_mut_ptr() as usize, bytes, align };
    let evicted = kept().give(b, budget);
    evicted.into_iter().for_each(free);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(ptr: usize, bytes: usize, align: usize) -> Block {
        Block { ptr, bytes, align }
    }

    /// The pool's policy on a local pool with made-up addresses (never freed).
    #[test]
    fn a_kept_block_goes_to_a_request_of_its_size_and_alignment_only() {
        let mut k = Kept::new();
        assert!(k.give(block(1, 4096, 4), 1 << 20).is_empty());
        assert!(k.give(block(2, 4096, 8), 1 << 20).is_empty());
        assert_eq!(k.take(4100, 4), None, "another size");
        assert_eq!(k.take(4096, 16), None, "another alignment");
        assert_eq!(k.take(4096, 8), Some(block(2, 4096, 8)));
        assert_eq!(k.take(4096, 4), Some(block(1, 4096, 4)));
        assert_eq!((k.blocks.len(), k.bytes), (0, 0));
    }

    #[test]
    fn the_oldest_blocks_make_room_within_the_budget_and_the_slots() {
        let mut k = Kept::new();
        for i in 0..3 {
            assert!(k.give(block(i, 1000, 4), 3000).is_empty());
        }
        // A fourth block over the budget evicts the oldest.
        assert_eq!(k.give(block(3, 1000, 4), 3000), vec![block(0, 1000, 4)]);
        // A block larger than the whole budget is not kept.
        assert_eq!(k.give(block(9, 5000, 4), 3000), vec![block(9, 5000, 4)]);
        assert_eq!(k.bytes, 3000);
        // The slot limit evicts the same way.
        let mut k = Kept::new();
        for i in 0..SLOTS + 2 {
            let evicted = k.give(block(i, 1, 1), usize::MAX);
            assert_eq!(evicted.len(), usize::from(i >= SLOTS));
        }
        assert_eq!(k.blocks.len(), SLOTS);
        assert_eq!(k.blocks[0].ptr, 2, "the two oldest went first");
        assert_eq!(k.shrink(10).len(), SLOTS - 10);
        assert_eq!(k.bytes, 10);
    }

    #[test]
    fn tensors_give_their_buffer_back_when_the_last_reference_goes() {
        let n = (MIN_BYTES / 8) + 777;
        let t = crate::Tensor::<f64>::from_vec(vec![2.0; n], &[n]);
        let view = t.reshape(&[1, n]);
        let p = t.storage().as_ptr();
        drop(t);
        // The view still holds the storage: nothing was kept yet.
        let miss: Vec<f64> = take(n);
        assert_ne!(miss.as_ptr(), p);
        drop(view);
        let hit: Vec<f64> = take(n);
        assert_eq!(hit.as_ptr(), p, "the last reference gave the buffer back");
        drop(miss);
    }
}
