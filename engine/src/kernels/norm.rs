//! Batch normalisation in training mode over axis 1 of an `[N, C, …]` tensor, fused: the
//! statistics, the output and the gradient each take one pass per channel (the statistics two
//! reads, mean then centred squares, as the composed formula computes them), instead of the
//! nine element-wise ops and reductions of the composed `(x − μ)/√(σ² + ε)·γ + β`, each of
//! which wrote a fresh temporary as large as `x`.
//!
//! With `m = N·H·W` values per channel, `μ = Σx/m`, `σ² = Σ(x − μ)²/m` (biased),
//! `r = 1/√(σ² + ε)`, `x̂ = (x − μ)·r`:
//! * forward `y = x̂·γ + β`;
//! * backward, for `g = ∂L/∂y`: `∂β = Σg`, `∂γ = Σg·x̂`,
//!   `∂x = γ·r·(g − ∂β/m − x̂·∂γ/m)`.
//!
//! Every per-channel sum is taken by one task in a fixed order (the `N` runs of a channel in
//! order, each run with [`LANES`] interleaved accumulators combined in a fixed tree), so the
//! bits do not depend on the number of threads. Channels run in parallel above
//! `2·PAR_CHUNK` elements; the output passes are split into pieces of whole runs.
//! [`naive`] holds the composed formula the tests compare with.

use std::mem::MaybeUninit;

use crate::kernels::elementwise::fresh;
use crate::kernels::reduce::map_range;
use crate::kernels::simd::Isa;
use crate::{Element, Tensor, PAR_CHUNK};

/// Interleaved accumulators per sum (a fixed order that vectorises).
const LANES: usize = 16;

/// What a training-mode batch normalisation computed besides its output, one entry per
/// channel. The backward rule needs `mean` and `inv_std`; a layer updates its running
/// statistics from `mean` and `var`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchStats<T> {
    /// Batch mean `μ_c`.
    pub mean: Vec<T>,
    /// Biased batch variance `σ²_c` (the sum of squares over `count`).
    pub var: Vec<T>,
    /// `1/√(σ²_c + ε)`.
    pub inv_std: Vec<T>,
    /// Values per channel, `N·H·W`.
    pub count: usize,
}

/// `(N, C, L)` of an `[N, C, …]` tensor, `L` the product of the trailing axes.
#[track_caller]
fn geometry<T: Element>(x: &Tensor<T>, op: &str) -> (usize, usize, usize) {
    let s = x.shape();
    assert!(s.len() >= 2, "{op}: expected an input [N, C, …], got {s:?}");
    (s[0], s[1], s[2..].iter().product())
}

/// Which sums a pass over a channel's runs takes (`a`, `b` two runs of equal length, `μ` the
/// channel's mean): `[Σa, 0]`, `[Σ(a − μ)², 0]`, or `[Σa, Σa·(b − μ)]` (the backward: `a = g`,
/// `b = x`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Sums {
    Plain,
    Centred,
    Backward,
}

/// The per-element terms of `kind`.
#[inline(always)]
fn terms<T: Element>(kind: Sums, a: T, b: T, mu: T) -> [T; 2] {
    match kind {
        Sums::Plain => [a, T::zero()],
        Sums::Centred => {
            let d = a - mu;
            [d * d, T::zero()]
        }
        Sums::Backward => [a, a * (b - mu)],
    }
}

/// The sums of `kind` over two runs of equal length, with [`LANES`] interleaved accumulators
/// per sum combined in a fixed tree (`vmath::fold_lanes`), then the remainder in order.
#[inline(always)]
fn lane_sums<T: Element>(kind: Sums, a: &[T], b: &[T], mu: T) -> [T; 2] {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [[T::zero(); LANES]; 2];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for k in 0..LANES {
            let t = terms(kind, xa[k], xb[k], mu);
            acc[0][k] += t[0];
            acc[1][k] += t[1];
        }
    }
    finish(kind, acc, ra, rb, mu)
}

/// Folds the lanes and adds the remainder's terms in order.
#[inline(always)]
fn finish<T: Element>(kind: Sums, acc: [[T; LANES]; 2], ra: &[T], rb: &[T], mu: T) -> [T; 2] {
    let mut out = [crate::kernels::vmath::fold_lanes(acc[0]), crate::kernels::vmath::fold_lanes(acc[1])];
    for (&xa, &xb) in ra.iter().zip(rb) {
        let t = terms(kind, xa, xb, mu);
        out[0] += t[0];
        out[1] += t[1];
    }
    out
}

