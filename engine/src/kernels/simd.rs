//! The vector types of the SIMD kernels (the direct convolutions in `conv/direct.rs`, the packed
//! GEMM in `matmul/packed.rs`), chosen at run time.
//!
//! A kernel is written once over a [`Vector`] type, and instantiated inside a function compiled
//! with the matching target features (`#[target_feature]`), so that the vector methods — all
//! `#[inline(always)]` — become single instructions in registers. Two instruction sets are
//! supported: AVX-512F (16 `f32` or 8 `f64` lanes, 32 registers; needs the cfg
//! `sparsegrad_avx512` that `build.rs` sets for Rust ≥ 1.89) and AVX2 + FMA (8 `f32` or 4 `f64`
//! lanes, 16 registers). Both fuse every multiply-add (one rounding), so a kernel whose lanes
//! are independent sums gives the same bits on either.

use crate::Element;

/// The instruction set a SIMD kernel runs with: the one enum every kernel family dispatches on
/// (the direct convolutions, the packed GEMM, `vmath`'s element-wise and row kernels, and in
/// `sparse` the LARS and SC-loss kernels). Ordered: `Generic < Avx2 < Avx512`.
///
/// [`Isa::best`] detects the CPU's level once (`is_x86_feature_detected!`, cached in a
/// `OnceLock`). Kernels take the level as an argument (`vmath`'s `*_at`, the LARS kernels, conv's
/// `Path::Direct`, matmul's `Backend::Packed`, scl's `forward_at`), so a test forces any lower
/// level by passing it, with no environment variable or global switch; [`Isa::available`]
/// lists the levels a test can force on this machine. A value other than `Generic` is only
/// made for a level this CPU has (kernels rely on it for safety): get one from `best` or
/// `available`, never by naming it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// No target features: the portable build (vector kernels without one fall back to
    /// `matrixmultiply` or im2col + GEMM).
    Generic,
    /// AVX2 and FMA: 256-bit vectors, 16 vector registers.
    Avx2,
    /// AVX-512F, AVX2 and FMA: 512-bit vectors, 32 vector registers (only reported when the
    /// compiler has AVX-512, cfg `sparsegrad_avx512`).
    Avx512,
}

impl Isa {
    /// The best level of this CPU that the kernels were compiled for (detected once).
    #[inline]
    pub fn best() -> Isa {
        use std::sync::OnceLock;
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| *Isa::available().last().expect("Generic is always available"))
    }

    /// Every level this CPU runs, `Generic` first, ascending (tests force each).
    pub fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut out = vec![Isa::Generic];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            out.push(Isa::Avx2);
        }
        #[cfg(all(target_arch = "x86_64", sparsegrad_avx512))]
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            out.push(Isa::Avx512);
        }
        out
    }

    /// `self`, after checking that this CPU runs it (**panics** otherwise). Every dispatch site
    /// calls it before entering code compiled for the level, so that a level forced by name on
    /// a CPU without it is a panic, never an illegal instruction.
    #[inline]
    #[track_caller]
    pub fn checked(self) -> Isa {
        assert!(self <= Isa::best(), "{} is not available on this CPU (best: {})", self.name(), Isa::best().name());
        self
    }

    /// `"generic"`, `"avx2+fma"` or `"avx512f"`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Generic => "generic",
            Isa::Avx2 => "avx2+fma",
            Isa::Avx512 => "avx512f",
        }
    }

    /// The best level if it has vectors (the direct convolutions and the packed GEMM have no
    /// generic version: `None` sends them to im2col + GEMM and `matrixmultiply`).
    pub(crate) fn vectors() -> Option<Isa> {
        Some(Isa::best()).filter(|&isa| isa != Isa::Generic)
    }

    /// Every level of this CPU with vectors, best first.
    #[cfg(test)]
    pub(crate) fn with_vectors() -> Vec<Isa> {
        Isa::available().into_iter().rev().filter(|&isa| isa != Isa::Generic).collect()
    }

    /// Lanes of one vector of `T` (**panics** for `Generic`, which has no vectors).
    #[track_caller]
    pub(crate) fn lanes<T: Element>(self) -> usize {
        let bytes = match self {
            Isa::Avx512 => 64,
            Isa::Avx2 => 32,
            Isa::Generic => panic!("Isa::Generic has no vectors"),
        };
        bytes / std::mem::size_of::<T>()
    }
}

