//! The LARS-EN homotopy (docs/math.md §1): batch set-up (GEMMs, input checks, rayon over samples)
//! and the per-sample path. See the module docs of [`crate::lars`] for the method, the hard
//! inputs and the guarantees.

use engine::kernels::matmul::{gemm, par_gemm, MatRef};
use engine::linalg::{forward_substitute, Cholesky};
use engine::{Element, Tensor};

use super::kernels::{self, Isa};
use super::lanes::{solve_chunk, Lanes};
use crate::SparseError;

/// Samples per rayon work item. Chunk boundaries depend only on N (each sample's path is
/// computed by the same sequential code whatever chunk it is in), so codes are bit-identical
/// for any number of threads.
const CHUNK: usize = 8;

/// Default pivot-floor constant `c` of the active-set Cholesky factor: an atom whose pivot²
/// `G_jj − ‖L⁻¹·G_Λj‖²` is at most `c·ε·G_jj` is treated as numerically dependent on the
/// active atoms and skipped. See [`LarsConfig::pivot_floor`].
///
/// `c·ε` is 2.2e-12 in f64 and 1.2e-3 in f32: an atom within `sqrt(c·ε)` radians (1.5e-6 rad,
/// 2°) of the span of the active atoms counts as dependent. Why 1e4, not the engine's 100:
/// `G` comes from a GEMM over m entries, whose rounding enters the Schur complement of a
/// dependent atom amplified by its combination weights `(1 + ‖w‖₁)²`. Measured at the lars.py
/// size (m = 800, duplicates and random combinations of 2–3 atoms, Gaussian and correlated
/// dictionaries): at most 6.5·ε·G_jj, in f64 and f32; the independent atoms of those
/// dictionaries have pivot² ≥ 0.4·G_jj, i.e. ≥ 3e6·ε in f32 (test
/// `dependent_atom_pivots_are_far_below_the_floor_and_independent_ones_far_above`). 1e4 keeps
/// a factor of 1000 above the measured noise (weights up to ‖w‖₁ ≈ 30) and 300 below the
/// weakest independent atom in f32.
pub const DEFAULT_LARS_PIVOT_FLOOR: f64 = 1e4;

/// Configuration of [`lars_en`] / [`lars_en_gram`]:
/// `α*(x) = argmin_α ½‖x − Dα‖² + λ1‖α‖₁ + (λ2/2)‖α‖²` (with `α ≥ 0` when `positive`).
#[derive(Clone, Debug, PartialEq)]
pub struct LarsConfig {
    /// ℓ1 weight λ1 ≥ 0 (the path stops at λ = λ1).
    pub lambda1: f64,
    /// ℓ2 weight λ2 ≥ 0 (LARS-EN: the lasso on `G = DᵀD + λ2·I`).
    pub lambda2: f64,
    /// Cap L on |Λ|: the path stops where an (L+1)-th atom would join (`hit_cap`); the codes
    /// are then the exact solution for λ1 = `lambda_reached`. `None`: no cap.
    pub max_active: Option<usize>,
    /// Non-negative codes: only positive correlations join, `α ≥ 0`.
    pub positive: bool,
    /// Pivot-floor constant `c` (see the module docs, "Dependent atoms"); `None` means
    /// [`DEFAULT_LARS_PIVOT_FLOOR`].
    pub pivot_floor: Option<f64>,
    /// Guard against cycling: at most this many events per sample (`None`: `20·k + 100`);
    /// exceeding it is `SparseError::PathTooLong`.
    pub max_steps: Option<usize>,
}

impl LarsConfig {
    /// λ1, λ2; no cap, signed codes, default pivot floor and step guard.
    pub fn new(lambda1: f64, lambda2: f64) -> Self {
        LarsConfig { lambda1, lambda2, max_active: None, positive: false, pivot_floor: None, max_steps: None }
    }

    /// At most `n` active atoms.
    pub fn max_active(mut self, n: usize) -> Self {
        self.max_active = Some(n);
        self
    }

    /// Non-negative codes.
    pub fn positive(mut self, positive: bool) -> Self {
        self.positive = positive;
        self
    }

    /// Pivot-floor constant `c` of the active-set factor.
    pub fn pivot_floor(mut self, c: f64) -> Self {
        self.pivot_floor = Some(c);
        self
    }

    /// At most `n` events per sample.
    pub fn max_steps(mut self, n: usize) -> Self {
        self.max_steps = Some(n);
        self
    }

    fn validate(&self, op: &'static str) -> Result<(), SparseError> {
        let floor = self.pivot_floor.unwrap_or(DEFAULT_LARS_PIVOT_FLOOR);
        for (what, value) in [("lambda1", self.lambda1), ("lambda2", self.lambda2), ("pivot_floor", floor)] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(SparseError::InvalidConfig { op, what, value });
            }
        }
        Ok(())
    }
}

/// The path of one sample, as needed by the backward rule (Mairal's `β_Λ = G_ΛΛ⁻¹·g_Λ`) and
/// for auditing.
#[derive(Clone, Debug)]
pub struct SamplePath<T> {
    /// The final active set Λ in factor order (the order of `chol`'s rows).
    pub active: Vec<usize>,
    /// Cholesky factor of `G_ΛΛ = D_ΛᵀD_Λ + λ2·I` in the order of `active` (capacity = |Λ|).
    pub chol: Cholesky<T>,
    /// Events processed (joins, leaves, skips and the final stop).
    pub steps: usize,
    /// Atoms that joined (counting re-joins).
    pub joins: usize,
    /// Atoms that left (coefficient crossed zero: the lasso modification).
    pub leaves: usize,
    /// Atoms skipped as numerically dependent on the active set and still skipped at the end
    /// (in the order they were skipped); they are inactive.
    pub skipped: Vec<usize>,
    /// The path stopped at the cap `max_active` before reaching λ1.
    pub hit_cap: bool,
    /// The λ the codes solve the problem for: λ1, or the λ where the cap stopped the path.
    pub lambda_reached: f64,
}

