//! Storage reuse inside the engine: the buffer of a large tensor that nothing references any
//! more is kept, and the next output of exactly the same size takes it instead of asking the
//! allocator, so a program that installs nothing runs at the speed of one with
//! [`crate::alloc::CachingAlloc`].
//!
//! Why: glibc returns large freed blocks to the kernel (`munmap` above its mmap threshold,
//! trimming the top of the heap), so a training loop that allocates the same tensors at every
//! step has the kernel fault in and clear every page again at every step. On the CSC layer
//! (T = 20 unrolled, batch 64) that was 3.5× the CPU time of the forward, most of it system
//! time (`sparse/examples/csc_timing.rs` with `SPARSEGRAD_ALLOC_CACHE_MB=0`, 2026-12-06).
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
/// Most buffers kept at once.
pub const SLOTS: usize = 256;

/// A kept buffer: address, capacity in bytes, alignment.
struct Block {
    ptr: usize,
    bytes: usize,
    align: usize,
}

struct Kept {
    blocks: Vec<Block>,
    bytes: usize,
}

static KEPT: Mutex<Kept> = Mutex::new(Kept { blocks: Vec::new(), bytes: 0 });
static BUDGET: AtomicUsize = AtomicUsize::new(DEFAULT_BUDGET);

/// The most bytes kept for reuse.
pub fn budget() -> usize {
    BUDGET.load(Ordering::Relaxed)
}

/// Sets the most bytes kept for reuse (`0`: no reuse) and frees what no longer fits.
pub fn set_budget(bytes: usize) {
    BUDGET.store(bytes, Ordering::Relaxed);
    let freed = {
        let mut k = KEPT.lock().unwrap_or_else(|e| e.into_inner());
        let mut freed = Vec::new();
        while k.bytes > bytes {
            let b = k.blocks.remove(0);
            k.bytes -= b.bytes;
            freed.push(b);
        }
        freed
    };
    freed.into_iter().for_each(free);
}

/// Hands every kept buffer back to the allocator (e.g. after training, before a phase that
/// needs the memory for something else). Reuse goes on afterwards.
pub fn release() {
    let blocks = {
        let mut k = KEPT.lock().unwrap_or_else(|e| e.into_inner());
        k.bytes = 0;
        std::mem::take(&mut k.blocks)
    };
    blocks.into_iter().for_each(free);
}

/// Bytes kept for reuse now.
pub fn kept_bytes() -> usize {
    KEPT.lock().unwrap_or_else(|e| e.into_inner()).bytes
}

/// Frees a kept block with the layout it was allocated with.
fn free(b: Block) {
    let layout = std::alloc::Layout::from_size_align(b.bytes, b.align).expect("a kept block's layout");
    // SAFETY: the block came from a `Vec` whose allocation had exactly this size and
    // alignment (`give`), and it was removed from the pool, so it is freed once.
    unsafe { std::alloc::dealloc(b.ptr as *mut u8, layout) };
}

/// An empty `Vec` with capacity for exactly `n` elements: a kept buffer of that size when
/// there is one, else a new allocation. Its capacity must be written before it is read.
pub fn take<T>(n: usize) -> Vec<T> {
    let (size, align) = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
    let bytes = n.saturating_mul(size);
    if bytes >= MIN_BYTES && size > 0 {
        let hit = {
            let mut k = KEPT.lock().unwrap_or_else(|e| e.into_inner());
            match k.blocks.iter().rposition(|b| b.bytes == bytes && b.align == align) {
                Some(i) => {
                    let b = k.blocks.swap_remove(i);
                    k.bytes -= b.bytes;
                    Some(b)
                }
                None => None,
            }
        };
        if let Some(b) = hit {
            // SAFETY: the block was allocated as a `Vec` with capacity `bytes / size` of an
            // element type with this size and alignment (`give` recorded both), so it has
            // the layout `Vec<T>` with capacity `n` frees; length 0, nothing to drop.
            return unsafe { Vec::from_raw_parts(b.ptr as *mut T, 0, n) };
        }
    }
    Vec::with_capacity(n)
}

/// Keeps the buffer of `v` for a later [`take`] of the same size when it is large enough and
/// fits the budget; frees it otherwise. The elements are dropped first (the engine's element
/// types are `Copy`).
pub fn give<T>(mut v: Vec<T>) {
    let (size, align) = (std::mem::size_of::<T>(), std::mem::align_of::<T>());
    let bytes = v.capacity().saturating_mul(size);
    if bytes < MIN_BYTES || size == 0 {
        return;
    }
    v.clear();
    let budget = budget();
    let mut k = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    if k.bytes + bytes > budget || k.blocks.len() >= SLOTS {
        return; // `v` is freed on return, after the lock is released
    }
    let mut v = std::mem::ManuallyDrop::new(v);
    k.blocks.push(Block { ptr: v.as_mut_ptr() as usize, bytes, align });
    k.bytes += bytes;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool is process-wide and tests run in parallel: each test uses its own sizes.
    #[test]
    fn a_freed_buffer_is_taken_by_the_next_request_of_its_size_only() {
        let n = (MIN_BYTES / 4) + 12_345;
        let mut v: Vec<f32> = take(n);
        v.resize(n, 1.0);
        let p = v.as_ptr();
        give(v);
        // Another size or element type does not take it.
        let other: Vec<f32> = take(n + 1);
        assert_ne!(other.as_ptr(), p);
        let w: Vec<f64> = take(n / 2);
        assert_ne!(w.as_ptr() as *const f32, p);
        let again: Vec<f32> = take(n);
        assert_eq!(again.as_ptr(), p, "the kept buffer is reused");
        assert_eq!((again.len(), again.capacity()), (0, n));
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
