//! The LARS path's inner loops, and those of Mairal's backward, as plain-slice kernels compiled
//! for several instruction sets and picked at run time.
//!
//! | kernel | computes | per event |
//! | --- | --- | --- |
//! | [`gemv_rows`] | `out_i = Σ_q u_q·G[rows_q, i]` (`a = G_{:,Λ}·u`, rows of the symmetric G) | `k·|Λ|` |
//! | [`next_join`] | the first atom to reach `|c_j| = λ` along the direction (`t = (λ ∓ c_j)/(1 ∓ a_j)`) | `k` |
//! | [`solve_lt`] | `u = L⁻ᵀ·y` (the direction from the factor of `G_ΛΛ`) | `|Λ|²/2` |
//! | [`sub_scaled`] | `y_i −= γ·x_i` (`c −= γ·a`) | `k` |
//!
//! and for Mairal's backward ([`super::backward`]), on tiles of `w` rows of D:
//! [`gemv_pair`] (`u = D_Λ·β` and `r = x − D_Λ·α` in one pass), [`scatter_rows`]
//! (`∂Dᵀ_j += β_j·r − α_j·u` for `j ∈ Λ`) and [`transpose`].
//!
//! # Same bits on every level
//! Each kernel is written once, as an `#[inline(always)]` generic function whose arithmetic is
//! the scalar loop's, operation for operation: products are rounded before they are added (no
//! fused multiply-add) and every sum runs in the same order as the scalar loop (`gemv_rows`
//! adds four rows at a time to each output, `(((o + u₀g₀) + u₁g₁) + u₂g₂) + u₃g₃`, and
//! `gemv_pair` keeps blocks of outputs in registers while it adds the rows in order: each
//! output sees the same additions, nothing is reassociated across lanes). So the AVX-512, AVX2
//! and plain builds give the same bits as the naive references in the tests, which compare them
//! bit for bit, and the codes do not depend on the CPU the batch runs on any more than on the
//! number of threads (Rust never contracts `a·b + c` into an FMA on its own, whatever the
//! target features).
//!
//! # Dispatch
//! The engine's one dispatch enum [`Isa`] (`engine::kernels::simd`, which every SIMD kernel
//! family dispatches on) and its one dispatch frame, [`engine::dispatched!`]: each kernel
//! is compiled for AVX-512F (+AVX2, FMA), for AVX2 + FMA and with no target features;
//! [`Isa::best`] (detected once) is read once per batch, and tests pass each level of
//! [`Isa::available`]. The crate is built
//! without `-C target-cpu`, so the plain build is what any
//! x86-64 (SSE2) or other CPU runs.

use engine::Element;

// The engine's instruction-set levels (the one enum every SIMD kernel dispatches on).
pub(crate) use engine::kernels::simd::Isa;

// ============================================================================ a = G_{:,Λ}·u

engine::dispatched! {
    /// `out[i] = Σ_q u[q]·g[rows[q]·ld + i]` for `i < out.len()`, summed in the order of
    /// `rows` from 0 (the bits of `out.fill(0); for q { out[i] += u[q]·row_q[i] }`).
    /// **Panics** if `u` is shorter than `rows` or a row reaches past `g`.
    pub(crate) fn gemv_rows<T>(g: &[T], ld: usize, rows: &[usize], u: &[T], out: &mut [T]) = gemv_rows_imp
}

#[inline(always)]
fn gemv_rows_imp<T: Element>(g: &[T], ld: usize, rows: &[usize], u: &[T], out: &mut [T]) {
    let n = out.len();
    assert!(u.len() >= rows.len(), "gemv_rows: {} coefficients for {} rows", u.len(), rows.len());
    for &j in rows {
        assert!(j * ld + n <= g.len(), "gemv_rows: row {j} (ld {ld}, {n} columns) is past G of {}", g.len());
    }
    let row = |q: usize| &g[rows[q] * ld..rows[q] * ld + n];
    out.fill(T::zero());
    let mut q = 0;
    while q + 4 <= rows.len() {
        let (r0, r1, r2, r3) = (row(q), row(q + 1), row(q + 2), row(q + 3));
        let (u0, u1, u2, u3) = (u[q], u[q + 1], u[q + 2], u[q + 3]);
        for i in 0..n {
            out[i] = (((out[i] + u0 * r0[i]) + u1 * r1[i]) + u2 * r2[i]) + u3 * r3[i];
        }
        q += 4;
    }
    while q < rows.len() {
        let (r0, u0) = (row(q), u[q]);
        for i in 0..n {
            out[i] += u0 * r0[i];
        }
        q += 1;
    }
}

engine::dispatched! {
    /// `u[i] = Σ_q b[q]·g[rows[q]·ld + i]` and `r[i] = x[i] − Σ_q a[q]·g[rows[q]·ld + i]` for
    /// `i < u.len()`, both sums in the order of `rows` from 0 (the bits of two [`gemv_rows`]
    /// and a subtraction), reading each row once: Mairal's `u = D_Λ·β`, `r = x − D_Λ·α` on a
    /// tile of the backward. **Panics** if the lengths disagree or a row reaches past `g`.
    pub(crate) fn gemv_pair<T>(g: &[T], ld: usize, rows: &[usize], b: &[T], a: &[T], x: &[T], u: &mut [T], r: &mut [T])
        = gemv_pair_imp
}

