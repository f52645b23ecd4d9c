//! The spatial-contrasting loss (docs/math.md §5; Hoffer, Hubara & Ailon 2016), for anchor features
//! `a [N, d]` and positive features `p [N, d]` (row `i` of each comes from image `i`; any
//! strides):
//!
//! ```text
//! dist_ij = ‖a_i − p_j‖²   (Distance::Squared, the default)   or   ‖a_i − p_j‖   (Distance::Euclidean)
//! L(a, p) = −(1/N) Σ_i log( exp(−dist_ii) / Σ_j exp(−dist_ij) ) = (1/N) Σ_i [ dist_ii + log Σ_j exp(−dist_ij) ]
//! L_SC    = ½ (L(a, p) + L(p, a))   (symmetric, the paper's, the default)   or   L(a, p)   (one-sided)
//! ```
//!
//! `L(p, a)` uses `dist_ji`: its softmax runs down the columns of the same distance matrix.
//!
//! Two implementations with the same value and gradients:
//!
//! | function | tape | backward |
//! | --- | --- | --- |
//! | [`sc_loss_composed`] | `square`, `sum`, `matmul`, `log_softmax`, `diagonal`, … | the primitives' rules |
//! | [`sc_loss`] | one op, `sc_loss` | the analytic rule below: three GEMMs in all |
//!
//! The rule. With `S^r_ij = softmax_j(−dist_ij)` (rows) and `S^c_ij = softmax_i(−dist_ij)`
//! (columns), the weight of each distance is
//!
//! ```text
//! M_ij = ∂L/∂dist_ij = (δ_ij − S^r_ij) / N                          (one-sided)
//! M_ij = (2δ_ij − S^r_ij − S^c_ij) / (2N)                           (symmetric)
//! ```
//!
//! and with `K_ij = 2·M_ij` (squared, `∂dist_ij/∂a_i = 2(a_i − p_j)`) or `K_ij = M_ij / dist_ij`
//! (Euclidean, `∂dist_ij/∂a_i = (a_i − p_j)/dist_ij`; `K_ij = 0` where `dist_ij = 0`, the
//! minimum-norm subgradient of `‖·‖` at 0):
//!
//! ```text
//! ∂L/∂a_i =  Σ_j K_ij (a_i − p_j)   →   ∂L/∂A = diag(K·1)·A − K·P
//! ∂L/∂p_j = −Σ_i K_ij (a_i − p_j)   →   ∂L/∂P = diag(Kᵀ·1)·P − Kᵀ·A
//! ```
//!
//! The forward's GEMM is `A·Pᵀ`, the backward's `K·P` and `Kᵀ·A`.
//!
//! Numerics of the fused op (the composite has none of these refinements; the tests check that
//! both agree to 1e-12 in `f64` on ordinary inputs):
//!
//! * The distances come from the Gram form `|a_i|² + |p_j|² − 2 a_i·p_j`, which loses precision
//!   relative to the features' norms. The loss depends on differences only, so both the forward
//!   and the rule work on features centred on the mean `μ` of all `2N` rows: the error is then
//!   relative to the spread of the features, not to a common offset (features after a ReLU
//!   share a large positive mean). The rule's formula contains differences only, so centring
//!   changes no gradient.
//! * Each `dist_ii` is computed from `a_i − p_i` directly (exact zeros for coinciding pairs).
//!   For the Euclidean distance, where `√` amplifies the Gram form's error near 0, every pair
//!   closer than `(|ã_i|² + |p̃_j|²)/64` is recomputed directly, and its gradient term
//!   `K_ij (a_i − p_j)` is formed from that difference, not inside the GEMMs.
//! * Each softmax is shifted by its row's (column's) smallest distance, so its largest term is
//!   `exp(0) = 1`: nothing underflows to an empty sum, however large the distances.
//!   `1 − S_ii` is computed as `Σ_{j≠i} S_ij`, and `L_i = log1p(Σ_{j≠i} exp(dist_ii − dist_ij))`
//!   when `dist_ii` is the row's minimum, so a loss near 0 keeps its relative precision.
//! * In `f32` the exponentials use a vectorisable polynomial `exp` (Cephes' `expf` coefficients,
//!   within 2 ulp on the arguments used here, all ≤ 0); `f64` uses the standard library's.
//!
//! The result does not depend on the number of rayon threads: the forward GEMM is split by rows
//! at a multiple of 64, every row and column reduction runs in a fixed order on one thread.
//!
//! Speed (f32, N = 128, d = 256, one thread): the three GEMMs are about two thirds of the time.
//! matrixmultiply packs its operands by contiguous copies only when the left one is column-major
//! and the right one row-major, so the forward keeps the centred features in both layouts
//! (`[N, d]` and `[d, N]`, the latter by 8 × 8 AVX transposes) and the rule keeps `K` and `Kᵀ`.
//! The forward's element-wise passes are compiled for AVX-512F, AVX2 and the baseline, and
//! chosen at run time; all give the same bits. With two or more rayon threads, and GEMMs of at
//! least 2²⁴ multiply-adds (as the engine's), the forward GEMM is split in two and the
//! backward's two GEMMs run side by side. The op's `[N, d]` and `[N, N]` buffers are kept per
//! thread for the next call (`buffer`; at most 8 of them and 32 MiB): at N = 512 fresh ones
//! cost 7.1 ms per forward and backward against 5.0 ms reused (page faults; one thread,
//! 2026-12-02, AMD EPYC family 25). Three kinds of
//! `unsafe`, each with its argument: reinterpreting `[T]` as `[f32]` when `T` is `f32`, the AVX
//! transpose kernel, and calling the AVX2 and AVX-512F builds after detecting the feature.

use std::any::{Any, TypeId};
use std::cell::RefCell;

use autograd::{Backward, Var};
use engine::kernels::matmul::{gemm, MatRef};
use engine::kernels::simd::Isa;
use engine::{Element, Tensor};

/// Which distance the loss contrasts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Distance {
    /// `‖a_i − p_j‖²` (docs/math.md §5; the default).
    #[default]
    Squared,
    /// `‖a_i − p_j‖`, with the subgradient 0 where it is 0.
    Euclidean,
}

/// The options of the spatial-contrasting loss: the distance, and whether the loss is the
/// paper's symmetric average of both directions (default) or one-sided, `L(a, p)` alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScConfig {
    pub distance: Distance,
    pub symmetric: bool,
}

impl Default for ScConfig {
    fn default() -> Self {
        ScConfig { distance: Distance::Squared, symmetric: true }
    }
}

impl ScConfig {
    /// Squared distance, symmetric (the paper's loss).
    pub fn new() -> Self {
        Self::default()
    }
    pub fn distance(self, distance: Distance) -> Self {
        ScConfig { distance, ..self }
    }
    pub fn symmetric(self, symmetric: bool) -> Self {
        ScConfig { symmetric, ..self }
    }
    /// `L(a, p)` alone.
    pub fn one_sided(self) -> Self {
        self.symmetric(false)
    }
    /// A short description (`"squared, symmetric"`) for tables and bench labels.
    pub fn describe(&self) -> String {
        let d = match self.distance {
            Distance::Squared => "squared",
            Distance::Euclidean => "euclidean",
        };
        format!("{d}, {}", if self.symmetric { "symmetric" } else { "one-sided" })
    }
}

