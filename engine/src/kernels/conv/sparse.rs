//! The two adjoints of a convolution when the output gradient `gy` is mostly zeros: the input
//! gradient (which is also `conv_transpose2d` of a sparse input) scatters `gy[n, o, a, b] ·
//! W[o, ·, ·, ·]` into the input planes, and the weight gradient gathers `gy[n, o, a, b] ·
//! x[n, ·, patch]` into `dW[o]`, visiting only the nonzero entries of `gy`. The work is
//! `nnz(gy)·Cg·kh·kw` multiply-adds instead of `N·O·OH·OW·Cg·kh·kw`.
//!
//! Codes that sit behind a threshold are the use: DCEA's `x_t` (0.04% nonzero in the authors'
//! Poisson configuration as `sparse/examples/dcea_timing.rs` initialises it: unit-norm filters
//! folded by the power iteration, `b = 0.1`), which is the input of its `conv_transpose2d` and,
//! masked by the same threshold, the output gradient of its `conv2d`.
//!
//! [`worthwhile`] picks this path when at most one entry in [`MAX_DENSITY_INV`] of `gy` is
//! nonzero (counted with an early exit, so a dense `gy` costs 1/32 of a scan) and
//! the other operand is finite everywhere: skipping a zero of `gy` is then exactly what the
//! dense product computes (`0·v = 0` for finite `v`; a NaN or ±∞ operand takes the dense path,
//! which propagates it as PyTorch does).
//!
//! Both kernels are deterministic for any number of threads: the input gradient runs one image
//! per task, the weight gradient accumulates runs of images fixed by `N` (each run's `dW`
//! stays in cache while its input planes are read once), added in order by the GEMM path's
//! `sum_of_runs`.

use super::{sum_of_runs, valid_range, Geom};
use crate::Element;

/// The sparse path is taken when `nnz(gy) · MAX_DENSITY_INV ≤ len(gy)`: at most 1/32 of the
/// entries nonzero. On DCEA's geometry (169 filters of 11×11, stride 7, 49 images of 270×270,
/// f32, one thread, Zen 3, 2026-12-02) both kernels break even with im2col + GEMM at about 5%
/// nonzeros and take 0.55–0.7× its time at 3% (0.1× at 0.1%); the test `sparse_crossover`
/// prints the table (`cargo test --release -p sparsegrad-engine sparse_crossover -- --ignored
/// --nocapture`).
pub(super) const MAX_DENSITY_INV: usize = 32;

/// Whether `gy` is sparse enough for this path (see the module docs) and `other` (the weight
/// or the input the nonzeros multiply) is finite everywhere.
///
/// The first `max(2·limit, HEAD)` elements of `gy` (`limit = len/MAX_DENSITY_INV`) are counted
/// in turn with an early exit, so a dense `gy` is refused after `limit + 1` elements, 1/32 of
/// it; the rest of `gy` and the finiteness of `other` are scanned on rayon in chunks of
/// [`crate::PAR_CHUNK`] (an integer count and an `all`: the same answer on any number of
/// threads). DCEA's backward step asks this of the same `gy` for each of its adjoints, so the
/// full scans no longer run serially on one thread each time. (The serial part was [`HEAD`]
/// elements only, which a dense `gy` of more than `32·HEAD` elements never leaves with a count
/// above the limit: every dense adjoint of such a size counted all of `gy`, 20% of the time of
/// the CSC layer's 3 → 64 weight gradient on a Zen 3 core, 2026-12-07.)
pub(super) fn worthwhile<T: Element>(gy: &[T], other: &[T]) -> bool {
    let limit = gy.len() / MAX_DENSITY_INV;
    if limit == 0 {
        return false;
    }
    let nonzeros = |c: &[T]| c.iter().filter(|&&v| v != T::zero()).count();
    let (head, rest) = gy.split_at(gy.len().min((2 * limit).max(HEAD)));
    let mut nonzero = 0usize;
    for chunk in head.chunks(4096) {
        nonzero += nonzeros(chunk);
        if nonzero > limit {
            return false;
        }
    }
    let p = crate::PAR_CHUNK;
    nonzero += crate::par::map(rest.len().div_ceil(p), &|c| nonzeros(&rest[c * p..rest.len().min((c + 1) * p)]))
        .into_iter()
        .sum::<usize>();
    nonzero <= limit && super::all_finite(other)
}