/// Outputs of each of `u` and `r` kept in registers while the rows are added in
/// [`gemv_pair`]: 2 × 32 f64 are eight AVX-512 registers.
const PAIR_BLOCK: usize = 32;

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gemv_pair_imp<T: Element>(g: &[T], ld: usize, rows: &[usize], b: &[T], a: &[T], x: &[T], u: &mut [T], r: &mut [T]) {
    let n = u.len();
    assert!(r.len() == n && x.len() == n, "gemv_pair: outputs of {n} and {}, x of {}", r.len(), x.len());
    assert!(b.len() >= rows.len() && a.len() >= rows.len(), "gemv_pair: too few coefficients");
    for &j in rows {
        assert!(j * ld + n <= g.len(), "gemv_pair: row {j} (ld {ld}, {n} columns) is past G of {}", g.len());
    }
    let mut i0 = 0;
    while i0 + PAIR_BLOCK <= n {
        let (mut su, mut sr) = ([T::zero(); PAIR_BLOCK], [T::zero(); PAIR_BLOCK]);
        for ((&j, &bq), &aq) in rows.iter().zip(b).zip(a) {
            let start = j * ld + i0;
            let row: &[T; PAIR_BLOCK] = g[start..start + PAIR_BLOCK].try_into().expect("block");
            for l in 0..PAIR_BLOCK {
                su[l] += bq * row[l];
                sr[l] += aq * row[l];
            }
        }
        u[i0..i0 + PAIR_BLOCK].copy_from_slice(&su);
        for l in 0..PAIR_BLOCK {
            r[i0 + l] = x[i0 + l] - sr[l];
        }
        i0 += PAIR_BLOCK;
    }
    let rest = n - i0;
    let (mut su, mut sr) = ([T::zero(); PAIR_BLOCK], [T::zero(); PAIR_BLOCK]);
    for ((&j, &bq), &aq) in rows.iter().zip(b).zip(a) {
        let start = j * ld + i0;
        for (l, &v) in g[start..start + rest].iter().enumerate() {
            su[l] += bq * v;
            sr[l] += aq * v;
        }
    }
    u[i0..].copy_from_slice(&su[..rest]);
    for l in 0..rest {
        r[i0 + l] = x[i0 + l] - sr[l];
    }
}

// ============================================================================ step search

/// Atoms per block of the join search: two AVX-512 registers of f64.
const JOIN_BLOCK: usize = 16;

/// `max(v, 0)` as a select: the same value as `v.max(0)` for every non-NaN `v` except that
/// −0 gives +0; written this way so it vectorises to one compare-and-blend.
#[inline(always)]
pub(crate) fn pos<T: Element>(v: T) -> T {
    if v > T::zero() {
        v
    } else {
        T::zero()
    }
}

/// Code of "no join" in [`next_join`]'s result.
pub(crate) const NO_JOIN: usize = usize::MAX;

engine::dispatched! {
    /// The first join event along the current direction, if one comes before `gamma`.
    ///
    /// Atom `j` reaches `c_j = +λ` after `t⁺_j = pos(λ − c_j) / (1 − a_j)` when
    /// `1 − a_j > 0` and `bar_plus[j] == 0`, and `c_j = −λ` after
    /// `t⁻_j = pos(λ + c_j) / (1 + a_j)` when `1 + a_j > 0` and `bar_minus[j] == 0`
    /// (`bar_*` is +∞ for a side the atom may not join from). Returns `(t, 2j)` for a join at
    /// `+λ`, `(t, 2j + 1)` at `−λ`, for the smallest `t < gamma`, ties going to the lower
    /// index and then to `+λ` (the result of scanning j = 0, 1, … with `t⁺_j` before `t⁻_j`
    /// and keeping a value only if it is strictly smaller); `(gamma, NO_JOIN)` if none is.
    ///
    /// Most blocks of `JOIN_BLOCK` atoms are ruled out without a division by the filter
    /// `|c_j − γ·a_j| + κ·|c_j| − bar ≥ (λ − γ) − κ·λ`, `κ = 16ε`, γ the best value so far and
    /// bar the smaller of the atom's two bars (`c_j − γ·a_j` instead of its absolute value when
    /// not `signed`: then `bar_minus` must bar every atom, as for positive codes); the divisions run on the blocks that pass. The filter keeps
    /// every atom with `t < γ` (γ ≥ 0): `t⁺ = fl(n/d) < γ` implies `n/d < γ` (rounding is
    /// monotone and γ is a float), i.e. `c_j − γ·a_j > λ − γ` (if `λ − c_j > 0` from
    /// `λ − c_j < γ·(1 − a_j)`; otherwise from `c_j ≥ λ` and `a_j < 1`), and `t⁻ < γ` gives
    /// `−(c_j − γ·a_j) > λ − γ` the same way. The computed `|c − γ·a|` is within
    /// `ε·(|c| + |γ·a|)` of the exact one and the right-hand side within `ε·λ/2`, and where
    /// `|γ·a| > 2·(λ + |c|)` the left side exceeds λ by far; so the margin κ covers the rounding.
    /// For γ < 0 no atom qualifies and the filter's extra passes find none.
    /// **Panics** if the slices' lengths differ.
    pub(crate) fn next_join<T>(c: &[T], a: &[T], bar_plus: &[T], bar_minus: &[T], lam: T, gamma: T, signed: bool) -> (T, usize)
        = next_join_imp
}