/// Codes of a batch and the path of every sample.
#[derive(Clone, Debug)]
pub struct LarsSolution<T: Element> {
    /// `[N, k]`: row n is `α*(x_n)`.
    pub codes: Tensor<T>,
    /// One path per sample, in order.
    pub paths: Vec<SamplePath<T>>,
}

/// Elastic-net codes of a batch by LARS-EN (docs/math.md §1):
/// `α*(x_n) = argmin_α ½‖x_n − Dα‖² + λ1‖α‖₁ + (λ2/2)‖α‖²` for every row `x_n` of `x`.
///
/// Shapes: `d` `[m, k]` (columns are atoms, any strides), `x` `[N, m]` (one signal per row,
/// any strides) → `codes` `[N, k]`. `G = DᵀD + λ2·I` and `C = X·D` are computed once by GEMM
/// (exactly symmetrised), then each sample follows its own path (rayon over chunks of 8
/// samples; the result does not depend on the thread count).
///
/// # Errors
/// * `SparseError::InvalidConfig` if λ1, λ2 or the pivot floor is negative or not finite;
/// * `SparseError::NonFinite` naming the first NaN/±∞ entry of `d` (atom and entry) or of
///   `x` (sample and entry), or an overflow in `G` or `C`;
/// * `SparseError::PathTooLong` if a path exceeds `max_steps` (degenerate data).
///
/// **Panics** if `d` or `x` is not a matrix or the signal lengths differ, naming both shapes:
/// `lars_en: x is [N, m] = [4, 7] but the dictionary is [m, k] = [8, 5]`.
#[track_caller]
pub fn lars_en<T: Element>(d: &Tensor<T>, x: &Tensor<T>, cfg: &LarsConfig) -> Result<LarsSolution<T>, SparseError> {
    const OP: &str = "lars_en";
    assert_eq!(d.rank(), 2, "lars_en: the dictionary must be a matrix [m, k], got shape {:?}", d.shape());
    assert_eq!(x.rank(), 2, "lars_en: x must be a matrix [N, m] (one signal per row), got shape {:?}", x.shape());
    let (m, k, n) = (d.dim(0), d.dim(1), x.dim(0));
    assert_eq!(
        x.dim(1),
        m,
        "lars_en: x is [N, m] = [{}, {}] but the dictionary is [m, k] = [{}, {}]",
        n,
        x.dim(1),
        m,
        k
    );
    cfg.validate(OP)?;
    let dm = MatRef::of(d);
    let g = gram(dm, T::of(cfg.lambda2));
    let mut c = vec![T::zero(); n * k];
    par_gemm(T::one(), MatRef::of(x), dm, T::zero(), &mut c, 0, k);
    // A NaN or ±∞ in D reaches G's diagonal (G_jj = Σ_i d_ij² + λ2), and one in row n of X
    // every entry of row n of C (x·d_j with a ±∞ is ±∞ or NaN, never finite) when k ≥ 1; so
    // D and X are searched (for the error's position) only when G or C is not finite, or X
    // when there are no atoms.
    if k == 0 || any_non_finite(&g) || any_non_finite(&c) {
        if let Some((row, col, value)) = first_non_finite(d) {
            return Err(SparseError::NonFinite { op: OP, what: "dictionary", row, col, value });
        }
        if let Some((row, col, value)) = first_non_finite(x) {
            return Err(SparseError::NonFinite { op: OP, what: "x", row, col, value });
        }
        if let Some(p) = g.iter().position(|v| !v.is_finite()) {
            return Err(SparseError::NonFinite { op: OP, what: "gram", row: p / k, col: p % k, value: g[p].as_f64() });
        }
        if let Some(p) = c.iter().position(|v| !v.is_finite()) {
            return Err(SparseError::NonFinite { op: OP, what: "corr", row: p / k, col: p % k, value: c[p].as_f64() });
        }
    }
    solve_batch(OP, &g, k, &c, n, cfg)
}

/// [`lars_en`] with the paths kept in one flat [`CompactPaths`] instead of a [`SamplePath`]
/// per sample: nothing is allocated per sample (the batch's buffers grow by amortised
/// doubling), which is what a convolutional layer with tens of thousands of small problems
/// (few atoms, short paths) needs. The paths run 16 samples at a time, one per vector lane
/// (`lars::lanes`: each lane its own active set and factor, the per-sample arithmetic in
/// each lane). The codes and every active set and factor are the same bits as [`lars_en`]'s
/// (tested, for every instruction set).
///
/// # Errors
/// As [`lars_en`]. **Panics** as [`lars_en`].
#[track_caller]
pub fn lars_en_compact<T: Element>(
    d: &Tensor<T>,
    x: &Tensor<T>,
    cfg: &LarsConfig,
) -> Result<(Tensor<T>, CompactPaths<T>), SparseError> {
    compact(d, x, cfg, true)
}

/// [`lars_en_compact`] one sample at a time (the reference the lane-batched solver is tested
/// and timed against; the same bits).
#[doc(hidden)]
#[track_caller]
pub fn lars_en_compact_serial<T: Element>(
    d: &Tensor<T>,
    x: &Tensor<T>,
    cfg: &LarsConfig,
) -> Result<(Tensor<T>, CompactPaths<T>), SparseError> {
    compact(d, x, cfg, false)
}

