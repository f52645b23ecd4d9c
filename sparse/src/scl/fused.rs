//! The fused op `sc_loss`: its forward pass and its analytic rule (see the module docs of
//! [`super`]).

use autograd::{Backward, Var};
use engine::kernels::matmul::{gemm, MatRef};
use engine::kernels::simd::Isa;
use engine::{Element, Tensor};

use super::kernels::*;
use super::{check_features, Distance, ScConfig};

// The fused op
//
// Layouts: matrixmultiply packs a column-major left operand and a row-major right operand by
// contiguous copies, any other layout element by element (at N = 128 that was a third of the
// GEMMs' time). So the forward GEMM `Ã·P̃ᵀ` reads the centred features transposed, `[d, N]`,
// and the backward GEMMs `K·P̃` and `Kᵀ·Ã` read `Kᵀ` and `K` (both stored) and the centred
// features as `[N, d]`.

/// Below this fraction of `|ã_i|² + |p̃_j|²`, a Euclidean pair is recomputed directly (the
/// Gram form's relative error in `dist` is then at most about `64·ε/2`).
pub(super) const CLOSE: f64 = 1.0 / 64.0;

/// Rows of `A·Pᵀ` per rayon task when the forward GEMM is split (a multiple of the
/// micro-kernels' tiles, so a split never changes a bit).
pub(super) const GEMM_ROWS: usize = 64;

/// Smallest `N²·d` (multiply-adds of each GEMM) for which the GEMMs are spread over two
/// rayon threads: the engine's GEMM splits from the same size. Below it a split saves less
/// than a `rayon::join` costs when called from outside the pool (at N = 128, d = 256 on two
/// threads: 0.39 ms per forward and backward split, 0.18 ms not split, on this VM).
pub(super) const PAR_MACS: usize = 1 << 24;

/// True when the GEMMs of `n × n × d` should run on two threads.
pub(super) fn parallel(n: usize, d: usize) -> bool {
    rayon::current_num_threads() > 1 && n.saturating_mul(n).saturating_mul(d) >= PAR_MACS
}

// Buffers: every [N, d] and [N, N] buffer comes from `engine::filled` and goes back with
// `engine::recycle::give`, so a call reuses the previous call's buffers instead of fresh pages
// (at N = 512, d = 256 a forward and backward took 7.1 ms with fresh buffers and 5.0 ms with
// kept ones, one thread). Values never depend on it (`spare_buffers_change_nothing`).

/// Centred copies of the features and their squared norms.
pub(super) struct Centred<T> {
    /// `ã_i = a_i − μ`, row-major `[N, d]` (empty when no rule is built).
    pub(super) a: Vec<T>,
    /// `p̃_j = p_j − μ`, row-major `[N, d]` (empty when no rule is built).
    pub(super) p: Vec<T>,
    /// `Ãᵀ`, `P̃ᵀ`: row-major `[d, N]`.
    pub(super) at: Vec<T>,
    pub(super) pt: Vec<T>,
    /// `|ã_i|²`, `|p̃_j|²`.
    pub(super) na: Vec<T>,
    pub(super) np: Vec<T>,
}