/// `t⁺_j` and `t⁻_j` of [`next_join`], +∞ where the atom may not join from that side.
#[inline(always)]
pub(crate) fn join_times<T: Element>(c: T, a: T, bar_plus: T, bar_minus: T, lam: T) -> (T, T) {
    let (zero, one, inf) = (T::zero(), T::one(), T::infinity());
    let (dp, dm) = (one - a, one + a);
    let (vp, vm) = (pos(lam - c) / dp, pos(lam + c) / dm);
    let tp = if bar_plus == zero && dp > zero { vp } else { inf };
    let tm = if bar_minus == zero && dm > zero { vm } else { inf };
    (tp, tm)
}

#[inline(always)]
fn next_join_imp<T: Element>(
    c: &[T],
    a: &[T],
    bar_plus: &[T],
    bar_minus: &[T],
    lam: T,
    gamma: T,
    signed: bool,
) -> (T, usize) {
    let k = c.len();
    assert!(
        a.len() == k && bar_plus.len() == k && bar_minus.len() == k,
        "next_join: lengths {k}, {}, {}, {}",
        a.len(),
        bar_plus.len(),
        bar_minus.len()
    );
    let kappa = T::of(16.0) * T::epsilon();
    let (mut best, mut win) = (gamma, NO_JOIN);
    let mut j0 = 0;
    while j0 + JOIN_BLOCK <= k {
        let cb: &[T; JOIN_BLOCK] = c[j0..j0 + JOIN_BLOCK].try_into().expect("block");
        let ab: &[T; JOIN_BLOCK] = a[j0..j0 + JOIN_BLOCK].try_into().expect("block");
        let pb: &[T; JOIN_BLOCK] = bar_plus[j0..j0 + JOIN_BLOCK].try_into().expect("block");
        let mb: &[T; JOIN_BLOCK] = bar_minus[j0..j0 + JOIN_BLOCK].try_into().expect("block");
        // The filter (see the docs): |c − γ·a| + κ·|c| − bar ≥ (λ − γ) − κ·λ.
        let theta = (lam - best) - kappa * lam;
        let mut any = false;
        for l in 0..JOIN_BLOCK {
            let q = cb[l] - best * ab[l];
            let v = if signed { q.abs() } else { q };
            let bar = if pb[l] < mb[l] { pb[l] } else { mb[l] };
            any |= v + kappa * cb[l].abs() - bar >= theta;
        }
        if any {
            if let Some((t, lane)) = block_min(cb, ab, pb, mb, lam, best, u32::MAX) {
                (best, win) = (t, 2 * j0 + lane);
            }
        }
        j0 += JOIN_BLOCK;
    }
    if j0 < k {
        let rest = k - j0;
        if k >= JOIN_BLOCK {
            // The last, partial block as the last full block of the slices, with the lanes
            // that were in the block before left out.
            let s = k - JOIN_BLOCK;
            let cb: &[T; JOIN_BLOCK] = c[s..].try_into().expect("block");
            let ab: &[T; JOIN_BLOCK] = a[s..].try_into().expect("block");
            let pb: &[T; JOIN_BLOCK] = bar_plus[s..].try_into().expect("block");
            let mb: &[T; JOIN_BLOCK] = bar_minus[s..].try_into().expect("block");
            let lanes = !((1u32 << (JOIN_BLOCK - rest)) - 1);
            if let Some((t, lane)) = block_min(cb, ab, pb, mb, lam, best, lanes) {
                (best, win) = (t, 2 * s + lane);
            }
        } else {
            // Fewer atoms than a block: padded with atoms barred from both sides.
            let (mut cb, mut ab) = ([T::zero(); JOIN_BLOCK], [T::zero(); JOIN_BLOCK]);
            let (mut pb, mut mb) = ([T::infinity(); JOIN_BLOCK], [T::infinity(); JOIN_BLOCK]);
            for l in 0..rest {
                (cb[l], ab[l], pb[l], mb[l]) = (c[j0 + l], a[j0 + l], bar_plus[j0 + l], bar_minus[j0 + l]);
            }
            if let Some((t, lane)) = block_min(&cb, &ab, &pb, &mb, lam, best, u32::MAX) {
                (best, win) = (t, 2 * j0 + lane);
            }
        }
    }
    (best, win)
}