#[track_caller]
fn compact<T: Element>(
    d: &Tensor<T>,
    x: &Tensor<T>,
    cfg: &LarsConfig,
    lanes: bool,
) -> Result<(Tensor<T>, CompactPaths<T>), SparseError> {
    const OP: &str = "lars_en";
    assert_eq!(d.rank(), 2, "lars_en: the dictionary must be a matrix [m, k], got shape {:?}", d.shape());
    assert_eq!(x.rank(), 2, "lars_en: x must be a matrix [N, m] (one signal per row), got shape {:?}", x.shape());
    let (m, k, n) = (d.dim(0), d.dim(1), x.dim(0));
    assert_eq!(
        x.dim(1),
        m,
        "lars_en: x is [N, m] = [{}, {}] but the dictionary is [m, k] = [{}, {}]",
        n,
        x.dim(1),
        m,
        k
    );
    cfg.validate(OP)?;
    let dm = MatRef::of(d);
    let g = gram(dm, T::of(cfg.lambda2));
    let mut c = vec![T::zero(); n * k];
    par_gemm(T::one(), MatRef::of(x), dm, T::zero(), &mut c, 0, k);
    if k == 0 || any_non_finite(&g) || any_non_finite(&c) {
        if let Some((row, col, value)) = first_non_finite(d) {
            return Err(SparseError::NonFinite { op: OP, what: "dictionary", row, col, value });
        }
        if let Some((row, col, value)) = first_non_finite(x) {
            return Err(SparseError::NonFinite { op: OP, what: "x", row, col, value });
        }
        if let Some(p) = g.iter().position(|v| !v.is_finite()) {
            return Err(SparseError::NonFinite { op: OP, what: "gram", row: p / k, col: p % k, value: g[p].as_f64() });
        }
        if let Some(p) = c.iter().position(|v| !v.is_finite()) {
            return Err(SparseError::NonFinite { op: OP, what: "corr", row: p / k, col: p % k, value: c[p].as_f64() });
        }
    }
    solve_batch_compact(OP, &g, k, &c, n, cfg, lanes)
}

/// The paths of a batch in flat buffers (see [`lars_en_compact`]), one set per chunk of
/// samples solved together: sample `s`'s active set (factor order) is [`CompactPaths::active`]
/// and the Cholesky factor of its `G_ΛΛ` is [`CompactPaths::factor`], packed by rows (row `i`
/// is `L[i, 0..=i]` at `i·(i + 1)/2`, `|Λ|·(|Λ| + 1)/2` entries), exactly the bits of
/// [`SamplePath::chol`]. The chunks' buffers are kept as they were written (a CSF layer's
/// factors are tens of megabytes per batch: copying them into one buffer cost a twentieth of
/// the layer's time, in the copy and in fresh pages).
#[derive(Clone, Debug, Default)]
pub struct CompactPaths<T> {
    /// The chunks, in sample order.
    parts: Vec<ChunkPaths<T>>,
    /// Samples per chunk (all but the last, which may have more or fewer).
    per: usize,
    /// Number of samples.
    n: usize,
    /// Events, summed over the samples ([`SamplePath::steps`]).
    pub steps: usize,
    /// Joins, summed.
    pub joins: usize,
    /// Leaves, summed.
    pub leaves: usize,
    /// Atoms still skipped at the end, summed.
    pub skipped: usize,
}

/// The paths of one chunk of samples: its active sets and factors one after the other, in
/// the order they were computed, and where each sample's are.
#[derive(Clone, Debug, Default)]
pub(crate) struct ChunkPaths<T> {
    pub(crate) atoms: Vec<usize>,
    pub(crate) factors: Vec<T>,
    /// Per sample of the chunk, in sample order: (offset in `atoms`, |Λ|, offset in
    /// `factors`, whether the cap stopped the path).
    pub(crate) index: Vec<(usize, usize, usize, bool)>,
    /// Events, joins, leaves and skipped atoms, summed over the chunk.
    pub(crate) sums: [usize; 4],
}

impl<T: Element> ChunkPaths<T> {
    /// Appends the path just computed in `ws` as the chunk's next sample.
    fn push(&mut self, ws: &Workspace<T>, info: &SamplePath<T>) {
        let na = ws.active.len();
        self.index.push((self.atoms.len(), na, self.factors.len(), info.hit_cap));
        self.atoms.extend_from_slice(&ws.active);
        for i in 0..na {
            self.factors.extend_from_slice(ws.chol.row(i));
        }
        self.sums[0] += info.steps;
        self.sums[1] += info.joins;
        self.sums[2] += info.leaves;
        self.sums[3] += ws.skipped.len();
    }
}

impl<T: Element> CompactPaths<T> {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    #[inline]
    fn entry(&self, s: usize) -> (&ChunkPaths<T>, (usize, usize, usize, bool)) {
        assert!(s < self.n, "CompactPaths: sample {s} of {}", self.n);
        // Every chunk but the last has `per` samples; the last may have any number.
        let p = (s / self.per).min(self.parts.len() - 1);
        let part = &self.parts[p];
        (part, part.index[s - p * self.per])
    }

    /// Sample `s`'s active set in factor order. **Panics** if `s ≥ len()`.
    pub fn active(&self, s: usize) -> &[usize] {
        let (part, (ao, na, _, _)) = self.entry(s);
        &part.atoms[ao..ao + na]
    }

    /// Sample `s`'s factor, packed by rows: `L[i, j]` (`j ≤ i`) at `i·(i + 1)/2 + j`.
    /// **Panics** if `s ≥ len()`.
    pub fn factor(&self, s: usize) -> &[T] {
        let (part, (_, na, fo, _)) = self.entry(s);
        &part.factors[fo..fo + na * (na + 1) / 2]
    }

    /// Whether the cap stopped sample `s`'s path ([`SamplePath::hit_cap`]). **Panics** if
    /// `s ≥ len()`.
    pub fn hit_cap(&self, s: usize) -> bool {
        self.entry(s).1 .3
    }

    /// The chunks' paths, `per` samples each but the last (which may have any number), in
    /// sample order (moved, not copied). **Panics** if a chunk but the last has not `per`.
    pub(super) fn from_parts(parts: Vec<ChunkPaths<T>>, per: usize) -> Self {
        let n = parts.iter().map(|p| p.index.len()).sum();
        assert!(
            parts.iter().rev().skip(1).all(|p| p.index.len() == per),
            "CompactPaths: every chunk but the last has {per} samples"
        );
        // Chunks of no sample (all of them but the last when `per` is 0) hold nothing.
        let parts: Vec<ChunkPaths<T>> = parts.into_iter().filter(|p| !p.index.is_empty()).collect();
        let per = if parts.len() <= 1 { n } else { per };
        let sum = |i: usize| parts.iter().map(|p| p.sums[i]).sum();
        let (steps, joins, leaves, skipped) = (sum(0), sum(1), sum(2), sum(3));
        CompactPaths { parts, per: per.max(1), n, steps, joins, leaves, skipped }
    }
}

