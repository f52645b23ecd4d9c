//! Double sparsity with a fixed DCT dictionary (docs/math.md §3; Hoffer 2015, `double-sparsity-nin.txt`):
//! a `k × k` convolution `C → F` whose filters are fixed atoms of an overcomplete DCT over the
//! whole `C × k × k` receptive field, its bias the only trainable parameter, followed by ReLU;
//! the trainable coefficients are the weights `W` of the 1×1 convolution after it, made sparse
//! by a shrinkage step after every SGD step.
//!
//! * [`odct`]: the overcomplete 1-D DCT `D1 [k, p]`, `D1[i, j] = cos(i·j·π/p)`, the mean removed
//!   from every column `j > 0`, every column scaled to unit ℓ2 norm (column 0 is `1/√k`).
//! * [`dct_factors`], [`dct_dictionary`], [`dct_filters`]: `Φ = odct(C, n1) ⊗ odct(k, n2) ⊗
//!   odct(k, n3)` for `C > 1` with `n_d = ⌈((d³/(C·k²))^{1/2}·F)^{1/3}⌉` for `d = C, k, k`, or
//!   `odct(k, n) ⊗ odct(k, n)` with `n = ⌈√F⌉` for `C = 1`; its first `F` columns, each
//!   reshaped to `[C, k, k]` (row-major, the layout of a `conv2d` weight `[F, C, k, k]`), are
//!   the filters. Column `(j1·n2 + j2)·n3 + j3` is the filter
//!   `φ[c, y, x] = D1[c, j1]·D2[y, j2]·D3[x, j3]` (the authors' Torch code, `ODCT.lua`, uses
//!   the same Kronecker order).
//! * [`DctConv`]: the fixed DCT convolution as a layer description; its forward records
//!   `conv2d` (filters a constant on the tape, so the rule computes no weight gradient) and
//!   `relu`. [`effective_kernels`]: `D = Φ·W`, the kernels of the DCT convolution followed by a
//!   1×1 convolution, `[F_out, C, k, k]`; [`folded_bias`] the matching bias.
//! * [`Shrink`]: the paper's post-step `w ← w − ζ·sign(w)` where `|w| > ζ`, else 0, and the
//!   proximal form with threshold `lr·ζ` (which is [`L1Prox`]); [`zero_fraction`] and
//!   [`zero_fractions`] report the exact zeros.
//!
//! The counts `n_d` are computed exactly in integers: `n_d` is the smallest `n` with
//! `n⁶·C·k² ≥ d³·F²` (`n² ≥ F` for `C = 1`). Torch evaluates the formula in `f32`; the two agree
//! except where the exact value is an integer, which floating point may round up (C = 3,
//! k = 3, F = 27 gives exactly 3 atoms per factor here).

use autograd::optim::{L1Prox, PostStep};
use autograd::Var;
use engine::{Conv2dParams, Element, Rng, Tensor};

/// The overcomplete 1-D DCT `[k, p]` (`f64`, exact to rounding): `D1[i, j] = cos(i·j·π/p)` for
/// `i < k`, `j < p`; the mean of each column `j > 0` subtracted; every column divided by its ℓ2
/// norm. Column 0 is the constant `1/√k` (the DC atom).
///
/// **Panics** if `k < 2` (a column `j > 0` would be 0 after removing its mean) or `p = 0`.
#[track_caller]
pub fn odct(k: usize, p: usize) -> Tensor<f64> {
    assert!(k >= 2 && p >= 1, "odct: needs k ≥ 2 samples and p ≥ 1 atoms, got k = {k}, p = {p}");
    let mut d = vec![0.0; k * p];
    for j in 0..p {
        let mut col: Vec<f64> = if j == 0 {
            vec![1.0; k]
        } else {
            let c: Vec<f64> = (0..k).map(|i| (i as f64 * j as f64 * std::f64::consts::PI / p as f64).cos()).collect();
            let mean = c.iter().sum::<f64>() / k as f64;
            c.iter().map(|v| v - mean).collect()
        };
        let norm = col.iter().map(|v| v * v).sum::<f64>().sqrt();
        col.iter_mut().for_each(|v| *v /= norm);
        for (i, v) in col.into_iter().enumerate() {
            d[i * p + j] = v;
        }
    }
    Tensor::from_vec(d, &[k, p])
}