/// The scan of one block, on the lanes set in `lanes`: `t⁺` then `t⁻` of lane 0, 1, …, a
/// value kept if strictly below the best so far (starting from `best`). Returns the last kept
/// value and its code (`2l` for lane l at `+λ`, `2l + 1` at `−λ`), or `None`. The times are
/// computed for all lanes at once and only the lanes that beat `best` are visited, in order
/// (bit masks), so the block vectorises and the result is the one of the plain scan.
#[inline(always)]
fn block_min<T: Element>(
    cb: &[T; JOIN_BLOCK],
    ab: &[T; JOIN_BLOCK],
    pb: &[T; JOIN_BLOCK],
    mb: &[T; JOIN_BLOCK],
    lam: T,
    best: T,
    lanes: u32,
) -> Option<(T, usize)> {
    let (mut tp, mut tm) = ([T::zero(); JOIN_BLOCK], [T::zero(); JOIN_BLOCK]);
    for l in 0..JOIN_BLOCK {
        (tp[l], tm[l]) = join_times(cb[l], ab[l], pb[l], mb[l], lam);
    }
    let mut below = 0u32;
    for l in 0..JOIN_BLOCK {
        below |= (((tp[l] < best) | (tm[l] < best)) as u32) << l;
    }
    below &= lanes;
    if below == 0 {
        return None;
    }
    let (mut best, mut win) = (best, usize::MAX);
    while below != 0 {
        let l = below.trailing_zeros() as usize;
        below &= below - 1;
        if tp[l] < best {
            (best, win) = (tp[l], 2 * l);
        }
        if tm[l] < best {
            (best, win) = (tm[l], 2 * l + 1);
        }
    }
    (win != usize::MAX).then_some((best, win))
}

// ============================================================================ u = L⁻ᵀ·y

engine::dispatched! {
    /// `b ← L⁻ᵀ·b` for the lower-triangular `L` stored row-major with leading dimension `ld`
    /// (`L[i, j] = l[i·ld + j]`, `j ≤ i < b.len()`): for i = n−1 … 0, `x_i = b_i / L_ii`, then
    /// `b_j −= L_ij·x_i` for j < i (the arithmetic of `Cholesky::solve_upper`).
    /// **Panics** if `l` is too short for `b.len()` rows.
    pub(crate) fn solve_lt<T>(l: &[T], ld: usize, b: &mut [T]) = solve_lt_imp
}

#[inline(always)]
fn solve_lt_imp<T: Element>(l: &[T], ld: usize, b: &mut [T]) {
    let n = b.len();
    if n > 0 {
        assert!(l.len() >= (n - 1) * ld + n, "solve_lt: {n} rows of leading dimension {ld} need more than {}", l.len());
    }
    // Two rows at a time: b_j −= L_ij·x_i, then −= L_{i−1,j}·x_{i−1}, as the row loop does.
    let mut i = n;
    while i >= 2 {
        let (hi, lo) = (&l[(i - 1) * ld..(i - 1) * ld + i], &l[(i - 2) * ld..(i - 2) * ld + i - 1]);
        let xh = b[i - 1] / hi[i - 1];
        b[i - 1] = xh;
        let xl = (b[i - 2] - hi[i - 2] * xh) / lo[i - 2];
        b[i - 2] = xl;
        for ((bj, &ah), &al) in b[..i - 2].iter_mut().zip(&hi[..i - 2]).zip(&lo[..i - 2]) {
            *bj = (*bj - ah * xh) - al * xl;
        }
        i -= 2;
    }
    if i == 1 {
        b[0] /= l[0];
    }
}

// ============================================================================ ∂Dᵀ rows

engine::dispatched! {
    /// For q = 0, 1, …: `y[rows[q]·w + i] += b[q]·r[i] − a[q]·u[i]` for `i < w` (each
    /// element as `y + (b·r − a·u)`), the per-sample update of Mairal's `∂Dᵀ` on one tile.
    /// **Panics** if `r` or `u` is not `w` long, `b` or `a` is shorter than `rows`, or a row
    /// reaches past `y`.
    pub(crate) fn scatter_rows<T>(y: &mut [T], w: usize, rows: &[usize], b: &[T], a: &[T], r: &[T], u: &[T]) = scatter_rows_imp
}

#[inline(always)]
fn scatter_rows_imp<T: Element>(y: &mut [T], w: usize, rows: &[usize], b: &[T], a: &[T], r: &[T], u: &[T]) {
    assert!(r.len() == w && u.len() == w, "scatter_rows: r and u have {} and {} values, w = {w}", r.len(), u.len());
    assert!(b.len() >= rows.len() && a.len() >= rows.len(), "scatter_rows: too few coefficients");
    for ((&j, &bq), &aq) in rows.iter().zip(b).zip(a) {
        let row = &mut y[j * w..j * w + w];
        for ((o, &ri), &ui) in row.iter_mut().zip(r).zip(u) {
            *o += bq * ri - aq * ui;
        }
    }
}

// ============================================================================ transpose

