//! The sparse factorization layers of docs/math.md §1 as tape ops: the SF op (elastic-net codes of
//! each row of a batch), the CSF op (codes of every patch of an image batch, "convolutional in
//! spirit"), and the unsupervised loss of each, all with analytic gradients.
//!
//! | op (tape name) | forward | backward |
//! | --- | --- | --- |
//! | [`sf`] (`sf`) | `X [N, m] → A [N, k]`, `α*(x_n, D)` by LARS-EN | Mairal's rule ([`mairal_backward`]) |
//! | [`sf_with_lambdas`] (`sf`) | the same with `λ1`, `λ2` as inputs | also `∂λ1 = −Σβᵀsign(α*)`, `∂λ2 = −Σβᵀα*` |
//! | [`csf`] (`csf`) | `X [N, C, H, W] → [N, k, H', W']`, one code per patch | Mairal per patch; `∂X` folded back by col2im |
//! | [`sf_loss`] (`sf_loss`) | `L_u(x_n) = ½‖x_n − Dα*‖² + λ1‖α*‖₁ + (λ2/2)‖α*‖²`, `[N]` | envelope theorem: `∂x = r`, `∂D = −r·α*ᵀ` |
//! | [`csf_loss`] (`csf_loss`) | `Σ` over the patches of each image, `[N]` | the same per patch, folded by col2im |
//!
//! Each returns the [`CodingStats`] of its forward pass beside the variable (active-set sizes,
//! steps, atoms that left the path), so a caller can report the work done.
//!
//! The map `x ↦ α*` is piecewise linear: its gradient is exact where the active set does not
//! change under a small perturbation, which is the case for generic inputs. The audit
//! ([`crate::audit`]) only uses inputs with a margin of 1e-4 from every kink.

use autograd::{Backward, Var};
use engine::{Conv2dParams, Element, Tensor};

use crate::error::SparseError;
use crate::lars::backward::{mairal_backward, unsupervised_backward, unsupervised_loss, ActivePaths, Wanted};
use crate::lars::kernels::{transpose, Isa};
use crate::lars::{lars_en, lars_en_compact, CompactPaths, LarsConfig, LarsSolution, SamplePath};

/// What the forward pass of a coding op did, handed back beside its output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CodingStats {
    /// `|Λ|` of every coded vector (sample or patch), in order.
    pub active: Vec<usize>,
    /// Homotopy steps, summed over the vectors.
    pub steps: usize,
    /// Atoms that left an active set (the lasso modification), summed.
    pub leaves: usize,
    /// Atoms skipped as numerically dependent on the active ones, summed.
    pub skipped: usize,
    /// Vectors whose path stopped at the cap on active atoms.
    pub capped: usize,
}

/// Holds no variable: a scope returning `(codes, stats)` keeps the codes only
/// ([`autograd::Tape::scope`]).
impl autograd::Retain for CodingStats {
    fn retained(&self, _: &mut Vec<autograd::NodeId>) {}
}

impl CodingStats {
    fn of<T: Element>(paths: &[SamplePath<T>]) -> CodingStats {
        CodingStats {
            active: paths.iter().map(|p| p.active.len()).collect(),
            steps: paths.iter().map(|p| p.steps).sum(),
            leaves: paths.iter().map(|p| p.leaves).sum(),
            skipped: paths.iter().map(|p| p.skipped.len()).sum(),
            capped: paths.iter().filter(|p| p.hit_cap).count(),
        }
    }

    fn of_compact<T: Element>(paths: &CompactPaths<T>) -> CodingStats {
        CodingStats {
            active: (0..paths.len()).map(|s| paths.active(s).len()).collect(),
            steps: paths.steps,
            leaves: paths.leaves,
            skipped: paths.skipped,
            capped: (0..paths.len()).filter(|&s| paths.hit_cap(s)).count(),
        }
    }

    /// Mean active-set size (0 for no vectors).
    pub fn mean_active(&self) -> f64 {
        if self.active.is_empty() {
            0.0
        } else {
            self.active.iter().sum::<usize>() as f64 / self.active.len() as f64
        }
    }
}

/// The transposed dictionary `Dᵀ` `[k, m]` as a contiguous vector: atom `j` is row `j`.
fn atoms_as_rows<T: Element>(d: &Tensor<T>) -> Vec<T> {
    d.t().contiguous().into_vec()
}