/// Fewest elements of `gy` counted serially, with an early exit, before the parallel count.
pub(super) const HEAD: usize = 1 << 14;

/// Calls `f(pos, v)` for every nonzero `v = plane[pos]`, in order; runs of 16 zeros are
/// skipped with one branch-free (vectorised) test.
#[inline]
fn for_nonzero<T: Element>(plane: &[T], mut f: impl FnMut(usize, T)) {
    const RUN: usize = 16;
    for (r, run) in plane.chunks(RUN).enumerate() {
        if !run.iter().fold(false, |any, &v| any | (v != T::zero())) {
            continue;
        }
        for (t, &v) in run.iter().enumerate() {
            if v != T::zero() {
                f(r * RUN + t, v);
            }
        }
    }
}

/// For kernel taps `0..k` along one axis of an output position `a`: the taps whose input
/// index `a·s − p + t·d` is inside `0..len`, as `(t_lo, t_hi, index of t_lo)`.
#[inline]
fn taps(a: usize, s: usize, p: usize, d: usize, len: usize, k: usize) -> (usize, usize, usize) {
    let off = (a * s) as isize - p as isize;
    let (lo, hi) = valid_range(off, d, len, k);
    (lo, hi, if lo < hi { (off + (lo * d) as isize) as usize } else { 0 })
}

/// A run of kernel taps along one axis (see [`window`]).
type Taps = (usize, usize, usize);

/// The taps of output position `pos` (flat `a·OW + b`) that read real input elements: rows
/// `(i_lo, i_hi, input row of i_lo)` and columns `(j_lo, input column of j_lo, j_hi)`, or
/// `None` when no tap does.
#[inline]
fn window(g: &Geom, pos: usize) -> Option<(Taps, Taps)> {
    let ([sh, sw], [ph, pw], [dh, dw]) = (g.p.stride, g.p.padding, g.p.dilation);
    let rows = taps(pos / g.ow, sh, ph, dh, g.h, g.kh);
    let (j_lo, j_hi, c0) = taps(pos % g.ow, sw, pw, dw, g.w, g.kw);
    (rows.0 < rows.1 && j_lo < j_hi).then_some((rows, (j_lo, c0, j_hi)))
}

/// `dx = ∂⟨conv(x, W), gy⟩/∂x` visiting the nonzeros of `gy` only; `dx` is `[n, c, h, w]`.
pub(super) fn input_grad<T: Element>(g: &Geom, gy: &[T], w: &[T]) -> Vec<T> {
    let (l, plane, image) = (g.l(), g.h * g.w, g.c * g.h * g.w);
    let (cg, og, kk) = (g.cg(), g.og(), g.kh * g.kw);
    let (dh, dw) = (g.p.dilation[0], g.p.dilation[1]);
    let mut dx = crate::filled(g.n * image, T::zero());
    if image == 0 || l == 0 {
        return dx;
    }
    crate::par::chunks_mut(&mut dx, image, &|n, dxn| {
        let gyn = &gy[n * g.o * l..][..g.o * l];
        for (o, gplane) in gyn.chunks_exact(l).enumerate() {
            let grp = o / og;
            for_nonzero(gplane, |pos, v| {
                let Some(((i_lo, i_hi, r0), (j_lo, c0, j_hi))) = window(g, pos) else { return };
                for c in 0..cg {
                    let wk = &w[(o * cg + c) * kk..][..kk];
                    let dxc = &mut dxn[(grp * cg + c) * plane..][..plane];
                    for (t, i) in (i_lo..i_hi).enumerate() {
                        let row = &mut dxc[(r0 + t * dh) * g.w..][..g.w];
                        let wrow = &wk[i * g.kw + j_lo..i * g.kw + j_hi];
                        if dw == 1 {
                            row[c0..c0 + wrow.len()].iter_mut().zip(wrow).for_each(|(d, &k)| *d += v * k);
                        } else {
                            wrow.iter().enumerate().for_each(|(u, &k)| row[c0 + u * dw] += v * k);
                        }
                    }
                }
            });
        }
    });
    dx
}

