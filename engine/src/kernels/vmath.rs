//! Vectorised transcendental functions on slices (`exp`, `expm1`, `log`, `log1p`, `sigmoid`,
//! `tanh`, `softplus`, `elu`) and the row kernels built on them (max/argmax, softmax,
//! log-softmax and logsumexp of contiguous rows).
//!
//! # Algorithms
//! Every function is written once, per element, as branch-free scalar code (selects instead
//! of branches, exponent-bit arithmetic instead of `ldexp`/`frexp`), and the slice kernels are
//! plain loops over it that LLVM vectorises. Constants and polynomial fits:
//! * `exp(x) = 2^n · e^r`, `n = round(x·log₂e)`, `r = x − n·ln2` in two FMA steps (Cody–Waite
//!   split of ln2), `e^r = 1 + r + r²·P(r)` on `|r| ≤ ln2/2`. `P` is a minimax fit (Remez
//!   exchange in 60-digit arithmetic, weight `r²/e^r`, i.e. relative error of `e^r`):
//!   degree 4 for f32 (fit error 2^−28 with the rounded coefficients), degree 10 for f64
//!   (2^−60), degree 5 for the f64 evaluation behind the f32 functions below (2^−34). The
//!   scale `2^n` is applied as two factors `2^⌊n/2⌋ · 2^(n−⌊n/2⌋)`, so results that overflow
//!   or go subnormal are rounded exactly once, like libm's: `exp` is `+∞` from the same
//!   input on as libm (f32: above `88.72283`, f64: above `709.782712893384`) and 0 from the
//!   same input on (tested).
//! * `expm1(x) = (2^n − 1) + 2^n·r_hi + 2^n·(r_lo + r²·P(r))` with the same `n`, `P` and an
//!   exact `r_hi`; the first two terms are added exactly (Fast2Sum), so the cancellation near
//!   `|x| = ln2/2` costs nothing; for `n > 60`, `e^x` scaled as in `exp`.
//! * `log(x) = k·ln2 + log(z)`, `x = 2^k·z`, `z ∈ [√½, √2)`, `f = z − 1`, `s = f/(2+f)`,
//!   `log(z) = f − (f²/2 − s·(f²/2 + R(s²)))`: fdlibm's `e_log.c` scheme and its constants
//!   `Lg1..Lg7` for f64; for the f32 path a degree-3 fit of `R` (2^−37.6). Subnormal inputs
//!   are scaled by 2^54 first. `log1p(u)` evaluates `log(w)` at `w = 1 + u` and adds the
//!   exact rounding error of `w` divided by `w` (fdlibm's `s_log1p.c` correction).
//! * `sigmoid(x) = 1/(1 + e^−x)` for `x ≥ 0` and `e^x/(1 + e^x)` otherwise (no overflow);
//!   `tanh(x) = −t/(t+2)`, `t = expm1(−2|x|)` for `|x| < 1` and `1 − 2/(expm1(2|x|) + 2)`
//!   otherwise, with the sign of `x` (fdlibm's `s_tanh.c` split; in f64 the quotient takes
//!   `expm1`'s unrounded pair and is corrected before its last rounding);
//!   `softplus(x) = max(x, 0) + log1p(e^−|x|)`; `elu(x) = x` for `x > 0`, `α·expm1(x)`
//!   otherwise.
//! * **f32**: `exp`, `log` and `sigmoid` are computed in f32 arithmetic (16 lanes per
//!   AVX-512 register); `log` takes the reduction above without the division:
//!   `log(z) = f + f²·(−½ + f·P(f))`, `P` a degree-7 fit (2^−26.9 relative error of
//!   `log(z)`), with `k·ln2_hi + f` added exactly first (≤ 1 ulp from `f32::ln` on every
//!   input, 0.12% of positive inputs 1 ulp away). The `log`, `exp` and `sigmoid` slice
//!   kernels skip the special cases' selects for blocks of 64 plain inputs (positive normal
//!   for `log`, `|x| < 80` for the others; `by_blocks!`), with the same bits;
//!   `sigmoid` corrects its quotient for the rounding of `1 + e` and of the division before
//!   the last rounding ([`sigmoid_f32`]). Every other f32 function is evaluated in f64 with
//!   the cheaper polynomials and rounded to f32 once.
//!
//! # Error bounds (tested)
//! Distances are in ulps of the result type: the number of representable values between the
//! two results (±0 are 0 apart, `f32::MAX` is 1 from `+∞`). The reference is libm as Rust
//! calls it (glibc here), or for the composites the libm formula the engine used before; for
//! the f32 composites and f32 `tanh`, that formula in f64 rounded to f32.
//!
//! | function | f32 | f64 |
//! |---|---|---|
//! | `exp` | ≤ 1 from `f32::exp` | ≤ 1 from `f64::exp` |
//! | `expm1` | ≤ 1 from `f32::exp_m1` | ≤ 1 from `f64::exp_m1` |
//! | `log` | ≤ 1 from `f32::ln` | ≤ 1 from `f64::ln` |
//! | `log1p` | ≤ 1 from `f32::ln_1p` | ≤ 1 from `f64::ln_1p` |
//! | `sigmoid` | ≤ 1 from `1/(1+e^−x)` in f64 | ≤ 2 from the libm formula |
//! | `tanh` | ≤ 1 from `f64::tanh`; ≤ 2 from `f32::tanh` | ≤ 2 from `f64::tanh` |
//! | `softplus` | ≤ 1 from `log1p(e^x)` in f64 | ≤ 2 from the libm formula |
//! | `elu` | ≤ 1 from `α·expm1(x)` in f64 | ≤ 1 from `α·x.exp_m1()` |
//!
//! The same table is [`ERROR_BOUNDS`]; the tests below check every entry over a stride
//! through all f32 bit patterns (2^20 samples), dense sweeps around the overflow, underflow
//! and saturation thresholds, random and structured f64 samples (bit patterns, values in
//! range, neighbours of `k·ln2/2`) and the special values (±0, ±∞, NaN, subnormal inputs and
//! outputs, log of 0 and of negative numbers, saturation of `sigmoid` and `tanh`). NaN in
//! gives NaN out (not necessarily with the same payload). Every f32 input (all 2^32 bit
//! patterns, `exhaustive::every_f32_input`, minutes, run by hand) is within the f32 column.
//! The f64 bounds above 1 come from the references' own errors: against a correctly
//! rounded reference (mpmath, 20 000 points in [−3, 3] and 20 000 of magnitude 2^−60..1)
//! `tanh` is ≤ 1 ulp where glibc's `tanh` is 2 ulp off in places, and `sigmoid` ≤ 2,
//! `softplus` ≤ 1, the same as the libm formulas they replace.
//!
//! # Row kernels
//! The maximum (minimum) of a row is reduced in 32 lanes; a NaN anywhere makes the result
//! the row's first NaN, and a zero maximum is looked up again so that `−0` and `+0` come out
//! as the first of them: the element and position `Tensor::max_with_indices` has always
//! picked. Softmax, log-softmax and logsumexp rows use that maximum as the shift (0 when not
//! finite), the `exp` kernel, and the order of additions of `Tensor::sum` over a contiguous
//! row, so they give the bits of their composed definitions.
//!
//! # Dispatch
//! Each kernel is compiled three times: for AVX-512F (+FMA), for AVX2 + FMA, and without
//! target features. Each call runs the best one this CPU has ([`Isa::best`], the
//! engine's one dispatch enum: `is_x86_feature_detected!`, detected once); other architectures use the plain build.
//! All three evaluate the same operations in the same order, with fused multiply-adds
//! written as `mul_add` (on an x86-64 CPU without FMA that is a libm call: correct, slow), so
//! **every build gives the same bits** (tested), and a result depends only on the input
//! element, never on its position, the slice length or the number of threads. The results
//! are not libm's bit for bit; they differ within the bounds above.

use std::any::TypeId;
use std::mem::MaybeUninit;

use crate::dispatched;
use crate::kernels::simd::Isa;
use crate::{Element, PAR_CHUNK};

// ============================================================================ public API

/// The element-wise functions of this module.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// `e^x`.
    Exp,
    /// `e^x − 1`.
    Expm1,
    /// Natural logarithm: `−∞` at ±0, NaN below 0.
    Log,
    /// `log(1 + x)`: `−∞` at −1, NaN below −1.
    Log1p,
    /// `1 / (1 + e^−x)`.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// `log(1 + e^x)`.
    Softplus,
    /// `x` for `x > 0`, `α·(e^x − 1)` otherwise; `α` is rounded to the element type first.
    Elu(f64),
}

/// Largest distance in ulps from the reference (see the module docs) that the tests allow,
/// per function: `(function, f32 bound, f64 bound)`. `elu` is tested with `α = 1` and
/// `α = 0.5`.
pub const ERROR_BOUNDS: &[(&str, u32, u32)] = &[
    ("exp", 1, 1),
    ("expm1", 1, 1),
    ("log", 1, 1),
    ("log1p", 1, 1),
    ("sigmoid", 1, 2),
    ("tanh", 1, 2),
    ("softplus", 1, 2),
    ("elu", 1, 1),
];

/// `dst[i] = f(src[i])`. **Panics** if the lengths differ.
#[track_caller]
pub fn map_slice<T: Element>(f: Unary, src: &[T], dst: &mut [T]) {
    // SAFETY: `MaybeUninit<T>` has the layout of `T`; only initialised values are written.
    let dst = unsafe { &mut *(dst as *mut [T] as *mut [MaybeUninit<T>]) };
    map_uninit(f, src, dst)
}

/// `dst[i] = e^src[i]` (see [`map_slice`]).
#[track_caller]
pub fn exp_slice<T: Element>(src: &[T], dst: &mut [T]) {
    map_slice(Unary::Exp, src, dst)
}

/// `dst[i] = log(src[i])` (see [`map_slice`]).
#[track_caller]
pub fn log_slice<T: Element>(src: &[T], dst: &mut [T]) {
    map_slice(Unary::Log, src, dst)
}

/// `dst[i] = sigmoid(src[i])` (see [`map_slice`]).
#[track_caller]
pub fn sigmoid_slice<T: Element>(src: &[T], dst: &mut [T]) {
    map_slice(Unary::Sigmoid, src, dst)
}

/// `dst[i] = tanh(src[i])` (see [`map_slice`]).
#[track_caller]
pub fn tanh_slice<T: Element>(src: &[T], dst: &mut [T]) {
    map_slice(Unary::Tanh, src, dst)
}

/// `f(x)` for one value, with the same bits as the slice kernels.
pub fn eval<T: Element>(f: Unary, x: T) -> T {
    let mut out = [MaybeUninit::uninit()];
    map_uninit(f, &[x], &mut out);
    // SAFETY: `map_uninit` wrote the element.
    unsafe { out[0].assume_init() }
}

/// [`map_slice`] into a buffer that is not initialised yet (every element gets written).
#[track_caller]
pub(crate) fn map_uninit<T: Element>(f: Unary, src: &[T], dst: &mut [MaybeUninit<T>]) {
    map_uninit_at(Isa::best(), f, src, dst)
}

#[track_caller]
pub(crate) fn map_uninit_at<T: Element>(level: Isa, f: Unary, src: &[T], dst: &mut [MaybeUninit<T>]) {
    assert_eq!(src.len(), dst.len(), "vmath: source of {} elements, destination of {}", src.len(), dst.len());
    if let (Some(s), Some(d)) = (same::<T, f32>(src), same_mut::<MaybeUninit<T>, MaybeUninit<f32>>(dst)) {
        map_f32(level, f, s, d)
    } else if let (Some(s), Some(d)) = (same::<T, f64>(src), same_mut::<MaybeUninit<T>, MaybeUninit<f64>>(dst)) {
        map_f64(level, f, s, d)
    } else {
        unreachable!("Element is implemented for f32 and f64 only")
    }
}

/// `s` as a slice of `U` when `T` is `U`.
#[inline(always)]
pub(crate) fn same<T: 'static, U: 'static>(s: &[T]) -> Option<&[U]> {
    // SAFETY: `T` and `U` are the same type.
    (TypeId::of::<T>() == TypeId::of::<U>()).then(|| unsafe { &*(s as *const [T] as *const [U]) })
}

#[inline(always)]
fn same_mut<T: 'static, U: 'static>(s: &mut [T]) -> Option<&mut [U]> {
    // SAFETY: `T` and `U` are the same type.
    (TypeId::of::<T>() == TypeId::of::<U>()).then(|| unsafe { &mut *(s as *mut [T] as *mut [U]) })
}

// ============================================================================ slice kernels

/// `dst[i] = f(src[i])` with `f` called directly (a function item passed as `impl Fn` goes
/// through a shim that LLVM may leave out of line, compiled without the target features).
macro_rules! each {
    ($src:expr, $dst:expr, |$x:ident| $f:expr) => {
        for (o, &$x) in $dst.iter_mut().zip($src) {
            o.write($f);
        }
    };
}

