//! Mairal's active-set Jacobian of the elastic net (Mairal, Bach & Ponce 2012, "Task-driven
//! dictionary learning", Prop. 1), docs/math.md §1, shared by the SF and CSF rules.
//!
//! For one sample with code `α*`, active set `Λ`, incoming gradient `ḡ = ∂L/∂α*`:
//!
//! ```text
//! β_Λ  = (D_ΛᵀD_Λ + λ2·I)⁻¹ · ḡ_Λ ,   β_{Λᶜ} = 0
//! ∂L/∂x  = D·β
//! ∂L/∂D  = −D·β·α*ᵀ + (x − Dα*)·βᵀ
//! ∂L/∂λ1 = −β_Λᵀ·sign(α*_Λ),   ∂L/∂λ2 = −β_Λᵀ·α*_Λ
//! ```
//!
//! The solve reuses the forward pass's Cholesky factor of `G_ΛΛ`. Both `β` and `α*` have
//! `|Λ|` non-zeros per sample, so the batch sums are computed sample by sample over the active
//! atoms only: with `u = D·β` and `r = x − D·α*`, column `j ∈ Λ` of `∂L/∂D` receives
//! `β_j·r − α_j·u`. That is `4·m·|Λ|` multiply-adds per sample, against
//! `2·m·k·(N + k)` for the dense GEMM form `∂L/∂D = XᵀB − D·(BᵀA + AᵀB)` — at m = 800,
//! k = 500 and 20 active atoms, 30 times less work than the forward pass's Gram matrix.
//!
//! For a dictionary of at most 64 atoms (the convolutional layer's: k = 20, most of them
//! active, tens of thousands of patches) the dense form is cheaper, and [`mairal_backward`]
//! takes it (`dense_sums`: two GEMMs over groups of 4,096 samples). Otherwise it does them on
//! tiles of 64 rows of D (and groups of samples when D has
//! few rows): the tile's rows of `Dᵀ` and of `∂Dᵀ` stay in
//! cache while every sample of the tile adds its terms, so D and X are read and ∂D and ∂X
//! written once per batch, and the inner loops are the run-time dispatched kernels of
//! `lars::kernels` (`gemv_pair`, `scatter_rows`, `transpose`).
//!
//! With a cap on the active set (`LarsConfig::max_active`) a capped sample's code solves the
//! problem at `λ = lambda_reached` > λ1; the rule holds that λ fixed (it does not
//! differentiate where the cap stops the path), so it is exact only for samples the cap does
//! not stop, and a capped sample gives no `∂L/∂λ1`.
//!
//! Kink convention (STYLE §2.7): an atom of `Λ` whose coefficient is exactly zero sits on the
//! kink and counts as inactive, as in `soft_threshold`; its row and column are removed from a
//! copy of the factor before the solve. Generic inputs never hit this.
//!
//! Determinism: the tiles depend only on the batch size and the shape of D; every tile adds
//! its samples in order, the partial sums of a row block's sample groups are added in group
//! order, and the λ sums are added chunk by chunk in order, so the result is bit-identical
//! for any number of rayon threads (and any instruction set: the kernels give the same bits on
//! every level). The dense form's groups depend only on the batch size and are added in
//! order, so it too is bit-identical for any number of threads; its products are the engine's
//! GEMM, whose bits are those of every `matmul` on the CPU it runs on.

use engine::kernels::matmul::{gemm, par_gemm, MatRef};
use engine::kernels::SendPtr;
use engine::linalg::{forward_substitute, Cholesky};
use engine::{Element, Tensor};

use super::kernels::{self, Isa};
use super::{CompactPaths, SamplePath};

/// What Mairal's rule reads of a batch's paths: the active set of every sample, whether the
/// cap stopped it, and the solve with its factor. Implemented by the per-sample
/// [`SamplePath`]s of [`crate::lars_en`] and the flat [`CompactPaths`] of
/// [`crate::lars::lars_en_compact`], which give the same bits.
pub trait ActivePaths<T: Element>: Sync {
    /// Number of samples.
    fn count(&self) -> usize;
    /// Sample `s`'s active set in factor order.
    fn active(&self, s: usize) -> &[usize];
    /// Whether the cap stopped sample `s`'s path.
    fn hit_cap(&self, s: usize) -> bool;
    /// `β_Λ = G_ΛΛ⁻¹·ḡ_Λ` for sample `s` (code `alpha`, gradient `g`, both `[k]`), written into
    /// `beta` in the order of the active set; atoms whose code is exactly 0 get `β = 0` (see
    /// the module docs).
    fn solve_beta(&self, s: usize, alpha: &[T], g: &[T], beta: &mut Vec<T>);
}