/// `[B, R, C]` → `[B, C, R]` (the last two axes of `t`, read as `b` row-major `r × c` blocks,
/// swapped), contiguous: one blocked transpose per block (`lars::kernels::transpose`, AVX2
/// tiles), rayon over the blocks. Moves values only: the bits of `transpose(1, 2).contiguous()`,
/// without its element-by-element strided gather.
fn swap_last<T: Element>(t: &Tensor<T>, b: usize, r: usize, c: usize) -> Tensor<T> {
    let src = t.contiguous();
    let s = src.as_slice().expect("contiguous");
    assert_eq!(s.len(), b * r * c, "swap_last: {:?} is not [{b}, {r}, {c}]", t.shape());
    let mut out = vec![T::zero(); b * r * c];
    if r * c > 0 {
        let level = Isa::best();
        engine::par::chunks_mut(&mut out, r * c, &|m, o| transpose(level, &s[m * r * c..][..r * c], c, r, c, o, r));
    }
    Tensor::from_vec(out, &[b, c, r])
}

/// A row-major copy (or the data itself when already contiguous).
fn rows<T: Element>(t: &Tensor<T>) -> Tensor<T> {
    t.contiguous()
}

/// Mairal's rule for the dictionary `d [m, k]`, the coded vectors `x [V, m]`, their codes
/// `a [V, k]` and the incoming gradient `g [V, k]` (any layouts).
fn mairal<T: Element, P: ActivePaths<T> + ?Sized>(
    paths: &P,
    d: &Tensor<T>,
    x: &Tensor<T>,
    a: &Tensor<T>,
    g: &Tensor<T>,
    want: Wanted,
) -> crate::lars::backward::MairalGrads<T> {
    let (xs, a, gs) = (rows(x), rows(a), rows(g));
    mairal_backward(
        paths,
        rows(d).as_slice().expect("contiguous"),
        xs.as_slice().expect("contiguous"),
        a.as_slice().expect("contiguous"),
        gs.as_slice().expect("contiguous"),
        d.dim(0),
        d.dim(1),
        want,
    )
}

#[track_caller]
fn check_dictionary(op: &str, d: &[usize]) {
    assert!(d.len() == 2, "{op}: the dictionary must be [m, k] (atoms as columns), got {d:?}");
}

/// A scalar λ variable's value. **Panics** unless it has one element.
#[track_caller]
fn scalar_value<T: Element>(op: &str, what: &str, v: &Var<'_, T>) -> f64 {
    let shape = v.shape();
    assert!(shape.iter().product::<usize>() == 1, "{op}: {what} must have one element, got shape {shape:?}");
    v.item()
}

// ---------------------------------------------------------------------------------------------
// SF

/// The rule of the SF op (inputs `D`, `X`, optionally `λ1`, `λ2`).
struct SfBackward<T: Element> {
    /// Active set and Cholesky factor of `G_ΛΛ = D_ΛᵀD_Λ + λ2·I` of every sample, from LARS.
    paths: Vec<SamplePath<T>>,
}

impl<T: Element> Backward<T> for SfBackward<T> {
    fn name(&self) -> &str {
        "sf"
    }
    fn backward(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        output: &Tensor<T>,
        needed: &[bool],
    ) -> autograd::Result<Vec<Option<Tensor<T>>>> {
        let want = Wanted {
            dictionary: needed[0],
            input: needed[1],
            lambda1: needed.get(2).copied().unwrap_or(false),
            lambda2: needed.get(3).copied().unwrap_or(false),
        };
        let grads = mairal(&self.paths, inputs[0], inputs[1], output, g, want);
        let mut out = vec![grads.dictionary, grads.input];
        if inputs.len() == 4 {
            out.push(grads.lambda1.map(|v| Tensor::full(inputs[2].shape(), v)));
            out.push(grads.lambda2.map(|v| Tensor::full(inputs[3].shape(), v)));
        }
        Ok(out)
    }
}

fn record_sf<'t, T: Element>(
    d: &Var<'t, T>,
    x: &Var<'t, T>,
    lambdas: Option<(&Var<'t, T>, &Var<'t, T>)>,
    cfg: &LarsConfig,
) -> Result<(Var<'t, T>, CodingStats), SparseError> {
    let LarsSolution { codes, paths } = lars_en(&d.value(), &x.value(), cfg)?;
    let stats = CodingStats::of(&paths);
    let mut inputs = vec![*d, *x];
    if let Some((l1, l2)) = lambdas {
        inputs.extend([*l1, *l2]);
    }
    Ok((d.tape().push_op(codes, &inputs, SfBackward { paths }), stats))
}