/// `dst[i] = full(src[i])`, except that blocks of 64 inputs whose largest `key(x)` is below
/// `limit` take `fast`, which gives `full`'s bits on such inputs (one unsigned maximum per
/// block decides; the special cases' selects cost more than the function on these CPUs).
macro_rules! by_blocks {
    ($src:expr, $dst:expr, |$k:ident| $key:expr, $limit:expr, |$f:ident| $fast:expr, |$g:ident| $full:expr) => {{
        const B: usize = 64;
        let mut d = $dst.chunks_exact_mut(B);
        let mut s = $src.chunks_exact(B);
        for (x, o) in (&mut s).zip(&mut d) {
            let worst = x.iter().fold(0u32, |m, &$k| m.max($key));
            if worst < $limit {
                each!(x, o, |$f| $fast);
            } else {
                each!(x, o, |$g| $full);
            }
        }
        each!(s.remainder(), d.into_remainder(), |$g| $full);
    }};
}

/// The element functions for one element type.
trait Vm: Element {
    fn v_exp(x: Self) -> Self;
    /// `v_exp` of every element.
    #[inline(always)]
    fn v_exp_slice(src: &[Self], dst: &mut [MaybeUninit<Self>]) {
        each!(src, dst, |x| Self::v_exp(x));
    }
    fn v_expm1(x: Self) -> Self;
    fn v_log(x: Self) -> Self;
    /// `v_log` of every element.
    #[inline(always)]
    fn v_log_slice(src: &[Self], dst: &mut [MaybeUninit<Self>]) {
        each!(src, dst, |x| Self::v_log(x));
    }
    fn v_log1p(x: Self) -> Self;
    fn v_sigmoid(x: Self) -> Self;
    /// `v_sigmoid` of every element.
    #[inline(always)]
    fn v_sigmoid_slice(src: &[Self], dst: &mut [MaybeUninit<Self>]) {
        each!(src, dst, |x| Self::v_sigmoid(x));
    }
    fn v_tanh(x: Self) -> Self;
    fn v_softplus(x: Self) -> Self;
    fn v_elu(x: Self, a: Self) -> Self;
}

impl Vm for f32 {
    #[inline(always)]
    fn v_exp(x: f32) -> f32 {
        exp_f32(x)
    }
    #[inline(always)]
    fn v_exp_slice(src: &[f32], dst: &mut [MaybeUninit<f32>]) {
        exp_slice_f32(src, dst);
    }
    #[inline(always)]
    fn v_expm1(x: f32) -> f32 {
        expm1_imp::<false>(x as f64) as f32
    }
    #[inline(always)]
    fn v_log(x: f32) -> f32 {
        log_f32(x)
    }
    #[inline(always)]
    fn v_log_slice(src: &[f32], dst: &mut [MaybeUninit<f32>]) {
        log_slice_f32(src, dst);
    }
    #[inline(always)]
    fn v_log1p(x: f32) -> f32 {
        log1p_imp::<false>(x as f64) as f32
    }
    #[inline(always)]
    fn v_sigmoid(x: f32) -> f32 {
        sigmoid_f32(x)
    }
    #[inline(always)]
    fn v_sigmoid_slice(src: &[f32], dst: &mut [MaybeUninit<f32>]) {
        sigmoid_slice_f32(src, dst);
    }
    #[inline(always)]
    fn v_tanh(x: f32) -> f32 {
        tanh_imp::<false>(x as f64) as f32
    }
    #[inline(always)]
    fn v_softplus(x: f32) -> f32 {
        softplus_imp::<false>(x as f64) as f32
    }
    #[inline(always)]
    fn v_elu(x: f32, a: f32) -> f32 {
        if x > 0.0 {
            x
        } else {
            (a as f64 * expm1_imp::<false>(x as f64)) as f32
        }
    }
}

impl Vm for f64 {
    #[inline(always)]
    fn v_exp(x: f64) -> f64 {
        exp_imp::<true>(x)
    }
    #[inline(always)]
    fn v_expm1(x: f64) -> f64 {
        expm1_imp::<true>(x)
    }
    #[inline(always)]
    fn v_log(x: f64) -> f64 {
        log_imp::<true>(x)
    }
    #[inline(always)]
    fn v_log1p(x: f64) -> f64 {
        log1p_imp::<true>(x)
    }
    #[inline(always)]
    fn v_sigmoid(x: f64) -> f64 {
        sigmoid_imp::<true>(x)
    }
    #[inline(always)]
    fn v_tanh(x: f64) -> f64 {
        tanh_imp::<true>(x)
    }
    #[inline(always)]
    fn v_softplus(x: f64) -> f64 {
        softplus_imp::<true>(x)
    }
    #[inline(always)]
    fn v_elu(x: f64, a: f64) -> f64 {
        if x > 0.0 {
            x
        } else {
            a * expm1_imp::<true>(x)
        }
    }
}

#[inline(always)]
fn map_imp<T: Vm>(f: Unary, src: &[T], dst: &mut [MaybeUninit<T>]) {
    match f {
        Unary::Exp => T::v_exp_slice(src, dst),
        Unary::Expm1 => each!(src, dst, |x| T::v_expm1(x)),
        Unary::Log => T::v_log_slice(src, dst),
        Unary::Log1p => each!(src, dst, |x| T::v_log1p(x)),
        Unary::Sigmoid => T::v_sigmoid_slice(src, dst),
        Unary::Tanh => each!(src, dst, |x| T::v_tanh(x)),
        Unary::Softplus => each!(src, dst, |x| T::v_softplus(x)),
        Unary::Elu(a) => {
            let a = T::of(a);
            each!(src, dst, |x| T::v_elu(x, a))
        }
    }
}

dispatched!(fn map_f32(f: Unary, src: &[f32], dst: &mut [MaybeUninit<f32>]) = map_imp::<f32>);
dispatched!(fn map_f64(f: Unary, src: &[f64], dst: &mut [MaybeUninit<f64>]) = map_imp::<f64>);

// ============================================================================ scalar definitions

/// NaN-preserving clamp: `lo` below `lo`, `hi` above `hi`, `x` otherwise (NaN included).
#[inline(always)]
fn clamp_keep_nan<T: PartialOrd + Copy>(x: T, lo: T, hi: T) -> T {
    let x = if x > hi { hi } else { x };
    if x < lo {
        lo
    } else {
        x
    }
}

// ---------------------------------------------------------------- exp, f32 arithmetic

/// `1.5·2^23`: adding it rounds a float of magnitude below 2^22 to an integer, which then sits
/// in the low mantissa bits.
const ROUND_F32: f32 = 12_582_912.0;
/// ln2 split for Cody–Waite reduction (fdlibm `e_expf.c`): `LN2_HI_F32` has 16 significant
/// bits, so `n·LN2_HI_F32` and `x − n·LN2_HI_F32` are exact for `|n| ≤ 151`.
const LN2_HI_F32: f32 = f32::from_bits(0x3f31_7200); // 6.9314575195e-01
const LN2_LO_F32: f32 = f32::from_bits(0x35bf_be8e); // 1.4286067653e-06
/// `(e^r − 1 − r)/r² ≈ P(r)` on `|r| ≤ ln2/2`, degree 4 (Remez, relative error of e^r 2^−28).
const EXP_P_F32: [f32; 5] = [4.999_999_4e-1, 1.666_652_1e-1, 4.166_839e-2, 8.368_717e-3, 1.381_459_9e-3];

/// `e^x` in f32 arithmetic: ≤ 1 ulp from `f32::exp` (see the module docs).
///
/// This is the scalar definition of the f32 `exp` kernel and gives the same bits. Outside a
/// function compiled with FMA its `mul_add`s are libm calls: use [`eval`] or the slice
/// kernels for speed.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // Below −104 the result is 0, above 88.8 it is +∞ (both reached through the scaling).
    let (u, t) = exp_parts_f32(clamp_keep_nan(x, -104.0, 88.8));
    scale_f32(u, t)
}

/// `e^x = u·2^n` for `x ∈ [−104, 88.8]` (or NaN): `u` and `t = n + ROUND_F32`.
#[inline(always)]
fn exp_parts_f32(xc: f32) -> (f32, f32) {
    let t = xc.mul_add(std::f32::consts::LOG2_E, ROUND_F32);
    let n = t - ROUND_F32; // round(x·log₂e), exact
    let r = n.mul_add(-LN2_HI_F32, xc);
    let r = n.mul_add(-LN2_LO_F32, r);
    let p = EXP_P_F32[4]
        .mul_add(r, EXP_P_F32[3])
        .mul_add(r, EXP_P_F32[2])
        .mul_add(r, EXP_P_F32[1])
        .mul_add(r, EXP_P_F32[0]);
    ((r * r).mul_add(p, r) + 1.0, t)
}

/// `exp_f32(x)` for `x ∈ [−80, 80]`: no clamp, and `2^n` (`|n| ≤ 116`, so `u·2^n` is normal
/// and exact) as one factor; the same bits.
#[inline(always)]
fn exp_plain_f32(x: f32) -> f32 {
    let (u, t) = exp_parts_f32(x);
    let n = t.to_bits().wrapping_sub(ROUND_F32.to_bits()); // n, two's complement
    u * f32::from_bits(n.wrapping_add(127) << 23)
}

/// `u·2^n` with `n` held in the low bits of `t = n + ROUND_F32`, `n ∈ [−151, 129]`, as two
/// exact power-of-two factors so that overflow and underflow round once.
#[inline(always)]
fn scale_f32(u: f32, t: f32) -> f32 {
    let nb = t.to_bits().wrapping_sub(ROUND_F32.to_bits()).wrapping_add(256); // n + 256 ≥ 0
    let n1b = nb >> 1; // ⌊n/2⌋ + 128
    let s1 = f32::from_bits(n1b.wrapping_sub(1) << 23); // 2^⌊n/2⌋
    let s2 = f32::from_bits(nb.wrapping_sub(n1b).wrapping_sub(1) << 23); // 2^(n − ⌊n/2⌋)
    u * s1 * s2
}

// ---------------------------------------------------------------- exp and expm1, f64

/// `1.5·2^52` (see [`ROUND_F32`]).
const ROUND_F64: f64 = 6_755_399_441_055_744.0;
/// ln2 split (fdlibm `e_exp.c`): `LN2_HI` has 32 significant bits.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000); // 6.93147180369123816490e-01
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // 1.90821492927058770002e-10
/// `P` of degree 10 (Remez, relative error of e^r 2^−60 with these coefficients).
const EXP_P_F64: [f64; 11] = [
    0.5,
    0.166_666_666_666_666_82,
    0.041_666_666_666_666_095,
    0.008_333_333_333_317_034,
    0.001_388_888_888_911_563,
    0.000_198_412_698_963_836_95,
    2.480_158_692_662_849_6e-5,
    2.755_723_486_202_654_8e-6,
    2.755_758_185_262_275_4e-7,
    2.511_203_680_639_780_7e-8,
    2.082_662_563_113_413e-9,
];
/// `P` of degree 5 for the f32 functions evaluated in f64 (relative error 2^−34).
const EXP_P_F64_FOR_F32: [f64; 6] = [
    0.500_000_006_768_203_4,
    0.166_666_658_689_330_45,
    0.041_666_294_947_491_24,
    0.008_333_497_075_524_393,
    0.001_394_465_961_441_898_4,
    0.000_197_903_411_160_036_99,
];

/// `(e^r − 1 − r)/r²`.
#[inline(always)]
fn exp_poly<const FULL: bool>(r: f64) -> f64 {
    if FULL {
        let c = &EXP_P_F64;
        let mut p = c[10];
        for &ci in c[..10].iter().rev() {
            p = p.mul_add(r, ci);
        }
        p
    } else {
        let c = &EXP_P_F64_FOR_F32;
        c[5].mul_add(r, c[4]).mul_add(r, c[3]).mul_add(r, c[2]).mul_add(r, c[1]).mul_add(r, c[0])
    }
}

/// `(t, n, r)`: `n = round(x·log₂e)` (and `t = n + ROUND_F64`), `r = x − n·ln2`.
#[inline(always)]
fn exp_reduce(xc: f64) -> (f64, f64, f64) {
    let t = xc.mul_add(std::f64::consts::LOG2_E, ROUND_F64);
    let n = t - ROUND_F64;
    let r = n.mul_add(-LN2_HI, xc);
    (t, n, n.mul_add(-LN2_LO, r))
}