/// A SIMD vector of `LANES` values of `F`. Every method is one instruction (or a short fixed
/// sequence) and must only be called where the instruction set is enabled.
pub(crate) trait Vector<F>: Copy {
    const LANES: usize;
    /// Vector registers of the instruction set (a kernel's tile must fit in them).
    const REGISTERS: usize;
    /// # Safety
    /// The vector's instruction set must be available.
    unsafe fn zero() -> Self;
    /// # Safety
    /// As for [`Vector::zero`].
    unsafe fn splat(v: F) -> Self;
    /// Loads `LANES` values from `p` (no alignment needed).
    /// # Safety
    /// `p .. p + LANES` must be readable; the instruction set must be available.
    unsafe fn load(p: *const F) -> Self;
    /// Stores the lanes to `p .. p + LANES` (no alignment needed).
    /// # Safety
    /// `p .. p + LANES` must be writable; the instruction set must be available.
    unsafe fn store(self, p: *mut F);
    /// Stores lanes `lo..hi` (`lo ≤ hi ≤ LANES`) to `p + lo .. p + hi`; the other lanes'
    /// addresses are not touched (masked store), so `p` itself may lie outside the buffer.
    /// # Safety
    /// `p + lo .. p + hi` must be writable; the instruction set must be available.
    unsafe fn store_lanes(self, p: *mut F, lo: usize, hi: usize);
    /// `a·b + c` lane by lane with a single rounding.
    /// # Safety
    /// As for [`Vector::zero`].
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    /// `a + b` lane by lane.
    /// # Safety
    /// As for [`Vector::zero`].
    unsafe fn add(a: Self, b: Self) -> Self;
    /// `a·b` lane by lane.
    /// # Safety
    /// As for [`Vector::zero`].
    unsafe fn mul(a: Self, b: Self) -> Self;
}

/// Hints the CPU to bring the cache line holding `p` into L1 (no effect elsewhere than x86-64;
/// never faults).
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch does not access memory architecturally (SSE, part of x86-64).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The vector types of an element type, one per instruction set.
pub(crate) trait HasVectors: Element {
    #[cfg(all(target_arch = "x86_64", sparsegrad_avx512))]
    type Z: Vector<Self>;
    #[cfg(target_arch = "x86_64")]
    type Y: Vector<Self>;
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{HasVectors, Vector};
    use std::arch::x86_64::*;