/// `(N, d)` of two feature matrices. **Panics** unless both are `[N, d]` with `N ≥ 1`.
#[track_caller]
fn check_features(op: &str, a: &[usize], p: &[usize]) -> (usize, usize) {
    assert!(a.len() == 2 && a == p, "{op}: anchors and positives must both be [N, d], got {a:?} and {p:?}");
    assert!(a[0] >= 1, "{op}: needs at least one pair of features, got {a:?}");
    (a[0], a[1])
}

// ---------------------------------------------------------------------------------------------
// The composite

/// `q_ij = ‖a_i − p_j‖²` `[N, N]` from tape ops, in the Gram form
/// `Σ_k a_ik² + Σ_k p_jk² − 2·(A·Pᵀ)_ij` (what PyTorch and JAX users write).
/// **Panics** unless `a` and `p` are matrices with the same number of columns.
#[track_caller]
pub fn pairwise_sq_dist<'t, T: Element>(a: &Var<'t, T>, p: &Var<'t, T>) -> Var<'t, T> {
    let (sa, sp) = (a.shape(), p.shape());
    assert!(
        sa.len() == 2 && sp.len() == 2 && sa[1] == sp[1],
        "pairwise_sq_dist: features must be [N, d] and [M, d], got {sa:?} and {sp:?}"
    );
    let na = a.square().sum(&[1], true); // [N, 1]
    let np = p.square().sum(&[1], false); // [M], broadcast over the rows
    na.add(&np).sub(&a.matmul(&p.t()).mul_scalar(2.0))
}

/// The spatial-contrasting loss built from tape ops only (see the module docs): the distances
/// of [`pairwise_sq_dist`] (clamped at 0 and square-rooted for [`Distance::Euclidean`]), then
/// `−mean(diagonal(log_softmax(−dist, 1)))`, averaged with the same down the columns when
/// symmetric. Rank-0 output. It needs no rule of its own; [`sc_loss`] is checked against it.
///
/// **Panics** unless `a` and `p` are both `[N, d]` with `N ≥ 1`.
#[track_caller]
pub fn sc_loss_composed<'t, T: Element>(a: &Var<'t, T>, p: &Var<'t, T>, cfg: ScConfig) -> Var<'t, T> {
    check_features("sc_loss_composed", &a.shape(), &p.shape());
    let q = pairwise_sq_dist(a, p);
    let dist = match cfg.distance {
        Distance::Squared => q,
        Distance::Euclidean => q.clamp(0.0, f64::INFINITY).sqrt(),
    };
    let logits = dist.neg();
    let rows = logits.log_softmax(1).diagonal().mean_all().neg();
    if !cfg.symmetric {
        return rows;
    }
    let cols = logits.log_softmax(0).diagonal().mean_all().neg();
    rows.add(&cols).mul_scalar(0.5)
}

// ---------------------------------------------------------------------------------------------
// Small kernels (fixed summation orders, so results never depend on threads)

/// Independent accumulators of the reductions: 32, four 8-wide vectors under AVX2, so that
/// consecutive additions do not wait for each other (with one vector the adds' latency, not
/// their throughput, bounds the loop).
const LANES: usize = 32;

/// Adds up `acc` in a fixed pairwise tree.
#[inline(always)]
fn combine<T: Element>(acc: &[T; LANES]) -> T {
    let mut h: [T; LANES / 2] = std::array::from_fn(|i| acc[i] + acc[i + LANES / 2]);
    let mut len = LANES / 2;
    while len > 1 {
        len /= 2;
        for i in 0..len {
            let v = h[i + len];
            h[i] += v;
        }
    }
    h[0]
}

/// `Σ_k f(x_k, y_k)` with [`LANES`] accumulators combined by [`combine`], then the remainder in
/// order (a fixed order: the result never depends on threads or on the instruction set).
#[inline(always)]
fn reduce2<T: Element>(x: &[T], y: &[T], f: impl Fn(T, T) -> T) -> T {
    let mut acc = [T::zero(); LANES];
    let (cx, cy) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let (rx, ry) = (cx.remainder(), cy.remainder());
    for (a, b) in cx.zip(cy) {
        for ((s, &u), &v) in acc.iter_mut().zip(a).zip(b) {
            *s += f(u, v);
        }
    }
    let mut s = combine(&acc);
    for (&u, &v) in rx.iter().zip(ry) {
        s += f(u, v);
    }
    s
}

/// Σ x.
#[inline(always)]
fn sum<T: Element>(x: &[T]) -> T {
    reduce2(x, x, |u, _| u)
}

/// ‖x − y‖², from the differences themselves.
#[inline(always)]
fn sq_diff<T: Element>(x: &[T], y: &[T]) -> T {
    reduce2(x, y, |u, v| (u - v) * (u - v))
}

/// The smallest element (NaN ignored; +∞ for an empty slice).
#[inline(always)]
fn min<T: Element>(x: &[T]) -> T {
    let mut acc = [T::infinity(); LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v < *a { v } else { *a };
        }
    }
    acc.iter().chain(rest).fold(T::infinity(), |m, &v| if v < m { v } else { m })
}

/// `x` as `&mut [f32]` when `T` is `f32`.
fn as_f32<T: Element>(x: &mut [T]) -> Option<&mut [f32]> {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: `T` is `f32` itself (same type, hence same size, alignment and validity).
        Some(unsafe { &mut *(x as *mut [T] as *mut [f32]) })
    } else {
        None
    }
}