/// `u·2^n`, `n` in the low bits of `t` (see [`scale_f32`]), `n ∈ [−1077, 1025]`.
#[inline(always)]
fn scale_f64(u: f64, t: f64) -> f64 {
    let nb = t.to_bits().wrapping_sub(ROUND_F64.to_bits()).wrapping_add(2048);
    let n1b = nb >> 1;
    let s1 = f64::from_bits(n1b.wrapping_sub(1) << 52);
    let s2 = f64::from_bits(nb.wrapping_sub(n1b).wrapping_sub(1) << 52);
    u * s1 * s2
}

#[inline(always)]
fn exp_imp<const FULL: bool>(x: f64) -> f64 {
    let xc = clamp_keep_nan(x, -746.0, 710.0);
    let (t, _, r) = exp_reduce(xc);
    let u = (r * r).mul_add(exp_poly::<FULL>(r), r) + 1.0;
    scale_f64(u, t)
}

/// `(hi, lo, large, n)` for `expm1(xc)`, `xc` already clamped: for `n ≤ 60` the value is
/// `hi + lo` (not yet added: `tanh` keeps the pair), otherwise `large`.
#[inline(always)]
fn expm1_parts<const FULL: bool>(xc: f64) -> (f64, f64, f64, f64) {
    let t = xc.mul_add(std::f64::consts::LOG2_E, ROUND_F64);
    let n = t - ROUND_F64;
    // r = r_hi + r_lo with r_hi exact (|n| ≤ 60 here has 6 bits, LN2_HI 32): the rounding
    // of r would cost up to 1 ulp after the cancellation below.
    let r_hi = n.mul_add(-LN2_HI, xc);
    let r_lo = -n * LN2_LO;
    let r = r_hi + r_lo;
    // expm1(r) = r + q.
    let q = r * r * exp_poly::<FULL>(r);
    // n ≤ 60: expm1(x) = (2^n − 1) + 2^n·r_hi + 2^n·(r_lo + q). The first two are added
    // exactly (Fast2Sum: |2^n − 1| ≥ |2^n·r_hi| for |r| ≤ ln2/2 and n ≠ 0), so the result
    // is rounded once more, after the small terms.
    let m = if n > 60.0 { 60.0 } else { n };
    let p2 = f64::from_bits(((ROUND_F64 + m).to_bits().wrapping_sub(ROUND_F64.to_bits()).wrapping_add(1023)) << 52);
    let (a, b) = (p2 - 1.0, p2 * r_hi);
    let hi = a + b;
    let lo = (b - (hi - a)) + p2 * (r_lo + q);
    // n > 60: e^x − 1 rounds to e^x, scaled in two steps for overflow.
    let large = scale_f64((r + q) + 1.0, t);
    (hi, lo, large, n)
}

#[inline(always)]
fn expm1_imp<const FULL: bool>(x: f64) -> f64 {
    // Below −50 the result rounds to −1 (f64 and f32), above 710 it is +∞.
    let (hi, lo, large, n) = expm1_parts::<FULL>(clamp_keep_nan(x, -50.0, 710.0));
    let y = if n > 60.0 { large } else { hi + lo };
    if x == 0.0 {
        x // keeps −0
    } else {
        y
    }
}

/// `e^x` in f64: ≤ 1 ulp from `f64::exp`. Scalar definition of the f64 kernel (see
/// [`exp_f32`] about speed).
#[inline(always)]
pub fn exp_f64(x: f64) -> f64 {
    exp_imp::<true>(x)
}

/// `e^x − 1` in f64: ≤ 1 ulp from `f64::exp_m1` (see [`exp_f32`] about speed).
#[inline(always)]
pub fn expm1_f64(x: f64) -> f64 {
    expm1_imp::<true>(x)
}

// ---------------------------------------------------------------- log and log1p

/// Bits of √½: `x − BITS(√½)` carries `k` in its exponent field for `x = 2^k·z`, `z ∈ [√½, √2)`.
const SQRT_HALF_BITS: u64 = 0x3fe6_a09e_667f_3bcd;
/// fdlibm `e_log.c`: `R(w) = w·(Lg1 + w·(Lg2 + … + w·Lg7))` approximates
/// `(log((1+s)/(1−s)) − 2s)/s` for `w = s²`, `|s| ≤ 0.1716` (error below 2^−58.45).
const LG: [f64; 7] = [
    f64::from_bits(0x3fe5_5555_5555_5593), // 6.666666666666735130e-01
    f64::from_bits(0x3fd9_9999_9997_fa04), // 3.999999999940941908e-01
    f64::from_bits(0x3fd2_4924_9422_9359), // 2.857142874366239149e-01
    f64::from_bits(0x3fcc_71c5_1d8e_78af), // 2.222219843214978396e-01
    f64::from_bits(0x3fc7_4664_96cb_03de), // 1.818357216161805012e-01
    f64::from_bits(0x3fc3_9a09_d078_c69f), // 1.531383769920937332e-01
    f64::from_bits(0x3fc2_f112_df3e_5244), // 1.479819860511658591e-01
];
/// Degree-3 fit of the same `R(w)/w` for the f32 path (Remez, error 2^−37.6).
const LG_FOR_F32: [f64; 4] =
    [0.666_666_656_450_400_7, 0.400_003_352_937_152_06, 0.285_373_015_190_125_15, 0.235_822_931_293_376_6];

/// `log(w) + c` for finite `w > 0` (subnormal included) and a small correction `c`.
#[inline(always)]
fn log_core<const FULL: bool>(w: f64, c: f64) -> f64 {
    let sub = w < f64::MIN_POSITIVE;
    let ws = if sub { w * 18_014_398_509_481_984.0 } else { w }; // 2^54
    let ix = ws.to_bits();
    let tmp = ix.wrapping_sub(SQRT_HALF_BITS);
    let kb = tmp.wrapping_add(1023 << 52) >> 52; // k + 1023 (logical shift: always ≥ 0 here)
    let z = f64::from_bits(ix.wrapping_sub(tmp & 0xfff0_0000_0000_0000));
    // k as a float, exactly: 2^52 + kb − (2^52 + 1023), then − 54 for scaled subnormals.
    let k = f64::from_bits(0x4330_0000_0000_0000 | kb) - 4_503_599_627_371_519.0;
    let k = if sub { k - 54.0 } else { k };
    let f = z - 1.0;
    let hfsq = 0.5 * f * f;
    let s = f / (2.0 + f);
    let w2 = s * s;
    let p = if FULL {
        let mut p = LG[6];
        for &l in LG[..6].iter().rev() {
            p = p.mul_add(w2, l);
        }
        p
    } else {
        LG_FOR_F32[3].mul_add(w2, LG_FOR_F32[2]).mul_add(w2, LG_FOR_F32[1]).mul_add(w2, LG_FOR_F32[0])
    };
    let r = w2 * p;
    k * LN2_HI - ((hfsq - (s * (hfsq + r) + (k * LN2_LO + c))) - f)
}

#[inline(always)]
fn log_imp<const FULL: bool>(x: f64) -> f64 {
    let y = log_core::<FULL>(x, 0.0);
    let y = if x == f64::INFINITY { x } else { y };
    let y = if x == 0.0 { f64::NEG_INFINITY } else { y };
    let y = if x < 0.0 { f64::NAN } else { y };
    if x.is_nan() {
        x
    } else {
        y
    }
}

#[inline(always)]
fn log1p_imp<const FULL: bool>(u: f64) -> f64 {
    let w = 1.0 + u;
    // The rounding error of w = 1 + u, exactly (Fast2Sum with the larger operand first).
    let e = if w >= 2.0 { 1.0 - (w - u) } else { u - (w - 1.0) };
    let y = log_core::<FULL>(w, e / w);
    let y = if u == f64::INFINITY { u } else { y };
    let y = if u == -1.0 { f64::NEG_INFINITY } else { y };
    let y = if u < -1.0 { f64::NAN } else { y };
    let y = if u == 0.0 { u } else { y }; // keeps −0
    if u.is_nan() {
        u
    } else {
        y
    }
}

/// ln2 split for f32 (fdlibm `e_logf.c`): `LN2_HI_LOGF` has 16 significant bits, so
/// `k·LN2_HI_LOGF` is exact for `|k| ≤ 152`.
const LN2_HI_LOGF: f32 = f32::from_bits(0x3f31_7180); // 6.9313812256e-01
const LN2_LO_LOGF: f32 = f32::from_bits(0x3717_f7d1); // 9.0580006145e-06
/// `(log(1+f) − f + f²/2)/f³ ≈ P(f)` on `f ∈ [√½ − 1, √2 − 1]`, degree 7: a minimax fit
/// (Lawson's iteration in extended precision, weight `f³/log(1+f)`, i.e. the relative error
/// of `log(1+f)`), rounded to f32 from the highest coefficient down with the lower ones
/// refitted after each rounding: relative error of `log(1+f)` 2^−26.9.
const LOG_P_F32: [f32; 8] = [
    f32::from_bits(0x3eaa_aaaa), // 3.333333135e-01
    f32::from_bits(0xbe80_0114), // -2.500082254e-01
    f32::from_bits(0x3e4c_d004), // 2.000122666e-01
    f32::from_bits(0xbe2a_3922), // -1.662335694e-01
    f32::from_bits(0x3e11_6d0f), // 1.420175880e-01
    f32::from_bits(0xbe06_c2a1), // -1.316018254e-01
    f32::from_bits(0x3e02_adb6), // 1.276157796e-01
    f32::from_bits(0xbd9c_5ac3), // -7.634498924e-02
];