/// The Kronecker product `A ⊗ B` `[m·p, n·q]` of `A [m, n]` and `B [p, q]`:
/// `(A ⊗ B)[i·p + r, j·q + s] = A[i, j]·B[r, s]`.
/// **Panics** unless both are matrices.
#[track_caller]
pub fn kron<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Tensor<T> {
    assert!(a.rank() == 2 && b.rank() == 2, "kron: needs two matrices, got {:?} and {:?}", a.shape(), b.shape());
    let (m, n, p, q) = (a.dim(0), a.dim(1), b.dim(0), b.dim(1));
    let (av, bv) = (a.contiguous().into_vec(), b.contiguous().into_vec());
    let mut out = vec![T::zero(); m * p * n * q];
    for i in 0..m {
        for r in 0..p {
            let row = &mut out[(i * p + r) * n * q..(i * p + r + 1) * n * q];
            for j in 0..n {
                for s in 0..q {
                    row[j * q + s] = av[i * n + j] * bv[r * q + s];
                }
            }
        }
    }
    Tensor::from_vec(out, &[m * p, n * q])
}

/// The smallest `n ≥ 1` with `pred(n)`, starting the search from the estimate `guess`
/// (`pred` monotone).
fn smallest(guess: f64, pred: impl Fn(u128) -> bool) -> usize {
    let mut n = (guess.ceil().max(1.0)) as u128;
    while n > 1 && pred(n - 1) {
        n -= 1;
    }
    while !pred(n) {
        n += 1;
    }
    n as usize
}

/// The factors of the DCT dictionary for `F` filters over a `C × k × k` receptive field:
/// `(rows, atoms)` of each 1-D factor, in Kronecker order. For `C > 1`: `(C, n1), (k, n2),
/// (k, n3)` with `n_d` the smallest `n` such that `n³ ≥ (d³/(C·k²))^{1/2}·F` (exactly: `n⁶·C·k²
/// ≥ d³·F²`); for `C = 1`: `(k, n), (k, n)` with `n = ⌈√F⌉`. The product of the atom counts is
/// at least `F` (the three lower bounds multiply to exactly `F`).
///
/// **Panics** if `C = 0`, `k < 2` or `F = 0`.
#[track_caller]
pub fn dct_factors(c: usize, k: usize, f: usize) -> Vec<(usize, usize)> {
    assert!(c >= 1 && k >= 2 && f >= 1, "dct_factors: needs C ≥ 1, k ≥ 2, F ≥ 1, got C = {c}, k = {k}, F = {f}");
    if c == 1 {
        let n = smallest((f as f64).sqrt(), |n| n * n >= f as u128);
        return vec![(k, n), (k, n)];
    }
    let (c128, k128, f128) = (c as u128, k as u128, f as u128);
    [c, k, k]
        .iter()
        .map(|&d| {
            let d128 = d as u128;
            let guess = (((d as f64).powi(3) / (c * k * k) as f64).sqrt() * f as f64).cbrt();
            let n = smallest(guess, |n| n.pow(6) * c128 * k128 * k128 >= d128.pow(3) * f128 * f128);
            (d, n)
        })
        .collect()
}

/// The DCT dictionary `Φ [C·k·k, F]`: the first `F` columns of the Kronecker product of the
/// factors of [`dct_factors`] (unit-norm columns; row `(c·k + y)·k + x` is tap `(c, y, x)`).
///
/// **Panics** as [`dct_factors`].
#[track_caller]
pub fn dct_dictionary<T: Element>(c: usize, k: usize, f: usize) -> Tensor<T> {
    let factors = dct_factors(c, k, f);
    let full = factors.iter().map(|&(d, n)| odct(d, n)).reduce(|acc, d| kron(&acc, &d)).expect("two or three factors");
    let atoms = full.dim(1);
    assert!(atoms >= f, "dct_dictionary: {atoms} atoms for F = {f} (factors {factors:?})");
    full.narrow(1, 0, f).contiguous().cast()
}

/// The filters `[F, C, k, k]` of the DCT convolution: column `f` of [`dct_dictionary`] is
/// filter `f`.
///
/// **Panics** as [`dct_factors`].
#[track_caller]
pub fn dct_filters<T: Element>(c: usize, k: usize, f: usize) -> Tensor<T> {
    dct_dictionary::<T>(c, k, f).t().contiguous().reshape(&[f, c, k, k])
}

/// A fixed DCT convolution `C → F` with `k × k` filters (dilation 1, one group): the filters
/// are [`dct_filters`], held as a constant, the bias `[F]` is the layer's only parameter, and
/// ReLU follows (docs/math.md §3). The layer keeps no parameter itself: the bias is passed to
/// [`DctConv::forward`] like every parameter of the `sparse` crate.
#[derive(Clone, Debug)]
pub struct DctConv<T: Element> {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub conv: Conv2dParams,
    /// `(rows, atoms)` of each 1-D factor ([`dct_factors`]).
    pub factors: Vec<(usize, usize)>,
    /// `[F, C, k, k]`.
    filters: Tensor<T>,
}