/// The SF op: elastic-net codes `A [N, k]` of the rows of `x [N, m]` over the dictionary
/// `d [m, k]` (atoms as columns), `α*(x_n) = argmin ½‖x_n − Dα‖² + λ1‖α‖₁ + (λ2/2)‖α‖²`,
/// solved exactly by LARS-EN ([`lars_en`]). It replaces a fully-connected layer and its ReLU
/// (`m·k` parameters). Gradients flow to `d` and `x` by Mairal's rule; `λ1` and `λ2` are
/// constants here (see [`sf_with_lambdas`]).
///
/// # Errors
/// Those of [`lars_en`]: non-finite inputs (naming the sample), invalid λ.
/// **Panics** if `d` is not a matrix or `x` is not `[N, m]`, naming both shapes.
#[track_caller]
pub fn sf<'t, T: Element>(
    d: &Var<'t, T>,
    x: &Var<'t, T>,
    cfg: &LarsConfig,
) -> Result<(Var<'t, T>, CodingStats), SparseError> {
    check_sf_shapes("sf", &d.shape(), &x.shape());
    record_sf(d, x, None, cfg)
}

/// [`sf`] with `λ1` and `λ2` as (one-element) inputs of the op, so they can be learned: the
/// values of `lambda1` and `lambda2` replace `cfg.lambda1` and `cfg.lambda2`, and the rule
/// also returns `∂L/∂λ1 = −Σ_n β_nᵀ sign(α*_n)`, `∂L/∂λ2 = −Σ_n β_nᵀ α*_n`.
///
/// # Errors
/// As [`sf`]; a negative or non-finite λ is an error of the solver.
/// **Panics** as [`sf`], and if a λ has more than one element.
#[track_caller]
pub fn sf_with_lambdas<'t, T: Element>(
    d: &Var<'t, T>,
    x: &Var<'t, T>,
    lambda1: &Var<'t, T>,
    lambda2: &Var<'t, T>,
    cfg: &LarsConfig,
) -> Result<(Var<'t, T>, CodingStats), SparseError> {
    check_sf_shapes("sf_with_lambdas", &d.shape(), &x.shape());
    let mut cfg = cfg.clone();
    cfg.lambda1 = scalar_value("sf_with_lambdas", "lambda1", lambda1);
    cfg.lambda2 = scalar_value("sf_with_lambdas", "lambda2", lambda2);
    record_sf(d, x, Some((lambda1, lambda2)), &cfg)
}

#[track_caller]
fn check_sf_shapes(op: &str, d: &[usize], x: &[usize]) {
    check_dictionary(op, d);
    assert!(
        x.len() == 2 && x[1] == d[0],
        "{op}: x must be [N, m] with m = {} rows of the dictionary {d:?}, got {x:?}",
        d[0]
    );
}

// ---------------------------------------------------------------------------------------------
// Patches

/// Where the patches of a CSF layer are taken: a `kernel` window moved with the stride and
/// padding of `conv` (dilation 1, one group), exactly as `conv2d` would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patches {
    pub kernel: [usize; 2],
    pub conv: Conv2dParams,
}

impl Patches {
    /// `kernel × kernel` windows with stride 1 and no padding.
    pub fn new(kernel: usize) -> Patches {
        Patches { kernel: [kernel, kernel], conv: Conv2dParams::new() }
    }
    pub fn stride(self, s: usize) -> Patches {
        Patches { conv: self.conv.stride(s), ..self }
    }
    pub fn padding(self, p: usize) -> Patches {
        Patches { conv: self.conv.padding(p), ..self }
    }
    pub fn kernel2(self, k: [usize; 2]) -> Patches {
        Patches { kernel: k, ..self }
    }

    /// The patch matrix `[N·H'·W', C·kh·kw]` of `x [N, C, H, W]` (row `n·L + l` is patch `l` of
    /// image `n`, flattened channel-major like a `conv2d` weight `[C, kh, kw]`) and `[H', W']`.
    fn matrix<T: Element>(&self, x: &Tensor<T>) -> (Tensor<T>, [usize; 2]) {
        let s = x.shape();
        let oh = self.conv.output_hw([s[2], s[3]], self.kernel).expect("shapes were checked");
        let cols = x.im2col(self.kernel, self.conv); // [N, C·kh·kw, L]
        let (n, ckk, l) = (cols.dim(0), cols.dim(1), cols.dim(2));
        (swap_last(&cols, n, ckk, l).reshape(&[n * l, ckk]), oh)
    }