/// Centres both feature sets on the mean `μ` of all `2N` rows; the `[N, d]` copies only when
/// `rows` (the rule needs them, the value does not).
#[inline(always)]
pub(super) fn centre<T: Element>(a: &[T], p: &[T], n: usize, d: usize, rows: bool) -> Centred<T> {
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
pub(super) fn centre_one<T: Element>(x: &[T], mu: &[T], n: usize, d: usize, rows: bool) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut t: Vec<T> = engine::filled(n * d, T::zero());
    let mut c = if rows { engine::filled(n * d, T::zero()) } else { Vec::new() };
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
pub(super) fn gram<T: Element>(c: &Centred<T>, n: usize, d: usize) -> Vec<T> {
    let mut g = engine::filled(n * n, T::zero()); // only written (β = 0)
                                                  // Rows r0.. of Ã: a column-major view into Ãᵀ.
    let a = |r0: usize, rows: usize| MatRef { data: &c.at[..], offset: r0, rows, cols: d, rs: 1, cs: n as isize };
    let pt = MatRef::row_major(&c.pt, 0, d, n);
    let split = (n / 2).div_ceil(GEMM_ROWS) * GEMM_ROWS;
    if parallel(n, d) && n > GEMM_ROWS && split < n {
        let (top, bottom) = g.split_at_mut(split * n);
        engine::par::join(&mut || gemm(T::one(), a(0, split), pt, T::zero(), top, 0, n), &mut || {
            gemm(T::one(), a(split, n - split), pt, T::zero(), bottom, 0, n)
        });
    } else {
        gemm(T::one(), a(0, n), pt, T::zero(), &mut g, 0, n);
    }
    g
}

/// A pair whose gradient term is formed from its own difference (Euclidean close pairs).
#[derive(Clone, Copy, Debug)]
pub(super) struct Pair<T> {
    pub(super) i: usize,
    pub(super) j: usize,
    /// `K_ij`.
    pub(super) k: T,
}

/// The rule of `sc_loss` (inputs `a`, `p`).
pub(super) struct ScBackward<T: Element> {
    pub(super) n: usize,
    pub(super) d: usize,
    /// The centred features `Ã`, `P̃` (the GEMMs' right operands; the rule's formula is
    /// translation-invariant).
    pub(super) centred: Centred<T>,
    /// `K` `[N, N]` row-major, with the pairs of `direct` set to 0, and its transpose.
    pub(super) k: Vec<T>,
    pub(super) kt: Vec<T>,
    /// `K·1` and `Kᵀ·1` of that matrix.
    pub(super) row_sums: Vec<T>,
    pub(super) col_sums: Vec<T>,
    /// Euclidean pairs closer than [`CLOSE`]: `K_ij` applied to `a_i − p_j` from the inputs.
    pub(super) direct: Vec<Pair<T>>,
}

impl<T: Element> ScBackward<T> {
    /// `g·(diag(K·1)·Ã − K·P̃)` plus the direct pairs' `g·K_ij(a_i − p_j)`.
    pub(super) fn grad_a(&self, g: T, a: &[T], p: &[T]) -> Tensor<T> {
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
    pub(super) fn grad_p(&self, g: T, a: &[T], p: &[T]) -> Tensor<T> {
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
            let (mut ga, mut gp) = (None, None);
            engine::par::join(&mut || ga = Some(self.grad_a(g, a, p)), &mut || gp = Some(self.grad_p(g, a, p)));
            (ga, gp)
        } else {
            (needed[0].then(|| self.grad_a(g, a, p)), needed[1].then(|| self.grad_p(g, a, p)))
        };
        Ok(vec![ga, gp])
    }
}

impl<T: Element> Drop for ScBackward<T> {
    /// The rule's buffers go back to the engine's pool of kept buffers.
    fn drop(&mut self) {
        let c = &mut self.centred;
        for v in [&mut c.a, &mut c.p, &mut c.at, &mut c.pt, &mut self.k, &mut self.kt] {
            engine::recycle::give(std::mem::take(v));
        }
    }
}

/// The distances `dist [N, N]` (row-major), with the Euclidean close pairs' positions.
#[inline(always)]
pub(super) fn distances<T: Element>(
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
pub(super) fn row_softmax<T: Element>(dist: &[T], n: usize, out: &mut [T], w: T) -> f64 {
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
pub(super) fn loss_term<T: Element>(diag: T, m: T, off: T, z: T) -> f64 {
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
pub(super) fn col_softmax<T: Element>(dist: &[T], n: usize, e: &mut [T], k: &mut [T], w: T) -> f64 {
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
/// Multiversioned by the engine's one dispatch frame ([`engine::dispatched!`]): on a CPU with
/// AVX-512F (AVX2) the same code ([`forward_impl`] and every helper it inlines) is compiled for
/// AVX-512F + AVX2 + FMA (AVX2 + FMA), which widens its vector loops. All versions
/// compute the same operations in the same order (Rust never contracts `a·b + c` into a fused
/// multiply-add), so they give the same bits (checked by a test).
pub(super) fn forward<T: Element>(
    a: &Tensor<T>,
    p: &Tensor<T>,
    cfg: ScConfig,
    with_rule: bool,
) -> (T, Option<ScBackward<T>>) {
    forward_at(Isa::best(), a, p, cfg, with_rule)
}

engine::dispatched! {
    /// [`forward`] compiled for `level` (tests pass each level of [`Isa::available`]).
    pub(super) fn forward_at<T>(a: &Tensor<T>, p: &Tensor<T>, cfg: ScConfig, with_rule: bool) -> (T, Option<ScBackward<T>>)
        = forward_impl
}

/// The forward pass (see [`forward`]).
#[inline(always)]
pub(super) fn forward_impl<T: Element>(
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
    let mut k = engine::filled(n * n, T::zero());
    let mut loss = row_softmax(&dist, n, &mut k, w) / nf;
    let mut scratch = Vec::new();
    if cfg.symmetric {
        scratch = engine::filled(n * n, T::zero());
        loss = 0.5 * (loss + col_softmax(&dist, n, &mut scratch, &mut k, w) / nf);
    }
    if !with_rule {
        for v in [centred.at, centred.pt, dist, k, scratch] {
            engine::recycle::give(v);
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
        engine::recycle::give(dist);
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
pub(super) struct NoRule;

impl<T: Element> Backward<T> for NoRule {
    fn name(&self) -> &str {
        "sc_loss"
    }
}