impl<T: Element> ActivePaths<T> for [SamplePath<T>] {
    fn count(&self) -> usize {
        self.len()
    }
    fn active(&self, s: usize) -> &[usize] {
        &self[s].active
    }
    fn hit_cap(&self, s: usize) -> bool {
        self[s].hit_cap
    }
    fn solve_beta(&self, s: usize, alpha: &[T], g: &[T], beta: &mut Vec<T>) {
        solve_beta(&self[s], alpha, g, beta)
    }
}

impl<T: Element> ActivePaths<T> for Vec<SamplePath<T>> {
    fn count(&self) -> usize {
        self.len()
    }
    fn active(&self, s: usize) -> &[usize] {
        &self[s].active
    }
    fn hit_cap(&self, s: usize) -> bool {
        self[s].hit_cap
    }
    fn solve_beta(&self, s: usize, alpha: &[T], g: &[T], beta: &mut Vec<T>) {
        solve_beta(&self[s], alpha, g, beta)
    }
}

impl<T: Element> ActivePaths<T> for CompactPaths<T> {
    fn count(&self) -> usize {
        self.len()
    }
    fn active(&self, s: usize) -> &[usize] {
        CompactPaths::active(self, s)
    }
    fn hit_cap(&self, s: usize) -> bool {
        CompactPaths::hit_cap(self, s)
    }
    /// The arithmetic of the solve on a [`SamplePath`] (`Cholesky::solve_in_place`, and
    /// `Cholesky::remove` for atoms on the kink), term for term, on the flat factor.
    fn solve_beta(&self, s: usize, alpha: &[T], g: &[T], beta: &mut Vec<T>) {
        let act = CompactPaths::active(self, s);
        let na = act.len();
        beta.clear();
        beta.extend(act.iter().map(|&j| g[j]));
        let fac = self.factor(s);
        if act.iter().all(|&j| alpha[j] != T::zero()) {
            forward_substitute(fac, |i| i * (i + 1) / 2, beta, 0);
            backward_rows_transposed_packed(fac, beta);
            return;
        }
        // Rare: unpacked to leading dimension |Λ| (the layout of `to_compact`) for the removal.
        let mut l = vec![T::zero(); na * na];
        for i in 0..na {
            l[i * na..i * na + i + 1].copy_from_slice(&fac[i * (i + 1) / 2..i * (i + 1) / 2 + i + 1]);
        }
        let mut n = na;
        let mut work = vec![T::zero(); na];
        for p in (0..na).rev().filter(|&p| alpha[act[p]] == T::zero()) {
            remove_row(&mut l, na, n, p, &mut work);
            n -= 1;
        }
        let on_kink = |p: usize| alpha[act[p]] == T::zero();
        let mut reduced: Vec<T> = (0..na).filter(|&p| !on_kink(p)).map(|p| beta[p]).collect();
        forward_substitute(&l, |i| i * na, &mut reduced, 0);
        backward_rows_transposed(&l, na, &mut reduced);
        let mut it = reduced.into_iter();
        for (p, b) in beta.iter_mut().enumerate() {
            *b = if on_kink(p) { T::zero() } else { it.next().expect("one value per kept atom") };
        }
    }
}

/// [`backward_rows_transposed`] on a factor packed by rows: the same arithmetic.
fn backward_rows_transposed_packed<T: Element>(l: &[T], b: &mut [T]) {
    for i in (0..b.len()).rev() {
        let row = &l[i * (i + 1) / 2..i * (i + 1) / 2 + i + 1];
        let xi = b[i] / row[i];
        b[i] = xi;
        for (bj, a) in b[..i].iter_mut().zip(&row[..i]) {
            *bj -= *a * xi;
        }
    }
}

/// `b ← L⁻ᵀ b` (the arithmetic of `Cholesky::solve_upper`).
fn backward_rows_transposed<T: Element>(l: &[T], ld: usize, b: &mut [T]) {
    for i in (0..b.len()).rev() {
        let row = &l[i * ld..i * ld + i + 1];
        let xi = b[i] / row[i];
        b[i] = xi;
        for (bj, a) in b[..i].iter_mut().zip(&row[..i]) {
            *bj -= *a * xi;
        }
    }
}

/// Deletes row and column `i` of the `n × n` factor `l` (leading dimension `ld`) by Givens
/// rotations: the arithmetic of `Cholesky::remove`, term for term. `work` has `≥ n` entries.
fn remove_row<T: Element>(l: &mut [T], ld: usize, n: usize, i: usize, work: &mut [T]) {
    for p in i + 1..n {
        let (src, dst) = (p * ld, (p - 1) * ld);
        work[p - 1 - i] = l[src + i];
        l.copy_within(src..src + i, dst);
        l.copy_within(src + i + 1..src + p + 1, dst + i);
    }
    let m = n - 1;
    let v = &mut work[..m - i];
    for k in i..m {
        let lkk = l[k * ld + k];
        let xk = v[k - i];
        let r = lkk.hypot(xk);
        let c = r / lkk;
        let s = xk / lkk;
        l[k * ld + k] = r;
        for j in k + 1..m {
            let ljk = (l[j * ld + k] + s * v[j - i]) / c;
            l[j * ld + k] = ljk;
            v[j - i] = c * v[j - i] - s * ljk;
        }
    }
}