/// `e^x` for `f32`, as Cephes' `expf`: `x = n·ln2 + r` with `|r| ≤ ln2/2` (Cody–Waite, `ln2`
/// in two parts), `e^r` by its degree-7 minimax polynomial, times `2ⁿ` built in the exponent
/// bits. Written without branches or calls so that a loop over it vectorises. Exact at 0;
/// arguments below `ln(f32::MIN_POSITIVE) ≈ −87.34` give 0 (where `f32::exp` gives a
/// subnormal, at most 1.2e-38); NaN stays NaN. Only used for `x ≤ 0` here (`2ⁿ` would
/// overflow the exponent field above `x ≈ 88.4`).
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 355.0 / 512.0; // 0.693359375: 9 significant bits, so n·LN2_HI is exact
    const LN2_LO: f32 = -2.121_944_4e-4;
    const LO: f32 = -87.336_55; // ln(f32::MIN_POSITIVE)
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer (|v| < 2²²)
    let xc = if x < LO { LO } else { x };
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND; // round(x·log2 e), exactly
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p =
        ((((1.987_569_2e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r + 0.5;
    let er = (p * r) * r + r + 1.0;
    // The low bits of `t` hold n: 2ⁿ has the exponent field n + 127.
    let scale = f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
    let y = er * scale;
    if x < LO {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// `out[j] = e^(s − x[j])` for every `j` (the `f32` fast path of [`exp_f32`], `T::exp`
/// otherwise).
#[inline(always)]
fn exp_shifted<T: Element>(out: &mut [T], s: T, x: &[T]) {
    if let (Some(o), Some(x), Some(&[s])) = (as_f32(out), as_f32_ref(x), as_f32_ref(&[s])) {
        for (o, &x) in o.iter_mut().zip(x) {
            *o = exp_f32(s - x);
        }
    } else {
        for (o, &x) in out.iter_mut().zip(x) {
            *o = (s - x).exp();
        }
    }
}

/// `out[j] = e^(s[j] − x[j])` for every `j`, as [`exp_shifted`].
#[inline(always)]
fn exp_shifted_each<T: Element>(out: &mut [T], s: &[T], x: &[T]) {
    if let (Some(o), Some(s), Some(x)) = (as_f32(out), as_f32_ref(s), as_f32_ref(x)) {
        for (o, (&s, &x)) in o.iter_mut().zip(s.iter().zip(x)) {
            *o = exp_f32(s - x);
        }
    } else {
        for (o, (&s, &x)) in out.iter_mut().zip(s.iter().zip(x)) {
            *o = (s - x).exp();
        }
    }
}

/// `x` as `&[f32]` when `T` is `f32`.
fn as_f32_ref<T: Element>(x: &[T]) -> Option<&[f32]> {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: `T` is `f32` itself (same type, hence same size, alignment and validity).
        Some(unsafe { &*(x as *const [T] as *const [f32]) })
    } else {
        None
    }
}

/// `t` ← the row-major `[cols, rows]` transpose of the row-major `[rows, cols]` matrix `x`, in
/// 8 × 8 blocks (AVX shuffles for `f32` when the CPU has AVX, [`block8`] otherwise), the edges
/// element by element. Only copies: the result does not depend on the path.
fn transpose_into<T: Element>(x: &[T], rows: usize, cols: usize, t: &mut [T]) {
    assert!(
        x.len() == rows * cols && t.len() == rows * cols,
        "transpose: {} and {} elements for [{rows}, {cols}]",
        x.len(),
        t.len()
    );
    let (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
    let avx = avx_f32::<T>();
    for c0 in (0..c8).step_by(8) {
        for r0 in (0..r8).step_by(8) {
            let src = &x[r0 * cols + c0..(r0 + 7) * cols + c0 + 8];
            let dst = &mut t[c0 * rows + r0..(c0 + 7) * rows + r0 + 8];
            #[cfg(target_arch = "x86_64")]
            if avx {
                // SAFETY: the CPU has AVX (`avx_f32`), `T` is `f32`, and `src` (`dst`) holds 8
                // rows of 8 elements `cols` (`rows`) apart: its length is 7·stride + 8.
                unsafe { avx::transpose8(src.as_ptr().cast(), cols, dst.as_mut_ptr().cast(), rows) };
                continue;
            }
            let _ = avx;
            block8(src, cols, dst, rows);
        }
    }
    for r in 0..rows {
        for c in if r < r8 { c8 } else { 0 }..cols {
            t[c * rows + r] = x[r * cols + c];
        }
    }
}

/// `dst[j·ds + i] = src[i·ss + j]` for an 8 × 8 block, through a local array (no bounds checks
/// in the loops, so the compiler keeps it in registers).
#[inline(always)]
fn block8<T: Element>(src: &[T], ss: usize, dst: &mut [T], ds: usize) {
    let mut b = [[T::zero(); 8]; 8];
    for (i, row) in b.iter_mut().enumerate() {
        row.copy_from_slice(&src[i * ss..i * ss + 8]);
    }
    for j in 0..8 {
        let col: [T; 8] = std::array::from_fn(|i| b[i][j]);
        dst[j * ds..j * ds + 8].copy_from_slice(&col);
    }
}

/// [`block8`] of `src − μ` (`mu` the block's 8 column means), also writing `src − μ` itself
/// into `rows` (same stride as `src`) when given.
#[inline(always)]
fn block8_centred<T: Element>(src: &[T], ss: usize, mu: &[T], rows: Option<&mut [T]>, dst: &mut [T], ds: usize) {
    let mut b = [[T::zero(); 8]; 8];
    for (i, row) in b.iter_mut().enumerate() {
        for ((o, &v), &m) in row.iter_mut().zip(&src[i * ss..i * ss + 8]).zip(mu) {
            *o = v - m;
        }
    }
    if let Some(r) = rows {
        for (i, row) in b.iter().enumerate() {
            r[i * ss..i * ss + 8].copy_from_slice(row);
        }
    }
    for j in 0..8 {
        let col: [T; 8] = std::array::from_fn(|i| b[i][j]);
        dst[j * ds..j * ds + 8].copy_from_slice(&col);
    }
}

/// True when `T` is `f32` and the CPU runs AVX2 ([`Isa::best`], the engine's one dispatch
/// enum; the [`avx`] kernels need only AVX, which AVX2 implies).
fn avx_f32<T: Element>() -> bool {
    cfg!(target_arch = "x86_64") && TypeId::of::<T>() == TypeId::of::<f32>() && Isa::best() >= Isa::Avx2
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    /// `dst[j·ds + i] = src[i·ss + j]` for `i, j < 8`: the 8 × 8 transpose in registers.
    ///
    /// # Safety
    /// The CPU has AVX; `src + i·ss + j` and `dst + j·ds + i` are valid for `i, j < 8` (reads
    /// and writes respectively) and the two ranges do not overlap.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn transpose8(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
        let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * ss)));
        store_transposed(r, dst, ds);
    }

    /// The centred block: `v_i = src[i·ss ..][..8] − mu[..8]`, each `v_i` stored at
    /// `rows + i·ss` when `rows` is not null, and `dst[j·ds + i] = v_i[j]`.
    ///
    /// # Safety
    /// As [`transpose8`], and `mu[..8]` readable, and `rows + i·ss + j` writable for
    /// `i, j < 8` when not null, overlapping neither `src` nor `dst`.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn centre8(src: *const f32, ss: usize, mu: *const f32, rows: *mut f32, dst: *mut f32, ds: usize) {
        let m = _mm256_loadu_ps(mu);
        let r: [__m256; 8] = std::array::from_fn(|i| _mm256_sub_ps(_mm256_loadu_ps(src.add(i * ss)), m));
        if !rows.is_null() {
            for (i, v) in r.iter().enumerate() {
                _mm256_storeu_ps(rows.add(i * ss), *v);
            }
        }
        store_transposed(r, dst, ds);
    }

    /// Stores the transpose of the 8 × 8 block whose rows are `r`: `dst[j·ds + i] = r[i][j]`
    /// (unpack pairs of rows, shuffle pairs of pairs, swap 128-bit halves).
    ///
    /// # Safety
    /// The CPU has AVX; `dst + j·ds + i` is writable for `i, j < 8`.
    #[target_feature(enable = "avx")]
    unsafe fn store_transposed(r: [__m256; 8], dst: *mut f32, ds: usize) {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let out = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        for (j, v) in out.into_iter().enumerate() {
            _mm256_storeu_ps(dst.add(j * ds), v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The fused op
//
// Layouts: matrixmultiply packs a column-major left operand and a row-major right operand by
// contiguous copies, any other layout element by element (at N = 128 that was a third of the
// GEMMs' time). So the forward GEMM `Ã·P̃ᵀ` reads the centred features transposed, `[d, N]`,
// and the backward GEMMs `K·P̃` and `Kᵀ·Ã` read `Kᵀ` and `K` (both stored) and the centred
// features as `[N, d]`.

/// Below this fraction of `|ã_i|² + |p̃_j|²`, a Euclidean pair is recomputed directly (the
/// Gram form's relative error in `dist` is then at most about `64·ε/2`).
const CLOSE: f64 = 1.0 / 64.0;

/// Rows of `A·Pᵀ` per rayon task when the forward GEMM is split (a multiple of the
/// micro-kernels' tiles, so a split never changes a bit).
const GEMM_ROWS: usize = 64;

/// Smallest `N²·d` (multiply-adds of each GEMM) for which the GEMMs are spread over two
/// rayon threads: the engine's GEMM splits from the same size. Below it a split saves less
/// than a `rayon::join` costs when called from outside the pool (at N = 128, d = 256 on two
/// threads: 0.39 ms per forward and backward split, 0.18 ms not split, on this VM).
const PAR_MACS: usize = 1 << 24;

/// True when the GEMMs of `n × n × d` should run on two threads.
fn parallel(n: usize, d: usize) -> bool {
    rayon::current_num_threads() > 1 && n.saturating_mul(n).saturating_mul(d) >= PAR_MACS
}

// Buffers kept from call to call

thread_local! {
    /// Buffers of finished calls on this thread (`Vec<T>` of some `T`, with their sizes in
    /// bytes), for the next call.
    static SPARE: RefCell<Vec<(usize, Box<dyn Any>)>> = const { RefCell::new(Vec::new()) };
}

/// At most this many spare buffers per thread, of at most this many bytes in all (enough for
/// every buffer of one call at N = 512 in `f64`).
const SPARE_COUNT: usize = 8;
const SPARE_BYTES: usize = 32 << 20;

/// A buffer of `len` values to be overwritten: the smallest spare buffer of this thread that
/// holds them (its values are left over from an earlier call), else `len` new zeros.
///
/// A fresh buffer of `[N, d]` or `[N, N]` from glibc can be new pages, which the kernel zeroes
/// on first touch: at N = 512, d = 256 (buffers of 0.5–1 MiB, above glibc's mmap threshold) a
/// forward and backward took 7.1 ms with fresh buffers and 5.0 ms with these (one thread); at
/// N = 128 the difference was within the noise. A program that installs
/// `engine::alloc::CachingAlloc` gets the same from its allocator; this keeps it for programs
/// that do not (a library cannot choose the allocator). Every buffer taken here is fully
/// written before it is read (`spare_buffers_change_nothing`), so left-over values never show.
fn buffer<T: Element>(len: usize) -> Vec<T> {
    let spare = SPARE
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            let (_, i) = s
                .iter()
                .enumerate()
                .filter_map(|(i, (_, b))| b.downcast_ref::<Vec<T>>().map(|v| (v.capacity(), i)))
                .filter(|&(cap, _)| cap >= len)
                .min()?;
            Some(s.swap_remove(i).1)
        })
        .ok()
        .flatten();
    match spare.and_then(|b| b.downcast::<Vec<T>>().ok()) {
        Some(mut v) => {
            // Initialised values of an earlier call (a spare keeps its length): only the part
            // beyond them is filled.
            if v.len() >= len {
                v.truncate(len);
            } else {
                v.resize(len, T::zero());
            }
            *v
        }
        None => vec![T::zero(); len],
    }
}

/// Keeps `v` as a spare buffer of this thread, dropping the smallest spares beyond
/// [`SPARE_COUNT`] or [`SPARE_BYTES`].
fn recycle<T: Element>(v: Vec<T>) {
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if bytes == 0 || bytes > SPARE_BYTES {
        return;
    }
    let _ = SPARE.try_with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else { return };
        s.push((bytes, Box::new(v)));
        s.sort_by_key(|&(b, _)| std::cmp::Reverse(b));
        while s.len() > SPARE_COUNT || s.iter().map(|&(b, _)| b).sum::<usize>() > SPARE_BYTES {
            s.pop();
        }
    });
}