/// `log(x)` in f32 arithmetic, without a division (sixteen lanes per AVX-512 vector): ≤ 1
/// ulp from `f32::ln` over every f32 input (`exhaustive::every_f32_input`).
///
/// `x = 2^k·m`, `m ∈ [√½, √2)`, `f = m − 1` (exact); `log(1+f) = f + f²·q`,
/// `q = −½ + f·P(f)` ([`LOG_P_F32`], Horner in FMAs); `k·ln2_hi + f` is added first with its
/// rounding error kept (Fast2Sum, `|k·ln2_hi| ≥ |f|` when `k ≠ 0`), so the one rounding
/// that matters at the cancellation `k = −1, f → √2 − 1` is the last.
/// (It was fdlibm's `logf`, whose `s = f/(2+f)` made the division the bottleneck: 0.54×
/// torch's throughput on one thread of an AVX-512 Xeon, `bench/README.md`.)
#[inline(always)]
pub fn log_f32(x: f32) -> f32 {
    // Subnormal inputs are scaled by 2^25 into the normal range first.
    let sub = x < f32::MIN_POSITIVE;
    let (xs, kadj) = if sub { (x * 33_554_432.0, -25) } else { (x, 0) };
    let y = log_core_f32(xs, kadj);
    let y = if x == f32::INFINITY { x } else { y };
    let y = if x == 0.0 { f32::NEG_INFINITY } else { y };
    let y = if x < 0.0 { f32::NAN } else { y };
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// `log(2^kadj · xs)` for a positive, finite, normal `xs` (see [`log_f32`]).
#[inline(always)]
fn log_core_f32(xs: f32, kadj: i32) -> f32 {
    // xs = 2^k · m with m in [√½, √2): k from the exponent of xs·(1/√½) in bits, m = xs / 2^k.
    let ix = xs.to_bits().wrapping_add(0x3f80_0000 - 0x3f35_04f3);
    let k = (ix >> 23) as i32 - 0x7f + kadj;
    let m = f32::from_bits((ix & 0x007f_ffff) + 0x3f35_04f3);
    let f = m - 1.0;
    let c = &LOG_P_F32;
    let p = c[7]
        .mul_add(f, c[6])
        .mul_add(f, c[5])
        .mul_add(f, c[4])
        .mul_add(f, c[3])
        .mul_add(f, c[2])
        .mul_add(f, c[1])
        .mul_add(f, c[0]);
    let q = f.mul_add(p, -0.5);
    let dk = k as f32;
    let khi = dk * LN2_HI_LOGF; // exact
    let hi = khi + f;
    let err = (khi - hi) + f; // khi + f − hi, exactly
    let lo = (f * f).mul_add(q, dk.mul_add(LN2_LO_LOGF, err));
    hi + lo
}

/// `log_f32` of a slice: blocks of 64 inputs that are all positive, finite and normal (the
/// common case) skip the special cases' selects.
#[inline(always)]
fn log_slice_f32(src: &[f32], dst: &mut [MaybeUninit<f32>]) {
    by_blocks!(src, dst, |v| v.to_bits().wrapping_sub(0x0080_0000), 0x7f00_0000, |v| log_core_f32(v, 0), |v| log_f32(
        v
    ));
}

/// `log(x)` in f64: ≤ 1 ulp from `f64::ln`.
#[inline(always)]
pub fn log_f64(x: f64) -> f64 {
    log_imp::<true>(x)
}

/// `log(1 + x)` in f64: ≤ 1 ulp from `f64::ln_1p`.
#[inline(always)]
pub fn log1p_f64(x: f64) -> f64 {
    log1p_imp::<true>(x)
}

// ---------------------------------------------------------------- sigmoid, tanh, softplus

#[inline(always)]
fn sigmoid_imp<const FULL: bool>(x: f64) -> f64 {
    let e = exp_imp::<FULL>(-x.abs());
    let num = if x >= 0.0 { 1.0 } else { e };
    num / (1.0 + e)
}

#[inline(always)]
fn tanh_imp<const FULL: bool>(x: f64) -> f64 {
    let a = x.abs();
    let small = a < 1.0;
    // Beyond |x| = 20 the result is ±1 in f64; the clamp keeps n ≤ 58 in `expm1_parts`, so
    // `hi + lo` is the value (NaN passes through).
    let arg = if small { -2.0 * a } else { 2.0 * a };
    let arg = if arg > 40.0 { 40.0 } else { arg };
    let (hi, lo, _, _) = expm1_parts::<FULL>(arg);
    let t = hi + lo;
    // |x| < 1: −t/(t + 2); otherwise 1 − 2/(t + 2).
    let z = if FULL {
        // The quotient from expm1's unrounded pair t = hi + lo, with the residual of the
        // division (an FMA) and the rounding error of 2 + hi (Fast2Sum) folded in before the
        // last rounding: otherwise the rounding of t costs up to 2 ulp for |x| < 1.
        let (n_hi, n_lo) = if small { (-hi, -lo) } else { (2.0, 0.0) };
        let dh = if small { 2.0 + hi } else { 2.0 + t };
        let dl = if small { (hi - (dh - 2.0)) + lo } else { 0.0 };
        let q0 = n_hi / dh;
        let rho = (-q0).mul_add(dh, n_hi); // n_hi − q0·dh, exactly
                                           // (n_hi + n_lo)/(dh + dl) = q0 + (rho + n_lo − q0·dl)/(dh + dl); `lo` is not small
                                           // next to `hi` (it holds r²·P), so neither is `dl`.
        let q = q0 + ((rho + n_lo) - q0 * dl) / (dh + dl);
        if small {
            q
        } else {
            1.0 - q0
        }
    } else {
        let q = (if small { -t } else { 2.0 }) / (t + 2.0);
        if small {
            q
        } else {
            1.0 - q
        }
    };
    let z = z.copysign(x);
    if a == 0.0 {
        x // keeps −0
    } else {
        z
    }
}

#[inline(always)]
fn softplus_imp<const FULL: bool>(x: f64) -> f64 {
    let e = exp_imp::<FULL>(-x.abs()); // in [0, 1]
    let w = 1.0 + e;
    let err = e - (w - 1.0);
    let c = if FULL { err / w } else { err };
    let l = log_core::<FULL>(w, c); // log1p(e)
    let pos = if x > 0.0 { x } else { 0.0 };
    let y = pos + l;
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// `1/(1 + e^−x)` in f32 arithmetic: ≤ 1 ulp from the f64 formula rounded to f32.
///
/// `q = num/d` with `d = 1 + e`, `e = e^−|x|`, `num = 1` or `e`, corrected before the last
/// rounding for the rounding error of `d` and of the quotient (both exact: Fast2Sum and the
/// FMA residual), so only `e`'s own error and one rounding remain.
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    sigmoid_tail_f32(x, exp_f32(-x.abs()))
}

/// [`sigmoid_f32`] from `e = e^−|x|` (in [0, 1]; NaN for NaN).
#[inline(always)]
fn sigmoid_tail_f32(x: f32, e: f32) -> f32 {
    // `num = if x ≥ 0 { 1 } else { e }` as a bit select: written as a select, LLVM divides
    // both arms and selects after, two divisions instead of one.
    let m = ((x >= 0.0) as u32).wrapping_neg();
    let num = f32::from_bits((e.to_bits() & !m) | (1f32.to_bits() & m));
    let d = 1.0 + e;
    let de = e - (d - 1.0); // the rounding error of d, exactly
    let q0 = num / d;
    let rho = (-q0).mul_add(d, num); // num − q0·d, exactly
    let inv_d = if x >= 0.0 { q0 } else { 1.0 - q0 }; // ≈ 1/d, enough for the correction
    (-q0).mul_add(de, rho).mul_add(inv_d, q0)
}

/// `sigmoid_f32` of a slice: blocks of 64 inputs that all have `|x| < 80` (NaN's bits are
/// above) take `e^−|x|` without the clamp and the two-factor scaling, which only inputs beyond
/// ±80 need. The same bits.
#[inline(always)]
fn sigmoid_slice_f32(src: &[f32], dst: &mut [MaybeUninit<f32>]) {
    by_blocks!(
        src,
        dst,
        |v| v.to_bits() & 0x7fff_ffff,
        80f32.to_bits(),
        |v| sigmoid_tail_f32(v, exp_plain_f32(-v.abs())),
        |v| sigmoid_f32(v)
    );
}

/// `exp_f32` of a slice, with `sigmoid_slice_f32`'s blocks. The same bits.
#[inline(always)]
fn exp_slice_f32(src: &[f32], dst: &mut [MaybeUninit<f32>]) {
    by_blocks!(src, dst, |v| v.to_bits() & 0x7fff_ffff, 80f32.to_bits(), |v| exp_plain_f32(v), |v| exp_f32(v));
}

/// `1/(1 + e^−x)` in f64: ≤ 2 ulp from the libm formula.
#[inline(always)]
pub fn sigmoid_f64(x: f64) -> f64 {
    sigmoid_imp::<true>(x)
}

/// `tanh(x)` in f64: ≤ 2 ulp from `f64::tanh` (≤ 1 from the correctly rounded value in the
/// samples checked with mpmath, where glibc's `tanh` is up to 2 off).
#[inline(always)]
pub fn tanh_f64(x: f64) -> f64 {
    tanh_imp::<true>(x)
}

/// `log(1 + e^x)` in f64: ≤ 2 ulp from the libm formula.
#[inline(always)]
pub fn softplus_f64(x: f64) -> f64 {
    softplus_imp::<true>(x)
}

// ============================================================================ row kernels

/// Lanes of the row loops: the 32 accumulators of `reduce::sum_slice`, whose order of
/// additions the sums here reproduce.
const LANES: usize = 32;

/// `N` lanes (a power of two) added in the fixed tree of `reduce::sum_slice`: lane `k + w`
/// into lane `k` for `w` = N/2, N/4, …, 1; lane 0 is the sum.
#[inline(always)]
pub(crate) fn fold_lanes<T: Element, const N: usize>(mut acc: [T; N]) -> T {
    let mut width = N;
    while width > 1 {
        width /= 2;
        for k in 0..width {
            acc[k] += acc[k + width];
        }
    }
    acc[0]
}

/// `(m, has_nan)`: the maximum (`MAX`) or minimum of `s` by lanes, ignoring NaN, and whether
/// `s` holds a NaN. `m` equals the extreme value but may be the wrong zero (±0 ties).
#[inline(always)]
fn extreme_lanes<T: Vm, const MAX: bool>(s: &[T]) -> (T, bool) {
    let better = |x: T, m: T| if MAX { x > m } else { x < m };
    let mut m = [s[0]; LANES];
    let mut nan = [T::zero(); LANES]; // a lane turns NaN once it has seen one
    let chunks = s.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        // Iterators, not `m[k] = … v[k] …`: LLVM vectorises this form (the indexed one it
        // turned into scalar selects of addresses).
        for ((mk, nk), &x) in m.iter_mut().zip(nan.iter_mut()).zip(c) {
            *mk = if better(x, *mk) { x } else { *mk };
            *nk = if x.is_nan() { x } else { *nk };
        }
    }
    let (mut best, mut has_nan) = (m[0], false);
    for k in 0..LANES {
        best = if better(m[k], best) { m[k] } else { best };
        has_nan |= nan[k].is_nan();
    }
    for &x in rest {
        best = if better(x, best) { x } else { best };
        has_nan |= x.is_nan();
    }
    (best, has_nan)
}

/// Position of the first element of `s` for which `hit` holds (there must be one).
#[inline(always)]
fn first_index<T: Copy>(s: &[T], hit: impl Fn(T) -> bool) -> usize {
    let mut base = 0;
    for c in s.chunks(LANES) {
        if c.iter().fold(false, |a, &x| a | hit(x)) {
            return base + c.iter().position(|&x| hit(x)).expect("a hit in this chunk");
        }
        base += c.len();
    }
    unreachable!("first_index: no element matches")
}

/// The extreme element of a non-empty `s` as `Tensor::max_with_indices` picks it: the first
/// NaN if there is one, otherwise the first element equal to the maximum (`MAX`) or minimum.
/// Returns its value and, when `want_index` (or when needed to tell −0 from +0), its
/// position; otherwise `usize::MAX` as the position.
#[inline(always)]
fn extreme_imp<T: Vm, const MAX: bool>(s: &[T], want_index: bool) -> (T, usize) {
    let (best, has_nan) = extreme_lanes::<T, MAX>(s);
    if has_nan {
        let i = first_index(s, |x| x.is_nan());
        return (s[i], i);
    }
    if want_index || best == T::zero() {
        let i = first_index(s, |x| x == best);
        return (s[i], i);
    }
    (best, usize::MAX)
}

/// `Σ e^(x_i − shift)` with the additions of `reduce::sum_slice` (32 lanes, a fixed tree,
/// the remainder in order), writing the terms to `out` when `STORE` (`out` is then as long as
/// `x`; otherwise it is not touched).
#[inline(always)]
fn exp_sum_slice<T: Vm, const STORE: bool>(x: &[T], shift: T, out: &mut [MaybeUninit<T>]) -> T {
    let mut acc = [T::zero(); LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    let n_full = x.len() - rest.len();
    // One loop per lane group, accumulating straight into `acc` (a local array of terms
    // added to `acc` afterwards was split into 2-lane registers by LLVM).
    if STORE {
        for (c, o) in chunks.zip(out[..n_full].chunks_exact_mut(LANES)) {
            for ((a, o), &v) in acc.iter_mut().zip(o.iter_mut()).zip(c) {
                let e = T::v_exp(v - shift);
                o.write(e);
                *a += e;
            }
        }
    } else {
        for c in chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += T::v_exp(v - shift);
            }
        }
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for k in 0..width {
            acc[k] += acc[k + width];
        }
    }
    let mut total = acc[0];
    for (j, &v) in rest.iter().enumerate() {
        let e = T::v_exp(v - shift);
        if STORE {
            out[n_full + j].write(e);
        }
        total += e;
    }
    total
}

/// `Σ e^(x_i − shift)` in the order of `reduce::sum_run` (what `Tensor::sum` does with a
/// contiguous row): pieces of `PAR_CHUNK` elements added left to right from 0.
#[inline(always)]
fn exp_sum<T: Vm, const STORE: bool>(x: &[T], shift: T, out: &mut [MaybeUninit<T>]) -> T {
    if x.len() <= PAR_CHUNK {
        return T::zero() + exp_sum_slice::<T, STORE>(x, shift, out);
    }
    let mut total = T::zero();
    for (i, c) in x.chunks(PAR_CHUNK).enumerate() {
        let o = if STORE { &mut out[i * PAR_CHUNK..i * PAR_CHUNK + c.len()] } else { &mut [][..] };
        total += exp_sum_slice::<T, STORE>(c, shift, o);
    }
    total
}

/// The shift of a row: its maximum, or 0 when that is not finite (NaN, ±∞).
#[inline(always)]
fn row_shift<T: Vm>(x: &[T]) -> T {
    let m = extreme_imp::<T, true>(x, false).0;
    if m.is_finite() {
        m
    } else {
        T::zero()
    }
}

#[inline(always)]
fn softmax_rows_imp<T: Vm>(src: &[T], dst: &mut [MaybeUninit<T>], n: usize, log: bool) {
    for (x, out) in src.chunks_exact(n).zip(dst.chunks_exact_mut(n)) {
        let shift = row_shift(x);
        if log {
            let lse = T::v_log(exp_sum::<T, false>(x, shift, &mut []));
            for (o, &v) in out.iter_mut().zip(x) {
                o.write((v - shift) - lse);
            }
        } else {
            let s = exp_sum::<T, true>(x, shift, out);
            // SAFETY: `exp_sum::<_, true>` wrote every element of `out` (one term per input).
            let out = unsafe { &mut *(out as *mut [MaybeUninit<T>] as *mut [T]) };
            for o in out.iter_mut() {
                *o /= s;
            }
        }
    }
}

#[inline(always)]
fn logsumexp_rows_imp<T: Vm>(src: &[T], n: usize, dst: &mut [T]) {
    for (x, o) in src.chunks_exact(n).zip(dst.iter_mut()) {
        let shift = row_shift(x);
        *o = T::v_log(exp_sum::<T, false>(x, shift, &mut [])) + shift;
    }
}

