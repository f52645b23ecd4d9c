//! [`CachingAlloc`]: a global allocator for the project's programs that keeps freed large blocks
//! for the next allocation of the same size, instead of handing them back to the kernel.
//!
//! Why: glibc serves every block above its mmap threshold (at most 32 MiB) with fresh pages
//! from `mmap` and returns it with `munmap` when it is freed, so a program that allocates the
//! same large tensors at every step (a tape's values, their gradients) has the kernel fault in
//! and zero every page again at every step. On the project's VM that was about a third of
//! DCEA's forward pass (`perf`: `clear_page_erms`; 3.2–3.5 s fresh against 2.0 s with glibc's
//! mmap disabled, one thread, 2026-12-02), and the SC loss at N = 128 went from 0.37 to 0.31 ms
//! per forward and backward (minima) with its two 128 KiB gradients reused.
//!
//! Since [`crate::recycle`] the engine reuses its own large tensor buffers, which gives a plain
//! program the same speed (bench/README.md, "Buffer reuse inside the engine"), and the
//! `sparsegrad` binary no longer installs this allocator. It remains for the timing examples
//! that compare against it.
//!
//! A library cannot choose the allocator; a program opts in:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: engine::alloc::CachingAlloc = engine::alloc::CachingAlloc::new();
//! ```
//!
//! Blocks of at least [`MIN_BYTES`] are kept on `dealloc` while the kept total stays within the
//! budget (default [`DEFAULT_BUDGET`]; `SPARSEGRAD_ALLOC_CACHE_MB` in the environment when the
//! first large block is freed, `0` turns the cache off, anything but a whole number warns once
//! on stderr and keeps the default), up to [`SLOTS`] blocks. An allocation
//! takes a kept block of exactly its size and alignment, else asks the system; `alloc_zeroed`
//! zeroes a kept block itself. Everything else goes straight to [`System`]. Kept memory stays
//! resident: that is the price of not faulting it in again.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Smallest block kept: glibc's smallest mmap threshold (smaller blocks come from its heap,
/// whose free lists reuse them without faults).
pub const MIN_BYTES: usize = 128 << 10;
/// Most bytes kept at once, unless `SPARSEGRAD_ALLOC_CACHE_MB` says otherwise.
pub const DEFAULT_BUDGET: usize = 4 << 30;
/// Most blocks kept at once.
pub const SLOTS: usize = 512;

/// The budget in bytes that `SPARSEGRAD_ALLOC_CACHE_MB` asks for: [`DEFAULT_BUDGET`] when unset,
/// `None` when it is not a whole number of MiB.
fn parse_budget(var: Option<&str>) -> Option<usize> {
    match var {
        None => Some(DEFAULT_BUDGET),
        Some(v) => v.trim().parse::<usize>().ok().map(|mb| mb.saturating_mul(1 << 20)),
    }
}

/// A kept block: address, size and alignment of its layout (0 size: an empty slot).
#[derive(Clone, Copy)]
struct Slot {
    ptr: usize,
    size: usize,
    align: usize,
}

struct Cache {
    slots: [Slot; SLOTS],
    kept: usize,
}

/// The caching global allocator (see the module docs).
pub struct CachingAlloc {
    cache: Mutex<Cache>,
    /// The budget in bytes, `usize::MAX` until read from the environment.
    budget: AtomicUsize,
}