    /// A vector type: `$name($reg)` holding `$lanes` values of `$f`, its instructions, and
    /// `$mstore(p, lo, hi, v)` storing lanes `lo..hi` only.
    macro_rules! vector {
        ($name:ident, $f:ty, $reg:ty, $lanes:expr, $regs:expr,
         $zero:ident, $splat:ident, $load:ident, $store:ident, $fma:ident, $add:ident, $mul:ident,
         $mstore:ident) => {
            #[derive(Clone, Copy)]
            pub(crate) struct $name($reg);
            impl Vector<$f> for $name {
                const LANES: usize = $lanes;
                const REGISTERS: usize = $regs;
                #[inline(always)]
                unsafe fn zero() -> Self {
                    $name($zero())
                }
                #[inline(always)]
                unsafe fn splat(v: $f) -> Self {
                    $name($splat(v))
                }
                #[inline(always)]
                unsafe fn load(p: *const $f) -> Self {
                    $name($load(p as _))
                }
                #[inline(always)]
                unsafe fn store(self, p: *mut $f) {
                    $store(p as _, self.0)
                }
                #[inline(always)]
                unsafe fn store_lanes(self, p: *mut $f, lo: usize, hi: usize) {
                    $mstore(p, lo, hi, self.0)
                }
                #[inline(always)]
                unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
                    $name($fma(a.0, b.0, c.0))
                }
                #[inline(always)]
                unsafe fn add(a: Self, b: Self) -> Self {
                    $name($add(a.0, b.0))
                }
                #[inline(always)]
                unsafe fn mul(a: Self, b: Self) -> Self {
                    $name($mul(a.0, b.0))
                }
            }
        };
    }

    // AVX2's masked store (`vmaskmovps` / `vmaskmovpd` to memory) is microcoded on AMD's Zen
    // cores: the three masked stores per tile row of the direct convolution took 9.5% of the
    // CSC layer's 3 → 64 forward on a Zen 3 core, where storing the lanes one by one from a
    // spilled vector was 7–10% faster overall (2026-12-07). Only short runs (under one vector)
    // take this path.
    #[inline(always)]
    unsafe fn mstore_y32(p: *mut f32, lo: usize, hi: usize, v: __m256) {
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), v);
        for (l, &e) in lanes.iter().enumerate().take(hi).skip(lo) {
            *p.add(l) = e;
        }
    }
    #[inline(always)]
    unsafe fn mstore_y64(p: *mut f64, lo: usize, hi: usize, v: __m256d) {
        let mut lanes = [0f64; 4];
        _mm256_storeu_pd(lanes.as_mut_ptr(), v);
        for (l, &e) in lanes.iter().enumerate().take(hi).skip(lo) {
            *p.add(l) = e;
        }
    }

    vector!(
        Y32,
        f32,
        __m256,
        8,
        16,
        _mm256_setzero_ps,
        _mm256_set1_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        _mm256_mul_ps,
        mstore_y32
    );
    vector!(
        Y64,
        f64,
        __m256d,
        4,
        16,
        _mm256_setzero_pd,
        _mm256_set1_pd,
        _mm256_loadu_pd,
        _mm256_storeu_pd,
        _mm256_fmadd_pd,
        _mm256_add_pd,
        _mm256_mul_pd,
        mstore_y64
    );

    /// The AVX-512 vectors: their intrinsics are stable from Rust 1.89, which `build.rs`
    /// checks before it sets `sparsegrad_avx512`.
    #[cfg(sparsegrad_avx512)]
    #[clippy::msrv = "1.89"]
    mod avx512 {
        use super::Vector;
        use std::arch::x86_64::*;

        #[inline(always)]
        unsafe fn mstore_z32(p: *mut f32, lo: usize, hi: usize, v: __m512) {
            let mask = ((1u32 << hi) - 1) & !((1u32 << lo) - 1);
            _mm512_mask_storeu_ps(p, mask as __mmask16, v)
        }
        #[inline(always)]
        unsafe fn mstore_z64(p: *mut f64, lo: usize, hi: usize, v: __m512d) {
            let mask = ((1u32 << hi) - 1) & !((1u32 << lo) - 1);
            _mm512_mask_storeu_pd(p, mask as __mmask8, v)
        }

        vector!(
            Z32,
            f32,
            __m512,
            16,
            32,
            _mm512_setzero_ps,
            _mm512_set1_ps,
            _mm512_loadu_ps,
            _mm512_storeu_ps,
            _mm512_fmadd_ps,
            _mm512_add_ps,
            _mm512_mul_ps,
            mstore_z32
        );
        vector!(
            Z64,
            f64,
            __m512d,
            8,
            32,
            _mm512_setzero_pd,
            _mm512_set1_pd,
            _mm512_loadu_pd,
            _mm512_storeu_pd,
            _mm512_fmadd_pd,
            _mm512_add_pd,
            _mm512_mul_pd,
            mstore_z64
        );
    }
    #[cfg(sparsegrad_avx512)]
    use avx512::{Z32, Z64};

    impl HasVectors for f32 {
        #[cfg(sparsegrad_avx512)]
        type Z = Z32;
        type Y = Y32;
    }
    impl HasVectors for f64 {
        #[cfg(sparsegrad_avx512)]
        type Z = Z64;
        type Y = Y64;
    }
}

#[cfg(not(target_arch = "x86_64"))]
impl HasVectors for f32 {}
#[cfg(not(target_arch = "x86_64"))]
impl HasVectors for f64 {}

