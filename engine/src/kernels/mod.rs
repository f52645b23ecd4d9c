//! Kernel families, one file each. Every kernel accepts inputs of any layout and returns a
//! fresh row-major tensor. Files keep a `naive` reference next to the fast version where the
//! two differ; tests and benches compare them.

pub mod conv;
pub mod elementwise;
pub mod index;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod simd;
pub mod softmax;
pub mod vmath;

/// A pointer that may be sent to other threads, for kernels whose tasks write disjoint regions
/// of one buffer (matmul's column blocks, the packed GEMM's tiles, the direct convolutions,
/// the LARS backward's tiles). Reading or writing through it is `unsafe` as for any raw
/// pointer; the caller keeps the regions of concurrent tasks disjoint.
#[derive(Clone, Copy, Debug)]
pub struct SendPtr<T>(pub *mut T);
// SAFETY: only a pointer; every user writes a region no other task touches.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer. A method (rather than `.0`) so closures capture the whole `Send` wrapper.
    pub fn get(self) -> *mut T {
        self.0
    }
}

#[cfg(test)]
mod dispatch_tests;