/// Which gradients to compute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub dictionary: bool,
    pub input: bool,
    pub lambda1: bool,
    pub lambda2: bool,
}

/// The gradients of one batch.
#[derive(Clone, Debug)]
pub struct MairalGrads<T: Element> {
    /// `∂L/∂D`, `[m, k]`.
    pub dictionary: Option<Tensor<T>>,
    /// `∂L/∂X`, `[N, m]` (row `n` is `D·β_n`).
    pub input: Option<Tensor<T>>,
    /// `∂L/∂λ1` summed over the batch.
    pub lambda1: Option<T>,
    /// `∂L/∂λ2` summed over the batch.
    pub lambda2: Option<T>,
}

/// Samples per chunk of the batch sums: a function of the batch size only.
fn chunk_len(n: usize) -> usize {
    n.div_ceil(16).max(64)
}

/// `β_Λ = G_ΛΛ⁻¹·ḡ_Λ` for one sample, written into `beta` (length `|Λ|`, in the order of
/// `active`); atoms whose code is exactly 0 get `β = 0` (see the module docs).
fn solve_beta<T: Element>(path: &SamplePath<T>, alpha: &[T], g: &[T], beta: &mut Vec<T>) {
    let act = &path.active;
    beta.clear();
    beta.extend(act.iter().map(|&j| g[j]));
    let on_kink: Vec<usize> = (0..act.len()).filter(|&p| alpha[act[p]] == T::zero()).collect();
    if on_kink.is_empty() {
        path.chol.solve_in_place(beta);
        return;
    }
    let mut chol: Cholesky<T> = path.chol.clone();
    for &p in on_kink.iter().rev() {
        chol.remove(p);
    }
    let mut reduced: Vec<T> = (0..act.len()).filter(|p| !on_kink.contains(p)).map(|p| beta[p]).collect();
    chol.solve_in_place(&mut reduced);
    let mut it = reduced.into_iter();
    for (p, b) in beta.iter_mut().enumerate() {
        *b = if on_kink.contains(&p) { T::zero() } else { it.next().expect("one value per kept atom") };
    }
}

/// Signal rows (rows of D) per tile of the batch sums.
const TILE_ROWS: usize = 64;
/// At least this many tiles when the batch allows it (one row block of a small D, as in the
/// convolutional layer, is split by samples instead).
const MIN_TILES: usize = 8;
/// At least this many samples per sample group.
const MIN_GROUP: usize = 256;

/// `β` of the samples of one chunk (`chunk_len`) with their active sets and codes in the same
/// flat layout: the chunk's sample `q` has its atoms at `atoms[offs[q]..offs[q + 1]]`, their
/// `β` and `α*` at the same positions. Built in parallel, one per chunk, and read in place
/// (never concatenated).
struct Flat<T> {
    atoms: Vec<usize>,
    offs: Vec<usize>,
    beta: Vec<T>,
    alpha: Vec<T>,
    l1: T,
    l2: T,
}