/// [`lane_sums`] with the [`LANES`] accumulators held in `LANES / V::LANES` vectors (lane `k`
/// is lane `k mod V::LANES` of vector `k / V::LANES`): the same additions, products and
/// subtractions (as additions of `−μ`, the same IEEE result) in the same order, no fused
/// multiply-add, so the same bits on every level. Without it LLVM kept the interleaved sums in
/// scalar SSE operations and shuffles: the backward's two sums took 12% of a ResNet-20 step on
/// one Xeon core (2026-12-07).
///
/// # Safety
/// `V`'s instruction set must be available.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn lane_sums_vectors<F: Element, V: crate::kernels::simd::Vector<F>>(
    kind: Sums,
    a: &[F],
    b: &[F],
    mu: F,
) -> [F; 2] {
    let per = LANES / V::LANES;
    let whole = a.len().min(b.len()) / LANES * LANES;
    // SAFETY (whole body): the caller guarantees the instruction set; every load reads
    // `V::LANES` values inside a whole chunk of `LANES`, every store writes inside `lanes`.
    unsafe {
        let (mut s0, mut s1) = ([V::zero(); LANES], [V::zero(); LANES]);
        let neg = V::splat(-mu);
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut c = 0;
        match kind {
            Sums::Plain => {
                while c < whole {
                    for (v, s) in s0[..per].iter_mut().enumerate() {
                        *s = V::add(*s, V::load(pa.add(c + v * V::LANES)));
                    }
                    c += LANES;
                }
            }
            Sums::Centred => {
                while c < whole {
                    for (v, s) in s0[..per].iter_mut().enumerate() {
                        let d = V::add(V::load(pa.add(c + v * V::LANES)), neg);
                        *s = V::add(*s, V::mul(d, d));
                    }
                    c += LANES;
                }
            }
            Sums::Backward => {
                while c < whole {
                    for v in 0..per {
                        let g = V::load(pa.add(c + v * V::LANES));
                        let d = V::add(V::load(pb.add(c + v * V::LANES)), neg);
                        s0[v] = V::add(s0[v], g);
                        s1[v] = V::add(s1[v], V::mul(g, d));
                    }
                    c += LANES;
                }
            }
        }
        let mut acc = [[F::zero(); LANES]; 2];
        for v in 0..per {
            s0[v].store(acc[0].as_mut_ptr().add(v * V::LANES));
            s1[v].store(acc[1].as_mut_ptr().add(v * V::LANES));
        }
        finish(kind, acc, &a[whole..], &b[whole..], mu)
    }
}

crate::kernels::vmath::vector_dispatched!(lane_sums_f32, f32: fn(kind: Sums, a: &[f32], b: &[f32], mu: f32) -> [f32; 2] = lane_sums_vectors | lane_sums);
crate::kernels::vmath::vector_dispatched!(lane_sums_f64, f64: fn(kind: Sums, a: &[f64], b: &[f64], mu: f64) -> [f64; 2] = lane_sums_vectors | lane_sums);

/// [`lane_sums`] on `level`'s vectors (tests force each level).
fn lane_sums_at<T: Element>(level: Isa, kind: Sums, a: &[T], b: &[T], mu: T) -> [T; 2] {
    use crate::kernels::vmath::same;
    if let (Some(a), Some(b), Some(mu)) = (same::<T, f32>(a), same::<T, f32>(b), same::<T, f32>(&[mu])) {
        let r = lane_sums_f32(level, kind, a, b, mu[0]);
        [T::of(r[0] as f64), T::of(r[1] as f64)]
    } else if let (Some(a), Some(b), Some(mu)) = (same::<T, f64>(a), same::<T, f64>(b), same::<T, f64>(&[mu])) {
        let r = lane_sums_f64(level, kind, a, b, mu[0]);
        [T::of(r[0]), T::of(r[1])]
    } else {
        unreachable!("Element is implemented for f32 and f64 only")
    }
}

