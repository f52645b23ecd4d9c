//! Small kernels of the fused op (fixed summation orders, so results never depend on threads):
//! reductions, the vectorisable `exp`, and the 8 × 8 AVX transposes.

use std::any::TypeId;

use engine::kernels::simd::Isa;
use engine::Element;

/// Independent accumulators of the reductions: 32, four 8-wide vectors under AVX2, so that
/// consecutive additions do not wait for each other (with one vector the adds' latency, not
/// their throughput, bounds the loop).
pub(super) const LANES: usize = 32;

/// Adds up `acc` in a fixed pairwise tree.
#[inline(always)]
pub(super) fn combine<T: Element>(acc: &[T; LANES]) -> T {
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
pub(super) fn reduce2<T: Element>(x: &[T], y: &[T], f: impl Fn(T, T) -> T) -> T {
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
pub(super) fn sum<T: Element>(x: &[T]) -> T {
    reduce2(x, x, |u, _| u)
}

/// ‖x − y‖², from the differences themselves.
#[inline(always)]
pub fn sq_diff<T: Element>(x: &[T], y: &[T]) -> T {
    reduce2(x, y, |u, v| (u - v) * (u - v))
}

/// The smallest element (NaN ignored; +∞ for an empty slice).
#[inline(always)]
pub(super) fn min<T: Element>(x: &[T]) -> T {
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
pub(super) fn as_f32<T: Element>(x: &mut [T]) -> Option<&mut [f32]> {
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
pub(super) fn exp_f32(x: f32) -> f32 {
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
pub(super) fn exp_shifted<T: Element>(out: &mut [T], s: T, x: &[T]) {
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
pub(super) fn exp_shifted_each<T: Element>(out: &mut [T], s: &[T], x: &[T]) {
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
pub(super) fn as_f32_ref<T: Element>(x: &[T]) -> Option<&[f32]> {
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
pub(super) fn transpose_into<T: Element>(x: &[T], rows: usize, cols: usize, t: &mut [T]) {
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
pub(super) fn block8<T: Element>(src: &[T], ss: usize, dst: &mut [T], ds: usize) {
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
pub(super) fn block8_centred<T: Element>(
    src: &[T],
    ss: usize,
    mu: &[T],
    rows: Option<&mut [T]>,
    dst: &mut [T],
    ds: usize,
) {
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
pub(super) fn avx_f32<T: Element>() -> bool {
    cfg!(target_arch = "x86_64") && TypeId::of::<T>() == TypeId::of::<f32>() && Isa::best() >= Isa::Avx2
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx {
    use std::arch::x86_64::*;

    /// `dst[j·ds + i] = src[i·ss + j]` for `i, j < 8`: the 8 × 8 transpose in registers.
    ///
    /// # Safety
    /// The CPU has AVX; `src + i·ss + j` and `dst + j·ds + i` are valid for `i, j < 8` (reads
    /// and writes respectively) and the two ranges do not overlap.
    #[target_feature(enable = "avx")]
    pub(in crate::scl) unsafe fn transpose8(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
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
    pub(in crate::scl) unsafe fn centre8(
        src: *const f32,
        ss: usize,
        mu: *const f32,
        rows: *mut f32,
        dst: *mut f32,
        ds: usize,
    ) {
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