/// Mairal's gradients for a batch. `d` is the dictionary `[m, k]` row-major (atom `j` is
/// column `j`), `x` the signals `[N, m]`, `alpha` the codes `[N, k]` and `g` the incoming
/// gradient `[N, k]`, all row-major slices; `paths[n]` is sample `n`'s active set and factor
/// from the forward pass.
///
/// Work: `β_Λ` by the saved factor (`|Λ|²` per sample), then on tiles of `TILE_ROWS` rows of D
/// (and groups of samples when D has few rows): the tile's rows of `Dᵀ` (`k × w`, transposed
/// once per tile), and per sample `u = D_Λ·β`, `r = x − D_Λ·α*` on those rows and
/// `∂Dᵀ_j += β_j·r − α*_j·u` for `j ∈ Λ` — `4·w·|Λ|` multiply-adds per sample and tile, all in
/// a tile that stays in cache; `∂L/∂X` is `u`.
///
/// Determinism: the tiles (row blocks of D, and at most `⌈MIN_TILES / blocks⌉` sample groups
/// of at least `MIN_GROUP` samples) depend only on N and m; each tile adds its samples in
/// order, and the group partial sums of a row block are added in group order. So the result
/// is bit-identical for any number of rayon threads.
///
/// **Panics** if the slice lengths disagree with `paths.len()`, `k` and `m`.
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub fn mairal_backward<T: Element, P: ActivePaths<T> + ?Sized>(
    paths: &P,
    d: &[T],
    x: &[T],
    alpha: &[T],
    g: &[T],
    m: usize,
    k: usize,
    want: Wanted,
) -> MairalGrads<T> {
    let n = paths.count();
    assert_eq!(d.len(), m * k, "mairal_backward: dictionary has {} elements, expected m·k = {m}·{k}", d.len());
    assert_eq!(x.len(), n * m, "mairal_backward: x has {} elements, expected N·m = {n}·{m}", x.len());
    assert_eq!(alpha.len(), n * k, "mairal_backward: codes have {} elements, expected N·k = {n}·{k}", alpha.len());
    assert_eq!(g.len(), n * k, "mairal_backward: gradient has {} elements, expected N·k = {n}·{k}", g.len());

    // β of every sample, and the λ sums (per chunk, added in chunk order).
    let chunk = chunk_len(n);
    // The flat layout is read only by the ∂X / ∂D tiles.
    let flat = want.input || want.dictionary;
    let parts: Vec<Flat<T>> = engine::par::map(n.div_ceil(chunk), &|c| {
        let samples = c * chunk..((c + 1) * chunk).min(n);
        let mut f = Flat {
            atoms: Vec::new(),
            offs: Vec::with_capacity(samples.len() + 1),
            beta: Vec::new(),
            alpha: Vec::new(),
            l1: T::zero(),
            l2: T::zero(),
        };
        f.offs.push(0);
        let mut beta = Vec::new();
        for s in samples {
            let active = paths.active(s);
            if !active.is_empty() {
                let (a_s, g_s) = (&alpha[s * k..(s + 1) * k], &g[s * k..(s + 1) * k]);
                paths.solve_beta(s, a_s, g_s, &mut beta);
                let hit_cap = paths.hit_cap(s);
                for (&j, &b) in active.iter().zip(&beta) {
                    let a = a_s[j];
                    let sign = if a > T::zero() {
                        T::one()
                    } else if a < T::zero() {
                        -T::one()
                    } else {
                        T::zero()
                    };
                    // A path stopped by the cap solves the problem at λ = lambda_reached,
                    // which does not depend on λ1 locally: no λ1 gradient from that sample.
                    if !hit_cap {
                        f.l1 -= b * sign;
                    }
                    f.l2 -= b * a;
                }
                if flat {
                    f.atoms.extend_from_slice(active);
                    f.alpha.extend(active.iter().map(|&j| a_s[j]));
                    f.beta.extend_from_slice(&beta);
                }
            }
            f.offs.push(f.atoms.len());
        }
        f
    });
    let mut out = MairalGrads { dictionary: None, input: None, lambda1: None, lambda2: None };
    if want.lambda1 {
        out.lambda1 = Some(parts.iter().fold(T::zero(), |acc, p| acc + p.l1));
    }
    if want.lambda2 {
        out.lambda2 = Some(parts.iter().fold(T::zero(), |acc, p| acc + p.l2));
    }
    if !(want.input || want.dictionary) {
        return out;
    }
    if n == 0 || m == 0 || k == 0 {
        // No sample, no signal entry or no atom: every product is empty or zero.
        out.input = want.input.then(|| Tensor::zeros(&[n, m]));
        out.dictionary = want.dictionary.then(|| Tensor::zeros(&[m, k]));
        return out;
    }
    if k <= DENSE_K {
        dense_sums(&parts, chunk, d, x, alpha, n, m, k, want, &mut out);
        return out;
    }
    // Tiles: row blocks of D × sample groups, fixed by (N, m).
    let w = TILE_ROWS.min(m).max(1);
    let blocks = m.div_ceil(w);
    let groups = MIN_TILES.div_ceil(blocks.max(1)).min(n.div_ceil(MIN_GROUP)).max(1);
    let group = n.div_ceil(groups).max(1);
    let groups = n.div_ceil(group);
    let level = Isa::best();
    let mut grad_x = if want.input { vec![T::zero(); n * m] } else { Vec::new() };
    let mut grad_d = if want.dictionary { vec![T::zero(); m * k] } else { Vec::new() };
    let (gx, gd) = (SendPtr(grad_x.as_mut_ptr()), SendPtr(grad_d.as_mut_ptr()));
    let tiles: Vec<(usize, usize)> = (0..blocks).flat_map(|b| (0..groups).map(move |q| (b, q))).collect();
    // Per tile: Dᵀ's rows (k × w) and ∂Dᵀ (k × w) as scratch reused by the tiles of a rayon
    // job; with one sample group the tile's ∂Dᵀ is final and goes straight into ∂D, otherwise
    // it is returned for the ordered sum below.
    let partials: Vec<Option<Vec<T>>> = engine::par::map_with(
        tiles.len(),
        &|| (Vec::new(), Vec::new(), vec![T::zero(); w], vec![T::zero(); w]),
        &|st, t| {
            let (dt, dd, u, r) = st;
            let (b, q) = tiles[t];
            let (i0, i1) = (b * w, ((b + 1) * w).min(m));
            let wb = i1 - i0;
            let (u, r) = (&mut u[..wb], &mut r[..wb]);
            // This tile's rows of Dᵀ: atom j's entries i0..i1 at j·wb.
            dt.resize(k * wb, T::zero());
            kernels::transpose(level, &d[i0 * k..], k, wb, k, dt, wb);
            if want.dictionary {
                dd.clear();
                dd.resize(k * wb, T::zero());
            }
            for s in q * group..((q + 1) * group).min(n) {
                let (flat, at) = (&parts[s / chunk], s % chunk);
                let (lo, hi) = (flat.offs[at], flat.offs[at + 1]);
                if lo == hi {
                    continue; // zero code: u = 0, and no column of ∂D is touched
                }
                let (atoms, beta, alph) = (&flat.atoms[lo..hi], &flat.beta[lo..hi], &flat.alpha[lo..hi]);
                let xs = &x[s * m + i0..s * m + i1];
                if want.dictionary {
                    kernels::gemv_pair(level, dt, wb, atoms, beta, alph, xs, u, r);
                } else {
                    kernels::gemv_rows(level, dt, wb, atoms, beta, u);
                }
                if want.input {
                    // SAFETY: row s, columns i0..i1 of ∂X belong to this tile alone (tiles
                    // partition rows by sample group and columns by row block), inside the
                    // n·m buffer; nothing reads ∂X until every tile is done.
                    unsafe { std::ptr::copy_nonoverlapping(u.as_ptr(), gx.get().add(s * m + i0), wb) };
                }
                if want.dictionary {
                    kernels::scatter_rows(level, dd, wb, atoms, beta, alph, r, u);
                }
            }
            if !want.dictionary {
                return None;
            }
            if groups > 1 {
                return Some(dd.clone());
            }
            // SAFETY: rows i0..i1 of ∂D [m, k] belong to this row block alone (one sample
            // group), inside the m·k buffer; nothing reads ∂D until every tile is done.
            let rows = unsafe { std::slice::from_raw_parts_mut(gd.get().add(i0 * k), wb * k) };
            kernels::transpose(level, dd, wb, k, wb, rows, k);
            None
        },
    );
    if want.input {
        out.input = Some(Tensor::from_vec(grad_x, &[n, m]));
    }
    if want.dictionary {
        if groups > 1 {
            // Per row block: the groups' partial sums in group order, then transposed into
            // rows i0..i1 of ∂D [m, k].
            let mut partials = partials.into_iter().map(|p| p.expect("a partial sum per tile"));
            let sums: Vec<Vec<T>> = (0..blocks)
                .map(|_| {
                    let mut acc = partials.next().expect("a tile per group");
                    for _ in 1..groups {
                        let p = partials.next().expect("a tile per group");
                        acc.iter_mut().zip(&p).for_each(|(o, &v)| *o += v);
                    }
                    acc
                })
                .collect();
            engine::par::chunks_mut(&mut grad_d, w * k, &|i, rows| {
                let acc = &sums[i];
                let wb = rows.len() / k;
                kernels::transpose(level, acc, wb, k, wb, rows, k);
            });
        }
        out.dictionary = Some(Tensor::from_vec(grad_d, &[m, k]));
    }
    out
}