/// For every channel, the sums of `kind` over its `N` runs (`a`, `b` `[N, C, L]`, `mean` the
/// channels' means for the centred kinds), each run's sums added in order `i = 0..N` from +0,
/// the channels in blocks, in parallel when the tensor has at least `2·PAR_CHUNK` elements.
///
/// A block's channels are summed run by run in memory order (image `i`, then the block's
/// channels), so a task streams through contiguous memory rather than jumping `C·L` elements
/// from one run of a channel to the next. Each channel still adds its runs in the order
/// `i = 0..N`, so neither the blocks nor the thread count change its bits.
fn channel_sums<T: Element>((n, c, l): (usize, usize, usize), kind: Sums, a: &[T], b: &[T], mean: &[T]) -> Vec<[T; 2]> {
    let level = Isa::best();
    let parallel = n * c * l >= 2 * PAR_CHUNK && rayon::current_num_threads() > 1;
    let blocks = if parallel { c.min(rayon::current_num_threads()) } else { 1 }.max(1);
    let per = c.div_ceil(blocks).max(1);
    let parts = map_range(c.div_ceil(per), parallel, |bk| {
        let chans = bk * per..c.min((bk + 1) * per);
        let mut total = vec![[T::zero(); 2]; chans.len()];
        for i in 0..n {
            for (t, ch) in total.iter_mut().zip(chans.clone()) {
                let at = (i * c + ch) * l;
                let mu = if kind == Sums::Plain { T::zero() } else { mean[ch] };
                let part = lane_sums_at(level, kind, &a[at..at + l], &b[at..at + l], mu);
                t[0] += part[0];
                t[1] += part[1];
            }
        }
        total
    });
    parts.concat()
}

/// One run of an output pass: `dst = (x − c[0])·c[1] + c[2]` (the forward, `c = [μ, γr, β]`),
/// or `dst = c[0]·((g − c[1]) − (x − c[3])·c[2])` (the input gradient, `c = [γr, ḡ, k, μ]`).
#[inline(always)]
fn run_out<T: Element>(backward: bool, dst: &mut [MaybeUninit<T>], g: &[T], x: &[T], c: [T; 4]) {
    if backward {
        let [a, gm, k, mu] = c;
        for ((d, &gv), &xv) in dst.iter_mut().zip(g).zip(x) {
            d.write(a * (gv - gm - (xv - mu) * k));
        }
    } else {
        let [mu, s, b, _] = c;
        for (d, &v) in dst.iter_mut().zip(x) {
            d.write((v - mu) * s + b);
        }
    }
}

/// [`run_out`] on vectors `V`: the same operations in the same order, each `p − q` as
/// `p + (−q)` and `(x − μ)·k` subtracted as `(x − μ)·(−k)` added (IEEE gives the same results:
/// rounding is symmetric in sign), no fused multiply-add; the tail as [`run_out`].
///
/// # Safety
/// `V`'s instruction set must be available.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn run_out_vectors<F: Element, V: crate::kernels::simd::Vector<F>>(
    backward: bool,
    dst: &mut [MaybeUninit<F>],
    g: &[F],
    x: &[F],
    c: [F; 4],
) {
    let len = if backward { dst.len().min(g.len()).min(x.len()) } else { dst.len().min(x.len()) };
    let whole = len / V::LANES * V::LANES;
    // SAFETY (whole body): the caller guarantees the instruction set; every load and store
    // covers `V::LANES` elements below `whole`, inside all three slices.
    unsafe {
        let (px, pd) = (x.as_ptr(), dst.as_mut_ptr().cast::<F>());
        if backward {
            let [a, gm, k, mu] = c;
            let (va, vgm, vk, vmu) = (V::splat(a), V::splat(-gm), V::splat(-k), V::splat(-mu));
            let pg = g.as_ptr();
            for i in (0..whole).step_by(V::LANES) {
                let t = V::add(V::load(pg.add(i)), vgm);
                let p = V::mul(V::add(V::load(px.add(i)), vmu), vk);
                V::mul(va, V::add(t, p)).store(pd.add(i));
            }
        } else {
            let [mu, s, b, _] = c;
            let (vmu, vs, vb) = (V::splat(-mu), V::splat(s), V::splat(b));
            for i in (0..whole).step_by(V::LANES) {
                V::add(V::mul(V::add(V::load(px.add(i)), vmu), vs), vb).store(pd.add(i));
            }
        }
        let gt = if backward { &g[whole..] } else { g };
        run_out(backward, &mut dst[whole..len], gt, &x[whole..], c);
    }
}

crate::kernels::vmath::vector_dispatched!(run_out_f32, f32: fn(backward: bool, dst: &mut [MaybeUninit<f32>], g: &[f32], x: &[f32], c: [f32; 4]) = run_out_vectors | run_out);
crate::kernels::vmath::vector_dispatched!(run_out_f64, f64: fn(backward: bool, dst: &mut [MaybeUninit<f64>], g: &[f64], x: &[f64], c: [f64; 4]) = run_out_vectors | run_out);