/// `extreme_imp` of every row of `n` elements of `src` into `vals` (and `idx` when
/// `want_index`; it is then as long as `vals`).
#[inline(always)]
fn extreme_rows_imp<T: Vm, const MAX: bool>(src: &[T], n: usize, want_index: bool, vals: &mut [T], idx: &mut [usize]) {
    for (r, (row, v)) in src.chunks_exact(n).zip(vals.iter_mut()).enumerate() {
        let (m, i) = extreme_imp::<T, MAX>(row, want_index);
        *v = m;
        if want_index {
            idx[r] = i;
        }
    }
}

dispatched!(fn max_rows_f32(src: &[f32], n: usize, want_index: bool, vals: &mut [f32], idx: &mut [usize]) = extreme_rows_imp::<f32, true>);
dispatched!(fn max_rows_f64(src: &[f64], n: usize, want_index: bool, vals: &mut [f64], idx: &mut [usize]) = extreme_rows_imp::<f64, true>);
dispatched!(fn min_rows_f32(src: &[f32], n: usize, want_index: bool, vals: &mut [f32], idx: &mut [usize]) = extreme_rows_imp::<f32, false>);
dispatched!(fn min_rows_f64(src: &[f64], n: usize, want_index: bool, vals: &mut [f64], idx: &mut [usize]) = extreme_rows_imp::<f64, false>);
dispatched!(fn max_f32(s: &[f32], want_index: bool) -> (f32, usize) = extreme_imp::<f32, true>);
dispatched!(fn max_f64(s: &[f64], want_index: bool) -> (f64, usize) = extreme_imp::<f64, true>);
dispatched!(fn min_f32(s: &[f32], want_index: bool) -> (f32, usize) = extreme_imp::<f32, false>);
dispatched!(fn min_f64(s: &[f64], want_index: bool) -> (f64, usize) = extreme_imp::<f64, false>);
dispatched!(fn softmax_rows_f32(src: &[f32], dst: &mut [MaybeUninit<f32>], n: usize, log: bool) = softmax_rows_imp::<f32>);
dispatched!(fn softmax_rows_f64(src: &[f64], dst: &mut [MaybeUninit<f64>], n: usize, log: bool) = softmax_rows_imp::<f64>);
dispatched!(fn logsumexp_rows_f32(src: &[f32], n: usize, dst: &mut [f32]) = logsumexp_rows_imp::<f32>);
dispatched!(fn logsumexp_rows_f64(src: &[f64], n: usize, dst: &mut [f64]) = logsumexp_rows_imp::<f64>);

/// The sum of `s` in the order of `reduce::sum_slice` (32 accumulators, lane `k` adding
/// elements `k, k + 32, …`; the lanes added in a fixed tree; then the tail in order), so every
/// level gives the same bits. Compiled for each level's target features: without them the
/// 32 lanes became four-wide SSE additions (1M `f32` on one thread: 9.8 Gelem/s, torch 21.8).
#[inline(always)]
pub(crate) fn sum_imp<T: Element>(s: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let chunks = s.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let mut total = fold_lanes(acc);
    for &x in rest {
        total += x;
    }
    total
}

/// [`sum_imp`] with the 32 lanes held in `32 / V::LANES` vectors `V` (lane `k` of the scalar
/// loop is lane `k mod LANES` of vector `k / LANES`), stored and folded as there: the same
/// additions in the same order, so the same bits. (Written with `Vector` because LLVM kept
/// `sum_imp`'s lanes in 2-wide registers even with AVX-512 enabled: 7 Gelem/s on 1M `f32`.)
///
/// # Safety
/// `V`'s instruction set must be available.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sum_vectors<F: Element, V: crate::kernels::simd::Vector<F>>(s: &[F]) -> F {
    let per = LANES / V::LANES;
    // SAFETY (whole body): the caller guarantees the instruction set; every load reads
    // `V::LANES` values inside a whole chunk of `LANES`, every store writes inside `lanes`.
    unsafe {
        let mut acc = [V::zero(); LANES];
        let whole = s.len() / LANES * LANES;
        let mut c = 0;
        while c < whole {
            let p = s.as_ptr().add(c);
            for (v, a) in acc[..per].iter_mut().enumerate() {
                *a = V::add(*a, V::load(p.add(v * V::LANES)));
            }
            c += LANES;
        }
        let mut lanes = [F::zero(); LANES];
        for (v, a) in acc[..per].iter().enumerate() {
            a.store(lanes.as_mut_ptr().add(v * V::LANES));
        }
        s[whole..].iter().fold(fold_lanes(lanes), |t, &x| t + x)
    }
}

/// `sum_f32` / `sum_f64`: [`sum_vectors`] on the level's vectors, [`sum_imp`] on `Generic`.
/// `fn $name(level: Isa, args..)` for the element type `$f`: `$vec::<$f, V>` with the vector
/// type `V` of `level` (`Z` for AVX-512, `Y` for AVX2), `$fallback` on a CPU without either.
macro_rules! vector_dispatched {
    ($name:ident, $f:ty: fn($($a:ident : $t:ty),*) $(-> $r:ty)? = $vec:ident | $fallback:ident) => {
        fn $name(level: Isa, $($a: $t),*) $(-> $r)? {
            #[cfg(target_arch = "x86_64")]
            {
                use crate::kernels::simd::HasVectors;
                #[cfg(sparsegrad_avx512)]
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($a: $t),*) $(-> $r)? {
                    // SAFETY: this function's features are those of `Z`.
                    unsafe { $vec::<$f, <$f as HasVectors>::Z>($($a),*) }
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($a: $t),*) $(-> $r)? {
                    // SAFETY: this function's features are those of `Y`.
                    unsafe { $vec::<$f, <$f as HasVectors>::Y>($($a),*) }
                }
                match level.checked() {
                    // SAFETY: `checked` panics for a level this CPU does not run.
                    #[cfg(sparsegrad_avx512)]
                    Isa::Avx512 => return unsafe { avx512($($a),*) },
                    // SAFETY: as above.
                    Isa::Avx2 => return unsafe { avx2($($a),*) },
                    _ => {}
                }
            }
            let _ = level;
            $fallback($($a),*)
        }
    };
}
pub(crate) use vector_dispatched;

vector_dispatched!(sum_f32, f32: fn(s: &[f32]) -> f32 = sum_vectors | sum_imp);
vector_dispatched!(sum_f64, f64: fn(s: &[f64]) -> f64 = sum_vectors | sum_imp);

/// `dst[i] = 0 + Σ src[bases[i] .. bases[i] + n]`, each sum as [`sum_at`] on the same level
/// from 256 elements on and [`sum_imp`] below (the order of `reduce::sum_slice`), with no call,
/// dispatch or closure per row. (A `[1024, 1024]` sum over the last axis spent a third of its
/// time in that per-row overhead.)
///
/// # Safety
/// `V`'s instruction set must be available.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sum_rows_vectors<F: Element, V: crate::kernels::simd::Vector<F>>(
    src: &[F],
    bases: &[usize],
    n: usize,
    dst: &mut [F],
) {
    for (d, &b) in dst.iter_mut().zip(bases) {
        let row = &src[b..b + n];
        // SAFETY: the caller guarantees `V`'s instruction set.
        *d = F::zero() + if n >= 256 { unsafe { sum_vectors::<F, V>(row) } } else { sum_imp(row) };
    }
}

/// `sum_rows_f32` / `sum_rows_f64`: [`sum_rows_vectors`] on the level's vectors, the same
/// sums through [`sum_imp`] on `Generic`.
/// [`sum_rows_vectors`] on a CPU without vectors: each row by [`sum_imp`].
fn sum_rows_scalar<F: Element>(src: &[F], bases: &[usize], n: usize, dst: &mut [F]) {
    for (d, &b) in dst.iter_mut().zip(bases) {
        *d = F::zero() + sum_imp(&src[b..b + n]);
    }
}
vector_dispatched!(sum_rows_f32, f32: fn(src: &[f32], bases: &[usize], n: usize, dst: &mut [f32]) = sum_rows_vectors | sum_rows_scalar);
vector_dispatched!(sum_rows_f64, f64: fn(src: &[f64], bases: &[usize], n: usize, dst: &mut [f64]) = sum_rows_vectors | sum_rows_scalar);

/// Row sums on the given level: `dst[i]` is `0 + ` the sum of the `n` elements of `src` from
/// `bases[i]`, in `reduce::sum_slice`'s order (so the bits of `Tensor::sum` over one
/// contiguous axis of at most `PAR_CHUNK` elements). **Panics** if a row leaves `src` or the
/// lengths of `bases` and `dst` differ.
#[track_caller]
pub(crate) fn sum_rows_at<T: Element>(level: Isa, src: &[T], bases: &[usize], n: usize, dst: &mut [T]) {
    assert!(bases.len() == dst.len(), "vmath::sum_rows: {} bases for {} sums", bases.len(), dst.len());
    assert!(bases.iter().all(|&b| b + n <= src.len()), "vmath::sum_rows: a row leaves the source");
    if let (Some(s), Some(d)) = (same::<T, f32>(src), same_mut::<T, f32>(dst)) {
        sum_rows_f32(level, s, bases, n, d)
    } else if let (Some(s), Some(d)) = (same::<T, f64>(src), same_mut::<T, f64>(dst)) {
        sum_rows_f64(level, s, bases, n, d)
    }
}

/// [`sum_imp`] on the given level (tests force each one).
pub(crate) fn sum_at<T: Element>(level: Isa, s: &[T]) -> T {
    if let Some(x) = same::<T, f32>(s) {
        same::<f32, T>(&[sum_f32(level, x)]).expect("T is f32")[0]
    } else if let Some(x) = same::<T, f64>(s) {
        same::<f64, T>(&[sum_f64(level, x)]).expect("T is f64")[0]
    } else {
        unreachable!("Element is implemented for f32 and f64 only")
    }
}

/// The extreme element of the non-empty `s` and its position, as `Tensor::max_with_indices`
/// (`is_max`) or `Tensor::min_with_indices` picks it: the first NaN if any, otherwise the
/// first element equal to the maximum (minimum). Without `want_index` the position may be
/// `usize::MAX`. **Panics** if `s` is empty.
#[track_caller]
pub(crate) fn extreme<T: Element>(s: &[T], is_max: bool, want_index: bool) -> (T, usize) {
    assert!(!s.is_empty(), "vmath::extreme: empty slice");
    extreme_at(Isa::best(), s, is_max, want_index)
}

pub(crate) fn extreme_at<T: Element>(level: Isa, s: &[T], is_max: bool, want_index: bool) -> (T, usize) {
    if let Some(s) = same::<T, f32>(s) {
        let (v, i) = if is_max { max_f32(level, s, want_index) } else { min_f32(level, s, want_index) };
        (same::<f32, T>(&[v]).expect("T is f32")[0], i)
    } else if let Some(s) = same::<T, f64>(s) {
        let (v, i) = if is_max { max_f64(level, s, want_index) } else { min_f64(level, s, want_index) };
        (same::<f64, T>(&[v]).expect("T is f64")[0], i)
    } else {
        unreachable!("Element is implemented for f32 and f64 only")
    }
}

/// [`extreme`] of every row of `n` elements of `src`: the values into `vals`, and the
/// positions into `idx` when `want_index` (`idx` is then as long as `vals`; otherwise it is
/// not written and may be empty). **Panics** unless `src.len() = n·vals.len()`, `n > 0`.
#[track_caller]
pub(crate) fn extreme_rows<T: Element>(
    src: &[T],
    n: usize,
    is_max: bool,
    want_index: bool,
    vals: &mut [T],
    idx: &mut [usize],
) {
    extreme_rows_at(Isa::best(), src, n, is_max, want_index, vals, idx)
}

#[track_caller]
fn extreme_rows_at<T: Element>(
    level: Isa,
    src: &[T],
    n: usize,
    is_max: bool,
    want_index: bool,
    vals: &mut [T],
    idx: &mut [usize],
) {
    assert!(n > 0 && src.len() == n * vals.len(), "vmath::extreme_rows: bad lengths");
    assert!(!want_index || idx.len() == vals.len(), "vmath::extreme_rows: bad index length");
    if let (Some(s), Some(v)) = (same::<T, f32>(src), same_mut::<T, f32>(vals)) {
        if is_max {
            max_rows_f32(level, s, n, want_index, v, idx)
        } else {
            min_rows_f32(level, s, n, want_index, v, idx)
        }
    } else if let (Some(s), Some(v)) = (same::<T, f64>(src), same_mut::<T, f64>(vals)) {
        if is_max {
            max_rows_f64(level, s, n, want_index, v, idx)
        } else {
            min_rows_f64(level, s, n, want_index, v, idx)
        }
    }
}