/// Dictionaries with at most this many atoms take the dense form of the batch sums
/// ([`dense_sums`]).
const DENSE_K: usize = 64;
/// Samples per group of [`dense_sums`]' products: a function of nothing, so the partial sums
/// and their order depend only on N.
const DENSE_GROUP: usize = 4096;

/// The batch sums of [`mairal_backward`] as matrix products, for dictionaries of few atoms
/// (the convolutional layer's: k = 20 atoms of m = 25 rows, tens of thousands of patches with
/// most atoms active), where `4·m·|Λ|` multiply-adds per sample gathered atom by atom cost
/// more than the dense `2·m·k + k²` done by the GEMM kernels: with `B` the `β` rows scattered
/// into `[N, k]` (zero off Λ, and on atoms of the kink), `A` the codes and `X` the signals,
///
/// ```text
/// ∂X = B·Dᵀ,   ∂D = XᵀB − D·(BᵀA + AᵀB)
/// ```
///
/// (the sum over samples of `x·βᵀ − D·β·αᵀ − D·α·βᵀ`, which is the per-sample rule). `XᵀB`
/// and `BᵀA` are summed over groups of [`DENSE_GROUP`] samples, in group order, so the bits
/// depend on N only, not on the thread count.
#[allow(clippy::too_many_arguments)]
fn dense_sums<T: Element>(
    parts: &[Flat<T>],
    chunk: usize,
    d: &[T],
    x: &[T],
    alpha: &[T],
    n: usize,
    m: usize,
    k: usize,
    want: Wanted,
    out: &mut MairalGrads<T>,
) {
    let mut b = vec![T::zero(); n * k];
    engine::par::chunks_mut(&mut b, chunk * k, &|c, rows| {
        let f = &parts[c];
        for (q, row) in rows.chunks_mut(k).enumerate() {
            let (lo, hi) = (f.offs[q], f.offs[q + 1]);
            for (&j, &v) in f.atoms[lo..hi].iter().zip(&f.beta[lo..hi]) {
                row[j] = v;
            }
        }
    });
    let dt = MatRef { data: d, offset: 0, rows: k, cols: m, rs: 1, cs: k as isize };
    if want.input {
        let mut gx = vec![T::zero(); n * m];
        par_gemm(T::one(), MatRef::row_major(&b, 0, n, k), dt, T::zero(), &mut gx, 0, m);
        out.input = Some(Tensor::from_vec(gx, &[n, m]));
    }
    if want.dictionary {
        let groups = n.div_ceil(DENSE_GROUP);
        let partial: Vec<(Vec<T>, Vec<T>)> = engine::par::map(groups, &|q| {
            let (s0, s1) = (q * DENSE_GROUP, ((q + 1) * DENSE_GROUP).min(n));
            let ns = s1 - s0;
            let (mut xb, mut ba) = (vec![T::zero(); m * k], vec![T::zero(); k * k]);
            let xt = MatRef { data: x, offset: s0 * m, rows: m, cols: ns, rs: 1, cs: m as isize };
            let bt = MatRef { data: &b, offset: s0 * k, rows: k, cols: ns, rs: 1, cs: k as isize };
            gemm(T::one(), xt, MatRef::row_major(&b, s0 * k, ns, k), T::zero(), &mut xb, 0, k);
            gemm(T::one(), bt, MatRef::row_major(alpha, s0 * k, ns, k), T::zero(), &mut ba, 0, k);
            (xb, ba)
        });
        let mut parts = partial.into_iter();
        let (mut gd, mut s) = parts.next().unwrap_or_else(|| (vec![T::zero(); m * k], vec![T::zero(); k * k]));
        for (xb, ba) in parts {
            gd.iter_mut().zip(&xb).for_each(|(o, &v)| *o += v);
            s.iter_mut().zip(&ba).for_each(|(o, &v)| *o += v);
        }
        // BᵀA + AᵀB, symmetric: S + Sᵀ.
        let sym: Vec<T> = (0..k * k).map(|e| s[e] + s[(e % k) * k + e / k]).collect();
        gemm(-T::one(), MatRef::row_major(d, 0, m, k), MatRef::row_major(&sym, 0, k, k), T::one(), &mut gd, 0, k);
        out.dictionary = Some(Tensor::from_vec(gd, &[m, k]));
    }
}