/// Centred copies of the features and their squared norms.
struct Centred<T> {
    /// `ã_i = a_i − μ`, row-major `[N, d]` (empty when no rule is built).
    a: Vec<T>,
    /// `p̃_j = p_j − μ`, row-major `[N, d]` (empty when no rule is built).
    p: Vec<T>,
    /// `Ãᵀ`, `P̃ᵀ`: row-major `[d, N]`.
    at: Vec<T>,
    pt: Vec<T>,
    /// `|ã_i|²`, `|p̃_j|²`.
    na: Vec<T>,
    np: Vec<T>,
}

/// Centres both feature sets on the mean `μ` of all `2N` rows; the `[N, d]` copies only when
/// `rows` (the rule needs them, the value does not).
#[inline(always)]
fn centre<T: Element>(a: &[T], p: &[T], n: usize, d: usize, rows: bool) -> Centred<T> {
    let mut mu = vec![T::zero(); d];
    if d > 0 {
        for row in a.chunks_exact(d) {
            for (m, &x) in mu.iter_mut().zip(row) {
                *m += x;
            }
        }
        for row in p.chunks_exact(d) {
            for (m, &x) in mu.iter_mut().zip(row) {
                *m += x;
            }
        }
    }
    let inv = T::one() / T::of((2 * n) as f64);
    for m in mu.iter_mut() {
        *m *= inv;
    }
    let (ca, at, na) = centre_one(a, &mu, n, d, rows);
    let (cp, pt, np) = centre_one(p, &mu, n, d, rows);
    Centred { a: ca, p: cp, at, pt, na, np }
}

/// One feature matrix `x [n, d]` centred on `mu`: `(x − μ)ᵀ` `[d, n]` from one pass of 8 × 8
/// blocks, `x − μ` `[n, d]` when `rows` (else empty) from a second, row by row (written in
/// order: from the blocks it would be written in half cache lines, which measured slower), and
/// the squared norms of the rows of `x − μ`, summed down the columns of the transposed copy (in
/// order, `c = 0, 1, …`).
#[inline(always)]
fn centre_one<T: Element>(x: &[T], mu: &[T], n: usize, d: usize, rows: bool) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut t: Vec<T> = buffer(n * d);
    let mut c = if rows { buffer(n * d) } else { Vec::new() };
    let (r8, c8) = (n / 8 * 8, d / 8 * 8);
    let avx = avx_f32::<T>();
    for c0 in (0..c8).step_by(8) {
        for r0 in (0..r8).step_by(8) {
            let src = &x[r0 * d + c0..(r0 + 7) * d + c0 + 8];
            let m8 = &mu[c0..c0 + 8];
            let dst = &mut t[c0 * n + r0..(c0 + 7) * n + r0 + 8];
            #[cfg(target_arch = "x86_64")]
            if avx {
                // SAFETY: the CPU has AVX (`avx_f32`), `T` is `f32`; `src` and `dst` hold 8 rows
                // of 8 elements `d` and `n` apart (their lengths are 7·stride + 8), `m8` holds 8;
                // the three are distinct buffers (and no row copy is asked for: null).
                unsafe {
                    avx::centre8(
                        src.as_ptr().cast(),
                        d,
                        m8.as_ptr().cast(),
                        std::ptr::null_mut(),
                        dst.as_mut_ptr().cast(),
                        n,
                    )
                };
                continue;
            }
            let _ = avx;
            block8_centred(src, d, m8, None, dst, n);
        }
    }
    for r in 0..n {
        for col in if r < r8 { c8 } else { 0 }..d {
            t[col * n + r] = x[r * d + col] - mu[col];
        }
    }
    if rows && d > 0 {
        for (dst, src) in c.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
            for ((o, &v), &m) in dst.iter_mut().zip(src).zip(mu) {
                *o = v - m;
            }
        }
    }
    let mut norms = vec![T::zero(); n];
    for column in t.chunks_exact(n.max(1)) {
        for (s, &v) in norms.iter_mut().zip(column) {
            *s += v * v;
        }
    }
    (c, t, norms)
}

