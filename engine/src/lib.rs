//! # sparsegrad-engine
//!
//! Strided CPU tensors ([`Tensor`]) generic over `f32` and `f64`, and the kernels the rest of
//! sparsegrad is built from: element-wise maps with NumPy broadcasting, reductions over any set
//! of axes, batched GEMM through `matrixmultiply` (any strides, no copies of transposed views),
//! convolutions and their exact adjoints, pooling, indexing and softmax/cross-entropy. There is
//! no autodiff here; `sparsegrad-autograd` records these kernels on a tape.
//!
//! ## Layout
//! A tensor is an `Arc`-shared buffer plus a [`Layout`] (shape, strides in elements, offset).
//! View operations — `permute`, `transpose`, `narrow`, `slice` (with step), `broadcast_to`,
//! `squeeze`, `unsqueeze`, `diagonal`, and `reshape` when the strides allow — only compute a
//! new layout. Every kernel accepts any layout and writes a fresh row-major output.
//!
//! ## Error policy
//! *Misuse panics; data errors are `Result`s.* Incompatible shapes, an axis out of range or an
//! invalid argument (a negative kernel size, a zero stride) is a bug in the calling program:
//! the op panics at the caller's location (`#[track_caller]`) with a message that starts with
//! the op's name and gives the shapes, e.g.
//! `matmul: inner dimensions differ: [3, 4] × [5, 2]`. Conditions that depend on data —
//! parsing files, shapes read from a file or a command line, a failed factorisation — return
//! [`Error`] (`try_` constructors exist where shapes come from outside the program).
//!
//! ## Determinism
//! Every kernel gives bit-identical results for the same inputs whatever the number of rayon
//! threads: parallel work is split into chunks whose boundaries depend only on the problem
//! size, and partial results are combined in a fixed order.
//!
//! ```
//! use sparsegrad_engine::Tensor;
//! let a = Tensor::<f64>::arange(6).reshape(&[2, 3]);
//! let b = a.t().matmul(&a);            // [3, 2] × [2, 3]; the transpose is not copied
//! assert_eq!(b.shape(), &[3, 3]);
//! assert_eq!(b.get(&[2, 2]), 2.0 * 2.0 + 5.0 * 5.0);
//! ```

pub mod element;
pub mod error;
pub mod kernels;
pub mod layout;
pub mod linalg;
pub mod par;
pub mod recycle;
pub mod rng;
pub mod tensor;

pub use element::Element;
pub use error::{Error, Result};
pub use kernels::conv::{Conv2dParams, ConvTranspose2dParams};
pub use kernels::norm::BatchStats;
pub use kernels::pool::Pool2dParams;
pub use layout::Layout;
pub use rng::Rng;
pub use tensor::Tensor;

/// Minimum number of elements before an element-wise or reduction kernel splits work across
/// rayon threads. Chunk boundaries depend only on sizes, never on the thread count.
pub const PAR_CHUNK: usize = 1 << 15;

/// A vector of `n` elements equal to `v`, written element by element.
///
/// `vec![T::zero(); n]` asks the allocator for zeroed memory, and for a large buffer that is
/// fresh pages mapped to the kernel's shared zero page: the first *read* of each page (an
/// accumulation `dst[i] += g`) maps the zero page and the following write copies it, with a
/// TLB shootdown across every thread of the process. In a LeNet training step on 2 threads
/// that was a third of the time (`perf`: `ptep_clear_flush`, `native_write_msr`). Writing the
/// buffer first costs one pass over it and faults each page in once, already writable. Use
/// this for every buffer a kernel accumulates into; buffers only ever written may use `vec!`.
///
/// From [`PAR_CHUNK`] elements on, the chunks of [`PAR_CHUNK`] are written on rayon (the page
/// faults then run on every thread, not one); the result is the same either way.
pub fn filled<T: Copy + Send + Sync>(n: usize, v: T) -> Vec<T> {
    // A kept buffer of this size when there is one (`recycle`: no fresh pages to fault in).
    let mut out: Vec<T> = crate::recycle::take(n);
    huge_pages_hint(&mut out);
    // An opaque use between allocation and fill, so that the optimiser cannot fuse the two
    // back into a zeroed allocation (LLVM folds malloc + memset(0) into calloc).
    std::hint::black_box(out.as_mut_ptr());
    if n < PAR_CHUNK {
        out.resize(n, v);
        return out;
    }
    crate::par::chunks_mut(&mut out.spare_capacity_mut()[..n], PAR_CHUNK, &|_, c| {
        c.iter_mut().for_each(|e| {
            e.write(v);
        })
    });
    // SAFETY: the capacity is at least `n` and elements `0..n` were all written above.
    unsafe { out.set_len(n) };
    out
}

/// Buffers of at least this many bytes are asked to be backed by transparent huge pages.
pub(crate) const HUGE_PAGE_MIN_BYTES: usize = 32 << 20;

/// Asks the kernel to back the capacity of `v` with transparent huge pages (Linux
/// `madvise(MADV_HUGEPAGE)` on the 2 MiB-aligned part of it) when it holds at least
/// [`HUGE_PAGE_MIN_BYTES`]; elsewhere, or below that size, does nothing. Call it on a fresh
/// buffer before its first write: pages already touched stay small.
///
/// A fresh 64 MiB output written once takes 16 384 page faults with 4 KiB pages (each maps
/// and zeroes a page); on the project's VM that was about 90% of `exp` on 16M f32 elements
/// (the kernel itself ~4 ms of ~40–100 ms). With huge pages it takes 32. Only buffers this
/// large are advised: glibc gives every allocation of 32 MiB or more its own mapping, so the
/// advice never reaches memory shared with other allocations. Values are not affected.
pub(crate) fn huge_pages_hint<T>(v: &mut Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        extern "C" {
            fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
        }
        const MADV_HUGEPAGE: i32 = 14;
        const HUGE: usize = 2 << 20;
        let bytes = v.capacity() * std::mem::size_of::<T>();
        if bytes < HUGE_PAGE_MIN_BYTES {
            return;
        }
        let start = v.as_mut_ptr() as usize;
        let (lo, hi) = ((start + HUGE - 1) & !(HUGE - 1), (start + bytes) & !(HUGE - 1));
        if hi > lo {
            // SAFETY: [lo, hi) lies inside the allocation of `v`; MADV_HUGEPAGE changes how
            // the pages are backed, not their contents. A failure (THP disabled) is harmless.
            unsafe { madvise(lo as *mut std::ffi::c_void, hi - lo, MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

#[cfg(test)]
mod tests {
    #[test]
    fn filled_writes_every_element_serially_and_in_parallel() {
        for n in [0, 1, 7, super::PAR_CHUNK - 1, super::PAR_CHUNK, 3 * super::PAR_CHUNK + 5] {
            let v = super::filled(n, -2.5f64);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&e| e == -2.5), "n = {n}");
        }
    }
}