    /// Folds per-patch gradients `[N·L, C·kh·kw]` back onto the image shape (col2im).
    fn fold<T: Element>(&self, g: &Tensor<T>, shape: [usize; 4]) -> Tensor<T> {
        let l = g.dim(0) / shape[0];
        let cols = swap_last(g, shape[0], l, g.dim(1));
        Tensor::col2im(&cols, shape, self.kernel, self.conv)
    }

    #[track_caller]
    fn check(&self, op: &str, d: &[usize], x: &[usize]) -> [usize; 4] {
        check_dictionary(op, d);
        assert!(x.len() == 4, "{op}: the input must be [N, C, H, W], got {x:?}");
        let p = &self.conv;
        assert!(
            p.dilation == [1, 1] && p.groups == 1,
            "{op}: patches need dilation 1 and one group, got dilation {:?}, groups {}",
            p.dilation,
            p.groups
        );
        let ckk = x[1] * self.kernel[0] * self.kernel[1];
        assert!(
            d[0] == ckk,
            "{op}: the dictionary {d:?} must have C·kh·kw = {}·{}·{} = {ckk} rows for the input {x:?}",
            x[1],
            self.kernel[0],
            self.kernel[1]
        );
        assert!(
            p.output_hw([x[2], x[3]], self.kernel).is_some(),
            "{op}: a {:?} window with padding {:?} does not fit the input {x:?}",
            self.kernel,
            p.padding
        );
        [x[0], x[1], x[2], x[3]]
    }
}

// ---------------------------------------------------------------------------------------------
// CSF

/// The paths of a CSF (or `csf_loss`) forward pass, in the form its solver gave them.
enum CsfPaths<T: Element> {
    /// One [`SamplePath`] per patch ([`SmallK::Off`], or many atoms).
    PerPatch(Vec<SamplePath<T>>),
    /// Flat buffers ([`lars_en_compact`]).
    Compact(CompactPaths<T>),
}

/// The rule of the CSF op (inputs `D`, `X`).
struct CsfBackward<T: Element> {
    /// Active set and factor of every patch, from LARS.
    paths: CsfPaths<T>,
    /// The patch matrix `[N·L, C·kh·kw]` (∂D is a sum over it).
    patches: Tensor<T>,
    /// Where the patches were taken.
    geometry: Patches,
}

impl<T: Element> Backward<T> for CsfBackward<T> {
    fn name(&self) -> &str {
        "csf"
    }
    fn backward(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        output: &Tensor<T>,
        needed: &[bool],
    ) -> autograd::Result<Vec<Option<Tensor<T>>>> {
        let (d, x) = (inputs[0], inputs[1]);
        let k = d.dim(1);
        let s = x.shape();
        let want = Wanted { dictionary: needed[0], input: needed[1], ..Wanted::default() };
        let by_patch = |t: &Tensor<T>| {
            let (n, l) = (t.dim(0), t.dim(2) * t.dim(3));
            swap_last(t, n, k, l)
        };
        let (a, gp) = (by_patch(output), by_patch(g));
        let grads = match &self.paths {
            CsfPaths::PerPatch(p) => mairal(p.as_slice(), d, &self.patches, &a, &gp, want),
            CsfPaths::Compact(p) => mairal(p, d, &self.patches, &a, &gp, want),
        };
        let gx = grads.input.map(|gp| self.geometry.fold(&gp, [s[0], s[1], s[2], s[3]]));
        Ok(vec![grads.dictionary, gx])
    }
}

/// The CSF op: the elastic-net code of every patch of `x [N, C, H, W]` over one dictionary
/// `d [C·kh·kw, k]` (atom `j` reshaped to `[C, kh, kw]` is a filter), arranged as
/// `[N, k, H', W']` exactly like `conv2d` with the same window, stride and padding. Backward:
/// Mairal per patch, `∂L/∂D` summed over the patches, the patches' input gradients folded back
/// with col2im.
///
/// # Errors
/// Those of [`lars_en`] (a non-finite patch is named by its row `n·H'·W' + l`).
/// **Panics** if the dictionary's rows are not `C·kh·kw`, the window does not fit, or the
/// geometry has a dilation or groups.
#[track_caller]
pub fn csf<'t, T: Element>(
    d: &Var<'t, T>,
    x: &Var<'t, T>,
    geometry: Patches,
    cfg: &LarsConfig,
) -> Result<(Var<'t, T>, CodingStats), SparseError> {
    csf_with(d, x, geometry, cfg, SmallK::Auto)
}