/// `G = Ã·P̃ᵀ` `[N, N]`, split by rows over two rayon tasks when [`parallel`] and there are
/// more than [`GEMM_ROWS`] rows.
fn gram<T: Element>(c: &Centred<T>, n: usize, d: usize) -> Vec<T> {
    let mut g = buffer(n * n); // only written (β = 0)
                               // Rows r0.. of Ã: a column-major view into Ãᵀ.
    let a = |r0: usize, rows: usize| MatRef { data: &c.at[..], offset: r0, rows, cols: d, rs: 1, cs: n as isize };
    let pt = MatRef::row_major(&c.pt, 0, d, n);
    let split = (n / 2).div_ceil(GEMM_ROWS) * GEMM_ROWS;
    if parallel(n, d) && n > GEMM_ROWS && split < n {
        let (top, bottom) = g.split_at_mut(split * n);
        rayon::join(
            || gemm(T::one(), a(0, split), pt, T::zero(), top, 0, n),
            || gemm(T::one(), a(split, n - split), pt, T::zero(), bottom, 0, n),
        );
    } else {
        gemm(T::one(), a(0, n), pt, T::zero(), &mut g, 0, n);
    }
    g
}

/// A pair whose gradient term is formed from its own difference (Euclidean close pairs).
#[derive(Clone, Copy, Debug)]
struct Pair<T> {
    i: usize,
    j: usize,
    /// `K_ij`.
    k: T,
}

/// The rule of `sc_loss` (inputs `a`, `p`).
struct ScBackward<T: Element> {
    n: usize,
    d: usize,
    /// The centred features `Ã`, `P̃` (the GEMMs' right operands; the rule's formula is
    /// translation-invariant).
    centred: Centred<T>,
    /// `K` `[N, N]` row-major, with the pairs of `direct` set to 0, and its transpose.
    k: Vec<T>,
    kt: Vec<T>,
    /// `K·1` and `Kᵀ·1` of that matrix.
    row_sums: Vec<T>,
    col_sums: Vec<T>,
    /// Euclidean pairs closer than [`CLOSE`]: `K_ij` applied to `a_i − p_j` from the inputs.
    direct: Vec<Pair<T>>,
}

impl<T: Element> ScBackward<T> {
    /// `g·(diag(K·1)·Ã − K·P̃)` plus the direct pairs' `g·K_ij(a_i − p_j)`.
    fn grad_a(&self, g: T, a: &[T], p: &[T]) -> Tensor<T> {
        let (n, d) = (self.n, self.d);
        let mut out = Vec::with_capacity(n * d);
        for (row, &r) in self.centred.a.chunks_exact(d.max(1)).zip(&self.row_sums) {
            let s = g * r;
            out.extend(row.iter().map(|&x| s * x));
        }
        out.resize(n * d, T::zero()); // d = 0
        let k = MatRef::row_major(&self.kt, 0, n, n).t(); // column-major K
        gemm(-g, k, MatRef::row_major(&self.centred.p, 0, n, d), T::one(), &mut out, 0, d);
        for q in &self.direct {
            let s = g * q.k;
            let (ai, pj) = (&a[q.i * d..(q.i + 1) * d], &p[q.j * d..(q.j + 1) * d]);
            for ((o, &x), &y) in out[q.i * d..(q.i + 1) * d].iter_mut().zip(ai).zip(pj) {
                *o += s * (x - y);
            }
        }
        Tensor::from_vec(out, &[n, d])
    }

    /// `g·(diag(Kᵀ·1)·P̃ − Kᵀ·Ã)` minus the direct pairs' `g·K_ij(a_i − p_j)`.
    fn grad_p(&self, g: T, a: &[T], p: &[T]) -> Tensor<T> {
        let (n, d) = (self.n, self.d);
        let mut out = Vec::with_capacity(n * d);
        for (row, &c) in self.centred.p.chunks_exact(d.max(1)).zip(&self.col_sums) {
            let s = g * c;
            out.extend(row.iter().map(|&x| s * x));
        }
        out.resize(n * d, T::zero());
        let kt = MatRef::row_major(&self.k, 0, n, n).t(); // column-major Kᵀ
        gemm(-g, kt, MatRef::row_major(&self.centred.a, 0, n, d), T::one(), &mut out, 0, d);
        for q in &self.direct {
            let s = g * q.k;
            let (ai, pj) = (&a[q.i * d..(q.i + 1) * d], &p[q.j * d..(q.j + 1) * d]);
            for ((o, &x), &y) in out[q.j * d..(q.j + 1) * d].iter_mut().zip(ai).zip(pj) {
                *o -= s * (x - y);
            }
        }
        Tensor::from_vec(out, &[n, d])
    }
}

impl<T: Element> Backward<T> for ScBackward<T> {
    fn name(&self) -> &str {
        "sc_loss"
    }
    fn backward(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        needed: &[bool],
    ) -> autograd::Result<Vec<Option<Tensor<T>>>> {
        let g = g.item();
        // The raw features, read only for the direct pairs.
        let (a, p) = if self.direct.is_empty() {
            (Tensor::zeros(&[0]), Tensor::zeros(&[0]))
        } else {
            (inputs[0].contiguous(), inputs[1].contiguous())
        };
        let (a, p) = (a.as_slice().expect("contiguous"), p.as_slice().expect("contiguous"));
        let (ga, gp) = if needed[0] && needed[1] && parallel(self.n, self.d) {
            let (ga, gp) = rayon::join(|| self.grad_a(g, a, p), || self.grad_p(g, a, p));
            (Some(ga), Some(gp))
        } else {
            (needed[0].then(|| self.grad_a(g, a, p)), needed[1].then(|| self.grad_p(g, a, p)))
        };
        Ok(vec![ga, gp])
    }
}

impl<T: Element> Drop for ScBackward<T> {
    /// The rule's buffers go back to this thread's spares (see [`buffer`]).
    fn drop(&mut self) {
        let c = &mut self.centred;
        for v in [&mut c.a, &mut c.p, &mut c.at, &mut c.pt, &mut self.k, &mut self.kt] {
            recycle(std::mem::take(v));
        }
    }
}

/// The distances `dist [N, N]` (row-major), with the Euclidean close pairs' positions.
#[inline(always)]
fn distances<T: Element>(
    c: &Centred<T>,
    a: &[T],
    p: &[T],
    n: usize,
    d: usize,
    distance: Distance,
) -> (Vec<T>, Vec<(usize, usize)>) {
    let mut q = gram(c, n, d);
    let two = T::of(2.0);
    for (row, &na) in q.chunks_exact_mut(n).zip(&c.na) {
        for (v, &np) in row.iter_mut().zip(&c.np) {
            let s = na + np - two * *v;
            *v = if s < T::zero() { T::zero() } else { s }; // NaN stays NaN
        }
    }
    let mut close = Vec::new();
    match distance {
        Distance::Squared => {
            for i in 0..n {
                q[i * n + i] = sq_diff(&a[i * d..(i + 1) * d], &p[i * d..(i + 1) * d]);
            }
        }
        Distance::Euclidean => {
            let tau = T::of(CLOSE);
            for (i, row) in q.chunks_exact(n).enumerate() {
                for (j, (&v, &np)) in row.iter().zip(&c.np).enumerate() {
                    if i == j || v < tau * (c.na[i] + np) {
                        close.push((i, j));
                    }
                }
            }
            for &(i, j) in &close {
                q[i * n + j] = sq_diff(&a[i * d..(i + 1) * d], &p[j * d..(j + 1) * d]);
            }
            for v in q.iter_mut() {
                *v = v.sqrt();
            }
        }
    }
    (q, close)
}