impl CachingAlloc {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self::with_budget(usize::MAX)
    }

    /// A cache with a fixed budget in bytes (the environment is not read); `usize::MAX`: read
    /// it when the first large block is freed.
    pub const fn with_budget(bytes: usize) -> Self {
        CachingAlloc {
            cache: Mutex::new(Cache { slots: [Slot { ptr: 0, size: 0, align: 0 }; SLOTS], kept: 0 }),
            budget: AtomicUsize::new(bytes),
        }
    }

    fn budget(&self) -> usize {
        let b = self.budget.load(Ordering::Relaxed);
        if b != usize::MAX {
            return b;
        }
        // Reading the environment allocates: this runs inside `dealloc`, where the allocator
        // may be re-entered for small blocks only (they never reach this point), so it is safe.
        let var = std::env::var("SPARSEGRAD_ALLOC_CACHE_MB").ok();
        let b = parse_budget(var.as_deref()).unwrap_or_else(|| {
            // A fixed message: writing it allocates nothing.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"sparsegrad: SPARSEGRAD_ALLOC_CACHE_MB is not a whole number of MiB; using the default (4096)\n",
            );
            DEFAULT_BUDGET
        });
        self.budget.store(b, Ordering::Relaxed);
        b
    }

    /// Takes a kept block of exactly `layout`, if any.
    fn take(&self, layout: Layout) -> Option<*mut u8> {
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let i = c.slots.iter().position(|s| s.size == layout.size() && s.align == layout.align())?;
        let s = std::mem::replace(&mut c.slots[i], Slot { ptr: 0, size: 0, align: 0 });
        c.kept -= s.size;
        Some(s.ptr as *mut u8)
    }

    /// Keeps `ptr` if the budget and a slot allow; false when the caller must free it.
    fn keep(&self, ptr: *mut u8, layout: Layout) -> bool {
        let budget = self.budget();
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.kept.saturating_add(layout.size()) > budget {
            return false;
        }
        let Some(i) = c.slots.iter().position(|s| s.size == 0) else { return false };
        c.slots[i] = Slot { ptr: ptr as usize, size: layout.size(), align: layout.align() };
        c.kept += layout.size();
        true
    }

    /// Bytes kept now.
    pub fn kept_bytes(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).kept
    }
}