impl<T: Element> DctConv<T> {
    /// The DCT convolution `in_channels → out_channels` with `kernel × kernel` filters and the
    /// stride and padding of `conv`.
    ///
    /// **Panics** if `kernel < 2`, a count is 0, or `conv` has a dilation or groups (the atoms
    /// span the whole `C × k × k` receptive field).
    #[track_caller]
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize, conv: Conv2dParams) -> Self {
        assert!(
            conv.dilation == [1, 1] && conv.groups == 1,
            "DctConv: needs dilation 1 and one group, got dilation {:?}, groups {}",
            conv.dilation,
            conv.groups
        );
        let factors = dct_factors(in_channels, kernel, out_channels);
        let filters = dct_filters(in_channels, kernel, out_channels);
        DctConv { in_channels, out_channels, kernel, conv, factors, filters }
    }

    /// The fixed filters `[F, C, k, k]`.
    pub fn filters(&self) -> &Tensor<T> {
        &self.filters
    }

    /// The number of atoms of the full Kronecker dictionary (at least `F`; the first `F` are
    /// used).
    pub fn atoms(&self) -> usize {
        self.factors.iter().map(|&(_, n)| n).product()
    }

    /// A bias drawn as the authors' `SpatialConvolutionDCT:reset` draws it: uniform in
    /// `(−s, s)` with `s = 1/√(C·k·k)`.
    pub fn bias_init(&self, rng: &mut Rng) -> Tensor<T> {
        let s = 1.0 / ((self.in_channels * self.kernel * self.kernel) as f64).sqrt();
        Tensor::rand_uniform(&[self.out_channels], -s, s, rng)
    }

    /// `conv2d(x, Φ) + b` (before the ReLU): `x [N, C, H, W]`, `bias [F]` → `[N, F, H', W']`.
    /// The filters enter the tape as a constant: the `conv2d` rule is told that they need no
    /// gradient and computes none; `x` and `bias` get theirs.
    ///
    /// **Panics** (in `conv2d`) if `x` does not have `C` channels or the bias is not `[F]`.
    #[track_caller]
    pub fn pre_activation<'t>(&self, x: &Var<'t, T>, bias: &Var<'t, T>) -> Var<'t, T> {
        let phi = x.tape().constant(self.filters.clone());
        x.conv2d(&phi, Some(bias), self.conv)
    }

    /// The layer: `relu(conv2d(x, Φ) + b)`.
    #[track_caller]
    pub fn forward<'t>(&self, x: &Var<'t, T>, bias: &Var<'t, T>) -> Var<'t, T> {
        self.pre_activation(x, bias).relu()
    }

    /// The effective kernels of this convolution followed by a 1×1 convolution with weights
    /// `w` (see [`effective_kernels`]).
    #[track_caller]
    pub fn effective_kernels(&self, w: &Tensor<T>) -> Tensor<T> {
        effective_kernels(&self.filters, w)
    }
}

/// The effective kernels `D = Φ·W` `[F_out, C, k, k]` of a convolution with filters
/// `filters [F, C, k, k]` followed by a 1×1 convolution with weights `w [F_out, F, 1, 1]` (or
/// `[F_out, F]`): `D_o = Σ_f w[o, f]·φ_f`. Without the ReLU between them, the two convolutions
/// equal one convolution with `D` (same stride and padding as the first) and the bias of
/// [`folded_bias`].
///
/// **Panics** if the shapes do not fit.
#[track_caller]
pub fn effective_kernels<T: Element>(filters: &Tensor<T>, w: &Tensor<T>) -> Tensor<T> {
    let fs = filters.shape();
    assert!(fs.len() == 4, "effective_kernels: filters must be [F, C, k, k], got {fs:?}");
    let w2 = coefficient_matrix("effective_kernels", w, fs[0]);
    let flat = filters.reshape(&[fs[0], fs[1] * fs[2] * fs[3]]);
    w2.matmul(&flat).reshape(&[w2.dim(0), fs[1], fs[2], fs[3]])
}

/// The bias of the folded convolution of [`effective_kernels`]:
/// `b[o] = Σ_f w[o, f]·b_dct[f] + b_1x1[o]` (the first bias is added at every position of the
/// first convolution's output, so the 1×1 convolution maps it like any other value).
///
/// **Panics** if the shapes do not fit.
#[track_caller]
pub fn folded_bias<T: Element>(w: &Tensor<T>, b_dct: &Tensor<T>, b_1x1: &Tensor<T>) -> Tensor<T> {
    let f = b_dct.numel();
    let w2 = coefficient_matrix("folded_bias", w, f);
    assert_eq!(
        b_1x1.shape(),
        &[w2.dim(0)],
        "folded_bias: the 1×1 bias must be [{}], got {:?}",
        w2.dim(0),
        b_1x1.shape()
    );
    w2.matmul(&b_dct.reshape(&[f])).add(b_1x1)
}