/// The softmax of `−dist` along the rows, written as `out = w·(δ − S^r)`: `−w·S^r_ij` off the
/// diagonal and `w·(1 − S^r_ii)` on it, with `1 − S^r_ii` computed as `Σ_{j≠i} S^r_ij`.
/// Returns `Σ_i L_i` with `L_i = dist_ii + log Σ_j exp(−dist_ij)`.
#[inline(always)]
fn row_softmax<T: Element>(dist: &[T], n: usize, out: &mut [T], w: T) -> f64 {
    let mut total = 0.0;
    for (i, (row, o)) in dist.chunks_exact(n).zip(out.chunks_exact_mut(n)).enumerate() {
        let m = min(row);
        exp_shifted(o, m, row);
        let e_ii = std::mem::replace(&mut o[i], T::zero());
        let off = sum(o); // Σ_{j≠i} e_ij
        let z = off + e_ii;
        let f = -w / z;
        for e in o.iter_mut() {
            *e *= f;
        }
        o[i] = w * (off / z);
        total += loss_term(row[i], m, off, z);
    }
    total
}

/// `L_i = dist_ii − m + log Z` for a row (or column) with minimum `m`, off-diagonal sum
/// `off = Σ_{j≠i} exp(m − dist_ij)` and `Z = off + exp(m − dist_ii)`. When `dist_ii` is the
/// minimum, `exp(m − dist_ii) = 1` and `L_i = log1p(off)`, which keeps a small loss precise.
fn loss_term<T: Element>(diag: T, m: T, off: T, z: T) -> f64 {
    if diag == m {
        off.as_f64().ln_1p()
    } else {
        (diag - m).as_f64() + z.as_f64().ln()
    }
}

/// The softmax of `−dist` down the columns, as [`row_softmax`], *added* to `k`:
/// `k += w·(δ − S^c)` (`1 − S^c_jj` computed as `Σ_{i≠j} S^c_ij`); `e` is scratch `[N, N]`.
/// Returns `Σ_j L'_j` with `L'_j = dist_jj + log Σ_i exp(−dist_ij)`.
#[inline(always)]
fn col_softmax<T: Element>(dist: &[T], n: usize, e: &mut [T], k: &mut [T], w: T) -> f64 {
    let mut m = vec![T::infinity(); n];
    for row in dist.chunks_exact(n) {
        for (m, &v) in m.iter_mut().zip(row) {
            *m = if v < *m { v } else { *m };
        }
    }
    let mut off = vec![T::zero(); n];
    let mut e_diag = vec![T::zero(); n];
    for (i, (row, er)) in dist.chunks_exact(n).zip(e.chunks_exact_mut(n)).enumerate() {
        exp_shifted_each(er, &m, row);
        e_diag[i] = std::mem::replace(&mut er[i], T::zero());
        for (s, &v) in off.iter_mut().zip(er.iter()) {
            *s += v;
        }
    }
    let mut f = vec![T::zero(); n];
    for ((f, &s), &d) in f.iter_mut().zip(&off).zip(&e_diag) {
        *f = -w / (s + d);
    }
    for (i, (kr, er)) in k.chunks_exact_mut(n).zip(e.chunks_exact(n)).enumerate() {
        for ((x, &v), &f) in kr.iter_mut().zip(er).zip(&f) {
            *x += v * f;
        }
        kr[i] += w * (off[i] / (off[i] + e_diag[i]));
    }
    (0..n).map(|j| loss_term(dist[j * n + j], m[j], off[j], off[j] + e_diag[j])).sum()
}

/// Forward pass: the loss, and the rule when `with_rule` (else `None`: the softmaxes are
/// computed for the value alone).
///
/// Multiversioned: on a CPU with AVX-512F (AVX2) the same code ([`forward_impl`] and every
/// helper it inlines) is compiled for AVX-512F (AVX2), which widens its vector loops. All versions
/// compute the same operations in the same order (Rust never contracts `a·b + c` into a fused
/// multiply-add), so they give the same bits (checked by a test).
fn forward<T: Element>(a: &Tensor<T>, p: &Tensor<T>, cfg: ScConfig, with_rule: bool) -> (T, Option<ScBackward<T>>) {
    forward_at(Isa::best(), a, p, cfg, with_rule)
}

/// [`forward`] compiled for `isa` (tests pass each level of [`Isa::available`]).
fn forward_at<T: Element>(
    isa: Isa,
    a: &Tensor<T>,
    p: &Tensor<T>,
    cfg: ScConfig,
    with_rule: bool,
) -> (T, Option<ScBackward<T>>) {
    match isa.checked() {
        // SAFETY: `checked` panics for a level this CPU does not run; AVX-512 implies AVX-512F.
        #[cfg(all(target_arch = "x86_64", sparsegrad_avx512))]
        Isa::Avx512 => unsafe { forward_avx512(a, p, cfg, with_rule) },
        // SAFETY: as above; the AVX2 level has AVX2.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { forward_avx2(a, p, cfg, with_rule) },
        _ => forward_impl(a, p, cfg, with_rule),
    }
}

/// `$name`: [`forward_impl`] compiled with the target feature `$feature`.
macro_rules! forward_build {
    ($name:ident, $feature:literal, $($cfg:tt)*) => {
        /// [`forward_impl`] compiled for the target feature named in its attribute.
        ///
        /// # Safety
        /// The CPU has that feature.
        #[cfg($($cfg)*)]
        #[target_feature(enable = $feature)]
        unsafe fn $name<T: Element>(
            a: &Tensor<T>,
            p: &Tensor<T>,
            cfg: ScConfig,
            with_rule: bool,
        ) -> (T, Option<ScBackward<T>>) {
            forward_impl(a, p, cfg, with_rule)
        }
    };
}

// AVX-512F only when the compiler has it (`build.rs`).
forward_build!(forward_avx512, "avx512f", all(target_arch = "x86_64", sparsegrad_avx512));
forward_build!(forward_avx2, "avx2", target_arch = "x86_64");