/// Which LARS-EN solver a coding op uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SmallK {
    /// Where the dictionary has at most [`SMALL_K`] atoms, [`lars_en_compact`]: the same
    /// per-patch path run for 16 patches at once (one per vector lane), with every patch's
    /// active set and factor kept in flat batch buffers (nothing allocated per patch); the
    /// per-patch [`SamplePath`]s otherwise.
    #[default]
    Auto,
    /// Always the per-patch solver (the reference the batched one is tested against).
    Off,
}

/// Dictionaries with at most this many atoms use [`lars_en_compact`] under [`SmallK::Auto`]
/// (at k = 20 it saves a quarter of the CSF layer's time; at k = 50 it breaks even).
pub const SMALL_K: usize = 64;

/// [`csf`] with the choice of solver made explicit (both give the same codes and gradients).
#[track_caller]
pub fn csf_with<'t, T: Element>(
    d: &Var<'t, T>,
    x: &Var<'t, T>,
    geometry: Patches,
    cfg: &LarsConfig,
    solver: SmallK,
) -> Result<(Var<'t, T>, CodingStats), SparseError> {
    let s = geometry.check("csf", &d.shape(), &x.shape());
    let k = d.dim(1);
    let (patches, [oh, ow]) = geometry.matrix(&x.value());
    let (codes, paths, stats) = if solver == SmallK::Auto && k <= SMALL_K {
        let (codes, paths) = lars_en_compact(&d.value(), &patches, cfg)?;
        let stats = CodingStats::of_compact(&paths);
        (codes, CsfPaths::Compact(paths), stats)
    } else {
        let LarsSolution { codes, paths } = lars_en(&d.value(), &patches, cfg)?;
        let stats = CodingStats::of(&paths);
        (codes, CsfPaths::PerPatch(paths), stats)
    };
    let y = swap_last(&codes, s[0], oh * ow, k).reshape(&[s[0], k, oh, ow]);
    Ok((d.tape().push_op(y, &[*d, *x], CsfBackward { paths, patches, geometry }), stats))
}

// ---------------------------------------------------------------------------------------------
// Unsupervised losses

/// The rule of `sf_loss` and `csf_loss` (inputs `D`, `X`).
struct LossBackward<T: Element> {
    /// The op's name (`sf_loss` or `csf_loss`).
    name: &'static str,
    /// Active sets of the coded vectors (the columns of ∂D that are touched).
    paths: CsfPaths<T>,
    /// Codes `α*` `[V, k]` of the coded vectors (samples or patches).
    codes: Tensor<T>,
    /// Residuals `x − Dα*` `[V, m]`.
    residual: Vec<T>,
    /// For `csf_loss`: where the patches were taken (`None` for `sf_loss`).
    geometry: Option<Patches>,
}

impl<T: Element> Backward<T> for LossBackward<T> {
    fn name(&self) -> &str {
        self.name
    }
    fn backward(
        &self,
        g: &Tensor<T>,
        inputs: &[&Tensor<T>],
        _output: &Tensor<T>,
        needed: &[bool],
    ) -> autograd::Result<Vec<Option<Tensor<T>>>> {
        let (d, x) = (inputs[0], inputs[1]);
        let (m, k) = (d.dim(0), d.dim(1));
        // One weight per coded vector: g_n, repeated over the patches of image n.
        let per_image = rows(g).into_vec();
        let v = match &self.paths {
            CsfPaths::PerPatch(p) => p.len(),
            CsfPaths::Compact(p) => p.len(),
        };
        let rep = v.checked_div(per_image.len()).unwrap_or(0);
        let w: Vec<T> = per_image.iter().flat_map(|&gn| std::iter::repeat_n(gn, rep)).collect();
        let (codes, want_d, want_x) = (self.codes.as_slice().expect("contiguous"), needed[0], needed[1]);
        let (gd, gx) = match &self.paths {
            CsfPaths::PerPatch(p) => {
                unsupervised_backward(p.as_slice(), &self.residual, codes, &w, m, k, want_d, want_x)
            }
            CsfPaths::Compact(p) => unsupervised_backward(p, &self.residual, codes, &w, m, k, want_d, want_x),
        };
        let gx = match (&self.geometry, gx) {
            (Some(geo), Some(gp)) => {
                let s = x.shape();
                Some(geo.fold(&gp, [s[0], s[1], s[2], s[3]]))
            }
            (None, gx) => gx,
            (Some(_), None) => None,
        };
        Ok(vec![gd, gx])
    }
}