/// The unsupervised loss of docs/math.md §1 per sample, `L_u = ½‖x − Dα*‖² + λ1‖α*‖₁ + (λ2/2)‖α*‖²`,
/// and the residuals `r = x − Dα*` `[N, m]` its envelope-theorem gradients need. Same slice
/// conventions as [`mairal_backward`].
#[allow(clippy::too_many_arguments)]
pub fn unsupervised_loss<T: Element, P: ActivePaths<T> + ?Sized>(
    paths: &P,
    dt: &[T],
    x: &[T],
    alpha: &[T],
    m: usize,
    k: usize,
    lambda1: f64,
    lambda2: f64,
) -> (Vec<T>, Vec<T>) {
    let n = paths.count();
    let (l1, l2) = (T::of(lambda1), T::of(lambda2));
    let half = T::of(0.5);
    let mut residual = x.to_vec();
    let mut loss = vec![T::zero(); n];
    engine::par::chunks2_mut(&mut residual, m.max(1), &mut loss, 1, &|s, r, l| {
        let l = &mut l[0];
        let a_s = &alpha[s * k..(s + 1) * k];
        let (mut abs, mut sq) = (T::zero(), T::zero());
        for &j in paths.active(s) {
            let a = a_s[j];
            abs += a.abs();
            sq += a * a;
            r.iter_mut().zip(&dt[j * m..(j + 1) * m]).for_each(|(v, &dj)| *v -= a * dj);
        }
        let rr = r.iter().fold(T::zero(), |acc, &v| acc + v * v);
        *l = half * rr + l1 * abs + half * l2 * sq;
    });
    (loss, residual)
}