/// The forward pass (see [`forward`]).
#[inline(always)]
fn forward_impl<T: Element>(
    a: &Tensor<T>,
    p: &Tensor<T>,
    cfg: ScConfig,
    with_rule: bool,
) -> (T, Option<ScBackward<T>>) {
    let (n, d) = (a.dim(0), a.dim(1));
    let (ac, pc) = (a.contiguous(), p.contiguous());
    let (av, pv) = (ac.as_slice().expect("contiguous"), pc.as_slice().expect("contiguous"));
    let centred = centre(av, pv, n, d, with_rule);
    let (dist, close) = distances(&centred, av, pv, n, d, cfg.distance);
    let nf = n as f64;

    // K = c·M with M = ∂L/∂dist (g = 1), c = 2 (squared) or 1 (Euclidean, then /dist):
    //   one-sided  M = (δ − S^r)/N          symmetric  M = ((δ − S^r) + (δ − S^c))/(2N)
    // Each softmax writes (adds) its term with the weight w = c/N or c/(2N).
    let c = if cfg.distance == Distance::Squared { 2.0 } else { 1.0 };
    let w = T::of(if cfg.symmetric { 0.5 * c / nf } else { c / nf });
    let mut k = buffer(n * n);
    let mut loss = row_softmax(&dist, n, &mut k, w) / nf;
    let mut scratch = Vec::new();
    if cfg.symmetric {
        scratch = buffer(n * n);
        loss = 0.5 * (loss + col_softmax(&dist, n, &mut scratch, &mut k, w) / nf);
    }
    if !with_rule {
        for v in [centred.at, centred.pt, dist, k, scratch] {
            recycle(v);
        }
        return (T::of(loss), None);
    }
    // Euclidean: K = M/dist (0 at dist = 0), the close pairs set aside.
    let mut direct = Vec::new();
    if cfg.distance == Distance::Euclidean {
        for (x, &r) in k.iter_mut().zip(&dist) {
            *x = if r > T::zero() { *x / r } else { T::zero() };
        }
        for (i, j) in close {
            let kij = std::mem::replace(&mut k[i * n + j], T::zero());
            if kij != T::zero() {
                direct.push(Pair { i, j, k: kij });
            }
        }
    }
    // Kᵀ into a buffer no longer needed (fewer fresh pages per call).
    let mut kt = if cfg.symmetric {
        recycle(dist);
        scratch
    } else {
        dist
    };
    transpose_into(&k, n, n, &mut kt);
    let (mut row_sums, mut col_sums) = (vec![T::zero(); n], vec![T::zero(); n]);
    for ((r, c), (kr, kc)) in
        row_sums.iter_mut().zip(col_sums.iter_mut()).zip(k.chunks_exact(n).zip(kt.chunks_exact(n)))
    {
        *r = sum(kr);
        *c = sum(kc);
    }
    let rule = ScBackward { n, d, centred, k, kt, row_sums, col_sums, direct };
    (T::of(loss), Some(rule))
}

/// The spatial-contrasting loss as one op on the tape (`sc_loss`), with the analytic rule of
/// the module docs. Rank-0 output; gradients flow to `a` and `p`.
///
/// Same value and gradients as [`sc_loss_composed`] (to rounding), in three GEMMs in all and a
/// few passes over the `N × N` distances, with the numerical refinements listed in the module
/// docs. NaN in the features gives a NaN loss.
///
/// **Panics** unless `a` and `p` are both `[N, d]` with `N ≥ 1`.
#[track_caller]
pub fn sc_loss<'t, T: Element>(a: &Var<'t, T>, p: &Var<'t, T>, cfg: ScConfig) -> Var<'t, T> {
    check_features("sc_loss", &a.shape(), &p.shape());
    let tape = a.tape();
    let with_rule = tape.grad_enabled() && (a.requires_grad() || p.requires_grad());
    match forward(&a.value(), &p.value(), cfg, with_rule) {
        (loss, Some(rule)) => tape.push_op(Tensor::scalar(loss), &[*a, *p], rule),
        // Recorded as an op without a gradient (the tape drops the rule), as any op would be.
        (loss, None) => tape.push_op(Tensor::scalar(loss), &[*a, *p], NoRule),
    }
}

/// The value of the loss without a tape (the fused forward pass alone).
///
/// **Panics** unless `a` and `p` are both `[N, d]` with `N ≥ 1`.
#[track_caller]
pub fn sc_loss_value<T: Element>(a: &Tensor<T>, p: &Tensor<T>, cfg: ScConfig) -> T {
    check_features("sc_loss_value", a.shape(), p.shape());
    forward(a, p, cfg, false).0
}

/// The rule recorded when no input of `sc_loss` needs a gradient: the tape drops it at once
/// (`push_op` records such a result as a constant), so it is never run.
struct NoRule;

impl<T: Element> Backward<T> for NoRule {
    fn name(&self) -> &str {
        "sc_loss"
    }
}

// ---------------------------------------------------------------------------------------------
// Audit