/// The one dispatch frame of every SIMD kernel family (the engine's and `sparse`'s):
///
/// ```text
/// engine::dispatched! { /// docs
///     pub(crate) fn name<T>(a: A, b: B) -> R = imp }      // imp::<T>, generic over T: Element
/// engine::dispatched!(fn name_f32(a: A) -> R = imp::<f32>);  // any expression that can be called
/// ```
///
/// defines `fn name(level: Isa, a: A, b: B) -> R`, which runs the `#[inline(always)]` function
/// `imp` compiled for `level`: inside a function with `#[target_feature(enable =
/// "avx512f,avx2,fma")]` for [`Isa::Avx512`], `"avx2,fma"` for [`Isa::Avx2`], and as plain
/// code for [`Isa::Generic`]. `level` passes [`Isa::checked`] first, so a level this CPU lacks
/// is a panic, never an illegal instruction. The AVX-512 build exists only where the calling
/// crate has the cfg `sparsegrad_avx512` (its build script `include!`s `engine/avx512_cfg.rs`,
/// as `engine`'s and `sparse`'s do): compilers older than Rust 1.89 do not know the AVX-512
/// target features, and [`Isa::available`] never reports `Avx512` without the cfg.
///
/// The features only widen what the compiler may emit: Rust never contracts `a·b + c` into a
/// fused multiply-add on its own, so a kernel whose arithmetic is written out gives the same
/// bits on every level (each family's tests force every level of [`Isa::available`] and compare
/// bits).
#[macro_export]
macro_rules! dispatched {
    ($(#[$m:meta])* $vis:vis fn $name:ident<$T:ident>($($a:ident : $t:ty),* $(,)?) $(-> $r:ty)? = $imp:ident) => {
        $(#[$m])*
        #[inline]
        #[allow(clippy::too_many_arguments)]
        $vis fn $name<$T: $crate::Element>(level: $crate::kernels::simd::Isa, $($a: $t),*) $(-> $r)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[cfg(sparsegrad_avx512)]
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512<$T: $crate::Element>($($a: $t),*) $(-> $r)? {
                    $imp::<$T>($($a),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2<$T: $crate::Element>($($a: $t),*) $(-> $r)? {
                    $imp::<$T>($($a),*)
                }
                match level.checked() {
                    // SAFETY: `checked` panics for a level this CPU does not run.
                    #[cfg(sparsegrad_avx512)]
                    $crate::kernels::simd::Isa::Avx512 => return unsafe { avx512::<$T>($($a),*) },
                    // SAFETY: as above.
                    $crate::kernels::simd::Isa::Avx2 => return unsafe { avx2::<$T>($($a),*) },
                    _ => {}
                }
            }
            let _ = level;
            $imp::<$T>($($a),*)
        }
    };
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident : $t:ty),* $(,)?) $(-> $r:ty)? = $imp:expr) => {
        $(#[$m])*
        #[inline]
        #[allow(clippy::too_many_arguments)]
        $vis fn $name(level: $crate::kernels::simd::Isa, $($a: $t),*) $(-> $r)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[cfg(sparsegrad_avx512)]
                #[target_feature(enable = "avx512f,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($a: $t),*) $(-> $r)? {
                    $imp($($a),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($a: $t),*) $(-> $r)? {
                    $imp($($a),*)
                }
                match level.checked() {
                    // SAFETY: `checked` panics for a level this CPU does not run.
                    #[cfg(sparsegrad_avx512)]
                    $crate::kernels::simd::Isa::Avx512 => return unsafe { avx512($($a),*) },
                    // SAFETY: as above.
                    $crate::kernels::simd::Isa::Avx2 => return unsafe { avx2($($a),*) },
                    _ => {}
                }
            }
            let _ = level;
            $imp($($a),*)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_and_registers() {
        assert_eq!(Isa::Avx512.lanes::<f32>(), 16);
        assert_eq!(Isa::Avx2.lanes::<f64>(), 4);
        assert_eq!(Isa::vectors(), Isa::with_vectors().first().copied());
        assert_eq!(Some(Isa::best()), Isa::available().last().copied());
    }

    /// `store_lanes` writes lanes `lo..hi` and nothing else, for every `lo ≤ hi ≤ LANES`.
    #[inline(always)]
    unsafe fn check_store_lanes<F: HasVectors + std::fmt::Debug, S: Vector<F>>() {
        let n = S::LANES;
        let src: Vec<F> = (0..n).map(|l| F::of(l as f64 + 1.0)).collect();
        for lo in 0..=n {
            for hi in lo..=n {
                let mut buf = vec![F::of(-7.0); n + 2];
                S::load(src.as_ptr()).store_lanes(buf.as_mut_ptr().add(1), lo, hi);
                let want: Vec<F> =
                    (0..n + 2).map(|i| if i > lo && i <= hi { src[i - 1] } else { F::of(-7.0) }).collect();
                assert_eq!(buf, want, "{n} lanes, lanes {lo}..{hi}");
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn store_lanes_writes_its_lanes_only() {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2() {
            check_store_lanes::<f32, <f32 as HasVectors>::Y>();
            check_store_lanes::<f64, <f64 as HasVectors>::Y>();
        }
        #[cfg(sparsegrad_avx512)]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn avx512() {
            check_store_lanes::<f32, <f32 as HasVectors>::Z>();
            check_store_lanes::<f64, <f64 as HasVectors>::Z>();
        }
        let levels = Isa::with_vectors();
        assert!(!levels.is_empty() || !is_x86_feature_detected!("avx2"), "AVX2 present but not listed");
        for isa in levels {
            match isa {
                // SAFETY: `with_vectors` lists only levels this CPU runs.
                Isa::Avx2 => unsafe { avx2() },
                #[cfg(sparsegrad_avx512)]
                // SAFETY: as above.
                Isa::Avx512 => unsafe { avx512() },
                _ => {}
            }
        }
    }
}
