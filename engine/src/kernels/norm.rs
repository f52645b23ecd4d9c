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

/// `Σ_i f(a_i, b_i)` for `M` sums at once over two slices of equal length, with [`LANES`]
/// interleaved accumulators per sum combined in a fixed tree, then the remainder in order.
#[inline(always)]
fn lane_sums<T: Element, const M: usize>(a: &[T], b: &[T], f: impl Fn(T, T) -> [T; M]) -> [T; M] {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [[T::zero(); LANES]; M];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for k in 0..LANES {
            let t = f(xa[k], xb[k]);
            for m in 0..M {
                acc[m][k] += t[m];
            }
        }
    }
    let mut out = [T::zero(); M];
    for m in 0..M {
        out[m] = crate::kernels::vmath::fold_lanes(acc[m]);
    }
    for (&xa, &xb) in ra.iter().zip(rb) {
        let t = f(xa, xb);
        for m in 0..M {
            out[m] += t[m];
        }
    }
    out
}

/// For every channel, `Σ_n lane_sums(run_a, run_b, f)` over its `N` runs in order, the
/// channels in parallel when the tensor has at least `2·PAR_CHUNK` elements.
fn channel_sums<T: Element, const M: usize>(
    (n, c, l): (usize, usize, usize),
    a: &[T],
    b: &[T],
    f: impl Fn(usize, T, T) -> [T; M] + Sync + Send,
) -> Vec<[T; M]> {
    map_range(c, n * c * l >= 2 * PAR_CHUNK, |ch| {
        let mut total = [T::zero(); M];
        for i in 0..n {
            let at = (i * c + ch) * l;
            let part = lane_sums(&a[at..at + l], &b[at..at + l], |x, y| f(ch, x, y));
            for m in 0..M {
                total[m] += part[m];
            }
        }
        total
    })
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
        let mean: Vec<T> = channel_sums(geo, x, x, |_, v, _| [v]).into_iter().map(|[s]| s * inv_m).collect();
        let var: Vec<T> = channel_sums(geo, x, x, |ch, v, _| {
            let d = v - mean[ch];
            [d * d]
        })
        .into_iter()
        .map(|[s]| s * inv_m)
        .collect();
        let inv_std: Vec<T> = var.iter().map(|&v| T::one() / (v + T::of(eps)).sqrt()).collect();
        let (w, b) = (weight.to_vec(), bias.to_vec());
        let scale: Vec<T> = w.iter().zip(&inv_std).map(|(&w, &r)| w * r).collect();
        let y = fill_runs(n * c, l, |r, dst| {
            let ch = r % c;
            let (mu, s, b) = (mean[ch], scale[ch], b[ch]);
            for (d, &v) in dst.iter_mut().zip(&x[r * l..(r + 1) * l]) {
                d.write((v - mu) * s + b);
            }
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
        let sums = channel_sums(geo, gs, x, |ch, gv, xv| [gv, gv * (xv - mean[ch])]);
        let db: Vec<T> = sums.iter().map(|s| s[0]).collect();
        let dw: Vec<T> = sums.iter().zip(inv_std).map(|(s, &r)| s[1] * r).collect();
        let dx = want_x.then(|| {
            let inv_m = T::one() / T::of(stats.count as f64);
            let w = weight.to_vec();
            // ∂x = a·(g − ḡ − (x − μ)·k) with a = γr, ḡ = Σg/m, k = r·∂γ/m.
            let coef: Vec<[T; 4]> = (0..c)
                .map(|ch| [w[ch] * inv_std[ch], db[ch] * inv_m, inv_std[ch] * dw[ch] * inv_m, mean[ch]])
                .collect();
            let v = fill_runs(n * c, l, |r, dst| {
                let [a, gm, k, mu] = coef[r % c];
                let span = r * l..(r + 1) * l;
                for ((d, &gv), &xv) in dst.iter_mut().zip(&gs[span.clone()]).zip(&x[span]) {
                    d.write(a * (gv - gm - (xv - mu) * k));
                }
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