/// `dW = ∂⟨conv(x, W), gy⟩/∂W` visiting the nonzeros of `gy` only; `dW` is
/// `[o, c/groups, kh, kw]`.
pub(super) fn weight_grad<T: Element>(g: &Geom, gy: &[T], x: &[T]) -> Vec<T> {
    let (l, plane) = (g.l(), g.h * g.w);
    let (cg, og, kk) = (g.cg(), g.og(), g.kh * g.kw);
    let (dh, dw) = (g.p.dilation[0], g.p.dilation[1]);
    let size = g.o * cg * kk;
    if size == 0 || l == 0 || g.n == 0 {
        return vec![T::zero(); size];
    }
    let run = |images: std::ops::Range<usize>| {
        let mut acc = vec![T::zero(); size];
        for n in images {
            for (o, dwo) in acc.chunks_exact_mut(cg * kk).enumerate() {
                let grp = o / og;
                for_nonzero(&gy[(n * g.o + o) * l..][..l], |pos, v| {
                    let Some(((i_lo, i_hi, r0), (j_lo, c0, j_hi))) = window(g, pos) else { return };
                    for c in 0..cg {
                        let xc = &x[(n * g.c + grp * cg + c) * plane..][..plane];
                        let dwc = &mut dwo[c * kk..][..kk];
                        for (t, i) in (i_lo..i_hi).enumerate() {
                            let row = &xc[(r0 + t * dh) * g.w..][..g.w];
                            let drow = &mut dwc[i * g.kw + j_lo..i * g.kw + j_hi];
                            if dw == 1 {
                                let len = drow.len();
                                drow.iter_mut().zip(&row[c0..c0 + len]).for_each(|(d, &s)| *d += v * s);
                            } else {
                                drow.iter_mut().enumerate().for_each(|(u, d)| *d += v * row[c0 + u * dw]);
                            }
                        }
                    }
                });
            }
        }
        acc
    };
    sum_of_runs(g.n, run)
}

/// `y = conv(x, W) ⊙ [mask ≠ 0]` computed at the nonzeros of `mask` only (`mask` and `y`
/// `[n, o, oh, ow]`): each such output is the dot product of its window, in `(c, i, j)`
/// order; every other output is exactly zero (not `0·conv`, so a non-finite value outside the
/// mask does not leak in). One image per task: bit-identical for any thread count.
pub(super) fn masked_forward<T: Element>(g: &Geom, x: &[T], w: &[T], mask: &[T]) -> Vec<T> {
    let (l, plane) = (g.l(), g.h * g.w);
    let (cg, og, kk) = (g.cg(), g.og(), g.kh * g.kw);
    let (dh, dw) = (g.p.dilation[0], g.p.dilation[1]);
    let mut y = crate::filled(g.n * g.o * l, T::zero());
    if l == 0 || g.o == 0 {
        return y;
    }
    crate::par::chunks_mut(&mut y, g.o * l, &|n, yn| {
        for (o, yplane) in yn.chunks_exact_mut(l).enumerate() {
            let grp = o / og;
            for_nonzero(&mask[(n * g.o + o) * l..][..l], |pos, _| {
                let Some(((i_lo, i_hi, r0), (j_lo, c0, j_hi))) = window(g, pos) else { return };
                let mut acc = T::zero();
                for c in 0..cg {
                    let wk = &w[(o * cg + c) * kk..][..kk];
                    let xc = &x[(n * g.c + grp * cg + c) * plane..][..plane];
                    for (t, i) in (i_lo..i_hi).enumerate() {
                        let row = &xc[(r0 + t * dh) * g.w..][..g.w];
                        let wrow = &wk[i * g.kw + j_lo..i * g.kw + j_hi];
                        acc = wrow.iter().enumerate().fold(acc, |a, (u, &k)| a + k * row[c0 + u * dw]);
                    }
                }
                yplane[pos] = acc;
            });
        }
    });
    y
}