/// `G = DᵀD + λ2·I` (`k × k`, row-major) for `d` `[m, k]`, exactly symmetric.
///
/// Only the lower triangle is needed. It is computed as [`GRAM_BLOCKS`] row blocks
/// `G[lo..hi, 0..hi] = D[:, lo..hi]ᵀ·D[:, 0..hi]`, one GEMM each (on rayon), with edges that
/// give every block the same work — 64% of the full product's flops at four blocks, against
/// 50% for the triangle alone; more, smaller blocks cost more in packing than they save (measured
/// on the lars.py size, k = 500, m = 800). Then the upper triangle is copied from the lower one.
///
/// Each entry has the bits the full product `DᵀD` gives it: `matrixmultiply` computes every
/// entry of C from the same packed panels in the same order whatever rows and columns of C a
/// call covers (its blocking along the inner dimension m depends on m only), the property the
/// engine's column-split GEMM relies on too (`any_column_split_gives_the_same_bits`), and
/// `gram_blocks_give_the_bits_of_the_full_product` checks here.
pub(super) fn gram<T: Element>(dm: MatRef<'_, T>, l2: T) -> Vec<T> {
    let k = dm.cols;
    let mut g = vec![T::zero(); k * k];
    let edges = gram_edges(k, if k >= 128 { GRAM_BLOCKS } else { 1 });
    let starts: Vec<usize> = edges.iter().map(|&e| e * k).collect();
    let dt = dm.t();
    engine::par::pieces_mut(&mut g, &starts, &|i, block| {
        let (lo, hi) = (edges[i], edges[i + 1]);
        let a = MatRef { offset: (dt.offset as isize + lo as isize * dt.rs) as usize, rows: hi - lo, ..dt };
        let b = MatRef { cols: hi, ..dm };
        gemm(T::one(), a, b, T::zero(), block, 0, k);
    });
    for i in 0..k {
        g[i * k + i] += l2;
        for j in 0..i {
            g[j * k + i] = g[i * k + j];
        }
    }
    g
}

/// Row blocks of [`gram`].
const GRAM_BLOCKS: usize = 4;

/// `blocks + 1` row edges `0 = e_0 < … < e_blocks = k` giving the blocks
/// `G[e_{b−1}..e_b, 0..e_b]` equal areas `(e_b − e_{b−1})·e_b` (found by bisection on the
/// area; edges rounded to integers, empty blocks dropped).
fn gram_edges(k: usize, blocks: usize) -> Vec<usize> {
    let kf = k as f64;
    // From the bottom edge up, each block of area A starts A/e above its lower edge e; the
    // area that lands the top edge on 0 after `blocks` steps.
    let top = |area: f64| (0..blocks).fold(kf, |e, _| if e > 0.0 { e - area / e } else { e });
    let (mut lo, mut hi) = (0.0, kf * kf);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if top(mid) > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let mut edges = vec![k];
    let mut e = kf;
    for _ in 1..blocks {
        e -= hi / e;
        edges.push((e.round() as usize).min(k));
    }
    edges.push(0);
    edges.reverse();
    edges.dedup();
    edges
}

/// Whether a slice holds a NaN or ±∞ (no early exit, so it vectorises).
fn any_non_finite<T: Element>(s: &[T]) -> bool {
    s.chunks(1024).any(|c| c.iter().fold(false, |acc, v| acc | !v.is_finite()))
}

/// [`lars_en`] from a precomputed Gram matrix `gram = DᵀD + λ2·I` (`[k, k]`) and correlations
/// `corr = X·D` (`[N, k]`, row n = `Dᵀx_n`), for callers that reuse one Gram matrix over many
/// batches (the convolutional layer: thousands of patches, one dictionary). `cfg.lambda2` is
/// **not** added again: it must already be in `gram` (it is only validated here).
///
/// Given the same `G` and `C` as [`lars_en`] computes, the result is bit-identical to it.
///
/// # Errors
/// As [`lars_en`], plus `SparseError::InvalidGram` if `gram` has a negative diagonal entry or
/// is not symmetric (`|G_ij − G_ji| > √ε·sqrt(G_ii·G_jj)`, ε of `T`), and
/// `SparseError::GramNotPsd` if an active-set pivot² is clearly negative.
///
/// **Panics** if the shapes do not fit, naming both:
/// `lars_en_gram: corr is [N, k] = [4, 7] but the Gram matrix is [k, k] = [5, 5]`.
#[track_caller]
pub fn lars_en_gram<T: Element>(
    gram: &Tensor<T>,
    corr: &Tensor<T>,
    cfg: &LarsConfig,
) -> Result<LarsSolution<T>, SparseError> {
    const OP: &str = "lars_en_gram";
    assert!(
        gram.rank() == 2 && gram.dim(0) == gram.dim(1),
        "lars_en_gram: the Gram matrix must be square [k, k], got shape {:?}",
        gram.shape()
    );
    assert_eq!(corr.rank(), 2, "lars_en_gram: corr must be a matrix [N, k], got shape {:?}", corr.shape());
    let (k, n) = (gram.dim(0), corr.dim(0));
    assert_eq!(
        corr.dim(1),
        k,
        "lars_en_gram: corr is [N, k] = [{}, {}] but the Gram matrix is [k, k] = [{}, {}]",
        n,
        corr.dim(1),
        k,
        k
    );
    cfg.validate(OP)?;
    if let Some((row, col, value)) = first_non_finite(gram) {
        return Err(SparseError::NonFinite { op: OP, what: "gram", row, col, value });
    }
    if let Some((row, col, value)) = first_non_finite(corr) {
        return Err(SparseError::NonFinite { op: OP, what: "corr", row, col, value });
    }
    let g = gram.contiguous();
    let g = g.as_slice().expect("contiguous");
    let tol = T::epsilon().as_f64().sqrt();
    for i in 0..k {
        let gii = g[i * k + i].as_f64();
        if gii < 0.0 {
            return Err(SparseError::InvalidGram { op: OP, row: i, col: i, upper: gii, lower: gii });
        }
        for j in 0..i {
            let (lo, up) = (g[i * k + j].as_f64(), g[j * k + i].as_f64());
            if (lo - up).abs() > tol * (gii * g[j * k + j].as_f64()).sqrt() {
                return Err(SparseError::InvalidGram { op: OP, row: j, col: i, upper: up, lower: lo });
            }
        }
    }
    let c = corr.contiguous();
    solve_batch(OP, g, k, c.as_slice().expect("contiguous"), n, cfg)
}