/// The gradient audit of `sc_loss` (collected by [`crate::audit::cases`]): anchors and
/// positives in every layout (contiguous, transposed, sliced, and broadcast `[N, 1] → [N, d]`:
/// broadcasting `[1, d]` would make every anchor, or every positive, the same row, where the
/// loss is the constant `log N`), both distances, symmetric and one-sided; default checker
/// options. The Euclidean distance has a kink where a pair coincides: its inputs keep every pair
/// at least [`autograd::audit::inputs::MARGIN`] apart (redrawn from the same generator
/// otherwise).
pub(crate) fn cases(out: &mut Vec<autograd::audit::AuditCase>) {
    use autograd::audit::inputs::{bcast, input, rng_for, tensor, Dom, Input, View, MARGIN};
    use autograd::audit::AuditCase;
    use autograd::CheckOptions;

    let op = "sc_loss";
    let mut rng = rng_for(op, 0);
    let (n, d) = (3 + rng.below(3) as usize, 3 + rng.below(3) as usize);
    let mut draw = |view: View| {
        if view == View::Broadcast {
            let desc = format!("broadcast [{n}, 1]→[{n}, {d}]");
            Input { desc, value: tensor(Dom::Any, &[n, 1], &mut rng), target: Some(vec![n, d]) }
        } else {
            input(view, &[n, d], Dom::Any, &mut rng, "")
        }
    };
    let sq = ScConfig::new();
    let eu = ScConfig::new().distance(Distance::Euclidean);
    let specs = [
        (View::Contiguous, View::Contiguous, sq),
        (View::Contiguous, View::Contiguous, eu.one_sided()),
        (View::Transposed, View::Sliced, sq.one_sided()),
        (View::Sliced, View::Transposed, eu),
        (View::Broadcast, View::Contiguous, sq),
        (View::Contiguous, View::Broadcast, eu.one_sided()),
        (View::Transposed, View::Contiguous, eu),
        (View::Sliced, View::Broadcast, sq.one_sided()),
    ];
    let full = |x: &Input| match &x.target {
        Some(t) => x.value.broadcast_to(t).contiguous().into_vec(),
        None => x.value.contiguous().into_vec(),
    };
    for (va, vp, cfg) in specs {
        let (a, p) = (0..200)
            .map(|_| (draw(va), draw(vp)))
            .find(|(a, p)| {
                let (av, pv) = (full(a), full(p));
                let dist = |i: usize, j: usize| sq_diff(&av[i * d..(i + 1) * d], &pv[j * d..(j + 1) * d]).sqrt();
                cfg.distance == Distance::Squared || (0..n).all(|i| (0..n).all(|j| dist(i, j) >= MARGIN))
            })
            .expect("sc_loss audit: no Euclidean input with separated pairs in 200 draws");
        let desc = format!("anchors {}, positives {}; {}", a.desc, p.desc, cfg.describe());
        let (ta, tp) = (a.target, p.target);
        out.push(AuditCase::gradcheck(op, desc, vec![a.value, p.value], CheckOptions::default(), move |_, v| {
            sc_loss(&bcast(&v[0], &ta), &bcast(&v[1], &tp), cfg)
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within 2 ulp of the correctly rounded e^x (from f64) on [ln(f32::MIN_POSITIVE), 0], on
    /// a fine grid and at the ends; exact at 0; 0 below; NaN stays NaN.
    #[test]
    fn polynomial_exp_is_within_two_ulp_where_it_is_used() {
        let lo = f32::MIN_POSITIVE.ln();
        let mut worst = 0.0f64;
        let mut x = 0.0f32;
        while x >= lo {
            let (got, want) = (exp_f32(x), (x as f64).exp());
            let ulp = f32::EPSILON as f64 * (want as f32) as f64;
            worst = worst.max((got as f64 - want).abs() / ulp);
            x -= 1.37e-3;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-0.0), 1.0);
        assert!(exp_f32(lo) > 0.0); // e^lo ≈ f32::MIN_POSITIVE (possibly a subnormal just below)
        assert_eq!(exp_f32(-88.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        let mut v = vec![0.0f32; 3];
        exp_shifted(&mut v, 1.0, &[1.0, 2.0, 21.0]);
        assert_eq!(v, vec![1.0, exp_f32(-1.0), exp_f32(-20.0)]);
        exp_shifted_each(&mut v, &[1.0, 0.0, -1.0], &[1.0, 1.0, 1.0]);
        assert_eq!(v, vec![1.0, exp_f32(-1.0), exp_f32(-2.0)]);
        let mut w = vec![0.0f64; 2];
        exp_shifted(&mut w, 0.5, &[0.5, 1.5]);
        assert_eq!(w, vec![1.0, (-1.0f64).exp()]);
    }

    /// Both paths (AVX shuffles for f32 where available, the portable block for f64) on
    /// shapes with and without edges.
    #[test]
    fn blocked_transpose_matches_the_definition() {
        for (r, c) in [(0, 3), (1, 1), (5, 17), (8, 8), (33, 16), (16, 40), (130, 257)] {
            let x: Vec<f64> = (0..r * c).map(|v| v as f64).collect();
            let mut t = vec![0.0; r * c];
            transpose_into(&x, r, c, &mut t);
            assert!((0..r).all(|i| (0..c).all(|j| t[j * r + i] == x[i * c + j])), "f64 {r}×{c}");
            let x: Vec<f32> = (0..r * c).map(|v| v as f32).collect();
            let mut t = vec![0.0; r * c];
            transpose_into(&x, r, c, &mut t);
            assert!((0..r).all(|i| (0..c).all(|j| t[j * r + i] == x[i * c + j])), "f32 {r}×{c}");
            // Centring: both layouts and the norms, against the definitions.
            let mu: Vec<f32> = (0..c).map(|j| j as f32 * 0.5).collect();
            for rows in [false, true] {
                let (cr, ct, norms) = centre_one(&x, &mu, r, c, rows);
                let want = |i: usize, j: usize| x[i * c + j] - mu[j];
                assert!((0..r).all(|i| (0..c).all(|j| ct[j * r + i] == want(i, j))), "centred {r}×{c}");
                assert_eq!(cr.is_empty(), !rows || r * c == 0);
                if rows {
                    assert!((0..r).all(|i| (0..c).all(|j| cr[i * c + j] == want(i, j))), "rows {r}×{c}");
                }
                for (i, &nrm) in norms.iter().enumerate() {
                    let w: f32 = (0..c).map(|j| want(i, j) * want(i, j)).sum();
                    assert_eq!(nrm, w, "norm {i} of {r}×{c}"); // both summed in column order
                }
            }
        }
    }

    /// Spare buffers left by earlier calls (other values, other sizes, NaN) change no bit of the
    /// value or the gradients: the same calls in a fresh thread (no spares) give the same bits.
    #[test]
    fn spare_buffers_change_nothing() {
        fn run(n: usize, d: usize, seed: u64, cfg: ScConfig) -> Vec<u64> {
            let mut rng = engine::Rng::new(seed);
            let a = Tensor::<f32>::randn(&[n, d], &mut rng);
            let p = a.add(&Tensor::<f32>::randn(&[n, d], &mut rng).mul_scalar(0.5));
            let (l, r) = forward(&a, &p, cfg, true);
            let r = r.unwrap();
            let (ga, gp) = (r.grad_a(1.0, &[], &[]), r.grad_p(1.0, &[], &[]));
            let mut bits = vec![l.to_bits() as u64];
            for t in [ga, gp] {
                bits.extend(t.to_vec().iter().map(|x| x.to_bits() as u64));
            }
            bits
        }
        let calls = [(40, 24, 1), (9, 5, 2), (64, 33, 3), (40, 24, 4)];
        let cfgs = [ScConfig::new(), ScConfig::new().one_sided()];
        // Poison the spares with NaN first.
        for v in [vec![f32::NAN; 64 * 64], vec![f32::NAN; 64 * 33], vec![f32::NAN; 40 * 40]] {
            recycle(v);
        }
        let warm: Vec<Vec<u64>> =
            cfgs.iter().flat_map(|&c| calls.iter().map(move |&(n, d, s)| run(n, d, s, c))).collect();
        let fresh: Vec<Vec<u64>> = cfgs
            .iter()
            .flat_map(|&c| {
                calls.iter().map(move |&(n, d, s)| std::thread::spawn(move || run(n, d, s, c)).join().unwrap())
            })
            .collect();
        assert!(warm.iter().all(|b| b.iter().all(|&x| !f32::from_bits(x as u32).is_nan())));
        assert_eq!(warm, fresh);
    }

    /// The AVX-512F and AVX2 builds of the forward pass and the portable one give the same bits (value,
    /// `K`, its sums), in f32 and f64, for every option.
    #[test]
    fn both_builds_of_the_forward_give_the_same_bits() {
        fn check<T: Element>(n: usize, d: usize) {
            let mut rng = engine::Rng::new(3);
            let a = Tensor::<T>::randn(&[n, d], &mut rng);
            let p = a.add(&Tensor::<T>::randn(&[n, d], &mut rng).mul_scalar(0.5));
            for cfg in [
                ScConfig::new(),
                ScConfig::new().one_sided(),
                ScConfig::new().distance(Distance::Euclidean),
                ScConfig::new().distance(Distance::Euclidean).one_sided(),
            ] {
                let mut builds = vec![("dispatched", forward(&a, &p, cfg, true))];
                builds.extend(Isa::available().into_iter().map(|isa| (isa.name(), forward_at(isa, &a, &p, cfg, true))));
                let (l2, r2) = forward_impl(&a, &p, cfg, true);
                let r2 = r2.unwrap();
                let bits = |v: &[T]| v.iter().map(|x| x.as_f64().to_bits()).collect::<Vec<_>>();
                for (build, (l1, r1)) in builds {
                    let r1 = r1.unwrap();
                    let what = format!("{build}, {}", cfg.describe());
                    assert_eq!(l1.as_f64().to_bits(), l2.as_f64().to_bits(), "{what}");
                    assert_eq!(bits(&r1.k), bits(&r2.k), "{what}");
                    assert_eq!(bits(&r1.kt), bits(&r2.kt), "{what}");
                    assert_eq!(bits(&r1.row_sums), bits(&r2.row_sums), "{what}");
                    assert_eq!(bits(&r1.col_sums), bits(&r2.col_sums), "{what}");
                    assert_eq!(bits(&r1.centred.at), bits(&r2.centred.at), "{what}");
                    assert_eq!(bits(&r1.centred.a), bits(&r2.centred.a), "{what}");
                }
            }
        }
        check::<f32>(70, 37);
        check::<f64>(70, 37);
    }

    /// The helpers' fixed-order reductions on lengths around their 32-wide blocks.
    #[test]
    fn reductions_match_plain_loops() {
        for n in [0usize, 1, 7, 31, 32, 33, 65, 130] {
            let x: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let y: Vec<f64> = (0..n).map(|i| (i as f64 * 0.11).cos()).collect();
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-14 * (1.0 + b.abs());
            assert!(close(sum(&x), x.iter().sum()));
            assert!(close(sq_diff(&x, &y), x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum()));
            assert_eq!(min(&x), x.iter().copied().fold(f64::INFINITY, f64::min));
        }
    }
}
