//! Kernel families, one file each. Every kernel accepts inputs of any layout and returns a
//! fresh row-major tensor. Files keep a `naive` reference next to the fast version where the
//! two differ; tests and benches compare them.

pub mod conv;
pub mod elementwise;
pub mod index;
pub mod matmul;
pub mod pool;
pub mod reduce;
pub(crate) mod simd;
pub mod softmax;
pub mod vmath;