/// `w` as `[F_out, F]` (from `[F_out, F, 1, 1]` or `[F_out, F]`).
#[track_caller]
fn coefficient_matrix<T: Element>(op: &str, w: &Tensor<T>, f: usize) -> Tensor<T> {
    let s = w.shape();
    let ok = (s.len() == 4 && s[1] == f && s[2] == 1 && s[3] == 1) || (s.len() == 2 && s[1] == f);
    assert!(ok, "{op}: the 1×1 weights must be [F_out, {f}, 1, 1] or [F_out, {f}], got {s:?}");
    w.reshape(&[s[0], f])
}

// ---------------------------------------------------------------------------------------------
// Sparsity of the coefficients

/// The threshold of [`Shrink`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShrinkThreshold {
    /// `ζ` itself, whatever the learning rate (the paper's; the default).
    #[default]
    Zeta,
    /// `lr·ζ`: the proximal step of `ζ‖w‖₁`, which is [`L1Prox`].
    LrZeta,
}

/// The paper's shrinkage after every SGD step, a [`PostStep`] attached to a coefficient
/// parameter by name (`Sgd::with_post_step("conv1x1.weight", Shrink::new(1e-5))`):
///
/// ```text
/// Shrink(w) = w − τ·sign(w)   where |w| > τ,   0 elsewhere   (= S_τ(w), soft-thresholding)
/// ```
///
/// with `τ = ζ` ([`ShrinkThreshold::Zeta`], the paper's rule; best ζ = 1e-5) or `τ = lr·ζ`
/// ([`ShrinkThreshold::LrZeta`], the proximal-gradient form, delegated to [`L1Prox`]). A
/// weight with `|w| = τ` becomes 0 (the paper's "else"), the convention of
/// `Tensor::soft_threshold`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shrink {
    pub zeta: f64,
    pub threshold: ShrinkThreshold,
}

impl Shrink {
    /// The paper's rule, threshold `ζ`.
    pub fn new(zeta: f64) -> Self {
        Shrink { zeta, threshold: ShrinkThreshold::Zeta }
    }
    /// The proximal form, threshold `lr·ζ` (the same step as [`L1Prox`]).
    pub fn proximal(zeta: f64) -> Self {
        Shrink { zeta, threshold: ShrinkThreshold::LrZeta }
    }
}

impl<T: Element> PostStep<T> for Shrink {
    fn name(&self) -> &str {
        match self.threshold {
            ShrinkThreshold::Zeta => "shrink",
            ShrinkThreshold::LrZeta => "shrink (l1_prox)",
        }
    }
    /// **Panics** (in `soft_threshold`) if the threshold is negative.
    fn apply(&self, param: &mut Tensor<T>, lr: f64) {
        match self.threshold {
            ShrinkThreshold::Zeta => *param = param.soft_threshold(self.zeta),
            ShrinkThreshold::LrZeta => PostStep::<T>::apply(&L1Prox { zeta: self.zeta }, param, lr),
        }
    }
}

/// The fraction of elements of `t` that are exactly zero (`0.0` or `-0.0`); 0 for an empty
/// tensor.
pub fn zero_fraction<T: Element>(t: &Tensor<T>) -> f64 {
    let n = t.numel();
    if n == 0 {
        return 0.0;
    }
    t.to_vec().iter().filter(|&&v| v == T::zero()).count() as f64 / n as f64
}

/// The fraction of exact zeros of each parameter named in `wanted`, in that order, from the
/// parameters `params` named `names` (as `Optimizer::step_named` takes them, e.g.
/// `ParamSet::names()` and its values): the coefficient layers after the DCT convolutions.
///
/// **Panics** if the lengths differ or a wanted name is not among `names` (listing them).
#[track_caller]
pub fn zero_fractions<T: Element>(names: &[String], params: &[&Tensor<T>], wanted: &[&str]) -> Vec<(String, f64)> {
    assert_eq!(names.len(), params.len(), "zero_fractions: {} names for {} parameters", names.len(), params.len());
    wanted
        .iter()
        .map(|&w| {
            let i = names
                .iter()
                .position(|n| n == w)
                .unwrap_or_else(|| panic!("zero_fractions: no parameter named `{w}` among {names:?}"));
            (w.to_string(), zero_fraction(params[i]))
        })
        .collect()
}