/// Row-major position and value of the first NaN/±∞ of a matrix.
fn first_non_finite<T: Element>(t: &Tensor<T>) -> Option<(usize, usize, f64)> {
    let cols = t.dim(1);
    let found = match t.as_slice() {
        Some(s) => s.iter().position(|v| !v.is_finite()).map(|p| (p, s[p])),
        None => {
            let st = t.storage();
            t.layout().offsets().enumerate().find(|&(_, o)| !st[o].is_finite()).map(|(p, o)| (p, st[o]))
        }
    };
    found.map(|(p, v)| (p / cols, p % cols, v.as_f64()))
}

/// Everything a path reads that is shared by the batch.
pub(crate) struct Problem<'a, T> {
    op: &'static str,
    /// `G`, `k × k` row-major, symmetric.
    pub(super) g: &'a [T],
    k: usize,
    pub(super) lambda1: T,
    /// λ1 as given (reported as `lambda_reached` when the path ends at λ1).
    lambda1_f64: f64,
    pub(super) positive: bool,
    pub(super) cap: usize,
    pub(super) floor: f64,
    pub(super) max_steps: usize,
    /// Instruction set of the path's kernels, picked once per batch.
    level: Isa,
}

/// What an atom is doing on the current path.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Inactive,
    Active,
    /// Numerically dependent on the active set when it tried to join; not a join candidate
    /// until the next leave event.
    Skipped,
}

/// Per-chunk buffers, reused by every sample of the chunk (nothing is allocated inside a
/// path except when the Cholesky buffer grows past its capacity). Every sample resets what
/// it reads, so the results do not depend on which samples shared a workspace.
struct Workspace<T> {
    /// Current correlations `c_j = d_jᵀr − λ2·α_j` for all k atoms.
    c: Vec<T>,
    /// `a = G_{:,Λ}·u_Λ`: the rate of change of `c` along the current direction.
    a: Vec<T>,
    state: Vec<State>,
    /// Which atoms may join at `+λ` and at `−λ`, as the join search reads it
    /// (`kernels::next_join`): 0 where atom j may, +∞ where it may not (active, skipped, the
    /// side an atom just left from, `−λ` for positive codes).
    bar_plus: Vec<T>,
    bar_minus: Vec<T>,
    /// The atom that left last, barred from the side it left from until the direction
    /// changes again (see the module docs).
    just_left: Option<usize>,
    /// Λ in factor order, with each atom's sign `s_j` and coefficient `α_j`.
    active: Vec<usize>,
    sign: Vec<T>,
    coef: Vec<T>,
    /// `y = L⁻¹·s_Λ` (`L` the factor of `G_ΛΛ`), kept up to date row by row: entry `i`
    /// depends only on rows `0..=i` of `L` and `s`, so a join appends one entry and a leave at
    /// position q recomputes entries `q..` (the same bits as a full forward substitution).
    y: Vec<T>,
    /// Direction on Λ: `u = G_ΛΛ⁻¹·s_Λ = L⁻ᵀ·y`.
    u: Vec<T>,
    /// `G[j, Λ]` gathered for an append.
    col: Vec<T>,
    skipped: Vec<usize>,
    chol: Cholesky<T>,
}

impl<T: Element> Workspace<T> {
    /// Sets atom `j`'s state and its join bars together (`−λ` stays barred for positive
    /// codes).
    fn set_state(&mut self, j: usize, s: State, positive: bool) {
        let (open, shut) = (T::zero(), T::infinity());
        self.state[j] = s;
        let may = s == State::Inactive;
        self.bar_plus[j] = if may { open } else { shut };
        self.bar_minus[j] = if may && !positive { open } else { shut };
    }

    /// The direction changes: the atom that left last may join from either side again.
    fn release_just_left(&mut self, positive: bool) {
        if let Some(j) = self.just_left.take() {
            if self.state[j] == State::Inactive {
                self.set_state(j, State::Inactive, positive);
            }
        }
    }

    fn new(k: usize, cap: usize, floor: f64) -> Self {
        let rows = cap.min(k).saturating_add(1).min(64);
        let mut chol = Cholesky::with_capacity(rows);
        chol.set_pivot_floor(floor);
        // Dense active sets of a large dictionary (the SF layer: ~400 of 500 atoms) spend most
        // of their path in the appends' forward substitutions: by columns, in vectors.
        chol.set_column_mirror(k >= MIRROR_FROM_ATOMS);
        Workspace {
            c: vec![T::zero(); k],
            a: vec![T::zero(); k],
            state: vec![State::Inactive; k],
            bar_plus: vec![T::zero(); k],
            bar_minus: vec![T::zero(); k],
            just_left: None,
            active: Vec::with_capacity(rows),
            sign: Vec::with_capacity(rows),
            coef: Vec::with_capacity(rows),
            y: Vec::with_capacity(rows),
            u: Vec::with_capacity(rows),
            col: Vec::with_capacity(rows),
            skipped: Vec::new(),
            chol,
        }
    }
}