/// `dst[c·dst_ld + r] = src[r·src_ld + c]` for `r < rows`, `c < cols`: tiles of 4 × 4 (f64)
/// or 8 × 8 (f32) moved with AVX2 shuffles when `level` has AVX2, one element at a time
/// otherwise (and for the edges). Only moves values, so every level gives the same result.
/// **Panics** if a slice is too short for its rows.
pub(crate) fn transpose<T: Element>(
    level: Isa,
    src: &[T],
    src_ld: usize,
    rows: usize,
    cols: usize,
    dst: &mut [T],
    dst_ld: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(src.len() >= (rows - 1) * src_ld + cols, "transpose: source too short");
    assert!(dst.len() >= (cols - 1) * dst_ld + rows, "transpose: destination too short");
    // (rows, cols) of the part done in tiles.
    let mut tiled = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if level.checked() != Isa::Generic {
        use std::any::TypeId;
        if TypeId::of::<T>() == TypeId::of::<f64>() {
            let (rt, ct) = (rows / 4 * 4, cols / 4 * 4);
            // SAFETY: T is f64 (same layout); AVX2 is present (the level); the tiles read
            // src[r·src_ld + c] and write dst[c·dst_ld + r] for r < rt ≤ rows, c < ct ≤ cols,
            // inside the slices by the asserts above.
            unsafe {
                transpose_f64_avx2(src.as_ptr() as *const f64, src_ld, rt, ct, dst.as_mut_ptr() as *mut f64, dst_ld)
            };
            tiled = (rt, ct);
        } else if TypeId::of::<T>() == TypeId::of::<f32>() {
            let (rt, ct) = (rows / 8 * 8, cols / 8 * 8);
            // SAFETY: as above, with T = f32 and 8 × 8 tiles.
            unsafe {
                transpose_f32_avx2(src.as_ptr() as *const f32, src_ld, rt, ct, dst.as_mut_ptr() as *mut f32, dst_ld)
            };
            tiled = (rt, ct);
        }
    }
    let _ = level;
    let (rt, ct) = tiled;
    for r in 0..rows {
        let c_from = if r < rt { ct } else { 0 };
        for c in c_from..cols {
            dst[c * dst_ld + r] = src[r * src_ld + c];
        }
    }
}

/// The 4 × 4 tiles of [`transpose`] for f64: rows `0..rows`, columns `0..cols`, both multiples
/// of 4.
///
/// # Safety
/// AVX2 must be available; `src` must be valid for reads at `r·src_ld + c` and `dst` for
/// writes at `c·dst_ld + r` for every `r < rows`, `c < cols`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_f64_avx2(src: *const f64, src_ld: usize, rows: usize, cols: usize, dst: *mut f64, dst_ld: usize) {
    use std::arch::x86_64::*;
    for r0 in (0..rows).step_by(4) {
        for c0 in (0..cols).step_by(4) {
            let p = src.add(r0 * src_ld + c0);
            let (a, b) = (_mm256_loadu_pd(p), _mm256_loadu_pd(p.add(src_ld)));
            let (c, d) = (_mm256_loadu_pd(p.add(2 * src_ld)), _mm256_loadu_pd(p.add(3 * src_ld)));
            // [a0 b0 a2 b2], [a1 b1 a3 b3], [c0 d0 c2 d2], [c1 d1 c3 d3]
            let (t0, t1) = (_mm256_unpacklo_pd(a, b), _mm256_unpackhi_pd(a, b));
            let (t2, t3) = (_mm256_unpacklo_pd(c, d), _mm256_unpackhi_pd(c, d));
            let q = dst.add(c0 * dst_ld + r0);
            _mm256_storeu_pd(q, _mm256_permute2f128_pd(t0, t2, 0x20));
            _mm256_storeu_pd(q.add(dst_ld), _mm256_permute2f128_pd(t1, t3, 0x20));
            _mm256_storeu_pd(q.add(2 * dst_ld), _mm256_permute2f128_pd(t0, t2, 0x31));
            _mm256_storeu_pd(q.add(3 * dst_ld), _mm256_permute2f128_pd(t1, t3, 0x31));
        }
    }
}

/// The 8 × 8 tiles of [`transpose`] for f32 (multiples of 8).
///
/// # Safety
/// As [`transpose_f64_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_f32_avx2(src: *const f32, src_ld: usize, rows: usize, cols: usize, dst: *mut f32, dst_ld: usize) {
    use std::arch::x86_64::*;
    for r0 in (0..rows).step_by(8) {
        for c0 in (0..cols).step_by(8) {
            let p = src.add(r0 * src_ld + c0);
            let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(p.add(i * src_ld)));
            // Pairs of rows interleaved, then quadruples, then the 128-bit halves swapped.
            let t: [__m256; 8] = std::array::from_fn(|i| {
                let (x, y) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
                if i % 2 == 0 {
                    _mm256_unpacklo_ps(x, y)
                } else {
                    _mm256_unpackhi_ps(x, y)
                }
            });
            let u: [__m256; 8] = [
                _mm256_shuffle_ps::<0x44>(t[0], t[2]),
                _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
                _mm256_shuffle_ps::<0x44>(t[1], t[3]),
                _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
                _mm256_shuffle_ps::<0x44>(t[4], t[6]),
                _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
                _mm256_shuffle_ps::<0x44>(t[5], t[7]),
                _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
            ];
            let q = dst.add(c0 * dst_ld + r0);
            for i in 0..4 {
                _mm256_storeu_ps(q.add(i * dst_ld), _mm256_permute2f128_ps::<0x20>(u[i], u[i + 4]));
                _mm256_storeu_ps(q.add((i + 4) * dst_ld), _mm256_permute2f128_ps::<0x31>(u[i], u[i + 4]));
            }
        }
    }
}