#[allow(clippy::too_many_arguments)]
fn record_loss<'t, T: Element>(
    name: &'static str,
    d: &Var<'t, T>,
    x: &Var<'t, T>,
    vectors: Tensor<T>,
    images: usize,
    geometry: Option<Patches>,
    cfg: &LarsConfig,
    solver: SmallK,
) -> Result<(Var<'t, T>, CodingStats), SparseError> {
    let dv = d.value();
    let (m, k) = (dv.dim(0), dv.dim(1));
    let (codes, paths, stats) = if solver == SmallK::Auto && k <= SMALL_K {
        let (codes, paths) = lars_en_compact(&dv, &vectors, cfg)?;
        let stats = CodingStats::of_compact(&paths);
        (codes, CsfPaths::Compact(paths), stats)
    } else {
        let LarsSolution { codes, paths } = lars_en(&dv, &vectors, cfg)?;
        let stats = CodingStats::of(&paths);
        (codes, CsfPaths::PerPatch(paths), stats)
    };
    let codes = rows(&codes);
    let (dt, xs, cs) =
        (atoms_as_rows(&dv), vectors.as_slice().expect("contiguous"), codes.as_slice().expect("contiguous"));
    let (loss, residual) = match &paths {
        CsfPaths::PerPatch(p) => unsupervised_loss(p.as_slice(), &dt, xs, cs, m, k, cfg.lambda1, cfg.lambda2),
        CsfPaths::Compact(p) => unsupervised_loss(p, &dt, xs, cs, m, k, cfg.lambda1, cfg.lambda2),
    };
    let per = loss.len().checked_div(images).unwrap_or(0);
    let summed: Vec<T> =
        (0..images).map(|i| loss[i * per..(i + 1) * per].iter().fold(T::zero(), |a, &b| a + b)).collect();
    let rule = LossBackward { name, paths, codes, residual, geometry };
    Ok((d.tape().push_op(Tensor::from_vec(summed, &[images]), &[*d, *x], rule), stats))
}

/// The unsupervised loss of an SF layer, per sample (docs/math.md §1):
/// `L_u(x_n, D) = ½‖x_n − Dα*‖² + λ1‖α*‖₁ + (λ2/2)‖α*‖²` at `α* = α*(x_n, D)`, shape `[N]`.
/// By optimality of `α*` (envelope theorem) its gradients are `∂L_u/∂x = x − Dα*` and
/// `∂L_u/∂D = −(x − Dα*)·α*ᵀ`: no derivative of `α*` is needed.
///
/// # Errors
/// Those of [`lars_en`]. **Panics** on shapes as [`sf`].
#[track_caller]
pub fn sf_loss<'t, T: Element>(
    d: &Var<'t, T>,
    x: &Var<'t, T>,
    cfg: &LarsConfig,
) -> Result<(Var<'t, T>, CodingStats), SparseError> {
    check_sf_shapes("sf_loss", &d.shape(), &x.shape());
    let xv = rows(&x.value());
    let n = xv.dim(0);
    record_loss("sf_loss", d, x, xv, n, None, cfg, SmallK::Off)
}

/// The unsupervised loss of a CSF layer: for every image the sum of `L_u` over its patches
/// (the patches of [`csf`]), shape `[N]`. Gradients by the envelope theorem per patch, the
/// input gradient folded back with col2im.
///
/// # Errors
/// Those of [`lars_en`]. **Panics** on shapes as [`csf`].
#[track_caller]
pub fn csf_loss<'t, T: Element>(
    d: &Var<'t, T>,
    x: &Var<'t, T>,
    geometry: Patches,
    cfg: &LarsConfig,
) -> Result<(Var<'t, T>, CodingStats), SparseError> {
    csf_loss_with(d, x, geometry, cfg, SmallK::Auto)
}

/// [`csf_loss`] with the choice of solver made explicit (both give the same bits).
#[track_caller]
pub fn csf_loss_with<'t, T: Element>(
    d: &Var<'t, T>,
    x: &Var<'t, T>,
    geometry: Patches,
    cfg: &LarsConfig,
    solver: SmallK,
) -> Result<(Var<'t, T>, CodingStats), SparseError> {
    let s = geometry.check("csf_loss", &d.shape(), &x.shape());
    let (patches, _) = geometry.matrix(&x.value());
    record_loss("csf_loss", d, x, patches, s[0], Some(geometry), cfg, solver)
}