/// The next event on the current segment.
#[derive(Clone, Copy)]
enum Event<T> {
    /// λ reaches λ1.
    Stop,
    /// Inactive atom `j` reaches `|c_j| = λ` with sign `s`.
    Join(usize, T),
    /// The coefficient at position `p` of Λ reaches zero.
    Leave(usize),
}

fn solve_batch<T: Element>(
    op: &'static str,
    g: &[T],
    k: usize,
    c: &[T],
    n: usize,
    cfg: &LarsConfig,
) -> Result<LarsSolution<T>, SparseError> {
    let prob = Problem::new(op, g, k, cfg);
    let mut codes = vec![T::zero(); n * k];
    let paths = if k == 0 {
        (0..n).map(|_| empty_path(cfg.lambda1)).collect()
    } else {
        let chunks: Vec<Result<Vec<SamplePath<T>>, SparseError>> = engine::par::chunks_map_with(
            &mut codes,
            CHUNK * k,
            &|| Workspace::new(k, prob.cap, prob.floor),
            &|ws, ci, out| {
                let mut paths = Vec::with_capacity(CHUNK);
                for (r, row) in out.chunks_mut(k).enumerate() {
                    let s = ci * CHUNK + r;
                    let mut path = solve_path(&prob, ws, &c[s * k..(s + 1) * k], row, s)?;
                    // `steps == 0`: α = 0 at once, the path of `empty_path`.
                    if path.steps > 0 {
                        path.active = ws.active.clone();
                        path.chol = ws.chol.to_compact();
                        path.skipped = ws.skipped.clone();
                    }
                    paths.push(path);
                }
                Ok(paths)
            },
        );
        let mut paths = Vec::with_capacity(n);
        for chunk in chunks {
            paths.extend(chunk?);
        }
        paths
    };
    Ok(LarsSolution { codes: Tensor::from_vec(codes, &[n, k]), paths })
}

impl<'a, T: Element> Problem<'a, T> {
    pub(super) fn new(op: &'static str, g: &'a [T], k: usize, cfg: &LarsConfig) -> Self {
        Problem {
            op,
            g,
            k,
            lambda1: T::of(cfg.lambda1),
            lambda1_f64: cfg.lambda1,
            positive: cfg.positive,
            cap: cfg.max_active.unwrap_or(usize::MAX),
            floor: cfg.pivot_floor.unwrap_or(DEFAULT_LARS_PIVOT_FLOOR),
            max_steps: cfg.max_steps.unwrap_or(20 * k + 100),
            level: Isa::best(),
        }
    }
}

/// Dictionaries from this many atoms keep the Cholesky factor's column mirror
/// ([`Cholesky::set_column_mirror`]; the same bits either way).
const MIRROR_FROM_ATOMS: usize = 32;

/// Samples per rayon work item of [`solve_batch_compact`] (a function of nothing but this
/// constant, so the result does not depend on the thread count).
const COMPACT_CHUNK: usize = 512;

/// [`solve_batch`] writing the paths into [`CompactPaths`] (one set of buffers per work item,
/// kept as they are).
pub(super) fn solve_batch_compact<T: Element>(
    op: &'static str,
    g: &[T],
    k: usize,
    c: &[T],
    n: usize,
    cfg: &LarsConfig,
    lanes: bool,
) -> Result<(Tensor<T>, CompactPaths<T>), SparseError> {
    let prob = Problem::new(op, g, k, cfg);
    let mut codes = vec![T::zero(); n * k];
    if k == 0 {
        let empty = ChunkPaths { index: vec![(0, 0, 0, false); n], ..Default::default() };
        return Ok((Tensor::from_vec(codes, &[n, k]), CompactPaths::from_parts(vec![empty], n)));
    }
    let chunks: Vec<Result<ChunkPaths<T>, SparseError>> = engine::par::chunks_map_with(
        &mut codes,
        COMPACT_CHUNK * k,
        &|| (Workspace::new(k, prob.cap, prob.floor), if lanes { Some(Lanes::new(k, prob.cap)) } else { None }),
        &|st, ci, out| {
            let (ws, lanes) = st;
            let rows = out.len() / k;
            let c_chunk = &c[ci * COMPACT_CHUNK * k..(ci * COMPACT_CHUNK + rows) * k];
            if let Some(lanes) = lanes {
                if let Ok(part) = solve_chunk(prob.level, lanes, &prob, c_chunk, out, rows) {
                    return Ok(part);
                }
                // A lane failed: the per-sample path below gives the error (and rewrites
                // every row).
            }
            let mut part = ChunkPaths::default();
            // Room for every atom active in every sample, so the buffers never move; the
            // pages that are not written are never touched (at k = 20 and 10 active atoms,
            // a fifth of the factors' room is used).
            part.atoms.reserve(rows * k);
            part.factors.reserve(rows * (k * (k + 1) / 2));
            part.index.reserve(rows);
            for (r, row) in out.chunks_mut(k).enumerate() {
                let s = ci * COMPACT_CHUNK + r;
                let info = solve_path(&prob, ws, &c[s * k..(s + 1) * k], row, s)?;
                part.push(ws, &info);
            }
            Ok(part)
        },
    );
    let parts = chunks.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok((Tensor::from_vec(codes, &[n, k]), CompactPaths::from_parts(parts, COMPACT_CHUNK)))
}

fn empty_path<T: Element>(lambda1: f64) -> SamplePath<T> {
    SamplePath {
        active: Vec::new(),
        chol: Cholesky::with_capacity(0),
        steps: 0,
        joins: 0,
        leaves: 0,
        skipped: Vec::new(),
        hit_cap: false,
        lambda_reached: lambda1,
    }
}

/// Rows `from..` of the forward substitution `L·y = b` in `y`, given `y_0..y_{from−1}` and
/// `b` for the rest (the arithmetic of `Cholesky::solve_lower`, term for term).
fn forward_from<T: Element>(chol: &Cholesky<T>, y: &mut Vec<T>, b: &[T], from: usize) {
    y.truncate(from);
    y.extend_from_slice(b);
    let (l, ld) = chol.storage();
    forward_substitute(l, |i| i * ld, y, from);
}