// ============================================================================ c −= γ·a

engine::dispatched! {
    /// `y[i] −= s·x[i]`. **Panics** if the lengths differ.
    pub(crate) fn sub_scaled<T>(s: T, x: &[T], y: &mut [T]) = sub_scaled_imp
}

#[inline(always)]
fn sub_scaled_imp<T: Element>(s: T, x: &[T], y: &mut [T]) {
    assert_eq!(x.len(), y.len(), "sub_scaled: lengths {} and {}", x.len(), y.len());
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi -= s * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::Rng;

    const LENGTHS: [usize; 11] = [0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 500];

    fn bits<T: Element>(v: &[T]) -> Vec<f64> {
        v.iter().map(|x| x.as_f64()).collect()
    }

    fn gemv_case<T: Element>(rng: &mut Rng) {
        for &n in &LENGTHS {
            for nrows in [0usize, 1, 3, 17] {
                let ld = n + 3; // rows longer than the output, as G's rows are not
                let total = (nrows + 2) * ld;
                let g: Vec<T> = (0..total).map(|_| T::of(rng.normal())).collect();
                let rows: Vec<usize> = (0..nrows).map(|_| rng.below(nrows as u64 + 2) as usize).collect();
                let u: Vec<T> = (0..nrows).map(|_| T::of(rng.normal())).collect();
                // Naive: the loop the path ran before.
                let mut want = vec![T::zero(); n];
                for (&j, &uq) in rows.iter().zip(&u) {
                    for (o, &v) in want.iter_mut().zip(&g[j * ld..j * ld + n]) {
                        *o += uq * v;
                    }
                }
                for level in Isa::available() {
                    let mut out = vec![T::of(f64::NAN); n];
                    gemv_rows(level, &g, ld, &rows, &u, &mut out);
                    let same = out.iter().zip(&want).all(|(a, b)| a.to_bits_u64() == b.to_bits_u64());
                    assert!(same, "{} n={n} rows={nrows}: {:?} vs {:?}", level.name(), bits(&out), bits(&want));
                }
            }
        }
    }

    /// Bit patterns, for comparing ±0 and every other value exactly.
    trait Bits {
        fn to_bits_u64(self) -> u64;
    }
    impl<T: Element> Bits for T {
        fn to_bits_u64(self) -> u64 {
            // f32 → f64 is exact, so equal f64 bits mean equal T bits.
            self.as_f64().to_bits()
        }
    }

    #[test]
    fn gemv_rows_matches_the_naive_loop_bit_for_bit_on_every_level() {
        let mut rng = Rng::new(1);
        gemv_case::<f64>(&mut rng);
        gemv_case::<f32>(&mut rng);
    }

    /// The naive search: every atom in order, `t⁺` before `t⁻`, a value kept only if it is
    /// strictly smaller than the best so far.
    fn naive_join<T: Element>(c: &[T], a: &[T], bp: &[T], bm: &[T], lam: T, gamma: T) -> (T, usize) {
        let (zero, one) = (T::zero(), T::one());
        let (mut best, mut win) = (gamma, NO_JOIN);
        for j in 0..c.len() {
            let (dp, dm) = (one - a[j], one + a[j]);
            if bp[j] == zero && dp > zero && pos(lam - c[j]) / dp < best {
                (best, win) = (pos(lam - c[j]) / dp, 2 * j);
            }
            if bm[j] == zero && dm > zero && pos(lam + c[j]) / dm < best {
                (best, win) = (pos(lam + c[j]) / dm, 2 * j + 1);
            }
        }
        (best, win)
    }

    fn join_case<T: Element>(rng: &mut Rng) {
        let (zero, inf) = (T::zero(), T::infinity());
        for &n in &LENGTHS {
            for trial in 0..60 {
                // Correlations inside [−λ, λ] (some exactly at ±λ, some past it by rounding),
                // rates around ±1 (some exactly ±1: a zero denominator), a few sides barred,
                // repeated values (ties), and γ from "nothing reaches" to "many reach".
                let lam = T::of(1.0);
                let mut c: Vec<T> = (0..n).map(|_| T::of(rng.uniform_in(-1.0, 1.0))).collect();
                let mut a: Vec<T> = (0..n).map(|_| T::of(rng.uniform_in(-2.0, 2.0))).collect();
                for j in 0..n {
                    match rng.below(12) {
                        0 => c[j] = lam,
                        1 => c[j] = -lam * T::of(1.0 + 1e-7),
                        2 => a[j] = T::one(),
                        3 if j > 0 => (c[j], a[j]) = (c[j - 1], a[j - 1]),
                        _ => {}
                    }
                }
                let bp: Vec<T> = (0..n).map(|_| if rng.below(5) == 0 { inf } else { zero }).collect();
                let positive = trial % 3 == 0;
                let bm: Vec<T> = (0..n).map(|_| if positive || rng.below(5) == 0 { inf } else { zero }).collect();
                let mut gamma = T::of([1e-3, 0.05, 0.3, 2.0, -1e-12][trial % 5]);
                if trial % 7 == 6 && n > 0 {
                    // γ exactly at, or one rounding step around, some atom's time: the filter's margin.
                    let j = rng.below(n as u64) as usize;
                    let t = join_times(c[j], a[j], zero, zero, lam).0;
                    if t.is_finite() {
                        gamma = t * T::of([1.0, 1.0 - 1e-15, 1.0 + 1e-15][trial % 3]);
                    }
                }
                let want = naive_join(&c, &a, &bp, &bm, lam, gamma);
                for level in Isa::available() {
                    let got = next_join(level, &c, &a, &bp, &bm, lam, gamma, !positive);
                    assert!(
                        got.0.to_bits_u64() == want.0.to_bits_u64() && got.1 == want.1,
                        "{} n={n} trial={trial}: {:?} vs {:?}",
                        level.name(),
                        (got.0.as_f64(), got.1),
                        (want.0.as_f64(), want.1)
                    );
                }
            }
        }
    }

    #[test]
    fn next_join_matches_the_naive_scan_on_every_level() {
        let mut rng = Rng::new(2);
        join_case::<f64>(&mut rng);
        join_case::<f32>(&mut rng);
    }

    /// Ties: equal times go to the lower index, and at one index to `+λ`; a time equal to γ
    /// is not a join (the stop wins it).
    #[test]
    fn next_join_breaks_ties_by_index_then_side() {
        let n = 40;
        // λ = 1, a = 0: t⁺ = 1 − c, t⁻ = 1 + c. With c = −0.9 and only +λ open, t⁺ = 1.9,
        // except atoms 1 and 20 (in different blocks) with c = 0.5: t⁺ = 0.5 for both.
        let (mut c, a) = (vec![-0.9f64; n], vec![0.0f64; n]);
        let (bp, closed, open) = (vec![0.0; n], vec![f64::INFINITY; n], vec![0.0; n]);
        c[1] = 0.5;
        c[20] = 0.5;
        for level in Isa::available() {
            assert_eq!(next_join(level, &c, &a, &bp, &closed, 1.0, 1.0, false), (0.5, 2), "{}", level.name());
        }
        // c = 0: t⁺ = t⁻ = 1 for every atom, both sides open: atom 0 at +λ.
        let c = vec![0.0f64; n];
        for level in Isa::available() {
            assert_eq!(next_join(level, &c, &a, &bp, &open, 1.0, 2.0, true), (1.0, 0), "{}", level.name());
            assert_eq!(next_join(level, &c, &a, &bp, &open, 1.0, 1.0, true), (1.0, NO_JOIN), "{}", level.name());
        }
    }

    fn sub_case<T: Element>(rng: &mut Rng) {
        for &n in &LENGTHS {
            let x: Vec<T> = (0..n).map(|_| T::of(rng.normal())).collect();
            let y: Vec<T> = (0..n).map(|_| T::of(rng.normal())).collect();
            let s = T::of(rng.normal());
            let want: Vec<T> = y.iter().zip(&x).map(|(&yi, &xi)| yi - s * xi).collect();
            for level in Isa::available() {
                let mut got = y.clone();
                sub_scaled(level, s, &x, &mut got);
                assert!(
                    got.iter().zip(&want).all(|(a, b)| a.to_bits_u64() == b.to_bits_u64()),
                    "{} n={n}",
                    level.name()
                );
            }
        }
    }

    #[test]
    fn sub_scaled_matches_the_naive_loop_bit_for_bit_on_every_level() {
        let mut rng = Rng::new(4);
        sub_case::<f64>(&mut rng);
        sub_case::<f32>(&mut rng);
    }

    fn solve_lt_case<T: Element>(rng: &mut Rng) {
        for &n in &LENGTHS {
            // A well-conditioned lower factor with a leading dimension larger than n.
            let ld = n + 2;
            let mut l = vec![T::of(f64::NAN); ld * ld];
            for i in 0..n {
                for j in 0..i {
                    l[i * ld + j] = T::of(0.3 * rng.normal() / (n as f64).sqrt());
                }
                l[i * ld + i] = T::of(1.0 + rng.uniform());
            }
            let b: Vec<T> = (0..n).map(|_| T::of(rng.normal())).collect();
            // Naive: the row loop of `Cholesky::solve_upper`, one term at a time.
            let mut want = b.clone();
            for i in (0..n).rev() {
                let xi = want[i] / l[i * ld + i];
                want[i] = xi;
                for j in 0..i {
                    want[j] -= l[i * ld + j] * xi;
                }
            }
            // And it solves Lᵀ·x = b.
            for j in 0..n {
                let r: f64 = (j..n).map(|i| l[i * ld + j].as_f64() * want[i].as_f64()).sum::<f64>() - b[j].as_f64();
                assert!(r.abs() < 1e-4 * (1.0 + b[j].as_f64().abs()), "n={n} residual {r}");
            }
            for level in Isa::available() {
                let mut got = b.clone();
                solve_lt(level, &l, ld, &mut got);
                assert!(
                    got.iter().zip(&want).all(|(a, b)| a.to_bits_u64() == b.to_bits_u64()),
                    "{} n={n}",
                    level.name()
                );
            }
        }
    }

    #[test]
    fn solve_lt_matches_the_naive_loop_bit_for_bit_on_every_level() {
        let mut rng = Rng::new(5);
        solve_lt_case::<f64>(&mut rng);
        solve_lt_case::<f32>(&mut rng);
    }

    fn pair_case<T: Element>(rng: &mut Rng) {
        for &n in &LENGTHS {
            for nrows in [0usize, 1, 3, 17] {
                let ld = n + 3;
                let g: Vec<T> = (0..(nrows + 2) * ld).map(|_| T::of(rng.normal())).collect();
                let rows: Vec<usize> = (0..nrows).map(|_| rng.below(nrows as u64 + 2) as usize).collect();
                let (b, a): (Vec<T>, Vec<T>) = (0..nrows).map(|_| (T::of(rng.normal()), T::of(rng.normal()))).unzip();
                let x: Vec<T> = (0..n).map(|_| T::of(rng.normal())).collect();
                let (mut wu, mut ws) = (vec![T::zero(); n], vec![T::zero(); n]);
                for q in 0..nrows {
                    for i in 0..n {
                        wu[i] += b[q] * g[rows[q] * ld + i];
                        ws[i] += a[q] * g[rows[q] * ld + i];
                    }
                }
                let wr: Vec<T> = x.iter().zip(&ws).map(|(&xi, &si)| xi - si).collect();
                for level in Isa::available() {
                    let (mut u, mut r) = (vec![T::nan(); n], vec![T::nan(); n]);
                    gemv_pair(level, &g, ld, &rows, &b, &a, &x, &mut u, &mut r);
                    let same = |p: &[T], q: &[T]| p.iter().zip(q).all(|(x, y)| x.to_bits_u64() == y.to_bits_u64());
                    assert!(same(&u, &wu) && same(&r, &wr), "{} n={n} rows={nrows}", level.name());
                }
            }
        }
    }

    #[test]
    fn gemv_pair_matches_the_naive_loops_bit_for_bit_on_every_level() {
        let mut rng = Rng::new(8);
        pair_case::<f64>(&mut rng);
        pair_case::<f32>(&mut rng);
    }

    fn scatter_case<T: Element>(rng: &mut Rng) {
        for &w in &LENGTHS {
            for nrows in [0usize, 1, 5, 17] {
                let k = nrows + 3;
                let y: Vec<T> = (0..k * w).map(|_| T::of(rng.normal())).collect();
                let rows: Vec<usize> = (0..nrows).map(|_| rng.below(k as u64) as usize).collect(); // repeats too
                let (b, a): (Vec<T>, Vec<T>) = (0..nrows).map(|_| (T::of(rng.normal()), T::of(rng.normal()))).unzip();
                let (r, u): (Vec<T>, Vec<T>) = (0..w).map(|_| (T::of(rng.normal()), T::of(rng.normal()))).unzip();
                let mut want = y.clone();
                for q in 0..nrows {
                    for i in 0..w {
                        let o = &mut want[rows[q] * w + i];
                        *o += b[q] * r[i] - a[q] * u[i];
                    }
                }
                for level in Isa::available() {
                    let mut got = y.clone();
                    scatter_rows(level, &mut got, w, &rows, &b, &a, &r, &u);
                    assert!(
                        got.iter().zip(&want).all(|(x, y)| x.to_bits_u64() == y.to_bits_u64()),
                        "{} w={w}",
                        level.name()
                    );
                }
            }
        }
    }

    #[test]
    fn scatter_rows_matches_the_naive_loop_bit_for_bit_on_every_level() {
        let mut rng = Rng::new(6);
        scatter_case::<f64>(&mut rng);
        scatter_case::<f32>(&mut rng);
    }

    fn transpose_case<T: Element>(rng: &mut Rng) {
        for &rows in &LENGTHS {
            for &cols in &[0usize, 1, 3, 4, 7, 8, 9, 16, 17, 33] {
                let (sld, dld) = (cols + 2, rows + 1);
                let src: Vec<T> = (0..rows * sld).map(|_| T::of(rng.normal())).collect();
                let mut want = vec![T::nan(); cols * dld];
                for r in 0..rows {
                    for c in 0..cols {
                        want[c * dld + r] = src[r * sld + c];
                    }
                }
                for level in Isa::available() {
                    let mut got = vec![T::nan(); cols * dld];
                    transpose(level, &src, sld, rows, cols, &mut got, dld);
                    let same = got.iter().zip(&want).all(|(a, b)| a.to_bits_u64() == b.to_bits_u64());
                    assert!(same, "{} {} {rows}×{cols}", T::DTYPE, level.name());
                }
            }
        }
    }

    #[test]
    fn transpose_matches_the_naive_loop_on_every_level() {
        let mut rng = Rng::new(7);
        transpose_case::<f64>(&mut rng);
        transpose_case::<f32>(&mut rng);
    }

    #[test]
    fn pos_is_max_with_zero() {
        for v in [-2.0f64, -0.0, 0.0, 1e-300, 3.5] {
            assert_eq!(pos(v), v.max(0.0), "{v}");
        }
        assert_eq!(pos(-0.0f64).to_bits(), 0.0f64.to_bits());
    }
}