/// Softmax (or, with `log`, log-softmax) of every row of `n` elements of `src` into `dst`:
/// `e^(x − m)/Σ e^(x − m)`, resp. `(x − m) − log Σ e^(x − m)`, `m` the row's maximum (0 when
/// not finite), the sum in the order `Tensor::sum` adds a contiguous row. Same bits as the
/// composed kernels. **Panics** unless both lengths are the same multiple of `n > 0`.
#[track_caller]
pub(crate) fn softmax_rows<T: Element>(src: &[T], dst: &mut [MaybeUninit<T>], n: usize, log: bool) {
    softmax_rows_at(Isa::best(), src, dst, n, log)
}

#[track_caller]
pub(crate) fn softmax_rows_at<T: Element>(level: Isa, src: &[T], dst: &mut [MaybeUninit<T>], n: usize, log: bool) {
    assert!(n > 0 && src.len() % n == 0 && dst.len() == src.len(), "vmath::softmax_rows: bad lengths");
    if let (Some(s), Some(d)) = (same::<T, f32>(src), same_mut::<MaybeUninit<T>, MaybeUninit<f32>>(dst)) {
        softmax_rows_f32(level, s, d, n, log)
    } else if let (Some(s), Some(d)) = (same::<T, f64>(src), same_mut::<MaybeUninit<T>, MaybeUninit<f64>>(dst)) {
        softmax_rows_f64(level, s, d, n, log)
    }
}

/// `log Σ e^(x − m) + m` of every row of `n` elements of `src` into `dst` (one per row), as
/// `Tensor::logsumexp` composes it. **Panics** unless `src.len() = n·dst.len()`, `n > 0`.
#[track_caller]
pub(crate) fn logsumexp_rows<T: Element>(src: &[T], n: usize, dst: &mut [T]) {
    logsumexp_rows_at(Isa::best(), src, n, dst)
}