/// One sample's homotopy from λ = max_j |c_j| down to λ1. `c0` = `Dᵀx` (row of C), `out` =
/// the sample's row of the codes (written completely). The returned path has the counters;
/// its active set, factor and skipped atoms are left in `ws` (`ws.active`, `ws.chol`,
/// `ws.skipped`) for the caller to keep in whatever form it stores paths.
fn solve_path<T: Element>(
    p: &Problem<'_, T>,
    ws: &mut Workspace<T>,
    c0: &[T],
    out: &mut [T],
    sample: usize,
) -> Result<SamplePath<T>, SparseError> {
    let (k, g) = (p.k, p.g);
    let (zero, one) = (T::zero(), T::one());
    ws.c.copy_from_slice(c0);
    ws.state.fill(State::Inactive);
    ws.bar_plus.fill(zero);
    ws.bar_minus.fill(if p.positive { T::infinity() } else { zero });
    ws.just_left = None;
    ws.active.clear();
    ws.sign.clear();
    ws.y.clear();
    ws.coef.clear();
    ws.skipped.clear();
    ws.chol.clear();
    out.fill(zero);

    let mut lam = c0.iter().fold(zero, |m, &v| m.max(if p.positive { v } else { v.abs() }));
    let l1 = p.lambda1;
    let mut path = empty_path::<T>(p.lambda1_f64);
    if lam <= l1 {
        // λ1 ≥ max_j |c_j| (max_j c_j when positive): α = 0 satisfies the KKT conditions.
        return Ok(path);
    }
    'path: loop {
        // Direction for the current Λ: u = G_ΛΛ⁻¹·s, a = G_{:,Λ}·u (rows of G, contiguous).
        let na = ws.active.len();
        ws.u.clear();
        ws.u.extend_from_slice(&ws.y);
        let (l, ld) = ws.chol.storage();
        kernels::solve_lt(p.level, l, ld, &mut ws.u);
        kernels::gemv_rows(p.level, g, k, &ws.active, &ws.u, &mut ws.a);
        // Events along this direction (a skipped join keeps the direction).
        loop {
            path.steps += 1;
            if path.steps > p.max_steps {
                return Err(SparseError::PathTooLong { op: p.op, sample, steps: p.max_steps });
            }
            let mut gamma = lam - l1;
            let mut event = Event::Stop;
            let (t, win) =
                kernels::next_join(p.level, &ws.c, &ws.a, &ws.bar_plus, &ws.bar_minus, lam, gamma, !p.positive);
            if win != kernels::NO_JOIN {
                gamma = t;
                event = Event::Join(win / 2, if win % 2 == 0 { one } else { -one });
            }
            for q in 0..na {
                // α_q + γ·u_q = 0, for a coefficient moving towards zero from the side of its sign.
                let (uq, sq) = (ws.u[q], ws.sign[q]);
                if uq * sq < zero {
                    let t = (-ws.coef[q] / uq).max(zero);
                    if t < gamma {
                        gamma = t;
                        event = Event::Leave(q);
                    }
                }
            }
            // Take the step.
            for (aq, &uq) in ws.coef.iter_mut().zip(&ws.u) {
                *aq += gamma * uq;
            }
            kernels::sub_scaled(p.level, gamma, &ws.a, &mut ws.c);
            lam -= gamma;
            match event {
                Event::Stop => {
                    lam = l1;
                    break 'path;
                }
                Event::Leave(q) => {
                    let j = ws.active.remove(q);
                    let s = ws.sign.remove(q);
                    ws.coef.remove(q);
                    ws.chol.remove(q);
                    // Rows q.. of L changed: so did y from q on.
                    forward_from(&ws.chol, &mut ws.y, &ws.sign[q..na - 1], q);
                    ws.release_just_left(p.positive);
                    ws.set_state(j, State::Inactive, p.positive);
                    // The span of Λ shrank: skipped atoms may no longer depend on it.
                    while let Some(s) = ws.skipped.pop() {
                        ws.set_state(s, State::Inactive, p.positive);
                    }
                    // Barred from the side it left from: on this direction c_j ∓ λ moves inside.
                    if s == one {
                        ws.bar_plus[j] = T::infinity();
                    } else {
                        ws.bar_minus[j] = T::infinity();
                    }
                    ws.just_left = Some(j);
                    path.leaves += 1;
                    continue 'path;
                }
                Event::Join(j, s) => {
                    ws.col.clear();
                    ws.col.extend(ws.active.iter().map(|&i| g[j * k + i]));
                    match ws.chol.try_append(&ws.col, g[j * k + j]) {
                        Ok(()) => {
                            if na + 1 > p.cap {
                                ws.chol.remove(na);
                                path.hit_cap = true;
                                break 'path;
                            }
                            ws.active.push(j);
                            ws.sign.push(s);
                            forward_from(&ws.chol, &mut ws.y, &[s], na);
                            ws.coef.push(zero);
                            ws.release_just_left(p.positive);
                            ws.set_state(j, State::Active, p.positive);
                            path.joins += 1;
                            continue 'path;
                        }
                        Err(e) => {
                            if !(e.pivot_sq.is_finite() && e.pivot_sq >= -e.floor) {
                                return Err(SparseError::GramNotPsd {
                                    op: p.op,
                                    sample,
                                    atom: j,
                                    active: na,
                                    pivot_sq: e.pivot_sq,
                                    floor: e.floor,
                                });
                            }
                            // Numerically dependent on Λ: skip it (see the module docs).
                            ws.set_state(j, State::Skipped, p.positive);
                            ws.skipped.push(j);
                        }
                    }
                }
            }
        }
    }
    // Final solve on (Λ, s) at λ: G_ΛΛ·α_Λ = c0_Λ − λ·s_Λ, the KKT equations on Λ, so the codes
    // carry no rounding accumulated along the path. A coefficient that lands on the wrong side
    // of zero (an atom exactly at its leave point, up to rounding) is set to 0.
    ws.u.clear();
    ws.u.extend(ws.active.iter().zip(&ws.sign).map(|(&j, &s)| c0[j] - lam * s));
    ws.chol.solve_in_place(&mut ws.u);
    for ((&j, &s), &v) in ws.active.iter().zip(&ws.sign).zip(&ws.u) {
        if !v.is_finite() {
            return Err(SparseError::NonFinite { op: p.op, what: "codes", row: sample, col: j, value: v.as_f64() });
        }
        out[j] = if v * s < zero { zero } else { v };
    }
    path.lambda_reached = if path.hit_cap { lam.as_f64() } else { p.lambda1_f64 };
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Orthonormal atoms decouple the problem: `G = (1 + λ2)·I`, so
    /// `α_j = S_λ1(d_jᵀx) / (1 + λ2)`. With D = I₃, x = (3, −1, 0.5), λ1 = 1, λ2 = 1:
    /// α = (S₁(3), S₁(−1), S₁(0.5)) / 2 = (1, 0, 0); with λ1 = 0.25: (1.375, −0.375, 0.125).
    /// The path: atom 0 joins at λ = 3, atom 1 at λ = 1, atom 2 at λ = 0.5.
    fn close(a: &Tensor<f64>, b: &[f64]) -> bool {
        a.to_vec().iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-15)
    }

    #[test]
    fn orthonormal_atoms_give_soft_thresholding() {
        let d = Tensor::from_vec(vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], &[3, 3]);
        let x = Tensor::from_vec(vec![3.0, -1.0, 0.5], &[1, 3]);
        let sol = lars_en(&d, &x, &LarsConfig::new(1.0, 1.0)).unwrap();
        assert!(close(&sol.codes, &[1.0, 0.0, 0.0]), "{:?}", sol.codes);
        // Atom 1 sits exactly at |c| = λ1 = 1: the stop wins the tie, it stays inactive.
        assert_eq!(sol.paths[0].active, vec![0]);
        let sol = lars_en(&d, &x, &LarsConfig::new(0.25, 1.0)).unwrap();
        assert!(close(&sol.codes, &[1.375, -0.375, 0.125]), "{:?}", sol.codes);
        assert_eq!(sol.paths[0].active, vec![0, 1, 2]);
        assert_eq!((sol.paths[0].joins, sol.paths[0].leaves, sol.paths[0].steps), (3, 0, 4));
        // Positive: the negative correlation never joins.
        let sol = lars_en(&d, &x, &LarsConfig::new(0.25, 1.0).positive(true)).unwrap();
        assert!(close(&sol.codes, &[1.375, 0.0, 0.125]), "{:?}", sol.codes);
    }

    /// The row blocks of `gram` give the bits of one full product `DᵀD` (the property the
    /// equality `lars_en` = `lars_en_gram` with a Gram matrix made by `matmul` relies on), for
    /// strided views too, and the edges split the work evenly.
    #[test]
    fn gram_blocks_give_the_bits_of_the_full_product() {
        let mut rng = engine::Rng::new(3);
        for (m, k) in [(1, 1), (5, 3), (40, 130), (33, 257), (800, 500)] {
            let d = Tensor::<f64>::randn(&[m, k], &mut rng);
            let full = d.t().matmul(&d).to_vec();
            for view in [d.clone(), d.t().contiguous().t()] {
                let g = gram(MatRef::of(&view), 0.25);
                for i in 0..k {
                    for j in 0..k {
                        let want = if i == j { full[i * k + i] + 0.25 } else { full[i.max(j) * k + i.min(j)] };
                        assert_eq!(g[i * k + j].to_bits(), want.to_bits(), "m={m} k={k} ({i}, {j})");
                    }
                }
            }
            let f = Tensor::<f32>::randn(&[m, k], &mut rng);
            let full = f.t().matmul(&f).to_vec();
            let g = gram(MatRef::of(&f), 0.0);
            assert!(
                (0..k).all(|i| (0..=i).all(|j| g[i * k + j].to_bits() == full[i * k + j].to_bits())),
                "f32 m={m} k={k}"
            );
        }
        let e = gram_edges(500, 4);
        assert_eq!((e[0], *e.last().unwrap(), e.len()), (0, 500, 5), "{e:?}");
        let areas: Vec<usize> = e.windows(2).map(|w| (w[1] - w[0]) * w[1]).collect();
        let (lo, hi) = (areas.iter().min().unwrap(), areas.iter().max().unwrap());
        assert!(*hi as f64 <= 1.02 * *lo as f64, "{e:?}: areas {areas:?}");
        assert_eq!(gram_edges(7, 1), vec![0, 7]);
        assert_eq!(gram_edges(0, 1), vec![0]);
    }

    #[test]
    fn config_builder_sets_every_field() {
        let c = LarsConfig::new(0.1, 0.01).max_active(5).positive(true).pivot_floor(10.0).max_steps(7);
        assert_eq!(
            c,
            LarsConfig {
                lambda1: 0.1,
                lambda2: 0.01,
                max_active: Some(5),
                positive: true,
                pivot_floor: Some(10.0),
                max_steps: Some(7)
            }
        );
    }

    /// The step guard: a path that needs more events than allowed is an error, not a hang.
    #[test]
    fn too_many_steps_is_an_error() {
        let d = Tensor::from_vec(vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], &[3, 3]);
        let x = Tensor::from_vec(vec![3.0, -1.0, 0.5], &[1, 3]);
        let e = lars_en(&d, &x, &LarsConfig::new(0.25, 1.0).max_steps(2)).unwrap_err();
        assert_eq!(e, SparseError::PathTooLong { op: "lars_en", sample: 0, steps: 2 });
        assert_eq!(e.to_string(), "lars_en: sample 0: the path did not reach λ1 within 2 steps");
    }
}