/// [`run_out`] on `level`'s vectors (tests force each level).
fn run_out_at<T: Element>(level: Isa, backward: bool, dst: &mut [MaybeUninit<T>], g: &[T], x: &[T], c: [T; 4]) {
    use crate::kernels::vmath::same;
    if let (Some(g), Some(x), Some(cv)) = (same::<T, f32>(g), same::<T, f32>(x), same::<T, f32>(&c)) {
        // SAFETY: T is f32 (checked just above), so the cast keeps the type.
        let dst = unsafe { &mut *(dst as *mut [MaybeUninit<T>] as *mut [MaybeUninit<f32>]) };
        run_out_f32(level, backward, dst, g, x, cv.try_into().expect("4 coefficients"))
    } else if let (Some(g), Some(x), Some(cv)) = (same::<T, f64>(g), same::<T, f64>(x), same::<T, f64>(&c)) {
        // SAFETY: T is f64 (checked just above).
        let dst = unsafe { &mut *(dst as *mut [MaybeUninit<T>] as *mut [MaybeUninit<f64>]) };
        run_out_f64(level, backward, dst, g, x, cv.try_into().expect("4 coefficients"))
    } else {
        unreachable!("Element is implemented for f32 and f64 only")
    }
}

/// A fresh row-major buffer of `runs·l` elements, run `r` (elements `r·l..(r + 1)·l`) written
/// by `body(r, dst)`, in pieces of whole runs of about `PAR_CHUNK` elements (in parallel from
/// `2·PAR_CHUNK` elements on, when the pool has more than one thread).
fn fill_runs<T: Element>(runs: usize, l: usize, body: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync + Send) -> Vec<T> {
    let total = runs * l;
    fresh(total, |dst| {
        if l == 0 {
            return;
        }
        let per = (PAR_CHUNK / l).max(1);
        let piece = |p: usize, d: &mut [MaybeUninit<T>]| {
            for (k, run) in d.chunks_mut(l).enumerate() {
                body(p * per + k, run);
            }
        };
        if total >= 2 * PAR_CHUNK && rayon::current_num_threads() > 1 {
            crate::par::chunks_mut(dst, per * l, &piece);
        } else {
            piece(0, dst);
        }
    })
}

#[track_caller]
fn check_channels<T: Element>(op: &str, what: &str, t: &Tensor<T>, c: usize, x: &Tensor<T>) {
    assert!(t.shape() == [c], "{op}: {what} must have shape [{c}] for an input {:?}, got {:?}", x.shape(), t.shape());
}

impl<T: Element> Tensor<T> {
    /// Training-mode batch normalisation over axis 1 of `[N, C, …]` (rank ≥ 2): each channel
    /// normalised with its batch mean and biased variance, then `·weight[c] + bias[c]`
    /// (`weight`, `bias`: `[C]`). Returns the output and the per-channel statistics.
    ///
    /// One value per channel (`N·H·W = 1`) gives `σ² = 0`, normalised values `0` and the
    /// output `bias`. **Panics** on a rank below 2, on `weight`/`bias` not `[C]`, and on an
    /// input with no values per channel.
    #[track_caller]
    pub fn batch_norm_train(&self, weight: &Tensor<T>, bias: &Tensor<T>, eps: f64) -> (Tensor<T>, BatchStats<T>) {
        let op = "batch_norm";
        let geo @ (n, c, l) = geometry(self, op);
        check_channels(op, "weight", weight, c, self);
        check_channels(op, "bias", bias, c, self);
        let count = n * l;
        assert!(count > 0, "{op}: no values per channel in an input {:?}", self.shape());
        let xc = self.contiguous();
        let x = xc.as_slice().expect("contiguous");
        let inv_m = T::one() / T::of(count as f64);
        let mean: Vec<T> = channel_sums(geo, Sums::Plain, x, x, &[]).into_iter().map(|[s, _]| s * inv_m).collect();
        let var: Vec<T> = channel_sums(geo, Sums::Centred, x, x, &mean).into_iter().map(|[s, _]| s * inv_m).collect();
        let inv_std: Vec<T> = var.iter().map(|&v| T::one() / (v + T::of(eps)).sqrt()).collect();
        let (w, b) = (weight.to_vec(), bias.to_vec());
        let scale: Vec<T> = w.iter().zip(&inv_std).map(|(&w, &r)| w * r).collect();
        let level = Isa::best();
        let y = fill_runs(n * c, l, |r, dst| {
            let ch = r % c;
            run_out_at(level, false, dst, &[], &x[r * l..(r + 1) * l], [mean[ch], scale[ch], b[ch], T::zero()]);
        });
        (Tensor::from_vec(y, self.shape()), BatchStats { mean, var, inv_std, count })
    }