// SAFETY: every block handed out comes from `System` with the same layout it is later given back
// with (kept blocks are only reused for exactly their own size and alignment), and a block is
// either in the cache or handed out, never both (the mutex guards the slots).
unsafe impl GlobalAlloc for CachingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BYTES {
            if let Some(p) = self.take(layout) {
                return p;
            }
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BYTES {
            if let Some(p) = self.take(layout) {
                std::ptr::write_bytes(p, 0, layout.size());
                return p;
            }
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= MIN_BYTES && self.keep(ptr, layout) {
            return;
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= MIN_BYTES {
            // SAFETY (of the layout): `new_size`, rounded up to the alignment, does not overflow
            // (the caller's contract for `realloc`).
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            if let Some(p) = self.take(new_layout) {
                std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                self.dealloc(ptr, layout);
                return p;
            }
        }
        // Nothing kept of the new size: the system's realloc (in place, or `mremap` for large
        // blocks, without a copy).
        System.realloc(ptr, layout, new_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Freed large blocks come back for the same layout (and only for it), zeroed when asked;
    /// the budget and small blocks are respected; realloc keeps the contents.
    #[test]
    fn keeps_and_reuses_large_blocks() {
        let a = CachingAlloc::with_budget(3 * MIN_BYTES);
        let big = Layout::from_size_align(MIN_BYTES, 64).unwrap();
        let other = Layout::from_size_align(MIN_BYTES + 8, 64).unwrap();
        let small = Layout::from_size_align(1000, 8).unwrap();
        unsafe {
            let p = a.alloc(big);
            p.write_bytes(7, big.size());
            a.dealloc(p, big);
            assert_eq!(a.kept_bytes(), MIN_BYTES);
            // Another size does not take it.
            let q = a.alloc(other);
            assert_ne!(q, p);
            assert_eq!(a.kept_bytes(), MIN_BYTES);
            // The same size does, zeroed on request.
            let r = a.alloc_zeroed(big);
            assert_eq!(r, p);
            assert!(std::slice::from_raw_parts(r, big.size()).iter().all(|&b| b == 0));
            assert_eq!(a.kept_bytes(), 0);
            // Over the budget: freed to the system.
            let s = a.alloc(big);
            a.dealloc(q, other);
            a.dealloc(r, big);
            a.dealloc(s, big);
            assert_eq!(a.kept_bytes(), MIN_BYTES + 8 + MIN_BYTES);
            // Small blocks are never kept.
            let t = a.alloc(small);
            a.dealloc(t, small);
            assert_eq!(a.kept_bytes(), MIN_BYTES + 8 + MIN_BYTES);
            // Realloc across the threshold keeps the contents (the block goes to the system:
            // the budget is full).
            let u = a.alloc(small);
            for i in 0..1000 {
                *u.add(i) = i as u8;
            }
            let v = a.realloc(u, small, MIN_BYTES);
            assert!((0..1000).all(|i| *v.add(i) == i as u8));
            a.dealloc(v, Layout::from_size_align(MIN_BYTES, 8).unwrap());
            assert_eq!(a.kept_bytes(), MIN_BYTES + 8 + MIN_BYTES);
            // Empty the cache (the blocks go back to the system only through `dealloc`).
            for l in [big, other] {
                let p = a.alloc(l);
                System.dealloc(p, l);
            }
            assert_eq!(a.kept_bytes(), 0);
        }
    }

    /// Realloc to a size that is kept takes the kept block and keeps the old one; to a size
    /// that is not, it is the system's realloc (contents kept either way).
    #[test]
    fn realloc_takes_a_kept_block_of_the_new_size() {
        let a = CachingAlloc::with_budget(16 * MIN_BYTES);
        let l1 = Layout::from_size_align(MIN_BYTES, 8).unwrap();
        let l2 = Layout::from_size_align(2 * MIN_BYTES, 8).unwrap();
        unsafe {
            let kept = a.alloc(l2);
            a.dealloc(kept, l2);
            let p = a.alloc(l1);
            for i in 0..l1.size() {
                *p.add(i) = (i % 251) as u8;
            }
            let q = a.realloc(p, l1, l2.size());
            assert_eq!(q, kept);
            assert!((0..l1.size()).all(|i| *q.add(i) == (i % 251) as u8));
            assert_eq!(a.kept_bytes(), MIN_BYTES); // the old block
            let r = a.realloc(q, l2, 3 * MIN_BYTES);
            assert!((0..l1.size()).all(|i| *r.add(i) == (i % 251) as u8));
            assert_eq!(a.kept_bytes(), MIN_BYTES);
            a.dealloc(r, Layout::from_size_align(3 * MIN_BYTES, 8).unwrap());
            assert_eq!(a.kept_bytes(), 4 * MIN_BYTES);
            for l in [l1, Layout::from_size_align(3 * MIN_BYTES, 8).unwrap()] {
                let p = a.alloc(l);
                System.dealloc(p, l);
            }
            assert_eq!(a.kept_bytes(), 0);
        }
    }

    /// The environment variable: unset → the default, MiB → bytes, anything else → `None`
    /// (the allocator then warns and uses the default).
    #[test]
    fn budget_from_the_environment() {
        assert_eq!(parse_budget(None), Some(DEFAULT_BUDGET));
        assert_eq!(parse_budget(Some("0")), Some(0));
        assert_eq!(parse_budget(Some(" 64 ")), Some(64 << 20));
        assert_eq!(parse_budget(Some("1.5")), None);
        assert_eq!(parse_budget(Some("-3")), None);
        assert_eq!(parse_budget(Some("")), None);
    }

    /// A budget of 0 keeps nothing.
    #[test]
    fn a_zero_budget_keeps_nothing() {
        let a = CachingAlloc::with_budget(0);
        let big = Layout::from_size_align(2 * MIN_BYTES, 8).unwrap();
        unsafe {
            let p = a.alloc(big);
            a.dealloc(p, big);
        }
        assert_eq!(a.kept_bytes(), 0);
    }
}
