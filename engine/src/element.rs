//! The element types a [`Tensor`](crate::Tensor) can hold: `f32` (training) and `f64`
//! (gradient checks). Everything numeric in the engine is generic over [`Element`].

use std::fmt::{Debug, Display, LowerExp};
use std::iter::Sum;

use num_traits::{Float, FromPrimitive, NumAssign};

/// A floating-point element type: `f32` or `f64`.
///
/// Besides the `num-traits` arithmetic it carries the dtype name used by `Display` and
/// error messages, and the GEMM entry point of `matrixmultiply` for that type.
pub trait Element:
    Float + FromPrimitive + NumAssign + bytemuck::Pod + Default + Send + Sync + Debug + Display + LowerExp + Sum + 'static
{
    /// `"f32"` or `"f64"`.
    const DTYPE: &'static str;

    /// Converts from `f64` (rounding to nearest for `f32`).
    fn of(x: f64) -> Self;
    /// Converts to `f64` (exact).
    fn as_f64(self) -> f64;

    /// `C ← α·A·B + β·C` for `A: m×k`, `B: k×n`, `C: m×n`, every matrix given by a pointer to
    /// its element `[0, 0]` and a row stride and a column stride in elements (any sign, zero
    /// allowed for `A` and `B`). When `β = 0`, `C` is not read (NaN in `C` does not propagate).
    ///
    /// # Safety
    /// Every element addressed through the pointers and strides must be valid; `C` must not
    /// alias `A` or `B` and must not address the same element twice.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

impl Element for f32 {
    const DTYPE: &'static str = "f32";
    #[inline(always)]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self as f64
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}

impl Element for f64 {
    const DTYPE: &'static str = "f64";
    #[inline(always)]
    fn of(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self
    }
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
    }
}