    /// The gradients of [`batch_norm_train`](Tensor::batch_norm_train) at input `self` for
    /// the cotangent `g` (the output's shape): `(∂x, ∂weight, ∂bias)`, `∂x` only when `want_x`.
    /// `stats` are the forward's.
    #[track_caller]
    pub fn batch_norm_train_backward(
        &self,
        g: &Tensor<T>,
        weight: &Tensor<T>,
        stats: &BatchStats<T>,
        want_x: bool,
    ) -> (Option<Tensor<T>>, Tensor<T>, Tensor<T>) {
        let op = "batch_norm backward";
        let geo @ (n, c, l) = geometry(self, op);
        assert!(g.shape() == self.shape(), "{op}: gradient {:?} for an input {:?}", g.shape(), self.shape());
        check_channels(op, "weight", weight, c, self);
        assert!(
            stats.mean.len() == c && stats.inv_std.len() == c && stats.count == n * l,
            "{op}: statistics of another input"
        );
        let (xc, gc) = (self.contiguous(), g.contiguous());
        let (x, gs) = (xc.as_slice().expect("contiguous"), gc.as_slice().expect("contiguous"));
        let (mean, inv_std) = (&stats.mean, &stats.inv_std);
        // Σg and Σg·(x − μ) per channel, in one pass.
        let sums = channel_sums(geo, Sums::Backward, gs, x, mean);
        let db: Vec<T> = sums.iter().map(|s| s[0]).collect();
        let dw: Vec<T> = sums.iter().zip(inv_std).map(|(s, &r)| s[1] * r).collect();
        let dx = want_x.then(|| {
            let inv_m = T::one() / T::of(stats.count as f64);
            let w = weight.to_vec();
            // ∂x = a·(g − ḡ − (x − μ)·k) with a = γr, ḡ = Σg/m, k = r·∂γ/m.
            let coef: Vec<[T; 4]> = (0..c)
                .map(|ch| [w[ch] * inv_std[ch], db[ch] * inv_m, inv_std[ch] * dw[ch] * inv_m, mean[ch]])
                .collect();
            let level = Isa::best();
            let v = fill_runs(n * c, l, |r, dst| {
                let span = r * l..(r + 1) * l;
                run_out_at(level, true, dst, &gs[span.clone()], &x[span], coef[r % c]);
            });
            Tensor::from_vec(v, self.shape())
        });
        (dx, Tensor::from_vec(dw, &[c]), Tensor::from_vec(db, &[c]))
    }
}

/// The composed formulas, op by op, for the tests.
pub mod naive {
    use crate::{Element, Tensor};

    /// The axes reduced for the channel statistics of `[N, C, …]` (all but axis 1), the mean,
    /// `x − mean` and the biased variance, all kept `[1, C, 1, …]`.
    fn stats<T: Element>(x: &Tensor<T>) -> (Vec<usize>, Tensor<T>, Tensor<T>, Tensor<T>) {
        let ax: Vec<usize> = (0..x.rank()).filter(|&a| a != 1).collect();
        let mean = x.mean(&ax, true);
        let centred = x.sub(&mean);
        let var = centred.square().mean(&ax, true);
        (ax, mean, centred, var)
    }

    /// `[C]` as `[1, C, 1, …]` for broadcasting against `x`.
    fn per_channel<T: Element>(t: &Tensor<T>, x: &Tensor<T>) -> Tensor<T> {
        let mut s = vec![1; x.rank()];
        s[1] = x.dim(1);
        t.reshape(&s)
    }

    /// `(y, mean, biased var)` of [`Tensor::batch_norm_train`], composed.
    pub fn batch_norm_train<T: Element>(
        x: &Tensor<T>,
        w: &Tensor<T>,
        b: &Tensor<T>,
        eps: f64,
    ) -> (Tensor<T>, Tensor<T>, Tensor<T>) {
        let (_, mean, centred, var) = stats(x);
        let y = centred.div(&var.add_scalar(eps).sqrt()).mul(&per_channel(w, x)).add(&per_channel(b, x));
        let c = [x.dim(1)];
        (y, mean.reshape(&c), var.reshape(&c))
    }