/// Envelope-theorem gradients of `Σ_n g_n·L_u(x_n)`: `∂L/∂x_n = g_n·r_n`,
/// `∂L/∂D = −Σ_n g_n·r_n·α*_nᵀ` (only the active atoms' columns are touched). Returns
/// `(∂D [m, k], ∂X [N, m])`, each only when wanted.
#[allow(clippy::too_many_arguments)]
pub fn unsupervised_backward<T: Element, P: ActivePaths<T> + ?Sized>(
    paths: &P,
    residual: &[T],
    alpha: &[T],
    g: &[T],
    m: usize,
    k: usize,
    want_d: bool,
    want_x: bool,
) -> (Option<Tensor<T>>, Option<Tensor<T>>) {
    let n = paths.count();
    let gx = want_x.then(|| {
        let mut out = residual.to_vec();
        engine::par::chunks_mut(&mut out, m.max(1), &|s, r| r.iter_mut().for_each(|v| *v *= g[s]));
        Tensor::from_vec(out, &[n, m])
    });
    let gd = want_d.then(|| {
        let chunk = chunk_len(n);
        let parts: Vec<Vec<T>> = engine::par::map(n.div_ceil(chunk), &|c| {
            let mut gdt = vec![T::zero(); k * m];
            for s in c * chunk..((c + 1) * chunk).min(n) {
                let r = &residual[s * m..(s + 1) * m];
                for &j in paths.active(s) {
                    let w = -g[s] * alpha[s * k + j];
                    gdt[j * m..(j + 1) * m].iter_mut().zip(r).for_each(|(o, &rv)| *o += w * rv);
                }
            }
            gdt
        });
        let mut gdt = vec![T::zero(); k * m];
        for p in &parts {
            gdt.iter_mut().zip(p).for_each(|(o, &v)| *o += v);
        }
        Tensor::from_vec(gdt, &[k, m]).t().contiguous()
    });
    (gd, gx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lars::{lars_en, LarsConfig};
    use engine::Rng;

    /// Mairal's rule written out per sample and atom, one term at a time (docs/math.md §1):
    /// `β_Λ = G_ΛΛ⁻¹·g_Λ`, `∂X_n = Σ_{j∈Λ} β_j·d_j`, `∂D[:, j] += β_j·r_n − α_j·u_n`.
    fn naive(
        paths: &[SamplePath<f64>],
        d: &[f64],
        x: &[f64],
        a: &[f64],
        g: &[f64],
        m: usize,
        k: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let n = paths.len();
        let (mut gd, mut gx) = (vec![0.0; m * k], vec![0.0; n * m]);
        for (s, p) in paths.iter().enumerate() {
            let mut beta: Vec<f64> = p.active.iter().map(|&j| g[s * k + j]).collect();
            p.chol.solve_in_place(&mut beta);
            let u: Vec<f64> =
                (0..m).map(|i| p.active.iter().zip(&beta).map(|(&j, b)| b * d[i * k + j]).sum()).collect();
            let r: Vec<f64> = (0..m)
                .map(|i| x[s * m + i] - p.active.iter().map(|&j| a[s * k + j] * d[i * k + j]).sum::<f64>())
                .collect();
            for (&j, &b) in p.active.iter().zip(&beta) {
                for i in 0..m {
                    gd[i * k + j] += b * r[i] - a[s * k + j] * u[i];
                }
            }
            gx[s * m..(s + 1) * m].copy_from_slice(&u);
        }
        (gd, gx)
    }

    /// Atoms of Λ whose code is exactly 0 (the kink, STYLE §2.7) get β = 0 and are removed from
    /// the factor before the solve: the flat factor of `CompactPaths` (its own copy of the
    /// Givens removal) gives the bits of `Cholesky::remove` on the `SamplePath`, whichever
    /// positions are on the kink (first, last, several).
    #[test]
    fn kink_solve_on_compact_paths_gives_the_bits_of_the_cholesky_removal() {
        let mut rng = Rng::new(8);
        let (m, k, n) = (25, 20, 40);
        let d = Tensor::<f64>::randn(&[m, k], &mut rng);
        let x = Tensor::<f64>::randn(&[n, m], &mut rng);
        let cfg = LarsConfig::new(0.5, 0.01);
        let sol = lars_en(&d, &x, &cfg).unwrap();
        let (codes, cp) = crate::lars::lars_en_compact(&d, &x, &cfg).unwrap();
        let g = Tensor::<f64>::randn(&[n, k], &mut rng).to_vec();
        let mut tested = 0;
        for (s, p) in sol.paths.iter().enumerate() {
            let na = p.active.len();
            if na < 3 {
                continue;
            }
            for kink in [vec![0], vec![na - 1], vec![1, na - 1], vec![0, 2]] {
                let mut a = codes.to_vec()[s * k..(s + 1) * k].to_vec();
                kink.iter().for_each(|&q| a[p.active[q]] = 0.0);
                let (mut b1, mut b2) = (Vec::new(), Vec::new());
                solve_beta(p, &a, &g[s * k..(s + 1) * k], &mut b1);
                ActivePaths::solve_beta(&cp, s, &a, &g[s * k..(s + 1) * k], &mut b2);
                let bits = |v: &[f64]| v.iter().map(|e| e.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&b1), bits(&b2), "sample {s}, kink at {kink:?}");
                assert!(kink.iter().all(|&q| b2[q] == 0.0));
                tested += 1;
            }
        }
        assert!(tested > 20, "only {tested} cases");
    }

    /// Both forms of the batch sums, each taken where `mairal_backward` takes it. Tiles
    /// (k > `DENSE_K`): several row blocks (m > 64) with one sample group, and one block with
    /// several groups. Dense (k ≤ `DENSE_K`): one group, and three. Each gives the per-sample
    /// formulas, and the same bits on 1, 2 and 3 threads.
    #[test]
    fn batch_sums_match_the_per_sample_formulas_and_the_thread_count_does_not_matter() {
        for (m, k, n, seed) in [
            (150, DENSE_K + 6, 30, 1),
            (20, DENSE_K + 2, 1100, 2),
            (65, DENSE_K + 9, 3, 3),
            (1, DENSE_K + 1, 5, 4),
            (150, 40, 30, 1),
            (65, 9, 3, 3),
            (1, 3, 5, 4),
            // Three groups of `DENSE_GROUP` samples, the last one short.
            (6, 5, 2 * DENSE_GROUP + 37, 5),
        ] {
            let dense = k <= DENSE_K;
            let mut rng = Rng::new(seed);
            let d = Tensor::<f64>::randn(&[m, k], &mut rng);
            let x = Tensor::<f64>::randn(&[n, m], &mut rng);
            let c = x.matmul(&d).to_vec();
            let l1 = 0.2 * c.iter().fold(0.0f64, |acc, v| acc.max(v.abs()));
            let sol = lars_en(&d, &x, &LarsConfig::new(l1, 0.05)).unwrap();
            let g = Tensor::<f64>::randn(&[n, k], &mut rng).to_vec();
            let (dv, xv, av) = (d.to_vec(), x.to_vec(), sol.codes.to_vec());
            let want = Wanted { dictionary: true, input: true, lambda1: true, lambda2: true };
            let run = |t: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
                pool.install(|| mairal_backward(&sol.paths, &dv, &xv, &av, &g, m, k, want))
            };
            let one = run(1);
            let (gd, gx) = (one.dictionary.as_ref().unwrap().to_vec(), one.input.as_ref().unwrap().to_vec());
            let (nd, nx) = naive(&sol.paths, &dv, &xv, &av, &g, m, k);
            let err = |p: &[f64], q: &[f64]| {
                p.iter().zip(q).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0, f64::max)
            };
            assert!(err(&gd, &nd) < 1e-12, "m={m} n={n} dense={dense}: ∂D off by {}", err(&gd, &nd));
            assert!(err(&gx, &nx) < 1e-12, "m={m} n={n} dense={dense}: ∂X off by {}", err(&gx, &nx));
            for t in [2, 3] {
                let other = run(t);
                let bits = |v: &Option<Tensor<f64>>| {
                    v.as_ref().unwrap().to_vec().iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                };
                assert_eq!(bits(&one.dictionary), bits(&other.dictionary), "m={m} n={n} threads={t}");
                assert_eq!(bits(&one.input), bits(&other.input), "m={m} n={n} threads={t}");
                assert_eq!(one.lambda1.map(f64::to_bits), other.lambda1.map(f64::to_bits));
                assert_eq!(one.lambda2.map(f64::to_bits), other.lambda2.map(f64::to_bits));
            }
            // Only ∂X, only ∂D: the same values.
            let only_x =
                mairal_backward(&sol.paths, &dv, &xv, &av, &g, m, k, Wanted { input: true, ..Wanted::default() });
            assert_eq!(only_x.input.unwrap().to_vec(), gx);
            let only_d =
                mairal_backward(&sol.paths, &dv, &xv, &av, &g, m, k, Wanted { dictionary: true, ..Wanted::default() });
            assert_eq!(only_d.dictionary.unwrap().to_vec(), gd);
        }
    }
}