#[track_caller]
pub(crate) fn logsumexp_rows_at<T: Element>(level: Isa, src: &[T], n: usize, dst: &mut [T]) {
    assert!(n > 0 && src.len() == n * dst.len(), "vmath::logsumexp_rows: bad lengths");
    if let (Some(s), Some(d)) = (same::<T, f32>(src), same_mut::<T, f32>(dst)) {
        logsumexp_rows_f32(level, s, n, d)
    } else if let (Some(s), Some(d)) = (same::<T, f64>(src), same_mut::<T, f64>(dst)) {
        logsumexp_rows_f64(level, s, n, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_gives_the_same_bits_on_every_level_and_the_order_of_its_definition() {
        let mut rng = crate::Rng::new(7);
        for n in [0usize, 1, 31, 32, 33, 255, 256, 1000, 4099] {
            let x32: Vec<f32> = (0..n).map(|_| rng.normal() as f32 * 1e3).collect();
            let x64: Vec<f64> = (0..n).map(|_| rng.normal() * 1e3).collect();
            // The definition, written out: lane k adds k, k + 32, …; a fixed tree; the tail.
            let whole = n / 32 * 32;
            let mut lanes = [0f64; 32];
            for (i, &v) in x64[..whole].iter().enumerate() {
                lanes[i % 32] += v;
            }
            let mut w = 32;
            while w > 1 {
                w /= 2;
                for k in 0..w {
                    lanes[k] += lanes[k + w];
                }
            }
            let want = x64[whole..].iter().fold(lanes[0], |a, &v| a + v);
            for level in Isa::available() {
                assert_eq!(sum_at(level, &x64).to_bits(), want.to_bits(), "f64, n = {n}, {}", level.name());
                assert_eq!(sum_at(level, &x32).to_bits(), sum_imp(&x32).to_bits(), "f32, n = {n}, {}", level.name());
            }
        }
    }

    /// Position of `x` in the ordered sequence of representable values (±0 both 0).
    fn ord32(x: f32) -> i64 {
        let b = x.to_bits();
        if b >> 31 == 1 {
            -((b & 0x7fff_ffff) as i64)
        } else {
            b as i64
        }
    }
    fn ord64(x: f64) -> i128 {
        let b = x.to_bits();
        if b >> 63 == 1 {
            -((b & 0x7fff_ffff_ffff_ffff) as i128)
        } else {
            b as i128
        }
    }
    /// Ulps between two results; NaN is 0 from NaN and infinitely far from anything else.
    fn ulps32(a: f32, b: f32) -> u64 {
        match (a.is_nan(), b.is_nan()) {
            (true, true) => 0,
            (false, false) => (ord32(a) - ord32(b)).unsigned_abs(),
            _ => u64::MAX,
        }
    }
    fn ulps64(a: f64, b: f64) -> u64 {
        match (a.is_nan(), b.is_nan()) {
            (true, true) => 0,
            (false, false) => (ord64(a) - ord64(b)).unsigned_abs().min(u64::MAX as u128) as u64,
            _ => u64::MAX,
        }
    }

    /// Worst distance of `f` over `xs` from `reference`: (ulps, input, got, want).
    fn worst32(f: Unary, xs: &[f32], reference: impl Fn(f32) -> f32) -> (u64, f32, f32, f32) {
        let mut got = vec![0f32; xs.len()];
        map_slice(f, xs, &mut got);
        let mut w = (0, 0.0, 0.0, 0.0);
        for (&x, &g) in xs.iter().zip(&got) {
            let r = reference(x);
            let d = ulps32(g, r);
            if d > w.0 {
                w = (d, x, g, r);
            }
        }
        w
    }
    fn worst64(f: Unary, xs: &[f64], reference: impl Fn(f64) -> f64) -> (u64, f64, f64, f64) {
        let mut got = vec![0f64; xs.len()];
        map_slice(f, xs, &mut got);
        let mut w = (0, 0.0, 0.0, 0.0);
        for (&x, &g) in xs.iter().zip(&got) {
            let r = reference(x);
            let d = ulps64(g, r);
            if d > w.0 {
                w = (d, x, g, r);
            }
        }
        w
    }

    /// 2^20 f32 inputs spread over all bit patterns (a stride of 4096 with a varying
    /// offset), then `dense` runs of consecutive patterns around each of `around`.
    fn inputs32(around: &[f32]) -> Vec<f32> {
        let n: u32 = if cfg!(debug_assertions) { 1 << 14 } else { 1 << 20 };
        let step = (1u64 << 32) / n as u64;
        let mut v: Vec<f32> =
            (0..n as u64).map(|i| f32::from_bits((i * step + (i.wrapping_mul(2_654_435_761) % step)) as u32)).collect();
        let dense: i64 = if cfg!(debug_assertions) { 1 << 8 } else { 1 << 13 };
        for &a in around {
            for d in -dense..=dense {
                v.push(f32::from_bits((a.to_bits() as i64 + d) as u32));
            }
        }
        v.extend(specials32());
        v
    }
    fn specials32() -> Vec<f32> {
        let mut v = vec![
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
            1e-45,
            -1e-45,
            1.0,
            -1.0,
        ];
        v.extend((-200..=200).map(|i| i as f32 * 0.5));
        v
    }

    /// f64 inputs: random bit patterns, random values in `range`, consecutive patterns
    /// around each of `around`, and the specials.
    fn inputs64(range: (f64, f64), around: &[f64]) -> Vec<f64> {
        let n = if cfg!(debug_assertions) { 1 << 13 } else { 1 << 18 };
        let mut rng = crate::Rng::new(11);
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(f64::from_bits(rng.next_u64()));
            v.push(range.0 + (range.1 - range.0) * rng.uniform());
        }
        // Near multiples of ln2/2, where the reduction switches n.
        for k in -2200..2200 {
            let c = k as f64 * std::f64::consts::LN_2 / 2.0;
            for d in -2..=2 {
                v.push(f64::from_bits((c.to_bits() as i64 + d) as u64));
            }
        }
        let dense: i64 = if cfg!(debug_assertions) { 1 << 8 } else { 1 << 12 };
        for &a in around {
            for d in -dense..=dense {
                v.push(f64::from_bits((a.to_bits() as i64 + d) as u64));
            }
        }
        let mut s = vec![
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            5e-324,
            -5e-324,
        ];
        s.extend((-300..=300).map(|i| i as f64 * 0.25));
        s.extend((-60..=60).map(|i| 2f64.powi(i)));
        s.extend((-60..=60).map(|i| -(2f64.powi(i))));
        v.extend(s);
        v
    }

    fn bound(name: &str) -> (u64, u64) {
        let b = ERROR_BOUNDS.iter().find(|b| b.0 == name).expect("a bound for every function");
        (b.1 as u64, b.2 as u64)
    }

    /// Asserts the f32 bound of `name` for `f` against `reference` over the sample set.
    fn check32(name: &str, f: Unary, reference: impl Fn(f32) -> f32, around: &[f32]) {
        let w = worst32(f, &inputs32(around), reference);
        let b = bound(name).0;
        assert!(w.0 <= b, "f32 {name}: {} ulp (bound {b}) at x = {:e}: got {:e}, reference {:e}", w.0, w.1, w.2, w.3);
    }
    fn check64(name: &str, f: Unary, reference: impl Fn(f64) -> f64, range: (f64, f64), around: &[f64]) {
        let w = worst64(f, &inputs64(range, around), reference);
        let b = bound(name).1;
        assert!(w.0 <= b, "f64 {name}: {} ulp (bound {b}) at x = {:e}: got {:e}, reference {:e}", w.0, w.1, w.2, w.3);
    }

    fn e32(f: Unary, x: f32) -> f32 {
        eval(f, x)
    }
    fn e64(f: Unary, x: f64) -> f64 {
        eval(f, x)
    }

    /// The libm formulas the composite kernels replace (the engine's previous definitions).
    fn sigmoid_ref(x: f64) -> f64 {
        crate::kernels::elementwise::sigmoid(x)
    }
    fn softplus_ref(x: f64) -> f64 {
        crate::kernels::elementwise::softplus(x)
    }

    // Thresholds: exp overflows above these, its result is subnormal below the first
    // underflow value and 0 below the second.
    const OVER32: f32 = 88.722_84;
    const SUB32: f32 = -87.336_55;
    const ZERO32: f32 = -103.972_08;
    const OVER64: f64 = 709.782_712_893_384;
    const SUB64: f64 = -708.396_418_532_264_1;
    const ZERO64: f64 = -745.133_219_101_941_1;
    const HALF_LN2: f64 = 0.346_573_590_279_972_64;

    #[test]
    fn exp_is_within_one_ulp_of_libm() {
        check32("exp", Unary::Exp, f32::exp, &[OVER32, SUB32, ZERO32, 0.0, -0.0, HALF_LN2 as f32]);
        check64("exp", Unary::Exp, f64::exp, (-750.0, 750.0), &[OVER64, SUB64, ZERO64, 0.0, HALF_LN2]);
    }

    /// The neighbours of a finite, nonzero float (`next_up` / `next_down` are stable only from
    /// Rust 1.86; the workspace's minimum is 1.85).
    trait Ulp: Sized {
        fn ulp_up(self) -> Self;
        fn ulp_down(self) -> Self;
    }
    macro_rules! ulp {
        ($f:ty) => {
            impl Ulp for $f {
                fn ulp_up(self) -> $f {
                    assert!(self.is_finite() && self != 0.0, "ulp_up({self})");
                    <$f>::from_bits(if self > 0.0 { self.to_bits() + 1 } else { self.to_bits() - 1 })
                }
                fn ulp_down(self) -> $f {
                    -(-self).ulp_up()
                }
            }
        };
    }
    ulp!(f32);
    ulp!(f64);

    #[test]
    fn exp_special_values_and_thresholds() {
        for (x, want) in [(0.0, 1.0), (-0.0, 1.0), (f32::INFINITY, f32::INFINITY), (f32::NEG_INFINITY, 0.0)] {
            assert_eq!(e32(Unary::Exp, x).to_bits(), f32::to_bits(want), "exp({x})");
        }
        assert!(e32(Unary::Exp, f32::NAN).is_nan() && e64(Unary::Exp, f64::NAN).is_nan());
        assert_eq!(e64(Unary::Exp, f64::NEG_INFINITY), 0.0);
        assert_eq!(e64(Unary::Exp, f64::INFINITY), f64::INFINITY);
        // Overflow at exactly libm's threshold: the largest input with a finite result is the
        // same, and its result is within 1 ulp.
        let last32 = f32::from_bits(0x42b1_7217); // 88.72283
        assert!(f32::exp(last32).is_finite() && f32::exp(last32.ulp_up()).is_infinite());
        assert!(e32(Unary::Exp, last32).is_finite() && e32(Unary::Exp, last32.ulp_up()).is_infinite());
        let last64 = OVER64;
        assert!(f64::exp(last64).is_finite() && f64::exp(last64.ulp_up()).is_infinite());
        assert!(e64(Unary::Exp, last64).is_finite() && e64(Unary::Exp, last64.ulp_up()).is_infinite());
        // Subnormal results, then 0, at the same inputs as libm (checked over dense sweeps).
        let first_zero32 = |f: &dyn Fn(f32) -> f32| {
            let mut x = -80.0f32;
            while f(x) != 0.0 {
                x = x.ulp_down();
            }
            x
        };
        assert_eq!(first_zero32(&|x| e32(Unary::Exp, x)), first_zero32(&f32::exp), "f32 underflow to 0");
        let y = e32(Unary::Exp, -90.0);
        assert!(y > 0.0 && y < f32::MIN_POSITIVE);
        let y = e64(Unary::Exp, -720.0);
        assert!(y > 0.0 && y < f64::MIN_POSITIVE);
        let mut x = ZERO64 + 1e-9;
        for _ in 0..4096 {
            assert_eq!(e64(Unary::Exp, x) == 0.0, f64::exp(x) == 0.0, "f64 underflow to 0 at {x:e}");
            x = x.ulp_down();
        }
        // Subnormal inputs: e^x rounds to 1.
        assert_eq!(e32(Unary::Exp, 1e-45), 1.0);
        assert_eq!(e64(Unary::Exp, -5e-324), 1.0);
    }

    #[test]
    fn expm1_is_within_one_ulp_of_libm() {
        check32("expm1", Unary::Expm1, f32::exp_m1, &[OVER32, 0.0, HALF_LN2 as f32, -HALF_LN2 as f32]);
        check64("expm1", Unary::Expm1, f64::exp_m1, (-50.0, 50.0), &[OVER64, 0.0, HALF_LN2, -HALF_LN2, 3.0 * HALF_LN2]);
        assert_eq!(e32(Unary::Expm1, -0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(e64(Unary::Expm1, -0.0).to_bits(), (-0.0f64).to_bits());
        assert_eq!(e64(Unary::Expm1, f64::NEG_INFINITY), -1.0);
        assert_eq!(e32(Unary::Expm1, f32::INFINITY), f32::INFINITY);
        assert_eq!(e64(Unary::Expm1, 5e-324), 5e-324);
        assert!(e64(Unary::Expm1, OVER64).is_finite() && e64(Unary::Expm1, OVER64.ulp_up()).is_infinite());
        assert!(e64(Unary::Expm1, f64::NAN).is_nan());
    }

    #[test]
    fn log_is_within_one_ulp_of_libm() {
        let (sq, isq) = (std::f64::consts::SQRT_2, std::f64::consts::FRAC_1_SQRT_2);
        check32("log", Unary::Log, f32::ln, &[1.0, sq as f32, isq as f32, f32::MIN_POSITIVE, 2.0]);
        check64("log", Unary::Log, f64::ln, (0.0, 4.0), &[1.0, sq, isq, f64::MIN_POSITIVE, 2.0]);
        for x in [0.0f32, -0.0] {
            assert_eq!(e32(Unary::Log, x), f32::NEG_INFINITY);
            assert_eq!(e64(Unary::Log, x as f64), f64::NEG_INFINITY);
        }
        for x in [-1.0, -1e-30, f64::NEG_INFINITY, -5e-324, f64::NAN] {
            assert!(e64(Unary::Log, x).is_nan(), "log({x})");
        }
        for x in [-1.0, -1e-30, f32::NEG_INFINITY, -1e-45, f32::NAN] {
            assert!(e32(Unary::Log, x).is_nan(), "log({x})");
        }
        assert_eq!(e32(Unary::Log, f32::INFINITY), f32::INFINITY);
        assert_eq!(e64(Unary::Log, f64::INFINITY), f64::INFINITY);
        assert_eq!(e64(Unary::Log, 1.0).to_bits(), 0);
        assert_eq!(e32(Unary::Log, 1.0).to_bits(), 0);
        // Subnormal inputs.
        assert!(ulps64(e64(Unary::Log, 5e-324), (5e-324f64).ln()) <= 1);
        assert!(ulps32(e32(Unary::Log, 1e-45), (1e-45f32).ln()) <= 1);
    }

    /// The f32 `log`, `sigmoid` and `exp` slice kernels take blocks of 64 plain inputs (`log`:
    /// positive, finite, normal; the others: `|x| < 80`) without the special cases' selects:
    /// every element, in such a block or in a block with one input that is not plain (zero,
    /// subnormal, infinite, NaN, negative, beyond ±80) in any position, has the bits of the
    /// scalar definition, on every level.
    #[test]
    fn block_paths_give_the_bits_of_the_scalar_definitions() {
        type Case = (Unary, fn(f32) -> f32, Vec<f32>);
        let mut rng = crate::Rng::new(17);
        let n = 64 * 40 + 13;
        let positive: Vec<f32> =
            (0..n).map(|_| (rng.uniform_in(-87.0, 88.0) as f32).exp() * rng.uniform_in(0.5, 1.5) as f32).collect();
        let either: Vec<f32> = (0..n).map(|_| rng.uniform_in(-79.99, 79.99) as f32).collect();
        let cases: [Case; 2] = [(Unary::Log, log_f32, positive), (Unary::Sigmoid, sigmoid_f32, either)];
        let specials = [
            0.0,
            -0.0,
            1e-45,
            1e-39,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::INFINITY,
            f32::NAN,
            -1.0,
            f32::NEG_INFINITY,
            80.0,
            -80.0,
            -87.5,
            -100.0,
            88.8,
            -f32::NAN,
        ];
        for (f, def, mut x) in cases {
            for (b, &v) in specials.iter().enumerate() {
                x[64 * (2 * b + 1) + (b * 13) % 64] = v;
            }
            x[n - 3] = 1e-40;
            for l in Isa::available() {
                let mut o = vec![MaybeUninit::uninit(); n];
                map_uninit_at(l, f, &x, &mut o);
                for (i, (&xi, oi)) in x.iter().zip(&o).enumerate() {
                    let got = unsafe { oi.assume_init() };
                    let want = def(xi);
                    assert!(
                        got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                        "{}: {f:?}({xi:e}) at {i} is {got:e}, its definition {want:e}",
                        l.name()
                    );
                }
            }
        }
    }

    #[test]
    fn log1p_is_within_one_ulp_of_libm() {
        check32("log1p", Unary::Log1p, f32::ln_1p, &[-1.0, 0.0, -0.292_893_22, 0.414_213_57, 1.0]);
        check64(
            "log1p",
            Unary::Log1p,
            f64::ln_1p,
            (-1.0, 4.0),
            &[-1.0, 0.0, -0.292_893_218_813_452_4, 0.414_213_562_373_095_1, 1.0],
        );
        assert_eq!(e64(Unary::Log1p, -1.0), f64::NEG_INFINITY);
        assert_eq!(e32(Unary::Log1p, -1.0), f32::NEG_INFINITY);
        assert!(e64(Unary::Log1p, -1.5).is_nan() && e32(Unary::Log1p, f32::NEG_INFINITY).is_nan());
        assert_eq!(e64(Unary::Log1p, -0.0).to_bits(), (-0.0f64).to_bits());
        assert_eq!(e64(Unary::Log1p, f64::INFINITY), f64::INFINITY);
        assert_eq!(e64(Unary::Log1p, 1e-300), 1e-300);
    }

    #[test]
    fn sigmoid_is_within_its_bounds() {
        let r32 = |x: f32| sigmoid_ref(x as f64) as f32;
        check32("sigmoid", Unary::Sigmoid, r32, &[0.0, 16.635_532, SUB32, ZERO32, -HALF_LN2 as f32]);
        check64("sigmoid", Unary::Sigmoid, sigmoid_ref, (-40.0, 40.0), &[0.0, 36.736_800_569_677_1, SUB64, ZERO64]);
        // Saturation and the limits.
        // 1 − e^−x rounds to 1 in f32 from x ≈ 17.33 on, in f64 from x ≈ 36.74 on.
        assert_eq!(e32(Unary::Sigmoid, 17.0), 1.0 - f32::EPSILON / 2.0);
        assert_eq!((e32(Unary::Sigmoid, 17.5), e32(Unary::Sigmoid, f32::INFINITY)), (1.0, 1.0));
        assert_eq!((e64(Unary::Sigmoid, 37.0), e64(Unary::Sigmoid, f64::INFINITY)), (1.0, 1.0));
        assert_eq!((e32(Unary::Sigmoid, -104.0), e64(Unary::Sigmoid, f64::NEG_INFINITY)), (0.0, 0.0));
        assert_eq!(e64(Unary::Sigmoid, 0.0), 0.5);
        let y = e32(Unary::Sigmoid, -90.0); // subnormal output
        assert!(y > 0.0 && y < f32::MIN_POSITIVE && ulps32(y, r32(-90.0)) <= 1);
        assert!(e32(Unary::Sigmoid, f32::NAN).is_nan() && e64(Unary::Sigmoid, f64::NAN).is_nan());
    }

    #[test]
    fn tanh_is_within_its_bounds() {
        let r32 = |x: f32| (x as f64).tanh() as f32;
        check32("tanh", Unary::Tanh, r32, &[0.0, 1.0, -1.0, 0.55, 9.010_913]);
        // Against glibc's f32 `tanhf` (itself 2 ulp off in places): 2 ulp.
        let w = worst32(Unary::Tanh, &inputs32(&[0.0, 1.0, -1.0]), f32::tanh);
        assert!(w.0 <= 2, "f32 tanh vs tanhf: {} ulp at {:e}", w.0, w.1);
        check64("tanh", Unary::Tanh, f64::tanh, (-25.0, 25.0), &[0.0, 1.0, -1.0, 0.55, 19.061_547_465_398_5, 22.0]);
        for x in [0.0f32, -0.0, 1e-45, -1e-45, 1e-30] {
            assert_eq!(e32(Unary::Tanh, x).to_bits(), x.to_bits(), "tanh({x:e})");
            assert_eq!(e64(Unary::Tanh, x as f64).to_bits(), (x as f64).to_bits(), "tanh({x:e})");
        }
        assert_eq!((e32(Unary::Tanh, 9.1), e32(Unary::Tanh, -f32::INFINITY)), (1.0, -1.0));
        assert_eq!((e64(Unary::Tanh, 19.1), e64(Unary::Tanh, -1e300)), (1.0, -1.0));
        assert!(e32(Unary::Tanh, f32::NAN).is_nan() && e64(Unary::Tanh, f64::NAN).is_nan());
    }

    #[test]
    fn softplus_is_within_its_bounds() {
        let r32 = |x: f32| softplus_ref(x as f64) as f32;
        check32("softplus", Unary::Softplus, r32, &[0.0, SUB32, ZERO32, 16.635_532]);
        check64("softplus", Unary::Softplus, softplus_ref, (-40.0, 40.0), &[0.0, SUB64, ZERO64, 36.736_800_569_677_1]);
        assert_eq!(
            (e32(Unary::Softplus, f32::NEG_INFINITY), e32(Unary::Softplus, f32::INFINITY)),
            (0.0, f32::INFINITY)
        );
        assert_eq!((e64(Unary::Softplus, 1e3), e64(Unary::Softplus, -1e3)), (1e3, 0.0));
        let y = e64(Unary::Softplus, -720.0); // subnormal output
        assert!(y > 0.0 && y < f64::MIN_POSITIVE && ulps64(y, softplus_ref(-720.0)) <= 1);
        assert!(e32(Unary::Softplus, f32::NAN).is_nan() && e64(Unary::Softplus, f64::NAN).is_nan());
    }

    #[test]
    fn elu_is_within_its_bounds() {
        for a in [1.0, 0.5] {
            let r32 = |x: f32| if x > 0.0 { x } else { (a as f32 as f64 * (x as f64).exp_m1()) as f32 };
            check32("elu", Unary::Elu(a), r32, &[0.0, -HALF_LN2 as f32]);
            let r64 = |x: f64| if x > 0.0 { x } else { a * x.exp_m1() };
            check64("elu", Unary::Elu(a), r64, (-40.0, 40.0), &[0.0, -HALF_LN2]);
            assert_eq!(e64(Unary::Elu(a), f64::NEG_INFINITY), -a);
            assert_eq!(e32(Unary::Elu(a), 3.5), 3.5);
        }
        assert_eq!(e64(Unary::Elu(1.0), -0.0).to_bits(), (-0.0f64).to_bits());
        assert!(e32(Unary::Elu(1.0), f32::NAN).is_nan());
    }

    fn all_unary() -> [Unary; 8] {
        [
            Unary::Exp,
            Unary::Expm1,
            Unary::Log,
            Unary::Log1p,
            Unary::Sigmoid,
            Unary::Tanh,
            Unary::Softplus,
            Unary::Elu(0.3),
        ]
    }

    /// Every instruction-set build gives the same bits as every other, for every function,
    /// in every position of a slice (vector body and scalar remainder).
    #[test]
    fn every_level_gives_the_same_bits() {
        let levels = Isa::available();
        let mut x32: Vec<f32> = inputs32(&[OVER32, SUB32, ZERO32, 0.0]).into_iter().step_by(7).collect();
        x32.truncate(50_003);
        let mut x64 = inputs64((-40.0, 40.0), &[OVER64, SUB64, ZERO64]);
        x64.truncate(50_003);
        for f in all_unary() {
            let run32 = |l: Isa| {
                let mut o = vec![MaybeUninit::uninit(); x32.len()];
                map_uninit_at(l, f, &x32, &mut o);
                o.into_iter().map(|v| unsafe { v.assume_init() }.to_bits()).collect::<Vec<_>>()
            };
            let run64 = |l: Isa| {
                let mut o = vec![MaybeUninit::uninit(); x64.len()];
                map_uninit_at(l, f, &x64, &mut o);
                o.into_iter().map(|v| unsafe { v.assume_init() }.to_bits()).collect::<Vec<_>>()
            };
            let (w32, w64) = (run32(levels[0]), run64(levels[0]));
            for &l in &levels[1..] {
                assert!(run32(l) == w32, "{f:?} f32: {} differs from {}", l.name(), levels[0].name());
                assert!(run64(l) == w64, "{f:?} f64: {} differs from {}", l.name(), levels[0].name());
            }
            // Position independence: element i alone gives the bits it got inside the slice.
            for i in (0..x32.len()).step_by(997) {
                assert_eq!(e32(f, x32[i]).to_bits(), w32[i], "{f:?} f32 at {}", x32[i]);
                assert_eq!(e64(f, x64[i]).to_bits(), w64[i], "{f:?} f64 at {}", x64[i]);
            }
        }
        eprintln!("vmath levels on this CPU: {:?}", levels.iter().map(|l| l.name()).collect::<Vec<_>>());
    }

    // ------------------------------------------------------------ row kernels

    /// The naive extreme: the first NaN, else the first element strictly better than all
    /// before it.
    fn naive_extreme<T: Element>(s: &[T], is_max: bool) -> (T, usize) {
        let mut best = (s[0], 0);
        for (i, &x) in s.iter().enumerate().skip(1) {
            if best.0.is_nan() {
                break;
            }
            if x.is_nan() || (is_max && x > best.0) || (!is_max && x < best.0) {
                best = (x, i);
            }
        }
        best
    }

    fn rows_under_test<T: Element>(rng: &mut crate::Rng) -> Vec<Vec<T>> {
        let mut rows = Vec::new();
        for n in [1usize, 2, 3, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000] {
            let base: Vec<T> = (0..n).map(|_| T::of(rng.normal() * 3.0)).collect();
            rows.push(base.clone());
            for p in [0, n / 2, n - 1] {
                for v in [T::nan(), T::infinity(), T::neg_infinity(), T::zero(), -T::zero()] {
                    let mut r = base.clone();
                    r[p] = v;
                    rows.push(r);
                }
            }
            let mut two_nans = base.clone();
            two_nans[n - 1] = T::nan();
            two_nans[n / 3] = -T::nan();
            rows.push(two_nans);
            rows.push(vec![T::neg_infinity(); n]);
            rows.push(vec![T::infinity(); n]);
            rows.push(vec![T::nan(); n]);
            // Signed-zero ties: the first zero decides which zero the maximum is.
            rows.push((0..n).map(|i| if i % 2 == 0 { -T::zero() } else { T::zero() }).collect());
            rows.push((0..n).map(|i| if i % 3 == 2 { -T::zero() } else { -T::one() }).collect());
            // A repeated maximum: the first position wins.
            rows.push((0..n).map(|i| T::of((i % 5) as f64)).collect());
        }
        rows
    }

    fn extreme_matches_naive<T: Element>() {
        let mut rng = crate::Rng::new(21);
        for row in rows_under_test::<T>(&mut rng) {
            for is_max in [true, false] {
                let want = naive_extreme(&row, is_max);
                for l in Isa::available() {
                    let (v, i) = extreme_at(l, &row, is_max, true);
                    assert_eq!(
                        (bytemuck::bytes_of(&v), i),
                        (bytemuck::bytes_of(&want.0), want.1),
                        "{row:?} max {is_max} {l:?}"
                    );
                    let (v, _) = extreme_at(l, &row, is_max, false);
                    assert_eq!(bytemuck::bytes_of(&v), bytemuck::bytes_of(&want.0), "{row:?} value only");
                }
            }
        }
    }

    #[test]
    fn row_extremes_match_the_single_row_kernel() {
        let mut rng = crate::Rng::new(24);
        for n in [1usize, 3, 17, 32, 33, 1000] {
            let rows = rows_under_test::<f32>(&mut rng).into_iter().filter(|r| r.len() == n).collect::<Vec<_>>();
            let src: Vec<f32> = rows.concat();
            for is_max in [true, false] {
                for l in Isa::available() {
                    let (mut v, mut i) = (vec![0f32; rows.len()], vec![0usize; rows.len()]);
                    extreme_rows_at(l, &src, n, is_max, true, &mut v, &mut i);
                    for (r, row) in rows.iter().enumerate() {
                        let want = naive_extreme(row, is_max);
                        assert_eq!((v[r].to_bits(), i[r]), (want.0.to_bits(), want.1), "n = {n}, row {r}, {l:?}");
                    }
                    let mut v2 = vec![0f32; rows.len()];
                    extreme_rows_at(l, &src, n, is_max, false, &mut v2, &mut []);
                    assert!(v2.iter().zip(&v).all(|(a, b)| a.to_bits() == b.to_bits()), "values only, n = {n}");
                }
            }
        }
    }

    #[test]
    fn max_and_argmax_match_the_naive_fold() {
        extreme_matches_naive::<f32>();
        extreme_matches_naive::<f64>();
    }

    /// `v` as a destination for the kernels that take `MaybeUninit` (they only write valid
    /// values into it).
    fn as_out<T>(v: &mut [T]) -> &mut [MaybeUninit<T>] {
        // SAFETY: `MaybeUninit<T>` has the layout of `T`, and every value written through it is
        // a valid `T`.
        unsafe { &mut *(v as *mut [T] as *mut [MaybeUninit<T>]) }
    }

    fn fused_sums_match_sum_run<T: Element>() {
        let mut rng = crate::Rng::new(22);
        for n in [1usize, 5, 31, 32, 33, 100, 1000, PAR_CHUNK, PAR_CHUNK + 1, 3 * PAR_CHUNK + 17] {
            let x: Vec<T> = (0..n).map(|_| T::of(rng.normal() * 4.0)).collect();
            let shift = T::of(0.75);
            let e: Vec<T> = x.iter().map(|&v| eval(Unary::Exp, v - shift)).collect();
            let want = crate::kernels::reduce::sum_run(&e);
            let mut stored = vec![T::zero(); n];
            let (a, b) = if let Some(x) = same::<T, f32>(&x) {
                let st = same_mut::<T, f32>(&mut stored).unwrap();
                (
                    T::of(exp_sum::<f32, false>(x, 0.75, &mut []) as f64),
                    T::of(exp_sum::<f32, true>(x, 0.75, as_out(st)) as f64),
                )
            } else {
                let x = same::<T, f64>(&x).unwrap();
                let st = same_mut::<T, f64>(&mut stored).unwrap();
                (T::of(exp_sum::<f64, false>(x, 0.75, &mut [])), T::of(exp_sum::<f64, true>(x, 0.75, as_out(st))))
            };
            assert_eq!((a, b), (want, want), "n = {n}");
            assert!(bytemuck::cast_slice::<T, u8>(&stored) == bytemuck::cast_slice::<T, u8>(&e), "n = {n}");
        }
    }

    #[test]
    fn fused_exp_sums_add_in_the_order_of_sum_run() {
        fused_sums_match_sum_run::<f32>();
        fused_sums_match_sum_run::<f64>();
    }

    #[test]
    fn row_kernels_give_the_same_bits_on_every_level() {
        let mut rng = crate::Rng::new(23);
        for n in [1usize, 3, 17, 33, 1000] {
            let x: Vec<f32> =
                (0..7 * n).map(|i| if i % 11 == 3 { f32::NEG_INFINITY } else { rng.normal() as f32 * 9.0 }).collect();
            let runs = |l: Isa| {
                let (mut s, mut ls, mut lse) = (vec![0f32; x.len()], vec![0f32; x.len()], vec![0f32; 7]);
                softmax_rows_at(l, &x, as_out(&mut s), n, false);
                softmax_rows_at(l, &x, as_out(&mut ls), n, true);
                logsumexp_rows_at(l, &x, n, &mut lse);
                [s, ls, lse].map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
            };
            let first = runs(Isa::available()[0]);
            for l in Isa::available() {
                assert!(runs(l) == first, "n = {n}, {l:?}");
            }
        }
    }
}

#[cfg(test)]
mod exhaustive {
    use super::*;
    use rayon::prelude::*;

    fn ord32(x: f32) -> i64 {
        let b = x.to_bits();
        if b >> 31 == 1 {
            -((b & 0x7fff_ffff) as i64)
        } else {
            b as i64
        }
    }

    /// All 2^32 f32 inputs of every f32 function against its reference (minutes; run by hand:
    /// `cargo test --release -p sparsegrad-engine --lib exhaustive -- --ignored --nocapture`,
    /// with `VMATH_ONLY=<name>` to run the cases whose name contains it). Prints the largest
    /// distance per case and fails if one exceeds its bound.
    #[test]
    #[ignore]
    fn every_f32_input() {
        let sig = |x: f32| {
            let x = x as f64;
            (if x >= 0.0 { 1.0 / (1.0 + (-x).exp()) } else { x.exp() / (1.0 + x.exp()) }) as f32
        };
        let sp = |x: f32| {
            let x = x as f64;
            (if x > 0.0 { x + (-x).exp().ln_1p() } else { x.exp().ln_1p() }) as f32
        };
        type Case = (&'static str, Unary, Box<dyn Fn(f32) -> f32 + Sync>);
        let cases: Vec<Case> = vec![
            ("exp vs f32::exp", Unary::Exp, Box::new(f32::exp)),
            ("log vs f32::ln", Unary::Log, Box::new(f32::ln)),
            ("expm1 vs f32::exp_m1", Unary::Expm1, Box::new(f32::exp_m1)),
            ("log1p vs f32::ln_1p", Unary::Log1p, Box::new(f32::ln_1p)),
            ("tanh vs f32::tanh", Unary::Tanh, Box::new(f32::tanh)),
            ("tanh vs f64::tanh as f32", Unary::Tanh, Box::new(|x: f32| (x as f64).tanh() as f32)),
            ("sigmoid vs f64 formula", Unary::Sigmoid, Box::new(sig)),
            ("softplus vs f64 formula", Unary::Softplus, Box::new(sp)),
            (
                "elu(1) vs f64 exp_m1",
                Unary::Elu(1.0),
                Box::new(|x: f32| if x > 0.0 { x } else { (x as f64).exp_m1() as f32 }),
            ),
        ];
        let only = std::env::var("VMATH_ONLY").unwrap_or_default();
        for (name, f, r) in cases.iter().filter(|c| c.0.contains(only.as_str())) {
            let t0 = std::time::Instant::now();
            let (worst, at, ones) = (0u32..1 << 16)
                .into_par_iter()
                .map(|hi| {
                    let xs: Vec<f32> = (0..1u32 << 16).map(|lo| f32::from_bits(hi << 16 | lo)).collect();
                    let mut got = vec![0f32; xs.len()];
                    map_slice(*f, &xs, &mut got);
                    let mut w = (0u64, 0f32, 0u64);
                    for (&x, &g) in xs.iter().zip(&got) {
                        let want = r(x);
                        let d = match (g.is_nan(), want.is_nan()) {
                            (true, true) => 0,
                            (false, false) => (ord32(g) - ord32(want)).unsigned_abs(),
                            _ => u64::MAX,
                        };
                        if d > 0 {
                            w.2 += 1;
                        }
                        if d > w.0 {
                            w = (d, x, w.2);
                        }
                    }
                    w
                })
                .reduce(|| (0, 0.0, 0), |a, b| if b.0 > a.0 { (b.0, b.1, a.2 + b.2) } else { (a.0, a.1, a.2 + b.2) });
            eprintln!("{name:28} max {worst} ulp (at {at:e}), {ones} inputs differ, {:.0?}", t0.elapsed());
            let key = name.split(' ').next().unwrap_or("").split('(').next().unwrap_or("");
            let b = ERROR_BOUNDS.iter().find(|b| b.0 == key).map_or(0, |b| b.1) as u64;
            let b = if name.contains("f32::tanh") { 2 } else { b };
            assert!(worst <= b, "{name}: {worst} ulp, bound {b}");
        }
    }
}