    /// `(∂x, ∂w, ∂b)` of [`Tensor::batch_norm_train`] for the cotangent `g`, composed.
    pub fn batch_norm_train_backward<T: Element>(
        x: &Tensor<T>,
        g: &Tensor<T>,
        w: &Tensor<T>,
        eps: f64,
    ) -> (Tensor<T>, Tensor<T>, Tensor<T>) {
        let (ax, _, centred, var) = stats(x);
        let m = (x.numel() / x.dim(1).max(1)) as f64;
        let r = var.add_scalar(eps).sqrt().recip();
        let xhat = centred.mul(&r);
        let db = g.sum(&ax, true);
        let dw = g.mul(&xhat).sum(&ax, true);
        let inner = g.sub(&db.div_scalar(m)).sub(&xhat.mul(&dw.div_scalar(m)));
        let dx = inner.mul(&r).mul(&per_channel(w, x));
        let c = [x.dim(1)];
        (dx, dw.reshape(&c), db.reshape(&c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    fn close(what: &str, a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{what}[{i}]: {x} vs {y}");
        }
    }

    /// Every level's vector sums give the scalar loop's bits, for every kind, on runs around
    /// multiples of the lanes, with values of mixed magnitudes (so a changed order of additions
    /// would show) and a mean that cancels most of them.
    #[test]
    fn channel_sums_give_the_same_bits_on_every_level() {
        fn check<T: Element>(rng: &mut Rng) -> usize {
            let mut compared = 0;
            for len in [0, 1, 15, 16, 17, 31, 32, 33, 100, 1024, 1031] {
                let mag = |rng: &mut Rng| (rng.normal() * 4.0).exp() * rng.normal();
                let a: Vec<T> = (0..len).map(|_| T::of(mag(rng))).collect();
                let b: Vec<T> = (0..len).map(|_| T::of(3.0 + mag(rng))).collect();
                for kind in [Sums::Plain, Sums::Centred, Sums::Backward] {
                    let want = lane_sums(kind, &a, &b, T::of(3.0));
                    for level in Isa::available() {
                        let got = lane_sums_at(level, kind, &a, &b, T::of(3.0));
                        let bits = |v: [T; 2]| v.map(|x| x.as_f64().to_bits());
                        assert_eq!(bits(got), bits(want), "{} {kind:?} len {len} on {}", T::DTYPE, level.name());
                        compared += 1;
                    }
                }
            }
            compared
        }
        let mut rng = Rng::new(3);
        let n = check::<f32>(&mut rng) + check::<f64>(&mut rng);
        assert!(n >= 2 * 11 * 3 * 2, "compared {n}: no vector level ran");
    }

    /// Every level's output passes give the scalar loop's bits, forward and backward, on runs
    /// around multiples of the vector widths.
    #[test]
    fn output_passes_give_the_same_bits_on_every_level() {
        fn check<T: Element>(rng: &mut Rng) -> usize {
            let mut compared = 0;
            for len in [0, 1, 3, 4, 7, 8, 15, 16, 17, 33, 1000] {
                let g: Vec<T> = (0..len).map(|_| T::of(rng.normal() * 3.0)).collect();
                let x: Vec<T> = (0..len).map(|_| T::of(rng.normal() * 7.0 + 1.0)).collect();
                let c = [0.7, -0.3, 1.9, 1.1].map(|v| T::of(v + rng.normal() * 0.1));
                for backward in [false, true] {
                    let mut want = vec![MaybeUninit::new(T::zero()); len];
                    run_out(backward, &mut want, &g, &x, c);
                    for level in Isa::available() {
                        let mut got = vec![MaybeUninit::new(T::zero()); len];
                        run_out_at(level, backward, &mut got, &g, &x, c);
                        // SAFETY: both buffers were initialised.
                        let bits = |v: &[MaybeUninit<T>]| {
                            v.iter().map(|e| unsafe { e.assume_init() }.as_f64().to_bits()).collect::<Vec<_>>()
                        };
                        assert_eq!(
                            bits(&got),
                            bits(&want),
                            "{} backward {backward} len {len} on {}",
                            T::DTYPE,
                            level.name()
                        );
                        compared += 1;
                    }
                }
            }
            compared
        }
        let mut rng = Rng::new(5);
        assert!(check::<f32>(&mut rng) + check::<f64>(&mut rng) >= 2 * 11 * 2 * 2);
    }

    /// Fused against composed, forward and backward, in f64, on shapes below and above the
    /// parallel threshold, a rank-2 input, runs shorter than the lanes, and views.
    #[test]
    fn fused_matches_composed() {
        let mut rng = Rng::new(7);
        let cases: Vec<Tensor<f64>> = vec![
            Tensor::randn(&[3, 2, 4, 5], &mut rng),
            Tensor::randn(&[4, 3], &mut rng),
            Tensor::randn(&[2, 3, 7], &mut rng).add_scalar(100.0),
            Tensor::randn(&[16, 8, 16, 16], &mut rng),
            Tensor::randn(&[5, 4, 3, 6], &mut rng).permute(&[0, 1, 3, 2]),
            Tensor::randn(&[4, 7, 3, 9], &mut rng).slice(3, 1, 9, 2),
        ];
        for x in cases {
            let c = x.dim(1);
            let w = Tensor::rand_uniform(&[c], 0.5, 1.5, &mut rng);
            let b = Tensor::randn(&[c], &mut rng);
            let g = Tensor::randn(x.shape(), &mut rng);
            let what = format!("{:?}", x.shape());
            let (y, st) = x.batch_norm_train(&w, &b, 1e-5);
            let (y0, m0, v0) = naive::batch_norm_train(&x, &w, &b, 1e-5);
            close(&format!("{what} y"), &y.to_vec(), &y0.to_vec(), 1e-12);
            close(&format!("{what} mean"), &st.mean, &m0.to_vec(), 1e-12);
            close(&format!("{what} var"), &st.var, &v0.to_vec(), 1e-12);
            let (dx, dw, db) = x.batch_norm_train_backward(&g, &w, &st, true);
            let (dx0, dw0, db0) = naive::batch_norm_train_backward(&x, &g, &w, 1e-5);
            close(&format!("{what} dx"), &dx.unwrap().to_vec(), &dx0.to_vec(), 1e-12);
            close(&format!("{what} dw"), &dw.to_vec(), &dw0.to_vec(), 1e-12);
            close(&format!("{what} db"), &db.to_vec(), &db0.to_vec(), 1e-12);
            assert!(x.batch_norm_train_backward(&g, &w, &st, false).0.is_none());
        }
    }

    /// One value per channel: σ² = 0, the output is the bias, `∂x` is zero.
    #[test]
    fn one_value_per_channel() {
        let x = Tensor::<f64>::from_vec(vec![3.0, -1.0], &[1, 2, 1, 1]);
        let (w, b) = (Tensor::from([2.0, 0.5]), Tensor::from([0.25, -4.0]));
        let (y, st) = x.batch_norm_train(&w, &b, 1e-5);
        assert_eq!(y.to_vec(), vec![0.25, -4.0]);
        assert_eq!((st.mean.clone(), st.var.clone(), st.count), (vec![3.0, -1.0], vec![0.0, 0.0], 1));
        let (dx, dw, db) = x.batch_norm_train_backward(&Tensor::from_vec(vec![1.5, 2.0], &[1, 2, 1, 1]), &w, &st, true);
        assert_eq!(dx.unwrap().to_vec(), vec![0.0, 0.0]);
        assert_eq!((dw.to_vec(), db.to_vec()), (vec![0.0, 0.0], vec![1.5, 2.0]));
    }

    /// The same bits whatever the number of threads, above the parallel threshold.
    #[test]
    fn bits_do_not_depend_on_threads() {
        let mut rng = Rng::new(8);
        let x = Tensor::<f32>::randn(&[8, 6, 40, 40], &mut rng);
        let g = Tensor::<f32>::randn(x.shape(), &mut rng);
        let (w, b) = (Tensor::<f32>::randn(&[6], &mut rng), Tensor::<f32>::randn(&[6], &mut rng));
        let run = |t: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            pool.install(|| {
                let (y, st) = x.batch_norm_train(&w, &b, 1e-5);
                let (dx, dw, db) = x.batch_norm_train_backward(&g, &w, &st, true);
                (y.to_vec(), st, dx.unwrap().to_vec(), dw.to_vec(), db.to_vec())
            })
        };
        assert!(run(1) == run(3));
    }
}
